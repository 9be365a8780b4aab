//! What is PostgreSQL's own: several stores (replicas) on one database, leases and their
//! fencing, commits that cannot overtake each other, migrations, TLS. The contract suite
//! covers the rest.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use innohook::config::StoreConfig;
use innohook::event;
use innohook::store::{Outcome, Progress, Role, Store, StoreError};
use serde_json::json;

use crate::helpers::poll_until;
use crate::pg::TestDb;

async fn open(config: &StoreConfig) -> Arc<dyn Store> {
    innohook::store::open(config, Role::Server).await.unwrap()
}

fn event(env: &str, msg: &str, status: &str) -> (event::Accepted, Bytes) {
    let body = json!({
        "id": env, "type": "whatsapp_message_status_updated",
        "eventTime": "2026-03-01T10:00:00.000Z",
        "body": {"id": msg, "accountName": "a", "wabaId": "w", "status": status,
                 "wamid": format!("wamid.{msg}"), "sendPhone": "65", "uid": "b"}
    })
    .to_string();
    (event::parse(body.as_bytes()).unwrap(), body.into())
}

async fn accept(store: &Arc<dyn Store>, env: &str, msg: &str, status: &str) -> Outcome {
    let (accepted, body) = event(env, msg, status);
    store.accept(&accepted, body).await.unwrap()
}

/// A sink runs on one replica at a time; a lease that ran out is taken over under a new
/// epoch, after which the old holder can record nothing; a released lease is free at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_lease_is_held_by_one_replica_and_fenced() {
    let Some(db) = TestDb::create("a_sink_lease_is_held_by_one_replica_and_fenced").await else {
        return;
    };
    let mut config = db.config();
    config.lease_secs = 3;
    let (a, b) = (open(&config).await, open(&config).await);
    accept(&a, "e1", "m1", "read").await;
    let lease_a = a.claim_sink("crm").await.unwrap().expect("free");
    assert!(b.claim_sink("crm").await.unwrap().is_none(), "held by a");
    // Renewing keeps the epoch.
    let renewed = a.claim_sink("crm").await.unwrap().expect("a renews");
    assert_eq!(renewed.token, lease_a.token);
    let done = |cursor| Progress {
        cursor: Some(cursor),
        ..Progress::default()
    };
    a.sink_progress(&lease_a, done(1)).await.unwrap();
    // a stops renewing: b takes over once the lease has run out.
    let lease_b = poll_until("b to take the sink over", 15, async || {
        b.claim_sink("crm").await.unwrap()
    })
    .await;
    assert!(lease_b.token > lease_a.token);
    assert!(matches!(
        a.sink_progress(&lease_a, done(7)).await,
        Err(StoreError::LeaseLost(_))
    ));
    assert_eq!(a.sink_cursor("crm").await.unwrap(), Some(1), "fenced out");
    assert!(a.claim_sink("crm").await.unwrap().is_none(), "held by b");
    b.sink_progress(&lease_b, done(1)).await.unwrap();
    // A clean stop releases it: a takes it at once.
    b.release_sink(&lease_b).await.unwrap();
    let again = a.claim_sink("crm").await.unwrap().expect("released");
    assert!(again.token > lease_b.token);
    a.close().await;
    b.close().await;
}

/// Sequence numbers are taken last in the ingest transaction, under the counter row's
/// lock: a replica whose transaction took seq N holds back every later one until it
/// commits, so no event with a higher seq is visible before it (a BIGSERIAL would let
/// N+1 commit first, and a sink reading `seq > cursor` would skip N for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_seq_is_never_visible_before_an_earlier_one() {
    let Some(db) = TestDb::create("a_later_seq_is_never_visible_before_an_earlier_one").await
    else {
        return;
    };
    let store = open(&db.config()).await;
    // A slow replica, as raw SQL: it has taken its seq and not committed yet.
    let (mut slow, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tx = slow.transaction().await.unwrap();
    let early: i64 = tx
        .query_one(
            "UPDATE seq_counter SET next = next + 1 WHERE id = 1 RETURNING next - 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    tx.execute(
        "INSERT INTO events (seq, received_at, event_id, event_type, warnings, body)
         VALUES ($1, now(), 'slow', 'whatsapp_mo_message_received', '[]', '\\x7b7d')",
        &[&early],
    )
    .await
    .unwrap();
    let fast = tokio::spawn({
        let store = store.clone();
        async move { accept(&store, "e1", "m1", "read").await }
    });
    // The fast replica's transaction waits for the counter row.
    let (watcher, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    poll_until("the accept to wait for the counter", 10, async || {
        let waiting: i64 = watcher
            .query_one("SELECT count(*) FROM pg_locks WHERE NOT granted", &[])
            .await
            .unwrap()
            .get(0);
        (waiting > 0).then_some(())
    })
    .await;
    assert!(!fast.is_finished());
    assert!(store.events_after(0, 10).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    let Outcome::Accepted { seq } = fast.await.unwrap() else {
        panic!("accepted")
    };
    assert!(seq > early);
    let seqs: Vec<i64> = store
        .events_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [early, seq]);
    store.close().await;
}

/// Replicas accepting at once: the same event on every replica is accepted once, and a
/// reader following `seq > cursor` meanwhile sees every accepted seq exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_accept_each_event_once_and_a_follower_misses_none() {
    let Some(db) =
        TestDb::create("replicas_accept_each_event_once_and_a_follower_misses_none").await
    else {
        return;
    };
    let config = db.config();
    let replicas = [
        open(&config).await,
        open(&config).await,
        open(&config).await,
    ];
    let follower = replicas[0].clone();
    let follow = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut cursor = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while seen.len() < 600 && std::time::Instant::now() < deadline {
            let page = follower.events_after(cursor, 50).await.unwrap();
            if let Some(last) = page.last() {
                cursor = last.seq;
            }
            seen.extend(page.iter().map(|e| e.seq));
        }
        seen
    });
    let mut tasks = Vec::new();
    for t in 0..24 {
        let replicas = replicas.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for i in 0..25 {
                let msg = format!("m{t}-{i}");
                let env = format!("e-{msg}");
                // Each event goes to every replica; one of them stores it.
                let sends = replicas.iter().map(|r| accept(r, &env, &msg, "delivered"));
                let outcomes = futures_util::future::join_all(sends).await;
                let stored: Vec<i64> = outcomes
                    .iter()
                    .filter_map(|o| match o {
                        Outcome::Accepted { seq } => Some(*seq),
                        Outcome::Duplicate => None,
                    })
                    .collect();
                assert_eq!(stored.len(), 1, "{msg}: {outcomes:?}");
                accepted.extend(stored);
            }
            accepted
        }));
    }
    let mut accepted = Vec::new();
    for t in tasks {
        accepted.extend(t.await.unwrap());
    }
    accepted.sort_unstable();
    let seen = follow.await.unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in seq order");
    assert_eq!(seen, accepted, "every accepted seq once");
    let batch = replicas[1].batch("b").await.unwrap().unwrap();
    assert_eq!((batch.messages, batch.delivered), (600, 600));
    for r in replicas {
        r.close().await;
    }
}

/// Replicas started at once on an empty database: one creates the schema, the others
/// wait and find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_migrate_once() {
    let Some(db) = TestDb::create("replicas_starting_at_once_migrate_once").await else {
        return;
    };
    let config = db.config();
    let opens = (0..4).map(|_| innohook::store::open(&config, Role::Server));
    let stores: Vec<_> = futures_util::future::join_all(opens)
        .await
        .into_iter()
        .map(|s| s.expect("every replica starts"))
        .collect();
    assert!(matches!(
        accept(&stores[3], "e", "m", "read").await,
        Outcome::Accepted { .. }
    ));
    for s in stores {
        s.close().await;
    }
}

/// A database migrated by a newer innohook is refused with a sentence, and a command
/// refuses a database no server has created yet.
#[tokio::test]
async fn a_schema_this_binary_does_not_know_is_refused() {
    let Some(db) = TestDb::create("a_schema_this_binary_does_not_know_is_refused").await else {
        return;
    };
    let config = db.config();
    let client = innohook::store::open(&config, Role::Client).await;
    let error = format!("{:#}", client.err().expect("no schema yet"));
    assert!(error.contains("schema version 0"), "{error}");
    open(&config).await.close().await;
    let (raw, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    raw.execute("UPDATE innohook_schema SET version = 99", &[])
        .await
        .unwrap();
    let error = format!(
        "{:#}",
        innohook::store::open(&config, Role::Server)
            .await
            .err()
            .expect("refused")
    );
    assert!(
        error.contains("schema version 99, newer than this innohook knows"),
        "{error}"
    );
}

/// `sslmode` as libpq reads it, against the test server (which offers TLS with a
/// certificate no public CA signed): `require` encrypts without checking the certificate,
/// `verify-full` checks it and says why it failed.
#[tokio::test]
async fn sslmode_require_encrypts_and_verify_full_checks_the_certificate() {
    let Some(server) =
        crate::pg::server_url("sslmode_require_encrypts_and_verify_full_checks_the_certificate")
    else {
        return;
    };
    let with_mode = |mode: &str| {
        let mut url = reqwest::Url::parse(&server).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "sslmode")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("sslmode", mode);
        url.to_string()
    };
    let db = TestDb::create_on(&server).await;
    let (raw, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let ssl: String = raw.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl != "on" {
        crate::helpers::skipped(
            "sslmode_require_encrypts_and_verify_full_checks_the_certificate",
            &format!("the test server does not offer TLS (ssl = {ssl})"),
        );
        return;
    }
    let config = |mode: &str| {
        let mut c = db.config();
        let mut url = reqwest::Url::parse(&with_mode(mode)).unwrap();
        url.set_path(reqwest::Url::parse(&db.url).unwrap().path());
        c.url = Some(url.to_string());
        c
    };
    let store = innohook::store::open(&config("require"), Role::Server)
        .await
        .expect("require connects without checking the certificate");
    store.close().await;
    let error = format!(
        "{:#}",
        innohook::store::open(&config("verify-full"), Role::Server)
            .await
            .err()
            .expect("the certificate is not trusted")
    );
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}

/// `check-config` connects as a start would, and says what is wrong.
#[tokio::test]
async fn check_config_connects_and_names_what_is_wrong() {
    let Some(db) = TestDb::create("check_config_connects_and_names_what_is_wrong").await else {
        return;
    };
    let check = |url: &str| {
        let out = crate::helpers::innohook()
            .arg("check-config")
            .env("INNOHOOK_STORE__BACKEND", "postgres")
            .env("INNOHOOK_STORE__URL", url)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = check(&db.url);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("reachable; innohook's tables are created at the first start"),
        "{out}"
    );
    open(&db.config()).await.close().await;
    let (code, out) = check(&db.url);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("reachable, schema version"), "{out}");
    // Nothing listens on port 1.
    let (code, out) = check("postgres://postgres@127.0.0.1:1/x?sslmode=disable");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("cannot connect to postgres://postgres@127.0.0.1:1/x"),
        "{out}"
    );
    assert!(out.to_lowercase().contains("refused"), "{out}");
    let mut missing = reqwest::Url::parse(&db.url).unwrap();
    missing.set_path("/no_such_database");
    let (code, out) = check(missing.as_str());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("3D000"), "{out}");
}

/// The commands work on the PostgreSQL store as on SQLite: `dead-letters` lists what a
/// server kept, `replay` queues a sink's dead letters, `status` and `batch` answer.
#[tokio::test]
async fn the_commands_read_and_replay_on_postgres() {
    let Some(db) = TestDb::create("the_commands_read_and_replay_on_postgres").await else {
        return;
    };
    let store = open(&db.config()).await;
    accept(&store, "e1", "m1", "read").await;
    let body = br#"{"id":"x","type":"whatsapp_message_status_updated","body":{}}"#;
    store
        .dead_letter_rejected(&event::parse(body).unwrap_err(), Bytes::from_static(body))
        .await
        .unwrap();
    let lease = store.claim_sink("crm").await.unwrap().unwrap();
    let progress = Progress {
        cursor: Some(1),
        dead: vec![innohook::store::UndeliveredEvent {
            seq: 1,
            code: innohook::store::Undelivered::RejectedBySink,
            reason: "400".into(),
            attempts: 1,
            first_attempt_at: chrono::Utc::now(),
        }],
        ..Progress::default()
    };
    store.sink_progress(&lease, progress).await.unwrap();
    store.close().await;
    let dir = tempfile::tempdir().unwrap();
    let config =
        crate::helpers::write_config(dir.path(), "[[sinks]]\ntype = \"log\"\nname = \"crm\"\n");
    let run = |args: &[&str]| {
        let out = crate::helpers::innohook()
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("INNOHOOK_STORE__BACKEND", "postgres")
            .env("INNOHOOK_STORE__URL", &db.url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let dead: Vec<serde_json::Value> = run(&["dead-letters"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0]["source"], "http");
    assert_eq!(
        (dead[1]["source"].as_str(), dead[1]["sink"].as_str()),
        (Some("sink"), Some("crm"))
    );
    assert!(run(&["replay", "--sink", "crm"]).starts_with("1 dead letter(s) queued"));
    let status: serde_json::Value = serde_json::from_str(&run(&["status", "m1"])).unwrap();
    assert_eq!(status["status"], "read");
    let batch: serde_json::Value = serde_json::from_str(&run(&["batch", "b"])).unwrap();
    assert_eq!(
        (batch["messages"].as_i64(), batch["read"].as_i64()),
        (Some(1), Some(1))
    );
}
