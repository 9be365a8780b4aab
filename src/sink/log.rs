//! The `log` sink: one structured tracing event per accepted event.

use serde::{Deserialize, Serialize};

use super::{BoxFuture, Sink, SinkError};
use crate::event::{self, Event};
use crate::store::StoredEvent;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSinkConfig {
    /// Level of the lines: `info` (default), `warn` or `debug`.
    #[serde(default)]
    pub level: LogLevel,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
}

pub struct LogSink {
    name: String,
    level: LogLevel,
}

impl LogSink {
    pub fn new(name: String, cfg: &LogSinkConfig) -> Self {
        Self {
            name,
            level: cfg.level,
        }
    }
}

macro_rules! log_at {
    ($level:expr, $($field:tt)*) => {
        match $level {
            LogLevel::Debug => tracing::debug!(target: "innohook::events", $($field)*),
            LogLevel::Info => tracing::info!(target: "innohook::events", $($field)*),
            LogLevel::Warn => tracing::warn!(target: "innohook::events", $($field)*),
        }
    };
}

impl Sink for LogSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(
        &'a self,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        Box::pin(async move {
            for e in events {
                let warnings = (e.warnings != "[]").then_some(e.warnings.as_str());
                let parsed = event::parse(&e.body).ok();
                match parsed.as_ref().map(|a| a.envelope.event()) {
                    Some(Event::MessageStatus(s)) => log_at!(
                        self.level,
                        sink = self.name,
                        seq = e.seq,
                        event_id = e.event_id,
                        message_id = s.message_id(),
                        wamid = s.wamid(),
                        status = s.status().as_str(),
                        uid = s.uid(),
                        error_code = s.error().map(|x| x.code()),
                        error_message = s.error().and_then(|x| x.message()),
                        warnings,
                        "Message status."
                    ),
                    _ => log_at!(
                        self.level,
                        sink = self.name,
                        seq = e.seq,
                        event_id = e.event_id,
                        event_type = e.event_type,
                        warnings,
                        "Event."
                    ),
                }
            }
            events.iter().map(|_| Ok(())).collect()
        })
    }
}
