//! Read-only access to the store, on its own connection (WAL lets it run beside the writer).

use std::borrow::Cow;
use std::path::Path;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use serde::Serialize;

use super::tracking::{self, Batch, Message};

/// An accepted event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub received_at: String,
    pub event_id: String,
    pub event_type: String,
    pub message_id: Option<String>,
    pub status: Option<String>,
    /// JSON array of warnings.
    pub warnings: String,
    /// The request body, byte for byte.
    pub body: Bytes,
}

impl StoredEvent {
    /// The body on one line, as received otherwise. A JSON string cannot hold a raw line
    /// break, so every one in a body lies between two tokens and becomes a space without
    /// changing what the body says: key order, numbers and escapes stay exactly as they
    /// came, including escapes a JSON value cannot hold (a lone surrogate such as
    /// `"\ud800"` in an undocumented field is accepted and kept).
    pub fn body_on_one_line(&self) -> Cow<'_, [u8]> {
        if self.body.iter().any(|&b| b == b'\n' || b == b'\r') {
            let spaced = self.body.iter().map(|&b| match b {
                b'\n' | b'\r' => b' ',
                b => b,
            });
            Cow::Owned(spaced.collect())
        } else {
            Cow::Borrowed(&self.body)
        }
    }

    const COLUMNS: &'static str =
        "seq, received_at, event_id, event_type, message_id, status, warnings, body";

    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: r.get(0)?,
            received_at: r.get(1)?,
            event_id: r.get(2)?,
            event_type: r.get(3)?,
            message_id: r.get(4)?,
            status: r.get(5)?,
            warnings: r.get(6)?,
            body: Bytes::from(r.get::<_, Vec<u8>>(7)?),
        })
    }
}

/// A dead letter, as `innohook dead-letters` prints it (one JSON object a line).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: i64,
    pub created_at: String,
    /// `http`: a request that was rejected; `sink`: an event a sink could not deliver.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_seq: Option<i64>,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
    /// The rejected body as text (invalid UTF-8 replaced; then `bodyIsNotUtf8` is true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_is_not_utf8: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_at: Option<String>,
}

/// A read-only connection to the store.
pub struct Reader {
    conn: Connection,
}

impl Reader {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(super::DB_FILE);
        anyhow::ensure!(path.is_file(), "no store at {}", path.display());
        let conn = super::connect(
            dir,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(Self { conn })
    }

    /// Up to `limit` events with seq greater than `after`, in commit order.
    pub fn events_after(&self, after: i64, limit: usize) -> rusqlite::Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            StoredEvent::COLUMNS
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            rusqlite::params![after, limit as i64],
            StoredEvent::from_row,
        )?;
        rows.collect()
    }

    /// The last seq `sink` is done with (0 if it never ran).
    pub fn cursor(&self, sink: &str) -> rusqlite::Result<i64> {
        self.conn
            .prepare_cached("SELECT seq FROM sink_cursors WHERE sink = ?1")?
            .query_row([sink], |r| r.get(0))
            .optional()
            .map(|c| c.unwrap_or(0))
    }

    /// Events put back in `sink`'s queue by `innohook replay`, oldest first.
    pub fn replay_queue(&self, sink: &str, limit: usize) -> rusqlite::Result<Vec<StoredEvent>> {
        let columns = StoredEvent::COLUMNS.replace("seq,", "e.seq,");
        let sql = format!(
            "SELECT {columns} FROM sink_replay r JOIN events e ON e.seq = r.event_seq
             WHERE r.sink = ?1 ORDER BY r.event_seq LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params![sink, limit as i64], StoredEvent::from_row)?;
        rows.collect()
    }

    /// One tracked message by its InnoPaaS id.
    pub fn message(&self, id: &str) -> rusqlite::Result<Option<Message>> {
        tracking::load(&self.conn, id)
    }

    /// The tracked messages with this WhatsApp message id.
    pub fn messages_by_wamid(&self, wamid: &str) -> rusqlite::Result<Vec<Message>> {
        tracking::by_wamid(&self.conn, wamid)
    }

    /// A batch summary.
    pub fn batch(&self, uid: &str) -> rusqlite::Result<Option<Batch>> {
        tracking::batch(&self.conn, uid)
    }

    /// Every message of a batch, by message id.
    pub fn batch_messages(&self, uid: &str, each: impl FnMut(Message)) -> rusqlite::Result<()> {
        tracking::batch_messages(&self.conn, uid, each)
    }

    /// Up to `limit` events after seq `after`, optionally only of one status and only
    /// received at or after `since` (RFC 3339 UTC, as stored).
    pub fn events_page(
        &self,
        status: Option<&str>,
        since: Option<&str>,
        after: i64,
        limit: usize,
    ) -> rusqlite::Result<Vec<StoredEvent>> {
        let mut sql = format!("SELECT {} FROM events WHERE seq > ?", StoredEvent::COLUMNS);
        let limit = limit as i64;
        let after = match since {
            Some(since) => after.max(self.first_seq_received_at_or_after(since)? - 1),
            None => after,
        };
        let mut params: Vec<&dyn rusqlite::ToSql> = vec![&after];
        if let Some(s) = &status {
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
        let rows = stmt.query_map(params.as_slice(), StoredEvent::from_row)?;
        rows.collect()
    }

    /// The first seq received at or after `since` (one past the last seq if none was).
    /// The writer stamps received_at per commit, never going back, so received_at rises
    /// with seq and a binary search over seq finds it in about 25 lookups at 10 million
    /// events, without an index on received_at.
    fn first_seq_received_at_or_after(&self, since: &str) -> rusqlite::Result<i64> {
        let mut at_or_after = self.conn.prepare_cached(
            "SELECT seq, received_at FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1",
        )?;
        let last: i64 = self
            .conn
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

    /// How many events are stored.
    pub fn count_events(&self) -> rusqlite::Result<i64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters(&self) -> rusqlite::Result<Vec<DeadLetter>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, created_at, source, sink, event_seq, code, field, reason, body, replayed_at
             FROM dead_letters ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            let body: Option<Vec<u8>> = r.get(8)?;
            let body_is_not_utf8 = body
                .as_ref()
                .is_some_and(|b| std::str::from_utf8(b).is_err());
            Ok(DeadLetter {
                id: r.get(0)?,
                created_at: r.get(1)?,
                source: r.get(2)?,
                sink: r.get(3)?,
                event_seq: r.get(4)?,
                code: r.get(5)?,
                field: r.get(6)?,
                reason: r.get(7)?,
                body: body.map(|b| String::from_utf8_lossy(&b).into_owned()),
                body_is_not_utf8,
                replayed_at: r.get(9)?,
            })
        })?;
        rows.collect()
    }
}

/// Read connections for request handlers: taken, used on the blocking pool, put back.
#[derive(Clone)]
pub struct ReaderPool {
    dir: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Reader>>>,
}

impl ReaderPool {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: Arc::new(dir.to_owned()),
            idle: Arc::default(),
        }
    }

    /// Runs a read on a pooled connection, off the async threads.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader) -> rusqlite::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let reader = match pool.idle.lock().expect("pool lock").pop() {
                Some(r) => r,
                None => Reader::open(&pool.dir)?,
            };
            let result = f(&reader);
            pool.idle.lock().expect("pool lock").push(reader);
            Ok(result?)
        })
        .await?
    }
}
