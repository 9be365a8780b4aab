//! The `file` sink: appends one JSON line per event,
//! `{"seq", "receivedAt", "event", "warnings"}`, with `event` the envelope as received.
//!
//! Exactly once, also across a SIGKILL: the file itself says how far it got. At startup
//! a torn last line is cut off and the sink resumes after the last `seq` in the file (or
//! in the newest rotated file, if the current one is empty). A failed append is undone.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{BoxFuture, Sink, SinkError};
use crate::store::StoredEvent;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The JSON-lines file; its directory is created if missing.
    pub path: PathBuf,
    /// `always`: fsync after every batch (default); `never`: leave it to the OS.
    #[serde(default)]
    pub fsync: Fsync,
    /// Rotate when the file reaches this many bytes; 0 never rotates.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept, as `PATH.1` (newest) … `PATH.N`; at least 1.
    #[serde(default = "default_keep")]
    pub keep: u32,
}

fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_keep() -> u32 {
    5
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    #[default]
    Always,
    Never,
}

pub struct FileSink {
    name: String,
    inner: Arc<Mutex<Appender>>,
}

struct Appender {
    path: PathBuf,
    file: File,
    /// Bytes of whole lines in the file.
    len: u64,
    /// A failed append could not be undone yet: cut back to `len` before writing again.
    torn: bool,
    fsync: Fsync,
    max_bytes: u64,
    keep: u32,
}

impl FileSinkConfig {
    /// Whether the file's directory (or the one it would be created in) takes files.
    fn check_writable(&self) -> anyhow::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let (existing, writable) = crate::fs::writable(dir);
        writable.map_err(|e| {
            anyhow::anyhow!(
                "{} cannot be written: cannot write in {}: {e}",
                self.path.display(),
                existing.display()
            )
        })
    }
}

#[async_trait::async_trait]
impl super::SinkSettings for FileSinkConfig {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.path.as_os_str().is_empty(), "path must not be empty");
        anyhow::ensure!(self.keep >= 1, "keep must be at least 1");
        Ok(())
    }

    /// The file; its directory must take files.
    fn target(&self) -> anyhow::Result<String> {
        self.check_writable()?;
        Ok(format!(" -> {}", self.path.display()))
    }

    async fn build(&self, with: &super::Building<'_>) -> anyhow::Result<(Box<dyn Sink>, i64)> {
        let (sink, cursor) = FileSink::open(
            with.name.to_owned(),
            self,
            with.store_cursor,
            with.store_head,
        )?;
        Ok((Box::new(sink), cursor))
    }
}

impl FileSink {
    /// Opens the file, repairs a torn tail, and returns the cursor to resume from.
    /// `store_head` is the last committed seq: a file ahead of it belongs to another store.
    pub fn open(
        name: String,
        cfg: &FileSinkConfig,
        store_cursor: i64,
        store_head: i64,
    ) -> anyhow::Result<(Self, i64)> {
        super::SinkSettings::check(cfg)?;
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&cfg.path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", cfg.path.display()))?;
        let (mut last_seq, whole) = last_line_seq(&mut file)?;
        if whole < file.metadata()?.len() {
            tracing::warn!(sink = name, path = %cfg.path.display(), "Cutting off a torn last line left by a crash.");
            file.set_len(whole)?;
            file.sync_all()?;
        }
        if last_seq.is_none()
            && let Ok(mut rotated) = File::open(rotated_path(&cfg.path, 1))
        {
            last_seq = last_line_seq(&mut rotated)?.0;
        }
        let in_file = last_seq.unwrap_or(0);
        anyhow::ensure!(
            in_file <= store_head,
            "{} already holds event {in_file}, but the store ends at {store_head}: was the store replaced? Move the file away (or change path) and start again",
            cfg.path.display()
        );
        let cursor = store_cursor.max(in_file);
        let appender = Appender {
            path: cfg.path.clone(),
            file,
            len: whole,
            torn: false,
            fsync: cfg.fsync,
            max_bytes: cfg.max_bytes,
            keep: cfg.keep,
        };
        let sink = Self {
            name,
            inner: Arc::new(Mutex::new(appender)),
        };
        Ok((sink, cursor))
    }
}

/// One line of the file: `{"seq","receivedAt","event","warnings"}`, with the event as
/// it was received, byte for byte, but for any line breaks in it, which become spaces
/// (see [`StoredEvent::body_on_one_line`]).
fn line(e: &StoredEvent) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Line<'a> {
        seq: i64,
        received_at: String,
        event: &'a RawValue,
        warnings: &'a [crate::event::tracking::RecordedWarning],
    }
    let body = e.body_on_one_line();
    let mut line = serde_json::to_vec(&Line {
        seq: e.seq,
        received_at: crate::event::format_time(&e.received_at),
        event: serde_json::from_slice(&body)?,
        warnings: &e.warnings,
    })?;
    line.push(b'\n');
    Ok(line)
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(
        &'a self,
        events: &'a [StoredEvent],
        _lease: i64,
    ) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        Box::pin(async move {
            let mut buf = Vec::new();
            let mut results: Vec<Result<(), SinkError>> = Vec::with_capacity(events.len());
            for e in events {
                match line(e) {
                    Ok(l) => {
                        buf.extend_from_slice(&l);
                        results.push(Ok(()));
                    }
                    Err(err) => results.push(Err(SinkError::permanent(format!(
                        "event {} cannot be written as JSON: {err}",
                        e.seq
                    )))),
                }
            }
            let inner = self.inner.clone();
            let written = tokio::task::spawn_blocking(move || {
                inner.lock().expect("file sink lock").append(&buf)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
            match written {
                Ok(()) => results,
                Err(e) => events
                    .iter()
                    .map(|_| Err(SinkError::retryable(format!("cannot append: {e}"))))
                    .collect(),
            }
        })
    }
}

impl Appender {
    /// Appends whole lines; on failure the file is cut back to where it was.
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if self.torn {
            self.file.set_len(self.len)?;
            self.torn = false;
        }
        let result = self.file.write_all(buf).and_then(|()| match self.fsync {
            Fsync::Always => self.file.sync_data(),
            Fsync::Never => Ok(()),
        });
        if let Err(e) = result {
            self.torn = self.file.set_len(self.len).is_err();
            return Err(e);
        }
        self.len += buf.len() as u64;
        // The lines are written: a failed rotation must not get them written again.
        if self.max_bytes > 0
            && self.len >= self.max_bytes
            && let Err(e) = self.rotate()
        {
            tracing::error!(path = %self.path.display(), error = %e, "Cannot rotate the file; trying again after the next batch.");
        }
        Ok(())
    }

    /// `PATH` becomes `PATH.1`, `PATH.1` becomes `PATH.2`, … up to `keep`.
    fn rotate(&mut self) -> std::io::Result<()> {
        let _ = std::fs::remove_file(rotated_path(&self.path, self.keep));
        for i in (1..self.keep).rev() {
            let from = rotated_path(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, rotated_path(&self.path, i + 1))?;
            }
        }
        // Open the new file before moving the old one away, so `self.file` never stays
        // on a rotated file.
        let fresh = rotated_path(&self.path, 0);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&fresh)?;
        std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
        std::fs::rename(&fresh, &self.path)?;
        self.file = file;
        self.len = 0;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The `seq` of the last complete line, and the length of the file up to its end.
fn last_line_seq(file: &mut File) -> std::io::Result<(Option<i64>, u64)> {
    let len = file.metadata()?.len();
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        file.take(len - start).read_to_end(&mut tail)?;
        let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
            if start == 0 {
                return Ok((None, 0));
            }
            window *= 4;
            continue;
        };
        let begin = match tail[..end].iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if start == 0 => 0,
            None => {
                window *= 4;
                continue;
            }
        };
        // Only `seq` is decoded: the event may hold an escape a JSON value cannot (a lone
        // surrogate), which would hide the line's seq.
        #[derive(Deserialize)]
        struct Seq {
            seq: i64,
        }
        let seq = serde_json::from_slice::<Seq>(&tail[begin..end])
            .ok()
            .map(|l| l.seq);
        return Ok((seq, start + end as u64 + 1));
    }
}
