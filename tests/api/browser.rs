//! The dashboard in a real browser: headless Chromium driven through chromedriver
//! (WebDriver over plain HTTP on loopback). A person signs in, reads a batch whose events
//! came shuffled and duplicated, looks a message up by wamid, and replays a dead letter
//! through the confirmation dialog. Each page is saved at desktop and phone width under
//! `target/ui-screenshots/`.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `apt-get install
//! chromium chromium-driver`) these tests say so in one line and pass, unless
//! `INNOHOOK_TEST_BROWSER=1` makes them mandatory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::dashboard::*;
use crate::helpers::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the browser may take for one step.
const STEP: Duration = Duration::from_secs(15);

/// The chromedriver this test started, stopped when the test ends (also on a panic).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A browser session of its own: chromedriver on a free port, Chromium with a fresh
/// profile.
struct Browser {
    client: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// A browser, or `None` (after one line saying why) when Chromium is not installed and
/// `INNOHOOK_TEST_BROWSER` does not ask for it.
async fn browser(test: &str) -> Option<Browser> {
    let installed = Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists();
    if !installed {
        assert!(
            std::env::var("INNOHOOK_TEST_BROWSER").as_deref() != Ok("1"),
            "INNOHOOK_TEST_BROWSER=1, but {CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium chromium-driver"
        );
        crate::helpers::skipped(
            test,
            "install chromium and chromium-driver (apt-get) to run the browser tests, or set INNOHOOK_TEST_BROWSER=1 to require them",
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let profile = tempfile::tempdir().unwrap();
    let capabilities = json!({
        "browserName": "chrome",
        // A confirmation dialog stays open until the test answers it.
        "unhandledPromptBehavior": "ignore",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let url = format!("http://127.0.0.1:{port}");
    // chromedriver takes a moment to listen, Chromium a moment to start.
    let client = poll_until("chromedriver to open a session", 30, async || {
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
            .ok()
    })
    .await;
    Some(Browser {
        client,
        _driver: driver,
        _profile: profile,
    })
}

/// Where the screenshots go.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The element `css` selects, once there is one.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(STEP)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    /// The text of the element `css` selects, once there is one.
    async fn text(&self, css: &str) -> String {
        self.element(css).await.text().await.unwrap()
    }

    async fn number(&self, css: &str) -> i64 {
        self.text(css).await.replace(',', "").parse().unwrap()
    }

    async fn click(&self, css: &str) {
        self.element(css).await.click().await.unwrap();
    }

    /// Types into the field `css` selects.
    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Signs in on the sign-in page it is on.
    async fn sign_in(&self) {
        self.fill("#token", TOKEN).await;
        self.click("form.signin-box button[type=submit]").await;
        self.element("form.signout").await;
    }

    /// Saves the page as `NAME-desktop.png` and `NAME-phone.png`, each the whole page.
    async fn screenshot(&self, name: &str) {
        for (label, width, height) in [("desktop", 1280u32, 900u32), ("phone", 390, 844)] {
            self.client.set_window_size(width, height).await.unwrap();
            let inner = self
                .client
                .execute("return window.innerWidth", vec![])
                .await
                .unwrap();
            assert_eq!(inner.as_u64(), Some(width as u64), "the viewport's width");
            let full = self
                .client
                .execute("return document.documentElement.scrollHeight", vec![])
                .await
                .unwrap()
                .as_u64()
                .unwrap() as u32;
            // Nothing may stick out sideways (wide tables scroll in their own box).
            let widths = self
                .client
                .execute(
                    "const e = document.documentElement; return [e.scrollWidth, e.clientWidth]",
                    vec![],
                )
                .await
                .unwrap();
            assert!(
                widths[0].as_u64() <= widths[1].as_u64(),
                "{name} is wider than the window at {label} width: {widths}"
            );
            self.client
                .set_window_size(width, full.clamp(height, 6000))
                .await
                .unwrap();
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(screenshots().join(format!("{name}-{label}.png")), png).unwrap();
        }
        self.client.set_window_size(1280, 900).await.unwrap();
    }

    async fn close(self) {
        self.client.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_reads_a_batch_and_looks_a_message_up() {
    let Some(b) = browser("a_person_signs_in_reads_a_batch_and_looks_a_message_up").await else {
        return;
    };
    let app = app_with_dashboard("").await;
    // A campaign, its events shuffled and a third of them sent twice (as InnoPaaS
    // retries do), with other envelope ids for the repeated statuses.
    const N: usize = 90;
    let campaign = campaign("summer-sale", N);
    let mut rng = fastrand::Rng::with_seed(21);
    let mut events: Vec<Value> = campaign.clone();
    for (i, v) in campaign.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        let mut again = v.clone();
        again["id"] = format!("retry-{i}").into();
        events.push(again);
    }
    rng.shuffle(&mut events);
    let (mut accepted, mut duplicates) = (0, 0);
    for v in &events {
        let (code, body) = answer(app.post(v.to_string()).await).await;
        assert_eq!(code, 200);
        match body["status"].as_str().unwrap() {
            "accepted" => accepted += 1,
            _ => duplicates += 1,
        }
    }
    assert_eq!(
        (accepted, duplicates),
        (campaign.len(), events.len() - campaign.len())
    );
    let counts = campaign_counts(N);
    let (read, failed, other) = (counts["read"], counts["failed"], counts["sent"]);

    // A link to the batch leads through sign-in to the batch.
    b.goto(&app.url("/ui/batches/summer-sale")).await;
    assert!(b.path().await.starts_with("/ui/login?next="));
    b.screenshot("login").await;
    b.sign_in().await;
    assert_eq!(b.path().await, "/ui/batches/summer-sale");
    assert_eq!(b.number("#count-messages").await, N as i64);
    assert_eq!(b.number("#count-reached").await, counts["delivered"] + read);
    assert_eq!(b.number("#count-delivered").await, counts["delivered"]);
    assert_eq!(b.number("#count-read").await, read);
    assert_eq!(b.number("#count-failed").await, failed);
    assert_eq!(b.number("#count-other").await, other);
    let percent = |n: i64| format!("{:.1}%", n as f64 * 100.0 / N as f64);
    assert_eq!(b.text("#pct-read").await, percent(read));
    assert_eq!(b.text("#pct-failed").await, percent(failed));
    b.screenshot("batch").await;
    // The failed ones, by the filter.
    b.click(".tabs a[href$='status=failed']").await;
    b.client
        .wait()
        .at_most(STEP)
        .for_url(&reqwest::Url::parse(&app.url("/ui/batches/summer-sale?status=failed")).unwrap())
        .await
        .unwrap();
    let rows = b
        .client
        .find_all(Locator::Css("#messages tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len() as i64, failed);
    for row in rows {
        assert!(row.text().await.unwrap().contains("failed"));
    }

    // The overview counts the pushes, duplicates apart.
    b.click("nav a[href='/ui/']").await;
    assert_eq!(b.number("#accepted-24h").await, accepted as i64);
    assert_eq!(b.number("#duplicates-24h").await, duplicates as i64);
    assert_eq!(b.number("#rejected-24h").await, 0);
    b.screenshot("overview").await;
    b.click("nav a[href='/ui/batches']").await;
    assert!(b.text("#batch-list").await.contains("summer-sale"));
    b.screenshot("batches").await;

    // A message by its wamid.
    let m = (0..N).find(|m| campaign_outcome(*m) == "read").unwrap();
    let wamid = format!("wamid.summer-sale-m{m:03}");
    b.click("nav a[href='/ui/messages']").await;
    b.fill("#q", &wamid).await;
    b.click("form.search button").await;
    assert_eq!(b.text("#message-wamid").await, wamid);
    assert_eq!(b.text("#message-status").await, "read");
    let timeline = b.text("#timeline").await;
    assert!(timeline.contains("delivered") && timeline.contains("read"));
    b.screenshot("message").await;

    // Signing out ends it.
    b.click("form.signout button").await;
    b.element("#token").await;
    b.goto(&app.url("/ui/")).await;
    assert!(b.path().await.starts_with("/ui/login"));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_replayed_from_the_browser_after_a_confirmation() {
    let Some(b) = browser("a_dead_letter_is_replayed_from_the_browser_after_a_confirmation").await
    else {
        return;
    };
    let target = Target::start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    target.state.lock().unwrap().refuse("refuse-me");
    let app = app_with_dashboard(&forward_sink(&target.url())).await;
    for v in [
        campaign_status("ok", "fine", "b", "read", 1),
        campaign_status("bad", "refuse-me", "b", "read", 2),
    ] {
        assert_eq!(app.post(v.to_string()).await.status(), 200);
    }
    let rejected = r#"{"id":"r1","type":"whatsapp_message_status_updated","body":{"id":"x"}}"#;
    assert_eq!(app.post(rejected).await.status(), 400);
    let id = poll_until("the refused event as a dead letter", 10, async || {
        let dead = app.store.dead_letters().await.unwrap();
        dead.iter().find(|d| d.source == "sink").map(|d| d.id)
    })
    .await;
    b.goto(&app.url("/ui/login")).await;
    b.sign_in().await;
    b.goto(&app.url("/ui/dead-letters")).await;
    let row = format!("#sink-dead-letters tr[data-id='{id}']");
    assert!(b.text(&row).await.contains("Waiting"));
    b.screenshot("dead-letters").await;
    target.state.lock().unwrap().refuse = None;

    // Asked first: "cancel" changes nothing.
    let button = format!("{row} button");
    b.click(&button).await;
    let question = b.client.get_alert_text().await.unwrap();
    assert!(
        question.contains(&format!("dead letter #{id}")),
        "{question}"
    );
    b.client.dismiss_alert().await.unwrap();
    assert!(app.store.replay_queue("crm", 10).await.unwrap().is_empty());
    assert_eq!(b.path().await, "/ui/dead-letters");
    // "OK" replays it; the page says so, and the target gets the event.
    b.click(&button).await;
    b.client.accept_alert().await.unwrap();
    assert!(b.text("#flash").await.contains(&format!("#{id} is back")));
    poll_until("the replayed event at the target", 10, async || {
        target.received_ids().contains("bad").then_some(())
    })
    .await;
    let state = poll_until("the dead letter shown as replayed", 10, async || {
        b.client.refresh().await.unwrap();
        let text = b.text(&row).await;
        text.contains("Replayed at").then_some(text)
    })
    .await;
    assert!(!state.contains("Waiting"));
    b.screenshot("dead-letters-replayed").await;
    b.close().await;
}

/// Someone running a campaign sees a paused template on the overview, opens it, then
/// reads a customer's thread and the batch's replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sees_a_paused_template_and_reads_the_customers_replies() {
    use crate::templates_and_replies::{campaign_with_replies, template_event};
    let Some(b) = browser("a_person_sees_a_paused_template_and_reads_the_customers_replies").await
    else {
        return;
    };
    let app = app_with_dashboard("").await;
    campaign_with_replies(&app).await;
    for v in [
        template_event("t1", "status", "APPROVED", "2026-03-01T10:00:00.000Z"),
        template_event("t2", "status", "PAUSED", "2026-03-02T10:00:00.000Z"),
    ] {
        assert_eq!(app.post(v.to_string()).await.status(), 200);
    }

    // The overview says it first.
    b.goto(&app.url("/ui/")).await;
    b.sign_in().await;
    let banner = b.text("#template-alarms").await;
    assert!(
        banner.contains("delivery_slot_reminder") && banner.contains("PAUSED"),
        "{banner}"
    );
    b.screenshot("overview-template-paused").await;
    b.click("#template-alarms a").await;
    assert_eq!(b.path().await, "/ui/templates/77");
    assert_eq!(b.text("#template-status").await, "PAUSED");
    let history = b
        .client
        .find_all(Locator::Css("#history tbody tr"))
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert!(history[0].text().await.unwrap().contains("PAUSED"));
    b.screenshot("template").await;
    b.click("nav a[href='/ui/templates']").await;
    assert!(b.text("#templates").await.contains("PAUSED"));
    b.screenshot("templates").await;

    // A customer's thread, by phone number.
    b.click("nav a[href='/ui/conversations']").await;
    b.screenshot("conversations").await;
    b.fill("#phone", "6581000001").await;
    b.click("form.search button").await;
    let thread = b.text("#thread").await;
    assert!(
        thread.contains("promo-m001") && thread.contains("damaged box"),
        "{thread}"
    );
    let link = b.element("#thread li.in a[rel~='noopener']").await;
    assert_eq!(
        link.attr("href").await.unwrap().as_deref(),
        Some("https://media.example.invalid/wa/400000000000000102")
    );
    b.screenshot("conversation").await;

    // The batch's replies, and the count the API gives.
    b.goto(&app.url("/ui/batches/promo")).await;
    assert_eq!(b.number("#count-replied").await, 4);
    assert!(b.text("#replies").await.contains("button reply: Yes"));
    b.screenshot("batch-replies").await;

    // Approved again: the banner goes.
    let approved = template_event("t3", "status", "APPROVED", "2026-03-03T10:00:00.000Z");
    assert_eq!(app.post(approved.to_string()).await.status(), 200);
    b.click("nav a[href='/ui/']").await;
    b.element("#accepted-24h").await;
    let banners = b
        .client
        .find_all(Locator::Css("#template-alarms"))
        .await
        .unwrap();
    assert!(banners.is_empty());
    b.close().await;
}

/// A campaign manager in São Paulo (UTC−03:00) reads a batch page in her own time, finds
/// its send list's figures, then the daily report: its chart and the day the campaign ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_reads_a_batch_and_the_daily_report_in_her_own_time_zone() {
    let Some(b) = browser("a_person_reads_a_batch_and_the_daily_report_in_her_own_time_zone").await
    else {
        return;
    };
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.api.token = Some(TOKEN.into());
    config.sinks = Vec::new();
    config.ui.timezone = "America/Sao_Paulo".into();
    let app = TestApp::spawn(config, dir).await;
    const N: usize = 40;
    for v in campaign("carnaval", N) {
        assert_eq!(app.post(v.to_string()).await.status(), 200);
    }
    // The send list: every message, and five more never reported on.
    let list: Vec<serde_json::Value> = (0..N + 5)
        .map(|m| {
            let id = if m < N {
                format!("carnaval-m{m:03}")
            } else {
                format!("carnaval-x{m}")
            };
            serde_json::json!({"id": id, "phone": format!("55119{m:08}"), "uid": "carnaval",
                               "sentAt": "2026-03-01T08:59:00Z"})
        })
        .collect();
    let res = app
        .client
        .post(app.url("/api/sends"))
        .bearer_auth(TOKEN)
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    b.goto(&app.url("/ui/batches/carnaval")).await;
    b.sign_in().await;
    assert_eq!(b.text("#timezone").await, "America/Sao_Paulo");
    assert_eq!(b.number("#count-sent").await, (N + 5) as i64);
    assert_eq!(b.number("#count-noStatus").await, 5);
    assert_eq!(b.number("#count-unconfirmed").await, 5);
    // The campaign's first event, 09:00 UTC, is 06:00 in São Paulo.
    let muted = b.text("main p.muted").await;
    assert!(
        muted.starts_with("First event 2026-03-01 06:00:00"),
        "{muted}"
    );
    b.screenshot("batch-sao-paulo").await;

    // The last 30 days by default (the campaign is older), then the campaign's days.
    b.click("nav a[href='/ui/reports/daily']").await;
    assert_eq!(b.path().await, "/ui/reports/daily");
    b.element("#days").await;
    b.goto(&app.url("/ui/reports/daily?from=2026-03-01&to=2026-03-02"))
        .await;
    let counts = campaign_counts(N);
    let day = b.text("#day-2026-03-01").await;
    let reached = counts["delivered"] + counts["read"];
    assert!(
        day.starts_with(&format!(
            "2026-03-01 {} {reached} {}",
            N + 5,
            counts["read"]
        )),
        "{day}"
    );
    b.element("figure.chart svg").await;
    b.screenshot("daily").await;
    b.close().await;
}
