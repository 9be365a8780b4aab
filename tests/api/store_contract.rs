//! The store contract (`innohook::store::Store`), run against every backend: the same
//! cases, the same answers. Each case gets a store of its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use innohook::event::{self, Accepted};
use innohook::store::{EventQuery, Outcome, Progress, Store, UndeliveredEvent};
use serde_json::{Value, json};

use crate::helpers::*;

/// A backend under test: opens its store, and opens it again after a close (a restart).
pub trait Backend: Send + Sync {
    fn open(&self) -> impl std::future::Future<Output = Arc<dyn Store>> + Send;
}

/// The SQLite store in a temporary directory.
pub struct Sqlite(tempfile::TempDir);

impl Sqlite {
    pub async fn new() -> Option<Self> {
        Some(Self(tempfile::tempdir().unwrap()))
    }
}

impl Backend for Sqlite {
    async fn open(&self) -> Arc<dyn Store> {
        let mut config = innohook::config::Config::default().store;
        config.dir = self.0.path().join("store");
        innohook::store::open(&config, innohook::store::Role::Server)
            .await
            .unwrap()
    }
}

/// PostgreSQL: a database of its own on the test server (see `pg`), when there is one.
#[cfg(feature = "postgres")]
pub struct Postgres(crate::pg::TestDb);

#[cfg(feature = "postgres")]
impl Postgres {
    pub async fn new(test: &str) -> Option<Self> {
        crate::pg::TestDb::create(test).await.map(Self)
    }
}

#[cfg(feature = "postgres")]
impl Backend for Postgres {
    async fn open(&self) -> Arc<dyn Store> {
        innohook::store::open(&self.0.config(), innohook::store::Role::Server)
            .await
            .unwrap()
    }
}

/// Every case, once per backend: `sqlite::accept_and_duplicates`, ….
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(backend) = super::Sqlite::new().await {
                        super::$case(&backend).await;
                    }
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(backend) = super::Postgres::new(stringify!($case)).await {
                        super::$case(&backend).await;
                    }
                }
            )*
        }
    };
}

contract!(
    accept_and_duplicates,
    the_same_event_at_once_is_accepted_once,
    a_rejected_payload_is_a_dead_letter,
    tracking_ends_the_same_in_every_arrival_order,
    batch_counts_and_pages,
    events_after_follow_the_head_in_seq_order,
    event_queries_filter_and_page,
    cursors_survive_a_restart,
    dead_letters_replay_once,
    parked_events_are_kept_until_done,
    retention_removes_only_what_no_sink_needs,
    probe_and_prune,
);

fn parsed(v: &Value) -> (Accepted, Bytes) {
    let bytes = v.to_string();
    (event::parse(bytes.as_bytes()).expect("valid"), bytes.into())
}

async fn accept(store: &Arc<dyn Store>, v: &Value) -> Outcome {
    let (accepted, body) = parsed(v);
    store.accept(&accepted, body).await.expect("stored")
}

/// A status event of message `msg` in batch `uid`, at minute `minute`; failures carry an
/// error code.
fn status(env: &str, msg: &str, uid: &str, status: &str, minute: u32) -> Value {
    let mut v = json!({
        "id": env, "type": "whatsapp_message_status_updated",
        "eventTime": format!("2026-03-01T10:{minute:02}:00.000Z"),
        "body": {"id": msg, "accountName": "acct", "wabaId": "waba", "status": status,
                 "wamid": format!("wamid.{msg}"), "sendPhone": "6512345", "uid": uid}
    });
    if status.to_lowercase().contains("failed") {
        v["body"]["errorData"] = json!({"errorCode": format!("E-{status}"), "errorMessage": "no"});
    }
    v
}

fn other(env: &str, text: &str) -> Value {
    json!({"id": env, "type": "whatsapp_mo_message_received", "body": {"text": text}})
}

async fn accept_and_duplicates(b: &impl Backend) {
    let store = b.open().await;
    let Outcome::Accepted { seq: first } =
        accept(&store, &status("e1", "m1", "b", "delivered", 1)).await
    else {
        panic!("a new event is accepted")
    };
    // Same message and status under another envelope id: a duplicate.
    assert_eq!(
        accept(&store, &status("e2", "m1", "b", "delivered", 2)).await,
        Outcome::Duplicate
    );
    let Outcome::Accepted { seq: second } =
        accept(&store, &status("e1", "m1", "b", "read", 3)).await
    else {
        panic!("another status of the message is new")
    };
    assert!(second > first);
    // Other types: the same envelope id and body is a duplicate; another body is not.
    assert!(matches!(
        accept(&store, &other("o1", "hi")).await,
        Outcome::Accepted { .. }
    ));
    assert_eq!(accept(&store, &other("o1", "hi")).await, Outcome::Duplicate);
    assert!(matches!(
        accept(&store, &other("o1", "hello")).await,
        Outcome::Accepted { .. }
    ));
    assert_eq!(store.count_events().await.unwrap(), 4);
    // Stored byte for byte, with what was parsed out of it.
    let events = store.events_after(0, 10).await.unwrap();
    let (_, body) = parsed(&status("e1", "m1", "b", "delivered", 1));
    assert_eq!(events[0].body, body);
    assert_eq!(events[0].event_id, "e1");
    assert_eq!(events[0].message_id.as_deref(), Some("m1"));
    assert_eq!(
        events[0].status.as_ref().map(|s| s.as_str()),
        Some("delivered")
    );
    assert_eq!(events[2].status, None);
    assert_eq!(events[2].event_type, "whatsapp_mo_message_received");
    store.close().await;
}

async fn the_same_event_at_once_is_accepted_once(b: &impl Backend) {
    let store = b.open().await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (s, o) = (
                status(&format!("e{i}"), "m", "b", "read", 1),
                other("o", "x"),
            );
            (accept(&store, &s).await, accept(&store, &o).await)
        }));
    }
    let mut accepted = (0, 0);
    for t in tasks {
        let (s, o) = t.await.unwrap();
        accepted.0 += usize::from(matches!(s, Outcome::Accepted { .. }));
        accepted.1 += usize::from(matches!(o, Outcome::Accepted { .. }));
    }
    assert_eq!(accepted, (1, 1));
    assert_eq!(store.count_events().await.unwrap(), 2);
    let batch = store.batch("b").await.unwrap().unwrap();
    assert_eq!((batch.messages, batch.read), (1, 1));
    store.close().await;
}

async fn a_rejected_payload_is_a_dead_letter(b: &impl Backend) {
    let store = b.open().await;
    let body = br#"{"id":"x","type":"whatsapp_message_status_updated","body":{}}"#;
    let rejection = event::parse(body).unwrap_err();
    let id = store
        .dead_letter_rejected(&rejection, Bytes::from_static(body))
        .await
        .unwrap();
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!((d.id, d.source.as_str()), (id, "http"));
    assert_eq!(d.code, rejection.code.as_str());
    assert_eq!(d.field, rejection.field);
    assert_eq!(d.reason, rejection.message);
    assert_eq!(d.body.as_deref().map(str::as_bytes), Some(&body[..]));
    assert_eq!(store.count_events().await.unwrap(), 0);
    store.close().await;
}

/// Every order of delivered, read, failed, SMECL:FAILED and an unknown status (a message
/// per order, duplicates sent again at the end) leaves every message as the first.
async fn tracking_ends_the_same_in_every_arrival_order(b: &impl Backend) {
    let store = b.open().await;
    let statuses = ["delivered", "read", "failed", "SMECL:FAILED", "sent"];
    let orders = permutations(&[0usize, 1, 2, 3, 4]);
    assert_eq!(orders.len(), 120);
    let tasks: Vec<_> = orders
        .iter()
        .enumerate()
        .map(|(n, order)| {
            let store = store.clone();
            let order = order.clone();
            tokio::spawn(async move {
                let msg = format!("m{n:03}");
                for (k, &i) in order.iter().chain(&order[..2]).enumerate() {
                    let v = status(&format!("{msg}-{k}"), &msg, "all", statuses[i], i as u32);
                    accept(&store, &v).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let first = store.message("m000").await.unwrap().unwrap();
    assert_eq!(first.status.as_str(), "failed");
    assert_eq!(first.statuses.len(), 5);
    assert!(first.conflict);
    assert_eq!(
        first.error.as_ref().map(|e| e.code.as_str()),
        Some("E-failed")
    );
    let comparable = |mut v: Value| {
        v.as_object_mut().unwrap().remove("id");
        v["wamid"] = Value::Null;
        v
    };
    let want = comparable(json!(first));
    for (n, order) in orders.iter().enumerate().skip(1) {
        let m = store.message(&format!("m{n:03}")).await.unwrap().unwrap();
        assert_eq!(comparable(json!(m)), want, "order {order:?}");
    }
    let batch = store.batch("all").await.unwrap().unwrap();
    assert_eq!(
        (
            batch.messages,
            batch.delivered,
            batch.read,
            batch.failed,
            batch.other
        ),
        (120, 0, 0, 120, 0)
    );
    assert_eq!(store.count_events().await.unwrap(), 600);
    store.close().await;
}

fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            all.push(tail);
        }
    }
    all
}

async fn batch_counts_and_pages(b: &impl Backend) {
    let store = b.open().await;
    // 25 messages: 0-9 delivered, 10-19 read, 20-22 failed, 23-24 SMECL:FAILED; and one
    // message of another batch.
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    for m in 0..25 {
        let msg = format!("m{m:02}");
        let last = match m {
            0..=9 => "delivered",
            10..=19 => "read",
            20..=22 => "failed",
            _ => "SMECL:FAILED",
        };
        accept(
            &store,
            &status(&format!("{msg}-d"), &msg, "camp", "delivered", 5),
        )
        .await;
        if last != "delivered" {
            accept(
                &store,
                &status(&format!("{msg}-l"), &msg, "camp", last, 6 + m % 3),
            )
            .await;
        }
        expected.insert(msg, last);
    }
    accept(&store, &status("x", "elsewhere", "other", "read", 59)).await;
    let batch = store.batch("camp").await.unwrap().unwrap();
    assert_eq!(
        (
            batch.messages,
            batch.delivered,
            batch.read,
            batch.failed,
            batch.other
        ),
        (25, 10, 10, 5, 0)
    );
    assert_eq!(batch.read_rate, 10.0 / 25.0);
    let failures: Vec<(&str, i64)> = batch
        .failures
        .iter()
        .map(|f| (f.error_code.as_str(), f.messages))
        .collect();
    assert_eq!(failures, [("E-failed", 3), ("E-SMECL:FAILED", 2)]);
    assert_eq!(
        event::format_time(&batch.first_event_at),
        "2026-03-01T10:05:00.000Z"
    );
    assert_eq!(
        event::format_time(&batch.last_event_at),
        "2026-03-01T10:08:00.000Z"
    );
    assert!(store.batch("nobody").await.unwrap().is_none());
    // Paged by message id.
    let mut seen = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .batch_messages("camp", after.as_deref(), 7)
            .await
            .unwrap();
        for m in &page {
            seen.insert(m.id.clone(), m.status.as_str().to_owned());
        }
        match page.last() {
            Some(last) if page.len() == 7 => after = Some(last.id.clone()),
            _ => break,
        }
    }
    let want: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(seen, want);
    let by_wamid = store.messages_by_wamid("wamid.m03").await.unwrap();
    assert_eq!(by_wamid.len(), 1);
    assert_eq!(by_wamid[0].id, "m03");
    store.close().await;
}

async fn events_after_follow_the_head_in_seq_order(b: &impl Backend) {
    let store = b.open().await;
    let mut head = store.head();
    let start = *head.borrow_and_update();
    let mut seqs = Vec::new();
    for i in 0..30 {
        if let Outcome::Accepted { seq } = accept(
            &store,
            &status(&format!("e{i}"), &format!("m{i}"), "b", "read", 1),
        )
        .await
        {
            seqs.push(seq);
        }
    }
    poll_until("the head to reach the last seq", 10, async || {
        (*head.borrow() >= *seqs.last().unwrap()).then_some(())
    })
    .await;
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    // Paged from any position, in seq order, nothing skipped or repeated.
    let mut got = Vec::new();
    let mut after = start;
    loop {
        let page = store.events_after(after, 8).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        got.extend(page.iter().map(|e| e.seq));
    }
    assert_eq!(got, seqs);
    let tail = store.events_after(seqs[9], 5).await.unwrap();
    assert_eq!(
        tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        &seqs[10..15]
    );
    store.close().await;
}

async fn event_queries_filter_and_page(b: &impl Backend) {
    let store = b.open().await;
    for i in 0..10 {
        let s = if i % 2 == 0 { "failed" } else { "delivered" };
        accept(
            &store,
            &status(&format!("e{i}"), &format!("m{i}"), "b", s, 1),
        )
        .await;
    }
    accept(&store, &other("o1", "hi")).await;
    let all = store
        .events(&EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 11);
    let failed = store
        .events(&EventQuery {
            status: Some("failed".into()),
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 3);
    assert!(
        failed
            .iter()
            .all(|e| e.status.as_ref().unwrap().as_str() == "failed")
    );
    let next = store
        .events(&EventQuery {
            status: Some("failed".into()),
            after: failed[2].seq,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.len(), 2);
    // `since` is the time received: everything so far is at or after a minute ago, and
    // nothing is at or after a minute from now.
    let now = chrono::Utc::now();
    let since = |at| EventQuery {
        since: Some(at),
        limit: 100,
        ..Default::default()
    };
    let recent = store
        .events(&since(now - chrono::Duration::minutes(1)))
        .await
        .unwrap();
    assert_eq!(recent.len(), 11);
    let future = store
        .events(&since(now + chrono::Duration::minutes(1)))
        .await
        .unwrap();
    assert!(future.is_empty());
    store.close().await;
}

async fn cursors_survive_a_restart(b: &impl Backend) {
    let store = b.open().await;
    for i in 0..3 {
        accept(
            &store,
            &status(&format!("e{i}"), &format!("m{i}"), "b", "read", 1),
        )
        .await;
    }
    assert_eq!(store.sink_cursor("crm").await.unwrap(), None);
    let lease = store.claim_sink("crm").await.unwrap().expect("granted");
    let seqs: Vec<i64> = store
        .events_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    let progress = Progress {
        cursor: Some(seqs[1]),
        ..Progress::default()
    };
    store.sink_progress(&lease, progress).await.unwrap();
    store.close().await;
    drop(store);

    let store = b.open().await;
    assert_eq!(store.sink_cursor("crm").await.unwrap(), Some(seqs[1]));
    assert_eq!(store.sink_cursor("file").await.unwrap(), None);
    assert_eq!(*store.head().borrow(), seqs[2]);
    let rest = store.events_after(seqs[1], 10).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), [seqs[2]]);
    store.close().await;
}

async fn dead_letters_replay_once(b: &impl Backend) {
    let store = b.open().await;
    for i in 0..3 {
        accept(
            &store,
            &status(&format!("e{i}"), &format!("m{i}"), "b", "read", 1),
        )
        .await;
    }
    let seqs: Vec<i64> = store
        .events_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    let lease = store.claim_sink("crm").await.unwrap().unwrap();
    let progress = Progress {
        cursor: Some(seqs[2]),
        dead: vec![UndeliveredEvent {
            seq: seqs[1],
            code: "retries_exhausted",
            reason: "POST answered 503".into(),
            attempts: 1,
            first_attempt_at: chrono::Utc::now(),
        }],
        ..Progress::default()
    };
    store.sink_progress(&lease, progress).await.unwrap();
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].source.as_str(),
            dead[0].sink.as_deref(),
            dead[0].event_seq
        ),
        ("sink", Some("crm"), Some(seqs[1]))
    );
    assert!(dead[0].replayed_at.is_none());
    // Another sink's replay finds nothing; this sink's queues the event once.
    assert_eq!(store.replay(Some("file")).await.unwrap(), 0);
    assert_eq!(store.replay(Some("crm")).await.unwrap(), 1);
    assert_eq!(store.replay(None).await.unwrap(), 0, "already replayed");
    assert!(store.dead_letters().await.unwrap()[0].replayed_at.is_some());
    let queued = store.replay_queue("crm", 10).await.unwrap();
    assert_eq!(queued.iter().map(|e| e.seq).collect::<Vec<_>>(), [seqs[1]]);
    assert!(store.replay_queue("file", 10).await.unwrap().is_empty());
    let done = Progress {
        replayed: vec![seqs[1]],
        ..Progress::default()
    };
    store.sink_progress(&lease, done).await.unwrap();
    assert!(store.replay_queue("crm", 10).await.unwrap().is_empty());
    // The cursor stays where it was.
    assert_eq!(store.sink_cursor("crm").await.unwrap(), Some(seqs[2]));
    store.close().await;
}

/// A sink's set-aside events are kept with their schedule, across a restart, until it is
/// done with them; a sink's dead letters say which event, how many attempts, since when.
async fn parked_events_are_kept_until_done(b: &impl Backend) {
    use innohook::store::ParkedEvent;
    let store = b.open().await;
    for (i, s) in ["delivered", "read"].iter().enumerate() {
        accept(&store, &status(&format!("e{i}"), "m", "b", s, 1)).await;
    }
    accept(&store, &status("x", "other", "b", "read", 1)).await;
    let seqs: Vec<i64> = store
        .events_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    let lease = store.claim_sink("crm").await.unwrap().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00.123Z")
        .unwrap()
        .to_utc();
    let parked = |seq, attempts| ParkedEvent {
        seq,
        message_id: Some("m".into()),
        attempts,
        first_attempt_at: (attempts > 0).then_some(at),
        next_attempt_at: at,
        last_error: "503".into(),
    };
    let progress = Progress {
        cursor: Some(seqs[2]),
        parked: vec![parked(seqs[0], 1), parked(seqs[1], 0)],
        ..Progress::default()
    };
    store.sink_progress(&lease, progress).await.unwrap();
    // A clean stop hands the sink over.
    store.release_sink(&lease).await.unwrap();
    store.close().await;
    let store = b.open().await;
    let lease = store.claim_sink("crm").await.unwrap().expect("released");
    let found = store.parked("crm").await.unwrap();
    assert_eq!(
        found.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        [parked(seqs[0], 1), parked(seqs[1], 0)]
    );
    assert_eq!(found[0].1.event_id, "e0");
    assert!(store.parked("file").await.unwrap().is_empty());
    // Tried again and set aside again; then given up.
    let mut again = parked(seqs[0], 2);
    again.last_error = "503 again".into();
    let progress = Progress {
        parked: vec![again.clone()],
        ..Progress::default()
    };
    store.sink_progress(&lease, progress).await.unwrap();
    assert_eq!(store.parked("crm").await.unwrap()[0].0, again);
    let done = Progress {
        unparked: vec![seqs[0]],
        dead: vec![UndeliveredEvent {
            seq: seqs[0],
            code: "retries_exhausted",
            reason: "503 again".into(),
            attempts: 3,
            first_attempt_at: at,
        }],
        ..Progress::default()
    };
    store.sink_progress(&lease, done).await.unwrap();
    let left: Vec<i64> = store
        .parked("crm")
        .await
        .unwrap()
        .iter()
        .map(|(p, _)| p.seq)
        .collect();
    assert_eq!(left, [seqs[1]]);
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].attempts, dead[0].first_attempt_at),
        (Some(3), Some(at))
    );
    let event = dead[0].event.clone().unwrap();
    assert_eq!(
        (
            event.id.as_str(),
            event.message_id.as_deref(),
            event.status.as_deref()
        ),
        ("e0", Some("m"), Some("delivered"))
    );
    assert_eq!(store.sink_cursor("crm").await.unwrap(), Some(seqs[2]));
    store.close().await;
}

/// The retention removes old events only once every configured sink is past them, and
/// keeps those behind a dead letter; messages and batches go by their own retention, dead
/// letters by theirs; a dry run counts the same as the pass removes.
async fn retention_removes_only_what_no_sink_needs(b: &impl Backend) {
    use innohook::store::{PruneState, Retention};
    use std::time::Duration;
    let store = b.open().await;
    for i in 0..4 {
        accept(
            &store,
            &status(&format!("e{i}"), &format!("m{i}"), "camp", "read", 1),
        )
        .await;
    }
    let seqs: Vec<i64> = store
        .events_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    let lease = store.claim_sink("crm").await.unwrap().unwrap();
    let progress = Progress {
        cursor: Some(seqs[1]),
        dead: vec![UndeliveredEvent {
            seq: seqs[0],
            code: "rejected_by_sink",
            reason: "400".into(),
            attempts: 1,
            first_attempt_at: chrono::Utc::now(),
        }],
        ..Progress::default()
    };
    store.sink_progress(&lease, progress).await.unwrap();
    // Everything is older than a second once a second has passed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = Some(Duration::from_secs(1));
    let mut policy = Retention {
        events: second,
        sinks: vec!["crm".into()],
        ..Retention::default()
    };
    let prune = async |policy: &Retention, dry_run: bool| {
        let mut state = PruneState::default();
        let mut total = innohook::store::Pruned::default();
        loop {
            let step = store.prune(policy, &mut state, 2, dry_run).await.unwrap();
            total.add(&step);
            if total.held_by.is_empty() {
                total.held_by = step.held_by.clone();
            }
            if step.done {
                return total;
            }
        }
    };
    // The sink is past seq 1 and 2, but 1 has a dead letter: only 2 goes; the sink holds
    // 3 and 4 back.
    assert_eq!(prune(&policy, true).await.events, 1);
    let pruned = prune(&policy, false).await;
    assert_eq!(pruned.events, 1);
    assert_eq!(
        pruned
            .held_by
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>(),
        ["crm"]
    );
    let left = |events: Vec<innohook::store::StoredEvent>| {
        events.iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    assert_eq!(
        left(store.events_after(0, 10).await.unwrap()),
        [seqs[0], seqs[2], seqs[3]]
    );
    // A sink with no position yet holds everything.
    policy.sinks.push("new".into());
    assert_eq!(prune(&policy, false).await.events, 0);
    policy.sinks.pop();
    // The sink catches up: 3 and 4 go.
    let caught_up = Progress {
        cursor: Some(seqs[3]),
        ..Progress::default()
    };
    store.sink_progress(&lease, caught_up).await.unwrap();
    assert_eq!(prune(&policy, false).await.events, 2);
    assert!(prune(&policy, false).await.held_by.is_empty());
    // Messages and batches by their own retention.
    assert!(store.message("m3").await.unwrap().is_some());
    policy.messages = second;
    assert_eq!(prune(&policy, true).await.messages, 4);
    let pruned = prune(&policy, false).await;
    assert_eq!((pruned.messages, pruned.batches), (4, 1));
    assert!(store.message("m3").await.unwrap().is_none());
    assert!(store.batch("camp").await.unwrap().is_none());
    // The dead letter goes, and then its event.
    policy.dead_letters = second;
    let pruned = prune(&policy, false).await;
    assert_eq!((pruned.dead_letters, pruned.events), (1, 0));
    assert_eq!(prune(&policy, false).await.events, 1);
    assert_eq!(store.count_events().await.unwrap(), 0);
    assert!(store.dead_letters().await.unwrap().is_empty());
    store.close().await;
}

async fn probe_and_prune(b: &impl Backend) {
    let store = b.open().await;
    store.probe().await.unwrap();
    accept(&store, &other("o1", "hi")).await;
    // Keys younger than a day stay: the redelivery is still a duplicate.
    assert_eq!(store.prune_dedup(1).await.unwrap(), 0);
    assert_eq!(accept(&store, &other("o1", "hi")).await, Outcome::Duplicate);
    store.close().await;
}
