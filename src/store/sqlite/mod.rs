//! The embedded store: SQLite in WAL mode with `synchronous=FULL`, in `[store] dir`.
//!
//! Writes go through one group-commit writer thread ([`writer`]): every caller is
//! answered only after the transaction holding its write is committed and fsync'd.
//! Reads open their own connections, which WAL lets run beside the writer. One server
//! per store (a lock file), so `seq` order is commit order and a sink's lease is always
//! granted.

mod read;
mod recent;
mod retention;
mod schema;
mod tracking;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::{mpsc, oneshot, watch};

use self::read::ReaderPool;
use self::recent::Recent;
use self::writer::{FnOp, Queued, Tx};
use super::{
    BatchHour, BatchQuery, Counted, DeadLetter, DeadLetterEntry, DeadLetterQuery, EventQuery,
    HourCount, Outcome, ParkedEvent, Progress, PruneState, Pruned, Retention, Role, SinkLease,
    SinkState, Store, StoreError, StoreResult, StoreStats, StoredEvent,
};
use crate::event::tracking::{Batch, Message, StatusUpdate, hour_of};
use crate::event::{Accepted, DedupKey, Rejection, Status};

/// File name of the database inside `[store] dir`.
pub const DB_FILE: &str = "innohook.db";

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(format!("SQLite: {e}"))
    }
}

/// Opens a connection with the pragmas every innohook connection uses.
fn connect(dir: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(dir.join(DB_FILE), flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // The writer uses more distinct statements than rusqlite's default cache of 16.
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Savepoint journals stay in memory instead of temporary files.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// A stored time: RFC 3339, UTC, milliseconds (see [`crate::event::format_time`]).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn time_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text = r.get_ref(i)?.as_str()?;
    parse_time(text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("not a time: {text:?}").into(),
        )
    })
}

/// How the dedup table spells a key (as every store since schema v1 has).
fn dedup_text(key: &DedupKey) -> String {
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
    }
}

/// The SQLite store; see the module documentation.
pub struct SqliteStore {
    dir: std::path::PathBuf,
    tx: mpsc::Sender<Queued>,
    head: watch::Receiver<i64>,
    /// The newest committed events, for sinks that keep up.
    recent: Arc<Recent>,
    readers: ReaderPool,
    /// The dedup table still holds status-event keys from before schema v3.
    legacy_status_keys: bool,
    /// The writer thread, until [`Store::close`] waits for it.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SqliteStore {
    /// As a server: creates the directory and schema if needed, takes the store's lock
    /// (one server per store) and starts the writer and checkpointer threads. As a
    /// client: the store must exist; writes go through a writer thread of its own,
    /// beside a server's if one runs.
    pub fn open(dir: &Path, role: Role) -> anyhow::Result<Self> {
        let lock = match role {
            Role::Server => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!("cannot create the store directory {}: {e}", dir.display())
                })?;
                Some(take_lock(dir)?)
            }
            Role::Client => {
                let path = dir.join(DB_FILE);
                anyhow::ensure!(path.is_file(), "no store at {}", path.display());
                None
            }
        };
        let mut conn = connect(dir, OpenFlags::default())
            .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", dir.display()))?;
        let file = writer::DbFile::opened(dir.join(DB_FILE));
        // A client migrates only when no server holds the store (which has migrated it).
        if lock.is_some() || take_lock(dir).is_ok() {
            schema::migrate(&mut conn)?;
        }
        let seq: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        let legacy_status_keys: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM dedup
                 WHERE key >= 'status' || char(31) AND key < 'status' || char(32))",
            [],
            |r| r.get(0),
        )?;
        let checkpointer = match role {
            Role::Server => {
                // Checkpoints run on their own connection, so no commit waits for one.
                conn.pragma_update(None, "wal_autocheckpoint", 0)?;
                Some(connect(dir, OpenFlags::default())?)
            }
            Role::Client => None,
        };
        let (tx, rx) = mpsc::channel(4096);
        let (seq_tx, seq_rx) = watch::channel(seq);
        let recent = Arc::new(Recent::new(seq));
        let window = recent.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let wal = Arc::new(writer::WalState::default());
                let checkpoints = checkpointer.map(|c| writer::spawn_checkpointer(c, wal.clone()));
                writer::run(conn, rx, seq_tx, &window, &wal, file);
                wal.stop.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Some(c) = checkpoints {
                    let _ = c.join();
                }
                // The lock lives as long as the writer thread.
                drop(lock);
            })?;
        Ok(Self {
            dir: dir.to_owned(),
            tx,
            head: seq_rx,
            recent,
            readers: ReaderPool::new(dir),
            legacy_status_keys,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Runs `op` in the next group-committed transaction; resolves after the commit.
    async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Queued::Write(Box::new(FnOp::new(op, reply))))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// How the connection that commits is set up to keep what it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `wal`: readers beside the writer, one fsync per commit.
    pub journal_mode: String,
    /// SQLite's level: 0 OFF, 1 NORMAL, 2 FULL (fsync at every commit), 3 EXTRA.
    pub synchronous: i64,
}

impl SqliteStore {
    /// The journal mode and sync level of the writer's own connection, read on it: what
    /// every 200 relies on.
    pub async fn durability(&self) -> StoreResult<Durability> {
        self.write(|tx| {
            Ok(Durability {
                journal_mode: tx
                    .conn
                    .pragma_query_value(None, "journal_mode", |r| r.get(0))?,
                synchronous: tx
                    .conn
                    .pragma_query_value(None, "synchronous", |r| r.get(0))?,
            })
        })
        .await
    }

    /// Caps the database file at `pages` pages (SQLite's `max_page_count`; at least its
    /// current size), or lifts the cap: how the fault tests stand in for a full disk.
    pub async fn cap_pages(&self, pages: Option<i64>) -> StoreResult<()> {
        let pages = pages.unwrap_or(1_073_741_823);
        self.write(move |tx| {
            tx.conn
                .pragma_update_and_check(None, "max_page_count", pages, |r| r.get::<_, i64>(0))
                .map(|_| ())
        })
        .await
    }
}

/// Whether a server could open the store in `dir`: the directory (or the one it would
/// be created in) takes files.
pub(super) fn check(dir: &Path) -> anyhow::Result<String> {
    let (existing, writable) = crate::fs::writable(dir);
    writable.map_err(|e| {
        anyhow::anyhow!(
            "the store directory {} is not writable: cannot write in {}: {e}",
            dir.display(),
            existing.display()
        )
    })?;
    Ok(if dir.join(DB_FILE).is_file() {
        format!("SQLite store in {} (exists, writable)", dir.display())
    } else {
        format!(
            "SQLite store in {} (created at the first start)",
            dir.display()
        )
    })
}

/// Puts the sink dead letters not replayed yet that `which` (a condition on `?1`, which is
/// `key`) selects back in their sinks' queues; returns how many.
fn replay_matching(tx: &Tx<'_>, which: &str, key: &dyn rusqlite::ToSql) -> rusqlite::Result<usize> {
    let filter = format!("source = 'sink' AND replayed_at IS NULL AND {which}");
    tx.conn.execute(
        &format!(
            "INSERT OR IGNORE INTO sink_replay (sink, event_seq)
             SELECT sink, event_seq FROM dead_letters WHERE {filter}"
        ),
        [key],
    )?;
    tx.conn.execute(
        &format!("UPDATE dead_letters SET replayed_at = ?2 WHERE {filter}"),
        params![key, tx.at.text],
    )
}

/// One server per store: a second one would keep its own sink cursors in memory and
/// deliver everything twice.
fn take_lock(dir: &Path) -> anyhow::Result<std::fs::File> {
    let lock = std::fs::File::create(dir.join("innohook.lock")).map_err(|e| {
        anyhow::anyhow!("cannot create {}: {e}", dir.join("innohook.lock").display())
    })?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another innohook is already serving the store in {}; stop it first or use another [store] dir",
            dir.display()
        )
    })?;
    Ok(lock)
}

#[async_trait]
impl Store for SqliteStore {
    /// A status event is a duplicate when its message already has its status (the
    /// message row is read anyway, to track it); other events when their dedup key is in
    /// the dedup table. Status keys that stores before schema v3 kept in the dedup table
    /// are still honoured.
    async fn accept(&self, accepted: &Accepted, body: Bytes) -> StoreResult<Outcome> {
        let env = &accepted.envelope;
        let update = StatusUpdate::from_accepted(accepted);
        // The dedup table is only consulted for other event types, and for status events
        // when it still holds keys from before schema v3.
        let key =
            (update.is_none() || self.legacy_status_keys).then(|| dedup_text(&env.dedup_key()));
        let status = env.message_status().map(|s| s.status().clone());
        let message_id = env.message_status().map(|s| s.message_id().to_owned());
        let event_id = env.id().to_owned();
        let event_type = env.event_type().to_owned();
        let warnings = serde_json::to_string(&accepted.warnings).expect("warnings serialise");
        // The window of recent events may keep the body for a while: then a copy, since
        // the request's own Bytes can pin a whole connection read buffer.
        let body = if self.recent.keeps_events() {
            Bytes::copy_from_slice(&body)
        } else {
            body
        };
        let counted = super::counted_status(status.as_ref());
        self.write(move |tx| {
            if let Some(key) = &key
                && tx
                    .conn
                    .prepare_cached("SELECT 1 FROM dedup WHERE key = ?1")?
                    .exists([key])?
            {
                tx.count(Counted::Duplicate, counted);
                return Ok(Outcome::Duplicate);
            }
            if let Some(u) = &update
                && !tracking::apply(tx, u)?
            {
                tx.count(Counted::Duplicate, counted);
                return Ok(Outcome::Duplicate);
            }
            tx.conn
                .prepare_cached(
                    "INSERT INTO events (received_at, event_id, event_type, message_id, status, warnings, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    tx.at.text,
                    event_id,
                    event_type,
                    message_id,
                    status.as_ref().map(|s| s.as_str()),
                    warnings,
                    &body[..]
                ])?;
            let seq = tx.conn.last_insert_rowid();
            tx.count(Counted::Accepted, counted);
            if update.is_none() {
                tx.conn
                    .prepare_cached("INSERT INTO dedup (key, seq, created_at) VALUES (?1, ?2, ?3)")?
                    .execute(params![key, seq, tx.at.at.timestamp()])?;
            }
            let received_at = tx.at.at;
            tx.stored(seq, || StoredEvent {
                seq,
                received_at,
                event_id: event_id.clone(),
                event_type: event_type.clone(),
                message_id: message_id.clone(),
                status: status.clone(),
                warnings: warnings.clone(),
                body: body.clone(),
            });
            Ok(Outcome::Accepted { seq })
        })
        .await
    }

    async fn dead_letter_rejected(&self, rejection: &Rejection, body: Bytes) -> StoreResult<i64> {
        let code = rejection.code.as_str();
        let field = rejection.field.clone();
        let reason = rejection.message.clone();
        self.write(move |tx| {
            tx.conn
                .prepare_cached(
                    "INSERT INTO dead_letters (created_at, source, code, field, reason, body)
                     VALUES (?1, 'http', ?2, ?3, ?4, ?5)",
                )?
                .execute(params![tx.at.text, code, field, reason, &body[..]])?;
            tx.count(Counted::Rejected, "");
            Ok(tx.conn.last_insert_rowid())
        })
        .await
    }

    fn head(&self) -> watch::Receiver<i64> {
        self.head.clone()
    }

    /// From the window of recent commits while the sink keeps up; from the database to
    /// catch up. The first call has the window keep events from then on.
    async fn events_after(&self, after: i64, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        self.recent.keep_events();
        if let Some(events) = self.recent.after(after, limit) {
            return Ok(events);
        }
        self.readers
            .read(move |r| r.events_after(after, limit))
            .await
    }

    async fn sink_cursor(&self, sink: &str) -> StoreResult<Option<i64>> {
        let sink = sink.to_owned();
        self.readers.read(move |r| r.cursor(&sink)).await
    }

    /// Always granted: one server per store.
    async fn claim_sink(&self, sink: &str) -> StoreResult<Option<SinkLease>> {
        let forever = std::time::Instant::now() + Duration::from_secs(365 * 86_400);
        Ok(Some(SinkLease {
            sink: sink.to_owned(),
            token: 1,
            renew_at: forever,
            valid_until: forever,
        }))
    }

    async fn release_sink(&self, _lease: &SinkLease) -> StoreResult<()> {
        Ok(())
    }

    async fn sink_progress(&self, lease: &SinkLease, progress: Progress) -> StoreResult<()> {
        let sink = lease.sink.clone();
        self.write(move |tx| {
            for d in &progress.dead {
                tx.conn
                    .prepare_cached(
                        "INSERT INTO dead_letters (created_at, source, sink, event_seq, code, reason, attempts, first_attempt_at)
                         VALUES (?1, 'sink', ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        tx.at.text,
                        sink,
                        d.seq,
                        d.code,
                        d.reason,
                        d.attempts,
                        crate::event::format_time(&d.first_attempt_at)
                    ])?;
            }
            for seq in &progress.replayed {
                tx.conn
                    .prepare_cached("DELETE FROM sink_replay WHERE sink = ?1 AND event_seq = ?2")?
                    .execute(params![sink, seq])?;
            }
            for seq in &progress.unparked {
                tx.conn
                    .prepare_cached("DELETE FROM sink_parked WHERE sink = ?1 AND event_seq = ?2")?
                    .execute(params![sink, seq])?;
            }
            for p in &progress.parked {
                tx.conn
                    .prepare_cached(
                        "INSERT INTO sink_parked (sink, event_seq, message_id, attempts, first_attempt_at, next_attempt_at, last_error)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (sink, event_seq) DO UPDATE SET attempts = excluded.attempts,
                             first_attempt_at = excluded.first_attempt_at,
                             next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error",
                    )?
                    .execute(params![
                        sink,
                        p.seq,
                        p.message_id,
                        p.attempts,
                        p.first_attempt_at.as_ref().map(crate::event::format_time),
                        crate::event::format_time(&p.next_attempt_at),
                        p.last_error
                    ])?;
            }
            if let Some(cursor) = progress.cursor {
                tx.conn
                    .prepare_cached(
                        "INSERT INTO sink_cursors (sink, seq) VALUES (?1, ?2)
                         ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq",
                    )?
                    .execute(params![sink, cursor])?;
            }
            Ok(())
        })
        .await
    }

    async fn parked(&self, sink: &str) -> StoreResult<Vec<(ParkedEvent, StoredEvent)>> {
        let sink = sink.to_owned();
        self.readers.read(move |r| r.parked(&sink)).await
    }

    async fn replay_queue(&self, sink: &str, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        let sink = sink.to_owned();
        self.readers
            .read(move |r| r.replay_queue(&sink, limit))
            .await
    }

    async fn replay(&self, sink: Option<&str>) -> StoreResult<usize> {
        let sink = sink.map(str::to_owned);
        self.write(move |tx| replay_matching(tx, "(?1 IS NULL OR sink = ?1)", &sink))
            .await
    }

    async fn message(&self, id: &str) -> StoreResult<Option<Message>> {
        let id = id.to_owned();
        self.readers.read(move |r| r.message(&id)).await
    }

    async fn messages_by_wamid(&self, wamid: &str) -> StoreResult<Vec<Message>> {
        let wamid = wamid.to_owned();
        self.readers
            .read(move |r| r.messages_by_wamid(&wamid))
            .await
    }

    async fn batch(&self, uid: &str) -> StoreResult<Option<Batch>> {
        let uid = uid.to_owned();
        self.readers.read(move |r| r.batch(&uid)).await
    }

    async fn batch_messages(
        &self,
        uid: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let (uid, after) = (uid.to_owned(), after.map(str::to_owned));
        self.readers
            .read(move |r| r.batch_messages(&uid, after.as_deref(), limit))
            .await
    }

    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<StoredEvent>> {
        let query = query.clone();
        self.readers.read(move |r| r.events(&query)).await
    }

    async fn count_events(&self) -> StoreResult<i64> {
        self.readers.read(|r| r.count_events()).await
    }

    async fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>> {
        self.readers.read(|r| r.dead_letters()).await
    }

    async fn event_counts(&self, since: DateTime<Utc>) -> StoreResult<Vec<HourCount>> {
        let from = hour_of(&since);
        self.readers.read(move |r| r.event_counts(from)).await
    }

    async fn recent_batches(&self, query: &BatchQuery) -> StoreResult<Vec<Batch>> {
        let query = query.clone();
        self.readers.read(move |r| r.recent_batches(&query)).await
    }

    async fn batch_timeline(&self, uid: &str) -> StoreResult<Vec<BatchHour>> {
        let uid = uid.to_owned();
        self.readers.read(move |r| r.batch_timeline(&uid)).await
    }

    async fn batch_message_statuses(
        &self,
        uid: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Status)>> {
        let (uid, after) = (uid.to_owned(), after.map(str::to_owned));
        self.readers
            .read(move |r| r.batch_message_statuses(&uid, after.as_deref(), limit))
            .await
    }

    async fn messages_by_phone(&self, phone: &str) -> StoreResult<Vec<Message>> {
        let phone = phone.to_owned();
        self.readers
            .read(move |r| r.messages_by_phone(&phone))
            .await
    }

    async fn dead_letter_page(&self, query: &DeadLetterQuery) -> StoreResult<Vec<DeadLetterEntry>> {
        let query = query.clone();
        self.readers.read(move |r| r.dead_letter_page(&query)).await
    }

    async fn sink_states(&self) -> StoreResult<Vec<SinkState>> {
        self.readers.read(|r| r.sink_states()).await
    }

    async fn record_sink_error(&self, sink: &str, error: Option<&str>) -> StoreResult<()> {
        let (sink, error) = (sink.to_owned(), error.map(str::to_owned));
        self.write(move |tx| {
            match &error {
                Some(error) => tx
                    .conn
                    .prepare_cached(
                        "INSERT INTO sink_status (sink, failing_since, last_error, last_error_at)
                         VALUES (?1, ?2, ?3, ?2)
                         ON CONFLICT (sink) DO UPDATE SET
                             failing_since = coalesce(failing_since, excluded.failing_since),
                             last_error = excluded.last_error,
                             last_error_at = excluded.last_error_at",
                    )?
                    .execute(params![sink, tx.at.text, error])?,
                None => tx
                    .conn
                    .prepare_cached("UPDATE sink_status SET failing_since = NULL WHERE sink = ?1")?
                    .execute([&sink])?,
            };
            Ok(())
        })
        .await
    }

    async fn replay_dead_letter(&self, id: i64) -> StoreResult<bool> {
        self.write(move |tx| replay_matching(tx, "id = ?1", &id).map(|n| n == 1))
            .await
    }

    /// Allocates about two pages, frees them again, and commits (so a full disk or a
    /// read-only store fails here).
    async fn probe(&self) -> StoreResult<()> {
        self.write(|tx| {
            tx.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('ready_probe', randomblob(8192))
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [],
            )?;
            tx.conn
                .execute("DELETE FROM meta WHERE key = 'ready_probe'", [])?;
            Ok(())
        })
        .await
    }

    async fn prune_dedup(&self, days: u32) -> StoreResult<u64> {
        let cutoff = Utc::now().timestamp() - i64::from(days) * 86_400;
        self.write(move |tx| {
            tx.conn
                .execute("DELETE FROM dedup WHERE created_at < ?1", [cutoff])
                .map(|n| n as u64)
        })
        .await
    }

    async fn prune(
        &self,
        policy: &Retention,
        state: &mut PruneState,
        limit: usize,
        dry_run: bool,
    ) -> StoreResult<Pruned> {
        let (policy, from) = (policy.clone(), state.clone());
        let (pruned, next) = self
            .write(move |tx| retention::prune(tx.conn, &policy, &from, limit, dry_run))
            .await?;
        *state = next;
        Ok(pruned)
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let size = |name: &str| std::fs::metadata(self.dir.join(name)).map_or(0, |m| m.len());
        let size_bytes = size(DB_FILE) + size(&format!("{DB_FILE}-wal"));
        let space = retention::disk_space(&self.dir);
        let (rows, oldest_event_at) = self.readers.read(|r| r.counts()).await?;
        Ok(StoreStats {
            size_bytes,
            free_bytes: space.map(|s| s.0),
            total_bytes: space.map(|s| s.1),
            rows,
            oldest_event_at,
        })
    }

    /// Always: one server per store, whose loop asks once per period.
    async fn due(&self, _job: &str, _every: Duration) -> StoreResult<bool> {
        Ok(true)
    }

    async fn close(&self) {
        let (done, stopped) = oneshot::channel();
        if self.tx.send(Queued::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
        let thread = self.thread.lock().expect("thread lock").take();
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("The store writer thread panicked.");
            }
        }
    }
}

#[cfg(test)]
mod tests;
