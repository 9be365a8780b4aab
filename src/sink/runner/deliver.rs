//! Delivering one batch: handing it to the sink, retrying in place with backoff what
//! failed, setting aside what failed on its own (sinks that keep each message's order),
//! dead-lettering what cannot be delivered. Also what a runner makes of a sink that
//! breaks its contract by answering a different number of results than it got events.

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::Runner;
use super::health::retried;
use super::parked::waiting;
use super::retry::{RetryPolicy, pause};
use crate::sink::SinkError;
use crate::store::{ParkedEvent, StoredEvent, Undelivered, UndeliveredEvent};

/// What became of a batch.
#[derive(Default)]
pub(super) struct Delivery {
    pub(super) delivered: usize,
    pub(super) dead: Vec<UndeliveredEvent>,
    /// Set aside: failed while others got through, or behind such an event.
    pub(super) parked: Vec<(ParkedEvent, StoredEvent)>,
    /// The seqs still being retried when a stop came: owed, delivered at the next start.
    pub(super) unfinished: Vec<i64>,
}

/// The sink's answers to `events` events: one per event, as [`crate::sink::Sink::deliver`]
/// promises. A sink that answers otherwise cannot be told which events got through: that
/// is logged as an error, and every event of the attempt counts as failed and retryable
/// (retried with backoff, at least once, its error the sink's health) rather than ending
/// the sink's runner.
pub(super) fn answers(
    sink: &str,
    events: usize,
    results: Vec<Result<(), SinkError>>,
) -> Vec<Result<(), SinkError>> {
    if results.len() == events {
        return results;
    }
    tracing::error!(
        sink,
        events,
        answers = results.len(),
        "Sink broke its contract to answer once per event; every event of the attempt counts as failed and is retried."
    );
    let error = SinkError::retryable(format!(
        "the sink answered {} results for {events} events (it must answer once per event)",
        results.len()
    ));
    vec![Err(error); events]
}

impl Runner {
    /// Delivers `events` under the lease whose fencing token is `lease`, retrying
    /// failures in place. A sink that keeps each message's
    /// order sets aside what failed when other events got through, or when the failures
    /// are all one message's (the failure is then the events' own, not the target's): it
    /// is retried on its own while the rest goes on.
    ///
    /// A stop is heard between attempts: what is still being retried then is
    /// `unfinished`. An attempt that has started is let finish (it is bounded by the
    /// sink's own timeout, and the server waits a second for its sinks): abandoned, it
    /// would leave done (a line appended, a request answered) what the store does not
    /// know is done, to be done again at the next start.
    pub(super) async fn deliver(
        &mut self,
        events: &[StoredEvent],
        lease: i64,
        stop: &mut watch::Receiver<bool>,
    ) -> Delivery {
        let name = self.sink.name();
        let by_message = self.sink.keeps_message_order();
        let mut run = Attempts::new(name, self.config.retry_policy());
        let mut pending = events.to_vec();
        let mut attempt = 1;
        while !pending.is_empty() {
            let results = answers(
                name,
                pending.len(),
                self.sink.deliver(&pending, lease).await,
            );
            let Failures {
                retry,
                failed,
                last_error,
                got_through,
            } = run.tally(pending, results);
            self.health.report(&*self.store, name, failed).await;
            if retry.is_empty() {
                break;
            }
            // The failure is the events' own, not the target's, when others got through,
            // or when they are all one message's: then they are set aside.
            if by_message && (got_through || one_message(&retry)) {
                run.set_aside(retry);
                break;
            }
            pending = retry.into_iter().map(|(e, _)| e).collect();
            if (run.policy).exhausted(attempt, Some(run.started.elapsed())) {
                run.give_up(pending, attempt, last_error);
                break;
            }
            retried(name, pending.len());
            let wait = run.policy.delay(attempt);
            tracing::warn!(
                sink = name,
                events = pending.len(),
                attempt,
                retry_in_ms = wait.as_millis() as u64,
                error = last_error,
                "Sink delivery failed; retrying."
            );
            if pause(wait, stop).await.is_err() {
                run.out.unfinished = pending.iter().map(|e| e.seq).collect();
                break;
            }
            attempt += 1;
        }
        run.out
    }
}

/// Whether the failed events are all one message's.
fn one_message(retry: &[(StoredEvent, SinkError)]) -> bool {
    retry
        .iter()
        .all(|(e, _)| e.message_id.is_some() && e.message_id == retry[0].0.message_id)
}

/// One delivery across its attempts.
struct Attempts<'a> {
    sink: &'a str,
    policy: RetryPolicy,
    started: Instant,
    started_at: DateTime<Utc>,
    /// Real attempts per seq (an event held back behind its message's failure was not
    /// sent).
    sent: HashMap<i64, u32>,
    out: Delivery,
}

/// What one attempt left to try again.
struct Failures {
    retry: Vec<(StoredEvent, SinkError)>,
    /// The sink is failing while it retries; an event it refused for good is a dead
    /// letter, with its own reason, and says nothing about the sink.
    failed: Option<String>,
    last_error: String,
    /// Some events were delivered or refused for good.
    got_through: bool,
}

impl<'a> Attempts<'a> {
    fn new(sink: &'a str, policy: RetryPolicy) -> Self {
        Self {
            sink,
            policy,
            started: Instant::now(),
            started_at: Utc::now(),
            sent: HashMap::new(),
            out: Delivery::default(),
        }
    }

    /// Takes in one attempt's results: delivered and refused events are done with, the
    /// others are returned.
    fn tally(
        &mut self,
        pending: Vec<StoredEvent>,
        results: Vec<Result<(), SinkError>>,
    ) -> Failures {
        let mut f = Failures {
            retry: Vec::new(),
            failed: None,
            last_error: String::new(),
            got_through: false,
        };
        for (event, result) in pending.into_iter().zip(results) {
            if !matches!(&result, Err(e) if e.held_back) {
                *self.sent.entry(event.seq).or_default() += 1;
            }
            match result {
                Ok(()) => {
                    self.out.delivered += 1;
                    f.got_through = true;
                }
                Err(e) if !e.retryable => {
                    f.got_through = true;
                    self.refused(event, e);
                }
                Err(e) => {
                    if !e.held_back {
                        f.failed = Some(e.message.clone());
                        f.last_error.clone_from(&e.message);
                    }
                    f.retry.push((event, e));
                }
            }
        }
        f
    }

    fn attempts(&self, seq: i64) -> u32 {
        self.sent.get(&seq).copied().unwrap_or(0)
    }

    fn refused(&mut self, event: StoredEvent, e: SinkError) {
        tracing::warn!(
            sink = self.sink,
            seq = event.seq,
            event_id = event.event_id,
            error = e.message,
            "Sink refused the event; it is a dead letter."
        );
        self.out.dead.push(UndeliveredEvent {
            seq: event.seq,
            code: Undelivered::RejectedBySink,
            reason: e.message,
            attempts: self.attempts(event.seq),
            first_attempt_at: self.started_at,
        });
    }

    /// Sets the failed events aside, to be retried on their own.
    fn set_aside(&mut self, retry: Vec<(StoredEvent, SinkError)>) {
        let now = Utc::now();
        for (event, e) in retry {
            let attempts = self.attempts(event.seq);
            let p = if e.held_back {
                waiting(&event, now)
            } else {
                retried(self.sink, 1);
                ParkedEvent {
                    seq: event.seq,
                    message_id: event.message_id.clone(),
                    attempts,
                    first_attempt_at: Some(self.started_at),
                    next_attempt_at: now + self.policy.delay(attempts),
                    last_error: e.message,
                }
            };
            tracing::warn!(
                sink = self.sink,
                seq = event.seq,
                event_id = event.event_id,
                error = p.last_error,
                "Sink delivery of one event failed; it is retried on its own, its message's later events wait behind it."
            );
            self.out.parked.push((p, event));
        }
    }

    /// Makes the events still failing after `attempt` attempts dead letters.
    fn give_up(&mut self, pending: Vec<StoredEvent>, attempt: u32, last_error: String) {
        tracing::error!(
            sink = self.sink,
            events = pending.len(),
            attempts = attempt,
            error = last_error,
            "Sink retries exhausted; the events are dead letters (innohook replay puts them back)."
        );
        let (sent, first_attempt_at) = (&self.sent, self.started_at);
        self.out
            .dead
            .extend(pending.into_iter().map(|e| UndeliveredEvent {
                seq: e.seq,
                code: Undelivered::RetriesExhausted,
                reason: last_error.clone(),
                attempts: sent.get(&e.seq).copied().unwrap_or(0),
                first_attempt_at,
            }));
    }
}
