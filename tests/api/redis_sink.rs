//! The Redis Streams sink against real servers: the one `INNOHOOK_TEST_REDIS_URL` names (a
//! stream of its own per test) and a server of the test's own for an outage. Without the
//! variable these tests say so in one line and pass.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis::AsyncCommands;
use redis::streams::StreamRangeReply;
use serde_json::Value;

use crate::helpers::*;

const VAR: &str = "INNOHOOK_TEST_REDIS_URL";

fn redis_url(test: &str) -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skipped(
                test,
                &format!("set {VAR}=redis://127.0.0.1:6379 to run the Redis tests"),
            );
            None
        }
    }
}

/// One stream entry.
#[derive(Debug)]
struct Entry {
    id: String,
    event_type: String,
    key: String,
    seq: i64,
    body: Value,
}

/// A stream key of its own on the server at `url`, deleted when dropped.
struct TestStream {
    client: redis::Client,
    key: String,
}

impl TestStream {
    fn new(url: &str) -> TestStream {
        TestStream {
            client: redis::Client::open(url).unwrap(),
            key: format!("innohook-test:{:012x}", fastrand::u64(..1 << 48)),
        }
    }

    fn sink_toml(&self, url: &str) -> String {
        format!(
            "[[sinks]]\ntype = \"redis\"\nname = \"streams\"\nurl = \"{url}\"\nstream = \"{}\"\nbackoff_initial_ms = 50\nbackoff_max_ms = 500\n",
            self.key
        )
    }

    async fn entries(&self) -> Vec<Entry> {
        let mut c = self
            .client
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        // A page at a time: one reply of 10,000 entries may outlast the client's timeout.
        let mut out: Vec<Entry> = Vec::new();
        loop {
            let start = out.last().map_or("-".to_owned(), |e| format!("({}", e.id));
            let reply: StreamRangeReply = c.xrange_count(&self.key, start, "+", 500).await.unwrap();
            let n = reply.ids.len();
            out.extend(reply.ids.iter().map(|e| Entry {
                id: e.id.clone(),
                event_type: e.get("type").unwrap(),
                key: e.get("key").unwrap(),
                seq: e.get("seq").unwrap(),
                body: serde_json::from_slice(&e.get::<Vec<u8>>("body").unwrap()).unwrap(),
            }));
            if n < 500 {
                return out;
            }
        }
    }

    async fn len(&self) -> usize {
        let mut c = self
            .client
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        c.xlen(&self.key).await.unwrap()
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        if let Ok(mut c) = self.client.get_connection() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&self.key).query(&mut c);
        }
    }
}

/// Each event one entry, its id its seq, with its body, type and key; in commit order; a
/// redelivered push not added again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_one_entry_whose_id_is_its_seq() {
    let Some(url) = redis_url("each_event_is_one_entry_whose_id_is_its_seq") else {
        return;
    };
    let stream = TestStream::new(&url);
    let app = app_with_sinks(&stream.sink_toml(&url)).await;
    let mut sent = Vec::new();
    for i in 0..20 {
        for status in ["delivered", "read"] {
            let v = status_event(&format!("e{i}-{status}"), &format!("m{i}"), status);
            assert_eq!(app.post(v.to_string()).await.status(), 200);
            sent.push(v);
        }
    }
    let again = status_event("e0-read-again", "m0", "read");
    assert_eq!(
        answer(app.post(again.to_string()).await).await.1["status"],
        "duplicate"
    );
    poll_until("every event in the stream", 20, async || {
        (stream.len().await >= sent.len()).then_some(())
    })
    .await;
    let entries = stream.entries().await;
    assert_eq!(entries.len(), sent.len());
    for (e, v) in entries.iter().zip(&sent) {
        assert_eq!(e.id, format!("{}-0", e.seq));
        assert_eq!(&e.body, v, "in commit order, as sent");
        assert_eq!(e.event_type, "whatsapp_message_status_updated");
        let b = &v["body"];
        assert_eq!(
            e.key,
            format!(
                "{}:{}",
                b["id"].as_str().unwrap(),
                b["status"].as_str().unwrap()
            )
        );
    }
}

/// An entry added by someone else above innohook's next id: the event is a dead letter
/// naming the entry, not a silent loss; and a URL that is not Redis's is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writer_above_innohook_makes_a_dead_letter_and_bad_settings_a_sentence() {
    let Some(url) =
        redis_url("another_writer_above_innohook_makes_a_dead_letter_and_bad_settings_a_sentence")
    else {
        return;
    };
    let stream = TestStream::new(&url);
    let mut c = stream
        .client
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: String = c
        .xadd(&stream.key, "*", &[("someone", "else")])
        .await
        .unwrap();
    let app = app_with_sinks(&stream.sink_toml(&url)).await;
    assert_eq!(
        app.post(status_event("e1", "m1", "read").to_string())
            .await
            .status(),
        200
    );
    let letter = poll_until("the dead letter", 20, async || {
        let dead = app.store.dead_letters().await.unwrap();
        dead.into_iter().find(|d| d.sink.is_some())
    })
    .await;
    let error = letter.reason.clone();
    assert!(
        error.contains("that innohook did not add") && error.contains("#1"),
        "{error}"
    );

    for (sink, says) in [
        (
            "[[sinks]]\ntype = \"redis\"\nurl = \"redis://:secret@127.0.0.1:1\"\n",
            "cannot connect to Redis at redis://:***@127.0.0.1:1",
        ),
        (
            "[[sinks]]\ntype = \"redis\"\nurl = \"http://127.0.0.1:6379\"\n",
            "url must start with redis:// or rediss://",
        ),
        (
            "[[sinks]]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nmaxlen = 0\n",
            "maxlen must be at least 1",
        ),
    ] {
        refused_by_check_config_and_serve(sink, says);
    }
}

/// A redis-server of the test's own, on a free port, keeping nothing on disk.
struct OwnRedis(Child, u16);

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        wait_until("redis-server listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        OwnRedis(child, port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.1)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// 10,000 events (5,000 messages, each `delivered` then `read`) through the server
/// closing innohook's connection and one SIGKILL of innohook: every event is in the
/// stream exactly once, in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_are_in_the_stream_once_in_order_through_a_sigkill_and_a_disconnect() {
    if redis_url(
        "ten_thousand_events_are_in_the_stream_once_in_order_through_a_sigkill_and_a_disconnect",
    )
    .is_none()
    {
        return;
    }
    const MESSAGES: usize = 5000;
    let redis = OwnRedis::start();
    let url = redis.url();
    let stream = TestStream::new(&url);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &(server_toml(dir.path()) + &stream.sink_toml(&url)),
    );
    let server = BinaryServer::start(&config);
    let load = Load::start(server.addr, MESSAGES);
    // The server closes every client's connection once a quarter has arrived.
    poll_until("a quarter of the events in the stream", 60, async || {
        (stream.len().await >= MESSAGES / 2).then_some(())
    })
    .await;
    let mut c = stream
        .client
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(killed >= 1, "innohook's connection was there");
    // SIGKILL once half are acknowledged; a new process on the same store goes on.
    poll_until("half of the events acknowledged", 60, async || {
        (load.acked() >= MESSAGES).then_some(())
    })
    .await;
    server.kill();
    let server = BinaryServer::start(&config);
    load.point_to(server.addr);
    load.finish().await;
    poll_until("every event in the stream", 120, async || {
        (stream.len().await >= 2 * MESSAGES).then_some(())
    })
    .await;
    let entries = stream.entries().await;
    let arrived: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
    assert_eq!(check_arrivals(MESSAGES, &arrived), 0, "added twice");
    assert_eq!(entries.len(), 2 * MESSAGES, "nothing else");
    assert!(
        entries.windows(2).all(|w| w[0].seq < w[1].seq),
        "in commit order"
    );
    drop(server);
}
