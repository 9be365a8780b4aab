//! Every query of the contract, written once: SQL both databases read, and the rows read
//! back by [`super::sql`]. A backend that runs [`Sql`] has them all.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::sql::{self, Query, Sql, Value, int, one};
use super::{
    BatchHour, BatchQuery, Counted, DeadLetter, DeadLetterEntry, DeadLetterQuery, EventQuery,
    HourCount, Inbound, InboundQuery, Queries, SinkState, StoreError, StoreResult, StoredEvent,
    TIMELINE_HOURS, Template, TemplateEvent,
};
use crate::event::Status;
use crate::event::tracking::{Batch, Message, hour_of, hour_start};

/// Messages by one indexed column, at most [`super::MESSAGES_READ`], by message id.
fn messages_where(column: &'static str, value: &str) -> Query<Message> {
    let sql = format!(
        "SELECT {} FROM messages WHERE {column} = $1 ORDER BY message_id LIMIT {}",
        sql::MESSAGE_COLUMNS,
        super::MESSAGES_READ
    );
    Query::new(sql, vec![value.to_owned().into()], sql::message)
}

/// A batch's messages after message id `after`, by message id: the columns `columns`
/// read by `map`.
fn batch_page<T>(
    columns: &str,
    uid: &str,
    after: Option<&str>,
    limit: usize,
    map: fn(&dyn sql::Row) -> StoreResult<T>,
) -> Query<T> {
    let sql = format!(
        "SELECT {columns} FROM messages WHERE uid = $1 AND message_id > $2
         ORDER BY message_id LIMIT $3"
    );
    let params = vec![
        uid.to_owned().into(),
        after.unwrap_or("").to_owned().into(),
        int(limit),
    ];
    Query::new(sql, params, map)
}

/// The events with these seqs, by seq.
pub(crate) async fn events_by_seq<B: Sql + ?Sized>(
    b: &B,
    seqs: &[i64],
) -> StoreResult<std::collections::HashMap<i64, StoredEvent>> {
    if seqs.is_empty() {
        return Ok(Default::default());
    }
    let sql = format!(
        "SELECT {} FROM events WHERE seq IN ({})",
        sql::EVENT_COLUMNS,
        sql::placeholders(1, seqs.len())
    );
    let params = seqs.iter().map(|&s| Value::Int(s)).collect();
    let events = b.rows(Query::new(sql, params, sql::event)).await?;
    Ok(events.into_iter().map(|e| (e.seq, e)).collect())
}

/// A time earlier than any stored (a sender's zero time, 0001-01-01, included), in four
/// digits as the stores compare their times.
pub(crate) fn start_of_time() -> DateTime<Utc> {
    DateTime::from_timestamp(-62_135_596_800, 0).expect("0001-01-01 is a time")
}

/// A time later than any stored: the start of a page that starts at the newest.
pub(crate) fn end_of_time() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).expect("9999-12-31 is a time")
}

#[async_trait]
impl<B: Sql> Queries for B {
    async fn message(&self, id: &str) -> StoreResult<Option<Message>> {
        let sql = format!(
            "SELECT {} FROM messages WHERE message_id = $1",
            sql::MESSAGE_COLUMNS
        );
        one(
            self,
            Query::new(sql, vec![id.to_owned().into()], sql::message),
        )
        .await
    }

    async fn messages_by_wamid(&self, wamid: &str) -> StoreResult<Vec<Message>> {
        self.rows(messages_where("wamid", wamid)).await
    }

    async fn batch(&self, uid: &str) -> StoreResult<Option<Batch>> {
        let sql = format!("SELECT {} FROM batches WHERE uid = $1", sql::BATCH_COLUMNS);
        let Some(mut batch) = one(
            self,
            Query::new(sql, vec![uid.to_owned().into()], sql::batch),
        )
        .await?
        else {
            return Ok(None);
        };
        batch.failures = self
            .rows(Query::new(
                "SELECT error_code, error_message, messages FROM batch_errors
                 WHERE uid = $1 ORDER BY messages DESC, error_code",
                vec![uid.to_owned().into()],
                sql::failure_group,
            ))
            .await?;
        Ok(Some(batch))
    }

    async fn batch_messages(
        &self,
        uid: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        self.rows(batch_page(
            sql::MESSAGE_COLUMNS,
            uid,
            after,
            limit,
            sql::message,
        ))
        .await
    }

    /// With a time, from the first seq received then (received_at rises with seq), and
    /// only what was received since.
    async fn events(&self, q: &EventQuery) -> StoreResult<Vec<StoredEvent>> {
        let mut after = q.after;
        let mut sql = format!("SELECT {} FROM events WHERE seq > $1", sql::EVENT_COLUMNS);
        let mut params = Vec::new();
        if let Some(status) = &q.status {
            params.push(status.clone().into());
            sql.push_str(&format!(" AND status = ${}", params.len() + 1));
        }
        if let Some(since) = q.since {
            after = after.max(self.first_seq_at_or_after(since).await? - 1);
            params.push(since.into());
            sql.push_str(&format!(" AND received_at >= ${}", params.len() + 1));
        }
        params.insert(0, after.into());
        params.push(int(q.limit));
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", params.len()));
        self.rows(Query::new(sql, params, sql::event)).await
    }

    async fn count_events(&self) -> StoreResult<i64> {
        let counted = one(
            self,
            Query::new("SELECT count(*) FROM events", vec![], |r| r.req_int(0)),
        )
        .await?;
        Ok(counted.unwrap_or(0))
    }

    async fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>> {
        let sql = format!(
            "SELECT {} FROM {} ORDER BY d.id",
            sql::DEAD_LETTER_COLUMNS,
            sql::DEAD_LETTERS_WITH_EVENTS
        );
        self.rows(Query::new(sql, vec![], sql::dead_letter)).await
    }

    async fn event_counts(&self, since: DateTime<Utc>) -> StoreResult<Vec<HourCount>> {
        self.rows(Query::new(
            "SELECT hour, outcome, status, events FROM event_counts
             WHERE hour >= $1 ORDER BY hour, outcome, status",
            vec![hour_of(&since).into()],
            |r| {
                let outcome = r.req_str(1)?;
                Ok(HourCount {
                    hour: hour_start(r.req_int(0)?),
                    outcome: Counted::parse(outcome).ok_or_else(|| {
                        StoreError::Backend(format!("not an outcome: {outcome:?}"))
                    })?,
                    status: r.text(2)?.filter(|s| !s.is_empty()).map(Status::parse),
                    events: r.req_int(3)?,
                })
            },
        ))
        .await
    }

    async fn recent_batches(&self, q: &BatchQuery) -> StoreResult<Vec<Batch>> {
        let (at, uid) = match &q.before {
            Some((at, uid)) => (*at, uid.clone()),
            None => (end_of_time(), String::new()),
        };
        let sql = format!(
            "SELECT {} FROM batches
             WHERE substr(uid, 1, length(CAST($1 AS text))) = $1
                 AND (last_event_at, uid) < ($2, CAST($3 AS text))
                 AND last_event_at >= $5 AND first_event_at < $6
             ORDER BY last_event_at DESC, uid DESC LIMIT $4",
            sql::BATCH_COLUMNS
        );
        let prefix = q.uid_prefix.clone().unwrap_or_default();
        let (from, to) = q.active.unwrap_or((start_of_time(), end_of_time()));
        let params = vec![
            prefix.into(),
            at.into(),
            uid.into(),
            int(q.limit),
            from.into(),
            to.into(),
        ];
        self.rows(Query::new(sql, params, sql::batch)).await
    }

    async fn batch_timeline(&self, uid: &str) -> StoreResult<Vec<BatchHour>> {
        self.rows(Query::new(
            "SELECT hour, delivered, read, failed, other FROM (
                 SELECT * FROM batch_hours WHERE uid = $1 ORDER BY hour DESC LIMIT $2
             ) AS latest ORDER BY hour",
            vec![uid.to_owned().into(), TIMELINE_HOURS.into()],
            |r| {
                Ok(BatchHour {
                    hour: hour_start(r.req_int(0)?),
                    events: [r.req_int(1)?, r.req_int(2)?, r.req_int(3)?, r.req_int(4)?],
                })
            },
        ))
        .await
    }

    async fn batch_message_statuses(
        &self,
        uid: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Status)>> {
        self.rows(batch_page("message_id, status", uid, after, limit, |r| {
            Ok((r.string(0)?, Status::parse(r.req_str(1)?)))
        }))
        .await
    }

    async fn messages_by_phone(&self, phone: &str) -> StoreResult<Vec<Message>> {
        self.rows(messages_where("send_phone", phone)).await
    }

    async fn dead_letter_page(&self, q: &DeadLetterQuery) -> StoreResult<Vec<DeadLetterEntry>> {
        let sql = format!(
            "SELECT {}, EXISTS (SELECT 1 FROM sink_replay r
                 WHERE r.sink = d.sink AND r.event_seq = d.event_seq)
             FROM {} WHERE d.source = $1 AND d.id < $2 ORDER BY d.id DESC LIMIT $3",
            sql::DEAD_LETTER_COLUMNS,
            sql::DEAD_LETTERS_WITH_EVENTS
        );
        let params = vec![
            q.source.as_str().into(),
            q.before.unwrap_or(i64::MAX).into(),
            int(q.limit),
        ];
        let letters = self
            .rows(Query::new(sql, params, |r| {
                Ok((sql::dead_letter(r)?, r.req_flag(16)?))
            }))
            .await?;
        let seqs: Vec<i64> = letters.iter().filter_map(|(l, _)| l.event_seq).collect();
        let events = events_by_seq(self, &seqs).await?;
        Ok(letters
            .into_iter()
            .map(|(letter, queued)| DeadLetterEntry {
                event: letter.event_seq.and_then(|seq| events.get(&seq).cloned()),
                queued,
                letter,
            })
            .collect())
    }

    async fn sink_states(&self) -> StoreResult<Vec<SinkState>> {
        self.rows(Query::new(sql::SINK_STATES, vec![], sql::sink_state))
            .await
    }

    async fn inbound(&self, id: &str) -> StoreResult<Option<Inbound>> {
        for column in ["wamid", "message_id"] {
            let sql = format!(
                "SELECT {} FROM inbound i WHERE i.{column} = $1 ORDER BY i.seq DESC LIMIT 1",
                sql::INBOUND_COLUMNS
            );
            let found = one(
                self,
                Query::new(sql, vec![id.to_owned().into()], sql::inbound),
            );
            if let Some(found) = found.await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    async fn inbound_page(&self, q: &InboundQuery) -> StoreResult<Vec<Inbound>> {
        let mut params = vec![q.before.unwrap_or(i64::MAX).into()];
        let mut sql = format!(
            "SELECT {} FROM inbound i WHERE i.seq < $1",
            sql::INBOUND_COLUMNS
        );
        let mut and = |condition: &str, value: Value<'static>| {
            params.push(value);
            sql.push_str(&format!(" AND {condition}${}", params.len()));
        };
        if let Some(from) = &q.from {
            and("i.from_phone = ", from.clone().into());
        }
        if let Some(since) = q.since {
            and("i.sent_at >= ", since.into());
        }
        if let Some(uid) = &q.uid {
            and(
                "i.reply_to IN (SELECT wamid FROM messages WHERE uid = ",
                uid.clone().into(),
            );
            sql.push(')');
        }
        params.push(int(q.limit));
        sql.push_str(&format!(" ORDER BY i.seq DESC LIMIT ${}", params.len()));
        self.rows(Query::new(sql, params, sql::inbound)).await
    }

    async fn replies(&self, wamid: &str) -> StoreResult<Vec<Inbound>> {
        let sql = format!(
            "SELECT {} FROM inbound i WHERE i.reply_to = $1 ORDER BY i.sent_at, i.seq LIMIT 100",
            sql::INBOUND_COLUMNS
        );
        self.rows(Query::new(sql, vec![wamid.to_owned().into()], sql::inbound))
            .await
    }

    async fn replied(&self, uid: &str) -> StoreResult<i64> {
        let counted = one(
            self,
            Query::new(
                "SELECT count(*) FROM messages m WHERE m.uid = $1
                 AND EXISTS (SELECT 1 FROM inbound i WHERE i.reply_to = m.wamid)",
                vec![uid.to_owned().into()],
                |r| r.req_int(0),
            ),
        )
        .await?;
        Ok(counted.unwrap_or(0))
    }

    async fn templates(&self) -> StoreResult<Vec<Template>> {
        let sql = format!(
            "SELECT {} FROM template_events t ORDER BY t.event_time, t.seq",
            sql::TEMPLATE_EVENT_COLUMNS
        );
        let events = self
            .rows(Query::new(sql, vec![], sql::template_event))
            .await?;
        let mut all = Template::fold(events);
        all.sort_by(|a, b| {
            (b.alarming, b.updated_at, &a.id).cmp(&(a.alarming, a.updated_at, &b.id))
        });
        Ok(all)
    }

    async fn template(&self, id: &str) -> StoreResult<Option<(Template, Vec<TemplateEvent>)>> {
        let sql = format!(
            "SELECT {} FROM template_events t WHERE t.template_id = $1
             ORDER BY t.event_time, t.seq",
            sql::TEMPLATE_EVENT_COLUMNS
        );
        let mut events = self
            .rows(Query::new(
                sql,
                vec![id.to_owned().into()],
                sql::template_event,
            ))
            .await?;
        let Some(template) = Template::fold(events.iter().cloned()).pop() else {
            return Ok(None);
        };
        events.reverse();
        Ok(Some((template, events)))
    }
}
