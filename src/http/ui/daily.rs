//! `GET /ui/reports/daily`: the daily report across batches, in `[ui] timezone`, as a
//! chart and a table, with its CSV.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Days, NaiveDate};

use super::chart::{self, Column, Drawn, Series};
use super::session::Session;
use super::{Chrome, Ui, read_failed, render, thousands};
use crate::campaign::daily;
use crate::http::ApiError;

/// The series of the daily chart, bottom up.
const SERIES: [Series; 3] = [
    Series {
        name: "Reached",
        class: "s-delivered",
    },
    Series {
        name: "Failed",
        class: "s-failed",
    },
    Series {
        name: "Replies",
        class: "s-read",
    },
];

/// Days shown when no range is asked for: the last 30, today included.
const DEFAULT_DAYS: u64 = 30;

#[derive(serde::Deserialize)]
pub(super) struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

struct DayRow {
    date: String,
    sent: String,
    reached: String,
    read: String,
    failed: String,
    replies: String,
    errors: String,
}

#[derive(Template)]
#[template(path = "ui/daily.html")]
struct DailyPage {
    chrome: Chrome,
    from: String,
    to: String,
    error: Option<String>,
    csv_href: String,
    chart: Option<Drawn>,
    series: &'static [Series],
    rows: Vec<DayRow>,
}

/// The range asked for, or the last [`DEFAULT_DAYS`] days in the zone.
fn range(ui: &Ui, q: &RangeQuery) -> Result<(NaiveDate, NaiveDate), String> {
    let today = daily::date_in(ui.campaign.zone, &chrono::Utc::now());
    let default_from = today
        .checked_sub_days(Days::new(DEFAULT_DAYS - 1))
        .unwrap_or(today);
    let given = |v: &Option<String>, or: NaiveDate| {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .map_or_else(|| or.to_string(), str::to_owned)
    };
    daily::range(&given(&q.from, default_from), &given(&q.to, today))
}

pub(super) async fn page(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    let chrome = Chrome::new(&session, "daily");
    let (from, to) = match range(&ui, &q) {
        Ok(r) => r,
        Err(error) => {
            let page = DailyPage {
                chrome,
                from: q.from.unwrap_or_default(),
                to: q.to.unwrap_or_default(),
                error: Some(error),
                csv_href: String::new(),
                chart: None,
                series: &SERIES,
                rows: Vec::new(),
            };
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    let report = daily::report(ui.store.as_ref(), ui.campaign.zone, from, to)
        .await
        .map_err(read_failed)?;
    let columns: Vec<Column> = report
        .days
        .iter()
        .filter_map(|d| {
            let date = NaiveDate::parse_from_str(&d.date, "%Y-%m-%d").ok()?;
            Some(Column {
                // The local date, drawn as a date.
                at: date.and_hms_opt(0, 0, 0)?.and_utc(),
                values: vec![d.reached, d.failed, d.replies],
            })
        })
        .collect();
    let any = columns.iter().any(|c| c.values.iter().any(|v| *v != 0));
    let chart = any.then(|| chart::stacked_both(&columns, &SERIES, "%m-%d", "Messages by day"));
    let rows = report
        .days
        .iter()
        .rev()
        .map(|d| DayRow {
            date: d.date.clone(),
            sent: thousands(d.sent),
            reached: thousands(d.reached),
            read: thousands(d.read),
            failed: thousands(d.failed),
            replies: thousands(d.replies),
            errors: d
                .top_errors
                .iter()
                .map(|e| format!("{} ({})", e.code, thousands(e.messages)))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    render(
        StatusCode::OK,
        &DailyPage {
            chrome,
            csv_href: format!("/ui/reports/daily.csv?from={from}&to={to}"),
            from: from.to_string(),
            to: to.to_string(),
            error: None,
            chart,
            series: &SERIES,
            rows,
        },
    )
}

/// `GET /ui/reports/daily.csv`: the API's CSV of the report.
pub(super) async fn csv(
    State(ui): State<Ui>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    let (from, to) = range(&ui, &q).map_err(ApiError::BadQuery)?;
    let report = daily::report(ui.store.as_ref(), ui.campaign.zone, from, to)
        .await
        .map_err(read_failed)?;
    crate::http::csv::daily(&report)
}
