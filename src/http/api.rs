//! The query API under `/api`: what happened to a message, how a batch did, the events.
//! It exposes phone numbers, so it exists only when `[api] token` is set, and every
//! request must carry `Authorization: Bearer <token>`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::store::{ReaderPool, StoredEvent};

/// Most events in one page of `/api/events`.
pub const MAX_PAGE: usize = 1000;

#[derive(Clone)]
struct ApiState {
    token: Arc<[u8]>,
    readers: ReaderPool,
}

/// The `/api` routes, guarded by the bearer token.
pub fn router<S: Clone + Send + Sync + 'static>(token: &str, readers: ReaderPool) -> Router<S> {
    let state = ApiState {
        token: token.as_bytes().into(),
        readers,
    };
    Router::new()
        .route("/api/messages", get(messages_by_wamid))
        .route("/api/messages/{id}", get(message))
        .route("/api/batches/{uid}", get(batch))
        .route("/api/batches/{uid}/messages.csv", get(batch_csv))
        .route("/api/events", get(events))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn require_token(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if bearer_matches(req.headers(), &state.token) {
        next.run(req).await
    } else {
        ApiError::ApiUnauthorized.into_response()
    }
}

/// `Authorization: Bearer <token>`, the scheme in any case (RFC 9110 section 11.1).
fn bearer_matches(headers: &HeaderMap, token: &[u8]) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .and_then(|v| {
            let (scheme, rest) = v.split_at_checked(7)?;
            scheme.eq_ignore_ascii_case(b"Bearer ").then_some(rest)
        })
        .unwrap_or_default();
    bool::from(given.ct_eq(token))
}

fn read_failed(e: anyhow::Error) -> ApiError {
    tracing::error!(error = %e, "Query failed.");
    ApiError::Internal
}

async fn message(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = id.clone();
    match s
        .readers
        .read(move |r| r.message(&key))
        .await
        .map_err(read_failed)?
    {
        Some(m) => Ok(Json(json!(m))),
        None => Err(ApiError::Missing(format!(
            "No status has been received for message {id}."
        ))),
    }
}

async fn messages_by_wamid(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let Some(wamid) = q.get("wamid").cloned() else {
        return Err(ApiError::BadQuery(
            "Give ?wamid=..., or ask for /api/messages/{id}.".into(),
        ));
    };
    let key = wamid.clone();
    let found = s
        .readers
        .read(move |r| r.messages_by_wamid(&key))
        .await
        .map_err(read_failed)?;
    if found.is_empty() {
        return Err(ApiError::Missing(format!(
            "No status has been received for wamid {wamid}."
        )));
    }
    Ok(Json(json!({"messages": found})))
}

async fn batch(
    State(s): State<ApiState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = uid.clone();
    match s
        .readers
        .read(move |r| r.batch(&key))
        .await
        .map_err(read_failed)?
    {
        Some(b) => Ok(Json(json!(b))),
        None => Err(ApiError::Missing(format!(
            "No message of batch {uid} has been received."
        ))),
    }
}

async fn batch_csv(
    State(s): State<ApiState>,
    Path(uid): Path<String>,
) -> Result<Response, ApiError> {
    let key = uid.clone();
    let csv = s
        .readers
        .read(move |r| {
            if r.batch(&key)?.is_none() {
                return Ok(None);
            }
            let mut out = csv::Writer::from_writer(Vec::new());
            let header = [
                "messageId",
                "wamid",
                "sendPhone",
                "status",
                "deliveredAt",
                "readAt",
                "failedAt",
                "errorCode",
                "errorMessage",
                "conflict",
                "firstEventAt",
                "lastEventAt",
            ];
            let mut result = out.write_record(header);
            r.batch_messages(&key, |m| {
                if result.is_err() {
                    return;
                }
                let at = |s: &str| m.statuses.get(s).cloned().unwrap_or_default();
                let failed_at = m
                    .statuses
                    .get("failed")
                    .or(m.statuses.get("SMECL:FAILED"))
                    .cloned();
                let (code, text) = m
                    .error
                    .as_ref()
                    .map(|e| (e.code.clone(), e.message.clone().unwrap_or_default()))
                    .unwrap_or_default();
                result = out.write_record([
                    m.id.as_str(),
                    &m.wamid,
                    &m.send_phone,
                    &m.status,
                    &at("delivered"),
                    &at("read"),
                    &failed_at.unwrap_or_default(),
                    &code,
                    &text,
                    if m.conflict { "true" } else { "false" },
                    &m.first_event_at,
                    &m.last_event_at,
                ]);
            })?;
            Ok(result.ok().and_then(|()| out.into_inner().ok()))
        })
        .await
        .map_err(read_failed)?;
    let Some(csv) = csv else {
        return Err(ApiError::Missing(format!(
            "No message of batch {uid} has been received."
        )));
    };
    let disposition = format!(
        "attachment; filename=\"batch-{}.csv\"",
        uid.replace(['"', '\\', '\r', '\n'], "_")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        csv,
    )
        .into_response())
}

/// `GET /api/events?status=failed&since=RFC3339&limit=N&cursor=SEQ`: events in commit
/// order; `nextCursor` continues after the last one (null once there is no more).
async fn events(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = match q.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::BadQuery(format!("limit must be a number from 1 to {MAX_PAGE}."))
            })?,
    };
    let after = match q.get("cursor") {
        None => 0,
        Some(c) => c.parse::<i64>().map_err(|_| {
            ApiError::BadQuery("cursor must be the nextCursor of a previous page.".into())
        })?,
    };
    let since = match q.get("since") {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    ApiError::BadQuery(format!(
                        "since must be an RFC 3339 time, such as 2023-05-25T10:31:08Z; got {t:?}."
                    ))
                })?
                .with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
    };
    let status = q.get("status").cloned();
    let page = s
        .readers
        .read(move |r| r.events_page(status.as_deref(), since.as_deref(), after, limit))
        .await
        .map_err(read_failed)?;
    let next = (page.len() == limit)
        .then(|| page.last().map(|e| e.seq))
        .flatten();
    let page = EventsPage {
        events: page.iter().map(EventJson::from).collect(),
        next_cursor: next,
    };
    Ok(Json(page).into_response())
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct EventsPage<'a> {
    events: Vec<EventJson<'a>>,
    next_cursor: Option<i64>,
}

/// An event as `/api/events` shows it. A body that a JSON value cannot hold (an escaped
/// lone surrogate in an undocumented field) is shown as sent (see
/// [`StoredEvent::body_on_one_line`]) rather than left out.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct EventJson<'a> {
    seq: i64,
    received_at: &'a str,
    event_id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    message_id: Option<&'a str>,
    status: Option<&'a str>,
    // Null only if the stored text were not JSON; what the store holds always is.
    warnings: Option<&'a RawValue>,
    event: Option<EventBody>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum EventBody {
    Decoded(Value),
    AsSent(Box<RawValue>),
}

impl<'a> From<&'a StoredEvent> for EventJson<'a> {
    fn from(e: &'a StoredEvent) -> Self {
        Self {
            seq: e.seq,
            received_at: &e.received_at,
            event_id: &e.event_id,
            event_type: &e.event_type,
            message_id: e.message_id.as_deref(),
            status: e.status.as_deref(),
            warnings: serde_json::from_str(&e.warnings).ok(),
            event: match serde_json::from_slice(&e.body) {
                Ok(v) => Some(EventBody::Decoded(v)),
                Err(_) => serde_json::from_slice(&e.body_on_one_line())
                    .ok()
                    .map(EventBody::AsSent),
            },
        }
    }
}
