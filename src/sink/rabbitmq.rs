//! The `rabbitmq` sink: publishes each event to a RabbitMQ exchange (AMQP 0.9.1, lapin),
//! the body as sent, with a routing key made from the event (`innopaas.{type}.{status}`
//! by default).
//!
//! Each message is persistent and published `mandatory` on a channel in confirm mode: an
//! event counts as delivered only when the broker confirms it, and one the broker returns
//! as unroutable (no queue bound for its key) is a dead letter naming the event, not a
//! silent loss. `message_id` is the event's own key (the forward sink's Idempotency-Key),
//! headers carry its type and seq. A message's events are published one after another,
//! different messages at once.
//!
//! RabbitMQ cannot refuse a duplicate: an event whose confirm had not come back when
//! innohook stopped or the connection closed is published again, with the same
//! `message_id`, and consumers dedupe on it. The window is the publishes in flight: the
//! position is recorded as soon as a batch's confirms are in.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::name::{Fields, fill};
use super::{BoxFuture, Building, Sink, SinkError, expand_env};
use crate::store::StoredEvent;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitMqSinkConfig {
    /// `amqp://user:password@host:5672/vhost`, or `amqps://` for TLS (the system's roots);
    /// `"${NAME}"` reads the environment.
    pub url: String,
    /// The exchange to publish to; it must exist.
    pub exchange: String,
    /// The routing key of each event: `{type}`, `{status}`, `{message_id}` and `{uid}`
    /// are replaced by the event's, as in the NATS sink's subject.
    #[serde(default = "default_routing_key")]
    pub routing_key: String,
    /// Seconds to wait for the broker's confirm before the publish is retried.
    #[serde(default = "default_confirm_timeout")]
    pub confirm_timeout_secs: u64,
}

fn default_routing_key() -> String {
    "innopaas.{type}.{status}".into()
}
fn default_confirm_timeout() -> u64 {
    10
}

impl RabbitMqSinkConfig {
    /// The URL, its `${NAME}`s read.
    fn address(&self) -> anyhow::Result<String> {
        let url = expand_env(&self.url)
            .map_err(|var| anyhow::anyhow!("url uses ${{{var}}}, which is not set"))?;
        anyhow::ensure!(
            url.starts_with("amqp://") || url.starts_with("amqps://"),
            "url must start with amqp:// or amqps://"
        );
        url.parse::<lapin::uri::AMQPUri>()
            .map_err(|e| anyhow::anyhow!("url is not an AMQP URI: {e}"))?;
        Ok(url)
    }

    /// Where it delivers, for people: the URL without its password.
    fn place(&self) -> String {
        super::without_password(&self.url)
    }
}

#[async_trait::async_trait]
impl super::SinkSettings for RabbitMqSinkConfig {
    fn check(&self) -> anyhow::Result<()> {
        self.address()?;
        anyhow::ensure!(!self.exchange.is_empty(), "exchange must name an exchange");
        anyhow::ensure!(
            !self.routing_key.is_empty() && self.routing_key.len() <= 255,
            "routing_key must be 1 to 255 bytes"
        );
        anyhow::ensure!(
            self.confirm_timeout_secs >= 1,
            "confirm_timeout_secs must be at least 1"
        );
        Ok(())
    }

    fn target(&self) -> anyhow::Result<String> {
        Ok(format!(
            " -> exchange {} at {}",
            self.exchange,
            self.place()
        ))
    }

    fn probed(&self) -> bool {
        true
    }

    async fn build(&self, with: &Building<'_>) -> anyhow::Result<(Box<dyn Sink>, i64)> {
        super::SinkSettings::check(self)?;
        let sink = RabbitMqSink {
            name: with.name.to_owned(),
            address: self.address()?,
            place: self.place(),
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            confirm_timeout: Duration::from_secs(self.confirm_timeout_secs),
            open: Mutex::new(None),
        };
        // Refused at start, with a sentence, when the broker or the exchange is not there.
        sink.channel()
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        Ok((Box::new(sink), with.store_cursor))
    }
}

pub struct RabbitMqSink {
    name: String,
    address: String,
    /// The URL without its password.
    place: String,
    exchange: String,
    routing_key: String,
    confirm_timeout: Duration,
    /// The connection and its confirm-mode channel, opened again after either closes.
    open: Mutex<Option<(Connection, Channel)>>,
}

impl RabbitMqSink {
    /// The open channel, or a new connection and channel (the exchange checked).
    async fn channel(&self) -> Result<Channel, SinkError> {
        let mut open = self.open.lock().await;
        if let Some((connection, channel)) = open.as_ref()
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        *open = None;
        let place = &self.place;
        let connection = tokio::time::timeout(
            Duration::from_secs(10),
            Connection::connect(
                &self.address,
                ConnectionProperties::default()
                    .with_connection_name(LongString::from(format!("innohook {}", self.name))),
            ),
        )
        .await
        .map_err(|_| SinkError::retryable(format!("RabbitMQ at {place}: no answer in 10 s")))?
        .map_err(|e| SinkError::retryable(format!("cannot connect to RabbitMQ at {place}: {e}")))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| SinkError::retryable(format!("RabbitMQ at {place}: {e}")))?;
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                ShortString::from(self.exchange.clone()),
                ExchangeKind::Topic,
                passive,
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                SinkError::retryable(format!(
                    "RabbitMQ exchange {:?} at {place}: {e}; create it first, e.g. rabbitmqadmin declare exchange name={} type=topic durable=true",
                    self.exchange, self.exchange
                ))
            })?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| SinkError::retryable(format!("RabbitMQ at {place}: {e}")))?;
        *open = Some((connection, channel.clone()));
        Ok(channel)
    }

    async fn publish(&self, event: &StoredEvent) -> Result<(), SinkError> {
        let channel = self.channel().await?;
        let routing_key = fill(&self.routing_key, &Fields::of(event));
        let mut headers = FieldTable::default();
        headers.insert(
            "x-innohook-type".into(),
            AMQPValue::LongString(LongString::from(event.event_type.as_str())),
        );
        headers.insert("x-innohook-seq".into(), AMQPValue::LongLongInt(event.seq));
        headers.insert(
            "x-innohook-event-id".into(),
            AMQPValue::LongString(LongString::from(event.event_id.as_str())),
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(ShortString::from(event.delivery_key()))
            .with_type(ShortString::from(event.event_type.clone()))
            .with_headers(headers);
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let failed =
            |e: lapin::Error| SinkError::retryable(format!("RabbitMQ at {}: {e}", self.place));
        let confirm = channel
            .basic_publish(
                ShortString::from(self.exchange.clone()),
                ShortString::from(routing_key.clone()),
                options,
                &event.body,
                properties,
            )
            .await
            .map_err(failed)?;
        let confirmation = tokio::time::timeout(self.confirm_timeout, confirm)
            .await
            .map_err(|_| {
                SinkError::retryable(format!(
                    "RabbitMQ at {}: no confirm within {} s",
                    self.place,
                    self.confirm_timeout.as_secs()
                ))
            })?
            .map_err(failed)?;
        if confirmation.is_nack() {
            return Err(SinkError::retryable(format!(
                "RabbitMQ at {} refused the message (nack)",
                self.place
            )));
        }
        if let Some(returned) = confirmation.take_message() {
            return Err(SinkError::permanent(format!(
                "RabbitMQ returned event #{} as unroutable ({} {}): no queue is bound to exchange {:?} for routing key {routing_key:?}",
                event.seq, returned.reply_code, returned.reply_text, self.exchange
            )));
        }
        Ok(())
    }
}

impl Sink for RabbitMqSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// Each message's events one after another, the messages at once; after a failure,
    /// the message's later events are held back.
    fn deliver<'a>(
        &'a self,
        events: &'a [StoredEvent],
        _lease: i64,
    ) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        super::by_message(events, move |e| self.publish(e))
    }

    fn keeps_message_order(&self) -> bool {
        true
    }
}
