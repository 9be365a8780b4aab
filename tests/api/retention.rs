//! The retention as a user sees it: old events leaving the store and the API, messages
//! following their own retention, nothing lost by pruning under load, the prune command,
//! and the store's size and free space on /metrics and /readyz.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use innohook::config::Retain;
use serde_json::Value;

use crate::helpers::*;

const TOKEN: &str = "retention-token";

async fn app(retain_events: u64, retain_messages: u64, sinks: &str) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.api.token = Some(TOKEN.into());
    config.store.retain_events = Retain(Some(Duration::from_secs(retain_events)));
    config.store.retain_messages = Retain(Some(Duration::from_secs(retain_messages)));
    let toml = sinks.replace("$DIR", &dir.path().display().to_string());
    config.sinks = parse_sinks(&toml);
    TestApp::spawn(config, dir).await
}

/// A status event that happened now (the seeds' eventTime is years old, and messages are
/// kept by the time of their last event).
fn event_now(env: &str, msg: &str, status: &str) -> Value {
    let now = innohook::event::format_time(&chrono::Utc::now());
    set(status_event(env, msg, status), "eventTime", now.into())
}

async fn get(app: &TestApp, path: &str) -> (u16, String) {
    let res = app.get_with_token(TOKEN, path).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Events older than their retention leave the store and /api/events; the message and
/// its batch stay until their own retention, then leave /api and the CSV too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_events_leave_and_messages_follow_their_own_retention() {
    let app = app(1, 6, "sinks = []").await;
    for (i, s) in ["delivered", "read"].iter().enumerate() {
        let event = set(
            event_now(&format!("e{i}"), "m1", s),
            "body.uid",
            "camp".into(),
        );
        assert_eq!(app.post(event.to_string()).await.status(), 200);
    }
    let (_, events) = get(&app, "/api/events").await;
    assert_eq!(
        serde_json::from_str::<Value>(&events).unwrap()["events"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // All but the newest, which stays until another comes (its seq is never reused).
    poll_until("the events to go", 10, async || {
        (app.stored().await == 1).then_some(())
    })
    .await;
    let (_, events) = get(&app, "/api/events").await;
    assert_eq!(
        serde_json::from_str::<Value>(&events).unwrap()["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get(&app, "/api/messages/m1").await.0,
        200,
        "the message outlives its events"
    );
    assert_eq!(get(&app, "/api/batches/camp/messages.csv").await.0, 200);
    poll_until("the message to go", 15, async || {
        (get(&app, "/api/messages/m1").await.0 == 404).then_some(())
    })
    .await;
    assert_eq!(get(&app, "/api/batches/camp").await.0, 404);
    assert_eq!(get(&app, "/api/batches/camp/messages.csv").await.0, 404);
}

/// Pruning and ingest at once: every event answered 200 reaches the file sink exactly
/// once, and the store is pruned meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_under_load_loses_nothing_for_a_sink() {
    let app = Arc::new(
        app(
            1,
            3600,
            "[[sinks]]\ntype = \"file\"\nname = \"f\"\npath = \"$DIR/f.jsonl\"\n",
        )
        .await,
    );
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let (app, acked, stop) = (app.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let msg = format!("m{t}-{i}");
                    i += 1;
                    if app
                        .post(event_now(&msg, &msg, "read").to_string())
                        .await
                        .status()
                        == 200
                    {
                        acked.lock().unwrap().push(msg);
                    }
                }
            })
        })
        .collect();
    app.scrape_until("innohook_store_pruned_total{table=\"events\"}", 500.0)
        .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let path = app.dir.path().join("f.jsonl");
    let lines = poll_until("every event in the file", 30, async || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines.len() >= acked.len()).then_some(lines)
    })
    .await;
    let mut times: HashMap<&str, usize> = HashMap::new();
    for l in &lines {
        *times
            .entry(l["event"]["body"]["id"].as_str().unwrap())
            .or_default() += 1;
    }
    for msg in &acked {
        assert_eq!(times.get(msg.as_str()), Some(&1), "{msg}");
    }
    assert_eq!(lines.len(), acked.len());
    assert!(
        (app.stored().await as usize) < acked.len(),
        "nothing was pruned"
    );
}

/// `innohook prune --dry-run` says what a pass would remove, `prune` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prune_command_says_what_it_removes() {
    let app = app(3600, 3600, "sinks = []").await;
    for i in 0..3 {
        let event = event_now(&format!("e{i}"), &format!("m{i}"), "read");
        assert_eq!(app.post(event.to_string()).await.status(), 200);
    }
    let (config, dir) = app.stop().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let file = write_config(
        dir.path(),
        &format!(
            "sinks = []\n[store]\ndir = {:?}\nretain_events = \"1s\"\nretain_messages = \"1s\"\n",
            config.store.dir
        ),
    );
    let run = |args: &[&str]| {
        let out = innohook()
            .arg("--config")
            .arg(&file)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        run(&["prune", "--dry-run"]),
        "Would remove 2 events, 3 messages, 1 batches, 0 inbound messages, 0 template events, 0 dead letters.\n"
    );
    assert_eq!(
        run(&["prune"]),
        "Removed 2 events, 3 messages, 1 batches, 0 inbound messages, 0 template events, 0 dead letters.\n"
    );
    assert_eq!(
        run(&["prune", "--dry-run"]),
        "Would remove 0 events, 0 messages, 0 batches, 0 inbound messages, 0 template events, 0 dead letters.\n"
    );
}

/// The store's size, rows and free space are on /metrics from the start; below
/// min_free_percent /readyz still answers ready, and says why it should not be ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_and_free_space_are_measured_and_low_space_is_said() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.store.min_free_percent = 100.0;
    let app = TestApp::spawn(config, dir).await;
    assert_eq!(app.post(seed_bytes("read")).await.status(), 200);
    let text = app.scrape_until("innohook_store_low_disk", 1.0).await;
    assert!(metric(&text, "innohook_store_size_bytes") > 0.0, "{text}");
    assert!(metric(&text, "innohook_store_free_bytes") > 0.0, "{text}");
    assert!(
        text.contains("innohook_store_rows{table=\"events\"}"),
        "{text}"
    );
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert!(
        body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("min_free_percent"),
        "{body}"
    );
}
