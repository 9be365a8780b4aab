//! Drives one sink: takes committed events after its cursor, in commit order (from the
//! store's in-memory window of recent events, or from the store itself), hands them
//! over in batches, retries what failed with exponential backoff and jitter, dead-letters
//! what cannot be delivered, and only then moves the cursor (at least once).
//!
//! Every sink has its own runner task, so a slow or broken sink never holds up another,
//! and the HTTP answer never waits for any of them.

mod parked;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use chrono::{DateTime, Utc};

use self::parked::Parked;
use super::{Sink, SinkConfig, Start};
use crate::metrics as m;
use crate::store::{
    ParkedEvent, Progress, SinkLease, Store, StoreError, StoredEvent, UndeliveredEvent,
};

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
    /// The cursor the store holds for this sink (-1: none yet).
    recorded: i64,
    /// The last seq stored when this process started.
    started_at: i64,
    /// Events set aside (sinks that keep each message's order).
    parked: Parked,
    /// What the store last heard from this runner about the sink's failures.
    health: std::sync::Mutex<Health>,
}

/// What became of a batch.
#[derive(Default)]
struct Delivery {
    delivered: usize,
    dead: Vec<UndeliveredEvent>,
    /// Set aside: failed while others got through, or behind such an event.
    parked: Vec<(ParkedEvent, StoredEvent)>,
    /// The seqs still being retried when a stop came: owed, delivered at the next start.
    unfinished: Vec<i64>,
}

impl Delivery {
    /// What to record of a batch of `seqs` (every event read, wanted or not, in seq
    /// order): all of it, or after a stop everything up to the first unfinished event
    /// (the next start reads the batch again from there). New events move the cursor;
    /// replayed ones leave the queue when done (also those the filters now skip).
    fn progress(&self, seqs: &[i64], replaying: bool) -> Progress {
        let owed = |seq: i64| self.unfinished.contains(&seq);
        let kept = |seq: i64| replaying || self.unfinished.iter().all(|&u| seq < u);
        let (cursor, replayed) = if replaying {
            (None, seqs.iter().copied().filter(|&s| !owed(s)).collect())
        } else {
            (
                seqs.iter().copied().take_while(|&s| !owed(s)).last(),
                Vec::new(),
            )
        };
        Progress {
            cursor,
            replayed,
            dead: (self.dead.iter())
                .filter(|d| kept(d.seq))
                .cloned()
                .collect(),
            parked: (self.parked.iter())
                .filter(|(p, _)| kept(p.seq))
                .map(|(p, _)| p.clone())
                .collect(),
            unparked: Vec::new(),
        }
    }
}

/// A sink's failure state as recorded in the store ([`Store::record_sink_error`]).
#[derive(Debug, Clone, PartialEq)]
enum Health {
    /// Not recorded by this runner yet (the store may hold a failure from before).
    Unknown,
    Delivering,
    Failing(String),
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
            health: std::sync::Mutex::new(Health::Unknown),
        }
    }

    /// Records in the store that the sink is failing with `error`, or delivering again,
    /// when that differs from what it last recorded: a write per change, not per attempt
    /// (and retries are spaced by the backoff). Best effort: a failure is only logged.
    async fn report(&self, error: Option<String>) {
        let now = match &error {
            Some(e) => Health::Failing(e.clone()),
            None => Health::Delivering,
        };
        let changed = {
            let mut health = self.health.lock().expect("health lock");
            let changed = *health != now;
            *health = now;
            changed
        };
        if changed
            && let Err(e) = self
                .store
                .record_sink_error(self.sink.name(), error.as_deref())
                .await
        {
            tracing::warn!(sink = self.sink.name(), error = %e, "Could not record the sink's health.");
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
            let found = match self.store.sink_cursor(&name).await {
                Ok(c) => self.store.parked(&name).await.map(|p| (c, p)),
                Err(e) => Err(e),
            };
            match found {
                Ok((Some(c), parked)) => {
                    self.recorded = c;
                    self.cursor = self.cursor.max(c);
                    self.parked = Parked::from(parked);
                }
                Ok((None, _)) => {
                    // A sink this store has not seen: it starts where `start` says (now:
                    // after what was stored when this process started, so that nothing
                    // posted since is skipped), recorded before anything is delivered.
                    self.recorded = -1;
                    let head = self.started_at;
                    match self.config.common.start {
                        Start::Now => {
                            tracing::info!(
                                sink = name,
                                skipped = self.cursor.max(head) - self.cursor,
                                "New sink: it starts with the next event, skipping those stored before (start = \"beginning\" would deliver them)."
                            );
                            self.cursor = self.cursor.max(head);
                        }
                        Start::Beginning => {
                            tracing::info!(
                                sink = name,
                                events = head - self.cursor,
                                "New sink: it delivers every event stored so far (start = \"beginning\")."
                            );
                        }
                    }
                    self.parked = Parked::default();
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
        let parked_gauge = metrics::gauge!(m::SINK_PARKED, "sink" => name.to_owned());
        parked_gauge.set(self.parked.len() as f64);
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
            let due = self.parked.due(Utc::now(), batch);
            if !due.is_empty() {
                let delivery = tokio::select! {
                    r = self.retry_parked(due) => r,
                    _ = lost.wait_for(|l| *l) => return Halt::LeaseLost,
                };
                let (done, dead) = (delivery.delivered, delivery.dead.len());
                let progress = Progress {
                    unparked: delivery.unparked,
                    parked: delivery
                        .rescheduled
                        .iter()
                        .map(|(p, _)| p.clone())
                        .collect(),
                    dead: delivery.dead,
                    ..Progress::default()
                };
                if let Err(halt) = self.record(name, lease, progress, stop).await {
                    return halt;
                }
                for (p, e) in delivery.rescheduled {
                    self.parked.insert(p, e);
                }
                parked_gauge.set(self.parked.len() as f64);
                delivered.increment(done as u64);
                dead_lettered.increment(dead as u64);
                continue;
            }
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
                let wake = self
                    .parked
                    .next_due()
                    .and_then(|at| (at - Utc::now()).to_std().ok())
                    .map_or(replay_check, |in_| replay_check.min(Instant::now() + in_));
                tokio::select! {
                    Ok(()) = committed.changed() => {}
                    _ = tokio::time::sleep_until(wake.into()) => {}
                    _ = lost.wait_for(|l| *l) => return Halt::LeaseLost,
                    _ = stop.wait_for(|s| *s) => return Halt::Stopped,
                }
                continue;
            }
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            // Events of a message with an event set aside wait behind it.
            let (behind, wanted): (Vec<StoredEvent>, Vec<StoredEvent>) = events
                .into_iter()
                .filter(|e| self.config.wants(e))
                .partition(|e| self.parked.holds_back(e));
            // A delivery in flight when the lease is lost is abandoned: the replica that
            // took over delivers the batch again from the recorded cursor.
            // A stop lets a delivery that has started finish (see `deliver`).
            let mut delivery = tokio::select! {
                d = self.deliver(&wanted, stop) => d,
                _ = lost.wait_for(|l| *l) => return Halt::LeaseLost,
            };
            let now = Utc::now();
            delivery
                .parked
                .extend(behind.into_iter().map(|e| (waiting(&e, now), e)));
            // The cursor moves only once the store has recorded the outcome.
            let progress = delivery.progress(&seqs, replaying);
            let cursor = progress.cursor.filter(|&c| c > self.cursor);
            let (done, undelivered) = (delivery.delivered, progress.dead.len());
            let progress = Progress { cursor, ..progress };
            if let Err(halt) = self.record(name, lease, progress, stop).await {
                return halt;
            }
            if !delivery.unfinished.is_empty() {
                return Halt::Stopped;
            }
            for (p, e) in delivery.parked {
                self.parked.insert(p, e);
            }
            parked_gauge.set(self.parked.len() as f64);
            delivered.increment(done as u64);
            dead_lettered.increment(undelivered as u64);
            if replaying && done > 0 {
                tracing::info!(
                    sink = name,
                    events = done,
                    "Delivered replayed dead letters."
                );
            }
            if cursor.is_some() {
                pending.set((*committed.borrow() - self.cursor).max(0) as f64);
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

    /// Delivers `events`, retrying failures in place. A sink that keeps each message's
    /// order sets aside what failed when other events got through, or when the failures
    /// are all one message's (the failure is then the events' own, not the target's): it
    /// is retried on its own while the rest goes on.
    ///
    /// A stop is heard between attempts: what is still being retried then is
    /// `unfinished`. An attempt that has started is let finish (it is bounded by the
    /// sink's own timeout, and the server waits a second for its sinks): abandoned, it
    /// would leave done (a line appended, a request answered) what the store does not
    /// know is done, to be done again at the next start.
    async fn deliver(&self, events: &[StoredEvent], stop: &mut watch::Receiver<bool>) -> Delivery {
        let name = self.sink.name();
        let policy = self.config.retry_policy();
        let by_message = self.sink.keeps_message_order();
        let (started, started_at) = (Instant::now(), Utc::now());
        let mut pending = events.to_vec();
        let mut out = Delivery::default();
        // Real attempts per seq (an event held back behind its message's failure was
        // not sent).
        let mut sent: std::collections::HashMap<i64, u32> = Default::default();
        let mut attempt = 1;
        while !pending.is_empty() {
            let results = self.sink.deliver(&pending).await;
            // The sink is failing while it retries; an event it refused for good is a
            // dead letter, with its own reason, and says nothing about the sink.
            let mut failed = None;
            assert_eq!(
                results.len(),
                pending.len(),
                "sink {name} must answer once per event"
            );
            let mut retry = Vec::new();
            let mut last_error = String::new();
            let mut got_through = false;
            for (event, result) in pending.into_iter().zip(results) {
                if !matches!(&result, Err(e) if e.held_back) {
                    *sent.entry(event.seq).or_default() += 1;
                }
                match result {
                    Ok(()) => {
                        out.delivered += 1;
                        got_through = true;
                    }
                    Err(e) if !e.retryable => {
                        got_through = true;
                        tracing::warn!(
                            sink = name,
                            seq = event.seq,
                            event_id = event.event_id,
                            error = e.message,
                            "Sink refused the event; it is a dead letter."
                        );
                        out.dead.push(UndeliveredEvent {
                            seq: event.seq,
                            code: "rejected_by_sink",
                            reason: e.message,
                            attempts: sent[&event.seq],
                            first_attempt_at: started_at,
                        });
                    }
                    Err(e) => {
                        if !e.held_back {
                            failed = Some(e.message.clone());
                            last_error.clone_from(&e.message);
                        }
                        retry.push((event, e));
                    }
                }
            }
            self.report(failed).await;
            if retry.is_empty() {
                break;
            }
            // The failure is the events' own, not the target's, when others got through,
            // or when they are all one message's: then they are set aside.
            let one_message = retry
                .iter()
                .all(|(e, _)| e.message_id.is_some() && e.message_id == retry[0].0.message_id);
            if by_message && (got_through || one_message) {
                let now = Utc::now();
                for (event, e) in retry {
                    let attempts = sent.get(&event.seq).copied().unwrap_or(0);
                    let p = if e.held_back {
                        waiting(&event, now)
                    } else {
                        metrics::counter!(m::SINK_RETRIED, "sink" => name.to_owned()).increment(1);
                        ParkedEvent {
                            seq: event.seq,
                            message_id: event.message_id.clone(),
                            attempts,
                            first_attempt_at: Some(started_at),
                            next_attempt_at: now + policy.delay(attempts),
                            last_error: e.message,
                        }
                    };
                    tracing::warn!(
                        sink = name,
                        seq = event.seq,
                        event_id = event.event_id,
                        error = p.last_error,
                        "Sink delivery of one event failed; it is retried on its own, its message's later events wait behind it."
                    );
                    out.parked.push((p, event));
                }
                break;
            }
            pending = retry.into_iter().map(|(e, _)| e).collect();
            if attempt >= policy.max_attempts || started.elapsed() >= policy.max_age {
                tracing::error!(
                    sink = name,
                    events = pending.len(),
                    attempts = attempt,
                    error = last_error,
                    "Sink retries exhausted; the events are dead letters (innohook replay puts them back)."
                );
                out.dead.extend(pending.drain(..).map(|e| UndeliveredEvent {
                    seq: e.seq,
                    code: "retries_exhausted",
                    reason: last_error.clone(),
                    attempts: sent.get(&e.seq).copied().unwrap_or(0),
                    first_attempt_at: started_at,
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
                out.unfinished = pending.iter().map(|e| e.seq).collect();
                break;
            }
            attempt += 1;
        }
        out
    }

    /// Tries again the set-aside events whose time has come (one per message); takes
    /// the delivered ones out of `self.parked` and reschedules or dead-letters the rest.
    async fn retry_parked(&mut self, due: Vec<(ParkedEvent, StoredEvent)>) -> Retried {
        let name = self.sink.name().to_owned();
        let policy = self.config.retry_policy();
        let events: Vec<StoredEvent> = due.iter().map(|(_, e)| e.clone()).collect();
        // Let finish when a stop comes, as in `deliver`.
        let results = self.sink.deliver(&events).await;
        assert_eq!(
            results.len(),
            due.len(),
            "sink {name} must answer once per event"
        );
        let now = Utc::now();
        let mut out = Retried::default();
        let mut failed = None;
        for ((mut p, event), result) in due.into_iter().zip(results) {
            self.parked.remove(p.seq);
            let first = p.first_attempt_at.unwrap_or(now);
            match result {
                Ok(()) => {
                    out.delivered += 1;
                    out.unparked.push(p.seq);
                    continue;
                }
                Err(e) if e.held_back => {
                    out.rescheduled.push((p, event));
                    continue;
                }
                Err(e) => {
                    p.attempts += 1;
                    let exhausted = p.attempts >= policy.max_attempts
                        || (now - first)
                            .to_std()
                            .is_ok_and(|age| age >= policy.max_age);
                    if e.retryable {
                        failed = Some(e.message.clone());
                    }
                    if e.retryable && !exhausted {
                        metrics::counter!(m::SINK_RETRIED, "sink" => name.clone()).increment(1);
                        p.first_attempt_at = Some(first);
                        p.next_attempt_at = now + policy.delay(p.attempts);
                        p.last_error = e.message;
                        out.rescheduled.push((p, event));
                        continue;
                    }
                    tracing::error!(
                        sink = name,
                        seq = p.seq,
                        event_id = event.event_id,
                        attempts = p.attempts,
                        error = e.message,
                        "Sink gave up on an event set aside; it is a dead letter, and its message's later events go on."
                    );
                    out.unparked.push(p.seq);
                    out.dead.push(UndeliveredEvent {
                        seq: p.seq,
                        code: if e.retryable {
                            "retries_exhausted"
                        } else {
                            "rejected_by_sink"
                        },
                        reason: e.message,
                        attempts: p.attempts,
                        first_attempt_at: first,
                    });
                }
            }
        }
        if failed.is_some() || out.delivered > 0 {
            self.report(failed).await;
        }
        out
    }
}

/// What retrying set-aside events left.
#[derive(Default)]
struct Retried {
    delivered: usize,
    unparked: Vec<i64>,
    rescheduled: Vec<(ParkedEvent, StoredEvent)>,
    dead: Vec<UndeliveredEvent>,
}

/// An event set aside behind an earlier one of its message, never tried yet: due as soon
/// as it is first of its message.
fn waiting(event: &StoredEvent, now: DateTime<Utc>) -> ParkedEvent {
    ParkedEvent {
        seq: event.seq,
        message_id: event.message_id.clone(),
        attempts: 0,
        first_attempt_at: None,
        next_attempt_at: now,
        last_error: "waiting behind an earlier event of its message".into(),
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
