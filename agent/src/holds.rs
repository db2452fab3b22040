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
use palier_bundle::halt::HaltMarker;
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

/// A halt marker this site saw in the repository. It keeps halting its bundle when the
/// repository no longer lists it (the online halts key can remove a marker, but un-halting is
/// the release manager's: offline), until the bundle's own signed metadata says it was
/// resumed at or after `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenHalt {
    /// `ID@VERSION`.
    pub bundle: String,
    pub reason: String,
    /// The marker's time, or the instant this site first saw it when that is earlier: a
    /// marker dated in the future cannot outlast the resume that follows it.
    pub at: Timestamp,
    pub seen: Timestamp,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holds {
    #[serde(default)]
    pub holds: Vec<Hold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// The halt markers seen in the repository (see [`SeenHalt`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub halt_markers: Vec<SeenHalt>,
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
        halt_markers: Vec::new(),
    };
    write_all(state_dir, &holds)?;
    std::fs::remove_file(&legacy).map_err(Error::io("remove", &legacy))?;
    Ok(holds)
}

fn write_all(state_dir: &Path, holds: &Holds) -> Result<()> {
    pending(state_dir, holds)?.put_synced()
}

/// The record of `holds`, written and synced but not yet in place.
fn pending(state_dir: &Path, holds: &Holds) -> Result<journal::Pending> {
    journal::Pending::record(&path(state_dir), holds, "holds record")
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
    Ok(hold_all(state_dir, &[key.to_owned()], since, reason)? == 1)
}

/// Hold each of `keys` until released, in one write of the record. Returns how many were
/// not held that way already (those keep their first hold's time and reason).
pub fn hold_all(state_dir: &Path, keys: &[String], since: Timestamp, reason: &str) -> Result<usize> {
    let (all, changed) = with_held(state_dir, keys, since, reason)?;
    if changed > 0 {
        write_all(state_dir, &all)?;
    }
    Ok(changed)
}

/// [`hold_all`]'s new record, written and synced but not yet in place; `None` when every key
/// was already held that way. The caller puts it, then syncs the state folder.
pub fn hold_all_pending(state_dir: &Path, keys: &[String], since: Timestamp, reason: &str) -> Result<Option<journal::Pending>> {
    let (all, changed) = with_held(state_dir, keys, since, reason)?;
    (changed > 0).then(|| pending(state_dir, &all)).transpose()
}

/// Every hold with `keys` held until released, and how many of them were not already.
fn with_held(state_dir: &Path, keys: &[String], since: Timestamp, reason: &str) -> Result<(Holds, usize)> {
    for key in keys {
        parse_key(key)?;
    }
    let mut all = read_all(state_dir)?;
    let mut changed = 0;
    for key in keys {
        let hold = Hold { bundle: key.clone(), since, reason: reason.to_owned(), until: None, failures: 0 };
        match all.holds.iter_mut().find(|h| h.bundle == *key) {
            Some(h) if h.until.is_none() => continue,
            Some(h) => *h = hold,
            None => all.holds.push(hold),
        }
        changed += 1;
    }
    Ok((all, changed))
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

/// Remember the halt markers the repository lists now, seen at `now`: a new one is added, and
/// one already remembered takes the newer marker's time and reason (a halt after a resume).
/// Written only when something changed. Returns how many were added or renewed.
pub fn remember_halt_markers(state_dir: &Path, markers: &[HaltMarker], now: Timestamp) -> Result<usize> {
    if markers.is_empty() {
        return Ok(0);
    }
    let mut all = read_all(state_dir)?;
    let mut changed = 0;
    for m in markers {
        let at = m.at().min(now);
        let key = m.bundle.to_string();
        match all.halt_markers.iter_mut().find(|s| s.bundle == key) {
            Some(seen) if seen.at >= at => {}
            Some(seen) => {
                *seen = SeenHalt { bundle: key, reason: m.reason.clone(), at, seen: now };
                changed += 1;
            }
            None => {
                all.halt_markers.push(SeenHalt { bundle: key, reason: m.reason.clone(), at, seen: now });
                changed += 1;
            }
        }
    }
    if changed > 0 {
        write_all(state_dir, &all)?;
    }
    Ok(changed)
}

/// The halt markers this site saw, as markers again (their time being [`SeenHalt::at`]), for
/// the repository view to apply as it applies the listed ones.
pub fn seen_halt_markers(state_dir: &Path) -> Result<Vec<HaltMarker>> {
    Ok(read_all(state_dir)?
        .halt_markers
        .into_iter()
        .filter_map(|s| {
            let bundle = s.bundle.parse().ok()?;
            Some(HaltMarker { bundle, reason: format!("{} (halt marker seen {}; halted until the release manager resumes it)", s.reason, s.seen), at: s.at.to_string() })
        })
        .collect())
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

    /// A halt marker seen once is remembered: a newer marker renews it, an older or repeated
    /// one changes nothing, and a marker dated in the future counts from when it was seen.
    #[test]
    fn halt_markers_seen_are_remembered_with_their_newest_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        let marker = |at: &str, reason: &str| HaltMarker { bundle: "quiz-fix@1.0.1".parse().unwrap(), reason: reason.into(), at: at.into() };
        let now = ts("2026-12-01T10:00:00Z");
        assert_eq!(remember_halt_markers(s, &[], now).unwrap(), 0);
        assert!(!path(s).exists(), "nothing seen, nothing written");
        assert_eq!(remember_halt_markers(s, &[marker("2026-12-01T09:00:00Z", "auto-halt")], now).unwrap(), 1);
        assert_eq!(remember_halt_markers(s, &[marker("2026-12-01T09:00:00Z", "auto-halt")], now).unwrap(), 0);
        assert_eq!(remember_halt_markers(s, &[marker("2026-12-01T08:00:00Z", "older")], now).unwrap(), 0);
        let seen = seen_halt_markers(s).unwrap();
        assert_eq!((seen.len(), seen[0].at()), (1, ts("2026-12-01T09:00:00Z")));
        assert!(seen[0].reason.starts_with("auto-halt (halt marker seen 2026-12-01T10:00:00Z"), "{}", seen[0].reason);
        assert_eq!(remember_halt_markers(s, &[marker("2030-01-01T00:00:00Z", "again")], now).unwrap(), 1);
        assert_eq!(seen_halt_markers(s).unwrap()[0].at(), now, "clamped to when it was seen");
        assert!(read(s).unwrap().is_empty(), "no hold is made");
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
