//! The newest committed events, kept in memory so that sinks which keep up take them
//! from here instead of reading the store: the writer adds each batch right after its
//! commit. A sink that has fallen further behind than this window reads the store.
//! Without sinks the window keeps nothing (see [`Recent::keep_events`]).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::StoredEvent;

/// Most events the window holds.
pub(super) const CAPACITY: usize = 4096;
/// Most body bytes the window holds (bodies may be up to `max_body_bytes` each).
pub(super) const MAX_BYTES: usize = 16 << 20;

pub struct Recent {
    inner: Mutex<Window>,
    keep: AtomicBool,
}

struct Window {
    events: VecDeque<StoredEvent>,
    /// The sum of the held events' body lengths.
    bytes: usize,
    /// Every committed event with a seq above this one is in `events`.
    floor: i64,
}

impl Recent {
    /// An empty window over a store whose last committed seq is `head`.
    pub(super) fn new(head: i64) -> Self {
        Self {
            inner: Mutex::new(Window {
                events: VecDeque::new(),
                bytes: 0,
                floor: head,
            }),
            keep: AtomicBool::new(false),
        }
    }

    /// Starts keeping events (a sink will read them); from the next committed batch on.
    pub fn keep_events(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }

    pub(super) fn keeps_events(&self) -> bool {
        self.keep.load(Ordering::Relaxed)
    }

    /// Adds a committed batch whose last event seq is `last`: its events in seq order,
    /// or none if the window did not keep them. Drops the oldest past the limits.
    pub(super) fn extend(&self, batch: Vec<StoredEvent>, last: i64) {
        let mut w = self.inner.lock().expect("recent events lock");
        if batch.last().map(|e| e.seq) != Some(last) {
            // Not kept: the window starts over after this batch.
            w.events.clear();
            w.bytes = 0;
            w.floor = last;
            return;
        }
        w.bytes += batch.iter().map(|e| e.body.len()).sum::<usize>();
        w.events.extend(batch);
        while w.events.len() > CAPACITY || w.bytes > MAX_BYTES {
            let gone = w.events.pop_front().expect("over a limit, so not empty");
            w.bytes -= gone.body.len();
            w.floor = gone.seq;
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

    fn event(seq: i64, size: usize) -> StoredEvent {
        StoredEvent {
            seq,
            received_at: chrono::DateTime::UNIX_EPOCH,
            event_id: format!("e{seq}"),
            event_type: "t".into(),
            message_id: None,
            status: None,
            warnings: Vec::new(),
            body: vec![b' '; size].into(),
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
        recent.extend((11..=13).map(|s| event(s, 1)).collect(), 13);
        assert_eq!(seqs(recent.after(10, 2)), Some(vec![11, 12]));
        assert_eq!(seqs(recent.after(12, 5)), Some(vec![13]));
        let last = 13 + CAPACITY as i64;
        recent.extend((14..=last).map(|s| event(s, 1)).collect(), last);
        assert_eq!(seqs(recent.after(12, 1)), None, "13 has left the window");
        assert_eq!(seqs(recent.after(13, 1)), Some(vec![14]));
    }

    #[test]
    fn big_bodies_leave_by_bytes_and_unkept_batches_start_it_over() {
        let recent = Recent::new(0);
        let size = MAX_BYTES / 4 + 1;
        recent.extend((1..=4).map(|s| event(s, size)).collect(), 4);
        assert_eq!(
            seqs(recent.after(0, 9)),
            None,
            "four bodies are over the budget"
        );
        assert_eq!(seqs(recent.after(1, 9)), Some(vec![2, 3, 4]));
        recent.extend(Vec::new(), 7);
        assert_eq!(seqs(recent.after(4, 9)), None, "5 to 7 were not kept");
        assert_eq!(seqs(recent.after(7, 9)), Some(vec![]));
        recent.extend(vec![event(8, 1)], 8);
        assert_eq!(seqs(recent.after(7, 9)), Some(vec![8]));
    }
}
