//! HTTP checks against the site: smoke checks (home, login, course access) and each
//! bundle's own local-effect checks. A failed check is tried once more after a pause of 2
//! to 5 s (a moment for a restarting PHP pool or a cold cache, not a second request in the
//! same millisecond), to filter a single flake; redirects are not followed (a 303 is an
//! answer).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use palier_bundle::Check;
use serde::{Deserialize, Serialize};
use url::Url;

/// One check's result, as the receipt records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub path: String,
    pub expect_status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    /// The last answer's status (`None`: no answer).
    pub status: Option<u16>,
    pub ok: bool,
    pub attempts: u8,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The last answer was Moodle's maintenance page (503): the site is in maintenance
    /// mode, not broken. Not part of the receipt's JSON (the `detail` says it in words).
    #[serde(skip)]
    pub maintenance: bool,
}

/// The file Moodle's CLI maintenance mode creates in dataroot (`admin/cli/maintenance.php
/// --enable`); while it is there every page answers 503 with its content.
pub const MAINTENANCE_FILE: &str = "climaintenance.html";

/// Whether the site at `dataroot` is in CLI maintenance mode now.
pub fn maintenance_file(dataroot: &std::path::Path) -> bool {
    dataroot.join(MAINTENANCE_FILE).exists()
}

/// Whether an answer is Moodle's maintenance page: 503 with a body that speaks of
/// maintenance (the CLI mode's `climaintenance.html`, or the page of the web interface's
/// maintenance mode, "This site is undergoing maintenance").
pub fn is_maintenance_page(status: u16, body: &str) -> bool {
    status == 503 && body.to_ascii_lowercase().contains("maintenance")
}

/// The HTTP client for checks of the site at `wwwroot`: short timeouts, no redirects, no
/// proxy, no connection kept between checks. For an `http://` site, which follows no
/// redirect and so never speaks TLS, it reads no CA store and is built once per process.
/// For an `https://` site it reads the system's CA store, which takes longer than a round
/// of checks on a local site: a client is kept for [`TLS_CLIENT_AGE`], so that one
/// intervention builds it once and a long-running agent still sees a CA added since.
/// [`prepare`] builds it ahead.
pub fn client(wwwroot: &Url) -> reqwest::Client {
    static PLAIN: Mutex<Option<reqwest::Client>> = Mutex::new(None);
    static TLS: Mutex<Option<(Instant, reqwest::Client)>> = Mutex::new(None);
    let build = |tls: bool| {
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            // A pooled connection belongs to the runtime that opened it; the client outlives
            // runtimes (the tests run many).
            .pool_max_idle_per_host(0)
            .no_proxy();
        let builder = if tls { builder } else { builder.tls_certs_only(Vec::new()) };
        builder.build()
    };
    // Held while building: a caller waits for a build under way instead of starting another.
    if wwwroot.scheme() == "http" {
        let mut kept = PLAIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = kept.as_ref() {
            return c.clone();
        }
        let Ok(c) = build(false) else { return reqwest::Client::new() };
        *kept = Some(c.clone());
        return c;
    }
    let mut kept = TLS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((at, c)) = kept.as_ref()
        && at.elapsed() < TLS_CLIENT_AGE
    {
        return c.clone();
    }
    let Ok(c) = build(true) else { return reqwest::Client::new() };
    *kept = Some((Instant::now(), c.clone()));
    c
}

/// How long the client for an `https://` site is kept (and its reading of the CA store).
pub const TLS_CLIENT_AGE: Duration = Duration::from_secs(60);

/// Build the checks' client on another thread now, for a command that runs checks only at
/// its end (a rollback's checks after it): they then do not wait for the CA store.
pub fn prepare(wwwroot: &Url) {
    let wwwroot = wwwroot.clone();
    std::thread::spawn(move || client(&wwwroot));
}

async fn once(client: &reqwest::Client, url: &Url, check: &Check) -> (Option<u16>, Result<(), String>) {
    let response = match client.get(url.clone()).send().await {
        Ok(r) => r,
        Err(e) => return (None, Err(format!("no answer: {}", palier_bundle::error::one_line(&e)))),
    };
    let status = response.status().as_u16();
    if status != check.expect_status {
        if status == 503 && check.expect_status != 503 {
            let body = response.text().await.unwrap_or_default();
            if is_maintenance_page(status, &body) {
                return (Some(status), Err(format!("status 503 with Moodle's maintenance page ({MAINTENANCE_PAGE}), expected {}", check.expect_status)));
            }
        }
        return (Some(status), Err(format!("status {status}, expected {}", check.expect_status)));
    }
    if let Some(marker) = &check.expect_body {
        match response.text().await {
            Ok(body) if body.contains(marker.as_str()) => {}
            Ok(_) => return (Some(status), Err(format!("body lacks {marker:?}"))),
            Err(e) => return (Some(status), Err(format!("body unreadable: {e}"))),
        }
    }
    (Some(status), Ok(()))
}

/// Words of a failed check's detail when the answer was Moodle's maintenance page.
pub const MAINTENANCE_PAGE: &str = "the site is in maintenance mode";

/// The shortest and longest pause before a failed check is tried again.
pub const RETRY_DELAY: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(5));

/// A pause in [`RETRY_DELAY`], spread so that a fleet does not retry in step.
pub fn retry_delay() -> Duration {
    let (low, high) = RETRY_DELAY;
    let spread = (high - low).as_millis() as u64;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    low + Duration::from_millis(u64::from(nanos ^ std::process::id()) % (spread + 1))
}

/// A pause before a retry.
type Pause<'c> = dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'c>> + Sync + 'c;

/// Run one check, with one retry after `pause`.
async fn run_paused(client: &reqwest::Client, wwwroot: &Url, check: &Check, pause: &Pause<'_>) -> CheckResult {
    let started = Instant::now();
    // A path that reads as a URL of its own (`/https://other.example/`) would leave the site.
    let url = match wwwroot.join(check.path.trim_start_matches('/')).map_err(|e| e.to_string()).and_then(|u| {
        if u.origin() == wwwroot.origin() { Ok(u) } else { Err(format!("{u} is not on the site {wwwroot}")) }
    }) {
        Ok(u) => u,
        Err(e) => {
            return CheckResult {
                path: check.path.clone(),
                expect_status: check.expect_status,
                expect_body: check.expect_body.clone(),
                status: None,
                ok: false,
                attempts: 0,
                duration_ms: 0,
                detail: Some(format!("bad URL: {e}")),
                maintenance: false,
            };
        }
    };
    let mut attempts = 0;
    let (mut status, mut outcome) = (None, Err(String::new()));
    while attempts < 2 {
        if attempts > 0 {
            pause().await;
        }
        attempts += 1;
        (status, outcome) = once(client, &url, check).await;
        if outcome.is_ok() {
            break;
        }
    }
    let maintenance = outcome.as_ref().err().is_some_and(|d| d.contains(MAINTENANCE_PAGE));
    CheckResult {
        path: check.path.clone(),
        expect_status: check.expect_status,
        expect_body: check.expect_body.clone(),
        status,
        ok: outcome.is_ok(),
        attempts,
        duration_ms: started.elapsed().as_millis() as u64,
        detail: outcome.err(),
        maintenance,
    }
}

/// Run every check at once, each with its retry after [`retry_delay`] (slept on `clock`),
/// with [`client`]`(wwwroot)`. Returns as soon as one has failed for good: the site must
/// then be rolled back, and waiting for the others would only delay it. Returns the results
/// in, in the list's order, and whether all passed.
pub async fn run_all_with_clock(wwwroot: &Url, checks: &[Check], clock: &dyn crate::clock::Clock) -> (Vec<CheckResult>, bool) {
    use futures::stream::{FuturesUnordered, StreamExt};
    let client = &client(wwwroot);
    let pause = || clock.sleep(retry_delay());
    let mut running: FuturesUnordered<_> = checks.iter().enumerate().map(|(i, check)| async move { (i, run_paused(client, wwwroot, check, &pause).await) }).collect();
    let mut results: Vec<Option<CheckResult>> = vec![None; checks.len()];
    let mut ok = true;
    while let Some((i, r)) = running.next().await {
        ok = r.ok;
        results[i] = Some(r);
        if !ok {
            break;
        }
    }
    (results.into_iter().flatten().collect(), ok)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Run one check, with one retry after `delay`.
    async fn run_with_delay(client: &reqwest::Client, wwwroot: &Url, check: &Check, delay: Duration) -> CheckResult {
        let pause = move || -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> { Box::pin(tokio::time::sleep(delay)) };
        run_paused(client, wwwroot, check, &pause).await
    }

    /// A server on port 0 that answers 500 first, then 200, and records when each request came.
    async fn flaky_server() -> (Url, Arc<std::sync::Mutex<Vec<Instant>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let n = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                s.lock().unwrap().push(Instant::now());
                let status = if n.fetch_add(1, Ordering::SeqCst) == 0 { "500 Internal Server Error" } else { "200 OK" };
                let _ = conn.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").as_bytes()).await;
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn a_check_whose_path_reads_as_another_url_is_failed_without_a_request() {
        let site: Url = "http://127.0.0.1:9/moodle/".parse().unwrap();
        let check = Check { path: "/https://other.example/x".into(), expect_status: 200, expect_body: None };
        let r = run_with_delay(&client(&site), &site, &check, Duration::ZERO).await;
        assert!(!r.ok && r.attempts == 0, "{r:?}");
        assert!(r.detail.as_deref().is_some_and(|d| d.contains("https://other.example/x is not on the site http://127.0.0.1:9/moodle/")), "{r:?}");
    }

    #[tokio::test]
    async fn a_failed_check_is_retried_after_the_delay() {
        let (url, seen) = flaky_server().await;
        let check = Check { path: "/".into(), expect_status: 200, expect_body: None };
        let delay = Duration::from_millis(300);
        let r = run_with_delay(&client(&url), &url, &check, delay).await;
        assert!(r.ok && r.attempts == 2, "{r:?}");
        let times = seen.lock().unwrap().clone();
        assert_eq!(times.len(), 2);
        assert!(times[1].duration_since(times[0]) >= delay, "the retry waited {:?}", times[1].duration_since(times[0]));
    }

    /// A server on port 0 answering every request with `status` and `body`.
    async fn server(status: &'static str, body: &'static str) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes()).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn moodles_maintenance_page_is_told_from_a_broken_site() {
        let check = Check { path: "/".into(), expect_status: 200, expect_body: None };
        let page = "<html><body><h1>Site maintenance</h1><p>This site is undergoing maintenance and is currently not available</p></body></html>";
        let plain = client(&"http://127.0.0.1/".parse().unwrap());
        let r = run_with_delay(&plain, &server("503 Service Unavailable", page).await, &check, Duration::ZERO).await;
        assert!(!r.ok && r.maintenance, "{r:?}");
        assert!(r.detail.as_deref().unwrap().contains(MAINTENANCE_PAGE), "{r:?}");
        let r = run_with_delay(&plain, &server("503 Service Unavailable", "upstream down").await, &check, Duration::ZERO).await;
        assert!(!r.ok && !r.maintenance, "a 503 without the maintenance page is a failure: {r:?}");
        let r = run_with_delay(&plain, &server("500 Internal Server Error", page).await, &check, Duration::ZERO).await;
        assert!(!r.ok && !r.maintenance, "{r:?}");
    }

    /// A server on port 0 answering `/hold...` never, `/broken` with 500, and any other path
    /// with 200 once `together` requests are in at the same time (500 if they are not
    /// within 5 s: checks run one after the other never are).
    async fn meeting_server(together: usize) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let arrived = Arc::new(AtomicUsize::new(0));
        let met = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let (arrived, met) = (arrived.clone(), met.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let status = if head.starts_with("GET /hold") {
                        std::future::pending::<()>().await;
                        unreachable!()
                    } else if head.starts_with("GET /broken") {
                        "500 Internal Server Error"
                    } else {
                        let waiting = met.notified();
                        if arrived.fetch_add(1, Ordering::SeqCst) + 1 >= together {
                            met.notify_waiters();
                            "200 OK"
                        } else if tokio::time::timeout(Duration::from_secs(5), waiting).await.is_ok() {
                            "200 OK"
                        } else {
                            "500 Internal Server Error"
                        }
                    };
                    let _ = conn.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes()).await;
                });
            }
        });
        url
    }

    fn checks(paths: &[&str]) -> Vec<Check> {
        paths.iter().map(|p| Check { path: (*p).into(), expect_status: 200, expect_body: None }).collect()
    }

    #[tokio::test]
    async fn the_checks_of_a_round_run_at_once() {
        let url = meeting_server(3).await;
        let clock = crate::clock::TestClock::new(jiff::Timestamp::UNIX_EPOCH);
        let (results, ok) = run_all_with_clock(&url, &checks(&["/a", "/b", "/c"]), &clock).await;
        assert!(ok, "{results:?}");
        assert_eq!(results.iter().map(|r| (r.path.as_str(), r.attempts)).collect::<Vec<_>>(), [("/a", 1), ("/b", 1), ("/c", 1)]);
    }

    #[tokio::test]
    async fn a_round_ends_at_the_first_check_that_failed_for_good() {
        let url = meeting_server(1).await;
        let clock = crate::clock::TestClock::new(jiff::Timestamp::UNIX_EPOCH);
        let list = checks(&["/hold", "/broken", "/a"]);
        let round = run_all_with_clock(&url, &list, &clock);
        let (results, ok) = tokio::time::timeout(Duration::from_secs(10), round).await.expect("the round waited for a check that never answers");
        assert!(!ok);
        let broken = results.iter().find(|r| r.path == "/broken").unwrap();
        assert!(!broken.ok && broken.attempts == 2 && broken.status == Some(500), "{broken:?}");
        assert!(results.iter().all(|r| r.path != "/hold"), "{results:?}");
        assert_eq!(clock.pauses().len(), 1, "one pause before the retry");
    }

    #[test]
    fn the_default_delay_is_between_2_and_5_seconds() {
        for _ in 0..100 {
            let d = retry_delay();
            assert!(d >= RETRY_DELAY.0 && d <= RETRY_DELAY.1, "{d:?}");
        }
    }
}
