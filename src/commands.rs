//! The subcommands behind `main.rs`: each returns the process exit code.

use std::io::{Read, Write};
use std::path::Path;

use crate::event::{self, Accepted};
use crate::store::{DeadLetterSource, Role, Store};

/// `innohook validate FILE|-`: checks one payload offline.
/// Exit code 0 when it would be accepted, 1 when rejected, 2 when it cannot be read.
pub fn validate(path: &Path, out: &mut impl Write) -> anyhow::Result<i32> {
    let bytes = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        buf
    } else {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
    };
    match event::parse(&bytes) {
        Ok(accepted) => {
            write_summary(&accepted, out)?;
            Ok(0)
        }
        Err(r) => {
            let field = r
                .field
                .as_deref()
                .map(|f| format!(" at {f}"))
                .unwrap_or_default();
            writeln!(out, "rejected: {}{field}\n  {}", r.code.as_str(), r.message)?;
            Ok(1)
        }
    }
}

fn write_summary(a: &Accepted, out: &mut impl Write) -> std::io::Result<()> {
    let env = &a.envelope;
    writeln!(out, "accepted: {} event {}", env.event_type(), env.id())?;
    let mut row = |k: &str, v: &str| writeln!(out, "  {k:<14}{v}");
    if let Some(t) = env.event_time() {
        row("eventTime", &t.at().to_rfc3339())?;
    }
    env.event().describe(&mut row)?;
    for w in &a.warnings {
        writeln!(out, "warning {} at {}: {}", w.code, w.field, w.message)?;
    }
    Ok(())
}

/// `innohook [serve] [--config PATH]`: runs the receiver until SIGTERM / SIGINT.
pub fn serve(config_path: Option<&Path>) -> anyhow::Result<i32> {
    let config = crate::config::Config::load(config_path)?;
    crate::telemetry::init(&config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listen = config.server.listen;
        let app = crate::server::App::build(config).await?;
        let listener = crate::http::serve::listen(listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        app.run(listener, crate::shutdown::signal()).await
    })?;
    Ok(0)
}

/// `innohook check-config --config PATH`: reports problems without starting, the store's
/// included (its directory writable, or the database reachable and usable).
pub fn check_config(config_path: Option<&Path>, out: &mut impl Write) -> anyhow::Result<i32> {
    // A file that does not read is one problem (figment names every key it could not).
    let config = match crate::config::Config::read_only(config_path) {
        Ok(config) => config,
        Err(e) => {
            writeln!(out, "{e:#}")?;
            return Ok(1);
        }
    };
    // Then every problem at once: the rules, the store and each sink as serve would open
    // them (a section with a problem of its own is not also probed).
    let mut problems = config.problems();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = match config.store.check() {
        Ok(()) => match runtime.block_on(crate::store::check(&config.store)) {
            Ok(store) => Some(store),
            Err(e) => {
                problems.push(format!("the store cannot be used: {e:#}"));
                None
            }
        },
        Err(_) => None,
    };
    let mut sinks = Vec::new();
    for (i, sink) in config.sinks.iter().enumerate() {
        if sink.check().is_err() {
            continue;
        }
        match sink
            .describe()
            .and_then(|line| runtime.block_on(sink.probe()).map(|()| line))
        {
            Ok(line) => sinks.push(line),
            Err(e) => problems.push(format!("sinks[{i}] ({}): {e:#}", sink.name())),
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        writeln!(
            out,
            "{n} problem{} in the configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in problems {
            writeln!(out, "- {p}")?;
        }
        return Ok(1);
    }
    let store = store.unwrap_or_default();
    writeln!(
        out,
        "configuration is valid: listen {} path {}",
        config.server.listen, config.server.path
    )?;
    writeln!(out, "store: {store}")?;
    let auth = match (&config.auth.username, &config.auth.authorization) {
        (Some(_), Some(_)) => "on (UserName and Authorization must match)",
        (None, Some(_)) => "on (Authorization must match)",
        _ => "off: anyone who can reach the port can post",
    };
    writeln!(out, "auth: {auth}")?;
    let api = if config.api.token.is_some() {
        "on (/api with the bearer token)"
    } else {
        "off (no [api] token)"
    };
    writeln!(out, "api: {api}")?;
    if sinks.is_empty() {
        writeln!(out, "sinks: none")?;
    }
    for line in sinks {
        writeln!(out, "sink: {line}")?;
    }
    Ok(0)
}

/// `innohook dead-letters --config PATH [--payload]`: one JSON object a line, oldest
/// first: a rejected request with its body; an undelivered event with the event, the
/// sink, its attempts and last error (and its body with `payload`).
pub fn dead_letters(
    config_path: Option<&Path>,
    payload: bool,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let config = crate::config::Config::load_for_store(config_path)?;
    let dead = with_store(&config, |store| async move { store.dead_letters().await })?;
    if dead.is_empty() {
        eprintln!("No dead letters: every request was accepted and every event delivered.");
    }
    for mut dl in dead {
        if dl.source == DeadLetterSource::Sink && !payload {
            dl.body = None;
            dl.body_is_not_utf8 = false;
        }
        writeln!(out, "{}", serde_json::to_string(&dl)?)?;
    }
    Ok(0)
}

/// `innohook replay --config PATH [--sink NAME | --id ID]`: puts sinks' dead letters (of
/// one sink, or one by its id) back in their queues.
pub fn replay(
    config_path: Option<&Path>,
    sink: Option<&str>,
    id: Option<i64>,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let config = crate::config::Config::load_for_store(config_path)?;
    if let Some(name) = sink {
        let names: Vec<&str> = config.sinks.iter().map(|s| s.name()).collect();
        anyhow::ensure!(
            names.contains(&name),
            "no sink named {name:?} in the configuration; its sinks are: {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    if let Some(id) = id {
        let queued = with_store(&config, |store| async move {
            store.replay_dead_letter(id).await
        })?;
        if !queued {
            eprintln!(
                "innohook: no sink dead letter {id} waiting to be replayed (see innohook dead-letters)"
            );
            return Ok(1);
        }
        writeln!(
            out,
            "dead letter {id} queued for redelivery; a running server delivers it within seconds."
        )?;
        return Ok(0);
    }
    let sink = sink.map(str::to_owned);
    let n = with_store(&config, |store| async move {
        store.replay(sink.as_deref()).await
    })?;
    writeln!(
        out,
        "{n} dead letter(s) queued for redelivery; a running server delivers them within seconds."
    )?;
    Ok(0)
}

/// `innohook prune --config PATH [--dry-run]`: the retention policy, once.
pub fn prune(
    config_path: Option<&Path>,
    dry_run: bool,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let config = crate::config::Config::load_for_store(config_path)?;
    let policy = crate::retention::policy(&config.store, &config.sinks);
    let pruned = with_store(&config, |store| async move {
        if dry_run {
            let mut state = crate::store::PruneState::default();
            store.prune(&policy, &mut state, usize::MAX, true).await
        } else {
            crate::retention::prune_pass(store.as_ref(), &policy).await
        }
    })?;
    writeln!(
        out,
        "{} {} events, {} messages, {} batches, {} inbound messages, {} template events, {} dead letters.",
        if dry_run { "Would remove" } else { "Removed" },
        pruned.events,
        pruned.messages,
        pruned.batches,
        pruned.inbound,
        pruned.templates,
        pruned.dead_letters
    )?;
    for (sink, at) in &pruned.held_by {
        writeln!(
            out,
            "Sink {sink} has not delivered events since {}; they stay until it does.",
            crate::event::format_time(at)
        )?;
    }
    Ok(0)
}

/// `innohook healthcheck`: GETs /healthz on the configured address (loopback when it
/// listens on all addresses); exit 0 on 200, 1 otherwise. For Docker's HEALTHCHECK.
pub fn healthcheck(config_path: Option<&Path>, out: &mut impl Write) -> anyhow::Result<i32> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpStream};
    use std::time::Duration;
    let config = crate::config::Config::load_for_store(config_path)?;
    let mut addr = config.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let timeout = Duration::from_secs(3);
    let status = (|| -> std::io::Result<[u8; 12]> {
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head)
    })();
    match status {
        Ok(head) if head.starts_with(b"HTTP/1.1 200") => {
            writeln!(out, "healthy: http://{addr}/healthz answered 200")?;
            Ok(0)
        }
        Ok(head) => {
            writeln!(
                out,
                "unhealthy: http://{addr}/healthz answered {}",
                String::from_utf8_lossy(&head)
            )?;
            Ok(1)
        }
        Err(e) => {
            writeln!(out, "unhealthy: http://{addr}/healthz: {e}")?;
            Ok(1)
        }
    }
}

/// `innohook status --config PATH MESSAGE_ID`: the tracked state of one message, as JSON.
pub fn status(
    config_path: Option<&Path>,
    message_id: &str,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let config = crate::config::Config::load_for_store(config_path)?;
    let id = message_id.to_owned();
    let found = with_store(&config, |store| async move {
        crate::http::message_json(store.as_ref(), &id).await
    })?;
    print_found(
        found,
        format!("no status has been received for message {message_id}"),
        out,
    )
}

/// `innohook batch --config PATH UID [--csv]`: a batch summary as JSON, or its messages
/// as CSV.
pub fn batch(
    config_path: Option<&Path>,
    uid: &str,
    csv: bool,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let config = crate::config::Config::load_for_store(config_path)?;
    let key = uid.to_owned();
    let missing = format!("no message of batch {uid} has been received");
    let settings = crate::campaign::Settings::from_config(&config)?;
    if csv {
        let pricing = settings.pricing.clone();
        let rows = with_store(&config, |store| async move {
            let sheet = crate::http::Sheet::Messages;
            crate::http::batch_csv_bytes(store.as_ref(), &key, sheet, &pricing)
                .await
                .map_err(|e| crate::store::StoreError::Backend(format!("{e:?}")))
        })?;
        return match rows {
            Some(rows) => {
                out.write_all(&rows)?;
                Ok(0)
            }
            None => {
                eprintln!("innohook: {missing}");
                Ok(1)
            }
        };
    }
    let found = with_store(&config, |store| async move {
        crate::http::batch_json(store.as_ref(), &key, &settings).await
    })?;
    print_found(found, missing, out)
}

/// `innohook sends import FILE`: reads the whole list (CSV or JSON), then stores it a few
/// hundred rows per transaction beside a running server. Prints what was new; exit 1
/// naming every bad row when the list is refused (nothing stored).
pub fn import_sends(
    config_path: Option<&Path>,
    file: &Path,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    use crate::campaign::sends::{self, Format, Imported};
    let config = crate::config::Config::load_for_store(config_path)?;
    let body = if file == Path::new("-") {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)?;
        body
    } else {
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
    };
    let by_name = match file.extension().and_then(|e| e.to_str()) {
        Some("csv") => Some("text/csv"),
        Some("json") => Some("application/json"),
        _ => None,
    };
    let list = match sends::parse(&body, Format::detect(by_name, &body)) {
        Ok(list) => list,
        Err(refusal) => {
            eprintln!("innohook: {refusal}");
            return Ok(1);
        }
    };
    let mut done = Imported::default();
    // Beside a running server on SQLite, each transaction here holds the database's one
    // write lock, and the server's commits wait for it in the busy handler's coarse sleeps:
    // small transactions with a pause between keep its answers quick.
    let (part, pause) = match config.store.backend {
        crate::store::StoreBackend::Sqlite => (
            crate::store::campaign::CHUNK,
            std::time::Duration::from_millis(5),
        ),
        _ => (list.len().max(1), std::time::Duration::ZERO),
    };
    let stored = with_store(&config, |store| {
        let done = &mut done;
        let list = &list;
        async move {
            for rows in list.chunks(part) {
                store.import_sends(rows, done).await?;
                tokio::time::sleep(pause).await;
            }
            Ok(())
        }
    });
    if let Err(e) = stored {
        anyhow::bail!(
            "{e:#}; {} of the {} rows were stored before, and importing the file again is safe",
            done.rows,
            list.len()
        );
    }
    writeln!(out, "{}", serde_json::to_string(&done)?)?;
    Ok(0)
}

/// Opens the configured store beside a server that may be running, runs `f` on it, and
/// closes it.
fn with_store<T, F, Fut>(config: &crate::config::Config, f: F) -> anyhow::Result<T>
where
    F: FnOnce(std::sync::Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = crate::store::StoreResult<T>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = crate::store::open(&config.store, Role::Client).await?;
        let result = f(store.clone()).await;
        store.close().await;
        Ok(result?)
    })
}

/// Prints what was found as pretty JSON (exit 0), or says on stderr what is missing
/// (exit 1).
fn print_found(
    found: Option<impl serde::Serialize>,
    missing: String,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    match found {
        Some(v) => {
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            Ok(0)
        }
        None => {
            eprintln!("innohook: {missing}");
            Ok(1)
        }
    }
}
