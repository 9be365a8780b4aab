//! Sinks: where accepted events go after they are committed.
//!
//! A [`Sink`] is a small `Send + Sync` output with a name and one async method. Each
//! configured sink is built at startup from its typed config ([`SinkKind`]), failing
//! fast before the port is bound, and driven by its own [`runner`] with its own cursor.
//! Adding a sink means one new file here and one variant in [`SinkKind`].

mod file;
mod forward;
mod log;
pub mod runner;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::store::StoredEvent;

pub use file::FileSinkConfig;
pub use forward::ForwardSinkConfig;
pub use log::LogSinkConfig;

/// Why one event was not delivered.
#[derive(Debug, Clone)]
pub struct SinkError {
    /// Worth trying again later (target down, timeout, disk full); otherwise permanent.
    pub retryable: bool,
    pub message: String,
}

impl SinkError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            message: message.into(),
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            message: message.into(),
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An output for committed events.
pub trait Sink: Send + Sync {
    /// The name used in logs, metrics, dead letters and `replay --sink`.
    fn name(&self) -> &str;

    /// Delivers events in the order given; answers one result per event, same order.
    fn deliver<'a>(
        &'a self,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Vec<Result<(), SinkError>>>;
}

/// One `[[sinks]]` entry: the keys every sink has, and the keys of its `type`.
#[derive(Debug, Clone, Serialize)]
pub struct SinkConfig {
    #[serde(flatten)]
    pub common: SinkCommon,
    #[serde(flatten)]
    pub kind: SinkKind,
}

/// The keys every sink has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkCommon {
    /// Name in logs, metrics and dead letters; defaults to the type (`log`, `file`, `forward`).
    pub name: Option<String>,
    /// Only events with one of these statuses (e.g. `["failed", "SMECL:FAILED"]`); empty: all.
    pub statuses: Vec<String>,
    /// Only events of these types; empty: all.
    pub types: Vec<String>,
    /// Attempts before an event becomes a dead letter; unset: no limit on attempts, and
    /// `max_age_secs` alone decides (with the default backoff, ten attempts last only
    /// about two minutes, shorter than a deploy of the receiving system may take).
    pub max_attempts: Option<u32>,
    /// Seconds of retrying before an event becomes a dead letter.
    pub max_age_secs: u64,
    /// First retry delay in milliseconds; it doubles, with jitter, up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    /// Longest retry delay in milliseconds.
    pub backoff_max_ms: u64,
    /// Most events handed to the sink at once.
    pub batch_size: usize,
}

impl SinkCommon {
    const KEYS: &'static [&'static str] = &[
        "name",
        "statuses",
        "types",
        "max_attempts",
        "max_age_secs",
        "backoff_initial_ms",
        "backoff_max_ms",
        "batch_size",
    ];
}

impl Default for SinkCommon {
    fn default() -> Self {
        Self {
            name: None,
            statuses: Vec::new(),
            types: Vec::new(),
            max_attempts: None,
            max_age_secs: 3600,
            backoff_initial_ms: 500,
            backoff_max_ms: 60_000,
            batch_size: 256,
        }
    }
}

/// The sink types and their own keys, chosen by `type`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkKind {
    /// One structured log line per event.
    Log(LogSinkConfig),
    /// One JSON line per event, appended to a file.
    File(FileSinkConfig),
    /// The original request body POSTed to your own system.
    Forward(ForwardSinkConfig),
}

impl SinkKind {
    /// The `type` key's value.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Self::Log(_) => "log",
            Self::File(_) => "file",
            Self::Forward(_) => "forward",
        }
    }
}

// serde cannot combine `flatten` with `deny_unknown_fields`, so the entry is split by
// hand: the common keys go to `SinkCommon`, the rest to the tagged `SinkKind`, and each
// half rejects keys it does not know.
impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut rest = Map::deserialize(d)?;
        let common: Map<String, Value> = SinkCommon::KEYS
            .iter()
            .filter_map(|k| rest.remove(*k).map(|v| ((*k).to_owned(), v)))
            .collect();
        let common = serde_json::from_value(Value::Object(common)).map_err(D::Error::custom)?;
        let kind = serde_json::from_value(Value::Object(rest)).map_err(D::Error::custom)?;
        Ok(SinkConfig { common, kind })
    }
}

impl SinkConfig {
    pub fn name(&self) -> &str {
        self.common.name.as_deref().unwrap_or(self.kind.type_name())
    }

    /// Whether this sink wants the event at all.
    pub fn wants(&self, event: &StoredEvent) -> bool {
        let c = &self.common;
        (c.types.is_empty() || c.types.contains(&event.event_type))
            && (c.statuses.is_empty()
                || event
                    .status
                    .as_ref()
                    .is_some_and(|s| c.statuses.iter().any(|w| w == s.as_str())))
    }

    pub fn retry_policy(&self) -> runner::RetryPolicy {
        let c = &self.common;
        runner::RetryPolicy {
            max_attempts: c.max_attempts.map_or(u32::MAX, |n| n.max(1)),
            max_age: Duration::from_secs(c.max_age_secs),
            initial: Duration::from_millis(c.backoff_initial_ms),
            max: Duration::from_millis(c.backoff_max_ms.max(c.backoff_initial_ms)),
        }
    }

    /// Checks what can be checked without opening anything (for `check-config` too).
    pub fn check(&self) -> anyhow::Result<()> {
        match &self.kind {
            SinkKind::Log(_) => Ok(()),
            SinkKind::File(c) => c.check(),
            SinkKind::Forward(c) => c.check(),
        }
    }

    /// Builds the sink before the server starts. `store_cursor` is where the store says
    /// the sink is, `store_head` the last committed seq; returns the sink and its cursor.
    pub fn build(
        &self,
        store_cursor: i64,
        store_head: i64,
    ) -> anyhow::Result<(Box<dyn Sink>, i64)> {
        let name = self.name().to_owned();
        let built: anyhow::Result<(Box<dyn Sink>, i64)> = match &self.kind {
            SinkKind::Log(c) => Ok((Box::new(log::LogSink::new(name.clone(), c)), store_cursor)),
            SinkKind::File(c) => file::FileSink::open(name.clone(), c, store_cursor, store_head)
                .map(|(sink, cursor)| (Box::new(sink) as Box<dyn Sink>, cursor)),
            SinkKind::Forward(c) => forward::ForwardSink::new(name.clone(), c)
                .map(|sink| (Box::new(sink) as Box<dyn Sink>, store_cursor)),
        };
        built.map_err(|e| anyhow::anyhow!("sink {name}: {e:#}"))
    }
}
