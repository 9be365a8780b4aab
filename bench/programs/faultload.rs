//! Load with a fault in the middle, for `bench/faults.sh`: posts unique status events
//! from many connections through three phases (before the fault, during it, after it
//! is cleared), then checks the promise: every event answered 200 is in the store
//! (asked through the status API), and answers came back to 200 by themselves.
//!
//! Usage: `faultload URL API_TOKEN FAULT_CMD CLEAR_CMD` (the commands run with `sh -c`).
//! Exits 1 when a check fails.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 32;
/// Load before the fault, and after the fault is cleared.
const PHASE: Duration = Duration::from_secs(4);
/// Load while the fault lasts (ends early once answers have been 503 for a while).
const FAULT_PHASE: Duration = Duration::from_secs(8);

#[derive(Default)]
struct Tally {
    /// Answers by phase and status code (0: no answer).
    codes: BTreeMap<(&'static str, u16), u64>,
    accepted: Vec<String>,
}

fn body(id: &str) -> String {
    format!(
        r#"{{"id":"e-{id}","type":"whatsapp_message_status_updated","eventTime":"2023-05-25T10:31:08.167Z","body":{{"id":"{id}","accountName":"1590","wabaId":"WABA","status":"delivered","uid":"faults","sendPhone":"6512","wamid":"wamid.{id}"}}}}"#
    )
}

async fn load(
    client: reqwest::Client,
    url: Arc<str>,
    phase: &'static str,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
    worker: usize,
) {
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let id = format!("{phase}-{worker}-{n}");
        let code = match client
            .post(&*url)
            .header("content-type", "application/json")
            .body(body(&id))
            .send()
            .await
        {
            Ok(res) => res.status().as_u16(),
            Err(_) => 0,
        };
        {
            let mut t = tally.lock().unwrap();
            *t.codes.entry((phase, code)).or_default() += 1;
            if code == 200 {
                t.accepted.push(id);
            }
        }
        if code != 200 {
            // A sender backs off on 503 (the answer carries Retry-After).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn phase(
    client: &reqwest::Client,
    url: &Arc<str>,
    name: &'static str,
    length: Duration,
    tally: &Arc<Mutex<Tally>>,
) {
    let until = Instant::now() + length;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|w| {
            tokio::spawn(load(
                client.clone(),
                url.clone(),
                name,
                until,
                tally.clone(),
                w,
            ))
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

fn sh(cmd: &str) {
    let status = std::process::Command::new("sh")
        .args(["-c", cmd])
        .status()
        .unwrap();
    assert!(status.success(), "`{cmd}` failed: {status}");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, token, fault, clear] = &args[..] else {
        eprintln!("usage: faultload URL API_TOKEN FAULT_CMD CLEAR_CMD");
        std::process::exit(2);
    };
    let url: Arc<str> = url.as_str().into();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let tally = Arc::new(Mutex::new(Tally::default()));

    phase(&client, &url, "before", PHASE, &tally).await;
    sh(fault);
    phase(&client, &url, "fault", FAULT_PHASE, &tally).await;
    sh(clear);
    phase(&client, &url, "after", PHASE, &tally).await;

    let t = std::mem::take(&mut *tally.lock().unwrap());
    for ((phase, code), n) in &t.codes {
        println!("{phase:>6}: {n:>7} answered {code}");
    }
    let mut failures = Vec::new();
    let count = |phase, code| t.codes.get(&(phase, code)).copied().unwrap_or(0);
    if count("fault", 503) == 0 {
        failures.push("no 503 while the fault lasted: the fault did not bite".to_owned());
    }
    let other_errors: u64 = t
        .codes
        .iter()
        .filter(|((_, code), _)| ![200, 503].contains(code))
        .map(|(_, n)| n)
        .sum();
    if other_errors > 0 {
        failures.push(format!("{other_errors} answers were neither 200 nor 503"));
    }
    if count("after", 200) > 0 {
        println!(
            "answers came back to 200 after the fault cleared ({} accepted in the {:?} after)",
            count("after", 200),
            PHASE
        );
    } else {
        failures.push(format!("no 200 in the {PHASE:?} after the fault cleared"));
    }

    // The promise: every 200 is in the store.
    let api = url.replace("/webhook", "/api/messages/");
    let mut missing = 0;
    for id in &t.accepted {
        let res = client
            .get(format!("{api}{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if res.status() != 200 {
            missing += 1;
            if missing <= 5 {
                eprintln!("answered 200 but not in the store: {id}");
            }
        }
    }
    println!(
        "{} events answered 200; {missing} of them missing from the store",
        t.accepted.len()
    );
    if missing > 0 {
        failures.push(format!(
            "{missing} events answered 200 are not in the store"
        ));
    }
    if failures.is_empty() {
        println!("faults: ok");
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        std::process::exit(1);
    }
}
