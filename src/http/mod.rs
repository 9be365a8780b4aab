//! The HTTP surface: `POST {path}` for pushes, `/healthz`, `/readyz`.
//!
//! [`router`] builds the whole axum app from its state, so tests can drive it with
//! `oneshot` or serve it on a real listener.

mod auth;
mod error;
mod handlers;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use auth::Auth;
pub use error::{ApiError, RETRY_AFTER_SECS};

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
}

/// Paths that belong to innohook itself and cannot be the webhook path.
pub const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

pub fn router(state: AppState, cfg: &ServerConfig) -> Router {
    Router::new()
        .route(
            &cfg.path,
            post(handlers::webhook)
                .fallback(|| async { ApiError::MethodNotAllowed { allow: "POST" } }),
        )
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(cfg.request_timeout_secs),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
