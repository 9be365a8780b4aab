//! Group commit on PostgreSQL: a task per replica takes every accept queued while the
//! previous batch committed and writes them in one transaction, a round trip per table:
//!
//! 1. advisory locks on the batch's message ids, in sorted order: a message is tracked by
//!    one transaction at a time across replicas, also before its row exists;
//! 2. the messages' rows, read after the locks (a statement of its own, so its snapshot
//!    sees what the previous holder committed);
//! 3. the dedup keys of other event types, inserted (sorted) with `ON CONFLICT DO NOTHING`:
//!    the ones that come back are new (a key repeated in the batch comes back once, and
//!    a key another replica is inserting waits for its commit);
//! 4. [`crate::event::tracking::track`] decides each event, in queue order;
//! 5. the changed messages, the batch counters (sorted by uid), and last the events:
//!    their seqs come from `seq_counter` in that statement, whose row lock orders the
//!    commits of every replica (see the schema).
//!
//! If the transaction fails for what it wrote rather than the connection, the batch is
//! redone one write per transaction, so one bad event cannot fail the others.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::connect::{describe, is_connection, text};
use crate::event::tracking::{BatchDeltas, Message};
use crate::store::ingest::{BatchRows, Incoming, Tally};
use crate::store::sql::{self, Kind, MESSAGE_COLUMNS, Value};
use crate::store::{Counted, Outcome, StoreError, StoreResult};

/// Most accepts in one transaction.
const MAX_BATCH: usize = 512;
/// Batches in flight at once per replica (each on its own connection): while one waits
/// for its commit, the next is being written.
const IN_FLIGHT: usize = 2;

/// One accept, ready to write, and who waits for it.
pub(super) struct Accept {
    pub(super) event: Incoming,
    pub(super) reply: oneshot::Sender<StoreResult<Outcome>>,
}

// Nearly every message is an accept: boxing it would only add an allocation to each.
#[allow(clippy::large_enum_variant)]
pub(super) enum Queued {
    Accept(Accept),
    /// Answer everything queued before, then stop.
    Stop(oneshot::Sender<()>),
}

/// Runs until [`Queued::Stop`] or until every sender is gone.
pub(super) async fn run(pool: Pool, mut rx: mpsc::Receiver<Queued>, head: Arc<watch::Sender<i64>>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut stopped = None;
    while stopped.is_none() {
        let Some(first) = rx.recv().await else { break };
        let mut batch = Vec::new();
        take(first, &mut batch, &mut stopped);
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        // What queued while waiting for a free slot goes in too.
        while batch.len() < MAX_BATCH && stopped.is_none() {
            match rx.try_recv() {
                Ok(q) => take(q, &mut batch, &mut stopped),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let (pool, head) = (pool.clone(), head.clone());
        tokio::spawn(async move {
            commit_and_answer(&pool, batch, &head).await;
            drop(slot);
        });
    }
    // Every batch in flight finishes before the stop is answered.
    let _ = slots.acquire_many(IN_FLIGHT as u32).await;
    rx.close();
    while let Ok(q) = rx.try_recv() {
        match q {
            Queued::Accept(a) => {
                let _ = a.reply.send(Err(StoreError::Closed));
            }
            Queued::Stop(done) => {
                let _ = done.send(());
            }
        }
    }
    if let Some(done) = stopped {
        let _ = done.send(());
    }
}

fn take(q: Queued, batch: &mut Vec<Accept>, stopped: &mut Option<oneshot::Sender<()>>) {
    match q {
        Queued::Accept(a) => batch.push(a),
        Queued::Stop(done) => *stopped = Some(done),
    }
}

async fn commit_and_answer(pool: &Pool, mut batch: Vec<Accept>, head: &watch::Sender<i64>) {
    let started = std::time::Instant::now();
    let size = batch.len();
    let result = commit(pool, &batch).await;
    metrics::histogram!(crate::metrics::COMMIT_DURATION).record(started.elapsed().as_secs_f64());
    metrics::histogram!(crate::metrics::COMMIT_BATCH).record(size as f64);
    match result {
        Ok(outcomes) => answer(batch, outcomes, head),
        Err(e) if size > 1 && !e.connection => {
            tracing::debug!(
                error = e.message,
                "A batch failed; it is redone one write at a time."
            );
            for a in batch.drain(..) {
                let one = [a];
                let result = commit(pool, &one).await;
                let [a] = one;
                match result {
                    Ok(outcomes) => answer(vec![a], outcomes, head),
                    Err(e) => {
                        tracing::error!(
                            error = e.message,
                            event_id = a.event.event_id,
                            "Could not store an event."
                        );
                        let _ = a.reply.send(Err(StoreError::Backend(e.message)));
                    }
                }
            }
        }
        Err(e) => {
            tracing::error!(
                error = e.message,
                writes = size,
                "Store commit failed; every write in the batch is answered with an error."
            );
            for a in batch {
                let _ = a.reply.send(Err(StoreError::Backend(e.message.clone())));
            }
        }
    }
}

fn answer(batch: Vec<Accept>, outcomes: Vec<Outcome>, head: &watch::Sender<i64>) {
    let last = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Accepted { seq } => Some(*seq),
            Outcome::Duplicate => None,
        })
        .max();
    if let Some(last) = last {
        head.send_if_modified(|h| {
            let newer = last > *h;
            if newer {
                *h = last;
            }
            newer
        });
    }
    for (a, outcome) in batch.into_iter().zip(outcomes) {
        let _ = a.reply.send(Ok(outcome));
    }
}

struct Failed {
    message: String,
    connection: bool,
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Self {
        Self {
            connection: is_connection(&e),
            message: describe(&e),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Failed {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self {
            message: StoreError::from(e).to_string(),
            connection: true,
        }
    }
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Self {
            message: e.to_string(),
            connection: false,
        }
    }
}

/// Rows of values as columns, for `unnest`.
fn columns<'a, const N: usize>(
    rows: impl IntoIterator<Item = [Value<'a>; N]>,
) -> Vec<Vec<Value<'a>>> {
    let mut columns: Vec<Vec<Value<'a>>> = (0..N).map(|_| Vec::new()).collect();
    for row in rows {
        for (column, value) in columns.iter_mut().zip(row) {
            column.push(value);
        }
    }
    columns
}

/// Writes a batch in one transaction; an outcome per accept, in order.
async fn commit(pool: &Pool, batch: &[Accept]) -> Result<Vec<Outcome>, Failed> {
    let received_at = Utc::now().trunc_subsecs(3);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;

    // 1, 2: lock and read the messages.
    let mut ids: Vec<String> = batch
        .iter()
        .filter_map(|a| {
            a.event
                .update
                .as_ref()
                .map(|u| text(u.message_id()).into_owned())
        })
        .collect();
    ids.sort();
    ids.dedup();
    let mut messages: HashMap<String, Message> = HashMap::new();
    if !ids.is_empty() {
        tx.execute(
            &tx.prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) FROM unnest($1::text[]) AS u(id)").await?,
            &[&ids],
        )
        .await?;
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = ANY($1)");
        for row in tx.query(&tx.prepare_cached(&sql).await?, &[&ids]).await? {
            let m = sql::message(&row)?;
            messages.insert(m.id.clone(), m);
        }
    }

    // 3: the dedup keys of other events that are new.
    let mut keys: Vec<String> = batch
        .iter()
        .flat_map(|a| a.event.keys.iter().map(|k| text(k).into_owned()))
        .collect();
    keys.sort();
    keys.dedup();
    let mut new_keys: std::collections::HashSet<String> = Default::default();
    if !keys.is_empty() {
        let rows = tx
            .query(
                &tx.prepare_cached("INSERT INTO dedup (key, created_at) SELECT k, $2 FROM unnest($1::text[]) AS u(k)
                 ON CONFLICT (key) DO NOTHING RETURNING key").await?,
                &[&keys, &received_at],
            )
            .await?;
        for row in rows {
            new_keys.insert(row.get(0));
        }
    }

    // 4: decide each event in queue order.
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut stored: Vec<&Incoming> = Vec::new();
    let mut tally = Tally::default();
    let mut changed: BTreeMap<String, Message> = BTreeMap::new();
    for Accept { event: e, .. } in batch {
        let new = match (&e.update, &e.keys) {
            (Some(u), _) => {
                let id = text(u.message_id()).into_owned();
                let old = messages.get(&id);
                match tally.track(e, u, old, received_at) {
                    None => false,
                    Some(mut m) => {
                        m.id = id.clone();
                        messages.insert(id.clone(), m.clone());
                        changed.insert(id, m);
                        true
                    }
                }
            }
            // The first of the batch's events whose keys are all new takes them.
            (None, keys) => {
                let new = keys.iter().all(|k| new_keys.contains(text(k).as_ref()));
                if new {
                    for k in keys {
                        new_keys.remove(text(k).as_ref());
                    }
                }
                let outcome = if new {
                    Counted::Accepted
                } else {
                    Counted::Duplicate
                };
                tally.count(outcome, e.counted());
                new
            }
        };
        outcomes.push(new);
        if new {
            stored.push(e);
        }
    }

    // 5: write.
    if !changed.is_empty() {
        write_messages(&tx, changed.values()).await?;
    }
    if !tally.deltas.is_empty() {
        write_batches(&tx, &tally.deltas).await?;
    }
    // Also for messages without a batch: the daily report counts them.
    write_counters(&tx, &tally).await?;
    let mut seqs = Vec::new();
    if !stored.is_empty() {
        let n = stored.len() as i64;
        let events = columns(stored.iter().map(|e| e.values(received_at)));
        let rows = tx
            .query(
                &tx.prepare_cached("WITH s AS (UPDATE seq_counter SET next = next + $1 WHERE id = 1 RETURNING next - $1 AS base)
                 INSERT INTO events (seq, received_at, event_id, event_type, message_id, status, warnings, body)
                 SELECT s.base + u.ord - 1, $2, u.event_id, u.event_type, u.message_id, u.status, u.warnings, u.body
                 FROM s, unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[])
                     WITH ORDINALITY AS u(event_id, event_type, message_id, status, warnings, body, ord)
                 RETURNING seq").await?,
                &[&n, &received_at, &events[1], &events[2], &events[3], &events[4], &events[5], &events[6]],
            )
            .await?;
        seqs = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
        seqs.sort_unstable();
        write_side_rows(&tx, &stored, &seqs, received_at).await?;
    }
    write_counts(&tx, &received_at, &tally).await?;
    tx.commit().await?;
    let mut seqs = seqs.into_iter();
    Ok(outcomes
        .into_iter()
        .map(|new| match new {
            true => Outcome::Accepted {
                seq: seqs.next().expect("a seq per stored event"),
            },
            false => Outcome::Duplicate,
        })
        .collect())
}

/// The rows the batch's events keep beside them, one statement a table (`seqs` in the
/// order of `stored`).
async fn write_side_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    stored: &[&Incoming],
    seqs: &[i64],
    received_at: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let tables = crate::store::ingest::side_columns(
        stored.iter().copied().zip(seqs.iter().copied()),
        received_at,
    );
    for (table, columns) in &tables {
        let sql = format!(
            "INSERT INTO {} ({}) SELECT * FROM unnest({})",
            table.name,
            table.names(),
            unnest_arrays(table.columns.iter().map(|(_, kind)| *kind))
        );
        tx.execute(
            &tx.prepare_cached(&sql).await?,
            &super::sql::params_of(columns),
        )
        .await?;
    }
    Ok(())
}

/// `$1::type[], $2::type[], …` for columns of these kinds.
fn unnest_arrays(kinds: impl Iterator<Item = Kind>) -> String {
    let arrays: Vec<String> = kinds
        .enumerate()
        .map(|(i, kind)| {
            let ty = match kind {
                Kind::Int => "int8",
                Kind::Text => "text",
                Kind::Time => "timestamptz",
            };
            format!("${}::{ty}[]", i + 1)
        })
        .collect();
    arrays.join(", ")
}

/// Adds to the core's counter tables, one statement a table (rows in key order).
async fn write_counters(
    tx: &deadpool_postgres::Transaction<'_>,
    tally: &Tally,
) -> Result<(), tokio_postgres::Error> {
    for (table, columns) in tally.counter_columns() {
        let sql = format!(
            "INSERT INTO {} AS c ({}) SELECT * FROM unnest({}) {}",
            table.name,
            table.names(),
            unnest_arrays(table.columns().map(|(_, kind)| kind)),
            table.on_conflict()
        );
        tx.execute(
            &tx.prepare_cached(&sql).await?,
            &super::sql::params_of(&columns),
        )
        .await?;
    }
    Ok(())
}

/// Adds the batch's pushes to the counts of its hour, rows in key order. After the events,
/// so under the `seq_counter` lock: commits of other replicas wait there anyway.
async fn write_counts(
    tx: &deadpool_postgres::Transaction<'_>,
    received_at: &DateTime<Utc>,
    tally: &Tally,
) -> Result<(), tokio_postgres::Error> {
    let c = columns(tally.count_rows(received_at));
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO event_counts AS c (hour, outcome, status, events)
             SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[])
             ON CONFLICT (hour, outcome, status) DO UPDATE SET events = c.events + excluded.events",
        )
        .await?,
        &[&c[0], &c[1], &c[2], &c[3]],
    )
    .await?;
    Ok(())
}

async fn write_messages<'a>(
    tx: &deadpool_postgres::Transaction<'_>,
    messages: impl Iterator<Item = &'a Message>,
) -> Result<(), tokio_postgres::Error> {
    let c = columns(messages.map(sql::message_values));
    let sql = format!(
        "INSERT INTO messages ({MESSAGE_COLUMNS})
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::text[], $8::text[], $9::text[], $10::bool[], $11::text[], $12::text[], $13::text[],
             $14::text[], $15::timestamptz[], $16::timestamptz[], $17::text[], $18::timestamptz[],
             $19::text[])
         ON CONFLICT (message_id) DO UPDATE SET
             wamid = excluded.wamid, status = excluded.status, statuses = excluded.statuses,
             error_code = excluded.error_code, error_message = excluded.error_message,
             error_status = excluded.error_status, conversation = excluded.conversation,
             conversation_status = excluded.conversation_status, conflict = excluded.conflict,
             uid = excluded.uid, send_phone = excluded.send_phone, waba_id = excluded.waba_id,
             account_name = excluded.account_name, first_event_at = excluded.first_event_at,
             last_event_at = excluded.last_event_at, identity_status = excluded.identity_status,
             touched_at = excluded.touched_at, events = excluded.events"
    );
    tx.execute(&tx.prepare_cached(&sql).await?, &super::sql::params_of(&c))
        .await?;
    Ok(())
}

/// Adds the batch's moves to the counters, one statement per table, rows in uid order
/// (so that two transactions lock them in the same order).
async fn write_batches(
    tx: &deadpool_postgres::Transaction<'_>,
    deltas: &BatchDeltas,
) -> Result<(), tokio_postgres::Error> {
    let rows = BatchRows::of(deltas);
    let batches = columns(rows.batches);
    tx.execute(
        &tx.prepare_cached("INSERT INTO batches AS b (uid, messages, delivered, read, failed, other, first_event_at, last_event_at, touched_at)
         SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[],
             $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])
         ON CONFLICT (uid) DO UPDATE SET
             touched_at = GREATEST(b.touched_at, excluded.touched_at),
             messages = b.messages + excluded.messages,
             delivered = b.delivered + excluded.delivered,
             read = b.read + excluded.read,
             failed = b.failed + excluded.failed,
             other = b.other + excluded.other,
             first_event_at = LEAST(b.first_event_at, excluded.first_event_at),
             last_event_at = GREATEST(b.last_event_at, excluded.last_event_at)").await?,
        &super::sql::params_of(&batches),
    )
    .await?;
    if !rows.errors.is_empty() {
        let errors = columns(rows.errors);
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO batch_errors AS e (uid, error_code, error_message, messages)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[])
             ON CONFLICT (uid, error_code) DO UPDATE SET messages = e.messages + excluded.messages",
            )
            .await?,
            &super::sql::params_of(&errors),
        )
        .await?;
    }
    if !rows.hours.is_empty() {
        let hours = columns(rows.hours);
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO batch_hours AS h (uid, hour, delivered, read, failed, other)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[])
             ON CONFLICT (uid, hour) DO UPDATE SET
                 delivered = h.delivered + excluded.delivered, read = h.read + excluded.read,
                 failed = h.failed + excluded.failed, other = h.other + excluded.other",
            )
            .await?,
            &super::sql::params_of(&hours),
        )
        .await?;
    }
    for (uids, sql) in [
        (
            &rows.lost_errors,
            "DELETE FROM batch_errors WHERE uid = ANY($1) AND messages <= 0",
        ),
        (
            &rows.lost_hours,
            "DELETE FROM batch_hours WHERE uid = ANY($1)
             AND delivered = 0 AND read = 0 AND failed = 0 AND other = 0",
        ),
        (
            &rows.lost_messages,
            "DELETE FROM batches WHERE uid = ANY($1) AND messages <= 0",
        ),
    ] {
        if !uids.is_empty() {
            let uids: Vec<String> = uids.iter().map(|u| text(u).into_owned()).collect();
            tx.execute(&tx.prepare_cached(sql).await?, &[&uids]).await?;
        }
    }
    Ok(())
}
