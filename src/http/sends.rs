//! `POST /api/sends`: the customer's sending system tells innohook what it sent (see
//! [`crate::campaign::sends`]). Idempotent on the message id: a list sent again, whole
//! or in part, stores only what is new.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Semaphore;

use super::ApiError;
use super::error::RETRY_AFTER_SECS;
use crate::campaign::sends::{self, Format, Imported};
use crate::store::Store;

/// Largest list taken in one request (about 150,000 rows of CSV); a larger file goes in
/// several requests, or through `innohook sends import`.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// One list at a time: a list read takes about ten times its size in memory, and two
/// lists naming the same ids in other orders would only wait for each other.
#[derive(Clone)]
pub struct Importer {
    store: Arc<dyn Store>,
    one_at_a_time: Arc<Semaphore>,
    /// How long a request may take to read and store its list before it is answered 202
    /// (the import goes on): under the request timeout, which would answer 408.
    wait: Duration,
}

impl Importer {
    pub fn new(store: Arc<dyn Store>, request_timeout: Duration) -> Self {
        Self {
            store,
            one_at_a_time: Arc::new(Semaphore::new(1)),
            wait: request_timeout
                .saturating_sub(Duration::from_secs(1))
                .max(Duration::from_millis(500)),
        }
    }

    /// Reads the list whole, then stores it: 200 with what was new, 400 naming every bad
    /// row (nothing stored), 202 when it takes longer than a request may (it goes on), 429
    /// while another list is imported, 503 saying how much was stored before the store
    /// failed.
    pub async fn import(&self, headers: &HeaderMap, body: Bytes) -> Response {
        let deadline = tokio::time::Instant::now() + self.wait;
        let Ok(permit) = self.one_at_a_time.clone().try_acquire_owned() else {
            return with_retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                json!({
                    "error": "import_running",
                    "message": "Another send list is being imported; send this one again in a few seconds.",
                }),
            );
        };
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let format = Format::detect(content_type, &body);
        let read = tokio::time::timeout_at(deadline, read(body, format)).await;
        let Ok(read) = read else {
            return with_retry_after(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "error": "unavailable",
                    "message": "The list took longer to read than a request may take; nothing of it was stored. Send it in smaller parts, or use innohook sends import.",
                }),
            );
        };
        let list = match read {
            Ok(Ok(list)) => list,
            Ok(Err(refusal)) => {
                let mut body = json!({
                    "error": "invalid_send_list",
                    "message": refusal.message,
                    "badRows": refusal.bad_rows,
                    "problems": refusal.problems,
                });
                // Like every error's: there when a field is to blame, else left out.
                if let Some(field) = refusal.field() {
                    body["field"] = field.into();
                }
                return (StatusCode::BAD_REQUEST, Json(body)).into_response();
            }
            Err(e) => return e.into_response(),
        };
        let rows = list.len();
        let progress = Arc::new(std::sync::Mutex::new(Imported::default()));
        let store = self.store.clone();
        let shared = progress.clone();
        // Stored in a task of its own, so that an answer given early (202), or a client
        // gone, does not cut the import short.
        let task = tokio::spawn(async move {
            let _permit = permit;
            let mut done = Imported::default();
            for part in list.chunks(crate::store::campaign::CHUNK) {
                store.import_sends(part, &mut done).await?;
                *shared.lock().expect("not poisoned") = done;
            }
            tracing::info!(rows = done.rows, new = done.new, "Send list imported.");
            Ok::<_, crate::store::StoreError>(done)
        });
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Ok(done))) => (StatusCode::OK, Json(done)).into_response(),
            Ok(Ok(Err(e))) => {
                let done = *progress.lock().expect("not poisoned");
                tracing::error!(error = %e, stored = done.rows, of = rows, "Send list import failed.");
                with_retry_after(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({
                        "error": "unavailable",
                        "message": format!(
                            "The store failed after {} of the list's {rows} rows were stored; send the whole list again: what is stored already is left as it is.",
                            done.rows
                        ),
                        "stored": done,
                    }),
                )
            }
            Ok(Err(_)) => ApiError::Internal.into_response(),
            Err(_) => {
                let done = *progress.lock().expect("not poisoned");
                let body = json!({
                    "rows": rows,
                    "stored": done,
                    "message": format!(
                        "{} of the list's {rows} rows are stored so far, and the rest is being stored. Send the list again later to see it whole: what is stored is counted as known.",
                        done.rows
                    ),
                });
                (StatusCode::ACCEPTED, Json(body)).into_response()
            }
        }
    }
}

/// Reads a list on a thread of its own: 100,000 rows take a CPU a good part of a second,
/// which must not be a thread that answers webhooks meanwhile, and it yields to them
/// (nice 10) where the CPUs are busy.
async fn read(
    body: Bytes,
    format: Format,
) -> Result<Result<Vec<sends::Sent>, sends::Refusal>, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("send-list".into())
        .spawn(move || {
            // SAFETY: setpriority on this thread (who 0 is the caller), no memory involved.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            let _ = tx.send(sends::parse(&body, format));
        })
        .map_err(|e| {
            tracing::error!(error = %e, "Could not start a thread to read a send list.");
            ApiError::Internal
        })?;
    rx.await.map_err(|_| ApiError::Internal)
}

fn with_retry_after(status: StatusCode, body: serde_json::Value) -> Response {
    let mut res = (status, Json(body)).into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
    res
}
