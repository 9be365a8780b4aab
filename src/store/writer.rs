//! Group commit: one thread owns the write connection, takes every queued write,
//! runs them in one transaction (each in its own savepoint), commits with one fsync,
//! and only then answers each caller.

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};

use super::StoreError;

/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;

/// One queued write: applied inside the batch, then told whether the batch committed.
pub(super) trait Op: Send {
    /// Runs the write; `false` means it failed and was rolled back on its own.
    fn apply(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

pub(super) struct FnOp<T, F> {
    op: Option<F>,
    result: Option<rusqlite::Result<T>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> FnOp<T, F> {
    pub(super) fn new(op: F, reply: oneshot::Sender<Result<T, StoreError>>) -> Self {
        Self {
            op: Some(op),
            result: None,
            reply,
        }
    }
}

impl<T, F> Op for FnOp<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send,
{
    fn apply(&mut self, conn: &Connection) -> bool {
        let op = self.op.take().expect("applied once");
        let result = op(conn);
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
) {
    let mut batch: Vec<Box<dyn Op>> = Vec::with_capacity(MAX_BATCH);
    while let Some(op) = rx.blocking_recv() {
        batch.push(op);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let size = batch.len();
        let started = std::time::Instant::now();
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
            match conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0)) {
                Ok(seq) => {
                    last_seq.send_if_modified(|cur| std::mem::replace(cur, seq) != seq);
                }
                Err(e) => tracing::warn!(error = %e, "Could not read the last event seq."),
            }
        }
    }
    tracing::debug!("Store writer stopped: every queued write was committed or answered.");
}

fn commit_batch(conn: &mut Connection, batch: &mut [Box<dyn Op>]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for op in batch.iter_mut() {
        tx.execute_batch("SAVEPOINT op")?;
        if op.apply(&tx) {
            tx.execute_batch("RELEASE op")?;
        } else {
            tx.execute_batch("ROLLBACK TO op; RELEASE op")?;
        }
    }
    tx.commit()?;
    Ok(())
}
