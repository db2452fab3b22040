//! Talking to the control plane (SPEC 6): fix requests, receipts and a periodic status.
//!
//! Receipts go through an outbox (`state_dir/outbox/`): each is written there when the
//! intervention ends and deleted only once the server has stored it, so nothing is lost
//! while the server is down; every cycle retries what is left. A receipt is given up (moved
//! to `outbox/rejected/`, with a warning naming it) only when the server refuses that
//! receipt itself: 400, 413 or 422. Any other answer (401 for a rotated token, 403, a
//! proxy's 404, 429, 5xx) or no answer keeps it.
//!
//! When the server answers 429 with `Retry-After: SECONDS`, the agent sends nothing more
//! to it before that many seconds have passed; the instant is kept in
//! `state_dir/server-wait.json` so a restart honours it too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::receipt::Receipt;

fn outbox(state_dir: &Path) -> PathBuf {
    state_dir.join("outbox")
}

/// Queue a receipt for the server.
pub fn enqueue(config: &Config, receipt: &Receipt) -> Result<()> {
    if config.server.is_none() {
        return Ok(());
    }
    let dir = outbox(&config.state_dir);
    std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
    let text = serde_json::to_vec(receipt).map_err(|e| Error::Refused(format!("cannot encode the receipt: {e}")))?;
    crate::journal::write_atomically(&dir.join(format!("{}.json", receipt.id)), &text)
}

/// The header naming the platform the agent speaks for, on every control-plane request: the
/// server counts requests refused for a wrong token per name claimed, so an operator sees which
/// platform's token is wrong (the token alone says nothing when it is wrong).
pub const PLATFORM_HEADER: &str = "X-Palier-Platform";

/// The control plane's address and this platform's token.
struct Api {
    base: Url,
    token: String,
    platform: String,
    client: reqwest::Client,
}

impl Api {
    fn new(config: &Config) -> Result<Option<Api>> {
        let Some(server) = &config.server else { return Ok(None) };
        let token = match &config.token_file {
            Some(path) => crate::config::read_token(path).map_err(|e| Error::Refused(e.to_string()))?,
            None => return Err(Error::Refused(format!("{}: `server` is set but there is no `token_file`", config.path.display()))),
        };
        let mut base = server.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let base = base.join("api/v1/").map_err(|e| Error::Refused(format!("server URL {server}: {e}")))?;
        let roots = crate::transport::extra_roots(config.ca_file.as_deref()).map_err(|e| Error::Refused(e.to_string()))?;
        let client = crate::transport::client_builder(roots)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Refused(format!("cannot build the HTTP client: {e}")))?;
        Ok(Some(Api { base, token, platform: config.platform.to_string(), client }))
    }

    async fn post<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> Result<Answer> {
        let url = self.base.join(path).map_err(|e| Error::Refused(format!("{path}: {e}")))?;
        let body = serde_json::to_vec(body).map_err(|e| Error::Refused(format!("cannot encode {path}: {e}")))?;
        let response = self
            .client
            .post(url.clone())
            .bearer_auth(&self.token)
            .header(PLATFORM_HEADER, &self.platform)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Refused(format!("server {url} unreachable: {}", palier_bundle::error::one_line(&e))))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        let text = response.text().await.unwrap_or_default();
        Ok(Answer { status, text, retry_after })
    }
}

/// The server's answer: status, body, and `Retry-After` in seconds when it sent one.
struct Answer {
    status: u16,
    text: String,
    retry_after: Option<u32>,
}

/// How long to wait after a 429 that named no delay.
const DEFAULT_RETRY_AFTER: SignedDuration = SignedDuration::from_secs(60);
/// The longest wait a server can impose through `Retry-After`.
const MAX_RETRY_AFTER: SignedDuration = SignedDuration::from_hours(24);

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerWait {
    not_before: Timestamp,
}

fn wait_path(state_dir: &Path) -> PathBuf {
    state_dir.join("server-wait.json")
}

/// The instant before which the server asked not to be called, if it is after `now`.
pub fn server_wait(state_dir: &Path, now: Timestamp) -> Result<Option<Timestamp>> {
    let wait: Option<ServerWait> = crate::journal::read_record(&wait_path(state_dir), "server wait record")?;
    Ok(wait.map(|w| w.not_before).filter(|t| *t > now))
}

/// Remember a 429's `Retry-After` (seconds) counted from `now`.
fn remember_wait(state_dir: &Path, now: Timestamp, retry_after: Option<u32>) -> Result<Timestamp> {
    let wait = retry_after.map_or(DEFAULT_RETRY_AFTER, |s| SignedDuration::from_secs(i64::from(s))).min(MAX_RETRY_AFTER);
    let not_before = now.checked_add(wait).unwrap_or(now);
    crate::journal::write_record(&wait_path(state_dir), &ServerWait { not_before }, "server wait record")?;
    tracing::warn!(%not_before, "the server asked to wait (429): nothing is sent to it before then");
    Ok(not_before)
}

/// A warning line for each of `server` and `repository` that is plain `http://` to a host
/// that is not the loopback: tokens, receipts or the repository's files cross the network
/// in clear there.
pub fn plain_http_warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (key, url) in [("server", config.server.as_ref()), ("repository", Some(&config.repository))] {
        let Some(url) = url else { continue };
        if url.scheme() != "http" {
            continue;
        }
        let loopback = match url.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        if !loopback {
            out.push(format!(
                "warning: {}: `{key}` is plain http:// to {} ({url}): traffic crosses the network unencrypted; use https://",
                config.path.display(),
                url.host_str().unwrap_or("?")
            ));
        }
    }
    out
}

/// The server's `{"error": "..."}`, or the body as it came.
fn server_error(body: &str) -> String {
    #[derive(Deserialize)]
    struct E {
        error: String,
    }
    serde_json::from_str::<E>(body).map(|e| e.error).unwrap_or_else(|_| body.chars().take(200).collect())
}

/// What sending the outbox did.
#[derive(Debug, Default)]
pub struct Sent {
    pub sent: usize,
    pub pending: usize,
    pub rejected: usize,
}

/// What to do with a receipt after the server's answer.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Stored,
    /// The server refuses this receipt itself (400, 413, 422): give it up.
    Refused,
    /// The server asks to wait (429): keep it and send nothing more.
    Wait,
    /// Anything else: keep it for the next cycle.
    Keep,
}

fn fate(status: u16) -> Fate {
    match status {
        200..=299 => Fate::Stored,
        400 | 413 | 422 => Fate::Refused,
        429 => Fate::Wait,
        _ => Fate::Keep,
    }
}

/// Send every queued receipt, oldest first, at `now`. A receipt is given up only when the
/// server refuses that receipt (400, 413, 422): moved to `outbox/rejected/` with a warning,
/// so it does not block the others. Any other answer or failure keeps it and the rest.
pub async fn send_pending(config: &Config, now: Timestamp) -> Result<Sent> {
    let mut report = Sent::default();
    let dir = outbox(&config.state_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(report) };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    // Receipt ids start with their UTC time: the name order is the age order.
    files.sort();
    if files.is_empty() {
        return Ok(report);
    }
    if let Some(t) = server_wait(&config.state_dir, now)? {
        tracing::info!(until = %t, "the server asked to wait; receipts kept");
        report.pending = files.len();
        return Ok(report);
    }
    let Some(api) = Api::new(config)? else { return Ok(report) };
    for (i, file) in files.iter().enumerate() {
        let body: serde_json::Value = match std::fs::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
            Some(v) => v,
            None => {
                reject(&dir, file, "unreadable receipt")?;
                report.rejected += 1;
                continue;
            }
        };
        let answer = match api.post("receipts", &body).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %palier_bundle::error::one_line(&e), "receipts kept for the next cycle");
                report.pending = files.len() - i;
                return Ok(report);
            }
        };
        match fate(answer.status) {
            Fate::Stored => {
                std::fs::remove_file(file).map_err(Error::io("remove", file))?;
                report.sent += 1;
            }
            Fate::Refused => {
                reject(&dir, file, &format!("{}: {}", answer.status, server_error(&answer.text)))?;
                report.rejected += 1;
            }
            Fate::Wait => {
                remember_wait(&config.state_dir, now, answer.retry_after)?;
                report.pending = files.len() - i;
                return Ok(report);
            }
            Fate::Keep => {
                tracing::warn!(status = answer.status, error = %server_error(&answer.text), "server did not store the receipt; kept for the next cycle");
                report.pending = files.len() - i;
                return Ok(report);
            }
        }
    }
    Ok(report)
}

fn reject(dir: &Path, file: &Path, why: &str) -> Result<()> {
    let name = file.file_stem().unwrap_or_default().to_string_lossy().into_owned();
    tracing::warn!("the server refused receipt {name} ({why}); it is not sent again, kept in outbox/rejected/");
    let rejected = dir.join("rejected");
    std::fs::create_dir_all(&rejected).map_err(Error::io("create", &rejected))?;
    let to = rejected.join(file.file_name().unwrap_or_default());
    std::fs::rename(file, &to).map_err(Error::io("move", &to))
}

/// Remove a queued receipt (it was merged into another); `false` when it was not queued.
pub fn dequeue(config: &Config, id: &str) -> Result<bool> {
    let path = outbox(&config.state_dir).join(format!("{id}.json"));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove", path)(e)),
    }
}

/// The status sent every cycle (SPEC 6's fleet view; wire contract 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub improvement_level: u8,
    pub stability_level: u8,
    pub installed: Vec<BundleVersion>,
    pub next_intervention: Option<String>,
    pub last_outcome: Option<String>,
    /// The improvement components in the config.
    pub components: Vec<String>,
    /// The classes level 2 admits, as configured.
    pub level2_classes: Vec<String>,
    /// One line when this cycle could not refresh or verify the repository; `null` when it did.
    pub repository_error: Option<String>,
    /// The bundles the plan says eligible this cycle (scheduled or due now).
    pub due: Vec<BundleVersion>,
    /// The bundle versions held on this site.
    pub holds: Vec<HoldRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleVersion {
    pub id: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRef {
    pub id: String,
    pub version: String,
    pub since: String,
    pub reason: String,
}

/// Send the status at `now`; an unreachable server is logged, not an error (the next cycle
/// sends a fresh one). Nothing is sent while the server asked to wait.
pub async fn send_status(config: &Config, now: Timestamp, status: &Status) -> Result<()> {
    if server_wait(&config.state_dir, now)?.is_some() {
        return Ok(());
    }
    let Some(api) = Api::new(config)? else { return Ok(()) };
    match api.post("status", status).await {
        Ok(a) if fate(a.status) == Fate::Stored => {}
        Ok(a) if fate(a.status) == Fate::Wait => {
            remember_wait(&config.state_dir, now, a.retry_after)?;
        }
        Ok(a) if a.status == 401 => tracing::warn!(
            "the server refused this platform's token (401); receipts are kept until it accepts one: put the token `palier-server platform add {}` printed (or a new one from `palier-server platform token {} --db FILE`) alone into {}",
            config.platform,
            config.platform,
            config.token_file.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
        ),
        Ok(a) => tracing::warn!(code = a.status, error = %server_error(&a.text), "status not accepted"),
        Err(e) => tracing::warn!(error = %palier_bundle::error::one_line(&e), "status not sent"),
    }
    Ok(())
}

/// A fix request as the server returns it.
#[derive(Debug, Deserialize, Serialize)]
pub struct FixRequest {
    pub id: String,
    pub platform: String,
    pub component: String,
    pub summary: String,
    #[serde(default)]
    pub bundle: Option<String>,
    pub status: String,
    pub created_at: String,
}

#[derive(Debug, Serialize)]
struct NewFixRequest<'a> {
    component: &'a str,
    summary: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle: Option<&'a str>,
}

/// File a fix request with the server.
pub async fn request_fix(config: &Config, component: &str, summary: &str, bundle: Option<&str>) -> Result<FixRequest> {
    let api = Api::new(config)?.ok_or_else(|| Error::Refused(format!("{}: no `server` configured to file a fix request with", config.path.display())))?;
    // It may write state (a 429's wait): never as root in another user's state folder.
    crate::lock::check_owner(&config.state_dir, rustix::process::geteuid().as_raw())?;
    let now = Timestamp::now();
    if let Some(t) = server_wait(&config.state_dir, now)? {
        return Err(Error::Refused(format!("the server asked not to be called before {t} (429); try again after that")));
    }
    let Answer { status, text, retry_after } = api.post("fix-requests", &NewFixRequest { component, summary, bundle }).await?;
    if status == 429 {
        let t = remember_wait(&config.state_dir, now, retry_after)?;
        return Err(Error::Refused(format!("fix request refused by the server: too many requests; try again after {t}")));
    }
    if !(200..=299).contains(&status) {
        return Err(Error::Refused(format!("fix request refused by the server ({status}): {}", server_error(&text))));
    }
    serde_json::from_str(&text).map_err(|e| Error::Refused(format!("unexpected answer from the server: {e}")))
}
