//! The PostgreSQL store: several innohook replicas behind a load balancer share one
//! database, and every promise of the contract holds across them.
//!
//! - Each replica group-commits its own accepts ([`ingest`]); dedup and tracking hold
//!   across replicas (advisory locks per message, a unique dedup key).
//! - Sequence numbers come from one counter row taken last in every ingest transaction,
//!   so commits happen in seq order and a sink's position never skips an event another
//!   replica committed late.
//! - A sink runs on one replica at a time: a lease row with an epoch as fencing token;
//!   progress under an old epoch is refused.
//! - Runners wake on their own replica's commits at once and on the others' within
//!   [`HEAD_POLL`].

mod connect;
mod ingest;
mod rows;
mod schema;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Bytes;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, watch};

use self::connect::{describe, text};
use self::ingest::{Accept, Queued};
use self::rows::{
    DEAD_LETTER_COLUMNS, EVENT_COLUMNS, MESSAGE_COLUMNS, dead_letter_from_row, event_from_row,
    message_from_row,
};
use super::{
    BatchHour, BatchQuery, Counted, DeadLetter, DeadLetterEntry, DeadLetterQuery, EventQuery,
    HourCount, Outcome, ParkedEvent, Progress, PruneState, Pruned, Retention, Role, SinkLease,
    SinkState, Store, StoreError, StoreResult, StoreStats, StoredEvent, TIMELINE_HOURS,
};
use crate::event::tracking::{Batch, FailureGroup, Message, StatusUpdate, hour_of, hour_start};
use crate::event::{Accepted, DedupKey, Rejection, Status};
use crate::store::StoreConfig;

/// How often a replica looks for commits of the others.
const HEAD_POLL: Duration = Duration::from_millis(200);

/// The PostgreSQL store; see the module documentation.
pub struct PgStore {
    pool: Pool,
    ingest: mpsc::Sender<Queued>,
    head: watch::Receiver<i64>,
    /// This process, as the holder of its leases.
    holder: String,
    lease: Duration,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn backend(message: String) -> StoreError {
    StoreError::Backend(message)
}

/// How a dedup key is spelled in the `dedup` table.
fn dedup_text(key: &DedupKey) -> String {
    match key {
        DedupKey::Status { message_id, status } => {
            format!("status\u{1f}{message_id}\u{1f}{status}")
        }
        DedupKey::Other {
            envelope_id,
            body_sha256,
        } => {
            let hex: String = body_sha256.iter().map(|b| format!("{b:02x}")).collect();
            format!("other\u{1f}{envelope_id}\u{1f}{hex}")
        }
    }
}

impl PgStore {
    /// Connects; as a server, creates or migrates the schema (one replica at a time) and
    /// starts the ingest and head tasks. As a client, the schema must be this binary's.
    pub async fn open(config: &StoreConfig, role: Role) -> anyhow::Result<Self> {
        let url = config.url.as_deref().unwrap_or_default();
        let pool = connect::pool(url, config.pool_size)?;
        let where_ = super::redact_url(url);
        let mut client = pool
            .get()
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {where_}: {}", StoreError::from(e)))?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
        match role {
            Role::Server => schema::migrate(&tx).await.map_err(|e| match e
                .downcast_ref::<tokio_postgres::Error>()
            {
                Some(pg) => anyhow::anyhow!(
                    "cannot create innohook's tables in {where_}: {}",
                    describe(pg)
                ),
                None => e,
            })?,
            Role::Client => {
                let version = schema::version(&tx)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
                anyhow::ensure!(
                    version == schema::MIGRATIONS.len(),
                    "the database in {where_} has innohook schema version {version}, this innohook expects {}; start the server (it migrates) or use the matching innohook",
                    schema::MIGRATIONS.len()
                );
            }
        }
        tx.commit()
            .await
            .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
        let head: i64 = client
            .query_one("SELECT next - 1 FROM seq_counter WHERE id = 1", &[])
            .await
            .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?
            .get(0);
        drop(client);
        let (head_tx, head_rx) = watch::channel(head);
        let head_tx = Arc::new(head_tx);
        let (ingest_tx, ingest_rx) = mpsc::channel(4096);
        let mut tasks = Vec::new();
        if role == Role::Server {
            tasks.push(tokio::spawn(ingest::run(
                pool.clone(),
                ingest_rx,
                head_tx.clone(),
            )));
            tasks.push(tokio::spawn(follow_head(pool.clone(), head_tx)));
        }
        Ok(Self {
            pool,
            ingest: ingest_tx,
            head: head_rx,
            holder: format!(
                "{}-{}-{:016x}",
                hostname(),
                std::process::id(),
                fastrand::u64(..)
            ),
            lease: Duration::from_secs(config.lease_secs),
            tasks: Mutex::new(tasks),
        })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    /// Puts the sink dead letters not replayed yet that `which` (a condition on `$1`,
    /// which is `key`) selects back in their sinks' queues, in one transaction; returns
    /// how many.
    async fn replay_matching(
        &self,
        which: &str,
        key: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> StoreResult<usize> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let filter = format!("source = 'sink' AND replayed_at IS NULL AND {which}");
        tx.execute(
            &format!(
                "INSERT INTO sink_replay (sink, event_seq)
                 SELECT sink, event_seq FROM dead_letters WHERE {filter}
                 ON CONFLICT DO NOTHING"
            ),
            &[key],
        )
        .await?;
        let n = tx
            .execute(
                &format!("UPDATE dead_letters SET replayed_at = now() WHERE {filter}"),
                &[key],
            )
            .await?;
        tx.commit().await?;
        Ok(n as usize)
    }

    /// Names in the lease table: sinks and jobs apart.
    fn lease_name(sink: &str) -> String {
        format!("sink:{sink}")
    }
}

/// Whether a server could use the database: reachable, the user allowed in, the schema
/// one this binary can use (or none yet, and the right to create it).
pub(super) async fn check(config: &StoreConfig) -> anyhow::Result<String> {
    let url = config.url.as_deref().unwrap_or_default();
    let where_ = super::redact_url(url);
    let pool = connect::pool(url, 1)?;
    let mut client = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {where_}: {}", StoreError::from(e)))?;
    let sql = |e: tokio_postgres::Error| anyhow::anyhow!("{where_}: {}", describe(&e));
    let tx = client.transaction().await.map_err(sql)?;
    let version = schema::version(&tx).await.map_err(sql)?;
    let known = schema::MIGRATIONS.len();
    anyhow::ensure!(
        version <= known,
        "the database in {where_} has innohook schema version {version}, newer than this innohook knows ({known})"
    );
    let row = tx
        .query_one(
            "SELECT current_user::text, current_schema()::text,
                 has_schema_privilege(current_schema(), 'CREATE'),
                 to_regclass('events') IS NULL
                     OR has_table_privilege('events', 'SELECT, INSERT, UPDATE, DELETE')",
            &[],
        )
        .await
        .map_err(sql)?;
    let (user, schema_name, create, use_events): (String, String, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    anyhow::ensure!(
        use_events,
        "{where_}: user {user} may not read and write innohook's tables; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema_name} TO {user}"
    );
    anyhow::ensure!(
        version == known || create,
        "{where_}: user {user} may not create tables in schema {schema_name}, and innohook's are not there yet; GRANT CREATE ON SCHEMA {schema_name} TO {user} (or run the first start as the owner)"
    );
    Ok(match version {
        0 => format!(
            "PostgreSQL at {where_} as {user}: reachable; innohook's tables are created at the first start"
        ),
        v if v < known => format!(
            "PostgreSQL at {where_} as {user}: reachable, schema version {v}, migrated to {known} at the next start"
        ),
        _ => format!("PostgreSQL at {where_} as {user}: reachable, schema version {known}"),
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "innohook".to_owned())
}

/// Keeps `head` at the highest seq committed by any replica.
async fn follow_head(pool: Pool, head: Arc<watch::Sender<i64>>) {
    let mut every = tokio::time::interval(HEAD_POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Ok(client) = pool.get().await else {
            continue;
        };
        if let Ok(row) = client
            .query_one("SELECT next - 1 FROM seq_counter WHERE id = 1", &[])
            .await
        {
            let seq: i64 = row.get(0);
            head.send_if_modified(|h| {
                let newer = seq > *h;
                if newer {
                    *h = seq;
                }
                newer
            });
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn accept(&self, accepted: &Accepted, body: Bytes) -> StoreResult<Outcome> {
        let env = &accepted.envelope;
        let update = StatusUpdate::from_accepted(accepted);
        let key = update.is_none().then(|| dedup_text(&env.dedup_key()));
        let (reply, answer) = oneshot::channel();
        let accept = Accept {
            event_id: env.id().to_owned(),
            event_type: env.event_type().to_owned(),
            update,
            key,
            status: env.message_status().map(|s| s.status().clone()),
            message_id: env.message_status().map(|s| s.message_id().to_owned()),
            warnings: serde_json::to_string(&accepted.warnings).expect("warnings serialise"),
            body,
            reply,
        };
        self.ingest
            .send(Queued::Accept(accept))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn dead_letter_rejected(&self, rejection: &Rejection, body: Bytes) -> StoreResult<i64> {
        let row = self
            .client()
            .await?
            .query_one(
                "WITH d AS (
                     INSERT INTO dead_letters (created_at, source, code, field, reason, body)
                     VALUES (now(), 'http', $1, $2, $3, $4) RETURNING id
                 ), c AS (
                     INSERT INTO event_counts AS c (hour, outcome, status, events)
                     VALUES (floor(extract(epoch FROM now()) / 3600)::int8, 'rejected', '', 1)
                     ON CONFLICT (hour, outcome, status) DO UPDATE SET events = c.events + 1
                 )
                 SELECT id FROM d",
                &[
                    &rejection.code.as_str(),
                    &rejection.field.as_deref().map(text),
                    &text(&rejection.message),
                    &&body[..],
                ],
            )
            .await?;
        Ok(row.get(0))
    }

    fn head(&self) -> watch::Receiver<i64> {
        self.head.clone()
    }

    async fn events_after(&self, after: i64, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows = self
            .client()
            .await?
            .query(&sql, &[&after, &(limit as i64)])
            .await?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    async fn sink_cursor(&self, sink: &str) -> StoreResult<Option<i64>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT seq FROM sink_cursors WHERE sink = $1",
                &[&text(sink)],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Takes the sink when nobody holds it or the holder's lease ran out (a new epoch),
    /// or renews it for its holder (the same epoch).
    async fn claim_sink(&self, sink: &str) -> StoreResult<Option<SinkLease>> {
        let sent = Instant::now();
        let row = self
            .client()
            .await?
            .query_opt(
                "INSERT INTO leases AS l (name, holder, epoch, expires_at)
                 VALUES ($1, $2, 1, now() + $3 * interval '1 second')
                 ON CONFLICT (name) DO UPDATE SET
                     epoch = CASE WHEN l.holder = excluded.holder THEN l.epoch ELSE l.epoch + 1 END,
                     holder = excluded.holder, expires_at = excluded.expires_at
                 WHERE l.holder = excluded.holder OR l.holder IS NULL OR l.expires_at <= now()
                 RETURNING epoch",
                &[
                    &Self::lease_name(sink),
                    &self.holder,
                    &self.lease.as_secs_f64(),
                ],
            )
            .await?;
        Ok(row.map(|r| SinkLease {
            sink: sink.to_owned(),
            token: r.get(0),
            renew_at: sent + self.lease / 3,
            // Counted from before the claim was sent, so surely not later than the
            // database's expiry.
            valid_until: sent + self.lease,
        }))
    }

    async fn release_sink(&self, lease: &SinkLease) -> StoreResult<()> {
        self.client()
            .await?
            .execute(
                "UPDATE leases SET holder = NULL, expires_at = '-infinity'
                 WHERE name = $1 AND epoch = $2 AND holder = $3",
                &[&Self::lease_name(&lease.sink), &lease.token, &self.holder],
            )
            .await?;
        Ok(())
    }

    /// In one transaction that holds the lease row: another replica's takeover waits for
    /// it, and after a takeover nothing of this one's is written.
    async fn sink_progress(&self, lease: &SinkLease, progress: Progress) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let sink = text(&lease.sink).into_owned();
        let held = tx
            .query_opt(
                "SELECT 1 FROM leases WHERE name = $1 AND epoch = $2 AND holder = $3 FOR UPDATE",
                &[&Self::lease_name(&lease.sink), &lease.token, &self.holder],
            )
            .await?;
        if held.is_none() {
            return Err(StoreError::LeaseLost(lease.sink.clone()));
        }
        if !progress.dead.is_empty() {
            let seqs: Vec<i64> = progress.dead.iter().map(|d| d.seq).collect();
            let codes: Vec<&str> = progress.dead.iter().map(|d| d.code).collect();
            let reasons: Vec<String> = progress
                .dead
                .iter()
                .map(|d| text(&d.reason).into_owned())
                .collect();
            let attempts: Vec<i32> = progress.dead.iter().map(|d| d.attempts as i32).collect();
            let firsts: Vec<chrono::DateTime<chrono::Utc>> =
                progress.dead.iter().map(|d| d.first_attempt_at).collect();
            tx.execute(
                "INSERT INTO dead_letters (created_at, source, sink, event_seq, code, reason, attempts, first_attempt_at)
                 SELECT now(), 'sink', $1, u.seq, u.code, u.reason, u.attempts, u.first
                 FROM unnest($2::int8[], $3::text[], $4::text[], $5::int4[], $6::timestamptz[])
                     WITH ORDINALITY AS u(seq, code, reason, attempts, first, ord)
                 ORDER BY u.ord",
                &[&sink, &seqs, &codes, &reasons, &attempts, &firsts],
            )
            .await?;
        }
        if !progress.unparked.is_empty() {
            tx.execute(
                "DELETE FROM sink_parked WHERE sink = $1 AND event_seq = ANY($2)",
                &[&sink, &progress.unparked],
            )
            .await?;
        }
        if !progress.parked.is_empty() {
            let p = &progress.parked;
            let seqs: Vec<i64> = p.iter().map(|p| p.seq).collect();
            let messages: Vec<Option<String>> = p
                .iter()
                .map(|p| p.message_id.as_deref().map(|m| text(m).into_owned()))
                .collect();
            let attempts: Vec<i32> = p.iter().map(|p| p.attempts as i32).collect();
            let firsts: Vec<Option<chrono::DateTime<chrono::Utc>>> =
                p.iter().map(|p| p.first_attempt_at).collect();
            let nexts: Vec<chrono::DateTime<chrono::Utc>> =
                p.iter().map(|p| p.next_attempt_at).collect();
            let errors: Vec<String> = p.iter().map(|p| text(&p.last_error).into_owned()).collect();
            tx.execute(
                "INSERT INTO sink_parked AS p (sink, event_seq, message_id, attempts, first_attempt_at, next_attempt_at, last_error)
                 SELECT $1, * FROM unnest($2::int8[], $3::text[], $4::int4[], $5::timestamptz[], $6::timestamptz[], $7::text[])
                 ON CONFLICT (sink, event_seq) DO UPDATE SET attempts = excluded.attempts,
                     first_attempt_at = excluded.first_attempt_at,
                     next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error",
                &[&sink, &seqs, &messages, &attempts, &firsts, &nexts, &errors],
            )
            .await?;
        }
        if !progress.replayed.is_empty() {
            tx.execute(
                "DELETE FROM sink_replay WHERE sink = $1 AND event_seq = ANY($2)",
                &[&sink, &progress.replayed],
            )
            .await?;
        }
        if let Some(cursor) = progress.cursor {
            tx.execute(
                "INSERT INTO sink_cursors (sink, seq) VALUES ($1, $2)
                 ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq",
                &[&sink, &cursor],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn parked(&self, sink: &str) -> StoreResult<Vec<(ParkedEvent, StoredEvent)>> {
        let columns: Vec<String> = EVENT_COLUMNS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect();
        let columns = columns.join(", ");
        let sql = format!(
            "SELECT {columns}, p.message_id, p.attempts, p.first_attempt_at, p.next_attempt_at, p.last_error
             FROM sink_parked p JOIN events e ON e.seq = p.event_seq
             WHERE p.sink = $1 ORDER BY p.event_seq"
        );
        let rows = self.client().await?.query(&sql, &[&text(sink)]).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let event = event_from_row(r);
                let attempts: i32 = r.get(9);
                (
                    ParkedEvent {
                        seq: event.seq,
                        message_id: r.get(8),
                        attempts: attempts as u32,
                        first_attempt_at: r.get(10),
                        next_attempt_at: r.get(11),
                        last_error: r.get(12),
                    },
                    event,
                )
            })
            .collect())
    }

    async fn replay_queue(&self, sink: &str, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        let columns = EVENT_COLUMNS.replace("seq,", "e.seq,");
        let sql = format!(
            "SELECT {columns} FROM sink_replay r JOIN events e ON e.seq = r.event_seq
             WHERE r.sink = $1 ORDER BY r.event_seq LIMIT $2"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&text(sink), &(limit as i64)])
            .await?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    async fn replay(&self, sink: Option<&str>) -> StoreResult<usize> {
        let sink = sink.map(text);
        self.replay_matching("($1::text IS NULL OR sink = $1)", &sink)
            .await
    }

    async fn message(&self, id: &str) -> StoreResult<Option<Message>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = $1");
        let row = self.client().await?.query_opt(&sql, &[&text(id)]).await?;
        row.map(|r| message_from_row(&r))
            .transpose()
            .map_err(backend)
    }

    async fn messages_by_wamid(&self, wamid: &str) -> StoreResult<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE wamid = $1 ORDER BY message_id LIMIT 100"
        );
        let rows = self.client().await?.query(&sql, &[&text(wamid)]).await?;
        rows.iter()
            .map(message_from_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn batch(&self, uid: &str) -> StoreResult<Option<Batch>> {
        let client = self.client().await?;
        let uid = text(uid);
        let Some(row) = client
            .query_opt(
                "SELECT messages, delivered, read, failed, other, first_event_at, last_event_at
                 FROM batches WHERE uid = $1",
                &[&uid],
            )
            .await?
        else {
            return Ok(None);
        };
        let failures = client
            .query(
                "SELECT error_code, error_message, messages FROM batch_errors
                 WHERE uid = $1 ORDER BY messages DESC, error_code",
                &[&uid],
            )
            .await?
            .iter()
            .map(|r| FailureGroup {
                error_code: r.get(0),
                error_message: r.get(1),
                messages: r.get(2),
            })
            .collect();
        Ok(Some(Batch::new(
            uid.into_owned(),
            [row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)],
            failures,
            row.get(5),
            row.get(6),
        )))
    }

    async fn batch_messages(
        &self,
        uid: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE uid = $1 AND message_id > $2
             ORDER BY message_id LIMIT $3"
        );
        let rows = self
            .client()
            .await?
            .query(
                &sql,
                &[&text(uid), &text(after.unwrap_or("")), &(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(message_from_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE seq > $1 AND ($2::text IS NULL OR status = $2)
                 AND ($3::timestamptz IS NULL OR received_at >= $3)
             ORDER BY seq LIMIT $4"
        );
        let rows = self
            .client()
            .await?
            .query(
                &sql,
                &[
                    &query.after,
                    &query.status.as_deref().map(text),
                    &query.since,
                    &(query.limit as i64),
                ],
            )
            .await?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    async fn count_events(&self) -> StoreResult<i64> {
        let row = self
            .client()
            .await?
            .query_one("SELECT count(*) FROM events", &[])
            .await?;
        Ok(row.get(0))
    }

    async fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>> {
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters d LEFT JOIN events e ON e.seq = d.event_seq
             ORDER BY d.id"
        );
        let rows = self.client().await?.query(&sql, &[]).await?;
        Ok(rows.iter().map(dead_letter_from_row).collect())
    }

    async fn event_counts(&self, since: DateTime<Utc>) -> StoreResult<Vec<HourCount>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT hour, outcome, status, events FROM event_counts
                 WHERE hour >= $1 ORDER BY hour, outcome, status",
                &[&hour_of(&since)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let outcome: &str = r.get(1);
                Ok(HourCount {
                    hour: hour_start(r.get(0)),
                    outcome: Counted::parse(outcome)
                        .ok_or_else(|| backend(format!("not an outcome: {outcome:?}")))?,
                    status: r.get(2),
                    events: r.get(3),
                })
            })
            .collect()
    }

    async fn recent_batches(&self, query: &BatchQuery) -> StoreResult<Vec<Batch>> {
        let (at, uid) = match &query.before {
            Some((at, uid)) => (Some(*at), Some(text(uid))),
            None => (None, None),
        };
        let rows = self
            .client()
            .await?
            .query(
                "SELECT uid, messages, delivered, read, failed, other, first_event_at, last_event_at
                 FROM batches
                 WHERE ($1::text IS NULL OR left(uid, length($1)) = $1)
                     AND ($2::timestamptz IS NULL OR (last_event_at, uid) < ($2, $3::text))
                 ORDER BY last_event_at DESC, uid DESC LIMIT $4",
                &[
                    &query.uid_prefix.as_deref().map(text),
                    &at,
                    &uid,
                    &(query.limit as i64),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Batch::new(
                    r.get(0),
                    [r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)],
                    Vec::new(),
                    r.get(6),
                    r.get(7),
                )
            })
            .collect())
    }

    async fn batch_timeline(&self, uid: &str) -> StoreResult<Vec<BatchHour>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT hour, delivered, read, failed, other FROM (
                     SELECT * FROM batch_hours WHERE uid = $1 ORDER BY hour DESC LIMIT $2
                 ) AS latest ORDER BY hour",
                &[&text(uid), &TIMELINE_HOURS],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| BatchHour {
                hour: hour_start(r.get(0)),
                events: [r.get(1), r.get(2), r.get(3), r.get(4)],
            })
            .collect())
    }

    async fn batch_message_statuses(
        &self,
        uid: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Status)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT message_id, status FROM messages WHERE uid = $1 AND message_id > $2
                 ORDER BY message_id LIMIT $3",
                &[&text(uid), &text(after.unwrap_or("")), &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), Status::parse(r.get(1))))
            .collect())
    }

    async fn messages_by_phone(&self, phone: &str) -> StoreResult<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE send_phone = $1 ORDER BY message_id LIMIT 100"
        );
        let rows = self.client().await?.query(&sql, &[&text(phone)]).await?;
        rows.iter()
            .map(message_from_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn dead_letter_page(&self, query: &DeadLetterQuery) -> StoreResult<Vec<DeadLetterEntry>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS}, EXISTS (SELECT 1 FROM sink_replay r
                 WHERE r.sink = d.sink AND r.event_seq = d.event_seq)
             FROM dead_letters d LEFT JOIN events e ON e.seq = d.event_seq
             WHERE d.source = $1 AND d.id < $2 ORDER BY d.id DESC LIMIT $3"
        );
        let rows = client
            .query(
                &sql,
                &[
                    &query.source,
                    &query.before.unwrap_or(i64::MAX),
                    &(query.limit as i64),
                ],
            )
            .await?;
        let seqs: Vec<i64> = rows.iter().filter_map(|r| r.get(4)).collect();
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq = ANY($1)");
        let mut events: std::collections::HashMap<i64, StoredEvent> = client
            .query(&sql, &[&seqs])
            .await?
            .iter()
            .map(|r| {
                let e = event_from_row(r);
                (e.seq, e)
            })
            .collect();
        Ok(rows
            .iter()
            .map(|r| {
                let letter = dead_letter_from_row(r);
                DeadLetterEntry {
                    event: letter.event_seq.and_then(|seq| events.remove(&seq)),
                    queued: r.get(16),
                    letter,
                }
            })
            .collect())
    }

    async fn sink_states(&self) -> StoreResult<Vec<SinkState>> {
        let rows = self
            .client()
            .await?
            .query(super::SINK_STATES_SQL, &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| SinkState {
                sink: r.get(0),
                cursor: r.get(1),
                failing_since: r.get(2),
                last_error: r.get(3),
                last_error_at: r.get(4),
                dead_letters: r.get(5),
                last_dead_letter_at: r.get(6),
                parked: r.get(7),
            })
            .collect())
    }

    async fn record_sink_error(&self, sink: &str, error: Option<&str>) -> StoreResult<()> {
        let client = self.client().await?;
        match error {
            Some(error) => client
                .execute(
                    "INSERT INTO sink_status AS s (sink, failing_since, last_error, last_error_at)
                     VALUES ($1, now(), $2, now())
                     ON CONFLICT (sink) DO UPDATE SET
                         failing_since = coalesce(s.failing_since, excluded.failing_since),
                         last_error = excluded.last_error,
                         last_error_at = excluded.last_error_at",
                    &[&text(sink), &text(error)],
                )
                .await?,
            None => {
                client
                    .execute(
                        "UPDATE sink_status SET failing_since = NULL WHERE sink = $1",
                        &[&text(sink)],
                    )
                    .await?
            }
        };
        Ok(())
    }

    async fn replay_dead_letter(&self, id: i64) -> StoreResult<bool> {
        Ok(self.replay_matching("id = $1", &id).await? == 1)
    }

    /// Writes and deletes a row, and commits: a database that cannot take a write (down,
    /// read-only, out of disk) fails here.
    async fn probe(&self) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.batch_execute(
            "INSERT INTO meta (key, value) VALUES ('ready_probe', now()::text)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value;
             DELETE FROM meta WHERE key = 'ready_probe';",
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn prune_dedup(&self, days: u32) -> StoreResult<u64> {
        let n = self
            .client()
            .await?
            .execute(
                "DELETE FROM dedup WHERE created_at < now() - $1 * interval '1 day'",
                &[&f64::from(days)],
            )
            .await?;
        Ok(n)
    }

    async fn prune(
        &self,
        policy: &Retention,
        state: &mut PruneState,
        limit: usize,
        dry_run: bool,
    ) -> StoreResult<Pruned> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = chrono::Utc::now();
        let cutoff = |keep: Option<Duration>| {
            keep.map(|d| {
                now.checked_sub_signed(
                    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX),
                )
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
            })
        };
        let n = limit as i64;
        let mut out = Pruned::default();
        let mut next = PruneState::default();
        const KEPT: &str = "NOT EXISTS (SELECT 1 FROM sink_replay r WHERE r.event_seq = e.seq)
             AND NOT EXISTS (SELECT 1 FROM sink_parked p WHERE p.event_seq = e.seq)
             AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_seq = e.seq)";
        if let Some(cut) = cutoff(policy.events) {
            let mut bound = i64::MAX;
            for sink in &policy.sinks {
                let cursor: i64 = tx
                    .query_opt(
                        "SELECT seq FROM sink_cursors WHERE sink = $1",
                        &[&text(sink)],
                    )
                    .await?
                    .map_or(0, |r| r.get(0));
                bound = bound.min(cursor);
                let owed = tx
                    .query_opt(
                        "SELECT received_at FROM events WHERE seq > $1 ORDER BY seq LIMIT 1",
                        &[&cursor],
                    )
                    .await?;
                if let Some(at) = owed.map(|r| r.get::<_, chrono::DateTime<chrono::Utc>>(0))
                    && at < cut
                {
                    out.held_by.push((sink.clone(), at));
                }
            }
            out.events = if dry_run {
                let sql = format!(
                    "SELECT count(*) FROM events e WHERE received_at < $1 AND seq <= $2 AND {KEPT}"
                );
                tx.query_one(&sql, &[&cut, &bound]).await?.get::<_, i64>(0) as u64
            } else {
                let sql = format!(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events e
                         WHERE received_at < $1 AND seq <= $2 AND {KEPT} ORDER BY received_at LIMIT $3)"
                );
                tx.execute(&sql, &[&cut, &bound, &n]).await?
            };
        }
        if let Some(cut) = cutoff(policy.messages) {
            if dry_run {
                out.messages = tx
                    .query_one(
                        "SELECT count(*) FROM messages WHERE touched_at < $1",
                        &[&cut],
                    )
                    .await?
                    .get::<_, i64>(0) as u64;
                out.batches = tx
                    .query_one(
                        "SELECT count(*) FROM batches WHERE touched_at < $1",
                        &[&cut],
                    )
                    .await?
                    .get::<_, i64>(0) as u64;
            } else {
                // A sweep by key, `limit` rows a call: no index on last_event_at to keep
                // up on every event.
                for (table, key, extra, after, gone) in [
                    (
                        "messages",
                        "message_id",
                        None,
                        &state.messages_after,
                        &mut out.messages,
                    ),
                    (
                        "batches",
                        "uid",
                        Some("batch_errors"),
                        &state.batches_after,
                        &mut out.batches,
                    ),
                ] {
                    let rows = tx
                        .query(
                            &format!(
                                "SELECT {key}, touched_at < $2 FROM {table} WHERE {key} > $1 ORDER BY {key} LIMIT $3"
                            ),
                            &[&after.as_deref().unwrap_or(""), &cut, &n],
                        )
                        .await?;
                    let expired: Vec<String> = rows
                        .iter()
                        .filter(|r| r.get::<_, bool>(1))
                        .map(|r| r.get(0))
                        .collect();
                    if !expired.is_empty() {
                        *gone = tx
                            .execute(
                                &format!("DELETE FROM {table} WHERE {key} = ANY($1)"),
                                &[&expired],
                            )
                            .await?;
                        if let Some(extra) = extra {
                            tx.execute(
                                &format!("DELETE FROM {extra} WHERE {key} = ANY($1)"),
                                &[&expired],
                            )
                            .await?;
                        }
                    }
                    let position = (rows.len() == limit)
                        .then(|| rows.last().map(|r| r.get::<_, String>(0)))
                        .flatten();
                    if table == "messages" {
                        next.messages_after = position;
                    } else {
                        next.batches_after = position;
                    }
                }
            }
        }
        if let Some(cut) = cutoff(policy.dead_letters) {
            out.dead_letters = if dry_run {
                tx.query_one(
                    "SELECT count(*) FROM dead_letters WHERE created_at < $1",
                    &[&cut],
                )
                .await?
                .get::<_, i64>(0) as u64
            } else {
                tx.execute(
                    "DELETE FROM dead_letters WHERE id IN
                         (SELECT id FROM dead_letters WHERE created_at < $1 ORDER BY id LIMIT $2)",
                    &[&cut, &n],
                )
                .await?
            };
        }
        tx.commit().await?;
        out.done = dry_run
            || (out.events < limit as u64
                && out.dead_letters < limit as u64
                && next.messages_after.is_none()
                && next.batches_after.is_none());
        *state = next;
        Ok(out)
    }

    /// The database's size; rows as PostgreSQL's planner estimates them (counting would
    /// read whole tables); free space is the database server's business.
    async fn stats(&self) -> StoreResult<StoreStats> {
        let client = self.client().await?;
        let size: i64 = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await?
            .get(0);
        let mut rows = Vec::new();
        for table in ["events", "messages", "batches", "dead_letters", "dedup"] {
            let estimate: f32 = client
                .query_one(
                    "SELECT GREATEST(reltuples, 0)::real FROM pg_class WHERE oid = $1::text::regclass",
                    &[&table],
                )
                .await?
                .get(0);
            rows.push((table, estimate as i64));
        }
        let oldest = client
            .query_one("SELECT min(received_at) FROM events", &[])
            .await?
            .get(0);
        Ok(StoreStats {
            size_bytes: size as u64,
            free_bytes: None,
            total_bytes: None,
            rows,
            oldest_event_at: oldest,
        })
    }

    /// Due when no replica ran it in the last nine tenths of `every` (so that replicas
    /// whose timers drift a little still run it about once per `every`).
    async fn due(&self, job: &str, every: Duration) -> StoreResult<bool> {
        let row = self
            .client()
            .await?
            .query_opt(
                "INSERT INTO jobs AS j (name, last_run) VALUES ($1, now())
                 ON CONFLICT (name) DO UPDATE SET last_run = now()
                 WHERE j.last_run <= now() - $2 * interval '1 second'
                 RETURNING 1",
                &[&job, &(every.as_secs_f64() * 0.9)],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn close(&self) {
        let (done, stopped) = oneshot::channel();
        if self.ingest.send(Queued::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
        for task in self.tasks.lock().expect("tasks lock").drain(..) {
            task.abort();
        }
    }
}
