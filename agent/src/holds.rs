//! What this site refrains from applying, in `state_dir/holds.json`:
//!
//! - **holds**: a bundle version rolled back here (by hand or automatically) or held by an
//!   operator (`palier-agent hold`) is never applied again until `palier-agent release`
//!   lifts the hold; a version that failed to stage on its own is held with a back-off
//!   (`until`), doubled at each failure;
//! - **back-off**: after an intervention failed (nothing went live), the same set of
//!   eligible bundles is not tried again before `next_try`; the wait doubles with each
//!   failure up to [`BACKOFF_CAP`], and a different set of eligible bundles starts afresh.
//!
//! The plan reads the same file (through [`policy_holds`]), so `plan` shows `held` for
//! exactly what `run` will not apply. `holds.json` replaces `rolled-back.json`, which is
//! read once and converted when present.

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use palier_bundle::BundleRef;
use palier_policy as policy;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::journal;

/// The first wait after a failure; doubled at each consecutive failure.
pub const BACKOFF_BASE: SignedDuration = SignedDuration::from_mins(15);
/// The longest wait between two tries of the same failing set.
pub const BACKOFF_CAP: SignedDuration = SignedDuration::from_hours(24);

/// One held bundle version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    /// `ID@VERSION`.
    pub bundle: String,
    pub since: Timestamp,
    pub reason: String,
    /// A back-off hold lifts itself at this instant; `None`: held until released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// Consecutive failures behind a back-off hold.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The back-off after a failed intervention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// The eligible bundles when it failed, sorted.
    pub bundles: Vec<String>,
    pub failures: u32,
    pub failed_at: Timestamp,
    pub next_try: Timestamp,
    pub reason: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holds {
    #[serde(default)]
    pub holds: Vec<Hold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("holds.json")
}

fn legacy_path(state_dir: &Path) -> PathBuf {
    state_dir.join("rolled-back.json")
}

/// The record of earlier versions: one entry per rolled-back bundle version.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolledBack {
    bundle: String,
    at: Timestamp,
    reason: String,
}

/// Everything held on this site (converting `rolled-back.json` once if it is still there).
pub fn read_all(state_dir: &Path) -> Result<Holds> {
    if let Some(h) = journal::read_record::<Holds>(&path(state_dir), "holds record")? {
        return Ok(h);
    }
    let legacy = legacy_path(state_dir);
    let Some(old) = journal::read_record::<Vec<RolledBack>>(&legacy, "rolled-back record")? else { return Ok(Holds::default()) };
    let holds = Holds {
        holds: old.into_iter().map(|r| Hold { bundle: r.bundle, since: r.at, reason: r.reason, until: None, failures: 0 }).collect(),
        backoff: None,
    };
    write_all(state_dir, &holds)?;
    std::fs::remove_file(&legacy).map_err(Error::io("remove", &legacy))?;
    Ok(holds)
}

fn write_all(state_dir: &Path, holds: &Holds) -> Result<()> {
    journal::write_record(&path(state_dir), holds, "holds record")
}

/// The held bundle versions.
pub fn read(state_dir: &Path) -> Result<Vec<Hold>> {
    Ok(read_all(state_dir)?.holds)
}

/// Check `key` is `ID@VERSION`.
fn parse_key(key: &str) -> Result<BundleRef> {
    key.parse::<BundleRef>().map_err(|e| Error::Refused(format!("{key:?} is not a bundle version: {e}")))
}

/// Hold `key` (`ID@VERSION`) until released. `false` when it was already held that way
/// (the first hold's time and reason stay).
pub fn hold(state_dir: &Path, key: &str, since: Timestamp, reason: &str) -> Result<bool> {
    parse_key(key)?;
    let mut all = read_all(state_dir)?;
    if let Some(h) = all.holds.iter_mut().find(|h| h.bundle == key) {
        if h.until.is_none() {
            return Ok(false);
        }
        *h = Hold { bundle: key.to_owned(), since, reason: reason.to_owned(), until: None, failures: 0 };
    } else {
        all.holds.push(Hold { bundle: key.to_owned(), since, reason: reason.to_owned(), until: None, failures: 0 });
    }
    write_all(state_dir, &all)?;
    Ok(true)
}

/// Hold `key` with a back-off after it failed again at `now`: the wait doubles with each
/// consecutive failure. A hold until released stays as it is. Returns the hold.
pub fn hold_with_backoff(state_dir: &Path, key: &str, now: Timestamp, reason: &str) -> Result<Hold> {
    parse_key(key)?;
    let mut all = read_all(state_dir)?;
    let failures = match all.holds.iter().find(|h| h.bundle == key) {
        Some(h) if h.until.is_none() => return Ok(h.clone()),
        Some(h) => h.failures + 1,
        None => 1,
    };
    let hold = Hold { bundle: key.to_owned(), since: now, reason: reason.to_owned(), until: Some(after_wait(now, failures)), failures };
    all.holds.retain(|h| h.bundle != key);
    all.holds.push(hold.clone());
    write_all(state_dir, &all)?;
    Ok(hold)
}

/// Lift the hold on `key`. `false` when it was not held.
pub fn release(state_dir: &Path, key: &str) -> Result<bool> {
    parse_key(key)?;
    let mut all = read_all(state_dir)?;
    let before = all.holds.len();
    all.holds.retain(|h| h.bundle != key);
    if all.holds.len() == before {
        return Ok(false);
    }
    write_all(state_dir, &all)?;
    Ok(true)
}

/// `now` plus the back-off after `failures` consecutive failures.
pub fn after_wait(now: Timestamp, failures: u32) -> Timestamp {
    let doublings = failures.saturating_sub(1).min(16);
    let wait = BACKOFF_BASE.checked_mul(1 << doublings).unwrap_or(BACKOFF_CAP).min(BACKOFF_CAP);
    now.checked_add(wait).unwrap_or(now)
}

/// Record that the intervention over the eligible set `eligible` failed at `now`: same set
/// as last time, the wait doubles; another set, it starts again from the first wait.
pub fn record_failure(state_dir: &Path, eligible: &[String], now: Timestamp, reason: &str) -> Result<Backoff> {
    let mut all = read_all(state_dir)?;
    let mut set = eligible.to_vec();
    set.sort();
    let failures = match &all.backoff {
        Some(b) if b.bundles == set => b.failures + 1,
        _ => 1,
    };
    let backoff = Backoff { bundles: set, failures, failed_at: now, next_try: after_wait(now, failures), reason: reason.to_owned() };
    all.backoff = Some(backoff.clone());
    write_all(state_dir, &all)?;
    Ok(backoff)
}

/// Forget the back-off (an intervention applied).
pub fn clear_backoff(state_dir: &Path) -> Result<()> {
    let mut all = read_all(state_dir)?;
    if all.backoff.take().is_some() {
        write_all(state_dir, &all)?;
    }
    Ok(())
}

/// The holds as the policy takes them (entries that do not name a bundle version are
/// skipped; `hold` never writes one).
pub fn policy_holds(holds: &[Hold]) -> Vec<policy::Hold> {
    holds
        .iter()
        .filter_map(|h| Some(policy::Hold { bundle: h.bundle.parse().ok()?, since: h.since, reason: h.reason.clone(), until: h.until }))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn hold_release_and_idempotence() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        assert!(hold(s, "quiz-fix@1.0.1", ts("2026-12-01T10:00:00Z"), "rolled back by hand").unwrap());
        assert!(!hold(s, "quiz-fix@1.0.1", ts("2026-12-02T10:00:00Z"), "again").unwrap(), "held already");
        let h = read(s).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].since, h[0].reason.as_str()), (ts("2026-12-01T10:00:00Z"), "rolled back by hand"));
        assert!(release(s, "quiz-fix@1.0.1").unwrap());
        assert!(!release(s, "quiz-fix@1.0.1").unwrap());
        assert!(read(s).unwrap().is_empty());
        assert!(hold(s, "not a bundle", ts("2026-12-01T10:00:00Z"), "x").is_err());
    }

    #[test]
    fn the_old_rolled_back_record_is_converted_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        std::fs::write(legacy_path(s), r#"[{"bundle":"quiz-fix@1.0.1","at":"2026-12-01T10:00:00Z","reason":"check /login failed"}]"#).unwrap();
        let h = read(s).unwrap();
        assert_eq!(h[0].bundle, "quiz-fix@1.0.1");
        assert_eq!(h[0].reason, "check /login failed");
        assert!(!legacy_path(s).exists() && path(s).exists());
        assert_eq!(policy_holds(&h)[0].bundle.to_string(), "quiz-fix@1.0.1");
    }

    #[test]
    fn back_off_doubles_is_capped_and_resets_with_a_new_set() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        let now = ts("2026-12-01T10:00:00Z");
        let set = ["b@1.0.0".to_owned(), "a@1.0.0".to_owned()];
        let waits: Vec<i64> = (0..10).map(|_| record_failure(s, &set, now, "stage failed").unwrap().next_try.duration_since(now).as_mins()).collect();
        assert_eq!(&waits[..5], [15, 30, 60, 120, 240]);
        assert_eq!(*waits.last().unwrap(), 24 * 60, "capped at a day");
        let other = record_failure(s, &["a@1.0.0".to_owned()], now, "x").unwrap();
        assert_eq!((other.failures, other.next_try.duration_since(now).as_mins()), (1, 15));
        clear_backoff(s).unwrap();
        assert!(read_all(s).unwrap().backoff.is_none());

        let h1 = hold_with_backoff(s, "a@1.0.0", now, "cannot stage").unwrap();
        let h2 = hold_with_backoff(s, "a@1.0.0", now, "cannot stage").unwrap();
        assert_eq!((h1.failures, h2.failures), (1, 2));
        assert_eq!(h2.until.unwrap().duration_since(now).as_mins(), 30);
        hold(s, "a@1.0.0", now, "rolled back").unwrap();
        assert_eq!(hold_with_backoff(s, "a@1.0.0", now, "x").unwrap().until, None, "a hold until release stays");
    }
}
