//! Logging setup: `[log] format` (pretty | json) and `level`; `RUST_LOG` wins when set.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// Logging, to stderr.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
    /// Level filter (`info`, `warn`, `innohook=debug`, …); `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people.
    Pretty,
    /// One JSON object a line, for log collectors.
    Json,
}

impl LogConfig {
    /// The filter `level` spells, or an error that names the key.
    fn filter(&self) -> anyhow::Result<EnvFilter> {
        EnvFilter::try_new(&self.level)
            .map_err(|e| anyhow::anyhow!("log.level {:?} is not a valid filter: {e}", self.level))
    }

    /// Rules of `[log]` that serde cannot express: `level` must be a valid filter.
    pub fn check(&self) -> anyhow::Result<()> {
        self.filter().map(drop)
    }
}

/// Installs the global subscriber; logs go to stderr.
pub fn init(cfg: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v)?,
        _ => cfg.filter()?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: not in files, pipes or `docker logs`.
        .with_ansi(std::io::stderr().is_terminal());
    let result = match cfg.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
