//! `POST /api/sends`: the customer's sending system tells innohook what it sent (see
//! [`crate::campaign::sends`]). Idempotent on the message id: a list sent again, whole
//! or in part, stores only what is new.

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiError;
use super::error::RETRY_AFTER_SECS;
use crate::campaign::sends::{self, Format, Imported};
use crate::store::Store;

/// Largest list taken in one request (about 150,000 rows of CSV); a larger file goes in
/// several requests, or through `innohook sends import`.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Reads the list whole, then stores it: 200 with what was new, 400 naming every bad row
/// (nothing stored), 503 saying how much was stored before the store failed.
pub async fn import(store: &dyn Store, headers: &HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = Format::detect(content_type, &body);
    // A list of 100,000 rows takes a CPU a good part of a second to read: not on a thread
    // that answers webhooks meanwhile, and on one that yields to them (nice 10) where the
    // CPUs are busy.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("send-list".into())
        .spawn(move || {
            // SAFETY: setpriority on this thread (tid 0 is the caller), no memory involved.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            let _ = tx.send(sends::parse(&body, format));
        });
    let parsed = match spawned {
        Ok(_) => rx.await,
        Err(e) => {
            tracing::error!(error = %e, "Could not start a thread to read a send list.");
            return ApiError::Internal.into_response();
        }
    };
    let Ok(parsed) = parsed else {
        return ApiError::Internal.into_response();
    };
    let list = match parsed {
        Ok(list) => list,
        Err(refusal) => {
            let body = json!({
                "error": "invalid_send_list",
                "message": refusal.message,
                "field": refusal.field(),
                "badRows": refusal.bad_rows,
                "problems": refusal.problems,
            });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let mut done = Imported::default();
    match store.import_sends(&list, &mut done).await {
        Ok(()) => {
            tracing::info!(rows = done.rows, new = done.new, "Send list imported.");
            (StatusCode::OK, Json(done)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, stored = done.rows, of = list.len(), "Send list import failed.");
            let body = json!({
                "error": "unavailable",
                "message": format!(
                    "The store failed after {} of the list's {} rows were stored; send the whole list again: what is stored already is left as it is.",
                    done.rows,
                    list.len()
                ),
                "stored": done,
            });
            let mut res = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
            res
        }
    }
}
