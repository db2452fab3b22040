//! Receipts: what each intervention did, kept in `state_dir/receipts/` (and sent to the
//! server once the control plane is there).

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::checks::CheckResult;
use crate::error::{Error, Result};
use crate::hooks::HookRun;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The bundles are live and the checks passed.
    Applied,
    /// Applied, then put back: the site runs the previous tree.
    RolledBack,
    /// Stopped before anything went live: the site never changed.
    Failed,
    /// Not attempted this time (the guard hook said not now, or no notice went out in time).
    Postponed,
    /// Found interrupted at start-up and brought back to one whole tree.
    Recovered,
}

/// One step of the procedure, with its timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub started_at: Timestamp,
    pub duration_ms: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The level-3 backup: where it is and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    pub dir: PathBuf,
    pub sha256: String,
    pub bytes: u64,
    pub files: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub id: String,
    pub platform: String,
    pub stability_level: u8,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub bundles: Vec<String>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub steps: Vec<Step>,
    pub hooks: Vec<HookRun>,
    pub checks: Vec<CheckResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
    /// From the first failed check to the previous tree being live again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_ms: Option<u64>,
}

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("receipts")
}

/// Keep a receipt; returns its path.
pub fn save(state_dir: &Path, receipt: &Receipt) -> Result<PathBuf> {
    let dir = dir(state_dir);
    std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
    let path = dir.join(format!("{}.json", receipt.id));
    crate::journal::write_record(&path, receipt, "receipt")?;
    Ok(path)
}

/// Every kept receipt, oldest first.
pub fn all(state_dir: &Path) -> Result<Vec<Receipt>> {
    let dir = dir(state_dir);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("list", &dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(Error::io("list", &dir))?.path();
        if path.extension().is_some_and(|x| x == "json") {
            let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
            let r: Receipt = serde_json::from_slice(&bytes).map_err(|e| Error::Site { path: path.clone(), why: format!("unreadable receipt: {e}") })?;
            out.push(r);
        }
    }
    out.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    Ok(out)
}
