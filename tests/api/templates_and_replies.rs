//! Where people see templates and customers' replies: the API, the CSV of a batch's
//! replies, the dashboard's batch, message, Conversations and Templates pages, the
//! overview's banner for a template in trouble, and (the server run as a process) its
//! warning in the log and `innohook_template_events_total`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::dashboard::*;
use crate::helpers::*;

/// A template event of the delivery-slot template (id 77): `kind` "status" or
/// "quality", said at `at`.
pub fn template_event(env: &str, kind: &str, value: &str, at: &str) -> Value {
    let body = match kind {
        "status" => json!({"accountName": "IW0000001", "wabaId": "100000000000001",
            "templateId": "77", "templateName": "delivery_slot_reminder",
            "templateLanguage": "en_US", "category": "UTILITY", "templateStatus": value,
            "reason": "NONE"}),
        _ => json!({"wabaId": "100000000000001", "templateId": "77",
            "templateName": "delivery_slot_reminder", "templateLanguage": "en_US",
            "previousQualityScore": "GREEN", "newQualityScore": value}),
    };
    let event_type = match kind {
        "status" => "whatsapp_template_status_updated",
        _ => "message_template_quality_update",
    };
    json!({"id": env, "type": event_type, "eventTime": at, "body": body})
}

/// The notes' example `name` (text, image, location, button reply, reaction, …) sent by
/// the customer of message `m` of campaign `uid` (`campaign`'s numbering), answering
/// that message the day after; `n` makes its ids its own.
pub fn reply_from_campaign(uid: &str, m: usize, name: &str, n: usize) -> Value {
    let mut v = crate::event_inbound::examples()
        .into_iter()
        .find(|(example, _)| *example == name)
        .unwrap_or_else(|| panic!("no example {name}"))
        .1;
    let answered = format!("wamid.{uid}-m{m:03}");
    v["id"] = json!(format!("reply-{uid}-{n}"));
    let body = &mut v["body"];
    body["id"] = json!(format!("4{n:017}"));
    body["wamid"] = json!(format!("wamid.in-{uid}-{n}"));
    body["from"] = json!(format!("{}", 6_581_000_000u64 + m as u64));
    // The day after the campaign's messages went out.
    body["sendTime"] = json!(format!("2026-03-02T08:{:02}:00.000Z", n % 60));
    if name == "reaction" {
        body["reaction"]["messageId"] = json!(answered);
    } else {
        body["context"] = json!({"from": "6590001111", "id": answered});
    }
    v
}

/// A campaign of 12 and its customers' answers: a text and a reaction to message 0, an
/// image to 1, a location to 2, a button reply to 4; and a text answering nothing.
pub async fn campaign_with_replies(app: &TestApp) -> usize {
    for v in campaign("promo", 12) {
        assert_eq!(app.post(v.to_string()).await.status(), 200);
    }
    let replies = [
        (0, "text"),
        (0, "reaction"),
        (1, "image"),
        (2, "location"),
        (4, "button reply"),
    ];
    for (n, (m, name)) in replies.iter().enumerate() {
        let v = reply_from_campaign("promo", *m, name, n);
        assert_eq!(
            answer(app.post(v.to_string()).await).await.1["status"],
            "accepted"
        );
    }
    let mut unrelated = reply_from_campaign("promo", 9, "text", 99);
    unrelated["body"]
        .as_object_mut()
        .unwrap()
        .shift_remove("context");
    assert_eq!(app.post(unrelated.to_string()).await.status(), 200);
    replies.len()
}

async fn api_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_shows_its_replies_on_its_page_in_the_api_and_in_a_csv() {
    let app = app_with_dashboard("").await;
    let replies = campaign_with_replies(&app).await;

    let batch: Value = api_get(&app, "/api/batches/promo")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(batch["replied"], 4, "{batch}");
    let cookie = sign_in(&app).await;
    let (status, page) = get(&app, &cookie, "/ui/batches/promo").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(number_by_id(&page, "count-replied"), 4, "the API's number");
    assert_eq!(text_by_id(&page, "pct-replied"), "33.3%");
    for shown in [
        "Can I change my delivery slot?",
        "damaged box",
        "location: 1.28397,103.85108",
        "button reply: Yes",
        "reaction: 👍",
    ] {
        assert!(page.contains(shown), "{shown} is not on the batch page");
    }
    assert!(page.contains(r#"href="https://media.example.invalid/wa/400000000000000102""#));
    assert!(
        !page.contains("wamid.in-promo-99"),
        "an answer to nothing is no reply"
    );

    // The CSV, from the API and from the dashboard alike.
    let res = api_get(&app, "/api/batches/promo/replies.csv").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-disposition"],
        "attachment; filename=\"batch-promo-replies.csv\""
    );
    let csv = res.text().await.unwrap();
    let res = get_response(&app, &cookie, "/ui/batches/promo/replies.csv").await;
    assert_eq!(res.text().await.unwrap(), csv);
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        rows.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "wamid",
            "messageId",
            "from",
            "to",
            "sentAt",
            "type",
            "content",
            "mediaLink",
            "replyToWamid",
            "receivedAt"
        ]
    );
    let rows: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), replies);
    let image = rows.iter().find(|r| &r[5] == "image").expect("the image");
    assert_eq!(
        (&image[2], &image[7], &image[8]),
        (
            "6581000001",
            "https://media.example.invalid/wa/400000000000000102",
            "wamid.promo-m001"
        )
    );
    assert_eq!(
        api_get(&app, "/api/batches/promo/replies.csv?x=1")
            .await
            .status(),
        400
    );
    assert_eq!(
        api_get(&app, "/api/batches/nobody/replies.csv")
            .await
            .status(),
        404
    );

    // A message's page shows its replies and leads to the conversation.
    let (_, page) = get(&app, &cookie, "/ui/messages?q=promo-m000").await;
    let replies = &page[page.find("id=\"message-replies\"").unwrap()..];
    assert!(replies.contains("Can I change my delivery slot?") && replies.contains("reaction: 👍"));
    assert!(page.contains("href=\"/ui/conversations?phone=6581000000\""));
    let (_, page) = get(&app, &cookie, "/ui/messages?q=promo-m003").await;
    assert!(page.contains("No answer or reaction to this message yet."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conversations_page_threads_what_was_exchanged_with_a_number() {
    let app = app_with_dashboard("").await;
    campaign_with_replies(&app).await;
    let cookie = sign_in(&app).await;
    // Without a number: the latest customers' messages, each leading to its thread.
    let (status, page) = get(&app, &cookie, "/ui/conversations").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("href=\"/ui/conversations?phone=6581000002\""));
    // One thread, in time order: the message sent (at its first status), then the answers.
    // As the number is typed: digits, or with a `+` and spaces (percent-encoded).
    for typed in ["6581000000", "%2B65%208100%200000"] {
        let path = format!("/ui/conversations?phone={typed}");
        let (status, page) = get(&app, &cookie, &path).await;
        assert_eq!(status, StatusCode::OK, "{typed}");
        let thread = &page[page.find("id=\"thread\"").expect("a thread")..];
        let sent = thread.find("promo-m000").expect("the message sent");
        let text = thread
            .find("Can I change my delivery slot?")
            .expect("the text");
        let reaction = thread.find("reaction: 👍").expect("the reaction");
        assert!(sent < text && sent < reaction, "in time order");
    }
    let (_, page) = get(&app, &cookie, "/ui/conversations?phone=6581000001").await;
    assert!(page.contains("damaged box"));
    assert!(page.contains(r#"href="https://media.example.invalid/wa/400000000000000102""#));
    let (status, page) = get(&app, &cookie, "/ui/conversations?phone=6599999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("Nothing has been exchanged with"));
}

/// A template paused shows on the overview until a later status supersedes it, whatever
/// order the events came in; the Templates pages and the API say the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_template_is_bannered_on_the_overview_until_approved_again() {
    let app = app_with_dashboard("").await;
    let cookie = sign_in(&app).await;
    let post = async |v: Value| answer(app.post(v.to_string()).await).await.1["status"].clone();
    assert_eq!(
        post(template_event(
            "t1",
            "status",
            "APPROVED",
            "2026-03-01T10:00:00.000Z"
        ))
        .await,
        "accepted"
    );
    let (_, page) = get(&app, &cookie, "/ui/").await;
    assert!(
        !page.contains("id=\"template-alarms\""),
        "an approved template is no alarm"
    );

    assert_eq!(
        post(template_event(
            "t2",
            "status",
            "PAUSED",
            "2026-03-02T10:00:00.000Z"
        ))
        .await,
        "accepted"
    );
    let (_, page) = get(&app, &cookie, "/ui/").await;
    let banner = &page[page.find("id=\"template-alarms\"").expect("the banner")..];
    assert!(
        banner.contains("delivery_slot_reminder") && banner.contains("<strong>PAUSED</strong>"),
        "{banner}"
    );
    // The same news again under another envelope id is a duplicate.
    assert_eq!(
        post(template_event(
            "t2-again",
            "status",
            "PAUSED",
            "2026-03-02T10:00:00.000Z"
        ))
        .await,
        "duplicate"
    );
    // An older status arriving late does not supersede it.
    assert_eq!(
        post(template_event(
            "t0",
            "status",
            "PENDING",
            "2026-02-28T10:00:00.000Z"
        ))
        .await,
        "accepted"
    );
    let (_, page) = get(&app, &cookie, "/ui/").await;
    assert!(page.contains("id=\"template-alarms\""));
    let api: Value = api_get(&app, "/api/templates").await.json().await.unwrap();
    assert_eq!(api["templates"][0]["status"], "PAUSED");
    assert_eq!(api["templates"][0]["alarming"], true);

    let (status, page) = get(&app, &cookie, "/ui/templates").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("data-template=\"77\" class=\"alarming\""));
    let (status, page) = get(&app, &cookie, "/ui/templates/77").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_by_id(&page, "template-status"), "PAUSED");
    let history = &page[page.find("id=\"history\"").unwrap()..];
    let order: Vec<usize> = ["PAUSED", "APPROVED", "PENDING"]
        .iter()
        .map(|s| {
            history
                .find(&format!(">{s}<"))
                .unwrap_or_else(|| panic!("{s}"))
        })
        .collect();
    assert!(order.is_sorted(), "the latest first: {order:?}");
    let (status, _) = get(&app, &cookie, "/ui/templates/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(api_get(&app, "/api/templates/nobody").await.status(), 404);

    // Approved again: the banner goes. Its quality dropping to RED brings it back.
    post(template_event(
        "t3",
        "status",
        "APPROVED",
        "2026-03-03T10:00:00.000Z",
    ))
    .await;
    let (_, page) = get(&app, &cookie, "/ui/").await;
    assert!(!page.contains("id=\"template-alarms\""));
    post(template_event(
        "t4",
        "quality",
        "RED",
        "2026-03-03T11:00:00.000Z",
    ))
    .await;
    let (_, page) = get(&app, &cookie, "/ui/").await;
    assert!(page.contains("<strong>quality RED</strong>"));
}

/// The server says it in its log, once per event, and counts every template event by
/// kind and status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_in_trouble_is_logged_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(&write_config(dir.path(), &server_toml(dir.path())));
    for v in [
        template_event("t1", "status", "APPROVED", "2026-03-01T10:00:00.000Z"),
        template_event("t2", "status", "PAUSED", "2026-03-02T10:00:00.000Z"),
        template_event("t2-again", "status", "PAUSED", "2026-03-02T10:00:00.000Z"),
        template_event("t3", "quality", "RED", "2026-03-02T11:00:00.000Z"),
    ] {
        assert_eq!(server.post(v.to_string()).await.status(), 200);
    }
    wait_until("the warnings", std::time::Duration::from_secs(10), || {
        server.logged("Template delivery_slot_reminder is now PAUSED")
            && server.logged("Template delivery_slot_reminder is now of quality RED")
    });
    let warnings = server
        .log_lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("Template delivery_slot_reminder is now"))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(
        warnings.len(),
        2,
        "once each, the duplicate not again: {warnings:?}"
    );
    assert_eq!(warnings[0]["level"], "WARN");
    assert_eq!(warnings[0]["template_id"], "77");
    let metrics = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (series, n) in [
        (
            r#"innohook_template_events_total{kind="status",status="APPROVED"}"#,
            1.0,
        ),
        (
            r#"innohook_template_events_total{kind="status",status="PAUSED"}"#,
            1.0,
        ),
        (
            r#"innohook_template_events_total{kind="quality",status="RED"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metric(&metrics, series), n, "{series}");
    }
}
