//! The `nats` sink: publishes each event to a NATS JetStream stream, the body as sent, on
//! a subject made from the event (`innopaas.{type}.{status}` by default).
//!
//! Each publish carries `Nats-Msg-Id`, the stored event's own key (the forward sink's
//! Idempotency-Key), so JetStream stores a republished event once within the stream's
//! duplicate window; an event counts as delivered only when JetStream acknowledges it (a
//! duplicate acknowledgement too). A message's events are published one after another,
//! different messages at once. The stream is checked at startup: it must exist and
//! capture the subjects.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use serde::{Deserialize, Serialize};

use super::name::{Fields, fill};
use super::{BoxFuture, Sink, SinkError, expand_env, header_text};
use crate::event::Status;
use crate::store::StoredEvent;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// The server, or several of a cluster: `"nats://nats:4222"` or a list. `tls://` (or
    /// `tls = true`) requires TLS.
    pub url: Urls,
    /// The JetStream stream to publish to; it must exist and capture the subjects.
    pub stream: String,
    /// The subject of each event. `{type}`, `{status}`, `{message_id}` and `{uid}` are
    /// replaced by the event's (a missing one by `none`; characters a subject cannot
    /// hold, `.`, `*`, `>` and whitespace, by `_`).
    #[serde(default = "default_subject")]
    pub subject: String,
    /// User and password (`"${NAME}"` reads the environment).
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// A token (`"${NAME}"` reads the environment).
    #[serde(default)]
    pub token: Option<String>,
    /// A `.creds` file (JWT and NKey).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Require TLS (rustls; the system's roots, or `ca_file`).
    #[serde(default)]
    pub tls: bool,
    /// A CA to trust instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds to wait for JetStream's acknowledgement before the publish is retried.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_secs: u64,
    /// Publishes awaiting their acknowledgement at once.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
}

/// One URL or several.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Urls {
    One(String),
    Many(Vec<String>),
}

impl Urls {
    fn list(&self) -> Vec<String> {
        match self {
            Self::One(u) => vec![u.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

fn default_subject() -> String {
    "innopaas.{type}.{status}".into()
}
fn default_ack_timeout() -> u64 {
    10
}
fn default_in_flight() -> usize {
    256
}

#[async_trait::async_trait]
impl super::SinkSettings for NatsSinkConfig {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.url.list().is_empty(), "url must name a server");
        for url in self.url.list() {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| anyhow::anyhow!("url {url:?} is not a NATS server address: {e}"))?;
        }
        anyhow::ensure!(
            !self.stream.is_empty() && !self.stream.contains(['.', '*', '>', ' ']),
            "stream must be a JetStream stream name (no '.', '*', '>' or spaces)"
        );
        anyhow::ensure!(
            subject_tokens_ok(&fill(&self.subject, &Fields::default())),
            "subject {:?} must be tokens separated by single dots",
            self.subject
        );
        for (key, value) in [
            ("user", &self.user),
            ("password", &self.password),
            ("token", &self.token),
        ] {
            if let Some(v) = value {
                expand_env(v)
                    .map_err(|var| anyhow::anyhow!("{key} uses ${{{var}}}, which is not set"))?;
            }
        }
        Ok(())
    }

    fn target(&self) -> anyhow::Result<String> {
        Ok(format!(" -> stream {}", self.stream))
    }

    fn probed(&self) -> bool {
        true
    }

    async fn build(&self, with: &super::Building<'_>) -> anyhow::Result<(Box<dyn Sink>, i64)> {
        let sink = NatsSink::connect(with.name.to_owned(), self, with.retry.max).await?;
        Ok((Box::new(sink), with.store_cursor))
    }
}

fn subject_tokens_ok(subject: &str) -> bool {
    !subject.is_empty()
        && subject
            .split('.')
            .all(|t| !t.is_empty() && !t.contains(char::is_whitespace))
}

/// Whether JetStream subject `pattern` (with `*` and `>`) captures `subject`.
fn captures(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

pub struct NatsSink {
    name: String,
    js: async_nats::jetstream::Context,
    subject: String,
}

impl NatsSink {
    /// Connects and checks the stream; `backoff_max` (the sink's longest retry delay)
    /// decides whether the stream's duplicate window is worth a warning.
    pub async fn connect(
        name: String,
        cfg: &NatsSinkConfig,
        backoff_max: Duration,
    ) -> anyhow::Result<Self> {
        super::SinkSettings::check(cfg)?;
        let addrs: Vec<async_nats::ServerAddr> = cfg
            .url
            .list()
            .iter()
            .map(|u| u.parse())
            .collect::<Result<_, _>>()?;
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("innohook {name}"))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None);
        let env = |v: &Option<String>| {
            v.as_deref()
                .map(expand_env)
                .transpose()
                .map_err(|var| anyhow::anyhow!("${{{var}}} is not set"))
        };
        if let (Some(user), Some(password)) = (env(&cfg.user)?, env(&cfg.password)?) {
            options = options.user_and_password(user, password);
        }
        if let Some(token) = env(&cfg.token)? {
            options = options.token(token);
        }
        if let Some(file) = &cfg.credentials_file {
            options = options.credentials_file(file).await.map_err(|e| {
                anyhow::anyhow!("cannot read credentials_file {}: {e}", file.display())
            })?;
        }
        if cfg.tls {
            options = options.require_tls(true);
        }
        if let Some(ca) = &cfg.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        let where_ = cfg.url.list().join(", ");
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to NATS at {where_}: {e}"))?;
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(cfg.ack_timeout_secs.max(1)))
            .max_ack_inflight(cfg.max_in_flight.max(1))
            .backpressure_on_inflight(true)
            .build(client);
        let mut stream = js.get_stream(&cfg.stream).await.map_err(|e| {
            anyhow::anyhow!(
                "JetStream stream {:?} at {where_}: {e}; create it first, e.g. nats stream add {} --subjects '{}' --dupe-window 1h",
                cfg.stream,
                cfg.stream,
                capture_all(&cfg.subject)
            )
        })?;
        let info = stream.info().await?;
        let samples = Status::ALL
            .map(|status| {
                fill(
                    &cfg.subject,
                    &Fields {
                        event_type: Some(crate::event::MESSAGE_STATUS_TYPE),
                        status: Some(status.as_str()),
                        message_id: Some("1"),
                        uid: Some("1".into()),
                    },
                )
            })
            .into_iter()
            .chain([fill(
                &cfg.subject,
                &Fields {
                    event_type: Some("other"),
                    ..Fields::default()
                },
            )]);
        for subject in samples {
            anyhow::ensure!(
                info.config.subjects.iter().any(|p| captures(p, &subject)),
                "JetStream stream {:?} does not capture subject {subject:?} (its subjects: {:?}); add {:?} to them, or change the sink's subject",
                cfg.stream,
                info.config.subjects,
                capture_all(&cfg.subject)
            );
        }
        // After a restart or a lost acknowledgement, an event is published again; beyond
        // the duplicate window JetStream would store it twice.
        let needed = backoff_max + Duration::from_secs(300);
        if info.config.duplicate_window < needed {
            tracing::warn!(
                sink = name,
                stream = cfg.stream,
                window_secs = info.config.duplicate_window.as_secs(),
                "The stream's duplicate window is shorter than a restart plus the retry backoff may take: an event published again after it is stored twice. Set it to an hour or more (nats stream edit --dupe-window 1h)."
            );
        }
        Ok(Self {
            name,
            js,
            subject: cfg.subject.clone(),
        })
    }

    async fn publish(&self, event: &StoredEvent) -> Result<(), SinkError> {
        let subject = fill(&self.subject, &Fields::of(event));
        let publish = PublishMessage::build()
            .payload(event.body.clone())
            .message_id(event.delivery_key())
            .header("X-Innohook-Seq", event.seq.to_string().as_str())
            .header("X-Innohook-Event-Id", header_text(&event.event_id).as_str());
        let ack = self
            .js
            .send_publish(subject, publish)
            .await
            .map_err(classify)?;
        ack.await.map(|_| ()).map_err(classify)
    }
}

/// A stream subject that captures whatever the template makes.
fn capture_all(template: &str) -> String {
    let fixed: Vec<&str> = template
        .split('.')
        .take_while(|t| !t.contains('{'))
        .collect();
    if fixed.is_empty() {
        ">".into()
    } else {
        format!("{}.>", fixed.join("."))
    }
}

fn classify(e: async_nats::jetstream::context::PublishError) -> SinkError {
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => SinkError::permanent(format!("NATS: {e}")),
        _ => SinkError::retryable(format!("NATS: {e}")),
    }
}

impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// Each message's events one after another, the messages at once (up to
    /// `max_in_flight` unacknowledged); after a failure, the message's later events are
    /// held back.
    fn deliver<'a>(
        &'a self,
        events: &'a [StoredEvent],
        _lease: i64,
    ) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        super::by_message(events, move |e| self.publish(e))
    }

    fn keeps_message_order(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_captured_as_jetstream_does() {
        assert!(captures("ev.>", "ev.a.b"));
        assert!(captures("ev.*.b", "ev.a.b"));
        assert!(!captures("ev.*", "ev.a.b"));
        assert!(!captures("ev.>", "ev"));
        assert!(captures("ev.a", "ev.a"));
        assert_eq!(capture_all("innopaas.{type}.{status}"), "innopaas.>");
        assert_eq!(capture_all("{type}"), ">");
    }
}
