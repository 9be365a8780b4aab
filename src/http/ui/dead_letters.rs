//! `GET /ui/dead-letters`: events sinks gave up on (with the event, sink and last error)
//! and rejected pushes (code, field, message and the body as received); and the replay
//! buttons, `POST /ui/dead-letters/{id}/replay` for one and `POST /ui/sinks/{sink}/replay`
//! for all of a sink's, each answered with the page again, saying what was done.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::session::Session;
use super::{
    Chrome, CsrfForm, Ui, check_csrf, encode, message_href, read_failed, render, thousands, when,
};
use crate::http::ApiError;
use crate::store::{DeadLetterEntry, DeadLetterQuery, DeadLetterSource};

/// Dead letters per page, of each kind.
const PAGE: usize = 25;

#[derive(serde::Deserialize)]
pub(super) struct PageQuery {
    sink_before: Option<i64>,
    http_before: Option<i64>,
    /// What the last replay did (see the handlers below).
    replayed: Option<i64>,
    not_replayed: Option<i64>,
    sink: Option<String>,
    n: Option<usize>,
}

struct SinkSummary {
    name: String,
    waiting: String,
    replay: Replay,
}

/// A replay button: its form's action, the question it asks first, its label.
pub(super) struct Replay {
    pub action: String,
    pub question: String,
    pub label: String,
}

impl Replay {
    /// Replays every waiting dead letter of `sink` (`waiting` of them).
    pub(super) fn sink(sink: &str, waiting: i64) -> Self {
        let n = thousands(waiting);
        Self {
            action: format!("/ui/sinks/{}/replay", encode(sink)),
            question: format!("Put the {n} dead letters of sink {sink} back in its queue?"),
            label: format!("Replay all {n}"),
        }
    }

    fn one(id: i64, sink: &str) -> Self {
        Self {
            action: format!("/ui/dead-letters/{id}/replay"),
            question: format!("Put dead letter #{id} back in the queue of sink {sink}?"),
            label: "Replay".to_owned(),
        }
    }
}

struct SinkLetter {
    id: i64,
    at: String,
    sink: String,
    event: String,
    event_href: Option<String>,
    body: String,
    code: String,
    reason: String,
    state: String,
    state_class: &'static str,
    replay: Option<Replay>,
}

struct Rejected {
    id: i64,
    at: String,
    code: String,
    field: String,
    reason: String,
    body: String,
    not_utf8: bool,
}

#[derive(Template)]
#[template(path = "ui/dead_letters.html")]
struct DeadLetters {
    chrome: Chrome,
    flash: Option<(bool, String)>,
    sinks: Vec<SinkSummary>,
    sink_rows: Vec<SinkLetter>,
    sink_next: Option<String>,
    http_rows: Vec<Rejected>,
    http_next: Option<String>,
}

pub(super) async fn page(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let query = |source, before| DeadLetterQuery {
        source,
        before,
        limit: PAGE,
    };
    let (sinks, http) = (
        query(DeadLetterSource::Sink, q.sink_before),
        query(DeadLetterSource::Http, q.http_before),
    );
    let (sink_page, http_page, states) = tokio::join!(
        ui.store.dead_letter_page(&sinks),
        ui.store.dead_letter_page(&http),
        ui.store.sink_states(),
    );
    let (sink_page, http_page) = (
        sink_page.map_err(read_failed)?,
        http_page.map_err(read_failed)?,
    );
    let next = |page: &[DeadLetterEntry], key: &str, other: Option<i64>| {
        let last = page.last().filter(|_| page.len() == PAGE)?;
        let mut href = format!("/ui/dead-letters?{key}={}", last.letter.id);
        if let Some(other) = other {
            let other_key = if key == "sink_before" {
                "http_before"
            } else {
                "sink_before"
            };
            href.push_str(&format!("&{other_key}={other}"));
        }
        Some(href)
    };
    let flash = match (q.replayed, q.not_replayed, &q.sink) {
        (Some(id), _, _) => Some((
            true,
            format!(
                "Dead letter #{id} is back in its sink's queue; the sink delivers it within a second or two. Refresh to see it delivered."
            ),
        )),
        (_, Some(id), _) => Some((
            false,
            format!(
                "Dead letter #{id} was not replayed: it is not a sink's dead letter waiting for a replay (already replayed?)."
            ),
        )),
        (_, _, Some(sink)) => Some((
            true,
            format!(
                "{} dead letters of sink {sink} are back in its queue.",
                thousands(q.n.unwrap_or(0) as i64)
            ),
        )),
        _ => None,
    };
    render(
        StatusCode::OK,
        &DeadLetters {
            chrome: Chrome::new(&session, "dead-letters"),
            flash,
            sinks: states
                .map_err(read_failed)?
                .into_iter()
                .filter(|s| s.dead_letters > 0)
                .map(|s| SinkSummary {
                    replay: Replay::sink(&s.sink, s.dead_letters),
                    waiting: thousands(s.dead_letters),
                    name: s.sink,
                })
                .collect(),
            sink_next: next(&sink_page, "sink_before", q.http_before),
            http_next: next(&http_page, "http_before", q.sink_before),
            sink_rows: sink_page.iter().map(sink_letter).collect(),
            http_rows: http_page.iter().map(rejected).collect(),
        },
    )
}

fn sink_letter(d: &DeadLetterEntry) -> SinkLetter {
    let l = &d.letter;
    let (event, event_href, body) = match &d.event {
        Some(e) => {
            let mut about = vec![format!("#{}", e.seq), e.event_type.clone()];
            if let Some(id) = &e.message_id {
                about.push(format!("message {id}"));
            }
            if let Some(s) = &e.status {
                about.push(s.as_str().to_owned());
            }
            (
                about.join(" · "),
                e.message_id.as_deref().map(message_href),
                String::from_utf8_lossy(&e.body).into_owned(),
            )
        }
        None => (
            l.event_seq.map(|s| format!("#{s}")).unwrap_or_default(),
            None,
            String::new(),
        ),
    };
    let (state, state_class) = match (&l.replayed_at, d.queued) {
        (None, _) => ("Waiting".to_owned(), "bad"),
        (Some(at), true) => (format!("Replay queued at {}", when(at)), "idle"),
        (Some(at), false) => (format!("Replayed at {}", when(at)), "ok"),
    };
    let sink = l.sink.clone().unwrap_or_default();
    SinkLetter {
        id: l.id,
        at: when(&l.created_at),
        replay: l.replayed_at.is_none().then(|| Replay::one(l.id, &sink)),
        sink,
        event,
        event_href,
        body,
        code: l.code.clone(),
        reason: l.reason.clone(),
        state,
        state_class,
    }
}

fn rejected(d: &DeadLetterEntry) -> Rejected {
    let l = &d.letter;
    Rejected {
        id: l.id,
        at: when(&l.created_at),
        code: l.code.clone(),
        field: l.field.clone().unwrap_or_default(),
        reason: l.reason.clone(),
        body: l.body.clone().unwrap_or_default(),
        not_utf8: l.body_is_not_utf8,
    }
}

/// `POST /ui/dead-letters/{id}/replay`: one dead letter back in its sink's queue.
pub(super) async fn replay_one(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    check_csrf(&session, &form.csrf)?;
    let replayed = ui.store.replay_dead_letter(id).await.map_err(read_failed)?;
    if replayed {
        tracing::info!(id, "Dashboard: a dead letter was replayed.");
    }
    let key = if replayed { "replayed" } else { "not_replayed" };
    Ok(Redirect::to(&format!("/ui/dead-letters?{key}={id}")).into_response())
}

/// `POST /ui/sinks/{sink}/replay`: all of a sink's dead letters back in its queue.
pub(super) async fn replay_sink(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Path(sink): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    check_csrf(&session, &form.csrf)?;
    let n = ui.store.replay(Some(&sink)).await.map_err(read_failed)?;
    tracing::info!(sink, n, "Dashboard: a sink's dead letters were replayed.");
    Ok(Redirect::to(&format!("/ui/dead-letters?sink={}&n={n}", encode(&sink))).into_response())
}
