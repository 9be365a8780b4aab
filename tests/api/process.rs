//! The binary as users run it: config errors, env overrides, SIGTERM, SIGKILL under load.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

#[test]
fn check_config_names_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:0\"\nlistne = 1\n",
    );
    let out = innohook()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("listne"), "{text}");

    let out = innohook()
        .args(["check-config"])
        .env("INNOHOOK_SERVER__PATHH", "/x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stdout).unwrap().contains("pathh"));
}

#[test]
fn check_config_reports_environment_overrides_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &server_toml(dir.path()));
    let out = innohook()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .env("INNOHOOK_SERVER__PATH", "/hooks/innopaas")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("path /hooks/innopaas"), "{text}");
    assert!(text.contains("listen 127.0.0.1:0"), "{text}");
}

#[tokio::test]
async fn secrets_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &server_toml(dir.path()));
    let mut child = innohook();
    child
        .arg("--config")
        .arg(&path)
        .env("INNOHOOK_AUTH__USERNAME", "12345")
        .env("INNOHOOK_AUTH__AUTHORIZATION", "Bearer from-env");
    let server = BinaryServer::start_command(child);
    assert!(!server.logged("No [auth] is configured"));
    let client = reqwest::Client::new();
    let url = format!("http://{}/webhook", server.addr);
    let post = |auth: Option<(&str, &str)>| {
        let mut req = client
            .post(&url)
            .header("content-type", "application/json")
            .body(seed_bytes("read"));
        if let Some((u, a)) = auth {
            req = req.header("UserName", u).header("Authorization", a);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(
        post(Some(("12345", "Bearer from-env")))
            .await
            .unwrap()
            .status(),
        200
    );
    server.kill();
}

#[tokio::test]
async fn sigterm_finishes_and_exits_0_within_10_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &server_toml(dir.path()));
    let mut server = BinaryServer::start(&path);
    // Without [auth], a warning says that anyone can post.
    assert!(server.logged("No [auth] is configured"));
    let res = server.post(seed_bytes("delivered")).await;
    assert_eq!(res.status(), 200);
    let sent = Instant::now();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        open_store(&dir.path().join("store"))
            .await
            .count_events()
            .await
            .unwrap(),
        1
    );
}

/// A push still in flight when SIGTERM comes gets its answer, as long as it stays within
/// `request_timeout_secs`: the stop waits that long for it (here 8 s; a stop that waited
/// a fixed 6 s cut such a request off unanswered, one still committing included). This
/// one is still uploading, so it is answered 503 and nothing of it is stored; the sender
/// retries it elsewhere or later.
#[tokio::test]
async fn a_push_in_flight_at_sigterm_is_answered_within_its_request_timeout() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let toml =
        server_toml(dir.path()).replace("[server]\n", "[server]\nrequest_timeout_secs = 8\n");
    let mut server = BinaryServer::start(&write_config(dir.path(), &toml));
    let body = seed_bytes("delivered");
    let (head, tail) = body.split_at(body.len() / 2);
    let mut conn = std::net::TcpStream::connect(server.addr).unwrap();
    write!(
        conn,
        "POST /webhook HTTP/1.1\r\nHost: innohook\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(head).unwrap();
    let started = Instant::now();
    // The server has the request's head before it is told to stop.
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    // The rest of the body, 6.5 s into the request: past the old fixed grace, within the
    // request's own timeout.
    std::thread::sleep(Duration::from_millis(6500).saturating_sub(started.elapsed()));
    conn.write_all(tail).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("nothing was stored"),
        "answered: {answer:?}"
    );
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let store = open_store(&dir.path().join("store")).await;
    assert_eq!(
        store.count_events().await.unwrap(),
        0,
        "answered 503, not stored"
    );
}

/// SIGTERM while 16 senders post: exit 0 within the 10 s promised, every event answered
/// 200 in the store, and the WAL checkpointed into the database (its file empty or gone:
/// `innohook.db` alone holds the store, as a file copy after a stop expects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_with_every_200_stored_and_the_wal_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &server_toml(dir.path()));
    let mut server = BinaryServer::start(&path);
    let (acked, senders) = send_until_refused(server.addr, 16);
    poll_until("300 events answered 200", 60, async || {
        (acked.lock().unwrap().len() >= 300).then_some(())
    })
    .await;
    let sent = Instant::now();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    for s in senders {
        s.await.unwrap();
    }
    let store = dir.path().join("store");
    let wal = std::fs::metadata(store.join("innohook.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the WAL still holds {wal} bytes");
    // The database file alone, without the WAL beside it, holds every acknowledged event.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(store.join("innohook.db"), copy.path().join("innohook.db")).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert_all_stored(copy.path(), &acked).await;
}

/// Every message in `acked` has an event in the store in `dir`.
async fn assert_all_stored(dir: &std::path::Path, acked: &[String]) {
    let stored: HashSet<String> = open_store(dir)
        .await
        .events_after(0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.message_id)
        .collect();
    let lost: Vec<_> = acked.iter().filter(|m| !stored.contains(*m)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost: {lost:?}",
        lost.len(),
        acked.len()
    );
}

/// `senders` tasks posting new status events to the server at `addr` until one is not
/// answered 200; the message ids answered 200.
fn send_until_refused(
    addr: std::net::SocketAddr,
    senders: usize,
) -> (Arc<Mutex<Vec<String>>>, Vec<tokio::task::JoinHandle<()>>) {
    let url = format!("http://{addr}/webhook");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let tasks = (0..senders)
        .map(|s| {
            let (url, acked) = (url.clone(), acked.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in 0..100_000 {
                    let message = format!("m-{s}-{i}");
                    let event = status_event(&format!("e-{s}-{i}"), &message, "read");
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(event.to_string())
                        .send()
                        .await;
                    match sent {
                        Ok(res) if res.status() == 200 => acked.lock().unwrap().push(message),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    (acked, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_answered_200_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &server_toml(dir.path()));
    let server = BinaryServer::start(&path);
    let (acked, senders) = send_until_refused(server.addr, 16);
    poll_until("300 events answered 200", 60, async || {
        (acked.lock().unwrap().len() >= 300).then_some(())
    })
    .await;
    server.kill();
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let server = BinaryServer::start(&path);
    assert_all_stored(&dir.path().join("store"), &acked).await;
    // And a redelivery of one of them is recognised after the restart.
    let (s, i) = acked[0].trim_start_matches("m-").split_once('-').unwrap();
    let res = server
        .post(status_event(&format!("again-{s}-{i}"), &acked[0], "read").to_string())
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "duplicate");
    server.kill();
}

#[test]
fn check_config_catches_sink_problems_and_innohook_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[sinks]]\ntype = \"file\"\npath = \"a.jsonl\"\n[[sinks]]\ntype = \"file\"\npath = \"b.jsonl\"\n",
            "more than one sink is named \"file\"",
        ),
        (
            "[[sinks]]\ntype = \"forward\"\nurl = \"ftp://x\"\n",
            "is not an http(s) URL",
        ),
        (
            "[[sinks]]\ntype = \"file\"\npath = \"a\"\nkeep = 0\n",
            "keep must be at least 1",
        ),
        ("[[sinks]]\ntype = \"file\"\npth = \"a\"\n", "pth"),
        (
            "[auth]\nauthorization = \"\"\n",
            "auth.authorization is set but empty",
        ),
        ("[log]\nlevel = \"loud=[\"\n", "log.level"),
        (
            "[server]\npath = \"/api/events\"\n",
            "is taken by innohook itself",
        ),
        (
            "[server]\npath = \"/metrics\"\n",
            "is taken by innohook itself",
        ),
        ("[server]\npath = \"/hook/{id}\"\n", "must not contain"),
        ("[server]\npath = \"/hooks/:id\"\n", "must not contain"),
        (
            "[server]\nrequest_timeout_secs = 0\n",
            "server.request_timeout_secs must be at least 1",
        ),
        (
            "[auth]\nusername = \"acme\"\n",
            "auth.username is set but auth.authorization is not",
        ),
    ];
    for (toml, says) in cases {
        let path = write_config(dir.path(), toml);
        let out = innohook()
            .arg("check-config")
            .env("INNOHOOK_CONFIG", &path)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(1), "{toml}: {text}");
        assert!(text.contains(says), "{toml}: expected {says:?} in {text}");
    }
}

#[test]
fn a_second_server_on_the_same_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &server_toml(dir.path()));
    let first = BinaryServer::start(&path);
    let out = innohook().arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("another innohook is already serving the store")
    );
    first.kill();
}

/// The store's directory deleted, or its database file replaced, while the server runs:
/// pushes get 503, never 200 for an event the next start would not find, `/readyz` says
/// 503, and the log says what happened.
#[tokio::test]
async fn a_store_deleted_or_replaced_while_running_answers_503_and_says_why() {
    for replace in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!("sinks = []\n{}", server_toml(dir.path()));
        let config = write_config(dir.path(), &toml);
        let server = BinaryServer::start(&config);
        let store = dir.path().join("store");
        let post = async |i: usize| {
            let event = status_event(&format!("e{i}"), &format!("m{i}"), "read");
            server.post(event.to_string()).await.status()
        };
        assert_eq!(post(1).await, 200);
        if replace {
            std::fs::copy(store.join("innohook.db"), dir.path().join("other.db")).unwrap();
            std::fs::rename(dir.path().join("other.db"), store.join("innohook.db")).unwrap();
        } else {
            std::fs::remove_dir_all(&store).unwrap();
        }
        assert_eq!(post(2).await, 503, "replaced: {replace}");
        let readyz = format!("http://{}/readyz", server.addr);
        poll_until("/readyz 503", 10, async || {
            let res = reqwest::get(&readyz).await.unwrap();
            (res.status() == 503).then_some(())
        })
        .await;
        assert!(
            server.logged("was deleted or replaced while innohook ran"),
            "replaced: {replace}"
        );
        server.kill();
        if !replace {
            // The next start opens a new store: event 2 is not there, and was never 200.
            let server = BinaryServer::start(&config);
            assert_eq!(open_store(&store).await.count_events().await.unwrap(), 0);
            server.kill();
        }
    }
}
