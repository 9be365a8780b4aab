//! The send list and the campaign figures built on it, written once for every backend:
//! the table, the import, and the queries ([`Campaigns`]).
//!
//! A send and its message's status reports are kept apart and meet by message id at
//! read time, so they may come in any order and neither waits for the other: a batch's
//! `noStatus` is its sends with no message row, whatever arrived first.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::sql::{self, Query, Sql, Statement, Value, int, one};
use super::{Campaigns, SendFigures, StoreResult};
use crate::campaign::sends::{Imported, Sent};
use crate::campaign::slot_of;

/// The send list's table, the same text for both databases: `timestamptz` is
/// PostgreSQL's time, and to SQLite a name with numeric affinity, which keeps the
/// RFC 3339 text it is given as text (it does not read as a number).
pub const SENDS_TABLE: &str = "
CREATE TABLE sends (
    message_id  text PRIMARY KEY,                  -- InnoPaaS's message id (body.id)
    phone       text NOT NULL,
    uid         text,
    sent_at     timestamptz NOT NULL,
    slot        bigint NOT NULL,                   -- quarter-hours since the epoch of sent_at
    template    text,
    imported_at timestamptz NOT NULL
);
CREATE INDEX sends_uid ON sends (uid, message_id);
CREATE INDEX sends_slot ON sends (slot);
";

/// Rows per insert statement and transaction: small, so that an import never holds a
/// writer for long (on SQLite each joins one of the webhook's group commits; 100 rows add
/// well under a millisecond to it).
pub const CHUNK: usize = 100;

const SEND_COLUMNS: &str = "s.message_id, s.phone, s.uid, s.sent_at, s.template";

fn send_row(r: &dyn sql::Row) -> StoreResult<Sent> {
    Ok(Sent {
        id: r.string(0)?,
        phone: r.string(1)?,
        uid: r.text(2)?.map(str::to_owned),
        sent_at: r.req_time(3)?,
        template: r.text(4)?.map(str::to_owned),
    })
}

#[async_trait]
impl<B: Sql> Campaigns for B {
    async fn import_sends(&self, sends: &[Sent], done: &mut Imported) -> StoreResult<()> {
        let now = Utc::now();
        for chunk in sends.chunks(CHUNK) {
            let mut params: Vec<Value<'static>> = Vec::with_capacity(chunk.len() * 7);
            let mut rows = Vec::with_capacity(chunk.len());
            for s in chunk {
                let at = params.len();
                rows.push(format!("({})", sql::placeholders(at + 1, 7)));
                params.extend([
                    s.id.clone().into(),
                    s.phone.clone().into(),
                    s.uid.clone().into(),
                    s.sent_at.into(),
                    slot_of(&s.sent_at).into(),
                    s.template.clone().into(),
                    now.into(),
                ]);
            }
            let statement = Statement::new(
                format!(
                    "INSERT INTO sends (message_id, phone, uid, sent_at, slot, template, imported_at)
                     VALUES {} ON CONFLICT (message_id) DO NOTHING",
                    rows.join(", ")
                ),
                params,
            );
            let new = self.transaction(vec![statement]).await?[0] as usize;
            done.rows += chunk.len();
            done.new += new;
            done.known += chunk.len() - new;
        }
        Ok(())
    }

    async fn send_figures(&self, uid: &str, cutoff: DateTime<Utc>) -> StoreResult<SendFigures> {
        let figures = one(
            self,
            Query::new(
                "SELECT count(*),
                     COALESCE(sum(CASE WHEN m.message_id IS NULL THEN 1 ELSE 0 END), 0),
                     COALESCE(sum(CASE WHEN m.uid = $1 THEN 1 ELSE 0 END), 0),
                     COALESCE(sum(CASE WHEN m.message_id IS NULL AND s.sent_at < $2
                                  THEN 1 ELSE 0 END), 0),
                     min(s.sent_at), max(s.sent_at)
                 FROM sends s LEFT JOIN messages m ON m.message_id = s.message_id
                 WHERE s.uid = $1",
                vec![uid.to_owned().into(), cutoff.into()],
                |r| {
                    Ok(SendFigures {
                        listed: r.req_int(0)?,
                        no_status: r.req_int(1)?,
                        reported_here: r.req_int(2)?,
                        unconfirmed: r.req_int(3)?,
                        first_sent_at: r.time(4)?,
                        last_sent_at: r.time(5)?,
                    })
                },
            ),
        )
        .await?;
        Ok(figures.unwrap_or_default())
    }

    async fn unconfirmed_sends(
        &self,
        uid: &str,
        cutoff: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Sent>> {
        let sql = format!(
            "SELECT {SEND_COLUMNS} FROM sends s
             WHERE s.uid = $1 AND s.message_id > $2 AND s.sent_at < $3
                 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.message_id = s.message_id)
             ORDER BY s.message_id LIMIT $4"
        );
        let params = vec![
            uid.to_owned().into(),
            after.unwrap_or("").to_owned().into(),
            cutoff.into(),
            int(limit),
        ];
        self.rows(Query::new(sql, params, send_row)).await
    }

    async fn batch_categories(&self, uid: &str) -> StoreResult<Vec<(String, String, i64)>> {
        self.rows(Query::new(
            "SELECT category, prefix, messages FROM batch_categories
             WHERE uid = $1 AND messages > 0 ORDER BY category, prefix",
            vec![uid.to_owned().into()],
            |r| Ok((r.string(0)?, r.string(1)?, r.req_int(2)?)),
        ))
        .await
    }

    async fn activity(&self, from: i64, to: i64) -> StoreResult<Vec<(i64, String, String, i64)>> {
        self.rows(Query::new(
            "SELECT slot, kind, code, n FROM activity WHERE slot >= $1 AND slot < $2 AND n <> 0",
            vec![from.into(), to.into()],
            |r| Ok((r.req_int(0)?, r.string(1)?, r.string(2)?, r.req_int(3)?)),
        ))
        .await
    }

    async fn sends_per_slot(&self, from: i64, to: i64) -> StoreResult<Vec<(i64, i64)>> {
        self.rows(Query::new(
            "SELECT slot, count(*) FROM sends WHERE slot >= $1 AND slot < $2 GROUP BY slot",
            vec![from.into(), to.into()],
            |r| Ok((r.req_int(0)?, r.req_int(1)?)),
        ))
        .await
    }

    async fn replies_sent_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>> {
        self.rows(Query::new(
            "SELECT sent_at FROM inbound
             WHERE reply_to IS NOT NULL AND sent_at >= $1 AND sent_at < $2",
            vec![from.into(), to.into()],
            |r| r.req_time(0),
        ))
        .await
    }

    async fn send(&self, id: &str) -> StoreResult<Option<Sent>> {
        let sql = format!("SELECT {SEND_COLUMNS} FROM sends s WHERE s.message_id = $1");
        one(self, Query::new(sql, vec![id.to_owned().into()], send_row)).await
    }
}
