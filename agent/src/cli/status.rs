//! `palier-agent status`: the 2 a.m. command. What is live and since when, the watch in
//! progress, an intervention running now (its process and step), the holds, the last
//! intervention in the receipts' words; local times to the minute in the platform's zone.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use clap::Parser;
use jiff::Timestamp;
use serde::Serialize;

use super::contract::local;
use crate::apply::swap;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::intervene::{self, Last};
use crate::journal::{self, Phase};
use crate::receipt::{self, Receipt};
use crate::site::{self, Installed};

#[derive(Debug, Parser)]
pub struct Args {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Status {
    platform: String,
    dirroot: PathBuf,
    /// Where the live code is (dirroot itself, or its symlink's target).
    current_tree: PathBuf,
    /// The tree a rollback would put back.
    previous_tree: Option<PathBuf>,
    installed: Vec<Installed>,
    last_intervention: Option<Receipt>,
    watch_until: Option<jiff::Timestamp>,
    /// The watch is paused: the site is in a maintenance mode palier did not start.
    #[serde(skip_serializing_if = "Option::is_none")]
    watch_paused: Option<intervene::WatchPause>,
    /// An intervention was interrupted and not yet recovered (the next run recovers it).
    interrupted: Option<String>,
    /// An agent process holding the lock now: its pid and the step it is at.
    running: Option<Running>,
    /// Bundle versions rolled back on this site: not retried automatically.
    rolled_back: Vec<crate::cycle::RolledBack>,
    /// Every hold on this site (`state_dir/holds.json`): after a rollback or by hand until
    /// released, or a back-off lifting itself at `until`.
    holds: Vec<crate::holds::Hold>,
}

/// An intervention under way, from the lock (its holder) and the journal (its step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Running {
    pub pid: Option<u32>,
    pub step: Option<String>,
}

/// The process holding `state_dir/lock` now, if any. The lock file's own text is read when it
/// says `pid N` / `step S`; otherwise the holder is found in /proc/locks (the lock is never
/// taken here, so `status` cannot delay an agent).
pub fn running(state_dir: &Path) -> Option<Running> {
    let path = state_dir.join("lock");
    let meta = std::fs::metadata(&path).ok()?;
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let field = |name: &str| {
        text.split(['\n', ',']).find_map(|part| {
            let part = part.trim().trim_matches(['{', '}', '"']);
            let (k, v) = part.split_once([' ', '=', ':'])?;
            (k.trim().trim_matches('"') == name).then(|| v.trim().trim_matches(['"', ' ']).to_owned())
        })
    };
    let holder = holder_pid(meta.ino(), &std::fs::read_to_string("/proc/locks").unwrap_or_default());
    // A pid written in the file says who took the lock last; only the kernel says it is held.
    holder?;
    let pid = field("pid").and_then(|p| p.parse().ok()).or(holder);
    Some(Running { pid, step: field("step") })
}

/// The pid holding a lock on inode `ino`, from the text of /proc/locks.
fn holder_pid(ino: u64, locks: &str) -> Option<u32> {
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // `1: FLOCK  ADVISORY  WRITE 2107 fe:00:5324946 0 EOF`
        let i = f.iter().position(|x| x.matches(':').count() == 2)?;
        let inode: u64 = f[i].rsplit(':').next()?.parse().ok()?;
        (inode == ino).then(|| f.get(i.checked_sub(1)?)?.parse().ok()).flatten()
    })
}

fn phase_words(p: Phase) -> &'static str {
    match p {
        Phase::Preparing => "preparing (guard, maintenance, backup or staging; the live tree has not changed)",
        Phase::Swapping => "swapping and checking (the new tree may be live; a failed check puts the old one back)",
        Phase::Committed => "committed (checks passed; finishing)",
        Phase::RollingBack => "rolling back (the old tree goes back live)",
        Phase::Restoring => "restoring the backup in maintenance (the old tree is live again)",
    }
}

/// Whether `state_dir` holds anything an agent wrote.
fn has_state(state_dir: &Path) -> bool {
    std::fs::read_dir(state_dir).is_ok_and(|mut d| d.next().is_some())
}

impl Args {
    pub async fn run(self) -> Result<()> {
        let config = super::load_config(&self.config)?;
        if !has_state(&config.state_dir) {
            return Err(Error::Refused(format!(
                "no state in {}: is this the right config? (state_dir in {}; an agent that has run keeps its records there)",
                config.state_dir.display(),
                config.path.display()
            )));
        }
        let dirroot = config.moodle.dirroot.clone();
        let current = swap::live_target(&dirroot).ok().flatten().unwrap_or_else(|| dirroot.clone());
        let last: Option<Last> = intervene::read_last(&config.state_dir)?;
        let journal = journal::read(&config.state_dir)?;
        let mut running = running(&config.state_dir);
        if let (Some(r), Some(j)) = (running.as_mut(), journal.as_ref())
            && r.step.is_none()
        {
            r.step = Some(format!("{} of {}", phase_words(j.phase), j.bundles.join(", ")));
        }
        let status = Status {
            platform: config.platform.to_string(),
            dirroot,
            current_tree: current,
            previous_tree: last.as_ref().map(|l| l.previous.clone()),
            installed: site::installed(&config.state_dir)?,
            last_intervention: receipt::all(&config.state_dir)?.pop(),
            watch_until: last.as_ref().map(|l| l.watch_until),
            watch_paused: last.as_ref().and_then(|l| l.watch_paused.clone()),
            interrupted: if running.is_none() { journal.map(|j| j.id) } else { None },
            running,
            rolled_back: crate::cycle::read_rolled_back(&config.state_dir)?,
            holds: crate::holds::read(&config.state_dir)?,
        };
        if self.json {
            println!("{}", serde_json::to_string_pretty(&status).unwrap_or_default());
            return Ok(());
        }
        print!("{}", words(&status, last.as_ref(), &config, Timestamp::now()));
        Ok(())
    }
}

/// The status in plain words, at `now`.
fn words(s: &Status, last: Option<&Last>, c: &Config, now: Timestamp) -> String {
    let mut out = format!("platform {} ({}, times in {})\n", s.platform, c.path.display(), c.timezone_name);
    let live_since = last.map(|l| format!(" since {}", local(l.applied_at, c))).unwrap_or_default();
    out.push_str(&format!("live:        {}{live_since}\n", s.current_tree.display()));
    if s.installed.is_empty() {
        out.push_str("installed:   no bundle installed by palier yet\n");
    }
    for i in &s.installed {
        out.push_str(&format!("installed:   {}@{} since {}\n", i.id, i.version, local(i.installed_at, c)));
    }
    match (s.watch_until, &s.watch_paused) {
        (_, Some(p)) => out.push_str(&format!(
            "watching:    paused since {}: {}; it resumes (for the time it was paused) once the site is out of maintenance\n",
            local(p.since, c),
            p.reason
        )),
        (Some(until), None) if until > now => out.push_str(&format!(
            "watching:    until {}: the smoke checks run at least every {}, and a failure rolls {} back\n",
            local(until, c),
            palier_policy::schedule::format_duration(c.contract.stability.recovery_budget / 2),
            last.map(|l| l.bundles.join(", ")).unwrap_or_default()
        )),
        _ => {}
    }
    if let Some(r) = &s.running {
        let pid = r.pid.map(|p| format!("process {p}")).unwrap_or_else(|| "an agent process".into());
        let step = r.step.as_deref().map(|st| format!(", {st}")).unwrap_or_default();
        out.push_str(&format!("running:     {pid}{step}\n"));
    }
    if let Some(j) = &s.interrupted {
        out.push_str(&format!("interrupted: {j}: the next `run` (or `rollback`) brings the site back to one whole tree\n"));
    }
    for h in &s.holds {
        let until = match h.until {
            Some(t) => format!("until {}", local(t, c)),
            None => format!("until `palier-agent release {} --config {}`", h.bundle, c.path.display()),
        };
        out.push_str(&format!("held:        {} since {}: {} ({until})\n", h.bundle, local(h.since, c), h.reason));
    }
    match &s.last_intervention {
        Some(r) => {
            let reason = r.reason.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
            out.push_str(&format!(
                "last:        {} {} on {}{reason} (receipt {})\n",
                if r.bundles.is_empty() { "intervention".to_owned() } else { r.bundles.join(", ") },
                super::outcome_word(r.outcome),
                local(r.finished_at, c),
                r.id
            ));
        }
        None => out.push_str("last:        no intervention yet\n"),
    }
    if let Some(p) = &s.previous_tree {
        out.push_str(&format!("rollback:    `palier-agent rollback --config {}` puts {} back\n", c.path.display(), p.display()));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holder_is_read_from_proc_locks() {
        let locks = "1: FLOCK  ADVISORY  WRITE 2107 fe:00:5324946 0 EOF\n2: FLOCK  ADVISORY  WRITE 27483 fe:00:77 0 EOF\n";
        assert_eq!(holder_pid(77, locks), Some(27483));
        assert_eq!(holder_pid(78, locks), None);
        assert_eq!(holder_pid(77, "fe:00:77 x\n"), None, "a malformed line is skipped");
    }

    #[test]
    fn a_held_lock_names_its_process_and_step() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running(dir.path()), None, "no lock file");
        std::fs::write(dir.path().join("lock"), "").unwrap();
        assert_eq!(running(dir.path()), None, "a lock nobody holds");
        let held = crate::lock::acquire(dir.path()).unwrap();
        assert_eq!(running(dir.path()), Some(Running { pid: Some(std::process::id()), step: None }));
        drop(held);
        assert_eq!(running(dir.path()), None);
    }
}
