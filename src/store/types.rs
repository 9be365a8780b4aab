//! The store's data: what goes in and comes out of the contract, the same for every
//! backend.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::event::Status;
use crate::event::tracking::RecordedWarning;

/// Something the store could not do. Callers answer 503 (ingest) or 500 (queries).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store is closed")]
    Closed,
    /// The database failed (the backend's own message).
    #[error("{0}")]
    Backend(String),
    /// Another process took over the sink; its progress is no longer ours to record.
    #[error("the lease on sink {0} was taken over")]
    LeaseLost(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What became of an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored under this sequence number.
    Accepted { seq: i64 },
    /// Already stored; nothing new was written.
    Duplicate,
}

/// An accepted event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    /// When it was committed.
    pub received_at: DateTime<Utc>,
    pub event_id: String,
    pub event_type: String,
    /// body.id and body.status, for status events.
    pub message_id: Option<String>,
    pub status: Option<Status>,
    /// What was unexpected in it.
    pub warnings: Vec<RecordedWarning>,
    /// The request body, byte for byte.
    pub body: Bytes,
}

impl StoredEvent {
    /// A key unique to this stored event, and the same on every attempt, restart and
    /// replica: what a receiving system deduplicates on. For a message status
    /// `{body.id}:{status}` (one event per message and status is stored), for another
    /// event a digest of its envelope id and body; a digest too where body.id would not
    /// fit in a header.
    pub fn delivery_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = |parts: &[&[u8]]| {
            let mut h = Sha256::new();
            for p in parts {
                h.update(p);
                h.update([0]);
            }
            let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        };
        match (&self.message_id, &self.status) {
            (Some(m), Some(s)) => {
                let key = format!("{m}:{s}");
                let fits = key.len() <= 200 && key.bytes().all(|b| b.is_ascii_graphic());
                if fits {
                    key
                } else {
                    digest(&[m.as_bytes(), s.as_str().as_bytes()])
                }
            }
            _ => digest(&[self.event_id.as_bytes(), &self.body]),
        }
    }

    /// The body on one line, as received otherwise. A JSON string cannot hold a raw line
    /// break, so every one in a body lies between two tokens and becomes a space without
    /// changing what the body says: key order, numbers and escapes stay exactly as they
    /// came, including escapes a JSON value cannot hold (a lone surrogate such as
    /// `"\ud800"` in an undocumented field is accepted and kept).
    pub fn body_on_one_line(&self) -> std::borrow::Cow<'_, [u8]> {
        if self.body.iter().any(|&b| b == b'\n' || b == b'\r') {
            let spaced = self.body.iter().map(|&b| match b {
                b'\n' | b'\r' => b' ',
                b => b,
            });
            std::borrow::Cow::Owned(spaced.collect())
        } else {
            std::borrow::Cow::Borrowed(&self.body)
        }
    }
}

/// A dead letter, as `innohook dead-letters` prints it (one JSON object a line).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: i64,
    /// When it became a dead letter (for a sink's: its last attempt).
    #[serde(with = "crate::event::time_format")]
    pub created_at: DateTime<Utc>,
    pub source: DeadLetterSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_seq: Option<i64>,
    /// The undelivered event: envelope id, type, and body.id and status for a message
    /// status (a sink's dead letters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<EventSummary>,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Why: the rejection, or the sink's last error.
    pub reason: String,
    /// A sink's attempts, and when the first was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_time"
    )]
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// The body as received, as text (invalid UTF-8 replaced; then `bodyIsNotUtf8` is
    /// true): the rejected request's, or the undelivered event's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_is_not_utf8: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_time"
    )]
    pub replayed_at: Option<DateTime<Utc>>,
}

/// Which event a sink's dead letter is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    /// The envelope id.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

fn optional_time<S: serde::Serializer>(
    at: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => crate::event::time_format::serialize(at, s),
        None => s.serialize_none(),
    }
}

/// An event a sink gave up on.
#[derive(Debug, Clone)]
pub struct UndeliveredEvent {
    pub seq: i64,
    pub code: Undelivered,
    /// The last error.
    pub reason: String,
    pub attempts: u32,
    pub first_attempt_at: DateTime<Utc>,
}

/// An event a sink set aside to retry on its own while later events go on (sinks that
/// keep each message's order, not the global one): it failed while others got through,
/// or an earlier event of its message is set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    pub seq: i64,
    /// body.id, whose later events wait behind this one.
    pub message_id: Option<String>,
    /// Attempts so far (0: waiting behind an earlier event of its message).
    pub attempts: u32,
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// When to try it again (once it is first of its message).
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: String,
}

/// What a sink is done with, recorded in one commit by [`super::SinkLedger::sink_progress`].
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The sink is done with every event up to this seq.
    pub cursor: Option<i64>,
    /// Events it gave up on: they become dead letters.
    pub dead: Vec<UndeliveredEvent>,
    /// Replayed seqs it is done with: they leave its replay queue.
    pub replayed: Vec<i64>,
    /// Events set aside, or set aside again after another attempt.
    pub parked: Vec<ParkedEvent>,
    /// Parked seqs it is done with (delivered, or in `dead`).
    pub unparked: Vec<i64>,
}

/// The right to run one sink, and to record its progress, until it is taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkLease {
    pub sink: String,
    /// The fencing token: it rises with every claim that is not a renewal by the holder
    /// (a takeover, or a claim after a release), and progress under an older token than
    /// the sink's current one is refused.
    pub token: i64,
    /// When to claim it again (renewing it keeps the token).
    pub renew_at: std::time::Instant,
    /// Until when it is surely ours without a renewal (by this process's clock, counted
    /// from before the claim was sent, and short of the store's expiry: what the holder
    /// sent before then lands before another process can claim the sink). The holder
    /// stops delivering by then unless it renewed it.
    pub valid_until: std::time::Instant,
}

/// What the retention keeps (`None`: forever), and the sinks whose positions hold events.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    pub events: Option<std::time::Duration>,
    /// A message's status and a batch's summary, after their last event.
    pub messages: Option<std::time::Duration>,
    pub dead_letters: Option<std::time::Duration>,
    /// The configured sinks: an event stays until each of them is past it (a sink with no
    /// position yet holds every event).
    pub sinks: Vec<String>,
}

/// Where a pruning pass is, from one [`super::Admin::prune`] call to the next (the sweeps over
/// messages and batches go by key).
#[derive(Debug, Clone, Default)]
pub struct PruneState {
    pub messages_after: Option<String>,
    pub batches_after: Option<String>,
}

/// What a [`super::Admin::prune`] call removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pruned {
    pub events: u64,
    pub messages: u64,
    pub batches: u64,
    /// Customers' inbound messages (kept as long as messages).
    pub inbound: u64,
    /// Templates' events no longer their template's latest of their kind.
    pub templates: u64,
    /// Sends of the send list (kept as long as messages, from when they were imported).
    pub sends: u64,
    pub dead_letters: u64,
    /// The pass is complete: nothing more is due now.
    #[serde(skip)]
    pub done: bool,
    /// Sinks holding events past their retention, with the receipt time of the oldest
    /// event each still owes.
    #[serde(skip)]
    pub held_by: Vec<(String, DateTime<Utc>)>,
}

impl Pruned {
    /// What it counts, by table.
    pub fn tables(&self) -> [(&'static str, u64); 7] {
        [
            ("events", self.events),
            ("messages", self.messages),
            ("batches", self.batches),
            ("inbound", self.inbound),
            ("template_events", self.templates),
            ("sends", self.sends),
            ("dead_letters", self.dead_letters),
        ]
    }

    /// How many rows it counts in all.
    pub fn total(&self) -> u64 {
        self.tables().iter().map(|(_, n)| n).sum()
    }

    pub fn add(&mut self, other: &Pruned) {
        self.events += other.events;
        self.messages += other.messages;
        self.batches += other.batches;
        self.inbound += other.inbound;
        self.templates += other.templates;
        self.sends += other.sends;
        self.dead_letters += other.dead_letters;
    }
}

/// How large the store is, for metrics.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub size_bytes: u64,
    /// Free and total space of the filesystem the store is on, when the store knows it
    /// (not for a database elsewhere).
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    /// Rows per table (estimates where counting would be slow).
    pub rows: Vec<(&'static str, i64)>,
    pub oldest_event_at: Option<DateTime<Utc>>,
}

/// Which stored events `/api/events` wants.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only status events of this status (wire spelling).
    pub status: Option<String>,
    /// Only events received at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events after this seq.
    pub after: i64,
    pub limit: usize,
}

/// What became of pushes, as counted per hour in the store (see [`super::Queries::event_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counted {
    Accepted,
    Duplicate,
    /// Rejected with 400 (kept as a dead letter).
    Rejected,
}

impl Counted {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Accepted, Self::Duplicate, Self::Rejected]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

pub use crate::event::counted_status;

/// Pushes of one hour with one outcome and counted status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// The start of the hour (UTC) the store received them in.
    pub hour: DateTime<Utc>,
    pub outcome: Counted,
    /// The status pushed (as [`counted_status`] counts it: an undocumented one is
    /// `other`); `None` for other event types and rejections.
    pub status: Option<Status>,
    pub events: i64,
}

/// Most hours of a batch's timeline [`super::Queries::batch_timeline`] gives (90 days).
pub const TIMELINE_HOURS: i64 = 90 * 24;

/// A batch's status events in one hour of their eventTime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHour {
    pub hour: DateTime<Utc>,
    /// delivered, read, failed (with `SMECL:FAILED`), other.
    pub events: [i64; 4],
}

/// A batch's send list at a glance ([`super::Campaigns::send_figures`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendFigures {
    /// Sends listed with this uid.
    pub listed: i64,
    /// Of those, sends with no status report yet.
    pub no_status: i64,
    /// Of those, sends whose status reports put their message in this batch too.
    pub reported_here: i64,
    /// Of those, sends older than the cutoff.
    pub unconfirmed: i64,
    /// When the first and the last listed send was sent.
    pub first_sent_at: Option<DateTime<Utc>>,
    pub last_sent_at: Option<DateTime<Utc>>,
}

/// Which batches [`super::Queries::recent_batches`] wants: most recent last event first.
#[derive(Debug, Clone, Default)]
pub struct BatchQuery {
    /// Only uids starting with this.
    pub uid_prefix: Option<String>,
    /// Only batches after this one in that order: its last event time and uid.
    pub before: Option<(DateTime<Utc>, String)>,
    /// Only batches with an event in this span (from inclusive, to exclusive): their first
    /// event before its end, their last at or after its start.
    pub active: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub limit: usize,
}

/// Why a sink gave an event up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// The target refused it for good (a permanent failure).
    RejectedBySink,
    /// Every attempt the retry policy allows failed.
    RetriesExhausted,
}

impl Undelivered {
    /// The dead letter's code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RejectedBySink => "rejected_by_sink",
            Self::RetriesExhausted => "retries_exhausted",
        }
    }

    /// Why an event that failed with an error `retryable` or not is given up.
    pub fn after(retryable: bool) -> Self {
        if retryable {
            Self::RetriesExhausted
        } else {
            Self::RejectedBySink
        }
    }
}

/// Where a dead letter comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterSource {
    /// A request that was rejected (400).
    Http,
    /// An event a sink could not deliver.
    Sink,
}

impl DeadLetterSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Sink => "sink",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Http, Self::Sink]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

impl PartialEq<&str> for DeadLetterSource {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Which dead letters [`super::Queries::dead_letter_page`] wants: newest first.
#[derive(Debug, Clone)]
pub struct DeadLetterQuery {
    pub source: DeadLetterSource,
    /// Only ids below this.
    pub before: Option<i64>,
    pub limit: usize,
}

/// A dead letter with what a person needs to decide about it.
#[derive(Debug, Clone)]
pub struct DeadLetterEntry {
    pub letter: DeadLetter,
    /// A sink's dead letter: the event it could not deliver.
    pub event: Option<StoredEvent>,
    /// Replayed and still in its sink's replay queue (not delivered yet).
    pub queued: bool,
}

/// A sink as the store knows it, whichever process runs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkState {
    pub sink: String,
    /// The last seq it is done with (`None`: it never recorded progress).
    pub cursor: Option<i64>,
    /// Failing since then, until a delivery succeeds again.
    pub failing_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Its dead letters not replayed yet.
    pub dead_letters: i64,
    pub last_dead_letter_at: Option<DateTime<Utc>>,
    /// Events it set aside to retry on their own (and those waiting behind them).
    pub parked: i64,
}

/// A customer's inbound message, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inbound {
    /// The seq of the event that brought it.
    pub seq: i64,
    /// InnoPaaS's id (`body.id`), when it came with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub wamid: String,
    /// The customer's number.
    pub from: String,
    /// The business number it was sent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// When the customer sent it (`sendTime`; else the event's time).
    #[serde(with = "crate::event::time_format")]
    pub sent_at: DateTime<Utc>,
    /// `text`, `image`, `reaction`, … as InnoPaaS names it.
    pub content_type: String,
    /// The content in a line: the text, a media's type and caption, a choice's title, …
    pub summary: String,
    /// The wamid of the message it answers or reacts to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(with = "crate::event::time_format")]
    pub received_at: DateTime<Utc>,
    /// Its media's link (image, audio, video, document, sticker), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_link: Option<String>,
}

/// Which inbound messages [`super::Queries::inbound_page`] wants: newest first.
#[derive(Debug, Clone, Default)]
pub struct InboundQuery {
    /// Only from this number.
    pub from: Option<String>,
    /// Only replies to messages of this batch.
    pub uid: Option<String>,
    /// Only those sent at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only those stored before this seq.
    pub before: Option<i64>,
    pub limit: usize,
}

/// What a template event said of its template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateEventKind {
    /// Its review status (`whatsapp_template_status_updated`).
    Status,
    /// Its quality score (`message_template_quality_update`).
    Quality,
    /// Its category (`template_category_update`).
    Category,
}

impl TemplateEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Quality => "quality",
            Self::Category => "category",
        }
    }
    pub fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "status" => Self::Status,
            "quality" => Self::Quality,
            "category" => Self::Category,
            other => {
                return Err(StoreError::Backend(format!(
                    "template event of an unknown kind {other:?}"
                )));
            }
        })
    }
}

/// A template event, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateEvent {
    /// The seq of the event.
    pub seq: i64,
    pub template_id: String,
    pub kind: TemplateEventKind,
    /// The status, the new quality score or the new category, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The previous quality score or category, when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When InnoPaaS says it happened (`eventTime`; else when it was received).
    #[serde(with = "crate::event::time_format")]
    pub event_time: DateTime<Utc>,
    #[serde(with = "crate::event::time_format")]
    pub received_at: DateTime<Utc>,
}

/// A template as its events leave it: each of its status, quality and category is the
/// one of the latest event (by `eventTime`, then seq) that says it, whatever order they
/// arrived in.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Its review status, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why, when the latest status event says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(
        serialize_with = "optional_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub status_at: Option<DateTime<Utc>>,
    /// Its quality score, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(
        serialize_with = "optional_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub quality_at: Option<DateTime<Utc>>,
    /// Its latest event's time.
    #[serde(with = "crate::event::time_format")]
    pub updated_at: DateTime<Utc>,
    /// Someone must look: it is rejected, paused or disabled, or its quality is RED.
    pub alarming: bool,
}

impl Template {
    /// The templates `events` leave, each event applied in the order given (which must
    /// be by `eventTime`, then seq).
    pub fn fold(events: impl IntoIterator<Item = TemplateEvent>) -> Vec<Template> {
        let mut all: std::collections::BTreeMap<String, Template> = Default::default();
        for e in events {
            let t = all
                .entry(e.template_id.clone())
                .or_insert_with(|| Template {
                    id: e.template_id.clone(),
                    name: None,
                    language: None,
                    category: None,
                    status: None,
                    reason: None,
                    status_at: None,
                    quality: None,
                    quality_at: None,
                    updated_at: e.event_time,
                    alarming: false,
                });
            t.apply(e);
        }
        all.into_values().collect()
    }

    fn apply(&mut self, e: TemplateEvent) {
        use crate::event::{QualityScore, TemplateStatus};
        self.name = e.name.or(self.name.take());
        self.language = e.language.or(self.language.take());
        self.updated_at = self.updated_at.max(e.event_time);
        match e.kind {
            TemplateEventKind::Status => {
                self.category = e.category.or(self.category.take());
                self.status = e.value;
                self.reason = e.reason;
                self.status_at = Some(e.event_time);
            }
            TemplateEventKind::Quality => {
                self.quality = e.value;
                self.quality_at = Some(e.event_time);
            }
            TemplateEventKind::Category => {
                self.category = e.value.or(self.category.take());
            }
        }
        self.alarming = self
            .status
            .as_deref()
            .is_some_and(|s| TemplateStatus::parse(s).is_alarming())
            || self
                .quality
                .as_deref()
                .is_some_and(|q| QualityScore::parse(q).is_alarming());
    }
}
