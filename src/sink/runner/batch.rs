//! One round of new or replayed events: the events of a message with an event set aside
//! wait behind it, the others the sink wants are delivered ([`Runner::deliver`]), the
//! outcome is recorded (only then does the cursor move), and the next batch is let fill
//! up a little.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::deliver::Delivery;
use super::parked::waiting;
use super::{Halt, Held, Runner, Stopped};
use crate::store::{Progress, StoredEvent};

/// How long a runner lets a small batch fill up before delivering it.
const BATCH_WINDOW: Duration = Duration::from_millis(25);

impl Runner {
    /// Delivers `events` (read at `head`; `replaying`: from the replay queue) and records
    /// what became of them.
    pub(super) async fn deliver_batch(
        &mut self,
        held: &mut Held<'_>,
        events: Vec<StoredEvent>,
        replaying: bool,
        head: i64,
    ) -> Result<(), Halt> {
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
            d = self.deliver(&wanted, held.lease.token, held.stop) => d,
            _ = held.lost.wait_for(|l| *l) => return Err(Halt::LeaseLost),
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
        self.record(held, progress).await?;
        if !delivery.unfinished.is_empty() {
            return Err(Halt::Stopped);
        }
        for (p, e) in delivery.parked {
            self.parked.insert(p, e);
        }
        held.meters.recorded(self.parked.len(), done, undelivered);
        if replaying && done > 0 {
            tracing::info!(
                sink = held.name,
                events = done,
                "Delivered replayed dead letters."
            );
        }
        if cursor.is_some() {
            let head = *held.committed.borrow();
            held.meters.position(self.cursor, self.parked.len(), head);
        }
        // Let the next batch fill up a little: each delivery has a fixed cost (an
        // fsync or a round of requests, a cursor write), and under
        // load a sink that chases every commit spends the core on that.
        let batch = self.config.common.batch_size.max(1);
        if !replaying && (head - self.cursor) < batch as i64 {
            self.gather(batch, &mut held.committed, held.stop).await?;
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
