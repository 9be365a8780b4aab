//! When to try an event again and when to give up on it: exponential backoff with
//! jitter between attempts, and waiting it out unless asked to stop.

use std::time::Duration;

use tokio::sync::watch;

use super::Stopped;

/// When to give up on an event.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub max_age: Duration,
    pub initial: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: doubling from `initial`, capped at `max`,
    /// with "equal jitter" (between half and all of it) so retries do not march in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max);
        full / 2 + full.mul_f64(fastrand::f64() / 2.0)
    }

    /// Whether an event tried `attempts` times, first `age` ago (`None`: unknown, the
    /// clock went back), is given up on.
    pub(super) fn exhausted(&self, attempts: u32, age: Option<Duration>) -> bool {
        attempts >= self.max_attempts || age.is_some_and(|age| age >= self.max_age)
    }
}

/// Sleeps, unless asked to stop first.
pub(super) async fn pause(wait: Duration, stop: &mut watch::Receiver<bool>) -> Result<(), Stopped> {
    tokio::select! {
        _ = tokio::time::sleep(wait) => Ok(()),
        _ = stop.wait_for(|s| *s) => Err(Stopped),
    }
}
