//! How the agent fetches the TUF repository's files: `file://` through tough's filesystem
//! transport, `http(s)://` through one HTTP client for the whole refresh.
//!
//! tough's own HTTP transport builds a new client (and loads the system's CA certificates)
//! for every file, and sleeps its back-off before the first try as well as between tries: with
//! a 200 ms back-off a refresh of four files spent 0.8 s waiting. Here the first try goes out at
//! once and only failures a retry can mend (no connection, a timeout, a 5xx) are retried.

use std::time::Duration;

use tough::{FilesystemTransport, Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

/// Tries per file, and the wait before the second (doubled before each later one).
const TRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct RepoTransport {
    client: reqwest::Client,
}

impl RepoTransport {
    pub fn new() -> Result<RepoTransport, reqwest::Error> {
        let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).timeout(Duration::from_secs(60)).build()?;
        Ok(RepoTransport { client })
    }

    async fn http(&self, url: Url) -> Result<TransportStream, TransportError> {
        let other = |cause: String| TransportError::new_with_cause(TransportErrorKind::Other, url.as_str(), cause);
        let mut wait = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let retry = match self.client.get(url.clone()).send().await {
                Ok(r) if matches!(r.status().as_u16(), 403 | 404 | 410) => return Err(TransportError::new(TransportErrorKind::FileNotFound, url.as_str())),
                Ok(r) if r.status().is_success() => return Ok(body(r, url)),
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

/// The response body as tough's stream of chunks.
fn body(response: reqwest::Response, url: Url) -> TransportStream {
    let chunks = futures::stream::try_unfold(response, |mut r| async move { Ok(r.chunk().await?.map(|chunk| (chunk, r))) });
    let url = url.to_string();
    Box::pin(sync_wrapper::SyncStream::new(futures::TryStreamExt::map_err(chunks, move |e: reqwest::Error| {
        TransportError::new_with_cause(TransportErrorKind::Other, &url, palier_bundle::error::one_line(&e))
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
