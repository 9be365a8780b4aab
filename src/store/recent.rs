//! The newest committed events, kept in memory so that sinks which keep up take them
//! from here instead of reading the store: the writer adds each batch right after its
//! commit. A sink that has fallen further behind than this window reads the store.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::StoredEvent;

/// How many events the window holds (at ~1 KB each, a few MiB).
pub(super) const CAPACITY: usize = 4096;

pub struct Recent {
    inner: Mutex<Window>,
}

struct Window {
    events: VecDeque<StoredEvent>,
    /// Every committed event with a seq above this one is in `events`.
    floor: i64,
}

impl Recent {
    /// An empty window over a store whose last committed seq is `head`.
    pub(super) fn new(head: i64) -> Self {
        Self {
            inner: Mutex::new(Window {
                events: VecDeque::with_capacity(CAPACITY),
                floor: head,
            }),
        }
    }

    /// Adds a committed batch (in seq order), dropping the oldest events past capacity.
    pub(super) fn extend(&self, batch: Vec<StoredEvent>) {
        let mut w = self.inner.lock().expect("recent events lock");
        w.events.extend(batch);
        while w.events.len() > CAPACITY {
            let gone = w.events.pop_front().expect("longer than capacity").seq;
            w.floor = gone;
        }
    }

    /// Up to `limit` events with seq above `after`, in seq order; `None` when some of them
    /// have already left the window (then the store has them).
    pub fn after(&self, after: i64, limit: usize) -> Option<Vec<StoredEvent>> {
        let w = self.inner.lock().expect("recent events lock");
        if after < w.floor {
            return None;
        }
        let start = w.events.partition_point(|e| e.seq <= after);
        Some(w.events.range(start..).take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64) -> StoredEvent {
        StoredEvent {
            seq,
            received_at: String::new(),
            event_id: format!("e{seq}"),
            event_type: "t".into(),
            message_id: None,
            status: None,
            warnings: "[]".into(),
            body: Default::default(),
        }
    }

    fn seqs(events: Option<Vec<StoredEvent>>) -> Option<Vec<i64>> {
        events.map(|v| v.iter().map(|e| e.seq).collect())
    }

    #[test]
    fn serves_only_what_it_holds_completely() {
        let recent = Recent::new(10);
        assert_eq!(seqs(recent.after(10, 5)), Some(vec![]));
        assert_eq!(
            seqs(recent.after(9, 5)),
            None,
            "seq 10 was never in the window"
        );
        recent.extend((11..=13).map(event).collect());
        assert_eq!(seqs(recent.after(10, 2)), Some(vec![11, 12]));
        assert_eq!(seqs(recent.after(12, 5)), Some(vec![13]));
        recent.extend((14..14 + CAPACITY as i64).map(event).collect());
        assert_eq!(seqs(recent.after(12, 1)), None, "13 has left the window");
        assert_eq!(seqs(recent.after(13, 1)), Some(vec![14]));
    }
}
