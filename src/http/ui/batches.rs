//! `GET /ui/batches` (recent batches, searched by uid) and `GET /ui/batches/{uid}`: a
//! batch's funnel, failures by errorCode, events over time and its messages, filtered by
//! status and paged; and the batch's CSV.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::chart::{self, Column, Drawn, STATUS_SERIES, Series, Stage};
use super::conversations::InboundRow;
use super::session::Session;
use super::{
    Chrome, Ui, batch_href, encode, message_href, percent, read_failed, render, thousands, when,
};
use crate::campaign::BatchReport;
use crate::event::tracking::{Batch, Message, hour_of, hour_start};
use crate::event::{Bucket, Status};
use crate::http::ApiError;
use crate::http::Sheet;
use crate::store::{BatchHour, BatchQuery, InboundQuery, Store};

/// Rows per page of the batch list and of a batch's messages.
const PAGE: usize = 50;
/// Most messages one filtered page looks through (then it offers to continue).
const SCAN_BUDGET: usize = 5_000;
const SCAN_CHUNK: usize = 1_000;
/// A timeline longer than this many hours is drawn by day.
const HOURLY_UP_TO: i64 = 72;

/// A batch in a list.
pub(super) struct BatchRow {
    pub uid: String,
    pub href: String,
    pub messages: String,
    /// The share reached (delivered or read).
    pub reached: String,
    pub read: String,
    pub failed: String,
    pub first: String,
    pub last: String,
}

impl From<&Batch> for BatchRow {
    fn from(b: &Batch) -> Self {
        Self {
            uid: b.uid.clone(),
            href: batch_href(&b.uid),
            messages: thousands(b.messages),
            reached: percent(b.reached, b.messages),
            read: percent(b.read, b.messages),
            failed: percent(b.failed, b.messages),
            first: when(&b.first_event_at),
            last: when(&b.last_event_at),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/batches.html")]
struct BatchList {
    chrome: Chrome,
    q: String,
    from: String,
    to: String,
    range_error: Option<String>,
    batches: Vec<BatchRow>,
    exact: Option<String>,
    next_href: Option<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct ListQuery {
    q: Option<String>,
    /// Only batches active in these days (of `[ui] timezone`).
    from: Option<String>,
    to: Option<String>,
    before_at: Option<String>,
    before_uid: Option<String>,
}

pub(super) async fn list(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let prefix = q.q.as_deref().map(str::trim).filter(|p| !p.is_empty());
    let before = match (&q.before_at, q.before_uid) {
        (Some(at), Some(uid)) => DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|at| (at.to_utc(), uid)),
        _ => None,
    };
    let (from, to) = (
        q.from.clone().unwrap_or_default(),
        q.to.clone().unwrap_or_default(),
    );
    let active = crate::campaign::daily::span(ui.campaign.zone, Some(&from), Some(&to));
    let (active, range_error) = match active {
        Ok(active) => (active, None),
        Err(e) => (None, Some(e)),
    };
    let query = BatchQuery {
        uid_prefix: prefix.map(str::to_owned),
        before,
        active,
        limit: PAGE,
    };
    let (found, exact) = tokio::join!(ui.store.recent_batches(&query), async {
        match prefix {
            Some(uid) => ui.store.batch(uid).await.map(|b| b.map(|b| b.uid)),
            None => Ok(None),
        }
    });
    let found = found.map_err(read_failed)?;
    let next_href = (found.len() == PAGE)
        .then(|| found.last())
        .flatten()
        .map(|last| {
            format!(
                "/ui/batches?q={}&from={}&to={}&before_at={}&before_uid={}",
                encode(prefix.unwrap_or("")),
                encode(&from),
                encode(&to),
                encode(&crate::event::format_time(&last.last_event_at)),
                encode(&last.uid)
            )
        });
    render(
        StatusCode::OK,
        &BatchList {
            chrome: Chrome::new(&session, "batches"),
            q: prefix.unwrap_or("").to_owned(),
            from: from.clone(),
            to: to.clone(),
            range_error,
            batches: found.iter().map(BatchRow::from).collect(),
            exact: exact.map_err(read_failed)?.map(|uid| batch_href(&uid)),
            next_href,
        },
    )
}

/// The series of a batch's timeline: its status events (no other types).
const TIMELINE_SERIES: &[Series] = STATUS_SERIES.split_at(4).0;

struct FailureRow {
    code: String,
    example: String,
    messages: String,
    share: String,
}

struct FilterTab {
    label: &'static str,
    count: String,
    href: String,
    active: bool,
}

/// One figure of a batch: the API's name for it, a label, the number and its share.
struct Card {
    name: &'static str,
    label: &'static str,
    value: String,
    share: Option<String>,
    note: &'static str,
}

struct CategoryRow {
    category: String,
    messages: String,
    share: String,
}

/// A listed send with no status report.
struct SendRow {
    id: String,
    phone: String,
    sent: String,
    template: String,
}

/// How many unconfirmed sends the batch page lists (the CSV has them all).
const UNCONFIRMED_SHOWN: usize = 20;

/// The cards of a batch's page: the report's figures, under the report's names.
fn cards(r: &BatchReport) -> Vec<Card> {
    let b = &r.batch;
    let card = |name, label, value: i64, share: Option<String>, note| Card {
        name,
        label,
        value: thousands(value),
        share,
        note,
    };
    // Shares are of what was sent when that is known, else of the messages reported on.
    let whole = r.sent.unwrap_or(b.messages);
    let mut cards = Vec::new();
    if let (Some(sent), Some(no_status), Some(unconfirmed)) = (r.sent, r.no_status, r.unconfirmed) {
        cards.push(card("sent", "Sent", sent, None, "listed, or reported on"));
        cards.push(card(
            "noStatus",
            "No status yet",
            no_status,
            Some(percent(no_status, sent)),
            "sent, no report yet",
        ));
        cards.push(card(
            "unconfirmed",
            "Unconfirmed",
            unconfirmed,
            Some(percent(unconfirmed, sent)),
            "no report in time",
        ));
    }
    cards.push(card(
        "messages",
        "Messages",
        b.messages,
        None,
        "with a status report",
    ));
    cards.push(card(
        "reached",
        "Reached",
        b.reached,
        Some(percent(b.reached, whole)),
        "delivered or read",
    ));
    cards.push(card(
        "delivered",
        "Delivered",
        b.delivered,
        Some(percent(b.delivered, whole)),
        "not read yet",
    ));
    cards.push(card(
        "read",
        "Read",
        b.read,
        Some(percent(b.read, whole)),
        "",
    ));
    cards.push(card(
        "failed",
        "Failed",
        b.failed,
        Some(percent(b.failed, whole)),
        "",
    ));
    cards.push(card("other", "Other status", b.other, None, ""));
    cards.push(card(
        "replied",
        "Replied",
        r.replied,
        Some(percent(r.replied, whole)),
        "answered or reacted to",
    ));
    cards
}

pub(super) struct MessageRow {
    pub id: String,
    pub href: String,
    pub phone: String,
    pub status: String,
    pub status_class: &'static str,
    pub delivered: String,
    pub read: String,
    pub failed: String,
    pub error: String,
}

/// The CSS class of a status badge.
pub(super) fn status_class(status: &Status) -> &'static str {
    match status.bucket() {
        Bucket::Delivered => "st-delivered",
        Bucket::Read => "st-read",
        Bucket::Failed => "st-failed",
        Bucket::Other => "st-other",
    }
}

impl From<&Message> for MessageRow {
    fn from(m: &Message) -> Self {
        let at = |t: Option<DateTime<Utc>>| t.as_ref().map(when).unwrap_or_default();
        Self {
            id: m.id.clone(),
            href: message_href(&m.id),
            phone: m.send_phone.clone(),
            status: m.status.as_str().to_owned(),
            status_class: status_class(&m.status),
            delivered: at(m.reached(&Status::Delivered)),
            read: at(m.reached(&Status::Read)),
            failed: at(m.failed_at()),
            error: m.error.as_ref().map(|e| e.code.clone()).unwrap_or_default(),
        }
    }
}

struct TimelineRow {
    at: String,
    values: Vec<String>,
}

#[derive(Template)]
#[template(path = "ui/batch.html")]
struct BatchPage {
    chrome: Chrome,
    uid: String,
    csv_href: String,
    first: String,
    last: String,
    /// The figures, each as the API names it (the element ids say so) with its share.
    cards: Vec<Card>,
    /// With a send list: the unconfirmed sends shown, and their CSV.
    send_list: bool,
    unconfirmed: Vec<SendRow>,
    unconfirmed_more: bool,
    unconfirmed_after: String,
    unconfirmed_csv_href: String,
    /// Messages by conversation category, with their share of the categorised.
    categories: Vec<CategoryRow>,
    /// With a `[pricing]` table: the estimate ("USD 12.50") and messages it has no price for.
    cost: Option<(String, i64)>,
    replies: Vec<InboundRow>,
    replies_csv_href: String,
    funnel: Vec<Stage>,
    failures: Vec<FailureRow>,
    timeline: Option<Drawn>,
    timeline_rows: Vec<TimelineRow>,
    series: &'static [Series],
    tabs: Vec<FilterTab>,
    rows: Vec<MessageRow>,
    filter_name: &'static str,
    next_href: Option<String>,
    scan_note: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/notice.html")]
pub(super) struct Notice {
    pub chrome: Chrome,
    pub title: String,
    pub text: String,
}

#[derive(serde::Deserialize)]
pub(super) struct PageQuery {
    status: Option<String>,
    after: Option<String>,
}

/// How many of a batch's latest replies its page shows (the CSV has them all).
const REPLIES_SHOWN: usize = 20;

/// The message filters: query value, tab label, bucket.
const FILTERS: [(&str, &str, Option<Bucket>); 5] = [
    ("", "All", None),
    (
        Bucket::Delivered.as_str(),
        "Delivered, not read",
        Some(Bucket::Delivered),
    ),
    (Bucket::Read.as_str(), "Read", Some(Bucket::Read)),
    (Bucket::Failed.as_str(), "Failed", Some(Bucket::Failed)),
    (Bucket::Other.as_str(), "Other status", Some(Bucket::Other)),
];

pub(super) async fn page(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Path(uid): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let chrome = Chrome::new(&session, "batches");
    let now = Utc::now();
    let report = crate::campaign::report::batch(ui.store.as_ref(), &uid, &ui.campaign, now);
    let Some(report) = report.await.map_err(read_failed)? else {
        return render(
            StatusCode::NOT_FOUND,
            &Notice {
                chrome,
                title: "No such batch".into(),
                text: format!("No message of batch {uid} has been received."),
            },
        );
    };
    let filter = FILTERS
        .iter()
        .position(|f| q.status.as_deref().unwrap_or("") == f.0)
        .unwrap_or(0);
    let after = q.after.as_deref().filter(|a| !a.is_empty());
    let latest_replies = InboundQuery {
        uid: Some(uid.clone()),
        limit: REPLIES_SHOWN,
        ..Default::default()
    };
    let cutoff = ui.campaign.cutoff(now);
    let (timeline, page, replies, unconfirmed) = tokio::join!(
        ui.store.batch_timeline(&uid),
        messages_page(ui.store.as_ref(), &uid, FILTERS[filter].2, after),
        ui.store.inbound_page(&latest_replies),
        async {
            match report.send_list {
                true => {
                    let more = UNCONFIRMED_SHOWN + 1;
                    ui.store.unconfirmed_sends(&uid, cutoff, None, more).await
                }
                false => Ok(Vec::new()),
            }
        },
    );
    let timeline = timeline.map_err(read_failed)?;
    let page = page.map_err(read_failed)?;
    let replies = replies.map_err(read_failed)?;
    let mut unconfirmed = unconfirmed.map_err(read_failed)?;
    let unconfirmed_more = unconfirmed.len() > UNCONFIRMED_SHOWN;
    unconfirmed.truncate(UNCONFIRMED_SHOWN);
    let b = &report.batch;
    let base = batch_href(&uid);
    let counts = [b.messages, b.delivered, b.read, b.failed, b.other];
    let tabs = FILTERS
        .iter()
        .zip(counts)
        .enumerate()
        .map(|(i, (f, n))| FilterTab {
            label: f.1,
            count: thousands(n),
            href: if f.0.is_empty() {
                base.clone()
            } else {
                format!("{base}?status={}", f.0)
            },
            active: i == filter,
        })
        .collect();
    let next_href = page
        .next
        .as_ref()
        .map(|next| format!("{base}?status={}&after={}", FILTERS[filter].0, encode(next)));
    let scan_note = page.budget_spent.then(|| {
        format!(
            "Looked through {} messages for this page; there may be more after them.",
            thousands(SCAN_BUDGET as i64)
        )
    });
    let (columns, hourly) = timeline_columns(&timeline);
    // Counted by UTC hour, labelled with each hour's local time in [ui] timezone.
    let zone = super::zone();
    let columns: Vec<Column> = columns
        .into_iter()
        .map(|c| Column {
            at: c.at.with_timezone(&zone).naive_local().and_utc(),
            ..c
        })
        .collect();
    let timeline_chart = (!columns.is_empty()).then(|| {
        let format = if hourly { "%m-%d %H:%M" } else { "%Y-%m-%d" };
        chart::stacked_both(&columns, TIMELINE_SERIES, format, "Status events over time")
    });
    let timeline_rows = columns
        .iter()
        .rev()
        .filter(|c| c.values.iter().any(|v| *v != 0))
        .map(|c| TimelineRow {
            at: c
                .at
                .format(if hourly { "%Y-%m-%d %H:%M" } else { "%Y-%m-%d" })
                .to_string(),
            values: c.values.iter().map(|v| thousands(*v)).collect(),
        })
        .collect();
    render(
        StatusCode::OK,
        &BatchPage {
            chrome,
            csv_href: format!("{base}/messages.csv"),
            replies_csv_href: format!("{base}/replies.csv"),
            unconfirmed_csv_href: format!("{base}/unconfirmed.csv"),
            replies: replies.iter().map(InboundRow::from).collect(),
            first: when(&b.first_event_at),
            last: when(&b.last_event_at),
            cards: cards(&report),
            send_list: report.send_list,
            unconfirmed: unconfirmed
                .iter()
                .map(|s| SendRow {
                    id: s.id.clone(),
                    phone: s.phone.clone(),
                    sent: when(&s.sent_at),
                    template: s.template.clone().unwrap_or_default(),
                })
                .collect(),
            unconfirmed_more,
            categories: {
                let all: i64 = report.categories.iter().map(|c| c.messages).sum();
                report
                    .categories
                    .iter()
                    .map(|c| CategoryRow {
                        category: c.category.clone(),
                        messages: thousands(c.messages),
                        share: percent(c.messages, all),
                    })
                    .collect()
            },
            cost: report
                .cost
                .as_ref()
                .map(|c| (format!("{} {:.2}", c.currency, c.estimate), c.unpriced)),
            unconfirmed_after: humantime::format_duration(ui.campaign.unconfirmed_after)
                .to_string(),
            funnel: chart::funnel(&[
                match report.sent {
                    Some(sent) => ("Sent", "s-messages", sent),
                    None => ("Messages", "s-messages", b.messages),
                },
                ("Reached", "s-delivered", b.reached),
                ("Read", "s-read", b.read),
                ("Failed", "s-failed", b.failed),
            ]),
            failures: b
                .failures
                .iter()
                .map(|f| FailureRow {
                    code: f.error_code.clone(),
                    example: f.error_message.clone().unwrap_or_default(),
                    messages: thousands(f.messages),
                    share: percent(f.messages, b.failed),
                })
                .collect(),
            timeline: timeline_chart,
            timeline_rows,
            series: TIMELINE_SERIES,
            tabs,
            rows: page.messages.iter().map(MessageRow::from).collect(),
            filter_name: FILTERS[filter].1,
            next_href,
            scan_note,
            uid: b.uid.clone(),
        },
    )
}

/// The timeline as chart columns: every hour from the first to the last (gaps as zeros),
/// or every day when that is more than [`HOURLY_UP_TO`] hours; and whether hourly.
fn timeline_columns(hours: &[BatchHour]) -> (Vec<Column>, bool) {
    let (Some(first), Some(last)) = (hours.first(), hours.last()) else {
        return (Vec::new(), true);
    };
    let (first, last) = (hour_of(&first.hour), hour_of(&last.hour));
    let hourly = last - first < HOURLY_UP_TO;
    let width = if hourly { 1 } else { 24 };
    let start = if hourly {
        first
    } else {
        first - first.rem_euclid(24)
    };
    let n = ((last - start) / width + 1) as usize;
    let mut columns: Vec<Column> = (0..n)
        .map(|i| Column {
            at: hour_start(start + i as i64 * width),
            values: vec![0; 4],
        })
        .collect();
    for h in hours {
        let i = ((hour_of(&h.hour) - start) / width) as usize;
        for (v, n) in columns[i].values.iter_mut().zip(h.events) {
            *v += n;
        }
    }
    (columns, hourly)
}

/// A page of a batch's messages.
struct MessagePage {
    messages: Vec<Message>,
    /// Where the next page starts (after this message id).
    next: Option<String>,
    /// A filtered page stopped after [`SCAN_BUDGET`] messages.
    budget_spent: bool,
}

/// Up to [`PAGE`] messages of the batch after `after`, in the bucket if one is given. A
/// filtered page reads ids and statuses a chunk at a time and looks through at most
/// [`SCAN_BUDGET`] messages, so a rare status in a large batch cannot make it slow.
async fn messages_page(
    store: &dyn Store,
    uid: &str,
    bucket: Option<Bucket>,
    after: Option<&str>,
) -> crate::store::StoreResult<MessagePage> {
    let Some(bucket) = bucket else {
        let messages = store.batch_messages(uid, after, PAGE).await?;
        let next = (messages.len() == PAGE)
            .then(|| messages.last().map(|m| m.id.clone()))
            .flatten();
        return Ok(MessagePage {
            messages,
            next,
            budget_spent: false,
        });
    };
    let mut cursor = after.map(str::to_owned);
    let mut ids = Vec::new();
    let mut scanned = 0;
    let mut exhausted = false;
    while ids.len() < PAGE && scanned < SCAN_BUDGET {
        let chunk = store
            .batch_message_statuses(uid, cursor.as_deref(), SCAN_CHUNK)
            .await?;
        exhausted = chunk.len() < SCAN_CHUNK;
        for (id, status) in chunk {
            scanned += 1;
            cursor = Some(id.clone());
            if status.bucket() == bucket {
                ids.push(id);
                if ids.len() == PAGE {
                    break;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    let mut messages = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(m) = store.message(id).await? {
            messages.push(m);
        }
    }
    let full = ids.len() == PAGE;
    let budget_spent = !full && !exhausted;
    let next = if full || budget_spent { cursor } else { None };
    Ok(MessagePage {
        messages,
        next,
        budget_spent,
    })
}

/// `GET /ui/batches/{uid}/messages.csv`: the API's CSV, for a signed-in browser.
pub(super) async fn csv(
    State(ui): State<Ui>,
    Path(uid): Path<String>,
) -> Result<Response, ApiError> {
    crate::http::csv::download(
        ui.store.as_ref(),
        &uid,
        Sheet::Messages,
        &ui.campaign.pricing,
    )
    .await
}

/// `GET /ui/batches/{uid}/replies.csv`: the API's CSV of replies, for a signed-in browser.
pub(super) async fn replies_csv(
    State(ui): State<Ui>,
    Path(uid): Path<String>,
) -> Result<Response, ApiError> {
    crate::http::csv::download(
        ui.store.as_ref(),
        &uid,
        Sheet::Replies,
        &ui.campaign.pricing,
    )
    .await
}

/// `GET /ui/batches/{uid}/unconfirmed.csv`: the API's CSV of unconfirmed sends.
pub(super) async fn unconfirmed_csv(
    State(ui): State<Ui>,
    Path(uid): Path<String>,
) -> Result<Response, ApiError> {
    let sheet = Sheet::Unconfirmed(ui.campaign.cutoff(Utc::now()));
    crate::http::csv::download(ui.store.as_ref(), &uid, sheet, &ui.campaign.pricing).await
}
