//! What a new user meets in the first hour: commands that run without the server's
//! secrets, one exit-code convention, errors that say where and what, check-config's
//! summary, helpful refusals, completions, and a Dockerfile that finds every target.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = innohook();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The commands that only use the store run without the webhook's secret or a sink's
/// `${ENV}` headers, which only a server needs.
#[tokio::test]
async fn store_commands_run_without_the_servers_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}[auth]\nusername = \"acme\"\n[[sinks]]\ntype = \"forward\"\nname = \"crm\"\nurl = \"http://127.0.0.1:9/x\"\n[sinks.headers]\nX-Key = \"${{FIRST_HOUR_UNSET_SECRET}}\"\n",
        server_toml(dir.path())
    );
    let config = write_config(dir.path(), &toml);
    let config = config.to_str().unwrap();
    // A store to read: made by a server with the secrets given.
    let server = {
        let mut c = innohook();
        c.args(["--config", config])
            .env("INNOHOOK_AUTH__AUTHORIZATION", "s")
            .env("FIRST_HOUR_UNSET_SECRET", "k");
        BinaryServer::start_command(c)
    };
    server.kill();
    // Serving without them is refused, as it should be...
    let out = run(&["check-config", "--config", config], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    // ...but reading the store is not.
    for (args, code) in [
        (vec!["dead-letters"], 0),
        (vec!["status", "nothing"], 1),
        (vec!["batch", "nothing"], 1),
        (vec!["prune", "--dry-run"], 0),
        (vec!["replay", "--sink", "crm"], 0),
        (vec!["healthcheck"], 1),
    ] {
        let mut all = args.clone();
        all.extend(["--config", config]);
        let out = run(&all, &[]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            !text(&out.stderr).contains("not set"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// Exit codes: 0 done, 1 the answer is no, 2 the command could not run; messages about
/// a "no" or an error on stderr, stdout left for results (so scripts can pipe it).
#[test]
fn one_exit_code_convention_and_errors_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{}[[sinks]]\ntype = \"log\"\nname = \"audit\"\n",
            server_toml(dir.path())
        ),
    );
    let config = config.to_str().unwrap();
    // No store yet: the command cannot run.
    let out = run(&["dead-letters", "--config", config], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no store at"),
        "{}",
        text(&out.stderr)
    );
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let server = BinaryServer::start(std::path::Path::new(config));
    server.kill();
    let out = run(&["dead-letters", "--config", config], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("No dead letters"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["status", "m-unknown", "--config", config], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("no status has been received for message m-unknown"));
    let out = run(&["replay", "--sink", "crm", "--config", config], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("no sink named \"crm\" in the configuration; its sinks are: audit"),
        "{}",
        text(&out.stderr)
    );
    // Docker reserves 2 in a HEALTHCHECK: an unreadable configuration is 1 there.
    let out = run(&["healthcheck", "--config", "/no/such/file.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["status", "x", "--config", "/no/such/file.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("config file /no/such/file.toml does not exist"));
}

/// Configuration errors name the key as written, where it was set (the file and line, or
/// the environment variable), and a near key; never figment's "default." profile.
#[test]
fn config_errors_say_where_and_suggest_the_key_meant() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nretian_events = \"3d\"\n",
    );
    let out = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(said.contains("unknown key store.retian_events"), "{said}");
    assert!(
        said.contains(&format!("{}, line 5", path.display())),
        "{said}"
    );
    assert!(said.contains("did you mean retain_events?"), "{said}");
    assert!(!said.contains("default."), "{said}");
    let out = run(&["check-config"], &[("INNOHOOK_STORE__DRI", "/tmp")]);
    let said = text(&out.stdout);
    assert!(
        said.contains("from the environment: INNOHOOK_STORE__DRI")
            && said.contains("did you mean dir?"),
        "{said}"
    );
    // Durations nobody can misread: a minute is not a month, a number needs its unit.
    for (written, says) in [
        (
            "\"1m\"",
            "\"1m\" is 1m, which would keep almost nothing (for a month write \"30d\")",
        ),
        ("30", "30 has no unit; write \"30d\" for 30 days"),
    ] {
        let path = write_config(dir.path(), &format!("[store]\nretain_events = {written}\n"));
        let out = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
        let said = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains(says), "{said}");
        assert!(
            said.contains("store.retain_events") && said.contains("line 2"),
            "{said}"
        );
    }
    // A host name to listen on is resolved rather than refused.
    let path = write_config(dir.path(), "[server]\nlisten = \"localhost:9000\"\n");
    let out = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("listen 127.0.0.1:9000")
            || text(&out.stdout).contains("listen [::1]:9000")
    );
    // A filter that can never match.
    let path = write_config(
        dir.path(),
        "[[sinks]]\ntype = \"log\"\nstatuses = [\"Failed\"]\n",
    );
    let out = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(
            "\"Failed\" never matches (statuses are case-sensitive); did you mean \"failed\"?"
        ),
        "{}",
        text(&out.stdout)
    );
    // The same for event types, and for statuses on types that have none.
    for (filters, said) in [
        (
            "types = [\"Message_Template_Quality_Update\"]",
            "\"Message_Template_Quality_Update\" never matches (event types are case-sensitive); did you mean \"message_template_quality_update\"?",
        ),
        (
            "types = [\"whatsapp_mo_message_received\"]\nstatuses = [\"failed\"]",
            "statuses and types never match together: only whatsapp_message_status_updated events have a status",
        ),
    ] {
        let path = write_config(
            dir.path(),
            &format!("[[sinks]]\ntype = \"log\"\n{filters}\n"),
        );
        let out = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(1), "{filters}");
        assert!(text(&out.stdout).contains(said), "{}", text(&out.stdout));
    }
}

/// check-config checks what a start would and says what it found.
#[test]
fn check_config_summarises_what_a_start_would_use() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}[api]\ntoken = \"t\"\n[[sinks]]\ntype = \"file\"\npath = {:?}\nstatuses = [\"failed\"]\n",
        server_toml(dir.path()),
        dir.path().join("out/events.jsonl")
    );
    let path = write_config(dir.path(), &toml);
    let out = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    for line in [
        "store: SQLite store in",
        "auth: off",
        "api: on",
        "sink: file \"file\" -> ",
        "(statuses failed)",
    ] {
        assert!(said.contains(line), "{line:?} in {said}");
    }
    // A file sink whose directory cannot be written.
    let toml = format!(
        "{}[[sinks]]\ntype = \"file\"\npath = \"/proc/innohook/e.jsonl\"\n",
        server_toml(dir.path())
    );
    let path = write_config(dir.path(), &toml);
    let out = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("/proc/innohook/e.jsonl cannot be written"),
        "{}",
        text(&out.stdout)
    );
}

/// check-config reports every problem in one run (a store directory that is a file, a
/// bad time zone, a sink that would be refused, an empty secret), and serve refuses to
/// start on the same, naming them.
#[test]
fn check_config_lists_every_problem_at_once_and_serve_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndir = {file:?}\n[ui]\ntimezone = \"Mars/Olympus\"\n[api]\ntoken = \"\"\n[[sinks]]\ntype = \"log\"\nstatuses = [\"Failed\"]\n"
    );
    let path = write_config(dir.path(), &toml);
    let out = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let problems = [
        "is a file, not a directory",
        "\"Mars/Olympus\" is not an IANA time zone",
        "api.token is set but empty",
        "\"Failed\" never matches",
    ];
    assert!(
        said.starts_with("4 problems in the configuration:"),
        "{said}"
    );
    for p in problems {
        assert!(said.contains(p), "{p:?} in {said}");
    }
    // serve names the ones it checks before it opens anything.
    let out = run(&["--config", path.to_str().unwrap(), "serve"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    for p in &problems[1..] {
        assert!(said.contains(p), "{p:?} in {said}");
    }
}

/// A refused push is logged with which header was missing or wrong, never its value,
/// and at most once every few seconds however many come.
#[tokio::test]
async fn a_refused_push_says_which_header_at_a_bounded_rate() {
    let dir = tempfile::tempdir().unwrap();
    let toml = server_toml(dir.path()) + "[auth]\nusername = \"acme\"\n";
    let path = write_config(dir.path(), &toml);
    let mut c = innohook();
    c.arg("--config")
        .arg(&path)
        .env("INNOHOOK_AUTH__AUTHORIZATION", "Bearer right-secret");
    let server = BinaryServer::start_command(c);
    let client = reqwest::Client::new();
    for i in 0..20 {
        let mut req = client
            .post(format!("http://{}/webhook", server.addr))
            .header("content-type", "application/json");
        // The first, the one logged, also without its UserName.
        if i > 0 {
            req = req.header("UserName", "acme");
        }
        let res = req
            .header("Authorization", "Bearer wrong-secret")
            .body(seed_bytes("read"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let logs = server.log_lines.clone();
    let refusals = || -> Vec<Value> {
        logs.lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Refused a push with 401"))
            })
            .collect()
    };
    wait_until("the refusal's log line", Duration::from_secs(10), || {
        !refusals().is_empty()
    });
    let lines = refusals();
    assert_eq!(lines.len(), 1, "rate-limited: {lines:?}");
    assert_eq!(
        lines[0]["problem"],
        "no UserName header; Authorization does not match"
    );
    assert_eq!(lines[0]["refused_since_last_line"], 0);
    let all = logs.lock().unwrap().join("\n");
    assert!(!all.contains("wrong-secret") && !all.contains("right-secret"));
}

/// /api refuses query parameters it does not take, naming them.
#[tokio::test]
async fn unknown_query_parameters_are_named() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.api.token = Some("t".into());
    let app = TestApp::spawn(config, dir).await;
    let res = app
        .client
        .get(app.url("/api/events?stauts=failed&limit=5"))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    let (status, body) = answer(res).await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Unknown query parameter(s) stauts"),
        "{body}"
    );
    // Every endpoint, whether or not it takes parameters of its own, whether or not what
    // it names exists.
    let paths = [
        "/api/messages/m1?x=1",
        "/api/messages?wamid=w&x=1",
        "/api/inbound?x=1",
        "/api/inbound/w?x=1",
        "/api/conversations/6512345?x=1",
        "/api/batches?x=1",
        "/api/batches/b?x=1",
        "/api/batches/b/messages.csv?x=1",
        "/api/batches/b/replies.csv?x=1",
        "/api/batches/b/unconfirmed.csv?x=1",
        "/api/templates?x=1",
        "/api/templates/77?x=1",
        "/api/reports/daily?x=1",
        "/api/reports/daily.csv?x=1",
        "/api/events?x=1",
        "/api/openapi.json?x=1",
    ];
    // POST /api/sends refuses it too.
    let res = app
        .client
        .post(app.url("/api/sends?x=1"))
        .bearer_auth("t")
        .body("[]")
        .send()
        .await
        .unwrap();
    let (status, body) = answer(res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_query"))
    );
    assert_eq!(
        paths.len() + 1,
        innohook::http::API_PATHS.len(),
        "one for each endpoint"
    );
    for path in paths {
        let res = app
            .client
            .get(app.url(path))
            .bearer_auth("t")
            .send()
            .await
            .unwrap();
        let (status, body) = answer(res).await;
        assert_eq!(status, 400, "{path}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Unknown query parameter(s) x"),
            "{path}: {body}"
        );
    }
}

/// `innohook batch --csv` writes the batch's messages as the API's CSV does; completions
/// come out for the common shells.
#[tokio::test]
async fn batch_csv_on_the_command_line_and_completions() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::spawn(test_config(dir.path()), dir.clone()).await;
    for s in ["delivered", "read"] {
        assert_eq!(
            app.post(status_event(s, "m1", s).to_string())
                .await
                .status(),
            200
        );
    }
    let (config, dir) = app.stop().await;
    let file = write_config(
        dir.path(),
        &format!("[store]\ndir = {:?}\n", config.store.dir),
    );
    let uid = seed("read")["body"]["uid"].as_str().unwrap().to_owned();
    let out = run(
        &["batch", &uid, "--csv", "--config", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("messageId,wamid,sendPhone,status"),
        "{csv}"
    );
    assert_eq!(lines.len(), 2);
    assert!(lines[1].starts_with("m1,"), "{csv}");
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell], &[]);
        assert_eq!(out.status.code(), Some(0));
        assert!(text(&out.stdout).contains("dead-letters"), "{shell}");
    }
    let help = text(&run(&["--help"], &[]).stdout);
    for sub in [
        "serve",
        "check-config",
        "dead-letters",
        "replay",
        "status",
        "batch",
        "prune",
        "healthcheck",
        "validate",
        "completions",
    ] {
        assert!(
            help.contains(&format!("innohook {sub}")) || help.contains(&format!("  {sub} ")),
            "{sub} in --help"
        );
    }
}

/// The image builds from the whole crate: every target Cargo.toml names is copied in, so
/// adding one can never break `docker build` again (no Docker engine runs here, so this
/// checks the Dockerfile and .dockerignore against `cargo metadata`).
#[test]
fn the_docker_image_copies_every_cargo_target() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(
        dockerfile.lines().any(|l| l.trim() == "COPY . ."),
        "the build stage copies the whole crate"
    );
    let ignored: Vec<String> = std::fs::read_to_string(root.join(".dockerignore"))
        .unwrap()
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut targets = 0;
    for target in metadata["packages"][0]["targets"].as_array().unwrap() {
        let path = std::path::Path::new(target["src_path"].as_str().unwrap());
        let relative = path.strip_prefix(root).unwrap();
        assert!(root.join(relative).exists());
        for part in relative.components() {
            let part = part.as_os_str().to_string_lossy();
            for pattern in &ignored {
                let hit = match pattern.strip_prefix('*') {
                    Some(suffix) => part.ends_with(suffix),
                    None => part == pattern.trim_end_matches('/'),
                };
                assert!(
                    !hit,
                    "{} is left out of the image by .dockerignore's {pattern}",
                    relative.display()
                );
            }
        }
        targets += 1;
    }
    assert!(targets >= 6, "{targets} targets");
}

/// The README's quick start tells the story it says: two messages of one campaign, one
/// read and one failed with 131026, and the batch answers as shown there.
#[tokio::test]
async fn the_quick_start_ends_with_the_story_it_tells() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.api.token = Some("try-me".into());
    let app = TestApp::spawn(config, dir).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3);
    for f in &files {
        let (status, body) = answer(app.post(std::fs::read(f).unwrap()).await).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("accepted")),
            "{f:?}"
        );
    }
    let (status, body) = answer(app.post(std::fs::read(&files[0]).unwrap()).await).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    let res = app
        .client
        .get(app.url("/api/batches/spring-campaign"))
        .bearer_auth("try-me")
        .send()
        .await
        .unwrap();
    let (status, batch) = answer(res).await;
    assert_eq!(status, 200);
    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    let shown = readme
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the README shows the batch");
    let shown: Value = serde_json::from_str(&shown.replace('\n', "")).unwrap();
    assert_eq!(batch, shown, "the README shows what the API answers");
}

/// `/api/openapi.json` lists exactly the paths the server serves, and what each answers
/// matches its schema: every required field there, no field it does not declare.
#[tokio::test]
async fn the_openapi_document_matches_the_api() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(dir.path());
    config.api.token = Some("t".into());
    let app = TestApp::spawn(config, dir).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    for f in ["1-delivered.json", "2-read.json", "3-failed.json"] {
        assert_eq!(
            app.post(std::fs::read(root.join(f)).unwrap())
                .await
                .status(),
            200
        );
    }
    // A reply with an image to the first message, and a template's status and quality.
    let mut reply = crate::event_inbound::examples()
        .into_iter()
        .find(|(name, _)| *name == "image")
        .unwrap()
        .1;
    reply["body"]["context"] = json!({"from": "6590001111", "id": "wamid.QUICKSTART-0001"});
    let from_text = |t: &str| serde_json::from_str::<Value>(t).unwrap();
    let template = from_text(crate::event_templates::TEMPLATE_STATUS);
    let quality = from_text(crate::event_templates::TEMPLATE_QUALITY);
    for v in [reply, template, quality] {
        assert_eq!(app.post(v.to_string()).await.status(), 200, "{v}");
    }
    let get = async |path: &str| {
        let res = app
            .client
            .get(app.url(path))
            .bearer_auth("t")
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
        (status, kind, res.text().await.unwrap())
    };
    let (status, _, doc) = get("/api/openapi.json").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let mut documented: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    documented.sort_unstable();
    let mut served = innohook::http::API_PATHS.to_vec();
    served.extend(innohook::http::OTHER_PATHS);
    served.sort_unstable();
    assert_eq!(documented, served);
    for (path, concrete) in [
        ("/api/messages/{id}", "/api/messages/400000000000000001"),
        ("/api/messages", "/api/messages?wamid=wamid.QUICKSTART-0001"),
        ("/api/batches", "/api/batches?limit=10"),
        ("/api/batches/{uid}", "/api/batches/spring-campaign"),
        (
            "/api/batches/{uid}/messages.csv",
            "/api/batches/spring-campaign/messages.csv",
        ),
        (
            "/api/batches/{uid}/replies.csv",
            "/api/batches/spring-campaign/replies.csv",
        ),
        (
            "/api/batches/{uid}/unconfirmed.csv",
            "/api/batches/spring-campaign/unconfirmed.csv",
        ),
        ("/api/templates", "/api/templates"),
        ("/api/templates/{id}", "/api/templates/900000000000077"),
        (
            "/api/reports/daily",
            "/api/reports/daily?from=2026-03-01&to=2026-03-03",
        ),
        (
            "/api/reports/daily.csv",
            "/api/reports/daily.csv?from=2026-03-01&to=2026-03-03",
        ),
        ("/api/events", "/api/events?status=read"),
        ("/api/inbound", "/api/inbound?limit=10"),
        ("/api/inbound/{id}", "/api/inbound/wamid.nobody"),
        (
            "/api/conversations/{phone}",
            "/api/conversations/6512345001",
        ),
        ("/api/openapi.json", "/api/openapi.json"),
    ] {
        let (status, kind, body) = get(concrete).await;
        let answer = &doc["paths"][path]["get"]["responses"][status.to_string()];
        assert!(
            answer.is_object(),
            "{concrete} answered {status}, which {path} does not document"
        );
        let media = kind.split(';').next().unwrap();
        let schema = &answer["content"][media]["schema"];
        assert!(schema.is_object(), "{concrete}: {media} is not documented");
        if media == "application/json" {
            conforms(
                &serde_json::from_str(&body).unwrap(),
                schema,
                &doc,
                concrete,
            );
        }
    }
    // Without the token, or with a parameter it does not take, every operation answers
    // as it documents.
    for path in innohook::http::API_PATHS {
        let concrete = path
            .replace("{id}", "x")
            .replace("{uid}", "x")
            .replace("{phone}", "x");
        // The send list is the one operation that takes a body.
        let method = if path == "/api/sends" { "post" } else { "get" };
        let request = |url: String| match method {
            "post" => app.client.post(url).body("[]"),
            _ => app.client.get(url),
        };
        let res = request(app.url(&concrete)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{concrete}");
        let answer = &doc["paths"][path][method]["responses"]["401"];
        assert!(answer.is_object(), "{path} does not document its 401");
        let body: Value = res.json().await.unwrap();
        conforms(
            &body,
            &answer["content"]["application/json"]["schema"],
            &doc,
            "401",
        );
        let url = app.url(&format!("{concrete}?unknown=1"));
        let res = request(url).bearer_auth("t").send().await.unwrap();
        assert_eq!(res.status(), 400, "{concrete}?unknown=1");
        // What a failed read answers (the document itself reads nothing; the send list
        // writes, and says how far it got).
        let codes: &[&str] = match path {
            "/api/openapi.json" => &["400"],
            "/api/sends" => &["400", "413", "503"],
            _ => &["400", "500", "503"],
        };
        for code in codes {
            let answer = &doc["paths"][path][method]["responses"][code];
            assert!(answer.is_object(), "{path} does not document its {code}");
        }
    }
    // An error answer too.
    let (status, _, body) = get("/api/messages/nobody").await;
    assert_eq!(status, 404);
    let schema = &doc["paths"]["/api/messages/{id}"]["get"]["responses"]["404"]["content"]["application/json"]
        ["schema"];
    conforms(&serde_json::from_str(&body).unwrap(), schema, &doc, "404");
}

/// Whether `value` fits `schema` (objects' required and declared properties, arrays'
/// items, `$ref`s into the document's components).
fn conforms(value: &Value, schema: &Value, doc: &Value, at: &str) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return conforms(value, &doc["components"]["schemas"][name], doc, at);
    }
    if value.is_null() {
        assert!(
            schema["nullable"] == true,
            "{at}: null where {schema} is not nullable"
        );
        return;
    }
    match schema["type"].as_str() {
        Some("object") => {
            let object = value
                .as_object()
                .unwrap_or_else(|| panic!("{at}: not an object: {value}"));
            for key in schema["required"].as_array().into_iter().flatten() {
                assert!(
                    object.contains_key(key.as_str().unwrap()),
                    "{at}: no {key} in {value}"
                );
            }
            if let Some(props) = schema["properties"].as_object() {
                for (k, v) in object {
                    let declared = props
                        .get(k)
                        .unwrap_or_else(|| panic!("{at}: {k} is not documented"));
                    conforms(v, declared, doc, &format!("{at}.{k}"));
                }
            }
        }
        Some("array") => {
            for (i, item) in value.as_array().unwrap().iter().enumerate() {
                conforms(item, &schema["items"], doc, &format!("{at}[{i}]"));
            }
        }
        Some("string") => assert!(value.is_string(), "{at}: {value} is not a string"),
        Some("integer") => assert!(value.is_i64(), "{at}: {value} is not an integer"),
        Some("number") => assert!(value.is_number(), "{at}: {value} is not a number"),
        Some("boolean") => assert!(value.is_boolean(), "{at}: {value} is not a boolean"),
        _ => {}
    }
}
