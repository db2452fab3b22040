//! `palier-server serve`: the repository over HTTP(S), its metadata kept fresh, and the
//! control plane.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use jiff::{SignedDuration, Timestamp};
use tokio::runtime::{Handle, RuntimeFlavor};

use super::RepoArgs;
use crate::error::{Error, Result};
use crate::http::{self, AppOptions, Clock, DEFAULT_HALT_THRESHOLD, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, Limits, ServeConfig, TlsFiles};
use crate::repo::RefreshMargins;

#[derive(Debug, Parser)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// Address to listen on, HOST:PORT or a port (then 127.0.0.1:PORT); port 0 picks a free
    /// port (the bound address is printed). Anything but loopback needs --admin-token-file.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// How often metadata expiries are checked (re-signed when due); for tests.
    #[arg(long, hide = true, value_name = "DURATION", default_value = "5m")]
    refresh_interval: SignedDuration,
    /// Re-sign the timestamp when it expires within this; for benchmarks (longer than the
    /// timestamp's lifetime, 1 day, re-signs it at every refresh).
    #[arg(long, hide = true, value_name = "DURATION")]
    timestamp_margin: Option<SignedDuration>,
    /// The control-plane store (SQLite; `platform add` creates it): the API under `/api/v1/`
    /// and the fleet on the dashboard. Without it, `/api/v1/` answers 503.
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Create the store named by --db if it does not exist (otherwise a missing store is
    /// refused: a mistyped path must not serve an empty fleet).
    #[arg(long, requires = "db")]
    create: bool,
    /// Halt a bundle version in the signed metadata once this many platforms rolled it back
    /// (only platforms whose registered contract admits it and that had it count).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HALT_THRESHOLD, value_parser = clap::value_parser!(u32).range(1..))]
    halt_threshold: u32,
    /// Also require the rollbacks to be at least this share (0 to 1) of the platforms that
    /// applied the bundle version, e.g. 0.2.
    #[arg(long, value_name = "SHARE", value_parser = parse_share)]
    halt_share: Option<f64>,
    /// A file holding the operator token (one line) that the dashboard and `/metrics`
    /// require: HTTP Basic with any user name and the token as password, or Bearer.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS (with --tls-key); re-read on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How often the agents report; a platform not seen for three of these is flagged.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    poll_interval: SignedDuration,
    /// The IANA time zone the dashboard shows times in (e.g. Europe/Paris).
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    timezone: String,
    /// Receipts a platform may send per minute (429 with Retry-After past it).
    #[arg(long, value_name = "N", default_value_t = Limits::default().receipts_per_minute)]
    receipts_per_minute: u32,
    /// Status reports a platform may send per minute.
    #[arg(long, value_name = "N", default_value_t = Limits::default().statuses_per_minute)]
    statuses_per_minute: u32,
    /// Fix requests a platform may file per minute.
    #[arg(long, value_name = "N", default_value_t = Limits::default().fix_requests_per_minute)]
    fix_requests_per_minute: u32,
    /// Bytes of receipts and fix requests one platform may have stored.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().stored_bytes_per_platform)]
    max_stored_bytes: u64,
    /// Connections open at once; one more is answered 503 and closed.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Time a client has to send a request head (and to start the next one on a kept-alive
    /// connection) before it is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    header_timeout: SignedDuration,
}

fn parse_share(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 1.0 => Ok(s),
        _ => Err(format!("{text}: a share above 0 and at most 1, e.g. 0.2")),
    }
}

fn positive(name: &str, d: SignedDuration) -> Result<Duration> {
    Duration::try_from(d).ok().filter(|d| !d.is_zero()).ok_or_else(|| Error::Refused(format!("--{name} {d}: must be positive")))
}

/// The operator token in `path`: one non-empty line, in a file others cannot read.
fn read_operator_token(path: &std::path::Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::Refused(format!("--admin-token-file {}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::Refused(format!(
            "--admin-token-file {}: readable by others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::Refused(format!("--admin-token-file {}: {e}", path.display())))?;
    let token = text.trim();
    if token.len() < 16 || token.lines().count() != 1 || token.chars().any(char::is_whitespace) {
        return Err(Error::Refused(format!(
            "--admin-token-file {}: expected one line of at least 16 characters without spaces (e.g. `openssl rand -hex 32 > {}`)",
            path.display(),
            path.display()
        )));
    }
    Ok(token.to_owned())
}

impl Args {
    /// The configuration, checked: everything refused here is refused before binding.
    fn config(self, now: Option<Timestamp>) -> Result<ServeConfig> {
        let refresh_every = positive("refresh-interval", self.refresh_interval)?;
        let header_timeout = positive("header-timeout", self.header_timeout)?;
        positive("poll-interval", self.poll_interval)?;
        let timezone = jiff::tz::TimeZone::get(&self.timezone)
            .map_err(|e| Error::Refused(format!("--timezone {}: not a known IANA time zone ({e}); e.g. UTC or Europe/Paris", self.timezone)))?;
        let listen = http::listen_address(&self.listen).map_err(Error::Refused)?;
        let operator_token = self.admin_token_file.as_deref().map(read_operator_token).transpose()?;
        if operator_token.is_none() && !http::is_loopback(&listen) {
            return Err(Error::Refused(format!(
                "--listen {listen}: the dashboard and /metrics show every customer's platform; off loopback they need an operator credential (--admin-token-file FILE), and TLS (--tls-cert/--tls-key or a TLS reverse proxy)"
            )));
        }
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            _ => None,
        };
        Ok(ServeConfig {
            paths: self.repo.paths(),
            listen,
            clock: now.map(Clock::starting_at).unwrap_or_else(Clock::system),
            refresh_every,
            margins: match self.timestamp_margin {
                Some(timestamp) => RefreshMargins { timestamp, ..RefreshMargins::default() },
                None => RefreshMargins::default(),
            },
            db: self.db,
            create_store: self.create,
            options: AppOptions {
                halt_threshold: self.halt_threshold,
                halt_share: self.halt_share,
                operator_token,
                limits: Limits {
                    receipts_per_minute: self.receipts_per_minute,
                    statuses_per_minute: self.statuses_per_minute,
                    fix_requests_per_minute: self.fix_requests_per_minute,
                    stored_bytes_per_platform: self.max_stored_bytes,
                },
                refresh_every: Some(refresh_every),
                poll_interval: self.poll_interval,
                timezone,
            },
            header_timeout,
            max_connections: self.max_connections.max(1),
            tls,
        })
    }

    /// `now`: the hidden global `--now`; the server's clock then starts at that instant.
    pub async fn run(self, now: Option<Timestamp>) -> Result<()> {
        let config = self.config(now)?;
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

#[allow(dead_code)]
const _HEADER_TIMEOUT_DEFAULT_IS_10S: () = assert!(DEFAULT_HEADER_TIMEOUT.as_secs() == 10);
