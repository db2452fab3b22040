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
    /// Identical consecutive postponements are one receipt: how many times it happened
    /// (`started_at` is the first, `finished_at` the last).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// A receipt id: the UTC time, a digest of the bundles, and a random part, so two
/// interventions never share an id, even within one second or after a crash.
pub fn unique_id(now: Timestamp, keys: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(keys.join(",").as_bytes());
    format!("{}-{}-{}", now.strftime("%Y%m%dT%H%M%SZ"), &hex::encode(digest)[..8], random_hex())
}

/// 8 random hex digits from the kernel (the process id and the clock when it cannot say).
fn random_hex() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 4];
    let from_kernel = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_ok();
    if !from_kernel {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        bytes = (nanos ^ std::process::id().rotate_left(16)).to_le_bytes();
    }
    hex::encode(bytes)
}

/// A postponement identical to the receipt before it (same bundles, same reason) is merged
/// into it: the earlier receipt's `count` grows and its `finished_at` moves; the new one is
/// dropped from `receipts/` and from the outbox (the earlier one is queued again with its
/// new count when it was still waiting there). Returns the receipt that stands.
pub fn coalesce_postponed(config: &crate::config::Config, receipt: Receipt) -> Result<Receipt> {
    if receipt.outcome != Outcome::Postponed {
        return Ok(receipt);
    }
    let state = &config.state_dir;
    let mut earlier = all(state)?;
    earlier.retain(|r| r.id != receipt.id);
    let Some(mut prev) = earlier.pop() else { return Ok(receipt) };
    if prev.outcome != Outcome::Postponed || prev.bundles != receipt.bundles || prev.reason != receipt.reason {
        return Ok(receipt);
    }
    prev.count += 1;
    prev.finished_at = receipt.finished_at;
    save(state, &prev)?;
    let path = dir(state).join(format!("{}.json", receipt.id));
    std::fs::remove_file(&path).map_err(Error::io("remove", &path))?;
    crate::report::dequeue(config, &receipt.id)?;
    if crate::report::dequeue(config, &prev.id)? {
        crate::report::enqueue(config, &prev)?;
    }
    Ok(prev)
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
