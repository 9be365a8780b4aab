//! Retention in SQLite: small deletes through the group-commit writer (each call one
//! write, at most `limit` rows a table), so that ingest never waits behind a long one.
//! Freed pages are reused by later commits (SQLite's freelist), so the file stops
//! growing once the retention is reached, without a VACUUM.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::read::first_seq_received_at_or_after;
use super::time_column;
use crate::event::format_time;
use crate::store::{PruneState, Pruned, Retention};

/// Events a sink may still need: queued for replay, set aside, or behind a dead letter.
const KEPT: &str = "seq NOT IN (SELECT event_seq FROM sink_replay)
     AND seq NOT IN (SELECT event_seq FROM sink_parked)
     AND seq NOT IN (SELECT event_seq FROM dead_letters WHERE event_seq IS NOT NULL)";

/// The cut-off time of a retention, as stored text.
fn cutoff(now: DateTime<Utc>, keep: Option<std::time::Duration>) -> Option<String> {
    keep.map(|d| {
        let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        format_time(
            &now.checked_sub_signed(d)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        )
    })
}

/// One pruning step (see [`crate::store::Store::prune`]), in the writer's transaction.
pub(super) fn prune(
    conn: &Connection,
    policy: &Retention,
    state: &PruneState,
    limit: usize,
    dry_run: bool,
) -> rusqlite::Result<(Pruned, PruneState)> {
    let now = Utc::now();
    let mut out = Pruned::default();
    let mut next = PruneState::default();
    let n = limit as i64;
    if let Some(cut) = cutoff(now, policy.events) {
        let before_cut = first_seq_received_at_or_after(conn, &cut)? - 1;
        let mut bound = before_cut;
        for sink in &policy.sinks {
            let cursor: Option<i64> = conn
                .prepare_cached("SELECT seq FROM sink_cursors WHERE sink = ?1")?
                .query_row([sink], |r| r.get(0))
                .optional()?;
            let cursor = cursor.unwrap_or(0);
            bound = bound.min(cursor);
            if cursor < before_cut {
                let owed: Option<DateTime<Utc>> = conn
                    .prepare_cached(
                        "SELECT received_at FROM events WHERE seq > ?1 ORDER BY seq LIMIT 1",
                    )?
                    .query_row([cursor], |r| time_column(r, 0))
                    .optional()?;
                out.held_by.extend(owed.map(|at| (sink.clone(), at)));
            }
        }
        out.events = if dry_run {
            conn.query_row(
                &format!("SELECT count(*) FROM events WHERE seq <= ?1 AND {KEPT}"),
                [bound],
                |r| r.get::<_, i64>(0),
            )? as u64
        } else {
            conn.prepare_cached(&format!(
                "DELETE FROM events WHERE seq IN
                     (SELECT seq FROM events WHERE seq <= ?1 AND {KEPT} ORDER BY seq LIMIT ?2)"
            ))?
            .execute(params![bound, n])? as u64
        };
    }
    if let Some(cut) = cutoff(now, policy.messages) {
        if dry_run {
            out.messages = conn.query_row(
                "SELECT count(*) FROM messages WHERE touched_at < ?1",
                [&cut],
                |r| r.get::<_, i64>(0),
            )? as u64;
            out.batches = conn.query_row(
                "SELECT count(*) FROM batches WHERE touched_at < ?1",
                [&cut],
                |r| r.get::<_, i64>(0),
            )? as u64;
        } else {
            let (gone, after) = sweep(
                conn,
                "SELECT message_id, touched_at < ?2 FROM messages WHERE message_id > ?1 ORDER BY message_id LIMIT ?3",
                &["DELETE FROM messages WHERE message_id = ?1"],
                state.messages_after.as_deref(),
                &cut,
                n,
            )?;
            (out.messages, next.messages_after) = (gone, after);
            let (gone, after) = sweep(
                conn,
                "SELECT uid, touched_at < ?2 FROM batches WHERE uid > ?1 ORDER BY uid LIMIT ?3",
                &[
                    "DELETE FROM batches WHERE uid = ?1",
                    "DELETE FROM batch_errors WHERE uid = ?1",
                ],
                state.batches_after.as_deref(),
                &cut,
                n,
            )?;
            (out.batches, next.batches_after) = (gone, after);
        }
    }
    if let Some(cut) = cutoff(now, policy.dead_letters) {
        out.dead_letters = if dry_run {
            conn.query_row(
                "SELECT count(*) FROM dead_letters WHERE created_at < ?1",
                [&cut],
                |r| r.get::<_, i64>(0),
            )? as u64
        } else {
            conn.prepare_cached(
                "DELETE FROM dead_letters WHERE id IN
                     (SELECT id FROM dead_letters WHERE created_at < ?1 ORDER BY id LIMIT ?2)",
            )?
            .execute(params![cut, n])? as u64
        };
    }
    out.done = dry_run
        || (out.events < limit as u64
            && out.dead_letters < limit as u64
            && next.messages_after.is_none()
            && next.batches_after.is_none());
    Ok((out, next))
}

/// Looks at the next `limit` rows by key after `after` (`select` gives each key and
/// whether it has expired), deletes the expired ones with `delete`, and returns how many
/// and where to go on from (`None`: the end was reached, the next pass starts over).
fn sweep(
    conn: &Connection,
    select: &str,
    delete: &[&str],
    after: Option<&str>,
    cut: &str,
    limit: i64,
) -> rusqlite::Result<(u64, Option<String>)> {
    let rows: Vec<(String, bool)> = conn
        .prepare_cached(select)?
        .query_map(params![after.unwrap_or(""), cut, limit], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut gone = 0;
    for (key, expired) in &rows {
        if *expired {
            for sql in delete {
                conn.prepare_cached(sql)?.execute([key])?;
            }
            gone += 1;
        }
    }
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|(k, _)| k.clone()))
        .flatten();
    Ok((gone, next))
}

/// Rows per table, and when the oldest event was received.
pub(super) type Counts = (Vec<(&'static str, i64)>, Option<DateTime<Utc>>);

/// Rows per table and the oldest event.
pub(super) fn counts(conn: &Connection) -> rusqlite::Result<Counts> {
    let mut rows = Vec::new();
    for table in ["events", "messages", "batches", "dead_letters", "dedup"] {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        rows.push((table, n));
    }
    let oldest = conn
        .query_row(
            "SELECT received_at FROM events ORDER BY seq LIMIT 1",
            [],
            |r| time_column(r, 0),
        )
        .optional()?;
    Ok((rows, oldest))
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
