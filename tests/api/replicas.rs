//! innohook as several replicas on one PostgreSQL database, as processes: load spread
//! over them, the sink holder killed, the database stopped and started under load.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use innohook::store::{Role, Store};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::pg::{PgServer, TestDb};

const TOKEN: &str = "replica-token";

/// A replica: the binary with a config file of its own (in `dir`), switched to the
/// database by the environment alone, as a deployment would.
/// No sinks unless `extra` configures some.
fn replica(dir: &Path, db_url: &str, extra: &str) -> BinaryServer {
    let no_sinks = if extra.contains("[[sinks]]") {
        ""
    } else {
        "sinks = []\n"
    };
    let toml = format!(
        "{no_sinks}{}[api]\ntoken = \"{TOKEN}\"\n{extra}",
        server_toml(dir)
    );
    let mut command = innohook();
    command
        .arg("--config")
        .arg(write_config(dir, &toml))
        .env("INNOHOOK_STORE__BACKEND", "postgres")
        .env("INNOHOOK_STORE__URL", db_url)
        .env("INNOHOOK_STORE__LEASE_SECS", "3");
    BinaryServer::start_command(command)
}

fn status(msg: &str, status: &str, uid: &str) -> Value {
    json!({
        "id": format!("e-{msg}-{status}"), "type": "whatsapp_message_status_updated",
        "eventTime": "2026-03-01T10:00:00.000Z",
        "body": {"id": msg, "accountName": "a", "wabaId": "w", "status": status,
                 "wamid": format!("wamid.{msg}"), "sendPhone": "65", "uid": uid}
    })
}

async fn post(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    body: &Value,
) -> Option<String> {
    let res = client
        .post(format!("http://{addr}/webhook"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    if res.status() != 200 {
        return None;
    }
    let answer: Value = res.json().await.ok()?;
    answer["status"].as_str().map(str::to_owned)
}

async fn api(addr: std::net::SocketAddr, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn client_store(db: &TestDb) -> Arc<dyn Store> {
    innohook::store::open(&db.config(), Role::Client)
        .await
        .unwrap()
}

/// 32 senders spread their events over two replicas: every 200 is stored once, both
/// replicas give the same message statuses and batch counts, and the same event posted
/// to both at once is accepted by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_count_every_event_once() {
    let Some(db) = TestDb::create("two_replicas_on_one_database_count_every_event_once").await
    else {
        return;
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let replicas = [
        replica(dirs[0].path(), &db.url, ""),
        replica(dirs[1].path(), &db.url, ""),
    ];
    let addrs = [replicas[0].addr, replicas[1].addr];
    let mut senders = Vec::new();
    for t in 0..32 {
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut accepted = Vec::new();
            for i in 0..20 {
                let msg = format!("m{t}-{i}");
                let uid = format!("batch-{}", t % 4);
                for (k, s) in ["delivered", "read"].iter().enumerate() {
                    // Alternate replicas, and send the read first for every third message.
                    let s = if i % 3 == 0 {
                        ["read", "delivered"][k]
                    } else {
                        s
                    };
                    let to = addrs[(t + i + k) % 2];
                    if post(&client, to, &status(&msg, s, &uid)).await.as_deref()
                        == Some("accepted")
                    {
                        accepted.push((msg.clone(), s.to_owned()));
                    }
                }
            }
            accepted
        }));
    }
    let mut accepted = Vec::new();
    for s in senders {
        accepted.extend(s.await.unwrap());
    }
    assert_eq!(accepted.len(), 32 * 20 * 2, "every event answered accepted");
    // The same event on both replicas at once: one accepts it.
    let client = reqwest::Client::new();
    let once = status("both", "failed", "batch-0");
    let once = {
        let mut v = once;
        v["body"]["errorData"] = json!({"errorCode": "131026"});
        v
    };
    let (a, b) = tokio::join!(
        post(&client, addrs[0], &once),
        post(&client, addrs[1], &once)
    );
    let mut answers = [a.unwrap(), b.unwrap()];
    answers.sort();
    assert_eq!(answers, ["accepted", "duplicate"]);

    let store = client_store(&db).await;
    assert_eq!(store.count_events().await.unwrap(), 32 * 20 * 2 + 1);
    let mut stored = HashSet::new();
    let mut cursor = 0;
    loop {
        let page = store.events_after(cursor, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        for e in &page {
            let key = (
                e.message_id.clone().unwrap(),
                e.status.as_ref().unwrap().to_string(),
            );
            assert!(stored.insert(key), "stored twice: {:?}", e.seq);
        }
    }
    for (msg, s) in &accepted {
        assert!(
            stored.contains(&(msg.clone(), s.clone())),
            "{msg} {s} missing"
        );
    }
    store.close().await;
    // Both replicas answer the same, and the counts are right.
    for uid in ["batch-0", "batch-1", "batch-2", "batch-3"] {
        let (a, b) = (
            api(addrs[0], &format!("/api/batches/{uid}")).await,
            api(addrs[1], &format!("/api/batches/{uid}")).await,
        );
        assert_eq!(a, b);
        let messages = 8 * 20 + i64::from(uid == "batch-0");
        assert_eq!(a["messages"], messages, "{a}");
        assert_eq!(a["read"], 8 * 20, "{a}");
        assert_eq!(a["failed"], i64::from(uid == "batch-0"), "{a}");
    }
    for msg in ["m0-0", "m17-5", "both"] {
        let (a, b) = (
            api(addrs[0], &format!("/api/messages/{msg}")).await,
            api(addrs[1], &format!("/api/messages/{msg}")).await,
        );
        assert_eq!(a, b);
        assert!(a["status"].is_string(), "{a}");
    }
}

/// The replica that runs the forward sink is killed under load: the other takes the sink
/// over within the lease, every event answered 200 reaches the target, and the only
/// events delivered twice are those of the batch in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_moves_to_another_replica_when_its_holder_is_killed() {
    let Some(db) =
        TestDb::create("the_sink_moves_to_another_replica_when_its_holder_is_killed").await
    else {
        return;
    };
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    const BATCH: usize = 64;
    let sink = format!(
        "[[sinks]]\ntype = \"forward\"\nname = \"crm\"\nurl = \"{}\"\nbatch_size = {BATCH}\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\ntimeout_secs = 2\n",
        target.url()
    );
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut replicas = vec![
        replica(dirs[0].path(), &db.url, &sink),
        replica(dirs[1].path(), &db.url, &sink),
    ];
    let started = |r: &BinaryServer| {
        r.log_lines.lock().unwrap().iter().any(|l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["message"] == "Sink started." && v["sink"] == "crm")
        })
    };
    let holder = poll_until("a replica to take the sink", 20, async || {
        replicas.iter().position(started)
    })
    .await;
    assert!(
        !started(&replicas[1 - holder]),
        "only one replica runs the sink"
    );

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addrs = [replicas[0].addr, replicas[1].addr];
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let (acked, stop) = (acked.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let msg = format!("m{t}-{i}");
                    i += 1;
                    let ev = status(&msg, "read", "b");
                    for to in [addrs[i % 2], addrs[(i + 1) % 2]] {
                        if post(&client, to, &ev).await.is_some() {
                            acked.lock().unwrap().push(msg.clone());
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    poll_until("events flowing to the target", 30, async || {
        (target.received_ids().len() >= 300).then_some(())
    })
    .await;
    let killed_at = Instant::now();
    replicas.remove(holder).kill();
    let survivor = &replicas[0];
    poll_until("the other replica to take the sink over", 20, async || {
        started(survivor).then_some(())
    })
    .await;
    let takeover = killed_at.elapsed();
    // A little more load on the survivor alone.
    let before = acked.lock().unwrap().len();
    poll_until("more events accepted", 20, async || {
        (acked.lock().unwrap().len() >= before + 200).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    poll_until("every acknowledged event at the target", 60, async || {
        let received = target.received_ids();
        acked
            .iter()
            .all(|m| received.contains(&format!("e-{m}-read")))
            .then_some(())
    })
    .await;
    let mut times: HashMap<String, usize> = HashMap::new();
    for (headers, _) in &target.state.lock().unwrap().received {
        *times
            .entry(headers["x-innohook-seq"].to_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let twice = times.values().filter(|n| **n > 1).count();
    eprintln!(
        "sink taken over {:.1} s after the kill; {} events delivered, {twice} of them twice",
        takeover.as_secs_f64(),
        times.len()
    );
    assert!(takeover < Duration::from_secs(10), "took {takeover:?}");
    assert!(times.values().all(|n| *n <= 2));
    // Every request carries its lease's fencing token, higher after the takeover.
    let tokens: Vec<i64> = (target.state.lock().unwrap().received.iter())
        .map(|(h, _)| h["x-innohook-lease"].to_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        tokens.windows(2).all(|w| w[0] <= w[1]) && tokens.first() < tokens.last(),
        "tokens in arrival order rise with the takeover"
    );
    assert!(twice <= BATCH, "{twice} duplicates, more than a batch");
}

/// PostgreSQL stopped under load: pushes get 503 with Retry-After and /readyz 503 while
/// it is down, 200 again once it is back (no restart of innohook), and every event
/// answered 200 is in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_loses_nothing() {
    if crate::pg::server_url("a_database_outage_answers_503_and_loses_nothing").is_none() {
        return;
    }
    let server = PgServer::start();
    let db = TestDb::create_on(&server.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = replica(dir.path(), &db.url, "");
    let addr = r.addr;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let unavailable = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let (acked, unavailable, stop) = (acked.clone(), unavailable.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let msg = format!("m{t}-{i}");
                    i += 1;
                    let res = client
                        .post(format!("http://{addr}/webhook"))
                        .header("content-type", "application/json")
                        .body(status(&msg, "delivered", "b").to_string())
                        .send()
                        .await
                        .unwrap();
                    match res.status().as_u16() {
                        200 => acked.lock().unwrap().push(msg),
                        503 => {
                            assert!(res.headers().contains_key("retry-after"));
                            unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        other => panic!("answered {other}"),
                    }
                }
            })
        })
        .collect();
    let readyz = || async {
        reqwest::get(format!("http://{addr}/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    poll_until("events accepted", 20, async || {
        (acked.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    server.stop();
    poll_until("503s while the database is down", 30, async || {
        (unavailable.load(std::sync::atomic::Ordering::Relaxed) >= 20).then_some(())
    })
    .await;
    // (A probe's result answers for a second.)
    poll_until("/readyz 503", 10, async || {
        (readyz().await == 503).then_some(())
    })
    .await;
    let during = acked.lock().unwrap().len();
    server.restart();
    poll_until("200s again", 30, async || {
        (acked.lock().unwrap().len() >= during + 200).then_some(())
    })
    .await;
    poll_until("/readyz 200", 10, async || {
        (readyz().await == 200).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let store = client_store(&db).await;
    let stored: HashSet<String> = store
        .events_after(0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.message_id)
        .collect();
    store.close().await;
    let lost: Vec<_> = acked.iter().filter(|m| !stored.contains(*m)).collect();
    assert!(lost.is_empty(), "answered 200 but not stored: {lost:?}");
    drop(r);
    drop(db);
}

/// A TCP proxy that can stop passing bytes without closing anything: a network partition
/// as the peers see it (what they send is not answered, nothing is refused), healed by
/// letting the held bytes through.
struct Partition {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    async fn start(to: std::net::SocketAddr) -> Partition {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, open) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let open = open.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pass(cr, sw, open.clone()), pass(sr, cw, open));
                });
            }
        });
        Partition { addr, cut, task }
    }

    fn cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding what it read while the partition is cut.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut open: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if open.wait_for(|cut| !*cut).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The replica holding the forward sink is cut off from PostgreSQL (a partition: its
/// queries are not answered, nothing is refused) while it retries a delivery. It stops
/// delivering when its lease runs out by its own clock, before the other replica can
/// claim the sink; every request carries the lease's fencing token (`X-Innohook-Lease`),
/// and the new holder's is higher. Before, the cut-off replica waited on its renewal
/// for as long as TCP retried, and kept delivering under the old token after the
/// takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_from_the_database_stops_before_another_takes_over() {
    let Some(db) =
        TestDb::create("a_holder_cut_off_from_the_database_stops_before_another_takes_over").await
    else {
        return;
    };
    let mut pg_url = url::Url::parse(&db.url).unwrap();
    let pg_addr = tokio::net::lookup_host(format!(
        "{}:{}",
        pg_url.host_str().unwrap(),
        pg_url.port().unwrap_or(5432)
    ))
    .await
    .unwrap()
    .next()
    .unwrap();
    let partition = Partition::start(pg_addr).await;
    pg_url.set_host(Some("127.0.0.1")).unwrap();
    pg_url.set_port(Some(partition.addr.port())).unwrap();

    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    target.state.lock().unwrap().flaky = Some((1.0, fastrand::Rng::with_seed(1)));
    let sink = format!(
        "[[sinks]]\ntype = \"forward\"\nname = \"crm\"\nurl = \"{}\"\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\ntimeout_secs = 2\n",
        target.url()
    );
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let cut_off = replica(dirs[0].path(), pg_url.as_str(), &sink);
    poll_until("the first replica to take the sink", 20, async || {
        cut_off.logged("Sink started.").then_some(())
    })
    .await;
    let other = replica(dirs[1].path(), &db.url, &sink);

    // The holder retries an event the target refuses for now.
    let res = other.post(status("m-1", "read", "b").to_string()).await;
    assert_eq!(res.status(), 200);
    let lease = |h: &reqwest::header::HeaderMap| -> i64 {
        h["x-innohook-lease"].to_str().unwrap().parse().unwrap()
    };
    let old = poll_until("the holder to try the event", 20, async || {
        let s = target.state.lock().unwrap();
        s.attempts.first().map(|(h, _, _)| lease(h))
    })
    .await;

    partition.cut(true);
    poll_until("the cut-off holder to give the sink up", 20, async || {
        cut_off.logged("could not be renewed in time").then_some(())
    })
    .await;
    poll_until("the other replica to take the sink over", 20, async || {
        other.logged("Sink started.").then_some(())
    })
    .await;
    target.state.lock().unwrap().flaky = None;
    let new = poll_until("the event delivered by the new holder", 20, async || {
        let s = target.state.lock().unwrap();
        s.received.iter().map(|(h, _)| lease(h)).find(|&l| l != old)
    })
    .await;
    assert!(new > old, "the new holder's token {new} is above {old}");
    let tokens: Vec<i64> = (target.state.lock().unwrap().attempts.iter())
        .map(|(h, _, _)| lease(h))
        .collect();
    let first_new = tokens.iter().position(|&t| t == new).unwrap();
    assert!(
        tokens[first_new..].iter().all(|&t| t == new),
        "the former holder delivered after the takeover: tokens in arrival order {tokens:?}"
    );
    partition.cut(false);
}
