//! palier-policy: which bundles a platform gets, and when (SPEC 2), as pure decisions; the
//! schedules they are placed in (windows, level-3 calendars) and the iCalendar the agent
//! publishes.
//!
//! [`plan`] takes the platform's [`Contract`], the verified metadata of every bundle in
//! the repository, the installed bundles, the site's Moodle release and `now`, and returns
//! a [`Plan`]: one [`Decision`] per bundle, serializable as the `plan --json` document of
//! SPEC 5. No clock, no I/O: callers pass `now`.

pub mod ical_out;
pub mod schedule;

mod contract;
mod decision;
mod rules;
mod timing;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use semver::Version;

pub use contract::{
    Contract, ContractError, DEFAULT_MAX_DEFER, DEFAULT_NOTICE, DEFAULT_RECOVERY_BUDGET, DEFAULT_WATCH, Improvement, Level, MIN_NOTICE,
    Notice, Stability, default_level2_classes,
};
pub use decision::{Decision, DecisionKind, Hold, Plan, Reason, rfc3339};
pub use rules::changes_database;

use palier_bundle::components::ComponentMap;
use palier_bundle::layout::Layout;
use palier_bundle::metadata::{BundleMetadata, BundleRef};
use palier_bundle::moodle::MoodleSite;
use palier_bundle::names::BundleId;
use rules::Verdict;

/// Plan every bundle for one platform.
///
/// # Precedence
///
/// A bundle can fail several rules at once; it gets the reason of the first rule below
/// that it fails. The order puts facts before contract terms, and never invites a person
/// to act on something that should not be acted on:
///
/// 1. **installed** — the (id, version) is in `installed`: decision `installed` (with
///    reason `yanked` or `halted` and a detail when the release manager has since
///    withdrawn or paused it, so the operator sees it and may roll back by hand).
/// 2. **`held`** — this site holds the version (it was rolled back here, an operator held
///    it, or it backs off after failing to stage): the site's own word comes first, with
///    since when and why. A held version is never eligible, so it supersedes nothing: an
///    older good version stays eligible.
/// 2. **`yanked`, `halted`** — the release manager's word stops a bundle whatever the
///    contract says; shown first because it is the one thing to know about it.
/// 3. **`superseded`** — a higher version of the same id is eligible or installed. It
///    beats the reasons below because "a newer version carries this fix" is the useful
///    answer: nobody needs to validate, schedule or widen a contract for an old version.
/// 4. **improvement**: `not-reported`, `component-not-selected`, `class-not-allowed` —
///    a bundle the platform does not receive is simply not for it; nothing about its
///    Moodle release, validation or data impact matters to this platform.
/// 5. **`moodle-version-mismatch`** — it cannot run on this site; it must not show up
///    as waiting for validation or as an intervention to schedule.
///    **`moodle-layout-mismatch`** — right after it, for the same reason: its paths do not
///    fit the site's code layout (a 5.1+ bundle on a 4.x site or the reverse), lie outside
///    its component's folder on this site, or touch a site-local file (`config.php`...).
/// 6. **validation**: `not-alpha-validated`, `insufficient-datasets` — decision
///    `waiting-validation`. Consulted BEFORE the stability axis's data-impact rule, unlike
///    the order of the SPEC's table: showing an unvalidated bundle as
///    `needs-scheduled-intervention` would invite a person to apply by hand a bundle that
///    has not passed the validation the contract requires. It becomes
///    `needs-scheduled-intervention` once validated.
/// 7. **stability**: `data-impact-too-high` — decision `needs-scheduled-intervention`;
///    then **`backup-missing`**, the same decision: the bundle changes the database
///    ([`changes_database`]) and the site has no backup hook, so it is never applied
///    unprotected.
///    **`waiting-rollout`** — right after them: the bundle's staged rollout (see
///    [`palier_bundle::rollout`]) has not reached this platform yet; decision `waiting-rollout`
///    with `rollout_at`, the instant its wave opens. After every contract rule, so an
///    excluded platform says why it is excluded rather than when a wave opens; never for
///    a platform in `reported_by`. Not eligible, so it supersedes nothing.
/// 8. **`dependency-missing`** — only for bundles that passed everything else: an `after`
///    requirement met neither by an installed version nor by a bundle eligible in this
///    same plan (resolved in order, so a cycle of `after` never becomes eligible).
/// 9. otherwise **eligible**, with `apply_at`/`notice_at` from the stability level's
///    windows, low-load slots or calendar (see the `timing` module); when no slot exists
///    within 366 days it stays eligible with `apply_at: null` and a detail saying so.
///
/// Decisions come sorted by id, then version.
pub fn plan<S: SiteFacts + ?Sized, B: AsRef<BundleMetadata>>(contract: &Contract, bundles: &[B], installed: &[BundleRef], site: &S, now: Timestamp) -> Plan {
    plan_with_holds(contract, bundles, installed, &[], site, now)
}

/// [`plan`] on a site that holds some bundle versions (rule 2); holds whose `until` is
/// past are ignored.
/// The bundles are anything that lends its metadata (the agent's verified bundles), so that
/// a plan over 10,000 bundles does not copy them.
pub fn plan_with_holds<S: SiteFacts + ?Sized, B: AsRef<BundleMetadata>>(
    contract: &Contract,
    bundles: &[B],
    installed: &[BundleRef],
    holds: &[Hold],
    site: &S,
    now: Timestamp,
) -> Plan {
    let bundles: Vec<&BundleMetadata> = bundles.iter().map(AsRef::as_ref).collect();
    plan_of(contract, &bundles, installed, holds, site, now)
}

fn plan_of<S: SiteFacts + ?Sized>(contract: &Contract, bundles: &[&BundleMetadata], installed: &[BundleRef], holds: &[Hold], site: &S, now: Timestamp) -> Plan {
    let holds: HashMap<(&BundleId, &Version), &Hold> =
        holds.iter().filter(|h| h.active(now)).map(|h| ((&h.bundle.id, &h.bundle.version), h)).collect();
    let installed_set: HashSet<(&BundleId, &Version)> = installed.iter().map(|r| (&r.id, &r.version)).collect();

    // Rules 1, 2 and 4 to 7: each bundle on its own.
    let assessed: Vec<Assessed> = bundles
        .iter()
        .map(|meta| match holds.get(&(&meta.manifest.id, &meta.manifest.version)) {
            Some(h) if !installed_set.contains(&(&meta.manifest.id, &meta.manifest.version)) => Assessed::Withdrawn(rules::held(h, &contract.timezone)),
            _ => assess(contract, meta, &installed_set, site, now),
        })
        .collect();

    // Rules 3 and 8 depend on each other (a version supersedes only if it is eligible, and
    // it is eligible only if its dependencies are): grow the superseded set until stable.
    // It only grows, so this ends; the usual plan takes one or two rounds.
    let mut superseded: Vec<Option<Verdict>> = vec![None; bundles.len()];
    let eligible = loop {
        let eligible = resolve_dependencies(bundles, &assessed, &superseded, installed);
        let mut newest: HashMap<&BundleId, (&Version, DecisionKind)> = HashMap::new();
        for r in installed {
            bump(&mut newest, &r.id, &r.version, DecisionKind::Installed);
        }
        for (i, e) in eligible.iter().enumerate() {
            if e.is_ok() {
                bump(&mut newest, &bundles[i].manifest.id, &bundles[i].manifest.version, DecisionKind::Eligible);
            }
        }
        let mut grew = false;
        for (i, meta) in bundles.iter().enumerate() {
            if superseded[i].is_some() || !matches!(assessed[i], Assessed::Excluded(_) | Assessed::Candidate) {
                continue;
            }
            if let Some((v, how)) = newest.get(&meta.manifest.id)
                && **v > meta.manifest.version
            {
                superseded[i] = Some(rules::superseded(v, *how));
                grew = true;
            }
        }
        if !grew {
            break eligible;
        }
    };

    let zone = &contract.timezone;
    let mut timing = None;
    // Each bundle's verdict is moved into its decision, not copied.
    let mut decisions: Vec<Decision> = bundles
        .iter()
        .zip(assessed)
        .zip(superseded)
        .zip(&eligible)
        .map(|(((meta, assessed), superseded), eligible)| {
            let m = &meta.manifest;
            let verdict = match (assessed, superseded, eligible) {
                (Assessed::Installed(note), _, _) => {
                    let (reason, detail) = note.unzip();
                    return decision(meta, DecisionKind::Installed, reason, detail);
                }
                (Assessed::Withdrawn(v), _, _) | (_, Some(v), _) | (Assessed::Excluded(v), None, _) => v,
                (Assessed::Candidate, None, Err(missing)) => rules::dependency_missing(m.after.get(*missing)),
                (Assessed::Candidate, None, Ok(())) => {
                    let t = timing.get_or_insert_with(|| timing::timing(&contract.stability, zone, now));
                    let mut d = decision(meta, DecisionKind::Eligible, None, t.detail.clone());
                    d.apply_at = t.apply_at.clone();
                    d.notice_at = t.notice_at.clone();
                    d.slot_end = t.slot_end.clone();
                    return d;
                }
            };
            let mut d = decision(meta, verdict.kind, Some(verdict.reason), Some(verdict.detail));
            d.rollout_at = verdict.rollout_at.map(|t| t.to_zoned(zone.clone()));
            d
        })
        .collect();
    decisions.sort_unstable_by(|a, b| (&a.id, &a.version).cmp(&(&b.id, &b.version)));

    Plan {
        platform: contract.platform.clone(),
        now: now.to_zoned(zone.clone()),
        improvement_level: contract.improvement.level,
        stability_level: contract.stability.level,
        bundles: decisions,
    }
}

/// What the plan knows of the site's Moodle: its release always; its code layout and
/// component map when the site's code was read (the agent's plan). A bare [`Version`] is a
/// site known by its release alone: the paths of bundles are then not checked.
pub trait SiteFacts {
    fn release(&self) -> &Version;
    fn code(&self) -> Option<(Layout, &ComponentMap)>;
}

impl SiteFacts for Version {
    fn release(&self) -> &Version {
        self
    }
    fn code(&self) -> Option<(Layout, &ComponentMap)> {
        None
    }
}

impl SiteFacts for MoodleSite {
    fn release(&self) -> &Version {
        &self.release
    }
    fn code(&self) -> Option<(Layout, &ComponentMap)> {
        Some((self.layout, &self.components))
    }
}

/// Keep the newest version of `id` and whether it is installed or eligible (installed wins a tie).
fn bump<'a>(newest: &mut HashMap<&'a BundleId, (&'a Version, DecisionKind)>, id: &'a BundleId, v: &'a Version, how: DecisionKind) {
    let entry = newest.entry(id).or_insert((v, how));
    if *entry.0 < *v || (*entry.0 == *v && how == DecisionKind::Installed) {
        *entry = (v, how);
    }
}

/// A bundle after the rules that look at it alone.
enum Assessed {
    /// Rule 1, with the state note when it was yanked or halted since.
    Installed(Option<(Reason, String)>),
    /// Rule 2: yanked or halted; never overridden.
    Withdrawn(Verdict),
    /// Rules 4 to 7; `superseded` (rule 3) takes precedence.
    Excluded(Verdict),
    /// Passed rules 1 to 7; rules 3 and 8 decide.
    Candidate,
}

fn assess<S: SiteFacts + ?Sized>(contract: &Contract, meta: &BundleMetadata, installed: &HashSet<(&BundleId, &Version)>, site: &S, now: Timestamp) -> Assessed {
    let m = &meta.manifest;
    let state = rules::state(meta);
    if installed.contains(&(&m.id, &m.version)) {
        return Assessed::Installed(state.map(|(r, d)| (r, format!("installed, but {d}"))));
    }
    if let Some((reason, detail)) = state {
        return Assessed::Withdrawn(Verdict::new(DecisionKind::Skipped, reason, detail));
    }
    let excluded = rules::improvement(&contract.improvement, &contract.platform, meta)
        .and_then(|()| rules::moodle(meta, site.release()))
        .and_then(|()| rules::paths(meta, site))
        .and_then(|()| rules::validation(contract.stability.level, &meta.validations))
        .and_then(|()| rules::stability(contract.stability.level, m.data_impact))
        .and_then(|()| rules::backup(&contract.stability, meta, site))
        .and_then(|()| rules::rollout(meta, &contract.platform, &contract.timezone, now));
    match excluded {
        Ok(()) => Assessed::Candidate,
        Err(v) => Assessed::Excluded(v),
    }
}

/// Rule 8 over the candidates not superseded: `Ok` for eligible, `Err(i)` for a bundle
/// whose `after[i]` is unmet (or that is not a candidate at all: `Err(usize::MAX)`).
///
/// Least fixed point: a bundle becomes eligible once each of its `after` requirements is
/// met by an installed version or an already-eligible bundle; a bundle is re-examined
/// only when a bundle of the id it waits for becomes eligible.
fn resolve_dependencies(bundles: &[&BundleMetadata], assessed: &[Assessed], superseded: &[Option<Verdict>], installed: &[BundleRef]) -> Vec<Result<(), usize>> {
    let mut result: Vec<Result<(), usize>> = vec![Err(usize::MAX); bundles.len()];
    let mut installed_versions: HashMap<&BundleId, Vec<&Version>> = HashMap::new();
    for r in installed {
        installed_versions.entry(&r.id).or_default().push(&r.version);
    }
    let mut eligible_versions: HashMap<&BundleId, Vec<&Version>> = HashMap::new();
    let mut waiting: HashMap<&BundleId, Vec<usize>> = HashMap::new();
    let mut queue: Vec<usize> = (0..bundles.len())
        .filter(|&i| matches!(assessed[i], Assessed::Candidate) && superseded[i].is_none())
        .rev()
        .collect();
    while let Some(i) = queue.pop() {
        if result[i].is_ok() {
            continue;
        }
        let m = &bundles[i].manifest;
        let unmet = m.after.iter().position(|dep| {
            let met = |versions: &HashMap<&BundleId, Vec<&Version>>| versions.get(&dep.id).is_some_and(|vs| vs.iter().any(|v| dep.req.matches(v)));
            !met(&installed_versions) && !met(&eligible_versions)
        });
        match unmet {
            Some(k) => {
                result[i] = Err(k);
                waiting.entry(&m.after[k].id).or_default().push(i);
            }
            None => {
                result[i] = Ok(());
                eligible_versions.entry(&m.id).or_default().push(&m.version);
                if let Some(waiters) = waiting.remove(&m.id) {
                    queue.extend(waiters);
                }
            }
        }
    }
    result
}

fn decision(meta: &BundleMetadata, kind: DecisionKind, reason: Option<Reason>, detail: Option<String>) -> Decision {
    Decision {
        id: meta.manifest.id.clone(),
        version: meta.manifest.version.clone(),
        decision: kind,
        reason,
        detail,
        apply_at: None,
        notice_at: None,
        slot_end: None,
        rollout_at: None,
    }
}
