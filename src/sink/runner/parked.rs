//! The events a sink that keeps each message's order has set aside: one that failed
//! while other events got through is retried on its own schedule, and the later events
//! of its message wait behind it, while every other message goes on. The store keeps
//! them (so they survive a restart); [`Parked`] is the runner's copy, and
//! [`Runner::retry_due`] the round that tries them again.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::deliver::answers;
use super::health::retried;
use super::retry::RetryPolicy;
use super::{Halt, Held, Runner};
use crate::sink::SinkError;
use crate::store::{ParkedEvent, Progress, StoredEvent, Undelivered, UndeliveredEvent};

#[derive(Default)]
pub(super) struct Parked {
    /// By seq.
    events: BTreeMap<i64, (ParkedEvent, StoredEvent)>,
    /// How many parked events each message has.
    by_message: HashMap<String, usize>,
}

impl Parked {
    pub(super) fn from(loaded: Vec<(ParkedEvent, StoredEvent)>) -> Self {
        let mut parked = Self::default();
        for (p, e) in loaded {
            parked.insert(p, e);
        }
        parked
    }

    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether an earlier event of `event`'s message is set aside (then it waits).
    pub(super) fn holds_back(&self, event: &StoredEvent) -> bool {
        event
            .message_id
            .as_ref()
            .is_some_and(|m| self.by_message.contains_key(m))
    }

    pub(super) fn insert(&mut self, p: ParkedEvent, event: StoredEvent) {
        if let Some(m) = &p.message_id {
            *self.by_message.entry(m.clone()).or_default() += 1;
        }
        if let Some((old, _)) = self.events.insert(p.seq, (p, event))
            && let Some(m) = &old.message_id
        {
            // Set aside again: counted once.
            self.release(m);
        }
    }

    pub(super) fn remove(&mut self, seq: i64) -> Option<(ParkedEvent, StoredEvent)> {
        let (p, e) = self.events.remove(&seq)?;
        if let Some(m) = &p.message_id {
            self.release(m);
        }
        Some((p, e))
    }

    fn release(&mut self, message: &str) {
        if let Some(n) = self.by_message.get_mut(message) {
            *n -= 1;
            if *n == 0 {
                self.by_message.remove(message);
            }
        }
    }

    /// The first parked event of each message (and every one without a message), in seq
    /// order: only these may be tried.
    fn heads(&self) -> impl Iterator<Item = &(ParkedEvent, StoredEvent)> {
        let mut seen = std::collections::HashSet::new();
        self.events
            .values()
            .filter(move |(p, _)| p.message_id.as_ref().is_none_or(|m| seen.insert(m.clone())))
    }

    /// The heads whose time has come, at most `limit`.
    pub(super) fn due(&self, now: DateTime<Utc>, limit: usize) -> Vec<(ParkedEvent, StoredEvent)> {
        self.heads()
            .filter(|(p, _)| p.next_attempt_at <= now)
            .take(limit)
            .cloned()
            .collect()
    }

    /// When the next head is due.
    pub(super) fn next_due(&self) -> Option<DateTime<Utc>> {
        self.heads().map(|(p, _)| p.next_attempt_at).min()
    }
}

/// An event set aside behind an earlier one of its message, never tried yet: due as soon
/// as it is first of its message.
pub(super) fn waiting(event: &StoredEvent, now: DateTime<Utc>) -> ParkedEvent {
    ParkedEvent {
        seq: event.seq,
        message_id: event.message_id.clone(),
        attempts: 0,
        first_attempt_at: None,
        next_attempt_at: now,
        last_error: "waiting behind an earlier event of its message".into(),
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

impl Runner {
    /// Tries again the set-aside events `due` (see [`Parked::due`]) and records the
    /// outcome; a delivery in flight when the lease is lost is abandoned.
    pub(super) async fn retry_due(
        &mut self,
        held: &mut Held<'_>,
        due: Vec<(ParkedEvent, StoredEvent)>,
    ) -> Result<(), Halt> {
        let retried = tokio::select! {
            r = self.retry_parked(due, held.lease.token) => r,
            _ = held.lost.wait_for(|l| *l) => return Err(Halt::LeaseLost),
        };
        let (done, dead) = (retried.delivered, retried.dead.len());
        let progress = Progress {
            unparked: retried.unparked,
            parked: (retried.rescheduled.iter())
                .map(|(p, _)| p.clone())
                .collect(),
            dead: retried.dead,
            ..Progress::default()
        };
        self.record(held, progress).await?;
        for (p, e) in retried.rescheduled {
            self.parked.insert(p, e);
        }
        held.meters.recorded(self.parked.len(), done, dead);
        Ok(())
    }

    /// Tries again the set-aside events whose time has come (one per message); takes
    /// the delivered ones out of `self.parked` and reschedules or dead-letters the rest.
    async fn retry_parked(&mut self, due: Vec<(ParkedEvent, StoredEvent)>, lease: i64) -> Retried {
        let name = self.sink.name();
        let policy = self.config.retry_policy();
        let events: Vec<StoredEvent> = due.iter().map(|(_, e)| e.clone()).collect();
        // Let finish when a stop comes, as in `deliver`.
        let results = answers(name, due.len(), self.sink.deliver(&events, lease).await);
        let now = Utc::now();
        let mut out = Retried::default();
        let mut failed = None;
        for ((p, event), result) in due.into_iter().zip(results) {
            self.parked.remove(p.seq);
            if let Some(error) = out.settle(name, &policy, now, p, event, result) {
                failed = Some(error);
            }
        }
        if failed.is_some() || out.delivered > 0 {
            self.health.report(&*self.store, name, failed).await;
        }
        out
    }
}

impl Retried {
    /// Takes in one set-aside event's result; returns the error of a retryable failure.
    fn settle(
        &mut self,
        sink: &str,
        policy: &RetryPolicy,
        now: DateTime<Utc>,
        mut p: ParkedEvent,
        event: StoredEvent,
        result: Result<(), SinkError>,
    ) -> Option<String> {
        let first = p.first_attempt_at.unwrap_or(now);
        let e = match result {
            Ok(()) => {
                self.delivered += 1;
                self.unparked.push(p.seq);
                return None;
            }
            Err(e) if e.held_back => {
                self.rescheduled.push((p, event));
                return None;
            }
            Err(e) => e,
        };
        p.attempts = p.attempts.saturating_add(1);
        let exhausted = policy.exhausted(p.attempts, (now - first).to_std().ok());
        let failed = e.retryable.then(|| e.message.clone());
        if e.retryable && !exhausted {
            retried(sink, 1);
            p.first_attempt_at = Some(first);
            p.next_attempt_at = now + policy.delay(p.attempts);
            p.last_error = e.message;
            self.rescheduled.push((p, event));
            return failed;
        }
        tracing::error!(
            sink,
            seq = p.seq,
            event_id = event.event_id,
            attempts = p.attempts,
            error = e.message,
            "Sink gave up on an event set aside; it is a dead letter, and its message's later events go on."
        );
        self.unparked.push(p.seq);
        self.dead.push(UndeliveredEvent {
            seq: p.seq,
            code: Undelivered::after(e.retryable),
            reason: e.message,
            attempts: p.attempts,
            first_attempt_at: first,
        });
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, message: Option<&str>) -> StoredEvent {
        StoredEvent {
            seq,
            received_at: DateTime::UNIX_EPOCH,
            event_id: format!("e{seq}"),
            event_type: "t".into(),
            message_id: message.map(str::to_owned),
            status: None,
            warnings: Vec::new(),
            body: bytes::Bytes::new(),
        }
    }

    fn parked(seq: i64, message: Option<&str>, at: i64) -> (ParkedEvent, StoredEvent) {
        (
            ParkedEvent {
                seq,
                message_id: message.map(str::to_owned),
                attempts: 1,
                first_attempt_at: None,
                next_attempt_at: DateTime::from_timestamp(at, 0).unwrap(),
                last_error: String::new(),
            },
            event(seq, message),
        )
    }

    #[test]
    fn only_the_first_of_each_message_is_due_and_the_rest_wait_behind_it() {
        let mut p = Parked::from(vec![
            parked(1, Some("a"), 100),
            parked(2, Some("b"), 50),
            parked(3, Some("a"), 0),
            parked(4, None, 10),
        ]);
        let at = |t| DateTime::from_timestamp(t, 0).unwrap();
        let seqs =
            |v: Vec<(ParkedEvent, StoredEvent)>| v.iter().map(|(p, _)| p.seq).collect::<Vec<_>>();
        assert_eq!(seqs(p.due(at(60), 10)), [2, 4], "3 waits behind 1");
        assert_eq!(p.next_due(), Some(at(10)));
        assert!(p.holds_back(&event(9, Some("a"))));
        assert!(!p.holds_back(&event(9, Some("c"))));
        p.remove(1);
        assert_eq!(seqs(p.due(at(60), 10)), [2, 3, 4]);
        p.remove(3);
        assert!(!p.holds_back(&event(9, Some("a"))));
        assert_eq!(p.len(), 2);
    }
}
