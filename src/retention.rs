//! The periodic upkeep of the store: pruning by the retention policy (once across
//! replicas, in small steps that ingest does not feel), and its size and free space as
//! metrics, with a warning before the disk is full.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::metrics as m;
use crate::sink::SinkConfig;
use crate::store::{PruneState, Pruned, Retention, Store, StoreConfig};

/// Rows per table in one pruning step (one transaction).
pub const STEP: usize = 500;
/// The least pause between two steps of a pass, so that ingest gets the writer in between.
const BETWEEN_STEPS: Duration = Duration::from_millis(5);
/// A pass takes at most one part in this many of the store's time: after each step it
/// pauses this many times less one as long as the step took (waiting for the writer
/// included, so a busy store slows the pass further).
const SHARE: u32 = 5;
/// How often the store's size is measured.
const STATS_EVERY: Duration = Duration::from_secs(30);
/// A sink holding events back longer than this past their retention is named.
const HELD_TOO_LONG: Duration = Duration::from_secs(86_400);

/// The retention policy of the store's settings, for these sinks (an event stays until
/// every one of them is past it).
pub fn policy(store: &StoreConfig, sinks: &[SinkConfig]) -> Retention {
    Retention {
        events: store.retain_events.0,
        messages: store.retain_messages.0,
        dead_letters: store.retain_dead_letters.0,
        sinks: sinks.iter().map(|s| s.name().to_owned()).collect(),
    }
}

/// How often pruning runs: every half of the shortest retention, at most hourly (and at
/// least every second).
pub fn interval(policy: &Retention) -> Duration {
    [policy.events, policy.messages, policy.dead_letters]
        .into_iter()
        .flatten()
        .map(|d| d / 2)
        .min()
        .unwrap_or(Duration::from_secs(3600))
        .clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// One whole pass, step by step; returns what it removed.
pub async fn prune_pass(
    store: &dyn Store,
    policy: &Retention,
) -> crate::store::StoreResult<Pruned> {
    let mut state = PruneState::default();
    let mut total = Pruned::default();
    loop {
        let started = std::time::Instant::now();
        let step = store.prune(policy, &mut state, STEP, false).await?;
        let took = started.elapsed();
        total.add(&step);
        if total.held_by.is_empty() {
            total.held_by = step.held_by.clone();
        }
        for (table, n) in step.tables() {
            if n > 0 {
                metrics::counter!(m::STORE_PRUNED, "table" => table).increment(n);
            }
        }
        if step.done {
            return Ok(total);
        }
        tokio::time::sleep((took * (SHARE - 1)).max(BETWEEN_STEPS)).await;
    }
}

/// Prunes every [`interval`], when it is this replica's turn.
pub async fn prune_forever(store: Arc<dyn Store>, policy: Retention) {
    let every = interval(&policy);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.due("prune", every).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "Could not prune the store; trying again later.");
                continue;
            }
        }
        match prune_pass(store.as_ref(), &policy).await {
            Ok(p) => {
                if p.total() > 0 {
                    tracing::info!(
                        events = p.events,
                        messages = p.messages,
                        batches = p.batches,
                        inbound = p.inbound,
                        template_events = p.templates,
                        sends = p.sends,
                        dead_letters = p.dead_letters,
                        "Pruned what the retention no longer keeps."
                    );
                }
                let now = chrono::Utc::now();
                for sink in &policy.sinks {
                    let held = p
                        .held_by
                        .iter()
                        .find(|(s, _)| s == sink)
                        .and_then(|(_, at)| (now - *at).to_std().ok())
                        .map(|age| age.saturating_sub(policy.events.unwrap_or_default()))
                        .unwrap_or_default();
                    metrics::gauge!(m::SINK_HOLDING_BACK, "sink" => sink.clone())
                        .set(held.as_secs_f64());
                    if held > HELD_TOO_LONG {
                        tracing::warn!(
                            sink,
                            held_hours = held.as_secs() / 3600,
                            "A sink has not delivered events older than their retention, which keeps them in the store; fix or remove the sink, or its backlog grows until the disk is full."
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Could not prune the store; trying again later."),
        }
    }
}

/// Measures the store every [`STATS_EVERY`]; sets `low` (and warns, once per crossing)
/// when free space on its filesystem falls below `min_free_percent`.
pub async fn watch_size(store: Arc<dyn Store>, min_free_percent: f64, low: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(STATS_EVERY);
    loop {
        tick.tick().await;
        let stats = match store.stats().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "Could not measure the store.");
                continue;
            }
        };
        metrics::gauge!(m::STORE_SIZE).set(stats.size_bytes as f64);
        for (table, rows) in &stats.rows {
            metrics::gauge!(m::STORE_ROWS, "table" => *table).set(*rows as f64);
        }
        let age = stats
            .oldest_event_at
            .and_then(|at| (chrono::Utc::now() - at).to_std().ok())
            .unwrap_or_default();
        metrics::gauge!(m::OLDEST_EVENT_AGE).set(age.as_secs_f64());
        if let (Some(free), Some(total)) = (stats.free_bytes, stats.total_bytes) {
            metrics::gauge!(m::STORE_FREE).set(free as f64);
            let percent = if total > 0 {
                free as f64 * 100.0 / total as f64
            } else {
                100.0
            };
            let is_low = percent < min_free_percent;
            metrics::gauge!(m::STORE_LOW_DISK).set(f64::from(u8::from(is_low)));
            if is_low != low.swap(is_low, Ordering::Relaxed) {
                if is_low {
                    tracing::warn!(
                        free_percent = format!("{percent:.1}"),
                        min_free_percent,
                        "The store's filesystem is nearly full; when it is full, pushes get 503. Shorten the retention ([store] retain_*) or add space."
                    );
                } else {
                    tracing::info!(
                        free_percent = format!("{percent:.1}"),
                        "The store's filesystem has room again."
                    );
                }
            }
        }
    }
}
