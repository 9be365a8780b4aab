//! Reads, on connections of their own (WAL lets them run beside the writer), pooled and
//! run on the blocking threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};

use chrono::{DateTime, Utc};

use super::{parse_time, time_column, tracking};
use crate::event::Status;
use crate::event::tracking::{Batch, Message, hour_start};
use crate::store::{
    BatchHour, BatchQuery, Counted, DeadLetter, DeadLetterEntry, DeadLetterQuery, EventQuery,
    EventSummary, HourCount, ParkedEvent, SinkState, StoreError, StoreResult, StoredEvent,
};

const EVENT_COLUMNS: &str =
    "seq, received_at, event_id, event_type, message_id, status, warnings, body";

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        seq: r.get(0)?,
        received_at: time_column(r, 1)?,
        event_id: r.get(2)?,
        event_type: r.get(3)?,
        message_id: r.get(4)?,
        status: r.get_ref(5)?.as_str_or_null()?.map(Status::parse),
        warnings: r.get(6)?,
        body: Bytes::from(r.get::<_, Vec<u8>>(7)?),
    })
}

/// A read-only connection to the store.
pub(super) struct Reader {
    conn: Connection,
}

impl Reader {
    pub(super) fn open(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(super::DB_FILE);
        anyhow::ensure!(path.is_file(), "no store at {}", path.display());
        let conn = super::connect(
            dir,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(Self { conn })
    }

    /// Up to `limit` events with seq greater than `after`, in commit order.
    pub(super) fn events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> rusqlite::Result<Vec<StoredEvent>> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params![after, limit as i64], event_from_row)?;
        rows.collect()
    }

    /// The last seq `sink` is done with.
    pub(super) fn cursor(&self, sink: &str) -> rusqlite::Result<Option<i64>> {
        self.conn
            .prepare_cached("SELECT seq FROM sink_cursors WHERE sink = ?1")?
            .query_row([sink], |r| r.get(0))
            .optional()
    }

    /// The events `sink` has set aside, in seq order.
    pub(super) fn parked(&self, sink: &str) -> rusqlite::Result<Vec<(ParkedEvent, StoredEvent)>> {
        let columns: Vec<String> = EVENT_COLUMNS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect();
        let columns = columns.join(", ");
        let sql = format!(
            "SELECT {columns}, p.message_id, p.attempts, p.first_attempt_at, p.next_attempt_at, p.last_error
             FROM sink_parked p JOIN events e ON e.seq = p.event_seq
             WHERE p.sink = ?1 ORDER BY p.event_seq"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([sink], |r| {
            let event = event_from_row(r)?;
            let first: Option<String> = r.get(10)?;
            Ok((
                ParkedEvent {
                    seq: event.seq,
                    message_id: r.get(8)?,
                    attempts: r.get(9)?,
                    first_attempt_at: first.as_deref().and_then(parse_time),
                    next_attempt_at: time_column(r, 11)?,
                    last_error: r.get(12)?,
                },
                event,
            ))
        })?;
        rows.collect()
    }

    /// Events put back in `sink`'s queue by `innohook replay`, oldest first.
    pub(super) fn replay_queue(
        &self,
        sink: &str,
        limit: usize,
    ) -> rusqlite::Result<Vec<StoredEvent>> {
        let columns = EVENT_COLUMNS.replace("seq,", "e.seq,");
        let sql = format!(
            "SELECT {columns} FROM sink_replay r JOIN events e ON e.seq = r.event_seq
             WHERE r.sink = ?1 ORDER BY r.event_seq LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params![sink, limit as i64], event_from_row)?;
        rows.collect()
    }

    pub(super) fn message(&self, id: &str) -> rusqlite::Result<Option<Message>> {
        tracking::load(&self.conn, id)
    }

    pub(super) fn messages_by_wamid(&self, wamid: &str) -> rusqlite::Result<Vec<Message>> {
        tracking::by_wamid(&self.conn, wamid)
    }

    pub(super) fn batch(&self, uid: &str) -> rusqlite::Result<Option<Batch>> {
        tracking::batch(&self.conn, uid)
    }

    pub(super) fn batch_messages(
        &self,
        uid: &str,
        after: Option<&str>,
        limit: usize,
    ) -> rusqlite::Result<Vec<Message>> {
        tracking::batch_messages(&self.conn, uid, after, limit)
    }

    /// Events by [`EventQuery`], in seq order.
    pub(super) fn events(&self, q: &EventQuery) -> rusqlite::Result<Vec<StoredEvent>> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?");
        let limit = q.limit as i64;
        let since = q.since.as_ref().map(crate::event::format_time);
        let after = match &since {
            Some(since) => q
                .after
                .max(first_seq_received_at_or_after(&self.conn, since)? - 1),
            None => q.after,
        };
        let mut params: Vec<&dyn rusqlite::ToSql> = vec![&after];
        if let Some(s) = &q.status {
            sql.push_str(" AND status = ?");
            params.push(s);
        }
        if let Some(s) = &since {
            sql.push_str(" AND received_at >= ?");
            params.push(s);
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        params.push(&limit);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params.as_slice(), event_from_row)?;
        rows.collect()
    }

    /// Rows per table and the oldest event (see `retention::counts`).
    pub(super) fn counts(&self) -> rusqlite::Result<super::retention::Counts> {
        super::retention::counts(&self.conn)
    }

    pub(super) fn count_events(&self) -> rusqlite::Result<i64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
    }

    /// Every dead letter, oldest first, a sink's with its event.
    pub(super) fn dead_letters(&self) -> rusqlite::Result<Vec<DeadLetter>> {
        let sql =
            format!("SELECT {DEAD_LETTER_COLUMNS} FROM {DEAD_LETTERS_WITH_EVENTS} ORDER BY d.id");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([], dead_letter_from_row)?;
        rows.collect()
    }

    pub(super) fn event_counts(&self, from_hour: i64) -> rusqlite::Result<Vec<HourCount>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT hour, outcome, status, events FROM event_counts
             WHERE hour >= ?1 ORDER BY hour, outcome, status",
        )?;
        let rows = stmt.query_map([from_hour], |r| {
            let outcome: String = r.get(1)?;
            Ok(HourCount {
                hour: hour_start(r.get(0)?),
                outcome: Counted::parse(&outcome).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        format!("not an outcome: {outcome:?}").into(),
                    )
                })?,
                status: r.get(2)?,
                events: r.get(3)?,
            })
        })?;
        rows.collect()
    }

    pub(super) fn recent_batches(&self, q: &BatchQuery) -> rusqlite::Result<Vec<Batch>> {
        tracking::recent_batches(&self.conn, q)
    }

    pub(super) fn batch_timeline(&self, uid: &str) -> rusqlite::Result<Vec<BatchHour>> {
        tracking::batch_timeline(&self.conn, uid)
    }

    pub(super) fn batch_message_statuses(
        &self,
        uid: &str,
        after: Option<&str>,
        limit: usize,
    ) -> rusqlite::Result<Vec<(String, Status)>> {
        tracking::batch_message_statuses(&self.conn, uid, after, limit)
    }

    pub(super) fn messages_by_phone(&self, phone: &str) -> rusqlite::Result<Vec<Message>> {
        tracking::by_phone(&self.conn, phone)
    }

    /// A page of dead letters, newest first, each with its event and whether it waits in
    /// its sink's replay queue.
    pub(super) fn dead_letter_page(
        &self,
        q: &DeadLetterQuery,
    ) -> rusqlite::Result<Vec<DeadLetterEntry>> {
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS}, EXISTS (SELECT 1 FROM sink_replay r
                 WHERE r.sink = d.sink AND r.event_seq = d.event_seq)
             FROM {DEAD_LETTERS_WITH_EVENTS} WHERE d.source = ?1 AND d.id < ?2 ORDER BY d.id DESC LIMIT ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            rusqlite::params![q.source, q.before.unwrap_or(i64::MAX), q.limit as i64],
            |r| Ok((dead_letter_from_row(r)?, r.get::<_, bool>(16)?)),
        )?;
        let mut event = self.conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?1"
        ))?;
        let mut page = Vec::new();
        for row in rows {
            let (letter, queued) = row?;
            let event = match letter.event_seq {
                Some(seq) => event.query_row([seq], event_from_row).optional()?,
                None => None,
            };
            page.push(DeadLetterEntry {
                letter,
                event,
                queued,
            });
        }
        Ok(page)
    }

    /// Every sink that has a cursor, a recorded failure or dead letters waiting.
    pub(super) fn sink_states(&self) -> rusqlite::Result<Vec<SinkState>> {
        let mut stmt = self.conn.prepare_cached(crate::store::SINK_STATES_SQL)?;
        let time = |r: &Row<'_>, i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
            Ok(r.get_ref(i)?.as_str_or_null()?.and_then(parse_time))
        };
        let rows = stmt.query_map([], |r| {
            Ok(SinkState {
                sink: r.get(0)?,
                cursor: r.get(1)?,
                failing_since: time(r, 2)?,
                last_error: r.get(3)?,
                last_error_at: time(r, 4)?,
                dead_letters: r.get(5)?,
                last_dead_letter_at: time(r, 6)?,
                parked: r.get(7)?,
            })
        })?;
        rows.collect()
    }
}

/// A dead letter and, for a sink's, its event's summary (a sink's carries its event's
/// body, a rejected request its own).
const DEAD_LETTER_COLUMNS: &str = "d.id, d.created_at, d.source, d.sink, d.event_seq, d.code, \
     d.field, d.reason, COALESCE(d.body, e.body), d.replayed_at, d.attempts, d.first_attempt_at, \
     e.event_id, e.event_type, e.message_id, e.status";
const DEAD_LETTERS_WITH_EVENTS: &str = "dead_letters d LEFT JOIN events e ON e.seq = d.event_seq";

/// A dead letter row, in [`DEAD_LETTER_COLUMNS`] order.
fn dead_letter_from_row(r: &Row<'_>) -> rusqlite::Result<DeadLetter> {
    let body: Option<Vec<u8>> = r.get(8)?;
    let body_is_not_utf8 = body
        .as_ref()
        .is_some_and(|b| std::str::from_utf8(b).is_err());
    let replayed_at: Option<String> = r.get(9)?;
    let first_attempt_at: Option<String> = r.get(11)?;
    let event_id: Option<String> = r.get(12)?;
    Ok(DeadLetter {
        id: r.get(0)?,
        created_at: time_column(r, 1)?,
        source: r.get(2)?,
        sink: r.get(3)?,
        event_seq: r.get(4)?,
        event: match event_id {
            Some(id) => Some(EventSummary {
                id,
                event_type: r.get(13)?,
                message_id: r.get(14)?,
                status: r.get(15)?,
            }),
            None => None,
        },
        code: r.get(5)?,
        field: r.get(6)?,
        reason: r.get(7)?,
        attempts: r.get(10)?,
        first_attempt_at: first_attempt_at.as_deref().and_then(parse_time),
        body: body.map(|b| String::from_utf8_lossy(&b).into_owned()),
        body_is_not_utf8,
        replayed_at: replayed_at.as_deref().and_then(parse_time),
    })
}

/// The first seq received at or after `since` (one past the last seq if none was). The
/// writer stamps received_at per commit, never going back, so received_at rises with seq
/// and a binary search over seq finds it in about 25 lookups at 10 million events,
/// without an index on received_at. (Stored times share one fixed format, so comparing
/// their text compares the times.)
pub(super) fn first_seq_received_at_or_after(
    conn: &Connection,
    since: &str,
) -> rusqlite::Result<i64> {
    let mut at_or_after = conn.prepare_cached(
        "SELECT seq, received_at FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1",
    )?;
    let last: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")?
        .query_row([], |r| r.get(0))?;
    // Invariant: every seq below `lo` was received before `since`; `hi` is at or after.
    let (mut lo, mut hi) = (0i64, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let found: Option<(i64, String)> = at_or_after
            .query_row([mid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match found {
            Some((seq, at)) if at.as_str() < since => lo = seq + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Read connections: taken, used on the blocking pool, put back.
#[derive(Clone)]
pub(super) struct ReaderPool {
    dir: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Reader>>>,
}

impl ReaderPool {
    pub(super) fn new(dir: &Path) -> Self {
        Self {
            dir: Arc::new(dir.to_owned()),
            idle: Arc::default(),
        }
    }

    /// Runs a read on a pooled connection, off the async threads.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let reader = match pool.idle.lock().expect("pool lock").pop() {
                Some(r) => r,
                None => {
                    Reader::open(&pool.dir).map_err(|e| StoreError::Backend(format!("{e:#}")))?
                }
            };
            let result = f(&reader);
            pool.idle.lock().expect("pool lock").push(reader);
            Ok(result?)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a store read panicked: {e}")))?
    }
}
