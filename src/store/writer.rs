//! Group commit: one thread owns the write connection, takes every queued write,
//! runs them in one transaction, commits with one fsync, and only then answers each
//! caller. If a write fails, the transaction is redone with a savepoint around each write.

use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};

use super::{StoreError, StoredEvent, recent::Recent};

/// What the writes of the transaction being applied leave for after its commit.
#[derive(Default)]
struct Pending {
    /// The highest event seq stored.
    last_seq: Option<i64>,
    /// The events stored, for [`Recent`] (when it keeps events at all).
    events: Vec<StoredEvent>,
}

thread_local! {
    static PENDING: std::cell::RefCell<Pending> = std::cell::RefCell::new(Pending::default());
    /// Whether this batch's events are kept for [`Recent`]; decided once per batch.
    static KEEP_RECENT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The time stamped on what the current batch stores (see [`commit_time`]).
    static COMMIT_TIME: std::cell::RefCell<(i64, String)> =
        const { std::cell::RefCell::new((i64::MIN, String::new())) };
}

/// The time of the batch being applied, RFC 3339 UTC (milliseconds): one per batch, and
/// never earlier than the previous batch's, so `received_at` rises with `seq`.
pub(super) fn commit_time() -> String {
    COMMIT_TIME.with(|t| t.borrow().1.clone())
}

/// Starts the commit clock at the latest received_at in the store, so that it never
/// goes back across a restart either (say the system clock was stepped back meanwhile).
fn seed_commit_time(conn: &Connection) {
    let latest: rusqlite::Result<Option<String>> =
        conn.query_row("SELECT MAX(received_at) FROM events", [], |r| r.get(0));
    match latest {
        Ok(Some(at)) => match chrono::DateTime::parse_from_rfc3339(&at) {
            Ok(t) => COMMIT_TIME.with(|c| *c.borrow_mut() = (t.timestamp_millis(), at)),
            Err(e) => tracing::warn!(error = %e, at, "Unreadable latest received_at."),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "Could not read the latest received_at."),
    }
}

/// Records that the write being applied stored an event; `event` builds it for
/// [`Recent`] if the window keeps events. It counts only if the batch commits.
pub(super) fn stored(seq: i64, event: impl FnOnce() -> StoredEvent) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.last_seq = Some(seq);
        if KEEP_RECENT.get() {
            p.events.push(event());
        }
    });
}

/// Forgets what the writes applied so far left for after them: the transaction is
/// started again, or was not committed.
fn forget_pending() {
    PENDING.with(|p| *p.borrow_mut() = Pending::default());
    super::tracking::forget_batch_deltas();
}

/// Where the pending state stood before one write, to go back to if its savepoint is
/// rolled back.
struct Mark {
    last_seq: Option<i64>,
    events: usize,
    deltas: super::tracking::DeltasMark,
}

fn mark() -> Mark {
    PENDING.with(|p| {
        let p = p.borrow();
        Mark {
            last_seq: p.last_seq,
            events: p.events.len(),
            deltas: super::tracking::mark_batch_deltas(),
        }
    })
}

fn back_to(mark: Mark) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.last_seq = mark.last_seq;
        p.events.truncate(mark.events);
    });
    super::tracking::back_to_batch_deltas(mark.deltas);
}

fn stamp_commit_time() {
    let now = chrono::Utc::now().timestamp_millis();
    COMMIT_TIME.with(|t| {
        let mut t = t.borrow_mut();
        if now > t.0 {
            let at = chrono::DateTime::from_timestamp_millis(now).expect("now is in range");
            *t = (now, at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
    });
}

/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;
/// A batch smaller than this waits [`LINGER`] once for more writes before committing.
const LINGER_BELOW: usize = 48;
const LINGER: std::time::Duration = std::time::Duration::from_micros(250);

fn drain(rx: &mut mpsc::Receiver<Box<dyn Op>>, batch: &mut Vec<Box<dyn Op>>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
}

/// One queued write: applied inside the batch, then told whether the batch committed.
pub(super) trait Op: Send {
    /// Runs the write (again, if a batch is redone); `false` means it failed.
    fn apply(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

pub(super) struct FnOp<T, F> {
    op: F,
    result: Option<rusqlite::Result<T>>,
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
    F: FnMut(&Connection) -> rusqlite::Result<T> + Send,
{
    fn apply(&mut self, conn: &Connection) -> bool {
        let result = (self.op)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (commit, self.result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(r)) => r.map_err(StoreError::from),
            (Ok(()), None) => Err(StoreError::Sqlite("write was not applied".into())),
        };
        let _ = self.reply.send(answer);
    }
}

pub(super) fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Box<dyn Op>>,
    last_seq: watch::Sender<i64>,
    recent: &Recent,
    wal: &WalState,
) {
    seed_commit_time(&conn);
    let mut batch: Vec<Box<dyn Op>> = Vec::with_capacity(MAX_BATCH);
    while let Some(op) = rx.blocking_recv() {
        batch.push(op);
        drain(&mut rx, &mut batch);
        if batch.len() < LINGER_BELOW {
            // Let the request side queue a few more writes (it shares the core with us
            // under load): each commit has a fixed cost (the last page of every b-tree
            // is written to the WAL again), so fuller batches are much cheaper per event.
            std::thread::sleep(LINGER);
            drain(&mut rx, &mut batch);
        }
        let size = batch.len();
        let started = std::time::Instant::now();
        stamp_commit_time();
        KEEP_RECENT.set(recent.keeps_events());
        let commit = commit_batch(&mut conn, &mut batch);
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
        for op in batch.drain(..) {
            op.finish(commit.clone());
        }
        if commit.is_ok() {
            let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
            if let Some(seq) = pending.last_seq {
                // The window first, so a sink woken by the new seq finds the events there.
                recent.extend(pending.events, seq);
                last_seq.send_replace(seq);
            }
            if wal.restart_wanted.swap(false, Ordering::Relaxed) {
                finish_checkpoint(&conn, wal);
            }
        } else {
            forget_pending();
        }
    }
    tracing::debug!("Store writer stopped: every queued write was committed or answered.");
}

/// Commits the batch in one transaction. First optimistically, every write straight in;
/// if one fails, the transaction is rolled back and redone with a savepoint around each
/// write, so the failed one is undone alone and the others still commit.
fn commit_batch(conn: &mut Connection, batch: &mut [Box<dyn Op>]) -> Result<(), StoreError> {
    forget_pending();
    {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Stop at the first failure: after some errors (a full disk, I/O) SQLite has
        // already rolled the transaction back, and later writes must not run outside it.
        if batch.iter_mut().all(|op| op.apply(&tx)) && write_deferred(&tx) {
            tx.commit()?;
            return Ok(());
        }
    } // dropping the transaction rolls it back
    forget_pending();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for op in batch.iter_mut() {
        tx.prepare_cached("SAVEPOINT op")?.execute([])?;
        let before = mark();
        if op.apply(&tx) {
            tx.prepare_cached("RELEASE op")?.execute([])?;
        } else if tx.is_autocommit() {
            // SQLite rolled the whole transaction back itself: nothing of the batch stands.
            return Err(StoreError::Sqlite("the transaction was rolled back".into()));
        } else {
            tx.prepare_cached("ROLLBACK TO op")?.execute([])?;
            back_to(before);
            tx.prepare_cached("RELEASE op")?.execute([])?;
        }
    }
    // Only I/O errors (a full disk) can fail these upserts, and those fail the commit too.
    super::tracking::write_batch_deltas(&tx)?;
    tx.commit()?;
    Ok(())
}

/// Writes what the batch's writes deferred to the end of the transaction.
fn write_deferred(conn: &Connection) -> bool {
    match super::tracking::write_batch_deltas(conn) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "Batch counters could not be written; the batch is redone write by write.");
            false
        }
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
