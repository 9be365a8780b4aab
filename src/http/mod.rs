//! The HTTP surface: `POST {path}` for pushes, `/healthz`, `/readyz`.
//!
//! [`router`] builds the whole axum app from its state, so tests can drive it with
//! `oneshot` or serve it on a real listener.

mod api;
mod auth;
mod error;
mod handlers;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Response;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, OnResponse, TraceLayer};

pub use auth::Auth;
pub use error::ApiError;

use crate::config::ServerConfig;
use crate::store::Store;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub auth: Auth,
    /// Set when shutdown begins: new pushes get 503 so the sender retries elsewhere/later.
    pub shutting_down: Arc<AtomicBool>,
    pub webhook_path: Arc<str>,
    pub max_body_bytes: usize,
    pub metrics: PrometheusHandle,
}

/// Paths that belong to innohook itself and cannot be the webhook path (the `/api` ones
/// even without a token, so that setting one later cannot clash).
pub const RESERVED_PATHS: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/messages",
    "/api/events",
];

pub fn router(state: AppState, cfg: &ServerConfig, api_token: Option<&str>) -> Router {
    let api = match api_token {
        Some(token) => api::router(token, crate::store::ReaderPool::new(state.store.dir())),
        None => Router::new(),
    };
    Router::new()
        .route(
            &cfg.path,
            post(handlers::webhook)
                .fallback(|| async { ApiError::MethodNotAllowed { allow: "POST" } }),
        )
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .merge(api)
        .fallback(handlers::not_found)
        // One `layer` call for the whole stack: every `Router::layer` call boxes each
        // route again, and each box was cloned per request (about 7% of the core
        // under load). Outermost first: mark secrets, give every request an id, log it
        // in a span carrying that id, send the id back, then time out and limit bodies.
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION]))
                .layer(SetRequestIdLayer::x_request_id(FastRequestId))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let id = req
                                .extensions()
                                .get::<RequestId>()
                                .and_then(|id| id.header_value().to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                        })
                        .on_response(RecordLatency),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_secs(cfg.request_timeout_secs),
                ))
                .layer(DefaultBodyLimit::max(cfg.max_body_bytes)),
        )
        // Shared, not cloned, per request.
        .with_state(Arc::new(state))
}

/// Request ids shaped like UUID v4, from a fast non-cryptographic generator: an id only
/// has to tell requests apart in the logs, and `MakeRequestUuid` made a getrandom
/// system call per request. An `x-request-id` the client sent is kept as it is.
#[derive(Clone, Copy)]
struct FastRequestId;

impl MakeRequestId for FastRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = fastrand::u128(..) & !(0xf000 << 64) & !(0xc000 << 48)
            | (0x4000 << 64)
            | (0x8000 << 48);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = [b'-'; 36];
        let digits = (0..36).filter(|i| !matches!(i, 8 | 13 | 18 | 23));
        for (k, i) in digits.enumerate() {
            id[i] = HEX[(n >> (124 - 4 * k) & 0xf) as usize];
        }
        axum::http::HeaderValue::from_bytes(&id)
            .ok()
            .map(RequestId::new)
    }
}

/// Ends a request's trace: the usual debug line, and its latency in the
/// `innohook_request_duration_seconds` histogram (timed by the trace layer itself, so
/// latency costs no middleware of its own).
#[derive(Clone, Copy)]
struct RecordLatency;

impl<B> OnResponse<B> for RecordLatency {
    fn on_response(self, res: &Response<B>, latency: Duration, span: &tracing::Span) {
        DefaultOnResponse::new().on_response(res, latency, span);
        let status = res.status();
        // The common answers get a static label; no allocation on the hot path.
        let label: std::borrow::Cow<'static, str> = match status.as_u16() {
            200 => "200".into(),
            400 => "400".into(),
            401 => "401".into(),
            503 => "503".into(),
            _ => status.as_str().to_owned().into(),
        };
        metrics::histogram!(crate::metrics::REQUEST_DURATION, "status" => label)
            .record(latency.as_secs_f64());
    }
}
