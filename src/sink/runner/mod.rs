//! Drives one sink: takes committed events after its cursor, in commit order (from the
//! store's in-memory window of recent events, or from the store itself), hands them
//! over in batches, retries what failed with exponential backoff and jitter, dead-letters
//! what cannot be delivered, and only then moves the cursor (at least once).
//!
//! Every sink has its own runner task, so a slow or broken sink never holds up another,
//! and the HTTP answer never waits for any of them.
//!
//! Here: the runner and its loop, one round at a time. The lease is in [`lease`], the
//! cursor and recording progress in [`position`], what to read next in [`replay`], a
//! round of new or replayed events in [`batch`], delivering it with retries in place in
//! [`deliver`], the set-aside events in [`parked`], backoff in [`retry`], the sink's
//! recorded failure state and its series in [`health`].

mod batch;
mod deliver;
mod health;
mod lease;
mod parked;
mod position;
mod replay;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use self::health::{Health, Meters};
use self::parked::Parked;
use self::replay::ReplayQueue;
use self::retry::pause;
use super::{Sink, SinkConfig};
use crate::store::{SinkLease, Store};

pub use self::retry::RetryPolicy;

/// How often a runner reads the store for replayed dead letters, how long it waits for
/// news when idle, and how often it asks again for a sink another process runs.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// One sink and where it is.
pub struct Runner {
    sink: Box<dyn Sink>,
    config: SinkConfig,
    store: Arc<dyn Store>,
    cursor: i64,
    /// The cursor the store holds for this sink (-1: none yet).
    recorded: i64,
    /// The last seq stored when this process started.
    started_at: i64,
    /// Events set aside (sinks that keep each message's order).
    parked: Parked,
    /// What the store last heard from this runner about the sink's failures.
    health: Health,
}

/// Returned when the runner was asked to stop in the middle of something.
struct Stopped;

/// Why a runner stopped delivering for now.
enum Halt {
    Stopped,
    /// Another process took the sink over.
    LeaseLost,
}

impl From<Stopped> for Halt {
    fn from(_: Stopped) -> Self {
        Halt::Stopped
    }
}

/// What the runner delivers with while it holds the sink's lease.
struct Held<'a> {
    name: &'a str,
    lease: &'a SinkLease,
    /// Turns true when the lease is lost.
    lost: watch::Receiver<bool>,
    stop: &'a mut watch::Receiver<bool>,
    /// The highest seq committed.
    committed: watch::Receiver<i64>,
    meters: Meters,
    /// Keeps the pending gauge in step with commits.
    _following: health::AbortOnDrop,
    replay: ReplayQueue,
}

impl Runner {
    /// `cursor` is as far as the sink itself knows it got (the file sink reads its file;
    /// 0 for the others): it resumes from there or the store's cursor, the further.
    pub fn new(
        sink: Box<dyn Sink>,
        config: SinkConfig,
        store: Arc<dyn Store>,
        cursor: i64,
    ) -> Self {
        let started_at = *store.head().borrow();
        Self {
            sink,
            config,
            store,
            cursor,
            recorded: 0,
            started_at,
            parked: Parked::default(),
            health: Health::Unknown,
        }
    }

    /// Delivers until `stop` turns true, whenever this process holds the sink's lease.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let name = self.sink.name().to_owned();
        loop {
            let Ok(lease) = self.claim(&name, &mut stop).await else {
                break;
            };
            // Another process may have moved the cursor, and set events aside, while it
            // held the sink (also before this one first got it).
            if let Err(e) = self.resume(&name).await {
                tracing::error!(sink = name, error = %e, "Sink cannot read its cursor; retrying in a second.");
                if pause(IDLE_POLL, &mut stop).await.is_err() {
                    break;
                }
                continue;
            }
            tracing::info!(sink = name, cursor = self.cursor, "Sink started.");
            match self.hold(&name, lease, &mut stop).await {
                Halt::Stopped => break,
                Halt::LeaseLost => {
                    tracing::warn!(
                        sink = name,
                        "Another replica took this sink over; standing by."
                    );
                }
            }
        }
        tracing::info!(sink = name, cursor = self.cursor, "Sink stopped.");
    }

    /// Delivers until stopped, or until `lost` says the lease is gone.
    async fn deliver_while_held(
        &mut self,
        name: &str,
        lease: &SinkLease,
        lost: watch::Receiver<bool>,
        stop: &mut watch::Receiver<bool>,
    ) -> Halt {
        let meters = Meters::new(name, self.parked.len());
        meters.position(self.cursor, self.parked.len(), *self.store.head().borrow());
        let mut held = Held {
            name,
            lease,
            lost,
            stop,
            committed: self.store.head(),
            _following: meters.follow(self.store.head()),
            meters,
            replay: ReplayQueue::new(),
        };
        if let Err(halt) = self.record_ahead(&mut held).await {
            return halt;
        }
        while !*held.stop.borrow() {
            if let Err(halt) = self.round(&mut held).await {
                return halt;
            }
        }
        Halt::Stopped
    }

    /// One round: the set-aside events that are due, or else a batch of replayed or new
    /// events, or else a wait for news.
    async fn round(&mut self, held: &mut Held<'_>) -> Result<(), Halt> {
        if *held.lost.borrow() {
            return Err(Halt::LeaseLost);
        }
        let head = *held.committed.borrow_and_update();
        held.meters.position(self.cursor, self.parked.len(), head);
        let batch = self.config.common.batch_size.max(1);
        let due = self.parked.due(Utc::now(), batch);
        if !due.is_empty() {
            return self.retry_due(held, due).await;
        }
        let (events, replaying) = match self.next_batch(held.name, batch, &mut held.replay).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(sink = held.name, error = %e, "Sink cannot read the store; retrying in a second.");
                pause(IDLE_POLL, held.stop).await?;
                return Ok(());
            }
        };
        if events.is_empty() {
            return self.idle(held).await;
        }
        self.deliver_batch(held, events, replaying, head).await
    }

    /// Waits for a commit, the next set-aside event or replay check due, a lost lease or
    /// a stop. (Once the store is gone, `changed` fails at once: then the branch is off
    /// and the runner waits for its next poll or the stop.)
    async fn idle(&self, held: &mut Held<'_>) -> Result<(), Halt> {
        let check = held.replay.next_check();
        let wake = self
            .parked
            .next_due()
            .and_then(|at| (at - Utc::now()).to_std().ok())
            .map_or(check, |in_| check.min(std::time::Instant::now() + in_));
        tokio::select! {
            Ok(()) = held.committed.changed() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = held.lost.wait_for(|l| *l) => return Err(Halt::LeaseLost),
            _ = held.stop.wait_for(|s| *s) => return Err(Halt::Stopped),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
