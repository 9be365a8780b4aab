//! Tests of what is SQLite's own: the durability settings of the writing connection, the
//! group commit's savepoint path, the commit clock, the WAL bound, stores from older
//! schemas. The contract tests cover the rest.

use std::time::Duration;

use bytes::Bytes;
use rusqlite::OpenFlags;
use tokio::sync::oneshot;

use super::*;
use crate::event::Accepted;
use crate::store::ingest::dedup_text;
use crate::store::{Admin, Delivery, Ingest, Queries};

fn status_event(status: &str) -> Accepted {
    message_event("m1", status)
}

fn message_event(message_id: &str, status: &str) -> Accepted {
    event(message_id, status, None)
}

fn failure_event(message_id: &str, status: &str, code: &str) -> Accepted {
    event(message_id, status, Some(code))
}

fn event(message_id: &str, status: &str, error_code: Option<&str>) -> Accepted {
    let mut body = serde_json::json!({
        "id": "e1", "type": "whatsapp_message_status_updated",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "body": {"id": message_id, "wamid": "w1", "status": status, "sendPhone": "1",
                 "wabaId": "2", "accountName": "3", "uid": "b1"}
    });
    if let Some(code) = error_code {
        body["body"]["errorData"] = serde_json::json!({"errorCode": code, "errorMessage": "no"});
    }
    crate::event::parse(body.to_string().as_bytes()).expect("a valid event")
}

/// Accepts `event` with a stand-in body.
async fn accept(store: &SqliteStore, event: &Accepted) -> Outcome {
    store
        .accept(event, Bytes::from_static(b"{}"))
        .await
        .expect("stored")
}

/// Every 200 relies on the writer's connection committing to a WAL with an fsync at
/// every commit (`synchronous = FULL`): with OFF or NORMAL a commit returns before the
/// data is on disk, which no kill test can see (the page cache survives a killed
/// process). Read on the connection that writes, for a server and for a command.
#[tokio::test]
async fn the_writer_commits_to_a_wal_with_an_fsync_per_commit() {
    let dir = tempfile::tempdir().unwrap();
    let expected = Durability {
        journal_mode: "wal".into(),
        synchronous: 2,
    };
    let server = SqliteStore::open(dir.path(), Role::Server).unwrap();
    assert_eq!(server.durability().await.unwrap(), expected);
    let client = SqliteStore::open(dir.path(), Role::Client).unwrap();
    assert_eq!(client.durability().await.unwrap(), expected);
    client.close().await;
    server.close().await;
}

/// Batch counters are gathered per transaction and written at its end: many events
/// of one batch in one transaction (one of its writes failing, so the transaction is
/// redone write by write) count exactly once, error codes moving as they should.
#[tokio::test]
async fn batch_counters_gathered_in_one_transaction_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path(), Role::Server).unwrap());
    store.recent.keep_events();
    // Hold the writer inside a write until every event below is queued behind it.
    let (entered, inside) = oneshot::channel::<()>();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let hold = std::sync::Mutex::new(Some((entered, wait)));
    let holding = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .write(move |_| {
                    if let Some((entered, wait)) = hold.lock().unwrap().take() {
                        let _ = entered.send(());
                        let _ = wait.recv();
                    }
                    Ok(())
                })
                .await
        }
    });
    inside.await.unwrap();
    let events = [
        failure_event("m1", "SMECL:FAILED", "A"),
        message_event("m2", "delivered"),
        failure_event("m1", "failed", "B"),
        message_event("m2", "read"),
        message_event("m3", "read"),
    ];
    let mut writes = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        let s = store.clone();
        writes.push(tokio::spawn(async move {
            s.accept(&event, Bytes::from_static(b"{}")).await
        }));
        if i == 2 {
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                store
                    .write(|tx| {
                        Ok(tx
                            .conn
                            .execute("INSERT INTO no_such_table VALUES (1)", [])?)
                    })
                    .await
                    .map(|_| Outcome::Duplicate)
            }));
        }
        let queued = i + 1 + usize::from(i >= 2);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.tx.max_capacity() - store.tx.capacity() < queued {
            assert!(std::time::Instant::now() < deadline, "writes never queued");
            tokio::task::yield_now().await;
        }
    }
    go.send(()).unwrap();
    holding.await.unwrap().unwrap();
    let mut results = Vec::new();
    let mut seqs = Vec::new();
    for w in writes {
        let result = w.await.unwrap();
        if let Ok(Outcome::Accepted { seq }) = result {
            seqs.push(seq);
        }
        results.push(result.is_ok());
    }
    assert_eq!(results, [true, true, true, false, true, true]);
    // The writer answers the callers first, then fills the window and moves the head.
    let last = *seqs.last().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while *store.head().borrow() < last {
        assert!(std::time::Instant::now() < deadline, "the head never moved");
        tokio::task::yield_now().await;
    }
    // The window holds exactly the committed events, and the head is the last of them.
    let window: Vec<i64> = store
        .recent
        .after(0, 16)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(window, seqs);
    assert_eq!(seqs.len(), 5);
    assert_eq!(*store.head().borrow(), *seqs.last().unwrap());
    let batch = store.batch("b1").await.unwrap().unwrap();
    assert_eq!(
        (batch.messages, batch.delivered, batch.read, batch.failed),
        (3, 0, 2, 1),
        "{batch:?}"
    );
    let failures: Vec<_> = batch
        .failures
        .iter()
        .map(|f| (f.error_code.as_str(), f.messages))
        .collect();
    assert_eq!(failures, [("B", 1)]);
    store.close().await;
}

/// received_at never goes back, not even across a restart with the clock behind the
/// store: `since` queries binary-search on it.
#[tokio::test]
async fn received_at_never_goes_back_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let future = "2999-01-01T00:00:00.000Z";
    {
        let store = SqliteStore::open(dir.path(), Role::Server).unwrap();
        accept(&store, &message_event("m1", "delivered")).await;
        store
            .write(move |tx| {
                Ok(tx
                    .conn
                    .execute("UPDATE events SET received_at = ?1", [future])?)
            })
            .await
            .unwrap();
        store.close().await;
    }
    let store = SqliteStore::open(dir.path(), Role::Server).unwrap();
    accept(&store, &message_event("m2", "delivered")).await;
    let events = store.events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        crate::event::format_time(&events[1].received_at).as_str() >= future,
        "{events:?}"
    );
    store.close().await;
}

/// Under steady writes the WAL is started over again and again instead of growing
/// until the disk is full (it grew by ~80 MB a second under bench/run.sh before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path(), Role::Server).unwrap());
    let body = Bytes::from(vec![b' '; 1000]);
    let senders: Vec<_> = (0..32)
        .map(|t| {
            let (store, body) = (store.clone(), body.clone());
            tokio::spawn(async move {
                for i in 0..600 {
                    let event = message_event(&format!("m{t}-{i}"), "delivered");
                    store.accept(&event, body.clone()).await.unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    // 19,200 events of ~1 KB write about 200 MB of WAL frames. Without the restart
    // the WAL held them all (194-204 MB, started over once at most); with it, it
    // started over 7-11 times and reached 23-32 MB here, 54 MB once with the other
    // tests busy on both cores. With the checkpointer never asking the writer to
    // finish (SQLite restarting it only when a pass happens to copy everything), it
    // started over once or twice and reached 79-159 MB. The WAL header counts the
    // restarts (bytes 12..16).
    let wal_path = dir.path().join("innohook.db-wal");
    let wal = std::fs::metadata(&wal_path).unwrap().len();
    let mut header = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open(&wal_path).unwrap(), &mut header).unwrap();
    let restarts = u32::from_be_bytes(header[12..16].try_into().unwrap());
    assert!(restarts >= 4, "the WAL was started over {restarts} times");
    assert!(wal < 96 << 20, "the WAL grew to {} MB", wal >> 20);
    store.close().await;
}

/// A store from before schema v3 kept status-event keys in the dedup table; they
/// still make a redelivery a duplicate after the upgrade.
#[tokio::test]
async fn status_keys_from_before_v3_are_still_honoured() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut conn = connect(dir.path(), OpenFlags::default()).unwrap();
        schema::migrate_to(&mut conn, 2).unwrap();
        conn.execute(
            "INSERT INTO dedup (key, seq, created_at) VALUES (?1, 1, 0)",
            [dedup_text(&status_event("delivered").envelope.dedup_key())],
        )
        .unwrap();
    }
    let store = SqliteStore::open(dir.path(), Role::Server).unwrap();
    let delivered = status_event("delivered");
    let read = status_event("read");
    assert_eq!(accept(&store, &delivered).await, Outcome::Duplicate);
    assert!(matches!(
        accept(&store, &read).await,
        Outcome::Accepted { .. }
    ));
    assert_eq!(accept(&store, &read).await, Outcome::Duplicate);
    store.close().await;
}

/// An event answered as stored is there for the next read, also while a sink keeps the
/// window of recent events: the window takes a commit's events before its callers are
/// answered (it once took them after, and a read right after a 200 could miss it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_event_is_read_back_at_once_from_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Role::Server).unwrap();
    // A sink reads: from now on the window keeps events.
    assert!(store.events_after(0, 10).await.unwrap().is_empty());
    for i in 0..300 {
        let Outcome::Accepted { seq } =
            accept(&store, &message_event(&format!("m{i}"), "read")).await
        else {
            panic!("a new message is accepted")
        };
        let read = store.events_after(seq - 1, 10).await.unwrap();
        assert_eq!(read.first().map(|e| e.seq), Some(seq), "event {i}");
    }
    store.close().await;
}
