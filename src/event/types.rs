//! Domain types every event type shares: the envelope, the dedup key, the statuses and
//! their precedence, times, warnings. What each event type carries is in its own module
//! (`status.rs`, `inbound.rs`, `other.rs`).
//!
//! An [`Envelope`] is built only by [`super::parse`], so holding one means the event
//! passed validation.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use super::{Event, InboundMessage, StatusEvent};

/// One accepted push: the envelope `{id, type, eventTime, body}`, typed, plus
/// the JSON exactly as it arrived (every field, in order, numbers with every digit).
#[derive(Debug, Clone)]
pub struct Envelope {
    pub(super) id: String,
    pub(super) event_type: String,
    pub(super) event_time: Option<Timestamp>,
    pub(super) event: Event,
    pub(super) raw: Box<str>,
}

impl Envelope {
    /// The envelope id. Not unique: InnoPaaS reuses it across statuses of one message.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The envelope `type`, e.g. `whatsapp_message_status_updated`.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    /// `eventTime`, when the sender gave one.
    pub fn event_time(&self) -> Option<&Timestamp> {
        self.event_time.as_ref()
    }
    /// The typed event.
    pub fn event(&self) -> &Event {
        &self.event
    }
    /// The status event, if this is one.
    pub fn message_status(&self) -> Option<&StatusEvent> {
        match &self.event {
            Event::MessageStatus(s) => Some(s),
            _ => None,
        }
    }
    /// The customer's message, if this is one.
    pub fn inbound_message(&self) -> Option<&InboundMessage> {
        match &self.event {
            Event::InboundMessage(m) => Some(m),
            _ => None,
        }
    }
    /// The whole envelope exactly as received: every field, in order, every digit.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The key under which a redelivery of this event is recognised: each event type's
    /// module says which (a status by message id and status; any other event by its
    /// envelope id and a digest of its body).
    pub fn dedup_key(&self) -> DedupKey {
        self.dedup_keys().swap_remove(0)
    }

    /// Every key under which a redelivery is recognised: one for most types; an event
    /// known by more than one id (an inbound message: its envelope, and its wamid) is a
    /// duplicate when any of them was seen.
    pub fn dedup_keys(&self) -> Vec<DedupKey> {
        self.event.dedup_keys(&self.id, self.event_time.as_ref())
    }
}

/// What makes two pushes the same event (see [`Envelope::dedup_key`]). Each store
/// encodes it as it likes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DedupKey {
    /// A message status: (body.id, body.status).
    Status { message_id: String, status: Status },
    /// Any other event: its envelope id and the SHA-256 of its body.
    Other {
        envelope_id: String,
        body_sha256: [u8; 32],
    },
    /// An inbound message, by its WhatsApp message id: the same message pushed under
    /// another envelope id is the same event.
    Inbound { wamid: String },
    /// A template or review event, by what it says and when InnoPaaS says it happened:
    /// the same news pushed again under another envelope id is the same event. `kind`
    /// names the event type's key, `parts` its fields in a fixed order.
    Fact {
        kind: &'static str,
        parts: Vec<String>,
    },
}

impl DedupKey {
    /// The key of a fact said at `event_time` (none without one: two pushes without a
    /// time cannot be told to be the same news).
    pub(super) fn fact(
        kind: &'static str,
        event_time: Option<&Timestamp>,
        parts: &[Option<&str>],
    ) -> Option<Self> {
        let at = event_time?
            .at()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut all: Vec<String> = parts
            .iter()
            .map(|p| p.unwrap_or_default().to_owned())
            .collect();
        all.push(at);
        Some(Self::Fact { kind, parts: all })
    }
}

/// `body.status`. Unknown values are kept, not refused.
///
/// The statuses are ordered by precedence ([`Status::outranks`]): a message's current
/// status is the highest it has reached, so a late `delivered` never undoes a `read`
/// and a failure is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Status {
    Delivered,
    Read,
    Failed,
    /// `SMECL:FAILED`: InnoPaaS could not hand the message to WhatsApp.
    SmeclFailed,
    /// A value the documentation does not list, kept as sent.
    Unknown(String),
}

/// The summary bucket a message's current status counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    Delivered,
    Read,
    /// `failed` or `SMECL:FAILED`.
    Failed,
    /// A status the documentation does not list.
    Other,
}

/// The wire spellings of the documented statuses, and the name counts and filters give
/// any other: the only place they are written.
const DELIVERED: &str = "delivered";
const READ: &str = "read";
const FAILED: &str = "failed";
const SMECL_FAILED: &str = "SMECL:FAILED";
const OTHER: &str = "other";

impl Status {
    /// The statuses InnoPaaS documents.
    pub const ALL: [Status; 4] = [
        Status::Delivered,
        Status::Read,
        Status::Failed,
        Status::SmeclFailed,
    ];

    pub fn parse(s: &str) -> Self {
        match s {
            DELIVERED => Self::Delivered,
            READ => Self::Read,
            FAILED => Self::Failed,
            SMECL_FAILED => Self::SmeclFailed,
            other => Self::Unknown(other.to_owned()),
        }
    }
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Unknown(s) => s,
            documented => documented.counted(),
        }
    }
    /// How the status is counted: a documented status as it is spelled, any other as
    /// `other` (so that a sender cannot create new counts, series or labels).
    pub const fn counted(&self) -> &'static str {
        match self {
            Self::Delivered => DELIVERED,
            Self::Read => READ,
            Self::Failed => FAILED,
            Self::SmeclFailed => SMECL_FAILED,
            Self::Unknown(_) => OTHER,
        }
    }
    /// Precedence: unknown < delivered < read < SMECL:FAILED < failed.
    pub fn rank(&self) -> u8 {
        match self {
            Self::Unknown(_) => 0,
            Self::Delivered => 1,
            Self::Read => 2,
            Self::SmeclFailed => 3,
            Self::Failed => 4,
        }
    }
    /// Whether `self` takes precedence over `other`: a higher [`rank`](Self::rank), or,
    /// between two unknown statuses, the greater spelling (so that the outcome never
    /// depends on arrival order).
    pub fn outranks(&self, other: &Status) -> bool {
        (self.rank(), self.as_str()) > (other.rank(), other.as_str())
    }
    /// `failed` or `SMECL:FAILED`.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed | Self::SmeclFailed)
    }
    /// `delivered` or `read`: the message reached the phone.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Delivered | Self::Read)
    }
    pub fn bucket(&self) -> Bucket {
        match self {
            Self::Delivered => Bucket::Delivered,
            Self::Read => Bucket::Read,
            Self::Failed | Self::SmeclFailed => Bucket::Failed,
            Self::Unknown(_) => Bucket::Other,
        }
    }
}

impl Bucket {
    /// The bucket's name (the dashboard's message filters): the status it counts, or
    /// `other`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => DELIVERED,
            Self::Read => READ,
            Self::Failed => FAILED,
            Self::Other => OTHER,
        }
    }
}

/// How a pushed event's status is counted: a documented status, `other` for any other
/// (so a sender cannot create new rows), and `""` for other event types and rejections.
pub fn counted_status(status: Option<&Status>) -> &'static str {
    status.map_or("", Status::counted)
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As its wire spelling.
impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A time as innohook writes it everywhere (answers, files, the store): RFC 3339, UTC,
/// milliseconds, e.g. `2023-02-23T12:00:00.000Z`.
pub fn format_time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// serde helpers that write times as [`format_time`] does.
pub mod time_format {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};
    use serde::Serializer;
    use serde::ser::SerializeMap;

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(at))
    }

    /// A map of times, such as a message's statuses.
    pub fn map<S: Serializer>(
        map: &BTreeMap<super::Status, DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            m.serialize_entry(k, &super::format_time(v))?;
        }
        m.end()
    }
}

/// A point in time as the sender wrote it, and as UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    at: DateTime<Utc>,
    original: String,
}

impl Timestamp {
    /// Reads RFC 3339 (`2023-02-23T12:00:00.000Z`, as in the InnoPaaS examples) or
    /// `YYYY-MM-DD HH:MM:SS[.fff]` (as in its field table), the latter as UTC.
    pub fn parse(s: &str) -> Option<Self> {
        let at = DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                    .iter()
                    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                    .map(|n| n.and_utc())
            })?;
        Some(Self {
            at,
            original: s.to_owned(),
        })
    }
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }
    /// The string exactly as sent.
    pub fn original(&self) -> &str {
        &self.original
    }
}

/// Something unexpected in an accepted event: kept, and flagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Stable machine code, e.g. `unknown_status`.
    pub code: &'static str,
    /// Path of the field concerned, e.g. `body.status`.
    pub field: String,
    /// A sentence for the person reading it.
    pub message: String,
}
