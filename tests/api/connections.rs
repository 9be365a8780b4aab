//! Connections a public port must survive: silent ones, ones trickling their headers, idle
//! ones, too many at once, and a process out of file descriptors. Each server runs as a
//! process of its own, so that its connections and descriptors are its own.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// A directory for a server's store, in memory where the machine has /dev/shm: these
/// tests are about connections, and an fsync behind the other tests' writes can take
/// longer than the second a push is given here.
fn store_dir() -> tempfile::TempDir {
    match std::path::Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    }
}

/// A server as a process, with `server_keys` added to its `[server]` table and `extra`
/// tables after the rest.
fn server(dir: &std::path::Path, server_keys: &str, extra: &str) -> BinaryServer {
    let toml = format!("sinks = []\n{}{extra}", server_toml(dir)).replacen(
        "[server]\n",
        &format!("[server]\n{server_keys}"),
        1,
    );
    BinaryServer::start(&write_config(dir, &toml))
}

/// Waits until the peer closes `stream` (EOF or reset), at most `within`; how long it took.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection is still open after {within:?}"),
        }
    }
}

/// One kept-alive HTTP/1.1 connection, for requests that must not open another (a
/// pooling client may open a new one while the last answer is being put back).
struct KeptAlive {
    stream: TcpStream,
}

impl KeptAlive {
    async fn open(addr: std::net::SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }

    /// Sends a request and reads its answer: the status and the body.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> (u16, String) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        );
        self.stream.write_all(head.as_bytes()).await.unwrap();
        self.stream.write_all(body).await.unwrap();
        let mut got = Vec::new();
        let (status, start, length) = read_head(&mut self.stream, &mut got).await;
        let mut buf = [0u8; 4096];
        while got.len() < start + length {
            let n = self.stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed in the middle of an answer");
            got.extend_from_slice(&buf[..n]);
        }
        (
            status,
            String::from_utf8_lossy(&got[start..start + length]).into_owned(),
        )
    }

    async fn get(&mut self, path: &str) -> (u16, String) {
        self.send("GET", path, "", b"").await
    }
}

/// Reads an answer's head into `got` (with what came after it): its status, where its
/// body starts in `got`, and the body's length.
async fn read_head(stream: &mut TcpStream, got: &mut Vec<u8>) -> (u16, usize, usize) {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let status = head[9..12].parse().unwrap();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a content-length")
                .parse::<usize>()
                .unwrap();
            return (status, end + 4, length);
        }
    }
}

/// 300 connections that send nothing and 100 that send their headers a byte at a time
/// are all closed within the header timeout (2 s here, plus a margin for a busy
/// machine), while a client posting events gets each answered within a second. A
/// connection idle after an answer is closed after the idle timeout (3 s), not the header
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_connections_are_closed_in_time_while_pushes_are_served() {
    raise_open_files_limit();
    let dir = store_dir();
    let server = server(
        dir.path(),
        "header_timeout_secs = 2\nidle_timeout_secs = 3\n",
        "",
    );
    let addr = server.addr;
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let trickling: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let started = Instant::now();
                s.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .await
                    .unwrap();
                let mut buf = [0u8; 1024];
                loop {
                    tokio::select! {
                        read = s.read(&mut buf) => match read {
                            Ok(0) | Err(_) => return started.elapsed(),
                            Ok(_) => {}
                        },
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {
                            if s.write_all(b"a").await.is_err() {
                                return started.elapsed();
                            }
                        }
                    }
                    assert!(started.elapsed() < Duration::from_secs(10), "still open");
                }
            })
        })
        .collect();

    let client = reqwest::Client::new();
    for i in 0..20 {
        let event = status_event(&format!("e{i}"), &format!("m{i}"), "read");
        let sent = Instant::now();
        let res = client
            .post(format!("http://{addr}/webhook"))
            .header("content-type", "application/json")
            .body(event.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "{:?}",
            sent.elapsed()
        );
    }

    let bound = Duration::from_secs(2 + 3);
    for s in &mut silent {
        closed_within(s, bound.saturating_sub(opened.elapsed())).await;
    }
    for t in trickling {
        let took = t.await.unwrap();
        assert!(took < bound, "a trickling connection lasted {took:?}");
    }

    // Idle after an answer: the idle timeout, not the header timeout.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut served = Vec::new();
    while !served.ends_with(br#""ok"}"#) {
        let mut buf = [0u8; 1024];
        let n = kept.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        served.extend_from_slice(&buf[..n]);
    }
    let idle = closed_within(&mut kept, Duration::from_secs(3 + 3)).await;
    assert!(idle > Duration::from_millis(2500), "closed after {idle:?}");

    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let timed_out = |phase: &str| {
        metric(
            &metrics,
            &format!("innohook_connections_timed_out_total{{phase=\"{phase}\"}}"),
        )
    };
    assert!(timed_out("header") >= 400.0, "{metrics}");
    assert!(timed_out("idle") >= 1.0, "{metrics}");
}

/// With `max_connections` open, a further connection waits, and `/readyz` (asked on a
/// connection already open) says why it is not ready, with a log line and a metric; once
/// connections close, the waiting one is served and `/readyz` is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_new_ones_wait_and_readyz_says_why() {
    let dir = store_dir();
    let server = server(
        dir.path(),
        "max_connections = 8\nheader_timeout_secs = 60\n",
        "",
    );
    // One kept-alive connection, used for every request below.
    let mut kept = KeptAlive::open(server.addr).await;
    assert_eq!(kept.get("/readyz").await.0, 200);
    let mut silent = Vec::new();
    for _ in 0..7 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut waiting = TcpStream::connect(server.addr).await.unwrap();
    let body = poll_until("/readyz 503", 10, async || {
        let (status, body) = kept.get("/readyz").await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("max_connections"), "{body}");
    // The open connection still takes pushes.
    let pushed = kept
        .send(
            "POST",
            "/webhook",
            "Content-Type: application/json\r\n",
            &seed_bytes("read"),
        )
        .await;
    assert_eq!(pushed.0, 200, "{pushed:?}");
    let metrics = kept.get("/metrics").await.1;
    assert!(metric(&metrics, "innohook_connections_limit_reached_total") >= 1.0);
    assert_eq!(metric(&metrics, "innohook_connections_open"), 8.0);
    assert!(server.logged("reached server.max_connections"));

    drop(silent);
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut served = String::new();
    waiting.read_to_string(&mut served).await.unwrap();
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    poll_until("/readyz 200", 10, async || {
        (kept.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
}

/// An answer larger than the socket's buffers is still being written after its handler
/// returned. A client that keeps reading it, however slowly, and has the next request's
/// head already sent behind it, gets all of it although that takes longer than both
/// timeouts; one that takes nothing of it for the idle timeout is closed (phase `write`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_read_slowly_is_not_cut_and_one_never_read_is() {
    let dir = store_dir();
    let server = server(
        dir.path(),
        "header_timeout_secs = 1\nidle_timeout_secs = 2\nmax_body_bytes = 2097152\n",
        "[api]\ntoken = \"t\"\n",
    );
    let client = reqwest::Client::new();
    for i in 0..8 {
        let mut event = status_event(&format!("e{i}"), &format!("m{i}"), "read");
        event["body"]["padding"] = "x".repeat(1_500_000).into();
        let res = client
            .post(format!("http://{}/webhook", server.addr))
            .header("content-type", "application/json")
            .body(event.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let ask = async || {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        let mut stream = socket.connect(server.addr).await.unwrap();
        // The answer's request, and the start of the next one's head behind it.
        stream
            .write_all(b"GET /api/events?limit=8 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\nGET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        stream
    };

    // Read slowly: about 4 s for 12 MB, against timeouts of 1 and 2 s.
    let mut slow = ask().await;
    let started = Instant::now();
    let mut got = Vec::new();
    let (status, body_start, length) = read_head(&mut slow, &mut got).await;
    assert_eq!(status, 200);
    let answer_len = body_start + length;
    assert!(answer_len > 12_000_000, "{answer_len}");
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < answer_len {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = slow.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed after {:?} and {} of {answer_len} bytes",
            started.elapsed(),
            got.len()
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        started.elapsed() > Duration::from_secs(3),
        "read too fast to show anything: {:?}",
        started.elapsed()
    );
    let page: Value = serde_json::from_slice(&got[body_start..answer_len]).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 8);

    // Never read: closed once the answer has been stuck for the idle timeout.
    let never = ask().await;
    let metrics = poll_until("a connection closed in phase write", 10, async || {
        let text = client
            .get(format!("http://{}/metrics", server.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (metric(
            &text,
            "innohook_connections_timed_out_total{phase=\"write\"}",
        ) >= 1.0)
            .then_some(text)
    })
    .await;
    assert_eq!(
        metric(
            &metrics,
            "innohook_connections_timed_out_total{phase=\"write\"}"
        ),
        1.0
    );
    drop(never);
}

/// Run with an open-file limit of 48 (soft 40), the server raises the soft limit to the
/// hard one and logs it. Flooded with connections until accepting fails for lack of
/// descriptors, it backs off rather than spinning (its CPU time over two seconds stays
/// small), counts the failures in a metric, `/readyz` and a query that needs a file say
/// why with 503 rather than a bare 500, and once the flood is gone it serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_server_backs_off_and_says_so() {
    let dir = store_dir();
    // Flood connections stay until the test is done with them.
    let toml = format!(
        "sinks = []\n{}[api]\ntoken = \"t\"\n",
        server_toml(dir.path())
    )
    .replacen("[server]\n", "[server]\nheader_timeout_secs = 60\n", 1);
    let mut command = innohook();
    command.arg("--config").arg(write_config(dir.path(), &toml));
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 40,
                rlim_max: 48,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let server = BinaryServer::start_command(command);
    let raised = server
        .log_lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Open-file limit"))
        })
        .expect("the open-file limit is logged");
    assert_eq!(
        (
            raised["open_files"].as_u64(),
            raised["raised_from"].as_u64()
        ),
        (Some(48), Some(40))
    );

    let mut kept = KeptAlive::open(server.addr).await;
    assert_eq!(kept.get("/readyz").await.0, 200);
    // Connections for queries at once: the store keeps an idle reader, so only a query
    // beside another needs a file of its own.
    let mut askers = Vec::new();
    for _ in 0..6 {
        let mut asker = KeptAlive::open(server.addr).await;
        assert_eq!(asker.get("/healthz").await.0, 200);
        askers.push(asker);
    }
    let mut flood = Vec::new();
    for _ in 0..60 {
        flood.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let body = poll_until("/readyz 503", 10, async || {
        let (status, body) = kept.get("/readyz").await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("file descriptors"), "{body}");
    // Queries at once: those that need a reader of their own say why they cannot have
    // one, and none answers a bare 500.
    let body = poll_until("a query answering 503", 10, async || {
        let answers = futures_util::future::join_all(
            askers
                .iter_mut()
                .map(|a| a.send("GET", "/api/batches/b1", "Authorization: Bearer t\r\n", b"")),
        )
        .await;
        for (status, body) in &answers {
            assert!(matches!(status, 404 | 503), "{status} {body}");
        }
        answers.into_iter().find(|(s, _)| *s == 503).map(|(_, b)| b)
    })
    .await;
    assert!(body.contains("file descriptors"), "{body}");

    let cpu_ticks = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = cpu_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_ticks() - before;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(
        spent < hz / 2,
        "{spent} ticks of CPU in 2 s while out of descriptors"
    );
    let metrics = kept.get("/metrics").await.1;
    assert!(
        metric(
            &metrics,
            "innohook_accept_errors_total{reason=\"open_files\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(server.logged("out of file descriptors"));

    drop(flood);
    poll_until("/readyz 200", 15, async || {
        (kept.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    let pushed = reqwest::Client::new()
        .post(format!("http://{}/webhook", server.addr))
        .header("content-type", "application/json")
        .body(seed_bytes("read"))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 200);
}

/// An HTTP/1.1 request without `Host` is answered 400 (RFC 9112 section 3.2), the
/// webhook's too, and nothing is stored; HTTP/1.0 needs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_request_without_host_is_answered_400() {
    let app = spawn_app().await;
    let addr = app.url("").trim_start_matches("http://").to_owned();
    let body = status_event("e1", "m1", "read").to_string();
    for (request, want) in [
        ("GET /healthz HTTP/1.1\r\n\r\n".to_owned(), 400),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            400,
        ),
        ("GET /healthz HTTP/1.0\r\n\r\n".to_owned(), 200),
        ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), 200),
    ] {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let (status, start, length) = read_head(&mut stream, &mut got).await;
        assert_eq!(status, want, "{request}");
        if want == 400 {
            let mut buf = [0u8; 4096];
            while got.len() < start + length {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            let answer = String::from_utf8_lossy(&got[start..]).into_owned();
            assert!(answer.contains("missing_host"), "{answer}");
        }
    }
    assert_eq!(app.stored().await, 0, "nothing stored without Host");
}
