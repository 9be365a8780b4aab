//! Campaign numbers a marketer can put in a report: what was sent (the send list), what
//! became of it, what it cost, day by day in the marketer's own time zone.
//!
//! Every figure is defined once, here, and the API, the dashboard, the CSV files and the
//! commands all show these values under these names ([`BatchReport`]):
//! - `messages`: messages with at least one status report;
//! - `reached`: delivered or read (read messages were delivered first);
//! - `delivered`: delivered and not (yet) read; `read`; `failed`; `other`;
//! - with a send list: `sent` (listed, or reported on: a message with a status report was
//!   sent), `noStatus` (listed, no status report yet), `unconfirmed` (no status report
//!   `[tracking] unconfirmed_after` after it was sent), `deliveryRate` = reached / sent.

pub mod daily;
pub mod pricing;
pub mod report;
pub mod sends;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use pricing::PricingConfig;
pub use report::BatchReport;

pub use crate::event::tracking::{slot_of, slot_start};

/// `[tracking]`: how the send list is judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// A listed send with no status report this long after it was sent is `unconfirmed`
    /// ("24h", "90m", "2d").
    pub unconfirmed_after: String,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            unconfirmed_after: "24h".into(),
        }
    }
}

impl TrackingConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        self.unconfirmed_after().map(|_| ())
    }

    pub fn unconfirmed_after(&self) -> anyhow::Result<Duration> {
        let text = self.unconfirmed_after.trim();
        let d = humantime::parse_duration(text).map_err(|e| {
            anyhow::anyhow!(
                "tracking.unconfirmed_after: {text:?} is not a duration ({e}); write it as \"24h\", \"90m\" or \"2d\""
            )
        })?;
        anyhow::ensure!(
            d >= Duration::from_secs(60),
            "tracking.unconfirmed_after: {text:?} is under a minute; a status report takes longer than that to come"
        );
        anyhow::ensure!(
            d <= Duration::from_secs(366 * 86_400),
            "tracking.unconfirmed_after: {text:?} is over a year; a status report that late is not coming"
        );
        Ok(d)
    }
}

/// What the figures need beyond the store, from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub unconfirmed_after: Duration,
    pub pricing: PricingConfig,
    /// `[ui] timezone`: the dashboard's, its CSVs' and the daily report's.
    pub zone: chrono_tz::Tz,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            unconfirmed_after: Duration::from_secs(24 * 3600),
            pricing: PricingConfig::default(),
            zone: chrono_tz::UTC,
        }
    }
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        config.pricing.check()?;
        Ok(Self {
            unconfirmed_after: config.tracking.unconfirmed_after()?,
            pricing: config.pricing.clone(),
            zone: config.ui.zone()?,
        })
    }

    /// Sends before this are unconfirmed without a status report.
    pub fn cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        chrono::Duration::from_std(self.unconfirmed_after)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(DateTime::UNIX_EPOCH)
    }
}
