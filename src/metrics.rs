//! Prometheus metrics: every name in one place. The recorder is process-wide and installed
//! once; `GET /metrics` renders it.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::event::{Status, counted_status};

pub const EVENTS_RECEIVED: &str = "innohook_events_received_total";
pub const TEMPLATE_EVENTS: &str = "innohook_template_events_total";
pub const DUPLICATES: &str = "innohook_events_duplicate_total";
pub const REJECTIONS: &str = "innohook_rejections_total";
pub const UNAUTHORIZED: &str = "innohook_unauthorized_total";
pub const STORE_UNAVAILABLE: &str = "innohook_store_unavailable_total";
pub const REQUEST_DURATION: &str = "innohook_request_duration_seconds";
pub const COMMIT_DURATION: &str = "innohook_store_commit_duration_seconds";
pub const COMMIT_BATCH: &str = "innohook_store_commit_batch_size";
pub const SINK_DELIVERED: &str = "innohook_sink_delivered_total";
pub const SINK_RETRIED: &str = "innohook_sink_retried_total";
pub const SINK_DEAD: &str = "innohook_sink_dead_lettered_total";
pub const SINK_PENDING: &str = "innohook_sink_pending_events";
pub const SINK_PARKED: &str = "innohook_sink_parked_events";
pub const SINK_HOLDING_BACK: &str = "innohook_sink_holding_back_seconds";
pub const STORE_SIZE: &str = "innohook_store_size_bytes";
pub const STORE_ROWS: &str = "innohook_store_rows";
pub const STORE_FREE: &str = "innohook_store_free_bytes";
pub const STORE_LOW_DISK: &str = "innohook_store_low_disk";
pub const STORE_PRUNED: &str = "innohook_store_pruned_total";
pub const OLDEST_EVENT_AGE: &str = "innohook_store_oldest_event_age_seconds";
pub const CONNECTIONS_OPEN: &str = "innohook_connections_open";
pub const CONNECTIONS_LIMITED: &str = "innohook_connections_limit_reached_total";
pub const CONNECTIONS_TIMED_OUT: &str = "innohook_connections_timed_out_total";
pub const ACCEPT_ERRORS: &str = "innohook_accept_errors_total";
pub const SIGN_IN_FAILURES: &str = "innohook_ui_sign_in_failures_total";
pub const SIGN_IN_THROTTLED: &str = "innohook_ui_sign_in_throttled_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (once per process) and returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(COMMIT_BATCH.into()),
                        &[
                            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                        ],
                    )
                })
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("Another metrics recorder is installed; /metrics stays empty.");
            }
            describe();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawn metrics upkeep");
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        EVENTS_RECEIVED,
        "Events accepted and stored, by type and status."
    );
    describe_counter!(
        DUPLICATES,
        "Redelivered events recognised as duplicates, by type."
    );
    describe_counter!(
        TEMPLATE_EVENTS,
        "Templates' status and quality changes accepted, by kind (status, quality) and status (the template status or quality score; other for an undocumented one)."
    );
    describe_counter!(REJECTIONS, "Payloads rejected with 400, by code.");
    describe_counter!(SIGN_IN_FAILURES, "Dashboard sign-ins with a wrong token.");
    describe_counter!(
        SIGN_IN_THROTTLED,
        "Dashboard sign-ins refused with 429: their address sent too many wrong tokens."
    );
    describe_counter!(UNAUTHORIZED, "Requests refused with 401.");
    describe_counter!(
        STORE_UNAVAILABLE,
        "Requests answered 503 because the store could not commit."
    );
    describe_histogram!(REQUEST_DURATION, "HTTP request latency, by status code.");
    describe_histogram!(
        COMMIT_DURATION,
        "Time of one group commit (transaction and fsync)."
    );
    describe_histogram!(COMMIT_BATCH, "Writes per group commit.");
    describe_counter!(SINK_DELIVERED, "Events delivered, by sink.");
    describe_counter!(
        SINK_RETRIED,
        "Delivery attempts that failed and were retried, by sink."
    );
    describe_counter!(
        SINK_DEAD,
        "Events a sink gave up on (dead letters), by sink."
    );
    describe_gauge!(
        SINK_PENDING,
        "Events a sink has not finished: committed after its position, and set aside (the dashboard's Behind); it follows commits also while a delivery is retried."
    );
    describe_gauge!(
        SINK_HOLDING_BACK,
        "How long past their retention a sink keeps events in the store (it has not delivered them)."
    );
    describe_gauge!(
        STORE_SIZE,
        "The store's size on disk (SQLite: database and WAL)."
    );
    describe_gauge!(
        STORE_ROWS,
        "Rows per table (PostgreSQL: the planner's estimate)."
    );
    describe_gauge!(STORE_FREE, "Free bytes on the store's filesystem (SQLite).");
    describe_gauge!(
        STORE_LOW_DISK,
        "1 while free space on the store's filesystem is below store.min_free_percent."
    );
    describe_counter!(STORE_PRUNED, "Rows removed by the retention, by table.");
    describe_gauge!(OLDEST_EVENT_AGE, "Age of the oldest stored event.");
    describe_gauge!(
        SINK_PARKED,
        "Events a sink set aside to retry on their own (and those waiting behind them)."
    );
    describe_gauge!(CONNECTIONS_OPEN, "HTTP connections open.");
    describe_counter!(
        CONNECTIONS_LIMITED,
        "Times server.max_connections were open and new connections had to wait."
    );
    describe_counter!(
        CONNECTIONS_TIMED_OUT,
        "Connections closed for sending no request head in time (phase header), idling too long (phase idle), or taking nothing of an answer for as long (phase write)."
    );
    describe_counter!(
        ACCEPT_ERRORS,
        "Failed accepts, by reason (open_files: out of file descriptors); each one backs off."
    );
}

/// InnoPaaS event types that get their own series; any other type counts as `other`.
const KNOWN_TYPES: &[&str] = &crate::event::TYPES;
const TYPES: usize = KNOWN_TYPES.len() + 1;

/// The `type` label's index: from a fixed list, so a sender cannot create new series.
fn type_index(event_type: &str) -> usize {
    KNOWN_TYPES
        .iter()
        .position(|t| *t == event_type)
        .unwrap_or(KNOWN_TYPES.len())
}

fn type_label(index: usize) -> &'static str {
    KNOWN_TYPES.get(index).copied().unwrap_or("other")
}

/// The `status` label's values: none (not a status event), each documented status, or
/// `other`, as [`counted_status`] spells them.
const STATUSES: usize = 1 + Status::ALL.len() + 1;

/// The `status` label's index: from a fixed list, so a sender cannot create new series.
fn status_index(status: Option<&Status>) -> usize {
    match status {
        None => 0,
        Some(Status::Delivered) => 1,
        Some(Status::Read) => 2,
        Some(Status::Failed) => 3,
        Some(Status::SmeclFailed) => 4,
        Some(Status::Unknown(_)) => 5,
    }
}

// Every request touches the series below. Each handle is looked up once, on first use
// (after the recorder is installed: only requests use them): `counter!` and `histogram!`
// hash the name and labels and search the registry on every call, about 1,000
// instructions each. A cached handle outlives its series only if the recorder drops idle
// series, which it is not set up to do (see `install`); keep it that way.

/// `innohook_events_received_total{type, status}`.
pub fn event_received(event_type: &str, status: Option<&Status>) -> &'static Counter {
    static SLOTS: [[OnceLock<Counter>; STATUSES]; TYPES] =
        [const { [const { OnceLock::new() }; STATUSES] }; TYPES];
    let (t, s) = (type_index(event_type), status_index(status));
    SLOTS[t][s].get_or_init(|| {
        let status = counted_status(status);
        metrics::counter!(EVENTS_RECEIVED, "type" => type_label(t), "status" => status)
    })
}

/// `innohook_events_duplicate_total{type}`.
pub fn duplicate(event_type: &str) -> &'static Counter {
    static SLOTS: [OnceLock<Counter>; TYPES] = [const { OnceLock::new() }; TYPES];
    let t = type_index(event_type);
    SLOTS[t].get_or_init(|| metrics::counter!(DUPLICATES, "type" => type_label(t)))
}

/// Records one request's latency in `innohook_request_duration_seconds{status}`.
pub fn record_request_duration(status: u16, seconds: f64) {
    /// The common answers.
    const HOT: [u16; 4] = [200, 400, 401, 503];
    static SLOTS: [OnceLock<Histogram>; HOT.len()] = [const { OnceLock::new() }; HOT.len()];
    let histogram =
        |status: u16| metrics::histogram!(REQUEST_DURATION, "status" => status.to_string());
    match HOT.iter().position(|s| *s == status) {
        Some(i) => SLOTS[i].get_or_init(|| histogram(status)).record(seconds),
        None => histogram(status).record(seconds),
    }
}
