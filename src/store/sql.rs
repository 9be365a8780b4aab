//! What the store's core says to a database, the same for every backend: statements as
//! SQL text with `$1`-style parameters, parameters as [`Value`]s, rows read through
//! [`Row`]. A backend adapts these to its driver (placeholders, parameter types, how a
//! time is kept) and runs them: [`Sql::rows`] for a query, [`Sql::transaction`] for
//! statements committed together. Everything a row means is read here, once.

use std::borrow::Cow;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{
    DeadLetter, DeadLetterSource, EventSummary, ParkedEvent, SinkState, StoreError, StoreResult,
    StoredEvent,
};
use crate::event::Status;
use crate::event::tracking::{Batch, FailureGroup, Message, MessageError};

/// A parameter, whatever the database. A backend binds each as its own type: a time is
/// text in SQLite (one fixed format, so text order is time order) and a `timestamptz`
/// in PostgreSQL; an integer takes the width of the column it meets.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Bool(bool),
    Text(Cow<'a, str>),
    Time(DateTime<Utc>),
    Bytes(Cow<'a, [u8]>),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Self::Text(Cow::Borrowed(s))
    }
}

impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Self::Text(Cow::Owned(s))
    }
}

impl From<i64> for Value<'_> {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}

impl From<bool> for Value<'_> {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<DateTime<Utc>> for Value<'_> {
    fn from(t: DateTime<Utc>) -> Self {
        Self::Time(t)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

impl Value<'_> {
    /// The same value, owning what it borrowed.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Self::Null => Value::Null,
            Self::Int(n) => Value::Int(n),
            Self::Bool(b) => Value::Bool(b),
            Self::Text(s) => Value::Text(Cow::Owned(s.into_owned())),
            Self::Time(t) => Value::Time(t),
            Self::Bytes(b) => Value::Bytes(Cow::Owned(b.into_owned())),
        }
    }

    /// The same value, borrowing what it owns.
    pub fn borrowed(&self) -> Value<'_> {
        match self {
            Self::Null => Value::Null,
            Self::Int(n) => Value::Int(*n),
            Self::Bool(b) => Value::Bool(*b),
            Self::Text(s) => Value::Text(Cow::Borrowed(s)),
            Self::Time(t) => Value::Time(*t),
            Self::Bytes(b) => Value::Bytes(Cow::Borrowed(b)),
        }
    }
}

/// A count or a limit as a parameter.
pub fn int(n: usize) -> Value<'static> {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A row as a backend hands it over: each column by position, `None` for NULL. A
/// backend converts what its driver gives (an integer of any width, a time kept as text
/// or as a timestamp) and fails on a column of another type.
pub trait Row {
    fn int(&self, i: usize) -> StoreResult<Option<i64>>;
    fn flag(&self, i: usize) -> StoreResult<Option<bool>>;
    fn text(&self, i: usize) -> StoreResult<Option<&str>>;
    fn time(&self, i: usize) -> StoreResult<Option<DateTime<Utc>>>;
    fn bytes(&self, i: usize) -> StoreResult<Option<&[u8]>>;
}

fn null(i: usize) -> StoreError {
    StoreError::Backend(format!("column {i} is NULL where a value must be"))
}

impl dyn Row + '_ {
    pub fn req_int(&self, i: usize) -> StoreResult<i64> {
        self.int(i)?.ok_or_else(|| null(i))
    }

    pub fn req_flag(&self, i: usize) -> StoreResult<bool> {
        self.flag(i)?.ok_or_else(|| null(i))
    }

    pub fn req_time(&self, i: usize) -> StoreResult<DateTime<Utc>> {
        self.time(i)?.ok_or_else(|| null(i))
    }

    pub fn req_str(&self, i: usize) -> StoreResult<&str> {
        self.text(i)?.ok_or_else(|| null(i))
    }

    pub fn string(&self, i: usize) -> StoreResult<String> {
        self.req_str(i).map(str::to_owned)
    }

    pub fn opt_string(&self, i: usize) -> StoreResult<Option<String>> {
        Ok(self.text(i)?.map(str::to_owned))
    }

    pub fn status(&self, i: usize) -> StoreResult<Option<Status>> {
        Ok(self.text(i)?.map(Status::parse))
    }
}

/// A time stored as text (SQLite's columns, and times inside JSON columns): RFC 3339.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// One query: its SQL, its parameters, and how each row is read.
pub struct Query<T> {
    pub sql: Cow<'static, str>,
    pub params: Vec<Value<'static>>,
    pub map: fn(&dyn Row) -> StoreResult<T>,
}

impl<T> Query<T> {
    pub fn new(
        sql: impl Into<Cow<'static, str>>,
        params: Vec<Value<'static>>,
        map: fn(&dyn Row) -> StoreResult<T>,
    ) -> Self {
        Self {
            sql: sql.into(),
            params,
            map,
        }
    }
}

/// One statement of a transaction.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: Cow<'static, str>,
    pub params: Vec<Value<'static>>,
    /// It ends in `RETURNING` one integer, which is its result (else the rows it changed).
    pub returning: bool,
}

impl Statement {
    pub fn new(sql: impl Into<Cow<'static, str>>, params: Vec<Value<'static>>) -> Self {
        Self {
            sql: sql.into(),
            params,
            returning: false,
        }
    }

    pub fn returning(mut self) -> Self {
        self.returning = true;
        self
    }
}

/// `$from, $from+1, …` for `n` parameters, for an `IN (…)` list.
pub fn placeholders(from: usize, n: usize) -> String {
    let list: Vec<String> = (from..from + n).map(|i| format!("${i}")).collect();
    list.join(", ")
}

/// What a backend runs for the core.
#[async_trait]
pub trait Sql: Send + Sync {
    /// Runs one query and reads every row.
    async fn rows<T: Send + 'static>(&self, query: Query<T>) -> StoreResult<Vec<T>>;

    /// Runs the statements, in order, in one transaction; a result per statement (the
    /// rows it changed, or what it returned). Nothing of them stands after an error.
    async fn transaction(&self, statements: Vec<Statement>) -> StoreResult<Vec<i64>>;

    /// The first seq received at or after `at`; one past the last seq if none was.
    /// `received_at` rises with `seq` (each backend stamps it so), so by default a binary
    /// search over `seq`: about 25 lookups at ten million events, without an index on
    /// `received_at`.
    async fn first_seq_at_or_after(&self, at: DateTime<Utc>) -> StoreResult<i64> {
        let last = self
            .rows(Query::new(
                "SELECT COALESCE(MAX(seq), 0) FROM events",
                vec![],
                |r| r.req_int(0),
            ))
            .await?
            .pop()
            .unwrap_or(0);
        // Invariant: every seq below `lo` was received before `at`; `hi` is at or after.
        let (mut lo, mut hi) = (0i64, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let found = self
                .rows(Query::new(
                    "SELECT seq, received_at FROM events WHERE seq >= $1 ORDER BY seq LIMIT 1",
                    vec![Value::Int(mid)],
                    |r| Ok((r.req_int(0)?, r.req_time(1)?)),
                ))
                .await?
                .pop();
            match found {
                Some((seq, received)) if received < at => lo = seq + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }
}

/// Runs a query that gives at most one row.
pub async fn one<B: Sql + ?Sized, T: Send + 'static>(
    b: &B,
    query: Query<T>,
) -> StoreResult<Option<T>> {
    Ok(b.rows(query).await?.into_iter().next())
}

/// The tables whose rows the store's metrics count.
pub const SIZED_TABLES: [&str; 7] = [
    "events",
    "messages",
    "batches",
    "inbound",
    "template_events",
    "dead_letters",
    "dedup",
];

// The tables' columns, each read back in one place.

/// The columns of a message row, in [`message`] order.
pub const MESSAGE_COLUMNS: &str = "message_id, wamid, status, statuses, error_code, \
     error_message, error_status, conversation, conversation_status, conflict, uid, send_phone, \
     waba_id, account_name, first_event_at, last_event_at, identity_status, touched_at, events";

/// A message's values in [`MESSAGE_COLUMNS`] order, as they are written.
pub fn message_values(m: &Message) -> [Value<'_>; 19] {
    let statuses: std::collections::BTreeMap<&str, String> = m
        .statuses
        .iter()
        .map(|(s, at)| (s.as_str(), crate::event::format_time(at)))
        .collect();
    let error = m.error.as_ref();
    fn status(s: &Option<Status>) -> Value<'_> {
        Value::from(s.as_ref().map(Status::as_str))
    }
    [
        m.id.as_str().into(),
        m.wamid.as_str().into(),
        m.status.as_str().into(),
        serde_json::to_string(&statuses)
            .expect("a map serialises")
            .into(),
        error.map(|e| e.code.as_str()).into(),
        error.and_then(|e| e.message.as_deref()).into(),
        error.map(|e| e.status.as_str()).into(),
        m.conversation.as_ref().map(|c| c.to_string()).into(),
        status(&m.conversation_status),
        m.conflict.into(),
        m.uid.as_deref().into(),
        m.send_phone.as_str().into(),
        m.waba_id.as_str().into(),
        m.account_name.as_str().into(),
        m.first_event_at.into(),
        m.last_event_at.into(),
        status(&m.identity_status),
        m.touched_at.into(),
        serde_json::to_string(&m.events)
            .expect("a map serialises")
            .into(),
    ]
}

/// A message row. Dedup of status events rests on its statuses: an unreadable map is an
/// error, never silently empty; so is an error without the status it came with.
pub fn message(r: &dyn Row) -> StoreResult<Message> {
    let id = r.string(0)?;
    let unreadable = |what: String| StoreError::Backend(format!("message {id:?}: {what}"));
    let statuses: std::collections::BTreeMap<String, String> = serde_json::from_str(r.req_str(3)?)
        .map_err(|e| unreadable(format!("unreadable statuses: {e}")))?;
    let statuses = statuses
        .into_iter()
        .map(|(s, at)| match parse_time(&at) {
            Some(t) => Ok((Status::parse(&s), t)),
            None => Err(unreadable(format!("bad time {at:?} in its statuses"))),
        })
        .collect::<StoreResult<_>>()?;
    let error = match r.opt_string(4)? {
        Some(code) => Some(MessageError {
            code,
            message: r.opt_string(5)?,
            status: r.status(6)?.ok_or_else(|| {
                unreadable("an error without the status it came with (error_status)".into())
            })?,
        }),
        None => None,
    };
    let last_event_at = r.req_time(15)?;
    Ok(Message {
        wamid: r.string(1)?,
        status: Status::parse(r.req_str(2)?),
        statuses,
        error,
        conversation: r.text(7)?.and_then(|c| serde_json::from_str(c).ok()),
        conversation_status: r.status(8)?,
        conflict: r.req_flag(9)?,
        uid: r.opt_string(10)?,
        send_phone: r.string(11)?,
        waba_id: r.string(12)?,
        account_name: r.string(13)?,
        first_event_at: r.req_time(14)?,
        last_event_at,
        identity_status: r.status(16)?,
        // Stored before a store kept it: its last event stands in.
        touched_at: r.time(17)?.unwrap_or(last_event_at),
        // Without one (stored before a store kept them) or unreadable: none known.
        events: r
            .text(18)?
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default(),
        id,
    })
}

/// The columns of an event row, in [`event`] order.
pub const EVENT_COLUMNS: &str =
    "seq, received_at, event_id, event_type, message_id, status, warnings, body";

/// [`EVENT_COLUMNS`] of the events table as `e`.
pub const E_EVENT_COLUMNS: &str =
    "e.seq, e.received_at, e.event_id, e.event_type, e.message_id, e.status, e.warnings, e.body";

pub fn event(r: &dyn Row) -> StoreResult<StoredEvent> {
    Ok(StoredEvent {
        seq: r.req_int(0)?,
        received_at: r.req_time(1)?,
        event_id: r.string(2)?,
        event_type: r.string(3)?,
        message_id: r.opt_string(4)?,
        status: r.status(5)?,
        warnings: serde_json::from_str(r.req_str(6)?).map_err(|e| {
            StoreError::Backend(format!(
                "event {}: unreadable warnings: {e}",
                r.req_int(0).unwrap_or(0)
            ))
        })?,
        body: Bytes::copy_from_slice(r.bytes(7)?.unwrap_or_default()),
    })
}

/// A dead letter and, for a sink's, its event's summary (a sink's carries its event's
/// body, a rejected request its own), of [`DEAD_LETTERS_WITH_EVENTS`].
pub const DEAD_LETTER_COLUMNS: &str = "d.id, d.created_at, d.source, d.sink, d.event_seq, \
     d.code, d.field, d.reason, COALESCE(d.body, e.body), d.replayed_at, d.attempts, \
     d.first_attempt_at, e.event_id, e.event_type, e.message_id, e.status";
pub const DEAD_LETTERS_WITH_EVENTS: &str =
    "dead_letters d LEFT JOIN events e ON e.seq = d.event_seq";

pub fn dead_letter(r: &dyn Row) -> StoreResult<DeadLetter> {
    let body = r.bytes(8)?;
    let source = r.req_str(2)?;
    Ok(DeadLetter {
        id: r.req_int(0)?,
        created_at: r.req_time(1)?,
        source: DeadLetterSource::parse(source)
            .ok_or_else(|| StoreError::Backend(format!("not a dead letter source: {source:?}")))?,
        sink: r.opt_string(3)?,
        event_seq: r.int(4)?,
        event: match r.opt_string(12)? {
            Some(id) => Some(EventSummary {
                id,
                event_type: r.string(13)?,
                message_id: r.opt_string(14)?,
                status: r.opt_string(15)?,
            }),
            None => None,
        },
        code: r.string(5)?,
        field: r.opt_string(6)?,
        reason: r.string(7)?,
        attempts: r.int(10)?.map(|a| a as u32),
        first_attempt_at: r.time(11)?,
        body_is_not_utf8: body.is_some_and(|b| std::str::from_utf8(b).is_err()),
        body: body.map(|b| String::from_utf8_lossy(b).into_owned()),
        replayed_at: r.time(9)?,
    })
}

/// A batch summary from `messages, delivered, read, failed, other, first_event_at,
/// last_event_at` after its uid (without its failures).
pub const BATCH_COLUMNS: &str =
    "uid, messages, delivered, read, failed, other, first_event_at, last_event_at";

pub fn batch(r: &dyn Row) -> StoreResult<Batch> {
    Ok(Batch::new(
        r.string(0)?,
        [
            r.req_int(1)?,
            r.req_int(2)?,
            r.req_int(3)?,
            r.req_int(4)?,
            r.req_int(5)?,
        ],
        Vec::new(),
        r.req_time(6)?,
        r.req_time(7)?,
    ))
}

pub fn failure_group(r: &dyn Row) -> StoreResult<FailureGroup> {
    Ok(FailureGroup {
        error_code: r.string(0)?,
        error_message: r.opt_string(1)?,
        messages: r.req_int(2)?,
    })
}

/// A set-aside event: [`E_EVENT_COLUMNS`], then the `sink_parked` columns.
pub const PARKED_COLUMNS: &str = "e.seq, e.received_at, e.event_id, e.event_type, e.message_id, \
     e.status, e.warnings, e.body, p.message_id, p.attempts, p.first_attempt_at, \
     p.next_attempt_at, p.last_error";

pub fn parked(r: &dyn Row) -> StoreResult<(ParkedEvent, StoredEvent)> {
    let event = event(r)?;
    Ok((
        ParkedEvent {
            seq: event.seq,
            message_id: r.opt_string(8)?,
            attempts: r.req_int(9)? as u32,
            first_attempt_at: r.time(10)?,
            next_attempt_at: r.req_time(11)?,
            last_error: r.string(12)?,
        },
        event,
    ))
}

/// How inbound messages are found (by id, by wamid, by the message they answer, by the
/// customer's number): the same statements on every backend, a migration of their own.
pub const INBOUND_INDEXES: &str = "
CREATE INDEX inbound_message_id ON inbound (message_id);
CREATE INDEX inbound_wamid ON inbound (wamid);
CREATE INDEX inbound_reply_to ON inbound (reply_to) WHERE reply_to IS NOT NULL;
CREATE INDEX inbound_from ON inbound (from_phone, seq);
";

/// What a column of a [`SideTable`] holds (PostgreSQL's bulk insert casts to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
    Time,
}

/// A table with a row beside some events, written in the event's transaction: its
/// columns in the order [`super::ingest::SideRow`] gives their values. The first is the
/// event's seq, the last the time it was received.
#[derive(Debug)]
pub struct SideTable {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
}

impl SideTable {
    /// Its column names, comma-separated.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| *n).collect();
        names.join(", ")
    }

    /// The statement that inserts one row.
    pub fn insert(&self) -> String {
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.name,
            self.names(),
            placeholders(1, self.columns.len())
        )
    }
}

/// A table of counters that accepted events add to: its key columns, then its counts
/// (integers). A transaction adds each key once (the core sums its rows first, in key
/// order, so that two transactions lock them in the same order).
#[derive(Debug)]
pub struct CounterTable {
    pub name: &'static str,
    pub keys: &'static [(&'static str, Kind)],
    pub counts: &'static [&'static str],
}

impl CounterTable {
    /// Every column, keys first, with its kind.
    pub fn columns(&self) -> impl Iterator<Item = (&'static str, Kind)> + '_ {
        self.keys
            .iter()
            .copied()
            .chain(self.counts.iter().map(|c| (*c, Kind::Int)))
    }

    /// Its column names, comma-separated.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.columns().map(|(n, _)| n).collect();
        names.join(", ")
    }

    /// What follows the rows of an insert into it (aliased `c`): add to a key's counts.
    pub fn on_conflict(&self) -> String {
        let keys: Vec<&str> = self.keys.iter().map(|(k, _)| *k).collect();
        let adds: Vec<String> = self
            .counts
            .iter()
            .map(|n| format!("{n} = c.{n} + excluded.{n}"))
            .collect();
        format!(
            "ON CONFLICT ({}) DO UPDATE SET {}",
            keys.join(", "),
            adds.join(", ")
        )
    }

    /// The statement that adds one row.
    pub fn add_one(&self) -> String {
        format!(
            "INSERT INTO {} AS c ({}) VALUES ({}) {}",
            self.name,
            self.names(),
            placeholders(1, self.keys.len() + self.counts.len()),
            self.on_conflict()
        )
    }
}

/// A batch's messages by conversation category (`conversation.initiateType`) and the
/// first four digits of the number sent to: what a cost estimate needs.
pub static BATCH_CATEGORIES: CounterTable = CounterTable {
    name: "batch_categories",
    keys: &[
        ("uid", Kind::Text),
        ("category", Kind::Text),
        ("prefix", Kind::Text),
    ],
    counts: &["messages"],
};

/// [`BATCH_CATEGORIES`]'s table, the same text for both databases.
pub const BATCH_CATEGORIES_TABLE: &str = "
CREATE TABLE batch_categories (
    uid      text NOT NULL,
    category text NOT NULL,                        -- conversation.initiateType
    prefix   text NOT NULL,                        -- the first 4 digits of sendPhone
    messages bigint NOT NULL,
    PRIMARY KEY (uid, category, prefix)
);
";

/// What the daily report counts, per quarter-hour of eventTime ([`crate::event::tracking::day_marks`]).
pub static ACTIVITY: CounterTable = CounterTable {
    name: "activity",
    keys: &[
        ("slot", Kind::Int),
        ("kind", Kind::Text),
        ("code", Kind::Text),
    ],
    counts: &["n"],
};

/// [`ACTIVITY`]'s table, and the index the report's replies are counted by, the same text
/// for both databases.
pub const ACTIVITY_TABLE: &str = "
CREATE TABLE activity (
    slot bigint NOT NULL,                          -- quarter-hours since the epoch (UTC)
    kind text NOT NULL,                            -- reached, read, failed, error
    code text NOT NULL,                            -- the error code of an error, else ''
    n    bigint NOT NULL,
    PRIMARY KEY (slot, kind, code)
);
CREATE INDEX inbound_replies_sent_at ON inbound (sent_at) WHERE reply_to IS NOT NULL;
";

/// Customers' inbound messages.
pub static INBOUND: SideTable = SideTable {
    name: "inbound",
    columns: &[
        ("seq", Kind::Int),
        ("message_id", Kind::Text),
        ("wamid", Kind::Text),
        ("from_phone", Kind::Text),
        ("to_phone", Kind::Text),
        ("sent_at", Kind::Time),
        ("content_type", Kind::Text),
        ("summary", Kind::Text),
        ("reply_to", Kind::Text),
        ("media_link", Kind::Text),
        ("received_at", Kind::Time),
    ],
};

/// What templates' status, quality and category events said, one row each.
pub static TEMPLATE_EVENTS: SideTable = SideTable {
    name: "template_events",
    columns: &[
        ("seq", Kind::Int),
        ("template_id", Kind::Text),
        ("kind", Kind::Text),
        ("value", Kind::Text),
        ("previous", Kind::Text),
        ("template_name", Kind::Text),
        ("language", Kind::Text),
        ("category", Kind::Text),
        ("reason", Kind::Text),
        ("event_time", Kind::Time),
        ("received_at", Kind::Time),
    ],
};

/// How a template's events are found: by template, in the order they happened.
pub const TEMPLATE_INDEXES: &str = "
CREATE INDEX template_events_template ON template_events (template_id, event_time, seq);
";

/// A template event's row, in [`template_event`] order.
pub const TEMPLATE_EVENT_COLUMNS: &str = "t.seq, t.template_id, t.kind, t.value, t.previous, \
     t.template_name, t.language, t.category, t.reason, t.event_time, t.received_at";

pub fn template_event(r: &dyn Row) -> StoreResult<super::TemplateEvent> {
    Ok(super::TemplateEvent {
        seq: r.req_int(0)?,
        template_id: r.string(1)?,
        kind: super::TemplateEventKind::parse(&r.string(2)?)?,
        value: r.opt_string(3)?,
        previous: r.opt_string(4)?,
        name: r.opt_string(5)?,
        language: r.opt_string(6)?,
        category: r.opt_string(7)?,
        reason: r.opt_string(8)?,
        event_time: r.req_time(9)?,
        received_at: r.req_time(10)?,
    })
}

/// An inbound row, in [`inbound`] order.
pub const INBOUND_COLUMNS: &str = "i.seq, i.message_id, i.wamid, i.from_phone, i.to_phone, \
     i.sent_at, i.content_type, i.summary, i.reply_to, i.received_at, i.media_link";

pub fn inbound(r: &dyn Row) -> StoreResult<super::Inbound> {
    Ok(super::Inbound {
        seq: r.req_int(0)?,
        id: r.opt_string(1)?,
        wamid: r.string(2)?,
        from: r.string(3)?,
        to: r.opt_string(4)?,
        sent_at: r.req_time(5)?,
        content_type: r.string(6)?,
        summary: r.string(7)?,
        reply_to: r.opt_string(8)?,
        received_at: r.req_time(9)?,
        media_link: r.opt_string(10)?,
    })
}

/// [`super::Store::sink_states`]: every sink with a cursor, a recorded failure, dead
/// letters waiting or events set aside.
pub const SINK_STATES: &str = "WITH dead AS (
         SELECT sink, count(*) AS n, max(id) AS last FROM dead_letters
         WHERE source = 'sink' AND replayed_at IS NULL GROUP BY sink
     ), parked AS (
         SELECT sink, count(*) AS n FROM sink_parked GROUP BY sink
     ), names AS (
         SELECT sink FROM sink_cursors UNION SELECT sink FROM sink_status
         UNION SELECT sink FROM dead UNION SELECT sink FROM parked
     )
     SELECT names.sink, c.seq, s.failing_since, s.last_error, s.last_error_at,
         coalesce(dead.n, 0), l.created_at, coalesce(parked.n, 0)
     FROM names LEFT JOIN sink_cursors c ON c.sink = names.sink
         LEFT JOIN sink_status s ON s.sink = names.sink
         LEFT JOIN dead ON dead.sink = names.sink
         LEFT JOIN dead_letters l ON l.id = dead.last
         LEFT JOIN parked ON parked.sink = names.sink
     ORDER BY names.sink";

pub fn sink_state(r: &dyn Row) -> StoreResult<SinkState> {
    Ok(SinkState {
        sink: r.string(0)?,
        cursor: r.int(1)?,
        failing_since: r.time(2)?,
        last_error: r.opt_string(3)?,
        last_error_at: r.time(4)?,
        dead_letters: r.req_int(5)?,
        last_dead_letter_at: r.time(6)?,
        parked: r.req_int(7)?,
    })
}
