//! The RabbitMQ sink against the real broker `INNOHOOK_TEST_RABBITMQ_URL` names (an
//! exchange and a queue of its own per test). Without the variable these tests say so in
//! one line and pass.

use std::collections::HashMap;
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

use crate::helpers::*;

const VAR: &str = "INNOHOOK_TEST_RABBITMQ_URL";

fn rabbitmq_url(test: &str) -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skipped(
                test,
                &format!(
                    "set {VAR}=amqp://guest:guest@127.0.0.1:5672/%2f to run the RabbitMQ tests"
                ),
            );
            None
        }
    }
}

/// One message as the test's queue got it.
#[derive(Debug, Clone)]
struct Got {
    routing_key: String,
    message_id: String,
    persistent: bool,
    kind: String,
    seq: i64,
    body: Value,
}

/// An exchange of its own (topic) and, when `bound`, a queue taking everything published
/// to it; both deleted when dropped.
struct TestExchange {
    channel: Channel,
    _connection: Connection,
    exchange: String,
    queue: String,
    prefix: String,
}

impl TestExchange {
    async fn create(url: &str, bound: bool) -> TestExchange {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("RabbitMQ reachable");
        let channel = connection.create_channel().await.unwrap();
        let id = format!("{:012x}", fastrand::u64(..1 << 48));
        let (exchange, queue, prefix) = (format!("x{id}"), format!("q{id}"), format!("t{id}"));
        channel
            .exchange_declare(
                exchange.clone().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_declare(
                queue.clone().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        if bound {
            channel
                .queue_bind(
                    queue.clone().into(),
                    exchange.clone().into(),
                    format!("{prefix}.#").into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
        }
        TestExchange {
            channel,
            _connection: connection,
            exchange,
            queue,
            prefix,
        }
    }

    /// The sink's `[[sinks]]` table for this exchange (sink name `amqp-{prefix}`).
    fn sink_toml(&self, url: &str) -> String {
        format!(
            "[[sinks]]\ntype = \"rabbitmq\"\nname = \"amqp-{}\"\nurl = \"{url}\"\nexchange = \"{}\"\nrouting_key = \"{}.{{type}}.{{status}}\"\nbackoff_initial_ms = 50\nbackoff_max_ms = 500\nconfirm_timeout_secs = 3\n",
            self.prefix, self.exchange, self.prefix
        )
    }

    /// Takes what is in the queue now (at most 2,000 messages, so that a caller polling
    /// with a deadline gets to check it while the queue fills).
    async fn take(&self) -> Vec<Got> {
        let mut out = Vec::new();
        while out.len() < 2000
            && let Some(m) = self
                .channel
                .basic_get(self.queue.clone().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
        {
            let d = &m.delivery;
            let p = &d.properties;
            let headers = p.headers().clone().unwrap_or_default();
            let seq = match headers.inner().get("x-innohook-seq") {
                Some(AMQPValue::LongLongInt(n)) => *n,
                other => panic!("x-innohook-seq: {other:?}"),
            };
            out.push(Got {
                routing_key: d.routing_key.to_string(),
                message_id: p
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                persistent: *p.delivery_mode() == Some(2),
                kind: p.kind().as_ref().map(|s| s.to_string()).unwrap_or_default(),
                seq,
                body: serde_json::from_slice(&d.data).unwrap(),
            });
        }
        out
    }

    /// Takes from the queue until `n` messages came (within `secs`).
    async fn take_at_least(&self, n: usize, secs: u64, got: &mut Vec<Got>) {
        poll_until(&format!("{n} messages in the queue"), secs, async || {
            got.extend(self.take().await);
            (got.len() >= n).then_some(())
        })
        .await;
    }
}

impl Drop for TestExchange {
    fn drop(&mut self) {
        let (channel, exchange, queue) = (
            self.channel.clone(),
            self.exchange.clone(),
            self.queue.clone(),
        );
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let _ = channel
                        .queue_delete(queue.into(), QueueDeleteOptions::default())
                        .await;
                    let _ = channel
                        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                        .await;
                })
        })
        .join();
    }
}

/// Each event once, persistent, with its own key as message_id, its type and seq; a
/// message's events in commit order; a redelivered push not published again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_published_persistent_with_its_key_in_order() {
    let Some(url) = rabbitmq_url("each_event_is_published_persistent_with_its_key_in_order") else {
        return;
    };
    let x = TestExchange::create(&url, true).await;
    let app = app_with_sinks(&x.sink_toml(&url)).await;
    let mut sent = Vec::new();
    for i in 0..20 {
        for status in ["delivered", "read"] {
            let v = status_event(&format!("e{i}-{status}"), &format!("m{i}"), status);
            assert_eq!(app.post(v.to_string()).await.status(), 200);
            sent.push(v);
        }
    }
    // Pushed again: a duplicate, not published again.
    let again = status_event("e0-read-again", "m0", "read");
    assert_eq!(
        answer(app.post(again.to_string()).await).await.1["status"],
        "duplicate"
    );
    let mut got = Vec::new();
    x.take_at_least(sent.len(), 20, &mut got).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    got.extend(x.take().await);
    assert_eq!(got.len(), sent.len(), "each once");
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    for g in &got {
        assert!(g.persistent, "{g:?}");
        assert_eq!(g.kind, "whatsapp_message_status_updated");
        let status = g.body["body"]["status"].as_str().unwrap();
        let msg = g.body["body"]["id"].as_str().unwrap();
        assert_eq!(g.message_id, format!("{msg}:{status}"));
        assert_eq!(
            g.routing_key,
            format!("{}.whatsapp_message_status_updated.{status}", x.prefix)
        );
        let previous = last_seq.insert(msg.to_owned(), g.seq);
        assert!(previous.is_none_or(|p| p < g.seq), "{msg} out of order");
    }
    let bodies: Vec<&Value> = got.iter().map(|g| &g.body).collect();
    for v in &sent {
        assert!(bodies.contains(&v), "{v} missing");
    }
}

/// An event no queue takes is returned by the broker: a dead letter naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_event_is_a_dead_letter_naming_it() {
    let Some(url) = rabbitmq_url("an_unroutable_event_is_a_dead_letter_naming_it") else {
        return;
    };
    let x = TestExchange::create(&url, false).await;
    let app = app_with_sinks(&x.sink_toml(&url)).await;
    assert_eq!(
        app.post(status_event("e1", "m1", "read").to_string())
            .await
            .status(),
        200
    );
    let letter = poll_until("the dead letter", 20, async || {
        let dead = app.store.dead_letters().await.unwrap();
        dead.into_iter().find(|d| d.sink.is_some())
    })
    .await;
    let error = letter.reason.clone();
    assert!(
        error.contains("unroutable") && error.contains(&x.exchange) && error.contains("#1"),
        "{error}"
    );
}

/// A missing exchange, an unreachable broker or a bad URL stop `serve` and fail
/// `check-config`, each with a sentence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_with_a_sentence() {
    let Some(url) = rabbitmq_url("bad_settings_are_refused_with_a_sentence") else {
        return;
    };
    for (sink, says) in [
        (
            format!("[[sinks]]\ntype = \"rabbitmq\"\nurl = \"{url}\"\nexchange = \"no-such-exchange-{}\"\n", fastrand::u32(..)),
            "create it first",
        ),
        (
            "[[sinks]]\ntype = \"rabbitmq\"\nurl = \"amqp://guest:guest@127.0.0.1:1/%2f\"\nexchange = \"x\"\n".to_owned(),
            "cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:1/%2f",
        ),
        (
            "[[sinks]]\ntype = \"rabbitmq\"\nurl = \"http://example.com\"\nexchange = \"x\"\n".to_owned(),
            "url must start with amqp:// or amqps://",
        ),
    ] {
        refused_by_check_config_and_serve(&sink, says);
    }
}

/// Closes, with rabbitmqctl, the broker's connections whose client properties (the
/// connection name innohook gives: `innohook SINK`) contain `part`; how many it closed.
fn close_connections(part: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut closed = 0;
    for line in text.lines().filter(|l| l.contains(part)) {
        let pid = line.split_whitespace().next().unwrap();
        let status = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "closed by the test"])
            .status()
            .unwrap();
        assert!(status.success());
        closed += 1;
    }
    closed
}

/// 10,000 events (5,000 messages, each `delivered` then `read`) through one close of
/// innohook's connection by the broker and one SIGKILL of innohook: every event arrives,
/// each message's in commit order, and an event arrives twice only when its confirm was
/// in flight at the close or the kill, with its original `message_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_arrive_in_order_through_a_sigkill_and_a_closed_connection() {
    let Some(url) = rabbitmq_url(
        "ten_thousand_events_arrive_in_order_through_a_sigkill_and_a_closed_connection",
    ) else {
        return;
    };
    const MESSAGES: usize = 5000;
    let x = TestExchange::create(&url, true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &(server_toml(dir.path()) + &x.sink_toml(&url)));
    let server = BinaryServer::start(&config);
    let load = Load::start(server.addr, MESSAGES);
    let mut arrived: Vec<String> = Vec::new();
    let take = async |arrived: &mut Vec<String>| {
        arrived.extend(x.take().await.into_iter().map(|g| g.message_id));
    };
    // The broker closes innohook's connection once a quarter has arrived.
    poll_until("a quarter of the events in the queue", 60, async || {
        take(&mut arrived).await;
        (arrived.len() >= MESSAGES / 2).then_some(())
    })
    .await;
    let closed = poll_until("innohook's connection to close", 20, async || {
        let n = close_connections(&format!("amqp-{}", x.prefix));
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(closed, 1);
    // SIGKILL once half are acknowledged; a new process on the same store goes on.
    poll_until("half of the events acknowledged", 60, async || {
        (load.acked() >= MESSAGES).then_some(())
    })
    .await;
    server.kill();
    let server = BinaryServer::start(&config);
    load.point_to(server.addr);
    load.finish().await;
    let keys = Load::keys(MESSAGES);
    poll_until("every event in the queue", 120, async || {
        take(&mut arrived).await;
        let seen: std::collections::HashSet<&String> = arrived.iter().collect();
        keys.iter().all(|k| seen.contains(k)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    take(&mut arrived).await;
    let twice = check_arrivals(MESSAGES, &arrived);
    eprintln!(
        "rabbitmq: {} events, {twice} published again across one close and one SIGKILL",
        keys.len()
    );
    // At most what was in flight at each: a batch (256) of the sink.
    assert!(twice <= 2 * 256, "{twice} published again");
}
