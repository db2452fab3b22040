//! How the agent fetches the TUF repository's files: `file://` through tough's filesystem
//! transport, `http(s)://` through one HTTP client for the whole refresh.
//!
//! tough's own HTTP transport builds a new client (and loads the system's CA certificates)
//! for every file, and sleeps its back-off before the first try as well as between tries: with
//! a 200 ms back-off a refresh of four files spent 0.8 s waiting. Here the first try goes out at
//! once and only failures a retry can mend (no connection, a timeout, a 5xx) are retried.
//!
//! A transfer has no total time limit (a 300 MB bundle on a slow link must still arrive):
//! it is bounded by an idle timeout (no byte for [`Limits::idle`]) and a minimum average
//! rate (after a grace period). A transfer broken in the middle is resumed where it stopped
//! with an HTTP range request (`Range: bytes=N-`, answered 206 from byte N), a few times;
//! tough still checks the length and sha256 of the whole, so a resumed file is exactly
//! the signed one or refused.

use std::path::Path;
use std::time::{Duration, Instant};

use tough::{FilesystemTransport, Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

/// Tries per file, and the wait before the second (doubled before each later one).
const TRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// How long and how slowly a transfer may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// No byte for this long: the connection is given up (and the transfer resumed).
    pub idle: Duration,
    /// The average rate a transfer must keep once `grace` has passed, in bytes per second.
    pub min_rate: u64,
    pub grace: Duration,
    /// How many times a broken transfer is resumed.
    pub resumes: u32,
}

impl Default for Limits {
    /// 30 s idle; at least 16 KiB/s on average after the first 60 s; 5 resumes.
    fn default() -> Limits {
        Limits { idle: Duration::from_secs(30), min_rate: 16 * 1024, grace: Duration::from_secs(60), resumes: 5 }
    }
}

/// What is wrong with the config's `ca_file`, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}; {fix}")]
pub struct CaFileError {
    pub what: String,
    pub fix: &'static str,
}

/// The PEM certificates of the config's `ca_file`, trusted in addition to the system's CA
/// store for `https://` (a private CA, a test certificate); none without `ca_file`. One
/// function for the repository, the control plane and `check-config`: the same refusals.
pub fn extra_roots(ca_file: Option<&Path>) -> Result<Vec<reqwest::Certificate>, CaFileError> {
    let Some(path) = ca_file else { return Ok(Vec::new()) };
    let fix = "set `ca_file` to a PEM file of the CA certificates that sign the server's certificate";
    let refused = |what: String| CaFileError { what, fix };
    let pem = std::fs::read(path).map_err(|e| refused(format!("ca_file {}: cannot read it: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| refused(format!("ca_file {} is not PEM certificates: {}", path.display(), palier_bundle::error::one_line(&e))))?;
    if certs.is_empty() {
        return Err(refused(format!("ca_file {} holds no PEM certificate (no `-----BEGIN CERTIFICATE-----` block)", path.display())));
    }
    Ok(certs)
}

/// An HTTP client builder that trusts `roots` besides the system's CA store.
pub fn client_builder(roots: Vec<reqwest::Certificate>) -> reqwest::ClientBuilder {
    reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).tls_certs_merge(roots)
}

#[derive(Debug, Clone)]
pub struct RepoTransport {
    client: reqwest::Client,
    limits: Limits,
}

impl RepoTransport {
    /// A transport for the repository at `repository`, trusting `roots` besides the system's
    /// CA store (see [`extra_roots`]).
    pub fn new(roots: Vec<reqwest::Certificate>, repository: &Url) -> Result<RepoTransport, reqwest::Error> {
        RepoTransport::with_limits(Limits::default(), roots, repository.scheme() == "https")
    }

    /// With `tls` false (a repository at an `http://` or `file://` address) the system's CA
    /// store is not read: it cost more than the rest of a refresh's setup (about 6 ms of CPU
    /// at every cycle) and such a client has no use for it. It then follows no redirect to
    /// another scheme, and the error names the address to configure instead.
    pub fn with_limits(limits: Limits, roots: Vec<reqwest::Certificate>, tls: bool) -> Result<RepoTransport, reqwest::Error> {
        let builder = if tls {
            client_builder(roots)
        } else {
            client_builder(Vec::new()).tls_certs_only(roots).redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.url().scheme() != "http" {
                    let to = attempt.url().to_string();
                    attempt.error(format!("the repository redirects to {to}: set `repository` to that address"))
                } else if attempt.previous().len() > 10 {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }))
        };
        Ok(RepoTransport { client: builder.read_timeout(limits.idle).build()?, limits })
    }

    async fn http(&self, url: Url) -> Result<TransportStream, TransportError> {
        let other = |cause: String| TransportError::new_with_cause(TransportErrorKind::Other, url.as_str(), cause);
        let mut wait = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let retry = match self.client.get(url.clone()).send().await {
                Ok(r) if matches!(r.status().as_u16(), 403 | 404 | 410) => return Err(TransportError::new(TransportErrorKind::FileNotFound, url.as_str())),
                Ok(r) if r.status().is_success() => return Ok(body(self.client.clone(), self.limits, r, url)),
                Ok(r) if r.status().is_server_error() => other(format!("HTTP status {}", r.status())),
                Ok(r) => return Err(other(format!("HTTP status {}", r.status()))),
                Err(e) if e.is_connect() || e.is_timeout() => other(palier_bundle::error::one_line(&e)),
                Err(e) => return Err(other(palier_bundle::error::one_line(&e))),
            };
            if attempt == TRIES {
                return Err(retry);
            }
            tracing::debug!(%url, attempt, error = %retry, "retrying");
            tokio::time::sleep(wait).await;
            wait *= 2;
            attempt += 1;
        }
    }
}

/// A transfer in progress.
struct Transfer {
    client: reqwest::Client,
    limits: Limits,
    url: Url,
    response: reqwest::Response,
    received: u64,
    started: Instant,
    resumes: u32,
}

impl Transfer {
    /// The next chunk, resuming a broken connection with a range request.
    async fn next(&mut self) -> Result<Option<bytes::Bytes>, String> {
        loop {
            let error = match self.response.chunk().await {
                Ok(Some(chunk)) => {
                    self.received += chunk.len() as u64;
                    self.check_rate()?;
                    return Ok(Some(chunk));
                }
                Ok(None) => return Ok(None),
                Err(e) => palier_bundle::error::one_line(&e),
            };
            if self.resumes >= self.limits.resumes {
                return Err(format!("{error} (after {} resumed transfers)", self.resumes));
            }
            self.resumes += 1;
            tracing::info!(url = %self.url, from = self.received, error, "transfer broken; resuming");
            self.response = self.resume().await.map_err(|why| format!("{error}; resuming from byte {} failed: {why}", self.received))?;
        }
    }

    async fn resume(&self) -> Result<reqwest::Response, String> {
        let r = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::RANGE, format!("bytes={}-", self.received))
            .send()
            .await
            .map_err(|e| palier_bundle::error::one_line(&e))?;
        if r.status() != reqwest::StatusCode::PARTIAL_CONTENT {
            return Err(format!("the server answered {} to a range request", r.status()));
        }
        let start = r
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.parse::<u64>().ok());
        if start != Some(self.received) {
            return Err(format!("the server resumed at {start:?}, not at byte {}", self.received));
        }
        Ok(r)
    }

    fn check_rate(&self) -> Result<(), String> {
        let elapsed = self.started.elapsed();
        if elapsed < self.limits.grace {
            return Ok(());
        }
        let rate = (self.received as f64 / elapsed.as_secs_f64()) as u64;
        if rate < self.limits.min_rate {
            return Err(format!("transfer too slow: {rate} bytes/s on average over {} s, below the minimum {} bytes/s", elapsed.as_secs(), self.limits.min_rate));
        }
        Ok(())
    }
}

/// The response body as tough's stream of chunks.
fn body(client: reqwest::Client, limits: Limits, response: reqwest::Response, url: Url) -> TransportStream {
    let transfer = Transfer { client, limits, url: url.clone(), response, received: 0, started: Instant::now(), resumes: 0 };
    let chunks = futures::stream::try_unfold(transfer, |mut t| async move { Ok(t.next().await?.map(|chunk| (chunk, t))) });
    let url = url.to_string();
    Box::pin(sync_wrapper::SyncStream::new(futures::TryStreamExt::map_err(chunks, move |e: String| {
        TransportError::new_with_cause(TransportErrorKind::Other, &url, e)
    })))
}

#[async_trait::async_trait]
impl Transport for RepoTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        match url.scheme() {
            "http" | "https" => self.http(url).await,
            _ => FilesystemTransport.fetch(url).await,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server on port 0 for one file of `len` bytes: the first answer stops after `cut`
    /// bytes (the connection drops, or stalls when `stall`), later ones honour `Range`.
    async fn server(len: usize, cut: usize, stall: bool) -> (Url, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/targets/file", listener.local_addr().unwrap())).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap();
                let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let range = head.lines().find_map(|l| l.strip_prefix("range: bytes=")).map(|r| r.trim_end_matches('-').trim().parse::<usize>().unwrap());
                seen.lock().unwrap().push(range.map(|r| format!("bytes={r}-")).unwrap_or_default());
                let data = data.clone();
                let cut_now = first;
                first = false;
                tokio::spawn(async move {
                    match range {
                        None => {
                            let _ = conn.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").as_bytes()).await;
                            let end = if cut_now { cut } else { len };
                            let _ = conn.write_all(&data[..end]).await;
                            if cut_now && stall {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                            }
                        }
                        Some(from) => {
                            let head = format!("HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {from}-{}/{len}\r\n\r\n", len - from, len - 1);
                            let _ = conn.write_all(head.as_bytes()).await;
                            let _ = conn.write_all(&data[from..]).await;
                        }
                    }
                });
            }
        });
        (url, requests)
    }

    async fn fetch_all(t: &RepoTransport, url: Url) -> Result<Vec<u8>, String> {
        let mut stream = t.fetch(url).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e).map(|s| s.to_string())))?);
        }
        Ok(out)
    }

    fn limits() -> Limits {
        Limits { idle: Duration::from_millis(300), min_rate: 1, grace: Duration::from_secs(60), resumes: 3 }
    }

    #[tokio::test]
    async fn a_broken_transfer_is_resumed_with_a_range_request() {
        let (url, requests) = server(200_000, 70_000, false).await;
        let t = RepoTransport::with_limits(limits(), Vec::new(), false).unwrap();
        let body = fetch_all(&t, url).await.unwrap();
        assert_eq!(body.len(), 200_000);
        assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        assert_eq!(*requests.lock().unwrap(), ["".to_owned(), "bytes=70000-".to_owned()]);
    }

    #[tokio::test]
    async fn a_stalled_transfer_is_cut_at_the_idle_timeout_and_resumed() {
        let (url, requests) = server(100_000, 10_000, true).await;
        let t = RepoTransport::with_limits(limits(), Vec::new(), false).unwrap();
        let started = Instant::now();
        let body = fetch_all(&t, url).await.unwrap();
        assert_eq!(body.len(), 100_000);
        assert!(started.elapsed() < Duration::from_secs(20), "no wait for the stalled connection's end");
        assert_eq!(requests.lock().unwrap()[1], "bytes=10000-");
    }

    #[tokio::test]
    async fn a_plain_http_repository_redirected_to_https_names_the_address_to_configure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/metadata/timestamp.json", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = conn.read(&mut buf).await.unwrap();
            let answer = "HTTP/1.1 301 Moved Permanently\r\nlocation: https://repo.example/metadata/timestamp.json\r\ncontent-length: 0\r\n\r\n";
            conn.write_all(answer.as_bytes()).await.unwrap();
        });
        let t = RepoTransport::with_limits(limits(), Vec::new(), false).unwrap();
        let e = fetch_all(&t, url).await.unwrap_err();
        assert!(e.contains("redirects to https://repo.example/metadata/timestamp.json: set `repository` to that address"), "{e}");
    }

    #[tokio::test]
    async fn a_transfer_below_the_minimum_rate_is_refused() {
        let (url, _) = server(100_000, 100_000, false).await;
        let slow = Limits { min_rate: u64::MAX, grace: Duration::ZERO, ..limits() };
        let t = RepoTransport::with_limits(slow, Vec::new(), false).unwrap();
        let e = fetch_all(&t, url).await.unwrap_err();
        assert!(e.contains("too slow"), "{e}");
    }
}
