//! `GET /ui/conversations?phone=…`: everything exchanged with one phone number, in time
//! order, as one thread: the messages sent to it with their statuses, and its own
//! messages with their content (text, media as a link with its type, a location's
//! coordinates, the button or list row chosen, a reaction). Without a number: the latest
//! customers' messages, each leading to its thread.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::batches::MessageRow;
use super::session::Session;
use super::{Chrome, Ui, encode, message_href, read_failed, render, when};
use crate::http::ApiError;
use crate::http::api::{Exchanged, conversation_with};
use crate::store::{Inbound, InboundQuery};

/// How many of the latest customers' messages the page lists without a number.
const LATEST: usize = 50;

/// A customer's message as the dashboard shows it (in a thread, in a batch's or a
/// message's replies).
pub(super) struct InboundRow {
    pub at: String,
    pub from: String,
    pub thread_href: String,
    pub kind: String,
    pub content: String,
    /// Its media's link, when it is a web link.
    pub link: Option<String>,
    /// The wamid it answers, and where that message is looked up.
    pub reply_to: Option<(String, String)>,
}

impl From<&Inbound> for InboundRow {
    fn from(i: &Inbound) -> Self {
        Self {
            at: when(&i.sent_at),
            from: i.from.clone(),
            thread_href: thread_href(&i.from),
            kind: i.content_type.clone(),
            content: i.summary.clone(),
            // Only a web link is made a link: the sender chose it.
            link: i
                .media_link
                .clone()
                .filter(|l| l.starts_with("https://") || l.starts_with("http://")),
            reply_to: i.reply_to.as_ref().map(|w| (w.clone(), message_href(w))),
        }
    }
}

/// The link to a number's thread.
pub(super) fn thread_href(phone: &str) -> String {
    format!("/ui/conversations?phone={}", encode(phone))
}

/// One entry of a thread.
enum Entry {
    Outbound { at: String, message: MessageRow },
    Inbound(InboundRow),
}

#[derive(serde::Deserialize)]
pub(super) struct ThreadQuery {
    phone: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/conversations.html")]
struct Conversations {
    chrome: Chrome,
    phone: String,
    searched: bool,
    thread: Vec<Entry>,
    complete: bool,
    latest: Vec<InboundRow>,
}

pub(super) async fn page(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Query(q): Query<ThreadQuery>,
) -> Result<Response, ApiError> {
    let phone = q.phone.as_deref().map(str::trim).unwrap_or("").to_owned();
    let mut page = Conversations {
        chrome: Chrome::new(&session, "conversations"),
        searched: !phone.is_empty(),
        phone,
        thread: Vec::new(),
        complete: true,
        latest: Vec::new(),
    };
    if page.phone.is_empty() {
        let latest = InboundQuery {
            limit: LATEST,
            ..Default::default()
        };
        let found = ui.store.inbound_page(&latest).await.map_err(read_failed)?;
        page.latest = found.iter().map(InboundRow::from).collect();
        return render(StatusCode::OK, &page);
    }
    // As typed, else with only its digits (InnoPaaS writes numbers without `+`).
    let digits: String = page.phone.chars().filter(char::is_ascii_digit).collect();
    let mut found = conversation_with(ui.store.as_ref(), &page.phone)
        .await
        .map_err(read_failed)?;
    if found.is_none() && !digits.is_empty() && digits != page.phone {
        found = conversation_with(ui.store.as_ref(), &digits)
            .await
            .map_err(read_failed)?;
    }
    let Some(c) = found else {
        return render(StatusCode::NOT_FOUND, &page);
    };
    page.complete = c.complete;
    page.thread = c
        .items
        .iter()
        .map(|item| match item {
            Exchanged::Outbound(m) => Entry::Outbound {
                at: when(&item.at()),
                message: MessageRow::from(m.as_ref()),
            },
            Exchanged::Inbound(i) => Entry::Inbound(InboundRow::from(i.as_ref())),
        })
        .collect();
    render(StatusCode::OK, &page)
}
