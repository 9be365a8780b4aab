//! Message tracking in SQLite: the `messages`, `batches` and `batch_errors` tables. What
//! a message becomes is decided by [`crate::event::tracking::track`]; this only loads and
//! saves, in the transaction that accepts the event.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::writer::Tx;
use super::{parse_time, time_column};
use crate::event::Status;
use crate::event::tracking::{
    Batch, BatchDeltas, FailureGroup, Message, MessageError, StatusUpdate, Tracked, hour_start,
    track,
};
use crate::store::{BatchHour, BatchQuery, TIMELINE_HOURS};

/// Applies one status event to its message; returns `false` if it is a duplicate (the
/// message already has its status), `true` once the message is saved and its batch's
/// move recorded (written at the end of the transaction).
pub(super) fn apply(tx: &mut Tx<'_>, u: &StatusUpdate) -> rusqlite::Result<bool> {
    let old = load(tx.conn, u.message_id())?;
    let Tracked::Changed(m) = track(old.as_ref(), u, tx.at.at) else {
        return Ok(false);
    };
    save(tx.conn, &m)?;
    if old.as_ref().is_some_and(|o| o.identity_differs(&m)) {
        save_identity(tx.conn, &m)?;
    }
    tx.batch_deltas().record(old.as_ref(), &m);
    Ok(true)
}

/// The columns of a message row, in [`message_from_row`] order (a macro, so that every
/// statement is one `concat!`ed literal: nothing to format per event).
macro_rules! message_columns {
    () => {
        "message_id, wamid, status, statuses, error_code, error_message, error_status, \
         conversation, conversation_status, conflict, uid, send_phone, waba_id, account_name, \
         first_event_at, last_event_at, identity_status, touched_at, events"
    };
}

fn conversion_error(
    column: usize,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

fn status_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Status> {
    Ok(Status::parse(r.get_ref(i)?.as_str()?))
}

fn optional_status(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Status>> {
    Ok(r.get_ref(i)?.as_str_or_null()?.map(Status::parse))
}

fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    // Dedup of status events rests on this map: an unreadable one is an error, never
    // silently empty.
    let statuses: std::collections::BTreeMap<String, String> =
        serde_json::from_str(r.get_ref(3)?.as_str()?).map_err(|e| conversion_error(3, e))?;
    let statuses = statuses
        .into_iter()
        .map(|(s, at)| {
            let at = parse_time(&at).ok_or_else(|| {
                conversion_error(3, std::io::Error::other(format!("bad time {at:?}")))
            })?;
            Ok((s, at))
        })
        .collect::<rusqlite::Result<_>>()?;
    let conversation: Option<String> = r.get(7)?;
    let error_code: Option<String> = r.get(4)?;
    Ok(Message {
        id: r.get(0)?,
        wamid: r.get(1)?,
        status: status_column(r, 2)?,
        statuses,
        error: match error_code {
            Some(code) => Some(MessageError {
                code,
                message: r.get(5)?,
                status: status_column(r, 6)?,
            }),
            None => None,
        },
        conversation: conversation.and_then(|c| serde_json::from_str(&c).ok()),
        conversation_status: optional_status(r, 8)?,
        conflict: r.get(9)?,
        uid: r.get(10)?,
        send_phone: r.get(11)?,
        waba_id: r.get(12)?,
        account_name: r.get(13)?,
        first_event_at: time_column(r, 14)?,
        last_event_at: time_column(r, 15)?,
        identity_status: optional_status(r, 16)?,
        touched_at: match r.get_ref(17)?.as_str_or_null()? {
            Some(_) => time_column(r, 17)?,
            None => time_column(r, 15)?,
        },
        // Without one (stored before a store kept them) or unreadable: none known.
        events: r
            .get_ref(18)?
            .as_str_or_null()?
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default(),
    })
}

/// One message by its InnoPaaS id.
pub(super) fn load(conn: &Connection, message_id: &str) -> rusqlite::Result<Option<Message>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE message_id = ?1"
    ))?
    .query_row([message_id], message_from_row)
    .optional()
}

/// The messages with this WhatsApp message id (normally one).
pub(super) fn by_wamid(conn: &Connection, wamid: &str) -> rusqlite::Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE wamid = ?1 ORDER BY message_id LIMIT 100"
    ))?;
    let rows = stmt.query_map([wamid], message_from_row)?;
    rows.collect()
}

/// Up to `limit` messages of a batch after message id `after`, by message id.
pub(super) fn batch_messages(
    conn: &Connection,
    uid: &str,
    after: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE uid = ?1 AND message_id > ?2 ORDER BY message_id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![uid, after.unwrap_or(""), limit as i64],
        message_from_row,
    )?;
    rows.collect()
}

/// Writes a message. An existing one is updated in the columns most events change, none
/// of them indexed, so its wamid and uid index entries are left alone; see
/// [`save_identity`] for the rest.
fn save(conn: &Connection, m: &Message) -> rusqlite::Result<()> {
    let error = m.error.as_ref();
    let statuses: std::collections::BTreeMap<&str, String> = m
        .statuses
        .iter()
        .map(|(s, at)| (s.as_str(), crate::event::format_time(at)))
        .collect();
    conn.prepare_cached(concat!(
        "INSERT INTO messages (",
        message_columns!(),
        ")
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         ON CONFLICT (message_id) DO UPDATE SET
             status = excluded.status, statuses = excluded.statuses,
             error_code = excluded.error_code, error_message = excluded.error_message,
             error_status = excluded.error_status, conversation = excluded.conversation,
             conversation_status = excluded.conversation_status, conflict = excluded.conflict,
             first_event_at = excluded.first_event_at, last_event_at = excluded.last_event_at,
             identity_status = excluded.identity_status, touched_at = excluded.touched_at,
             events = excluded.events"
    ))?
    .execute(params![
        m.id,
        m.wamid,
        m.status.as_str(),
        serde_json::to_string(&statuses).expect("a map serialises"),
        error.map(|e| &e.code),
        error.and_then(|e| e.message.as_ref()),
        error.map(|e| e.status.as_str()),
        m.conversation.as_ref().map(|c| c.to_string()),
        m.conversation_status.as_ref().map(Status::as_str),
        m.conflict,
        m.uid,
        m.send_phone,
        m.waba_id,
        m.account_name,
        crate::event::format_time(&m.first_event_at),
        crate::event::format_time(&m.last_event_at),
        m.identity_status.as_ref().map(Status::as_str),
        crate::event::format_time(&m.touched_at),
        serde_json::to_string(&m.events).expect("a map serialises"),
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

/// Writes the batch counters moved by a transaction, one upsert per batch.
pub(super) fn write_batch_deltas(conn: &Connection, deltas: &BatchDeltas) -> rusqlite::Result<()> {
    for (uid, d) in deltas.iter() {
        conn.prepare_cached(
            "INSERT INTO batches (uid, messages, delivered, read, failed, other, first_event_at, last_event_at, touched_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (uid) DO UPDATE SET
                 touched_at = MAX(COALESCE(touched_at, ''), excluded.touched_at),
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
            crate::event::format_time(&d.first_event_at),
            crate::event::format_time(&d.last_event_at),
            crate::event::format_time(&d.touched_at),
        ])?;
        for (code, (messages, message)) in d.errors.iter().filter(|(_, (n, _))| *n != 0) {
            conn.prepare_cached(
                "INSERT INTO batch_errors (uid, error_code, error_message, messages) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (uid, error_code) DO UPDATE SET messages = messages + excluded.messages",
            )?
            .execute(params![uid, code, message, messages])?;
        }
        if d.lost_errors() {
            conn.prepare_cached("DELETE FROM batch_errors WHERE uid = ?1 AND messages <= 0")?
                .execute([uid])?;
        }
        for (hour, [delivered, read, failed, other]) in d.moved_hours() {
            conn.prepare_cached(
                "INSERT INTO batch_hours (uid, hour, delivered, read, failed, other)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (uid, hour) DO UPDATE SET
                     delivered = delivered + excluded.delivered, read = read + excluded.read,
                     failed = failed + excluded.failed, other = other + excluded.other",
            )?
            .execute(params![uid, hour, delivered, read, failed, other])?;
        }
        if d.lost_hours() {
            conn.prepare_cached(
                "DELETE FROM batch_hours
                 WHERE uid = ?1 AND delivered = 0 AND read = 0 AND failed = 0 AND other = 0",
            )?
            .execute([uid])?;
        }
        // A batch all of whose messages moved to another uid is gone, as if never seen.
        if d.lost_messages() {
            conn.prepare_cached("DELETE FROM batches WHERE uid = ?1 AND messages <= 0")?
                .execute([uid])?;
        }
    }
    Ok(())
}

/// A batch row's counters and times, in `messages, delivered, read, failed, other,
/// first_event_at, last_event_at` order from column `at` on.
fn batch_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<BatchRow> {
    let count = |i: usize| r.get::<_, i64>(at + i);
    Ok((
        [count(0)?, count(1)?, count(2)?, count(3)?, count(4)?],
        time_column(r, at + 5)?,
        time_column(r, at + 6)?,
    ))
}

type BatchRow = ([i64; 5], DateTime<Utc>, DateTime<Utc>);

/// A batch summary, from its counters.
pub(super) fn batch(conn: &Connection, uid: &str) -> rusqlite::Result<Option<Batch>> {
    let Some((counts, first, last)) = conn
        .prepare_cached(
            "SELECT messages, delivered, read, failed, other, first_event_at, last_event_at
             FROM batches WHERE uid = ?1",
        )?
        .query_row([uid], |r| batch_row(r, 0))
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT error_code, error_message, messages FROM batch_errors
         WHERE uid = ?1 ORDER BY messages DESC, error_code",
    )?;
    let failures = stmt
        .query_map([uid], |r| {
            Ok(FailureGroup {
                error_code: r.get(0)?,
                error_message: r.get(1)?,
                messages: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(Batch::new(
        uid.to_owned(),
        counts,
        failures,
        first,
        last,
    )))
}

/// Batch summaries by last event time, newest first (without their failures).
pub(super) fn recent_batches(conn: &Connection, q: &BatchQuery) -> rusqlite::Result<Vec<Batch>> {
    let before = q
        .before
        .as_ref()
        .map(|(at, uid)| (crate::event::format_time(at), uid.as_str()));
    let mut stmt = conn.prepare_cached(
        "SELECT uid, messages, delivered, read, failed, other, first_event_at, last_event_at
         FROM batches
         WHERE (?1 IS NULL OR substr(uid, 1, length(?1)) = ?1)
             AND (?2 IS NULL OR (last_event_at, uid) < (?2, ?3))
         ORDER BY last_event_at DESC, uid DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![
            q.uid_prefix,
            before.as_ref().map(|b| &b.0),
            before.as_ref().map(|b| b.1),
            q.limit as i64
        ],
        |r| {
            let (counts, first, last) = batch_row(r, 1)?;
            Ok(Batch::new(r.get(0)?, counts, Vec::new(), first, last))
        },
    )?;
    rows.collect()
}

/// A batch's status events per hour, the latest [`TIMELINE_HOURS`] hours in hour order.
pub(super) fn batch_timeline(conn: &Connection, uid: &str) -> rusqlite::Result<Vec<BatchHour>> {
    let mut stmt = conn.prepare_cached(
        "SELECT hour, delivered, read, failed, other FROM (
             SELECT * FROM batch_hours WHERE uid = ?1 ORDER BY hour DESC LIMIT ?2
         ) ORDER BY hour",
    )?;
    let rows = stmt.query_map(params![uid, TIMELINE_HOURS], |r| {
        Ok(BatchHour {
            hour: hour_start(r.get(0)?),
            events: [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
        })
    })?;
    rows.collect()
}

/// The ids and current statuses of up to `limit` messages of a batch after `after`.
pub(super) fn batch_message_statuses(
    conn: &Connection,
    uid: &str,
    after: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<(String, Status)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT message_id, status FROM messages
         WHERE uid = ?1 AND message_id > ?2 ORDER BY message_id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![uid, after.unwrap_or(""), limit as i64], |r| {
        Ok((r.get(0)?, status_column(r, 1)?))
    })?;
    rows.collect()
}

/// The messages sent to this phone number (at most 100).
pub(super) fn by_phone(conn: &Connection, phone: &str) -> rusqlite::Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE send_phone = ?1 ORDER BY message_id LIMIT 100"
    ))?;
    let rows = stmt.query_map([phone], message_from_row)?;
    rows.collect()
}
