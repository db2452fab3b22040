//! Bind, keep the metadata fresh, serve until asked to stop.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::app::{AppState, Clock, app};
use crate::error::{Error, Result};
use crate::keys;
use crate::repo::{self, RefreshMargins, RepoPaths};
use crate::store::Store;

/// How long open connections (a slow download of a large target) may go on after a stop
/// was asked for; then the server closes them and exits.
const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub paths: RepoPaths,
    /// `HOST:PORT`; port 0 picks a free one (the bound address is printed on stdout).
    pub listen: String,
    pub clock: Clock,
    /// How often the expiries are checked.
    pub refresh_every: Duration,
    pub margins: RefreshMargins,
    /// The control-plane store; without it `/api/v1/` answers 503.
    pub db: Option<PathBuf>,
    /// Distinct platforms reporting a rollback of one bundle version before it is auto-halted.
    pub halt_threshold: u32,
}

/// Serve until `shutdown` completes, then stop gracefully. Prints `listening on http://ADDR`
/// on stdout once the socket is bound and the metadata has been refreshed once.
#[tracing::instrument(skip_all, fields(repo = %config.paths.dir.display()))]
pub async fn serve(config: ServeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let paths = config.paths.clone();
    if !paths.pinned_root().is_file() {
        return Err(Error::Refused(format!("no repository at {}: {} not found (run `palier-server init`)", paths.dir.display(), paths.pinned_root().display())));
    }
    // Refreshing needs the snapshot and timestamp keys: refuse to start without them rather
    // than let the metadata expire a day later.
    keys::role_keys(&paths.keys, "snapshot")?;
    keys::role_keys(&paths.keys, "timestamp")?;

    let store = match &config.db {
        Some(path) => Some(Arc::new(Store::open(path)?)),
        None => None,
    };

    let listener = TcpListener::bind(&config.listen).await.map_err(|e| Error::Refused(format!("cannot listen on {}: {e}", config.listen)))?;
    let local = listener.local_addr().map_err(|e| Error::Refused(format!("cannot read the bound address of {}: {e}", config.listen)))?;
    let state = match store {
        Some(store) => AppState::with_store(paths, config.clock, store, config.halt_threshold),
        None => AppState::new(paths, config.clock),
    };
    // Serve fresh metadata from the first request on.
    refresh_once(&state, config.margins).await;

    println!("listening on http://{local}");
    let _ = std::io::stdout().flush();
    tracing::info!(%local, "listening");

    let stop = CancellationToken::new();
    let refresher = tokio::spawn(refresh_loop(state.clone(), config.refresh_every, config.margins, stop.clone()));
    let asked = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("stopping: finishing open requests");
        asked.cancel();
    });

    // Small answers on kept-alive connections: do not let Nagle hold them back.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(stop.clone().cancelled_owned());
    let deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(GRACE).await;
    };
    tokio::select! {
        served = server.into_future() => served.map_err(|e| Error::Refused(format!("server on {local} failed: {e}")))?,
        () = deadline => tracing::warn!(grace_s = GRACE.as_secs(), "connections still open after the grace period; closing them"),
    }
    stop.cancel();
    let _ = refresher.await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn refresh_loop(state: AppState, every: Duration, margins: RefreshMargins, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => refresh_once(&state, margins).await,
        }
    }
}

/// One `repo::refresh`, on the blocking pool: opening the repository waits on its lock while a
/// publish holds it, and signing and writing are file work; neither may stall the workers that
/// answer requests. Failures are logged and counted, and tried again at the next interval.
async fn refresh_once(state: &AppState, margins: RefreshMargins) {
    let (paths, now) = (state.paths().clone(), state.clock().now());
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || handle.block_on(repo::refresh(&paths, now, margins))).await;
    match outcome {
        Ok(Ok(true)) => {
            state.metrics().resigned();
            tracing::info!("metadata re-signed");
        }
        Ok(Ok(false)) => tracing::debug!("metadata fresh; nothing re-signed"),
        Ok(Err(e)) => {
            state.metrics().refresh_failed();
            tracing::error!(error = %crate::error::one_line(&e), "cannot refresh the repository metadata; trying again later");
        }
        Err(e) => {
            state.metrics().refresh_failed();
            tracing::error!(error = %e, "the metadata refresh stopped; trying again later");
        }
    }
}
