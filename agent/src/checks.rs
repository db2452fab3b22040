//! HTTP checks against the site: smoke checks (home, login, course access) and each
//! bundle's own local-effect checks. A failed check is tried once more, to filter a
//! single flake; redirects are not followed (a 303 is an answer).

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
}

/// An HTTP client for checks: short timeouts, no redirects, no proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .no_proxy()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

async fn once(client: &reqwest::Client, url: &Url, check: &Check) -> (Option<u16>, Result<(), String>) {
    let response = match client.get(url.clone()).send().await {
        Ok(r) => r,
        Err(e) => return (None, Err(format!("no answer: {}", palier_bundle::error::one_line(&e)))),
    };
    let status = response.status().as_u16();
    if status != check.expect_status {
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

/// Run one check, with one retry.
pub async fn run(client: &reqwest::Client, wwwroot: &Url, check: &Check) -> CheckResult {
    let started = Instant::now();
    let url = match wwwroot.join(check.path.trim_start_matches('/')) {
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
            };
        }
    };
    let mut attempts = 0;
    let (mut status, mut outcome) = (None, Err(String::new()));
    while attempts < 2 {
        attempts += 1;
        (status, outcome) = once(client, &url, check).await;
        if outcome.is_ok() {
            break;
        }
    }
    CheckResult {
        path: check.path.clone(),
        expect_status: check.expect_status,
        expect_body: check.expect_body.clone(),
        status,
        ok: outcome.is_ok(),
        attempts,
        duration_ms: started.elapsed().as_millis() as u64,
        detail: outcome.err(),
    }
}

/// Run every check in order; stop at the first failure (the site must be rolled back, more
/// checks would only delay it). Returns the results so far and whether all passed.
pub async fn run_all(client: &reqwest::Client, wwwroot: &Url, checks: &[Check]) -> (Vec<CheckResult>, bool) {
    let mut results = Vec::new();
    for check in checks {
        let r = run(client, wwwroot, check).await;
        let ok = r.ok;
        results.push(r);
        if !ok {
            return (results, false);
        }
    }
    (results, true)
}
