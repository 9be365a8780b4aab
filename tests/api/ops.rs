//! Operations: /metrics moving, request ids in logs, secrets kept out of logs, the
//! healthcheck command, and config.example.toml telling the truth.

use std::sync::Arc;
use std::time::Duration;

use innohook::config::{Config, LogConfig, ServerConfig, StoreConfig};
use innohook::sink::SinkCommon;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn metrics_count_every_outcome() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.auth.username = Some("metrics-user".into());
    config.sinks[0].common.name = Some("metrics-log".into());
    let app = TestApp::spawn(config, dir).await;
    let post = |body: String| {
        app.client
            .post(app.url("/webhook"))
            .header("content-type", "application/json")
            .header("UserName", "metrics-user")
            .body(body)
            .send()
    };
    let before = app.scrape().await;
    let received =
        r#"innohook_events_received_total{type="whatsapp_message_status_updated",status="failed"}"#;
    let duplicate = r#"innohook_events_duplicate_total{type="whatsapp_message_status_updated"}"#;
    let rejected = r#"innohook_rejections_total{code="missing_error_data"}"#;
    let delivered = r#"innohook_sink_delivered_total{sink="metrics-log"}"#;

    let failed = status_event("metrics-e1", "metrics-m1", "failed").to_string();
    assert_eq!(post(failed.clone()).await.unwrap().status(), 200);
    assert_eq!(post(failed).await.unwrap().status(), 200);
    let bad = remove(
        status_event("metrics-e2", "metrics-m2", "failed"),
        "body.errorData",
    );
    assert_eq!(post(bad.to_string()).await.unwrap().status(), 400);
    let res = app
        .client
        .post(app.url("/webhook"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // The sink reports its delivery after the answer.
    let after = app.scrape_until(delivered, 1.0).await;
    assert!(
        metric(&after, received) >= metric(&before, received) + 1.0,
        "{after}"
    );
    assert!(metric(&after, duplicate) >= metric(&before, duplicate) + 1.0);
    assert!(metric(&after, rejected) >= metric(&before, rejected) + 1.0);
    assert!(
        metric(&after, "innohook_unauthorized_total")
            >= metric(&before, "innohook_unauthorized_total") + 1.0
    );
    assert_eq!(
        metric(
            &after,
            r#"innohook_sink_pending_events{sink="metrics-log"}"#
        ),
        0.0
    );
    assert!(
        after.contains("innohook_request_duration_seconds_bucket{status=\"200\""),
        "{after}"
    );
    assert!(after.contains("innohook_store_commit_duration_seconds_count"));
}

/// Every per-sink series is on /metrics once the sink has delivered, at every start
/// (the runners used to start before the recorder was installed, and about half of all
/// starts never showed them).
#[tokio::test]
async fn per_sink_series_are_there_after_the_first_delivery_at_every_start() {
    let dir = tempfile::tempdir().unwrap();
    let toml = server_toml(dir.path()) + "[[sinks]]\ntype = \"log\"\nname = \"audit\"\n";
    let config = write_config(dir.path(), &toml);
    for start in 0..6 {
        let server = BinaryServer::start(&config);
        let event = status_event(&format!("e{start}"), &format!("m{start}"), "read");
        assert_eq!(server.post(event.to_string()).await.status(), 200);
        let url = format!("http://{}/metrics", server.addr);
        let text = poll_until("the delivery to be counted", 10, async || {
            let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
            (metric(&text, "innohook_sink_delivered_total{sink=\"audit\"}") >= 1.0).then_some(text)
        })
        .await;
        for series in [
            "innohook_sink_pending_events{sink=\"audit\"}",
            "innohook_sink_dead_lettered_total{sink=\"audit\"}",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(series)),
                "start {start}: no {series} in\n{text}"
            );
        }
        server.kill();
    }
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_id_and_never_the_authorization_value() {
    let dir = tempfile::tempdir().unwrap();
    let toml = server_toml(dir.path()) + "level = \"debug\"\n[auth]\nusername = \"acme\"\n";
    let path = write_config(dir.path(), &toml);
    let mut command = innohook();
    command
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .env("INNOHOOK_AUTH__AUTHORIZATION", "Bearer topsecret-4711");
    let server = BinaryServer::start_command(command);
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for body in [seed_bytes("read"), b"{".to_vec()] {
        let res = client
            .post(format!("http://{}/webhook", server.addr))
            .header("content-type", "application/json")
            .header("UserName", "acme")
            .header("Authorization", "Bearer topsecret-4711")
            .body(body)
            .send()
            .await
            .unwrap();
        ids.push(res.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    // An id the client sent is kept, and sent back.
    let res = client
        .post(format!("http://{}/webhook", server.addr))
        .header("content-type", "application/json")
        .header("x-request-id", "client-chosen-42")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-chosen-42");
    let logs = server.log_lines.clone();
    wait_until(
        "the rejection's log line",
        std::time::Duration::from_secs(10),
        || {
            logs.lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("Rejected a payload"))
        },
    );
    let lines = logs.lock().unwrap().clone();
    server.kill();
    assert!(
        lines.iter().all(|l| !l.contains("topsecret-4711")),
        "the secret leaked into the logs"
    );
    let rejection: Value = serde_json::from_str(
        lines
            .iter()
            .find(|l| l.contains("Rejected a payload"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        rejection["span"]["request_id"],
        ids[1].as_str(),
        "{rejection}"
    );
    assert!(lines.iter().any(|l| l.contains(&ids[0])));
    // Ids are shaped like UUID v4, and differ.
    for id in &ids {
        let b = id.as_bytes();
        assert_eq!(b.len(), 36, "{id}");
        for (i, c) in b.iter().enumerate() {
            match i {
                8 | 13 | 18 | 23 => assert_eq!(*c, b'-', "{id}"),
                14 => assert_eq!(*c, b'4', "{id}"),
                19 => assert!(b"89ab".contains(c), "{id}"),
                _ => assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{id}"),
            }
        }
    }
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn healthcheck_exits_0_while_serving_and_1_when_down() {
    let dir = tempfile::tempdir().unwrap();
    let toml = server_toml(dir.path());
    let path = write_config(dir.path(), &toml);
    let server = BinaryServer::start(&path);
    // The way the Docker image is told about a config file: INNOHOOK_CONFIG, which the
    // HEALTHCHECK sees too. The file names the port the server got.
    let probed = dir.path().join("healthcheck.toml");
    std::fs::write(
        &probed,
        toml.replace("127.0.0.1:0", &server.addr.to_string()),
    )
    .unwrap();
    let by_env = || {
        innohook()
            .arg("healthcheck")
            .env("INNOHOOK_CONFIG", &probed)
            .output()
            .unwrap()
    };
    let by_flag = || {
        innohook()
            .args(["healthcheck", "--config"])
            .arg(&probed)
            .output()
            .unwrap()
    };
    for up in [by_env(), by_flag()] {
        assert_eq!(
            up.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&up.stdout)
        );
    }
    server.kill();
    let down = by_env();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stdout).starts_with("unhealthy"));
}

#[test]
fn config_example_parses_and_states_the_real_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    // Every key and value as written (unknown keys would fail here)...
    let example: Config = figment::Figment::from(
        <figment::providers::Toml as figment::providers::Format>::file_exact(&path),
    )
    .extract()
    .expect("config.example.toml parses");
    // ...and the file passes check-config as it is, nothing to set first.
    let out = innohook()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json(&example.server), json(&ServerConfig::default()));
    assert_eq!(json(&example.store), json(&StoreConfig::default()));
    assert_eq!(json(&example.log), json(&LogConfig::default()));
    assert_eq!(
        json(&example.ui),
        json(&innohook::config::UiConfig::default())
    );
    assert_eq!(
        json(&example.tracking),
        json(&innohook::campaign::TrackingConfig::default())
    );
    assert_eq!(
        json(&example.pricing),
        json(&innohook::campaign::PricingConfig::default())
    );
    assert_eq!(example.sinks.len(), 1);
    let mut first = example.sinks[0].common.clone();
    assert_eq!(first.name.take().as_deref(), Some("log"));
    assert_eq!(json(&first), json(&SinkCommon::default()));
    // The sinks to start from are there, commented, each with every key of its type.
    let text = std::fs::read_to_string(&path).unwrap();
    let has = |key: &str| {
        text.lines().any(|l| {
            l.trim_start_matches('#')
                .trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    for key in [
        "path",
        "fsync",
        "max_bytes",
        "keep",
        "url",
        "timeout_secs",
        "concurrency",
        "signing_secret",
        "stream",
        "subject",
        "user",
        "password",
        "token",
        "credentials_file",
        "tls",
        "ack_timeout_secs",
        "max_in_flight",
        "start",
    ] {
        assert!(has(key), "config.example.toml does not mention {key}");
    }
}

/// config.example.toml runs as it is and does what a first run should: it serves, and
/// logs each event.
#[tokio::test]
async fn config_example_serves_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let mut command = innohook();
    command
        .arg("--config")
        .arg(&path)
        .env("INNOHOOK_SERVER__LISTEN", "127.0.0.1:0")
        .env("INNOHOOK_STORE__DIR", dir.path().join("store"))
        .env("INNOHOOK_LOG__FORMAT", "json");
    let server = BinaryServer::start_command(command);
    assert_eq!(server.post(seed_bytes("read")).await.status(), 200);
    let logs = server.log_lines.clone();
    wait_until("the event's log line", Duration::from_secs(10), || {
        logs.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("Message status."))
    });
}

/// A config section's JSON form, to compare sections that do not implement PartialEq.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

/// A client's `x-request-id` is kept (and sent back) only when it reads plainly in a log
/// line: up to 128 printable ASCII characters. Another gets an id of the server's own.
#[tokio::test]
async fn a_request_id_is_kept_only_when_it_is_plain() {
    let app = spawn_app().await;
    let long = "x".repeat(200);
    for (sent, kept) in [
        ("req-7f3a:1", true),
        (long.as_str(), false),
        ("two words", false),
    ] {
        let res = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        if kept {
            assert_eq!(id, sent);
        } else {
            assert_eq!(id.len(), 36, "{sent:?} gave {id:?}");
        }
    }
}

/// `/readyz` commits to the store and needs no authentication: a burst of callers shares
/// one probe (a result younger than a second answers), instead of a write each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_readiness_probes_shares_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("sinks = []\n{}", server_toml(dir.path()));
    let server = BinaryServer::start(&write_config(dir.path(), &toml));
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", server.addr);
    let writes = async || {
        let text = client.get(url("/metrics")).send().await.unwrap();
        metric(
            &text.text().await.unwrap(),
            "innohook_store_commit_batch_size_sum",
        )
    };
    assert_eq!(
        client.get(url("/readyz")).send().await.unwrap().status(),
        200
    );
    let before = writes().await;
    let burst: Vec<_> = (0..50)
        .map(|_| {
            let (client, url) = (client.clone(), url("/readyz"));
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    for probe in burst {
        assert_eq!(probe.await.unwrap(), 200);
    }
    let made = writes().await - before;
    assert!(made <= 2.0, "50 probes made {made} writes");
}

/// A command whose reader goes away (`innohook dead-letters | head`) stops quietly with
/// 0: what the reader read was right, and a "Broken pipe" error would say otherwise.
#[test]
fn a_command_whose_reader_went_away_exits_0_without_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("sinks = []\n{}", server_toml(dir.path())),
    );
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = innohook()
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("Broken pipe"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// Every metric the shipped alerting rules and Grafana dashboard name is one innohook
/// exports (a typo there would make an alert that can never fire), and promtool, where it
/// is installed (`INNOHOOK_TEST_PROMTOOL=1` requires it, as `.ci/run` does), accepts
/// the rules.
#[test]
fn the_alerts_and_the_dashboard_name_only_metrics_innohook_exports() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/metrics.rs")).unwrap();
    let exported: std::collections::BTreeSet<String> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split('"').nth(1))
        .map(str::to_owned)
        .collect();
    assert!(exported.contains("innohook_events_received_total"));
    let rules = root.join("deploy/prometheus/alerts.yml");
    for file in [rules.clone(), root.join("deploy/grafana/innohook.json")] {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut named = 0;
        for (i, _) in text.match_indices("innohook_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // A histogram's series.
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            if name == "innohook_" || base == "innohook" {
                continue;
            }
            named += 1;
            assert!(
                exported.contains(base),
                "{} names {name}, which innohook does not export",
                file.display()
            );
        }
        assert!(named > 5, "{}", file.display());
    }
    let grafana: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/innohook.json")).unwrap(),
    )
    .expect("the Grafana dashboard is JSON");
    assert!(grafana["panels"].as_array().is_some_and(|p| !p.is_empty()));
    match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => {
            assert!(
                std::env::var("INNOHOOK_TEST_PROMTOOL").as_deref() != Ok("1"),
                "INNOHOOK_TEST_PROMTOOL=1, but promtool is not installed: apt-get install prometheus"
            );
            skipped(
                "the_alerts_and_the_dashboard_name_only_metrics_innohook_exports",
                "install prometheus (apt-get) for promtool to check the alerting rules too, or set INNOHOOK_TEST_PROMTOOL=1 to require it",
            );
        }
    }
}

/// The deployment files do what they say: the systemd unit's install steps run as
/// written (into a scratch root), the image carries CA certificates and a binary without
/// its debug information and says it needs BuildKit, and the README copies the example
/// configuration before it first names it and creates a NATS stream a single server takes.
#[test]
fn the_deployment_files_do_what_they_say() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("deploy/innohook.service")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // What every systemd machine has; /etc/innohook is the unit's to make.
    std::fs::create_dir_all(scratch.path().join("etc/systemd/system")).unwrap();
    let steps: Vec<String> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .filter(|l| l.starts_with("install ") || l.starts_with("echo ") || l.starts_with("chmod "))
        // Into the scratch root, without the group (the innohook user is not made here).
        .map(|l| {
            l.replace(" /etc/", &format!(" {}/etc/", scratch.path().display()))
                .replace(" -g innohook", "")
        })
        .collect();
    assert!(steps.len() >= 4, "{steps:?}");
    for step in &steps {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(step)
            .current_dir(root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(scratch.path().join("etc/innohook/innohook.toml").is_file());

    let docker = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let runtime = docker.split("FROM debian").nth(1).expect("a runtime stage");
    assert!(
        runtime.contains("ca-certificates"),
        "the runtime image has no CA certificates"
    );
    assert!(
        docker.contains("strip --strip-debug"),
        "the image's binary keeps its debug info"
    );
    assert!(docker.contains("BuildKit"));

    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let copied = readme
        .find("cp config.example.toml innohook.toml")
        .expect("the copy");
    let named = readme.find("--config innohook.toml").unwrap();
    assert!(
        copied < named,
        "the README names innohook.toml before it makes it"
    );
    let stream = readme
        .lines()
        .find(|l| l.trim_start().starts_with("nats stream add"))
        .unwrap();
    assert!(stream.contains("--replicas 1"), "{stream}");
}
