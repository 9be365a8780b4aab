//! The embedded store: SQLite in WAL mode with `synchronous=FULL`, in `[store] dir`.
//!
//! Writes go through one group-commit writer thread ([`writer`]): every caller is
//! answered only after the transaction holding its write is committed and fsync'd.
//! Reads open their own connections, which WAL lets run beside the writer.

mod read;
mod recent;
mod schema;
pub mod tracking;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use chrono::{SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::{mpsc, oneshot, watch};

pub use read::{DeadLetter, Reader, ReaderPool, StoredEvent};
pub use recent::Recent;

use crate::event::{Accepted, Rejection};

/// File name of the database inside `[store] dir`.
pub const DB_FILE: &str = "innohook.db";

/// A write the store could not commit. Callers answer 503 so the sender retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store is closed")]
    Closed,
    #[error("SQLite: {0}")]
    Sqlite(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e.to_string())
    }
}

/// What became of an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored under this sequence number.
    Accepted { seq: i64 },
    /// Already stored; nothing new was written.
    Duplicate,
}

/// A handle to the store; cheap to clone. The writer stops when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Box<dyn writer::Op>>,
    dir: Arc<PathBuf>,
    last_seq: watch::Receiver<i64>,
    /// The newest committed events, for sinks that keep up.
    recent: Arc<Recent>,
    /// The dedup table still holds status-event keys from before schema v3.
    legacy_status_keys: bool,
}

/// The writer thread; [`StoreWriter::join`] waits until every queued write is answered.
pub struct StoreWriter(std::thread::JoinHandle<()>);

impl StoreWriter {
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("The store writer thread panicked.");
        }
    }
}

/// Opens a connection with the pragmas every innohook connection uses.
pub(crate) fn connect(dir: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
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

impl Store {
    /// Creates the directory and schema if needed and starts the writer thread.
    pub fn open(dir: &Path) -> anyhow::Result<(Store, StoreWriter)> {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!("cannot create the store directory {}: {e}", dir.display())
        })?;
        // One server per store: a second one would keep its own sink cursors in memory
        // and deliver everything twice. The lock lives as long as the writer thread.
        let lock = std::fs::File::create(dir.join("innohook.lock"))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "another innohook is already serving the store in {}; stop it first or use another [store] dir",
                dir.display()
            )
        })?;
        let mut conn = connect(dir, OpenFlags::default())
            .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", dir.display()))?;
        schema::migrate(&mut conn)?;
        let seq: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        let legacy_status_keys: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM dedup
                 WHERE key >= 'status' || char(31) AND key < 'status' || char(32))",
            [],
            |r| r.get(0),
        )?;
        // Checkpoints run on their own connection, so no commit waits for one.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = connect(dir, OpenFlags::default())?;
        let (tx, rx) = mpsc::channel(4096);
        let (seq_tx, seq_rx) = watch::channel(seq);
        let recent = Arc::new(Recent::new(seq));
        let window = recent.clone();
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let wal = Arc::new(writer::WalState::default());
                let checkpoints = writer::spawn_checkpointer(checkpointer, wal.clone());
                writer::run(conn, rx, seq_tx, &window, &wal);
                wal.stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = checkpoints.join();
                drop(lock);
            })?;
        let store = Store {
            tx,
            dir: Arc::new(dir.to_owned()),
            last_seq: seq_rx,
            recent,
            legacy_status_keys,
        };
        Ok((store, StoreWriter(handle)))
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new read-only connection.
    pub fn reader(&self) -> anyhow::Result<Reader> {
        Reader::open(&self.dir)
    }

    /// The highest committed event seq, updated after every commit that stored events.
    pub fn last_seq(&self) -> watch::Receiver<i64> {
        self.last_seq.clone()
    }

    /// The newest committed events, in memory.
    pub fn recent(&self) -> &Recent {
        &self.recent
    }

    /// Runs `op` in the next group-committed transaction; resolves after the commit.
    pub async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Box::new(writer::FnOp::new(op, reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores an accepted event unless it is a duplicate.
    ///
    /// A status event is a duplicate when its message already has its status (the
    /// message row is read anyway, to track it); other events when their dedup key is
    /// in the dedup table. Status keys that stores before schema v3 kept in the dedup
    /// table are still honoured.
    pub async fn accept(&self, accepted: &Accepted, body: Bytes) -> Result<Outcome, StoreError> {
        let env = &accepted.envelope;
        let update = tracking::StatusUpdate::from_envelope(env);
        // The dedup table is only consulted for other event types, and for status events
        // when it still holds keys from before schema v3.
        let key = (update.is_none() || self.legacy_status_keys).then(|| env.dedup_key());
        let status = env.message_status();
        let message_id = status.map(|s| s.message_id().to_owned());
        let status = status.map(|s| s.status().as_str().to_owned());
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
        self.write(move |conn| {
            let old = match &update {
                Some(u) => {
                    let old = tracking::load(conn, u.message_id())?;
                    if u.is_known_to(old.as_ref()) {
                        return Ok(Outcome::Duplicate);
                    }
                    old
                }
                None => None,
            };
            if let Some(key) = &key
                && conn
                    .prepare_cached("SELECT 1 FROM dedup WHERE key = ?1")?
                    .exists([key])?
            {
                return Ok(Outcome::Duplicate);
            }
            let received_at = writer::commit_time();
            conn.prepare_cached(
                "INSERT INTO events (received_at, event_id, event_type, message_id, status, warnings, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![received_at, event_id, event_type, message_id, status, warnings, &body[..]])?;
            let seq = conn.last_insert_rowid();
            match &update {
                Some(u) => tracking::apply(conn, u, old, &received_at)?,
                None => {
                    conn.prepare_cached(
                        "INSERT INTO dedup (key, seq, created_at) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![key, seq, Utc::now().timestamp()])?;
                }
            }
            writer::stored(seq, || StoredEvent {
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

    /// Keeps a rejected request body, with why it was rejected.
    pub async fn dead_letter_rejected(
        &self,
        rejection: &Rejection,
        body: Vec<u8>,
    ) -> Result<i64, StoreError> {
        let code = rejection.code.as_str();
        let field = rejection.field.clone();
        let reason = rejection.message.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO dead_letters (created_at, source, code, field, reason, body)
                 VALUES (?1, 'http', ?2, ?3, ?4, ?5)",
            )?
            .execute(params![now_rfc3339(), code, field, reason, body])?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    /// Records that `sink` is done with everything up to `cursor` (when given): the
    /// events in `dead` become dead letters and the replayed seqs leave the replay queue,
    /// all in one commit.
    pub async fn sink_progress(
        &self,
        sink: &str,
        cursor: Option<i64>,
        dead: Vec<UndeliveredEvent>,
        replayed: Vec<i64>,
    ) -> Result<(), StoreError> {
        let sink = sink.to_owned();
        self.write(move |conn| {
            let now = now_rfc3339();
            for d in &dead {
                conn.prepare_cached(
                    "INSERT INTO dead_letters (created_at, source, sink, event_seq, code, reason)
                     VALUES (?1, 'sink', ?2, ?3, ?4, ?5)",
                )?
                .execute(params![now, sink, d.seq, d.code, d.reason])?;
            }
            for seq in &replayed {
                conn.prepare_cached("DELETE FROM sink_replay WHERE sink = ?1 AND event_seq = ?2")?
                    .execute(params![sink, seq])?;
            }
            if let Some(cursor) = cursor {
                conn.prepare_cached(
                    "INSERT INTO sink_cursors (sink, seq) VALUES (?1, ?2)
                     ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq",
                )?
                .execute(params![sink, cursor])?;
            }
            Ok(())
        })
        .await
    }

    /// Proves the store can take writes right now: allocates about two pages, frees
    /// them again, and commits (so a full disk or a read-only store fails here).
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('ready_probe', randomblob(8192))
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [],
            )?;
            conn.execute("DELETE FROM meta WHERE key = 'ready_probe'", [])?;
            Ok(())
        })
        .await
    }

    /// Forgets dedup keys older than `days`; returns how many.
    pub async fn prune_dedup(&self, days: u32) -> Result<usize, StoreError> {
        let cutoff = Utc::now().timestamp() - i64::from(days) * 86_400;
        self.write(move |conn| conn.execute("DELETE FROM dedup WHERE created_at < ?1", [cutoff]))
            .await
    }
}

/// An event a sink gave up on.
#[derive(Debug, Clone)]
pub struct UndeliveredEvent {
    pub seq: i64,
    /// `rejected_by_sink` (permanent failure) or `retries_exhausted`.
    pub code: &'static str,
    /// The last error.
    pub reason: String,
}

/// Puts undelivered events (dead letters of `source = 'sink'`, of one sink or all) back in
/// their sink's queue; a running server picks them up within a second. Returns how many.
pub fn replay_dead_letters(dir: &Path, sink: Option<&str>) -> anyhow::Result<usize> {
    let mut conn = connect(dir, OpenFlags::default())
        .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", dir.display()))?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let filter = "source = 'sink' AND replayed_at IS NULL AND (?1 IS NULL OR sink = ?1)";
    tx.execute(
        &format!(
            "INSERT OR IGNORE INTO sink_replay (sink, event_seq)
             SELECT sink, event_seq FROM dead_letters WHERE {filter}"
        ),
        [sink],
    )?;
    let n = tx.execute(
        &format!("UPDATE dead_letters SET replayed_at = ?2 WHERE {filter}"),
        params![sink, now_rfc3339()],
    )?;
    tx.commit()?;
    Ok(n)
}

/// Now, as the store writes times: RFC 3339, UTC, milliseconds.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_event(status: &str) -> Accepted {
        message_event("m1", status)
    }

    fn message_event(message_id: &str, status: &str) -> Accepted {
        event(message_id, status, None)
    }

    fn failure_event(message_id: &str, status: &str, code: &str) -> Accepted {
        event(message_id, status, Some(code))
    }

    fn event(message_id: &str, status: &str, error_code: Option<&str>) -> Accepted {
        let mut body = serde_json::json!({
            "id": "e1", "type": "whatsapp_message_status_updated",
            "eventTime": "2026-01-01T00:00:00.000Z",
            "body": {"id": message_id, "wamid": "w1", "status": status, "sendPhone": "1",
                     "wabaId": "2", "accountName": "3", "uid": "b1"}
        });
        if let Some(code) = error_code {
            body["body"]["errorData"] =
                serde_json::json!({"errorCode": code, "errorMessage": "no"});
        }
        crate::event::parse(body.to_string().as_bytes()).expect("a valid event")
    }

    /// Accepts `event` with a stand-in body.
    async fn accept(store: &Store, event: &Accepted) -> Outcome {
        store
            .accept(event, Bytes::from_static(b"{}"))
            .await
            .expect("stored")
    }

    /// Batch counters are gathered per transaction and written at its end: many events
    /// of one batch in one transaction (one of its writes failing, so the transaction is
    /// redone write by write) count exactly once, error codes moving as they should.
    #[tokio::test]
    async fn batch_counters_gathered_in_one_transaction_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = Store::open(dir.path()).unwrap();
        store.recent().keep_events();
        // Hold the writer inside a write until every event below is queued behind it.
        let (entered, inside) = oneshot::channel::<()>();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let hold = std::sync::Mutex::new(Some((entered, wait)));
        let holding = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(move |_| {
                        if let Some((entered, wait)) = hold.lock().unwrap().take() {
                            let _ = entered.send(());
                            let _ = wait.recv();
                        }
                        Ok(())
                    })
                    .await
            }
        });
        inside.await.unwrap();
        let events = [
            failure_event("m1", "SMECL:FAILED", "A"),
            message_event("m2", "delivered"),
            failure_event("m1", "failed", "B"),
            message_event("m2", "read"),
            message_event("m3", "read"),
        ];
        let mut writes = Vec::new();
        for (i, event) in events.into_iter().enumerate() {
            let s = store.clone();
            writes.push(tokio::spawn(async move {
                s.accept(&event, Bytes::from_static(b"{}")).await
            }));
            if i == 2 {
                let store = store.clone();
                writes.push(tokio::spawn(async move {
                    store
                        .write(|c| c.execute("INSERT INTO no_such_table VALUES (1)", []))
                        .await
                        .map(|_| Outcome::Duplicate)
                }));
            }
            let queued = i + 1 + usize::from(i >= 2);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while store.tx.max_capacity() - store.tx.capacity() < queued {
                assert!(std::time::Instant::now() < deadline, "writes never queued");
                tokio::task::yield_now().await;
            }
        }
        go.send(()).unwrap();
        holding.await.unwrap().unwrap();
        let mut results = Vec::new();
        let mut seqs = Vec::new();
        for w in writes {
            let result = w.await.unwrap();
            if let Ok(Outcome::Accepted { seq }) = result {
                seqs.push(seq);
            }
            results.push(result.is_ok());
        }
        assert_eq!(results, [true, true, true, false, true, true]);
        // The window holds exactly the committed events, and the head is the last of them.
        let window: Vec<i64> = store
            .recent()
            .after(0, 16)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(window, seqs);
        assert_eq!(seqs.len(), 5);
        assert_eq!(*store.last_seq().borrow(), *seqs.last().unwrap());
        let batch = store.reader().unwrap().batch("b1").unwrap().unwrap();
        assert_eq!(
            (batch.messages, batch.delivered, batch.read, batch.failed),
            (3, 0, 2, 1),
            "{batch:?}"
        );
        let failures: Vec<_> = batch
            .failures
            .iter()
            .map(|f| (f.error_code.as_str(), f.messages))
            .collect();
        assert_eq!(failures, [("B", 1)]);
        drop(store);
        writer.join();
    }

    /// received_at never goes back, not even across a restart with the clock behind the
    /// store: `since` queries binary-search on it.
    #[tokio::test]
    async fn received_at_never_goes_back_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let future = "2999-01-01T00:00:00.000Z";
        {
            let (store, writer) = Store::open(dir.path()).unwrap();
            accept(&store, &message_event("m1", "delivered")).await;
            store
                .write(move |c| c.execute("UPDATE events SET received_at = ?1", [future]))
                .await
                .unwrap();
            drop(store);
            writer.join();
        }
        let (store, writer) = Store::open(dir.path()).unwrap();
        accept(&store, &message_event("m2", "delivered")).await;
        let events = store.reader().unwrap().events_after(0, 10).unwrap();
        assert_eq!(events.len(), 2);
        assert!(events[1].received_at.as_str() >= future, "{events:?}");
        drop(store);
        writer.join();
    }

    /// Under steady writes the WAL is started over again and again instead of growing
    /// until the disk is full (it grew by ~80 MB a second under bench/run.sh before).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = Store::open(dir.path()).unwrap();
        let body = Bytes::from(vec![b' '; 1000]);
        let senders: Vec<_> = (0..32)
            .map(|t| {
                let (store, body) = (store.clone(), body.clone());
                tokio::spawn(async move {
                    for i in 0..600 {
                        let event = message_event(&format!("m{t}-{i}"), "delivered");
                        store.accept(&event, body.clone()).await.unwrap();
                    }
                })
            })
            .collect();
        for s in senders {
            s.await.unwrap();
        }
        // 19,200 events of ~1 KB write about 200 MB of WAL frames. Without the restart
        // the WAL held them all (194-204 MB, started over once at most); with it, it
        // started over 7-11 times and reached 23-32 MB here, 54 MB once with the other
        // tests busy on both cores. The WAL header counts the restarts (bytes 12..16).
        let wal_path = dir.path().join("innohook.db-wal");
        let wal = std::fs::metadata(&wal_path).unwrap().len();
        let mut header = [0u8; 16];
        std::io::Read::read_exact(&mut std::fs::File::open(&wal_path).unwrap(), &mut header)
            .unwrap();
        let restarts = u32::from_be_bytes(header[12..16].try_into().unwrap());
        assert!(restarts >= 2, "the WAL was started over {restarts} times");
        assert!(wal < 96 << 20, "the WAL grew to {} MB", wal >> 20);
        drop(store);
        writer.join();
    }

    /// A store from before schema v3 kept status-event keys in the dedup table; they
    /// still make a redelivery a duplicate after the upgrade.
    #[tokio::test]
    async fn status_keys_from_before_v3_are_still_honoured() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut conn = connect(dir.path(), OpenFlags::default()).unwrap();
            schema::migrate_to(&mut conn, 2).unwrap();
            conn.execute(
                "INSERT INTO dedup (key, seq, created_at) VALUES (?1, 1, 0)",
                [status_event("delivered").envelope.dedup_key()],
            )
            .unwrap();
        }
        let (store, writer) = Store::open(dir.path()).unwrap();
        let delivered = status_event("delivered");
        let read = status_event("read");
        assert_eq!(accept(&store, &delivered).await, Outcome::Duplicate);
        assert!(matches!(
            accept(&store, &read).await,
            Outcome::Accepted { .. }
        ));
        assert_eq!(accept(&store, &read).await, Outcome::Duplicate);
        drop(store);
        writer.join();
    }
}
