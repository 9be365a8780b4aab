//! `GET /ui/messages?q=…`: a message looked up by its id, its wamid or the phone number it
//! was sent to; one found is shown with its status timeline (each event with its time,
//! envelope id and warnings), conversation and error.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::batches::{MessageRow, status_class};
use super::conversations::{InboundRow, thread_href};
use super::session::Session;
use super::{Chrome, Ui, batch_href, read_failed, render, when};
use crate::event::tracking::Message;
use crate::http::ApiError;
use crate::store::StoreResult;

#[derive(serde::Deserialize)]
pub(super) struct LookupQuery {
    q: Option<String>,
}

struct TimelineRow {
    status: String,
    status_class: &'static str,
    at: String,
    received: String,
    envelope: String,
    warnings: Vec<String>,
}

/// One message in full.
struct Detail {
    id: String,
    wamid: String,
    phone: String,
    uid: String,
    batch_href: Option<String>,
    waba: String,
    account: String,
    status: String,
    status_class: &'static str,
    conflict: bool,
    error: Option<(String, String, String)>,
    conversation: Vec<(&'static str, String)>,
    timeline: Vec<TimelineRow>,
    /// The customers' answers and reactions to it.
    replies: Vec<InboundRow>,
    thread_href: String,
}

#[derive(Template)]
#[template(path = "ui/messages.html")]
struct Lookup {
    chrome: Chrome,
    q: String,
    searched: bool,
    detail: Option<Detail>,
    rows: Vec<MessageRow>,
}

pub(super) async fn page(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Query(q): Query<LookupQuery>,
) -> Result<Response, ApiError> {
    let q = q.q.as_deref().map(str::trim).unwrap_or("").to_owned();
    let found = if q.is_empty() {
        Vec::new()
    } else {
        find(&ui, &q).await.map_err(read_failed)?
    };
    let detail = match found.as_slice() {
        [one] => {
            let replies = ui.store.replies(&one.wamid).await.map_err(read_failed)?;
            Some(detail(one, &replies))
        }
        _ => None,
    };
    let status = if found.is_empty() && !q.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    render(
        status,
        &Lookup {
            chrome: Chrome::new(&session, "messages"),
            searched: !q.is_empty(),
            q,
            rows: if detail.is_none() {
                found.iter().map(MessageRow::from).collect()
            } else {
                Vec::new()
            },
            detail,
        },
    )
}

/// The messages `q` names: by message id, by wamid, by phone number (as typed, and with
/// only its digits, since sendPhone comes without `+` or spaces). Each message once.
async fn find(ui: &Ui, q: &str) -> StoreResult<Vec<Message>> {
    let mut found: Vec<Message> = ui.store.message(q).await?.into_iter().collect();
    found.extend(ui.store.messages_by_wamid(q).await?);
    found.extend(ui.store.messages_by_phone(q).await?);
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    let phone_like = q
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if phone_like && !digits.is_empty() && digits != q {
        found.extend(ui.store.messages_by_phone(&digits).await?);
    }
    let mut seen = std::collections::HashSet::new();
    found.retain(|m| seen.insert(m.id.clone()));
    Ok(found)
}

fn detail(m: &Message, replies: &[crate::store::Inbound]) -> Detail {
    // The statuses in the order their events happened.
    let mut statuses: Vec<_> = m.statuses.iter().collect();
    statuses.sort_by_key(|(s, at)| (**at, s.rank()));
    let timeline = statuses
        .into_iter()
        .map(|(s, at)| {
            let event = m.events.get(s);
            TimelineRow {
                status: s.as_str().to_owned(),
                status_class: status_class(s),
                at: when(at),
                received: event.map(|e| when(&e.received_at)).unwrap_or_default(),
                envelope: event.map(|e| e.envelope_id.clone()).unwrap_or_default(),
                warnings: event
                    .map(|e| {
                        e.warnings
                            .iter()
                            .map(|w| format!("{} ({}): {}", w.code, w.field, w.message))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    let conversation = m
        .conversation
        .as_ref()
        .map(|c| {
            [
                ("Conversation id", "id"),
                ("Initiated by", "initiateType"),
                ("Expires at", "expireAt"),
            ]
            .into_iter()
            .filter_map(|(label, key)| c.get(key)?.as_str().map(|v| (label, v.to_owned())))
            .collect()
        })
        .unwrap_or_default();
    Detail {
        id: m.id.clone(),
        wamid: m.wamid.clone(),
        phone: m.send_phone.clone(),
        uid: m.uid.clone().unwrap_or_default(),
        batch_href: m.uid.as_deref().map(batch_href),
        waba: m.waba_id.clone(),
        account: m.account_name.clone(),
        status: m.status.as_str().to_owned(),
        status_class: status_class(&m.status),
        conflict: m.conflict,
        error: m.error.as_ref().map(|e| {
            (
                e.code.clone(),
                e.message.clone().unwrap_or_default(),
                e.status.as_str().to_owned(),
            )
        }),
        conversation,
        timeline,
        replies: replies.iter().map(InboundRow::from).collect(),
        thread_href: thread_href(&m.send_phone),
    }
}
