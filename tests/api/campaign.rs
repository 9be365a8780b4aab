//! Campaign numbers: the send list meeting its status reports in any order, the batch's
//! `sent`, `noStatus`, `unconfirmed` and `deliveryRate`, the same words and values on the
//! dashboard as in the API, bad lists refused row by row, and the import command.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::dashboard::*;
use crate::helpers::*;

/// A listed send as the API takes it.
fn send(id: &str, m: usize, uid: &str, sent_at: &str) -> Value {
    json!({"id": id, "phone": format!("{}", 6_581_000_000u64 + m as u64), "uid": uid,
           "sentAt": sent_at, "template": "spring_promo"})
}

/// The same sends as CSV.
fn as_csv(sends: &[Value]) -> String {
    let mut out = String::from("id,phone,uid,sentAt,template\n");
    for s in sends {
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            s["id"].as_str().unwrap(),
            s["phone"].as_str().unwrap(),
            s["uid"].as_str().unwrap(),
            s["sentAt"].as_str().unwrap(),
            s["template"].as_str().unwrap()
        ));
    }
    out
}

async fn post_sends(app: &TestApp, sends: &[Value], csv: bool) -> (u16, Value) {
    let request = app.client.post(app.url("/api/sends")).bearer_auth(TOKEN);
    let request = match csv {
        true => request
            .header("content-type", "text/csv")
            .body(as_csv(sends)),
        false => request.json(&sends),
    };
    answer(request.send().await.unwrap()).await
}

async fn api(app: &TestApp, path: &str) -> (u16, Value) {
    answer(app.get_with_token(TOKEN, path).await).await
}

/// What the batch's send figures must be, worked out from the sets rather than by
/// innohook's rule: sent is what was listed or reported on.
struct Expected {
    sent: i64,
    no_status: i64,
    unconfirmed: i64,
    reached: i64,
}

/// A campaign of `n` (the dashboard tests' campaign), its send list (all but the first
/// five, which only their reports tell of), and 20 sends never reported on: ten sent long
/// ago, ten an hour ago. Posted as one stream, shuffled with `seed`: sends (in lists of
/// 1 to 9, as JSON or CSV) come before, between and after the status reports.
async fn shuffled_campaign(app: &TestApp, uid: &str, n: usize, seed: u64) -> Expected {
    let statuses = campaign(uid, n);
    let mut sends = Vec::new();
    for m in 5..n {
        sends.push(send(
            &format!("{uid}-m{m:03}"),
            m,
            uid,
            "2026-03-01T08:59:00Z",
        ));
    }
    let hour_ago = innohook::event::format_time(&(chrono::Utc::now() - chrono::Duration::hours(1)));
    for k in 0..20 {
        let at = if k < 10 {
            "2026-03-01T08:59:30Z"
        } else {
            hour_ago.as_str()
        };
        sends.push(send(&format!("{uid}-lost{k:02}"), 500 + k, uid, at));
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    rng.shuffle(&mut sends);
    enum Item {
        Status(Value),
        Sends(Vec<Value>),
    }
    let mut stream: Vec<Item> = statuses.iter().cloned().map(Item::Status).collect();
    let mut lists = Vec::new();
    let mut rest = sends.as_slice();
    while !rest.is_empty() {
        let (list, more) = rest.split_at(rng.usize(1..10).min(rest.len()));
        lists.push(Item::Sends(list.to_vec()));
        rest = more;
    }
    // One list first and one last; the others anywhere.
    let (head, tail) = (lists.remove(0), lists.pop().unwrap());
    stream.extend(lists);
    rng.shuffle(&mut stream);
    stream.insert(0, head);
    stream.push(tail);
    let (mut first, mut last) = (None, None);
    for (i, item) in stream.iter().enumerate() {
        match item {
            Item::Status(v) => {
                assert_eq!(app.post(v.to_string()).await.status(), 200);
                first.get_or_insert(i);
                last = Some(i);
            }
            Item::Sends(list) => {
                let (status, body) = post_sends(app, list, rng.bool()).await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["new"], list.len(), "{body}");
            }
        }
    }
    // The stream did put sends before, between and after the reports.
    let sends_at: Vec<usize> = stream
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i, Item::Sends(_)))
        .map(|(i, _)| i)
        .collect();
    let (first, last) = (first.unwrap(), last.unwrap());
    assert!(sends_at.iter().any(|&i| i < first));
    assert!(sends_at.iter().any(|&i| i > first && i < last));
    assert!(sends_at.iter().any(|&i| i > last));

    let reported: BTreeSet<String> = statuses
        .iter()
        .map(|v| v["body"]["id"].as_str().unwrap().to_owned())
        .collect();
    let listed: BTreeMap<String, String> = sends
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["sentAt"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let day_ago = chrono::Utc::now() - chrono::Duration::hours(24);
    let silent: Vec<&String> = listed.keys().filter(|id| !reported.contains(*id)).collect();
    let counts = campaign_counts(n);
    Expected {
        sent: reported.union(&listed.keys().cloned().collect()).count() as i64,
        no_status: silent.len() as i64,
        unconfirmed: silent
            .iter()
            .filter(|id| chrono::DateTime::parse_from_rfc3339(&listed[**id]).unwrap() < day_ago)
            .count() as i64,
        reached: counts["delivered"] + counts["read"],
    }
}

async fn check_figures(app: &TestApp, uid: &str, want: &Expected) -> Value {
    let (status, b) = api(app, &format!("/api/batches/{uid}")).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["sendList"], true);
    assert_eq!(b["sent"], want.sent, "{b}");
    assert_eq!(b["noStatus"], want.no_status, "{b}");
    assert_eq!(b["unconfirmed"], want.unconfirmed, "{b}");
    assert_eq!(b["reached"], want.reached, "{b}");
    let rate = b["deliveryRate"].as_f64().unwrap();
    assert!(
        (rate - want.reached as f64 / want.sent as f64).abs() < 1e-9,
        "{b}"
    );
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_list_figures_hold_whatever_order_sends_and_reports_come_in() {
    let app = app_with_dashboard("").await;
    for (uid, seed) in [("autumn", 1), ("winter", 2), ("spring", 3)] {
        let want = shuffled_campaign(&app, uid, 60, seed).await;
        assert_eq!((want.sent, want.no_status, want.unconfirmed), (80, 20, 10));
        check_figures(&app, uid, &want).await;
    }
    // The same list again changes nothing, and says so.
    let again = [send("autumn-m010", 10, "autumn", "2026-03-01T08:59:00Z")];
    let (_, body) = post_sends(&app, &again, false).await;
    assert_eq!(body, json!({"rows": 1, "new": 0, "known": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_list_figures_hold_on_postgres() {
    let Some(db) = crate::pg::TestDb::create("send_list_figures_hold_on_postgres").await else {
        return;
    };
    let app = app_with(|c| c.store = db.config()).await;
    let want = shuffled_campaign(&app, "pg-autumn", 60, 4).await;
    check_figures(&app, "pg-autumn", &want).await;
    let (status, csv) = unconfirmed_csv(&app, "pg-autumn").await;
    assert_eq!(status, 200);
    assert_eq!(csv.lines().count() as i64, 1 + want.unconfirmed, "{csv}");
}

async fn unconfirmed_csv(app: &TestApp, uid: &str) -> (u16, String) {
    api_text(app, &format!("/api/batches/{uid}/unconfirmed.csv")).await
}

/// An API answer that is not JSON (a CSV): its status and text.
async fn api_text(app: &TestApp, path: &str) -> (u16, String) {
    let res = app.get_with_token(TOKEN, path).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

/// A server with the API token, no sinks, and the configuration `tweak` makes.
async fn app_with(tweak: impl FnOnce(&mut innohook::config::Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.api.token = Some(TOKEN.into());
    config.sinks = Vec::new();
    tweak(&mut config);
    TestApp::spawn(config, dir).await
}

/// Every figure on the batch page is the API's figure of the same name: the page's
/// element `count-NAME` holds the API's `NAME`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_page_and_the_api_use_the_same_words_for_the_same_numbers() {
    let app = app_with_dashboard("").await;
    let want = shuffled_campaign(&app, "words", 60, 5).await;
    let b = check_figures(&app, "words", &want).await;
    let cookie = sign_in(&app).await;
    let (status, page) = get(&app, &cookie, "/ui/batches/words").await;
    assert_eq!(status, 200);
    let names = [
        "sent",
        "noStatus",
        "unconfirmed",
        "messages",
        "reached",
        "delivered",
        "read",
        "failed",
        "other",
        "replied",
    ];
    for name in names {
        assert_eq!(
            number_by_id(&page, &format!("count-{name}")),
            b[name].as_i64().unwrap(),
            "{name}"
        );
    }
    // Every count on the page is one of those.
    let on_page = page.matches("id=\"count-").count();
    assert_eq!(on_page, names.len(), "a figure the test does not compare");
    // The delivery rate's share, and the unconfirmed sends listed with their CSV.
    let rate = b["deliveryRate"].as_f64().unwrap();
    assert_eq!(
        text_by_id(&page, "pct-reached"),
        format!("{:.1}%", rate * 100.0)
    );
    assert!(page.contains("id=\"unconfirmed-sends\""));
    assert_eq!(page.matches("<code>words-lost").count(), 10);
    let (status, csv) = unconfirmed_csv(&app, "words").await;
    assert_eq!(status, 200);
    let mut rows: Vec<&str> = csv.lines().skip(1).collect();
    rows.sort();
    assert_eq!(rows.len(), 10);
    assert!(
        rows[0].starts_with("words-lost00,6581000500,words,2026-03-01T08:59:30.000Z,spring_promo")
    );

    // A batch without a send list says so, and has no send figures.
    for v in campaign("plain", 4) {
        assert_eq!(app.post(v.to_string()).await.status(), 200);
    }
    let (_, plain) = api(&app, "/api/batches/plain").await;
    assert_eq!(plain["sendList"], false);
    assert_eq!(plain["sent"], Value::Null);
    assert_eq!(plain["deliveryRate"], Value::Null);
    let (_, page) = get(&app, &cookie, "/ui/batches/plain").await;
    assert!(page.contains("id=\"no-send-list\""));
    assert!(!page.contains("id=\"count-sent\""));
}

/// A listed send whose reports carry no uid is still sent in its batch (and reached in
/// none: its reports name none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_send_reported_without_its_batch_still_counts_as_sent_in_it() {
    let app = app_with_dashboard("").await;
    let list = [
        send("x-1", 1, "x", "2026-03-01T08:00:00Z"),
        send("x-2", 2, "x", "2026-03-01T08:00:00Z"),
    ];
    assert_eq!(post_sends(&app, &list, false).await.0, 200);
    let with_uid = campaign_status("e1", "x-1", "x", "delivered", 1);
    let mut without = campaign_status("e2", "x-2", "x", "delivered", 1);
    without["body"].as_object_mut().unwrap().remove("uid");
    for v in [with_uid, without] {
        assert_eq!(app.post(v.to_string()).await.status(), 200);
    }
    let (_, b) = api(&app, "/api/batches/x").await;
    assert_eq!(
        (b["sent"].as_i64(), b["noStatus"].as_i64()),
        (Some(2), Some(0)),
        "{b}"
    );
    assert_eq!(
        (b["messages"].as_i64(), b["reached"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(b["deliveryRate"], 0.5);
}

/// One list at a time; a list that takes longer than a request may is answered 202 and
/// goes on until it is stored whole. (Another connection holds the database's write lock
/// for a while, as a command writing beside the server does, so that the import cannot
/// finish in time on any machine.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_import_is_answered_202_and_goes_on_one_at_a_time() {
    let app = app_with(|c| c.server.request_timeout_secs = 2).await;
    let list: Vec<Value> = (0..3000)
        .map(|m| send(&format!("big-{m:06}"), m, "big", "2026-03-01T08:00:00Z"))
        .collect();
    let db = app.dir.path().join("store").join("innohook.db");
    let (locked, release) = std::sync::mpsc::channel::<()>();
    let (is_locked, wait_locked) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut conn = rusqlite::Connection::open(db).unwrap();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        is_locked.send(()).unwrap();
        // Released after the answer, well within the server's 5 s busy timeout.
        let _ = release.recv_timeout(std::time::Duration::from_secs(3));
        tx.rollback().unwrap();
    });
    wait_locked.recv().unwrap();
    let (status, body) = post_sends(&app, &list, true).await;
    assert_eq!(status, 202, "{body}");
    assert!(body["stored"]["rows"].as_u64().unwrap() < 3000, "{body}");
    // Meanwhile another list waits its turn.
    let small = [send("small-1", 1, "small", "2026-03-01T08:00:00Z")];
    let (status, body) = post_sends(&app, &small, false).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("import_running"))
    );
    locked.send(()).unwrap();
    holder.join().unwrap();
    // The first goes on to the end by itself.
    poll_until("the whole list stored", 60, async || {
        let (_, b) = api(&app, "/api/batches/big").await;
        (b["sent"] == 3000).then_some(())
    })
    .await;
    poll_until("the next list taken", 30, async || {
        (post_sends(&app, &small, false).await.0 == 200).then_some(())
    })
    .await;
}

/// A batch known only from its send list has a page and a summary before any report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_known_only_from_its_send_list_is_found() {
    let app = app_with_dashboard("").await;
    let list: Vec<Value> = (0..3)
        .map(|m| send(&format!("early-m{m}"), m, "early", "2026-03-01T08:00:00Z"))
        .collect();
    assert_eq!(post_sends(&app, &list, true).await.0, 200);
    let (status, b) = api(&app, "/api/batches/early").await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(
        (b["messages"].as_i64(), b["sent"].as_i64()),
        (Some(0), Some(3))
    );
    assert_eq!(b["unconfirmed"], 3);
    assert_eq!(b["deliveryRate"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_send_list_is_refused_whole_naming_each_bad_row() {
    let app = app_with_dashboard("").await;
    let csv = "id,phone,uid,sentAt\nok-1,65,b,2026-03-01T08:00:00Z\nok-2,,b,2026-03-01T08:00:00Z\nok-3,65,b,last tuesday\n";
    let res = app
        .client
        .post(app.url("/api/sends"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let (status, body) = answer(res).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_send_list");
    assert_eq!(body["field"], "phone");
    assert_eq!(body["badRows"], 2);
    assert_eq!(body["problems"][0]["row"], 2);
    assert_eq!(body["problems"][1]["field"], "sentAt");
    // Nothing of it was stored: the good row is not known.
    assert!(app.store.send("ok-1").await.unwrap().is_none());
    // Without the token, nothing.
    let res = app
        .client
        .post(app.url("/api/sends"))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_command_reads_a_file_and_can_be_run_again() {
    let dir = tempfile::tempdir().unwrap();
    // The store a server made (the command works beside it, and does not make one).
    let made = innohook::config::StoreConfig {
        dir: dir.path().join("store"),
        ..Default::default()
    };
    let store = innohook::store::open(&made, innohook::store::Role::Server);
    store.await.unwrap().close().await;
    let config = write_config(
        dir.path(),
        &format!(
            "[store]\ndir = \"{}\"\n",
            dir.path().join("store").display()
        ),
    );
    let file = dir.path().join("sends.csv");
    let list: Vec<Value> = (0..1200)
        .map(|m| send(&format!("cli-m{m:04}"), m, "cli", "2026-03-01T08:00:00Z"))
        .collect();
    std::fs::write(&file, as_csv(&list)).unwrap();
    let run = || {
        innohook()
            .args(["--config", config.to_str().unwrap(), "sends", "import"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let said: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(said, json!({"rows": 1200, "new": 1200, "known": 0}));
    let again: Value = serde_json::from_slice(&run().stdout).unwrap();
    assert_eq!(again, json!({"rows": 1200, "new": 0, "known": 1200}));
    // The batch's summary counts them.
    let out = innohook()
        .args(["--config", config.to_str().unwrap(), "batch", "cli"])
        .output()
        .unwrap();
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["sent"], 1200);
    // A bad file: exit 1, the row named, nothing stored.
    std::fs::write(&file, "id,phone,uid,sentAt\nx,1,cli,never\n").unwrap();
    let bad = run();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("row 1, sentAt"));
}

/// A constructed batch: messages to India (91…), Jamaica (1876…), the US (1212…) and
/// Singapore (65…), in three conversation categories, one message later moved to another
/// category by a read that carried its own, and one failed without any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn category_counts_and_the_cost_estimate_are_right_for_a_constructed_batch() {
    use figment::providers::Format;
    let pricing = figment::Figment::from(figment::providers::Toml::string(
        r#"currency = "USD"
           [prices]
           business_initiated = 0.05
           customer_initiated = 0.01
           [prefixes.91]
           business_initiated = 0.002
           [prefixes.1876]
           business_initiated = 0.07
           [prefixes.1]
           customer_initiated = 0.02
        "#,
    ))
    .extract()
    .unwrap();
    let app = app_with(|c| c.pricing = pricing).await;
    // (phone, category of its delivered, category of its read if any)
    let messages: [(&str, Option<&str>, Option<&str>); 8] = [
        ("919800000001", Some("business_initiated"), None),
        ("919800000002", Some("business_initiated"), None),
        ("18765550001", Some("business_initiated"), None),
        ("12125550001", Some("business_initiated"), None),
        ("12125550002", Some("customer_initiated"), None),
        (
            "6581000001",
            Some("customer_initiated"),
            Some("business_initiated"),
        ),
        ("6581000002", Some("referral_conversion"), None),
        ("6581000003", None, None),
    ];
    for (m, (phone, delivered, read)) in messages.iter().enumerate() {
        let msg = format!("cost-m{m}");
        let mut events = Vec::new();
        match delivered {
            Some(category) => {
                let mut v = campaign_status(&format!("{msg}-d"), &msg, "costs", "delivered", 1);
                v["body"]["conversation"] =
                    json!({"id": format!("c{m}"), "initiateType": category});
                events.push(v);
            }
            None => events.push(campaign_status(
                &format!("{msg}-f"),
                &msg,
                "costs",
                "failed",
                1,
            )),
        }
        if let Some(category) = read {
            let mut v = campaign_status(&format!("{msg}-r"), &msg, "costs", "read", 2);
            v["body"]["conversation"] = json!({"id": format!("c{m}"), "initiateType": category});
            events.push(v);
        }
        // The read first: the category still comes from the higher status.
        events.reverse();
        for mut v in events {
            v["body"]["sendPhone"] = json!(phone);
            assert_eq!(app.post(v.to_string()).await.status(), 200);
        }
    }
    let (_, b) = api(&app, "/api/batches/costs").await;
    assert_eq!(
        b["categories"],
        json!([
            {"category": "business_initiated", "messages": 5},
            {"category": "customer_initiated", "messages": 1},
            {"category": "referral_conversion", "messages": 1},
        ]),
        "{b}"
    );
    // 2 × 0.002 (India) + 0.07 (Jamaica) + 0.05 (US, no business price for "1") + 0.05
    // (Singapore, moved to business by its read) + 0.02 (US customer-initiated); the
    // referral has no price.
    let want = 2.0 * 0.002 + 0.07 + 0.05 + 0.05 + 0.02;
    let cost = &b["cost"];
    assert!(
        (cost["estimate"].as_f64().unwrap() - want).abs() < 1e-9,
        "{b}"
    );
    assert_eq!(cost["unpriced"], 1);
    assert_eq!(cost["currency"], "USD");
    assert_eq!(cost["isEstimate"], true);
    // The page says the same, and the CSV carries each message's category and price.
    let cookie = sign_in(&app).await;
    let (_, page) = get(&app, &cookie, "/ui/batches/costs").await;
    assert_eq!(text_by_id(&page, "cost-estimate"), format!("USD {want:.2}"));
    assert_eq!(number_by_id(&page, "cost-unpriced"), 1);
    let csv = api_text(&app, "/api/batches/costs/messages.csv").await.1;
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().ends_with(",category,estimatedPrice"));
    let jamaica = csv.lines().find(|l| l.starts_with("cost-m2,")).unwrap();
    assert!(jamaica.ends_with(",business_initiated,0.07"), "{jamaica}");
    let failed = csv.lines().find(|l| l.starts_with("cost-m7,")).unwrap();
    assert!(failed.ends_with(",,"), "{failed}");
}

/// The daily report in a zone half an hour off UTC (Asia/Kolkata, +05:30): events either
/// side of local midnight land on their local day, a message whose read came before its
/// delivered moves its "reached" to the earlier day, and the dashboard shows its times and
/// its CSVs in the zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_report_counts_each_day_in_the_configured_zone() {
    let app = app_with(|c| {
        c.ui.timezone = "Asia/Kolkata".into();
    })
    .await;
    daily_report_in_kolkata(&app).await;
}

/// The same on PostgreSQL (its counter statements are its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_report_counts_each_day_on_postgres() {
    let test = "the_daily_report_counts_each_day_on_postgres";
    let Some(db) = crate::pg::TestDb::create(test).await else {
        return;
    };
    let app = app_with(|c| {
        c.ui.timezone = "Asia/Kolkata".into();
        c.store = db.config();
    })
    .await;
    daily_report_in_kolkata(&app).await;
}

async fn daily_report_in_kolkata(app: &TestApp) {
    let at = |v: &mut Value, t: &str| v["eventTime"] = json!(t);
    let mut posts = Vec::new();
    // m0, in no batch: delivered 23:59 IST on the 1st, alone in its commit.
    let mut v = campaign_status("d0", "m0", "day", "delivered", 0);
    v["body"].as_object_mut().unwrap().remove("uid");
    at(&mut v, "2026-03-01T18:29:00.000Z");
    assert_eq!(app.post(v.to_string()).await.status(), 200);
    // m1: delivered 23:50 IST on the 1st, read 00:30 on the 2nd.
    let mut v = campaign_status("d1", "m1", "day", "delivered", 0);
    at(&mut v, "2026-03-01T18:20:00.000Z");
    posts.push(v);
    let mut v = campaign_status("r1", "m1", "day", "read", 0);
    at(&mut v, "2026-03-01T19:00:00.000Z");
    posts.push(v);
    // m2: delivered 00:10 IST on the 2nd.
    let mut v = campaign_status("d2", "m2", "day", "delivered", 0);
    at(&mut v, "2026-03-01T18:40:00.000Z");
    posts.push(v);
    // m3: its read (07:30 on the 2nd) comes first, its delivered (23:30 on the 1st) after.
    let mut v = campaign_status("r3", "m3", "day", "read", 0);
    at(&mut v, "2026-03-02T02:00:00.000Z");
    posts.push(v);
    let mut v = campaign_status("d3", "m3", "day", "delivered", 0);
    at(&mut v, "2026-03-01T18:00:00.000Z");
    posts.push(v);
    // m4: failed 15:30 IST on the 1st.
    let mut v = campaign_status("f4", "m4", "day", "failed", 0);
    at(&mut v, "2026-03-01T10:00:00.000Z");
    posts.push(v);
    for v in posts {
        assert_eq!(app.post(v.to_string()).await.status(), 200);
    }
    // Sends at 23:55 on the 1st and 00:05 on the 2nd.
    let sends = [
        send("m1", 1, "day", "2026-03-01T18:25:00Z"),
        send("m2", 2, "day", "2026-03-01T18:35:00Z"),
    ];
    assert_eq!(post_sends(app, &sends, false).await.0, 200);
    // A reply to m1, sent 00:01 on the 2nd.
    let mut reply = crate::templates_and_replies::reply_from_campaign("day", 1, "text", 1);
    reply["body"]["context"]["id"] = json!("wamid.m1");
    reply["body"]["sendTime"] = json!("2026-03-01T18:31:00.000Z");
    assert_eq!(app.post(reply.to_string()).await.status(), 200);

    let (status, report) = api(app, "/api/reports/daily?from=2026-03-01&to=2026-03-03").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["timezone"], "Asia/Kolkata");
    assert_eq!(
        report["days"],
        json!([
            {"date": "2026-03-01", "sent": 1, "reached": 3, "read": 0, "failed": 1, "replies": 0,
             "topErrors": [{"code": "E-failed", "messages": 1}]},
            {"date": "2026-03-02", "sent": 1, "reached": 1, "read": 2, "failed": 0, "replies": 1,
             "topErrors": []},
            {"date": "2026-03-03", "sent": 0, "reached": 0, "read": 0, "failed": 0, "replies": 0,
             "topErrors": []},
        ])
    );
    // The days add up to the batch's figures of the same names, and the message of no
    // batch.
    let (_, batch) = api(app, "/api/batches/day").await;
    for (name, unbatched) in [("reached", 1), ("read", 0), ("failed", 0)] {
        let days: i64 = report["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d[name].as_i64().unwrap())
            .sum();
        assert_eq!(days, batch[name].as_i64().unwrap() + unbatched, "{name}");
    }
    // The same as CSV; a bad range is a 400 that says what is wrong.
    let csv = api_text(app, "/api/reports/daily.csv?from=2026-03-01&to=2026-03-02")
        .await
        .1;
    assert_eq!(
        csv,
        "date,timezone,sent,reached,read,failed,replies,topErrors\n\
         2026-03-01,Asia/Kolkata,1,3,0,1,0,E-failed:1\n\
         2026-03-02,Asia/Kolkata,1,1,2,0,1,\n"
    );
    let (status, body) = api(app, "/api/reports/daily?from=2026-03-02&to=2026-03-01").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_query"))
    );

    // The dashboard: the daily page, and a batch page in the zone.
    let cookie = sign_in(app).await;
    let (status, page) = get(
        app,
        &cookie,
        "/ui/reports/daily?from=2026-03-01&to=2026-03-02",
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("<tr id=\"day-2026-03-02\"><td>2026-03-02</td><td>1</td><td>1</td><td>2</td><td>0</td><td>1</td>"), "{page}");
    assert_eq!(text_by_id(&page, "timezone"), "Asia/Kolkata");
    let (_, page) = get(app, &cookie, "/ui/batches/day").await;
    // The first event, 10:00 UTC, is 15:30 in Kolkata.
    assert!(page.contains("First event 2026-03-01 15:30:00"), "{page}");
    // Its timeline's hours too: the hour from 10:00 UTC is 15:30 there.
    assert!(page.contains("<tr><td>2026-03-01 15:30</td>"), "{page}");
    let (_, csv) = get(app, &cookie, "/ui/batches/day/messages.csv").await;
    assert!(csv.contains("2026-03-01T15:30:00.000+05:30"), "{csv}");
    // The API's CSV stays UTC.
    let api_csv = api_text(app, "/api/batches/day/messages.csv").await.1;
    assert!(api_csv.contains("2026-03-01T10:00:00.000Z"), "{api_csv}");
}

/// Batches filtered by the days they were active in, days of `[ui] timezone`: a batch
/// whose events end at 23:30 in Shanghai (15:30 UTC) belongs to that day there, not the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_filtered_by_the_days_they_were_active_in() {
    let app = app_with(|c| {
        c.ui.timezone = "Asia/Shanghai".into();
    })
    .await;
    // (uid, eventTime of its one message's two reports)
    let batches = [
        (
            "feb",
            "2026-02-27T03:00:00.000Z",
            "2026-02-28T15:30:00.000Z",
        ),
        (
            "mar1",
            "2026-02-28T16:30:00.000Z",
            "2026-03-01T10:00:00.000Z",
        ),
        (
            "mar3",
            "2026-03-03T01:00:00.000Z",
            "2026-03-03T02:00:00.000Z",
        ),
    ];
    for (uid, delivered, read) in batches {
        for (status, at) in [("delivered", delivered), ("read", read)] {
            let mut v = campaign_status(&format!("{uid}-{status}"), uid, uid, status, 0);
            v["eventTime"] = json!(at);
            assert_eq!(app.post(v.to_string()).await.status(), 200);
        }
    }
    let listed = async |query: &str| -> Vec<String> {
        let (status, body) = api(&app, &format!("/api/batches?{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        body["batches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["uid"].as_str().unwrap().to_owned())
            .collect()
    };
    // "feb" ends at 23:30 on Feb 28 in Shanghai; "mar1" starts at 00:30 on Mar 1 there.
    assert_eq!(listed("from=2026-03-01&to=2026-03-01").await, ["mar1"]);
    assert_eq!(listed("to=2026-02-28").await, ["feb"]);
    assert_eq!(listed("from=2026-02-28").await, ["mar3", "mar1", "feb"]);
    assert_eq!(listed("from=2026-03-02&to=2026-03-31").await, ["mar3"]);
    let (status, body) = api(&app, "/api/batches?from=yesterday").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_query"))
    );
    // The dashboard's list, by the same days.
    let cookie = sign_in(&app).await;
    let (_, page) = get(&app, &cookie, "/ui/batches?from=2026-03-01&to=2026-03-01").await;
    assert!(
        page.contains(">mar1</a>") && !page.contains(">feb</a>"),
        "{page}"
    );
    let (_, page) = get(&app, &cookie, "/ui/batches?from=2026-03-05&to=2026-03-01").await;
    assert!(page.contains("id=\"range-error\""));
}
