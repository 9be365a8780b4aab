//! Drives one sink: takes committed events after its cursor, in commit order (from the
//! store's in-memory window of recent events, or from the store itself), hands them
//! over in batches, retries what failed with exponential backoff and jitter, dead-letters
//! what cannot be delivered, and only then moves the cursor (at least once).
//!
//! Every sink has its own runner task, so a slow or broken sink never holds up another,
//! and the HTTP answer never waits for any of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Sink, SinkConfig};
use crate::metrics as m;
use crate::store::{Progress, SinkLease, Store, StoreError, StoredEvent, UndeliveredEvent};

/// How long a runner lets a small batch fill up before delivering it.
const BATCH_WINDOW: Duration = Duration::from_millis(25);

/// How often a runner reads the store for replayed dead letters, how long it waits for
/// news when idle, and how often it asks again for a sink another process runs.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// When to give up on an event.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub max_age: Duration,
    pub initial: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: doubling from `initial`, capped at `max`,
    /// with "equal jitter" (between half and all of it) so retries do not march in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max);
        full / 2 + full.mul_f64(fastrand::f64() / 2.0)
    }
}

/// One sink and where it is.
pub struct Runner {
    sink: Box<dyn Sink>,
    config: SinkConfig,
    store: Arc<dyn Store>,
    cursor: i64,
    /// The cursor the store held for this sink at startup.
    recorded: i64,
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

impl Runner {
    /// `cursor` is where the sink resumes; `recorded` the cursor the store holds for it
    /// (lower when the sink knows better, as the file sink does after a crash).
    pub fn new(
        sink: Box<dyn Sink>,
        config: SinkConfig,
        store: Arc<dyn Store>,
        cursor: i64,
        recorded: i64,
    ) -> Self {
        Self {
            sink,
            config,
            store,
            cursor,
            recorded,
        }
    }

    /// Delivers until `stop` turns true, whenever this process holds the sink's lease.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let name = self.sink.name().to_owned();
        loop {
            let Ok(lease) = self.claim(&name, &mut stop).await else {
                break;
            };
            // Another process may have moved the cursor while it held the sink (also
            // before this one first got it).
            match self.store.sink_cursor(&name).await {
                Ok(c) => {
                    self.recorded = c.unwrap_or(0);
                    self.cursor = self.cursor.max(self.recorded);
                }
                Err(e) => {
                    tracing::error!(sink = name, error = %e, "Sink cannot read its cursor; retrying in a second.");
                    if pause(IDLE_POLL, &mut stop).await.is_err() {
                        break;
                    }
                    continue;
                }
            }
            tracing::info!(sink = name, cursor = self.cursor, "Sink started.");
            let (lost_tx, lost) = watch::channel(false);
            let keeper = tokio::spawn(keep(self.store.clone(), lease.clone(), lost_tx));
            let halt = self
                .deliver_while_held(&name, &lease, lost, &mut stop)
                .await;
            keeper.abort();
            match halt {
                Halt::Stopped => {
                    // Another replica may take over at once.
                    if let Err(e) = self.store.release_sink(&lease).await {
                        tracing::warn!(sink = name, error = %e, "Could not release the sink.");
                    }
                    break;
                }
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

    /// Waits until this process holds the sink's lease.
    async fn claim(
        &self,
        name: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<SinkLease, Stopped> {
        let mut waiting = false;
        loop {
            match self.store.claim_sink(name).await {
                Ok(Some(lease)) => return Ok(lease),
                Ok(None) if !waiting => {
                    waiting = true;
                    tracing::info!(sink = name, "Another replica runs this sink; standing by.");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(sink = name, error = %e, "Cannot claim the sink; retrying.")
                }
            }
            pause(IDLE_POLL, stop).await?;
        }
    }

    /// Delivers until stopped, or until `lost` says the lease is gone.
    async fn deliver_while_held(
        &mut self,
        name: &str,
        lease: &SinkLease,
        mut lost: watch::Receiver<bool>,
        stop: &mut watch::Receiver<bool>,
    ) -> Halt {
        let mut committed = self.store.head();
        let pending = metrics::gauge!(m::SINK_PENDING, "sink" => name.to_owned());
        let delivered = metrics::counter!(m::SINK_DELIVERED, "sink" => name.to_owned());
        let dead_lettered = metrics::counter!(m::SINK_DEAD, "sink" => name.to_owned());
        // A sink resuming ahead of the store's cursor (a file that got further than the
        // store heard, before a crash) has that recorded first: a replayed event appended
        // next becomes the file's last line and would hide how far the file got.
        if self.cursor > self.recorded {
            let progress = Progress {
                cursor: Some(self.cursor),
                ..Progress::default()
            };
            if let Err(halt) = self.record(name, lease, progress, stop).await {
                return halt;
            }
            self.recorded = self.cursor;
        }
        // When the store is next read for replayed dead letters (now: the first round).
        let mut replay_check = Instant::now();
        while !*stop.borrow() {
            if *lost.borrow() {
                return Halt::LeaseLost;
            }
            let head = *committed.borrow_and_update();
            pending.set((head - self.cursor).max(0) as f64);
            let batch = self.config.common.batch_size.max(1);
            let replaying = Instant::now() >= replay_check;
            let read = if replaying {
                replay_check = Instant::now() + IDLE_POLL;
                self.store.replay_queue(name, batch).await
            } else {
                Ok(Vec::new())
            };
            // Replays first; new events when none are queued.
            let read = match read {
                Ok(replays) if !replays.is_empty() => {
                    // More replays may be queued: read the queue again next.
                    replay_check = Instant::now();
                    Ok((replays, true))
                }
                Ok(_) => self
                    .store
                    .events_after(self.cursor, batch)
                    .await
                    .map(|events| (events, false)),
                Err(e) => Err(e),
            };
            let (events, replaying) = match read {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(sink = name, error = %e, "Sink cannot read the store; retrying in a second.");
                    if pause(IDLE_POLL, stop).await.is_err() {
                        return Halt::Stopped;
                    }
                    continue;
                }
            };
            if events.is_empty() {
                // (Once the store is gone, `changed` fails at once: then the branch is
                // off and the runner waits for its next poll or the stop.)
                tokio::select! {
                    Ok(()) = committed.changed() => {}
                    _ = tokio::time::sleep_until(replay_check.into()) => {}
                    _ = lost.wait_for(|l| *l) => return Halt::LeaseLost,
                    _ = stop.wait_for(|s| *s) => return Halt::Stopped,
                }
                continue;
            }
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            let wanted: Vec<StoredEvent> = events
                .into_iter()
                .filter(|e| self.config.wants(e))
                .collect();
            // A delivery in flight when the lease is lost is abandoned: the replica that
            // took over delivers the batch again from the recorded cursor.
            let outcome = tokio::select! {
                outcome = self.deliver(&wanted, stop) => outcome,
                _ = lost.wait_for(|l| *l) => return Halt::LeaseLost,
            };
            let unfinished = outcome.unfinished.len();
            let progress = outcome.progress(&seqs, replaying, self.cursor);
            let cursor = progress.cursor;
            let undelivered = progress.dead.len();
            // The cursor moves only once the store has recorded the outcome.
            if let Err(halt) = self.record(name, lease, progress, stop).await {
                return halt;
            }
            delivered.increment((wanted.len() - undelivered - unfinished) as u64);
            dead_lettered.increment(undelivered as u64);
            if cursor.is_some() {
                pending.set((*committed.borrow() - self.cursor).max(0) as f64);
            }
            if unfinished > 0 {
                return Halt::Stopped;
            }
            // Let the next batch fill up a little: each delivery has a fixed cost (an
            // fsync or a round of requests, a cursor write), and under
            // load a sink that chases every commit spends the core on that.
            if !replaying
                && (head - self.cursor) < batch as i64
                && self.gather(batch, &mut committed, stop).await.is_err()
            {
                return Halt::Stopped;
            }
        }
        Halt::Stopped
    }

    /// Records progress in the store (see [`Store::sink_progress`]), retrying until it is
    /// recorded; then the cursor is `progress.cursor`, when given.
    async fn record(
        &mut self,
        name: &str,
        lease: &SinkLease,
        progress: Progress,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Halt> {
        let cursor = progress.cursor;
        loop {
            match self.store.sink_progress(lease, progress.clone()).await {
                Ok(()) => break,
                Err(StoreError::LeaseLost(_)) => return Err(Halt::LeaseLost),
                Err(e) => {
                    tracing::error!(sink = name, error = %e, "Cannot record sink progress; retrying.");
                    pause(IDLE_POLL, stop).await?;
                }
            }
        }
        if let Some(c) = cursor {
            self.cursor = c;
        }
        Ok(())
    }

    /// Waits until `batch` events are waiting or [`BATCH_WINDOW`] has passed.
    async fn gather(
        &self,
        batch: usize,
        committed: &mut watch::Receiver<i64>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        loop {
            if *committed.borrow_and_update() - self.cursor >= batch as i64 {
                return Ok(());
            }
            tokio::select! {
                changed = committed.changed() => if changed.is_err() { return Ok(()) },
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
                _ = stop.wait_for(|s| *s) => return Err(Stopped),
            }
        }
    }

    /// Delivers `events`, retrying failures, until each is delivered or given up on, or a
    /// stop comes. A delivery that has started is let finish even then (it is bounded by
    /// the sink's own timeout, and the server waits a second for its sinks): abandoned,
    /// it would leave done what the store does not know is done, to be done again at the
    /// next start. A stop is heard between attempts.
    async fn deliver(&self, events: &[StoredEvent], stop: &mut watch::Receiver<bool>) -> Outcome {
        let name = self.sink.name();
        let policy = self.config.retry_policy();
        let started = Instant::now();
        let mut pending = events.to_vec();
        let mut dead = Vec::new();
        let mut attempt = 1;
        while !pending.is_empty() {
            let results = self.sink.deliver(&pending).await;
            let mut retry = Vec::new();
            let mut last_error = String::new();
            assert_eq!(
                results.len(),
                pending.len(),
                "sink {name} must answer once per event"
            );
            for (event, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(()) => {}
                    Err(e) if !e.retryable => {
                        tracing::warn!(
                            sink = name,
                            seq = event.seq,
                            event_id = event.event_id,
                            error = e.message,
                            "Sink refused the event; it is a dead letter."
                        );
                        dead.push(UndeliveredEvent {
                            seq: event.seq,
                            code: "rejected_by_sink",
                            reason: e.message,
                        });
                    }
                    Err(e) => {
                        last_error = e.message;
                        retry.push(event);
                    }
                }
            }
            pending = retry;
            if pending.is_empty() {
                break;
            }
            if attempt >= policy.max_attempts || started.elapsed() >= policy.max_age {
                tracing::error!(
                    sink = name,
                    events = pending.len(),
                    attempts = attempt,
                    error = last_error,
                    "Sink retries exhausted; the events are dead letters (innohook replay puts them back)."
                );
                dead.extend(pending.drain(..).map(|e| UndeliveredEvent {
                    seq: e.seq,
                    code: "retries_exhausted",
                    reason: last_error.clone(),
                }));
                break;
            }
            metrics::counter!(m::SINK_RETRIED, "sink" => name.to_owned())
                .increment(pending.len() as u64);
            let wait = policy.delay(attempt);
            tracing::warn!(
                sink = name,
                events = pending.len(),
                attempt,
                retry_in_ms = wait.as_millis() as u64,
                error = last_error,
                "Sink delivery failed; retrying."
            );
            if pause(wait, stop).await.is_err() {
                break;
            }
            attempt += 1;
        }
        Outcome {
            dead,
            unfinished: pending.iter().map(|e| e.seq).collect(),
        }
    }
}

/// What became of a batch handed to [`Runner::deliver`].
struct Outcome {
    /// The events given up on: they become dead letters.
    dead: Vec<UndeliveredEvent>,
    /// The seqs still being retried when a stop came.
    unfinished: Vec<i64>,
}

impl Outcome {
    /// What the sink is done with, of a batch of `seqs` (every event read, wanted or
    /// not, in seq order) read after `cursor`: all of it, or, after a stop, everything
    /// but the unfinished events, which the next start delivers. New events move the
    /// cursor up to the first unfinished one; replayed ones leave the queue (also those
    /// the filters now skip).
    fn progress(self, seqs: &[i64], replaying: bool, cursor: i64) -> Progress {
        let done = |seq: &&i64| !self.unfinished.contains(seq);
        let (cursor, replayed) = if replaying {
            (None, seqs.iter().filter(done).copied().collect())
        } else {
            let last_done = seqs.iter().take_while(done).last().copied();
            (last_done.filter(|&c| c > cursor), Vec::new())
        };
        Progress {
            cursor,
            dead: self.dead,
            replayed,
        }
    }
}

/// Keeps this process's lease on a sink: claims it again at every `renew_at` (a third of
/// the lease into it), and says it is lost when another process took it over, or when it
/// could not be renewed before `valid_until` (then another may take it over any moment).
async fn keep(store: Arc<dyn Store>, mut lease: SinkLease, lost: watch::Sender<bool>) {
    loop {
        tokio::time::sleep_until(lease.renew_at.into()).await;
        loop {
            match store.claim_sink(&lease.sink).await {
                Ok(Some(renewed)) if renewed.token == lease.token => {
                    lease = renewed;
                    break;
                }
                Ok(_) => {
                    let _ = lost.send(true);
                    return;
                }
                Err(e) => {
                    tracing::warn!(sink = lease.sink, error = %e, "Cannot renew the sink's lease; retrying.");
                    if Instant::now() + RENEW_RETRY >= lease.valid_until {
                        tracing::error!(
                            sink = lease.sink,
                            "The sink's lease could not be renewed in time; delivery stops until it is claimed again."
                        );
                        let _ = lost.send(true);
                        return;
                    }
                    tokio::time::sleep(RENEW_RETRY).await;
                }
            }
        }
    }
}

/// How soon a failed lease renewal is tried again.
const RENEW_RETRY: Duration = Duration::from_millis(500);

/// Sleeps, unless asked to stop first.
async fn pause(wait: Duration, stop: &mut watch::Receiver<bool>) -> Result<(), Stopped> {
    tokio::select! {
        _ = tokio::time::sleep(wait) => Ok(()),
        _ = stop.wait_for(|s| *s) => Err(Stopped),
    }
}
