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

use axum::body::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::connect::{describe, is_connection, text};
use super::rows::{MESSAGE_COLUMNS, message_from_row};
use crate::event::Status;
use crate::event::tracking::{BatchDeltas, Message, StatusUpdate, Tracked, hour_of, track};
use crate::store::{Counted, Outcome, StoreError, StoreResult, counted_status};

/// Most accepts in one transaction.
const MAX_BATCH: usize = 512;
/// Batches in flight at once per replica (each on its own connection): while one waits
/// for its commit, the next is being written.
const IN_FLIGHT: usize = 2;

/// One accept, parsed and ready to write.
pub(super) struct Accept {
    pub(super) event_id: String,
    pub(super) event_type: String,
    pub(super) update: Option<StatusUpdate>,
    /// The dedup key of an event other than a message status.
    pub(super) key: Option<String>,
    pub(super) status: Option<Status>,
    pub(super) message_id: Option<String>,
    pub(super) warnings: String,
    pub(super) body: Bytes,
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
                            event_id = a.event_id,
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

/// Writes a batch in one transaction; an outcome per accept, in order.
async fn commit(pool: &Pool, batch: &[Accept]) -> Result<Vec<Outcome>, Failed> {
    let received_at = Utc::now().trunc_subsecs(3);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;

    // 1, 2: lock and read the messages.
    let mut ids: Vec<String> = batch
        .iter()
        .filter_map(|a| a.update.as_ref().map(|u| text(u.message_id()).into_owned()))
        .collect();
    ids.sort();
    ids.dedup();
    let mut messages: HashMap<String, Option<Message>> = HashMap::new();
    if !ids.is_empty() {
        tx.execute(
            &tx.prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) FROM unnest($1::text[]) AS u(id)").await?,
            &[&ids],
        )
        .await?;
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = ANY($1)");
        for row in tx.query(&tx.prepare_cached(&sql).await?, &[&ids]).await? {
            let m = message_from_row(&row).map_err(|message| Failed {
                message,
                connection: false,
            })?;
            messages.insert(m.id.clone(), Some(m));
        }
    }

    // 3: the dedup keys of other events that are new.
    let mut keys: Vec<String> = batch
        .iter()
        .filter_map(|a| a.key.as_deref().map(|k| text(k).into_owned()))
        .collect();
    keys.sort();
    keys.dedup();
    let mut new_keys: HashMap<String, bool> = HashMap::new();
    if !keys.is_empty() {
        let rows = tx
            .query(
                &tx.prepare_cached("INSERT INTO dedup (key, created_at) SELECT k, $2 FROM unnest($1::text[]) AS u(k)
                 ON CONFLICT (key) DO NOTHING RETURNING key").await?,
                &[&keys, &received_at],
            )
            .await?;
        for row in rows {
            new_keys.insert(row.get(0), true);
        }
    }

    // 4: decide each event in queue order.
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut stored: Vec<&Accept> = Vec::new();
    let mut deltas = BatchDeltas::default();
    let mut changed: BTreeMap<String, Message> = BTreeMap::new();
    for a in batch {
        let new = match (&a.update, &a.key) {
            (Some(u), _) => {
                let id = text(u.message_id()).into_owned();
                let old = messages.get(&id).cloned().flatten();
                match track(old.as_ref(), u, received_at) {
                    Tracked::Duplicate => false,
                    Tracked::Changed(mut m) => {
                        m.id = id.clone();
                        deltas.record(old.as_ref(), &m);
                        messages.insert(id.clone(), Some(m.clone()));
                        changed.insert(id, m);
                        true
                    }
                }
            }
            // The first of the batch's events with a new key takes it.
            (None, Some(k)) => new_keys.remove(text(k).as_ref()).is_some(),
            (None, None) => true,
        };
        outcomes.push(new);
        if new {
            stored.push(a);
        }
    }

    // 5: write.
    if !changed.is_empty() {
        write_messages(&tx, changed.values()).await?;
    }
    if !deltas.is_empty() {
        write_batches(&tx, &deltas).await?;
    }
    let mut seqs = Vec::new();
    if !stored.is_empty() {
        let n = stored.len() as i64;
        let column = |f: fn(&Accept) -> Option<String>| -> Vec<Option<String>> {
            stored.iter().map(|a| f(a)).collect()
        };
        let event_ids = column(|a| Some(text(&a.event_id).into_owned()));
        let types = column(|a| Some(text(&a.event_type).into_owned()));
        let message_ids = column(|a| a.message_id.as_deref().map(|m| text(m).into_owned()));
        let statuses = column(|a| a.status.as_ref().map(|s| text(s.as_str()).into_owned()));
        let warnings = column(|a| Some(a.warnings.clone()));
        let bodies: Vec<&[u8]> = stored.iter().map(|a| &a.body[..]).collect();
        let rows = tx
            .query(
                &tx.prepare_cached("WITH s AS (UPDATE seq_counter SET next = next + $1 WHERE id = 1 RETURNING next - $1 AS base)
                 INSERT INTO events (seq, received_at, event_id, event_type, message_id, status, warnings, body)
                 SELECT s.base + u.ord - 1, $2, u.event_id, u.event_type, u.message_id, u.status, u.warnings, u.body
                 FROM s, unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[])
                     WITH ORDINALITY AS u(event_id, event_type, message_id, status, warnings, body, ord)
                 RETURNING seq").await?,
                &[&n, &received_at, &event_ids, &types, &message_ids, &statuses, &warnings, &bodies],
            )
            .await?;
        seqs = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
        seqs.sort_unstable();
    }
    write_counts(&tx, &received_at, batch, &outcomes).await?;
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

/// Adds the batch's pushes to the counts of its hour, rows in key order. After the events,
/// so under the `seq_counter` lock: commits of other replicas wait there anyway.
async fn write_counts(
    tx: &deadpool_postgres::Transaction<'_>,
    received_at: &DateTime<Utc>,
    batch: &[Accept],
    stored: &[bool],
) -> Result<(), tokio_postgres::Error> {
    let mut counted: BTreeMap<(Counted, &str), i64> = BTreeMap::new();
    for (a, new) in batch.iter().zip(stored) {
        let outcome = if *new {
            Counted::Accepted
        } else {
            Counted::Duplicate
        };
        *counted
            .entry((outcome, counted_status(a.status.as_ref())))
            .or_default() += 1;
    }
    let (outcomes, statuses, events): (Vec<&str>, Vec<&str>, Vec<i64>) = counted
        .iter()
        .map(|((outcome, status), n)| (outcome.as_str(), *status, *n))
        .collect();
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO event_counts AS c (hour, outcome, status, events)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int8[])
             ON CONFLICT (hour, outcome, status) DO UPDATE SET events = c.events + excluded.events",
        )
        .await?,
        &[&hour_of(received_at), &outcomes, &statuses, &events],
    )
    .await?;
    Ok(())
}

async fn write_messages<'a>(
    tx: &deadpool_postgres::Transaction<'_>,
    messages: impl Iterator<Item = &'a Message>,
) -> Result<(), tokio_postgres::Error> {
    let mut c = MessageColumns::default();
    for m in messages {
        c.push(m);
    }
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
    tx.execute(
        &tx.prepare_cached(&sql).await?,
        &[
            &c.id,
            &c.wamid,
            &c.status,
            &c.statuses,
            &c.error_code,
            &c.error_message,
            &c.error_status,
            &c.conversation,
            &c.conversation_status,
            &c.conflict,
            &c.uid,
            &c.send_phone,
            &c.waba_id,
            &c.account_name,
            &c.first_event_at,
            &c.last_event_at,
            &c.identity_status,
            &c.touched_at,
            &c.events,
        ],
    )
    .await?;
    Ok(())
}

/// The messages to write, column by column (for `unnest`).
#[derive(Default)]
struct MessageColumns {
    id: Vec<String>,
    wamid: Vec<String>,
    status: Vec<String>,
    statuses: Vec<String>,
    error_code: Vec<Option<String>>,
    error_message: Vec<Option<String>>,
    error_status: Vec<Option<String>>,
    conversation: Vec<Option<String>>,
    conversation_status: Vec<Option<String>>,
    conflict: Vec<bool>,
    uid: Vec<Option<String>>,
    send_phone: Vec<String>,
    waba_id: Vec<String>,
    account_name: Vec<String>,
    first_event_at: Vec<DateTime<Utc>>,
    last_event_at: Vec<DateTime<Utc>>,
    identity_status: Vec<Option<String>>,
    touched_at: Vec<DateTime<Utc>>,
    events: Vec<String>,
}

impl MessageColumns {
    fn push(&mut self, m: &Message) {
        let t = |s: &str| text(s).into_owned();
        let statuses: BTreeMap<String, String> = m
            .statuses
            .iter()
            .map(|(s, at)| (t(s), crate::event::format_time(at)))
            .collect();
        self.id.push(t(&m.id));
        self.wamid.push(t(&m.wamid));
        self.status.push(t(m.status.as_str()));
        self.statuses
            .push(serde_json::to_string(&statuses).expect("a map serialises"));
        self.error_code.push(m.error.as_ref().map(|e| t(&e.code)));
        self.error_message
            .push(m.error.as_ref().and_then(|e| e.message.as_deref()).map(t));
        self.error_status
            .push(m.error.as_ref().map(|e| t(e.status.as_str())));
        self.conversation
            .push(m.conversation.as_ref().map(|c| c.to_string()));
        self.conversation_status
            .push(m.conversation_status.as_ref().map(|s| t(s.as_str())));
        self.conflict.push(m.conflict);
        self.uid.push(m.uid.as_deref().map(t));
        self.send_phone.push(t(&m.send_phone));
        self.waba_id.push(t(&m.waba_id));
        self.account_name.push(t(&m.account_name));
        self.first_event_at.push(m.first_event_at);
        self.last_event_at.push(m.last_event_at);
        self.identity_status
            .push(m.identity_status.as_ref().map(|s| t(s.as_str())));
        self.touched_at.push(m.touched_at);
        self.events.push(t(
            &serde_json::to_string(&m.events).expect("a map serialises")
        ));
    }
}

/// Adds the batch's moves to the counters, one statement per table, rows in uid order
/// (so that two transactions lock them in the same order).
async fn write_batches(
    tx: &deadpool_postgres::Transaction<'_>,
    deltas: &BatchDeltas,
) -> Result<(), tokio_postgres::Error> {
    let mut uids = Vec::new();
    let mut counts: [Vec<i64>; 5] = Default::default();
    let (mut firsts, mut lasts, mut touched) = (Vec::new(), Vec::new(), Vec::new());
    let (mut e_uids, mut e_codes, mut e_messages, mut e_counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut h_uids, mut h_hours, mut h_counts) =
        (Vec::new(), Vec::new(), <[Vec<i64>; 4]>::default());
    let (mut lost_messages, mut lost_errors, mut lost_hours) = (false, false, false);
    for (uid, d) in deltas.iter() {
        let uid = text(uid).into_owned();
        for (hour, counts) in d.moved_hours() {
            h_uids.push(uid.clone());
            h_hours.push(hour);
            for (column, n) in h_counts.iter_mut().zip(counts) {
                column.push(n);
            }
        }
        lost_hours |= d.lost_hours();
        for (column, n) in counts.iter_mut().zip(d.counts) {
            column.push(n);
        }
        firsts.push(d.first_event_at);
        lasts.push(d.last_event_at);
        touched.push(d.touched_at);
        for (code, (n, message)) in d.errors.iter().filter(|(_, (n, _))| *n != 0) {
            e_uids.push(uid.clone());
            e_codes.push(text(code).into_owned());
            e_messages.push(message.as_deref().map(|m| text(m).into_owned()));
            e_counts.push(*n);
        }
        lost_messages |= d.lost_messages();
        lost_errors |= d.lost_errors();
        uids.push(uid);
    }
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
        &[
            &uids, &counts[0], &counts[1], &counts[2], &counts[3], &counts[4], &firsts, &lasts,
            &touched,
        ],
    )
    .await?;
    if !e_uids.is_empty() {
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO batch_errors AS e (uid, error_code, error_message, messages)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[])
             ON CONFLICT (uid, error_code) DO UPDATE SET messages = e.messages + excluded.messages",
            )
            .await?,
            &[&e_uids, &e_codes, &e_messages, &e_counts],
        )
        .await?;
    }
    if !h_uids.is_empty() {
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO batch_hours AS h (uid, hour, delivered, read, failed, other)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[])
             ON CONFLICT (uid, hour) DO UPDATE SET
                 delivered = h.delivered + excluded.delivered, read = h.read + excluded.read,
                 failed = h.failed + excluded.failed, other = h.other + excluded.other",
            )
            .await?,
            &[
                &h_uids,
                &h_hours,
                &h_counts[0],
                &h_counts[1],
                &h_counts[2],
                &h_counts[3],
            ],
        )
        .await?;
    }
    if lost_errors {
        tx.execute(
            &tx.prepare_cached("DELETE FROM batch_errors WHERE uid = ANY($1) AND messages <= 0")
                .await?,
            &[&uids],
        )
        .await?;
    }
    if lost_hours {
        tx.execute(
            &tx.prepare_cached(
                "DELETE FROM batch_hours WHERE uid = ANY($1)
                 AND delivered = 0 AND read = 0 AND failed = 0 AND other = 0",
            )
            .await?,
            &[&uids],
        )
        .await?;
    }
    // A batch all of whose messages moved to another uid is gone, as if never seen.
    if lost_messages {
        tx.execute(
            &tx.prepare_cached("DELETE FROM batches WHERE uid = ANY($1) AND messages <= 0")
                .await?,
            &[&uids],
        )
        .await?;
    }
    Ok(())
}
