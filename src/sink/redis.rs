//! The `redis` sink: adds each event to a Redis stream (`XADD`) whose key is made from the
//! event (`innopaas:events` by default), as fields `body` (as sent), `type`, `key` (the
//! event's own key, the forward sink's Idempotency-Key) and `seq`.
//!
//! Redis has no dedup of its own, so the entry id is the event's position: `<seq>-0`. A
//! stream only innohook writes then refuses an event added again (after a restart, or an
//! answer lost with the connection) as an id not above its last one; innohook checks that
//! the entry is there and counts the event delivered. So each event is in the stream
//! once. Events are added in commit order, a batch in one pipeline.
//!
//! Another writer on the same stream breaks this: an entry of its own above `<seq>-0`
//! (an automatic id is a time in milliseconds, far above) makes every later event of
//! innohook's refused. Such an event is a dead letter naming the entry id, never a
//! silent loss; give innohook a stream of its own.

use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError, RedisResult, Value};
use serde::{Deserialize, Serialize};

use super::name::{Fields, fill};
use super::{BoxFuture, Building, Sink, SinkError, expand_env};
use crate::store::StoredEvent;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSinkConfig {
    /// `redis://[user:password@]host:6379[/db]`, or `rediss://` for TLS (the system's
    /// roots); `"${NAME}"` reads the environment.
    pub url: String,
    /// The stream's key for each event: `{type}`, `{status}`, `{message_id}` and `{uid}`
    /// are replaced by the event's, as in the NATS sink's subject.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Trim each stream to about this many entries (`XADD MAXLEN ~`); unset: never.
    #[serde(default)]
    pub maxlen: Option<u64>,
}

fn default_stream() -> String {
    "innopaas:events".into()
}

impl RedisSinkConfig {
    fn client(&self) -> anyhow::Result<redis::Client> {
        let url = expand_env(&self.url)
            .map_err(|var| anyhow::anyhow!("url uses ${{{var}}}, which is not set"))?;
        anyhow::ensure!(
            url.starts_with("redis://") || url.starts_with("rediss://"),
            "url must start with redis:// or rediss://"
        );
        redis::Client::open(url).map_err(|e| anyhow::anyhow!("url is not a Redis URL: {e}"))
    }

    /// Where it delivers, for people: the URL without its password.
    fn place(&self) -> String {
        super::without_password(&self.url)
    }
}

#[async_trait::async_trait]
impl super::SinkSettings for RedisSinkConfig {
    fn check(&self) -> anyhow::Result<()> {
        self.client()?;
        anyhow::ensure!(!self.stream.is_empty(), "stream must name a stream key");
        anyhow::ensure!(self.maxlen != Some(0), "maxlen must be at least 1");
        Ok(())
    }

    fn target(&self) -> anyhow::Result<String> {
        Ok(format!(" -> stream {} at {}", self.stream, self.place()))
    }

    fn probed(&self) -> bool {
        true
    }

    async fn build(&self, with: &Building<'_>) -> anyhow::Result<(Box<dyn Sink>, i64)> {
        super::SinkSettings::check(self)?;
        let place = self.place();
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
            .set_response_timeout(Some(std::time::Duration::from_secs(10)));
        // Refused at start, with a sentence, when Redis is not there.
        let mut connection = self
            .client()?
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to Redis at {place}: {e}"))?;
        let _: () = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(|e| anyhow::anyhow!("Redis at {place}: {e}"))?;
        let sink = RedisSink {
            name: with.name.to_owned(),
            place,
            stream: self.stream.clone(),
            maxlen: self.maxlen,
            connection,
        };
        Ok((Box::new(sink), with.store_cursor))
    }
}

pub struct RedisSink {
    name: String,
    /// The URL without its password.
    place: String,
    stream: String,
    maxlen: Option<u64>,
    /// Reconnects by itself after the connection drops.
    connection: ConnectionManager,
}

/// An event's entry id: its position.
fn entry_id(event: &StoredEvent) -> String {
    format!("{}-0", event.seq)
}

/// Whether Redis refused the entry for an id not above the stream's last.
fn not_above_last(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(redis::ServerErrorKind::ResponseError)
        && e.to_string()
            .contains("equal or smaller than the target stream top item")
}

impl RedisSink {
    async fn add(&self, events: &[StoredEvent]) -> Vec<Result<(), SinkError>> {
        let keys: Vec<String> = events
            .iter()
            .map(|e| fill(&self.stream, &Fields::of(e)))
            .collect();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (event, key) in events.iter().zip(&keys) {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(key);
            if let Some(n) = self.maxlen {
                xadd.arg("MAXLEN").arg("~").arg(n);
            }
            xadd.arg(entry_id(event))
                .arg("body")
                .arg(event.body.as_ref())
                .arg("type")
                .arg(&event.event_type)
                .arg("key")
                .arg(event.delivery_key())
                .arg("seq")
                .arg(event.seq);
            pipe.add_command(xadd);
        }
        let mut connection = self.connection.clone();
        let answers: RedisResult<Vec<RedisResult<Value>>> = pipe.query_async(&mut connection).await;
        let answers = match answers {
            Ok(a) if a.len() == events.len() => a,
            Ok(a) => {
                let message = format!(
                    "Redis at {}: {} answers to {} commands",
                    self.place,
                    a.len(),
                    events.len()
                );
                return events
                    .iter()
                    .map(|_| Err(SinkError::retryable(message.clone())))
                    .collect();
            }
            Err(e) => {
                let message = format!("Redis at {}: {e}", self.place);
                return events
                    .iter()
                    .map(|_| Err(SinkError::retryable(message.clone())))
                    .collect();
            }
        };
        let mut results = Vec::with_capacity(events.len());
        for ((event, key), answer) in events.iter().zip(&keys).zip(answers) {
            results.push(match answer {
                Ok(_) => Ok(()),
                Err(e) if not_above_last(&e) => {
                    self.added_before(&mut connection, key, event).await
                }
                Err(e) => Err(SinkError::retryable(format!(
                    "Redis at {}: {e}",
                    self.place
                ))),
            });
        }
        results
    }

    /// An event refused for its id: delivered when its entry is there (added before);
    /// else another writer's entry is above it, and it can never be added.
    async fn added_before(
        &self,
        connection: &mut ConnectionManager,
        key: &str,
        event: &StoredEvent,
    ) -> Result<(), SinkError> {
        let id = entry_id(event);
        let found: RedisResult<Value> = redis::cmd("XRANGE")
            .arg(key)
            .arg(&id)
            .arg(&id)
            .query_async(connection)
            .await;
        match found {
            Ok(Value::Array(entries)) if !entries.is_empty() => Ok(()),
            Ok(_) => Err(SinkError::permanent(format!(
                "Redis stream {key:?} at {} has an entry above {id} that innohook did not add, so event #{} cannot be added; give innohook a stream of its own",
                self.place, event.seq
            ))),
            Err(e) => Err(SinkError::retryable(format!(
                "Redis at {}: {e}",
                self.place
            ))),
        }
    }
}

impl Sink for RedisSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// The batch in commit order, in one pipeline.
    fn deliver<'a>(
        &'a self,
        events: &'a [StoredEvent],
        _lease: i64,
    ) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        Box::pin(self.add(events))
    }
}
