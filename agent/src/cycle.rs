//! One cycle of the agent: recover an interrupted intervention, keep watching the last one,
//! refresh and verify the repository, plan, post the notices that are due, and apply what
//! the contract permits now, in one intervention.

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use palier_bundle::policy::{DecisionKind, Level, Plan};
use palier_bundle::schedule::{self, Slot};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::hooks::{self, HookRun, Placeholders};
use crate::intervene;
use crate::receipt::Receipt;
use crate::repository::{self, VerifiedBundle};
use crate::{journal, lock, report, site};

/// How much earlier than planned a notice may go out, so that a poll every few minutes
/// never posts it late (a late notice would lose the window). Never later than planned.
pub const NOTICE_EARLY: SignedDuration = SignedDuration::from_mins(15);

/// A notice that went out for an intervention at `apply_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    pub apply_at: Timestamp,
    pub posted_at: Timestamp,
    pub bundles: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Notices {
    notices: Vec<Notice>,
}

fn notices_path(state_dir: &Path) -> PathBuf {
    state_dir.join("notices.json")
}

pub fn read_notices(state_dir: &Path) -> Result<Vec<Notice>> {
    Ok(journal::read_record::<Notices>(&notices_path(state_dir), "notices")?.map(|n| n.notices).unwrap_or_default())
}

fn write_notices(state_dir: &Path, notices: Vec<Notice>) -> Result<()> {
    journal::write_record(&notices_path(state_dir), &Notices { notices }, "notices")
}

/// A bundle version rolled back on this site, never retried automatically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolledBack {
    pub bundle: String,
    pub at: Timestamp,
    pub reason: String,
}

fn rolled_back_path(state_dir: &Path) -> PathBuf {
    state_dir.join("rolled-back.json")
}

/// The bundle versions rolled back on this site.
pub fn read_rolled_back(state_dir: &Path) -> Result<Vec<RolledBack>> {
    Ok(journal::read_record(&rolled_back_path(state_dir), "rolled-back record")?.unwrap_or_default())
}

/// Remember `bundles` as rolled back on this site. Called by the rollback itself before its
/// journal is cleared (so a recovered rollback is remembered too); idempotent.
pub(crate) fn remember_rolled_back(state_dir: &Path, bundles: &[String], at: Timestamp, reason: &str) -> Result<()> {
    let mut list = read_rolled_back(state_dir)?;
    if bundles.iter().all(|b| list.iter().any(|r| &r.bundle == b)) {
        return Ok(());
    }
    for b in bundles {
        if !list.iter().any(|r| &r.bundle == b) {
            list.push(RolledBack { bundle: b.clone(), at, reason: reason.to_owned() });
        }
    }
    journal::write_record(&rolled_back_path(state_dir), &list, "rolled-back record")
}

/// What a cycle did.
#[derive(Debug, Default)]
pub struct CycleReport {
    pub recovered: Option<Receipt>,
    pub watched: Option<Receipt>,
    pub notices: Vec<HookRun>,
    pub intervention: Option<Receipt>,
    /// Why nothing was applied, when something was eligible.
    pub waiting: Vec<String>,
}

/// The slot of the platform's windows (level 2) or calendar (level 3) that contains `now`.
fn current_slot(config: &Config, now: Timestamp) -> Option<Slot> {
    let s = &config.contract.stability;
    let zone = &config.contract.timezone;
    let day = SignedDuration::from_hours(24);
    let slots = match s.level {
        Level::One => return None,
        Level::Two => schedule::next_slots(&s.windows, zone, now, day),
        Level::Three => schedule::next_slots(&s.calendar, zone, now, day),
    };
    slots.into_iter().find(|slot| slot.contains(now))
}

/// Order bundles so each comes after those of its `after` list that are in the same set.
fn in_after_order(mut rest: Vec<&VerifiedBundle>) -> Result<Vec<&VerifiedBundle>> {
    let mut out: Vec<&VerifiedBundle> = Vec::new();
    while !rest.is_empty() {
        let ready = rest.iter().position(|b| {
            b.meta().manifest.after.iter().all(|dep| {
                !rest.iter().any(|other| other.meta().manifest.id == dep.id && dep.req.matches(&other.meta().manifest.version))
            })
        });
        match ready {
            Some(i) => out.push(rest.remove(i)),
            None => return Err(Error::Refused("bundles due together depend on each other in a cycle".into())),
        }
    }
    Ok(out)
}

/// Run one cycle at `now`.
pub async fn run_once(config: &Config, now: Timestamp) -> Result<CycleReport> {
    let _lock = lock::acquire(&config.state_dir)?;
    let mut report = CycleReport { recovered: intervene::recover(config).await?, ..CycleReport::default() };
    // A cycle that had to recover an interrupted intervention applies nothing new: the next
    // cycle starts from the state the recovery left, with its own checks.
    let recovered = report.recovered.is_some();
    report.watched = intervene::watch(config, now).await?;

    let verified = repository::load(config).await?;
    let release = site::moodle_release(&config.moodle.dirroot)?;
    let installed = site::installed(&config.state_dir)?;
    let metas: Vec<_> = verified.bundles.iter().map(|b| b.meta().clone()).collect();
    let plan = palier_bundle::policy::plan(&config.contract, &metas, &site::installed_refs(&installed), &release, now);
    let find = |key: &str| verified.bundles.iter().find(|b| b.meta().manifest.key() == key);

    let due_keys = match config.contract.stability.level {
        Level::One => plan
            .bundles
            .iter()
            .filter(|d| d.decision == DecisionKind::Eligible && d.apply_at.as_ref().is_some_and(|a| a.timestamp() <= now))
            .map(|d| d.key())
            .collect::<Vec<_>>(),
        Level::Two | Level::Three => {
            report.notices = post_notices(config, &plan, now).await?;
            due_in_window(config, &plan, now, &mut report.waiting)?
        }
    };
    // A bundle version that was rolled back on this site is not retried automatically: the
    // release manager publishes a new version (or halts it fleet-wide).
    let rolled_back = read_rolled_back(&config.state_dir)?;
    let due_keys: Vec<String> = due_keys
        .into_iter()
        .filter(|k| match rolled_back.iter().find(|r| &r.bundle == k) {
            Some(r) => {
                report.waiting.push(format!("{k} was rolled back on this site at {}: not retried ({})", r.at, r.reason));
                false
            }
            None => true,
        })
        .collect();
    let due: Vec<&VerifiedBundle> = due_keys.iter().filter_map(|k| find(k)).collect();
    if !due.is_empty() && recovered {
        report.waiting.push(format!("{} due, not applied in the cycle that recovered an interrupted intervention: next cycle", due_keys.join(", ")));
    } else if !due.is_empty() {
        // A rollback (here or by the watch) remembers its bundles itself, before its journal
        // is cleared.
        let due = in_after_order(due)?;
        report.intervention = Some(intervene::intervene(config, &verified, &due, now).await?);
    }
    send_reports(config, &plan, report.intervention.as_ref()).await?;
    intervene::sweep_trash(&config.moodle.dirroot);
    Ok(report)
}

/// Send the queued receipts and this cycle's status; a server that is down delays them,
/// it never fails the cycle.
async fn send_reports(config: &Config, plan: &Plan, intervention: Option<&Receipt>) -> Result<()> {
    if config.server.is_none() {
        return Ok(());
    }
    let sent = report::send_pending(config).await?;
    if sent.pending > 0 {
        tracing::info!(pending = sent.pending, "receipts kept for the next cycle");
    }
    let installed = site::installed(&config.state_dir)?;
    let last = match intervention {
        Some(r) => Some(r.clone()),
        None => crate::receipt::all(&config.state_dir)?.pop(),
    };
    let status = report::Status {
        improvement_level: config.contract.improvement.level.get(),
        stability_level: config.contract.stability.level.get(),
        installed: installed.iter().map(|i| report::InstalledRef { id: i.id.to_string(), version: i.version.to_string() }).collect(),
        next_intervention: plan
            .bundles
            .iter()
            .filter(|d| d.decision == DecisionKind::Eligible)
            .filter_map(|d| d.apply_at.as_ref())
            .min_by_key(|z| z.timestamp())
            .map(|z| z.timestamp().to_string()),
        last_outcome: last.map(|r| serde_json::to_value(r.outcome).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()),
    };
    report::send_status(config, &status).await
}

/// Post the notices whose time has come (levels 2 and 3; up to `NOTICE_EARLY` ahead of
/// plan), once per intervention time.
async fn post_notices(config: &Config, plan: &Plan, now: Timestamp) -> Result<Vec<HookRun>> {
    let Some(hook) = &config.hooks.notice else { return Ok(Vec::new()) };
    let mut notices = read_notices(&config.state_dir)?;
    // Forget notices of interventions long past.
    notices.retain(|n| n.apply_at.checked_add(SignedDuration::from_hours(24 * 7)).is_ok_and(|t| t > now));
    let mut runs = Vec::new();
    let mut groups: std::collections::BTreeMap<Timestamp, Vec<String>> = std::collections::BTreeMap::new();
    for d in &plan.bundles {
        if d.decision != DecisionKind::Eligible {
            continue;
        }
        if let (Some(apply_at), Some(notice_at)) = (&d.apply_at, &d.notice_at)
            && notice_at.timestamp().checked_sub(NOTICE_EARLY).is_ok_and(|t| t <= now)
            && now < apply_at.timestamp()
        {
            groups.entry(apply_at.timestamp()).or_default().push(d.key());
        }
    }
    for (apply_at, bundles) in groups {
        if notices.iter().any(|n| n.apply_at == apply_at) {
            continue;
        }
        let values = Placeholders::from([
            ("dirroot", config.moodle.dirroot.display().to_string()),
            ("dataroot", config.moodle.dataroot.display().to_string()),
            ("backup_dir", String::new()),
            ("minutes", intervene::minutes(apply_at.duration_since(now)).to_string()),
            ("bundles", bundles.join(",")),
        ]);
        let run = hooks::run("notice", hook, &values).await;
        if run.ok() {
            notices.push(Notice { apply_at, posted_at: now, bundles });
        }
        runs.push(run);
    }
    write_notices(&config.state_dir, notices)?;
    Ok(runs)
}

/// Levels 2 and 3: inside a window, the bundles whose notice went out at least `notice`
/// before the window started. No notice in time means no apply in that window.
fn due_in_window(config: &Config, plan: &Plan, now: Timestamp, waiting: &mut Vec<String>) -> Result<Vec<String>> {
    let Some(slot) = current_slot(config, now) else { return Ok(Vec::new()) };
    let start = slot.start.timestamp();
    let notice = config.contract.stability.notice.get();
    let eligible: Vec<String> = plan.bundles.iter().filter(|d| d.decision == DecisionKind::Eligible).map(|d| d.key()).collect();
    if config.hooks.notice.is_none() {
        // Level 3 without a notice hook: the calendar itself is the announcement.
        return Ok(eligible);
    }
    let notices = read_notices(&config.state_dir)?;
    let announced = notices.iter().find(|n| n.apply_at == start && start.duration_since(n.posted_at) >= notice);
    match announced {
        Some(n) => Ok(n.bundles.iter().filter(|k| eligible.contains(k)).cloned().collect()),
        None => {
            if !eligible.is_empty() {
                waiting.push(format!("in the window that started {}, but no notice went out {} before it: not applied in this window", slot.start, schedule::format_duration(notice)));
            }
            Ok(Vec::new())
        }
    }
}
