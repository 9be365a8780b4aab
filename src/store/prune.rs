//! The retention, written once: what a pruning step may remove and how far each sink's
//! position holds it back. A step reads first (positions, the next keys of each sweep),
//! then removes in one transaction of at most `limit` rows a table. What it removes is
//! checked again in that transaction (an event still needed by a sink, a message touched
//! meanwhile), and positions only move forward, so reading first is safe.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::sql::{self, Query, Sql, Statement, Value, int};
use super::{PruneState, Pruned, Pruning, Retention, SinkLedger, StoreResult};

/// Events a sink may still need: queued for replay, set aside, or behind a dead letter;
/// and the newest event, always: SQLite numbers the next event after the highest seq
/// left, so removing it would hand its seq out again, behind every sink's position.
const KEPT: &str = "seq < (SELECT max(seq) FROM events)
     AND seq NOT IN (SELECT event_seq FROM sink_replay)
     AND seq NOT IN (SELECT event_seq FROM sink_parked)
     AND seq NOT IN (SELECT event_seq FROM dead_letters WHERE event_seq IS NOT NULL)";

/// The cut-off time of a retention (`None`: kept forever).
fn cutoff(now: DateTime<Utc>, keep: Option<std::time::Duration>) -> Option<DateTime<Utc>> {
    keep.map(|d| {
        let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        now.checked_sub_signed(d)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    })
}

/// A table swept by key, `limit` rows a step: no index on a time to keep up on every
/// event.
struct Sweep {
    table: &'static str,
    key: &'static str,
    /// Tables whose rows go with the swept one's.
    with: &'static [&'static str],
    /// Where the rows it removes are counted.
    count: Counter,
}

type Counter = fn(&mut Pruned) -> &mut u64;

const MESSAGES: Sweep = Sweep {
    table: "messages",
    key: "message_id",
    // A send goes with its message: left behind, it would count as never reported on.
    with: &["sends"],
    count: |p| &mut p.messages,
};
const BATCHES: Sweep = Sweep {
    table: "batches",
    key: "uid",
    with: &["batch_errors", "batch_hours", "batch_categories"],
    count: |p| &mut p.batches,
};

/// A table whose rows go by a time of their own.
struct Aged {
    table: &'static str,
    key: &'static str,
    time: &'static str,
    /// What else a row `o` must be to go (`""`: nothing).
    and: &'static str,
    count: Counter,
}

/// Customers' inbound messages, as long as the messages they may answer.
const INBOUND: Aged = Aged {
    table: "inbound",
    key: "seq",
    time: "received_at",
    and: "",
    count: |p| &mut p.inbound,
};
/// What templates' events said, as long as messages; but never what a template's
/// status, quality or category is now (its latest event of that kind), so that a paused
/// template stays paused on the dashboard however long ago it was paused.
const TEMPLATE_EVENTS: Aged = Aged {
    table: "template_events",
    key: "seq",
    time: "received_at",
    and: " AND EXISTS (SELECT 1 FROM template_events n
             WHERE n.template_id = o.template_id AND n.kind = o.kind
             AND (n.event_time > o.event_time OR (n.event_time = o.event_time AND n.seq > o.seq)))",
    count: |p| &mut p.templates,
};
/// The send list, as long as the messages it is compared with, by the store's clock (as
/// messages go by when they were last stored): a list of old sends imported today stays.
const SENDS: Aged = Aged {
    table: "sends",
    key: "message_id",
    time: "imported_at",
    and: "",
    count: |p| &mut p.sends,
};
const DEAD_LETTERS: Aged = Aged {
    table: "dead_letters",
    key: "id",
    time: "created_at",
    and: "",
    count: |p| &mut p.dead_letters,
};

async fn count<B: Sql + ?Sized>(
    b: &B,
    sql: String,
    params: Vec<Value<'static>>,
) -> StoreResult<u64> {
    let n = sql::one(b, Query::new(sql, params, |r| r.req_int(0))).await?;
    Ok(n.unwrap_or(0) as u64)
}

#[async_trait]
impl<B: Sql> Pruning for B {
    async fn prune(
        &self,
        policy: &Retention,
        state: &mut PruneState,
        limit: usize,
        dry_run: bool,
    ) -> StoreResult<Pruned> {
        step(self, policy, state, limit, dry_run).await
    }
}

/// One pruning step; see [`Pruning::prune`].
async fn step<B: Sql>(
    b: &B,
    policy: &Retention,
    state: &mut PruneState,
    limit: usize,
    dry_run: bool,
) -> StoreResult<Pruned> {
    let now = Utc::now();
    let mut out = Pruned::default();
    let mut next = PruneState::default();
    let mut removals = Vec::new();
    // Where each result of the transaction is counted (`None`: not at all).
    let mut counted: Vec<Option<Counter>> = Vec::new();
    if let Some(cut) = cutoff(now, policy.events) {
        let before_cut = b.first_seq_at_or_after(cut).await? - 1;
        let mut bound = before_cut;
        for sink in &policy.sinks {
            let cursor = b.sink_cursor(sink).await?.unwrap_or(0);
            bound = bound.min(cursor);
            if cursor < before_cut {
                let owed = b
                    .rows(Query::new(
                        "SELECT received_at FROM events WHERE seq > $1 ORDER BY seq LIMIT 1",
                        vec![cursor.into()],
                        |r| r.req_time(0),
                    ))
                    .await?;
                out.held_by
                    .extend(owed.into_iter().map(|at| (sink.clone(), at)));
            }
        }
        // received_at too: on a database shared by replicas it rises with seq only as
        // closely as their clocks agree.
        let which = format!("seq <= $1 AND received_at < $2 AND {KEPT}");
        if dry_run {
            let sql = format!("SELECT count(*) FROM events WHERE {which}");
            out.events = count(b, sql, vec![bound.into(), cut.into()]).await?;
        } else {
            removals.push(Statement::new(
                format!(
                    "DELETE FROM events WHERE seq IN
                         (SELECT seq FROM events WHERE {which} ORDER BY seq LIMIT $3)"
                ),
                vec![bound.into(), cut.into(), int(limit)],
            ));
            counted.push(Some(|p| &mut p.events));
        }
    }
    if let Some(cut) = cutoff(now, policy.messages) {
        for (sweep, after, position) in [
            (&MESSAGES, &state.messages_after, &mut next.messages_after),
            (&BATCHES, &state.batches_after, &mut next.batches_after),
        ] {
            let (table, key) = (sweep.table, sweep.key);
            if dry_run {
                let sql = format!("SELECT count(*) FROM {table} WHERE touched_at < $1");
                *(sweep.count)(&mut out) = count(b, sql, vec![cut.into()]).await?;
                continue;
            }
            let rows = b
                .rows(Query::new(
                    format!(
                        "SELECT {key}, touched_at < $2 FROM {table} WHERE {key} > $1
                         ORDER BY {key} LIMIT $3"
                    ),
                    vec![
                        after.clone().unwrap_or_default().into(),
                        cut.into(),
                        int(limit),
                    ],
                    |r| Ok((r.string(0)?, r.req_flag(1)?)),
                ))
                .await?;
            *position = (rows.len() == limit)
                .then(|| rows.last().map(|(k, _)| k.clone()))
                .flatten();
            let expired: Vec<Value<'static>> = rows
                .into_iter()
                .filter(|(_, expired)| *expired)
                .map(|(k, _)| k.into())
                .collect();
            if expired.is_empty() {
                continue;
            }
            let list = sql::placeholders(2, expired.len());
            let mut params = vec![cut.into()];
            params.extend(expired.iter().cloned());
            removals.push(Statement::new(
                format!("DELETE FROM {table} WHERE touched_at < $1 AND {key} IN ({list})"),
                params,
            ));
            counted.push(Some(sweep.count));
            for with in sweep.with {
                // Those of the batches that went: not touched since the read.
                removals.push(Statement::new(
                    format!(
                        "DELETE FROM {with} WHERE {key} IN ({})
                         AND {key} NOT IN (SELECT {key} FROM {table})",
                        sql::placeholders(1, expired.len())
                    ),
                    expired.clone(),
                ));
                counted.push(None);
            }
        }
    }
    // Tables whose rows go by a time of their own, the oldest first.
    for (aged, keep) in [
        (&INBOUND, policy.messages),
        (&TEMPLATE_EVENTS, policy.messages),
        (&SENDS, policy.messages),
        (&DEAD_LETTERS, policy.dead_letters),
    ] {
        let Some(cut) = cutoff(now, keep) else {
            continue;
        };
        let (table, key, time, and) = (aged.table, aged.key, aged.time, aged.and);
        if dry_run {
            let sql = format!("SELECT count(*) FROM {table} o WHERE o.{time} < $1{and}");
            *(aged.count)(&mut out) = count(b, sql, vec![cut.into()]).await?;
        } else {
            removals.push(Statement::new(
                format!(
                    "DELETE FROM {table} WHERE {key} IN
                         (SELECT o.{key} FROM {table} o WHERE o.{time} < $1{and}
                          ORDER BY o.{key} LIMIT $2)"
                ),
                vec![cut.into(), int(limit)],
            ));
            counted.push(Some(aged.count));
        }
    }
    if !removals.is_empty() {
        let done = b.transaction(removals).await?;
        for (n, counter) in done.into_iter().zip(counted) {
            if let Some(counter) = counter {
                *counter(&mut out) += n as u64;
            }
        }
    }
    out.done = dry_run
        || (out.events < limit as u64
            && out.inbound < limit as u64
            && out.templates < limit as u64
            && out.sends < limit as u64
            && out.dead_letters < limit as u64
            && next.messages_after.is_none()
            && next.batches_after.is_none());
    *state = next;
    Ok(out)
}
