//! How fast a broker sink drains a backlog (bench/catchup.sh). For each sink named on the
//! command line (`nats`, `rabbitmq`, `redis`): fills a fresh store with N status events
//! through innohook with no sink, then starts innohook again on that store with the sink
//! (`start = "beginning"`) and times it from start until the target holds every event.
//! Prints events/s. The targets are made here and removed after: a JetStream stream,
//! a RabbitMQ exchange with a queue bound to it, a Redis stream key.
//!
//!   catchup BIN EVENTS SINK... (env: NATS_URL, AMQP_URL, REDIS_URL)

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

const PORT: u16 = 18180;

fn start(bin: &str, config: &std::path::Path) -> Server {
    let child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("innohook starts");
    // Stopped (and waited for) when dropped, also on the panic below.
    let server = Server(child, format!("http://127.0.0.1:{PORT}"));
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", PORT)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("innohook did not listen on {PORT}");
}

fn server_toml(dir: &std::path::Path) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{PORT}\"\n[store]\ndir = {:?}\n[log]\nlevel = \"warn\"\n",
        dir.join("store")
    )
}

fn event(n: usize) -> String {
    format!(
        r#"{{"id":"c{n}","type":"whatsapp_message_status_updated","eventTime":"2026-03-01T10:00:00.000Z","body":{{"id":"m{n}","wamid":"wamid.m{n}","status":"read","uid":"catchup","sendPhone":"6512345","wabaId":"1","accountName":"a"}}}}"#
    )
}

/// Posts `n` events, 64 at a time.
async fn fill(url: &str, n: usize) {
    let client = reqwest::Client::new();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let res = client
                    .post(format!("{url}/webhook"))
                    .header("content-type", "application/json")
                    .body(event(i))
                    .send()
                    .await
                    .expect("posted");
                assert_eq!(res.status(), 200);
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
}

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or("nats://127.0.0.1:4222".into())
}

async fn jetstream() -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap())
}

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or("amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

async fn amqp_channel() -> (lapin::Connection, lapin::Channel) {
    let c = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let ch = c.create_channel().await.unwrap();
    (c, ch)
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into())
}

async fn redis_connection() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// How many events the target holds.
async fn arrived(kind: &str, id: &str) -> u64 {
    match kind {
        "nats" => {
            let mut stream = jetstream()
                .await
                .get_stream(format!("C{id}"))
                .await
                .unwrap();
            stream.info().await.unwrap().state.messages
        }
        "rabbitmq" => {
            use lapin::options::*;
            let (_c, ch) = amqp_channel().await;
            let passive = QueueDeclareOptions {
                passive: true,
                durable: true,
                ..Default::default()
            };
            let q = ch
                .queue_declare(format!("q{id}").into(), passive, Default::default())
                .await
                .unwrap();
            u64::from(q.message_count())
        }
        _ => redis::cmd("XLEN")
            .arg(format!("catchup:{id}"))
            .query_async(&mut redis_connection().await)
            .await
            .unwrap(),
    }
}

/// The sink's table and what removes its target after.
async fn target(kind: &str, id: &str) -> String {
    match kind {
        "nats" => {
            jetstream()
                .await
                .create_stream(async_nats::jetstream::stream::Config {
                    name: format!("C{id}"),
                    subjects: vec![format!("c{id}.>")],
                    duplicate_window: Duration::from_secs(3600),
                    ..Default::default()
                })
                .await
                .unwrap();
            format!(
                "stream = \"C{id}\"\nsubject = \"c{id}.{{type}}.{{status}}\"\nurl = \"{}\"\n",
                nats_url()
            )
        }
        "rabbitmq" => {
            use lapin::options::*;
            let (_c, ch) = amqp_channel().await;
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            };
            ch.exchange_declare(
                format!("x{id}").into(),
                lapin::ExchangeKind::Topic,
                durable,
                Default::default(),
            )
            .await
            .unwrap();
            let q = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            ch.queue_declare(format!("q{id}").into(), q, Default::default())
                .await
                .unwrap();
            ch.queue_bind(
                format!("q{id}").into(),
                format!("x{id}").into(),
                "#".into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
            format!("exchange = \"x{id}\"\nurl = \"{}\"\n", amqp_url())
        }
        "redis" => {
            format!("stream = \"catchup:{id}\"\nurl = \"{}\"\n", redis_url())
        }
        other => panic!("unknown sink {other} (nats, rabbitmq, redis)"),
    }
}

async fn remove(kind: &str, id: &str) {
    match kind {
        "nats" => {
            let _ = jetstream().await.delete_stream(format!("C{id}")).await;
        }
        "rabbitmq" => {
            use lapin::options::*;
            let (_c, ch) = amqp_channel().await;
            let _ = ch
                .queue_delete(format!("q{id}").into(), QueueDeleteOptions::default())
                .await;
            let _ = ch
                .exchange_delete(format!("x{id}").into(), ExchangeDeleteOptions::default())
                .await;
        }
        _ => {
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(format!("catchup:{id}"))
                .query_async(&mut redis_connection().await)
                .await;
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (bin, events) = (&args[1], args[2].parse::<usize>().expect("EVENTS"));
    println!("sink       events   drained in   events/s");
    for kind in &args[3..] {
        let dir = tempfile::tempdir().unwrap();
        let base = server_toml(dir.path());
        let config = dir.path().join("innohook.toml");
        std::fs::write(&config, format!("sinks = []\n{base}")).unwrap();
        {
            let server = start(bin, &config);
            fill(&server.1, events).await;
        }
        let id = format!("{:x}", fastrand::u64(..1 << 40));
        let sink = target(kind, &id).await;
        std::fs::write(
            &config,
            format!(
                "{base}[[sinks]]\ntype = \"{kind}\"\nname = \"catchup\"\nstart = \"beginning\"\n{sink}"
            ),
        )
        .unwrap();
        let started = Instant::now();
        let server = start(bin, &config);
        while arrived(kind, &id).await < events as u64 {
            assert!(started.elapsed() < Duration::from_secs(600), "not drained");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = started.elapsed().as_secs_f64();
        println!(
            "{kind:<10} {events:>6}   {took:>8.2} s   {:>8.0}",
            events as f64 / took
        );
        drop(server);
        remove(kind, &id).await;
    }
}
