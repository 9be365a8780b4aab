//! What schemathesis (`.ci/schemathesis.sh`) found against the OpenAPI document, each
//! held here: a schema-valid request is answered as documented, a schema-invalid one is
//! refused, and the document names the webhook where the server has it.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "t";

async fn app_with_token(configure: impl FnOnce(&mut innohook::config::Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.api.token = Some(TOKEN.into());
    configure(&mut config);
    TestApp::spawn(config, dir).await
}

async fn api(app: &TestApp, path: &str) -> (u16, Value) {
    answer(app.get_with_token(TOKEN, path).await).await
}

async fn document(app: &TestApp) -> Value {
    let (status, doc) = api(app, "/api/openapi.json").await;
    assert_eq!(status, 200);
    doc
}

/// The schema of query parameter `name` of `GET path`.
fn parameter<'d>(doc: &'d Value, path: &str, name: &str) -> &'d Value {
    doc["paths"][path]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| &p["schema"])
        .unwrap_or_else(|| panic!("{path} has no parameter {name}"))
}

/// Whether `cursor` has the shape the document's pattern for batch cursors,
/// `^(0|-?[1-9][0-9]{0,14})[|]`, gives it.
fn batch_cursor_shaped(cursor: &str) -> bool {
    let Some((millis, _)) = cursor.split_once('|') else {
        return false;
    };
    let digits = millis.strip_prefix('-').unwrap_or(millis);
    millis == "0"
        || (!digits.is_empty()
            && digits.len() <= 15
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Each cursor is typed exactly: the seq cursors are integers from 0, and a string that
/// is no cursor is not schema-valid. Before, `cursor` of `/api/events` was any string
/// (`cursor=` and `cursor=abc` were valid and got 400, and -1 was taken), and a batch's
/// cursor was a time and a uid that no pattern told apart from any string.
#[tokio::test]
async fn every_cursor_is_typed_as_it_is_read() {
    let app = app_with_token(|_| {}).await;
    for (i, uid) in ["alpha", "beta", "gamma"].iter().enumerate() {
        let v = campaign_status(&format!("e{i}"), &format!("m{i}"), uid, "read", i as u32);
        assert_eq!(app.post(v.to_string()).await.status(), 200);
    }
    let doc = document(&app).await;
    for path in ["/api/events", "/api/inbound"] {
        let cursor = parameter(&doc, path, "cursor");
        assert_eq!(
            (&cursor["type"], &cursor["minimum"]),
            (&json!("integer"), &json!(0)),
            "{path}"
        );
        for bad in ["", "abc", "-1", "+1", "1.0"] {
            let (status, body) = api(&app, &format!("{path}?cursor={bad}")).await;
            assert_eq!(status, 400, "{path}?cursor={bad}: {body}");
        }
        let (status, _) = api(&app, &format!("{path}?cursor=0")).await;
        assert_eq!(status, 200, "{path}?cursor=0");
    }
    // The events' pages follow, by the integer cursor.
    let (_, first) = api(&app, "/api/events?limit=2").await;
    let next = first["nextCursor"].as_i64().expect("an integer cursor");
    let (_, rest) = api(&app, &format!("/api/events?limit=2&cursor={next}")).await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 1, "{rest}");

    let cursor = parameter(&doc, "/api/batches", "cursor");
    assert_eq!(cursor["pattern"], "^(0|-?[1-9][0-9]{0,14})[|]");
    let mut seen = Vec::new();
    let mut path = "/api/batches?limit=1".to_owned();
    loop {
        let (status, page) = api(&app, &path).await;
        assert_eq!(status, 200, "{path}: {page}");
        seen.extend(
            page["batches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["uid"].as_str().unwrap().to_owned()),
        );
        let Some(next) = page["nextCursor"].as_str() else {
            break;
        };
        assert!(batch_cursor_shaped(next), "{next} fits the pattern");
        path = format!("/api/batches?limit=1&cursor={}", next.replace('|', "%7C"));
    }
    assert_eq!(seen, ["gamma", "beta", "alpha"]);
    // The pattern's extremes are past the years a store can compare (SQLite's text put
    // +10000 below every time, PostgreSQL refuses -29700): they page from the edge.
    for (edge, want) in [("999999999999999", 3), ("-999999999999999", 0)] {
        let (status, page) = api(&app, &format!("/api/batches?cursor={edge}%7Cx")).await;
        assert_eq!(status, 200, "cursor={edge}: {page}");
        assert_eq!(
            page["batches"].as_array().unwrap().len(),
            want,
            "cursor={edge}: {page}"
        );
    }
    for bad in [
        "",
        "abc",
        "012|alpha",
        "-0|alpha",
        "1234567890123456|alpha",
        "2026-03-01T10:02:00.000Z|gamma",
    ] {
        assert!(!batch_cursor_shaped(bad), "{bad}");
        let (status, body) = api(
            &app,
            &format!("/api/batches?cursor={}", bad.replace('|', "%7C")),
        )
        .await;
        assert_eq!(status, 400, "cursor={bad}: {body}");
    }
}

/// `GET /api/messages?wamid=` says whether it answered every message with the wamid: it
/// reads at most 100. Before, a 101st was left out without a sign.
#[tokio::test]
async fn messages_by_wamid_say_when_they_are_cut() {
    let app = app_with_token(|_| {}).await;
    let shared = |i: usize| {
        let mut v = campaign_status(&format!("e{i}"), &format!("m{i:03}"), "b", "read", 0);
        v["body"]["wamid"] = json!("wamid.SHARED");
        v
    };
    assert_eq!(app.post(shared(0).to_string()).await.status(), 200);
    let (status, one) = api(&app, "/api/messages?wamid=wamid.SHARED").await;
    assert_eq!(status, 200);
    assert_eq!(
        (one["messages"].as_array().unwrap().len(), &one["complete"]),
        (1, &json!(true))
    );
    for i in 1..=100 {
        assert_eq!(app.post(shared(i).to_string()).await.status(), 200);
    }
    let (_, cut) = api(&app, "/api/messages?wamid=wamid.SHARED").await;
    assert_eq!(
        (cut["messages"].as_array().unwrap().len(), &cut["complete"]),
        (100, &json!(false))
    );
    let doc = document(&app).await;
    let schema = &doc["paths"]["/api/messages"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert_eq!(schema["required"], json!(["messages", "complete"]));
}

/// A send list refused as a whole has no `field` (before: `"field": null`, which the
/// schema's string refused); one refused for a row's field names it. And a field's
/// length is counted in characters, as JSON Schema's `maxLength` counts it (before, in
/// bytes: 256 characters of `é` were refused).
#[tokio::test]
async fn a_refused_send_list_names_a_field_only_when_one_is_to_blame() {
    let app = app_with_token(|_| {}).await;
    let post = async |body: Value| {
        let res = app
            .client
            .post(app.url("/api/sends"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        answer(res).await
    };
    let (status, whole) = post(json!([])).await;
    assert_eq!(status, 400);
    assert_eq!(whole["error"], "invalid_send_list");
    assert!(whole.get("field").is_none(), "{whole}");
    let row = |id: &str, uid: &str| json!({"id": id, "phone": "6512345001", "uid": uid, "sentAt": "2026-03-02T09:00:00Z"});
    let (status, bad) = post(json!([{"id": "1", "phone": "6512345001", "sentAt": "soon"}])).await;
    assert_eq!((status, &bad["field"]), (400, &json!("sentAt")), "{bad}");
    let (status, long) = post(json!([row("2", &"é".repeat(256))])).await;
    assert_eq!(status, 200, "{long}");
    let (status, too_long) = post(json!([row("3", &"e".repeat(257))])).await;
    assert_eq!((status, &too_long["field"]), (400, &json!("uid")));
    let doc = document(&app).await;
    let uid = &doc["components"]["schemas"]["Send"]["properties"]["uid"]["anyOf"][0];
    assert_eq!(uid["maxLength"], 256);
}

/// The API's dates are RFC 3339 full-dates, as `format: date` says: an empty `to`, a
/// padded or one-digit day is refused. Before, `/api/batches?to=` was taken as no `to`,
/// and `2026-3-1` as a date.
#[tokio::test]
async fn the_api_takes_dates_only_as_the_document_writes_them() {
    let app = app_with_token(|_| {}).await;
    for query in [
        "/api/batches?to=",
        "/api/batches?from=%202026-03-01",
        "/api/batches?from=2026-3-1",
        "/api/reports/daily?from=2026-3-1&to=2026-03-02",
        "/api/reports/daily?from=2026-03-01&to=2026-03-2",
    ] {
        let (status, body) = api(&app, query).await;
        assert_eq!(
            (status, &body["error"]),
            (400, &json!("invalid_query")),
            "{query}"
        );
    }
    for query in [
        "/api/batches?from=2026-03-01&to=2026-03-31",
        "/api/reports/daily?from=2026-03-01&to=2026-03-02",
    ] {
        let (status, body) = api(&app, query).await;
        assert_eq!(status, 200, "{query}: {body}");
    }
}

/// The document describes the whole HTTP surface: the webhook under the path this server
/// has, the probes and the metrics, and what each answers. Before, it had only `/api/`.
#[tokio::test]
async fn the_document_names_the_webhook_where_the_server_has_it() {
    let app = app_with_token(|c| {
        c.server.path = "/hooks/innopaas".into();
        c.auth.username = Some("acme".into());
        c.auth.authorization = Some("Bearer hook".into());
    })
    .await;
    let doc = document(&app).await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/hooks/innopaas") && !paths.contains_key("/webhook"));
    let webhook = &doc["paths"]["/hooks/innopaas"]["post"];
    for code in ["200", "400", "401", "408", "413", "415", "503"] {
        assert!(
            webhook["responses"][code].is_object(),
            "the webhook's {code}"
        );
    }
    assert_eq!(
        webhook["security"],
        json!([{"innopaasUserName": [], "innopaasAuthorization": []}])
    );
    // A push answers as documented, with and without the webhook's headers.
    let push = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/quickstart/1-delivered.json"),
    )
    .unwrap();
    let res = app
        .client
        .post(app.url("/hooks/innopaas"))
        .header("UserName", "acme")
        .header("Authorization", "Bearer hook")
        .header("content-type", "application/json")
        .body(push.clone())
        .send()
        .await
        .unwrap();
    let (status, body) = answer(res).await;
    assert_eq!((status, &body["status"]), (200, &json!("accepted")));
    let (status, body) = answer(
        app.post_to("/hooks/innopaas", "application/json", push)
            .await,
    )
    .await;
    assert_eq!((status, &body["error"]), (401, &json!("unauthorized")));
    for path in ["/healthz", "/readyz", "/metrics"] {
        let operation = &doc["paths"][path]["get"];
        assert_eq!(operation["security"], json!([]), "{path} needs no token");
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
        let media = kind.split(';').next().unwrap();
        assert!(
            operation["responses"]["200"]["content"][media].is_object(),
            "{path}: {media}"
        );
    }
    assert!(doc["paths"]["/readyz"]["get"]["responses"]["503"].is_object());
}

/// Every code a 400 can carry is documented, in README's Answers and Validation rules
/// and in the document's Error schema, and so is when `field` is left out. Before,
/// `unreadable_body` was in neither, and the README showed `field` as always there.
#[test]
fn every_400_code_is_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let answers = readme
        .split("## Answers")
        .nth(1)
        .and_then(|rest| rest.split("\n## Sinks").next())
        .unwrap();
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("src/http/openapi.json")).unwrap())
            .unwrap();
    let error = doc["components"]["schemas"]["Error"]["properties"]["error"]["description"]
        .as_str()
        .unwrap();
    let codes = innohook::event::RejectCode::ALL
        .iter()
        .map(|c| c.as_str())
        .chain(["unreadable_body", "missing_host"]);
    for code in codes {
        assert!(answers.contains(code), "README: {code}");
        assert!(error.contains(code), "openapi.json: {code}");
    }
    assert!(
        answers.contains("`field` is left out"),
        "README says when a 400 has no field"
    );
    let field = doc["components"]["schemas"]["Error"]["properties"]["field"]["description"]
        .as_str()
        .unwrap();
    assert!(field.contains("Absent when"), "{field}");
}
