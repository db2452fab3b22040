//! Talking to the control plane (SPEC 6): fix requests, receipts and a periodic status.
//!
//! Receipts go through an outbox (`state_dir/outbox/`): each is written there when the
//! intervention ends and deleted only once the server has stored it, so nothing is lost
//! while the server is down; every cycle retries what is left.

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The control plane's address and this platform's token.
struct Api {
    base: Url,
    token: String,
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
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Refused(format!("cannot build the HTTP client: {e}")))?;
        Ok(Some(Api { base, token, client }))
    }

    async fn post<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> Result<(u16, String)> {
        let url = self.base.join(path).map_err(|e| Error::Refused(format!("{path}: {e}")))?;
        let body = serde_json::to_vec(body).map_err(|e| Error::Refused(format!("cannot encode {path}: {e}")))?;
        let response = self
            .client
            .post(url.clone())
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Refused(format!("server {url} unreachable: {}", palier_bundle::error::one_line(&e))))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((status, text))
    }
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

/// Send every queued receipt. An unreachable server or a 5xx keeps them for the next cycle;
/// a receipt the server refuses (4xx) is moved to `outbox/rejected/` so it does not block
/// the others, and said in the log.
pub async fn send_pending(config: &Config) -> Result<Sent> {
    let mut report = Sent::default();
    let Some(api) = Api::new(config)? else { return Ok(report) };
    let dir = outbox(&config.state_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(report) };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    files.sort();
    for (i, file) in files.iter().enumerate() {
        let body: serde_json::Value = match std::fs::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
            Some(v) => v,
            None => {
                reject(&dir, file, "unreadable receipt")?;
                report.rejected += 1;
                continue;
            }
        };
        match api.post("receipts", &body).await {
            Ok((200..=299, _)) => {
                std::fs::remove_file(file).map_err(Error::io("remove", file))?;
                report.sent += 1;
            }
            Ok((status @ 400..=499, text)) if status != 408 && status != 429 => {
                reject(&dir, file, &format!("{status}: {}", server_error(&text)))?;
                report.rejected += 1;
            }
            Ok((status, text)) => {
                tracing::warn!(status, error = %server_error(&text), "server did not store the receipt; kept for the next cycle");
                report.pending = files.len() - i;
                return Ok(report);
            }
            Err(e) => {
                tracing::warn!(error = %palier_bundle::error::one_line(&e), "receipts kept for the next cycle");
                report.pending = files.len() - i;
                return Ok(report);
            }
        }
    }
    Ok(report)
}

fn reject(dir: &Path, file: &Path, why: &str) -> Result<()> {
    tracing::error!(receipt = %file.display(), why, "receipt refused by the server; moved to outbox/rejected");
    let rejected = dir.join("rejected");
    std::fs::create_dir_all(&rejected).map_err(Error::io("create", &rejected))?;
    let to = rejected.join(file.file_name().unwrap_or_default());
    std::fs::rename(file, &to).map_err(Error::io("move", &to))
}

/// The periodic status of SPEC 6's fleet view.
#[derive(Debug, Serialize)]
pub struct Status {
    pub improvement_level: u8,
    pub stability_level: u8,
    pub installed: Vec<InstalledRef>,
    pub next_intervention: Option<String>,
    pub last_outcome: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct InstalledRef {
    pub id: String,
    pub version: String,
}

/// Send the status; an unreachable server is logged, not an error (the next cycle sends a
/// fresh one).
pub async fn send_status(config: &Config, status: &Status) -> Result<()> {
    let Some(api) = Api::new(config)? else { return Ok(()) };
    match api.post("status", status).await {
        Ok((200..=299, _)) => {}
        Ok((401, _)) => tracing::warn!(
            "the server refused this platform's token (401): put the token `palier-server platform add {}` printed into {}",
            config.platform,
            config.token_file.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
        ),
        Ok((code, text)) => tracing::warn!(code, error = %server_error(&text), "status not accepted"),
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
    let (status, text) = api.post("fix-requests", &NewFixRequest { component, summary, bundle }).await?;
    if !(200..=299).contains(&status) {
        return Err(Error::Refused(format!("fix request refused by the server ({status}): {}", server_error(&text))));
    }
    serde_json::from_str(&text).map_err(|e| Error::Refused(format!("unexpected answer from the server: {e}")))
}
