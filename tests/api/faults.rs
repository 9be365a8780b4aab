//! Faults from the outside: hostile payloads by the thousand, and clients too slow to wait for.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

/// A payload derived from a seed: dropped fields, wrong types, huge strings, deep nesting,
/// invalid UTF-8, truncation, or plain noise.
fn mutant(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut v = seed(["delivered", "read", "failed"][rng.usize(..3)]);
    let paths = [
        "id",
        "type",
        "eventTime",
        "body",
        "body.id",
        "body.status",
        "body.wamid",
        "body.errorData",
        "body.conversation",
        "body.uid",
    ];
    let path = paths[rng.usize(..paths.len())];
    let (parent, leaf) = path
        .rsplit_once('.')
        .map_or((None, path), |(p, l)| (Some(p), l));
    let target = match parent {
        Some(p) => &mut v[p],
        None => &mut v,
    };
    match rng.u8(..9) {
        0 => {
            if let Some(o) = target.as_object_mut() {
                o.remove(leaf);
            }
        }
        1 => {
            target[leaf] = [
                json!(null),
                json!(7),
                json!(true),
                json!([1]),
                json!({"x": 1}),
                json!(1.5),
            ][rng.usize(..6)]
            .clone()
        }
        2 => target[leaf] = "x".repeat(rng.usize(1000..60_000)).into(),
        3 => {
            let depth = rng.usize(50..5000);
            let deep = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            target[leaf] = serde_json::from_str(&deep).unwrap_or(Value::Null);
        }
        4 => {
            let mut bytes = v.to_string().into_bytes();
            let at = rng.usize(..bytes.len());
            bytes[at] = 0xff;
            return bytes;
        }
        5 => {
            let bytes = v.to_string().into_bytes();
            return bytes[..rng.usize(..bytes.len())].to_vec();
        }
        6 => return (0..rng.usize(..300)).map(|_| rng.u8(..)).collect(),
        7 => target[leaf] = format!("{}", rng.u64(..)).into(),
        _ => {}
    }
    // Unique ids, so accepted ones are new events rather than duplicates.
    if v["body"].is_object() && rng.bool() {
        v["body"]["id"] = format!("fuzz-{}", rng.u64(..)).into();
    }
    v.to_string().into_bytes()
}

/// The server runs as a process of its own, so that its memory is measured alone (the
/// test process holds every other test's server too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_payloads_get_no_5xx_and_every_400_a_code() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("sinks = []\n{}", server_toml(dir.path()));
    let server = BinaryServer::start(&write_config(dir.path(), &toml));
    let url = format!("http://{}/webhook", server.addr);
    let (bad, ok) = (
        Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    );
    let mut rss_after_warmup = 0;
    for round in 0..2 {
        let mut senders = Vec::new();
        for s in 0..16u64 {
            let (url, bad, ok) = (url.clone(), bad.clone(), ok.clone());
            senders.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut rng = fastrand::Rng::with_seed(round * 100 + s);
                for _ in 0..(5000 / 16) + 1 {
                    let res = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(mutant(&mut rng))
                        .send()
                        .await
                        .unwrap();
                    let status = res.status().as_u16();
                    let body: Value = res.json().await.expect("every answer is JSON");
                    match status {
                        200 => ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        400 | 413 => {
                            assert!(
                                body["error"].as_str().is_some_and(|c| !c.is_empty()),
                                "{body}"
                            );
                            assert!(
                                body["message"].as_str().is_some_and(|m| m.len() > 10),
                                "{body}"
                            );
                            bad.fetch_add(
                                usize::from(status == 400),
                                std::sync::atomic::Ordering::Relaxed,
                            )
                        }
                        other => panic!("answered {other}: {body}"),
                    };
                }
            }));
        }
        for s in senders {
            s.await.unwrap();
        }
        if round == 0 {
            rss_after_warmup = rss_kib(server.child.id());
        }
    }
    let grown_mib = rss_kib(server.child.id()).saturating_sub(rss_after_warmup) / 1024;
    assert!(
        grown_mib < 32,
        "the server's memory grew by {grown_mib} MiB over the second 5,000 payloads"
    );
    let bad = bad.load(std::sync::atomic::Ordering::Relaxed);
    let ok = ok.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        bad > 1000 && ok > 1000,
        "the mutations should give both: {bad} rejected, {ok} accepted"
    );
    // Nothing sent to us is lost: every rejection is a dead letter.
    let store = open_store(&dir.path().join("store")).await;
    assert_eq!(store.dead_letters().await.unwrap().len(), bad);
}

#[tokio::test]
async fn a_client_trickling_its_body_is_cut_off_and_does_not_hold_the_server() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.server.request_timeout_secs = 1;
    let app = TestApp::spawn(config, dir).await;
    let addr = app.addr;
    let slow = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = seed_bytes("read");
        let head = format!(
            "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        for b in body.iter().take(5) {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        (answer, started.elapsed())
    });
    // Meanwhile everyone else is served at once.
    for i in 0..20 {
        let started = Instant::now();
        let res = app
            .post(status_event(&format!("e{i}"), &format!("m{i}"), "read").to_string())
            .await;
        assert_eq!(res.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let (answer, took) = tokio::task::spawn_blocking(move || slow.join().unwrap())
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(took < Duration::from_secs(4), "cut off after {took:?}");
    assert_eq!(app.stored().await, 20);
}
