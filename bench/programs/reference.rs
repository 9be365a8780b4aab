//! A point of comparison for `bench/run.sh`: the straightforward receiver issue 6 quotes,
//! not a product. POST /webhook reads the envelope into a typed struct (id, type,
//! body.id, body.status), hands it to a writer thread that commits every queued event in
//! one go, and answers 200 after the commit. No auth, no warnings, no tracking, no
//! dead letters, no metrics, no sinks.
//!
//! Two commit points, to show what the store alone costs on this machine:
//! - `sqlite`: one table (`seq`, unique `id`, `body`), WAL, `synchronous = FULL`, one
//!   transaction per batch, as innohook's store but without its columns and indexes;
//! - `log`: the bodies appended to one file, one `fdatasync` per batch: the least a
//!   durable receiver can do per batch.
//!
//! Usage: `reference ADDR DIR sqlite|log [LINGER_MICROS]`. With a linger, a batch of
//! fewer than 48 events waits that long once for more before committing (innohook waits
//! 250 µs).

use std::borrow::Cow;
use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
#[allow(dead_code)] // read to check the event, as a typed receiver would
struct Envelope<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    body: Body<'a>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Body<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
}

/// One accepted event on its way to the writer, and where to say it was committed.
struct Job {
    id: String,
    body: Bytes,
    done: oneshot::Sender<bool>,
}

enum Commit {
    Sqlite(rusqlite::Connection),
    Log(std::fs::File),
}

impl Commit {
    fn open(dir: &str, kind: &str) -> Commit {
        match kind {
            "sqlite" => {
                let conn = rusqlite::Connection::open(format!("{dir}/reference.db")).unwrap();
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                     CREATE TABLE IF NOT EXISTS events (
                         seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, body BLOB NOT NULL);",
                )
                .unwrap();
                Commit::Sqlite(conn)
            }
            "log" => Commit::Log(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(format!("{dir}/reference.log"))
                    .unwrap(),
            ),
            other => panic!("commit point {other:?}: expected sqlite or log"),
        }
    }

    /// Stores the batch durably; what it returns is each event's answer.
    fn commit(&mut self, batch: &[Job]) -> Vec<bool> {
        match self {
            Commit::Sqlite(conn) => {
                let tx = conn.transaction().unwrap();
                let stored = {
                    let mut insert = tx
                        .prepare_cached("INSERT OR IGNORE INTO events (id, body) VALUES (?1, ?2)")
                        .unwrap();
                    batch
                        .iter()
                        .map(|j| insert.execute((&j.id, &j.body[..])).is_ok())
                        .collect()
                };
                match tx.commit() {
                    Ok(()) => stored,
                    Err(_) => vec![false; batch.len()],
                }
            }
            Commit::Log(file) => {
                let mut buf = Vec::with_capacity(batch.iter().map(|j| j.body.len() + 1).sum());
                for job in batch {
                    buf.extend_from_slice(&job.body);
                    buf.push(b'\n');
                }
                let ok = file.write_all(&buf).and_then(|()| file.sync_data()).is_ok();
                vec![ok; batch.len()]
            }
        }
    }
}

fn writer(mut commit: Commit, mut rx: mpsc::UnboundedReceiver<Job>, linger: Option<Duration>) {
    let mut batch = Vec::new();
    while let Some(job) = rx.blocking_recv() {
        batch.push(job);
        while let Ok(job) = rx.try_recv() {
            batch.push(job);
        }
        if let Some(linger) = linger.filter(|_| batch.len() < 48) {
            std::thread::sleep(linger);
            while let Ok(job) = rx.try_recv() {
                batch.push(job);
            }
        }
        let answers = commit.commit(&batch);
        for (job, ok) in batch.drain(..).zip(answers) {
            let _ = job.done.send(ok);
        }
    }
}

async fn webhook(State(tx): State<mpsc::UnboundedSender<Job>>, body: Bytes) -> Response {
    let id = match serde_json::from_slice::<Envelope<'_>>(&body) {
        Ok(envelope) => envelope.id.into_owned(),
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let (done, committed) = oneshot::channel();
    if tx.send(Job { id, body, done }).is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match committed.await {
        // The baseline's answer, byte for byte.
        Ok(true) => (
            [("content-type", "application/json")],
            r#"{"status":"accepted"}"#,
        )
            .into_response(),
        _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, dir, kind, rest @ ..] = &args[..] else {
        panic!("usage: reference ADDR DIR sqlite|log [LINGER_MICROS]");
    };
    let linger = rest
        .first()
        .map(|us| Duration::from_micros(us.parse().expect("LINGER_MICROS is a number")));
    let commit = Commit::open(dir, kind);
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || writer(commit, rx, linger));
    // The same runtime shape as innohook's and the baseline's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = Router::new()
            .route("/webhook", post(webhook))
            .with_state(tx);
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}
