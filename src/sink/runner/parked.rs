//! The events a sink that keeps each message's order has set aside: one that failed
//! while other events got through is retried on its own schedule, and the later events
//! of its message wait behind it, while every other message goes on. The store keeps
//! them (so they survive a restart); this is the runner's copy.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::store::{ParkedEvent, StoredEvent};

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
            warnings: "[]".into(),
            body: axum::body::Bytes::new(),
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
