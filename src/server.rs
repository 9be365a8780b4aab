//! The running service: built from a [`Config`] (failing fast, before any port is bound),
//! then [`App::run`] on a listener until a shutdown future resolves.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{self, AppState, Auth};
use crate::sink::runner::Runner;
use crate::store::{Store, StoreWriter};

/// How long in-flight requests get to finish after a shutdown signal.
pub const GRACE: Duration = Duration::from_secs(6);

/// Everything the service needs, opened and checked.
pub struct App {
    config: Config,
    store: Store,
    writer: StoreWriter,
    sinks: Vec<Runner>,
}

impl App {
    /// Opens the store and builds every sink; any problem is an error here.
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let (store, writer) = Store::open(&config.store.dir)?;
        let reader = store.reader()?;
        let mut sinks = Vec::new();
        for sink in &config.sinks {
            let head = *store.last_seq().borrow();
            let recorded = reader.cursor(sink.name())?;
            let (built, cursor) = sink.build(recorded, head)?;
            sinks.push(Runner::new(
                built,
                sink.clone(),
                store.clone(),
                cursor,
                recorded,
            ));
        }
        Ok(Self {
            config,
            store,
            writer,
            sinks,
        })
    }

    /// A handle to the store, for callers that want to read it.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests (at most
    /// [`GRACE`]) and waits until every queued write is committed.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            config,
            store,
            writer,
            sinks,
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
        let state = AppState {
            store: store.clone(),
            auth,
            shutting_down: shutting_down.clone(),
            webhook_path: config.server.path.as_str().into(),
            max_body_bytes: config.server.max_body_bytes,
            metrics: crate::metrics::install(),
        };
        let pruner = tokio::spawn(prune_dedup_keys(
            store.clone(),
            config.store.dedup_retention_days,
        ));
        let app = http::router(state, &config.server, config.api.token.as_deref());
        tracing::info!(addr = %listener.local_addr()?, path = %config.server.path, store = %config.store.dir.display(), "Listening.");

        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            shutting_down.store(true, Ordering::SeqCst);
            let _ = stopping_tx.send(true);
        };
        let server = axum::serve(listener, app).with_graceful_shutdown(signal);
        tokio::select! {
            result = server => result?,
            _ = async {
                let _ = stopping_rx.wait_for(|s| *s).await;
                tokio::time::sleep(GRACE).await;
            } => tracing::warn!("Requests still in flight after the grace period; closing them."),
        }
        pruner.abort();
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
        drop(store);
        // Connections cut off after the grace period may still hold store handles; their
        // callers got no answer, so nothing promised is lost by not waiting for them.
        let join = tokio::task::spawn_blocking(move || writer.join());
        match tokio::time::timeout(Duration::from_secs(1), join).await {
            Ok(joined) => joined?,
            Err(_) => {
                tracing::warn!("Unanswered requests remain; exiting without waiting for them.")
            }
        }
        tracing::info!("Stopped; every event answered 200 is committed.");
        Ok(())
    }
}

async fn prune_dedup_keys(store: Store, days: u32) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        match store.prune_dedup(days).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, days, "Pruned old dedup keys."),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Could not prune dedup keys."),
        }
    }
}
