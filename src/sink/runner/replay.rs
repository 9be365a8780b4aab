//! What the runner delivers next: dead letters put back by `innohook replay` (the
//! sink's replay queue in the store) before new events after its cursor.

use std::time::Instant;

use super::{IDLE_POLL, Runner};
use crate::store::{StoreResult, StoredEvent};

/// When the store is next read for replayed dead letters: every [`IDLE_POLL`], and again
/// at once while the queue yields some.
pub(super) struct ReplayQueue {
    check_at: Instant,
}

impl ReplayQueue {
    /// Read at the first round.
    pub(super) fn new() -> Self {
        Self {
            check_at: Instant::now(),
        }
    }

    pub(super) fn next_check(&self) -> Instant {
        self.check_at
    }
}

impl Runner {
    /// Up to `batch` events to deliver, and whether they are replays: replays first, new
    /// events when none are queued (or the queue is not due to be read).
    pub(super) async fn next_batch(
        &self,
        name: &str,
        batch: usize,
        replay: &mut ReplayQueue,
    ) -> StoreResult<(Vec<StoredEvent>, bool)> {
        if Instant::now() >= replay.check_at {
            replay.check_at = Instant::now() + IDLE_POLL;
            let replays = self.store.replay_queue(name, batch).await?;
            if !replays.is_empty() {
                // More replays may be queued: read the queue again next.
                replay.check_at = Instant::now();
                return Ok((replays, true));
            }
        }
        let events = self.store.events_after(self.cursor, batch).await?;
        Ok((events, false))
    }
}
