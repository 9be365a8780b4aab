//! Message tracking: what a message's state is after its status events, and how its
//! batch's counters move. Pure functions over typed values; every store calls them in the
//! transaction that accepts the event, and keeps only the results.
//!
//! Dedup keeps at most one event per (message, status), so a message's statuses form a
//! set, and [`track`] makes everything a function of that set, whatever order the events
//! came in: the current status is the one that [outranks](Status::outranks) the others
//! (a late `delivered` never undoes a `read`; a failure is kept), the error comes from
//! the highest failure, the conversation from the highest status that carried one, and
//! the message's identity (wamid, uid, sendPhone, wabaId, accountName) from one event:
//! the highest status among those that carried a uid, or among all if none did. A
//! failure together with delivered or read cannot happen; it is kept and flagged as a
//! conflict.
//!
//! A batch (`uid`) is a set of counters kept in step with its messages ([`BatchDeltas`]),
//! so a summary reads a handful of values however large the batch is; so is its timeline
//! (its messages' status events per hour of eventTime).
//!
//! A message also keeps, per status, the stored event that brought it ([`EventRecord`]:
//! envelope id, time received, warnings), so its timeline is read with the message.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::Value;

use super::parse::Accepted;
use super::types::{Bucket, Status, time_format};

/// What one status event says about its message.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    envelope_id: String,
    warnings: Vec<RecordedWarning>,
    message_id: String,
    wamid: String,
    uid: Option<String>,
    send_phone: String,
    waba_id: String,
    account_name: String,
    status: Status,
    /// eventTime (to the millisecond, as stored); without one, the time the event is stored.
    at: Option<DateTime<Utc>>,
    error: Option<(String, Option<String>)>,
    conversation: Option<Value>,
}

impl StatusUpdate {
    /// The update an accepted status event brings; `None` for other event types.
    pub fn from_accepted(accepted: &Accepted) -> Option<Self> {
        let env = &accepted.envelope;
        let s = env.message_status()?;
        let conversation = s.conversation().map(|c| {
            serde_json::json!({
                "id": c.id(),
                "initiateType": c.initiate_type().map(|t| t.as_str()),
                "expireAt": c.expire_at().map(|t| super::format_time(&t.at())),
            })
        });
        Some(Self {
            envelope_id: env.id().to_owned(),
            warnings: accepted
                .warnings
                .iter()
                .map(RecordedWarning::from)
                .collect(),
            message_id: s.message_id().to_owned(),
            wamid: s.wamid().to_owned(),
            uid: s.uid().map(str::to_owned),
            send_phone: s.send_phone().to_owned(),
            waba_id: s.waba_id().to_owned(),
            account_name: s.account_name().to_owned(),
            status: s.status().clone(),
            at: env.event_time().map(|t| t.at().trunc_subsecs(3)),
            error: s
                .error()
                .map(|e| (e.code().to_owned(), e.message().map(str::to_owned))),
            conversation,
        })
    }

    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Whether `message` (its stored state) already has this update's status: then the
    /// event is a duplicate. This is the dedup of status events, key (body.id, status).
    pub fn is_known_to(&self, message: Option<&Message>) -> bool {
        message.is_some_and(|m| m.statuses.contains_key(&self.status))
    }
}

/// A message's tracked state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub wamid: String,
    /// The current status: the one that outranks every other it has had.
    pub status: Status,
    /// Each status reached (wire spelling), with its eventTime.
    #[serde(serialize_with = "time_format::map")]
    pub statuses: BTreeMap<Status, DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<MessageError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Value>,
    /// A failure and delivered/read both reported: should not happen; kept and flagged.
    pub conflict: bool,
    pub uid: Option<String>,
    pub send_phone: String,
    pub waba_id: String,
    pub account_name: String,
    #[serde(with = "time_format")]
    pub first_event_at: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub last_event_at: DateTime<Utc>,
    /// The status whose event carried `conversation`.
    #[serde(skip)]
    pub conversation_status: Option<Status>,
    /// The status whose event the identity fields came from (`None`: a message stored
    /// before a store kept it; its current status stands in).
    #[serde(skip)]
    pub identity_status: Option<Status>,
    /// When its last event was stored (the store's clock, which the retention goes by:
    /// eventTime is the sender's).
    #[serde(skip)]
    pub touched_at: DateTime<Utc>,
    /// Per status reached, the stored event that brought it (empty for statuses stored
    /// before a store kept them).
    #[serde(skip)]
    pub events: BTreeMap<Status, EventRecord>,
}

/// A message's statuses are kept in the order of their spelling (as they are stored and
/// shown), whatever their precedence.
impl Ord for Status {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Status {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// From its wire spelling (a stored message's maps are keyed by it).
impl<'de> serde::Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spelled = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Status::parse(&spelled))
    }
}

/// The stored event that brought a message one of its statuses.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// The envelope id (`id` of the push).
    pub envelope_id: String,
    /// When innohook stored it; kept as milliseconds since the epoch (this map is written
    /// with every event of the message, and read back with it).
    #[serde(with = "millis")]
    pub received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<RecordedWarning>,
}

/// A time as milliseconds since the epoch, for [`EventRecord`].
mod millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(at.timestamp_millis())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let ms = i64::deserialize(d)?;
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| serde::de::Error::custom(format!("no time: {ms} ms")))
    }
}

/// A warning of a stored event, as kept with it and with its message.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RecordedWarning {
    pub code: String,
    pub field: String,
    pub message: String,
}

impl From<&super::Warning> for RecordedWarning {
    fn from(w: &super::Warning) -> Self {
        Self {
            code: w.code.to_owned(),
            field: w.field.clone(),
            message: w.message.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageError {
    pub code: String,
    pub message: Option<String>,
    /// The failure status it came with.
    pub status: Status,
}

impl Message {
    /// The fields that say which message this is and whose.
    fn identity(&self) -> (&str, Option<&str>, &str, &str, &str) {
        (
            &self.wamid,
            self.uid.as_deref(),
            &self.send_phone,
            &self.waba_id,
            &self.account_name,
        )
    }

    /// Whether `other` names another wamid, uid, sendPhone, wabaId or accountName.
    pub fn identity_differs(&self, other: &Message) -> bool {
        self.identity() != other.identity()
    }

    /// When it reached `status`, if it did.
    pub fn reached(&self, status: &Status) -> Option<DateTime<Utc>> {
        self.statuses.get(status).copied()
    }

    /// Its conversation's category (`initiateType`) and the first four digits of the
    /// number it was sent to (enough for any country calling code): what it is priced by.
    /// `None` without a category. Borrowed where it can be: this runs for every event.
    pub fn category(&self) -> Option<(&str, std::borrow::Cow<'_, str>)> {
        let category = self.conversation.as_ref()?.get("initiateType")?.as_str()?;
        let phone = self.send_phone.as_str();
        let prefix = match phone.get(..4) {
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => std::borrow::Cow::Borrowed(p),
            _ => phone.chars().filter(char::is_ascii_digit).take(4).collect(),
        };
        Some((category, prefix))
    }

    /// When it failed (`failed`, else `SMECL:FAILED`), if it did.
    pub fn failed_at(&self) -> Option<DateTime<Utc>> {
        self.reached(&Status::Failed)
            .or_else(|| self.reached(&Status::SmeclFailed))
    }
}

/// The claim an event has to give a message its identity fields: the greatest wins.
fn identity_claim(has_uid: bool, status: &Status) -> (bool, u8, &str) {
    (has_uid, status.rank(), status.as_str())
}

/// What one event does to its message.
// Returned once per event and taken apart at once: boxing the message would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Tracked {
    /// The message already has this status: the event is a duplicate and changes nothing.
    Duplicate,
    /// The message as it is now (new, or `old` with this event applied).
    Changed(Message),
}

/// Decides a message's state after one more of its status events: `old` is its stored
/// state before (none for a message not seen yet), `received_at` stands in for a missing
/// eventTime. The one place where the rules above are applied.
pub fn track(old: Option<&Message>, u: &StatusUpdate, received_at: DateTime<Utc>) -> Tracked {
    if u.is_known_to(old) {
        return Tracked::Duplicate;
    }
    let at = u.at.unwrap_or_else(|| received_at.trunc_subsecs(3));
    let mut m = match old {
        Some(o) => o.clone(),
        None => Message {
            id: u.message_id.clone(),
            wamid: u.wamid.clone(),
            status: u.status.clone(),
            statuses: BTreeMap::new(),
            error: None,
            conversation: None,
            conflict: false,
            uid: u.uid.clone(),
            send_phone: u.send_phone.clone(),
            waba_id: u.waba_id.clone(),
            account_name: u.account_name.clone(),
            first_event_at: at,
            last_event_at: at,
            conversation_status: None,
            identity_status: Some(u.status.clone()),
            touched_at: received_at,
            events: BTreeMap::new(),
        },
    };
    let identity_changed = old.is_some_and(|o| {
        identity_claim(u.uid.is_some(), &u.status)
            > identity_claim(
                o.uid.is_some(),
                o.identity_status.as_ref().unwrap_or(&o.status),
            )
    });
    if identity_changed {
        m.wamid.clone_from(&u.wamid);
        m.uid.clone_from(&u.uid);
        m.send_phone.clone_from(&u.send_phone);
        m.waba_id.clone_from(&u.waba_id);
        m.account_name.clone_from(&u.account_name);
        m.identity_status = Some(u.status.clone());
    }
    m.statuses.insert(u.status.clone(), at);
    m.events.insert(
        u.status.clone(),
        EventRecord {
            envelope_id: u.envelope_id.clone(),
            received_at: received_at.trunc_subsecs(3),
            warnings: u.warnings.clone(),
        },
    );
    if u.status.outranks(&m.status) {
        m.status = u.status.clone();
    }
    if let Some((code, message)) = &u.error
        && u.status.is_failure()
        && m.error
            .as_ref()
            .is_none_or(|e| u.status.outranks(&e.status))
    {
        m.error = Some(MessageError {
            code: code.clone(),
            message: message.clone(),
            status: u.status.clone(),
        });
    }
    if let Some(c) = &u.conversation
        && m.conversation_status
            .as_ref()
            .is_none_or(|s| u.status.outranks(s))
    {
        m.conversation = Some(c.clone());
        m.conversation_status = Some(u.status.clone());
    }
    let reached = |f: fn(&Status) -> bool| m.statuses.keys().any(f);
    m.conflict = reached(Status::is_failure) && reached(Status::is_success);
    m.first_event_at = m.first_event_at.min(at);
    m.last_event_at = m.last_event_at.max(at);
    m.touched_at = m.touched_at.max(received_at);
    Tracked::Changed(m)
}

/// A batch (uid) at a glance: its messages by current status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    pub uid: String,
    /// Messages of this batch with a status report so far (each counted once, in its
    /// current status).
    pub messages: i64,
    /// Delivered or read: the messages that reached the phone.
    pub reached: i64,
    /// Delivered and not (yet) read.
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub other: i64,
    /// read / messages.
    pub read_rate: f64,
    /// Failed messages grouped by error code, most frequent first.
    pub failures: Vec<FailureGroup>,
    #[serde(with = "time_format")]
    pub first_event_at: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub last_event_at: DateTime<Utc>,
}

impl Batch {
    /// A summary from its counters (`counts` in [`BatchDelta::counts`] order).
    pub fn new(
        uid: String,
        counts: [i64; 5],
        failures: Vec<FailureGroup>,
        first_event_at: DateTime<Utc>,
        last_event_at: DateTime<Utc>,
    ) -> Self {
        let [messages, delivered, read, failed, other] = counts;
        Self {
            uid,
            messages,
            reached: delivered + read,
            delivered,
            read,
            failed,
            other,
            read_rate: if messages > 0 {
                read as f64 / messages as f64
            } else {
                0.0
            },
            failures,
            first_event_at,
            last_event_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureGroup {
    pub error_code: String,
    pub error_message: Option<String>,
    pub messages: i64,
}

/// How one batch's counters move: added to what is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchDelta {
    /// messages, delivered, read, failed, other.
    pub counts: [i64; 5],
    /// The earliest and latest event time of the messages that moved (to be merged with
    /// the stored ones by min / max).
    pub first_event_at: DateTime<Utc>,
    pub last_event_at: DateTime<Utc>,
    /// When a message of it was last stored (merged by max).
    pub touched_at: DateTime<Utc>,
    /// Messages per error code, with the code's message (the first one seen).
    pub errors: BTreeMap<String, (i64, Option<String>)>,
    /// Messages per conversation category, then number prefix ([`Message::category`]).
    pub categories: BTreeMap<String, BTreeMap<String, i64>>,
    /// Status events per hour of their eventTime ([`hour_of`]), as delivered, read,
    /// failed, other.
    pub hours: BTreeMap<i64, [i64; 4]>,
}

/// The hour a time falls in, as hours since the Unix epoch (UTC).
pub fn hour_of(at: &DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600)
}

/// Quarter-hours since the Unix epoch: every time zone's offset is a whole number of
/// them, so counts kept per quarter-hour add up to any zone's days exactly.
pub fn slot_of(at: &DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(900)
}

/// The start of a slot given by [`slot_of`].
pub fn slot_start(slot: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(slot.saturating_mul(900), 0).unwrap_or_default()
}

/// The entry of `key` in `map`, made if missing; found without allocating a key.
pub fn entry_of<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("just made")
}

/// A mark of [`day_marks`]: the quarter-hour, what happened, and the error code of an
/// `error` (else "").
pub type DayMark<'a> = (i64, &'static str, &'a str);

/// What one message adds to the daily report, each in the quarter-hour of its eventTime,
/// in the same buckets as its batch counts it (so that a report's days add up to the
/// batches' figures): `reached` when it first reached the phone (delivered, or read if
/// that came first) unless it has failed since, `read` likewise, and `failed` when it
/// failed, with `error` and its error code then. A function of the message's state, so
/// what a change moves is the difference of two of these.
pub fn day_marks(m: &Message) -> [Option<DayMark<'_>>; 4] {
    let failed = m.status.is_failure();
    let reached = [m.reached(&Status::Delivered), m.reached(&Status::Read)]
        .into_iter()
        .flatten()
        .min()
        .filter(|_| !failed);
    let failed_at = m.failed_at().filter(|_| failed);
    [
        reached.map(|at| (slot_of(&at), "reached", "")),
        m.reached(&Status::Read)
            .filter(|_| !failed)
            .map(|at| (slot_of(&at), "read", "")),
        failed_at.map(|at| (slot_of(&at), "failed", "")),
        failed_at
            .zip(m.error.as_ref())
            .map(|(at, e)| (slot_of(&at), "error", e.code.as_str())),
    ]
}

/// The start of an hour given by [`hour_of`].
pub fn hour_start(hour: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(hour.saturating_mul(3600), 0).unwrap_or_default()
}

impl BatchDelta {
    /// Whether a message left the batch (then it may be left with none).
    pub fn lost_messages(&self) -> bool {
        self.counts[0] < 0
    }

    /// Whether an error code lost messages (then it may be left with none).
    pub fn lost_errors(&self) -> bool {
        self.errors.values().any(|(n, _)| *n < 0)
    }

    /// Whether an hour lost events (then it may be left with none).
    pub fn lost_hours(&self) -> bool {
        self.hours.values().flatten().any(|n| *n < 0)
    }

    /// The hours whose counts move, in hour order.
    pub fn moved_hours(&self) -> impl Iterator<Item = (i64, [i64; 4])> + '_ {
        self.hours
            .iter()
            .filter(|(_, counts)| counts.iter().any(|n| *n != 0))
            .map(|(hour, counts)| (*hour, *counts))
    }
}

fn slot(bucket: Bucket) -> usize {
    match bucket {
        Bucket::Delivered => 1,
        Bucket::Read => 2,
        Bucket::Failed => 3,
        Bucket::Other => 4,
    }
}

/// The batch counters moved by the events of one transaction, per uid: gathered in
/// memory and written once per batch (a campaign's events mostly share one uid).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchDeltas(BTreeMap<String, BatchDelta>);

impl BatchDeltas {
    /// Records how a message's change moves its batch's counters: `old` is the message
    /// before (none if new), `new` after. A message counts in the batch of its uid;
    /// another event's identity can move it to another.
    pub fn record(&mut self, old: Option<&Message>, new: &Message) {
        match (old.and_then(|o| o.uid.as_deref()), new.uid.as_deref()) {
            (Some(before), Some(now)) if before == now => self.moved(now, old, Some(new)),
            (before, now) => {
                if let Some(before) = before {
                    self.moved(before, old, None);
                }
                if let Some(now) = now {
                    self.moved(now, None, Some(new));
                }
            }
        }
    }

    /// Moves the message's contribution to batch `uid` from `old` to `new`; `None` on
    /// one side: the message joins or leaves the batch.
    fn moved(&mut self, uid: &str, old: Option<&Message>, new: Option<&Message>) {
        let Some(times) = new.or(old) else { return };
        let d = match self.0.get_mut(uid) {
            Some(d) => d,
            None => self.0.entry(uid.to_owned()).or_insert_with(|| BatchDelta {
                counts: [0; 5],
                first_event_at: times.first_event_at,
                last_event_at: times.last_event_at,
                touched_at: times.touched_at,
                errors: BTreeMap::new(),
                categories: BTreeMap::new(),
                hours: BTreeMap::new(),
            }),
        };
        // The timeline: the message's events leave with `old` and come with `new`; a
        // message that stays only adds its new status.
        let (before, after) = (old.map(|m| &m.statuses), new.map(|m| &m.statuses));
        for (side, other, sign) in [(before, after, -1), (after, before, 1)] {
            for (status, at) in side.into_iter().flatten() {
                if other.and_then(|o| o.get(status)) != Some(at) {
                    let slot = slot(status.bucket()) - 1;
                    d.hours.entry(hour_of(at)).or_default()[slot] += sign;
                }
            }
        }
        if let Some(old) = old {
            d.counts[slot(old.status.bucket())] -= 1;
        }
        match new {
            Some(new) => {
                d.counts[slot(new.status.bucket())] += 1;
                d.first_event_at = d.first_event_at.min(new.first_event_at);
                d.last_event_at = d.last_event_at.max(new.last_event_at);
                d.touched_at = d.touched_at.max(new.touched_at);
            }
            None => d.counts[0] -= 1,
        }
        if old.is_none() {
            d.counts[0] += 1;
        }
        let old_category = old.and_then(Message::category);
        let new_category = new.and_then(Message::category);
        if old_category != new_category {
            for (c, n) in [(old_category, -1), (new_category, 1)] {
                if let Some((category, prefix)) = c {
                    *entry_of(entry_of(&mut d.categories, category), &prefix) += n;
                }
            }
        }
        let old_error = old.and_then(|o| o.error.as_ref());
        let new_error = new.and_then(|n| n.error.as_ref());
        if old_error.map(|e| &e.code) != new_error.map(|e| &e.code) {
            if let Some(e) = old_error {
                d.errors.entry(e.code.clone()).or_default().0 -= 1;
            }
            if let Some(e) = new_error {
                let entry = d.errors.entry(e.code.clone()).or_default();
                entry.0 += 1;
                if entry.1.is_none() {
                    entry.1.clone_from(&e.message);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each batch's move, by uid.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BatchDelta)> {
        self.0.iter().map(|(uid, d)| (uid.as_str(), d))
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUSES: [&str; 5] = ["delivered", "read", "failed", "SMECL:FAILED", "sent"];

    /// A status event of message m1, at minute `minute`; failures carry an error code
    /// named after their status, and the uid is `b-{status}` unless `uid` says otherwise.
    fn update(status: &str, minute: u32, uid: Option<&str>) -> StatusUpdate {
        let mut body = serde_json::json!({
            "id": "e1", "type": "whatsapp_message_status_updated",
            "eventTime": format!("2026-01-01T00:{minute:02}:00.000Z"),
            "body": {"id": "m1", "wamid": format!("w-{status}"), "status": status,
                     "sendPhone": "1", "wabaId": "2", "accountName": "3"}
        });
        if let Some(uid) = uid {
            body["body"]["uid"] = uid.into();
        }
        if status.to_lowercase().contains("failed") {
            body["body"]["errorData"] = serde_json::json!({"errorCode": format!("code-{status}")});
        }
        if status == "delivered" {
            body["body"]["conversation"] = serde_json::json!({"id": "c1"});
        }
        let accepted = crate::event::parse(body.to_string().as_bytes()).expect("valid");
        StatusUpdate::from_accepted(&accepted).expect("a status event")
    }

    fn replay(events: &[&StatusUpdate]) -> Option<Message> {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut message: Option<Message> = None;
        for u in events {
            if let Tracked::Changed(m) = track(message.as_ref(), u, now) {
                message = Some(m);
            }
        }
        message
    }

    /// Every permutation of `items`.
    fn orders<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut all = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut tail in orders(&rest) {
                tail.insert(0, first.clone());
                all.push(tail);
            }
        }
        all
    }

    /// The current status, worked out by hand rather than with `outranks`.
    fn expected_current(statuses: &[&str]) -> &'static str {
        for s in ["failed", "SMECL:FAILED", "read", "delivered", "sent"] {
            if statuses.contains(&s) {
                return s;
            }
        }
        unreachable!("at least one status")
    }

    /// Every non-empty subset of the four documented statuses and an unknown one, in
    /// every arrival order, with every event also arriving twice: the message ends the
    /// same whatever the order, and as the rules say.
    #[test]
    fn every_arrival_order_of_every_set_of_statuses_ends_the_same() {
        let updates: Vec<StatusUpdate> = STATUSES
            .iter()
            .enumerate()
            .map(|(i, s)| update(s, i as u32 * 7 % 5, Some("b1")))
            .collect();
        for mask in 1u32..(1 << STATUSES.len()) {
            let chosen: Vec<usize> = (0..STATUSES.len())
                .filter(|i| mask & (1 << i) != 0)
                .collect();
            let names: Vec<&str> = chosen.iter().map(|&i| STATUSES[i]).collect();
            let mut results = Vec::new();
            for order in orders(&chosen) {
                let mut events: Vec<&StatusUpdate> = order.iter().map(|&i| &updates[i]).collect();
                // A duplicate of the first arrives last.
                events.push(events[0]);
                results.push(replay(&events).expect("tracked"));
            }
            let m = &results[0];
            assert!(
                results.iter().all(|r| r == m),
                "{names:?}: depends on order"
            );
            assert_eq!(m.status.as_str(), expected_current(&names), "{names:?}");
            let mut reached: Vec<&str> = m.statuses.keys().map(Status::as_str).collect();
            reached.sort();
            let mut want = names.clone();
            want.sort();
            assert_eq!(reached, want);
            // Each status keeps the envelope that brought it.
            assert!(m.events.keys().eq(m.statuses.keys()), "{names:?}");
            let failure = names.iter().any(|s| s.to_lowercase().contains("failed"));
            let success = names.iter().any(|s| matches!(*s, "delivered" | "read"));
            assert_eq!(m.conflict, failure && success, "{names:?}");
            // The error comes from the highest failure.
            let error = m.error.as_ref().map(|e| e.code.as_str());
            let want_error = if names.contains(&"failed") {
                Some("code-failed")
            } else if names.contains(&"SMECL:FAILED") {
                Some("code-SMECL:FAILED")
            } else {
                None
            };
            assert_eq!(error, want_error, "{names:?}");
            assert_eq!(m.conversation.is_some(), names.contains(&"delivered"));
            // All carried uid b1: the identity comes from the current status's event.
            assert_eq!(m.wamid, format!("w-{}", expected_current(&names)));
            let minutes: Vec<u32> = chosen.iter().map(|&i| i as u32 * 7 % 5).collect();
            assert_eq!(
                m.first_event_at.format("%M").to_string(),
                format!("{:02}", minutes.iter().min().unwrap())
            );
            assert_eq!(
                m.last_event_at.format("%M").to_string(),
                format!("{:02}", minutes.iter().max().unwrap())
            );
        }
    }

    #[test]
    fn a_repeated_status_is_a_duplicate() {
        let delivered = update("delivered", 1, Some("b1"));
        let Tracked::Changed(m) = track(None, &delivered, Utc::now()) else {
            panic!("a new message")
        };
        assert_eq!(track(Some(&m), &delivered, Utc::now()), Tracked::Duplicate);
        // Another envelope, same message and status: still a duplicate.
        assert_eq!(
            track(Some(&m), &update("delivered", 9, None), Utc::now()),
            Tracked::Duplicate
        );
    }

    /// The identity fields come from the highest status that carried a uid, in every
    /// order, and the batch counters follow the message to that uid.
    #[test]
    fn identity_and_batch_follow_the_highest_status_with_a_uid() {
        let events = [
            update("delivered", 1, Some("first")),
            update("read", 2, None),
            update("failed", 3, Some("second")),
        ];
        for order in orders(&[0usize, 1, 2]) {
            let mut deltas = BatchDeltas::default();
            let mut message: Option<Message> = None;
            for i in order {
                if let Tracked::Changed(m) = track(message.as_ref(), &events[i], Utc::now()) {
                    deltas.record(message.as_ref(), &m);
                    message = Some(m);
                }
            }
            let m = message.unwrap();
            assert_eq!(m.uid.as_deref(), Some("second"));
            assert_eq!(m.wamid, "w-failed");
            let counts: BTreeMap<&str, [i64; 5]> =
                deltas.iter().map(|(u, d)| (u, d.counts)).collect();
            assert_eq!(counts["second"], [1, 0, 0, 1, 0]);
            assert_eq!(counts.get("first").map_or([0; 5], |c| *c), [0; 5]);
            // The timeline follows too: all three events in the second batch's hour.
            let hours: BTreeMap<&str, Vec<(i64, [i64; 4])>> = deltas
                .iter()
                .map(|(u, d)| (u, d.moved_hours().collect()))
                .collect();
            let hour = hour_of(&m.first_event_at);
            assert_eq!(hours["second"], [(hour, [1, 1, 1, 0])]);
            assert!(hours.get("first").is_none_or(Vec::is_empty));
        }
    }

    #[test]
    fn without_any_uid_the_highest_status_names_the_message() {
        let m = replay(&[&update("read", 2, None), &update("delivered", 1, None)]).unwrap();
        assert_eq!((m.wamid.as_str(), m.uid.as_deref()), ("w-read", None));
    }

    #[test]
    fn unknown_statuses_rank_below_documented_ones_and_by_spelling_among_themselves() {
        let sent = Status::parse("sent");
        let queued = Status::parse("queued");
        assert!(Status::Delivered.outranks(&sent));
        assert!(sent.outranks(&queued) && !queued.outranks(&sent));
        assert!(Status::Failed.outranks(&Status::SmeclFailed));
        assert!(Status::SmeclFailed.outranks(&Status::Read));
        assert!(Status::Read.outranks(&Status::Delivered));
        assert_eq!(sent.bucket(), Bucket::Other);
        assert_eq!(Status::SmeclFailed.bucket(), Bucket::Failed);
    }

    /// A batch's counters move with the message's bucket and error code.
    #[test]
    fn batch_deltas_move_between_buckets_and_error_codes() {
        let mut deltas = BatchDeltas::default();
        let mut message = None;
        for u in [
            update("delivered", 1, Some("b")),
            update("read", 2, Some("b")),
            update("SMECL:FAILED", 3, Some("b")),
            update("failed", 4, Some("b")),
        ] {
            let Tracked::Changed(m) = track(message.as_ref(), &u, Utc::now()) else {
                panic!()
            };
            deltas.record(message.as_ref(), &m);
            message = Some(m);
        }
        let (uid, d) = deltas.iter().next().unwrap();
        assert_eq!(uid, "b");
        assert_eq!(d.counts, [1, 0, 0, 1, 0]);
        let errors: Vec<(&str, i64)> = d
            .errors
            .iter()
            .map(|(c, (n, _))| (c.as_str(), *n))
            .collect();
        assert_eq!(errors, [("code-SMECL:FAILED", 0), ("code-failed", 1)]);
    }
}
