//! The sink's lease: one process at a time runs a sink. The runner waits until it can
//! claim it, a task of its own renews it while the runner delivers, and when it is lost
//! (taken over, or not renewed in time) delivery stops and the runner stands by.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::retry::pause;
use super::{Halt, IDLE_POLL, Runner, Stopped};
use crate::store::{SinkLease, Store};

/// How soon a failed lease renewal is tried again.
const RENEW_RETRY: Duration = Duration::from_millis(500);

impl Runner {
    /// Waits until this process holds the sink's lease.
    pub(super) async fn claim(
        &self,
        name: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<SinkLease, Stopped> {
        let mut waiting = false;
        loop {
            match self.store.claim_sink(name).await {
                // A claim answered only after it ran out (the answers held up on the
                // way back) is not counted on: claimed again, it is renewed.
                Ok(Some(lease)) if Instant::now() < lease.valid_until => return Ok(lease),
                Ok(Some(_)) => {
                    tracing::warn!(
                        sink = name,
                        "The sink's lease was claimed too late to use; claiming again."
                    )
                }
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

    /// Delivers while this process holds `lease`, which a task of its own renews
    /// meanwhile. When the runner is stopped the lease is released (another replica may
    /// take over at once); when it is lost the delivery in flight is dropped.
    pub(super) async fn hold(
        &mut self,
        name: &str,
        lease: SinkLease,
        stop: &mut watch::Receiver<bool>,
    ) -> Halt {
        let (lost_tx, lost) = watch::channel(false);
        let keeper = tokio::spawn(keep(self.store.clone(), lease.clone(), lost_tx));
        let halt = self.deliver_while_held(name, &lease, lost, stop).await;
        keeper.abort();
        if matches!(halt, Halt::Stopped)
            && let Err(e) = self.store.release_sink(&lease).await
        {
            tracing::warn!(sink = name, error = %e, "Could not release the sink.");
        }
        halt
    }
}

/// Keeps this process's lease on a sink: claims it again at every `renew_at` (a third of
/// the lease into it), and says it is lost when another process took it over, or when it
/// could not be renewed before `valid_until` (then another may take it over any moment).
///
/// Each renewal is bounded by `valid_until`: cut off from the database (a partition, not
/// a refused connection), a query is not answered for as long as TCP keeps retrying, and a
/// holder waiting on it would go on delivering after another process took the sink over.
async fn keep(store: Arc<dyn Store>, mut lease: SinkLease, lost: watch::Sender<bool>) {
    let give_up = |lease: &SinkLease| {
        tracing::error!(
            sink = lease.sink,
            "The sink's lease could not be renewed in time; delivery stops until it is claimed again."
        );
        let _ = lost.send(true);
    };
    loop {
        tokio::time::sleep_until(lease.renew_at.into()).await;
        loop {
            let renewal = store.claim_sink(&lease.sink);
            match tokio::time::timeout_at(lease.valid_until.into(), renewal).await {
                Ok(Ok(Some(renewed))) if renewed.token == lease.token => {
                    lease = renewed;
                    break;
                }
                Ok(Ok(_)) => {
                    let _ = lost.send(true);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(sink = lease.sink, error = %e, "Cannot renew the sink's lease; retrying.");
                    if Instant::now() + RENEW_RETRY >= lease.valid_until {
                        give_up(&lease);
                        return;
                    }
                    tokio::time::sleep(RENEW_RETRY).await;
                }
                Err(_) => {
                    give_up(&lease);
                    return;
                }
            }
        }
    }
}
