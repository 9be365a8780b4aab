//! Message tracking in SQLite: loads a message and saves what [`crate::store::ingest`]
//! decided, in the transaction that accepts the event, and writes a transaction's batch
//! counters and counted pushes at its end.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params_from_iter};

use super::writer::Tx;
use crate::event::tracking::{BatchDeltas, Message, StatusUpdate};
use crate::store::StoreResult;
use crate::store::ingest::{BatchRows, Incoming, Tally};
use crate::store::sql::{self, MESSAGE_COLUMNS};

/// Applies one status event to its message; returns `false` if it is a duplicate (the
/// message already has its status), `true` once the message is saved and its batch's
/// move recorded (written at the end of the transaction).
pub(super) fn apply(tx: &mut Tx<'_>, e: &Incoming, u: &StatusUpdate) -> StoreResult<bool> {
    let old = {
        let mut stmt = tx.conn.prepare_cached(&LOAD)?;
        let mut rows = stmt.query([u.message_id()])?;
        match rows.next()? {
            Some(row) => Some(sql::message(row)?),
            None => None,
        }
    };
    let at = tx.at.at;
    let Some(m) = tx.tally().track(e, u, old.as_ref(), at) else {
        return Ok(false);
    };
    save(tx.conn, &m)?;
    if old.as_ref().is_some_and(|o| o.identity_differs(&m)) {
        // The indexed identity columns, only when an event with a higher claim to them
        // came (rare: a message's events normally agree on them).
        tx.conn
            .prepare_cached(
                "UPDATE messages SET wamid = ?2, uid = ?11, send_phone = ?12, waba_id = ?13,
                     account_name = ?14
                 WHERE message_id = ?1",
            )?
            .execute(params_from_iter(&sql::message_values(&m)[..14]))?;
    }
    Ok(true)
}

/// Writes a message. An existing one is updated in the columns most events change, none
/// of them indexed, so its wamid and uid index entries are left alone.
fn save(conn: &Connection, m: &Message) -> rusqlite::Result<()> {
    conn.prepare_cached(&SAVE)?
        .execute(params_from_iter(&sql::message_values(m)))?;
    Ok(())
}

/// The statements of the hot path, spelled once.
static LOAD: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = ?1"));
static SAVE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO messages ({MESSAGE_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         ON CONFLICT (message_id) DO UPDATE SET
             status = excluded.status, statuses = excluded.statuses,
             error_code = excluded.error_code, error_message = excluded.error_message,
             error_status = excluded.error_status, conversation = excluded.conversation,
             conversation_status = excluded.conversation_status, conflict = excluded.conflict,
             first_event_at = excluded.first_event_at, last_event_at = excluded.last_event_at,
             identity_status = excluded.identity_status, touched_at = excluded.touched_at,
             events = excluded.events"
    )
});

/// Writes what a transaction's accepts moved: the batch counters (one upsert per batch)
/// and the pushes counted in its hour.
pub(super) fn write_tally(conn: &Connection, at: &DateTime<Utc>, tally: &Tally) -> StoreResult<()> {
    write_batches(conn, &tally.deltas)?;
    for (table, columns) in tally.counter_columns() {
        let mut statement = conn.prepare_cached(&table.add_one())?;
        for i in 0..columns[0].len() {
            statement.execute(params_from_iter(columns.iter().map(|c| &c[i])))?;
        }
    }
    for row in tally.count_rows(at) {
        conn.prepare_cached(
            "INSERT INTO event_counts (hour, outcome, status, events) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (hour, outcome, status) DO UPDATE SET events = events + excluded.events",
        )?
        .execute(params_from_iter(&row))?;
    }
    Ok(())
}

fn write_batches(conn: &Connection, deltas: &BatchDeltas) -> rusqlite::Result<()> {
    let rows = BatchRows::of(deltas);
    for row in &rows.batches {
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
        .execute(params_from_iter(row))?;
    }
    for row in &rows.errors {
        conn.prepare_cached(
            "INSERT INTO batch_errors (uid, error_code, error_message, messages) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (uid, error_code) DO UPDATE SET messages = messages + excluded.messages",
        )?
        .execute(params_from_iter(row))?;
    }
    for row in &rows.hours {
        conn.prepare_cached(
            "INSERT INTO batch_hours (uid, hour, delivered, read, failed, other)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (uid, hour) DO UPDATE SET
                 delivered = delivered + excluded.delivered, read = read + excluded.read,
                 failed = failed + excluded.failed, other = other + excluded.other",
        )?
        .execute(params_from_iter(row))?;
    }
    for (uids, sql) in [
        (
            &rows.lost_errors,
            "DELETE FROM batch_errors WHERE uid = ?1 AND messages <= 0",
        ),
        (
            &rows.lost_hours,
            "DELETE FROM batch_hours
             WHERE uid = ?1 AND delivered = 0 AND read = 0 AND failed = 0 AND other = 0",
        ),
        (
            &rows.lost_messages,
            "DELETE FROM batches WHERE uid = ?1 AND messages <= 0",
        ),
    ] {
        for uid in uids {
            conn.prepare_cached(sql)?.execute([uid])?;
        }
    }
    Ok(())
}
