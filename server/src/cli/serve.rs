//! `palier-server serve`: the repository over HTTP, its metadata kept fresh.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use jiff::{SignedDuration, Timestamp};
use tokio::runtime::{Handle, RuntimeFlavor};

use super::RepoArgs;
use crate::error::{Error, Result};
use crate::http::{self, Clock, DEFAULT_HALT_THRESHOLD, ServeConfig};
use crate::repo::RefreshMargins;

#[derive(Debug, Parser)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// Address to listen on, HOST:PORT; port 0 picks a free port (the bound address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// How often metadata expiries are checked (re-signed when due); for tests.
    #[arg(long, hide = true, value_name = "DURATION", default_value = "5m")]
    refresh_interval: SignedDuration,
    /// The control-plane store (SQLite, created if missing): the API under `/api/v1/` and the
    /// fleet on the dashboard. Without it, `/api/v1/` answers 503.
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Halt a bundle version in the signed metadata once this many platforms rolled it back.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HALT_THRESHOLD, value_parser = clap::value_parser!(u32).range(1..))]
    halt_threshold: u32,
}

impl Args {
    /// `now`: the hidden global `--now`; the server's clock then starts at that instant.
    pub async fn run(self, now: Option<Timestamp>) -> Result<()> {
        let refresh_every = Duration::try_from(self.refresh_interval)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Error::Refused(format!("--refresh-interval {}: must be positive", self.refresh_interval)))?;
        let config = ServeConfig {
            paths: self.repo.paths(),
            listen: self.listen,
            clock: now.map(Clock::starting_at).unwrap_or_else(Clock::system),
            refresh_every,
            margins: RefreshMargins::default(),
            db: self.db,
            halt_threshold: self.halt_threshold,
        };
        if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
            return http::serve(config, http::shutdown_signal()).await;
        }
        // The binary's runtime is single-threaded (right for the one-shot commands); a server
        // gets a multi-threaded runtime of its own, on its own thread.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("palier-serve".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Refused(format!("cannot start the server runtime: {e}")))
                    .and_then(|rt| {
                        let served = rt.block_on(http::serve(config, http::shutdown_signal()));
                        rt.shutdown_timeout(Duration::from_secs(5));
                        served
                    });
                let _ = tx.send(result);
            })
            .map_err(|e| Error::Refused(format!("cannot start the server thread: {e}")))?;
        rx.await.map_err(|_| Error::Refused("the server thread stopped without a result".into()))?
    }
}
