//! Request handlers. The webhook answers 200 only after the event is committed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::event;
use crate::metrics as m;
use crate::store::{Outcome, Store};

/// The webhook's 200 answer: `{"status":"accepted"|"duplicate","eventId":ID}`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    status: &'static str,
    event_id: String,
}

/// `POST {path}`: authenticate, parse, commit, answer.
pub async fn webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer>, ApiError> {
    if state.shutting_down.load(Ordering::Relaxed) {
        return Err(ApiError::ShuttingDown);
    }
    state.auth.check(&headers).inspect_err(|_| {
        metrics::counter!(m::UNAUTHORIZED).increment(1);
    })?;
    if !is_json(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    if is_encoded(&headers) {
        return Err(ApiError::UnsupportedEncoding);
    }
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) if e.status() == 413 => ApiError::PayloadTooLarge {
            limit: state.max_body_bytes,
            hint: "server.max_body_bytes",
        },
        _ => ApiError::UnreadableBody,
    })?;
    match event::parse(&body) {
        Ok(accepted) => {
            let env = &accepted.envelope;
            let event_id = env.id().to_owned();
            let outcome = state.store.accept(&accepted, body).await.map_err(|e| {
                tracing::error!(error = %e, event_id, "Could not store an event; answering 503.");
                metrics::counter!(m::STORE_UNAVAILABLE).increment(1);
                ApiError::StoreUnavailable
            })?;
            let status = match outcome {
                Outcome::Accepted { .. } => {
                    m::event_received(env.event_type(), env.message_status().map(|s| s.status()))
                        .increment(1);
                    if let Some(news) = env.event().template_news() {
                        announce(&news);
                    }
                    "accepted"
                }
                Outcome::Duplicate => {
                    m::duplicate(env.event_type()).increment(1);
                    "duplicate"
                }
            };
            Ok(Json(Answer { status, event_id }))
        }
        Err(rejection) => {
            state
                .store
                .dead_letter_rejected(&rejection, body)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "Could not keep a rejected payload; answering 503.");
                    metrics::counter!(m::STORE_UNAVAILABLE).increment(1);
                    ApiError::StoreUnavailable
                })?;
            metrics::counter!(m::REJECTIONS, "code" => rejection.code.as_str()).increment(1);
            tracing::info!(
                code = rejection.code.as_str(),
                field = rejection.field,
                "Rejected a payload; kept as a dead letter."
            );
            Err(ApiError::Rejected(rejection))
        }
    }
}

/// `application/json`, with or without parameters such as `; charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// A body sent compressed (gzip and the like): not decoded, so not kept either, as it
/// would only be an unreadable dead letter.
fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: connections are taken and the store takes a write right now.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    if state.shutting_down.load(Ordering::Relaxed) {
        return Err(ApiError::ShuttingDown);
    }
    if let Some(exhausted) = state.connections.exhausted() {
        return Err(ApiError::Exhausted(exhausted));
    }
    if !state.readiness.probe(state.store.as_ref()).await {
        return Err(ApiError::StoreUnavailable);
    }
    // Still ready while commits succeed, but say so: the disk is nearly full.
    if state.low_disk.load(Ordering::Relaxed) {
        return Ok(Json(json!({
            "status": "ready",
            "warnings": ["Free space on the store's filesystem is below store.min_free_percent; shorten the retention or add space."]
        })));
    }
    Ok(Json(json!({"status": "ready"})))
}

/// The last readiness probe: it commits to the store, and needs no authentication, so a
/// burst of callers shares one probe instead of making as many writes.
#[derive(Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl Readiness {
    /// How long a probe's result answers for.
    const FRESH: Duration = Duration::from_secs(1);

    /// Whether the store took a write, at most [`Readiness::FRESH`] ago: one caller
    /// probes, the callers meanwhile wait for its result.
    pub async fn probe(&self, store: &dyn Store) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, ready)) = *last
            && at.elapsed() < Self::FRESH
        {
            return ready;
        }
        let ready = match store.probe().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "Readiness probe: the store cannot commit.");
                false
            }
        };
        *last = Some((Instant::now(), ready));
        ready
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub async fn not_found(State(state): State<Arc<AppState>>) -> ApiError {
    ApiError::NotFound {
        webhook_path: state.webhook_path.to_string(),
    }
}

/// Counts a template's news, and says in the log what the people running campaigns must
/// not miss (the dashboard's overview shows it too, until a later status supersedes it).
fn announce(news: &crate::event::TemplateNews<'_>) {
    metrics::counter!(m::TEMPLATE_EVENTS, "kind" => news.kind, "status" => news.label).increment(1);
    if news.alarming {
        tracing::warn!(
            template_id = news.template_id,
            template_name = news.name.unwrap_or("-"),
            language = news.language.unwrap_or("-"),
            reason = news.reason.unwrap_or("none"),
            "Template {} is now {}{}: campaigns sending it need attention (the dashboard's Templates page has its history).",
            news.name.unwrap_or(news.template_id),
            if news.kind == "quality" {
                "of quality "
            } else {
                ""
            },
            news.value,
        );
    }
}
