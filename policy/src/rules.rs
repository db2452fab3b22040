//! The rules of SPEC 2, each in one place. The order in which they are consulted (their
//! precedence) is decided and documented in [`super::plan`].

use std::collections::BTreeSet;
use std::fmt::Write as _;

use semver::Version;

use super::contract::{Improvement, Level};
use super::decision::{DecisionKind, Reason};
use palier_bundle::components::ComponentMap;
use palier_bundle::layout::Layout;
use palier_bundle::manifest::{ChangeClass, DataImpact, Dependency};
use palier_bundle::metadata::{BundleMetadata, BundleState, Validations};
use palier_bundle::names::PlatformId;

/// A rule's refusal: the decision it forces, its reason code and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub kind: DecisionKind,
    pub reason: Reason,
    pub detail: String,
    /// `waiting-rollout` only: when the platform's wave opens.
    pub rollout_at: Option<jiff::Timestamp>,
}

impl Verdict {
    pub(crate) fn new(kind: DecisionKind, reason: Reason, detail: String) -> Verdict {
        Verdict { kind, reason, detail, rollout_at: None }
    }
}

/// State set by the release manager (SPEC 4, 6): `halt` is "pause", `yank` is "withdrawn";
/// either stops a bundle from being applied, whatever the contract says.
pub(crate) fn state(meta: &BundleMetadata) -> Option<(Reason, String)> {
    let why = meta.state_reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    match (meta.state, why) {
        (BundleState::Active, _) => None,
        (BundleState::Yanked, Some(r)) => Some((Reason::Yanked, format!("withdrawn by the release manager: {r}"))),
        (BundleState::Yanked, None) => Some((Reason::Yanked, "withdrawn by the release manager".into())),
        (BundleState::Halted, Some(r)) => Some((Reason::Halted, format!("paused: {r}"))),
        (BundleState::Halted, None) => Some((Reason::Halted, "paused until the release manager makes it active again".into())),
    }
}

/// SPEC 2.1, the improvement axis, WHICH bundles a platform receives:
///
/// > | 1 | on defect report | only bundles that fix a defect that THIS platform reported (its own fix requests) |
/// > | 2 | selective systematic | level 1, plus bundles for the components listed in its contract, [...] as long as they are purely technical [...] |
/// > | 3 | global continuous | every validated bundle, for every component |
/// >
/// > Levels are cumulative: a level-2 platform also gets everything a level-1 platform would get.
///
/// and the class table: `technical` reaches "L1 (if reported), L2 (selected components),
/// L3"; `non-layout` reaches "L1 (if reported), L3; L2 only if the platform's contract
/// widens level 2 to it (`level2_classes`)"; `global` reaches "L1 (if reported), L3".
///
/// A bundle reported by the platform is admitted at every level, whatever its component
/// and class. At level 2 an unreported bundle is refused first for its component, then for
/// its class (`global` is never admitted at level 2 that way, even if a contract lists it).
pub(crate) fn improvement(imp: &Improvement, platform: &PlatformId, meta: &BundleMetadata) -> Result<(), Verdict> {
    let m = &meta.manifest;
    let reported = meta.reported_by.contains(platform);
    let skip = |reason, detail| Err(Verdict::new(DecisionKind::Skipped, reason, detail));
    match imp.level {
        Level::Three => Ok(()),
        _ if reported => Ok(()),
        Level::One => skip(
            Reason::NotReported,
            format!("fixes no defect reported by {platform}; improvement level 1 receives only the platform's own fix requests"),
        ),
        Level::Two if !imp.components.contains(&m.component) => skip(
            Reason::ComponentNotSelected,
            format!("component {} is not among the contract's components ({}); level 2 receives the platform's reports and bundles of listed components", m.component, list(imp.components.iter(), "none listed")),
        ),
        Level::Two if !level2_admits(&imp.level2_classes, m.class) => {
            skip(Reason::ClassNotAllowed, format!("class {}; level 2 admits {}", m.class, list(admitted(&imp.level2_classes), "nothing")))
        }
        Level::Two => Ok(()),
    }
}

fn level2_admits(classes: &BTreeSet<ChangeClass>, class: ChangeClass) -> bool {
    class != ChangeClass::Global && classes.contains(&class)
}

fn admitted(classes: &BTreeSet<ChangeClass>) -> impl Iterator<Item = &ChangeClass> {
    classes.iter().filter(|c| **c != ChangeClass::Global)
}

/// SPEC 3 `requires_moodle`: an optional semver requirement on the site's Moodle release.
/// A bundle that does not fit the site's release is never applied, nor proposed for a
/// manual intervention.
pub(crate) fn moodle(meta: &BundleMetadata, release: &Version) -> Result<(), Verdict> {
    match &meta.manifest.requires_moodle {
        Some(req) if !req.matches(release) => Err(Verdict::new(
            DecisionKind::Skipped,
            Reason::MoodleVersionMismatch,
            format!("requires Moodle {req}; the site runs {release}"),
        )),
        _ => Ok(()),
    }
}

/// The bundle's paths must fit the site's code: its layout (4.x or 5.1+), its component's
/// folder as the site's own `lib/components.json` maps it, and never a site-local file
/// (`config.php`, `.htaccess`, `local/` customisations): see [`palier_bundle::layout::check_paths`].
/// Checked from the plan, before anything is staged, so such a bundle is skipped with a
/// reason instead of failing an intervention. Nothing to check when the site's code was
/// not read (a plan from the release alone).
pub(crate) fn paths(meta: &BundleMetadata, site: &(impl super::SiteFacts + ?Sized)) -> Result<(), Verdict> {
    let Some((layout, map)) = site.code() else { return Ok(()) };
    meta.paths.check(&meta.manifest.component, layout, map, "the site's lib/components.json").map_err(|e| {
        Verdict::new(DecisionKind::Skipped, Reason::MoodleLayoutMismatch, format!("does not fit this Moodle {layout} site: {e}"))
    })
}

/// SPEC 2.2, "validation the bundle needs":
///
/// > | level 1 | pre-validated by the internal alpha team |
/// > | level 2 | alpha, plus qualified on at least 2 significant test datasets |
/// > | level 3 | as level 2 |
///
/// A bundle short of it is `waiting-validation`: it may become eligible once validated.
pub(crate) fn validation(level: Level, v: &Validations) -> Result<(), Verdict> {
    /// "at least 2 significant test datasets" (stability levels 2 and 3).
    const DATASETS_NEEDED: usize = 2;
    let needs = match level {
        Level::One => "alpha",
        Level::Two | Level::Three => "alpha and 2 datasets",
    };
    if !v.alpha {
        return Err(Verdict::new(
            DecisionKind::WaitingValidation,
            Reason::NotAlphaValidated,
            format!("not validated by the alpha team; stability level {level} needs {needs}"),
        ));
    }
    if level >= Level::Two && v.datasets.len() < DATASETS_NEEDED {
        let n = v.datasets.len();
        let which = if n == 0 { String::new() } else { format!(" ({})", list(v.datasets.iter(), "")) };
        return Err(Verdict::new(
            DecisionKind::WaitingValidation,
            Reason::InsufficientDatasets,
            format!("qualified on {n} dataset{}{which}; stability level {level} needs at least {DATASETS_NEEDED}", if n == 1 { "" } else { "s" }),
        ));
    }
    Ok(())
}

/// SPEC 2.2, "data impact excluded": level 1 `major` and `global`; level 2 `global`;
/// level 3 none. And:
///
/// > A bundle that the improvement axis admits but the stability axis excludes (for
/// > example data impact `major` on a stability-1 platform) is never applied
/// > automatically: `plan` shows it as `needs-scheduled-intervention`.
pub(crate) fn stability(level: Level, impact: DataImpact) -> Result<(), Verdict> {
    let excluded: &[DataImpact] = match level {
        Level::One => &[DataImpact::Major, DataImpact::Global],
        Level::Two => &[DataImpact::Global],
        Level::Three => &[],
    };
    if excluded.contains(&impact) {
        let names: Vec<&str> = excluded.iter().map(|i| i.as_str()).collect();
        return Err(Verdict::new(
            DecisionKind::NeedsScheduledIntervention,
            Reason::DataImpactTooHigh,
            format!("data impact {impact}; stability level {level} excludes {}", names.join(" and ")),
        ));
    }
    Ok(())
}

/// Whether the bundle of `meta` changes the site's database, and why: it says `upgrade =
/// true`, or it writes or deletes a `version.php` (core's `$version`, a plugin's
/// `$plugin->version`), which Moodle's `upgrade.php` then installs. With the site's code known
/// (`code`), a `version.php` counts where the layout puts core's (`version.php`,
/// `public/version.php`) and at the top of a plugin's folder (`mod/quiz/version.php`,
/// `public/mod/quiz/version.php`, a subplugin's); without it, any file named `version.php`
/// counts. The signed metadata names a bundle's `version.php` paths (up to
/// [`palier_bundle::layout::MAX_VERSION_FILES`]; a bundle with more counts as changing it).
pub fn changes_database(meta: &BundleMetadata, code: Option<(Layout, &ComponentMap)>) -> Option<String> {
    if meta.manifest.upgrade {
        return Some("it says upgrade = true".into());
    }
    if meta.paths.version_files_more {
        return Some(format!("it changes more than {} version.php files", palier_bundle::layout::MAX_VERSION_FILES));
    }
    meta.paths.version_files.iter().map(|p| p.as_str()).find(|p| is_version_php(p, code)).map(|p| format!("it changes {p}"))
}

fn is_version_php(path: &str, code: Option<(Layout, &ComponentMap)>) -> bool {
    let folder = match path.strip_suffix("/version.php") {
        Some(folder) => folder,
        None if path == "version.php" => "",
        None => return false,
    };
    let Some((layout, map)) = code else { return true };
    path == layout.version_php()
        || map.plugintype_folders().any(|t| folder.strip_prefix(t).and_then(|r| r.strip_prefix('/')).is_some_and(|name| !name.is_empty() && !name.contains('/')))
}

/// A bundle that changes the database is applied only with a backup taken first (in
/// maintenance mode, at every stability level), so that a rollback can restore it: on a
/// site without a `backup` hook it is `needs-scheduled-intervention`.
pub(crate) fn backup(stability: &super::Stability, meta: &BundleMetadata, site: &(impl super::SiteFacts + ?Sized)) -> Result<(), Verdict> {
    if stability.backup {
        return Ok(());
    }
    match changes_database(meta, site.code()) {
        None => Ok(()),
        Some(why) => Err(Verdict::new(
            DecisionKind::NeedsScheduledIntervention,
            Reason::BackupMissing,
            format!(
                "changes the database ({why}) and this site has no backup hook: a database change is never applied without a backup to restore; add [hooks] backup and restore to the agent config, or apply it by hand in a scheduled intervention"
            ),
        )),
    }
}

/// `after`: "bundles that must be installed first" (SPEC 3). A dependency is met by an
/// installed version or by a version eligible in the same plan that matches the requirement.
/// `dep` is the first unmet requirement (`None` only if resolution did not examine the
/// bundle, which `plan` never lets happen; still refused, never made eligible).
pub(crate) fn dependency_missing(dep: Option<&Dependency>) -> Verdict {
    let detail = match dep {
        Some(dep) => format!("after {dep}: neither installed nor eligible in this plan"),
        None => "its after requirements could not be resolved".into(),
    };
    Verdict::new(DecisionKind::Skipped, Reason::DependencyMissing, detail)
}

/// Issue 16, staged rollouts: a bundle whose rollout has not reached this platform yet is
/// `waiting-rollout`, with the instant its wave opens (`rollout_at`; none while the rollout
/// is paused, or when the platform is outside the rollout's last share). Consulted after
/// every rule of the contract, so a platform the contract excludes says why, not when a
/// wave opens. A platform that reported the defect (`reported_by`, at any improvement
/// level) is never held back by waves: its own fix reaches it at once.
pub(crate) fn rollout(meta: &BundleMetadata, platform: &PlatformId, zone: &jiff::tz::TimeZone, now: jiff::Timestamp) -> Result<(), Verdict> {
    use palier_bundle::rollout::{Opening, Position, place};
    let Some(r) = &meta.rollout else { return Ok(()) };
    if meta.reported_by.contains(platform) {
        return Ok(());
    }
    let wait = |detail: String, at: Option<jiff::Timestamp>| Err(Verdict { rollout_at: at, ..Verdict::new(DecisionKind::WaitingRollout, Reason::WaitingRollout, detail) });
    let Ok(published) = meta.published_at.parse::<jiff::Timestamp>() else {
        return wait(format!("the rollout cannot be placed: published_at {:?} is not an RFC 3339 instant", meta.published_at), None);
    };
    let at = |t: jiff::Timestamp| super::decision::rfc3339(&t.to_zoned(zone.clone()));
    let id = &meta.manifest.id;
    let stage = match r.position(id, platform) {
        Position::Canary => "as a canary, it".to_owned(),
        Position::Wave(i) => format!(
            "its wave ({} of {}: {}% of the fleet, {} after publication; this platform's place is {})",
            i + 1,
            r.waves.len(),
            r.waves[i].share,
            crate::schedule::format_duration(r.waves[i].after),
            place(id, platform)
        ),
        Position::Outside => String::new(),
    };
    match r.opening(published, id, platform, now) {
        Opening::Open(_) => Ok(()),
        Opening::At(t) => wait(format!("{stage} opens {}", at(t)), Some(t)),
        Opening::Paused { would_open, paused_at } => wait(
            format!("rollout paused since {}: {stage} would open {}; waits until the release manager resumes it", at(paused_at), at(would_open)),
            None,
        ),
        Opening::Never => wait(
            format!(
                "outside the rollout: its waves reach {}% of the fleet and this platform's place is {}; not applied unless the rollout is widened",
                r.reach(),
                place(id, platform)
            ),
            None,
        ),
    }
}

/// A version this site holds: skipped, saying since when, why, and how it ends.
pub(crate) fn held(h: &super::Hold, zone: &jiff::tz::TimeZone) -> Verdict {
    let at = |t: jiff::Timestamp| t.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string();
    let key = format!("{}@{}", h.bundle.id, h.bundle.version);
    let detail = match h.until {
        Some(until) => format!("held on this site since {}: {}; retried after {}", at(h.since), h.reason, at(until)),
        None => format!("held on this site since {}: {}; `palier-agent release {key}` lifts the hold", at(h.since), h.reason),
    };
    Verdict::new(DecisionKind::Skipped, Reason::Held, detail)
}

/// A bundle with a lower version than an eligible or installed version of the same id is
/// `superseded`: the newer version carries its fix.
pub(crate) fn superseded(newer: &Version, how: DecisionKind) -> Verdict {
    Verdict::new(DecisionKind::Skipped, Reason::Superseded, format!("version {newer} is {how}"))
}

fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>, empty: &str) -> String {
    let mut out = String::new();
    for item in items {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(out, "{item}");
    }
    if out.is_empty() { empty.into() } else { out }
}
