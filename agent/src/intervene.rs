//! One intervention, as SPEC 2.2 describes it for the platform's stability level:
//!
//! - level 1 and 2: guard, download, stage, swap, upgrade and purge-caches hooks where a
//!   bundle needs them, the bundles' own checks and the smoke checks; roll back on failure;
//! - level 3: guard, download, maintenance on, a backup that must succeed (non-empty, its
//!   sha256 recorded), stage, swap, upgrade and purge-caches hooks, the validate hook while
//!   still in maintenance, maintenance off, then the checks; on failure the previous tree
//!   goes back and, where data may have changed, the backup is restored.
//!
//! Every step that changes the site is journaled first (see `journal`), and the whole
//! intervention runs under the lock.

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use palier_bundle::policy::Level;
use serde::{Deserialize, Serialize};
use palier_bundle::archive::HashWriter;
use sha2::{Digest, Sha256};
use tough::TargetName;

use crate::apply::{self, swap};
use crate::checks;
use crate::config::{Config, Hook};
use crate::error::{Error, Result};
use crate::hooks::{self, Placeholders};
use crate::journal::{self, Journal, Phase, TreeId};
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
    receipt: Receipt,
    values: Placeholders,
}

impl<'a> Run<'a> {
    /// A run for receipt `id` over `bundles`, with the hook placeholders filled in.
    fn new(config: &'a Config, id: String, bundles: Vec<String>, backup_dir: Option<&Path>) -> Run<'a> {
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
        };
        Run { config, receipt, values }
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

    /// Run a configured hook (absent: nothing to do, success).
    async fn hook(&mut self, name: &str, hook: Option<&Hook>) -> std::result::Result<(), String> {
        let Some(hook) = hook else { return Ok(()) };
        let run = hooks::run(name, hook, &self.values).await;
        let result = if run.ok() { Ok(()) } else { Err(run.failure()) };
        self.receipt.hooks.push(run);
        result
    }

    fn finish(mut self, outcome: Outcome, reason: Option<String>) -> Result<Receipt> {
        self.receipt.outcome = outcome;
        self.receipt.reason = reason;
        self.receipt.finished_at = Timestamp::now();
        receipt::save(&self.config.state_dir, &self.receipt)?;
        crate::report::enqueue(self.config, &self.receipt)?;
        Ok(self.receipt)
    }
}

fn started() -> (Timestamp, Instant) {
    (Timestamp::now(), Instant::now())
}

/// Id of an intervention: its time and a digest of its bundles.
fn intervention_id(now: Timestamp, keys: &[String]) -> String {
    let digest = Sha256::digest(keys.join(",").as_bytes());
    format!("{}-{}", now.strftime("%Y%m%dT%H%M%SZ"), &hex::encode(digest)[..8])
}

/// Download a bundle's archive through tough (length and hash checked) into `dir`.
async fn download(verified: &Verified, bundle: &VerifiedBundle, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let path = dir.join(format!("{}.{}", bundle.sha256(), bundle.target()));
    // An archive downloaded by an earlier cycle is reused when its digest still matches.
    if let Ok(mut file) = std::fs::File::open(&path) {
        let mut hasher = Sha256::new();
        if std::io::copy(&mut file, &mut HashWriter(&mut hasher)).is_ok() && hex::encode(hasher.finalize()) == bundle.sha256() {
            return Ok(path);
        }
    }
    let name = TargetName::new(bundle.target()).map_err(|e| Error::Repository { url: bundle.target().into(), source: Box::new(e) })?;
    let stream = verified
        .repository
        .read_target(&name)
        .await
        .map_err(|e| Error::Repository { url: bundle.target().into(), source: Box::new(e) })?
        .ok_or_else(|| Error::Refused(format!("target {} is not in the repository", bundle.target())))?;
    let tmp = tempfile::Builder::new().prefix(".download-").tempfile_in(dir).map_err(Error::io("create temporary file in", dir))?;
    let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(Error::io("open", tmp.path()))?);
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Repository { url: bundle.target().into(), source: Box::new(e) })?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await.map_err(Error::io("write", tmp.path()))?;
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(Error::io("write", tmp.path()))?;
    tmp.persist(&path).map_err(|e| Error::io("store", &path)(e.error))?;
    Ok(path)
}

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


/// Apply `due` (in `after` order) in one intervention. The lock must be held.
pub async fn intervene(config: &Config, verified: &Verified, due: &[&VerifiedBundle], now: Timestamp) -> Result<Receipt> {
    let keys: Vec<String> = due.iter().map(|b| b.meta().manifest.key()).collect();
    let id = intervention_id(now, &keys);
    let level = config.contract.stability.level;
    let state = &config.state_dir;
    let backup_dir = state.join("backups").join(&id);
    let mut run = Run::new(config, id.clone(), keys.clone(), Some(&backup_dir));

    // The guard says whether now is a good time (no quiz attempt open, ...).
    let t = started();
    let guard = run.hook("guard", config.hooks.guard.as_ref()).await;
    run.step("guard", t, &guard);
    if let Err(why) = guard {
        return run.finish(Outcome::Postponed, Some(format!("postponed: {why}")));
    }

    let t = started();
    let mut archives = Vec::new();
    for b in due {
        match download(verified, b, &state.join("downloads")).await {
            Ok(p) => archives.push(p),
            Err(e) => {
                let why = palier_bundle::error::one_line(&e);
                run.step("download", t, &Err(why.clone()));
                return run.finish(Outcome::Failed, Some(why));
            }
        }
    }
    run.step("download", t, &Ok(()));

    let dirroot = &config.moodle.dirroot;
    let live = swap::live_target(dirroot).map_err(Error::io("read", dirroot))?.unwrap_or_else(|| dirroot.clone());
    let mut journal = Journal {
        id: id.clone(),
        started_at: run.receipt.started_at,
        bundles: keys.clone(),
        phase: Phase::Preparing,
        old_tree: TreeId::of(&live)?,
        new_tree: None,
        staging: apply::stage::sibling(&live, "stage", &id),
        previous: apply::stage::sibling(dirroot, "prev", &id),
        installed_before: site::installed(state)?,
        maintenance: false,
        backup_dir: None,
        data_changed: false,
    };
    journal::write(state, &journal)?;

    if level == Level::Three {
        let t = started();
        let on = run.hook("maintenance_on", config.hooks.maintenance_on.as_ref()).await;
        run.step("maintenance on", t, &on);
        if let Err(why) = on {
            let _ = run.hook("maintenance_off", config.hooks.maintenance_off.as_ref()).await;
            journal::clear(state)?;
            return run.finish(Outcome::Failed, Some(format!("maintenance mode could not be turned on: {why}")));
        }
        journal.maintenance = true;
        journal::write(state, &journal)?;

        let t = started();
        std::fs::create_dir_all(&backup_dir).map_err(Error::io("create", &backup_dir))?;
        let mut backup = run.hook("backup", config.hooks.backup.as_ref()).await;
        if backup.is_ok() {
            match backup_digest(&backup_dir) {
                Ok(b) if b.bytes > 0 => run.receipt.backup = Some(b),
                Ok(_) => backup = Err(format!("backup hook left nothing in {}", backup_dir.display())),
                Err(e) => backup = Err(palier_bundle::error::one_line(&e)),
            }
        }
        run.step("backup", t, &backup);
        if let Err(why) = backup {
            let t = started();
            let off = run.hook("maintenance_off", config.hooks.maintenance_off.as_ref()).await;
            run.step("maintenance off", t, &off);
            journal::clear(state)?;
            return run.finish(Outcome::Failed, Some(format!("backup failed, nothing applied: {why}")));
        }
        journal.backup_dir = Some(backup_dir.clone());
        journal::write(state, &journal)?;
    }

    let t = started();
    let pairs: Vec<(&palier_bundle::Manifest, &Path)> = due.iter().zip(&archives).map(|(b, a)| (&b.meta().manifest, a.as_path())).collect();
    let staged = match apply::stage_all(dirroot, &id, &pairs) {
        Ok(s) => s,
        Err(e) => {
            let why = palier_bundle::error::one_line(&e);
            run.step("stage", t, &Err(why.clone()));
            end_maintenance(&mut run, &journal).await;
            journal::clear(state)?;
            return run.finish(Outcome::Failed, Some(format!("staging failed, nothing applied: {why}")));
        }
    };
    run.step("stage", t, &Ok(()));

    journal.new_tree = Some(TreeId::of(&staged.path)?);
    journal.phase = Phase::Swapping;
    journal::write(state, &journal)?;
    let t = started();
    let previous = match apply::go_live(dirroot, &staged, &id) {
        Ok(p) => p,
        Err(e) => {
            let why = palier_bundle::error::one_line(&e);
            run.step("swap", t, &Err(why.clone()));
            // The exchange is one syscall: if it failed, the old tree is still live.
            let _ = std::fs::remove_dir_all(&staged.path);
            end_maintenance(&mut run, &journal).await;
            journal::clear(state)?;
            return run.finish(Outcome::Failed, Some(format!("swap failed, nothing applied: {why}")));
        }
    };
    run.step("swap", t, &Ok(()));
    journal.previous = previous.clone();
    journal::write(state, &journal)?;

    // From here on, any failure puts the previous tree back.
    let failure = after_swap(&mut run, &mut journal, due, level).await?;
    if let Some((why, failed_at)) = failure {
        undo(&mut run, &journal, &previous, Some(failed_at)).await?;
        return run.finish(Outcome::RolledBack, Some(why));
    }

    let mut installed = journal.installed_before.clone();
    for b in due {
        let m = &b.meta().manifest;
        installed.retain(|i| i.id != m.id);
        installed.push(Installed { id: m.id.clone(), version: m.version.clone(), installed_at: Timestamp::now() });
    }
    site::write_installed(state, &installed)?;
    let last = Last {
        id: id.clone(),
        bundles: keys,
        applied_at: Timestamp::now(),
        watch_until: now.checked_add(config.contract.stability.watch).unwrap_or(now),
        previous_tree: journal.old_tree,
        previous: previous.clone(),
        installed_before: journal.installed_before.clone(),
        backup_dir: journal.backup_dir.clone(),
        data_changed: journal.data_changed,
    };
    journal::write_record(&last_path(state), &last, "record of the last intervention")?;
    journal.phase = Phase::Committed;
    journal::write(state, &journal)?;
    prune_previous(dirroot, &previous, config.moodle.keep_previous);
    journal::clear(state)?;
    run.finish(Outcome::Applied, None)
}

/// Hooks and checks after the swap; `Some((why, when it failed))` means roll back.
async fn after_swap(run: &mut Run<'_>, journal: &mut Journal, due: &[&VerifiedBundle], level: Level) -> Result<Option<(String, Instant)>> {
    let config = run.config;
    if due.iter().any(|b| b.meta().manifest.upgrade || b.meta().manifest.data_impact != palier_bundle::DataImpact::None) {
        journal.data_changed = true;
        journal::write(&config.state_dir, journal)?;
    }
    if due.iter().any(|b| b.meta().manifest.upgrade) {
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
        let t = started();
        let r = run.hook("maintenance_off", config.hooks.maintenance_off.as_ref()).await;
        run.step("maintenance off", t, &r);
        if let Err(why) = r {
            return Ok(Some((why, Instant::now())));
        }
        journal.maintenance = false;
        journal::write(&config.state_dir, journal)?;
    }
    let mut all_checks: Vec<palier_bundle::Check> = due.iter().flat_map(|b| b.meta().manifest.checks.clone()).collect();
    all_checks.extend(config.smoke_checks.iter().cloned());
    let t = started();
    let client = checks::client();
    let (results, ok) = checks::run_all(&client, &config.moodle.wwwroot, &all_checks).await;
    let failed_at = Instant::now();
    let why = results.iter().find(|r| !r.ok).map(|r| format!("check {} failed: {}", r.path, r.detail.clone().unwrap_or_default()));
    run.receipt.checks = results;
    run.step("checks", t, &why.clone().map_or(Ok(()), Err));
    Ok(if ok { None } else { why.map(|w| (w, failed_at)) })
}

/// Turn maintenance off if this intervention turned it on.
async fn end_maintenance(run: &mut Run<'_>, journal: &Journal) {
    if journal.maintenance {
        let t = started();
        let off = run.hook("maintenance_off", run.config.hooks.maintenance_off.as_ref()).await;
        run.step("maintenance off", t, &off);
    }
}

/// Put the previous tree back, restore the backup where data may have changed, and leave
/// the installed record as it was.
async fn undo(run: &mut Run<'_>, journal: &Journal, previous: &Path, failed_at: Option<Instant>) -> Result<()> {
    let config = run.config;
    let t = started();
    let replaced = apply::restore(&config.moodle.dirroot, previous);
    if let Some(at) = failed_at {
        run.receipt.recovery_ms = Some(at.elapsed().as_millis() as u64);
    }
    run.step("rollback", t, &replaced.as_ref().map(|_| ()).map_err(|e| palier_bundle::error::one_line(e)));
    let replaced = replaced?;
    if journal.data_changed
        && let Some(dir) = &journal.backup_dir
    {
        let mut values = run.values.clone();
        values.insert("backup_dir", dir.display().to_string());
        let saved = std::mem::replace(&mut run.values, values);
        if !journal.maintenance {
            let _ = run.hook("maintenance_on", config.hooks.maintenance_on.as_ref()).await;
        }
        let t = started();
        let r = run.hook("restore", config.hooks.restore.as_ref()).await;
        run.step("restore backup", t, &r);
        let t = started();
        let off = run.hook("maintenance_off", config.hooks.maintenance_off.as_ref()).await;
        run.step("maintenance off", t, &off);
        run.values = saved;
    } else {
        end_maintenance(run, journal).await;
    }
    site::write_installed(&config.state_dir, &journal.installed_before)?;
    journal::clear(&config.state_dir)?;
    // The failed tree is no longer live: one rename sets it aside now, and the end of the
    // cycle deletes it (deleting 30,000 links here would delay the command by a second).
    if swap::live_target(&config.moodle.dirroot).ok().flatten().as_deref() != Some(replaced.as_path()) && replaced != config.moodle.dirroot {
        let trash = apply::stage::sibling(&replaced, "trash", &run.receipt.id);
        if std::fs::rename(&replaced, &trash).is_err() {
            let _ = std::fs::remove_dir_all(&replaced);
        }
    }
    Ok(())
}

/// Delete the trees set aside by rollbacks (`.palier-trash-*` beside dirroot or its
/// symlink's target). Called at the end of a cycle, after any intervention, never just
/// before staging.
pub fn sweep_trash(dirroot: &Path) {
    let mut parents = vec![dirroot.parent().map(Path::to_path_buf)];
    if let Ok(Some(target)) = swap::live_target(dirroot) {
        parents.push(target.parent().map(Path::to_path_buf));
    }
    for parent in parents.into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(&parent) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".palier-trash-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Keep the newest `keep` previous trees of a real-directory dirroot.
fn prune_previous(dirroot: &Path, just_kept: &Path, keep: usize) {
    let Some(parent) = dirroot.parent() else { return };
    let name = dirroot.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!(".palier-prev-{name}-");
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let mut trees: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix).then(|| (n, e.path()))
        })
        .collect();
    // Ids start with the UTC time, so names sort by age.
    trees.sort();
    let excess = trees.len().saturating_sub(keep);
    for (_, path) in trees.into_iter().take(excess) {
        if path != just_kept {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Roll back the last intervention by hand (or from the watch): the previous tree goes back
/// live, its backup is restored where data changed. The lock must be held.
pub async fn rollback_last(config: &Config, reason: &str) -> Result<Receipt> {
    let state = &config.state_dir;
    let last = read_last(state)?.ok_or_else(|| Error::Refused(format!("nothing to roll back: no applied intervention recorded in {}", state.display())))?;
    if TreeId::at(&last.previous) != Some(last.previous_tree) {
        return Err(Error::Refused(format!("previous tree {} is gone or changed; cannot roll back", last.previous.display())));
    }
    let journal = Journal {
        id: last.id.clone(),
        started_at: Timestamp::now(),
        bundles: last.bundles.clone(),
        phase: Phase::Swapping,
        old_tree: last.previous_tree,
        new_tree: swap::live_target(&config.moodle.dirroot)
            .ok()
            .flatten()
            .map_or_else(|| TreeId::at(&config.moodle.dirroot), |t| TreeId::at(&t)),
        staging: last.previous.clone(),
        previous: last.previous.clone(),
        installed_before: last.installed_before.clone(),
        maintenance: false,
        backup_dir: last.backup_dir.clone(),
        data_changed: last.data_changed,
    };
    journal::write(state, &journal)?;
    let mut run = Run::new(config, format!("{}-rollback", last.id), last.bundles.clone(), last.backup_dir.as_deref());
    undo(&mut run, &journal, &last.previous, None).await?;
    std::fs::remove_file(last_path(state)).map_err(Error::io("remove", last_path(state)))?;
    run.finish(Outcome::RolledBack, Some(reason.to_owned()))
}

/// At start-up: finish or undo an intervention that a crash or a kill interrupted, so the
/// site runs one whole tree. `None` when there was nothing to recover.
pub async fn recover(config: &Config) -> Result<Option<Receipt>> {
    let state = &config.state_dir;
    let Some(journal) = journal::read(state)? else { return Ok(None) };
    let dirroot = &config.moodle.dirroot;
    let live_path = swap::live_target(dirroot).map_err(Error::io("read", dirroot))?.unwrap_or_else(|| dirroot.clone());
    let live = TreeId::at(&live_path);
    let mut run = Run::new(config, format!("{}-recovery", journal.id), journal.bundles.clone(), journal.backup_dir.as_deref());
    if journal.phase == Phase::Committed {
        journal::clear(state)?;
        return run.finish(Outcome::Recovered, Some("interrupted after it was committed: the new tree stays".into())).map(Some);
    }
    let reason;
    if live == Some(journal.old_tree) {
        // The swap never happened: drop whatever was staged.
        if TreeId::at(&journal.staging).is_some() && TreeId::at(&journal.staging) != live {
            let _ = std::fs::remove_dir_all(&journal.staging);
        }
        end_maintenance(&mut run, &journal).await;
        site::write_installed(state, &journal.installed_before)?;
        journal::clear(state)?;
        reason = "interrupted before the swap: the site never left the old tree".to_owned();
    } else if live.is_some() && live == journal.new_tree {
        // The new tree went live but was never confirmed: put the old one back.
        let old = [&journal.previous, &journal.staging]
            .into_iter()
            .find(|p| TreeId::at(p) == Some(journal.old_tree))
            .cloned()
            .ok_or_else(|| Error::Refused(format!("interrupted intervention {}: the old tree cannot be found; the site stays on the new tree", journal.id)))?;
        undo(&mut run, &journal, &old, None).await?;
        reason = "interrupted after the swap, before the checks passed: the old tree is back".to_owned();
    } else {
        return Err(Error::Refused(format!(
            "interrupted intervention {}: the live tree is neither the old nor the new one; journal {} left for an operator",
            journal.id,
            journal::path(state).display()
        )));
    }
    run.finish(Outcome::Recovered, Some(reason)).map(Some)
}

/// The watch period: while it lasts, the smoke checks must keep passing, or the last
/// intervention is rolled back automatically. The lock must be held.
pub async fn watch(config: &Config, now: Timestamp) -> Result<Option<Receipt>> {
    let Some(last) = read_last(&config.state_dir)? else { return Ok(None) };
    if now >= last.watch_until {
        return Ok(None);
    }
    let client = checks::client();
    let (results, ok) = checks::run_all(&client, &config.moodle.wwwroot, &config.smoke_checks).await;
    if ok {
        return Ok(None);
    }
    let why = results.iter().find(|r| !r.ok).map(|r| format!("check {} failed during the watch: {}", r.path, r.detail.clone().unwrap_or_default()));
    let failed_at = Instant::now();
    let mut receipt = rollback_last(config, why.as_deref().unwrap_or("a check failed during the watch")).await?;
    receipt.recovery_ms = Some(failed_at.elapsed().as_millis() as u64);
    receipt.checks = results;
    receipt::save(&config.state_dir, &receipt)?;
    crate::report::enqueue(config, &receipt)?;
    Ok(Some(receipt))
}

/// `SignedDuration` as whole minutes, for the `{minutes}` placeholder.
pub fn minutes(d: SignedDuration) -> i64 {
    d.as_secs() / 60
}
