//! Group commit: one thread owns the write connection, takes every queued write,
//! runs them in one transaction, commits with one fsync, and only then answers each
//! caller. If a write fails, the transaction is redone with a savepoint around each write.
//!
//! What the writes of a transaction leave for after its commit (the events for the
//! window of recent commits, the batch counters to write at its end) travels in an
//! explicit [`Tx`] handed to each write.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};

use super::recent::Recent;
use crate::store::ingest::Tally;
use crate::store::{Counted, StoreError, StoreResult, StoredEvent};

/// What one write sees of the transaction it runs in.
pub(super) struct Tx<'a> {
    pub(super) conn: &'a Connection,
    /// The time stamped on what this transaction stores: one per transaction, and never
    /// earlier than the previous one's, so `received_at` rises with `seq`.
    pub(super) at: &'a CommitTime,
    pending: &'a mut Pending,
}

impl Tx<'_> {
    /// Records that the write stored an event; `event` builds it for the window of recent
    /// commits if the window keeps events. It counts only if the transaction commits.
    pub(super) fn stored(&mut self, seq: i64, event: impl FnOnce() -> StoredEvent) {
        self.pending.last_seq = Some(seq);
        if self.pending.keep_recent {
            self.pending.events.push(event());
        }
    }

    /// The batch counters and counted pushes this transaction moves, written at its end.
    pub(super) fn tally(&mut self) -> &mut Tally {
        &mut self.pending.tally
    }

    /// Counts one push in this transaction's hour (written at its end).
    pub(super) fn count(&mut self, outcome: Counted, status: &'static str) {
        self.pending.tally.count(outcome, status);
    }
}

/// The commit clock: the time of the transaction being applied, and its text as stored.
#[derive(Default)]
pub(super) struct CommitTime {
    pub(super) at: DateTime<Utc>,
    pub(super) text: String,
}

impl CommitTime {
    /// Starts the clock at the latest received_at in the store, so that it never goes
    /// back across a restart either (say the system clock was stepped back meanwhile).
    fn seeded(conn: &Connection) -> Self {
        let latest: rusqlite::Result<Option<String>> =
            conn.query_row("SELECT MAX(received_at) FROM events", [], |r| r.get(0));
        let mut clock = Self::default();
        match latest {
            Ok(Some(text)) => match crate::store::sql::parse_time(&text) {
                Some(at) => clock = Self { at, text },
                None => tracing::warn!(at = text, "Unreadable latest received_at."),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "Could not read the latest received_at."),
        }
        clock
    }

    /// Moves the clock to now, unless now is behind it.
    fn stamp(&mut self) {
        let now = Utc::now();
        if now.timestamp_millis() > self.at.timestamp_millis() {
            self.at = DateTime::from_timestamp_millis(now.timestamp_millis()).expect("in range");
            self.text = crate::event::format_time(&self.at);
        }
    }
}

/// What the writes of the transaction being applied leave for after its commit.
#[derive(Default)]
struct Pending {
    /// Whether the events are kept for [`Recent`]; decided once per transaction.
    keep_recent: bool,
    /// The highest event seq stored.
    last_seq: Option<i64>,
    /// The events stored, for [`Recent`] (when it keeps events at all).
    events: Vec<StoredEvent>,
    tally: Tally,
}

impl Pending {
    /// Forgets what the writes applied so far left: the transaction is started again, or
    /// was not committed.
    fn forget(&mut self) {
        self.last_seq = None;
        self.events.clear();
        self.tally.clear();
    }

    /// Where things stood before one write, to go back to if its savepoint is rolled
    /// back (only taken when a transaction is redone write by write, so the copy is rare).
    fn mark(&self) -> Mark {
        Mark {
            last_seq: self.last_seq,
            events: self.events.len(),
            tally: self.tally.clone(),
        }
    }

    fn back_to(&mut self, mark: Mark) {
        self.last_seq = mark.last_seq;
        self.events.truncate(mark.events);
        self.tally = mark.tally;
    }
}

struct Mark {
    last_seq: Option<i64>,
    events: usize,
    tally: Tally,
}

/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;
/// A batch smaller than this waits [`LINGER`] once for more writes before committing.
const LINGER_BELOW: usize = 48;
const LINGER: std::time::Duration = std::time::Duration::from_micros(250);

/// One queued write: applied inside the batch, then told whether the batch committed.
pub(super) trait Op: Send {
    /// Runs the write (again, if a batch is redone); `false` means it failed.
    fn apply(&mut self, tx: &mut Tx<'_>) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

pub(super) struct FnOp<T, F> {
    op: F,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> FnOp<T, F> {
    pub(super) fn new(op: F, reply: oneshot::Sender<Result<T, StoreError>>) -> Self {
        Self {
            op,
            result: None,
            reply,
        }
    }
}

impl<T, F> Op for FnOp<T, F>
where
    T: Send,
    F: FnMut(&mut Tx<'_>) -> StoreResult<T> + Send,
{
    fn apply(&mut self, tx: &mut Tx<'_>) -> bool {
        let result = (self.op)(tx);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (commit, self.result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(StoreError::Backend("write was not applied".into())),
        };
        let _ = self.reply.send(answer);
    }
}

/// A message to the writer thread.
pub(super) enum Queued {
    Write(Box<dyn Op>),
    /// Answer every write queued before this, then stop.
    Stop(oneshot::Sender<()>),
}

pub(super) fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Queued>,
    last_seq: watch::Sender<i64>,
    recent: &Recent,
    wal: &WalState,
    mut file: DbFile,
) {
    let mut clock = CommitTime::seeded(&conn);
    let mut pending = Pending::default();
    let mut batch: Vec<Box<dyn Op>> = Vec::with_capacity(MAX_BATCH);
    let mut stopped = None;
    while stopped.is_none() {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        take(first, &mut batch, &mut stopped);
        drain(&mut rx, &mut batch, &mut stopped);
        if batch.len() < LINGER_BELOW && stopped.is_none() {
            // Let the request side queue a few more writes (it shares the core with us
            // under load): each commit has a fixed cost (the last page of every b-tree
            // is written to the WAL again), so fuller batches are much cheaper per event.
            std::thread::sleep(LINGER);
            drain(&mut rx, &mut batch, &mut stopped);
        }
        if batch.is_empty() {
            continue;
        }
        let size = batch.len();
        let started = std::time::Instant::now();
        clock.stamp();
        pending.keep_recent = recent.keeps_events();
        // Committed, and to the file the next start opens: only then is a write done.
        let commit = if file.lost {
            Err(file.lost_error())
        } else {
            commit_batch(&mut conn, &mut batch, &clock, &mut pending).and_then(|()| file.check())
        };
        metrics::histogram!(crate::metrics::COMMIT_DURATION)
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!(crate::metrics::COMMIT_BATCH).record(size as f64);
        if let Err(e) = &commit {
            tracing::error!(error = %e, ops = size, "Store commit failed; every write in the batch is answered with an error.");
        }
        tracing::trace!(
            ops = size,
            micros = started.elapsed().as_micros() as u64,
            "Batch committed."
        );
        if commit.is_ok()
            && let Some(seq) = pending.last_seq.take()
        {
            // Before anyone is answered: a caller that reads events after its 200 finds
            // them in the window (or the window starts after them). The window before
            // the head, so a sink woken by the new seq finds the events there.
            recent.extend(std::mem::take(&mut pending.events), seq);
            last_seq.send_replace(seq);
        }
        for op in batch.drain(..) {
            op.finish(commit.clone());
        }
        if commit.is_ok() && wal.restart_wanted.swap(false, Ordering::Relaxed) {
            finish_checkpoint(&conn, wal);
        }
        pending.forget();
    }
    // Writes queued after the stop are answered: the store is closed.
    rx.close();
    while let Ok(m) = rx.try_recv() {
        match m {
            Queued::Write(op) => op.finish(Err(StoreError::Closed)),
            Queued::Stop(done) => {
                let _ = done.send(());
            }
        }
    }
    tracing::debug!("Store writer stopped: every queued write was committed or answered.");
    if let Some(done) = stopped {
        let _ = done.send(());
    }
}

fn take(m: Queued, batch: &mut Vec<Box<dyn Op>>, stopped: &mut Option<oneshot::Sender<()>>) {
    match m {
        Queued::Write(op) => batch.push(op),
        Queued::Stop(done) => *stopped = Some(done),
    }
}

/// Takes what else is queued, up to [`MAX_BATCH`] writes, or up to a stop.
fn drain(
    rx: &mut mpsc::Receiver<Queued>,
    batch: &mut Vec<Box<dyn Op>>,
    stopped: &mut Option<oneshot::Sender<()>>,
) {
    while batch.len() < MAX_BATCH && stopped.is_none() {
        match rx.try_recv() {
            Ok(m) => take(m, batch, stopped),
            Err(_) => break,
        }
    }
}

/// Commits the batch in one transaction. First optimistically, every write straight in;
/// if one fails, the transaction is rolled back and redone with a savepoint around each
/// write, so the failed one is undone alone and the others still commit.
fn commit_batch(
    conn: &mut Connection,
    batch: &mut [Box<dyn Op>],
    at: &CommitTime,
    pending: &mut Pending,
) -> Result<(), StoreError> {
    pending.forget();
    {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut t = Tx {
            conn: &tx,
            at,
            pending,
        };
        // Stop at the first failure: after some errors (a full disk, I/O) SQLite has
        // already rolled the transaction back, and later writes must not run outside it.
        if batch.iter_mut().all(|op| op.apply(&mut t)) && write_deferred(&tx, at, &t.pending.tally)
        {
            tx.commit()?;
            return Ok(());
        }
    } // dropping the transaction rolls it back
    pending.forget();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for op in batch.iter_mut() {
        tx.prepare_cached("SAVEPOINT op")?.execute([])?;
        let before = pending.mark();
        let applied = op.apply(&mut Tx {
            conn: &tx,
            at,
            pending,
        });
        if applied {
            tx.prepare_cached("RELEASE op")?.execute([])?;
        } else if tx.is_autocommit() {
            // SQLite rolled the whole transaction back itself: nothing of the batch stands.
            return Err(StoreError::Backend(
                "the transaction was rolled back".into(),
            ));
        } else {
            tx.prepare_cached("ROLLBACK TO op")?.execute([])?;
            pending.back_to(before);
            tx.prepare_cached("RELEASE op")?.execute([])?;
        }
    }
    // Only I/O errors (a full disk) can fail these upserts, and those fail the commit too.
    super::tracking::write_tally(&tx, &at.at, &pending.tally)?;
    tx.commit()?;
    Ok(())
}

/// Writes what the batch's writes deferred to the end of the transaction.
fn write_deferred(conn: &Connection, at: &CommitTime, tally: &Tally) -> bool {
    match super::tracking::write_tally(conn, &at.at, tally) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "Counters could not be written; the batch is redone write by write.");
            false
        }
    }
}

/// The database file the writer commits to, as it was opened. With the store's directory
/// deleted, or its file replaced, while the server runs, commits still succeed, into a
/// file that the next start does not open: every event answered 200 from then on would
/// be lost. So every commit checks, before it answers, that the path still leads to the
/// file opened (the same device and inode); once it does not, every write fails.
pub(super) struct DbFile {
    path: std::path::PathBuf,
    opened: Option<(u64, u64)>,
    lost: bool,
}

impl DbFile {
    /// The file at `path` now, just opened.
    pub(super) fn opened(path: std::path::PathBuf) -> Self {
        let opened = identity(&path);
        Self {
            path,
            opened,
            lost: false,
        }
    }

    /// Ok while the path still leads to the file opened; once it does not, the file is
    /// lost for good.
    fn check(&mut self) -> Result<(), StoreError> {
        if identity(&self.path) == self.opened {
            return Ok(());
        }
        self.lost = true;
        tracing::error!(
            path = %self.path.display(),
            "The store's database file was deleted or replaced while innohook ran (its directory removed, or another file moved to its path). Nothing more is stored: every push gets 503 and /readyz too, until innohook is restarted on the store that should be there."
        );
        Err(self.lost_error())
    }

    fn lost_error(&self) -> StoreError {
        StoreError::Backend(format!(
            "the store's database file {} was deleted or replaced while innohook ran",
            self.path.display()
        ))
    }
}

/// The device and inode `path` leads to, if anything.
fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Some((0, 0))
    }
}

/// What the writer and the checkpointer share about the WAL.
#[derive(Default)]
pub(super) struct WalState {
    /// Set by the checkpointer when the WAL has grown past [`WAL_RESTART_FRAMES`].
    restart_wanted: AtomicBool,
    /// Tells the checkpointer to do a last checkpoint and stop.
    pub(super) stop: AtomicBool,
}

/// WAL size (in pages) past which the writer finishes a checkpoint itself, so that the
/// WAL starts over from its beginning instead of growing.
const WAL_RESTART_FRAMES: i64 = 4096;

/// The background checkpointer copies frames while commits go on, but under steady
/// load new frames keep arriving, the WAL is never completely copied, and SQLite never
/// starts it over: it grew by ~80 MB a second until the disk was full. The writer,
/// between two transactions, copies the last few frames itself; its next transaction
/// then restarts the WAL. Meanwhile no commit runs, so the checkpointer first brings
/// the backlog down to the few frames committed during one pass (see [`spawn_checkpointer`]).
fn finish_checkpoint(conn: &Connection, wal: &WalState) {
    let started = std::time::Instant::now();
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    }) {
        // Busy (the checkpointer is at it) or readers still on old frames: next commit.
        Ok((busy, log, copied)) if busy != 0 || copied < log => {
            wal.restart_wanted.store(true, Ordering::Relaxed);
        }
        Ok((_, log, _)) => tracing::debug!(
            micros = started.elapsed().as_micros() as u64,
            frames = log,
            "WAL fully checkpointed; the next commit starts it over."
        ),
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; it is tried again."),
    }
}

/// A pass during which fewer frames than this were committed leaves so few behind it that
/// the writer may finish the checkpoint: commits wait while it copies them.
const FEW_FRAMES: i64 = 64;
/// Most extra passes while catching up (under a load the disk cannot follow, the writer
/// finishes whatever is left after these).
const CATCH_UP_PASSES: usize = 8;

/// Copies committed WAL frames into the database file in the background (SQLite would
/// otherwise do it inside whichever commit crosses the threshold, stalling it), and a
/// last time when the writer stops.
pub(super) fn spawn_checkpointer(
    conn: Connection,
    wal: std::sync::Arc<WalState>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            // The WAL's size in frames, as a pass found it.
            let checkpoint = |mode: &str| {
                let sql = format!("PRAGMA wal_checkpoint({mode})");
                match conn.query_row(&sql, [], |r| r.get::<_, i64>(1)) {
                    Ok(log) => Some(log),
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL checkpoint failed; it is tried again.");
                        None
                    }
                }
            };
            let stopping = || wal.stop.load(Ordering::Relaxed);
            while !stopping() {
                std::thread::sleep(std::time::Duration::from_millis(200));
                let Some(mut log) = checkpoint("PASSIVE") else {
                    continue;
                };
                if log < WAL_RESTART_FRAMES {
                    continue;
                }
                // Time for the writer to restart the WAL. First pass again until few frames
                // came in during a pass: the writer would otherwise copy every frame
                // committed during the long first pass, with every commit waiting (6-12 ms
                // at 30,000 events a second on disk, a p99 of its own).
                for _ in 0..CATCH_UP_PASSES {
                    if stopping() {
                        break;
                    }
                    let Some(next) = checkpoint("PASSIVE") else {
                        break;
                    };
                    // Smaller: the writer started the WAL over meanwhile.
                    let arrived = next - log;
                    log = next;
                    if arrived < FEW_FRAMES {
                        break;
                    }
                }
                if log >= WAL_RESTART_FRAMES && !stopping() {
                    wal.restart_wanted.store(true, Ordering::Relaxed);
                }
            }
            checkpoint("TRUNCATE");
        })
        .expect("spawn the checkpointer")
}
