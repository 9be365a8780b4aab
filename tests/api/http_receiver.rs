//! The receiver over real HTTP: every answer it gives, dedup, auth, restart, 503s.

use std::sync::Arc;

use innohook::store::Role;
use innohook::store::sqlite::SqliteStore;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn seed_payloads_are_accepted_and_stored_byte_for_byte() {
    let app = spawn_app().await;
    for name in ["delivered", "read", "failed"] {
        let (status, body) = answer(app.post(seed_bytes(name)).await).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(
            body,
            json!({"status": "accepted", "eventId": seed(name)["id"]})
        );
    }
    let events = app.store.events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].body, seed_bytes("delivered"));
    assert_eq!(events[2].status, Some(innohook::event::Status::Failed));
    assert_eq!(events[0].message_id.as_deref(), Some("356139161272397824"));
    assert!(
        events[0]
            .warnings
            .iter()
            .any(|w| w.field == "body.currency")
    );
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
}

#[tokio::test]
async fn a_redelivered_status_is_a_duplicate_whatever_its_envelope_id() {
    let app = spawn_app().await;
    let first = status_event("env-1", "msg-1", "read");
    let again = status_event("env-2", "msg-1", "read");
    assert_eq!(
        answer(app.post(first.to_string()).await).await.1["status"],
        "accepted"
    );
    assert_eq!(
        answer(app.post(first.to_string()).await).await.1["status"],
        "duplicate"
    );
    let (code, body) = answer(app.post(again.to_string()).await).await;
    assert_eq!(
        (code, body),
        (200, json!({"status": "duplicate", "eventId": "env-2"}))
    );
    // Same envelope id, other status of the same message: a new event (as in the doc).
    let failed = status_event("env-1", "msg-1", "failed");
    assert_eq!(
        answer(app.post(failed.to_string()).await).await.1["status"],
        "accepted"
    );
    assert_eq!(app.stored().await, 2);
}

#[tokio::test]
async fn other_event_types_are_stored_raw_and_deduplicated_by_id_and_content() {
    let app = spawn_app().await;
    let untyped = r#"{"id":"x-1","type":"whatsapp_unlisted_event","eventTime":"2023-02-22T12:00:00Z","body":{"text":"hi","n":12345678901234567890}}"#;
    let changed = untyped.replace("\"hi\"", "\"hello\"");
    assert_eq!(
        answer(app.post(untyped).await).await.1["status"],
        "accepted"
    );
    assert_eq!(
        answer(app.post(untyped).await).await.1["status"],
        "duplicate"
    );
    assert_eq!(
        answer(app.post(changed).await).await.1["status"],
        "accepted"
    );
    let events = app.store.events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].body, untyped.as_bytes());
    assert_eq!(events[0].event_type, "whatsapp_unlisted_event");
    assert_eq!(events[0].status, None);
}

#[tokio::test]
async fn a_rejected_payload_gets_400_and_is_kept_as_a_dead_letter() {
    let app = spawn_app().await;
    let bad = remove(seed("failed"), "body.errorData").to_string();
    let (status, body) = answer(app.post(bad.clone()).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "missing_error_data");
    assert_eq!(body["field"], "body.errorData");
    assert!(body["message"].as_str().unwrap().contains("errorData"));
    let (status, body) = answer(app.post("{oops").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_json"))
    );

    assert_eq!(app.stored().await, 0);
    let dead = app.store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].source, "http");
    assert_eq!(dead[0].code, "missing_error_data");
    assert_eq!(dead[0].field.as_deref(), Some("body.errorData"));
    assert_eq!(dead[0].body.as_deref(), Some(bad.as_str()));
    assert_eq!(dead[1].body.as_deref(), Some("{oops"));

    // And the command line lists them, one JSON object a line.
    let config = write_config(
        app.dir.path(),
        &format!("[store]\ndir = {:?}\n", app.config.store.dir),
    );
    let out = innohook()
        .args(["dead-letters", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["code"], "missing_error_data");
    assert_eq!(lines[0]["body"], bad);
    assert!(lines[0]["createdAt"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn auth_headers_must_both_match_and_nothing_is_stored_otherwise() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.auth.username = Some("acme".into());
    config.auth.authorization = Some("Bearer s3cret".into());
    let app = TestApp::spawn(config, dir).await;
    let url = app.url("/webhook");
    let send = |headers: &[(&str, &str)]| {
        let mut req = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(seed_bytes("read"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    for headers in [
        vec![],
        vec![("UserName", "acme")],
        vec![("Authorization", "Bearer s3cret")],
        vec![("UserName", "acme"), ("Authorization", "Bearer s3cre")],
        vec![("UserName", "ACME"), ("Authorization", "Bearer s3cret")],
        // Ambiguous: two values of one header, whichever comes first.
        vec![
            ("UserName", "acme"),
            ("Authorization", "Bearer s3cret"),
            ("Authorization", "Bearer other"),
        ],
        vec![
            ("UserName", "acme"),
            ("UserName", "acme"),
            ("Authorization", "Bearer s3cret"),
        ],
    ] {
        let (status, body) = answer(send(&headers).await.unwrap()).await;
        assert_eq!(
            (status, &body["error"]),
            (401, &json!("unauthorized")),
            "{headers:?}"
        );
    }
    // Nothing stored: no event, no dead letter, not even for a bad payload.
    assert_eq!(app.stored().await, 0);
    let res = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(app.store.dead_letters().await.unwrap().is_empty());

    let res = send(&[("UserName", "acme"), ("Authorization", "Bearer s3cret")])
        .await
        .unwrap();
    assert_eq!(
        answer(res).await,
        (
            200,
            json!({"status": "accepted", "eventId": seed("read")["id"]})
        )
    );
}

#[tokio::test]
async fn size_type_method_and_path_errors_are_json() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.server.max_body_bytes = 1024;
    let app = TestApp::spawn(config, dir).await;

    let mut big = seed("read");
    big["body"]["padding"] = "x".repeat(2000).into();
    let (status, body) = answer(app.post(big.to_string()).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large"))
    );

    let res = app
        .post_to("/webhook", "text/plain", seed_bytes("read"))
        .await;
    let (status, body) = answer(res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Content-Type: application/json")
    );

    let res = app
        .post_to(
            "/webhook",
            "Application/JSON; charset=utf-8",
            seed_bytes("read"),
        )
        .await;
    assert_eq!(res.status(), 200);

    // A compressed body is refused with a sentence, not kept as an unreadable dead letter.
    let mut gzipped = b"\x1f\x8b\x08\x00".to_vec();
    gzipped.extend(seed_bytes("failed"));
    let res = app
        .client
        .post(app.url("/webhook"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzipped)
        .send()
        .await
        .unwrap();
    let (status, body) = answer(res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (415, Some("unsupported_encoding"))
    );
    assert!(body["message"].as_str().unwrap().contains("uncompressed"));
    assert!(app.store.dead_letters().await.unwrap().is_empty());

    let res = app.client.get(app.url("/webhook")).send().await.unwrap();
    assert_eq!(res.headers()["allow"], "POST");
    let (status, body) = answer(res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );

    let res = app.post_to("/hook", "application/json", "{}").await;
    let (status, body) = answer(res).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    assert!(body["message"].as_str().unwrap().contains("POST /webhook"));
    assert_eq!(app.stored().await, 1);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// A full store (SQLite's page cap standing in for a full disk): 503, never 200 for an
/// event not committed, and 200 again by itself once there is room.
#[tokio::test]
async fn a_full_store_answers_503_and_recovers_by_itself() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = test_config(dir.path());
    let sqlite = Arc::new(SqliteStore::open(&config.store.dir, Role::Server).unwrap());
    let app = TestApp::spawn_with_store(config, dir, sqlite.clone()).await;
    // Capped at its current size: SQLite then answers SQLITE_FULL, as on a full disk.
    sqlite.cap_pages(Some(1)).await.unwrap();
    // Free pages left inside the file may take a few events; then it is full.
    let mut answered = Vec::new();
    for i in 0..200 {
        let res = app
            .post(status_event(&format!("e{i}"), &format!("m{i}"), "read").to_string())
            .await;
        if res.status() == 503 {
            assert_eq!(res.headers()["retry-after"], "5");
            let (_, body) = answer(res).await;
            assert_eq!(body["error"], "unavailable");
            break;
        }
        assert_eq!(res.status(), 200);
        answered.push(format!("m{i}"));
    }
    assert!(answered.len() < 200, "the store never filled up");
    // A rejected payload that cannot be kept is not answered 400 either: the sender retries.
    // (Large enough to need a dozen new pages: a small one may still fit in a
    // half-empty page, or in the few pages that schema migrations freed.)
    assert_eq!(
        app.post(format!("{{{}", "x".repeat(50_000))).await.status(),
        503
    );
    app.readyz_until(503).await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Every 200 is in the store; nothing answered 503 is.
    assert_eq!(app.stored().await, answered.len() as i64);

    sqlite.cap_pages(None).await.unwrap();
    app.readyz_until(200).await;
    let (status, body) = answer(app.post(seed_bytes("read")).await).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("accepted")));
    assert_eq!(app.stored().await, answered.len() as i64 + 1);
}

#[tokio::test]
async fn after_a_restart_a_duplicate_is_still_a_duplicate() {
    let app = spawn_app().await;
    assert_eq!(
        answer(app.post(seed_bytes("failed")).await).await.1["status"],
        "accepted"
    );
    let (config, dir) = app.stop().await;
    let app = TestApp::spawn(config, dir).await;
    assert_eq!(
        answer(app.post(seed_bytes("failed")).await).await.1["status"],
        "duplicate"
    );
    assert_eq!(
        answer(app.post(seed_bytes("read")).await).await.1["status"],
        "accepted"
    );
    assert_eq!(app.stored().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_from_64_concurrent_senders_are_all_stored() {
    let app = Arc::new(spawn_app().await);
    let mut senders = Vec::new();
    for s in 0..64 {
        let app = app.clone();
        senders.push(tokio::spawn(async move {
            let mut accepted = 0;
            for i in (s..1000).step_by(64) {
                let event = status_event(&format!("env-{i}"), &format!("msg-{i}"), "read");
                let (status, body) = answer(app.post(event.to_string()).await).await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["status"], "accepted");
                accepted += 1;
            }
            accepted
        }));
    }
    let mut total = 0;
    for s in senders {
        total += s.await.unwrap();
    }
    assert_eq!(total, 1000);
    assert_eq!(app.stored().await, 1000);
}
