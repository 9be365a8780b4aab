//! The embedded store: SQLite in WAL mode with `synchronous=FULL`, in `[store] dir`.
//!
//! Writes go through one group-commit writer thread ([`writer`]): every caller is
//! answered only after the transaction holding its write is committed and fsync'd.
//! Reads open their own connections, which WAL lets run beside the writer. One server
//! per store (a lock file), so `seq` order is commit order and a sink's lease is always
//! granted. The core's statements run in the next group-committed transaction, so a
//! pruning step's small deletes never hold ingest up; freed pages are reused by later
//! commits (SQLite's freelist), so the file stops growing once the retention is reached,
//! without a VACUUM.

mod read;
mod recent;
mod schema;
mod sql;
mod tracking;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch};

use self::read::ReaderPool;
use self::recent::Recent;
use self::writer::{FnOp, Queued, Tx};
use super::ingest::Incoming;
use super::sql::{Query, Sql, Statement};
use super::{
    Admin, Counted, Delivery, Ingest, Outcome, Progress, Role, SinkLease, StoreError, StoreResult,
    StoreStats, StoredEvent,
};
use crate::event::{Accepted, Rejection};

/// File name of the database inside `[store] dir`.
pub const DB_FILE: &str = "innohook.db";

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
        F: FnMut(&mut Tx<'_>) -> StoreResult<T> + Send + 'static,
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
            Ok::<_, StoreError>(Durability {
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
                .pragma_update_and_check(None, "max_page_count", pages, |r| r.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }
}

/// Whether a server could open the store in `dir`: the directory (or the one it would
/// be created in) takes files.
pub(super) fn check(dir: &Path) -> anyhow::Result<String> {
    // A file where the directory (or one it would be made in) should be.
    if let Some(file) = dir.ancestors().find(|d| d.exists())
        && !file.is_dir()
    {
        anyhow::bail!(
            "the store directory {} cannot be made: {} is a file, not a directory; point [store] dir at a directory",
            dir.display(),
            file.display()
        );
    }
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
impl Sql for SqliteStore {
    async fn rows<T: Send + 'static>(&self, query: Query<T>) -> StoreResult<Vec<T>> {
        self.readers.read(move |c| sql::rows(c, &query)).await
    }

    /// In the next group-committed transaction.
    async fn transaction(&self, statements: Vec<Statement>) -> StoreResult<Vec<i64>> {
        self.write(move |tx| sql::execute(tx.conn, &statements))
            .await
    }
}

#[async_trait]
impl Ingest for SqliteStore {
    /// A status event is a duplicate when its message already has its status (the
    /// message row is read anyway, to track it); other events when their dedup key is in
    /// the dedup table. Status keys that stores before schema v3 kept in the dedup table
    /// are still honoured.
    async fn accept(&self, accepted: &Accepted, body: Bytes) -> StoreResult<Outcome> {
        // The window of recent events may keep the body for a while: then a copy, since
        // the request's own Bytes can pin a whole connection read buffer.
        let body = if self.recent.keeps_events() {
            Bytes::copy_from_slice(&body)
        } else {
            body
        };
        let e = Incoming::new(accepted, body);
        let legacy = match self.legacy_status_keys {
            true => e.legacy_status_key(),
            false => None,
        };
        self.write(move |tx| {
            let mut known = false;
            for key in e.keys.iter().chain(&legacy) {
                known = known
                    || tx
                        .conn
                        .prepare_cached("SELECT 1 FROM dedup WHERE key = ?1")?
                        .exists([key])?;
            }
            if known {
                tx.count(Counted::Duplicate, e.counted());
                return Ok(Outcome::Duplicate);
            }
            match &e.update {
                Some(u) if !tracking::apply(tx, &e, u)? => return Ok(Outcome::Duplicate),
                Some(_) => {}
                None => tx.count(Counted::Accepted, e.counted()),
            }
            tx.conn
                .prepare_cached(
                    "INSERT INTO events (received_at, event_id, event_type, message_id, status, warnings, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(rusqlite::params_from_iter(&e.values(tx.at.at)))?;
            let seq = tx.conn.last_insert_rowid();
            for key in &e.keys {
                tx.conn
                    .prepare_cached("INSERT INTO dedup (key, seq, created_at) VALUES (?1, ?2, ?3)")?
                    .execute(rusqlite::params![key, seq, tx.at.at.timestamp()])?;
            }
            let received_at = tx.at.at;
            if let Some(side) = &e.side {
                tx.conn
                    .prepare_cached(&sql::spelled(&side.table.insert()))?
                    .execute(rusqlite::params_from_iter(&side.values(seq, received_at)))?;
            }
            tx.stored(seq, || e.stored(seq, received_at));
            Ok(Outcome::Accepted { seq })
        })
        .await
    }

    async fn dead_letter_rejected(&self, rejection: &Rejection, body: Bytes) -> StoreResult<i64> {
        super::ingest::reject(self, rejection, &body).await
    }
}

#[async_trait]
impl Delivery for SqliteStore {
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
        self.rows(super::ledger::events_after(after, limit)).await
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
        let statements = super::ledger::progress(&lease.sink, progress);
        self.transaction(statements).await.map(drop)
    }
}

#[async_trait]
impl Admin for SqliteStore {
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
        let cutoff = chrono::Utc::now().timestamp() - i64::from(days) * 86_400;
        self.write(move |tx| {
            let n = tx
                .conn
                .execute("DELETE FROM dedup WHERE created_at < ?1", [cutoff])?;
            Ok(n as u64)
        })
        .await
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let size = |name: &str| std::fs::metadata(self.dir.join(name)).map_or(0, |m| m.len());
        let size_bytes = size(DB_FILE) + size(&format!("{DB_FILE}-wal"));
        let space = disk_space(&self.dir);
        let (rows, oldest_event_at) = self
            .readers
            .read(|c| {
                let mut rows = Vec::new();
                for table in super::sql::SIZED_TABLES {
                    let sql = format!("SELECT count(*) FROM {table}");
                    rows.push((table, c.query_row(&sql, [], |r| r.get(0))?));
                }
                let oldest: Option<String> = c
                    .query_row(
                        "SELECT received_at FROM events ORDER BY seq LIMIT 1",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok((rows, oldest.as_deref().and_then(super::sql::parse_time)))
            })
            .await?;
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

/// Free and total bytes of the filesystem `dir` is on.
pub(super) fn disk_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` a buffer statvfs fills.
    let ok = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } == 0;
    if !ok {
        return None;
    }
    // SAFETY: statvfs succeeded, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    // The fields are u64 here, narrower on some targets.
    #[allow(clippy::unnecessary_cast)]
    let (block, free, total) = (
        stat.f_frsize as u64,
        stat.f_bavail as u64,
        stat.f_blocks as u64,
    );
    Some((free * block, total * block))
}

#[cfg(test)]
mod tests;
