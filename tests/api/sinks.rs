//! Sinks over real loopback HTTP and real files: outages, refusals, replay, a hanging
//! sink, filters, rotation, and the file sink across SIGKILL.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use innohook::store::{Progress, UndeliveredEvent};
use serde_json::{Value, json};

use crate::helpers::*;

fn forward_toml(url: &str) -> String {
    format!(
        "[[sinks]]\ntype = \"forward\"\nname = \"crm\"\nurl = \"{url}\"\nbackoff_initial_ms = 50\nbackoff_max_ms = 400\nmax_attempts = 1000\ntimeout_secs = 2\n[sinks.headers]\nX-Api-Key = \"k1\"\n"
    )
}

async fn app_with_sinks(toml: &str) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.sinks = parse_sinks(&toml.replace("$DIR", &dir.path().display().to_string()));
    TestApp::spawn(config, dir).await
}

async fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The complete lines of a JSON-lines file (a line still being written is left out).
fn file_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_goes_down_and_comes_back_gets_every_event() {
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    let app =
        app_with_sinks(&forward_toml(&target.url()).replace("\"crm\"", "\"crm-outage\"")).await;
    let (addr, state) = target.stop().await;

    let mut sent = Vec::new();
    for i in 0..20 {
        let body = status_event(&format!("env-{i}"), &format!("msg-{i}"), "read").to_string();
        assert_eq!(app.post(body.clone()).await.status(), 200);
        sent.push(body);
    }
    // The target stays down while the sink retries, several times over.
    app.scrape_until(&retried_series("crm-outage"), 5.0).await;
    assert!(state.lock().unwrap().received.is_empty());
    let target = Target::start(addr, state).await;
    wait_for("all 20 events at the target", 30, || {
        target.received_ids().len() == 20
    })
    .await;

    let received = target.state.lock().unwrap().received.clone();
    for (i, body) in sent.iter().enumerate() {
        let (headers, got) = received
            .iter()
            .find(|(h, _)| h["x-innohook-event-id"] == format!("env-{i}").as_str())
            .unwrap();
        // Unique per stored event: body.id and status.
        assert_eq!(headers["idempotency-key"], format!("msg-{i}:read").as_str());
        assert_eq!(got, body.as_bytes(), "byte for byte");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-api-key"], "k1");
        assert_eq!(headers["x-innohook-seq"], (i + 1).to_string().as_str());
    }
    assert!(app.store.dead_letters().await.unwrap().is_empty());
}

/// The series counting `sink`'s retries (once per event per retry).
fn retried_series(sink: &str) -> String {
    format!("innohook_sink_retried_total{{sink=\"{sink}\"}}")
}

/// A forward sink named `name` with quick retries and `extra` keys.
fn quick_retry_toml(url: &str, name: &str, extra: &str) -> String {
    format!(
        "[[sinks]]\ntype = \"forward\"\nname = \"{name}\"\nurl = \"{url}\"\nbackoff_initial_ms = 5\nbackoff_max_ms = 10\n{extra}"
    )
}

/// An envelope id is any JSON string, but a header value is printable ASCII: an id with
/// a control character or a letter outside ASCII still goes out (the request could not
/// be built, and its event was retried for an hour), its X-Innohook-Event-Id
/// percent-encoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_id_outside_printable_ascii_goes_out_percent_encoded() {
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    let app = app_with_sinks(&forward_toml(&target.url()).replace("\"crm\"", "\"crm-keys\"")).await;
    let body = status_event("e\u{1}-café 50%", "msg-k", "read").to_string();
    assert_eq!(app.post(body.clone()).await.status(), 200);
    wait_for("the event at the target", 10, || {
        !target.state.lock().unwrap().received.is_empty()
    })
    .await;
    let (headers, got) = target.state.lock().unwrap().received[0].clone();
    assert_eq!(headers["x-innohook-event-id"], "e%01-caf%C3%A9 50%25");
    assert_eq!(headers["idempotency-key"], "msg-k:read");
    assert_eq!(got, body.as_bytes(), "byte for byte");
}

/// By default only `max_age_secs` (an hour) ends the retries: a target down for many
/// more attempts than the ten an earlier default allowed still gets its event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_retries_go_on_until_max_age() {
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    let app = app_with_sinks(&quick_retry_toml(&target.url(), "patient", "")).await;
    let (addr, state) = target.stop().await;
    let body = status_event("env-p", "msg-p", "read").to_string();
    assert_eq!(app.post(body).await.status(), 200);
    app.scrape_until(&retried_series("patient"), 40.0).await;
    let target = Target::start(addr, state).await;
    wait_for("the event at the target", 10, || {
        target.received_ids().len() == 1
    })
    .await;
    assert!(app.store.dead_letters().await.unwrap().is_empty());
}

/// With `max_attempts` set, the event becomes a dead letter after that many attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_when_set_ends_the_retries() {
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    let url = target.url();
    let toml = quick_retry_toml(&url, "hasty", "max_attempts = 3\n");
    let app = app_with_sinks(&toml).await;
    target.stop().await;
    let body = status_event("env-h", "msg-h", "read").to_string();
    assert_eq!(app.post(body).await.status(), 200);
    let dead = poll_until("a dead letter", 10, async || {
        let dead = app.store.dead_letters().await.unwrap();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].sink.as_deref(), dead[0].code.as_str()),
        (Some("hasty"), "retries_exhausted")
    );
    // The last error says what went wrong down the chain, not only "error sending request".
    let reason = &dead[0].reason;
    assert!(
        reason.starts_with(&format!("POST {url}")) && reason.contains("refused"),
        "{reason}"
    );
    // Three attempts: the first and two retries.
    let retried = metric(&app.scrape().await, &retried_series("hasty"));
    assert_eq!(retried, 2.0);
}

/// 503, 500, 429 and 408 say "not now": the forward sink retries through each of them,
/// the event arrives, nothing is dead-lettered, and each failed answer counts one retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_throttling_and_timeouts_are_retried_until_delivered() {
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    let failures = [503, 500, 429, 408].map(|s| axum::http::StatusCode::from_u16(s).unwrap());
    target.state.lock().unwrap().script = failures.into();
    let app = app_with_sinks(&quick_retry_toml(&target.url(), "not-now", "")).await;
    let body = status_event("env-n", "msg-n", "read").to_string();
    assert_eq!(app.post(body).await.status(), 200);
    wait_for("the event at the target", 10, || {
        target.received_ids().len() == 1
    })
    .await;
    assert_eq!(target.state.lock().unwrap().arrived, 5);
    assert!(app.store.dead_letters().await.unwrap().is_empty());
    let retried = app.scrape_until(&retried_series("not-now"), 4.0).await;
    assert_eq!(metric(&retried, &retried_series("not-now")), 4.0);
}

/// A clean stop sends nothing twice and loses nothing: a delivery in flight at the stop
/// finishes and is recorded, and events still owed when a stop comes during the backoff
/// are sent at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_sends_nothing_twice() {
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    target.state.lock().unwrap().delay = Duration::from_millis(300);
    // A minute between attempts: a stop always comes during the backoff.
    let toml = quick_retry_toml(&target.url(), "stopping", "")
        .replace("backoff_initial_ms = 5\n", "backoff_initial_ms = 60000\n")
        .replace("backoff_max_ms = 10\n", "backoff_max_ms = 60000\n");
    let app = app_with_sinks(&toml).await;
    let state = target.state.clone();
    let arrived = |n: usize| {
        let state = state.clone();
        move || state.lock().unwrap().arrived >= n
    };
    let post = async |app: &TestApp, msg: &str| {
        let event = status_event(&format!("env-{msg}"), msg, "read");
        assert_eq!(app.post(event.to_string()).await.status(), 200);
    };

    // Stopped while the target takes its time to answer event 1.
    post(&app, "m1").await;
    wait_for("event 1 at the target", 10, arrived(1)).await;
    let (config, dir) = app.stop().await;

    // Event 2 is delivered slowly again; 3 and 4 are committed meanwhile and go out
    // together next: both are refused for now and wait a minute to be retried (the
    // target is failing: no event got through). Then the stop.
    let app = TestApp::spawn(config, dir).await;
    post(&app, "m2").await;
    wait_for("event 2 at the target", 10, arrived(2)).await;
    assert_eq!(target.received_seqs(), [1, 2], "event 1 once");
    target.state.lock().unwrap().refuse =
        Some(("late-".into(), axum::http::StatusCode::SERVICE_UNAVAILABLE));
    post(&app, "late-3").await;
    post(&app, "late-4").await;
    app.scrape_until(&retried_series("stopping"), 2.0).await;
    assert_eq!(target.received_seqs(), [1, 2]);
    let (config, dir) = app.stop().await;

    {
        let mut state = target.state.lock().unwrap();
        state.refuse = None;
        state.delay = Duration::ZERO;
    }
    let app = TestApp::spawn(config, dir).await;
    post(&app, "m5").await;
    poll_until("the cursor at event 5", 10, async || {
        (app.store.sink_cursor("stopping").await.unwrap() == Some(5)).then_some(())
    })
    .await;
    assert_eq!(target.received_seqs(), [1, 2, 3, 4, 5], "each event once");
}

/// Sinks take new events from the store's in-memory window of recent events, which keeps
/// at most 4096 events or 16 MiB of bodies. A sink that falls further behind while the
/// server runs reads the rest from the store: every event still arrives exactly once.
/// With batches of 4, the sink's position falls below the window's floor between
/// deliveries, and it must read the store instead of skipping to what the window holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_left_behind_the_in_memory_window_catches_up_from_the_store() {
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.server.max_body_bytes = 1 << 20;
    // Small batches, so that most rounds look in the window first; a long timeout, so
    // that a slow 1 MB delivery is not sent twice.
    let toml = forward_toml(&target.url())
        .replace("\"crm\"", "\"crm-behind\"")
        .replace("timeout_secs = 2", "timeout_secs = 30\nbatch_size = 4");
    config.sinks = parse_sinks(&toml);
    let app = TestApp::spawn(config, dir).await;
    let (addr, state) = target.stop().await;

    // 24 events of ~1 MB: 24 MB, more than the window holds, while the target is down.
    const EVENTS: usize = 24;
    let padding = "x".repeat(1_000_000);
    for i in 0..EVENTS {
        let mut event = status_event(&format!("env-{i}"), &format!("msg-{i}"), "read");
        event["body"]["padding"] = padding.as_str().into();
        assert_eq!(app.post(event.to_string()).await.status(), 200);
    }
    let target = Target::start(addr, state).await;
    wait_for("every event at the target", 30, || {
        target.received_ids().len() == EVENTS
    })
    .await;

    let received = std::mem::take(&mut target.state.lock().unwrap().received);
    let mut seqs: Vec<usize> = received
        .iter()
        .map(|(h, _)| h["x-innohook-seq"].to_str().unwrap().parse().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=EVENTS).collect::<Vec<_>>(), "each event once");
    for (headers, body) in &received {
        let sent: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(sent["id"], headers["x-innohook-event-id"].to_str().unwrap());
        assert_eq!(
            sent["body"]["padding"].as_str().map(str::len),
            Some(1_000_000)
        );
    }
    assert!(app.store.dead_letters().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_is_a_dead_letter_until_replayed() {
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    target.state.lock().unwrap().refuse("msg-bad");
    let toml = forward_toml(&target.url());
    let app = app_with_sinks(&toml).await;
    app.post(status_event("e-bad", "msg-bad", "read").to_string())
        .await;
    app.post(status_event("e-good", "msg-good", "read").to_string())
        .await;
    wait_for("the good event", 10, || {
        target.received_ids().contains("e-good")
    })
    .await;
    let dead = poll_until("a dead letter", 10, async || {
        let dead = app.store.dead_letters().await.unwrap();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].source.as_str(), dead[0].sink.as_deref()),
        ("sink", Some("crm"))
    );
    assert_eq!(dead[0].event_seq, Some(1));
    assert_eq!(dead[0].code, "rejected_by_sink");
    assert!(dead[0].reason.contains("400"), "{}", dead[0].reason);

    // The target is fixed; `innohook replay` puts the event back in the queue.
    target.state.lock().unwrap().refuse = None;
    let config = write_config(
        app.dir.path(),
        &format!("[store]\ndir = {:?}\n{toml}", app.config.store.dir),
    );
    let out = innohook()
        .args(["replay", "--sink", "crm", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("1 dead letter(s) queued"));
    wait_for("the replayed event", 10, || {
        target.received_ids().contains("e-bad")
    })
    .await;
    assert!(
        app.store.dead_letters().await.unwrap()[0]
            .replayed_at
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_sink_does_not_delay_the_others() {
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    target.state.lock().unwrap().hang = true;
    let toml = format!(
        "[[sinks]]\ntype = \"forward\"\nurl = \"{}\"\ntimeout_secs = 60\n[[sinks]]\ntype = \"file\"\npath = \"$DIR/events.jsonl\"\n",
        target.url()
    );
    let app = app_with_sinks(&toml).await;
    for i in 0..50 {
        app.post(status_event(&format!("e{i}"), &format!("m{i}"), "read").to_string())
            .await;
    }
    let path = app.dir.path().join("events.jsonl");
    // The forward sink is stuck on its first request for a minute; the file sink is not.
    wait_for("50 lines from the file sink", 10, || {
        file_lines(&path).len() == 50
    })
    .await;
}

#[tokio::test]
async fn the_file_sink_writes_each_event_once_as_received_and_honours_filters() {
    let toml = "[[sinks]]\ntype = \"file\"\npath = \"$DIR/all.jsonl\"\n\
                [[sinks]]\ntype = \"file\"\nname = \"failures\"\npath = \"$DIR/failed.jsonl\"\nstatuses = [\"failed\", \"SMECL:FAILED\"]\n";
    let app = app_with_sinks(toml).await;
    for name in ["delivered", "read", "failed"] {
        assert_eq!(app.post(seed_bytes(name)).await.status(), 200);
    }
    let big = r#"{"id": "x", "type": "whatsapp_unlisted_event", "body": {"n": 123456789012345678901234567890}}"#;
    assert_eq!(app.post(big).await.status(), 200);
    let all = app.dir.path().join("all.jsonl");
    wait_for("4 lines", 10, || file_lines(&all).len() == 4).await;
    let lines = file_lines(&all);
    for (i, name) in ["delivered", "read", "failed"].iter().enumerate() {
        assert_eq!(lines[i]["seq"], i as i64 + 1);
        assert_eq!(lines[i]["event"], seed(name), "every field, same values");
        assert!(lines[i]["receivedAt"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(lines[0]["warnings"][0]["field"], "body.currency");
    let text = std::fs::read_to_string(&all).unwrap();
    assert!(
        text.contains("123456789012345678901234567890"),
        "every digit"
    );
    // A body already on one line is written byte for byte (spaces and all).
    assert!(
        text.lines()
            .nth(3)
            .unwrap()
            .contains(&format!(r#""event":{big},"#)),
        "{text}"
    );

    let failed = app.dir.path().join("failed.jsonl");
    wait_for("the failure", 10, || file_lines(&failed).len() == 1).await;
    assert_eq!(file_lines(&failed)[0]["event"]["body"]["status"], "failed");
}

/// A body over several lines, with an escape a JSON value cannot hold in an undocumented
/// field: the file sink and `/api/events` both show it as received, line breaks as spaces.
#[tokio::test]
async fn a_body_over_several_lines_is_written_and_shown_as_received() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.api.token = Some("t".into());
    config.sinks = parse_sinks(&format!(
        "[[sinks]]\ntype = \"file\"\npath = \"{}\"\n",
        dir.path().join("all.jsonl").display()
    ));
    let app = TestApp::spawn(config, dir).await;
    let seed = String::from_utf8(seed_bytes("read")).unwrap();
    assert!(seed.contains('\n'));
    let body = seed.replacen(
        "\"status\": \"read\",",
        "\"status\": \"read\",\r\n  \"note\": \"\\ud800\", \"n\": 12345678901234567890123,",
        1,
    );
    assert_ne!(body, seed);
    let (status, answer) = answer(app.post(body.clone()).await).await;
    assert_eq!(status, 200, "{answer}");
    let one_line = body.replace(['\r', '\n'], " ");
    let event = format!(r#""event":{}"#, one_line.trim());

    let path = app.dir.path().join("all.jsonl");
    wait_for("the line", 10, || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.ends_with('\n'))
    })
    .await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(&format!("{event},")), "{text}");

    let res = app
        .client
        .get(app.url("/api/events"))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let shown = res.text().await.unwrap();
    assert!(shown.contains(&format!("{event}}}")), "{shown}");

    // The file's last seq is read back despite the escape: started on another (empty)
    // store, the sink sees a file ahead of it instead of appending seq 1 again.
    let (mut config, dir) = app.stop().await;
    config.store.dir = dir.path().join("another-store");
    let refused = innohook::server::App::build(config)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{refused:#}").contains("was the store replaced?"),
        "{refused:#}"
    );
}

/// What a sink gets for the keys left out: the defaults README and config.example.toml
/// state.
#[test]
fn sink_keys_left_out_take_the_stated_defaults() {
    let parsed = parse_sinks(
        "[[sinks]]\ntype = \"file\"\npath = \"f.jsonl\"\n[[sinks]]\ntype = \"forward\"\nurl = \"http://x/\"\n",
    );
    let kinds: Vec<Value> = parsed
        .iter()
        .map(|s| serde_json::to_value(&s.kind).unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            serde_json::json!({"type": "file", "path": "f.jsonl", "fsync": "always",
                               "max_bytes": 104_857_600, "keep": 5}),
            serde_json::json!({"type": "forward", "url": "http://x/", "headers": {},
                               "timeout_secs": 10, "concurrency": 4, "signing_secret": null}),
        ]
    );
}

#[tokio::test]
async fn the_file_sink_rotates_by_size_and_keeps_order() {
    // And one with max_bytes = 0, which never rotates.
    let toml = "[[sinks]]\ntype = \"file\"\npath = \"$DIR/r.jsonl\"\nmax_bytes = 3000\nkeep = 50\nbatch_size = 1\n\
                [[sinks]]\ntype = \"file\"\nname = \"never\"\npath = \"$DIR/n.jsonl\"\nmax_bytes = 0\nbatch_size = 1\n";
    let app = app_with_sinks(toml).await;
    for i in 0..20 {
        app.post(status_event(&format!("e{i}"), &format!("m{i}"), "read").to_string())
            .await;
    }
    let path = app.dir.path().join("r.jsonl");
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    let all_seqs = || -> Vec<i64> {
        let mut files: Vec<PathBuf> = (1..=50).rev().map(rotated).filter(|p| p.exists()).collect();
        files.push(path.clone());
        files
            .iter()
            .flat_map(|f| file_lines(f))
            .map(|l| l["seq"].as_i64().unwrap())
            .collect()
    };
    wait_for("20 lines across the files", 10, || all_seqs().len() == 20).await;
    assert_eq!(all_seqs(), (1..=20).collect::<Vec<_>>());
    assert!(rotated(2).exists());
    assert!(std::fs::metadata(rotated(1)).unwrap().len() >= 3000);
    let never = app.dir.path().join("n.jsonl");
    wait_for("20 lines in one file", 10, || {
        file_lines(&never).len() == 20
    })
    .await;
    assert!(!app.dir.path().join("n.jsonl.1").exists());
}

/// A line longer than the 64 KiB the start reads first from the end of the file (an
/// event near the default max_body_bytes already makes one) still gives its seq back:
/// started on another, empty store, the sink sees a file ahead of it.
#[tokio::test]
async fn a_last_line_longer_than_64_kib_is_read_back_at_the_start() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.server.max_body_bytes = 1 << 20;
    config.sinks = parse_sinks(&format!(
        "[[sinks]]\ntype = \"file\"\npath = \"{}\"\n",
        dir.path().join("long.jsonl").display()
    ));
    let app = TestApp::spawn(config, dir).await;
    let mut event = status_event("e-long", "m-long", "read");
    event["body"]["padding"] = "x".repeat(300_000).into();
    assert_eq!(app.post(event.to_string()).await.status(), 200);
    let path = app.dir.path().join("long.jsonl");
    wait_for("the long line", 10, || file_lines(&path).len() == 1).await;
    let (mut config, dir) = app.stop().await;
    config.store.dir = dir.path().join("another-store");
    let refused = innohook::server::App::build(config)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{refused:#}").contains("already holds event 1"),
        "{refused:#}"
    );
}

/// A crash can leave half a line at the end of the file (power lost in the middle of a
/// write; a killed process does not split a write to a regular file, so the SIGKILL test
/// never tears one). Torn here by hand between a stop and a start: the start cuts it
/// off, every line parses, and the seqs run on without a gap or a repeat.
#[tokio::test]
async fn a_torn_last_line_is_cut_off_at_the_next_start() {
    let app =
        app_with_sinks("[[sinks]]\ntype = \"file\"\nname = \"torn\"\npath = \"$DIR/t.jsonl\"\n")
            .await;
    let path = app.dir.path().join("t.jsonl");
    let post = async |app: &TestApp, i: usize| {
        let event = status_event(&format!("e{i}"), &format!("m{i}"), "read");
        assert_eq!(app.post(event.to_string()).await.status(), 200);
    };
    for i in 1..=2 {
        post(&app, i).await;
    }
    wait_for("2 lines", 10, || file_lines(&path).len() == 2).await;
    let (config, dir) = app.stop().await;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, br#"{"seq":3,"receivedAt":"2026-01-01T00:"#).unwrap();
    drop(file);

    let app = TestApp::spawn(config, dir).await;
    for i in 3..=4 {
        post(&app, i).await;
    }
    let text = poll_until("4 lines", 10, async || {
        let text = std::fs::read_to_string(&path).unwrap();
        (text.matches('\n').count() >= 4).then_some(text)
    })
    .await;
    let seqs: Vec<i64> = text
        .lines()
        .map(|l| {
            let line: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            line["seq"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
}

/// The file sink opens its file before the server says "Listening.": a torn last line is
/// reported then, and only when there is one (a false report on every start would teach
/// people to ignore the real one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_is_reported_only_when_there_is_one() {
    const TORN: &str = "Cutting off a torn last line";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let toml = server_toml(dir.path()) + &format!("[[sinks]]\ntype = \"file\"\npath = {file:?}\n");
    let config = write_config(dir.path(), &toml);
    for (run, tear) in [(1, false), (2, false), (3, true), (4, false)] {
        if tear {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .unwrap();
            // Longer than the 64 KiB read from the end at first (a crash in a long line).
            let torn = format!("{{\"seq\":9,\"body\":\"{}", "x".repeat(100_000));
            std::io::Write::write_all(&mut f, torn.as_bytes()).unwrap();
        }
        let server = BinaryServer::start(&config);
        assert_eq!(server.logged(TORN), tear, "start {run}");
        let event = status_event(&format!("e{run}"), &format!("m{run}"), "read");
        assert_eq!(server.post(event.to_string()).await.status(), 200);
        // Every line written, nothing in flight: the kill leaves a whole file.
        wait_for("the line", 10, || file_lines(&file).len() == run).await;
        server.kill();
    }
    let seqs: Vec<i64> = file_lines(&file)
        .iter()
        .map(|l| l["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_sink_has_no_missing_and_no_duplicate_line_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out/events.jsonl");
    let toml = server_toml(dir.path())
        + &format!("[[sinks]]\ntype = \"file\"\npath = {file:?}\nbatch_size = 16\n");
    let config = write_config(dir.path(), &toml);
    let server = BinaryServer::start(&config);
    let url = format!("http://{}/webhook", server.addr);
    let acked = Arc::new(Mutex::new(0usize));
    let mut senders = Vec::new();
    for s in 0..8 {
        let (url, acked) = (url.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..100_000 {
                let event = status_event(&format!("e-{s}-{i}"), &format!("m-{s}-{i}"), "read");
                match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(event.to_string())
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => *acked.lock().unwrap() += 1,
                    _ => return,
                }
            }
        }));
    }
    wait_for("events flowing", 60, || {
        *acked.lock().unwrap() >= 300 && !file_lines(&file).is_empty()
    })
    .await;
    server.kill();
    for s in senders {
        s.await.unwrap();
    }

    let server = BinaryServer::start(&config);
    for i in 0..5 {
        let event = status_event(&format!("after-{i}"), &format!("after-{i}"), "read");
        assert_eq!(server.post(event.to_string()).await.status(), 200);
    }
    let stored = open_store(&dir.path().join("store"))
        .await
        .count_events()
        .await
        .unwrap();
    assert!(stored >= 305);
    wait_for("the file to catch up", 30, || {
        file_lines(&file).len() as i64 >= stored
    })
    .await;
    let seqs: Vec<i64> = file_lines(&file)
        .iter()
        .map(|l| l["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=stored).collect::<Vec<_>>(),
        "each event exactly once, in order"
    );
    server.kill();
}

/// A file that got further than the store heard (the server died between an append and
/// recording it) keeps its place after a replayed line is appended and the server
/// restarts: the start records how far the file got before anything is appended.
#[tokio::test]
async fn a_file_ahead_of_its_cursor_is_not_written_again_after_a_replay() {
    let app =
        app_with_sinks("[[sinks]]\ntype = \"file\"\nname = \"f\"\npath = \"$DIR/f.jsonl\"\n").await;
    for (i, status) in ["delivered", "read", "failed"].into_iter().enumerate() {
        let event = status_event(&format!("e{i}"), &format!("m{i}"), status);
        assert_eq!(app.post(event.to_string()).await.status(), 200);
    }
    let path = app.dir.path().join("f.jsonl");
    wait_for("3 lines", 10, || file_lines(&path).len() == 3).await;
    let (config, dir) = app.stop().await;

    // As the crash leaves it: the store's cursor behind the file. And event 1, a dead
    // letter of the sink, is queued for replay.
    let store = open_store(&config.store.dir).await;
    let lease = store.claim_sink("f").await.unwrap().unwrap();
    let progress = Progress {
        cursor: Some(0),
        dead: vec![UndeliveredEvent {
            seq: 1,
            code: innohook::store::Undelivered::RejectedBySink,
            reason: "test".into(),
            attempts: 1,
            first_attempt_at: chrono::Utc::now(),
        }],
        ..Progress::default()
    };
    store.sink_progress(&lease, progress).await.unwrap();
    assert_eq!(store.replay(Some("f")).await.unwrap(), 1);
    store.close().await;
    let app = TestApp::spawn(config, dir).await;
    wait_for("the replayed line", 10, || file_lines(&path).len() == 4).await;
    let (config, dir) = app.stop().await;

    let app = TestApp::spawn(config, dir).await;
    let event = status_event("e3", "m3", "read");
    assert_eq!(app.post(event.to_string()).await.status(), 200);
    wait_for("the new event's line", 10, || {
        file_lines(&path).last().is_some_and(|l| l["seq"] == 4)
    })
    .await;
    let seqs: Vec<i64> = file_lines(&path)
        .iter()
        .map(|l| l["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 1, 4], "events 2 and 3 once each");
}

#[tokio::test]
async fn the_log_sink_writes_a_line_per_event_with_its_status_fields() {
    let dir = tempfile::tempdir().unwrap();
    let toml = server_toml(dir.path()) + "[[sinks]]\ntype = \"log\"\n";
    let server = BinaryServer::start(&write_config(dir.path(), &toml));
    // The seed as it is, and one whose uid and errorCode are JSON integers.
    let numeric = set(seed("failed"), "body.id", "m-2".into());
    let numeric = set(numeric, "body.uid", 42.into());
    let numeric = set(numeric, "body.errorData.errorCode", 131026.into());
    for body in [seed("failed"), numeric] {
        assert_eq!(server.post(body.to_string()).await.status(), 200);
    }
    let logs = server.log_lines.clone();
    let status_lines = || -> Vec<Value> {
        logs.lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "Message status.")
            .collect()
    };
    wait_until("two status lines", Duration::from_secs(10), || {
        status_lines().len() == 2
    });
    let lines = status_lines();
    let wamid = "wamid.HBgNODYxNjY4NTE3NzYxMhUCABEYEjQ0RTYyQTM5QzAyMkU0QkNERgA=";
    let fields = |v: &Value| {
        ["sink", "message_id", "wamid", "status", "uid", "error_code"]
            .map(|k| v[k].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        fields(&lines[0]),
        [
            "log",
            "356139161272397824",
            wamid,
            "failed",
            "2002302023002010121",
            "131014"
        ]
    );
    assert_eq!(
        lines[0]["error_message"],
        "Request for url https://URL.jpg failed with error: 404 (Not Found)"
    );
    assert_eq!(
        fields(&lines[1]),
        ["log", "m-2", wamid, "failed", "42", "131026"]
    );
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[1]["seq"], 2);
}

/// The forward sink keeps each message's order while the target fails at random: a
/// message's delivered, read and failed arrive in commit order however often each is
/// retried, every event arrives, and none is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messages_events_arrive_in_commit_order_through_random_failures() {
    let state = TargetState {
        flaky: Some((0.3, fastrand::Rng::with_seed(11))),
        ..TargetState::default()
    };
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Arc::new(Mutex::new(state))).await;
    let toml = quick_retry_toml(&target.url(), "ordered", "concurrency = 8\n");
    let app = app_with_sinks(&toml).await;
    let messages = 30;
    for status in ["delivered", "read", "failed"] {
        for m in 0..messages {
            let event = status_event(&format!("e-{m}-{status}"), &format!("m{m}"), status);
            assert_eq!(app.post(event.to_string()).await.status(), 200);
        }
    }
    wait_for("every event at the target", 60, || {
        target.state.lock().unwrap().received.len() >= messages * 3
    })
    .await;
    let (attempts, received) = {
        let s = target.state.lock().unwrap();
        (s.attempts.clone(), s.received.clone())
    };
    let failures = attempts.iter().filter(|(_, _, code)| *code == 503).count();
    assert!(failures >= 10, "the target failed only {failures} requests");
    let mut order: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (_, body) in &received {
        let v: Value = serde_json::from_slice(body).unwrap();
        order
            .entry(v["body"]["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(v["body"]["status"].as_str().unwrap().to_owned());
    }
    for (message, statuses) in &order {
        assert_eq!(statuses, &["delivered", "read", "failed"], "{message}");
    }
    assert_eq!(order.len(), messages);
    assert!(app.store.dead_letters().await.unwrap().is_empty());
}

/// One message the target keeps refusing with 503 holds back only its own later events:
/// the other messages, before and after it, arrive meanwhile; it arrives, in order, once
/// the target takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_holds_back_only_its_own_events() {
    let state = TargetState {
        unavailable_for: Some("\"stuck\"".into()),
        ..TargetState::default()
    };
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Arc::new(Mutex::new(state))).await;
    let app = app_with_sinks(&quick_retry_toml(&target.url(), "crm", "")).await;
    let post = |env: &str, msg: &str, status: &str| {
        let body = status_event(env, msg, status).to_string();
        let app = &app;
        async move { assert_eq!(app.post(body).await.status(), 200) }
    };
    post("s1", "stuck", "delivered").await;
    post("a1", "other-a", "delivered").await;
    post("s2", "stuck", "read").await;
    post("b1", "other-b", "read").await;
    wait_for("the other messages", 20, || {
        let ids = target.received_ids();
        ids.contains("a1") && ids.contains("b1")
    })
    .await;
    // Set aside, and retried: the stuck message's read never went before its delivered.
    app.scrape_until("innohook_sink_parked_events{sink=\"crm\"}", 2.0)
        .await;
    post("c1", "other-c", "read").await;
    wait_for("a later message", 20, || {
        target.received_ids().contains("c1")
    })
    .await;
    assert!(!target.received_ids().contains("s1"));
    let attempted_read = target
        .state
        .lock()
        .unwrap()
        .attempts
        .iter()
        .any(|(h, _, _)| h["x-innohook-event-id"] == "s2");
    assert!(!attempted_read, "the read was sent before its delivered");
    target.state.lock().unwrap().unavailable_for = None;
    wait_for("the stuck message, in order", 20, || {
        target.received_ids().contains("s2")
    })
    .await;
    let received = target.state.lock().unwrap().received.clone();
    let ids: Vec<&str> = received
        .iter()
        .map(|(h, _)| h["x-innohook-event-id"].to_str().unwrap())
        .filter(|id| id.starts_with('s'))
        .collect();
    assert_eq!(ids, ["s1", "s2"]);
    app.scrape_until("innohook_sink_delivered_total{sink=\"crm\"}", 5.0)
        .await;
    // The gauge is set when the runner records its progress, just after the delivery.
    poll_until("no parked event left", 10, async || {
        let parked = metric(
            &app.scrape().await,
            "innohook_sink_parked_events{sink=\"crm\"}",
        );
        (parked == 0.0).then_some(())
    })
    .await;
    assert!(app.store.dead_letters().await.unwrap().is_empty());
}

/// InnoPaaS's own delivered and failed examples share one envelope id: the forward sink
/// gives each stored event its own Idempotency-Key, and the envelope id in a header of
/// its own; signatures verify with an implementation of Standard Webhooks that is not
/// innohook's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_per_event_and_signatures_verify() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    // SAFETY: the variable is this test's own; nothing else reads or writes it.
    unsafe { std::env::set_var("INNOHOOK_TEST_SIGNING_SECRET", secret) };
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    let toml = quick_retry_toml(
        &target.url(),
        "signed",
        "signing_secret = \"${INNOHOOK_TEST_SIGNING_SECRET}\"\n",
    );
    let app = app_with_sinks(&toml).await;
    let delivered = seed("delivered");
    let failed = seed("failed");
    assert_eq!(
        delivered["id"], failed["id"],
        "the documentation's examples share an id"
    );
    for body in [&delivered, &failed] {
        assert_eq!(app.post(body.to_string()).await.status(), 200);
    }
    wait_for("both events", 10, || {
        target.state.lock().unwrap().received.len() == 2
    })
    .await;
    let verifier = standardwebhooks::Webhook::new(secret).unwrap();
    let s = target.state.lock().unwrap();
    let mut keys = HashSet::new();
    for (headers, body) in &s.received {
        verifier
            .verify(body, headers)
            .expect("the signature verifies");
        assert_eq!(headers["webhook-id"], headers["idempotency-key"]);
        assert_eq!(
            headers["x-innohook-event-id"],
            delivered["id"].as_str().unwrap()
        );
        keys.insert(headers["idempotency-key"].to_str().unwrap().to_owned());
        // Tampered with, it does not verify.
        let mut forged = body.to_vec();
        forged[0] = b' ';
        assert!(verifier.verify(&forged, headers).is_err());
    }
    assert_eq!(
        keys,
        HashSet::from([
            "356139161272397824:delivered".to_owned(),
            "356139161272397824:failed".to_owned()
        ])
    );
}

/// A sink added to a store that holds events starts with the next event by default, and
/// with the first stored one when `start = "beginning"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sink_starts_now_unless_told_to_start_at_the_beginning() {
    let app = app_with_sinks("sinks = []").await;
    for i in 0..3 {
        let event = status_event(&format!("old-{i}"), &format!("old-{i}"), "read");
        assert_eq!(app.post(event.to_string()).await.status(), 200);
    }
    let (mut config, dir) = app.stop().await;
    let path = |name: &str| dir.path().join(format!("{name}.jsonl"));
    config.sinks = parse_sinks(&format!(
        "[[sinks]]\ntype = \"file\"\nname = \"now\"\npath = {:?}\n[[sinks]]\ntype = \"file\"\nname = \"all\"\npath = {:?}\nstart = \"beginning\"\n",
        path("now"),
        path("all")
    ));
    let app = TestApp::spawn(config, dir.clone()).await;
    let event = status_event("new", "new", "read");
    assert_eq!(app.post(event.to_string()).await.status(), 200);
    wait_for("both files", 10, || {
        file_lines(&path("all")).len() == 4 && file_lines(&path("now")).len() == 1
    })
    .await;
    assert_eq!(file_lines(&path("now"))[0]["seq"], 4);
    // The start is recorded: after a restart "now" does not skip what came meanwhile.
    let (config, dir) = app.stop().await;
    let app = TestApp::spawn(config, dir).await;
    let event = status_event("newer", "newer", "read");
    assert_eq!(app.post(event.to_string()).await.status(), 200);
    wait_for("the next event", 10, || file_lines(&path("now")).len() == 2).await;
}

/// `innohook dead-letters` says which event a sink's dead letter is, with the sink, its
/// attempts, when they were and the last error; `--payload` adds the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_name_the_event_and_the_attempts() {
    let state = TargetState {
        refuse: Some(("bad-msg".into(), axum::http::StatusCode::BAD_REQUEST)),
        ..TargetState::default()
    };
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Arc::new(Mutex::new(state))).await;
    let app = app_with_sinks(&quick_retry_toml(&target.url(), "crm", "")).await;
    let body = status_event("env-bad", "bad-msg", "failed").to_string();
    assert_eq!(app.post(body.clone()).await.status(), 200);
    poll_until("a dead letter", 10, async || {
        (!app.store.dead_letters().await.unwrap().is_empty()).then_some(())
    })
    .await;
    let config = write_config(
        app.dir.path(),
        &format!("[store]\ndir = {:?}\n", app.config.store.dir),
    );
    let run = |args: &[&str]| {
        let out = innohook()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let v: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        v
    };
    let dead = run(&["dead-letters"]);
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d["sink"], "crm");
    assert_eq!(d["code"], "rejected_by_sink");
    assert_eq!(
        d["event"],
        json!({"id": "env-bad", "type": "whatsapp_message_status_updated", "messageId": "bad-msg", "status": "failed"})
    );
    assert_eq!(d["attempts"], 1);
    assert!(
        d["firstAttemptAt"].is_string() && d["createdAt"].is_string(),
        "{d}"
    );
    assert!(d["reason"].as_str().unwrap().contains("400"), "{d}");
    assert!(d.get("body").is_none(), "no body without --payload: {d}");
    let with_payload = run(&["dead-letters", "--payload"]);
    assert_eq!(with_payload[0]["body"], body);
    // One dead letter back in its queue by its id; then it is no longer waiting.
    let id = d["id"].to_string();
    let replay = |args: &[&str]| {
        innohook()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = replay(&["replay", "--id", &id]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("dead letter {id} queued")));
    let out = replay(&["replay", "--id", &id]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("waiting to be replayed"));
    assert!(run(&["dead-letters"])[0]["replayedAt"].is_string());
}
