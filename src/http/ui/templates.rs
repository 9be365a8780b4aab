//! `GET /ui/templates`: every template InnoPaaS told innohook about, with its status,
//! quality and category as its latest events leave them, those someone must look at
//! first; `GET /ui/templates/{id}`: one template and its history. The overview's banner
//! ([`alarms`]) names the templates in trouble until a later event supersedes it.

use askama::Template as Page;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::batches::Notice;
use super::session::Session;
use super::{Chrome, Ui, encode, read_failed, render, when};
use crate::http::ApiError;
use crate::store::{Template, TemplateEvent, TemplateEventKind};

/// A template as a row of the list (and the head of its page).
pub(super) struct TemplateRow {
    pub id: String,
    pub href: String,
    pub name: String,
    pub language: String,
    pub category: String,
    pub status: String,
    pub status_class: &'static str,
    pub reason: String,
    pub quality: String,
    pub quality_class: &'static str,
    pub updated: String,
    pub alarming: bool,
    /// What is wrong, for the banner: `PAUSED`, `quality RED`, or both.
    pub trouble: String,
}

fn href(id: &str) -> String {
    format!("/ui/templates/{}", encode(id))
}

fn status_class(status: Option<&str>) -> &'static str {
    use crate::event::TemplateStatus;
    match status.map(TemplateStatus::parse) {
        Some(s) if s.is_alarming() => "st-failed",
        Some(TemplateStatus::Approved) => "st-read",
        Some(TemplateStatus::Pending) => "st-delivered",
        _ => "st-other",
    }
}

fn quality_class(quality: Option<&str>) -> &'static str {
    use crate::event::QualityScore;
    match quality.map(QualityScore::parse) {
        Some(QualityScore::Red) => "st-failed",
        Some(QualityScore::Yellow) => "st-yellow",
        Some(QualityScore::Green) => "st-read",
        _ => "st-other",
    }
}

impl From<&Template> for TemplateRow {
    fn from(t: &Template) -> Self {
        use crate::event::{QualityScore, TemplateStatus};
        let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "–".to_owned());
        let mut trouble = Vec::new();
        if let Some(s) = t
            .status
            .as_deref()
            .filter(|s| TemplateStatus::parse(s).is_alarming())
        {
            trouble.push(s.to_owned());
        }
        if let Some(q) = t
            .quality
            .as_deref()
            .filter(|q| QualityScore::parse(q).is_alarming())
        {
            trouble.push(format!("quality {q}"));
        }
        Self {
            id: t.id.clone(),
            href: href(&t.id),
            name: dash(&t.name),
            language: dash(&t.language),
            category: dash(&t.category),
            status: dash(&t.status),
            status_class: status_class(t.status.as_deref()),
            reason: t.reason.clone().unwrap_or_default(),
            quality: dash(&t.quality),
            quality_class: quality_class(t.quality.as_deref()),
            updated: when(&t.updated_at),
            alarming: t.alarming,
            trouble: trouble.join(", "),
        }
    }
}

#[derive(Page)]
#[template(path = "ui/templates.html")]
struct TemplateList {
    chrome: Chrome,
    rows: Vec<TemplateRow>,
}

pub(super) async fn list(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
) -> Result<Response, ApiError> {
    let all = ui.store.templates().await.map_err(read_failed)?;
    render(
        StatusCode::OK,
        &TemplateList {
            chrome: Chrome::new(&session, "templates"),
            rows: all.iter().map(TemplateRow::from).collect(),
        },
    )
}

struct HistoryRow {
    at: String,
    received: String,
    what: &'static str,
    value: String,
    class: &'static str,
    previous: String,
    reason: String,
}

impl From<&TemplateEvent> for HistoryRow {
    fn from(e: &TemplateEvent) -> Self {
        let (what, class) = match e.kind {
            TemplateEventKind::Status => ("Status", status_class(e.value.as_deref())),
            TemplateEventKind::Quality => ("Quality", quality_class(e.value.as_deref())),
            TemplateEventKind::Category => ("Category", "st-other"),
        };
        Self {
            at: when(&e.event_time),
            received: when(&e.received_at),
            what,
            value: e.value.clone().unwrap_or_else(|| "–".to_owned()),
            class,
            previous: e.previous.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
        }
    }
}

#[derive(Page)]
#[template(path = "ui/template.html")]
struct TemplatePage {
    chrome: Chrome,
    t: TemplateRow,
    history: Vec<HistoryRow>,
}

pub(super) async fn page(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let chrome = Chrome::new(&session, "templates");
    let Some((t, history)) = ui.store.template(&id).await.map_err(read_failed)? else {
        return render(
            StatusCode::NOT_FOUND,
            &Notice {
                chrome,
                title: "No such template".into(),
                text: format!("No event about template {id} has been received."),
            },
        );
    };
    render(
        StatusCode::OK,
        &TemplatePage {
            chrome,
            t: TemplateRow::from(&t),
            history: history.iter().map(HistoryRow::from).collect(),
        },
    )
}

/// The templates someone must look at now, for the overview's banner.
pub(super) fn alarms(all: &[Template]) -> Vec<TemplateRow> {
    all.iter()
        .filter(|t| t.alarming)
        .map(TemplateRow::from)
        .collect()
}
