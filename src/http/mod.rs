//! The HTTP surface: `POST {path}` for pushes, `/healthz`, `/readyz`, `/metrics`, and with
//! an `[api] token` the query API (`/api/`) and the dashboard (`/ui/`).
//!
//! [`router`] builds the whole axum app from its state, so tests can drive it with
//! `oneshot` or serve it on a real listener; [`serve`] serves it with the limits a
//! public port needs.

mod api;

pub use api::{OTHER_PATHS, PATHS as API_PATHS, batch_json, message_json};
mod csv;
pub use csv::{Sheet, batch_csv_bytes};
mod auth;
mod config;
mod error;
mod handlers;
mod middleware;
mod sends;
pub mod serve;
mod ui;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::routing::{any, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;

pub use auth::Auth;
pub use config::{ApiConfig, AuthConfig, HttpSettings, ServerConfig, UiConfig};
pub use error::ApiError;
pub use handlers::Readiness;
pub use serve::Connections;

use crate::store::Store;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: Auth,
    /// Set when shutdown begins: new pushes get 503 so the sender retries elsewhere/later.
    pub shutting_down: Arc<AtomicBool>,
    pub webhook_path: Arc<str>,
    pub max_body_bytes: usize,
    pub metrics: PrometheusHandle,
    /// Free space on the store's filesystem is below `store.min_free_percent`.
    pub low_disk: Arc<AtomicBool>,
    /// Whether connections are taken (for `/readyz`).
    pub connections: Arc<Connections>,
    /// The last readiness probe, shared by a burst of `/readyz` callers.
    pub readiness: Arc<Readiness>,
}

/// Whether `path` belongs to innohook itself and cannot be the webhook path: the probes,
/// the metrics, and everything under `/api/` and `/ui` (even without a token, so that
/// setting one later cannot clash).
pub fn is_reserved_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/ui")
        || path.starts_with("/api/")
        || path.starts_with("/ui/")
}

/// The whole app: the webhook, the probes and metrics, and with an `[api] token` the query
/// API and the dashboard.
pub fn router(state: AppState, settings: HttpSettings) -> Router {
    let HttpSettings {
        server: cfg,
        api,
        sinks,
        store_description,
        campaign,
    } = settings;
    let campaign = Arc::new(campaign);
    let api = match api.token.as_deref() {
        Some(token) => api::router(
            token,
            state.store.clone(),
            campaign.clone(),
            Duration::from_secs(cfg.request_timeout_secs),
            &cfg.path,
        )
        .merge(ui::router(
            token,
            state.store.clone(),
            sinks,
            store_description,
            campaign,
        )),
        // Absent, and saying what turns them on.
        None => [
            "/api",
            "/api/",
            "/api/{*rest}",
            "/ui",
            "/ui/",
            "/ui/{*rest}",
        ]
        .into_iter()
        .fold(Router::new(), |r, path| {
            r.route(path, any(|| async { ApiError::ApiOff }))
        }),
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
        // route again, and each box was cloned per request (about 7% of the core under
        // load). Outermost first: mark secrets, give every request an id and a span and time
        // it (one layer, see `middleware`), then time out and limit bodies.
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                ]))
                .layer(middleware::RequestLayer)
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_secs(cfg.request_timeout_secs),
                ))
                .layer(DefaultBodyLimit::max(cfg.max_body_bytes)),
        )
        // Shared, not cloned, per request.
        .with_state(Arc::new(state))
}
