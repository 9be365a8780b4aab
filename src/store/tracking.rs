//! Message status tracking, updated in the same transaction that accepts a status event.
//!
//! Dedup keeps at most one event per (message, status), so a message's statuses form a
//! set, and everything here is a function of that set, whatever order the events came
//! in: the current status is the highest in [`rank`] order (a late `delivered` never
//! undoes a `read`; a failure is kept), the error comes from the highest failure, the
//! conversation from the highest status that carried one, and the message's identity
//! (wamid, uid, sendPhone, wabaId, accountName) from one event: the highest status among
//! those that carried a uid, or among all if none did. A failure together with delivered
//! or read cannot happen; it is kept and flagged as a conflict.
//!
//! Batches (`uid`) are counters kept in step with their messages, so a summary reads a
//! handful of rows however large the batch is. Each event's move between counters is
//! gathered in memory and written once per batch per transaction, in that transaction.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::event::Envelope;

/// Order of statuses: the current status of a message is its highest.
pub fn rank(status: &str) -> u8 {
    match status {
        "delivered" => 1,
        "read" => 2,
        "SMECL:FAILED" => 3,
        "failed" => 4,
        _ => 0,
    }
}

fn higher(a: &str, b: &str) -> bool {
    (rank(a), a) > (rank(b), b)
}

/// Which event a message's identity fields come from: the greatest of these.
fn identity_rank(has_uid: bool, status: &str) -> (bool, u8, &str) {
    (has_uid, rank(status), status)
}

fn is_failure(status: &str) -> bool {
    matches!(status, "failed" | "SMECL:FAILED")
}

/// The summary bucket a current status falls into.
fn category(status: &str) -> &'static str {
    match status {
        "delivered" => "delivered",
        "read" => "read",
        "failed" | "SMECL:FAILED" => "failed",
        _ => "other",
    }
}

/// What one status event says about its message.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    message_id: String,
    wamid: String,
    uid: Option<String>,
    send_phone: String,
    waba_id: String,
    account_name: String,
    status: String,
    /// eventTime, RFC 3339 UTC; without one, the time the event is stored.
    at: Option<String>,
    error: Option<(String, Option<String>)>,
    conversation: Option<serde_json::Value>,
}

impl StatusUpdate {
    /// The update a status event brings; `None` for other event types.
    pub fn from_envelope(env: &Envelope) -> Option<Self> {
        let s = env.message_status()?;
        let at = env
            .event_time()
            .map(|t| t.at().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let conversation = s.conversation().map(|c| {
            serde_json::json!({
                "id": c.id(),
                "initiateType": c.initiate_type().map(|t| t.as_str()),
                "expireAt": c.expire_at().map(|t| t.at().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            })
        });
        Some(Self {
            message_id: s.message_id().to_owned(),
            wamid: s.wamid().to_owned(),
            uid: s.uid().map(str::to_owned),
            send_phone: s.send_phone().to_owned(),
            waba_id: s.waba_id().to_owned(),
            account_name: s.account_name().to_owned(),
            status: s.status().as_str().to_owned(),
            at,
            error: s
                .error()
                .map(|e| (e.code().to_owned(), e.message().map(str::to_owned))),
            conversation,
        })
    }
}

/// A message's tracked state, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub wamid: String,
    pub status: String,
    /// Each status reached, with its eventTime.
    pub statuses: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<MessageError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<serde_json::Value>,
    /// A failure and delivered/read both reported: should not happen; kept and flagged.
    pub conflict: bool,
    pub uid: Option<String>,
    pub send_phone: String,
    pub waba_id: String,
    pub account_name: String,
    pub first_event_at: String,
    pub last_event_at: String,
    /// The status whose event carried `conversation`.
    #[serde(skip)]
    conversation_status: Option<String>,
    /// The status whose event the identity fields came from (`None`: the message was
    /// stored before schema v5, and its current status stands in).
    #[serde(skip)]
    identity_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageError {
    pub code: String,
    pub message: Option<String>,
    /// The failure status it came with.
    pub status: String,
}

impl Message {
    /// The fields that say which message this is and whose (see [`identity_rank`]).
    fn identity(&self) -> (&str, Option<&str>, &str, &str, &str) {
        (
            &self.wamid,
            self.uid.as_deref(),
            &self.send_phone,
            &self.waba_id,
            &self.account_name,
        )
    }
}

impl StatusUpdate {
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// Whether `message` (its stored state) already has this update's status: then the
    /// event is a duplicate. This is the dedup of status events, key (body.id, status).
    pub fn is_known_to(&self, message: Option<&Message>) -> bool {
        message.is_some_and(|m| m.statuses.contains_key(&self.status))
    }
}

/// Applies one newly stored status event to its message (`old`: its state before, as
/// [`load`] read it in this transaction) and records its batch's move, which the store
/// writer writes at the end of the transaction. `received_at` stands in for a missing
/// eventTime.
pub(super) fn apply(
    conn: &Connection,
    u: &StatusUpdate,
    old: Option<Message>,
    received_at: &str,
) -> rusqlite::Result<()> {
    let at = u.at.as_deref().unwrap_or(received_at);
    let mut m = old.clone().unwrap_or_else(|| Message {
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
        first_event_at: at.to_owned(),
        last_event_at: at.to_owned(),
        conversation_status: None,
        identity_status: Some(u.status.clone()),
    });
    let identity_changed = old.as_ref().is_some_and(|o| {
        identity_rank(u.uid.is_some(), &u.status)
            > identity_rank(
                o.uid.is_some(),
                o.identity_status.as_deref().unwrap_or(&o.status),
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
    m.statuses.insert(u.status.clone(), at.to_owned());
    if higher(&u.status, &m.status) {
        m.status = u.status.clone();
    }
    if let Some((code, message)) = &u.error
        && is_failure(&u.status)
        && m.error
            .as_ref()
            .is_none_or(|e| higher(&u.status, &e.status))
    {
        m.error = Some(MessageError {
            code: code.clone(),
            message: message.clone(),
            status: u.status.clone(),
        });
    }
    if let Some(c) = &u.conversation
        && m.conversation_status
            .as_deref()
            .is_none_or(|s| higher(&u.status, s))
    {
        m.conversation = Some(c.clone());
        m.conversation_status = Some(u.status.clone());
    }
    m.conflict = m.statuses.keys().any(|s| is_failure(s))
        && m.statuses
            .keys()
            .any(|s| matches!(s.as_str(), "delivered" | "read"));
    if at < m.first_event_at.as_str() {
        m.first_event_at = at.to_owned();
    }
    if at > m.last_event_at.as_str() {
        m.last_event_at = at.to_owned();
    }
    save(conn, &m)?;
    if old.as_ref().is_some_and(|o| o.identity() != m.identity()) {
        save_identity(conn, &m)?;
    }
    // A message counts in the batch of its uid; another event's identity can move it.
    match (
        old.as_ref().and_then(|o| o.uid.as_deref()),
        m.uid.as_deref(),
    ) {
        (Some(before), Some(now)) if before == now => update_batch(now, old.as_ref(), Some(&m)),
        (before, now) => {
            if let Some(before) = before {
                update_batch(before, old.as_ref(), None);
            }
            if let Some(now) = now {
                update_batch(now, None, Some(&m));
            }
        }
    }
    Ok(())
}

/// The columns of a message row, in [`message_from_row`] order (a macro, so that every
/// statement is one `concat!`ed literal: nothing to format per event).
macro_rules! message_columns {
    () => {
        "message_id, wamid, status, statuses, error_code, error_message, error_status, \
         conversation, conversation_status, conflict, uid, send_phone, waba_id, account_name, \
         first_event_at, last_event_at, identity_status"
    };
}

fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let statuses: String = r.get(3)?;
    let conversation: Option<String> = r.get(7)?;
    let error_code: Option<String> = r.get(4)?;
    Ok(Message {
        id: r.get(0)?,
        wamid: r.get(1)?,
        status: r.get(2)?,
        // Dedup of status events rests on this map: an unreadable one is an error, never
        // silently empty.
        statuses: serde_json::from_str(&statuses).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        error: match error_code {
            Some(code) => Some(MessageError {
                code,
                message: r.get(5)?,
                status: r.get(6)?,
            }),
            None => None,
        },
        conversation: conversation.and_then(|c| serde_json::from_str(&c).ok()),
        conversation_status: r.get(8)?,
        conflict: r.get(9)?,
        uid: r.get(10)?,
        send_phone: r.get(11)?,
        waba_id: r.get(12)?,
        account_name: r.get(13)?,
        first_event_at: r.get(14)?,
        last_event_at: r.get(15)?,
        identity_status: r.get(16)?,
    })
}

/// One message by its InnoPaaS id.
pub fn load(conn: &Connection, message_id: &str) -> rusqlite::Result<Option<Message>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE message_id = ?1"
    ))?
    .query_row([message_id], message_from_row)
    .optional()
}

/// The messages with this WhatsApp message id (normally one).
pub fn by_wamid(conn: &Connection, wamid: &str) -> rusqlite::Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE wamid = ?1 ORDER BY message_id LIMIT 100"
    ))?;
    let rows = stmt.query_map([wamid], message_from_row)?;
    rows.collect()
}

/// Every message of a batch, by message id.
pub fn batch_messages(
    conn: &Connection,
    uid: &str,
    mut each: impl FnMut(Message),
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE uid = ?1 ORDER BY message_id"
    ))?;
    let mut rows = stmt.query([uid])?;
    while let Some(row) = rows.next()? {
        each(message_from_row(row)?);
    }
    Ok(())
}

/// Writes a message. An existing one is updated in the columns most events change, none
/// of them indexed, so its wamid and uid index entries are left alone; see
/// [`save_identity`] for the rest.
fn save(conn: &Connection, m: &Message) -> rusqlite::Result<()> {
    let error = m.error.as_ref();
    conn.prepare_cached(concat!(
        "INSERT INTO messages (",
        message_columns!(),
        ")
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT (message_id) DO UPDATE SET
             status = excluded.status, statuses = excluded.statuses,
             error_code = excluded.error_code, error_message = excluded.error_message,
             error_status = excluded.error_status, conversation = excluded.conversation,
             conversation_status = excluded.conversation_status, conflict = excluded.conflict,
             first_event_at = excluded.first_event_at, last_event_at = excluded.last_event_at,
             identity_status = excluded.identity_status"
    ))?
    .execute(params![
        m.id,
        m.wamid,
        m.status,
        serde_json::to_string(&m.statuses).expect("a map serialises"),
        error.map(|e| &e.code),
        error.and_then(|e| e.message.as_ref()),
        error.map(|e| &e.status),
        m.conversation.as_ref().map(|c| c.to_string()),
        m.conversation_status,
        m.conflict,
        m.uid,
        m.send_phone,
        m.waba_id,
        m.account_name,
        m.first_event_at,
        m.last_event_at,
        m.identity_status,
    ])?;
    Ok(())
}

/// Writes the identity fields of an existing message, when an event with a higher claim
/// to them came (rare: a message's events normally agree on them).
fn save_identity(conn: &Connection, m: &Message) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE messages SET wamid = ?2, uid = ?3, send_phone = ?4, waba_id = ?5,
             account_name = ?6
         WHERE message_id = ?1",
    )?
    .execute(params![
        m.id,
        m.wamid,
        m.uid,
        m.send_phone,
        m.waba_id,
        m.account_name
    ])?;
    Ok(())
}

/// One batch's counters moved by the writes of the transaction being applied.
#[derive(Default, Clone)]
struct BatchDelta {
    /// messages, delivered, read, failed, other
    counts: [i64; 5],
    first_event_at: String,
    last_event_at: String,
    /// Messages per error code, with the code's message.
    errors: BTreeMap<String, (i64, Option<String>)>,
}

thread_local! {
    /// The batch deltas of the transaction being applied, per uid: written once per
    /// transaction by [`write_batch_deltas`] rather than once per event, since a
    /// campaign's events mostly share one uid.
    static BATCH_DELTAS: std::cell::RefCell<BTreeMap<String, BatchDelta>> =
        const { std::cell::RefCell::new(BTreeMap::new()) };
}

/// Moves the message's contribution to batch `uid` from `old` to `new` (in memory, until
/// [`write_batch_deltas`]); `None` on one side: the message joins or leaves the batch.
/// Call it last in a write, when nothing can fail any more.
fn update_batch(uid: &str, old: Option<&Message>, new: Option<&Message>) {
    let bucket = |status: &str| match category(status) {
        "delivered" => 1,
        "read" => 2,
        "failed" => 3,
        _ => 4,
    };
    let Some(times) = new.or(old) else { return };
    BATCH_DELTAS.with(|deltas| {
        let mut deltas = deltas.borrow_mut();
        let d = match deltas.get_mut(uid) {
            Some(d) => d,
            None => deltas.entry(uid.to_owned()).or_insert_with(|| BatchDelta {
                first_event_at: times.first_event_at.clone(),
                last_event_at: times.last_event_at.clone(),
                ..BatchDelta::default()
            }),
        };
        if let Some(old) = old {
            d.counts[bucket(&old.status)] -= 1;
        }
        match new {
            Some(new) => {
                d.counts[bucket(&new.status)] += 1;
                if new.first_event_at < d.first_event_at {
                    d.first_event_at.clone_from(&new.first_event_at);
                }
                if new.last_event_at > d.last_event_at {
                    d.last_event_at.clone_from(&new.last_event_at);
                }
            }
            None => d.counts[0] -= 1,
        }
        if old.is_none() {
            d.counts[0] += 1;
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
    });
}

/// Forgets the batch deltas gathered so far (the transaction is started again).
pub(super) fn forget_batch_deltas() {
    BATCH_DELTAS.with(|d| d.borrow_mut().clear());
}

/// The batch deltas as they stand before one write (only taken when a transaction is
/// redone write by write, so the copy is rare).
pub(super) struct DeltasMark(BTreeMap<String, BatchDelta>);

pub(super) fn mark_batch_deltas() -> DeltasMark {
    DeltasMark(BATCH_DELTAS.with(|d| d.borrow().clone()))
}

/// Goes back to `mark`: the write after it was rolled back to its savepoint.
pub(super) fn back_to_batch_deltas(mark: DeltasMark) {
    BATCH_DELTAS.with(|d| *d.borrow_mut() = mark.0);
}

/// Writes the batch deltas of the transaction being applied, one upsert per batch.
pub(super) fn write_batch_deltas(conn: &Connection) -> rusqlite::Result<()> {
    let deltas = BATCH_DELTAS.with(|d| std::mem::take(&mut *d.borrow_mut()));
    for (uid, d) in &deltas {
        conn.prepare_cached(
            "INSERT INTO batches (uid, messages, delivered, read, failed, other, first_event_at, last_event_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (uid) DO UPDATE SET
                 messages = messages + excluded.messages,
                 delivered = delivered + excluded.delivered,
                 read = read + excluded.read,
                 failed = failed + excluded.failed,
                 other = other + excluded.other,
                 first_event_at = MIN(first_event_at, excluded.first_event_at),
                 last_event_at = MAX(last_event_at, excluded.last_event_at)",
        )?
        .execute(params![
            uid,
            d.counts[0],
            d.counts[1],
            d.counts[2],
            d.counts[3],
            d.counts[4],
            d.first_event_at,
            d.last_event_at
        ])?;
        for (code, (messages, message)) in d.errors.iter().filter(|(_, (n, _))| *n != 0) {
            conn.prepare_cached(
                "INSERT INTO batch_errors (uid, error_code, error_message, messages) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (uid, error_code) DO UPDATE SET messages = messages + excluded.messages",
            )?
            .execute(params![uid, code, message, messages])?;
        }
        if d.errors.values().any(|(n, _)| *n < 0) {
            conn.prepare_cached("DELETE FROM batch_errors WHERE uid = ?1 AND messages <= 0")?
                .execute([uid])?;
        }
        // A batch all of whose messages moved to another uid is gone, as if never seen.
        if d.counts[0] < 0 {
            conn.prepare_cached("DELETE FROM batches WHERE uid = ?1 AND messages <= 0")?
                .execute([uid])?;
        }
    }
    Ok(())
}

/// A batch (uid) at a glance.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    pub uid: String,
    pub messages: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub other: i64,
    /// read / messages.
    pub read_rate: f64,
    /// Failed messages grouped by error code, most frequent first.
    pub failures: Vec<FailureGroup>,
    pub first_event_at: String,
    pub last_event_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureGroup {
    pub error_code: String,
    pub error_message: Option<String>,
    pub messages: i64,
}

pub fn batch(conn: &Connection, uid: &str) -> rusqlite::Result<Option<Batch>> {
    let Some(mut b) = conn
        .prepare_cached(
            "SELECT uid, messages, delivered, read, failed, other, first_event_at, last_event_at
             FROM batches WHERE uid = ?1",
        )?
        .query_row([uid], |r| {
            let messages: i64 = r.get(1)?;
            let read: i64 = r.get(3)?;
            Ok(Batch {
                uid: r.get(0)?,
                messages,
                delivered: r.get(2)?,
                read,
                failed: r.get(4)?,
                other: r.get(5)?,
                read_rate: if messages > 0 {
                    read as f64 / messages as f64
                } else {
                    0.0
                },
                failures: Vec::new(),
                first_event_at: r.get(6)?,
                last_event_at: r.get(7)?,
            })
        })
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT error_code, error_message, messages FROM batch_errors
         WHERE uid = ?1 ORDER BY messages DESC, error_code",
    )?;
    b.failures = stmt
        .query_map([uid], |r| {
            Ok(FailureGroup {
                error_code: r.get(0)?,
                error_message: r.get(1)?,
                messages: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(b))
}
