//! The `forward` sink: POSTs the original request body, byte for byte, to your system.
//!
//! 2xx is delivered. 408, 429, 5xx, timeouts and connection errors are retried; any other
//! answer (4xx, or a redirect, which is not followed) is permanent: a dead letter. The
//! `Idempotency-Key` is the envelope id, made a safe header value.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::{BoxFuture, Sink, SinkError};
use crate::store::StoredEvent;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSinkConfig {
    /// Where to POST each event (http or https).
    pub url: String,
    /// Extra headers; `${NAME}` in a value is replaced by the environment variable NAME.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds before a request counts as failed (and is retried).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_timeout() -> u64 {
    10
}
fn default_concurrency() -> usize {
    4
}

pub struct ForwardSink {
    name: String,
    client: reqwest::Client,
    url: reqwest::Url,
    limit: Arc<Semaphore>,
}

impl ForwardSinkConfig {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        self.url()?;
        self.headers()?;
        Ok(())
    }

    fn url(&self) -> anyhow::Result<reqwest::Url> {
        reqwest::Url::parse(&self.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| anyhow::anyhow!("url {:?} is not an http(s) URL", self.url))
    }

    /// Content-Type plus the configured headers, `${NAME}` expanded, marked sensitive.
    fn headers(&self) -> anyhow::Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &self.headers {
            let value = expand_env(v)
                .map_err(|var| anyhow::anyhow!("header {k} uses ${{{var}}}, which is not set"))?;
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| anyhow::anyhow!("{k:?} is not a valid header name"))?;
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| anyhow::anyhow!("the value of header {k} is not valid"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(headers)
    }
}

impl ForwardSink {
    pub fn new(name: String, cfg: &ForwardSinkConfig) -> anyhow::Result<Self> {
        let url = cfg.url()?;
        let client = reqwest::Client::builder()
            .default_headers(cfg.headers()?)
            .timeout(Duration::from_secs(cfg.timeout_secs.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            name,
            client,
            url,
            limit: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
        })
    }

    async fn post(&self, event: &StoredEvent) -> Result<(), SinkError> {
        let _permit = self.limit.acquire().await.expect("semaphore never closed");
        let res = self
            .client
            .post(self.url.clone())
            .header("Idempotency-Key", header_safe(&event.event_id).as_ref())
            // InnoPaaS reuses an envelope id across the statuses of one message; the seq
            // is unique per stored event and the same on every retry.
            .header("X-Innohook-Seq", event.seq)
            .body(event.body.clone())
            .send()
            .await
            .map_err(|e| SinkError::retryable(format!("POST {}: {}", self.url, error_chain(&e))))?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let what = format!("POST {} answered {status}", self.url);
        if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
            Err(SinkError::retryable(what))
        } else {
            let body = res.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            Err(SinkError::permanent(format!("{what}: {body}")))
        }
    }
}

impl Sink for ForwardSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(
        &'a self,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        // All at once, `concurrency` in flight at a time (the semaphore); answers in order.
        Box::pin(futures_util::future::join_all(
            events.iter().map(|e| self.post(e)),
        ))
    }
}

/// `text` as a header value: every byte outside printable ASCII, and `%` itself,
/// percent-encoded (`e\u{1}é` becomes `e%01%C3%A9`). An envelope id may hold any JSON
/// string; one with a control character or a letter outside ASCII is not a valid header
/// value, and its event could never be sent. Printable ASCII ids (UUIDs, numbers) go as
/// they are.
fn header_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_graphic() && b != b'%';
    if text.bytes().all(plain) {
        return text.into();
    }
    let mut safe = String::with_capacity(text.len() + 8);
    for b in text.bytes() {
        if plain(b) {
            safe.push(b as char);
        } else {
            safe.push_str(&format!("%{b:02X}"));
        }
    }
    safe.into()
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

/// An error with its causes ("connection refused" is usually a few levels down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
