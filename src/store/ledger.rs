//! The sink ledger, written once: positions, set-aside events, replays and failures, and
//! what recording a sink's progress writes. A backend runs these and adds what is its
//! own ([`super::Delivery`]: leases, a window of recent events).

use async_trait::async_trait;
use chrono::Utc;

use super::sql::{self, Query, Sql, Statement, Value, int, one};
use super::{ParkedEvent, Progress, SinkLedger, StoreResult, StoredEvent};

/// Up to `limit` events with seq greater than `after`, in seq order.
pub(crate) fn events_after(after: i64, limit: usize) -> Query<StoredEvent> {
    let sql = format!(
        "SELECT {} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
        sql::EVENT_COLUMNS
    );
    Query::new(sql, vec![after.into(), int(limit)], sql::event)
}

#[async_trait]
impl<B: Sql> SinkLedger for B {
    async fn sink_cursor(&self, sink: &str) -> StoreResult<Option<i64>> {
        one(
            self,
            Query::new(
                "SELECT seq FROM sink_cursors WHERE sink = $1",
                vec![sink.to_owned().into()],
                |r| r.req_int(0),
            ),
        )
        .await
    }

    async fn parked(&self, sink: &str) -> StoreResult<Vec<(ParkedEvent, StoredEvent)>> {
        let sql = format!(
            "SELECT {} FROM sink_parked p JOIN events e ON e.seq = p.event_seq
             WHERE p.sink = $1 ORDER BY p.event_seq",
            sql::PARKED_COLUMNS
        );
        self.rows(Query::new(sql, vec![sink.to_owned().into()], sql::parked))
            .await
    }

    async fn replay_queue(&self, sink: &str, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM sink_replay r JOIN events e ON e.seq = r.event_seq
             WHERE r.sink = $1 ORDER BY r.event_seq LIMIT $2",
            sql::E_EVENT_COLUMNS
        );
        let params = vec![sink.to_owned().into(), int(limit)];
        self.rows(Query::new(sql, params, sql::event)).await
    }

    async fn replay(&self, sink: Option<&str>) -> StoreResult<usize> {
        let sink = Value::from(sink.map(str::to_owned));
        replay_matching(self, "(CAST($1 AS text) IS NULL OR sink = $1)", sink).await
    }

    async fn replay_dead_letter(&self, id: i64) -> StoreResult<bool> {
        Ok(replay_matching(self, "id = $1", id.into()).await? == 1)
    }

    async fn record_sink_error(&self, sink: &str, error: Option<&str>) -> StoreResult<()> {
        let sink = Value::from(sink.to_owned());
        let statement = match error {
            Some(error) => Statement::new(
                "INSERT INTO sink_status AS s (sink, failing_since, last_error, last_error_at)
                 VALUES ($1, $2, $3, $2)
                 ON CONFLICT (sink) DO UPDATE SET
                     failing_since = coalesce(s.failing_since, excluded.failing_since),
                     last_error = excluded.last_error,
                     last_error_at = excluded.last_error_at",
                vec![sink, Utc::now().into(), error.to_owned().into()],
            ),
            None => Statement::new(
                "UPDATE sink_status SET failing_since = NULL WHERE sink = $1",
                vec![sink],
            ),
        };
        self.transaction(vec![statement]).await.map(drop)
    }
}

/// Puts the sink dead letters not replayed yet that `which` (a condition on `$1`, which
/// is `key`) selects back in their sinks' queues, in one transaction; returns how many.
async fn replay_matching<B: Sql + ?Sized>(
    b: &B,
    which: &str,
    key: Value<'static>,
) -> StoreResult<usize> {
    let filter = format!("source = 'sink' AND replayed_at IS NULL AND {which}");
    let done = b
        .transaction(vec![
            Statement::new(
                format!(
                    "INSERT INTO sink_replay (sink, event_seq)
                     SELECT sink, event_seq FROM dead_letters WHERE {filter}
                     ON CONFLICT DO NOTHING"
                ),
                vec![key.clone()],
            ),
            Statement::new(
                format!("UPDATE dead_letters SET replayed_at = $2 WHERE {filter}"),
                vec![key, Utc::now().into()],
            ),
        ])
        .await?;
    Ok(done[1] as usize)
}

/// What recording a sink's progress writes, in order: its dead letters, what left its
/// replay queue and its set-aside events, what it set aside (again), then its cursor.
pub(crate) fn progress(sink: &str, progress: Progress) -> Vec<Statement> {
    let now = Utc::now();
    let sink = || Value::from(sink.to_owned());
    let mut out = Vec::new();
    for d in progress.dead {
        out.push(Statement::new(
            "INSERT INTO dead_letters (created_at, source, sink, event_seq, code, reason, attempts, first_attempt_at)
             VALUES ($1, 'sink', $2, $3, $4, $5, $6, $7)",
            vec![
                now.into(),
                sink(),
                d.seq.into(),
                d.code.as_str().into(),
                d.reason.into(),
                i64::from(d.attempts).into(),
                d.first_attempt_at.into(),
            ],
        ));
    }
    for seq in progress.replayed {
        out.push(Statement::new(
            "DELETE FROM sink_replay WHERE sink = $1 AND event_seq = $2",
            vec![sink(), seq.into()],
        ));
    }
    for seq in progress.unparked {
        out.push(Statement::new(
            "DELETE FROM sink_parked WHERE sink = $1 AND event_seq = $2",
            vec![sink(), seq.into()],
        ));
    }
    for p in progress.parked {
        out.push(Statement::new(
            "INSERT INTO sink_parked AS p (sink, event_seq, message_id, attempts, first_attempt_at, next_attempt_at, last_error)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (sink, event_seq) DO UPDATE SET attempts = excluded.attempts,
                 first_attempt_at = excluded.first_attempt_at,
                 next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error",
            vec![
                sink(),
                p.seq.into(),
                p.message_id.into(),
                i64::from(p.attempts).into(),
                p.first_attempt_at.into(),
                p.next_attempt_at.into(),
                p.last_error.into(),
            ],
        ));
    }
    if let Some(cursor) = progress.cursor {
        out.push(Statement::new(
            "INSERT INTO sink_cursors (sink, seq) VALUES ($1, $2)
             ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq",
            vec![sink(), cursor.into()],
        ));
    }
    out
}
