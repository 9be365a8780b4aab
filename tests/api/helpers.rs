//! Shared test helpers: seed payloads and JSON surgery.

#![allow(dead_code)]

use serde_json::Value;

/// The path of a file under `examples/payloads/`.
pub fn payload_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/payloads/{name}.json"))
}

/// A seed example's bytes, verbatim as in the InnoPaaS doc.
pub fn seed_bytes(name: &str) -> Vec<u8> {
    std::fs::read(payload_path(name)).expect("seed payload")
}

/// A seed example as JSON.
pub fn seed(name: &str) -> Value {
    serde_json::from_slice(&seed_bytes(name)).unwrap()
}

/// Sets the value at a dotted path (`body.errorData.errorCode`), creating nothing but the leaf.
pub fn set(mut v: Value, path: &str, new: Value) -> Value {
    let (parent, leaf) = split(path);
    object_at(&mut v, parent).insert(leaf.to_owned(), new);
    v
}

/// Removes the field at a dotted path.
pub fn remove(mut v: Value, path: &str) -> Value {
    let (parent, leaf) = split(path);
    object_at(&mut v, parent).shift_remove(leaf);
    v
}

fn split(path: &str) -> (Option<&str>, &str) {
    match path.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, path),
    }
}

fn object_at<'a>(v: &'a mut Value, parent: Option<&str>) -> &'a mut serde_json::Map<String, Value> {
    let mut cur = v;
    if let Some(p) = parent {
        for k in p.split('.') {
            cur = cur.get_mut(k).unwrap_or_else(|| panic!("no {k} in {p}"));
        }
    }
    cur.as_object_mut().expect("an object")
}

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use innohook::config::Config;
use innohook::server::App;
use innohook::store::{Role, Store};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A real innohook server on 127.0.0.1:0, in this process, with its own store directory.
pub struct TestApp {
    pub addr: SocketAddr,
    pub dir: Arc<TempDir>,
    pub config: Config,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A config for tests: store in `dir`, otherwise defaults.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.store.dir = dir.join("store");
    config
}

pub async fn spawn_app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = test_config(dir.path());
    TestApp::spawn(config, dir).await
}

impl TestApp {
    pub async fn spawn(config: Config, dir: Arc<TempDir>) -> TestApp {
        let app = App::build(config.clone()).await.expect("app builds");
        Self::serve(app, config, dir).await
    }

    /// Like [`TestApp::spawn`], on a store the test opened itself.
    pub async fn spawn_with_store(
        config: Config,
        dir: Arc<TempDir>,
        store: Arc<dyn Store>,
    ) -> TestApp {
        let app = App::build_with_store(config.clone(), store)
            .await
            .expect("app builds");
        Self::serve(app, config, dir).await
    }

    async fn serve(app: App, config: Config, dir: Arc<TempDir>) -> TestApp {
        let store = app.store().clone();
        let listener = innohook::http::serve::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(listener, async move {
            let _ = stopped.await;
        }));
        TestApp {
            addr,
            dir,
            config,
            client: reqwest::Client::new(),
            store,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn scrape(&self) -> String {
        let res = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.text().await.unwrap()
    }

    /// Scrapes `/metrics` until `series` reaches `at_least` (within 20 s) and returns that
    /// scrape.
    pub async fn scrape_until(&self, series: &str, at_least: f64) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.scrape().await;
            let got = metric(&text, series);
            if got >= at_least {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{series} is {got}, never {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks `/readyz` until it answers `status` (within 10 s; a probe's result answers
    /// for a second) and returns the answer's body.
    pub async fn readyz_until(&self, status: u16) -> serde_json::Value {
        poll_until(&format!("/readyz {status}"), 10, async || {
            let res = self.client.get(self.url("/readyz")).send().await.unwrap();
            if res.status() == status {
                Some(res.json().await.unwrap())
            } else {
                None
            }
        })
        .await
    }

    /// GET `path` with `Authorization: Bearer token` (the API's).
    pub async fn get_with_token(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// POSTs a body to the webhook path as `application/json`.
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_to(&self.config.server.path, "application/json", body)
            .await
    }

    /// POSTs a body to any path with any content type.
    pub async fn post_to(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// How many events the store holds.
    pub async fn stored(&self) -> i64 {
        self.store.count_events().await.unwrap()
    }

    /// Shuts down gracefully and waits; returns the directory for a restart.
    pub async fn stop(mut self) -> (Config, Arc<TempDir>) {
        drop(self.store);
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().expect("clean shutdown");
        (self.config, self.dir)
    }
}

/// Opens the store in `dir` as a command does, beside a server that may be running.
pub async fn open_store(dir: &Path) -> Arc<dyn Store> {
    let mut config = Config::default();
    config.store.dir = dir.to_owned();
    innohook::store::open(&config.store, Role::Client)
        .await
        .unwrap()
}

/// The value of one series in Prometheus text (0 when absent).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// A config file's text for a server run as a process: any port on loopback, the store
/// in `dir/store`, JSON logs. `[log]` comes last, so a caller may append its keys (and
/// further tables).
pub fn server_toml(dir: &Path) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndir = {:?}\n[log]\nformat = \"json\"\n",
        dir.join("store")
    )
}

/// A response's status and JSON body.
pub async fn answer(res: reqwest::Response) -> (u16, serde_json::Value) {
    let status = res.status().as_u16();
    let body = res.json().await.expect("JSON body");
    (status, body)
}

/// A unique, valid status event.
pub fn status_event(envelope_id: &str, message_id: &str, status: &str) -> Value {
    let mut v = seed(if status == "failed" { "failed" } else { "read" });
    v["id"] = envelope_id.into();
    v["body"]["id"] = message_id.into();
    v["body"]["status"] = status.into();
    v
}

/// A status event of message `msg` in batch `uid`, at minute `minute` of 2026-03-01 10:00
/// UTC, with wamid `wamid.{msg}` and sendPhone 6512345; failures carry an error code
/// (`E-{status}`) and message.
pub fn campaign_status(env: &str, msg: &str, uid: &str, status: &str, minute: u32) -> Value {
    let mut v = serde_json::json!({
        "id": env, "type": "whatsapp_message_status_updated",
        "eventTime": format!("2026-03-01T10:{minute:02}:00.000Z"),
        "body": {"id": msg, "accountName": "acct", "wabaId": "waba", "status": status,
                 "wamid": format!("wamid.{msg}"), "sendPhone": "6512345", "uid": uid}
    });
    if status.to_lowercase().contains("failed") {
        v["body"]["errorData"] =
            serde_json::json!({"errorCode": format!("E-{status}"), "errorMessage": "no"});
    }
    v
}

/// `[[sinks]]` tables, as the config file would give them.
pub fn parse_sinks(toml: &str) -> Vec<innohook::sink::SinkConfig> {
    #[derive(serde::Deserialize)]
    struct Sinks {
        sinks: Vec<innohook::sink::SinkConfig>,
    }
    let parsed: Sinks = figment::Figment::from(
        <figment::providers::Toml as figment::providers::Format>::string(toml),
    )
    .extract()
    .unwrap();
    parsed.sinks
}

/// Polls `check` (which may await) until it gives a value, for at most `secs` seconds.
pub async fn poll_until<T>(what: &str, secs: u64, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` until it is true or the deadline passes.
pub fn wait_until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `innohook validate -` on `body`: its exit code and what it printed.
pub fn validate_stdin(body: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = innohook()
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

/// The innohook binary, as a command to run.
pub fn innohook() -> Command {
    Command::new(env!("CARGO_BIN_EXE_innohook"))
}

/// The innohook binary running as a child process, as a user runs it.
pub struct BinaryServer {
    pub child: Child,
    pub addr: SocketAddr,
    pub log_lines: Arc<std::sync::Mutex<Vec<String>>>,
}

/// Writes `toml` to `dir/innohook.toml` and returns its path.
pub fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("innohook.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

impl BinaryServer {
    /// Starts `innohook --config PATH` (the config must listen on 127.0.0.1:0 with JSON
    /// logs) and waits for its "Listening." line to learn the port.
    pub fn start(config: &Path) -> BinaryServer {
        let mut command = innohook();
        command.arg("--config").arg(config);
        Self::start_command(command)
    }

    /// Like [`BinaryServer::start`], for a command with its own arguments and environment.
    pub fn start_command(mut command: Command) -> BinaryServer {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log_lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log_lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "Listening."
                {
                    let _ = tx.send(v["addr"].as_str().unwrap().parse::<SocketAddr>().unwrap());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server did not start: {:?}", log_lines.lock().unwrap()));
        BinaryServer {
            child,
            addr,
            log_lines,
        }
    }

    /// POSTs a body to `/webhook` as `application/json` (no auth headers).
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("http://{}/webhook", self.addr))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Whether a log line so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log_lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(text))
    }

    pub fn kill(self) {
        drop(self);
    }
}

/// A test that fails must not leave its server running.
impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the forward target received and how it behaves.
#[derive(Default)]
pub struct TargetState {
    /// What it answered 200, as it arrived.
    pub received: Vec<(HeaderMap, Bytes)>,
    /// How many requests arrived, whatever the answer.
    pub arrived: usize,
    /// Answers for the next requests, in order, before any rule below (e.g. 503, 429,
    /// then 200s).
    pub script: VecDeque<StatusCode>,
    /// Bodies containing the text get this answer.
    pub refuse: Option<(String, StatusCode)>,
    /// Each answer is sent this long after the request arrived.
    pub delay: Duration,
    /// Never answer.
    pub hang: bool,
    /// Answer 503 to this share of requests, drawn from this seeded generator.
    pub flaky: Option<(f64, fastrand::Rng)>,
    /// Bodies containing this text get 503 (one message's trouble).
    pub unavailable_for: Option<String>,
    /// Every request, answered or not: (headers, body, status answered).
    pub attempts: Vec<(HeaderMap, Bytes, u16)>,
}

impl TargetState {
    /// Bodies containing `text` are refused with 400.
    pub fn refuse(&mut self, text: &str) {
        self.refuse = Some((text.into(), StatusCode::BAD_REQUEST));
    }
}

/// A real HTTP server on loopback standing in for the customer's system.
pub struct Target {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<TargetState>>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn receive(
    State(state): State<Arc<Mutex<TargetState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (answer, hang, delay) = {
        let mut s = state.lock().unwrap();
        s.arrived += 1;
        let text = String::from_utf8_lossy(&body);
        let answer = if let Some(scripted) = s.script.pop_front() {
            scripted
        } else if let Some((_, refusal)) =
            s.refuse.as_ref().filter(|(r, _)| text.contains(r.as_str()))
        {
            *refusal
        } else if s
            .unavailable_for
            .as_ref()
            .is_some_and(|r| text.contains(r.as_str()))
        {
            StatusCode::SERVICE_UNAVAILABLE
        } else if let Some((share, rng)) = &mut s.flaky
            && rng.f64() < *share
        {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        // Kept on arrival: what a target received stays received, even if the sender
        // gives up on the answer.
        if !s.hang {
            s.attempts
                .push((headers.clone(), body.clone(), answer.as_u16()));
            if answer == StatusCode::OK {
                s.received.push((headers, body));
            }
        }
        (answer, s.hang, s.delay)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(delay).await;
    answer
}

impl Target {
    pub async fn start(addr: SocketAddr, state: Arc<Mutex<TargetState>>) -> Target {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/in", axum::routing::post(receive))
            .with_state(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Target {
            addr,
            state,
            stop,
            task,
        }
    }

    /// Stops listening and closes every connection: the target is down.
    pub async fn stop(self) -> (SocketAddr, Arc<Mutex<TargetState>>) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
        (self.addr, self.state)
    }

    pub fn url(&self) -> String {
        format!("http://{}/in", self.addr)
    }

    /// The `X-Innohook-Seq` of every request answered 200, in order.
    pub fn received_seqs(&self) -> Vec<i64> {
        let mut seqs: Vec<i64> = self
            .state
            .lock()
            .unwrap()
            .received
            .iter()
            .map(|(h, _)| h["x-innohook-seq"].to_str().unwrap().parse().unwrap())
            .collect();
        seqs.sort_unstable();
        seqs
    }

    /// The envelope ids received (`X-Innohook-Event-Id`).
    pub fn received_ids(&self) -> HashSet<String> {
        self.state
            .lock()
            .unwrap()
            .received
            .iter()
            .map(|(h, _)| h["x-innohook-event-id"].to_str().unwrap().to_owned())
            .collect()
    }
}

/// Raises this process's soft open-file limit to its hard one: a test that opens hundreds
/// of connections must not take the descriptors the other tests need.
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A load that outlives the server it started on: `messages` messages, each posted as
/// `delivered` then `read` (so each message's two events are committed in that order), by
/// 8 senders, each event posted until it is answered 200, to whichever server
/// [`Load::point_to`] last named. For the sinks' tests through a SIGKILL and a restart.
pub struct Load {
    addr: Arc<std::sync::Mutex<SocketAddr>>,
    acked: Arc<std::sync::atomic::AtomicUsize>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub const SENDERS: usize = 8;

    /// Message ids `load-{sender}-{n}`; the events' keys `load-{sender}-{n}:{status}`.
    pub fn start(addr: SocketAddr, messages: usize) -> Load {
        let addr = Arc::new(std::sync::Mutex::new(addr));
        let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let senders = (0..Self::SENDERS)
            .map(|t| {
                let (addr, acked) = (addr.clone(), acked.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    for n in (0..messages).filter(|n| n % Self::SENDERS == t) {
                        let msg = format!("load-{t}-{n}");
                        for status in ["delivered", "read"] {
                            let body =
                                status_event(&format!("{msg}-{status}"), &msg, status).to_string();
                            loop {
                                let at = *addr.lock().unwrap();
                                let res = client
                                    .post(format!("http://{at}/webhook"))
                                    .header("content-type", "application/json")
                                    .body(body.clone())
                                    .send()
                                    .await;
                                if res.is_ok_and(|r| r.status() == 200) {
                                    acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            addr,
            acked,
            senders,
        }
    }

    /// Events answered 200 so far.
    pub fn acked(&self) -> usize {
        self.acked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends what is left to the server at `addr` (one started after a kill).
    pub fn point_to(&self, addr: SocketAddr) {
        *self.addr.lock().unwrap() = addr;
    }

    /// Waits until every event was answered 200.
    pub async fn finish(self) {
        for s in self.senders {
            s.await.unwrap();
        }
    }

    /// Every event's key, `{message id}:{status}`.
    pub fn keys(messages: usize) -> Vec<String> {
        (0..messages)
            .flat_map(|n| {
                let msg = format!("load-{}-{n}", n % Self::SENDERS);
                [format!("{msg}:delivered"), format!("{msg}:read")]
            })
            .collect()
    }
}

/// Checks that every key arrived and that each message's `delivered` came before its
/// `read`, in `arrived` (keys in arrival order, repeats included); returns how many
/// arrived more than once.
pub fn check_arrivals(messages: usize, arrived: &[String]) -> usize {
    let mut first: std::collections::HashMap<&str, usize> = Default::default();
    for (i, key) in arrived.iter().enumerate() {
        first.entry(key.as_str()).or_insert(i);
    }
    for key in Load::keys(messages) {
        assert!(first.contains_key(key.as_str()), "{key} never arrived");
    }
    for n in 0..messages {
        let msg = format!("load-{}-{n}", n % Load::SENDERS);
        assert!(
            first[format!("{msg}:delivered").as_str()] < first[format!("{msg}:read").as_str()],
            "{msg}: read arrived before delivered"
        );
    }
    arrived.len() - first.len()
}

/// Says on the terminal, past the test harness's capture (which takes only `print!` and
/// `eprint!`), that `test` did not run and why, so a plain `cargo test` shows each skip:
/// `skipped TEST: WHY`.
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped {test}: {why}");
}

/// A server (in this process) with these `[[sinks]]`.
pub async fn app_with_sinks(toml: &str) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.sinks = parse_sinks(toml);
    TestApp::spawn(config, dir).await
}

/// Checks that `check-config` and `serve` both refuse a config with this `[[sinks]]`
/// entry, each saying `says`.
pub fn refused_by_check_config_and_serve(sink: &str, says: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &format!("{}{sink}", server_toml(dir.path())));
    let out = innohook()
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(says), "check-config: {text}");
    let out = innohook().arg("--config").arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(err.contains(says), "serve: {err}");
}
