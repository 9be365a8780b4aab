//! The store contract (`innohook::store::Store`), run against every backend: the same
//! cases, the same answers. Each case gets a store of its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use innohook::event::{self, Accepted};
use innohook::store::{
    BatchQuery, Counted, DeadLetterQuery, EventQuery, Outcome, Progress, Store, UndeliveredEvent,
};
use serde_json::{Value, json};

use crate::helpers::campaign_status as status;
use crate::helpers::*;

/// A backend under test: opens its store, and opens it again after a close (a restart).
pub trait Backend: Send + Sync {
    fn open(&self) -> impl std::future::Future<Output = Arc<dyn Store>> + Send;

    /// Runs SQL on the store's database behind its back (to damage a row).
    fn execute(&self, sql: &str) -> impl std::future::Future<Output = ()> + Send;

    /// Whether several processes can share the store (then `open` gives another replica).
    fn replicas(&self) -> bool {
        false
    }
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

    async fn execute(&self, sql: &str) {
        let db = self.0.path().join("store").join("innohook.db");
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn.execute_batch(sql).unwrap();
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

    fn replicas(&self) -> bool {
        true
    }

    async fn execute(&self, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&self.0.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
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
    pushes_are_counted_per_hour_by_outcome_and_status,
    recent_batches_come_newest_first_by_prefix_and_page,
    a_batch_timeline_counts_status_events_per_hour,
    messages_keep_their_events_and_are_found_by_phone,
    dead_letter_pages_carry_their_events_and_replay_one_at_a_time,
    sink_states_show_positions_failures_and_dead_letters,
    a_message_row_missing_its_error_status_is_an_error,
    a_reply_is_linked_whichever_comes_first,
    a_batch_counts_the_messages_answered_in_a_shuffled_stream_with_duplicates,
    a_template_is_what_its_latest_events_say_whatever_their_order,
);

fn parsed(v: &Value) -> (Accepted, Bytes) {
    let bytes = v.to_string();
    (event::parse(bytes.as_bytes()).expect("valid"), bytes.into())
}

async fn accept(store: &Arc<dyn Store>, v: &Value) -> Outcome {
    let (accepted, body) = parsed(v);
    store.accept(&accepted, body).await.expect("stored")
}

fn other(env: &str, text: &str) -> Value {
    json!({"id": env, "type": "whatsapp_unlisted_event", "body": {"text": text}})
}

/// Accepts `n` reads of messages m0, m1, … of batch `uid`; their seqs.
async fn accept_reads(store: &Arc<dyn Store>, n: usize, uid: &str) -> Vec<i64> {
    for i in 0..n {
        accept(
            store,
            &status(&format!("e{i}"), &format!("m{i}"), uid, "read", 1),
        )
        .await;
    }
    let events = store.events_after(0, n).await.unwrap();
    events.iter().map(|e| e.seq).collect()
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
    assert_eq!(events[2].event_type, "whatsapp_unlisted_event");
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
    // A message's error moves to the failure that outranks it: the code it left (the
    // first to arrive in half the orders) counts no message and is not listed.
    let codes: Vec<(&str, i64)> = batch
        .failures
        .iter()
        .map(|f| (f.error_code.as_str(), f.messages))
        .collect();
    assert_eq!(codes, [("E-failed", 120)]);
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
    let seqs = accept_reads(&store, 3, "b").await;
    let lease = store.claim_sink("crm").await.unwrap().unwrap();
    let progress = Progress {
        cursor: Some(seqs[2]),
        dead: vec![UndeliveredEvent {
            seq: seqs[1],
            code: innohook::store::Undelivered::RetriesExhausted,
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
            code: innohook::store::Undelivered::RetriesExhausted,
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
    let seqs = accept_reads(&store, 4, "camp").await;
    let lease = store.claim_sink("crm").await.unwrap().unwrap();
    let progress = Progress {
        cursor: Some(seqs[1]),
        dead: vec![UndeliveredEvent {
            seq: seqs[0],
            code: innohook::store::Undelivered::RejectedBySink,
            reason: "400".into(),
            attempts: 1,
            first_attempt_at: chrono::Utc::now(),
        }],
        ..Progress::default()
    };
    store.sink_progress(&lease, progress).await.unwrap();
    let sent = |id: &str| innohook::campaign::sends::Sent {
        id: id.into(),
        phone: "65".into(),
        uid: Some("camp".into()),
        sent_at: chrono::Utc::now(),
        template: None,
    };
    let mut imported = Default::default();
    store
        .import_sends(&[sent("s-old")], &mut imported)
        .await
        .unwrap();
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
    // The sink catches up: 3 goes; 4, the newest event, stays (its seq must never be
    // handed out again).
    let caught_up = Progress {
        cursor: Some(seqs[3]),
        ..Progress::default()
    };
    store.sink_progress(&lease, caught_up).await.unwrap();
    assert_eq!(prune(&policy, false).await.events, 1);
    assert!(prune(&policy, false).await.held_by.is_empty());
    // Messages, batches and the send list by their own retention (a send from when it was
    // imported: the one imported before the wait goes, the one after stays).
    store
        .import_sends(&[sent("s-new"), sent("m3")], &mut imported)
        .await
        .unwrap();
    assert!(store.message("m3").await.unwrap().is_some());
    policy.messages = second;
    assert_eq!(prune(&policy, true).await.messages, 4);
    let pruned = prune(&policy, false).await;
    assert_eq!((pruned.messages, pruned.batches, pruned.sends), (4, 1, 1));
    assert!(store.send("s-old").await.unwrap().is_none());
    assert!(store.send("s-new").await.unwrap().is_some());
    // The send of a message goes with its message, imported a moment ago or not.
    assert!(store.send("m3").await.unwrap().is_none());
    assert!(store.message("m3").await.unwrap().is_none());
    assert!(store.batch("camp").await.unwrap().is_none());
    // The dead letter goes, and then its event.
    policy.dead_letters = second;
    let pruned = prune(&policy, false).await;
    assert_eq!((pruned.dead_letters, pruned.events), (1, 0));
    assert_eq!(prune(&policy, false).await.events, 1);
    assert_eq!(
        left(store.events_after(0, 10).await.unwrap()),
        [seqs[3]],
        "only the newest is left"
    );
    assert!(store.dead_letters().await.unwrap().is_empty());
    // The next event comes after every seq handed out before, so a sink at seqs[3]
    // reads it.
    let Outcome::Accepted { seq } = accept(&store, &other("after", "the prune")).await else {
        panic!("a new event is accepted")
    };
    assert!(seq > seqs[3], "{seq} after {seqs:?}");
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

/// A status event as [`status`] makes it, at an arbitrary eventTime.
fn status_at(env: &str, msg: &str, uid: &str, s: &str, at: &str) -> Value {
    let mut v = status(env, msg, uid, s, 0);
    v["eventTime"] = at.into();
    v
}

/// Accepted, duplicate and rejected pushes land in the hour they were received, by
/// status (unknown ones as `other`, other event types as `""`).
async fn pushes_are_counted_per_hour_by_outcome_and_status(b: &impl Backend) {
    let store = b.open().await;
    let before = chrono::Utc::now();
    for (i, s) in [
        "delivered",
        "read",
        "failed",
        "SMECL:FAILED",
        "sent",
        "read",
    ]
    .iter()
    .enumerate()
    {
        accept(
            &store,
            &status(&format!("e{i}"), &format!("m{i}"), "b", s, 1),
        )
        .await;
    }
    // Duplicates: a status again (another envelope), an event of another type again.
    accept(&store, &status("again", "m1", "b", "read", 2)).await;
    accept(&store, &other("o1", "hi")).await;
    accept(&store, &other("o1", "hi")).await;
    let body = br#"{"id":"x","type":"whatsapp_message_status_updated","body":{}}"#;
    for _ in 0..2 {
        let rejection = event::parse(body).unwrap_err();
        store
            .dead_letter_rejected(&rejection, Bytes::from_static(body))
            .await
            .unwrap();
    }
    let counts = store
        .event_counts(before - chrono::Duration::hours(1))
        .await
        .unwrap();
    let mut got: BTreeMap<(Counted, String), i64> = BTreeMap::new();
    for c in &counts {
        assert!(c.hour <= chrono::Utc::now() && c.hour > before - chrono::Duration::hours(1));
        let status = event::counted_status(c.status.as_ref()).to_owned();
        *got.entry((c.outcome, status)).or_default() += c.events;
    }
    let want: BTreeMap<(Counted, String), i64> = [
        ((Counted::Accepted, "delivered"), 1),
        ((Counted::Accepted, "read"), 2),
        ((Counted::Accepted, "failed"), 1),
        ((Counted::Accepted, "SMECL:FAILED"), 1),
        ((Counted::Accepted, "other"), 1),
        ((Counted::Accepted, ""), 1),
        ((Counted::Duplicate, "read"), 1),
        ((Counted::Duplicate, ""), 1),
        ((Counted::Rejected, ""), 2),
    ]
    .into_iter()
    .map(|((o, s), n)| ((o, s.to_owned()), n))
    .collect();
    assert_eq!(got, want);
    // Nothing counted from an hour from now on.
    let later = store
        .event_counts(chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(later.is_empty());
    store.close().await;
}

async fn recent_batches_come_newest_first_by_prefix_and_page(b: &impl Backend) {
    let store = b.open().await;
    // Batch k's last event is at minute k; "camp-k" and "other-k".
    for k in 0..6u32 {
        for prefix in ["camp", "other"] {
            let uid = format!("{prefix}-{k}");
            let at = format!("2026-03-01T10:{k:02}:00.000Z");
            accept(
                &store,
                &status_at(&uid, &format!("{uid}-m"), &uid, "read", &at),
            )
            .await;
        }
    }
    let uids = |batches: &[innohook::event::tracking::Batch]| -> Vec<String> {
        batches.iter().map(|b| b.uid.clone()).collect()
    };
    let all = store
        .recent_batches(&BatchQuery {
            limit: 100,
            ..BatchQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 12);
    assert_eq!(&uids(&all)[..4], ["other-5", "camp-5", "other-4", "camp-4"]);
    assert!(all.iter().all(|b| b.messages == 1 && b.read == 1));
    // Paged by prefix: each page continues after the last of the one before.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .recent_batches(&BatchQuery {
                uid_prefix: Some("camp".into()),
                before: before.clone(),
                limit: 4,
                ..BatchQuery::default()
            })
            .await
            .unwrap();
        seen.extend(uids(&page));
        match page.last() {
            Some(last) if page.len() == 4 => before = Some((last.last_event_at, last.uid.clone())),
            _ => break,
        }
    }
    assert_eq!(
        seen,
        ["camp-5", "camp-4", "camp-3", "camp-2", "camp-1", "camp-0"]
    );
    let none = store
        .recent_batches(&BatchQuery {
            uid_prefix: Some("nobody".into()),
            limit: 10,
            ..BatchQuery::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    // Active in a span: its first event before the span's end, its last at or after its
    // start (each batch here has one event, at minute k).
    let at = |m: u32| {
        chrono::DateTime::parse_from_rfc3339(&format!("2026-03-01T10:{m:02}:00Z"))
            .unwrap()
            .to_utc()
    };
    let active = store
        .recent_batches(&BatchQuery {
            uid_prefix: Some("camp".into()),
            active: Some((at(2), at(4))),
            limit: 10,
            ..BatchQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(uids(&active), ["camp-3", "camp-2"]);
    store.close().await;
}

/// The timeline counts every status event of the batch's messages in the hour of its
/// eventTime, follows a message that moves to another batch, and the ids and statuses
/// come a slice at a time.
async fn a_batch_timeline_counts_status_events_per_hour(b: &impl Backend) {
    let store = b.open().await;
    // m0-m4 delivered at 09:xx; m0-m2 read at 10:xx; m4 failed at 12:xx.
    for m in 0..5 {
        let msg = format!("m{m}");
        let at = format!("2026-03-01T09:{m:02}:00.000Z");
        accept(
            &store,
            &status_at(&format!("{msg}-d"), &msg, "t", "delivered", &at),
        )
        .await;
    }
    for m in 0..3 {
        let msg = format!("m{m}");
        let at = format!("2026-03-01T10:{m:02}:00.000Z");
        accept(
            &store,
            &status_at(&format!("{msg}-r"), &msg, "t", "read", &at),
        )
        .await;
    }
    accept(
        &store,
        &status_at("m4-f", "m4", "t", "failed", "2026-03-01T12:30:00.000Z"),
    )
    .await;
    // A duplicate changes nothing.
    accept(
        &store,
        &status_at("m0-again", "m0", "t", "read", "2026-03-01T11:00:00.000Z"),
    )
    .await;
    let hour = |h: u32| {
        chrono::DateTime::parse_from_rfc3339(&format!("2026-03-01T{h:02}:00:00Z"))
            .unwrap()
            .to_utc()
    };
    // Each hour of a batch's timeline with its counts.
    let timeline = async |uid: &str| -> Vec<_> {
        store
            .batch_timeline(uid)
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.hour, h.events))
            .collect()
    };
    assert_eq!(
        timeline("t").await,
        [
            (hour(9), [5, 0, 0, 0]),
            (hour(10), [0, 3, 0, 0]),
            (hour(12), [0, 0, 1, 0])
        ]
    );
    // m3's read comes with another uid (a read outranks a delivered): m3 and both its
    // events move to batch "moved".
    accept(
        &store,
        &status_at("m3-r", "m3", "moved", "read", "2026-03-01T10:30:00.000Z"),
    )
    .await;
    assert_eq!(
        timeline("moved").await,
        [(hour(9), [1, 0, 0, 0]), (hour(10), [0, 1, 0, 0])]
    );
    // m5 is the only message with events at 13:00; when it moves, that hour leaves "t"'s
    // timeline instead of staying with nothing in it.
    for (id, uid, status, at) in [
        ("m5-d", "t", "delivered", "2026-03-01T13:10:00.000Z"),
        ("m5-r", "moved", "read", "2026-03-01T13:20:00.000Z"),
    ] {
        accept(&store, &status_at(id, "m5", uid, status, at)).await;
    }
    assert_eq!(
        timeline("t").await,
        [
            (hour(9), [4, 0, 0, 0]),
            (hour(10), [0, 3, 0, 0]),
            (hour(12), [0, 0, 1, 0])
        ]
    );
    assert!(timeline("nobody").await.is_empty());
    // Ids and statuses, two at a time.
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let slice = store
            .batch_message_statuses("t", after.as_deref(), 2)
            .await
            .unwrap();
        got.extend(
            slice
                .iter()
                .map(|(id, s)| (id.clone(), s.as_str().to_owned())),
        );
        match slice.last() {
            Some((id, _)) if slice.len() == 2 => after = Some(id.clone()),
            _ => break,
        }
    }
    let want: Vec<(String, String)> = [
        ("m0", "read"),
        ("m1", "read"),
        ("m2", "read"),
        ("m4", "failed"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
    store.close().await;
}

/// Each status keeps the envelope that brought it (id, time received, warnings), and a
/// phone number finds its messages.
async fn messages_keep_their_events_and_are_found_by_phone(b: &impl Backend) {
    let store = b.open().await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    accept(&store, &status("env-d", "p1", "b", "delivered", 1)).await;
    let mut read = status("env-r", "p1", "b", "read", 2);
    read["extra"] = json!(true);
    accept(&store, &read).await;
    accept(&store, &status("env-dup", "p1", "b", "read", 3)).await;
    let mut elsewhere = status("env-2", "p2", "b", "read", 2);
    elsewhere["body"]["sendPhone"] = "6599999".into();
    accept(&store, &elsewhere).await;

    let warned = |v: &Value| -> Vec<String> {
        parsed(v)
            .0
            .warnings
            .iter()
            .map(|w| w.field.clone())
            .collect()
    };
    let want = [
        (
            "delivered",
            "env-d",
            warned(&status("env-d", "p1", "b", "delivered", 1)),
        ),
        ("read", "env-r", warned(&read)),
    ];
    assert!(want[1].2.contains(&"extra".to_owned()));
    let m = store.message("p1").await.unwrap().unwrap();
    let events: Vec<(&str, &str, Vec<String>)> = m
        .events
        .iter()
        .map(|(s, e)| {
            assert!(e.received_at >= before && e.received_at <= chrono::Utc::now());
            (
                s.as_str(),
                e.envelope_id.as_str(),
                e.warnings.iter().map(|w| w.field.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(events, want);
    assert!(
        m.events[&event::Status::Read]
            .warnings
            .iter()
            .any(|w| w.code == "unknown_field" && w.field == "extra")
    );
    let ids = |found: Vec<innohook::event::tracking::Message>| -> Vec<String> {
        found.into_iter().map(|m| m.id).collect()
    };
    assert_eq!(
        ids(store.messages_by_phone("6512345").await.unwrap()),
        ["p1"]
    );
    assert_eq!(
        ids(store.messages_by_phone("6599999").await.unwrap()),
        ["p2"]
    );
    assert!(store.messages_by_phone("65").await.unwrap().is_empty());
    store.close().await;
}

async fn dead_letter_pages_carry_their_events_and_replay_one_at_a_time(b: &impl Backend) {
    let store = b.open().await;
    let mut seqs = Vec::new();
    for i in 0..4 {
        let v = status(&format!("e{i}"), &format!("m{i}"), "b", "read", 1);
        if let Outcome::Accepted { seq } = accept(&store, &v).await {
            seqs.push(seq);
        }
    }
    let lease = store.claim_sink("crm").await.unwrap().unwrap();
    let dead = seqs[..3]
        .iter()
        .map(|&seq| UndeliveredEvent {
            seq,
            code: innohook::store::Undelivered::RejectedBySink,
            reason: format!("400 for {seq}"),
            attempts: 1,
            first_attempt_at: chrono::Utc::now(),
        })
        .collect();
    store
        .sink_progress(
            &lease,
            Progress {
                cursor: Some(seqs[3]),
                dead,
                ..Progress::default()
            },
        )
        .await
        .unwrap();
    let body = br#"{"id":"x","type":"whatsapp_message_status_updated","body":{}}"#;
    let rejection = event::parse(body).unwrap_err();
    let http_id = store
        .dead_letter_rejected(&rejection, Bytes::from_static(body))
        .await
        .unwrap();
    let page = |before: Option<i64>, limit| DeadLetterQuery {
        source: innohook::store::DeadLetterSource::Sink,
        before,
        limit,
    };
    let first = store.dead_letter_page(&page(None, 2)).await.unwrap();
    let rest = store
        .dead_letter_page(&page(Some(first[1].letter.id), 2))
        .await
        .unwrap();
    let shown: Vec<(Option<i64>, i64, String)> = first
        .iter()
        .chain(&rest)
        .map(|d| {
            let e = d.event.as_ref().expect("the event comes along");
            assert!(!d.queued && d.letter.replayed_at.is_none());
            (d.letter.event_seq, e.seq, d.letter.reason.clone())
        })
        .collect();
    let want: Vec<(Option<i64>, i64, String)> = seqs[..3]
        .iter()
        .rev()
        .map(|&s| (Some(s), s, format!("400 for {s}")))
        .collect();
    assert_eq!(shown, want, "newest first, paged");
    let http = store
        .dead_letter_page(&DeadLetterQuery {
            source: innohook::store::DeadLetterSource::Http,
            before: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(http.len(), 1);
    assert_eq!(http[0].letter.id, http_id);
    assert!(http[0].event.is_none());
    assert_eq!(
        http[0].letter.body.as_deref().map(str::as_bytes),
        Some(&body[..])
    );

    // One replayed: it joins the queue, alone, once; a rejected push is not replayed.
    let one = first[0].letter.id;
    assert!(store.replay_dead_letter(one).await.unwrap());
    assert!(
        !store.replay_dead_letter(one).await.unwrap(),
        "already replayed"
    );
    assert!(!store.replay_dead_letter(http_id).await.unwrap());
    assert!(!store.replay_dead_letter(9_999_999).await.unwrap());
    let queued = store.replay_queue("crm", 10).await.unwrap();
    assert_eq!(queued.iter().map(|e| e.seq).collect::<Vec<_>>(), [seqs[2]]);
    let now = store.dead_letter_page(&page(None, 10)).await.unwrap();
    let states: Vec<(i64, bool, bool)> = now
        .iter()
        .map(|d| (d.letter.id, d.letter.replayed_at.is_some(), d.queued))
        .collect();
    assert_eq!(states[0], (one, true, true));
    assert!(states[1..].iter().all(|s| !s.1 && !s.2));
    // Delivered: out of the queue, shown as replayed.
    store
        .sink_progress(
            &lease,
            Progress {
                replayed: vec![seqs[2]],
                ..Progress::default()
            },
        )
        .await
        .unwrap();
    let after = store.dead_letter_page(&page(None, 1)).await.unwrap();
    assert!(after[0].letter.replayed_at.is_some() && !after[0].queued);
    // Replaying the sink takes the other two.
    assert_eq!(store.replay(Some("crm")).await.unwrap(), 2);
    store.close().await;
}

async fn sink_states_show_positions_failures_and_dead_letters(b: &impl Backend) {
    let store = b.open().await;
    assert!(store.sink_states().await.unwrap().is_empty());
    let Outcome::Accepted { seq } = accept(&store, &status("e1", "m1", "b", "read", 1)).await
    else {
        panic!("a new event")
    };
    let lease = store.claim_sink("crm").await.unwrap().unwrap();
    store
        .sink_progress(
            &lease,
            Progress {
                cursor: Some(seq),
                dead: vec![UndeliveredEvent {
                    seq,
                    code: innohook::store::Undelivered::RetriesExhausted,
                    reason: "503".into(),
                    attempts: 3,
                    first_attempt_at: chrono::Utc::now(),
                }],
                ..Progress::default()
            },
        )
        .await
        .unwrap();
    store
        .record_sink_error("crm", Some("connection refused"))
        .await
        .unwrap();
    store
        .record_sink_error("file", Some("disk full"))
        .await
        .unwrap();
    let states = store.sink_states().await.unwrap();
    assert_eq!(
        states.iter().map(|s| s.sink.as_str()).collect::<Vec<_>>(),
        ["crm", "file"]
    );
    let crm = &states[0];
    assert_eq!(crm.cursor, Some(seq));
    assert_eq!(crm.dead_letters, 1);
    assert!(crm.last_dead_letter_at.is_some());
    assert_eq!(crm.last_error.as_deref(), Some("connection refused"));
    let since = crm.failing_since.expect("failing");
    assert_eq!(states[1].cursor, None);
    assert_eq!(states[1].dead_letters, 0);
    // Another error: still failing since the first; then delivering again, the last
    // error kept.
    store
        .record_sink_error("crm", Some("timed out"))
        .await
        .unwrap();
    let crm = store.sink_states().await.unwrap().remove(0);
    assert_eq!(
        (crm.failing_since, crm.last_error.as_deref()),
        (Some(since), Some("timed out"))
    );
    store.record_sink_error("crm", None).await.unwrap();
    store.replay(Some("crm")).await.unwrap();
    let crm = store.sink_states().await.unwrap().remove(0);
    assert_eq!(crm.failing_since, None);
    assert_eq!(crm.last_error.as_deref(), Some("timed out"));
    assert_eq!(crm.dead_letters, 0, "replayed");
    store.close().await;
}

/// A failed message's row whose error lost the status it came with (damaged, or written
/// by hand) cannot be read as some other message: every backend says so, naming the
/// message, instead of inventing a status. The other messages read as ever.
async fn a_message_row_missing_its_error_status_is_an_error(b: &impl Backend) {
    let store = b.open().await;
    accept(&store, &status("e1", "m1", "b", "failed", 1)).await;
    accept(&store, &status("e2", "m2", "b", "delivered", 2)).await;
    let failed = store.message("m1").await.unwrap().expect("stored");
    assert_eq!(
        failed
            .error
            .map(|e| e.status.as_str().to_owned())
            .as_deref(),
        Some("failed")
    );
    b.execute("UPDATE messages SET error_status = NULL WHERE message_id = 'm1'")
        .await;
    let error = store
        .message("m1")
        .await
        .expect_err("the damaged row is an error");
    let text = error.to_string();
    assert!(
        text.contains("\"m1\"") && text.contains("error_status"),
        "{text}"
    );
    assert!(store.message("m2").await.unwrap().is_some());
    // A page that holds it fails the same way rather than leave it out.
    assert!(store.batch_messages("b", None, 10).await.is_err());
    store.close().await;
}

/// A customer's message answering `wamid` (a text quoting it, or a reaction to it).
fn reply(env: &str, wamid: &str, to: &str, reaction: bool) -> Value {
    let mut body = json!({
        "id": format!("in-{wamid}-{env}"), "accountName": "acct", "wabaId": "waba",
        "wamid": format!("wamid.in-{env}"), "from": "6512345", "to": "6590001111",
        "sendTime": "2026-03-01T11:00:00.000Z", "customerProfile": {"name": "Mei"},
    });
    if reaction {
        body["type"] = json!("reaction");
        body["reaction"] = json!({"messageId": to, "emoji": "👍"});
    } else {
        body["type"] = json!("text");
        body["text"] = json!({"body": "thanks"});
        body["context"] = json!({"from": "6590001111", "id": to});
    }
    json!({"id": env, "type": "whatsapp_mo_message_received",
           "eventTime": "2026-03-01T11:00:00.412Z", "body": body})
}

/// A reply and the status report naming the message it answers may come in either order,
/// to either replica: the message shows its reply, the batch counts it answered, and the
/// same reply pushed again under another envelope id is a duplicate.
async fn a_reply_is_linked_whichever_comes_first(b: &impl Backend) {
    let one = b.open().await;
    let other = if b.replicas() {
        b.open().await
    } else {
        one.clone()
    };
    // Status first, then its reply (to the other replica).
    accept(&one, &status("s1", "m1", "b", "delivered", 1)).await;
    let first = reply("r1", "wamid.m1", "wamid.m1", false);
    assert!(matches!(
        accept(&other, &first).await,
        Outcome::Accepted { .. }
    ));
    // The reply first, then the status of the message it answers.
    let early = reply("r2", "wamid.m2", "wamid.m2", true);
    assert!(matches!(
        accept(&one, &early).await,
        Outcome::Accepted { .. }
    ));
    accept(&other, &status("s2", "m2", "b", "read", 2)).await;
    accept(&one, &status("s3", "m3", "b", "read", 3)).await;
    // Pushed again under another envelope id: the same wamid, a duplicate.
    let mut again = first.clone();
    again["id"] = json!("r1-again");
    assert_eq!(accept(&one, &again).await, Outcome::Duplicate);
    for store in [&one, &other] {
        let replies = store.replies("wamid.m1").await.unwrap();
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(
            (
                replies[0].content_type.as_str(),
                replies[0].reply_to.as_deref()
            ),
            ("text", Some("wamid.m1"))
        );
        assert_eq!(replies[0].from, "6512345");
        let reaction = store.replies("wamid.m2").await.unwrap();
        assert_eq!(reaction.len(), 1);
        assert_eq!(reaction[0].content_type, "reaction");
        assert!(store.replies("wamid.m3").await.unwrap().is_empty());
        assert_eq!(store.replied("b").await.unwrap(), 2);
        let found = store
            .inbound("wamid.in-r1")
            .await
            .unwrap()
            .expect("by wamid");
        let id = found.id.clone().expect("its InnoPaaS id");
        assert_eq!(store.inbound(&id).await.unwrap(), Some(found.clone()));
        let page = store
            .inbound_page(&innohook::store::InboundQuery {
                uid: Some("b".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 2, "the batch's replies, the latest first");
        assert!(page[0].seq > page[1].seq);
    }
    // Inbound messages go with retain_messages.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let policy = innohook::store::Retention {
        messages: Some(std::time::Duration::from_secs(1)),
        ..Default::default()
    };
    let mut state = innohook::store::PruneState::default();
    let dry = one.prune(&policy, &mut state, 100, true).await.unwrap();
    assert_eq!(dry.inbound, 2);
    let mut state = innohook::store::PruneState::default();
    assert_eq!(
        one.prune(&policy, &mut state, 100, false)
            .await
            .unwrap()
            .inbound,
        2
    );
    assert_eq!(one.inbound("wamid.in-r1").await.unwrap(), None);
    assert!(one.replies("wamid.m1").await.unwrap().is_empty());
    one.close().await;
    if b.replicas() {
        other.close().await;
    }
}

/// `replied` is the number of a batch's messages with at least one reply or reaction,
/// whatever the order and however often each push came.
async fn a_batch_counts_the_messages_answered_in_a_shuffled_stream_with_duplicates(
    b: &impl Backend,
) {
    let store = b.open().await;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut pushes = Vec::new();
    let mut answered = std::collections::BTreeSet::new();
    for m in 0..40u32 {
        let msg = format!("q{m}");
        pushes.push(status(
            &format!("s{m}"),
            &msg,
            "shuffled",
            "delivered",
            m % 60,
        ));
        for r in 0..rng.usize(0..3) {
            let to = format!("wamid.{msg}");
            pushes.push(reply(&format!("r{m}-{r}"), &to, &to, rng.bool()));
            answered.insert(m);
        }
    }
    // A reply to a message of no batch innohook knows, and duplicates of some pushes.
    pushes.push(reply("stray", "wamid.elsewhere", "wamid.elsewhere", false));
    for _ in 0..15 {
        let again = pushes[rng.usize(0..pushes.len())].clone();
        pushes.push(again);
    }
    rng.shuffle(&mut pushes);
    for p in &pushes {
        accept(&store, p).await;
    }
    assert_eq!(
        store.replied("shuffled").await.unwrap(),
        answered.len() as i64
    );
    assert_eq!(store.replied("nobody").await.unwrap(), 0);
    store.close().await;
}

/// A template event: `kind` "status" (value a template status) or "quality" (value a
/// quality score), of template `id`, said at `at`.
fn template_event(env: &str, id: &str, kind: &str, value: &str, at: &str) -> Value {
    let (event_type, body) = match kind {
        "status" => (
            "whatsapp_template_status_updated",
            json!({"accountName": "acct", "wabaId": "waba", "templateId": id,
                   "templateName": format!("name_{id}"), "templateLanguage": "en_US",
                   "category": "MARKETING", "templateStatus": value,
                   "reason": if value == "REJECTED" { "INVALID_FORMAT" } else { "NONE" }}),
        ),
        _ => (
            "message_template_quality_update",
            json!({"wabaId": "waba", "templateId": id, "templateName": format!("name_{id}"),
                   "templateLanguage": "en_US", "previousQualityScore": "GREEN",
                   "newQualityScore": value}),
        ),
    };
    json!({"id": env, "type": event_type, "eventTime": at, "body": body})
}

/// Each of a template's status, quality and category is the latest (by eventTime) event's
/// that says it, in whichever order the events came and to whichever replica; the same
/// news under another envelope id is a duplicate; the history is kept newest first, and
/// the retention removes only what is no longer any template's latest.
async fn a_template_is_what_its_latest_events_say_whatever_their_order(b: &impl Backend) {
    let one = b.open().await;
    let other = if b.replicas() {
        b.open().await
    } else {
        one.clone()
    };
    let events = [
        template_event("t1", "77", "status", "PENDING", "2026-03-01T10:00:00.000Z"),
        template_event("t2", "77", "status", "APPROVED", "2026-03-01T11:00:00.000Z"),
        template_event("t3", "77", "status", "PAUSED", "2026-03-02T09:00:00.000Z"),
        template_event("t4", "77", "quality", "RED", "2026-03-02T08:00:00.000Z"),
        template_event("t5", "78", "status", "APPROVED", "2026-03-01T12:00:00.000Z"),
        template_event("t6", "78", "quality", "YELLOW", "2026-03-01T13:00:00.000Z"),
        json!({"id": "t7", "type": "template_category_update", "eventTime": "2026-03-03T00:00:00.000Z",
               "body": {"templateId": "78", "previousCategory": "MARKETING", "newCategory": "UTILITY"}}),
    ];
    // The latest of 77's statuses comes first, its oldest last.
    for (i, e) in [2, 5, 0, 6, 3, 4, 1].into_iter().enumerate() {
        let store = if i % 2 == 0 { &one } else { &other };
        assert!(
            matches!(accept(store, &events[e]).await, Outcome::Accepted { .. }),
            "{e}"
        );
    }
    // The same news again under another envelope id.
    let mut again = events[2].clone();
    again["id"] = json!("t3-again");
    assert_eq!(accept(&other, &again).await, Outcome::Duplicate);

    for store in [&one, &other] {
        let all = store.templates().await.unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        let (t77, t78) = (&all[0], &all[1]);
        assert_eq!(t77.id, "77", "the alarming first");
        assert_eq!(
            (t77.status.as_deref(), t77.quality.as_deref(), t77.alarming),
            (Some("PAUSED"), Some("RED"), true)
        );
        assert_eq!(t77.reason, None);
        assert_eq!(t77.name.as_deref(), Some("name_77"));
        assert_eq!(t77.language.as_deref(), Some("en_US"));
        assert_eq!(t77.category.as_deref(), Some("MARKETING"));
        assert_eq!(
            t77.status_at.map(|t| t.to_rfc3339()),
            Some("2026-03-02T09:00:00+00:00".into())
        );
        assert_eq!(
            (t78.status.as_deref(), t78.quality.as_deref(), t78.alarming),
            (Some("APPROVED"), Some("YELLOW"), false)
        );
        assert_eq!(
            t78.category.as_deref(),
            Some("UTILITY"),
            "the category update"
        );
        let (t, history) = store.template("77").await.unwrap().expect("77");
        assert_eq!(&t, t77);
        let said: Vec<_> = history
            .iter()
            .map(|e| e.value.as_deref().unwrap())
            .collect();
        assert_eq!(
            said,
            ["PAUSED", "RED", "APPROVED", "PENDING"],
            "newest first"
        );
        assert_eq!(history[1].previous.as_deref(), Some("GREEN"));
        assert!(store.template("79").await.unwrap().is_none());
    }
    // Approved again later: no longer alarming for its status; its quality still RED.
    accept(
        &one,
        &template_event("t8", "77", "status", "APPROVED", "2026-03-04T00:00:00.000Z"),
    )
    .await;
    accept(
        &one,
        &template_event("t9", "77", "quality", "GREEN", "2026-03-04T01:00:00.000Z"),
    )
    .await;
    let t77 = &one.templates().await.unwrap()[..];
    assert!(t77.iter().all(|t| !t.alarming), "{t77:?}");

    // Retention: every row older than the cut goes but each template's latest of each
    // kind (77: status t8 and quality t9; 78: status t5, quality t6, category t7).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let policy = innohook::store::Retention {
        messages: Some(std::time::Duration::from_secs(1)),
        ..Default::default()
    };
    let mut state = innohook::store::PruneState::default();
    let dry = one.prune(&policy, &mut state, 100, true).await.unwrap();
    assert_eq!(dry.templates, 4);
    let mut state = innohook::store::PruneState::default();
    let done = one.prune(&policy, &mut state, 100, false).await.unwrap();
    assert_eq!(done.templates, 4);
    let (t, history) = one.template("77").await.unwrap().expect("77 stays");
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(
        (t.status.as_deref(), t.quality.as_deref()),
        (Some("APPROVED"), Some("GREEN"))
    );
    let (t, history) = one.template("78").await.unwrap().expect("78 stays");
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(t.category.as_deref(), Some("UTILITY"));
    one.close().await;
    if b.replicas() {
        other.close().await;
    }
}
