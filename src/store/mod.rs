//! The store contract: everything innohook keeps, at the level of its use cases. The HTTP
//! handlers, the sink runners, the commands and the dashboard hold an `Arc<dyn Store>`;
//! only a backend under `store/<backend>/` knows its database.
//!
//! The promises every backend keeps:
//! - **Ingest.** [`Store::accept`] answers only after the event is durably committed,
//!   together with its dedup and its message tracking ([`crate::event::tracking`]); an
//!   error means nothing of it was stored.
//! - **Delivery.** Every stored event has a `seq`. Events become visible in `seq` order:
//!   once an event is visible to [`Store::events_after`], no event with a lower `seq`
//!   can appear later (a backend shared by several processes must order its commits so,
//!   not only number them). So a sink's position is simply the last `seq` it is done
//!   with, and `seq > position` never skips an event committed late. [`Store::head`]
//!   wakes a runner when anything commits.
//! - **One runner per sink.** A sink's progress is recorded under a [`SinkLease`]; a
//!   backend shared by several processes grants it to one at a time and refuses progress
//!   under a lease that was taken over ([`StoreError::LeaseLost`]). Periodic work runs
//!   once across them ([`Store::due`]).

pub mod config;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::event::tracking::{Batch, Message};
use crate::event::{Accepted, Rejection, Status};
pub use config::{Retain, StoreBackend, StoreConfig};

/// Something the store could not do. Callers answer 503 (ingest) or 500 (queries).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store is closed")]
    Closed,
    /// The database failed (the backend's own message).
    #[error("{0}")]
    Backend(String),
    /// Another process took over the sink; its progress is no longer ours to record.
    #[error("the lease on sink {0} was taken over")]
    LeaseLost(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What became of an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored under this sequence number.
    Accepted { seq: i64 },
    /// Already stored; nothing new was written.
    Duplicate,
}

/// An accepted event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    /// When it was committed.
    pub received_at: DateTime<Utc>,
    pub event_id: String,
    pub event_type: String,
    /// body.id and body.status, for status events.
    pub message_id: Option<String>,
    pub status: Option<Status>,
    /// JSON array of warnings.
    pub warnings: String,
    /// The request body, byte for byte.
    pub body: Bytes,
}

impl StoredEvent {
    /// A key unique to this stored event, and the same on every attempt, restart and
    /// replica: what a receiving system deduplicates on. For a message status
    /// `{body.id}:{status}` (one event per message and status is stored), for another
    /// event a digest of its envelope id and body; a digest too where body.id would not
    /// fit in a header.
    pub fn delivery_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = |parts: &[&[u8]]| {
            let mut h = Sha256::new();
            for p in parts {
                h.update(p);
                h.update([0]);
            }
            let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        };
        match (&self.message_id, &self.status) {
            (Some(m), Some(s)) => {
                let key = format!("{m}:{s}");
                let fits = key.len() <= 200 && key.bytes().all(|b| b.is_ascii_graphic());
                if fits {
                    key
                } else {
                    digest(&[m.as_bytes(), s.as_str().as_bytes()])
                }
            }
            _ => digest(&[self.event_id.as_bytes(), &self.body]),
        }
    }

    /// The body on one line, as received otherwise. A JSON string cannot hold a raw line
    /// break, so every one in a body lies between two tokens and becomes a space without
    /// changing what the body says: key order, numbers and escapes stay exactly as they
    /// came, including escapes a JSON value cannot hold (a lone surrogate such as
    /// `"\ud800"` in an undocumented field is accepted and kept).
    pub fn body_on_one_line(&self) -> std::borrow::Cow<'_, [u8]> {
        if self.body.iter().any(|&b| b == b'\n' || b == b'\r') {
            let spaced = self.body.iter().map(|&b| match b {
                b'\n' | b'\r' => b' ',
                b => b,
            });
            std::borrow::Cow::Owned(spaced.collect())
        } else {
            std::borrow::Cow::Borrowed(&self.body)
        }
    }
}

/// A dead letter, as `innohook dead-letters` prints it (one JSON object a line).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: i64,
    /// When it became a dead letter (for a sink's: its last attempt).
    #[serde(with = "crate::event::time_format")]
    pub created_at: DateTime<Utc>,
    /// `http`: a request that was rejected; `sink`: an event a sink could not deliver.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_seq: Option<i64>,
    /// The undelivered event: envelope id, type, and body.id and status for a message
    /// status (a sink's dead letters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<EventSummary>,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Why: the rejection, or the sink's last error.
    pub reason: String,
    /// A sink's attempts, and when the first was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_time"
    )]
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// The body as received, as text (invalid UTF-8 replaced; then `bodyIsNotUtf8` is
    /// true): the rejected request's, or the undelivered event's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_is_not_utf8: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_time"
    )]
    pub replayed_at: Option<DateTime<Utc>>,
}

/// Which event a sink's dead letter is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    /// The envelope id.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

fn optional_time<S: serde::Serializer>(
    at: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => crate::event::time_format::serialize(at, s),
        None => s.serialize_none(),
    }
}

/// An event a sink gave up on.
#[derive(Debug, Clone)]
pub struct UndeliveredEvent {
    pub seq: i64,
    /// `rejected_by_sink` (permanent failure) or `retries_exhausted`.
    pub code: &'static str,
    /// The last error.
    pub reason: String,
    pub attempts: u32,
    pub first_attempt_at: DateTime<Utc>,
}

/// An event a sink set aside to retry on its own while later events go on (sinks that
/// keep each message's order, not the global one): it failed while others got through,
/// or an earlier event of its message is set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    pub seq: i64,
    /// body.id, whose later events wait behind this one.
    pub message_id: Option<String>,
    /// Attempts so far (0: waiting behind an earlier event of its message).
    pub attempts: u32,
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// When to try it again (once it is first of its message).
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: String,
}

/// What a sink is done with, recorded in one commit by [`Store::sink_progress`].
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The sink is done with every event up to this seq.
    pub cursor: Option<i64>,
    /// Events it gave up on: they become dead letters.
    pub dead: Vec<UndeliveredEvent>,
    /// Replayed seqs it is done with: they leave its replay queue.
    pub replayed: Vec<i64>,
    /// Events set aside, or set aside again after another attempt.
    pub parked: Vec<ParkedEvent>,
    /// Parked seqs it is done with (delivered, or in `dead`).
    pub unparked: Vec<i64>,
}

/// The right to run one sink, and to record its progress, until it is taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkLease {
    pub sink: String,
    /// The fencing token: progress under an older token than the sink's current one is
    /// refused.
    pub token: i64,
    /// When to claim it again (renewing it keeps the token).
    pub renew_at: std::time::Instant,
    /// Until when it is surely ours without a renewal (by this process's clock, counted
    /// from before the claim was sent).
    pub valid_until: std::time::Instant,
}

/// What the retention keeps (`None`: forever), and the sinks whose positions hold events.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    pub events: Option<std::time::Duration>,
    /// A message's status and a batch's summary, after their last event.
    pub messages: Option<std::time::Duration>,
    pub dead_letters: Option<std::time::Duration>,
    /// The configured sinks: an event stays until each of them is past it (a sink with no
    /// position yet holds every event).
    pub sinks: Vec<String>,
}

/// Where a pruning pass is, from one [`Store::prune`] call to the next (the sweeps over
/// messages and batches go by key).
#[derive(Debug, Clone, Default)]
pub struct PruneState {
    pub messages_after: Option<String>,
    pub batches_after: Option<String>,
}

/// What a [`Store::prune`] call removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pruned {
    pub events: u64,
    pub messages: u64,
    pub batches: u64,
    pub dead_letters: u64,
    /// The pass is complete: nothing more is due now.
    #[serde(skip)]
    pub done: bool,
    /// Sinks holding events past their retention, with the receipt time of the oldest
    /// event each still owes.
    #[serde(skip)]
    pub held_by: Vec<(String, DateTime<Utc>)>,
}

impl Pruned {
    pub fn add(&mut self, other: &Pruned) {
        self.events += other.events;
        self.messages += other.messages;
        self.batches += other.batches;
        self.dead_letters += other.dead_letters;
    }
}

/// How large the store is, for metrics.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub size_bytes: u64,
    /// Free and total space of the filesystem the store is on, when the store knows it
    /// (not for a database elsewhere).
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    /// Rows per table (estimates where counting would be slow).
    pub rows: Vec<(&'static str, i64)>,
    pub oldest_event_at: Option<DateTime<Utc>>,
}

/// Which stored events `/api/events` wants.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only status events of this status (wire spelling).
    pub status: Option<String>,
    /// Only events received at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events after this seq.
    pub after: i64,
    pub limit: usize,
}

/// What became of pushes, as counted per hour in the store (see [`Store::event_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counted {
    Accepted,
    Duplicate,
    /// Rejected with 400 (kept as a dead letter).
    Rejected,
}

impl Counted {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Accepted, Self::Duplicate, Self::Rejected]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

pub use crate::event::counted_status;

/// Pushes of one hour with one outcome and counted status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// The start of the hour (UTC) the store received them in.
    pub hour: DateTime<Utc>,
    pub outcome: Counted,
    /// As [`counted_status`] spells it.
    pub status: String,
    pub events: i64,
}

/// Most hours of a batch's timeline [`Store::batch_timeline`] gives (90 days).
pub const TIMELINE_HOURS: i64 = 90 * 24;

/// A batch's status events in one hour of their eventTime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHour {
    pub hour: DateTime<Utc>,
    /// delivered, read, failed (with `SMECL:FAILED`), other.
    pub events: [i64; 4],
}

/// Which batches [`Store::recent_batches`] wants: most recent last event first.
#[derive(Debug, Clone, Default)]
pub struct BatchQuery {
    /// Only uids starting with this.
    pub uid_prefix: Option<String>,
    /// Only batches after this one in that order: its last event time and uid.
    pub before: Option<(DateTime<Utc>, String)>,
    pub limit: usize,
}

/// Which dead letters [`Store::dead_letter_page`] wants: newest first.
#[derive(Debug, Clone)]
pub struct DeadLetterQuery {
    /// `http` (rejected pushes) or `sink` (events a sink gave up on).
    pub source: &'static str,
    /// Only ids below this.
    pub before: Option<i64>,
    pub limit: usize,
}

/// A dead letter with what a person needs to decide about it.
#[derive(Debug, Clone)]
pub struct DeadLetterEntry {
    pub letter: DeadLetter,
    /// A sink's dead letter: the event it could not deliver.
    pub event: Option<StoredEvent>,
    /// Replayed and still in its sink's replay queue (not delivered yet).
    pub queued: bool,
}

/// A sink as the store knows it, whichever process runs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkState {
    pub sink: String,
    /// The last seq it is done with (`None`: it never recorded progress).
    pub cursor: Option<i64>,
    /// Failing since then, until a delivery succeeds again.
    pub failing_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Its dead letters not replayed yet.
    pub dead_letters: i64,
    pub last_dead_letter_at: Option<DateTime<Utc>>,
    /// Events it set aside to retry on their own (and those waiting behind them).
    pub parked: i64,
}

/// [`Store::sink_states`] in SQL both backends read: every sink with a cursor, a recorded
/// failure, dead letters waiting or events set aside.
pub(crate) const SINK_STATES_SQL: &str = "WITH dead AS (
         SELECT sink, count(*) AS n, max(id) AS last FROM dead_letters
         WHERE source = 'sink' AND replayed_at IS NULL GROUP BY sink
     ), parked AS (
         SELECT sink, count(*) AS n FROM sink_parked GROUP BY sink
     ), names AS (
         SELECT sink FROM sink_cursors UNION SELECT sink FROM sink_status
         UNION SELECT sink FROM dead UNION SELECT sink FROM parked
     )
     SELECT names.sink, c.seq, s.failing_since, s.last_error, s.last_error_at,
         coalesce(dead.n, 0), l.created_at, coalesce(parked.n, 0)
     FROM names LEFT JOIN sink_cursors c ON c.sink = names.sink
         LEFT JOIN sink_status s ON s.sink = names.sink
         LEFT JOIN dead ON dead.sink = names.sink
         LEFT JOIN dead_letters l ON l.id = dead.last
         LEFT JOIN parked ON parked.sink = names.sink
     ORDER BY names.sink";

/// The store. See the module documentation for what every backend promises.
#[async_trait]
pub trait Store: Send + Sync {
    // Ingest.

    /// Stores an accepted event, with its message tracking, unless it is a duplicate;
    /// resolves after the commit.
    async fn accept(&self, accepted: &Accepted, body: Bytes) -> StoreResult<Outcome>;

    /// Keeps a rejected request body, with why it was rejected; returns its id.
    async fn dead_letter_rejected(&self, rejection: &Rejection, body: Bytes) -> StoreResult<i64>;

    // Delivery.

    /// The highest seq committed so far, as far as this process knows; it changes when
    /// anything commits.
    fn head(&self) -> watch::Receiver<i64>;

    /// Up to `limit` events with seq greater than `after`, in seq order.
    async fn events_after(&self, after: i64, limit: usize) -> StoreResult<Vec<StoredEvent>>;

    /// The last seq `sink` is done with, or `None` if it never ran on this store.
    async fn sink_cursor(&self, sink: &str) -> StoreResult<Option<i64>>;

    /// Takes or renews the right to run `sink`; `None` while another process holds it.
    async fn claim_sink(&self, sink: &str) -> StoreResult<Option<SinkLease>>;

    /// Gives the sink up (a clean stop), so that another process takes it over at once.
    async fn release_sink(&self, lease: &SinkLease) -> StoreResult<()>;

    /// Records what the lease's sink is done with, all in one commit.
    async fn sink_progress(&self, lease: &SinkLease, progress: Progress) -> StoreResult<()>;

    /// The events `sink` has set aside, in seq order, each with its event.
    async fn parked(&self, sink: &str) -> StoreResult<Vec<(ParkedEvent, StoredEvent)>>;

    /// Events put back in `sink`'s queue by [`Store::replay`], oldest first.
    async fn replay_queue(&self, sink: &str, limit: usize) -> StoreResult<Vec<StoredEvent>>;

    /// Puts sinks' dead letters (of one sink, or all) back in their queues; a running
    /// server picks them up within a second. Returns how many.
    async fn replay(&self, sink: Option<&str>) -> StoreResult<usize>;

    // Queries.

    /// One tracked message by its InnoPaaS id.
    async fn message(&self, id: &str) -> StoreResult<Option<Message>>;

    /// The tracked messages with this WhatsApp message id (normally one; at most 100).
    async fn messages_by_wamid(&self, wamid: &str) -> StoreResult<Vec<Message>>;

    /// A batch summary.
    async fn batch(&self, uid: &str) -> StoreResult<Option<Batch>>;

    /// Up to `limit` messages of a batch, by message id, after `after`.
    async fn batch_messages(
        &self,
        uid: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Message>>;

    /// Stored events, in seq order.
    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<StoredEvent>>;

    /// How many events are stored.
    async fn count_events(&self) -> StoreResult<i64>;

    /// Every dead letter, oldest first.
    async fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>>;

    // The dashboard's queries: each reads counters or an index, a page at a time.

    /// Pushes counted per hour received, from the hour of `since` on, in hour order.
    async fn event_counts(&self, since: DateTime<Utc>) -> StoreResult<Vec<HourCount>>;

    /// Batch summaries by last event time, newest first (without their failures).
    async fn recent_batches(&self, query: &BatchQuery) -> StoreResult<Vec<Batch>>;

    /// A batch's status events per hour of eventTime, in hour order (the latest
    /// [`TIMELINE_HOURS`]).
    async fn batch_timeline(&self, uid: &str) -> StoreResult<Vec<BatchHour>>;

    /// The ids and current statuses of up to `limit` messages of a batch after message id
    /// `after`, by message id: cheap enough to filter a large batch a slice at a time.
    async fn batch_message_statuses(
        &self,
        uid: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Status)>>;

    /// The tracked messages sent to this phone number (sendPhone as received; at most 100).
    async fn messages_by_phone(&self, phone: &str) -> StoreResult<Vec<Message>>;

    /// A page of dead letters of one source, newest first, with their events.
    async fn dead_letter_page(&self, query: &DeadLetterQuery) -> StoreResult<Vec<DeadLetterEntry>>;

    /// Every sink the store has heard of: position, failure, dead letters; by name.
    async fn sink_states(&self) -> StoreResult<Vec<SinkState>>;

    /// Records that `sink` is failing with `error`, or (`None`) delivering again.
    async fn record_sink_error(&self, sink: &str, error: Option<&str>) -> StoreResult<()>;

    /// Puts one sink dead letter back in its sink's queue, as [`Store::replay`] does for
    /// all; false when there is no such sink dead letter waiting for a replay.
    async fn replay_dead_letter(&self, id: i64) -> StoreResult<bool>;

    // Administration.

    /// Proves the store can take a write right now (a full disk fails here).
    async fn probe(&self) -> StoreResult<()>;

    /// Forgets the dedup keys of other-than-status events older than `days`; returns how
    /// many.
    async fn prune_dedup(&self, days: u32) -> StoreResult<u64>;

    /// Removes what the retention no longer keeps, at most `limit` rows per table, each
    /// call in a transaction of its own; call again (with the same `state`) until
    /// [`Pruned::done`]. Never an event a configured sink has not got past, nor one a
    /// sink has queued for replay, set aside, or has a dead letter for. `dry_run` only
    /// counts, everything at once.
    async fn prune(
        &self,
        policy: &Retention,
        state: &mut PruneState,
        limit: usize,
        dry_run: bool,
    ) -> StoreResult<Pruned>;

    /// How large the store is.
    async fn stats(&self) -> StoreResult<StoreStats>;

    /// Whether periodic job `job` is due in this process: true for one caller per `every`
    /// among all the processes sharing the store.
    async fn due(&self, job: &str, every: std::time::Duration) -> StoreResult<bool>;

    /// Stops taking writes and waits until every write queued before is answered.
    async fn close(&self);
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The server: ingests, runs sinks; creates and migrates the store.
    Server,
    /// A command beside a running server (or none): reads, and writes what it must
    /// (`replay`). The store must exist.
    Client,
}

/// Opens the configured store.
pub async fn open(config: &StoreConfig, role: Role) -> anyhow::Result<Arc<dyn Store>> {
    match config.backend {
        StoreBackend::Sqlite => {
            let dir = config.dir.clone();
            let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&dir, role))
                .await??;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        StoreBackend::Postgres => Ok(Arc::new(postgres::PgStore::open(config, role).await?)),
        #[cfg(not(feature = "postgres"))]
        StoreBackend::Postgres => anyhow::bail!(
            "store.backend is postgres, but this innohook was built without PostgreSQL support (cargo build --features postgres)"
        ),
    }
}

/// Checks what a server's start would need of the store, without creating anything
/// there; returns what it found, for people.
pub async fn check(config: &StoreConfig) -> anyhow::Result<String> {
    match config.backend {
        StoreBackend::Sqlite => sqlite::check(&config.dir),
        #[cfg(feature = "postgres")]
        StoreBackend::Postgres => postgres::check(config).await,
        #[cfg(not(feature = "postgres"))]
        StoreBackend::Postgres => anyhow::bail!(
            "store.backend is postgres, but this innohook was built without PostgreSQL support (cargo build --features postgres)"
        ),
    }
}

/// A connection URL with its password (and any query, which may hold one) left out.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(an unreadable URL)".to_owned(),
    }
}
