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
mod schema;
mod sql;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, watch};

use self::connect::describe;
use self::ingest::{Accept, Queued};
use super::StoreConfig;
use super::ingest::Incoming;
use super::sql::{Query, Sql, Statement};
use super::{
    Admin, Delivery, Ingest, Outcome, Progress, Role, SinkLease, StoreError, StoreResult,
    StoreStats, StoredEvent,
};
use crate::event::{Accepted, Rejection};

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
impl Sql for PgStore {
    async fn rows<T: Send + 'static>(&self, query: Query<T>) -> StoreResult<Vec<T>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&query.sql).await?;
        let rows = client
            .query(&statement, &sql::params(&query.params))
            .await?;
        rows.iter().map(|r| (query.map)(r)).collect()
    }

    async fn transaction(&self, statements: Vec<Statement>) -> StoreResult<Vec<i64>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let done = sql::execute(&tx, &statements).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// By the index on received_at.
    async fn first_seq_at_or_after(&self, at: DateTime<Utc>) -> StoreResult<i64> {
        let first = super::sql::one(
            self,
            Query::new(
                "SELECT coalesce(
                     (SELECT min(seq) FROM events WHERE received_at >= $1),
                     (SELECT coalesce(max(seq), 0) + 1 FROM events))",
                vec![at.into()],
                |r| r.req_int(0),
            ),
        )
        .await?;
        Ok(first.unwrap_or(1))
    }
}

#[async_trait]
impl Delivery for PgStore {
    fn head(&self) -> watch::Receiver<i64> {
        self.head.clone()
    }

    async fn events_after(&self, after: i64, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        self.rows(super::ledger::events_after(after, limit)).await
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
            // database's expiry, and a tenth of the lease short of it: a request the
            // holder sent just before it stopped has that long to land before another
            // replica can claim the sink.
            valid_until: sent + self.lease - self.lease / 10,
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
        let held = tx
            .query_opt(
                "SELECT 1 FROM leases WHERE name = $1 AND epoch = $2 AND holder = $3 FOR UPDATE",
                &[&Self::lease_name(&lease.sink), &lease.token, &self.holder],
            )
            .await?;
        if held.is_none() {
            return Err(StoreError::LeaseLost(lease.sink.clone()));
        }
        sql::execute(&tx, &super::ledger::progress(&lease.sink, progress)).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Ingest for PgStore {
    async fn accept(&self, accepted: &Accepted, body: Bytes) -> StoreResult<Outcome> {
        let (reply, answer) = oneshot::channel();
        let accept = Accept {
            event: Incoming::new(accepted, body),
            reply,
        };
        self.ingest
            .send(Queued::Accept(accept))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn dead_letter_rejected(&self, rejection: &Rejection, body: Bytes) -> StoreResult<i64> {
        super::ingest::reject(self, rejection, &body).await
    }
}

#[async_trait]
impl Admin for PgStore {
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

    /// The database's size; rows as PostgreSQL's planner estimates them (counting would
    /// read whole tables); free space is the database server's business.
    async fn stats(&self) -> StoreResult<StoreStats> {
        let client = self.client().await?;
        let size: i64 = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await?
            .get(0);
        let mut rows = Vec::new();
        for table in super::sql::SIZED_TABLES {
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
