//! The dashboard over real HTTP: every page with the numbers of the events posted, the
//! way in (sign-in, session cookie, sign-out) and the guards (no session, no token, other
//! sites' requests, the synchronizer token, POST only for replays).

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;

use crate::helpers::*;

/// The `[api] token` of these tests.
pub const TOKEN: &str = "dashboard-test-token";

/// A server with the API token set and these `[[sinks]]` (none when empty).
pub async fn app_with_dashboard(sinks_toml: &str) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.api.token = Some(TOKEN.into());
    config.sinks = if sinks_toml.is_empty() {
        Vec::new()
    } else {
        parse_sinks(sinks_toml)
    };
    TestApp::spawn(config, dir).await
}

/// A forward sink `crm` to `url` that gives up on nothing it can retry for long.
pub fn forward_sink(url: &str) -> String {
    format!(
        "[[sinks]]\ntype = \"forward\"\nname = \"crm\"\nurl = \"{url}\"\nbackoff_initial_ms = 20\nbackoff_max_ms = 100\ntimeout_secs = 2\n"
    )
}

/// An HTTP client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// POSTs a form to a dashboard path with these headers.
pub async fn post(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client().post(app.url(path)).form(form);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// Signs in with `token`; returns the `Cookie` header value of the session.
pub async fn sign_in(app: &TestApp) -> String {
    let res = post(app, "/ui/login", &[], &[("token", TOKEN)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/ui/");
    session_cookie(res.headers()).expect("a session cookie")
}

/// `name=value` of the session's `Set-Cookie`.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let set = headers.get(SET_COOKIE)?.to_str().unwrap();
    Some(set.split(';').next().unwrap().to_owned())
}

/// GETs a dashboard path with the session.
pub async fn get_response(app: &TestApp, cookie: &str, path: &str) -> reqwest::Response {
    client()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// GETs a dashboard path with the session; returns the status and the page.
pub async fn get(app: &TestApp, cookie: &str, path: &str) -> (StatusCode, String) {
    let res = get_response(app, cookie, path).await;
    (res.status(), res.text().await.unwrap())
}

/// POSTs a form with the session, as the dashboard's own page would.
pub async fn post_form(
    app: &TestApp,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let headers = [("cookie", cookie), ("sec-fetch-site", "same-origin")];
    post(app, path, &headers, form).await
}

/// The text of the element with this id (up to its first child element).
pub fn text_by_id(html: &str, id: &str) -> String {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let start = at + html[at..].find('>').unwrap() + 1;
    let end = start + html[start..].find('<').unwrap();
    unescape(html[start..end].trim())
}

/// A number as a page writes it (`1,234`).
pub fn number_by_id(html: &str, id: &str) -> i64 {
    text_by_id(html, id).replace(',', "").parse().unwrap()
}

/// The few entities askama writes.
fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#38;", "&")
}

/// The synchronizer token in a page's forms.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a token");
    let start = at + "name=\"csrf\" value=\"".len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// Posts every body and checks each answer's `status` field.
async fn post_all(app: &TestApp, events: &[(Value, &str)]) {
    for (v, want) in events {
        let (code, body) = answer(app.post(v.to_string()).await).await;
        assert_eq!(
            (code, body["status"].as_str().unwrap()),
            (200, *want),
            "{v}"
        );
    }
}

/// How a campaign of `n` messages ends, by message: every 4th read, every 5th failed
/// (unless read), every 7th of the others in no documented status, the rest delivered.
pub fn campaign_outcome(m: usize) -> &'static str {
    if m.is_multiple_of(4) {
        "read"
    } else if m.is_multiple_of(5) {
        "failed"
    } else if m.is_multiple_of(7) {
        "sent"
    } else {
        "delivered"
    }
}

/// The WhatsApp error codes a campaign's failures carry (message `m` the `m % 3`th).
pub const ERRORS: [(&str, &str); 3] = [
    ("131026", "Message undeliverable"),
    ("131047", "Re-engagement message"),
    ("131053", "Media upload error"),
];

/// The status events of a campaign of `n` messages in batch `uid`: each message's
/// delivered (except those in no documented status) from 09:00 on, two a minute, and its
/// outcome 20 minutes to 4 hours later. Message ids `{uid}-m{NNN}`, wamids
/// `wamid.{id}`, phone numbers 6581000000 + m.
pub fn campaign(uid: &str, n: usize) -> Vec<Value> {
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .to_utc();
    let mut events = Vec::new();
    for m in 0..n {
        let msg = format!("{uid}-m{m:03}");
        let outcome = campaign_outcome(m);
        let delivered_at = start + chrono::Duration::minutes((m / 2) as i64);
        let outcome_at = delivered_at + chrono::Duration::minutes(20 + (m * 37 % 220) as i64);
        let mut event = |env: String, status: &str, at: chrono::DateTime<chrono::Utc>| {
            let mut v = campaign_status(&env, &msg, uid, status, 0);
            v["eventTime"] = innohook::event::format_time(&at).into();
            v["body"]["sendPhone"] = format!("{}", 6_581_000_000u64 + m as u64).into();
            if status == "failed" {
                let (code, text) = ERRORS[m % 3];
                v["body"]["errorData"] =
                    serde_json::json!({"errorCode": code, "errorMessage": text});
            }
            events.push(v);
        };
        if outcome != "sent" {
            event(format!("{msg}-d"), "delivered", delivered_at);
        }
        if outcome != "delivered" {
            event(format!("{msg}-o"), outcome, outcome_at);
        }
    }
    events
}

/// Counts by bucket of a campaign, as its page should show them.
pub fn campaign_counts(n: usize) -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for m in 0..n {
        *counts.entry(campaign_outcome(m)).or_default() += 1;
    }
    counts
}

/// A campaign's status events per hour of eventTime, as the batch page's table writes
/// its rows (delivered, read, failed, other).
fn timeline_rows(events: &[Value]) -> Vec<String> {
    let mut hours: BTreeMap<String, [i64; 4]> = BTreeMap::new();
    for v in events {
        let at = v["eventTime"].as_str().unwrap();
        let hour = format!("{} {}:00", &at[..10], &at[11..13]);
        let slot = match v["body"]["status"].as_str().unwrap() {
            "delivered" => 0,
            "read" => 1,
            "failed" => 2,
            _ => 3,
        };
        hours.entry(hour).or_default()[slot] += 1;
    }
    hours
        .into_iter()
        .map(|(hour, n)| {
            format!(
                "<tr><td>{hour}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                n[0], n[1], n[2], n[3]
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_absent_without_an_api_token() {
    let app = spawn_app().await;
    for path in [
        "/ui",
        "/ui/",
        "/ui/login",
        "/ui/static/ui.css",
        "/ui/batches/x",
    ] {
        let res = client().get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("set [api] token"),
            "{path}: {body}"
        );
    }
    let res = post(&app, "/ui/login", &[], &[("token", "anything")]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // The API too, which a person reaches first from the README.
    for path in ["/api/batches", "/api/openapi.json", "/api"] {
        let res = client().get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("set [api] token"),
            "{path}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_every_page_sends_its_reader_to_sign_in() {
    let app = app_with_dashboard("").await;
    for (path, next) in [
        ("/ui/", "%2Fui%2F"),
        ("/ui/batches", "%2Fui%2Fbatches"),
        ("/ui/batches/b%201", "%2Fui%2Fbatches%2Fb%25201"),
        (
            "/ui/batches/b/messages.csv",
            "%2Fui%2Fbatches%2Fb%2Fmessages.csv",
        ),
        ("/ui/messages?q=x", "%2Fui%2Fmessages%3Fq%3Dx"),
        ("/ui/dead-letters", "%2Fui%2Fdead-letters"),
    ] {
        for cookie in ["", "innohook_session=1.2.3", "innohook_session=garbage"] {
            let res = get_response(&app, cookie, path).await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
            assert_eq!(
                res.headers()[LOCATION],
                format!("/ui/login?next={next}").as_str()
            );
        }
    }
    for path in [
        "/ui/dead-letters/1/replay",
        "/ui/sinks/crm/replay",
        "/ui/logout",
    ] {
        let res = client().post(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(res.headers()[LOCATION], "/ui/login");
    }
    // The way in is open, and the assets it needs.
    let (status, page) = get(&app, "", "/ui/login").await;
    assert_eq!(status, 200);
    assert!(page.contains("name=\"token\""));
    let res = get_response(&app, "", "/ui/static/ui.js").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_sets_a_strict_expiring_cookie_and_signing_out_ends_the_session() {
    let app = app_with_dashboard("").await;
    // A wrong token: the form again, 401, no cookie.
    let res = post(&app, "/ui/login", &[], &[("token", "wrong")]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get(SET_COOKIE).is_none());
    assert!(res.text().await.unwrap().contains("not this server"));
    // Signing in from another site's page is refused (login CSRF).
    for (header, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "http://evil.example"),
    ] {
        let res = post(&app, "/ui/login", &[(header, value)], &[("token", TOKEN)]).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{header}");
        assert!(res.headers().get(SET_COOKIE).is_none());
    }
    // The right token, with where to go next.
    let form = [("token", TOKEN), ("next", "/ui/dead-letters")];
    let res = post(
        &app,
        "/ui/login",
        &[("sec-fetch-site", "same-origin")],
        &form,
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/ui/dead-letters");
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains(TOKEN), "the token is not the cookie");
    let cookie = session_cookie(res.headers()).unwrap();
    // A page: no inline scripts or styles allowed, never cached.
    let res = get_response(&app, &cookie, "/ui/").await;
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let page = res.text().await.unwrap();
    assert!(!page.contains("<script>") && !page.contains("style="));
    let csrf = csrf_of(&page);
    // Sign-out needs the session's token.
    let res = post_form(&app, &cookie, "/ui/logout", &[("csrf", "forged")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = post_form(&app, &cookie, "/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cleared = res.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("innohook_session=;") && cleared.contains("Max-Age=0"));
    // The old cookie no longer opens anything.
    let (status, _) = get(&app, &cookie, "/ui/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_what_was_posted() {
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    target.state.lock().unwrap().refuse("refuse-me");
    let app = app_with_dashboard(&forward_sink(&target.url())).await;
    // 6 accepted (one of another type, one refused by the sink), 3 duplicates, 2 rejected.
    let mut events: Vec<(Value, &str)> = (0..4)
        .map(|i| {
            let s = ["delivered", "read", "failed", "read"][i];
            (
                campaign_status(&format!("e{i}"), &format!("m{i}"), "ov", s, 1),
                "accepted",
            )
        })
        .collect();
    events.push((
        campaign_status("e9", "refuse-me", "ov", "read", 1),
        "accepted",
    ));
    let untyped =
        serde_json::json!({"id": "x-1", "type": "whatsapp_unlisted_event", "body": {"text": "hi"}});
    events.push((untyped.clone(), "accepted"));
    events.push((campaign_status("again", "m1", "ov", "read", 3), "duplicate"));
    events.push((
        campaign_status("e0", "m0", "ov", "delivered", 1),
        "duplicate",
    ));
    events.push((untyped, "duplicate"));
    post_all(&app, &events).await;
    for _ in 0..2 {
        let res = app
            .post(r#"{"id":"x","type":"whatsapp_message_status_updated","body":{}}"#)
            .await;
        assert_eq!(res.status(), 400);
    }
    poll_until("the refused event as a dead letter", 10, async || {
        (!app
            .store
            .dead_letters()
            .await
            .unwrap()
            .iter()
            .all(|d| d.source == "http"))
        .then_some(())
    })
    .await;
    let cookie = sign_in(&app).await;
    let page = poll_until("the sink at the head", 10, async || {
        let (status, page) = get(&app, &cookie, "/ui/").await;
        assert_eq!(status, 200);
        page.contains("class=\"num behind\">0</td>").then_some(page)
    })
    .await;
    assert_eq!(number_by_id(&page, "accepted-24h"), 6);
    assert_eq!(number_by_id(&page, "duplicates-24h"), 3);
    assert_eq!(number_by_id(&page, "rejected-24h"), 2);
    assert_eq!(number_by_id(&page, "dead-letters-waiting"), 1);
    assert!(text_by_id(&page, "store-health").starts_with("Ready:"));
    assert!(page.contains("data-sink=\"crm\""));
    assert!(
        page.contains(">#6</td>"),
        "the sink's position is the last seq"
    );
    // The chart: a bar segment per series with events, named in its tooltip.
    assert!(page.contains("<rect class=\"s-read\""));
    assert!(
        page.contains("Read: 3</title>"),
        "three reads accepted this hour"
    );
    // The recent batch.
    assert!(page.contains("href=\"/ui/batches/ov\""));
}

/// A sink whose target is down shows as failing, with the error, until it delivers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_shows_on_the_overview_until_it_delivers_again() {
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    // A sink name of its own: the metrics are the process's, shared with other tests.
    let sink = forward_sink(&target.url()).replace("\"crm\"", "\"crm-down\"");
    let app = app_with_dashboard(&sink).await;
    let (addr, state) = target.stop().await;
    let v = campaign_status("e1", "m1", "b", "read", 1);
    assert_eq!(app.post(v.to_string()).await.status(), 200);
    let cookie = sign_in(&app).await;
    let row = |page: &str| -> String {
        let start = page.find("data-sink=\"crm-down\"").expect("the sink's row");
        page[start..start + page[start..].find("</tr>").unwrap()].to_owned()
    };
    let failing = poll_until("the sink shown failing", 10, async || {
        let (_, page) = get(&app, &cookie, "/ui/").await;
        let row = row(&page);
        row.contains("Failing since").then_some(row)
    })
    .await;
    assert!(failing.contains("state bad"));
    assert!(failing.contains(&format!("http://{addr}/in")), "{failing}");
    assert!(failing.contains("class=\"num behind\">1</td>"), "{failing}");
    // More come while it is down: the overview's Behind and /metrics' pending say the
    // same number, the metric too while the first delivery is still being retried.
    for m in 2..=5 {
        let v = campaign_status(&format!("e{m}"), &format!("m{m}"), "b", "read", 1);
        assert_eq!(app.post(v.to_string()).await.status(), 200);
    }
    app.scrape_until("innohook_sink_pending_events{sink=\"crm-down\"}", 5.0)
        .await;
    let (_, page) = get(&app, &cookie, "/ui/").await;
    assert!(
        row(&page).contains("class=\"num behind\">5</td>"),
        "{}",
        row(&page)
    );
    assert_eq!(
        metric(
            &app.scrape().await,
            "innohook_sink_pending_events{sink=\"crm-down\"}"
        ),
        5.0
    );
    let target = Target::start(addr, state).await;
    let delivering = poll_until("the sink shown delivering", 10, async || {
        let (_, page) = get(&app, &cookie, "/ui/").await;
        let row = row(&page);
        // Delivering, and its position recorded: nothing behind.
        (row.contains("Delivering") && row.contains("class=\"num behind\">0</td>")).then_some(row)
    })
    .await;
    // The last error stays, with its time.
    assert!(delivering.contains(&format!("http://{addr}/in")));
    assert_eq!(target.received_ids().len(), 5);
    app.scrape_until("innohook_sink_delivered_total{sink=\"crm-down\"}", 5.0)
        .await;
    poll_until("nothing pending", 10, async || {
        let pending = metric(
            &app.scrape().await,
            "innohook_sink_pending_events{sink=\"crm-down\"}",
        );
        (pending == 0.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_page_shows_its_counts_failures_timeline_and_messages() {
    let app = app_with_dashboard("").await;
    const N: usize = 130;
    let mut events: Vec<(Value, &str)> = campaign("spring", N)
        .into_iter()
        .map(|v| (v, "accepted"))
        .collect();
    let mut rng = fastrand::Rng::with_seed(7);
    rng.shuffle(&mut events);
    post_all(&app, &events).await;
    let counts = campaign_counts(N);
    let cookie = sign_in(&app).await;
    let (status, page) = get(&app, &cookie, "/ui/batches/spring").await;
    assert_eq!(status, 200);
    let (read, failed, other) = (counts["read"], counts["failed"], counts["sent"]);
    let (delivered, reached) = (counts["delivered"], counts["delivered"] + read);
    assert_eq!(number_by_id(&page, "count-messages"), N as i64);
    assert_eq!(number_by_id(&page, "count-reached"), reached);
    assert_eq!(number_by_id(&page, "count-delivered"), delivered);
    assert_eq!(number_by_id(&page, "count-read"), read);
    assert_eq!(number_by_id(&page, "count-failed"), failed);
    assert_eq!(number_by_id(&page, "count-other"), other);
    let pct = |n: i64| format!("{:.1}%", n as f64 * 100.0 / N as f64);
    assert_eq!(text_by_id(&page, "pct-reached"), pct(reached));
    assert_eq!(text_by_id(&page, "pct-delivered"), pct(delivered));
    assert_eq!(text_by_id(&page, "pct-read"), pct(read));
    assert_eq!(text_by_id(&page, "pct-failed"), pct(failed));
    // Failures by code, each with its message and count; the timeline's numbers.
    for (i, (code, text)) in ERRORS.iter().enumerate() {
        let n = (0..N)
            .filter(|m| campaign_outcome(*m) == "failed" && m % 3 == i)
            .count();
        let row =
            format!("<tr><td><code>{code}</code></td><td>{text}</td><td class=\"num\">{n}</td>");
        assert!(page.contains(&row), "{row}");
    }
    let rows = timeline_rows(&campaign("spring", N));
    assert!(rows.len() >= 4, "the campaign spans hours");
    for row in rows {
        assert!(page.contains(&row), "{row}");
    }
    // The first page of messages, then the next.
    let ids_on = |page: &str| -> Vec<String> {
        page.match_indices("href=\"/ui/messages?q=spring-m")
            .map(|(i, _)| {
                let rest = &page[i + "href=\"/ui/messages?q=".len()..];
                rest[..rest.find('"').unwrap()].to_owned()
            })
            .collect()
    };
    let first = ids_on(&page);
    assert_eq!(first.len(), 50);
    assert_eq!(first[0], "spring-m000");
    let next = page.find("id=\"next-page\"").map(|_| ());
    assert!(next.is_some());
    let (_, second) = get(
        &app,
        &cookie,
        "/ui/batches/spring?status=&after=spring-m049",
    )
    .await;
    assert_eq!(ids_on(&second)[0], "spring-m050");
    // Filtered by status: exactly the failed ones.
    let (_, failed_page) = get(&app, &cookie, "/ui/batches/spring?status=failed").await;
    let want: Vec<String> = (0..N)
        .filter(|m| campaign_outcome(*m) == "failed")
        .map(|m| format!("spring-m{m:03}"))
        .collect();
    assert_eq!(ids_on(&failed_page), want);
    assert!(!failed_page.contains("id=\"next-page\""));
    // The CSV: a header and a row per message.
    let res = get_response(&app, &cookie, "/ui/batches/spring/messages.csv").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(res.text().await.unwrap().lines().count(), N + 1);
    // A batch never seen.
    let (status, page) = get(&app, &cookie, "/ui/batches/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("No message of batch nobody"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_listed_newest_first_and_searched_by_uid() {
    let app = app_with_dashboard("").await;
    let mut events = Vec::new();
    for (k, uid) in ["alpha-1", "alpha-2", "beta-1"].iter().enumerate() {
        for m in 0..=k {
            let msg = format!("{uid}-{m}");
            events.push((
                campaign_status(&msg, &msg, uid, "read", 10 + k as u32),
                "accepted",
            ));
        }
    }
    post_all(&app, &events).await;
    let cookie = sign_in(&app).await;
    let (status, page) = get(&app, &cookie, "/ui/batches").await;
    assert_eq!(status, 200);
    let order: Vec<usize> = ["beta-1", "alpha-2", "alpha-1"]
        .iter()
        .map(|uid| page.find(&format!(">{uid}</a>")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "newest first");
    let (_, found) = get(&app, &cookie, "/ui/batches?q=alpha").await;
    assert!(found.contains(">alpha-1</a>") && found.contains(">alpha-2</a>"));
    assert!(!found.contains(">beta-1</a>"));
    // Messages and read share as numbers.
    assert!(found.contains("<td class=\"num\">2</td><td class=\"num\">100.0%</td>"));
    let (_, exact) = get(&app, &cookie, "/ui/batches?q=beta-1").await;
    assert!(exact.contains("exists: open it"));
    let (_, none) = get(&app, &cookie, "/ui/batches?q=gamma").await;
    assert!(none.contains("No batch uid starts with"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_found_by_id_wamid_or_phone_with_its_timeline() {
    let app = app_with_dashboard("").await;
    let mut delivered = campaign_status("env-d", "msg-1", "b1", "delivered", 1);
    delivered["body"]["sendPhone"] = "6588887777".into();
    delivered["body"]["conversation"] =
        serde_json::json!({"id": "conv-1", "initiateType": "business_initiated"});
    let mut failed = campaign_status("env-f", "msg-1", "b1", "failed", 5);
    failed["body"]["sendPhone"] = "6588887777".into();
    failed["surprise"] = true.into();
    let mut other = campaign_status("env-2", "msg-2", "b1", "read", 2);
    other["body"]["sendPhone"] = "6588887777".into();
    post_all(
        &app,
        &[
            (delivered, "accepted"),
            (failed, "accepted"),
            (other, "accepted"),
        ],
    )
    .await;
    let cookie = sign_in(&app).await;
    for q in ["msg-1", "wamid.msg-1"] {
        let (status, page) = get(&app, &cookie, &format!("/ui/messages?q={q}")).await;
        assert_eq!(status, 200, "{q}");
        assert_eq!(text_by_id(&page, "message-wamid"), "wamid.msg-1");
        assert_eq!(text_by_id(&page, "message-status"), "failed");
        assert_eq!(text_by_id(&page, "message-phone"), "6588887777");
        assert!(page.contains("<code>E-failed</code>"));
        assert!(page.contains("conv-1") && page.contains("business_initiated"));
        // Both events, in their order, with envelope ids; the warning of the second.
        let (d, f) = (page.find(">env-d<").unwrap(), page.find(">env-f<").unwrap());
        assert!(d < f);
        assert!(page.contains("unknown_field (surprise)"));
        assert!(page.contains("2026-03-01 10:05:00"));
    }
    // A phone number as people write it finds both messages.
    let (status, page) = get(&app, &cookie, "/ui/messages?q=%2B65%208888%207777").await;
    assert_eq!(status, 200);
    assert!(page.contains(">msg-1</a>") && page.contains(">msg-2</a>"));
    let (status, page) = get(&app, &cookie, "/ui/messages?q=nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text_by_id(&page, "not-found").contains("nothing-here"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_shown_and_replayed_by_a_post_from_the_page_only() {
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    target.state.lock().unwrap().refuse("refuse-me");
    let app = app_with_dashboard(&forward_sink(&target.url())).await;
    post_all(
        &app,
        &[
            (campaign_status("ok", "fine", "b", "read", 1), "accepted"),
            (
                campaign_status("bad-1", "refuse-me-1", "b", "read", 1),
                "accepted",
            ),
            (
                campaign_status("bad-2", "refuse-me-2", "b", "read", 1),
                "accepted",
            ),
        ],
    )
    .await;
    let rejected = r#"{"id":"r1","type":"whatsapp_message_status_updated","body":{"id":"x"}}"#;
    assert_eq!(app.post(rejected).await.status(), 400);
    let dead = poll_until("two dead letters of crm", 10, async || {
        let dead: Vec<_> = app
            .store
            .dead_letters()
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.source == "sink")
            .collect();
        (dead.len() == 2).then_some(dead)
    })
    .await;
    let cookie = sign_in(&app).await;
    let (status, page) = get(&app, &cookie, "/ui/dead-letters").await;
    assert_eq!(status, 200);
    assert!(page.contains("message refuse-me-1") && page.contains("message refuse-me-2"));
    assert!(page.contains("rejected_by_sink"));
    assert!(page.contains("2 waiting"));
    // The rejected push, with code, field and the body as received (escaped).
    let letter = app
        .store
        .dead_letters()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.source == "http")
        .unwrap();
    assert!(page.contains(&format!("<code>{}</code>", letter.code)));
    assert!(page.contains("{&#34;id&#34;:&#34;r1&#34;"));
    let csrf = csrf_of(&page);
    let one = dead[0].id;
    let path = format!("/ui/dead-letters/{one}/replay");
    // Not by GET, not without the page's token, not from another site.
    let (status, _) = get(&app, &cookie, &path).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    for form in [&[][..], &[("csrf", "forged")][..]] {
        let res = post_form(&app, &cookie, &path, form).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    let cross_site = [
        ("cookie", cookie.as_str()),
        ("sec-fetch-site", "cross-site"),
    ];
    let res = post(&app, &path, &cross_site, &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(app.store.replay_queue("crm", 10).await.unwrap().is_empty());
    // From the page: queued, delivered, shown as replayed.
    target.state.lock().unwrap().refuse = None;
    let res = post_form(&app, &cookie, &path, &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        res.headers()[LOCATION],
        format!("/ui/dead-letters?replayed={one}").as_str()
    );
    wait_for_keys(&target, &["ok", "bad-1"]).await;
    // The target has it; the sink records the delivery a moment later.
    let page = poll_until("the replay recorded", 10, async || {
        let (_, page) = get(&app, &cookie, &format!("/ui/dead-letters?replayed={one}")).await;
        page.contains("Replayed at").then_some(page)
    })
    .await;
    assert!(text_by_id(&page, "flash").contains(&format!("#{one} is back")));
    assert!(page.contains("1 waiting"));
    // Again: nothing to replay.
    let res = post_form(&app, &cookie, &path, &[("csrf", &csrf)]).await;
    assert_eq!(
        res.headers()[LOCATION],
        format!("/ui/dead-letters?not_replayed={one}").as_str()
    );
    // The whole sink.
    let res = post_form(&app, &cookie, "/ui/sinks/crm/replay", &[("csrf", &csrf)]).await;
    assert_eq!(res.headers()[LOCATION], "/ui/dead-letters?sink=crm&n=1");
    wait_for_keys(&target, &["ok", "bad-1", "bad-2"]).await;
}

/// Waits until the target has received exactly these idempotency keys.
async fn wait_for_keys(target: &Target, keys: &[&str]) {
    let want: std::collections::HashSet<String> = keys.iter().map(|k| k.to_string()).collect();
    poll_until("the target to receive the events", 10, async || {
        (target.received_ids() == want).then_some(())
    })
    .await;
}

/// Five wrong tokens from one address are free; then it waits, twice as long each time,
/// a right token too, with a 429 that says how long, and the metrics count both. Another
/// client behind the same local proxy (its X-Forwarded-For) is not held up.
#[tokio::test]
async fn wrong_tokens_slow_their_address_down() {
    let app = app_with_dashboard("").await;
    // The metrics are the process's, shared with the tests running beside this one.
    let before = app.scrape().await;
    for _ in 0..5 {
        let res = post(&app, "/ui/login", &[], &[("token", "guess")]).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = post(&app, "/ui/login", &[], &[("token", "guess")]).await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "the sixth is judged, then waits"
    );
    for token in ["guess", TOKEN] {
        let res = post(&app, "/ui/login", &[], &[("token", token)]).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{token}");
        assert_eq!(res.headers()["retry-after"], "2");
    }
    // Through a proxy on this machine, another client signs in at once.
    let proxied = [("x-forwarded-for", "198.51.100.20")];
    let res = post(&app, "/ui/login", &proxied, &[("token", TOKEN)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let after = app.scrape().await;
    let moved = |series: &str| metric(&after, series) - metric(&before, series);
    assert!(moved("innohook_ui_sign_in_failures_total") >= 6.0);
    assert_eq!(moved("innohook_ui_sign_in_throttled_total"), 2.0);
}
