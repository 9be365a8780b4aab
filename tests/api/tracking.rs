//! Message status tracking and the query API, checked against an independent computation
//! over shuffled, duplicated event sequences.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "query-token-1";

async fn api_app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.api.token = Some(TOKEN.into());
    config.sinks.clear();
    TestApp::spawn(config, dir).await
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    answer(app.get_with_token(TOKEN, path).await).await
}

/// One status event of a message, as InnoPaaS would send it.
fn event(
    env_id: &str,
    msg: &str,
    uid: &str,
    status: &str,
    minute: u32,
    code: Option<&str>,
) -> Value {
    let mut v = json!({
        "id": env_id,
        "type": "whatsapp_message_status_updated",
        "eventTime": format!("2023-05-25T10:{minute:02}:00.000Z"),
        "body": {
            "id": msg, "accountName": "acct", "wabaId": "waba", "status": status,
            "wamid": format!("wamid.{msg}"), "sendPhone": "6512345", "uid": uid
        }
    });
    if let Some(code) = code {
        v["body"]["errorData"] =
            json!({"errorCode": code, "errorMessage": format!("error {code}")});
    }
    if status == "delivered" {
        v["body"]["conversation"] = json!({"id": "c1", "initiateType": "business_initiated", "expireAt": "2023-05-26 10:00:00"});
    }
    v
}

/// What a message should end up as, worked out case by case (not with the server's ranking).
#[derive(Debug, Default, Clone)]
struct Expected {
    statuses: BTreeMap<String, u32>,
    error: Option<String>,
}

impl Expected {
    fn current(&self) -> &str {
        let has = |s: &str| self.statuses.contains_key(s);
        if has("failed") {
            "failed"
        } else if has("SMECL:FAILED") {
            "SMECL:FAILED"
        } else if has("read") {
            "read"
        } else if has("delivered") {
            "delivered"
        } else {
            self.statuses.keys().next().unwrap()
        }
    }
    fn conflict(&self) -> bool {
        let has = |s: &str| self.statuses.contains_key(s);
        (has("failed") || has("SMECL:FAILED")) && (has("delivered") || has("read"))
    }
    fn bucket(&self) -> &str {
        match self.current() {
            "failed" | "SMECL:FAILED" => "failed",
            "read" => "read",
            "delivered" => "delivered",
            _ => "other",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_duplicated_statuses_end_as_an_independent_computation_says() {
    let app = Arc::new(api_app().await);
    let mut rng = fastrand::Rng::with_seed(7);
    let scenarios: &[&[&str]] = &[
        &["delivered"],
        &["delivered", "read"],
        &["read"],
        &["failed"],
        &["SMECL:FAILED"],
        &["delivered", "read", "failed"],
        &["sent"],
        &["sent", "delivered"],
        &["SMECL:FAILED", "failed"],
    ];
    let codes = ["131014", "131026", "470"];
    let mut expected: BTreeMap<String, (String, Expected)> = BTreeMap::new();
    let mut events = Vec::new();
    for m in 0..240 {
        let msg = format!("m{m:03}");
        let uid = format!("batch-{}", m % 6);
        let mut exp = Expected::default();
        for (i, status) in scenarios[rng.usize(..scenarios.len())].iter().enumerate() {
            let minute = (m % 40) as u32 + i as u32 * 5;
            let code = matches!(*status, "failed" | "SMECL:FAILED")
                .then(|| codes[rng.usize(..codes.len())]);
            if *status == "failed" || (exp.error.is_none() && code.is_some()) {
                exp.error = code.map(str::to_owned);
            }
            exp.statuses.insert(status.to_string(), minute);
            let e = event(
                &format!("e-{msg}-{status}"),
                &msg,
                &uid,
                status,
                minute,
                code,
            );
            // Some redeliveries, some with another envelope id.
            if rng.u8(..10) < 3 {
                let mut again = e.clone();
                if rng.bool() {
                    again["id"] = format!("retry-{msg}-{status}").into();
                }
                events.push(again);
            }
            events.push(e);
        }
        expected.insert(msg, (uid, exp));
    }
    rng.shuffle(&mut events);

    let events = Arc::new(events);
    let mut senders = Vec::new();
    for s in 0..16 {
        let (app, events) = (app.clone(), events.clone());
        senders.push(tokio::spawn(async move {
            for e in events.iter().skip(s).step_by(16) {
                assert_eq!(app.post(e.to_string()).await.status(), 200);
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }

    let minute = |m: u32| format!("2023-05-25T10:{m:02}:00.000Z");
    let mut batches: BTreeMap<String, Vec<&Expected>> = BTreeMap::new();
    for (msg, (uid, exp)) in &expected {
        let (status, got) = get(&app, &format!("/api/messages/{msg}")).await;
        assert_eq!(status, 200, "{msg}");
        assert_eq!(got["status"], exp.current(), "{msg}: {got}");
        assert_eq!(got["conflict"], exp.conflict(), "{msg}");
        let reached: BTreeMap<String, String> = exp
            .statuses
            .iter()
            .map(|(s, m)| (s.clone(), minute(*m)))
            .collect();
        assert_eq!(got["statuses"], json!(reached), "{msg}");
        assert_eq!(
            got["error"]["code"].as_str(),
            exp.error.as_deref(),
            "{msg}: {got}"
        );
        assert_eq!(got["uid"], uid.as_str());
        assert_eq!(
            got["conversation"]["initiateType"].as_str(),
            exp.statuses
                .contains_key("delivered")
                .then_some("business_initiated")
        );
        batches.entry(uid.clone()).or_default().push(exp);
    }
    for (uid, msgs) in &batches {
        let (status, b) = get(&app, &format!("/api/batches/{uid}")).await;
        assert_eq!(status, 200);
        let count = |bucket: &str| msgs.iter().filter(|e| e.bucket() == bucket).count();
        assert_eq!(b["messages"], msgs.len(), "{uid}");
        for bucket in ["delivered", "read", "failed", "other"] {
            assert_eq!(b[bucket], count(bucket), "{uid} {bucket}: {b}");
        }
        let rate = count("read") as f64 / msgs.len() as f64;
        assert!((b["readRate"].as_f64().unwrap() - rate).abs() < 1e-9);
        let mut by_code: BTreeMap<&str, usize> = BTreeMap::new();
        for e in msgs.iter().filter_map(|e| e.error.as_deref()) {
            *by_code.entry(e).or_default() += 1;
        }
        let got: BTreeMap<&str, usize> = b["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["errorCode"].as_str().unwrap(),
                    f["messages"].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert_eq!(got, by_code, "{uid}");
        let first = msgs.iter().flat_map(|e| e.statuses.values()).min().unwrap();
        let last = msgs.iter().flat_map(|e| e.statuses.values()).max().unwrap();
        assert_eq!(
            (
                b["firstEventAt"].as_str().unwrap(),
                b["lastEventAt"].as_str().unwrap()
            ),
            (minute(*first).as_str(), minute(*last).as_str())
        );
    }

    // The command line gives the same answers.
    let config = write_config(
        app.dir.path(),
        &format!("[store]\ndir = {:?}\n", app.config.store.dir),
    );
    let out = innohook()
        .args(["batch", "batch-0", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli, get(&app, "/api/batches/batch-0").await.1);
    let out = innohook()
        .args(["status", "m000", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli, get(&app, "/api/messages/m000").await.1);
}

/// When a message's events disagree on its identity (InnoPaaS's own delivered and read
/// examples carry different wamids), the fields come from one event whatever the order:
/// the highest status among those with a uid. Every order of three events ends the same,
/// in the message, in the wamid lookup and in the batch counts.
#[tokio::test]
async fn a_message_whose_events_disagree_gets_the_same_identity_in_any_order() {
    let app = api_app().await;
    // (status, uid): read carries no uid; sent ranks lowest. delivered is the one.
    let events = [
        ("sent", Some("b-left")),
        ("delivered", Some("b-kept")),
        ("read", None),
    ];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for (n, order) in orders.iter().enumerate() {
        let msg = format!("p{n}");
        for (minute, &i) in order.iter().enumerate() {
            let (status, uid) = events[i];
            let mut e = event(
                &format!("e-{msg}-{status}"),
                &msg,
                "",
                status,
                minute as u32,
                None,
            );
            e["body"]["wamid"] = format!("w-{status}-{msg}").into();
            e["body"]["accountName"] = format!("acct-{status}").into();
            match uid {
                Some(uid) => e["body"]["uid"] = uid.into(),
                None => drop(e["body"].as_object_mut().unwrap().remove("uid")),
            }
            assert_eq!(app.post(e.to_string()).await.status(), 200);
        }
    }
    for (n, order) in orders.iter().enumerate() {
        let msg = format!("p{n}");
        let (status, got) = get(&app, &format!("/api/messages/{msg}")).await;
        assert_eq!(status, 200);
        assert_eq!(
            (
                got["status"].as_str(),
                got["wamid"].as_str(),
                got["uid"].as_str(),
                got["accountName"].as_str()
            ),
            (
                Some("read"),
                Some(format!("w-delivered-{msg}").as_str()),
                Some("b-kept"),
                Some("acct-delivered")
            ),
            "order {order:?}"
        );
        let (status, found) = get(&app, &format!("/api/messages?wamid=w-delivered-{msg}")).await;
        assert_eq!(
            (status, found["messages"][0]["id"].as_str()),
            (200, Some(msg.as_str()))
        );
        for other in ["sent", "read"] {
            let path = format!("/api/messages?wamid=w-{other}-{msg}");
            assert_eq!(get(&app, &path).await.0, 404, "{path}");
        }
    }
    let (_, kept) = get(&app, "/api/batches/b-kept").await;
    assert_eq!(
        (kept["messages"].as_u64(), kept["read"].as_u64()),
        (Some(6), Some(6)),
        "{kept}"
    );
    // Messages passed through b-left in some orders and not in others; it ends unknown.
    assert_eq!(get(&app, "/api/batches/b-left").await.0, 404);
    assert_eq!(get(&app, "/api/batches/b-left/messages.csv").await.0, 404);
}

#[tokio::test]
async fn the_api_needs_its_token_and_says_404_for_what_it_has_not_seen() {
    let app = api_app().await;
    app.post(event("e1", "m1", "b1", "read", 1, None).to_string())
        .await;
    for token in [None, Some("wrong"), Some("query-token-")] {
        let mut req = app.client.get(app.url("/api/messages/m1"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        assert_eq!(answer(res).await.0, 401, "{token:?}");
    }
    assert_eq!(get(&app, "/api/messages/m1").await.0, 200);
    // The scheme is case-insensitive; another scheme is not a bearer token.
    for (header, expected) in [
        (format!("bearer {TOKEN}"), 200),
        (format!("Basic {TOKEN}"), 401),
    ] {
        let res = app
            .client
            .get(app.url("/api/messages/m1"))
            .header("authorization", &header)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected, "{header}");
    }
    // Two Authorization headers are ambiguous, even when the first one is right.
    let res = app
        .client
        .get(app.url("/api/messages/m1"))
        .bearer_auth(TOKEN)
        .header("authorization", "Bearer other")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let (status, body) = get(&app, "/api/messages/nope").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    assert_eq!(get(&app, "/api/batches/nope").await.0, 404);
    assert_eq!(get(&app, "/api/batches/nope/messages.csv").await.0, 404);
    assert_eq!(get(&app, "/api/messages?wamid=wamid.nope").await.0, 404);
    let (status, found) = get(&app, "/api/messages?wamid=wamid.m1").await;
    assert_eq!(
        (status, found["messages"][0]["id"].as_str()),
        (200, Some("m1"))
    );
    assert_eq!(get(&app, "/api/events?limit=0").await.0, 400);
    assert_eq!(get(&app, "/api/events?since=yesterday").await.0, 400);

    // Without a token the API does not exist at all.
    let plain = spawn_app().await;
    let res = plain
        .client
        .get(plain.url("/api/messages/m1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn event_pages_return_every_event_exactly_once() {
    let app = api_app().await;
    for i in 0..53 {
        let status = if i % 4 == 0 { "failed" } else { "read" };
        let code = (status == "failed").then_some("131014");
        app.post(event(&format!("e{i}"), &format!("m{i}"), "b", status, 1, code).to_string())
            .await;
    }
    let all = fetch_all(&app, "").await;
    let seqs: Vec<i64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=53).collect::<Vec<_>>());
    assert_eq!(all[0].1["event"]["body"]["id"], "m0");
    let failed = fetch_all(&app, "&status=failed").await;
    assert_eq!(failed.len(), 14);
    assert!(failed.iter().all(|(_, e)| e["status"] == "failed"));
    assert_eq!(
        failed.iter().map(|(s, _)| *s).collect::<HashSet<_>>().len(),
        14
    );
    let future = fetch_all(&app, "&since=2999-01-01T00:00:00Z").await;
    assert!(future.is_empty());

    // received_at is stamped per commit and never goes back, so `since` (a binary search
    // over seq) returns exactly the events received at or after it.
    let received: Vec<String> = all
        .iter()
        .map(|(_, e)| e["receivedAt"].as_str().unwrap().to_owned())
        .collect();
    assert!(received.windows(2).all(|w| w[0] <= w[1]), "{received:?}");
    for since in [&received[0], &received[20], &received[52]] {
        let got: Vec<i64> = fetch_all(&app, &format!("&since={since}"))
            .await
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let want: Vec<i64> = all
            .iter()
            .filter(|(_, e)| e["receivedAt"].as_str().unwrap() >= since.as_str())
            .map(|(s, _)| *s)
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want, "since {since}");
    }
}

/// Every event of `/api/events?limit=7{query}`, following the cursor: (seq, event).
async fn fetch_all(app: &TestApp, query: &str) -> Vec<(i64, Value)> {
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = get(app, &format!("/api/events?limit=7{query}{cursor}")).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["seq"].as_i64().unwrap(), e.clone())),
        );
        match page["nextCursor"].as_i64() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return seen,
        }
    }
}

/// A write that fails inside a group commit has the commit redone write by write, with a
/// savepoint around each, so that it fails alone. Seen from outside: a burst from 32
/// senders with poisoned events among them (a trigger makes their insert fail). Each
/// poisoned one gets 503 and leaves nothing behind; each other one gets 200 and counts
/// once, in its batch and in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_event_in_a_burst_fails_alone_and_its_neighbours_count_once() {
    let app = Arc::new(api_app().await);
    let db = app.config.store.dir.join("innohook.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.message_id LIKE 'poison-%'
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        )
        .unwrap();
    const SENDERS: usize = 32;
    const EACH: usize = 20;
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..EACH {
                    let poisoned = i % 5 == 4;
                    let msg = format!("{}-{s}-{i}", if poisoned { "poison" } else { "m" });
                    let status = ["delivered", "read", "failed"][i % 3];
                    let code = (status == "failed").then_some("131026");
                    let body = event(&format!("e-{s}-{i}"), &msg, "burst", status, 1, code);
                    let res = app.post(body.to_string()).await;
                    answers.push((msg, status, poisoned, res.status().as_u16()));
                }
                answers
            })
        })
        .collect();
    let mut stored = BTreeMap::new();
    for sender in senders {
        for (msg, status, poisoned, code) in sender.await.unwrap() {
            assert_eq!(code, if poisoned { 503 } else { 200 }, "{msg}");
            if poisoned {
                assert_eq!(get(&app, &format!("/api/messages/{msg}")).await.0, 404);
            } else {
                stored.insert(msg, status);
            }
        }
    }
    assert_eq!(stored.len(), SENDERS * EACH * 4 / 5);
    assert_eq!(app.stored().await, stored.len() as i64);
    let count = |s: &str| stored.values().filter(|v| **v == s).count();
    let (status, batch) = get(&app, "/api/batches/burst").await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["messages"], stored.len());
    assert_eq!(batch["delivered"], count("delivered"));
    assert_eq!(batch["read"], count("read"));
    assert_eq!(batch["failed"], count("failed"));
    assert_eq!(batch["failures"][0]["messages"], count("failed"), "{batch}");
}

#[tokio::test]
async fn a_batch_downloads_as_csv_one_row_per_message() {
    let app = api_app().await;
    app.post(event("e1", "m1", "b9", "delivered", 1, None).to_string())
        .await;
    app.post(event("e2", "m1", "b9", "read", 2, None).to_string())
        .await;
    app.post(event("e3", "m2", "b9", "failed", 3, Some("131026")).to_string())
        .await;
    let res = app
        .client
        .get(app.url("/api/batches/b9/messages.csv"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let text = res.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0]
            .starts_with("messageId,wamid,sendPhone,status,deliveredAt,readAt,failedAt,errorCode")
    );
    assert!(lines[1].starts_with(
        "m1,wamid.m1,6512345,read,2023-05-25T10:01:00.000Z,2023-05-25T10:02:00.000Z,,"
    ));
    assert!(
        lines[2].contains(",failed,,,2023-05-25T10:03:00.000Z,131026,error 131026,false,"),
        "{}",
        lines[2]
    );
}

/// Values from the wire in `messages.csv` cannot run as formulas when an operator opens
/// the file in a spreadsheet (OWASP, CSV injection): a cell beginning with `=`, `+`, `-`,
/// `@`, a tab or a carriage return gets a leading `'`, unless it is a plain number (a
/// phone number, a negative error code). And a uid with a control character gets a
/// download with a safe file name, not a 500.
#[tokio::test]
async fn the_csv_neutralises_formulas_and_any_uid_gets_a_safe_file_name() {
    let app = api_app().await;
    let uid = "b\u{1}\"x";
    let mut hostile = event("e1", "@SUM(A1)", uid, "failed", 1, Some("-131026"));
    hostile["body"]["wamid"] = json!("=HYPERLINK(\"http://x\")");
    hostile["body"]["sendPhone"] = json!("+6512345678");
    hostile["body"]["errorData"]["errorMessage"] = json!("+cmd|' /C calc'!A0");
    let mut odd = event("e2", "m2", uid, "read", 2, None);
    odd["body"]["wamid"] = json!("-2+3");
    odd["body"]["sendPhone"] = json!("\t65");
    for e in [hostile, odd] {
        assert_eq!(app.post(e.to_string()).await.status(), 200);
    }
    let res = app
        .client
        .get(app.url("/api/batches/b%01%22x/messages.csv"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-disposition"],
        "attachment; filename=\"batch-b__x.csv\""
    );
    let text = res.text().await.unwrap();
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect();
    let cells = |row: &csv::StringRecord| -> Vec<String> {
        [0, 1, 2, 7, 8].iter().map(|&i| row[i].to_owned()).collect()
    };
    assert_eq!(
        cells(&rows[0]),
        [
            "'@SUM(A1)",
            "'=HYPERLINK(\"http://x\")",
            "+6512345678",
            "-131026",
            "'+cmd|' /C calc'!A0"
        ]
    );
    assert_eq!(cells(&rows[1]), ["m2", "'-2+3", "'\t65", "", ""]);
}
