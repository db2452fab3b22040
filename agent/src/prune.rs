//! The end of every cycle prunes what `state_dir` accumulates, so a full disk never comes
//! from the agent's own leftovers: level-3 backups (`backups/`), downloaded archives
//! (`downloads/`, partial downloads included), receipts (`receipts/`) and receipts the
//! server refused (`outbox/rejected/`). Of each kind the newest `count` entries are kept
//! (`[retention]` in the config), and of those none older than `max_age`; the newest
//! backup and the backup the last intervention may still need are always kept. Pruning
//! never fails a cycle: an entry that cannot be removed is logged and left.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use jiff::Timestamp;

use crate::config::Config;

/// What one pass removed, per kind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub backups: usize,
    pub downloads: usize,
    pub receipts: usize,
    pub rejected: usize,
}

/// Entries of `dir` (files or folders; the `rejected` folder of the outbox excluded) with
/// their modification time, newest first.
fn entries(dir: &Path) -> Vec<(SystemTime, PathBuf)> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(SystemTime, PathBuf)> = read
        .flatten()
        .filter(|e| e.file_name() != "rejected")
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    out.sort_by(|a, b| b.cmp(a));
    out
}

/// Remove the entries of `dir` beyond the newest `keep` or older than `max_age` at `now`,
/// except those `protect` names. Returns how many were removed.
fn prune_dir(dir: &Path, keep: usize, max_age: jiff::SignedDuration, now: Timestamp, protect: &dyn Fn(usize, &Path) -> bool) -> usize {
    let oldest = now.checked_sub(max_age).ok().map(SystemTime::from);
    let mut removed = 0;
    for (i, (modified, path)) in entries(dir).into_iter().enumerate() {
        let too_many = i >= keep;
        let too_old = oldest.is_some_and(|o| modified < o);
        if !(too_many || too_old) || protect(i, &path) {
            continue;
        }
        let result = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match result {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot prune"),
        }
    }
    removed
}

/// Prune `state_dir` as `config.retention` says, at `now`.
pub fn prune(config: &Config, now: Timestamp) -> Pruned {
    let r = &config.retention;
    let state = &config.state_dir;
    // The backup a rollback of the last intervention would restore, and one an interrupted
    // intervention's recovery would need.
    let mut needed: Vec<PathBuf> = Vec::new();
    if let Ok(Some(last)) = crate::intervene::read_last(state) {
        needed.extend(last.backup_dir);
    }
    if let Ok(Some(j)) = crate::journal::read(state) {
        needed.extend(j.backup_dir);
    }
    let keep_backup = |i: usize, p: &Path| i == 0 || needed.iter().any(|n| n == p);
    let nothing = |_: usize, _: &Path| false;
    let pruned = Pruned {
        backups: prune_dir(&state.join("backups"), r.backups, r.max_age, now, &keep_backup),
        downloads: prune_dir(&state.join("downloads"), r.downloads, r.max_age, now, &nothing),
        receipts: prune_dir(&crate::receipt::dir(state), r.receipts, r.max_age, now, &|i, _| i == 0),
        rejected: prune_dir(&state.join("outbox").join("rejected"), r.rejected, r.max_age, now, &nothing),
    };
    if pruned != Pruned::default() {
        tracing::info!(?pruned, "pruned the state folder");
    }
    pruned
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use jiff::SignedDuration;

    use super::*;

    fn touch(path: &Path, age_days: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
        let t = SystemTime::now() - Duration::from_secs(age_days * 86_400);
        std::fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn keeps_the_newest_count_and_drops_what_is_too_old() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, age) in [("a", 1), ("b", 2), ("c", 3), ("d", 40)] {
            touch(&d.join(name), age);
        }
        let now = Timestamp::now();
        assert_eq!(prune_dir(d, 10, SignedDuration::from_hours(30 * 24), now, &|_, _| false), 1, "d is older than 30 days");
        assert_eq!(prune_dir(d, 2, SignedDuration::from_hours(30 * 24), now, &|_, _| false), 1, "c is beyond the newest two");
        let left: Vec<String> = entries(d).into_iter().map(|(_, p)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(left, ["a", "b"]);
        // Protected entries stay whatever their age.
        assert_eq!(prune_dir(d, 1, SignedDuration::from_secs(1), now, &|i, _| i == 0), 1);
        assert_eq!(entries(d).len(), 1);
    }

    #[test]
    fn the_outbox_itself_is_never_pruned_only_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox");
        touch(&outbox.join("rejected/old.json"), 50);
        touch(&outbox.join("queued.json"), 50);
        assert_eq!(prune_dir(&outbox.join("rejected"), 100, SignedDuration::from_hours(24), Timestamp::now(), &|_, _| false), 1);
        assert!(outbox.join("queued.json").exists());
    }
}
