//! What a runner tells about its sink: the failure state it records in the store (what
//! the dashboard and the API show as failing), and the sink's Prometheus series.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use metrics::{Counter, Gauge};
use tokio::sync::watch;

use crate::metrics as m;
use crate::store::Store;

/// A sink's failure state as recorded in the store
/// ([`crate::store::SinkLedger::record_sink_error`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Health {
    /// Not recorded by this runner yet (the store may hold a failure from before).
    Unknown,
    Delivering,
    Failing(String),
}

impl Health {
    /// Records in the store that `sink` is failing with `error`, or delivering again,
    /// when that differs from what was last recorded: a write per change, not per attempt
    /// (and retries are spaced by the backoff). Best effort: a failure is only logged.
    pub(super) async fn report(&mut self, store: &dyn Store, sink: &str, error: Option<String>) {
        let now = match &error {
            Some(e) => Health::Failing(e.clone()),
            None => Health::Delivering,
        };
        if *self == now {
            return;
        }
        *self = now;
        if let Err(e) = store.record_sink_error(sink, error.as_deref()).await {
            tracing::warn!(sink, error = %e, "Could not record the sink's health.");
        }
    }
}

/// The sink's series, taken when this process gets the sink's lease (a replica standing
/// by shows none).
pub(super) struct Meters {
    /// Events the sink has not finished yet: those committed after its position, and
    /// those it set aside (the dashboard's "Behind").
    pending: Gauge,
    delivered: Counter,
    dead_lettered: Counter,
    parked: Gauge,
    /// The position and the set-aside count last recorded, for `pending` to follow
    /// commits while a delivery is being retried.
    position: Arc<(AtomicI64, AtomicI64)>,
}

/// Stops a task when dropped.
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Meters {
    pub(super) fn new(sink: &str, parked: usize) -> Self {
        let meters = Self {
            pending: metrics::gauge!(m::SINK_PENDING, "sink" => sink.to_owned()),
            delivered: metrics::counter!(m::SINK_DELIVERED, "sink" => sink.to_owned()),
            dead_lettered: metrics::counter!(m::SINK_DEAD, "sink" => sink.to_owned()),
            parked: metrics::gauge!(m::SINK_PARKED, "sink" => sink.to_owned()),
            position: Arc::new((AtomicI64::new(0), AtomicI64::new(parked as i64))),
        };
        meters.parked.set(parked as f64);
        meters
    }

    /// The sink is done with everything up to `cursor`, has `parked` events set aside,
    /// and `head` is committed.
    pub(super) fn position(&self, cursor: i64, parked: usize, head: i64) {
        self.position.0.store(cursor, Ordering::Relaxed);
        self.position.1.store(parked as i64, Ordering::Relaxed);
        self.pending.set(pending(head, cursor, parked as i64));
    }

    /// Keeps `pending` in step with commits, also while a delivery is retried for long
    /// (its target down), until the guard drops.
    pub(super) fn follow(&self, mut committed: watch::Receiver<i64>) -> AbortOnDrop {
        let (gauge, position) = (self.pending.clone(), self.position.clone());
        AbortOnDrop(tokio::spawn(async move {
            while committed.changed().await.is_ok() {
                let head = *committed.borrow_and_update();
                let cursor = position.0.load(Ordering::Relaxed);
                gauge.set(pending(head, cursor, position.1.load(Ordering::Relaxed)));
            }
        }))
    }

    /// Once a round's outcome is recorded: `parked` events are now set aside, `delivered`
    /// were delivered and `dead` given up on.
    pub(super) fn recorded(&self, parked: usize, delivered: usize, dead: usize) {
        self.parked.set(parked as f64);
        self.delivered.increment(delivered as u64);
        self.dead_lettered.increment(dead as u64);
    }
}

/// What the sink has not finished: committed after its position, and set aside.
fn pending(head: i64, cursor: i64, parked: i64) -> f64 {
    ((head - cursor).max(0) + parked) as f64
}

/// Counts failed attempts at `events` events that are tried again.
pub(super) fn retried(sink: &str, events: usize) {
    metrics::counter!(m::SINK_RETRIED, "sink" => sink.to_owned()).increment(events as u64);
}
