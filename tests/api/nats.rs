//! The NATS JetStream sink against real servers: the one `INNOHOOK_TEST_NATS_URL` names
//! (a stream of its own per test) and servers of the tests' own for outages. Without the
//! variable these tests say so in one line and pass.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::Value;

use crate::helpers::*;

const VAR: &str = "INNOHOOK_TEST_NATS_URL";

fn nats_url(test: &str) -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skipped(
                test,
                &format!("set {VAR}=nats://127.0.0.1:4222 to run the NATS tests"),
            );
            None
        }
    }
}

/// A stream of its own on the server at `url`, capturing `{prefix}.>`; deleted when
/// dropped.
struct TestStream {
    js: jetstream::Context,
    name: String,
    prefix: String,
}

impl TestStream {
    async fn create(url: &str, window: Duration) -> TestStream {
        let client = async_nats::connect(url).await.expect("NATS reachable");
        let js = jetstream::new(client);
        let id = format!("{:012x}", fastrand::u64(..1 << 48));
        let (name, prefix) = (format!("T{id}"), format!("t{id}"));
        js.create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.>")],
            duplicate_window: window,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("stream created");
        TestStream { js, name, prefix }
    }

    /// The sink's `[[sinks]]` table for this stream.
    fn sink_toml(&self, url: &str) -> String {
        format!(
            "[[sinks]]\ntype = \"nats\"\nname = \"bus\"\nurl = \"{url}\"\nstream = \"{}\"\nsubject = \"{}.{{type}}.{{status}}\"\nbackoff_initial_ms = 50\nbackoff_max_ms = 500\nack_timeout_secs = 2\n",
            self.name, self.prefix
        )
    }

    /// Every message in the stream: (subject, Nats-Msg-Id, payload).
    async fn messages(&self) -> Vec<(String, String, Value)> {
        let stream = self.js.get_stream(&self.name).await.unwrap();
        let last = stream.get_info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            let Ok(m) = stream.get_raw_message(seq).await else {
                continue;
            };
            let id = m
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            out.push((
                m.subject.to_string(),
                id,
                serde_json::from_slice(&m.payload).unwrap(),
            ));
        }
        out
    }

    async fn count(&self) -> u64 {
        let stream = self.js.get_stream(&self.name).await.unwrap();
        stream.get_info().await.unwrap().state.messages
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (js, name) = (self.js.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async { js.delete_stream(&name).await.ok() })
        })
        .join();
    }
}

/// Each event once on its subject, with its own key as Nats-Msg-Id; a redelivered push
/// is not published again; InnoPaaS's delivered and failed (one envelope id) are two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_published_once_with_its_key_on_its_subject() {
    let Some(url) = nats_url("each_event_is_published_once_with_its_key_on_its_subject") else {
        return;
    };
    let stream = TestStream::create(&url, Duration::from_secs(3600)).await;
    let app = app_with_sinks(&stream.sink_toml(&url)).await;
    for body in [
        seed("delivered"),
        seed("read"),
        seed("failed"),
        seed("failed"),
    ] {
        assert_eq!(app.post(body.to_string()).await.status(), 200);
    }
    let smecl = set(seed("failed"), "body.status", "SMECL:FAILED".into());
    assert_eq!(app.post(smecl.to_string()).await.status(), 200);
    let untyped = r#"{"id":"x-1","type":"whatsapp_unlisted_event","body":{"text":"hi"}}"#;
    assert_eq!(app.post(untyped).await.status(), 200);
    poll_until("five messages in the stream", 20, async || {
        (stream.count().await == 5).then_some(())
    })
    .await;
    let messages = stream.messages().await;
    let by_id: HashMap<&str, &(String, String, Value)> =
        messages.iter().map(|m| (m.1.as_str(), m)).collect();
    let p = &stream.prefix;
    let t = "whatsapp_message_status_updated";
    for (id, subject) in [
        ("356139161272397824:delivered", format!("{p}.{t}.delivered")),
        ("356139161272397824:failed", format!("{p}.{t}.failed")),
        (
            "356139161272397824:SMECL:FAILED",
            format!("{p}.{t}.SMECL:FAILED"),
        ),
    ] {
        assert_eq!(
            by_id.get(id).map(|m| m.0.as_str()),
            Some(subject.as_str()),
            "{id}"
        );
    }
    let other = messages
        .iter()
        .find(|m| m.1.starts_with("sha256:"))
        .unwrap();
    assert_eq!(other.0, format!("{p}.whatsapp_unlisted_event.none"));
    assert_eq!(other.2["body"]["text"], "hi");
    app.scrape_until("innohook_sink_delivered_total{sink=\"bus\"}", 5.0)
        .await;
}

/// A stream that is missing, or does not capture the sink's subjects, stops startup with
/// a sentence that says what to do.
#[tokio::test]
async fn a_stream_that_cannot_take_the_events_stops_startup() {
    let Some(url) = nats_url("a_stream_that_cannot_take_the_events_stops_startup") else {
        return;
    };
    let stream = TestStream::create(&url, Duration::from_secs(3600)).await;
    let build = |toml: String| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.sinks = parse_sinks(&toml);
        format!(
            "{:#}",
            innohook::server::App::build(config)
                .await
                .err()
                .expect("refused")
        )
    };
    let missing = build(
        stream
            .sink_toml(&url)
            .replace(&stream.name, "NO_SUCH_STREAM"),
    )
    .await;
    assert!(
        missing.contains("NO_SUCH_STREAM") && missing.contains("create it first"),
        "{missing}"
    );
    let elsewhere = build(
        stream
            .sink_toml(&url)
            .replace(&format!("\"{}.", stream.prefix), "\"elsewhere."),
    )
    .await;
    assert!(
        elsewhere.contains("does not capture subject"),
        "{elsewhere}"
    );
}

/// A nats-server of the test's own, on a port it keeps across a restart.
struct NatsServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl NatsServer {
    fn start() -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = NatsServer {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            port,
        };
        s.restart();
        s
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("log")).unwrap();
        let child = Command::new(Self::binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path().join("js"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn binary() -> &'static str {
        if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// NATS stopped under load and started again: every event answered 200 is in the stream
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_loses_nothing_and_stores_nothing_twice() {
    if nats_url("a_nats_outage_loses_nothing_and_stores_nothing_twice").is_none() {
        return;
    }
    let mut server = NatsServer::start();
    let url = server.url();
    let stream = TestStream::create(&url, Duration::from_secs(3600)).await;
    let app = Arc::new(app_with_sinks(&stream.sink_toml(&url)).await);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (app, acked, stop) = (app.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let msg = format!("m{t}-{i}");
                    i += 1;
                    if app
                        .post(status_event(&msg, &msg, "read").to_string())
                        .await
                        .status()
                        == 200
                    {
                        acked.lock().unwrap().push(msg);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    poll_until("events in the stream", 20, async || {
        (stream.count().await >= 100).then_some(())
    })
    .await;
    server.stop();
    let during = acked.lock().unwrap().len();
    poll_until("pushes accepted while NATS is down", 20, async || {
        (acked.lock().unwrap().len() >= during + 100).then_some(())
    })
    .await;
    server.restart();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    poll_until("every acknowledged event in the stream", 60, async || {
        (stream.count().await as usize >= acked.len()).then_some(())
    })
    .await;
    let messages = stream.messages().await;
    let mut times: HashMap<String, usize> = HashMap::new();
    for (_, id, _) in &messages {
        *times.entry(id.clone()).or_default() += 1;
    }
    for msg in &acked {
        assert_eq!(times.get(&format!("{msg}:read")), Some(&1), "{msg}");
    }
    assert_eq!(messages.len(), acked.len(), "nothing else, nothing twice");
}

/// innohook SIGKILLed under load with a NATS sink: after a restart every event answered
/// 200 is in the stream exactly once (republished ones are recognised by Nats-Msg-Id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_every_acknowledged_event_is_in_the_stream_once() {
    let Some(url) = nats_url("after_sigkill_every_acknowledged_event_is_in_the_stream_once") else {
        return;
    };
    let stream = TestStream::create(&url, Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &(server_toml(dir.path()) + &stream.sink_toml(&url)),
    );
    let server = BinaryServer::start(&config);
    let addr = server.addr;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let acked = acked.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in 0.. {
                    let msg = format!("m{t}-{i}");
                    let res = client
                        .post(format!("http://{addr}/webhook"))
                        .header("content-type", "application/json")
                        .body(status_event(&msg, &msg, "read").to_string())
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 200 => acked.lock().unwrap().push(msg),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    poll_until("events in the stream", 30, async || {
        (stream.count().await >= 300).then_some(())
    })
    .await;
    server.kill();
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let _server = BinaryServer::start(&config);
    poll_until("every acknowledged event in the stream", 60, async || {
        (stream.count().await as usize >= acked.len()).then_some(())
    })
    .await;
    let messages = stream.messages().await;
    let mut times: HashMap<String, usize> = HashMap::new();
    for (_, id, _) in &messages {
        *times.entry(id.clone()).or_default() += 1;
    }
    assert!(times.values().all(|n| *n == 1), "stored twice");
    for msg in &acked {
        assert!(times.contains_key(&format!("{msg}:read")), "{msg} missing");
    }
}
