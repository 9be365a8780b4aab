//! Reads, on connections of their own (WAL lets them run beside the writer), pooled and
//! run on the blocking threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use crate::store::{StoreError, StoreResult};

/// A read-only connection to the store.
fn open(dir: &Path) -> anyhow::Result<Connection> {
    let path = dir.join(super::DB_FILE);
    anyhow::ensure!(path.is_file(), "no store at {}", path.display());
    Ok(super::connect(
        dir,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?)
}

/// Read connections: taken, used on the blocking pool, put back.
#[derive(Clone)]
pub(super) struct ReaderPool {
    dir: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
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
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let reader = match pool.idle.lock().expect("pool lock").pop() {
                Some(r) => r,
                None => open(&pool.dir).map_err(|e| StoreError::Backend(format!("{e:#}")))?,
            };
            let result = f(&reader);
            pool.idle.lock().expect("pool lock").push(reader);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a store read panicked: {e}")))?
    }
}
