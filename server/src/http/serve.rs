//! Bind, keep the metadata fresh, serve until asked to stop.
//!
//! The accept loop is our own, over hyper's HTTP/1 connection builder (rather than
//! `axum::serve`, which sets no timeout, or axum-server, one more dependency for the same
//! builder): each connection gets [`ServeConfig::header_timeout`] to send a complete request
//! head, and the same again between two requests on a kept-alive connection (hyper starts the
//! header-read timer when it waits for a head), so slowloris and idle sockets close; at most
//! [`ServeConfig::max_connections`] are open at once, and one past that gets a one-line 503
//! and is closed. `RLIMIT_NOFILE` is raised to its hard limit at start. TLS, when configured,
//! is rustls through tokio-rustls, the certificate and key re-read on SIGHUP.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::app::{AppOptions, AppState, Clock, app};
use crate::error::{Error, Result};
use crate::keys;
use crate::repo::{self, RefreshMargins, RepoPaths};
use crate::store::Store;

/// How long open connections (a slow download of a large target) may go on after a stop
/// was asked for; then the server closes them and exits.
const GRACE: Duration = Duration::from_secs(10);

/// The answer to a connection past the cap, written as is before closing it.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 77\r\n\r\n{\"error\":\"too many open connections to this server; try again in 5 seconds\"}\n";

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
    /// Create the store when it does not exist (else a missing one is refused).
    pub create_store: bool,
    /// The control plane's behaviour: halt threshold and share, operator token, quotas, poll
    /// interval (`refresh_every` there is set from the field above).
    pub options: AppOptions,
    /// Time to send a request head, and to start the next one on a kept-alive connection.
    pub header_timeout: Duration,
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<TlsFiles>,
}

impl ServeConfig {
    /// The defaults of `palier-server serve` for a repository and an address.
    pub fn new(paths: RepoPaths, listen: impl Into<String>) -> Self {
        ServeConfig {
            paths,
            listen: listen.into(),
            clock: Clock::system(),
            refresh_every: Duration::from_secs(300),
            margins: RefreshMargins::default(),
            db: None,
            create_store: false,
            options: AppOptions::default(),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
        }
    }
}

/// The header-read (and keep-alive idle) timeout.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once, by default (lowered to fit the file-descriptor limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// The certificate chain and key files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Read and check both files into a rustls acceptor.
    fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let refuse = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
            Error::Refused(format!("--tls-{what} {}: {e} (a PEM file is expected)", path.display()))
        };
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| refuse("cert", &self.cert, &e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| refuse("cert", &self.cert, &e))?;
        if certs.is_empty() {
            return Err(refuse("cert", &self.cert, &"no certificate in it"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| refuse("key", &self.key, &e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Refused(format!("cannot set up TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| Error::Refused(format!("--tls-cert {} and --tls-key {} do not make a usable pair: {e}", self.cert.display(), self.key.display())))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// Serve until `shutdown` completes, then stop gracefully. Prints `listening on http://ADDR`
/// (or `https://`) on stdout once the socket is bound and the metadata has been refreshed once.
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
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(RwLock::new(files.acceptor()?))),
        None => None,
    };

    let store = match &config.db {
        Some(path) if config.create_store => Some(Arc::new(Store::open(path)?)),
        Some(path) => Some(Arc::new(Store::open_existing(path)?)),
        None => None,
    };

    let listener = bind(&config.listen).await.map_err(|e| Error::Refused(format!("cannot listen on {}: {e}", config.listen)))?;
    let local = listener.local_addr().map_err(|e| Error::Refused(format!("cannot read the bound address of {}: {e}", config.listen)))?;
    let descriptors = raise_nofile_limit();
    // Keep some descriptors for the store, the repository and the log.
    let max_connections = config.max_connections.min(usize::try_from(descriptors.saturating_sub(64)).unwrap_or(usize::MAX)).max(16);
    let mut options = config.options.clone();
    options.refresh_every = Some(config.refresh_every);
    let state = AppState::with_options(paths, config.clock, store, options);
    // Serve fresh metadata from the first request on.
    refresh_once(&state, config.margins).await;

    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{local}");
    let _ = std::io::stdout().flush();
    tracing::info!(
        %local,
        scheme,
        repo = %state.paths().dir.display(),
        store = config.db.as_ref().map_or_else(|| "none".to_owned(), |d| d.display().to_string()),
        operator_credential = state.options().operator_token.is_some(),
        max_connections,
        header_timeout_s = config.header_timeout.as_secs_f64(),
        version = env!("CARGO_PKG_VERSION"),
        "palier-server serving"
    );

    let stop = CancellationToken::new();
    let refresher = tokio::spawn(refresh_loop(state.clone(), config.refresh_every, config.margins, stop.clone()));
    let asked = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("stopping: finishing open requests");
        asked.cancel();
    });
    if let (Some(acceptor), Some(files)) = (&tls, &config.tls) {
        tokio::spawn(reload_on_sighup(acceptor.clone(), files.clone(), stop.clone()));
    }

    let router = app(state.clone());
    let connections = Arc::new(Semaphore::new(max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(config.header_timeout).keep_alive(true).max_buf_size(64 << 10);
    let conn = Arc::new(Conn { router, http, stop: stop.clone(), tls, header_timeout: config.header_timeout });

    // The accept loop has a thread (and a small runtime) of its own: when the workers are busy
    // answering a storm, connections are still taken off the kernel's queue at once (and the
    // header timeout starts), rather than waiting their turn among thousands of tasks.
    let listener = listener.into_std().map_err(|e| Error::Refused(format!("cannot listen on {local}: {e}")))?;
    let (main, accept_stop, accepting, (done_tx, done_rx)) = (tokio::runtime::Handle::current(), stop.clone(), connections.clone(), tokio::sync::oneshot::channel::<()>());
    let metrics_state = state.clone();
    std::thread::Builder::new()
        .name("palier-accept".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(error = %e, "cannot start the accept thread's runtime"),
            };
            runtime.block_on(accept_loop(listener, main, accepting, conn, metrics_state, accept_stop));
            let _ = done_tx.send(());
        })
        .map_err(|e| Error::Refused(format!("cannot start the accept thread: {e}")))?;
    // Ends when asked to stop (or if the accept thread could not run).
    let _ = done_rx.await;
    stop.cancel();

    // Every connection holds a permit: all back means all closed.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(GRACE, connections.acquire_many(all)).await.is_err() {
        tracing::warn!(grace_s = GRACE.as_secs(), "connections still open after the grace period; closing them");
    }
    let _ = refresher.await;
    tracing::info!("stopped");
    Ok(())
}

/// What every connection needs.
struct Conn {
    router: axum::Router,
    http: hyper::server::conn::http1::Builder,
    stop: CancellationToken,
    tls: Option<Arc<RwLock<tokio_rustls::TlsAcceptor>>>,
    header_timeout: Duration,
}

async fn accept_loop(
    listener: std::net::TcpListener,
    main: tokio::runtime::Handle,
    connections: Arc<Semaphore>,
    conn: Arc<Conn>,
    state: AppState,
    stop: CancellationToken,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(error = %e, "cannot accept connections"),
    };
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (EMFILE) and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            state.metrics().connection_refused();
            tokio::spawn(refuse_busy(tcp));
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        // Handed to the main runtime, whose I/O driver takes it over.
        let tcp = match tcp.into_std() {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand a connection over");
                continue;
            }
        };
        let conn = conn.clone();
        main.spawn(async move {
            let _permit = permit;
            let tcp = match TcpStream::from_std(tcp) {
                Ok(t) => t,
                Err(e) => return tracing::debug!(error = %e, "cannot take a connection over"),
            };
            let service = conn.router.clone().map_request(move |r: hyper::Request<hyper::body::Incoming>| {
                let mut r = r.map(axum::body::Body::new);
                r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                r
            });
            let service = TowerToHyperService::new(service);
            match &conn.tls {
                None => serve_connection(&conn.http, TokioIo::new(tcp), service, &conn.stop).await,
                Some(acceptor) => {
                    let acceptor = acceptor.read().unwrap_or_else(PoisonError::into_inner).clone();
                    match tokio::time::timeout(conn.header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(&conn.http, TokioIo::new(stream), service, &conn.stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake too slow; closed"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<I, S>(http: &hyper::server::conn::http1::Builder, io: I, service: S, stop: &CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection closed");
            }
        }
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Listen on `listen` with a deep accept queue (the kernel caps it at `somaxconn`): a burst of
/// connections waits there rather than being dropped and retried seconds later.
async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host(listen)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "the name resolves to no address"))?;
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// One connection too many: say so in one answer and close it.
async fn refuse_busy(mut tcp: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(BUSY).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; the soft limit in force afterwards.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let current = getrlimit(Resource::Nofile);
    let (soft, hard) = (current.current.unwrap_or(u64::MAX), current.maximum);
    if hard.is_none_or(|h| h > soft) {
        let mut raised = current;
        raised.current = hard.or(Some(1 << 20));
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX),
            Err(e) => tracing::warn!(soft, error = %e, "cannot raise the open-file limit; fewer connections will be served at once"),
        }
    }
    soft
}

/// Re-read the certificate and key on SIGHUP; a pair that does not load leaves the old one.
async fn reload_on_sighup(acceptor: Arc<RwLock<tokio_rustls::TlsAcceptor>>, files: TlsFiles, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the TLS certificate is reloaded only by a restart");
            return;
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        match files.acceptor() {
            Ok(new) => {
                *acceptor.write().unwrap_or_else(PoisonError::into_inner) = new;
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(error = %crate::error::one_line(&e), "TLS certificate not reloaded; serving the previous one"),
        }
    }
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

/// One `repo::refresh`, on the repository thread (see [`super::worker`]): opening the
/// repository waits on its lock while a publish holds it, and signing and writing are file
/// work; neither may stall the workers that answer requests. Failures are logged and counted,
/// and tried again at the next interval; `/healthz` fails when none succeeded for two.
pub(crate) async fn refresh_once(state: &AppState, margins: RefreshMargins) {
    let (paths, now) = (state.paths().clone(), state.clock().now());
    let outcome = state.repo().run(move || async move { repo::refresh(&paths, now, margins).await }).await;
    match outcome {
        Some(Ok(resigned)) => {
            state.refreshed(now);
            if resigned {
                state.metrics().resigned();
                tracing::info!("metadata re-signed");
            } else {
                tracing::debug!("metadata fresh; nothing re-signed");
            }
        }
        Some(Err(e)) => {
            state.metrics().refresh_failed();
            tracing::error!(error = %crate::error::one_line(&e), "cannot refresh the repository metadata; trying again later");
        }
        None => {
            state.metrics().refresh_failed();
            tracing::error!("the metadata refresh stopped; trying again later");
        }
    }
}

/// Whether `listen` (`HOST:PORT`) is a loopback address (`localhost` counts).
pub fn is_loopback(listen: &str) -> bool {
    match listen.parse::<SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => listen.rsplit_once(':').is_some_and(|(host, _)| host == "localhost"),
    }
}

/// `PORT` alone means `127.0.0.1:PORT`; `HOST:PORT` as it is.
pub fn listen_address(text: &str) -> std::result::Result<String, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u16>().map(|p| format!("127.0.0.1:{p}")).map_err(|_| format!("--listen {text}: not a port (0 to 65535); e.g. --listen 127.0.0.1:8080"));
    }
    if text.parse::<SocketAddr>().is_ok() || text.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) {
        return Ok(text.to_owned());
    }
    Err(format!("--listen {text}: expected HOST:PORT or a port, e.g. --listen 127.0.0.1:8080"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_a_port_or_host_and_port() {
        assert_eq!(listen_address("8080").as_deref(), Ok("127.0.0.1:8080"));
        assert_eq!(listen_address("0.0.0.0:8080").as_deref(), Ok("0.0.0.0:8080"));
        assert_eq!(listen_address("[::1]:80").as_deref(), Ok("[::1]:80"));
        assert_eq!(listen_address("localhost:80").as_deref(), Ok("localhost:80"));
        for bad in ["99999", "host", ":80", "a:b"] {
            let e = listen_address(bad).unwrap_err();
            assert!(e.contains("--listen 127.0.0.1:8080"), "{e}");
        }
        assert!(is_loopback("127.0.0.1:0") && is_loopback("[::1]:1") && is_loopback("localhost:8080"));
        assert!(!is_loopback("0.0.0.0:8080") && !is_loopback("192.0.2.1:80") && !is_loopback("example.org:80"));
    }
}
