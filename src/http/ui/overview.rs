//! `GET /ui/`: the last 24 hours at a glance (pushes by hour and status; accepted,
//! duplicate and rejected), each sink's health, the store's readiness, recent batches;
//! and, above all, the templates someone must look at.

use std::time::Instant;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;

use super::batches::BatchRow;
use super::chart::{self, Column, Drawn, STATUS_SERIES, Series};
use super::dead_letters::Replay;
use super::session::Session;
use super::templates::{TemplateRow, alarms};
use super::{Chrome, Ui, read_failed, render, thousands, when};
use crate::event::tracking::{hour_of, hour_start};
use crate::event::{Bucket, Status};
use crate::http::ApiError;
use crate::store::{BatchQuery, Counted, HourCount, SinkState};

/// Which series an accepted push of this status (none: another event type) is in.
fn series_of(status: &Option<Status>) -> usize {
    match status.as_ref().map(Status::bucket) {
        Some(Bucket::Delivered) => 0,
        Some(Bucket::Read) => 1,
        Some(Bucket::Failed) => 2,
        Some(Bucket::Other) => 3,
        None => 4,
    }
}

/// One hour of pushes.
#[derive(Default, Clone)]
struct Hour {
    accepted: [i64; 5],
    duplicates: i64,
    rejected: i64,
}

struct HourRow {
    hour: String,
    accepted: String,
    by_series: Vec<String>,
    duplicates: String,
    rejected: String,
}

struct SinkRow {
    name: String,
    kind: &'static str,
    position: String,
    behind: String,
    state: String,
    state_class: &'static str,
    last_error: String,
    dead_letters: String,
    replay: Option<Replay>,
}

#[derive(Template)]
#[template(path = "ui/overview.html")]
struct Overview {
    chrome: Chrome,
    ready: bool,
    store_line: String,
    accepted: String,
    duplicates: String,
    rejected: String,
    dead_letters: String,
    chart: Drawn,
    series: &'static [Series],
    hours: Vec<HourRow>,
    sinks: Vec<SinkRow>,
    batches: Vec<BatchRow>,
    /// Templates rejected, paused, disabled or of quality RED, until a later event says
    /// otherwise.
    alarms: Vec<TemplateRow>,
}

pub(super) async fn page(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let first_hour = hour_of(&now) - 23;
    let head = *ui.store.head().borrow();
    let probe = async {
        let started = Instant::now();
        let ready = ui.store.probe().await;
        (ready, started.elapsed())
    };
    let recent = BatchQuery {
        limit: 5,
        ..BatchQuery::default()
    };
    let ((ready, took), counts, states, batches, templates) = tokio::join!(
        probe,
        ui.store.event_counts(hour_start(first_hour)),
        ui.store.sink_states(),
        ui.store.recent_batches(&recent),
        ui.store.templates(),
    );
    let hours = by_hour(&counts.map_err(read_failed)?, first_hour);
    let total = hours.iter().fold(Hour::default(), |mut t, h| {
        for (t, n) in t.accepted.iter_mut().zip(h.accepted) {
            *t += n;
        }
        t.duplicates += h.duplicates;
        t.rejected += h.rejected;
        t
    });
    let columns: Vec<Column> = hours
        .iter()
        .enumerate()
        .map(|(i, h)| Column {
            at: hour_start(first_hour + i as i64),
            values: h.accepted.to_vec(),
        })
        .collect();
    let states = states.map_err(read_failed)?;
    let sinks = sink_rows(&ui.sinks, &states, head);
    let store_line = match &ready {
        Ok(()) => format!(
            "Ready: {} took a write in {} ms. Latest event #{}.",
            ui.store_description,
            took.as_millis(),
            thousands(head)
        ),
        Err(e) => {
            tracing::warn!(error = %e, "Dashboard: the store cannot commit.");
            format!(
                "Not ready: {} cannot take a write right now ({e}).",
                ui.store_description
            )
        }
    };
    let mut chrome = Chrome::new(&session, "overview");
    chrome.refresh = 30;
    render(
        StatusCode::OK,
        &Overview {
            chrome,
            ready: ready.is_ok(),
            store_line,
            accepted: thousands(total.accepted.iter().sum()),
            duplicates: thousands(total.duplicates),
            rejected: thousands(total.rejected),
            dead_letters: thousands(states.iter().map(|s| s.dead_letters).sum()),
            chart: chart::stacked_both(
                &columns,
                &STATUS_SERIES,
                "%H:00",
                "Accepted events per hour, last 24 hours",
            ),
            series: &STATUS_SERIES,
            hours: hours
                .iter()
                .enumerate()
                .rev()
                .map(|(i, h)| HourRow {
                    hour: hour_start(first_hour + i as i64)
                        .format("%Y-%m-%d %H:00")
                        .to_string(),
                    accepted: thousands(h.accepted.iter().sum()),
                    by_series: h.accepted.iter().map(|n| thousands(*n)).collect(),
                    duplicates: thousands(h.duplicates),
                    rejected: thousands(h.rejected),
                })
                .collect(),
            sinks,
            alarms: alarms(&templates.map_err(read_failed)?),
            batches: batches
                .map_err(read_failed)?
                .iter()
                .map(BatchRow::from)
                .collect(),
        },
    )
}

/// The 24 hours from `first_hour` on, with what the store counted in each.
fn by_hour(counts: &[HourCount], first_hour: i64) -> Vec<Hour> {
    let mut hours = vec![Hour::default(); 24];
    for c in counts {
        let Some(h) = usize::try_from(hour_of(&c.hour) - first_hour)
            .ok()
            .and_then(|i| hours.get_mut(i))
        else {
            continue;
        };
        match c.outcome {
            Counted::Accepted => h.accepted[series_of(&c.status)] += c.events,
            Counted::Duplicate => h.duplicates += c.events,
            Counted::Rejected => h.rejected += c.events,
        }
    }
    hours
}

/// The configured sinks, then any other the store knows (configured on another replica,
/// or before), with their state.
fn sink_rows(
    configured: &[(String, &'static str)],
    states: &[SinkState],
    head: i64,
) -> Vec<SinkRow> {
    let others = states
        .iter()
        .filter(|s| !configured.iter().any(|(name, _)| *name == s.sink))
        .map(|s| (s.sink.clone(), "not configured here"));
    configured
        .iter()
        .cloned()
        .chain(others)
        .map(|(name, kind)| {
            let state = states.iter().find(|s| s.sink == name);
            sink_row(name, kind, state, head)
        })
        .collect()
}

fn sink_row(name: String, kind: &'static str, s: Option<&SinkState>, head: i64) -> SinkRow {
    let default = SinkState::default();
    let s = s.unwrap_or(&default);
    let (state, state_class) = match (&s.failing_since, s.cursor) {
        (Some(since), _) => (format!("Failing since {}", when(since)), "bad"),
        (None, Some(_)) => ("Delivering".to_owned(), "ok"),
        (None, None) => ("No delivery recorded yet".to_owned(), "idle"),
    };
    let last_error = match (&s.last_error, &s.last_error_at) {
        (Some(e), Some(at)) => format!("{}: {e}", when(at)),
        _ => String::new(),
    };
    SinkRow {
        replay: (s.dead_letters > 0).then(|| Replay::sink(&name, s.dead_letters)),
        name,
        kind,
        position: s
            .cursor
            .map_or("–".to_owned(), |c| format!("#{}", thousands(c))),
        // A sink without a recorded position starts from the first event.
        // Not delivered yet: after its position, and set aside before it.
        behind: thousands((head - s.cursor.unwrap_or(0)).max(0) + s.parked),
        state,
        state_class,
        last_error,
        dead_letters: thousands(s.dead_letters),
    }
}
