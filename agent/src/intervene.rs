//! One intervention, as SPEC 2.2 describes it for the platform's stability level:
//!
//! - level 1 and 2: guard, download, stage, swap, upgrade and purge-caches hooks where a
//!   bundle needs them, the bundles' own checks and the smoke checks; roll back on failure;
//! - level 3: guard, download, maintenance on, a backup that must succeed (non-empty, its
//!   sha256 recorded), stage, swap, upgrade and purge-caches hooks, the validate hook while
//!   still in maintenance, maintenance off, then the checks; on failure the previous tree
//!   goes back and, where data may have changed, the backup is restored.
//!
//! Every step that changes the site is journaled first (see `journal`), named as a crash
//! point (see `crash`), and the whole intervention runs under the lock. Maintenance mode,
//! once on, is turned off on every path out of the intervention, errors included, unless
//! the site must stay in it (a restore that has not succeeded yet).

use std::path::{Path, PathBuf};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use palier_policy::{Level, SiteFacts, changes_database};
use serde::{Deserialize, Serialize};
use palier_bundle::archive::HashWriter;
use sha2::{Digest, Sha256};

use crate::apply::{self, swap};
use crate::checks;
use crate::clock::Clock;
use crate::config::{Config, Hook};
use crate::crash;
use crate::download::Downloaded;
use crate::error::{Error, Result};
use crate::hooks::{self, Placeholders};
use crate::journal::{self, Commit, Journal, Phase, TreeId};
use crate::receipt::{self, Backup, Outcome, Receipt, Step};
use crate::repository::{Verified, VerifiedBundle};
use crate::site::{self, Installed};

/// What the last applied intervention left, for a rollback by hand or by the watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Last {
    pub id: String,
    pub bundles: Vec<String>,
    pub applied_at: Timestamp,
    pub watch_until: Timestamp,
    /// The tree that was live before (a kept sibling, or the old symlink target).
    pub previous: PathBuf,
    pub previous_tree: TreeId,
    pub installed_before: Vec<Installed>,
    pub backup_dir: Option<PathBuf>,
    pub data_changed: bool,
    /// The paths its bundles wrote or deleted: theirs. Every other site-local file
    /// (`config.php`, `.htaccess`, `local/`...) is the site's, carried into whichever tree
    /// goes live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub touched: Vec<String>,
    /// The site's own files outside `local/` that the previous tree holds (see
    /// [`Journal::site_local`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_local: Option<Vec<String>>,
    /// The watch is paused: the site went into a maintenance mode palier did not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_paused: Option<WatchPause>,
}

fn last_path(state_dir: &Path) -> PathBuf {
    state_dir.join("last.json")
}

pub fn read_last(state_dir: &Path) -> Result<Option<Last>> {
    journal::read_record(&last_path(state_dir), "record of the last intervention")
}

/// Records steps, hooks and checks as the intervention goes.
struct Run<'a> {
    config: &'a Config,
    clock: &'a dyn Clock,
    receipt: Receipt,
    values: Placeholders,
    /// Maintenance mode is on because of this run: whoever ends the run turns it off.
    maintenance: bool,
}

impl<'a> Run<'a> {
    /// A run for receipt `id` over `bundles`, with the hook placeholders filled in.
    fn new(config: &'a Config, clock: &'a dyn Clock, id: String, bundles: Vec<String>, backup_dir: Option<&Path>) -> Run<'a> {
        let values = Placeholders::from([
            ("dirroot", config.moodle.dirroot.display().to_string()),
            ("dataroot", config.moodle.dataroot.display().to_string()),
            ("backup_dir", backup_dir.map(|d| d.display().to_string()).unwrap_or_default()),
            ("minutes", "0".to_owned()),
            ("bundles", bundles.join(",")),
        ]);
        let now = Timestamp::now();
        let receipt = Receipt {
            id,
            platform: config.platform.to_string(),
            stability_level: config.contract.stability.level.get(),
            started_at: now,
            finished_at: now,
            bundles,
            outcome: Outcome::Failed,
            reason: None,
            steps: Vec::new(),
            hooks: Vec::new(),
            checks: Vec::new(),
            backup: None,
            recovery_ms: None,
            count: 1,
        };
        Run { config, clock, receipt, values, maintenance: false }
    }

    fn step(&mut self, name: &str, started: (Timestamp, Instant), result: &std::result::Result<(), String>) {
        self.receipt.steps.push(Step {
            name: name.into(),
            started_at: started.0,
            duration_ms: started.1.elapsed().as_millis() as u64,
            ok: result.is_ok(),
            detail: result.clone().err(),
        });
    }

    /// Run a configured hook (absent: nothing to do, success), then pass its crash point.
    async fn hook(&mut self, name: &str, hook: Option<&Hook>) -> std::result::Result<(), String> {
        let Some(hook) = hook else { return Ok(()) };
        let run = hooks::run(name, hook, &self.values).await;
        self.hook_ran(name, run)
    }

    /// Record what hook `name` did, then pass its crash point.
    fn hook_ran(&mut self, name: &str, run: hooks::HookRun) -> std::result::Result<(), String> {
        let result = if run.ok() { Ok(()) } else { Err(run.failure()) };
        self.receipt.hooks.push(run);
        crash::point(&format!("hook:{name}"));
        result
    }

    /// Turn maintenance mode on (recorded, so that every way out turns it off again).
    async fn maintenance_on(&mut self, step: &str) -> std::result::Result<(), String> {
        let t = started();
        self.maintenance = true;
        let on = self.hook("maintenance_on", self.config.hooks.maintenance_on.as_ref()).await;
        self.step(step, t, &on);
        on
    }

    /// Turn maintenance mode off if this run turned it on.
    async fn maintenance_off(&mut self) -> std::result::Result<(), String> {
        if !self.maintenance {
            return Ok(());
        }
        let t = started();
        let off = self.hook("maintenance_off", self.config.hooks.maintenance_off.as_ref()).await;
        self.step("maintenance off", t, &off);
        if off.is_ok() {
            self.maintenance = false;
        }
        off
    }

    /// Save the receipt (and queue it for the server); the journal is cleared only after.
    fn finish(&mut self, outcome: Outcome, reason: Option<String>) -> Result<Receipt> {
        self.receipt.outcome = outcome;
        self.receipt.reason = reason;
        self.receipt.finished_at = Timestamp::now();
        receipt::save(&self.config.state_dir, &self.receipt)?;
        crate::report::enqueue(self.config, &self.receipt)?;
        crash::point("receipt:written");
        Ok(self.receipt.clone())
    }

    /// Save the receipt, then clear the journal: a kill between the two leaves the journal,
    /// whose recovery finds the receipt already there.
    fn finish_and_clear(&mut self, outcome: Outcome, reason: Option<String>) -> Result<Receipt> {
        let receipt = self.finish(outcome, reason)?;
        journal::clear(&self.config.state_dir)?;
        Ok(receipt)
    }
}

fn started() -> (Timestamp, Instant) {
    (Timestamp::now(), Instant::now())
}

/// Id of an intervention: its time, a digest of its bundles and a random part.
fn intervention_id(now: Timestamp, keys: &[String]) -> String {
    receipt::unique_id(now, keys)
}

/// Refuse to start when the filesystem of `path` has less than `need` bytes free.
fn check_free_space(path: &Path, need: u64, what: &str) -> Result<()> {
    let s = rustix::fs::statvfs(path).map_err(|e| Error::io("measure free space of", path)(e.into()))?;
    let free = s.f_bavail.saturating_mul(s.f_frsize);
    if free < need {
        return Err(Error::Refused(format!(
            "not enough free space for {what} on {}: {} needed, {} free; free some space, nothing was changed",
            path.display(),
            human(need),
            human(free)
        )));
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 10 << 20 => format!("{} MiB", b >> 20),
        b if b >= 10 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Room the agent's own records need on the state folder's filesystem (journal, receipt,
/// installed record) whatever the intervention.
const STATE_ROOM: u64 = 1 << 20;

/// Digest of a backup artifact (a file, or every file of a folder in path order).
fn backup_digest(path: &Path) -> Result<Backup> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if std::fs::symlink_metadata(&p)?.is_dir() {
                walk(&p, out)?;
            } else {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(path, &mut files).map_err(Error::io("read backup", path))?;
    files.sort();
    let mut hasher = Sha256::new();
    let mut bytes = 0;
    for f in &files {
        let rel = f.strip_prefix(path).unwrap_or(f).to_string_lossy().into_owned();
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        let mut file = std::fs::File::open(f).map_err(Error::io("read backup", f))?;
        bytes += std::io::copy(&mut file, &mut HashWriter(&mut hasher)).map_err(Error::io("read backup", f))?;
    }
    Ok(Backup { dir: path.into(), sha256: hex::encode(hasher.finalize()), bytes, files: files.len() as u64 })
}


/// The paths `due` writes or deletes: its own files. The rest of the deny-list of
/// site-local files is the site's, carried into whichever tree goes live.
fn touched_paths(due: &[Downloaded]) -> Vec<String> {
    let mut paths: Vec<String> = due.iter().flat_map(|d| d.manifest.paths().map(|p| p.as_str().to_owned())).collect();
    paths.sort();
    paths.dedup();
    paths
}

/// The smoke checks before anything changes. A site that already fails them (or is in a
/// maintenance mode palier did not start) postpones the intervention: no bundle is blamed,
/// held or reported as failed. `Err` is the postponement's reason.
///
/// `announced`: the intervention runs in maintenance and its notice was posted. That notice
/// may be Moodle's own countdown (`maintenance.php --enablelater`), which turns maintenance
/// on by itself when it runs out: a maintenance mode found then is the one announced, and
/// the intervention goes on in it (its maintenance hooks turn it on again and off at the end).
async fn preflight(run: &mut Run<'_>, announced: bool) -> std::result::Result<(), String> {
    let config = run.config;
    let t = started();
    let why = if announced && checks::maintenance_file(&config.moodle.dataroot) {
        tracing::info!("the site is already in the maintenance mode the notice announced: the intervention goes on in it");
        None
    } else if checks::maintenance_file(&config.moodle.dataroot) {
        Some(format!(
            "the site is in maintenance mode ({} in dataroot), which palier did not start: postponed until it is off; no bundle blamed",
            checks::MAINTENANCE_FILE
        ))
    } else {
        let (results, ok) = checks::run_all_with_clock(&config.moodle.wwwroot, &config.smoke_checks, run.clock).await;
        let failed = results.iter().find(|r| !r.ok).cloned();
        let only_maintenance = results.iter().all(|c| c.ok || c.maintenance);
        // The receipt's checks are those after the swap; a postponement shows what failed.
        if !ok {
            run.receipt.checks = results;
        }
        match failed {
            _ if ok => None,
            Some(r) if r.maintenance && announced && only_maintenance => None,
            Some(r) if r.maintenance => Some(format!("the site is in maintenance mode (check {} answered Moodle's maintenance page), which palier did not start: postponed until it is off; no bundle blamed", r.path)),
            Some(r) => Some(format!(
                "the site already fails its checks before anything changed: check {} failed: {}; postponed, no bundle blamed",
                r.path,
                r.detail.unwrap_or_default()
            )),
            None => Some("the site already fails its checks before anything changed; postponed, no bundle blamed".into()),
        }
    };
    let result = why.map_or(Ok(()), Err);
    run.step("preflight checks", t, &result);
    crash::point("preflight:done");
    result
}

/// Apply `due` (in `after` order) in one intervention. The lock must be held.
///
/// A bundle that changes the database ([`changes_database`]: `upgrade = true`, or a
/// `version.php`) is applied at every stability level in maintenance mode after a backup
/// that must succeed, and its upgrade runs before maintenance is turned off; level 3 does
/// the same for every bundle.
pub async fn intervene(config: &Config, clock: &dyn Clock, verified: &Verified, due: &[&VerifiedBundle], now: Timestamp) -> Result<Receipt> {
    let keys: Vec<String> = due.iter().map(|b| b.meta().manifest.key()).collect();
    let id = intervention_id(now, &keys);
    let level = config.contract.stability.level;
    let state = &config.state_dir;
    let backup_dir = state.join("backups").join(&id);
    let mut run = Run::new(config, clock, id.clone(), keys.clone(), Some(&backup_dir));

    // The guard says whether now is a good time (no quiz attempt open, ...).
    let t = started();
    let guard = run.hook("guard", config.hooks.guard.as_ref()).await;
    run.step("guard", t, &guard);
    if let Err(why) = guard {
        // A guard that cannot start is a broken config, not a "not now": say so, do not
        // postpone for ever.
        if run.receipt.hooks.last().is_some_and(hooks::HookRun::could_not_start) {
            return run.finish(Outcome::Failed, Some(why));
        }
        return run.finish(Outcome::Postponed, Some(why));
    }
    // At level 3 every intervention runs in maintenance, announced by its notice.
    let announced = level == Level::Three && crate::cycle::read_notices(state)?.iter().any(|n| keys.iter().all(|k| n.bundles.contains(k)));
    if let Err(why) = preflight(&mut run, announced).await {
        return run.finish(Outcome::Postponed, Some(why));
    }

    let t = started();
    let mut archives = Vec::new();
    for b in due {
        match crate::download::download(verified, b, state).await {
            Ok(p) => archives.push(p),
            Err(e) => {
                let why = palier_bundle::error::one_line(&e);
                run.step("download", t, &Err(why.clone()));
                return run.finish(Outcome::Failed, Some(why));
            }
        }
    }
    run.step("download", t, &Ok(()));
    // File ownership over the archives' own manifests, before anything changes.
    let t = started();
    let conflict = crate::cycle::file_conflict(config, verified, &archives)?.map(|c| format!("refused, nothing applied: {c}"));
    if let Some(why) = conflict {
        run.step("file ownership", t, &Err(why.clone()));
        return run.finish(Outcome::Failed, Some(why));
    }

    let dirroot = &config.moodle.dirroot;
    let live = apply::live_path(dirroot)?;
    let symlinked = swap::live_target(dirroot).map_err(Error::io("read", dirroot))?.is_some();
    // Room for the bundles' files and a folder entry each on the code's filesystem (the
    // clone is hard links), and for the agent's records: checked before anything changes.
    let t = started();
    let need = due.iter().map(|b| b.meta().expanded_size + 4096 * b.meta().file_count).sum::<u64>() + (1 << 20);
    let room = check_free_space(live.parent().unwrap_or(Path::new("/")), need, "staging").and_then(|()| check_free_space(state, STATE_ROOM, "the agent's records"));
    run.step("free space", t, &room.as_ref().map(|_| ()).map_err(|e| palier_bundle::error::one_line(e)));
    if let Err(e) = room {
        return run.finish(Outcome::Failed, Some(palier_bundle::error::one_line(&e)));
    }
    // Which bundles change the database, read against the site's own layout.
    let site_facts = match site::moodle_release(dirroot) {
        Ok(s) => s,
        Err(e) => return run.finish(Outcome::Failed, Some(palier_bundle::error::one_line(&e))),
    };
    let data_change: Option<String> =
        due.iter().find_map(|b| changes_database(b.meta(), site_facts.code()).map(|why| format!("{}: {why}", b.meta().manifest.key())));
    if let Some(why) = &data_change
        && config.hooks.backup.is_none()
    {
        // The plan never makes such a bundle due (`backup-missing`): refused all the same.
        return run.finish(Outcome::Failed, Some(format!("refused, nothing applied: {why}, which changes the database, and the config has no backup hook")));
    }
    let protect = level == Level::Three || data_change.is_some();
    let mut journal = Journal {
        id: id.clone(),
        started_at: run.receipt.started_at,
        bundles: keys.clone(),
        phase: Phase::Preparing,
        old_tree: TreeId::of(&live)?,
        new_tree: None,
        staging: apply::stage::sibling(dirroot, &live, "stage", &id),
        previous: if symlinked { live.clone() } else { apply::stage::sibling(dirroot, dirroot, "prev", &id) },
        installed_before: site::installed(state)?,
        maintenance: false,
        backup_dir: None,
        data_changed: false,
        receipt: id.clone(),
        hold: false,
        reason: None,
        commit: None,
        touched: touched_paths(&archives),
        site_local: None,
    };
    journal::write(state, &journal)?;

    let staged = match prepare(&mut run, &mut journal, &archives, &backup_dir, protect).await {
        Ok(s) => s,
        Err(why) => return abandon(&mut run, &journal, &backup_dir, why).await,
    };

    // The site's own files (config.php, .htaccess, local/ customisations) as they are now,
    // edits made since the staging clone included, go live with the new tree: the ones the
    // clone found, the fixed places and local/ now; a .htaccess created elsewhere since the
    // clone right after the swap (no walk of the whole tree before it).
    let t = started();
    journal.site_local = Some(staged.site_local.clone());
    let carried = apply::carry_site_local(&live, &staged.path, &journal.touched, journal.site_local.as_deref());
    if !matches!(carried, Ok(0)) {
        run.step("carry site-local files", t, &carried.as_ref().map(|_| ()).map_err(|e| palier_bundle::error::one_line(e)));
    }
    if let Err(e) = carried {
        return abandon(&mut run, &journal, &backup_dir, format!("cannot carry the site's own files into the new tree, nothing applied: {}", palier_bundle::error::one_line(&e))).await;
    }

    journal.phase = Phase::Swapping;
    if let Err(e) = journal::write(state, &journal) {
        return abandon(&mut run, &journal, &backup_dir, format!("cannot write the journal, nothing applied: {}", palier_bundle::error::one_line(&e))).await;
    }
    let t = started();
    // The filesystem's time just before the swap: what changes in the new tree after it
    // is what a rollback looks for.
    let swapped_at = staged.path.parent().and_then(|p| apply::fs_now(p).ok());
    let left = match apply::go_live(dirroot, &staged, &journal.previous, journal.old_tree) {
        Ok(left) => left,
        Err(e) => {
            let why = palier_bundle::error::one_line(&e);
            run.step("swap", t, &Err(why.clone()));
            // The live tree's identity says whether the exchange happened.
            if TreeId::dir_at(&apply::live_path(dirroot)?) == Some(journal.old_tree) {
                return abandon(&mut run, &journal, &backup_dir, format!("swap failed, nothing applied: {why}")).await;
            }
            return roll_back_now(&mut run, &mut journal, format!("swap failed: {why}"), None, false).await;
        }
    };
    run.step("swap", t, &Ok(()));
    let old_tree = journal.old_tree;
    if let Err(why) = carry_new(&mut run, &mut journal, &left, old_tree, Some(&staged.outline)) {
        return roll_back_now(&mut run, &mut journal, format!("cannot carry the site's own files into the new tree: {why}"), None, false).await;
    }

    // From here on, any failure puts the previous tree back.
    match after_swap(&mut run, &mut journal, due, level, data_change.is_some()).await {
        Ok(None) => {}
        Ok(Some((why, failed_at))) => return roll_back_now(&mut run, &mut journal, why, Some(failed_at), true).await,
        Err(e) => return roll_back_now(&mut run, &mut journal, palier_bundle::error::one_line(&e), Some(Instant::now()), false).await,
    }

    let mut installed = journal.installed_before.clone();
    for b in due {
        let m = &b.meta().manifest;
        installed.retain(|i| i.id != m.id);
        installed.push(Installed { id: m.id.clone(), version: m.version.clone(), installed_at: Timestamp::now() });
    }
    let last = Last {
        id: id.clone(),
        bundles: keys,
        applied_at: Timestamp::now(),
        watch_until: now.checked_add(config.contract.stability.watch).unwrap_or(now),
        previous_tree: journal.old_tree,
        previous: journal.previous.clone(),
        installed_before: journal.installed_before.clone(),
        backup_dir: journal.backup_dir.clone(),
        data_changed: journal.data_changed,
        touched: journal.touched.clone(),
        site_local: journal.site_local.clone(),
        watch_paused: None,
    };
    // The commit is this one journal write; what it implies is written from the journal.
    journal.phase = Phase::Committed;
    journal.commit = Some(Commit { installed, last });
    if let Err(e) = journal::write(state, &journal) {
        journal.phase = Phase::Swapping;
        journal.commit = None;
        return roll_back_now(&mut run, &mut journal, format!("cannot record the commit: {}", palier_bundle::error::one_line(&e)), None, false).await;
    }
    write_commit(dirroot, state, &journal)?;
    let receipt = run.finish_and_clear(Outcome::Applied, None)?;
    // For a rollback: the new tree's folders (the clone's and the bundles' new ones) as of
    // the swap, so that it reads only the folders changed since.
    let mut outline = staged.outline;
    outline.since = swapped_at.unwrap_or(outline.since);
    for path in &journal.touched {
        let mut dir = Path::new(path.as_str());
        while let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            outline.dirs.insert(parent.to_string_lossy().into_owned());
            dir = parent;
        }
    }
    save_outline(state, &id, &outline);
    prune_previous(dirroot, &journal.previous, config.moodle.keep_previous);
    Ok(receipt)
}

/// Maintenance and backup (`protect`: level 3, or a database change at any level), then
/// staging; the live tree does not change. `Err` is the receipt's reason.
async fn prepare(
    run: &mut Run<'_>,
    journal: &mut Journal,
    archives: &[Downloaded],
    backup_dir: &Path,
    protect: bool,
) -> std::result::Result<apply::Staged, String> {
    let config = run.config;
    let state = &config.state_dir;
    let dirroot = &config.moodle.dirroot;
    let journal_failed = |e: Error| format!("cannot write the journal, nothing applied: {}", palier_bundle::error::one_line(&e));
    if protect {
        // Journaled before the hook: a kill right after it must still turn maintenance off.
        journal.maintenance = true;
        journal::write(state, journal).map_err(journal_failed)?;
        if let Err(why) = run.maintenance_on("maintenance on").await {
            return Err(format!("maintenance mode could not be turned on: {why}"));
        }

        let t = started();
        let mut backup = std::fs::create_dir_all(backup_dir).map_err(|e| format!("cannot create {}: {e}", backup_dir.display()));
        if backup.is_ok() {
            backup = run.hook("backup", config.hooks.backup.as_ref()).await;
        }
        if backup.is_ok() {
            match backup_digest(backup_dir) {
                Ok(b) if b.bytes > 0 => run.receipt.backup = Some(b),
                Ok(_) => backup = Err(format!("backup hook left nothing in {}", backup_dir.display())),
                Err(e) => backup = Err(palier_bundle::error::one_line(&e)),
            }
        }
        run.step("backup", t, &backup);
        if let Err(why) = backup {
            return Err(format!("backup failed, nothing applied: {why}"));
        }
        journal.backup_dir = Some(backup_dir.to_path_buf());
        journal::write(state, journal).map_err(journal_failed)?;
    }

    let t = started();
    let staging_failed = |run: &mut Run<'_>, e: Error| {
        let why = palier_bundle::error::one_line(&e);
        run.step("stage", t, &Err(why.clone()));
        format!("staging failed, nothing applied: {why}")
    };
    let (path, tree) = match apply::create_staging(dirroot, &journal.id) {
        Ok(s) => s,
        Err(e) => return Err(staging_failed(run, e)),
    };
    journal.staging = path.clone();
    journal.new_tree = Some(tree);
    journal::write(state, journal).map_err(journal_failed)?;
    let pairs: Vec<(&palier_bundle::Manifest, &Path)> = archives.iter().map(|a| (&a.manifest, a.path.as_path())).collect();
    match apply::fill_staging(dirroot, &path, &pairs) {
        Ok(cloned) => {
            run.step("stage", t, &Ok(()));
            Ok(apply::Staged { path, tree, files_cloned: cloned.files, site_local: cloned.site_local, outline: cloned.outline })
        }
        Err(e) => Err(staging_failed(run, e)),
    }
}

/// End an intervention that never changed the live tree: drop its staged tree and partial
/// backup, turn maintenance off, then the `failed` receipt, then the journal.
async fn abandon(run: &mut Run<'_>, journal: &Journal, backup_dir: &Path, why: String) -> Result<Receipt> {
    if let Some(tree) = journal.new_tree {
        let _ = apply::remove_tree(&journal.staging, tree);
    }
    if journal.backup_dir.is_none() {
        // This intervention's own folder (its id is never reused): the backup is incomplete.
        let _ = std::fs::remove_dir_all(backup_dir);
    }
    if let Err(off) = run.maintenance_off().await {
        // The journal stays: the next run turns maintenance off again.
        return run.finish(Outcome::Failed, Some(format!("{why}; maintenance mode could not be turned off: {off}")));
    }
    run.finish_and_clear(Outcome::Failed, Some(why))
}

/// Decide a rollback (journaled first), carry it out, then the `rolled-back` receipt.
/// `hold`: the bundles failed (a hook, a check) and are not retried automatically.
async fn roll_back_now(run: &mut Run<'_>, journal: &mut Journal, why: String, failed_at: Option<Instant>, hold: bool) -> Result<Receipt> {
    journal.phase = Phase::RollingBack;
    journal.hold = hold;
    journal.reason = Some(why.clone());
    journal::write(&run.config.state_dir, journal)?;
    let after = roll_back(run, journal, failed_at).await?;
    run.finish_and_clear(Outcome::RolledBack, Some(with_after(why, after)))
}

/// A rollback's reason, with what the smoke checks said after it when they failed.
fn with_after(why: String, after: Option<String>) -> String {
    match after {
        Some(a) => format!("{why}; {a}"),
        None => why,
    }
}

/// Write what the commit implies (installed record, last intervention), from the journal.
fn write_commit(dirroot: &Path, state_dir: &Path, journal: &Journal) -> Result<()> {
    if let Some(c) = &journal.commit {
        site::write_installed(state_dir, &c.installed)?;
        crash::point("commit:installed");
        site::mark(dirroot, state_dir)?;
        journal::write_record(&last_path(state_dir), &c.last, "record of the last intervention")?;
        crash::point("commit:last");
    }
    Ok(())
}

/// One round of checks, recorded in the receipt; `Some((why, when))` when one failed.
async fn check_round(run: &mut Run<'_>, name: &str, list: &[palier_bundle::Check]) -> Option<(String, Instant)> {
    let config = run.config;
    let t = started();
    let (results, ok) = checks::run_all_with_clock(&config.moodle.wwwroot, list, run.clock).await;
    let failed_at = Instant::now();
    let why = results.iter().find(|r| !r.ok).map(|r| format!("check {} failed: {}", r.path, r.detail.clone().unwrap_or_default()));
    run.receipt.checks.extend(results);
    run.step(name, t, &why.clone().map_or(Ok(()), Err));
    if ok { None } else { Some((why.unwrap_or_else(|| "a check failed".into()), failed_at)) }
}

/// The checks after a swap, counted only on the new code. With a `reload` hook (run
/// before), the web server runs the new code: the bundles' checks and the smoke checks
/// run once. Without one, PHP's opcode cache may still serve the old code: the smoke checks
/// run at once (a fatal error seen early is rolled back early), then again with the
/// bundles' checks after `opcache_revalidate` + 1 s, and only that second round counts.
async fn checks_on_new_code(run: &mut Run<'_>, due: &[&VerifiedBundle]) -> Option<(String, Instant)> {
    let config = run.config;
    let mut all: Vec<palier_bundle::Check> = due.iter().flat_map(|b| b.meta().manifest.checks.clone()).collect();
    all.extend(config.smoke_checks.iter().cloned());
    if config.hooks.reload.is_none() {
        if let Some(failed) = check_round(run, "checks", &config.smoke_checks).await {
            return Some(failed);
        }
        let wait = config.opcache_revalidate.unsigned_abs() + std::time::Duration::from_secs(1);
        let t = started();
        run.clock.sleep(wait).await;
        run.step(&format!("wait {} ms for PHP's opcode cache to see the new files (no reload hook)", wait.as_millis()), t, &Ok(()));
        return check_round(run, "checks on the new code", &all).await;
    }
    check_round(run, "checks", &all).await
}

/// Hooks and checks after the swap; `Some((why, when it failed))` means roll back.
async fn after_swap(run: &mut Run<'_>, journal: &mut Journal, due: &[&VerifiedBundle], level: Level, changes_db: bool) -> Result<Option<(String, Instant)>> {
    let config = run.config;
    // The data may change from here on: a rollback restores the backup. A bundle that
    // only declares a data impact is restored too when a backup was taken (level 3).
    let declared = due.iter().any(|b| b.meta().manifest.data_impact != palier_bundle::DataImpact::None);
    if changes_db || (declared && journal.backup_dir.is_some()) {
        journal.data_changed = true;
        journal::write(&config.state_dir, journal)?;
    }
    let t = started();
    let r = run.hook("reload", config.hooks.reload.as_ref()).await;
    if config.hooks.reload.is_some() {
        run.step("reload", t, &r);
    }
    if let Err(why) = r {
        return Ok(Some((why, Instant::now())));
    }
    if changes_db {
        let t = started();
        let r = run.hook("upgrade", config.hooks.upgrade.as_ref()).await;
        run.step("upgrade", t, &r);
        if let Err(why) = r {
            return Ok(Some((why, Instant::now())));
        }
    }
    let t = started();
    let r = run.hook("purge_caches", config.hooks.purge_caches.as_ref()).await;
    run.step("purge caches", t, &r);
    if let Err(why) = r {
        return Ok(Some((why, Instant::now())));
    }
    if level == Level::Three {
        let t = started();
        let r = run.hook("validate", config.hooks.validate.as_ref()).await;
        run.step("validate (in maintenance)", t, &r);
        if let Err(why) = r {
            return Ok(Some((format!("validation failed in maintenance: {why}"), Instant::now())));
        }
    }
    if run.maintenance {
        if let Err(why) = run.maintenance_off().await {
            return Ok(Some((why, Instant::now())));
        }
        journal.maintenance = false;
        journal::write(&config.state_dir, journal)?;
    }
    let failed = checks_on_new_code(run, due).await;
    crash::point("checks:done");
    Ok(failed)
}

/// Why a rollback of a database change cannot go ahead, when it cannot: no backup was
/// taken, or it is gone.
fn cannot_restore(journal: &Journal) -> Option<String> {
    if !journal.data_changed {
        return None;
    }
    let missing = match &journal.backup_dir {
        None => "no backup was taken".to_owned(),
        Some(dir) if !dir.is_dir() => format!("its backup {} is gone", dir.display()),
        Some(_) => return None,
    };
    Some(format!(
        "cannot roll back {}: it changed the database and {missing}, so the database holds newer plugin versions than the old code, which Moodle refuses to run; the new code stays live; restore the database by hand first (then put the old tree {} back)",
        journal.bundles.join(", "),
        journal.previous.display()
    ))
}

/// What a rollback records in the state folder once the old tree is live: the installed
/// record as before the intervention, the hold on its versions, and the record of the last
/// intervention removed. Each is final only once the journal is cleared (a kill before runs
/// the rollback again, which writes them again), and each crash point is reached whether or
/// not its record had to change, so a recovery passes the same points whatever was written
/// before the kill.
struct RollbackRecords {
    state: PathBuf,
    installed_before: Vec<Installed>,
    hold: Option<(Vec<String>, String)>,
    id: String,
}

impl RollbackRecords {
    fn of(state: &Path, journal: &Journal) -> Self {
        RollbackRecords {
            state: state.to_owned(),
            installed_before: journal.installed_before.clone(),
            hold: journal.hold.then(|| (journal.bundles.clone(), journal.reason.clone().unwrap_or_else(|| "rolled back".into()))),
            id: journal.id.clone(),
        }
    }

    fn write(&self) -> Result<()> {
        let state = &self.state;
        // The installed record and the hold are written and synced first, then put in place
        // one after the other, and one sync of the state folder makes both final.
        let installed = site::installed_pending(state, &self.installed_before)?;
        // `Some(None)`: a hold to record that is already there.
        let hold = self.hold.as_ref().map(|(bundles, reason)| crate::holds::hold_all_pending(state, bundles, Timestamp::now(), &crate::cycle::rolled_back_hold(reason))).transpose()?;
        installed.put()?;
        crash::point("rollback:installed");
        if let Some(pending) = hold {
            pending.map(journal::Pending::put).transpose()?;
            crash::point("rollback:remembered");
        }
        if read_last(state)?.is_some_and(|l| l.id == self.id) {
            let p = last_path(state);
            std::fs::remove_file(&p).map_err(Error::io("remove", &p))?;
        }
        crash::point("rollback:last-removed");
        journal::sync_dir(state)
    }
}

/// The failed tree set aside once the rollback left it (one rename now; the end of the cycle
/// deletes it, as deleting 30,000 links here would delay the command by a second), and its
/// outline dropped.
fn set_aside(dirroot: &Path, state: &Path, journal: &Journal) -> Result<()> {
    if journal.new_tree.is_some()
        && let Some((left, new)) = left_tree(&apply::live_path(dirroot)?, journal)
    {
        let trash = apply::stage::sibling(dirroot, &left, "trash", &journal.receipt);
        apply::move_tree(&left, &trash, new)?;
    }
    // Reached whether or not the tree had to move: the records are written on another
    // thread meanwhile, and a recovery passes the same points whichever finished first.
    crash::point("rollback:set-aside");
    let _ = std::fs::remove_file(outline_path(state, &journal.id));
    Ok(())
}

/// The tree a rollback left (the journal's new tree, no longer live) and where it is now.
fn left_tree(live: &Path, journal: &Journal) -> Option<(PathBuf, TreeId)> {
    let new = journal.new_tree?;
    [&journal.previous, &journal.staging].into_iter().find(|p| p.as_path() != live && TreeId::dir_at(p) == Some(new)).map(|p| (p.clone(), new))
}

/// The one rollback procedure, the same after a failed check, from the watch, by hand and
/// in recovery: maintenance on when the data changed (and always at level 3) before the old
/// code goes live, the site's own files carried into the old tree, the old tree back live,
/// the backup restored where the data changed (maintenance stays on until it succeeds),
/// the `reload` and `purge_caches` hooks, maintenance off, the failed tree set aside; then
/// the smoke checks. The installed record put back and a decided rollback remembered are
/// written on another thread from the moment the old tree is live (after the restore when
/// there is one) and are final before the receipt. Each
/// step looks at where things are first, so recovery runs this same function after a kill
/// at any point of it. Returns what the smoke checks said afterwards when they failed.
async fn roll_back(run: &mut Run<'_>, journal: &mut Journal, failed_at: Option<Instant>) -> Result<Option<String>> {
    let config = run.config;
    let state = &config.state_dir;
    let dirroot = &config.moodle.dirroot;
    let live_tree = TreeId::dir_at(&apply::live_path(dirroot)?);
    // Never a silent rollback that leaves a database newer than its code.
    if live_tree != Some(journal.old_tree)
        && let Some(why) = cannot_restore(journal)
    {
        return Err(Error::Refused(why));
    }
    if journal.maintenance {
        run.maintenance = true;
    }
    let level3 = config.contract.stability.level == Level::Three;
    if (journal.data_changed || level3) && config.hooks.maintenance_on.is_some() {
        if !journal.maintenance {
            journal.maintenance = true;
            journal::write(state, journal)?;
        }
        // Without maintenance a database change is not rolled back (the code and the
        // database still match: both stay until it can be on); other code goes back anyway.
        if let Err(why) = run.maintenance_on("maintenance on (rollback)").await
            && journal.data_changed
        {
            run.maintenance = false;
            return Err(Error::Refused(format!(
                "cannot turn maintenance mode on to roll back {} and restore its backup: {why}; nothing moved, the next run tries again",
                journal.bundles.join(", ")
            )));
        }
    }

    let t = started();
    let back = carry_into_old(dirroot, journal).and_then(|()| put_old_tree_back(dirroot, journal));
    if let Some(at) = failed_at {
        run.receipt.recovery_ms = Some(at.elapsed().as_millis() as u64);
    }
    run.step("rollback", t, &back.as_ref().map(|_| ()).map_err(|e| palier_bundle::error::one_line(e)));
    back?;
    // With no backup to restore first, PHP is reloaded on the old code at once (with
    // `opcache.validate_timestamps=0` it serves the failed code's compiled files until then),
    // and the carry below runs while the hook does: it adds only files the old tree lacks,
    // none of which PHP has compiled.
    let restore = journal.data_changed && journal.backup_dir.is_some();
    let live = apply::live_path(dirroot)?;
    let values = run.values.clone();
    let mut reloading = None;
    if !restore && let Some(hook) = config.hooks.reload.as_ref() {
        let t = started();
        let mut hook_run = Box::pin(hooks::run("reload", hook, &values));
        // The first poll starts the hook's process (and returns once it runs its program).
        let first = futures::poll!(hook_run.as_mut());
        reloading = Some((t, first, hook_run));
    }
    // With nothing to restore, the state folder's records are written now, on another
    // thread, while the carry, the hook and the checks run (the reload hook's process
    // already runs its own program: a kill cannot leave it holding the agent's files);
    // after a restore, beside the checks. Either way they are final before the receipt.
    let mut records = Some(RollbackRecords::of(state, journal));
    let joined = |e: tokio::task::JoinError| Error::Refused(format!("the rollback's records could not be written: {e}; the next run tries again"));
    let mut recorded = None;
    if !restore && let Some(records) = records.take() {
        recorded = Some(tokio::task::spawn_blocking(move || records.write()));
    }
    // A .htaccess created since the apply in a folder the record does not name: carried
    // from the tree just left, now that the old tree is live (before that tree is set aside).
    let mut carried = None;
    if journal.new_tree.is_some() {
        let now = live.parent().and_then(|p| apply::fs_now(p).ok());
        let outline = read_outline(state, &journal.id).filter(|o| now.is_some_and(|now| now >= o.since));
        if let Some((left, new)) = left_tree(&live, journal) {
            let (t, result) = find_and_carry(config, journal, &left, new, outline.as_ref());
            carried = Some((t, result, left));
        }
    }
    let reloaded = reloading.is_some();
    if let Some((t, first, hook_run)) = reloading {
        let done = match first {
            std::task::Poll::Ready(done) => done,
            std::task::Poll::Pending => hook_run.await,
        };
        let r = run.hook_ran("reload", done);
        run.step("reload", t, &r);
    }
    if let Some((t, result, left)) = carried {
        run.step("carry new site-local files", t, &result);
        if let Err(why) = result {
            // No writer left running behind the error: the records end first (the journal
            // stays either way, and the next run writes them again).
            if let Some(recorded) = recorded.take() {
                let _ = recorded.await;
            }
            return Err(Error::Refused(format!(
                "the old tree is live again, but the site's own files created since the apply could not be carried into it: {why}; they stay in {}, and the next run tries again",
                left.display()
            )));
        }
    }

    if journal.data_changed
        && let Some(dir) = journal.backup_dir.clone()
    {
        if journal.phase != Phase::Restoring {
            journal.phase = Phase::Restoring;
            journal.maintenance = true;
            journal::write(state, journal)?;
        }
        run.values.insert("backup_dir", dir.display().to_string());
        if !run.maintenance
            && let Err(why) = run.maintenance_on("maintenance on (restore)").await
        {
            run.maintenance = false;
            return Err(Error::Refused(format!(
                "cannot turn maintenance mode on to restore backup {}: {why}; the site runs the old tree and the next run restores the backup again",
                dir.display()
            )));
        }
        let t = started();
        let r = run.hook("restore", config.hooks.restore.as_ref()).await;
        run.step("restore backup", t, &r);
        if let Err(why) = r {
            // The site stays in maintenance until the restore succeeds.
            run.maintenance = false;
            return Err(Error::Refused(format!(
                "restore of backup {} failed: {why}; the site stays in maintenance on the old tree; fix the restore hook and run the agent again (journal {})",
                dir.display(),
                journal::path(state).display()
            )));
        }
    }
    // No other hook's process starts while the records are written: a kill then could leave
    // it forked but not yet running its program, holding the agent's open files an instant.
    if (config.hooks.purge_caches.is_some() || run.maintenance)
        && let Some(recorded) = recorded.take()
    {
        recorded.await.map_err(joined)??;
    }
    // The web server's PHP and Moodle's caches on the old code: a failure of either is
    // recorded, and does not stop the rollback.
    for (name, step, hook) in [("reload", "reload", config.hooks.reload.as_ref()), ("purge_caches", "purge caches", config.hooks.purge_caches.as_ref())] {
        if hook.is_some() && !(reloaded && name == "reload") {
            let t = started();
            let r = run.hook(name, hook).await;
            run.step(step, t, &r);
        }
    }
    if let Err(why) = run.maintenance_off().await {
        return Err(Error::Refused(format!("maintenance mode could not be turned off after the rollback: {why}; the next run tries again")));
    }
    journal.maintenance = false;
    // The failed tree is set aside (and after a restore, the records written) on another
    // thread while the checks run (final only once the journal is cleared: a kill during
    // either runs the rollback again). Not while a hook runs: a kill then could leave a
    // hook's process forked but not yet started, holding the agent's open files for an
    // instant.
    let aside = (dirroot.clone(), state.clone(), journal.clone(), records);
    let late = tokio::task::spawn_blocking(move || {
        let (dirroot, state, journal, records) = aside;
        set_aside(&dirroot, &state, &journal)?;
        records.map_or(Ok(()), |r| r.write())
    });
    // The old code answers again: the smoke checks say so (a failure is reported, the old
    // tree stays: there is nothing older to go back to).
    let t = started();
    let (results, ok) = checks::run_all_with_clock(&config.moodle.wwwroot, &config.smoke_checks, run.clock).await;
    let after = (!ok).then(|| {
        let r = results.iter().find(|r| !r.ok);
        format!(
            "after the rollback the old code fails check {}: {}",
            r.map_or("?", |r| r.path.as_str()),
            r.and_then(|r| r.detail.clone()).unwrap_or_default()
        )
    });
    run.receipt.checks.extend(results);
    run.step("checks after the rollback", t, &after.clone().map_or(Ok(()), Err));
    late.await.map_err(joined)??;
    if let Some(recorded) = recorded {
        recorded.await.map_err(joined)??;
    }
    crash::point("rollback:checks");
    Ok(after)
}

/// Before the old tree goes back live: the site's own files as they are in the live tree
/// (config.php edited since, a `local/` plugin installed since) are carried into it; the
/// bundles' own paths are not. Nothing to do once the old tree is live.
fn carry_into_old(dirroot: &Path, journal: &Journal) -> Result<()> {
    let live = apply::live_path(dirroot)?;
    if TreeId::dir_at(&live) == Some(journal.old_tree) {
        return Ok(());
    }
    let Some(old) = [&journal.previous, &journal.staging].into_iter().find(|p| TreeId::dir_at(p) == Some(journal.old_tree)) else {
        // put_old_tree_back says where it is not.
        return Ok(());
    };
    apply::carry_site_local(&live, old, &journal.touched, journal.site_local.as_deref())?;
    Ok(())
}

/// Where the outline of the tree that intervention `id` put live is kept: a hint, written
/// without a sync; a rollback without it reads the whole tree.
fn outline_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join(format!("outline-{id}.txt"))
}

/// Keep `outline` for intervention `id` (the live tree's), and no other.
fn save_outline(state_dir: &Path, id: &str, outline: &apply::Outline) {
    if let Ok(entries) = std::fs::read_dir(state_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("outline-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(text) = outline.to_text() {
        let path = outline_path(state_dir, id);
        if let Err(e) = std::fs::write(&path, text) {
            tracing::debug!(path = %path.display(), "outline not kept ({e}): a rollback will read the whole tree");
        }
    }
}

/// The outline kept for intervention `id`; `None` when there is none or it is unreadable.
/// (The caller also drops it when the filesystem's clock is now before it was taken: a
/// ctime would not say what changed since.)
fn read_outline(state_dir: &Path, id: &str) -> Option<apply::Outline> {
    let text = std::fs::read_to_string(outline_path(state_dir, id)).ok()?;
    apply::Outline::from_text(&text)
}

/// Right after a swap (or a swap back): the site's own files that the tree just `left`
/// (identity `left_tree`) has and the live tree lacks are carried into the live tree, and
/// added to the journal's record of the site's files. Always a step of the receipt (it
/// walks the whole tree left: its cost shows); `Err` is why it failed.
fn carry_new(run: &mut Run<'_>, journal: &mut Journal, left: &Path, left_tree: TreeId, outline: Option<&apply::Outline>) -> std::result::Result<(), String> {
    let (t, result) = find_and_carry(run.config, journal, left, left_tree, outline);
    run.step("carry new site-local files", t, &result);
    result
}

/// The work of [`carry_new`], without the receipt: when it started, and `Err` why it failed.
fn find_and_carry(
    config: &Config,
    journal: &mut Journal,
    left: &Path,
    left_tree: TreeId,
    outline: Option<&apply::Outline>,
) -> ((Timestamp, Instant), std::result::Result<(), String>) {
    let t = started();
    let one_line = |e: Error| palier_bundle::error::one_line(&e);
    let result = (|| {
        if TreeId::dir_at(left) != Some(left_tree) {
            return Ok(Vec::new());
        }
        let live = apply::live_path(&config.moodle.dirroot).map_err(one_line)?;
        let carried = apply::carry_new_site_local(left, &live, &journal.touched, outline).map_err(one_line)?;
        if !carried.is_empty() {
            if let Some(known) = &mut journal.site_local {
                known.extend(carried.iter().cloned());
                known.sort();
                known.dedup();
            }
            journal::write(&config.state_dir, journal).map_err(one_line)?;
        }
        Ok(carried)
    })();
    if let Ok(carried) = &result {
        tracing::debug!(carried = carried.len(), ms = t.1.elapsed().as_millis() as u64, "site-local files created since the clone carried into the live tree");
    }
    (t, result.map(|_| ()))
}

/// The old tree live again (nothing to do when it already is), by identity: the live
/// tree must be the journal's new tree and the old one must be found where it was kept.
fn put_old_tree_back(dirroot: &Path, journal: &Journal) -> Result<()> {
    let live = TreeId::dir_at(&apply::live_path(dirroot)?);
    if live == Some(journal.old_tree) {
        return Ok(());
    }
    let Some(new) = journal.new_tree.filter(|n| live == Some(*n)) else {
        return Err(Error::Refused(format!(
            "intervention {}: the live tree {} is neither the old nor the new one; nothing moved, journal left for an operator",
            journal.id,
            dirroot.display()
        )));
    };
    let old = [&journal.previous, &journal.staging].into_iter().find(|p| TreeId::dir_at(p) == Some(journal.old_tree)).ok_or_else(|| {
        Error::Refused(format!(
            "intervention {}: the old tree is at neither {} nor {}; the site stays on the new tree, journal left for an operator",
            journal.id,
            journal.previous.display(),
            journal.staging.display()
        ))
    })?;
    apply::restore(dirroot, old, journal.old_tree, new)?;
    Ok(())
}

/// Delete the trees set aside by rollbacks (`.palier-trash-*` beside dirroot or its
/// symlink's target), and any `.palier-now-*` file a kill left there. Called at the end
/// of a cycle, after any intervention, never just before staging.
pub fn sweep_trash(dirroot: &Path) {
    let mut parents = vec![dirroot.parent().map(Path::to_path_buf)];
    if let Ok(Some(target)) = swap::live_target(dirroot) {
        parents.push(target.parent().map(Path::to_path_buf));
    }
    for parent in parents.into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(&parent) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".palier-trash-") {
                let _ = std::fs::remove_dir_all(e.path());
            } else if name.starts_with(".palier-now-") && e.file_type().is_ok_and(|t| t.is_file()) {
                // Left by a kill while reading the filesystem's clock (`apply::fs_now`).
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Keep the newest `keep` previous trees: `.palier-prev-<dirroot>-*` beside a real
/// directory, or the staged trees `.palier-stage-<dirroot>-*` that a symlinked dirroot
/// pointed to before. Never the live tree, never the one just kept, never a folder the
/// agent did not create (the operator's own release folders stay).
fn prune_previous(dirroot: &Path, just_kept: &Path, keep: usize) {
    use std::os::unix::fs::MetadataExt;
    let Ok(live) = apply::live_path(dirroot) else { return };
    let Some(parent) = live.parent() else { return };
    let name = dirroot.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefixes = [format!(".palier-prev-{name}-"), format!(".palier-stage-{name}-")];
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let mut trees: Vec<((i64, i64), PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| prefixes.iter().any(|p| e.file_name().to_string_lossy().starts_with(p.as_str())))
        .map(|e| e.path())
        .filter(|p| *p != live && p != just_kept)
        .filter_map(|p| std::fs::symlink_metadata(&p).ok().filter(|m| m.is_dir()).map(|m| ((m.ctime(), m.ctime_nsec()), p)))
        .collect();
    // A tree's ctime is when it was set aside (renamed) or staged: newest first.
    trees.sort_by(|a, b| b.cmp(a));
    for (_, path) in trees.into_iter().skip(keep.saturating_sub(1)) {
        if std::fs::remove_dir_all(&path).is_ok() {
            crash::point("prune:removed");
        }
    }
}

/// Roll back the last intervention by hand (or from the watch) with the one rollback
/// procedure; the bundles are held. A database change that cannot be restored (no backup,
/// or it is gone) is refused before anything moves: the receipt is `failed` and says that
/// the database holds newer plugin versions than the old code. The lock must be held.
pub async fn rollback_last(config: &Config, clock: &dyn Clock, reason: &str) -> Result<Receipt> {
    checks::prepare(&config.moodle.wwwroot);
    let state = &config.state_dir;
    let last = read_last(state)?.ok_or_else(|| Error::Refused(format!("nothing to roll back: no applied intervention recorded in {}", state.display())))?;
    if TreeId::dir_at(&last.previous) != Some(last.previous_tree) {
        return Err(Error::Refused(format!("previous tree {} is gone or changed; cannot roll back", last.previous.display())));
    }
    let dirroot = &config.moodle.dirroot;
    let live = apply::live_path(dirroot)?;
    let current = TreeId::dir_at(&live).ok_or_else(|| Error::Site { path: live.clone(), why: "the live tree is not a folder".into() })?;
    let symlinked = swap::live_target(dirroot).map_err(Error::io("read", dirroot))?.is_some();
    let mut journal = Journal {
        id: last.id.clone(),
        started_at: Timestamp::now(),
        bundles: last.bundles.clone(),
        phase: Phase::RollingBack,
        old_tree: last.previous_tree,
        new_tree: Some(current),
        // Where the tree being left ends up: the kept name (exchanged) or its own folder.
        staging: if symlinked { live } else { last.previous.clone() },
        previous: last.previous.clone(),
        installed_before: last.installed_before.clone(),
        maintenance: false,
        backup_dir: last.backup_dir.clone(),
        data_changed: last.data_changed,
        receipt: format!("{}-rollback", last.id),
        hold: true,
        reason: Some(reason.to_owned()),
        commit: None,
        touched: last.touched.clone(),
        site_local: last.site_local.clone(),
    };
    let mut run = Run::new(config, clock, journal.receipt.clone(), last.bundles.clone(), last.backup_dir.as_deref());
    if let Some(why) = cannot_restore(&journal) {
        // Nothing moved; the receipt (and the dashboard) say why.
        run.step("rollback", started(), &Err(why.clone()));
        return run.finish(Outcome::Failed, Some(why));
    }
    journal::write(state, &journal)?;
    let after = roll_back(&mut run, &mut journal, None).await?;
    run.finish_and_clear(Outcome::RolledBack, Some(with_after(reason.to_owned(), after)))
}

/// At start-up: finish or undo an intervention that a crash or a kill interrupted, so the
/// site runs one whole tree. `None` when there was nothing to recover. Every path is
/// idempotent: a kill during the recovery is recovered the same way by the next start.
pub async fn recover(config: &Config, clock: &dyn Clock) -> Result<Option<Receipt>> {
    let state = &config.state_dir;
    let Some(mut journal) = journal::read(state)? else { return Ok(None) };
    checks::prepare(&config.moodle.wwwroot);
    crash::point("recover:start");
    if journal.receipt.is_empty() {
        journal.receipt = journal.id.clone();
    }
    let dirroot = &config.moodle.dirroot;
    let mut run = Run::new(config, clock, format!("{}-recovery", journal.receipt), journal.bundles.clone(), journal.backup_dir.as_deref());
    let live = TreeId::dir_at(&apply::live_path(dirroot)?);
    let reason = match journal.phase {
        Phase::Committed => {
            write_commit(dirroot, state, &journal)?;
            if !receipt::dir(state).join(format!("{}.json", journal.receipt)).exists() {
                Run::new(config, clock, journal.receipt.clone(), journal.bundles.clone(), journal.backup_dir.as_deref())
                    .finish(Outcome::Applied, Some("interrupted after it was committed: receipt written by the recovery".into()))?;
            }
            "interrupted after it was committed: the new tree stays".to_owned()
        }
        Phase::Preparing | Phase::Swapping if live == Some(journal.old_tree) => {
            // The swap never happened: drop what was staged (identity checked) and the
            // partial backup, turn maintenance off.
            match journal.new_tree {
                Some(tree) => {
                    apply::remove_tree(&journal.staging, tree)?;
                }
                // Created but not yet journaled: still empty, and only an empty folder is removed.
                None => {
                    let _ = std::fs::remove_dir(&journal.staging);
                }
            }
            if journal.backup_dir.is_none() {
                let _ = std::fs::remove_dir_all(state.join("backups").join(&journal.id));
            }
            run.maintenance = journal.maintenance;
            if let Err(why) = run.maintenance_off().await {
                return Err(Error::Refused(format!("interrupted intervention {}: maintenance mode could not be turned off: {why}; the next run tries again", journal.id)));
            }
            site::write_installed(state, &journal.installed_before)?;
            "interrupted before the swap: the site never left the old tree".to_owned()
        }
        Phase::Preparing => {
            return Err(Error::Refused(format!(
                "interrupted intervention {}: the live tree is not the one it started from; journal {} left for an operator",
                journal.id,
                journal::path(state).display()
            )));
        }
        Phase::Swapping | Phase::RollingBack | Phase::Restoring => {
            if journal.phase == Phase::Swapping {
                journal.phase = Phase::RollingBack;
                journal.reason = Some("interrupted after the swap, before the checks passed".into());
                journal::write(state, &journal)?;
            }
            let after = roll_back(&mut run, &mut journal, None).await?;
            let why = match (journal.hold, &journal.reason) {
                (true, Some(why)) => format!("rollback interrupted, now finished: {why}"),
                _ => "interrupted after the swap, before the checks passed: the old tree is back".to_owned(),
            };
            with_after(why, after)
        }
    };
    run.finish_and_clear(Outcome::Recovered, Some(reason)).map(Some)
}

/// The watch paused while the site is in a maintenance mode palier did not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchPause {
    pub since: Timestamp,
    pub reason: String,
}

/// What one round of the watch did.
#[derive(Debug, Default)]
pub struct Watched {
    /// The rollback it decided (or its refusal, a `failed` receipt).
    pub receipt: Option<Receipt>,
    /// Why the watch is paused (the site is in maintenance mode that palier did not start).
    pub paused: Option<String>,
}

/// The watch period: while it lasts, the smoke checks must keep passing, or the last
/// intervention is rolled back automatically, with the one rollback procedure. While the
/// site is in a maintenance mode that palier did not start (`climaintenance.html` in
/// dataroot, or a check answered by Moodle's maintenance page), the watch pauses: nothing is
/// rolled back for it, and the watch is extended by the pause once maintenance is off.
/// The lock must be held (palier's own maintenance only happens under it).
pub async fn watch(config: &Config, clock: &dyn Clock, now: Timestamp) -> Result<Watched> {
    let state = &config.state_dir;
    let Some(mut last) = read_last(state)? else { return Ok(Watched::default()) };
    if now >= last.watch_until && last.watch_paused.is_none() {
        return Ok(Watched::default());
    }
    let mut maintenance = checks::maintenance_file(&config.moodle.dataroot).then(|| format!("{} is in dataroot", checks::MAINTENANCE_FILE));
    let mut results = Vec::new();
    if maintenance.is_none() {
        let (r, ok) = checks::run_all_with_clock(&config.moodle.wwwroot, &config.smoke_checks, clock).await;
        if ok {
            if let Some(p) = last.watch_paused.take() {
                // Maintenance is over: the watch resumes for the time it was paused.
                let paused = now.duration_since(p.since).max(SignedDuration::ZERO);
                last.watch_until = last.watch_until.checked_add(paused).unwrap_or(last.watch_until);
                journal::write_record(&last_path(state), &last, "record of the last intervention")?;
                tracing::info!(bundles = %last.bundles.join(","), "the site left maintenance mode: the watch resumes until {}", last.watch_until);
            }
            return Ok(Watched::default());
        }
        maintenance = r.iter().find(|c| !c.ok && c.maintenance).map(|c| format!("check {} answered Moodle's maintenance page", c.path));
        results = r;
    }
    if let Some(what) = maintenance {
        let reason = format!("the site is in maintenance mode that palier did not start ({what}): the watch of {} is paused, nothing is rolled back for it", last.bundles.join(", "));
        if last.watch_paused.is_none() {
            last.watch_paused = Some(WatchPause { since: now, reason: reason.clone() });
            journal::write_record(&last_path(state), &last, "record of the last intervention")?;
        }
        tracing::warn!("{reason}");
        return Ok(Watched { receipt: None, paused: Some(reason) });
    }
    let why = results.iter().find(|r| !r.ok).map(|r| format!("check {} failed during the watch: {}", r.path, r.detail.clone().unwrap_or_default()));
    let failed_at = Instant::now();
    let mut receipt = rollback_last(config, clock, why.as_deref().unwrap_or("a check failed during the watch")).await?;
    if receipt.outcome == Outcome::RolledBack {
        receipt.recovery_ms = Some(failed_at.elapsed().as_millis() as u64);
    }
    let mut all = results;
    all.append(&mut receipt.checks);
    receipt.checks = all;
    receipt::save(state, &receipt)?;
    crate::report::enqueue(config, &receipt)?;
    Ok(Watched { receipt: Some(receipt), paused: None })
}

/// When the smoke checks of the watch must run next, at the latest: every
/// `recovery_budget / 2` while the last intervention is watched (or its watch paused), so
/// that a failure is rolled back within the budget. `None` when nothing is watched.
pub fn next_watch_check(config: &Config, now: Timestamp) -> Option<Timestamp> {
    let last = read_last(&config.state_dir).ok().flatten()?;
    if now >= last.watch_until && last.watch_paused.is_none() {
        return None;
    }
    let half = (config.contract.stability.recovery_budget / 2).max(SignedDuration::from_secs(1));
    let next = now.checked_add(half).ok()?;
    Some(if last.watch_paused.is_none() { next.min(last.watch_until) } else { next })
}

/// `SignedDuration` as whole minutes, for the `{minutes}` placeholder.
pub fn minutes(d: SignedDuration) -> i64 {
    d.as_secs() / 60
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::clock::TestClock;

    /// A config for a site at `dir` (state, dirroot, dataroot below it) served at `wwwroot`,
    /// smoke-checking the login page, with these extra `[hooks]` and `[stability]` lines.
    pub(crate) fn config(dir: &Path, wwwroot: &str, hooks: &str, stability: &str) -> Config {
        let text = format!(
            "platform = \"univ-a\"\nrepository = \"file:///nonexistent/repo\"\ntrusted_root = \"root.json\"\nstate_dir = \"state\"\ntimezone = \"Europe/Paris\"\n\
             [moodle]\ndirroot = \"dirroot\"\ndataroot = \"dataroot\"\nwwwroot = \"{wwwroot}\"\n\
             [improvement]\nlevel = 3\n[stability]\nlevel = 1\n{stability}\n\
             [checks]\nopcache_revalidate = \"2s\"\nsmoke = [{{ path = \"/login/index.php\", expect_status = 200, expect_body = \"logintoken\" }}]\n\
             [hooks]\n{hooks}\n"
        );
        for d in ["state", "dirroot", "dataroot"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        Config::parse(&text, &dir.join("agent.toml")).unwrap()
    }

    /// A site behind PHP's opcode cache: the login page is answered as the old code (200)
    /// for the first `stale` requests, then as the new, broken code (500). Counts requests.
    pub(crate) async fn stale_then_broken(stale: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let n = Arc::new(AtomicUsize::new(0));
        let seen = n.clone();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 2048];
                let _ = conn.read(&mut buf).await;
                let (status, body) = if seen.fetch_add(1, Ordering::SeqCst) < stale { ("200 OK", "logintoken") } else { ("500 Internal Server Error", "fatal") };
                let _ = conn.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes()).await;
            }
        });
        (url, n)
    }

    /// Issue 13, item 7: checks passed on stale code. Without a reload hook the checks run a
    /// second time after PHP's revalidation delay (through the clock: no real wait), and the
    /// broken code is caught there; with one, one round after the reload counts.
    #[tokio::test]
    async fn the_checks_count_only_on_the_new_code() {
        let dir = tempfile::tempdir().unwrap();
        // The first round sees the old code; the second, 3 s later, the new one.
        let (url, _) = stale_then_broken(1).await;
        let config = config(dir.path(), &url, "", "");
        let clock = TestClock::new("2026-12-01T09:00:00Z".parse().unwrap());
        let mut run = Run::new(&config, &clock, "t".into(), vec!["login-break@1.0.0".into()], None);
        let failed = checks_on_new_code(&mut run, &[]).await;
        assert!(failed.as_ref().is_some_and(|(why, _)| why.contains("check /login/index.php failed: status 500")), "{failed:?}");
        // opcache_revalidate + 1 s, then the failed check's retry delay: all through the clock.
        let pauses = clock.pauses();
        assert_eq!(pauses[0], std::time::Duration::from_secs(3), "{pauses:?}");
        assert!(pauses.len() == 2 && pauses[1] >= checks::RETRY_DELAY.0, "{pauses:?}");
        assert!(run.receipt.steps.iter().any(|s| s.name.contains("opcode cache")), "{:?}", run.receipt.steps);

        // With a reload hook, PHP runs the new code at once: one round, no pause.
        let (url, served) = stale_then_broken(0).await;
        let config = super::tests::config(dir.path(), &url, "reload = [\"true\"]", "");
        let clock = TestClock::new("2026-12-01T09:00:00Z".parse().unwrap());
        let mut run = Run::new(&config, &clock, "t".into(), vec![], None);
        assert!(checks_on_new_code(&mut run, &[]).await.is_some());
        assert!(clock.pauses().iter().all(|p| *p >= checks::RETRY_DELAY.0), "only the retry's pause: {:?}", clock.pauses());
        assert_eq!(served.load(Ordering::SeqCst), 2, "one check, tried twice");
    }

    #[test]
    fn intervention_ids_are_never_reused() {
        let now: Timestamp = "2026-12-01T09:00:00Z".parse().unwrap();
        let keys = vec!["quiz-fix@1.0.0".to_owned()];
        let ids: std::collections::BTreeSet<String> = (0..100).map(|_| intervention_id(now, &keys)).collect();
        assert_eq!(ids.len(), 100, "same second, same bundles, still unique");
        assert!(ids.iter().all(|id| id.starts_with("20261201T090000Z-")));
    }
}
