//! One cycle of the agent: recover an interrupted intervention, keep watching the last one,
//! refresh and verify the repository, plan, post the notices that are due, and apply what
//! the contract permits now, in one intervention.

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use palier_policy::{self as policy, Decision, DecisionKind, Level, Plan, Reason};
use palier_policy::schedule::{self, Slot};
use palier_bundle::{BundleId, BundleRef, Manifest, ownership};
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::holds::{self, Holds};
use crate::hooks::{self, HookRun, Placeholders};
use crate::receipt::{Outcome, Receipt};
use crate::repository::{self, Verified, VerifiedBundle};
use crate::{apply, download, intervene, journal, lock, prune, report, site};

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

/// A notice the plan of a cycle expected, not yet due then: the next cycle can tell that its
/// time passed without it (the agent was not running at that time, or the hook failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedNotice {
    pub apply_at: Timestamp,
    pub notice_at: Timestamp,
    pub bundles: Vec<String>,
}

/// A notice whose time passed without it being posted: its intervention does not take place
/// (never without its notice) and waits for the next window or slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissedNotice {
    /// The intervention that lost its notice, and when the notice was due.
    pub apply_at: Timestamp,
    pub notice_at: Timestamp,
    pub bundles: Vec<String>,
    /// When a cycle found it missed.
    pub found_at: Timestamp,
    /// The last cycle before it, when the agent ran before the notice's time and not at it.
    pub last_cycle: Option<Timestamp>,
    /// The window or slot the intervention can take instead, and its notice time; `None`
    /// when none comes within a year.
    pub next: Option<Timestamp>,
    pub next_notice: Option<Timestamp>,
}

impl MissedNotice {
    /// Whether it still matters at `now`: until the next notice is due (or a day after the
    /// intervention it stopped, when no window comes).
    pub fn current(&self, now: Timestamp) -> bool {
        let until = self.next_notice.or(self.next).unwrap_or_else(|| self.apply_at.checked_add(SignedDuration::from_hours(24)).unwrap_or(Timestamp::MAX));
        now < until
    }

    /// Why it was missed, in words.
    fn cause(&self, config: &Config) -> String {
        match self.last_cycle {
            Some(t) if t.checked_add(NOTICE_EARLY).is_ok_and(|reach| reach < self.notice_at) => format!(
                "the agent was not running then: its previous cycle was at {}",
                crate::cli::contract::local(t, config)
            ),
            Some(_) => "the notice hook did not succeed in time".to_owned(),
            None => "the agent was not running then".to_owned(),
        }
    }

    /// The `warning:` line of `run` and `status`.
    pub fn warning(&self, config: &Config) -> String {
        let local = |t: Timestamp| crate::cli::contract::local(t, config);
        let next = match (self.next, self.next_notice) {
            (Some(at), Some(n)) => format!("postponed to {} (its notice at {})", local(at), local(n)),
            (Some(at), None) => format!("postponed to {}", local(at)),
            _ => "postponed: no window or slot comes within a year".to_owned(),
        };
        format!(
            "warning: the users' notice of the intervention at {} was due at {} and was never posted ({}); nothing is applied without its notice: {} {next}",
            local(self.apply_at),
            local(self.notice_at),
            self.cause(config),
            self.bundles.join(", ")
        )
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Notices {
    notices: Vec<Notice>,
    /// What the last cycle's plan expected (not yet due then).
    #[serde(default)]
    expected: Vec<ExpectedNotice>,
    /// Notices found missed, while they matter.
    #[serde(default)]
    missed: Vec<MissedNotice>,
    /// When a cycle last looked at the notices.
    #[serde(default)]
    last_cycle: Option<Timestamp>,
}

fn notices_path(state_dir: &Path) -> PathBuf {
    state_dir.join("notices.json")
}

fn read_notice_state(state_dir: &Path) -> Result<Notices> {
    Ok(journal::read_record::<Notices>(&notices_path(state_dir), "notices")?.unwrap_or_default())
}

pub fn read_notices(state_dir: &Path) -> Result<Vec<Notice>> {
    Ok(read_notice_state(state_dir)?.notices)
}

fn write_notice_state(state_dir: &Path, state: &Notices) -> Result<()> {
    journal::write_record(&notices_path(state_dir), state, "notices")
}

/// The missed notices the last cycle recorded (it keeps those that matter at its time):
/// what `status` shows.
pub fn recorded_missed_notices(state_dir: &Path) -> Result<Vec<MissedNotice>> {
    Ok(read_notice_state(state_dir)?.missed)
}

/// The missed notices that matter at `now`: those a cycle recorded and those the last
/// cycle's expectations show missed since (found without writing anything, for `plan`).
pub fn missed_notices(config: &Config, now: Timestamp) -> Result<Vec<MissedNotice>> {
    let state = read_notice_state(&config.state_dir)?;
    let mut out: Vec<MissedNotice> = state.missed.iter().filter(|m| m.current(now)).cloned().collect();
    // `find_missed` leaves out what is recorded already.
    out.extend(find_missed(config, &state, now));
    Ok(out)
}

/// The notices the last cycle expected whose time has passed at `now` without them being
/// posted (a notice is posted up to its time: after it, the plan points to a later window).
fn find_missed(config: &Config, state: &Notices, now: Timestamp) -> Vec<MissedNotice> {
    let next = crate::cli::contract::next_slot(config, now);
    state
        .expected
        .iter()
        .filter(|e| e.notice_at < now && now.duration_since(e.notice_at) < SignedDuration::from_hours(24 * 7))
        .filter(|e| !state.notices.iter().any(|n| n.apply_at == e.apply_at) && !state.missed.iter().any(|m| m.apply_at == e.apply_at))
        .map(|e| MissedNotice {
            apply_at: e.apply_at,
            notice_at: e.notice_at,
            bundles: e.bundles.clone(),
            found_at: now,
            last_cycle: state.last_cycle,
            next: next.as_ref().map(|(slot, _)| slot.start.timestamp()),
            next_notice: next.as_ref().and_then(|(_, n)| *n),
        })
        .collect()
}

/// Levels 2 and 3 with a notice hook: record the notices missed since the last cycle and
/// return a `warning:` line for each, said once (the intervention they announced is
/// postponed by [`site_plan`]; `status` keeps saying it while it matters).
pub fn record_missed_notices(config: &Config, now: Timestamp) -> Result<Vec<String>> {
    if config.contract.stability.level == Level::One || config.hooks.notice.is_none() {
        return Ok(Vec::new());
    }
    let mut state = read_notice_state(&config.state_dir)?;
    let found = find_missed(config, &state, now);
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let lines: Vec<String> = found.iter().map(|m| m.warning(config)).collect();
    state.missed.retain(|m| m.current(now));
    state.missed.extend(found);
    write_notice_state(&config.state_dir, &state)?;
    Ok(lines)
}

/// Move the eligible bundles of a missed notice out of the window it announced, to the
/// next one they can take (what `run` does: never applied without the notice), with a
/// detail naming the missed notice.
fn postpone_missed(config: &Config, plan: &mut Plan, missed: &[MissedNotice], now: Timestamp) {
    if missed.is_empty() {
        return;
    }
    let next = crate::cli::contract::next_slot(config, now);
    let zone = &config.contract.timezone;
    let notice = config.contract.stability.notice.get();
    for d in plan.bundles.iter_mut().filter(|d| d.decision == DecisionKind::Eligible) {
        let key = d.key();
        let Some(m) = missed.iter().find(|m| m.bundles.contains(&key)) else { continue };
        let local = |t: Timestamp| crate::cli::contract::local(t, config);
        let lost = format!("the users' notice of the intervention at {} was due at {} and never posted ({})", local(m.apply_at), local(m.notice_at), m.cause(config));
        match &next {
            Some((slot, _)) => {
                if d.apply_at.as_ref().is_none_or(|a| a.timestamp() < slot.start.timestamp()) {
                    d.apply_at = Some(slot.start.clone());
                    d.notice_at = slot.start.timestamp().checked_sub(notice).ok().map(|t| t.to_zoned(zone.clone()));
                    d.slot_end = Some(slot.end.clone());
                }
                d.detail = Some(format!("{lost}: postponed to the next window it can take, {}", local(slot.start.timestamp())));
            }
            None => {
                d.apply_at = None;
                d.notice_at = None;
                d.slot_end = None;
                d.detail = Some(format!("{lost}: postponed, and no window or slot comes within a year"));
            }
        }
    }
}

/// A bundle version rolled back on this site, as `status` shows it (read from the holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolledBack {
    pub bundle: String,
    pub at: Timestamp,
    pub reason: String,
}

/// The bundle versions held on this site until released (see `holds`).
pub fn read_rolled_back(state_dir: &Path) -> Result<Vec<RolledBack>> {
    Ok(holds::read(state_dir)?
        .into_iter()
        .filter(|h| h.until.is_none())
        .map(|h| RolledBack { bundle: h.bundle, at: h.since, reason: h.reason })
        .collect())
}

/// Hold `bundles` on this site after a rollback, automatic or by hand. Called by the
/// rollback itself before its journal is cleared (so a recovered rollback holds them too);
/// idempotent: a version already held keeps its first time and reason.
pub(crate) fn remember_rolled_back(state_dir: &Path, bundles: &[String], at: Timestamp, reason: &str) -> Result<()> {
    holds::hold_all(state_dir, bundles, at, &rolled_back_hold(reason))?;
    Ok(())
}

/// The reason a rolled-back version is held, from the rollback's.
pub(crate) fn rolled_back_hold(reason: &str) -> String {
    format!("rolled back: {reason}")
}

/// [`remember_rolled_back`] for the bundles of a rollback's receipt.
pub fn hold_rolled_back(state_dir: &Path, receipt: &Receipt) -> Result<()> {
    remember_rolled_back(state_dir, &receipt.bundles, receipt.finished_at, receipt.reason.as_deref().unwrap_or("no reason recorded"))
}

/// What a cycle did.
#[derive(Debug, Default)]
pub struct CycleReport {
    pub recovered: Option<Receipt>,
    pub watched: Option<Receipt>,
    pub notices: Vec<HookRun>,
    pub intervention: Option<Receipt>,
    /// The intervention over the whole due set that failed to stage, when its bundles were
    /// then staged one by one and those that staged were applied (`intervention`).
    pub set_aside: Option<Receipt>,
    /// Why nothing was applied, when something was eligible.
    pub waiting: Vec<String>,
    /// `warning: ...` lines: what an operator must know now (a missed notice).
    pub warnings: Vec<String>,
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

/// The plan of this site: the contract's policy over the verified bundles, with the site's
/// holds, the back-off of a failing set of bundles, and the file ownership check. `plan`
/// and `run` both call it, so `plan` never says "eligible" for a version `run` refuses.
pub fn site_plan(config: &Config, bundles: &[VerifiedBundle], release: &palier_bundle::moodle::MoodleSite, installed: &[site::Installed], held: &Holds, now: Timestamp) -> Plan {
    let installed = site::installed_refs(installed);
    let mut holds = holds::policy_holds(&held.holds);
    let mut plan = policy::plan_with_holds(&config.contract, bundles, &installed, &holds, release, now);
    if let Some(b) = &held.backoff
        && now < b.next_try
        && eligible_keys(&plan) == b.bundles
    {
        let times = if b.failures == 1 { "once".to_owned() } else { format!("{} times", b.failures) };
        holds.extend(b.bundles.iter().filter_map(|k| {
            Some(policy::Hold { bundle: k.parse().ok()?, since: b.failed_at, reason: format!("the intervention failed {times} ({})", b.reason), until: Some(b.next_try) })
        }));
        plan = policy::plan_with_holds(&config.contract, bundles, &installed, &holds, release, now);
    }
    refuse_file_conflicts(&mut plan, bundles, &config.state_dir);
    if config.contract.stability.level != Level::One && config.hooks.notice.is_some() {
        match missed_notices(config, now) {
            Ok(missed) => postpone_missed(config, &mut plan, &missed, now),
            Err(e) => tracing::warn!(error = %palier_bundle::error::one_line(&e), "cannot read the notices record: missed notices not checked"),
        }
    }
    plan
}

/// The eligible bundles of a plan, sorted.
pub fn eligible_keys(plan: &Plan) -> Vec<String> {
    let mut keys: Vec<String> = plan.bundles.iter().filter(|d| d.decision == DecisionKind::Eligible).map(|d| d.key()).collect();
    keys.sort();
    keys
}

/// File ownership (`palier_bundle::ownership`) over what the site would run: an eligible
/// bundle that writes or deletes a path an installed bundle of a different id touches
/// (unless it names that bundle in `after`), or that an eligible one taken before it (in id
/// order) touches (unless one names the other), is refused with both named; then the
/// bundles whose `after` it was are refused as `dependency-missing`. So the installed
/// record never lists a bundle whose files another bundle replaced.
///
/// The file lists are those of the archives' own manifests the agent verified
/// ([`download::known_manifest`]): `plan` and `run` download the archives of the bundles
/// they would apply first ([`planned`]), and the intervention checks again what it downloaded
/// before staging ([`file_conflict`]).
fn refuse_file_conflicts(plan: &mut Plan, bundles: &[VerifiedBundle], state_dir: &Path) {
    if !plan.bundles.iter().any(|d| d.decision == DecisionKind::Eligible) {
        return;
    }
    // The bundles are sorted by id and version (`repository::load`).
    let find = |d: &Decision| {
        let i = bundles.binary_search_by(|b| (&b.meta().manifest.id, &b.meta().manifest.version).cmp(&(&d.id, &d.version))).ok()?;
        Some(&bundles[i])
    };
    let eligible_ids: std::collections::HashSet<&BundleId> = plan.bundles.iter().filter(|d| d.decision == DecisionKind::Eligible).map(|d| &d.id).collect();
    // Installed versions that an eligible version of their id will replace own nothing.
    let owns_live = |d: &Decision| d.decision == DecisionKind::Installed && !eligible_ids.contains(&d.id);
    let manifests: Vec<Option<Manifest>> = plan
        .bundles
        .iter()
        .map(|d| if owns_live(d) || d.decision == DecisionKind::Eligible { find(d).and_then(|b| download::known_manifest(state_dir, b)) } else { None })
        .collect();
    let live: Vec<&Manifest> = plan.bundles.iter().zip(&manifests).filter(|(d, _)| owns_live(d)).filter_map(|(_, m)| m.as_ref()).collect();
    let mut accepted: Vec<&Manifest> = Vec::new();
    let mut refused: Vec<(usize, String, Reason)> = Vec::new();
    for (i, d) in plan.bundles.iter().enumerate() {
        if d.decision != DecisionKind::Eligible {
            continue;
        }
        let Some(m) = manifests[i].as_ref() else { continue };
        // Over what is live, only a bundle built on it (`after`) may write; among the
        // bundles due, `after` order applies the named one first.
        let over_live = ownership::overwrites(&live, m);
        accepted.push(m);
        let me = BundleRef { id: m.id.clone(), version: m.version.clone() };
        let among_due = || ownership::conflicts(&accepted).into_iter().find(|c| c.second == me || c.first == me);
        if let Some(c) = over_live.or_else(among_due) {
            accepted.pop();
            refused.push((i, format!("refused: {c}"), Reason::FileConflict));
        }
    }
    // A bundle whose `after` names only refused versions waits for them.
    loop {
        let present = |dep: &palier_bundle::Dependency, refused: &[(usize, String, Reason)]| {
            plan.bundles.iter().enumerate().any(|(j, o)| {
                o.id == dep.id && dep.req.matches(&o.version) && matches!(o.decision, DecisionKind::Installed | DecisionKind::Eligible) && !refused.iter().any(|(k, _, _)| *k == j)
            })
        };
        let more: Vec<(usize, String, Reason)> = plan
            .bundles
            .iter()
            .enumerate()
            .filter(|(i, d)| d.decision == DecisionKind::Eligible && !refused.iter().any(|(k, _, _)| k == i))
            .filter_map(|(i, d)| {
                let dep = find(d)?.meta().manifest.after.iter().find(|dep| !present(dep, &refused))?;
                Some((i, format!("after {dep}: its version here is refused"), Reason::DependencyMissing))
            })
            .collect();
        if more.is_empty() {
            break;
        }
        refused.extend(more);
    }
    for (i, detail, reason) in refused {
        let d = &mut plan.bundles[i];
        d.decision = DecisionKind::Skipped;
        d.reason = Some(reason);
        d.detail = Some(detail);
        d.apply_at = None;
        d.notice_at = None;
    }
}

/// The file ownership check of [`refuse_file_conflicts`] over the manifests of the archives
/// about to be staged (`due`, in `after` order) and those of the installed bundles they do not
/// replace: the intervention's own check, after the download, whatever the plan saw.
pub(crate) fn file_conflict(config: &Config, verified: &Verified, due: &[download::Downloaded]) -> Result<Option<ownership::Conflict>> {
    let installed = site::installed(&config.state_dir)?;
    let due_ids: std::collections::HashSet<&BundleId> = due.iter().map(|d| &d.manifest.id).collect();
    let live: Vec<Manifest> = installed
        .iter()
        .filter(|i| !due_ids.contains(&i.id))
        .filter_map(|i| verified.bundles.iter().find(|b| b.meta().manifest.id == i.id && b.meta().manifest.version == i.version))
        .filter_map(|b| download::known_manifest(&config.state_dir, b))
        .collect();
    let live: Vec<&Manifest> = live.iter().collect();
    let mut accepted: Vec<&Manifest> = Vec::new();
    for d in due {
        if let Some(c) = ownership::overwrites(&live, &d.manifest) {
            return Ok(Some(c));
        }
        accepted.push(&d.manifest);
    }
    Ok(ownership::conflicts(&accepted).into_iter().next())
}

/// [`site_plan`] with the file lists of every bundle it would apply: the archives of the
/// eligible bundles not downloaded before are downloaded (and their manifests verified), then
/// the site is planned again with them. `plan` and `run` both call it. A bundle whose archive
/// cannot be had is said in `waiting`.
pub async fn planned(config: &Config, verified: &Verified, release: &palier_bundle::moodle::MoodleSite, installed: &[site::Installed], held: &Holds, now: Timestamp, waiting: &mut Vec<String>) -> Plan {
    let mut plan = site_plan(config, &verified.bundles, release, installed, held, now);
    if fetch_manifests(config, verified, &plan, waiting).await {
        plan = site_plan(config, &verified.bundles, release, installed, held, now);
    }
    download::forget_others(&config.state_dir, &verified.bundles);
    plan
}

/// Download the archives of the eligible bundles, and of the installed ones that own files,
/// whose manifests the agent does not know yet, verifying each manifest against its signed
/// metadata. True when one became known; a bundle whose archive cannot be had is said in
/// `waiting` (the intervention that tries it fails on the same download).
async fn fetch_manifests(config: &Config, verified: &Verified, plan: &Plan, waiting: &mut Vec<String>) -> bool {
    let mut fetched = false;
    for d in plan.bundles.iter().filter(|d| matches!(d.decision, DecisionKind::Eligible | DecisionKind::Installed)) {
        let Some(b) = verified.bundles.iter().find(|b| b.meta().manifest.id == d.id && b.meta().manifest.version == d.version) else { continue };
        if download::known_manifest(&config.state_dir, b).is_some() {
            continue;
        }
        match download::download(verified, b, &config.state_dir).await {
            Ok(_) => fetched = true,
            Err(e) if d.decision == DecisionKind::Eligible => {
                waiting.push(format!("{}: not applied, its files could not be checked: {}", d.key(), palier_bundle::error::one_line(&e)));
            }
            Err(e) => tracing::warn!(bundle = %d.key(), error = %palier_bundle::error::one_line(&e), "cannot read an installed bundle's files"),
        }
    }
    fetched
}

/// Run one cycle at `now`.
pub async fn run_once(config: &Config, now: Timestamp) -> Result<CycleReport> {
    run_once_with(config, &SystemClock, now).await
}

/// The watch's round: its smoke checks, and the rollback they call for (held, like any
/// rollback). A pause (maintenance that palier did not start) is said in `report.waiting`.
async fn watch_round(config: &Config, clock: &dyn Clock, now: Timestamp, report: &mut CycleReport) -> Result<()> {
    let watched = intervene::watch(config, clock, now).await?;
    if let Some(r) = watched.receipt.as_ref()
        && r.outcome == Outcome::RolledBack
    {
        hold_rolled_back(&config.state_dir, r)?;
    }
    report.watched = watched.receipt;
    report.waiting.extend(watched.paused);
    Ok(())
}

/// Run one cycle at `now`, with `clock` for its pauses.
pub async fn run_once_with(config: &Config, clock: &dyn Clock, now: Timestamp) -> Result<CycleReport> {
    let _lock = lock::acquire(&config.state_dir)?;
    apply::check_owner(&config.moodle.dirroot, rustix::process::geteuid().as_raw())?;
    site::check_mark(&config.moodle.dirroot, &config.state_dir)?;
    let mut report = CycleReport { recovered: intervene::recover(config, clock).await?, ..CycleReport::default() };
    // A cycle that had to recover an interrupted intervention applies nothing new: the next
    // cycle starts from the state the recovery left, with its own checks.
    let recovered = report.recovered.is_some();
    watch_round(config, clock, now, &mut report).await?;

    let verified = match repository::load(config).await {
        Ok(v) => v,
        Err(e) => {
            // The control plane hears why, every cycle, even when nothing can be planned.
            if let Err(not_sent) = send_reports(config, now, None, None, Some(palier_bundle::error::one_line(&e))).await {
                tracing::warn!(error = %palier_bundle::error::one_line(&not_sent), "status not sent");
            }
            return Err(e);
        }
    };
    // A halt marker seen once keeps halting its bundle if the repository drops it.
    holds::remember_halt_markers(&config.state_dir, &verified.halt_markers, now)?;
    let release = site::moodle_release(&config.moodle.dirroot)?;
    let installed = site::installed(&config.state_dir)?;
    let held = holds::read_all(&config.state_dir)?;
    report.warnings = record_missed_notices(config, now)?;
    let plan = planned(config, &verified, &release, &installed, &held, now, &mut report.waiting).await;
    let find = |key: &str| verified.bundles.iter().find(|b| b.meta().manifest.key() == key);
    // A refusal the release manager must resolve is said every cycle; holds are the site's
    // own decisions, which `plan` and `status` show.
    for d in plan.bundles.iter().filter(|d| d.reason == Some(Reason::FileConflict)) {
        report.waiting.push(format!("{}: {}", d.key(), d.detail.as_deref().unwrap_or("file conflict")));
    }

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
    let due: Vec<&VerifiedBundle> = due_keys.iter().filter_map(|k| find(k)).collect();
    if !due.is_empty() && recovered {
        report.waiting.push(format!("{} due, not applied in the cycle that recovered an interrupted intervention: next cycle", due_keys.join(", ")));
    } else if !due.is_empty() {
        // A rollback (here or by the watch) remembers its bundles itself, before its journal
        // is cleared.
        let due = in_after_order(due)?;
        let receipt = intervene::intervene(config, clock, &verified, &due, now).await?;
        let receipt = isolate(config, clock, &verified, &due, receipt, now, &mut report).await?;
        let state = &config.state_dir;
        let receipt = match receipt.outcome {
            Outcome::RolledBack => {
                hold_rolled_back(state, &receipt)?;
                receipt
            }
            Outcome::Failed => {
                let b = holds::record_failure(state, &eligible_keys(&plan), now, receipt.reason.as_deref().unwrap_or("no reason recorded"))?;
                report.waiting.push(format!("the same bundles are not tried again before {} (failure {} in a row)", b.next_try, b.failures));
                receipt
            }
            Outcome::Applied => {
                holds::clear_backoff(state)?;
                receipt
            }
            Outcome::Postponed => crate::receipt::coalesce_postponed(config, receipt)?,
            Outcome::Recovered => receipt,
        };
        report.intervention = Some(receipt);
    }
    // The status carries the plan as `plan` would say it now: after an intervention, planned
    // again over what is installed and held since.
    let plan = match &report.intervention {
        Some(_) => site_plan(config, &verified.bundles, &release, &site::installed(&config.state_dir)?, &holds::read_all(&config.state_dir)?, now),
        None => plan,
    };
    send_reports(config, now, Some(&plan), report.intervention.as_ref(), None).await?;
    prune::prune(config, now);
    intervene::sweep_trash(&config.moodle.dirroot);
    Ok(report)
}

/// Isolation: when the due set failed to stage, stage each bundle alone (after the ones
/// already found good, so `after` is respected), hold each one that cannot be staged with
/// a back-off, and apply those that stage. Returns the receipt of what was applied, or the
/// original receipt when there is nothing to isolate.
async fn isolate(config: &Config, clock: &dyn Clock, verified: &Verified, due: &[&VerifiedBundle], failed: Receipt, now: Timestamp, report: &mut CycleReport) -> Result<Receipt> {
    let staging_failed = failed.outcome == Outcome::Failed && failed.steps.iter().any(|s| s.name == "stage" && !s.ok);
    if !staging_failed || due.len() < 2 {
        return Ok(failed);
    }
    let state = &config.state_dir;
    let mut good: Vec<&VerifiedBundle> = Vec::new();
    let mut culprits: Vec<(String, String)> = Vec::new();
    for (i, b) in due.iter().enumerate() {
        let m = &b.meta().manifest;
        if let Some(dep) = m.after.iter().find(|dep| culprits.iter().any(|(k, _)| k.parse::<BundleRef>().is_ok_and(|r| r.id == dep.id && dep.req.matches(&r.version)))) {
            report.waiting.push(format!("{} waits: it comes after {dep}, which cannot be staged", m.key()));
            continue;
        }
        let mut trial = good.clone();
        trial.push(b);
        match stage_trial(config, verified, &trial, &format!("{}-alone{i}", failed.id)).await {
            Ok(()) => good.push(b),
            Err(why) => culprits.push((m.key(), why)),
        }
    }
    if culprits.is_empty() {
        // Each stages alone but not all together: nothing to single out.
        return Ok(failed);
    }
    for (key, why) in &culprits {
        let h = holds::hold_with_backoff(state, key, now, &format!("cannot be staged: {why}"))?;
        let until = h.until.map(|u| format!(" until {u}")).unwrap_or_default();
        report.waiting.push(format!("held {key}{until}: it cannot be staged ({why})"));
    }
    if good.is_empty() {
        return Ok(failed);
    }
    report.set_aside = Some(failed);
    intervene::intervene(config, clock, verified, &good, now).await
}

/// Stage `bundles` (in order) on a clone of the live tree and drop the clone: whether they
/// can be staged together. The site never changes.
async fn stage_trial(config: &Config, verified: &Verified, bundles: &[&VerifiedBundle], tag: &str) -> std::result::Result<(), String> {
    let mut archives = Vec::new();
    for b in bundles {
        archives.push(download::download(verified, b, &config.state_dir).await.map_err(|e| palier_bundle::error::one_line(&e))?);
    }
    let pairs: Vec<(&Manifest, &Path)> = archives.iter().map(|a| (&a.manifest, a.path.as_path())).collect();
    let staged = apply::stage_all(&config.moodle.dirroot, tag, &pairs).map_err(|e| palier_bundle::error::one_line(&e))?;
    let _ = std::fs::remove_dir_all(&staged.path);
    Ok(())
}

/// Send the queued receipts and this cycle's status; a server that is down delays them,
/// it never fails the cycle. Without a plan (the repository could not be verified), the
/// status says why in `repository_error`.
async fn send_reports(config: &Config, now: Timestamp, plan: Option<&Plan>, intervention: Option<&Receipt>, repository_error: Option<String>) -> Result<()> {
    if config.server.is_none() {
        return Ok(());
    }
    let sent = report::send_pending(config, now).await?;
    if sent.pending > 0 {
        tracing::info!(pending = sent.pending, "receipts kept for the next cycle");
    }
    let installed = site::installed(&config.state_dir)?;
    let last = match intervention {
        Some(r) => Some(r.clone()),
        None => crate::receipt::all(&config.state_dir)?.pop(),
    };
    let eligible: Vec<&Decision> = plan.map(|p| p.bundles.iter().filter(|d| d.decision == DecisionKind::Eligible).collect()).unwrap_or_default();
    let imp = &config.contract.improvement;
    let status = report::Status {
        improvement_level: imp.level.get(),
        stability_level: config.contract.stability.level.get(),
        installed: installed.iter().map(|i| report::BundleVersion { id: i.id.to_string(), version: i.version.to_string() }).collect(),
        next_intervention: eligible.iter().filter_map(|d| d.apply_at.as_ref()).min_by_key(|z| z.timestamp()).map(|z| z.timestamp().to_string()),
        last_outcome: last.map(|r| serde_json::to_value(r.outcome).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()),
        components: imp.components.iter().map(|c| c.to_string()).collect(),
        level2_classes: imp.level2_classes.iter().map(|c| c.to_string()).collect(),
        repository_error,
        due: eligible.iter().map(|d| report::BundleVersion { id: d.id.to_string(), version: d.version.to_string() }).collect(),
        holds: holds::read(&config.state_dir)?
            .into_iter()
            .filter(|h| h.until.is_none_or(|u| now < u))
            .filter_map(|h| {
                let r: BundleRef = h.bundle.parse().ok()?;
                Some(report::HoldRef { id: r.id.to_string(), version: r.version.to_string(), since: h.since.to_string(), reason: h.reason })
            })
            .collect(),
        plan: plan.map(report::StatusPlan::of),
    };
    report::send_status(config, now, &status).await
}

/// Post the notices whose time has come (levels 2 and 3; up to `NOTICE_EARLY` ahead of
/// plan), once per intervention time.
async fn post_notices(config: &Config, plan: &Plan, now: Timestamp) -> Result<Vec<HookRun>> {
    let Some(hook) = &config.hooks.notice else { return Ok(Vec::new()) };
    let mut state = read_notice_state(&config.state_dir)?;
    let mut notices = std::mem::take(&mut state.notices);
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
    // What this plan expects next, so the next cycle can tell a notice time it missed.
    let mut expected: std::collections::BTreeMap<Timestamp, ExpectedNotice> = std::collections::BTreeMap::new();
    for d in plan.bundles.iter().filter(|d| d.decision == DecisionKind::Eligible) {
        if let (Some(apply_at), Some(notice_at)) = (&d.apply_at, &d.notice_at)
            && notice_at.timestamp() > now
            && !notices.iter().any(|n| n.apply_at == apply_at.timestamp())
        {
            let e = expected.entry(apply_at.timestamp()).or_insert_with(|| ExpectedNotice { apply_at: apply_at.timestamp(), notice_at: notice_at.timestamp(), bundles: Vec::new() });
            e.notice_at = e.notice_at.min(notice_at.timestamp());
            e.bundles.push(d.key());
        }
    }
    state.notices = notices;
    state.expected = expected.into_values().collect();
    state.missed.retain(|m| m.current(now));
    state.last_cycle = Some(now);
    write_notice_state(&config.state_dir, &state)?;
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

/// Between two cycles, during the watch of the last intervention: only the watch's round
/// (no repository, no plan). Skipped while another process holds the lock.
pub async fn watch_only(config: &Config, clock: &dyn Clock, now: Timestamp) -> Result<CycleReport> {
    let _lock = match lock::acquire(&config.state_dir) {
        Ok(l) => l,
        Err(Error::Busy { .. }) => return Ok(CycleReport::default()),
        Err(e) => return Err(e),
    };
    let mut report = CycleReport::default();
    if journal::read(&config.state_dir)?.is_some() {
        // An interrupted intervention: the next full cycle recovers it first.
        return Ok(report);
    }
    watch_round(config, clock, now, &mut report).await?;
    Ok(report)
}

/// When the daemon must wake after a cycle or a watch round ending at `now`, the next full
/// cycle being due at `next_cycle`: then, or sooner while the last intervention is watched
/// (its smoke checks run at least every `recovery_budget / 2`, see
/// [`intervene::next_watch_check`]).
pub fn next_wake(config: &Config, now: Timestamp, next_cycle: Timestamp) -> Timestamp {
    intervene::next_watch_check(config, now).map_or(next_cycle, |w| w.min(next_cycle))
}

/// The daemon (`run` without `--once`): a full cycle every `poll()` (the interval and its
/// jitter), and between them, while an intervention is watched, the watch's round at least
/// every `recovery_budget / 2`. `each` gets what every cycle or round did and says whether
/// to go on; `stop` ends the wait between two of them (SIGTERM): a cycle is never cut in
/// the middle.
pub async fn daemon<F, P, S>(config: &Config, clock: &dyn Clock, poll: P, mut each: F, stop: S)
where
    F: FnMut(Result<CycleReport>) -> bool,
    P: Fn() -> std::time::Duration,
    S: std::future::Future<Output = ()>,
{
    tokio::pin!(stop);
    let mut next_cycle = clock.now();
    loop {
        let now = clock.now();
        let done = if now >= next_cycle {
            next_cycle = now.checked_add(poll()).unwrap_or(now);
            run_once_with(config, clock, now).await
        } else {
            watch_only(config, clock, now).await
        };
        if !each(done) {
            return;
        }
        let now = clock.now();
        let wake = next_wake(config, now, next_cycle);
        let wait = wake.duration_since(now).max(SignedDuration::ZERO).unsigned_abs();
        tokio::select! {
            () = clock.sleep(wait) => {}
            () = &mut stop => return,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::clock::TestClock;
    use crate::intervene::Last;
    use crate::journal::TreeId;

    /// Issue 13, item 8: during the watch, the daemon wakes for the smoke checks at least
    /// every `recovery_budget / 2`, between its polls; after the watch, at its poll interval.
    /// A failure then rolls back within the budget. The clock is the test's: no real wait.
    #[tokio::test]
    async fn the_daemon_wakes_for_the_watch_every_half_recovery_budget() {
        let dir = tempfile::tempdir().unwrap();
        // The site's login page passes 3 times, then fails.
        let (url, served) = crate::intervene::tests::stale_then_broken(3).await;
        let config = crate::intervene::tests::config(dir.path(), &url, "", "watch = \"15m\"\nrecovery_budget = \"5m\"");
        let t0: Timestamp = "2026-12-01T09:00:00Z".parse().unwrap();
        // An intervention applied at t0, watched for 15 minutes; its previous tree is kept.
        let previous = dir.path().join(".palier-prev-dirroot-x");
        std::fs::create_dir(&previous).unwrap();
        let last = Last {
            id: "x".into(),
            bundles: vec!["quiz-fix@1.0.0".into()],
            applied_at: t0,
            watch_until: t0.checked_add(SignedDuration::from_mins(15)).unwrap(),
            previous: previous.clone(),
            previous_tree: TreeId::dir_at(&previous).unwrap(),
            installed_before: Vec::new(),
            backup_dir: None,
            data_changed: false,
            touched: Vec::new(),
            site_local: None,
            watch_paused: None,
        };
        journal::write_record(&config.state_dir.join("last.json"), &last, "last").unwrap();
        let clock = TestClock::new(t0);
        let mut rounds = Vec::new();
        let stop = std::future::pending::<()>();
        daemon(
            &config,
            &clock,
            || Duration::from_secs(300),
            |done| {
                if let Ok(r) = &done
                    && r.watched.is_some()
                {
                    rounds.push((clock.now(), r.watched.clone()));
                }
                clock.now() < t0.checked_add(SignedDuration::from_mins(40)).unwrap()
            },
            stop,
        )
        .await;
        // Every wake-up while watched is at most 2.5 minutes after the one before.
        let pauses = clock.pauses();
        let watched: Vec<&Duration> = pauses.iter().filter(|p| **p > crate::checks::RETRY_DELAY.1).collect();
        assert!(watched.iter().take(4).all(|p| **p <= Duration::from_secs(150)), "{pauses:?}");
        // Rounds at 0 (a full cycle), 2.5 (the watch's own round), 5 (a cycle) pass; the
        // round at 7.5 minutes fails and rolls back: within the budget, where a daemon
        // waking only for its 5-minute polls would have seen it at 10.
        let (at, receipt) = rounds.first().expect("the watch rolled back");
        let receipt = receipt.as_ref().unwrap();
        assert_eq!(receipt.outcome, Outcome::RolledBack, "{receipt:?}");
        assert!(receipt.reason.as_deref().unwrap().contains("during the watch"), "{receipt:?}");
        // (the retries' pauses of the failed checks go through the clock too)
        let after = at.duration_since(t0);
        assert!(after >= SignedDuration::from_secs(450) && after <= SignedDuration::from_secs(470), "rolled back at {at}");
        assert!(served.load(Ordering::SeqCst) >= 5);
        // After the watch: the poll interval.
        assert_eq!(pauses.last(), Some(&Duration::from_secs(300)), "{pauses:?}");
    }
}
