//! What a runner tells about its sink: the failure state it records in the store (what
//! the dashboard and the API show as failing), and the sink's Prometheus series.

use metrics::{Counter, Gauge};

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
    /// Committed events the sink has not finished yet.
    pub(super) pending: Gauge,
    delivered: Counter,
    dead_lettered: Counter,
    parked: Gauge,
}

impl Meters {
    pub(super) fn new(sink: &str, parked: usize) -> Self {
        let meters = Self {
            pending: metrics::gauge!(m::SINK_PENDING, "sink" => sink.to_owned()),
            delivered: metrics::counter!(m::SINK_DELIVERED, "sink" => sink.to_owned()),
            dead_lettered: metrics::counter!(m::SINK_DEAD, "sink" => sink.to_owned()),
            parked: metrics::gauge!(m::SINK_PARKED, "sink" => sink.to_owned()),
        };
        meters.parked.set(parked as f64);
        meters
    }

    /// Once a round's outcome is recorded: `parked` events are now set aside, `delivered`
    /// were delivered and `dead` given up on.
    pub(super) fn recorded(&self, parked: usize, delivered: usize, dead: usize) {
        self.parked.set(parked as f64);
        self.delivered.increment(delivered as u64);
        self.dead_lettered.increment(dead as u64);
    }
}

/// Counts failed attempts at `events` events that are tried again.
pub(super) fn retried(sink: &str, events: usize) {
    metrics::counter!(m::SINK_RETRIED, "sink" => sink.to_owned()).increment(events as u64);
}
