//! The `forward` sink: POSTs the original request body, byte for byte, to your system.
//!
//! 2xx is delivered. 408, 429, 5xx, timeouts and connection errors are retried; any other
//! answer (4xx, or a redirect, which is not followed) is permanent: a dead letter.
//!
//! A message's events go one after another, in commit order; different messages go at
//! once, up to `concurrency`. An event that fails while others get through is retried on
//! its own and its message's later events wait behind it (see
//! [`Sink::keeps_message_order`]). Each request carries `Idempotency-Key` (unique per
//! stored event, the same on every retry), the envelope id, the store's seq, the fencing
//! token of the lease it was sent under (`X-Innohook-Lease`: a target that refuses a token
//! lower than one it has seen never takes a request from a replica that lost the sink),
//! and, with `signing_secret`, a Standard Webhooks signature.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::{BoxFuture, Sink, SinkError, expand_env, header_text};
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
    /// Requests in flight at once (a message's events still go one after another).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Signs every request as Standard Webhooks specifies (`webhook-id`,
    /// `webhook-timestamp`, `webhook-signature`): a `whsec_…` secret, best from the
    /// environment as `"${NAME}"`. Unset: no signature.
    #[serde(default)]
    pub signing_secret: Option<String>,
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
    url: url::Url,
    limit: Arc<Semaphore>,
    /// The HMAC key of `signing_secret`.
    signing_key: Option<Vec<u8>>,
}

#[async_trait::async_trait]
impl super::SinkSettings for ForwardSinkConfig {
    fn check(&self) -> anyhow::Result<()> {
        self.url()?;
        self.headers()?;
        self.signing_key()?;
        Ok(())
    }

    fn target(&self) -> anyhow::Result<String> {
        Ok(format!(" -> {}", self.url))
    }

    async fn build(&self, with: &super::Building<'_>) -> anyhow::Result<(Box<dyn Sink>, i64)> {
        let sink = ForwardSink::new(with.name.to_owned(), self)?;
        Ok((Box::new(sink), with.store_cursor))
    }
}

impl ForwardSinkConfig {
    /// The key in `signing_secret` (`whsec_` and base64, as Standard Webhooks has it).
    fn signing_key(&self) -> anyhow::Result<Option<Vec<u8>>> {
        use base64::Engine;
        let Some(secret) = &self.signing_secret else {
            return Ok(None);
        };
        let secret = expand_env(secret)
            .map_err(|var| anyhow::anyhow!("signing_secret uses ${{{var}}}, which is not set"))?;
        let encoded = secret.strip_prefix("whsec_").ok_or_else(|| {
            anyhow::anyhow!("signing_secret must start with whsec_ (followed by the key in base64)")
        })?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| {
                anyhow::anyhow!("signing_secret: the part after whsec_ is not base64: {e}")
            })?;
        anyhow::ensure!(
            key.len() >= 16,
            "signing_secret: the key is {} bytes; use at least 24 random bytes",
            key.len()
        );
        Ok(Some(key))
    }

    fn url(&self) -> anyhow::Result<url::Url> {
        url::Url::parse(&self.url)
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
            signing_key: cfg.signing_key()?,
        })
    }

    async fn post(&self, event: &StoredEvent, lease: i64) -> Result<(), SinkError> {
        let _permit = self.limit.acquire().await.expect("semaphore never closed");
        // InnoPaaS reuses an envelope id across the statuses of one message: the key
        // is the stored event's own, the envelope id travels in a header of its own.
        let key = event.delivery_key();
        let mut request = self
            .client
            .post(self.url.clone())
            .header("Idempotency-Key", &key)
            .header("X-Innohook-Event-Id", header_text(&event.event_id))
            .header("X-Innohook-Seq", event.seq)
            .header("X-Innohook-Lease", lease);
        if let Some(signing_key) = &self.signing_key {
            let timestamp = chrono::Utc::now().timestamp();
            request = request
                .header("webhook-id", &key)
                .header("webhook-timestamp", timestamp)
                .header(
                    "webhook-signature",
                    sign(signing_key, &key, timestamp, &event.body),
                );
        }
        let res =
            request.body(event.body.clone()).send().await.map_err(|e| {
                SinkError::retryable(format!("POST {}: {}", self.url, error_chain(&e)))
            })?;
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

    /// Each message's events one after another, the messages at once (`concurrency` in
    /// flight, the semaphore); after a failure, the message's later events are held back.
    fn deliver<'a>(
        &'a self,
        events: &'a [StoredEvent],
        lease: i64,
    ) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        super::by_message(events, move |e| self.post(e, lease))
    }

    fn keeps_message_order(&self) -> bool {
        true
    }
}

/// `webhook-signature` as Standard Webhooks defines it: `v1,` and the base64 of
/// HMAC-SHA256 over `{id}.{timestamp}.{body}`.
fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("v1,{signature}")
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
