//! Where the sink is: its cursor and set-aside events as the store holds them (read each
//! time the lease is taken, since another replica may have moved them), where a sink the
//! store has not seen starts, and recording progress, after which the cursor moves.

use super::parked::Parked;
use super::retry::pause;
use super::{Halt, Held, IDLE_POLL, Runner};
use crate::sink::Start;
use crate::store::{Progress, StoreError, StoreResult};

impl Runner {
    /// Takes the sink's cursor and set-aside events from the store.
    pub(super) async fn resume(&mut self, name: &str) -> StoreResult<()> {
        let cursor = self.store.sink_cursor(name).await?;
        let parked = self.store.parked(name).await?;
        match cursor {
            Some(c) => {
                self.recorded = c;
                self.cursor = self.cursor.max(c);
                self.parked = Parked::from(parked);
            }
            None => {
                self.recorded = -1;
                self.start_new(name);
                self.parked = Parked::default();
            }
        }
        Ok(())
    }

    /// A sink this store has not seen starts where `start` says (now: after what was
    /// stored when this process started, so that nothing posted since is skipped),
    /// recorded before anything is delivered.
    fn start_new(&mut self, name: &str) {
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
    }

    /// A sink resuming ahead of the store's cursor (a file that got further than the
    /// store heard, before a crash) has that recorded first: a replayed event appended
    /// next becomes the file's last line and would hide how far the file got.
    pub(super) async fn record_ahead(&mut self, held: &mut Held<'_>) -> Result<(), Halt> {
        if self.cursor > self.recorded {
            let progress = Progress {
                cursor: Some(self.cursor),
                ..Progress::default()
            };
            self.record(held, progress).await?;
            self.recorded = self.cursor;
        }
        Ok(())
    }

    /// Records progress in the store ([`crate::store::Delivery::sink_progress`]),
    /// retrying until it is recorded; then the cursor is `progress.cursor`, when given.
    pub(super) async fn record(
        &mut self,
        held: &mut Held<'_>,
        progress: Progress,
    ) -> Result<(), Halt> {
        let cursor = progress.cursor;
        loop {
            match self.store.sink_progress(held.lease, progress.clone()).await {
                Ok(()) => break,
                Err(StoreError::LeaseLost(_)) => return Err(Halt::LeaseLost),
                Err(e) => {
                    tracing::error!(sink = held.name, error = %e, "Cannot record sink progress; retrying.");
                    pause(IDLE_POLL, held.stop).await?;
                }
            }
        }
        if let Some(c) = cursor {
            self.cursor = c;
        }
        Ok(())
    }
}
