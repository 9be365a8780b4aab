//! What accepting an event changes, written once: its dedup key, the decision between
//! stored and duplicate given its message as it stands, the message row, the batch
//! counters and the pushes counted per hour. A backend loads what the decision needs,
//! asks here, and writes the rows given here, in its own transaction and statements.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::sql::{self, CounterTable, SideTable, Value};
use super::{Counted, StoredEvent, TemplateEventKind, counted_status};
use crate::event::tracking::{
    BatchDeltas, Message, RecordedWarning, StatusUpdate, Tracked, day_marks, entry_of, hour_of,
    track,
};
use crate::event::{Accepted, DedupKey, Event, QualityScore, Status, TemplateCategory};

/// An accepted event, ready to store.
#[derive(Debug)]
pub struct Incoming {
    pub event_id: String,
    pub event_type: String,
    /// What it says of its message, for a message status.
    pub update: Option<StatusUpdate>,
    /// Its keys in the `dedup` table, for an event other than a message status (a status
    /// event's key is its message's set of statuses): a duplicate when any is there.
    pub keys: Vec<String>,
    pub status: Option<Status>,
    pub message_id: Option<String>,
    /// What was unexpected in it.
    pub warnings: Vec<RecordedWarning>,
    /// The request body, byte for byte.
    pub body: Bytes,
    /// What it stores beside its event: an inbound message, a template's news.
    pub side: Option<SideRow>,
}

/// A row some events keep in a table of their own beside their event row, written in
/// the same transaction.
#[derive(Debug, Clone)]
pub struct SideRow {
    pub table: &'static SideTable,
    /// The values between the seq and the receipt time, in the table's column order.
    values: Vec<Value<'static>>,
}

impl SideRow {
    /// Its values in the table's column order.
    pub fn values(&self, seq: i64, received_at: DateTime<Utc>) -> Vec<Value<'_>> {
        let mut all = Vec::with_capacity(self.values.len() + 2);
        all.push(seq.into());
        all.extend(self.values.iter().map(Value::borrowed));
        all.push(received_at.into());
        debug_assert_eq!(all.len(), self.table.columns.len());
        all
    }
}

impl Incoming {
    pub fn new(accepted: &Accepted, body: Bytes) -> Self {
        let env = &accepted.envelope;
        let update = StatusUpdate::from_accepted(accepted);
        Self {
            event_id: env.id().to_owned(),
            event_type: env.event_type().to_owned(),
            keys: match update {
                Some(_) => Vec::new(),
                None => env.dedup_keys().iter().map(dedup_text).collect(),
            },
            update,
            status: env.message_status().map(|s| s.status().clone()),
            message_id: env.message_status().map(|s| s.message_id().to_owned()),
            warnings: accepted
                .warnings
                .iter()
                .map(RecordedWarning::from)
                .collect(),
            body,
            side: side_row(accepted),
        }
    }

    /// The key a status event had in the `dedup` table of stores before SQLite schema v3
    /// (which still honour those they kept).
    pub fn legacy_status_key(&self) -> Option<String> {
        let u = self.update.as_ref()?;
        Some(dedup_text(&DedupKey::Status {
            message_id: u.message_id().to_owned(),
            status: u.status().clone(),
        }))
    }

    /// How its pushes are counted.
    pub fn counted(&self) -> &'static str {
        counted_status(self.status.as_ref())
    }

    /// The event as stored under `seq`.
    pub fn stored(&self, seq: i64, received_at: DateTime<Utc>) -> StoredEvent {
        StoredEvent {
            seq,
            received_at,
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            message_id: self.message_id.clone(),
            status: self.status.clone(),
            warnings: self.warnings.clone(),
            body: self.body.clone(),
        }
    }

    /// Its row's values after `seq`: `received_at, event_id, event_type, message_id,
    /// status, warnings, body`.
    pub fn values(&self, received_at: DateTime<Utc>) -> [Value<'_>; 7] {
        [
            received_at.into(),
            self.event_id.as_str().into(),
            self.event_type.as_str().into(),
            self.message_id.as_deref().into(),
            self.status.as_ref().map(Status::as_str).into(),
            serde_json::to_string(&self.warnings)
                .expect("warnings serialise")
                .into(),
            Value::Bytes(std::borrow::Cow::Borrowed(&self.body)),
        ]
    }
}

/// The side rows of stored events (each with its seq), by table, as one list of values
/// a column: what a backend that writes a table's rows in one statement binds.
pub fn side_columns<'a>(
    stored: impl IntoIterator<Item = (&'a Incoming, i64)>,
    received_at: DateTime<Utc>,
) -> Vec<(&'static SideTable, Vec<Vec<Value<'a>>>)> {
    let mut tables: Vec<(&'static SideTable, Vec<Vec<Value<'a>>>)> = Vec::new();
    for (e, seq) in stored {
        let Some(side) = &e.side else { continue };
        let at = match tables
            .iter()
            .position(|(t, _)| std::ptr::eq(*t, side.table))
        {
            Some(at) => at,
            None => {
                tables.push((side.table, vec![Vec::new(); side.table.columns.len()]));
                tables.len() - 1
            }
        };
        for (column, value) in tables[at].1.iter_mut().zip(side.values(seq, received_at)) {
            column.push(value);
        }
    }
    tables
}

/// What an event stores beside its own row, if anything.
fn side_row(accepted: &Accepted) -> Option<SideRow> {
    let env = &accepted.envelope;
    // When InnoPaaS says it happened, else now (it is being stored).
    let event_time = || env.event_time().map_or_else(Utc::now, |t| t.at());
    let text = |s: Option<&str>| -> Value<'static> { s.map(str::to_owned).into() };
    let (table, values) = match env.event() {
        Event::InboundMessage(m) => (
            &sql::INBOUND,
            vec![
                text(m.message_id()),
                m.wamid().to_owned().into(),
                m.from().to_owned().into(),
                text(m.to()),
                // When the customer sent it; without a sendTime, the event's time.
                m.send_time().map_or_else(event_time, |t| t.at()).into(),
                m.content_type().to_owned().into(),
                m.summary().into(),
                text(m.reply_to()),
                text(m.media_link()),
            ],
        ),
        Event::TemplateStatus(t) => (
            &sql::TEMPLATE_EVENTS,
            vec![
                t.template_id().to_owned().into(),
                TemplateEventKind::Status.as_str().into(),
                t.status().as_str().to_owned().into(),
                Value::Null,
                text(t.template_name()),
                text(t.language()),
                text(t.category().map(TemplateCategory::as_str)),
                text(t.reason()),
                event_time().into(),
            ],
        ),
        Event::TemplateQuality(q) => (
            &sql::TEMPLATE_EVENTS,
            vec![
                q.template_id().to_owned().into(),
                TemplateEventKind::Quality.as_str().into(),
                q.new_quality().as_str().to_owned().into(),
                text(q.previous_quality().map(QualityScore::as_str)),
                text(q.template_name()),
                text(q.language()),
                Value::Null,
                Value::Null,
                event_time().into(),
            ],
        ),
        Event::TemplateCategory(c) => (
            &sql::TEMPLATE_EVENTS,
            vec![
                c.template_id()?.to_owned().into(),
                TemplateEventKind::Category.as_str().into(),
                text(c.new_category()),
                text(c.previous_category()),
                Value::Null,
                Value::Null,
                text(c.new_category()),
                Value::Null,
                event_time().into(),
            ],
        ),
        _ => return None,
    };
    Some(SideRow { table, values })
}

/// How the `dedup` table spells a key (as every store since schema v1 has).
pub fn dedup_text(key: &DedupKey) -> String {
    match key {
        DedupKey::Status { message_id, status } => {
            format!("status\u{1f}{message_id}\u{1f}{}", status.as_str())
        }
        DedupKey::Other {
            envelope_id,
            body_sha256,
        } => {
            let hex: String = body_sha256.iter().map(|b| format!("{b:02x}")).collect();
            format!("other\u{1f}{envelope_id}\u{1f}{hex}")
        }
        DedupKey::Inbound { wamid } => format!("inbound\u{1f}{wamid}"),
        DedupKey::Fact { kind, parts } => format!("fact\u{1f}{kind}\u{1f}{}", parts.join("\u{1f}")),
    }
}

/// Pushes by outcome and counted status.
pub type Counts = BTreeMap<(Counted, &'static str), i64>;

/// What the accepts of one transaction change beyond their own rows: the batch counters
/// and the pushes counted in its hour, written once at its end.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub deltas: BatchDeltas,
    pub counted: Counts,
    /// What the daily report counts, by (quarter-hour, kind), then code ([`day_marks`]).
    pub activity: BTreeMap<(i64, &'static str), BTreeMap<String, i64>>,
}

impl Tally {
    /// Counts one push.
    pub fn count(&mut self, outcome: Counted, status: &'static str) {
        *self.counted.entry((outcome, status)).or_default() += 1;
    }

    /// Decides a status event against its message as stored (`old`): `None` for a
    /// duplicate, else the message as it is now, its batch's move recorded. Counts the
    /// push either way.
    pub fn track(
        &mut self,
        e: &Incoming,
        u: &StatusUpdate,
        old: Option<&Message>,
        received_at: DateTime<Utc>,
    ) -> Option<Message> {
        match track(old, u, received_at) {
            Tracked::Duplicate => {
                self.count(Counted::Duplicate, e.counted());
                None
            }
            Tracked::Changed(m) => {
                self.count(Counted::Accepted, e.counted());
                self.deltas.record(old, &m);
                let before = old.map(day_marks).unwrap_or_default();
                let after = day_marks(&m);
                for (marks, other, n) in [(&before, &after, -1), (&after, &before, 1)] {
                    for mark in marks
                        .iter()
                        .flatten()
                        .filter(|k| !other.contains(&Some(**k)))
                    {
                        let (slot, kind, code) = *mark;
                        let codes = self.activity.entry((slot, kind)).or_default();
                        *entry_of(codes, code) += n;
                    }
                }
                Some(m)
            }
        }
    }

    /// The rows to add to counter tables other than the batches' own, by table, each
    /// table's rows in key order, as one list of values a column.
    pub fn counter_columns(&self) -> Vec<(&'static CounterTable, Vec<Vec<Value<'_>>>)> {
        let table = &sql::BATCH_CATEGORIES;
        let mut columns = vec![Vec::new(); table.columns().count()];
        for (uid, d) in self.deltas.iter() {
            for (category, prefixes) in &d.categories {
                for (prefix, n) in prefixes.iter().filter(|(_, n)| **n != 0) {
                    let row: [Value<'_>; 4] = [
                        uid.into(),
                        category.as_str().into(),
                        prefix.as_str().into(),
                        (*n).into(),
                    ];
                    for (column, value) in columns.iter_mut().zip(row) {
                        column.push(value);
                    }
                }
            }
        }
        let mut tables = Vec::new();
        if !columns[0].is_empty() {
            tables.push((table, columns));
        }
        let table = &sql::ACTIVITY;
        let mut columns = vec![Vec::new(); table.columns().count()];
        for ((slot, kind), codes) in &self.activity {
            for (code, n) in codes.iter().filter(|(_, n)| **n != 0) {
                let row: [Value<'_>; 4] = [
                    (*slot).into(),
                    (*kind).into(),
                    code.as_str().into(),
                    (*n).into(),
                ];
                for (column, value) in columns.iter_mut().zip(row) {
                    column.push(value);
                }
            }
        }
        if !columns[0].is_empty() {
            tables.push((table, columns));
        }
        tables
    }

    /// The rows to add to `event_counts` for a transaction stamped `at`: `hour, outcome,
    /// status, events`, in key order.
    pub fn count_rows(&self, at: &DateTime<Utc>) -> Vec<[Value<'static>; 4]> {
        let hour = hour_of(at);
        self.counted
            .iter()
            .map(|((outcome, status), n)| {
                [
                    hour.into(),
                    outcome.as_str().into(),
                    (*status).into(),
                    (*n).into(),
                ]
            })
            .collect()
    }

    pub fn clear(&mut self) {
        self.deltas.clear();
        self.counted.clear();
        self.activity.clear();
    }
}

/// The batch counters' rows to add, in uid order (so that two transactions lock them in
/// the same order), and the batches whose emptied rows go.
#[derive(Debug, Default)]
pub struct BatchRows<'a> {
    /// `uid, messages, delivered, read, failed, other, first_event_at, last_event_at,
    /// touched_at`
    pub batches: Vec<[Value<'a>; 9]>,
    /// `uid, error_code, error_message, messages`
    pub errors: Vec<[Value<'a>; 4]>,
    /// `uid, hour, delivered, read, failed, other`
    pub hours: Vec<[Value<'a>; 6]>,
    /// Batches with an error code that lost messages, an hour that lost events, or that
    /// lost messages: their rows left at zero are removed (a batch all of whose messages
    /// moved to another uid is gone, as if never seen).
    pub lost_errors: Vec<&'a str>,
    pub lost_hours: Vec<&'a str>,
    pub lost_messages: Vec<&'a str>,
}

impl<'a> BatchRows<'a> {
    pub fn of(deltas: &'a BatchDeltas) -> Self {
        let mut rows = Self::default();
        for (uid, d) in deltas.iter() {
            let [messages, delivered, read, failed, other] = d.counts;
            rows.batches.push([
                uid.into(),
                messages.into(),
                delivered.into(),
                read.into(),
                failed.into(),
                other.into(),
                d.first_event_at.into(),
                d.last_event_at.into(),
                d.touched_at.into(),
            ]);
            for (code, (n, message)) in d.errors.iter().filter(|(_, (n, _))| *n != 0) {
                let message = message.as_deref().into();
                rows.errors
                    .push([uid.into(), code.as_str().into(), message, (*n).into()]);
            }
            for (hour, [delivered, read, failed, other]) in d.moved_hours() {
                rows.hours.push([
                    uid.into(),
                    hour.into(),
                    delivered.into(),
                    read.into(),
                    failed.into(),
                    other.into(),
                ]);
            }
            for (lost, list) in [
                (d.lost_errors(), &mut rows.lost_errors),
                (d.lost_hours(), &mut rows.lost_hours),
                (d.lost_messages(), &mut rows.lost_messages),
            ] {
                if lost {
                    list.push(uid);
                }
            }
        }
        rows
    }
}

/// Keeps a rejected request: its dead letter, and the push counted as rejected in its
/// hour, in one transaction; returns the dead letter's id.
pub async fn reject<B: super::sql::Sql>(
    b: &B,
    rejection: &crate::event::Rejection,
    body: &[u8],
) -> super::StoreResult<i64> {
    use super::sql::Statement;
    let now = Utc::now();
    let statements = vec![
        Statement::new(
            "INSERT INTO dead_letters (created_at, source, code, field, reason, body)
             VALUES ($1, 'http', $2, $3, $4, $5) RETURNING id",
            vec![
                now.into(),
                rejection.code.as_str().into(),
                rejection.field.clone().into(),
                rejection.message.clone().into(),
                Value::Bytes(std::borrow::Cow::Owned(body.to_vec())),
            ],
        )
        .returning(),
        Statement::new(
            "INSERT INTO event_counts AS c (hour, outcome, status, events)
             VALUES ($1, $2, '', 1)
             ON CONFLICT (hour, outcome, status) DO UPDATE SET events = c.events + 1",
            vec![hour_of(&now).into(), Counted::Rejected.as_str().into()],
        ),
    ];
    Ok(b.transaction(statements).await?[0])
}
