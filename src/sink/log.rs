//! The `log` sink: one structured tracing event per accepted event.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{BoxFuture, Sink, SinkError};
use crate::event::{MESSAGE_STATUS_TYPE, id_text};
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

#[async_trait::async_trait]
impl super::SinkSettings for LogSinkConfig {
    async fn build(&self, with: &super::Building<'_>) -> anyhow::Result<(Box<dyn Sink>, i64)> {
        Ok((
            Box::new(LogSink::new(with.name.to_owned(), self)),
            with.store_cursor,
        ))
    }
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
        _lease: i64,
    ) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        Box::pin(async move {
            for e in events {
                let warnings = (!e.warnings.is_empty())
                    .then(|| serde_json::to_string(&e.warnings).unwrap_or_default());
                let warnings = warnings.as_deref();
                let status_of_message = (e.event_type == MESSAGE_STATUS_TYPE)
                    .then(|| {
                        e.message_id
                            .as_deref()
                            .zip(e.status.as_ref().map(|s| s.as_str()))
                    })
                    .flatten();
                match status_of_message {
                    Some((message_id, status)) => {
                        let f = LineFields::read(&e.body);
                        log_at!(
                            self.level,
                            sink = self.name,
                            seq = e.seq,
                            event_id = e.event_id,
                            message_id,
                            wamid = f.wamid,
                            status,
                            uid = f.uid,
                            error_code = f.error_code,
                            error_message = f.error_message,
                            warnings,
                            "Message status."
                        )
                    }
                    None => log_at!(
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

/// What a status line shows beyond the stored columns, read straight from the stored
/// body. It passed validation when it was accepted, so this only picks fields out,
/// without building the whole event again.
#[derive(Default)]
struct LineFields {
    wamid: Option<String>,
    uid: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
}

impl LineFields {
    fn read(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            body: Option<Body<'a>>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            wamid: Option<String>,
            #[serde(borrow)]
            uid: Option<&'a RawValue>,
            #[serde(borrow)]
            error_data: Option<ErrorData<'a>>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ErrorData<'a> {
            #[serde(borrow)]
            error_code: Option<&'a RawValue>,
            error_message: Option<String>,
        }
        let Some(b) = serde_json::from_slice::<Envelope>(body)
            .ok()
            .and_then(|e| e.body)
        else {
            return Self::default();
        };
        let (error_code, error_message) = match b.error_data {
            Some(d) => (d.error_code.and_then(id_text), d.error_message),
            None => (None, None),
        };
        Self {
            wamid: b.wamid,
            uid: b.uid.and_then(id_text).filter(|u| !u.is_empty()),
            error_code: error_code.filter(|c| !c.is_empty()),
            error_message,
        }
    }
}
