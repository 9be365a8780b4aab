//! The store contract: everything innohook keeps, at the level of its use cases, by
//! role: [`Ingest`] (the webhook), [`Delivery`] and [`SinkLedger`] (the sink runners),
//! [`Queries`] (the API, the dashboard, the commands), [`Pruning`] and [`Admin`]
//! (retention, readiness, shutdown). The callers hold an `Arc<dyn Store>` (every role)
//! or the role they use.
//!
//! Every rule that does not depend on the database is written once, here: what an
//! accepted event changes ([`ingest`]), every query and what its rows mean ([`sql`],
//! [`queries`]), what a sink's progress writes and what a pruning pass removes
//! ([`ledger`], [`prune`]). A backend under `store/<backend>/` keeps only its SQL,
//! transactions and how it commits, and runs the core's statements ([`sql::Sql`]).
//!
//! The promises every backend keeps:
//! - **Ingest.** [`Ingest::accept`] answers only after the event is durably committed,
//!   together with its dedup and its message tracking ([`crate::event::tracking`]); an
//!   error means nothing of it was stored.
//! - **Delivery.** Every stored event has a `seq`. Events become visible in `seq` order:
//!   once an event is visible to [`Delivery::events_after`], no event with a lower `seq`
//!   can appear later (a backend shared by several processes must order its commits so,
//!   not only number them). So a sink's position is simply the last `seq` it is done
//!   with, and `seq > position` never skips an event committed late. [`Delivery::head`]
//!   wakes a runner when anything commits.
//! - **One runner per sink.** A sink's progress is recorded under a [`SinkLease`]; a
//!   backend shared by several processes grants it to one at a time and refuses progress
//!   under a lease that was taken over ([`StoreError::LeaseLost`]). Periodic work runs
//!   once across them ([`Admin::due`]).

pub mod campaign;
pub mod ingest;
pub mod ledger;
pub mod prune;
pub mod queries;
pub mod sql;
mod types;

pub mod config;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

pub use self::config::{Retain, StoreBackend, StoreConfig};
pub use self::types::*;
use crate::campaign::sends::{Imported, Sent};
use crate::event::tracking::{Batch, Message};
use crate::event::{Accepted, Rejection, Status};

/// Ingest: what the webhook stores.
#[async_trait]
pub trait Ingest: Send + Sync {
    /// Stores an accepted event, with its message tracking, unless it is a duplicate;
    /// resolves after the commit.
    async fn accept(&self, accepted: &Accepted, body: Bytes) -> StoreResult<Outcome>;

    /// Keeps a rejected request body, with why it was rejected; returns its id.
    async fn dead_letter_rejected(&self, rejection: &Rejection, body: Bytes) -> StoreResult<i64>;
}

/// Delivery: what a sink runner reads committed events by, and records its progress
/// under. A backend's own: how it learns of commits, and how it grants a sink to one
/// process at a time.
#[async_trait]
pub trait Delivery: Send + Sync {
    /// The highest seq committed so far, as far as this process knows; it changes when
    /// anything commits.
    fn head(&self) -> watch::Receiver<i64>;

    /// Up to `limit` events with seq greater than `after`, in seq order.
    async fn events_after(&self, after: i64, limit: usize) -> StoreResult<Vec<StoredEvent>>;

    /// Takes or renews the right to run `sink`; `None` while another process holds it.
    async fn claim_sink(&self, sink: &str) -> StoreResult<Option<SinkLease>>;

    /// Gives the sink up (a clean stop), so that another process takes it over at once.
    async fn release_sink(&self, lease: &SinkLease) -> StoreResult<()>;

    /// Records what the lease's sink is done with, all in one commit.
    async fn sink_progress(&self, lease: &SinkLease, progress: Progress) -> StoreResult<()>;
}

/// The sink ledger: each sink's position, set-aside events, replay queue and failure.
/// Written once, for every backend ([`ledger`]).
#[async_trait]
pub trait SinkLedger: Send + Sync {
    /// The last seq `sink` is done with, or `None` if it never ran on this store.
    async fn sink_cursor(&self, sink: &str) -> StoreResult<Option<i64>>;

    /// The events `sink` has set aside, in seq order, each with its event.
    async fn parked(&self, sink: &str) -> StoreResult<Vec<(ParkedEvent, StoredEvent)>>;

    /// Events put back in `sink`'s queue by [`SinkLedger::replay`], oldest first.
    async fn replay_queue(&self, sink: &str, limit: usize) -> StoreResult<Vec<StoredEvent>>;

    /// Puts sinks' dead letters (of one sink, or all) back in their queues; a running
    /// server picks them up within a second. Returns how many.
    async fn replay(&self, sink: Option<&str>) -> StoreResult<usize>;

    /// Puts one sink dead letter back in its sink's queue, as [`SinkLedger::replay`]
    /// does for all; false when there is no such sink dead letter waiting for a replay.
    async fn replay_dead_letter(&self, id: i64) -> StoreResult<bool>;

    /// Records that `sink` is failing with `error`, or (`None`) delivering again.
    async fn record_sink_error(&self, sink: &str, error: Option<&str>) -> StoreResult<()>;
}

/// Most messages [`Queries::messages_by_wamid`] and [`Queries::messages_by_phone`] read.
pub const MESSAGES_READ: usize = 100;

/// Queries: what the API, the dashboard and the commands read. Written once, for every
/// backend ([`queries`]); each reads counters or an index, a page at a time.
#[async_trait]
pub trait Queries: Send + Sync {
    /// One tracked message by its InnoPaaS id.
    async fn message(&self, id: &str) -> StoreResult<Option<Message>>;

    /// The tracked messages with this WhatsApp message id (normally one; at most
    /// [`MESSAGES_READ`]).
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

    /// One inbound message by InnoPaaS id or wamid (the latest stored, if several).
    async fn inbound(&self, id: &str) -> StoreResult<Option<Inbound>>;

    /// Inbound messages, the latest stored first.
    async fn inbound_page(&self, query: &InboundQuery) -> StoreResult<Vec<Inbound>>;

    /// The inbound messages that answer or react to the message with this wamid, as
    /// sent (whichever of the two was stored first).
    async fn replies(&self, wamid: &str) -> StoreResult<Vec<Inbound>>;

    /// How many of a batch's messages were answered (a reply or a reaction to them).
    async fn replied(&self, uid: &str) -> StoreResult<i64>;

    /// Every template heard of, as its events leave it: those someone must look at
    /// first, then the latest changed first.
    async fn templates(&self) -> StoreResult<Vec<Template>>;

    /// One template as its events leave it, and its events, the latest first.
    async fn template(&self, id: &str) -> StoreResult<Option<(Template, Vec<TemplateEvent>)>>;
}

/// The send list and what it adds to a batch's figures. Written once, for every backend
/// ([`campaign`]).
#[async_trait]
pub trait Campaigns: Send + Sync {
    /// Stores the sends not known yet (by message id; a known one is left as it was), a
    /// few hundred per transaction, counting into `done` as each commits: after an error
    /// `done` says how much was stored.
    async fn import_sends(&self, sends: &[Sent], done: &mut Imported) -> StoreResult<()>;

    /// A batch's sends: how many, how many have no status report, and how many of those
    /// were sent before `cutoff`.
    async fn send_figures(&self, uid: &str, cutoff: DateTime<Utc>) -> StoreResult<SendFigures>;

    /// Up to `limit` of a batch's sends sent before `cutoff` that have no status report,
    /// by message id, after `after`.
    async fn unconfirmed_sends(
        &self,
        uid: &str,
        cutoff: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Sent>>;

    /// One send by message id.
    async fn send(&self, id: &str) -> StoreResult<Option<Sent>>;

    /// A batch's messages by conversation category and the first four digits of the
    /// number: `(category, prefix, messages)`, by category and prefix.
    async fn batch_categories(&self, uid: &str) -> StoreResult<Vec<(String, String, i64)>>;

    /// The daily report's counters from quarter-hour `from` up to `to`: `(slot, kind,
    /// code, n)`.
    async fn activity(&self, from: i64, to: i64) -> StoreResult<Vec<(i64, String, String, i64)>>;

    /// Listed sends per quarter-hour of their `sentAt`, from `from` up to `to`.
    async fn sends_per_slot(&self, from: i64, to: i64) -> StoreResult<Vec<(i64, i64)>>;

    /// When each reply or reaction to a message was sent, from `from` up to `to`.
    async fn replies_sent_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>>;
}

/// Pruning: the retention, written once for every backend ([`prune`]).
#[async_trait]
pub trait Pruning: Send + Sync {
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
}

/// Administration: readiness, dedup keys, size, periodic work, shutdown.
#[async_trait]
pub trait Admin: Send + Sync {
    /// Proves the store can take a write right now (a full disk fails here).
    async fn probe(&self) -> StoreResult<()>;

    /// Forgets the dedup keys of other-than-status events older than `days`; returns how
    /// many.
    async fn prune_dedup(&self, days: u32) -> StoreResult<u64>;

    /// How large the store is.
    async fn stats(&self) -> StoreResult<StoreStats>;

    /// Whether periodic job `job` is due in this process: true for one caller per `every`
    /// among all the processes sharing the store.
    async fn due(&self, job: &str, every: std::time::Duration) -> StoreResult<bool>;

    /// Stops taking writes and waits until every write queued before is answered.
    async fn close(&self);
}

/// The store: every role. See the module documentation for what every backend promises.
pub trait Store: Ingest + Delivery + SinkLedger + Queries + Campaigns + Pruning + Admin {}

impl<T: Ingest + Delivery + SinkLedger + Queries + Campaigns + Pruning + Admin> Store for T {}

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
    match url::Url::parse(url) {
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
