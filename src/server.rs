//! The running service: built from a [`Config`] (failing fast, before any port is bound),
//! then [`App::run`] on a listener until a shutdown future resolves.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::serve::Limits;
use crate::http::{self, AppState, Auth, Connections, HttpSettings};
use crate::sink::runner::Runner;
use crate::store::{self, Role, Store, StoreBackend};

/// How long in-flight requests get to finish after a shutdown signal: as long as a request
/// may take (`server.request_timeout_secs`, after which it is answered 408), and a second
/// more for its answer to leave. So a request that commits is answered, whenever in its
/// time the signal comes.
pub fn grace(server: &crate::http::ServerConfig) -> Duration {
    Duration::from_secs(server.request_timeout_secs) + Duration::from_secs(1)
}

/// Everything the service needs, opened and checked.
pub struct App {
    config: Config,
    store: Arc<dyn Store>,
    sinks: Vec<Runner>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl App {
    /// Opens the store and builds every sink; any problem is an error here.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        if config.store.backend == StoreBackend::Postgres {
            tracing::info!(dir = %config.store.dir.display(), "The store is PostgreSQL; store.dir is not used.");
        }
        let store = store::open(&config.store, Role::Server).await?;
        Self::build_with_store(config, store).await
    }

    /// Like [`App::build`], on a store opened already.
    pub async fn build_with_store(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        // Before anything can record: a handle taken before the recorder is installed
        // records nowhere, for good.
        let metrics = crate::metrics::install();
        let mut sinks = Vec::new();
        for sink in &config.sinks {
            let head = *store.head().borrow();
            let recorded = store.sink_cursor(sink.name()).await?.unwrap_or(0);
            let (built, cursor) = sink.build(recorded, head).await?;
            sinks.push(Runner::new(built, sink.clone(), store.clone(), cursor));
        }
        Ok(Self {
            config,
            store,
            sinks,
            metrics,
        })
    }

    /// The store, for callers that want to read it.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests (at most
    /// [`grace`]) and waits until every queued write is committed.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            config,
            store,
            sinks,
            metrics,
        } = self;
        let (stop_sinks, sinks_stop) = tokio::sync::watch::channel(false);
        let sinks: Vec<_> = sinks
            .into_iter()
            .map(|s| tokio::spawn(s.run(sinks_stop.clone())))
            .collect();
        let auth = Auth::new(&config.auth);
        if auth.is_open() {
            tracing::warn!(path = %config.server.path, "No [auth] is configured: anyone who can reach this port can post events. Set auth.username / auth.authorization (INNOHOOK_AUTH__AUTHORIZATION).");
        }
        let shutting_down = Arc::new(AtomicBool::new(false));
        let low_disk = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Connections::default());
        let state = AppState {
            store: store.clone(),
            auth,
            shutting_down: shutting_down.clone(),
            webhook_path: config.server.path.as_str().into(),
            max_body_bytes: config.server.max_body_bytes,
            metrics,
            low_disk: low_disk.clone(),
            connections: connections.clone(),
            readiness: Arc::default(),
        };
        let limits = Limits::new(&config.server);
        open_files_limit(limits.max_connections);
        let pruner = tokio::spawn(prune_dedup_keys(
            store.clone(),
            config.store.dedup_retention_days,
        ));
        let retention = tokio::spawn(crate::retention::prune_forever(
            store.clone(),
            crate::retention::policy(&config.store, &config.sinks),
        ));
        let sizes = tokio::spawn(crate::retention::watch_size(
            store.clone(),
            config.store.min_free_percent,
            low_disk.clone(),
        ));
        let app = http::router(state, http_settings(&config));
        tracing::info!(addr = %listener.local_addr()?, path = %config.server.path, store = %config.store.describe(), "Listening.");

        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            shutting_down.store(true, Ordering::SeqCst);
            let _ = stopping_tx.send(true);
        };
        let grace = grace(&config.server);
        let server = crate::http::serve::serve(listener, app, limits, connections, signal);
        tokio::select! {
            () = server => {},
            _ = async {
                let _ = stopping_rx.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!("Requests still in flight after the grace period; closing them."),
        }
        pruner.abort();
        retention.abort();
        sizes.abort();
        // Sinks resume from their cursors next time; give them a moment to record progress.
        let _ = stop_sinks.send(true);
        let stopped = async {
            for s in sinks {
                let _ = s.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(1), stopped)
            .await
            .is_err()
        {
            tracing::warn!("A sink did not stop in time; it resumes from its cursor next start.");
        }
        // Every write queued so far is answered; connections cut off after the grace
        // period get an error (their callers got no answer, so nothing promised is lost).
        if tokio::time::timeout(Duration::from_secs(2), store.close())
            .await
            .is_err()
        {
            tracing::warn!("The store did not close in time; exiting without waiting for it.");
        }
        tracing::info!("Stopped; every event answered 200 is committed.");
        Ok(())
    }
}

/// What the HTTP surface needs of the configuration: its own sections, and the sinks and
/// store the dashboard shows.
fn http_settings(config: &Config) -> HttpSettings {
    HttpSettings {
        server: config.server.clone(),
        api: config.api.clone(),
        sinks: config
            .sinks
            .iter()
            .map(|s| (s.name().to_owned(), s.kind.type_name()))
            .collect(),
        store_description: config.store.describe(),
        // Checked when the configuration was loaded.
        campaign: crate::campaign::Settings::from_config(config).unwrap_or_default(),
    }
}

async fn prune_dedup_keys(store: Arc<dyn Store>, days: u32) {
    const EVERY: Duration = Duration::from_secs(3600);
    let mut every = tokio::time::interval(EVERY);
    loop {
        every.tick().await;
        // Once across replicas sharing the store.
        match store.due("prune_dedup", EVERY).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "Could not prune dedup keys.");
                continue;
            }
        }
        match store.prune_dedup(days).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, days, "Pruned old dedup keys."),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Could not prune dedup keys."),
        }
    }
}

/// Files the process keeps for itself besides its connections (the store, its WAL and
/// readers, sink files, forward connections, the runtime).
const FILES_BESIDES_CONNECTIONS: u64 = 64;

/// Raises the soft limit on open files to the hard one (every connection takes a file;
/// 1,024, a common soft limit, is soon reached) and logs what it is, with a warning when
/// it leaves less room than `max_connections` needs.
// (`rlim_t` is u64 on Linux, not on every Unix.)
#[allow(clippy::unnecessary_cast)]
fn open_files_limit(max_connections: usize) {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "Cannot read the open-file limit.");
            return;
        }
        let before = limit.rlim_cur;
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = limit.rlim_max;
            } else {
                tracing::warn!(error = %std::io::Error::last_os_error(), hard = limit.rlim_max, "Cannot raise the open-file limit to its hard limit.");
            }
        }
        let now = limit.rlim_cur as u64;
        if limit.rlim_cur == before {
            tracing::info!(open_files = now, "Open-file limit.");
        } else {
            tracing::info!(
                open_files = now,
                raised_from = before as u64,
                "Open-file limit raised to the hard limit."
            );
        }
        let room = now.saturating_sub(FILES_BESIDES_CONNECTIONS);
        if (max_connections as u64) > room {
            tracing::warn!(
                open_files = now,
                max_connections,
                "The open-file limit leaves room for about {room} connections, fewer than server.max_connections: beyond them accepting fails (and backs off) until some close. Raise the hard limit (ulimit -Hn, systemd LimitNOFILE=, docker --ulimit nofile=) or lower server.max_connections."
            );
        }
    }
    #[cfg(not(unix))]
    let _ = max_connections;
}
