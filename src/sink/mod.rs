//! Sinks: where accepted events go after they are committed.
//!
//! A [`Sink`] is a small `Send + Sync` output with a name and one async method. Each
//! configured sink is built at startup from its typed config ([`SinkKind`]), failing
//! fast before the port is bound, and driven by its own [`runner`] with its own cursor.
//!
//! Adding a sink means one new file here, whose config implements [`SinkSettings`]
//! (check, target, build), and one line in [`sink_types!`]: its variant and `type`.

mod file;
mod forward;
mod log;
// Names made from an event by a template: only the broker sinks have them.
#[cfg(any(feature = "nats", feature = "rabbitmq", feature = "redis"))]
mod name;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
#[cfg(feature = "redis")]
mod redis;
pub mod runner;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::event::Status;
use crate::store::StoredEvent;

pub use file::FileSinkConfig;
pub use forward::ForwardSinkConfig;
pub use log::LogSinkConfig;
#[cfg(feature = "nats")]
pub use nats::NatsSinkConfig;
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::RabbitMqSinkConfig;
#[cfg(feature = "redis")]
pub use redis::RedisSinkConfig;

/// Why one event was not delivered.
#[derive(Debug, Clone)]
pub struct SinkError {
    /// Worth trying again later (target down, timeout, disk full); otherwise permanent.
    pub retryable: bool,
    /// Not sent at all: an earlier event of its message failed in the same delivery.
    pub held_back: bool,
    pub message: String,
}

impl SinkError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            held_back: false,
            message: message.into(),
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            held_back: false,
            message: message.into(),
        }
    }
    /// Not sent: an earlier event of its message failed (see [`Sink::keeps_message_order`]).
    pub fn held_back() -> Self {
        Self {
            retryable: true,
            held_back: true,
            message: "held back behind an earlier event of its message".into(),
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An output for committed events.
pub trait Sink: Send + Sync {
    /// The name used in logs, metrics, dead letters and `replay --sink`.
    fn name(&self) -> &str;

    /// Delivers events in the order given; answers one result per event, same order.
    /// `lease` is the fencing token of the sink's lease this delivery runs under: it rises
    /// with every takeover by another process, so a target that is told it can refuse a
    /// former holder's late requests (the forward sink sends it as `X-Innohook-Lease`).
    fn deliver<'a>(
        &'a self,
        events: &'a [StoredEvent],
        lease: i64,
    ) -> BoxFuture<'a, Vec<Result<(), SinkError>>>;

    /// Whether the sink keeps each message's order rather than the global one: then an
    /// event that fails while others get through is set aside and retried on its own,
    /// its message's later events wait behind it, and every other message goes on. Such
    /// a sink sends a message's events one after another and answers
    /// [`SinkError::held_back`] for those after a failure. Otherwise (the file and log
    /// sinks) a failure holds everything up until it is delivered or given up.
    fn keeps_message_order(&self) -> bool {
        false
    }
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
    /// Where a sink the store has not seen starts: `now` (the default) with the next
    /// event, skipping those stored before; `beginning` with the first stored event.
    pub start: Start,
}

/// Where a new sink starts (see [`SinkCommon::start`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    #[default]
    Now,
    Beginning,
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
        "start",
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
            start: Start::Now,
        }
    }
}

/// What a sink type's config does: check itself, say where it delivers, build its sink.
/// Each sink type's file implements it for its config.
#[async_trait::async_trait]
pub(crate) trait SinkSettings: Send + Sync {
    /// Checks what can be checked without opening anything (for `check-config` too).
    fn check(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Where it delivers, as `check-config` shows it (` -> …`, or nothing), after
    /// checking what can be checked there without a connection.
    fn target(&self) -> anyhow::Result<String> {
        Ok(String::new())
    }

    /// Builds the sink before the server starts (connecting where it connects, and
    /// refusing with a sentence what `serve` cannot use). Returns the sink and its
    /// cursor: `store_cursor` unless the sink keeps a position of its own.
    async fn build(&self, with: &Building<'_>) -> anyhow::Result<(Box<dyn Sink>, i64)>;

    /// Whether `check-config` builds the sink to check it as `serve` would: a sink on a
    /// broker connects and checks what it publishes to, and writes nothing in doing so.
    fn probed(&self) -> bool {
        false
    }
}

/// What a sink is built with.
pub(crate) struct Building<'a> {
    pub name: &'a str,
    /// Where the store says the sink is.
    pub store_cursor: i64,
    /// The last event the store committed.
    pub store_head: i64,
    /// The runner's retries (the NATS sink bounds its own reconnects by them).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub retry: runner::RetryPolicy,
}

/// The sink types: each variant, its config (a type implementing [`SinkSettings`]) and
/// its `type` key, written once.
macro_rules! sink_types {
    ($($(#[doc = $doc:literal])* $(#[cfg($cfg:meta)])? $variant:ident($config:ty) = $name:literal,)*) => {
        /// The sink types and their own keys, chosen by `type`.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum SinkKind {
            $($(#[doc = $doc])* $(#[cfg($cfg)])? #[serde(rename = $name)] $variant($config),)*
        }

        impl SinkKind {
            /// The `type` key's value.
            pub(crate) fn type_name(&self) -> &'static str {
                match self {
                    $($(#[cfg($cfg)])? Self::$variant(_) => $name,)*
                }
            }

            fn settings(&self) -> &dyn SinkSettings {
                match self {
                    $($(#[cfg($cfg)])? Self::$variant(c) => c,)*
                }
            }
        }
    };
}

sink_types! {
    /// One structured log line per event.
    Log(LogSinkConfig) = "log",
    /// One JSON line per event, appended to a file.
    File(FileSinkConfig) = "file",
    /// The original request body POSTed to your own system.
    Forward(ForwardSinkConfig) = "forward",
    /// Each event published to a NATS JetStream stream.
    #[cfg(feature = "nats")]
    Nats(NatsSinkConfig) = "nats",
    /// Each event published to a RabbitMQ exchange, confirmed by the broker.
    #[cfg(feature = "rabbitmq")]
    RabbitMq(RabbitMqSinkConfig) = "rabbitmq",
    /// Each event an entry of a Redis stream, its id its position.
    #[cfg(feature = "redis")]
    Redis(RedisSinkConfig) = "redis",
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
        // A filter value that can never match is a mistake to say, not to ignore: the
        // documented values are case-sensitive. (A documented status counts as spelled.)
        let known_statuses = Status::ALL.map(|s| s.counted());
        for s in &self.common.statuses {
            if let Some(k) = known_statuses
                .iter()
                .find(|k| **k != s && k.eq_ignore_ascii_case(s))
            {
                anyhow::bail!(
                    "statuses: {s:?} never matches (statuses are case-sensitive); did you mean {k:?}?"
                );
            }
            if !known_statuses.contains(&s.as_str()) {
                tracing::warn!(
                    sink = self.name(),
                    status = s,
                    "A sink filters on a status InnoPaaS does not document; it matches only events that carry exactly it."
                );
            }
        }
        for t in &self.common.types {
            if let Some(k) = crate::event::TYPES
                .iter()
                .find(|k| *k != t && k.eq_ignore_ascii_case(t))
            {
                anyhow::bail!(
                    "types: {t:?} never matches (event types are case-sensitive); did you mean {k:?}?"
                );
            }
            if !crate::event::TYPES.contains(&t.as_str()) {
                tracing::warn!(
                    sink = self.name(),
                    event_type = t,
                    "A sink filters on an event type InnoPaaS does not document; it matches only events that carry exactly it."
                );
            }
        }
        // Only status reports have a status: with statuses, the types must include them.
        if !self.common.statuses.is_empty()
            && !self.common.types.is_empty()
            && !self
                .common
                .types
                .iter()
                .any(|t| t == crate::event::MESSAGE_STATUS_TYPE)
        {
            anyhow::bail!(
                "statuses and types never match together: only {} events have a status",
                crate::event::MESSAGE_STATUS_TYPE
            );
        }
        self.kind.settings().check()
    }

    /// What `check-config` says of the sink: its type, name, target and filters. A file
    /// sink's directory must take files.
    pub fn describe(&self) -> anyhow::Result<String> {
        let target = self.kind.settings().target()?;
        let c = &self.common;
        let mut filters = Vec::new();
        if !c.statuses.is_empty() {
            filters.push(format!("statuses {}", c.statuses.join(", ")));
        }
        if !c.types.is_empty() {
            filters.push(format!("types {}", c.types.join(", ")));
        }
        let filters = if filters.is_empty() {
            "every event".to_owned()
        } else {
            filters.join("; ")
        };
        Ok(format!(
            "{} {:?}{target} ({filters})",
            self.kind.type_name(),
            self.name()
        ))
    }

    /// What `check-config` checks beyond [`SinkConfig::describe`]: a sink on a broker
    /// connects and finds what it publishes to, as `serve` would.
    pub async fn probe(&self) -> anyhow::Result<()> {
        if self.kind.settings().probed() {
            self.build(0, 0).await?;
        }
        Ok(())
    }

    /// Builds the sink before the server starts (connecting where it connects). The
    /// store says the sink is at `store_cursor` and has committed up to `store_head`;
    /// returns the sink and its cursor.
    pub async fn build(
        &self,
        store_cursor: i64,
        store_head: i64,
    ) -> anyhow::Result<(Box<dyn Sink>, i64)> {
        let name = self.name();
        let building = Building {
            name,
            store_cursor,
            store_head,
            retry: self.retry_policy(),
        };
        let built = self.kind.settings().build(&building).await;
        built.map_err(|e| anyhow::anyhow!("sink {name}: {e:#}"))
    }
}

/// Delivers each message's events one after another with `send`, different messages at
/// once; after a failure worth retrying, that message's later events are held back
/// ([`SinkError::held_back`]). A permanent failure lets them go. Answers in order.
fn by_message<'a, F, Fut>(
    events: &'a [StoredEvent],
    send: F,
) -> BoxFuture<'a, Vec<Result<(), SinkError>>>
where
    F: Fn(&'a StoredEvent) -> Fut + Send + Sync + Copy + 'a,
    Fut: Future<Output = Result<(), SinkError>> + Send + 'a,
{
    Box::pin(async move {
        let mut chains: Vec<Vec<usize>> = Vec::new();
        let mut chain_of: std::collections::HashMap<&str, usize> = Default::default();
        for (i, e) in events.iter().enumerate() {
            match e.message_id.as_deref() {
                Some(m) => {
                    let c = *chain_of.entry(m).or_insert_with(|| {
                        chains.push(Vec::new());
                        chains.len() - 1
                    });
                    chains[c].push(i);
                }
                None => chains.push(vec![i]),
            }
        }
        let runs = chains.into_iter().map(|chain| async move {
            let mut results = Vec::with_capacity(chain.len());
            let mut failed = false;
            for i in chain {
                let result = if failed {
                    Err(SinkError::held_back())
                } else {
                    send(&events[i]).await
                };
                failed |= result.as_ref().is_err_and(|e| e.retryable);
                results.push((i, result));
            }
            results
        });
        let mut answers: Vec<Option<Result<(), SinkError>>> = vec![None; events.len()];
        for (i, result) in futures_util::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
        {
            answers[i] = Some(result);
        }
        // Every event is in exactly one chain, so each is answered; were one not, it is
        // retried rather than the runner's task ended by a panic.
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(SinkError::retryable("not answered"))))
            .collect()
    })
}

/// Replaces `${NAME}` with the environment variable NAME; the error names a missing one.
fn expand_env(value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let var = &rest[start + 2..start + len];
        out.push_str(&rest[..start]);
        out.push_str(&std::env::var(var).map_err(|_| var.to_owned())?);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A URL as logs, errors and `check-config` show it: its password as `***`.
#[cfg_attr(not(any(feature = "rabbitmq", feature = "redis")), allow(dead_code))]
fn without_password(url: &str) -> String {
    let mut shown = url::Url::parse(url).ok().filter(|u| u.password().is_some());
    if let Some(u) = shown.as_mut() {
        let _ = u.set_password(Some("***"));
    }
    shown.map_or_else(|| url.to_owned(), |u| u.to_string())
}

/// A value from the wire as a header can hold it: visible ASCII as it is, anything else
/// percent-encoded (a header must not carry control characters).
fn header_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (b.is_ascii_graphic() || b == b' ') && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
