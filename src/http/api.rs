//! The query API under `/api`: what happened to a message, how a batch did, the events.
//! It exposes phone numbers, so it exists only when `[api] token` is set, and every
//! request must carry `Authorization: Bearer <token>`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{ApiError, csv, sends};
use crate::campaign::{BatchReport, Settings};
use crate::event::format_time;
use crate::event::tracking::Message;
use crate::store::{EventQuery, Inbound, Store, StoreError, StoredEvent};

/// Most events in one page of `/api/events` (and batches of `/api/batches`).
pub const MAX_PAGE: usize = 1000;

/// The paths this API serves, as its OpenAPI document lists them (a test holds the two
/// together).
pub const PATHS: [&str; 17] = [
    "/api/sends",
    "/api/messages",
    "/api/messages/{id}",
    "/api/inbound",
    "/api/inbound/{id}",
    "/api/conversations/{phone}",
    "/api/batches",
    "/api/batches/{uid}",
    "/api/batches/{uid}/messages.csv",
    "/api/batches/{uid}/replies.csv",
    "/api/batches/{uid}/unconfirmed.csv",
    "/api/templates",
    "/api/templates/{id}",
    "/api/reports/daily",
    "/api/reports/daily.csv",
    "/api/events",
    "/api/openapi.json",
];

/// The paths of the OpenAPI document outside this API: the webhook (under the path it
/// has by default) and the probes and metrics.
pub const OTHER_PATHS: [&str; 4] = ["/webhook", "/healthz", "/readyz", "/metrics"];

/// The OpenAPI 3 document of the whole HTTP surface.
const OPENAPI: &str = include_str!("openapi.json");

/// The document as this server serves it: the webhook under its `[server] path`.
fn openapi_document(webhook_path: &str) -> axum::body::Bytes {
    if webhook_path == "/webhook" {
        return axum::body::Bytes::from_static(OPENAPI.as_bytes());
    }
    let mut doc: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
    let paths = doc["paths"].as_object_mut().expect("it has paths");
    if let Some(webhook) = paths.remove("/webhook") {
        paths.insert(webhook_path.to_owned(), webhook);
    }
    doc.to_string().into()
}

async fn openapi(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    only_known(&q, &[])?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        s.openapi.clone(),
    )
        .into_response())
}

#[derive(Clone)]
struct ApiState {
    token: Arc<[u8]>,
    store: Arc<dyn Store>,
    campaign: Arc<Settings>,
    importer: sends::Importer,
    openapi: axum::body::Bytes,
}

/// The `/api` routes, guarded by the bearer token.
pub fn router<S: Clone + Send + Sync + 'static>(
    token: &str,
    store: Arc<dyn Store>,
    campaign: Arc<Settings>,
    request_timeout: std::time::Duration,
    webhook_path: &str,
) -> Router<S> {
    let state = ApiState {
        token: token.as_bytes().into(),
        openapi: openapi_document(webhook_path),
        importer: sends::Importer::new(store.clone(), request_timeout),
        store,
        campaign,
    };
    Router::new()
        .route(
            "/api/sends",
            post(import_sends).layer(DefaultBodyLimit::max(sends::MAX_BODY)),
        )
        .route("/api/messages", get(messages_by_wamid))
        .route("/api/messages/{id}", get(message))
        .route("/api/batches", get(batches))
        .route("/api/batches/{uid}", get(batch))
        .route("/api/batches/{uid}/messages.csv", get(batch_csv))
        .route("/api/batches/{uid}/replies.csv", get(replies_csv))
        .route("/api/batches/{uid}/unconfirmed.csv", get(unconfirmed_csv))
        .route("/api/events", get(events))
        .route("/api/inbound", get(inbound_page))
        .route("/api/inbound/{id}", get(inbound))
        .route("/api/conversations/{phone}", get(conversation))
        .route("/api/templates", get(templates))
        .route("/api/templates/{id}", get(template))
        .route("/api/reports/daily", get(daily_report))
        .route("/api/reports/daily.csv", get(daily_csv))
        .route("/api/openapi.json", get(openapi))
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
    let given = super::auth::only(headers, header::AUTHORIZATION.as_str())
        .map(|v| v.as_bytes())
        .and_then(|v| {
            let (scheme, rest) = v.split_at_checked(7)?;
            scheme.eq_ignore_ascii_case(b"Bearer ").then_some(rest)
        })
        .unwrap_or_default();
    bool::from(given.ct_eq(token))
}

pub(super) fn read_failed(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "Query failed.");
    // A read may need a connection to the store of its own, which takes a file.
    if super::serve::files_exhausted_now() {
        ApiError::Exhausted(super::serve::Exhausted::Files)
    } else {
        ApiError::Internal
    }
}

async fn message(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    only_known(&q, &[])?;
    match message_json(s.store.as_ref(), &id)
        .await
        .map_err(read_failed)?
    {
        Some(m) => Ok(Json(m)),
        None => Err(ApiError::Missing(format!(
            "No status has been received for message {id}."
        ))),
    }
}

async fn messages_by_wamid(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    only_known(&q, &["wamid"])?;
    let Some(wamid) = q.get("wamid") else {
        return Err(ApiError::BadQuery(
            "Give ?wamid=..., or ask for /api/messages/{id}.".into(),
        ));
    };
    let found = s
        .store
        .messages_by_wamid(wamid)
        .await
        .map_err(read_failed)?;
    if found.is_empty() {
        return Err(ApiError::Missing(format!(
            "No status has been received for wamid {wamid}."
        )));
    }
    // The store reads at most MESSAGES_READ of them: say when there may be more.
    let complete = found.len() < crate::store::MESSAGES_READ;
    Ok(Json(json!({"messages": found, "complete": complete})))
}

/// `GET /api/batches?uid=PREFIX&from=DATE&to=DATE&limit=N&cursor=C`: batches, the latest
/// event first, only those with an event from `from` to `to` (days of `[ui] timezone`)
/// when given; `nextCursor` continues after the last one (null once there is no more).
async fn batches(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    only_known(&q, &["uid", "limit", "cursor", "from", "to"])?;
    let limit = page_limit(&q)?;
    // Here, unlike in the dashboard's form, an empty or padded date is a mistake.
    for name in ["from", "to"] {
        if let Some(v) = q.get(name) {
            crate::campaign::daily::day_named(name, v).map_err(ApiError::BadQuery)?;
        }
    }
    let active = crate::campaign::daily::span(
        s.campaign.zone,
        q.get("from").map(String::as_str),
        q.get("to").map(String::as_str),
    )
    .map_err(ApiError::BadQuery)?;
    // The cursor is the last batch's latest event time, in milliseconds since 1970, and
    // its uid: `MILLIS|UID`, as the OpenAPI document's pattern says.
    let before = match q.get("cursor") {
        None => None,
        Some(c) => Some(batch_cursor(c).ok_or_else(|| {
            ApiError::BadQuery("cursor must be the nextCursor of a previous page.".into())
        })?),
    };
    let query = crate::store::BatchQuery {
        uid_prefix: q.get("uid").cloned().filter(|u| !u.is_empty()),
        before,
        active,
        limit,
    };
    let page = s.store.recent_batches(&query).await.map_err(read_failed)?;
    let next = (page.len() == limit)
        .then(|| page.last())
        .flatten()
        .map(|b| format!("{}|{}", b.last_event_at.timestamp_millis(), b.uid));
    // Their failures by error code are on each batch's own page.
    let listed: Vec<Value> = page
        .iter()
        .map(|b| {
            let mut v = json!(b);
            v.as_object_mut().map(|o| o.remove("failures"));
            v
        })
        .collect();
    Ok(Json(json!({"batches": listed, "nextCursor": next})))
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z in milliseconds since 1970.
const EARLIEST_MS: i64 = -62_135_596_800_000;
const LATEST_MS: i64 = 253_402_300_799_999;

/// A batch cursor, `MILLIS|UID`: at most 15 digits (no leading zero), optionally
/// negative, then the uid, which may hold anything (a `|` too).
fn batch_cursor(c: &str) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
    let (millis, uid) = c.split_once('|')?;
    let digits = millis.strip_prefix('-').unwrap_or(millis);
    let plain = digits == "0"
        || (!digits.is_empty()
            && digits.len() <= 15
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit()));
    if !plain || millis == "-0" {
        return None;
    }
    // Every stored time lies in the years 1 to 9999, which both stores can compare
    // (PostgreSQL refuses a time before 4713 BC; SQLite's text sorts a year past 9999
    // below every other): a cursor beyond them pages as if it were at their edge.
    let millis: i64 = millis.parse().ok()?;
    let at = chrono::DateTime::from_timestamp_millis(millis.clamp(EARLIEST_MS, LATEST_MS))?;
    Some((at, uid.to_owned()))
}

/// A message as the API and `innohook status` show it: its state and the customer's
/// replies to it.
pub async fn message_json(store: &dyn Store, id: &str) -> Result<Option<Value>, StoreError> {
    let Some(m) = store.message(id).await? else {
        return Ok(None);
    };
    let mut answer = json!(m);
    answer["replies"] = json!(store.replies(&m.wamid).await?);
    Ok(Some(answer))
}

/// A batch as the API and `innohook batch` show it: its counters, failures, how many of
/// its messages were answered, and its send list's figures.
pub async fn batch_json(
    store: &dyn Store,
    uid: &str,
    settings: &Settings,
) -> Result<Option<BatchReport>, StoreError> {
    crate::campaign::report::batch(store, uid, settings, chrono::Utc::now()).await
}

/// `GET /api/inbound/{id}`: one inbound message by InnoPaaS id or wamid.
async fn inbound(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    only_known(&q, &[])?;
    match s.store.inbound(&id).await.map_err(read_failed)? {
        Some(m) => Ok(Json(json!(m))),
        None => Err(ApiError::Missing(format!(
            "No inbound message {id} has been received."
        ))),
    }
}

/// `GET /api/inbound?from=PHONE&uid=UID&since=RFC3339&limit=N&cursor=C`: customers'
/// messages, the latest first; `uid` keeps the replies to that batch's messages.
async fn inbound_page(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    only_known(&q, &["from", "uid", "since", "limit", "cursor"])?;
    let limit = page_limit(&q)?;
    let since = match q.get("since") {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| ApiError::BadQuery("since must be an RFC 3339 time.".into()))?
                .to_utc(),
        ),
    };
    let before = match q.get("cursor") {
        None => None,
        Some(c) => Some(seq_cursor(c)?),
    };
    let query = crate::store::InboundQuery {
        from: q.get("from").cloned(),
        uid: q.get("uid").cloned(),
        since,
        before,
        limit,
    };
    let page = s.store.inbound_page(&query).await.map_err(read_failed)?;
    let next = (page.len() == limit)
        .then(|| page.last())
        .flatten()
        .map(|m| m.seq);
    Ok(Json(json!({"inbound": page, "nextCursor": next})))
}

/// `GET /api/conversations/{phone}`: what was exchanged with one number, in time order.
async fn conversation(
    State(s): State<ApiState>,
    Path(phone): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    only_known(&q, &[])?;
    match conversation_json(s.store.as_ref(), &phone)
        .await
        .map_err(read_failed)?
    {
        Some(c) => Ok(Json(c)),
        None => Err(ApiError::Missing(format!(
            "Nothing has been exchanged with {phone}."
        ))),
    }
}

/// What was exchanged with one phone number.
pub struct Conversation {
    /// Oldest first.
    pub items: Vec<Exchanged>,
    /// Neither side was cut: at most 100 messages sent to a number are read, and
    /// [`MAX_PAGE`] of its own.
    pub complete: bool,
}

/// One message of a conversation.
pub enum Exchanged {
    /// Sent to the number, placed at its first status.
    Outbound(Box<Message>),
    /// Sent by the number, placed when it was sent.
    Inbound(Box<Inbound>),
}

impl Exchanged {
    pub fn at(&self) -> chrono::DateTime<chrono::Utc> {
        match self {
            Self::Outbound(m) => m.first_event_at,
            Self::Inbound(i) => i.sent_at,
        }
    }
}

/// What was exchanged with `phone`, in time order; `None` when nothing was.
pub async fn conversation_with(
    store: &dyn Store,
    phone: &str,
) -> Result<Option<Conversation>, StoreError> {
    let theirs = crate::store::InboundQuery {
        from: Some(phone.to_owned()),
        limit: MAX_PAGE,
        ..Default::default()
    };
    let (sent, received) =
        tokio::join!(store.messages_by_phone(phone), store.inbound_page(&theirs));
    let (sent, received) = (sent?, received?);
    if sent.is_empty() && received.is_empty() {
        return Ok(None);
    }
    let complete = sent.len() < crate::store::MESSAGES_READ && received.len() < MAX_PAGE;
    let mut items: Vec<Exchanged> = sent
        .into_iter()
        .map(|m| Exchanged::Outbound(Box::new(m)))
        .chain(
            received
                .into_iter()
                .map(|i| Exchanged::Inbound(Box::new(i))),
        )
        .collect();
    items.sort_by_key(Exchanged::at);
    Ok(Some(Conversation { items, complete }))
}

/// A conversation as the API answers it.
async fn conversation_json(store: &dyn Store, phone: &str) -> Result<Option<Value>, StoreError> {
    let Some(c) = conversation_with(store, phone).await? else {
        return Ok(None);
    };
    let items: Vec<Value> = c
        .items
        .iter()
        .map(|item| {
            let at = format_time(&item.at());
            match item {
                Exchanged::Outbound(m) => json!({"direction": "outbound", "at": at, "message": m}),
                Exchanged::Inbound(i) => json!({"direction": "inbound", "at": at, "inbound": i}),
            }
        })
        .collect();
    Ok(Some(
        json!({"phone": phone, "items": items, "complete": c.complete}),
    ))
}

/// `GET /api/templates`: every template heard of as its events leave it, those someone
/// must look at first.
async fn templates(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    only_known(&q, &[])?;
    let all = s.store.templates().await.map_err(read_failed)?;
    Ok(Json(json!({"templates": all})))
}

/// `GET /api/templates/{templateId}`: one template and its history, the latest first.
async fn template(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    only_known(&q, &[])?;
    match s.store.template(&id).await.map_err(read_failed)? {
        Some((template, history)) => {
            let mut answer = json!(template);
            answer["history"] = json!(history);
            Ok(Json(answer))
        }
        None => Err(ApiError::Missing(format!(
            "No event about template {id} has been received."
        ))),
    }
}

/// A seq cursor (`/api/events`, `/api/inbound`): an integer from 0, in decimal digits
/// only, as the OpenAPI document types it.
fn seq_cursor(c: &str) -> Result<i64, ApiError> {
    c.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| c.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::BadQuery(
                "cursor must be the nextCursor of a previous page: an integer from 0.".into(),
            )
        })
}

/// `limit`: from 1 to [`MAX_PAGE`], 100 when not given.
fn page_limit(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(100),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::BadQuery(format!("limit must be a number from 1 to {MAX_PAGE}."))
            }),
    }
}

async fn batch(
    State(s): State<ApiState>,
    Path(uid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<BatchReport>, ApiError> {
    only_known(&q, &[])?;
    match batch_json(s.store.as_ref(), &uid, &s.campaign)
        .await
        .map_err(read_failed)?
    {
        Some(b) => Ok(Json(b)),
        None => Err(ApiError::Missing(format!(
            "No message of batch {uid} has been received."
        ))),
    }
}

async fn batch_csv(
    State(s): State<ApiState>,
    Path(uid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    only_known(&q, &[])?;
    csv::download(
        s.store.as_ref(),
        &uid,
        csv::Sheet::Messages,
        &s.campaign.pricing,
    )
    .await
}

async fn replies_csv(
    State(s): State<ApiState>,
    Path(uid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    only_known(&q, &[])?;
    csv::download(
        s.store.as_ref(),
        &uid,
        csv::Sheet::Replies,
        &s.campaign.pricing,
    )
    .await
}

async fn unconfirmed_csv(
    State(s): State<ApiState>,
    Path(uid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    only_known(&q, &[])?;
    let sheet = csv::Sheet::Unconfirmed(s.campaign.cutoff(chrono::Utc::now()));
    csv::download(s.store.as_ref(), &uid, sheet, &s.campaign.pricing).await
}

/// The daily report `?from=YYYY-MM-DD&to=YYYY-MM-DD`, both required, in `[ui] timezone`.
async fn daily_of(
    s: &ApiState,
    q: &HashMap<String, String>,
) -> Result<crate::campaign::daily::DailyReport, ApiError> {
    only_known(q, &["from", "to"])?;
    let (Some(from), Some(to)) = (q.get("from"), q.get("to")) else {
        return Err(ApiError::BadQuery(
            "from and to are required: dates such as 2026-03-01.".into(),
        ));
    };
    let (from, to) = crate::campaign::daily::range(from, to).map_err(ApiError::BadQuery)?;
    crate::campaign::daily::report(s.store.as_ref(), s.campaign.zone, from, to)
        .await
        .map_err(read_failed)
}

/// `GET /api/reports/daily?from=&to=`: per day, sent, reached, read, failed, replies and
/// the top error codes.
async fn daily_report(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<crate::campaign::daily::DailyReport>, ApiError> {
    Ok(Json(daily_of(&s, &q).await?))
}

/// `GET /api/reports/daily.csv?from=&to=`: the same, one row a day.
async fn daily_csv(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    csv::daily(&daily_of(&s, &q).await?)
}

/// `POST /api/sends`: the send list, as JSON or CSV.
async fn import_sends(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    only_known(&q, &[])?;
    let body = body.map_err(|e| match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
            limit: sends::MAX_BODY,
            hint: "send the list in parts, or use innohook sends import",
        },
        _ => ApiError::UnreadableBody,
    })?;
    Ok(s.importer.import(&headers, body).await)
}

/// Refuses query parameters the endpoint does not take, naming them: a misspelt filter
/// silently ignored would answer something else than what was asked.
fn only_known(q: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = q
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    Err(ApiError::BadQuery(format!(
        "Unknown query parameter(s) {}; this takes {}.",
        unknown.join(", "),
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        }
    )))
}

/// `GET /api/events?status=failed&since=RFC3339&limit=N&cursor=SEQ`: events in commit
/// order; `nextCursor` continues after the last one (null once there is no more).
async fn events(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    only_known(&q, &["status", "since", "limit", "cursor"])?;
    let limit = page_limit(&q)?;
    let after = match q.get("cursor") {
        None => 0,
        Some(c) => seq_cursor(c)?,
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
                .with_timezone(&chrono::Utc),
        ),
    };
    let query = EventQuery {
        status: q.get("status").cloned(),
        since,
        after,
        limit,
    };
    let page = s.store.events(&query).await.map_err(read_failed)?;
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
    received_at: String,
    event_id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    message_id: Option<&'a str>,
    status: Option<&'a str>,
    // Null only if the stored text were not JSON; what the store holds always is.
    warnings: &'a [crate::event::tracking::RecordedWarning],
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
            received_at: format_time(&e.received_at),
            event_id: &e.event_id,
            event_type: &e.event_type,
            message_id: e.message_id.as_deref(),
            status: e.status.as_ref().map(|s| s.as_str()),
            warnings: &e.warnings,
            event: match serde_json::from_slice(&e.body) {
                Ok(v) => Some(EventBody::Decoded(v)),
                Err(_) => serde_json::from_slice(&e.body_on_one_line())
                    .ok()
                    .map(EventBody::AsSent),
            },
        }
    }
}
