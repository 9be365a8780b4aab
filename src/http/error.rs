//! The one error type of the HTTP layer. Every non-200 answer is JSON
//! `{"error": CODE, "message": SENTENCE, ["field": PATH]}`; internals never reach the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::serve::Exhausted;
use crate::event::Rejection;

/// Seconds a sender is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

#[derive(Debug)]
pub enum ApiError {
    /// `UserName` / `Authorization` missing or wrong.
    Unauthorized,
    /// The payload cannot be interpreted (it has been kept as a dead letter).
    Rejected(Rejection),
    /// The body could not be read (client went away, broken chunking).
    UnreadableBody,
    /// An HTTP/1.1 request without a `Host` header (RFC 9112, section 3.2).
    MissingHost,
    PayloadTooLarge {
        limit: usize,
        /// What sets the limit, or what to do instead.
        hint: &'static str,
    },
    UnsupportedMediaType,
    /// A `Content-Encoding` other than identity.
    UnsupportedEncoding,
    MethodNotAllowed {
        allow: &'static str,
    },
    NotFound {
        webhook_path: String,
    },
    /// The store cannot commit right now.
    StoreUnavailable,
    /// `/api` without the right bearer token.
    ApiUnauthorized,
    /// `/api` or `/ui` on a server without an `[api] token`: they do not exist.
    ApiOff,
    /// `/api`: nothing of that id has been received.
    Missing(String),
    /// `/api`: a query parameter that cannot be used.
    BadQuery(String),
    /// A read failed; the details are in the log.
    Internal,
    /// `/ui`: a state-changing request sent by a page of another site.
    CrossSite,
    /// `/ui`: a form without this session's synchronizer token.
    BadCsrfToken,
    /// No more connections are taken right now (and why).
    Exhausted(super::serve::Exhausted),
    ShuttingDown,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, field) = match self {
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "The UserName and Authorization headers do not match this server's [auth] settings.".to_owned(),
                None,
            ),
            Self::Rejected(r) => (StatusCode::BAD_REQUEST, r.code.as_str(), r.message, r.field),
            Self::ApiUnauthorized => {
                let mut res = error_response(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Send Authorization: Bearer <the [api] token>.".to_owned(),
                    None,
                );
                res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return res;
            }
            Self::Missing(message) => (StatusCode::NOT_FOUND, "not_found", message, None),
            Self::BadQuery(message) => (StatusCode::BAD_REQUEST, "invalid_query", message, None),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong reading the store; it is in the server log.".to_owned(),
                None,
            ),
            Self::CrossSite => (
                StatusCode::FORBIDDEN,
                "cross_site_request",
                "This request came from a page of another site; use the dashboard's own pages.".to_owned(),
                None,
            ),
            Self::BadCsrfToken => (
                StatusCode::FORBIDDEN,
                "bad_csrf_token",
                "This form is not from your current session; reload the page and try again.".to_owned(),
                None,
            ),
            Self::MissingHost => (
                StatusCode::BAD_REQUEST,
                "missing_host",
                "An HTTP/1.1 request must carry a Host header (RFC 9112, section 3.2).".to_owned(),
                None,
            ),
            Self::UnreadableBody => (
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                "The request body could not be read completely; send it again.".to_owned(),
                None,
            ),
            Self::PayloadTooLarge { limit, hint } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("The request body is larger than {limit} bytes ({hint})."),
                None,
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the event as JSON with the header Content-Type: application/json.".to_owned(),
                None,
            ),
            Self::UnsupportedEncoding => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                "Compressed bodies are not accepted: send the event uncompressed, without a Content-Encoding header. Nothing was stored.".to_owned(),
                None,
            ),
            Self::MethodNotAllowed { allow } => {
                let mut res = error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("This path only takes {allow}."),
                    None,
                );
                res.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
                return res;
            }
            Self::ApiOff => (
                StatusCode::NOT_FOUND,
                "not_found",
                "The query API and the dashboard are off on this server: set [api] token (or INNOHOOK_API__TOKEN) to turn them on.".to_owned(),
                None,
            ),
            Self::NotFound { webhook_path } => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("Nothing here; webhooks are received at POST {webhook_path}."),
                None,
            ),
            Self::StoreUnavailable | Self::ShuttingDown | Self::Exhausted(_) => {
                let message = match self {
                    Self::ShuttingDown => "The server is shutting down; nothing was stored. Retry later.",
                    Self::Exhausted(Exhausted::Connections) => "The server has server.max_connections connections open and takes no more until some close. Retry later.",
                    Self::Exhausted(Exhausted::Files) => "The server is out of file descriptors (its open-file limit) and takes no more connections until some close. Retry later.",
                    _ => "The event could not be stored safely; nothing was stored. Retry later.",
                };
                let mut res = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    message.to_owned(),
                    None,
                );
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                return res;
            }
        };
        error_response(status, code, message, field)
    }
}

fn error_response(
    status: StatusCode,
    code: &str,
    message: String,
    field: Option<String>,
) -> Response {
    let body = match field {
        Some(field) => json!({"error": code, "message": message, "field": field}),
        None => json!({"error": code, "message": message}),
    };
    (status, Json(body)).into_response()
}
