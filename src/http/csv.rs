//! The CSV downloads of a batch: its messages (`messages.csv`), the customers' replies
//! to them (`replies.csv`) and its listed sends with no status report
//! (`unconfirmed.csv`). The API, the dashboard and `innohook batch --csv`
//! write the same files.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::ApiError;
use super::api::read_failed;
use crate::campaign::PricingConfig;
use crate::campaign::sends::Sent;
use crate::event::tracking::Message;
use crate::store::{Inbound, InboundQuery, Store};

/// Rows read from the store at a time while a CSV is written.
const CSV_PAGE: usize = 1000;

/// Which of a batch's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sheet {
    /// `batch-UID-unconfirmed.csv`: its listed sends with no status report, sent before
    /// this time, by message id.
    Unconfirmed(DateTime<Utc>),
    /// `batch-UID.csv`: its messages, one row each, by message id.
    Messages,
    /// `batch-UID-replies.csv`: the inbound messages answering or reacting to its
    /// messages, the latest first.
    Replies,
}

/// The columns of `messages.csv`.
const MESSAGES_HEADER: [&str; 14] = [
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
    "category",
    "estimatedPrice",
];

/// One message as a row of `messages.csv`: its conversation's category, and with a
/// `[pricing]` table the estimated price of it.
fn message_row(m: &Message, pricing: &PricingConfig) -> [String; 14] {
    let at = |t: Option<DateTime<Utc>>| t.map(|t| stamp(&t)).unwrap_or_default();
    let (code, text) = m
        .error
        .as_ref()
        .map(|e| (e.code.clone(), e.message.clone().unwrap_or_default()))
        .unwrap_or_default();
    let category = m.category();
    [
        m.id.clone(),
        m.wamid.clone(),
        m.send_phone.clone(),
        m.status.as_str().to_owned(),
        at(m.reached(&crate::event::Status::Delivered)),
        at(m.reached(&crate::event::Status::Read)),
        at(m.failed_at()),
        code,
        text,
        m.conflict.to_string(),
        stamp(&m.first_event_at),
        stamp(&m.last_event_at),
        category
            .as_ref()
            .map(|(c, _)| c.to_string())
            .unwrap_or_default(),
        category
            .and_then(|(c, prefix)| pricing.price(c, &prefix))
            .map(|p| p.to_string())
            .unwrap_or_default(),
    ]
    .map(spreadsheet_safe)
}

/// A time as the CSV files write it: RFC 3339 with milliseconds, in `[ui] timezone` when
/// downloaded from the dashboard (its offset says which), in UTC from the API.
fn stamp(at: &DateTime<Utc>) -> String {
    at.with_timezone(&super::ui::zone())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A cell a spreadsheet shows as text. A sender controls most cells, and one beginning
/// with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a formula when the file
/// is opened (OWASP, CSV injection): such a cell gets a leading `'`. A plain number stays
/// as it is (`+6512345678`, `-131026`): a spreadsheet reads it as a number, not a formula.
fn spreadsheet_safe(cell: String) -> String {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_plain_number(&cell) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// `[+-]digits[.digits]`.
fn is_plain_number(cell: &str) -> bool {
    let unsigned = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction)
}

/// The columns of `replies.csv`.
const REPLIES_HEADER: [&str; 10] = [
    "wamid",
    "messageId",
    "from",
    "to",
    "sentAt",
    "type",
    "content",
    "mediaLink",
    "replyToWamid",
    "receivedAt",
];

/// One inbound message as a row of `replies.csv`.
fn reply_row(i: &Inbound) -> [String; 10] {
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    [
        i.wamid.clone(),
        text(&i.id),
        i.from.clone(),
        text(&i.to),
        stamp(&i.sent_at),
        i.content_type.clone(),
        i.summary.clone(),
        text(&i.media_link),
        text(&i.reply_to),
        stamp(&i.received_at),
    ]
    .map(spreadsheet_safe)
}

/// The columns of `unconfirmed.csv`: the send list's own.
const SENDS_HEADER: [&str; 5] = ["messageId", "phone", "uid", "sentAt", "template"];

/// One listed send as a row of `unconfirmed.csv`.
fn send_row(s: &Sent) -> [String; 5] {
    [
        s.id.clone(),
        s.phone.clone(),
        s.uid.clone().unwrap_or_default(),
        stamp(&s.sent_at),
        s.template.clone().unwrap_or_default(),
    ]
    .map(spreadsheet_safe)
}

/// The download's file name, `batch-UID.csv` (`batch-UID-replies.csv`), with everything
/// in the uid but ASCII letters, digits, `-`, `_` and `.` made `_` (a header value cannot
/// hold a control character, and a quote or a slash would change the name), at most 100
/// of them.
fn file_name(uid: &str, sheet: Sheet) -> String {
    let safe: String = uid
        .chars()
        .take(100)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    match sheet {
        Sheet::Messages => format!("batch-{safe}.csv"),
        Sheet::Replies => format!("batch-{safe}-replies.csv"),
        Sheet::Unconfirmed(_) => format!("batch-{safe}-unconfirmed.csv"),
    }
}

/// One of a batch's files (`None`: no such batch).
pub async fn batch_csv_bytes(
    store: &dyn Store,
    uid: &str,
    sheet: Sheet,
    pricing: &PricingConfig,
) -> Result<Option<Vec<u8>>, ApiError> {
    let known = store.batch(uid).await.map_err(read_failed)?.is_some()
        || store
            .send_figures(uid, Utc::now())
            .await
            .map_err(read_failed)?
            .listed
            > 0;
    if !known {
        return Ok(None);
    }
    let mut out = csv::Writer::from_writer(Vec::new());
    let written = |r: csv::Result<()>| {
        r.map_err(|e| {
            tracing::error!(error = %e, "Could not write the CSV.");
            ApiError::Internal
        })
    };
    match sheet {
        Sheet::Messages => {
            written(out.write_record(MESSAGES_HEADER))?;
            let mut after: Option<String> = None;
            loop {
                let page = store
                    .batch_messages(uid, after.as_deref(), CSV_PAGE)
                    .await
                    .map_err(read_failed)?;
                for m in &page {
                    written(out.write_record(message_row(m, pricing)))?;
                }
                match page.last() {
                    Some(last) if page.len() == CSV_PAGE => after = Some(last.id.clone()),
                    _ => break,
                }
            }
        }
        Sheet::Replies => {
            written(out.write_record(REPLIES_HEADER))?;
            let mut query = InboundQuery {
                uid: Some(uid.to_owned()),
                limit: CSV_PAGE,
                ..Default::default()
            };
            loop {
                let page = store.inbound_page(&query).await.map_err(read_failed)?;
                for i in &page {
                    written(out.write_record(reply_row(i)))?;
                }
                match page.last() {
                    Some(last) if page.len() == CSV_PAGE => query.before = Some(last.seq),
                    _ => break,
                }
            }
        }
        Sheet::Unconfirmed(cutoff) => {
            written(out.write_record(SENDS_HEADER))?;
            let mut after: Option<String> = None;
            loop {
                let page = store
                    .unconfirmed_sends(uid, cutoff, after.as_deref(), CSV_PAGE)
                    .await
                    .map_err(read_failed)?;
                for s in &page {
                    written(out.write_record(send_row(s)))?;
                }
                match page.last() {
                    Some(last) if page.len() == CSV_PAGE => after = Some(last.id.clone()),
                    _ => break,
                }
            }
        }
    }
    let csv = out.into_inner().map_err(|e| {
        tracing::error!(error = %e, "Could not write the CSV.");
        ApiError::Internal
    })?;
    Ok(Some(csv))
}

/// One of a batch's files as a download; the API and the dashboard offer the same.
pub(super) async fn download(
    store: &dyn Store,
    uid: &str,
    sheet: Sheet,
    pricing: &PricingConfig,
) -> Result<Response, ApiError> {
    let Some(csv) = batch_csv_bytes(store, uid, sheet, pricing).await? else {
        return Err(ApiError::Missing(format!(
            "No message of batch {uid} has been received."
        )));
    };
    let disposition = format!("attachment; filename=\"{}\"", file_name(uid, sheet));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        csv,
    )
        .into_response())
}

/// The columns of the daily report's CSV.
const DAILY_HEADER: [&str; 8] = [
    "date",
    "timezone",
    "sent",
    "reached",
    "read",
    "failed",
    "replies",
    "topErrors",
];

/// The daily report as CSV, one row a day, oldest first; `topErrors` as `code:messages`
/// separated by spaces.
pub fn daily(report: &crate::campaign::daily::DailyReport) -> Result<Response, ApiError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| {
        tracing::error!(error = %e, "Could not write the CSV.");
        ApiError::Internal
    };
    out.write_record(DAILY_HEADER).map_err(failed)?;
    for d in &report.days {
        let errors: Vec<String> = d
            .top_errors
            .iter()
            .map(|e| format!("{}:{}", e.code, e.messages))
            .collect();
        let row = [
            d.date.clone(),
            report.timezone.clone(),
            d.sent.to_string(),
            d.reached.to_string(),
            d.read.to_string(),
            d.failed.to_string(),
            d.replies.to_string(),
            errors.join(" "),
        ];
        out.write_record(row.map(spreadsheet_safe))
            .map_err(failed)?;
    }
    let csv = out
        .into_inner()
        .map_err(|e| failed(e.into_error().into()))?;
    let name = format!("daily-{}-{}.csv", report.from, report.to);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        csv,
    )
        .into_response())
}
