//! Policy tests: the whole SPEC 2 matrix against an independent oracle, the rules outside
//! the matrix, scheduling, the JSON shape, and proptest invariants.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use semver::{Version, VersionReq};
use serde_json::{Value, json};

use super::*;
use palier_bundle::manifest::{ChangeClass, DataImpact, Dependency, Manifest, Origin};
use palier_bundle::metadata::{BundleMetadata, BundleRef, BundleState};
use palier_bundle::names::{BundleId, Component, PlatformId};
use crate::schedule::{Calendar, DatedSlot, HORIZON, Window, next_slots};

const PLATFORM: &str = "univ-a";

fn paris() -> TimeZone {
    crate::schedule::test_paris()
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

fn moodle() -> Version {
    Version::new(4, 5, 2)
}

fn manifest(id: &str, version: &str, component: &str, class: ChangeClass, impact: DataImpact) -> Manifest {
    Manifest {
        id: BundleId::new(id).unwrap(),
        version: Version::parse(version).unwrap(),
        component: Component::new(component).unwrap(),
        class,
        data_impact: impact,
        summary: format!("fix {id}"),
        fixes: Vec::new(),
        origin: Origin::Report,
        requires_moodle: None,
        after: Vec::new(),
        delete: Vec::new(),
        upgrade: false,
        checks: Vec::new(),
        files: Vec::new(),
    }
}

/// An active bundle, reported by `univ-a`, validated by alpha and 2 datasets: eligible everywhere
/// unless a test changes something.
fn bundle(id: &str, version: &str) -> BundleMetadata {
    let mut meta = BundleMetadata::new(
        manifest(id, version, "mod_quiz", ChangeClass::Technical, DataImpact::None),
        BTreeSet::from([PlatformId::new(PLATFORM).unwrap()]),
        "2026-11-01T00:00:00Z".into(),
    );
    meta.validations.alpha = true;
    meta.validations.datasets = BTreeSet::from(["ds-a".to_owned(), "ds-b".to_owned()]);
    meta
}

fn contract(improvement: Level, stability: Level) -> Contract {
    let mut s = Stability::new(stability);
    s.windows = vec![Window::parse("Tue 22:00-23:30").unwrap(), Window::parse("Thu 22:00-23:30").unwrap()];
    s.calendar = Calendar::from_slots(vec![DatedSlot::parse("2026-12-05T21:00/2026-12-06T01:00").unwrap()]);
    Contract {
        platform: PlatformId::new(PLATFORM).unwrap(),
        timezone: paris(),
        improvement: Improvement::new(improvement).with_components([Component::new("mod_quiz").unwrap()]),
        stability: s,
    }
}

/// Tuesday 2026-12-01 10:00 in Paris, the SPEC's example `now`.
fn now() -> Timestamp {
    ts("2026-12-01T09:00:00Z")
}

fn run(c: &Contract, bundles: &[BundleMetadata], installed: &[BundleRef]) -> Plan {
    plan(c, bundles, installed, &moodle(), now())
}

fn one(c: &Contract, meta: BundleMetadata) -> Decision {
    run(c, &[meta], &[]).bundles.remove(0)
}

fn dr(d: &Decision) -> (DecisionKind, Option<Reason>) {
    (d.decision, d.reason)
}

fn r(id: &str, version: &str) -> BundleRef {
    BundleRef { id: BundleId::new(id).unwrap(), version: Version::parse(version).unwrap() }
}

// ---------------------------------------------------------------------------------------
// The matrix.

#[derive(Debug, Clone, Copy)]
enum Validated {
    Nothing,
    Alpha,
    AlphaAnd1Dataset,
    AlphaAnd2Datasets,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    improvement: u8,
    stability: u8,
    class: ChangeClass,
    impact: DataImpact,
    validated: Validated,
    reported: bool,
    selected: bool,
    /// `level2_classes = ["technical", "non-layout"]` instead of the default `["technical"]`.
    widened: bool,
    wave: WaveCase,
}

/// The bundle's staged rollout, seen from `univ-a` at the matrix's `now`.
#[derive(Debug, Clone, Copy)]
enum WaveCase {
    /// No rollout.
    None,
    /// Its wave opened a day after the publication, a month ago.
    Opened,
    /// Its wave opens in a month.
    NotYet,
    /// A canary of a rollout whose waves open in a month.
    Canary,
}

/// Published a month before [`now`].
const PUBLISHED: &str = "2026-11-01T00:00:00Z";
/// When the `NotYet` wave opens: 60 days after [`PUBLISHED`].
const NOT_YET_OPENS: &str = "2026-12-31T00:00:00Z";

fn wave_rollout(w: WaveCase) -> Option<palier_bundle::rollout::Rollout> {
    let spec = match w {
        WaveCase::None => return None,
        WaveCase::Opened => "24h=100%",
        WaveCase::NotYet => "canary=univ-z; 60d=100%",
        WaveCase::Canary => "canary=univ-a,univ-z; 60d=100%",
    };
    Some(palier_bundle::rollout::Rollout::parse(spec).unwrap())
}

/// What SPEC section 2 says, read as literally as it is written, without the policy code.
/// Returns the `decision` and `reason` strings of the `plan --json` document.
fn oracle(c: &Case) -> (&'static str, Option<&'static str>) {
    // 2.1, the class table's "reaches" column, read for level 2:
    //   technical  -> "L2 (selected components)"
    //   non-layout -> "L2 only if the platform's contract widens level 2 to it (level2_classes)"
    //   global     -> "L1 (if reported), L3": never level 2 by component
    let class_reaches_level2 = match c.class.as_str() {
        "technical" => true,
        "non-layout" => c.widened,
        _ => false,
    };
    // 2.1 level 1: "only bundles that fix a defect that THIS platform reported".
    let level1_receives = c.reported;
    // 2.1 level 2: "level 1, plus bundles for the components listed in its contract [...]
    // as long as they are purely technical"; "Levels are cumulative".
    let level2_receives = level1_receives || (c.selected && class_reaches_level2);
    // 2.1 level 3: "every validated bundle, for every component".
    let receives = match c.improvement {
        1 => level1_receives,
        2 => level2_receives,
        _ => true,
    };
    if !receives {
        let reason = if c.improvement == 1 {
            "not-reported"
        } else if !c.selected {
            "component-not-selected"
        } else {
            "class-not-allowed"
        };
        return ("skipped", Some(reason));
    }
    // 2.2 "validation the bundle needs": level 1 "pre-validated by the internal alpha team";
    // level 2 "alpha, plus qualified on at least 2 significant test datasets"; level 3 "as level 2".
    let (alpha, datasets) = match c.validated {
        Validated::Nothing => (false, 0),
        Validated::Alpha => (true, 0),
        Validated::AlphaAnd1Dataset => (true, 1),
        Validated::AlphaAnd2Datasets => (true, 2),
    };
    if !alpha {
        return ("waiting-validation", Some("not-alpha-validated"));
    }
    if c.stability >= 2 && datasets < 2 {
        return ("waiting-validation", Some("insufficient-datasets"));
    }
    // 2.2 "data impact excluded": level 1 "major and global"; level 2 "global"; level 3 "none".
    // "A bundle that the improvement axis admits but the stability axis excludes [...] plan
    // shows it as needs-scheduled-intervention."
    let excluded = match c.stability {
        1 => c.impact.as_str() == "major" || c.impact.as_str() == "global",
        2 => c.impact.as_str() == "global",
        _ => false,
    };
    if excluded {
        return ("needs-scheduled-intervention", Some("data-impact-too-high"));
    }
    // Issue 16: after every contract rule, a bundle whose wave has not opened waits for it,
    // unless the platform reported the defect ("never held back by waves").
    if matches!(c.wave, WaveCase::NotYet) && !c.reported {
        return ("waiting-rollout", Some("waiting-rollout"));
    }
    ("eligible", None)
}

fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for improvement in 1..=3 {
        for stability in 1..=3 {
            for class in ChangeClass::ALL {
                for impact in DataImpact::ALL {
                    for validated in [Validated::Nothing, Validated::Alpha, Validated::AlphaAnd1Dataset, Validated::AlphaAnd2Datasets] {
                        for reported in [false, true] {
                            for selected in [false, true] {
                                for widened in [false, true] {
                                    for wave in [WaveCase::None, WaveCase::Opened, WaveCase::NotYet, WaveCase::Canary] {
                                        cases.push(Case { improvement, stability, class, impact, validated, reported, selected, widened, wave });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    cases
}

fn case_input(c: &Case) -> (Contract, BundleMetadata) {
    let mut k = contract(Level::new(c.improvement.into()).unwrap(), Level::new(c.stability.into()).unwrap());
    let component = if c.selected { "mod_quiz" } else { "mod_assign" };
    k.improvement.components = BTreeSet::from([Component::new(component).unwrap()]);
    if c.widened {
        k.improvement = k.improvement.with_level2_classes([ChangeClass::Technical, ChangeClass::NonLayout]).unwrap();
    }
    let mut meta = BundleMetadata::new(
        manifest("mod_quiz-fix", "1.0.0", "mod_quiz", c.class, c.impact),
        if c.reported { BTreeSet::from([PlatformId::new(PLATFORM).unwrap()]) } else { BTreeSet::from([PlatformId::new("univ-b").unwrap()]) },
        PUBLISHED.into(),
    );
    meta.rollout = wave_rollout(c.wave);
    let (alpha, datasets): (bool, &[&str]) = match c.validated {
        Validated::Nothing => (false, &[]),
        Validated::Alpha => (true, &[]),
        Validated::AlphaAnd1Dataset => (true, &["ds-a"]),
        Validated::AlphaAnd2Datasets => (true, &["ds-a", "ds-b"]),
    };
    meta.validations.alpha = alpha;
    meta.validations.datasets = datasets.iter().map(|s| s.to_string()).collect();
    (k, meta)
}

#[test]
fn the_whole_matrix_agrees_with_the_oracle() {
    let cases = all_cases();
    // 3 improvement x 3 stability x 3 classes x 4 data impacts x 4 validation states
    // x reported or not x component selected or not x level 2 widened or not x 4 rollouts.
    assert_eq!(cases.len(), 3 * 3 * 3 * 4 * 4 * 2 * 2 * 2 * 4);
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for c in &cases {
        let (k, meta) = case_input(c);
        let d = one(&k, meta);
        let json = serde_json::to_value(&d).unwrap();
        let got = (json["decision"].as_str().unwrap().to_owned(), json["reason"].as_str().map(str::to_owned));
        let (decision, reason) = oracle(c);
        if got != (decision.to_owned(), reason.map(str::to_owned)) {
            failures.push(format!("{c:?}: policy {got:?}, oracle ({decision:?}, {reason:?})"));
        }
        if decision == "eligible" && d.apply_at.is_none() {
            failures.push(format!("{c:?}: eligible without apply_at"));
        }
        if decision != "eligible" && (d.detail.is_none() || d.apply_at.is_some()) {
            failures.push(format!("{c:?}: refused without detail, or with apply_at"));
        }
        let rollout_at = d.rollout_at.as_ref().map(|z| z.timestamp());
        if decision == "waiting-rollout" && (rollout_at != Some(ts(NOT_YET_OPENS)) || json["rollout_at"] != "2026-12-31T01:00:00+01:00") {
            failures.push(format!("{c:?}: waiting-rollout with rollout_at {rollout_at:?}, JSON {}", json["rollout_at"]));
        }
        if decision != "waiting-rollout" && (rollout_at.is_some() || json.get("rollout_at").is_some()) {
            failures.push(format!("{c:?}: rollout_at outside waiting-rollout"));
        }
        seen.insert((decision, reason));
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
    // Every outcome the two axes and the rollout can produce was exercised.
    assert_eq!(seen.len(), 8, "{seen:?}");
}

// ---------------------------------------------------------------------------------------
// Rules outside the matrix, and precedence.

#[test]
fn yanked_and_halted_are_skipped_first() {
    let k = contract(Level::One, Level::One);
    let mut b = bundle("mod_quiz-fix", "1.0.0");
    b.state = BundleState::Yanked;
    b.state_reason = Some("breaks quiz review".into());
    // Even when also not reported and unvalidated, yanked comes first.
    b.reported_by.clear();
    b.validations.alpha = false;
    let d = one(&k, b.clone());
    assert_eq!(dr(&d), (DecisionKind::Skipped, Some(Reason::Yanked)));
    assert_eq!(d.detail.as_deref(), Some("withdrawn by the release manager: breaks quiz review"));
    b.state = BundleState::Halted;
    b.state_reason = None;
    assert_eq!(dr(&one(&k, b)), (DecisionKind::Skipped, Some(Reason::Halted)));
}

#[test]
fn installed_is_installed_and_says_when_it_was_yanked_since() {
    let k = contract(Level::Two, Level::Two);
    let b = bundle("mod_quiz-fix", "1.0.0");
    let p = run(&k, std::slice::from_ref(&b), &[r("mod_quiz-fix", "1.0.0")]);
    assert_eq!(dr(&p.bundles[0]), (DecisionKind::Installed, None));
    assert_eq!(p.bundles[0].apply_at, None);
    let mut y = b;
    y.state = BundleState::Yanked;
    let p = run(&k, &[y], &[r("mod_quiz-fix", "1.0.0")]);
    assert_eq!(dr(&p.bundles[0]), (DecisionKind::Installed, Some(Reason::Yanked)));
    assert!(p.bundles[0].detail.as_deref().unwrap().starts_with("installed, but withdrawn"));
}

#[test]
fn moodle_release_mismatch() {
    let k = contract(Level::Three, Level::One);
    let mut b = bundle("mod_quiz-fix", "1.0.0");
    b.manifest.requires_moodle = Some(VersionReq::parse(">=4.4.0, <4.5.0").unwrap());
    let d = one(&k, b.clone());
    assert_eq!(dr(&d), (DecisionKind::Skipped, Some(Reason::MoodleVersionMismatch)));
    assert_eq!(d.detail.as_deref(), Some("requires Moodle >=4.4.0, <4.5.0; the site runs 4.5.2"));
    b.manifest.requires_moodle = Some(VersionReq::parse(">=4.4.0, <5.2.0").unwrap());
    assert_eq!(dr(&one(&k, b)), (DecisionKind::Eligible, None));
}

#[test]
fn precedence_between_reasons() {
    // improvement before Moodle release.
    let k = contract(Level::One, Level::One);
    let mut b = bundle("mod_quiz-fix", "1.0.0");
    b.reported_by.clear();
    b.manifest.requires_moodle = Some(VersionReq::parse("<4.0.0").unwrap());
    assert_eq!(one(&k, b).reason, Some(Reason::NotReported));
    // Moodle release before validation and data impact.
    let mut b = bundle("mod_quiz-fix", "1.0.0");
    b.manifest.requires_moodle = Some(VersionReq::parse("<4.0.0").unwrap());
    b.validations.alpha = false;
    b.manifest.data_impact = DataImpact::Global;
    assert_eq!(one(&k, b).reason, Some(Reason::MoodleVersionMismatch));
    // Validation before data impact: an unvalidated bundle is not proposed for a manual intervention.
    let mut b = bundle("mod_quiz-fix", "1.0.0");
    b.validations.alpha = false;
    b.manifest.data_impact = DataImpact::Global;
    assert_eq!(dr(&one(&k, b)), (DecisionKind::WaitingValidation, Some(Reason::NotAlphaValidated)));
    // Data impact detail.
    let mut b = bundle("mod_quiz-fix", "1.0.0");
    b.manifest.data_impact = DataImpact::Major;
    let d = one(&k, b);
    assert_eq!(dr(&d), (DecisionKind::NeedsScheduledIntervention, Some(Reason::DataImpactTooHigh)));
    assert_eq!(d.detail.as_deref(), Some("data impact major; stability level 1 excludes major and global"));
}

#[test]
fn class_not_allowed_detail_matches_the_spec_example() {
    let mut k = contract(Level::Two, Level::Two);
    k.improvement.components.insert(Component::new("theme_boost").unwrap());
    let mut b = bundle("theme_boost-new-nav", "2.0.0");
    b.reported_by.clear();
    b.manifest.component = Component::new("theme_boost").unwrap();
    b.manifest.class = ChangeClass::Global;
    let d = one(&k, b);
    assert_eq!(d.detail.as_deref(), Some("class global; level 2 admits technical"));
}

#[test]
fn dependencies_met_by_installed_or_eligible_else_missing() {
    let k = contract(Level::Two, Level::Two);
    let dep = |s: &str| Dependency::parse(s).unwrap();
    let base = bundle("mod_quiz-base", "1.0.0");
    let mut fix = bundle("mod_quiz-fix", "1.0.0");
    fix.manifest.after = vec![dep("mod_quiz-base >=1.0.0")];

    // Met by a bundle eligible in the same plan (whatever the input order).
    let p = run(&k, &[fix.clone(), base.clone()], &[]);
    assert_eq!(dr(p.get("mod_quiz-fix", "1.0.0").unwrap()), (DecisionKind::Eligible, None));
    // Met by an installed version.
    let p = run(&k, std::slice::from_ref(&fix), &[r("mod_quiz-base", "1.2.0")]);
    assert_eq!(dr(p.get("mod_quiz-fix", "1.0.0").unwrap()), (DecisionKind::Eligible, None));
    // Installed version outside the requirement, nothing eligible.
    let p = run(&k, std::slice::from_ref(&fix), &[r("mod_quiz-base", "0.9.0")]);
    let d = p.get("mod_quiz-fix", "1.0.0").unwrap();
    assert_eq!(dr(d), (DecisionKind::Skipped, Some(Reason::DependencyMissing)));
    assert_eq!(d.detail.as_deref(), Some("after mod_quiz-base >=1.0.0: neither installed nor eligible in this plan"));
    // The dependency exists but is not eligible (waiting validation): missing, and it cascades.
    let mut unvalidated = base.clone();
    unvalidated.validations.datasets.clear();
    let mut top = bundle("mod_quiz-top", "1.0.0");
    top.manifest.after = vec![dep("mod_quiz-fix")];
    let p = run(&k, &[top.clone(), fix.clone(), unvalidated], &[]);
    assert_eq!(p.get("mod_quiz-base", "1.0.0").unwrap().reason, Some(Reason::InsufficientDatasets));
    assert_eq!(p.get("mod_quiz-fix", "1.0.0").unwrap().reason, Some(Reason::DependencyMissing));
    assert_eq!(p.get("mod_quiz-top", "1.0.0").unwrap().reason, Some(Reason::DependencyMissing));
    // A chain listed backwards resolves.
    let p = run(&k, &[top, fix, base], &[]);
    assert!(p.bundles.iter().all(|d| d.decision == DecisionKind::Eligible), "{p:?}");
    // A cycle never becomes eligible.
    let mut a = bundle("a-fix", "1.0.0");
    let mut b = bundle("b-fix", "1.0.0");
    a.manifest.after = vec![dep("b-fix")];
    b.manifest.after = vec![dep("a-fix")];
    let p = run(&k, &[a, b], &[]);
    assert!(p.bundles.iter().all(|d| d.reason == Some(Reason::DependencyMissing)), "{p:?}");
}

#[test]
fn superseded_by_eligible_or_installed_versions() {
    let k = contract(Level::Two, Level::Two);
    let old = bundle("mod_quiz-fix", "1.0.0");
    let new = bundle("mod_quiz-fix", "1.0.1");
    let p = run(&k, &[new.clone(), old.clone()], &[]);
    assert_eq!(p.bundles.iter().map(Decision::key).collect::<Vec<_>>(), ["mod_quiz-fix@1.0.0", "mod_quiz-fix@1.0.1"]);
    let d = p.get("mod_quiz-fix", "1.0.0").unwrap();
    assert_eq!(dr(d), (DecisionKind::Skipped, Some(Reason::Superseded)));
    assert_eq!(d.detail.as_deref(), Some("version 1.0.1 is eligible"));
    assert_eq!(dr(p.get("mod_quiz-fix", "1.0.1").unwrap()), (DecisionKind::Eligible, None));

    // Installed newer version supersedes an older one, even an unvalidated one.
    let mut unvalidated_old = old.clone();
    unvalidated_old.validations.alpha = false;
    let p = run(&k, &[unvalidated_old, new.clone()], &[r("mod_quiz-fix", "1.0.1")]);
    let d = p.get("mod_quiz-fix", "1.0.0").unwrap();
    assert_eq!(dr(d), (DecisionKind::Skipped, Some(Reason::Superseded)));
    assert_eq!(d.detail.as_deref(), Some("version 1.0.1 is installed"));
    assert_eq!(dr(p.get("mod_quiz-fix", "1.0.1").unwrap()), (DecisionKind::Installed, None));

    // A newer version that is not eligible does not supersede.
    let mut waiting_new = new.clone();
    waiting_new.validations.datasets.clear();
    let p = run(&k, &[old.clone(), waiting_new], &[]);
    assert_eq!(dr(p.get("mod_quiz-fix", "1.0.0").unwrap()), (DecisionKind::Eligible, None));
    assert_eq!(p.get("mod_quiz-fix", "1.0.1").unwrap().reason, Some(Reason::InsufficientDatasets));

    // Yanked keeps its own reason.
    let mut yanked_old = old.clone();
    yanked_old.state = BundleState::Yanked;
    let p = run(&k, &[yanked_old, new.clone()], &[]);
    assert_eq!(p.get("mod_quiz-fix", "1.0.0").unwrap().reason, Some(Reason::Yanked));

    // A newer version whose dependency is missing does not supersede the older one.
    let mut new_with_dep = new;
    new_with_dep.manifest.after = vec![Dependency::parse("mod_quiz-base >=2.0.0").unwrap()];
    let p = run(&k, &[old, new_with_dep], &[]);
    assert_eq!(dr(p.get("mod_quiz-fix", "1.0.0").unwrap()), (DecisionKind::Eligible, None));
    assert_eq!(p.get("mod_quiz-fix", "1.0.1").unwrap().reason, Some(Reason::DependencyMissing));
}

fn hold(id: &str, version: &str, until: Option<&str>) -> Hold {
    Hold { bundle: r(id, version), since: ts("2026-11-30T08:00:00Z"), reason: "check /login failed".into(), until: until.map(ts) }
}

#[test]
fn a_held_version_is_skipped_and_supersedes_nothing() {
    let k = contract(Level::Two, Level::Two);
    let old = bundle("mod_quiz-fix", "1.0.0");
    let new = bundle("mod_quiz-fix", "1.0.1");
    let holds = [hold("mod_quiz-fix", "1.0.1", None)];
    let p = plan_with_holds(&k, &[old.clone(), new.clone()], &[], &holds, &moodle(), now());
    let d = p.get("mod_quiz-fix", "1.0.1").unwrap();
    assert_eq!(dr(d), (DecisionKind::Skipped, Some(Reason::Held)));
    let detail = d.detail.as_deref().unwrap();
    assert!(detail.contains("since 2026-11-30 09:00 CET") && detail.contains("check /login failed"), "{detail}");
    assert!(detail.contains("palier-agent release mod_quiz-fix@1.0.1"), "{detail}");
    // The older good version is not superseded by the held one.
    assert_eq!(dr(p.get("mod_quiz-fix", "1.0.0").unwrap()), (DecisionKind::Eligible, None));
    // A hold comes before the release manager's word and before superseded.
    let mut halted = new.clone();
    halted.state = BundleState::Halted;
    let p = plan_with_holds(&k, &[old.clone(), halted], &[], &holds, &moodle(), now());
    assert_eq!(p.get("mod_quiz-fix", "1.0.1").unwrap().reason, Some(Reason::Held));
    // A dependant of a held version finds its dependency missing.
    let mut dep = bundle("mod_quiz-extra", "1.0.0");
    dep.manifest.after = vec![Dependency::parse("mod_quiz-fix >=1.0.1").unwrap()];
    let p = plan_with_holds(&k, &[new.clone(), dep], &[], &holds, &moodle(), now());
    assert_eq!(p.get("mod_quiz-extra", "1.0.0").unwrap().reason, Some(Reason::DependencyMissing));
    // An installed version stays installed even if held.
    let p = plan_with_holds(&k, std::slice::from_ref(&new), &[r("mod_quiz-fix", "1.0.1")], &holds, &moodle(), now());
    assert_eq!(dr(p.get("mod_quiz-fix", "1.0.1").unwrap()), (DecisionKind::Installed, None));
}

#[test]
fn a_back_off_hold_lifts_itself_at_its_end() {
    let k = contract(Level::Two, Level::Two);
    let b = bundle("mod_quiz-fix", "1.0.1");
    let later = now().checked_add(SignedDuration::from_hours(1)).unwrap();
    let holds = [Hold { until: Some(later), ..hold("mod_quiz-fix", "1.0.1", None) }];
    let d = plan_with_holds(&k, std::slice::from_ref(&b), &[], &holds, &moodle(), now()).bundles.remove(0);
    assert_eq!(dr(&d), (DecisionKind::Skipped, Some(Reason::Held)));
    assert!(d.detail.as_deref().unwrap().contains("retried after"), "{:?}", d.detail);
    let d = plan_with_holds(&k, std::slice::from_ref(&b), &[], &holds, &moodle(), later).bundles.remove(0);
    assert_eq!(dr(&d), (DecisionKind::Eligible, None));
}

// ---------------------------------------------------------------------------------------
// Scheduling.

#[test]
fn level1_applies_now_or_in_a_low_load_slot_within_max_defer() {
    let mut k = contract(Level::One, Level::One);
    let b = bundle("mod_quiz-fix", "1.0.0");
    // No low-load slot: now.
    let d = one(&k, b.clone());
    assert_eq!(d.apply_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-01T10:00:00+01:00"));
    assert_eq!(d.notice_at, None);
    // No window at level 1: no end either, even in a low-load slot.
    assert_eq!(d.slot_end, None);
    // A low-load slot starting within max_defer (4h): its start.
    k.stability.low_load = vec![Window::parse("12:00-14:00").unwrap(), Window::parse("20:00-07:00").unwrap()];
    let d = one(&k, b.clone());
    assert_eq!(d.apply_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-01T12:00:00+01:00"));
    // Inside one: now.
    let p = plan(&k, std::slice::from_ref(&b), &[], &moodle(), ts("2026-12-01T12:30:00Z"));
    assert_eq!(p.bundles[0].apply_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-01T13:30:00+01:00"));
    let p = plan(&k, std::slice::from_ref(&b), &[], &moodle(), ts("2026-12-02T05:00:00Z"));
    assert_eq!(p.bundles[0].apply_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-02T06:00:00+01:00"));
    // Next slot further than max_defer: now.
    k.stability.max_defer = SignedDuration::from_hours(1);
    let d = one(&k, b);
    assert_eq!(d.apply_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-01T10:00:00+01:00"));
}

#[test]
fn level2_first_window_after_the_notice() {
    let mut k = contract(Level::Two, Level::Two);
    let b = bundle("mod_quiz-fix", "1.0.0");
    let d = one(&k, b.clone());
    assert_eq!(d.apply_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-01T22:00:00+01:00"));
    assert_eq!(d.notice_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-01T20:00:00+01:00"));
    // The window's own end (Tue 22:00-23:30), not an estimate.
    assert_eq!(d.slot_end.as_ref().map(rfc3339).as_deref(), Some("2026-12-01T23:30:00+01:00"));
    // Inside the window: applied now, until its end.
    let p = plan(&k, std::slice::from_ref(&b), &[], &moodle(), ts("2026-12-01T21:10:00Z"));
    assert_eq!(p.bundles[0].apply_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-01T22:10:00+01:00"));
    assert_eq!(p.bundles[0].slot_end.as_ref().map(rfc3339).as_deref(), Some("2026-12-01T23:30:00+01:00"));
    // At 21:00 the Tuesday window is too close for a 2 h notice: Thursday's.
    let p = plan(&k, std::slice::from_ref(&b), &[], &moodle(), ts("2026-12-01T20:00:00Z"));
    assert_eq!(p.bundles[0].apply_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-03T22:00:00+01:00"));
    assert_eq!(p.bundles[0].notice_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-03T20:00:00+01:00"));
    // Exactly notice before: still in time.
    let p = plan(&k, std::slice::from_ref(&b), &[], &moodle(), ts("2026-12-01T19:00:00Z"));
    assert_eq!(p.bundles[0].apply_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-01T22:00:00+01:00"));
    // No window: eligible, apply_at null, a detail.
    k.stability.windows.clear();
    let d = one(&k, b);
    assert_eq!((d.decision, d.apply_at.clone(), d.notice_at.clone(), d.slot_end.clone()), (DecisionKind::Eligible, None, None, None));
    assert_eq!(d.detail.as_deref(), Some("no window configured: not applied until one is"));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["apply_at"], Value::Null);
    assert_eq!(json["notice_at"], Value::Null);
    assert_eq!(json["slot_end"], Value::Null);
}

#[test]
fn level3_first_calendar_slot_after_the_notice() {
    let mut k = contract(Level::Three, Level::Three);
    let b = bundle("mod_quiz-fix", "1.0.0");
    let d = one(&k, b.clone());
    assert_eq!(d.apply_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-05T21:00:00+01:00"));
    assert_eq!(d.notice_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-05T19:00:00+01:00"));
    assert_eq!(d.slot_end.as_ref().map(rfc3339).as_deref(), Some("2026-12-06T01:00:00+01:00"));
    // After the only slot: nothing within the horizon.
    let p = plan(&k, std::slice::from_ref(&b), &[], &moodle(), ts("2026-12-05T19:30:00Z"));
    let d = &p.bundles[0];
    assert_eq!((d.decision, d.apply_at.clone()), (DecisionKind::Eligible, None));
    assert!(d.detail.as_deref().unwrap().starts_with("no calendar slot starts between 2026-12-05T22:30:00+01:00 (now + notice 2h) and 366 days"), "{d:?}");
    // From iCalendar text.
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:m\r\nDTSTART;TZID=Europe/Paris:20261206T060000\r\nDURATION:PT2H\r\nRRULE:FREQ=WEEKLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    k.stability.calendar = Calendar::parse_ics(ics, &paris(), &jiff::tz::TimeZoneDatabase::bundled()).unwrap();
    let p = plan(&k, std::slice::from_ref(&b), &[], &moodle(), ts("2026-12-06T04:30:00Z"));
    assert_eq!(p.bundles[0].apply_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-13T06:00:00+01:00"));
    assert_eq!(p.bundles[0].slot_end.as_ref().map(rfc3339).as_deref(), Some("2026-12-13T08:00:00+01:00"));
}

// ---------------------------------------------------------------------------------------
// JSON.

#[test]
fn plan_json_has_the_spec_shape() {
    let mut k = contract(Level::Two, Level::Two);
    k.improvement.components.insert(Component::new("theme_boost").unwrap());
    let fix = bundle("mod_quiz-timer-drift", "1.0.1");
    let mut nav = bundle("theme_boost-new-nav", "2.0.0");
    nav.reported_by.clear();
    nav.manifest.component = Component::new("theme_boost").unwrap();
    nav.manifest.class = ChangeClass::Global;
    let p = run(&k, &[nav, fix], &[]);
    let expected = json!({ "platform": "univ-a", "now": "2026-12-01T10:00:00+01:00",
      "improvement_level": 2, "stability_level": 2,
      "bundles": [
        { "id": "mod_quiz-timer-drift", "version": "1.0.1", "decision": "eligible",
          "reason": null, "apply_at": "2026-12-01T22:00:00+01:00", "notice_at": "2026-12-01T20:00:00+01:00",
          "slot_end": "2026-12-01T23:30:00+01:00" },
        { "id": "theme_boost-new-nav", "version": "2.0.0", "decision": "skipped",
          "reason": "class-not-allowed", "detail": "class global; level 2 admits technical" } ] });
    assert_eq!(serde_json::to_value(&p).unwrap(), expected);
    // Keys in the SPEC's order, and the document reads back.
    let text = serde_json::to_string(&p).unwrap();
    assert!(text.starts_with(r#"{"platform":"univ-a","now":"2026-12-01T10:00:00+01:00","improvement_level":2,"stability_level":2,"bundles":[{"id":"#));
    let back: Plan = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
    // Unknown keys are refused when reading back.
    assert!(serde_json::from_str::<Decision>(r#"{"id":"a","version":"1.0.0","decision":"eligible","reason":null,"surprise":1}"#).is_err());
}

#[test]
fn reason_codes_are_the_spec_strings() {
    let codes: Vec<String> = Reason::ALL.iter().map(|r| serde_json::to_value(r).unwrap().as_str().unwrap().to_owned()).collect();
    assert_eq!(
        codes,
        [
            "not-reported",
            "component-not-selected",
            "class-not-allowed",
            "data-impact-too-high",
            "not-alpha-validated",
            "insufficient-datasets",
            "moodle-version-mismatch",
            "moodle-layout-mismatch",
            "dependency-missing",
            "superseded",
            "yanked",
            "halted",
            "held",
            "file-conflict",
            "backup-missing",
            "waiting-rollout"
        ]
    );
    for r in Reason::ALL {
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
    }
}

// ---------------------------------------------------------------------------------------
// Properties.

fn arb_window() -> impl Strategy<Value = Window> {
    (1u8..128, 0i8..24, prop::sample::select(vec![0i8, 15, 30, 45]), 15i16..(20 * 60)).prop_map(|(days, h, m, len)| {
        let start_min = i16::from(h) * 60 + i16::from(m);
        let end_min = (start_min + len) % (24 * 60);
        let text = format!(
            "{} {:02}:{:02}-{:02}:{:02}",
            ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
                .iter()
                .enumerate()
                .filter(|(i, _)| days & (1 << i) != 0)
                .map(|(_, d)| *d)
                .collect::<Vec<_>>()
                .join(","),
            h,
            m,
            end_min / 60,
            end_min % 60
        );
        Window::parse(&text).unwrap()
    })
}

/// A dated slot within ~400 days of 2026-01-01, 15 minutes to 10 hours long.
fn arb_dated() -> impl Strategy<Value = DatedSlot> {
    (0i64..400 * 24 * 4, 1i64..40).prop_map(|(quarter, len)| {
        let start = jiff::civil::date(2026, 1, 1).at(0, 0, 0, 0) + SignedDuration::from_mins(quarter * 15);
        let end = start + SignedDuration::from_mins(len * 15);
        DatedSlot { start, end }
    })
}

/// Around 2026: spans both DST changes.
fn arb_now() -> impl Strategy<Value = Timestamp> {
    (0i64..(365 * 24 * 3600)).prop_map(|s| ts("2026-01-01T00:00:00Z") + SignedDuration::from_secs(s))
}

fn arb_stability() -> impl Strategy<Value = Stability> {
    (
        1i64..=3,
        prop::collection::vec(arb_window(), 0..3),
        60i64..(48 * 60),
        prop::collection::vec(arb_window(), 0..3),
        0i64..(12 * 60),
        prop::collection::vec(arb_dated(), 0..4),
    )
        .prop_map(|(level, windows, notice, low_load, max_defer, slots)| {
            let mut s = Stability::new(Level::new(level).unwrap());
            s.windows = windows;
            s.notice = Notice::new(SignedDuration::from_mins(notice)).unwrap();
            s.low_load = low_load;
            s.max_defer = SignedDuration::from_mins(max_defer);
            s.calendar = Calendar::from_slots(slots);
            s
        })
}

/// A rollout: up to 3 canaries among `univ-a`..`univ-d`, up to 4 waves growing within 10 days.
fn arb_rollout() -> impl Strategy<Value = palier_bundle::rollout::Rollout> {
    (prop::collection::btree_set(prop::sample::select(vec!["univ-a", "univ-b", "univ-c", "univ-d"]), 0..3), prop::collection::vec((0i64..60, 1u8..40), 1..5))
        .prop_map(|(canary, steps)| {
            let mut waves: Vec<palier_bundle::rollout::Wave> = Vec::new();
            let (mut after, mut share) = (-1i64, 0u8);
            for (d, s) in steps {
                after += d + 1;
                share = share.saturating_add(s).min(100);
                if waves.last().is_some_and(|w| w.share >= share) {
                    break;
                }
                waves.push(palier_bundle::rollout::Wave { after: SignedDuration::from_hours(after * 4), share });
            }
            palier_bundle::rollout::Rollout { canary: canary.into_iter().map(|c| PlatformId::new(c).unwrap()).collect(), waves, paused_at: None }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Issue 16: never eligible before the platform's wave opens, eligible from the instant
    /// it opens, `apply_at` never before `rollout_at`; reporters are never held back.
    #[test]
    fn a_rollout_holds_a_platform_back_exactly_until_its_wave(
        rollout in arb_rollout(),
        name in prop::sample::select(vec!["univ-a", "univ-b", "univ-e", "univ-f", "univ-g", "univ-h", "univ-i"]),
        stability in arb_stability(),
        published in arb_now(),
        offset_hours in -48i64..(12 * 24),
        paused_after in prop::option::of(0i64..(10 * 24)),
        reported in any::<bool>(),
    ) {
        let mut rollout = rollout;
        rollout.paused_at = paused_after.map(|h| published + SignedDuration::from_hours(h));
        let mut k = Contract { stability, ..contract(Level::Three, Level::One) };
        k.platform = PlatformId::new(name).unwrap();
        let mut meta = bundle("mod_quiz-fix", "1.0.0");
        meta.reported_by = if reported { BTreeSet::from([k.platform.clone()]) } else { BTreeSet::from([PlatformId::new("univ-z").unwrap()]) };
        meta.published_at = published.to_string();
        meta.rollout = Some(rollout.clone());
        let now = published + SignedDuration::from_hours(offset_hours);
        let d = plan(&k, std::slice::from_ref(&meta), &[], &moodle(), now).bundles.remove(0);
        let mut without = meta.clone();
        without.rollout = None;
        let free = plan(&k, std::slice::from_ref(&without), &[], &moodle(), now).bundles.remove(0);
        let opens = rollout.scheduled(published, &meta.manifest.id, &k.platform);
        let paused_before_it = matches!((opens, rollout.paused_at), (Some(o), Some(p)) if o > p);
        if reported {
            prop_assert_eq!(&d, &free, "a reporter is never held back by waves");
            return Ok(());
        }
        match opens {
            Some(at) if at <= now && !paused_before_it => prop_assert_eq!(&d, &free, "the wave is open: the contract alone decides"),
            _ => {
                prop_assert_eq!(dr(&d), (DecisionKind::WaitingRollout, Some(Reason::WaitingRollout)));
                prop_assert!(d.apply_at.is_none() && d.notice_at.is_none());
                let expected = if paused_before_it { None } else { opens };
                prop_assert_eq!(d.rollout_at.as_ref().map(|z| z.timestamp()), expected);
                // At the instant it opens, it is eligible, applied no earlier than that.
                if let Some(at) = expected {
                    let then = plan(&k, std::slice::from_ref(&meta), &[], &moodle(), at).bundles.remove(0);
                    prop_assert_eq!(then.decision, DecisionKind::Eligible);
                    if let Some(apply_at) = &then.apply_at {
                        prop_assert!(apply_at.timestamp() >= at);
                    }
                }
            }
        }
    }

    #[test]
    fn eligible_apply_at_is_not_before_now_and_inside_a_permitted_slot(stability in arb_stability(), now in arb_now()) {
        let tz = paris();
        let k = Contract { stability: stability.clone(), ..contract(Level::Three, Level::One) };
        let p = plan(&k, &[bundle("mod_quiz-fix", "1.0.0")], &[], &moodle(), now);
        let d = &p.bundles[0];
        prop_assert_eq!(d.decision, DecisionKind::Eligible);
        let notice = stability.notice.get();
        match stability.level {
            Level::One => {
                let at = d.apply_at.as_ref().expect("level 1 always has a time").timestamp();
                prop_assert!(d.notice_at.is_none());
                prop_assert!(at >= now && at <= now + stability.max_defer);
                let low = next_slots(&stability.low_load, &tz, now, stability.max_defer);
                if low.iter().any(|s| s.contains(now)) || low.is_empty() {
                    prop_assert_eq!(at, now);
                } else {
                    prop_assert!(low.iter().any(|s| s.start.timestamp() == at && s.contains(at)));
                    prop_assert!(low.iter().all(|s| s.start.timestamp() >= at), "not the first low-load slot");
                }
            }
            level => {
                let slots = if level == Level::Two {
                    next_slots(&stability.windows, &tz, now, HORIZON)
                } else {
                    next_slots(&stability.calendar, &tz, now, HORIZON)
                };
                let in_time: Vec<_> = slots.iter().filter(|s| s.start.timestamp() >= now + notice).collect();
                // Inside an open slot, the plan says what run does: now, in this slot.
                if let Some(open) = slots.iter().find(|s| s.contains(now)) {
                    prop_assert_eq!(d.apply_at.as_ref().map(|z| z.timestamp()), Some(now));
                    prop_assert_eq!(d.slot_end.as_ref().map(|z| z.timestamp()), Some(open.end.timestamp()));
                    prop_assert_eq!(d.notice_at.as_ref().map(|z| z.timestamp()), Some(open.start.timestamp() - notice));
                    prop_assert!(d.detail.as_deref().is_some_and(|t| t.contains("open now")));
                    return Ok(());
                }
                match (&d.apply_at, &d.notice_at) {
                    (Some(at), Some(notice_at)) => {
                        let (at, notice_at) = (at.timestamp(), notice_at.timestamp());
                        prop_assert!(at >= now);
                        prop_assert!(in_time.iter().any(|s| s.start.timestamp() == at && s.contains(at)), "apply_at is no slot's start");
                        let end = d.slot_end.as_ref().map(|z| z.timestamp());
                        prop_assert!(in_time.iter().any(|s| s.start.timestamp() == at && Some(s.end.timestamp()) == end), "slot_end is not its slot's end");
                        prop_assert!(in_time.iter().all(|s| s.start.timestamp() >= at), "an earlier slot was in time");
                        prop_assert_eq!(notice_at, at - notice);
                        prop_assert!(notice_at >= now);
                        prop_assert!(notice_at <= at - SignedDuration::from_hours(1));
                    }
                    (None, None) => {
                        prop_assert!(in_time.is_empty(), "a slot was in time: {:?}", in_time[0]);
                        prop_assert!(d.detail.is_some());
                    }
                    other => prop_assert!(false, "apply_at and notice_at disagree: {:?}", other),
                }
            }
        }
    }

    #[test]
    fn improvement_levels_are_cumulative(
        class in prop::sample::select(ChangeClass::ALL.to_vec()),
        impact in prop::sample::select(DataImpact::ALL.to_vec()),
        stability in 1i64..=3,
        alpha in any::<bool>(),
        datasets in 0usize..4,
        reported in any::<bool>(),
        selected in any::<bool>(),
        widened in any::<bool>(),
        moodle_ok in any::<bool>(),
        now in arb_now(),
        rollout in prop::option::of(arb_rollout()),
        published_before in -(30i64 * 24)..(30 * 24),
    ) {
        let improvement_reasons = [Reason::NotReported, Reason::ComponentNotSelected, Reason::ClassNotAllowed];
        let mut meta = bundle("mod_quiz-fix", "1.0.0");
        meta.rollout = rollout;
        meta.published_at = (now - SignedDuration::from_hours(published_before)).to_string();
        meta.manifest.class = class;
        meta.manifest.data_impact = impact;
        meta.validations.alpha = alpha;
        meta.validations.datasets = (0..datasets).map(|i| format!("ds-{i}")).collect();
        if !reported {
            meta.reported_by.clear();
        }
        if !moodle_ok {
            meta.manifest.requires_moodle = Some(VersionReq::parse("<4.0.0").unwrap());
        }
        let at = |level: Level| {
            let mut k = contract(level, Level::new(stability).unwrap());
            if !selected {
                k.improvement.components.clear();
            }
            if widened {
                k.improvement = k.improvement.clone().with_level2_classes([ChangeClass::Technical, ChangeClass::NonLayout]).unwrap();
            }
            plan(&k, std::slice::from_ref(&meta), &[], &moodle(), now).bundles.remove(0)
        };
        let (l1, l2, l3) = (at(Level::One), at(Level::Two), at(Level::Three));
        let admits = |d: &Decision| !d.reason.is_some_and(|r| improvement_reasons.contains(&r));
        prop_assert!(admits(&l3));
        if admits(&l1) {
            prop_assert!(admits(&l2));
            prop_assert_eq!(&l1, &l2, "everything else equal, level 2 decides as level 1");
        }
        if admits(&l2) {
            prop_assert_eq!(&l2, &l3, "everything else equal, level 3 decides as level 2");
        }
    }

    #[test]
    fn plan_json_reads_back(stability in arb_stability(), now in arb_now(), n in 1usize..6) {
        let k = Contract { stability, ..contract(Level::Two, Level::One) };
        let bundles: Vec<_> = (0..n).map(|i| bundle("mod_quiz-fix", &format!("1.0.{i}"))).collect();
        let p = plan(&k, &bundles, &[], &moodle(), now);
        let text = serde_json::to_string(&p).unwrap();
        let back: Plan = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), text);
        // Only the newest version is eligible; the others are superseded by it.
        prop_assert_eq!(p.bundles.iter().filter(|d| d.decision == DecisionKind::Eligible).count(), 1);
        prop_assert_eq!(p.bundles.iter().filter(|d| d.reason == Some(Reason::Superseded)).count(), n - 1);
    }
}

#[test]
fn a_bundle_that_does_not_fit_the_site_code_is_skipped_moodle_layout_mismatch() {
    use palier_bundle::components::ComponentMap;
    use palier_bundle::layout::Layout;
    use palier_bundle::moodle::MoodleSite;
    use palier_bundle::names::RelPath;
    let k = contract(Level::Three, Level::One);
    let site = |layout| MoodleSite { release: moodle(), layout, components: ComponentMap::builtin(layout) };
    let with_files = |paths: &[&str]| {
        let b = bundle("mod_quiz-fix", "1.0.0");
        let files = paths
            .iter()
            .map(|p| palier_bundle::FileEntry { path: RelPath::new(*p).unwrap(), sha256: palier_bundle::Sha256Hex::from_digest(&[0; 32]), size: 1, mode: palier_bundle::FileMode::from_permissions(0o644) })
            .collect();
        signed_with_files(b, files)
    };
    let now = ts("2026-12-01T12:00:00Z");
    let one = |b: &BundleMetadata, layout| plan(&k, std::slice::from_ref(b), &[], &site(layout), now).bundles.remove(0);
    // Each layout takes its own paths.
    let classic = with_files(&["mod/quiz/view.php"]);
    let public = with_files(&["public/mod/quiz/view.php"]);
    assert_eq!(one(&classic, Layout::Classic).decision, DecisionKind::Eligible);
    assert_eq!(one(&public, Layout::Public).decision, DecisionKind::Eligible);
    // And skips the other's, saying why.
    for (b, layout, want) in [
        (&classic, Layout::Public, "does not fit this Moodle 5.1+ site: mod/quiz/view.php does not fit the Moodle 5.1+ layout"),
        (&public, Layout::Classic, "does not fit this Moodle 4.x site: public/mod/quiz/view.php does not fit the Moodle 4.x layout"),
        (&with_files(&["login/index.php"]), Layout::Classic, "outside mod/quiz/, the folder of component mod_quiz"),
        (&with_files(&["config.php"]), Layout::Classic, "config.php is a site-local file"),
    ] {
        let d = one(b, layout);
        assert_eq!(dr(&d), (DecisionKind::Skipped, Some(Reason::MoodleLayoutMismatch)), "{d:?}");
        assert!(d.detail.as_deref().unwrap().contains(want), "{d:?}");
    }
    // A plan from the release alone checks no path.
    assert_eq!(plan(&k, std::slice::from_ref(&public), &[], &moodle(), now).bundles[0].decision, DecisionKind::Eligible);
}

/// Issue 13 item 6: inside an open window (level 2) or calendar slot (level 3), the plan
/// says the current one, as `run --once` acts on it; level 1 applies at once.
#[test]
fn plan_inside_an_open_window_or_slot_says_the_current_one() {
    let b = bundle("mod_quiz-fix", "1.0.0");
    // Level 1: now.
    let p = plan(&contract(Level::Three, Level::One), std::slice::from_ref(&b), &[], &moodle(), ts("2026-12-01T10:00:00Z"));
    assert_eq!(p.bundles[0].apply_at.as_ref().unwrap().timestamp(), ts("2026-12-01T10:00:00Z"));
    // Level 2: Tuesday 22:30 Paris, inside the Tue 22:00-23:30 window.
    let now = ts("2026-12-01T21:30:00Z");
    let d = plan(&contract(Level::Three, Level::Two), std::slice::from_ref(&b), &[], &moodle(), now).bundles.remove(0);
    assert_eq!(d.decision, DecisionKind::Eligible);
    assert_eq!(d.apply_at.as_ref().unwrap().timestamp(), now);
    assert_eq!(d.notice_at.as_ref().unwrap().timestamp(), ts("2026-12-01T21:00:00Z") - contract(Level::Three, Level::Two).stability.notice.get(), "window start - notice");
    assert!(d.detail.as_deref().unwrap().contains("inside the window 2026-12-01T22:00:00+01:00 to 2026-12-01T23:30:00+01:00 open now"), "{d:?}");
    // Level 3: Saturday 21:30 Paris, inside the calendar slot 21:00-01:00.
    let now = ts("2026-12-05T20:30:00Z");
    let k = contract(Level::Three, Level::Three);
    let d = plan(&k, std::slice::from_ref(&b), &[], &moodle(), now).bundles.remove(0);
    assert_eq!(d.apply_at.as_ref().unwrap().timestamp(), now);
    assert_eq!(d.notice_at.as_ref().unwrap().timestamp(), ts("2026-12-05T20:00:00Z") - k.stability.notice.get(), "slot start - notice");
    let detail = d.detail.unwrap();
    assert!(detail.contains("inside the calendar slot 2026-12-05T21:00:00+01:00 to 2026-12-06T01:00:00+01:00 open now"), "{detail}");
    assert!(!detail.contains("no calendar slot starts"), "{detail}");
}

fn with_file(meta: BundleMetadata, path: &str) -> BundleMetadata {
    let file = palier_bundle::manifest::FileEntry {
        path: palier_bundle::names::RelPath::new(path).unwrap(),
        sha256: palier_bundle::manifest::Sha256Hex::from_digest(&[0; 32]),
        size: 1,
        mode: palier_bundle::manifest::FileMode::from_permissions(0o644),
    };
    signed_with_files(meta, vec![file])
}

/// `meta` signed for a bundle of `files`: its file count, size and path summary.
fn signed_with_files(meta: BundleMetadata, files: Vec<palier_bundle::manifest::FileEntry>) -> BundleMetadata {
    let full = meta.manifest.clone().with_files(files);
    BundleMetadata { file_count: full.files.len() as u64, expanded_size: full.expanded_size(), paths: palier_bundle::layout::PathSummary::of(full.paths()), ..meta }
}

/// Issue 13: a bundle that changes the database (`upgrade = true`, or a `version.php` of
/// core or a plugin, read against the site's layout) is never applied on a site without a
/// backup hook, at any stability level: `needs-scheduled-intervention`, reason
/// `backup-missing`, naming why it changes the database.
#[test]
fn a_database_change_without_a_backup_hook_needs_a_scheduled_intervention() {
    use palier_bundle::components::ComponentMap;
    use palier_bundle::layout::Layout;
    use palier_bundle::moodle::MoodleSite;
    let site = |layout| MoodleSite { release: moodle(), layout, components: ComponentMap::builtin(layout) };
    for level in [Level::One, Level::Two, Level::Three] {
        let mut c = contract(Level::Three, level);
        c.stability.backup = false;
        let mut upgrade = bundle("quiz-upgrade", "1.0.0");
        upgrade.manifest.upgrade = true;
        let cases = [
            (upgrade, Layout::Classic, Some("upgrade = true")),
            (with_file(bundle("quiz-version", "1.0.0"), "mod/quiz/version.php"), Layout::Classic, Some("mod/quiz/version.php")),
            (with_file(bundle("quiz-version", "1.0.0"), "public/mod/quiz/version.php"), Layout::Public, Some("public/mod/quiz/version.php")),
            (with_file(bundle("quiz-view", "1.0.0"), "mod/quiz/view.php"), Layout::Classic, None),
            // Not a plugin's version file: a file of that name deeper in its folder.
            (with_file(bundle("quiz-deep", "1.0.0"), "mod/quiz/classes/version.php"), Layout::Classic, None),
        ];
        for (meta, layout, why) in cases {
            let key = meta.manifest.key();
            let d = plan(&c, std::slice::from_ref(&meta), &[], &site(layout), now()).bundles.remove(0);
            match why {
                Some(why) => {
                    assert_eq!(dr(&d), (DecisionKind::NeedsScheduledIntervention, Some(Reason::BackupMissing)), "{key} at {level}");
                    let detail = d.detail.unwrap();
                    assert!(detail.contains(why) && detail.contains("no backup hook"), "{detail}");
                }
                None => assert_eq!(d.decision, DecisionKind::Eligible, "{key} at {level}: {:?}", d.detail),
            }
            // With a backup hook, every one of them is eligible.
            c.stability.backup = true;
            assert_eq!(plan(&c, &[meta], &[], &site(layout), now()).bundles[0].decision, DecisionKind::Eligible, "{key} at {level}");
            c.stability.backup = false;
        }
    }
    // Core's version file, in each layout; without the site's code, any version.php counts.
    let core = |path: &str| {
        let m = manifest("core-fix", "1.0.0", "core", ChangeClass::Technical, DataImpact::None);
        with_file(BundleMetadata::new(m, BTreeSet::new(), "2026-11-01T00:00:00Z".into()), path)
    };
    assert!(changes_database(&core("public/version.php"), Some((Layout::Public, &ComponentMap::builtin(Layout::Public)))).is_some());
    assert!(changes_database(&core("version.php"), Some((Layout::Classic, &ComponentMap::builtin(Layout::Classic)))).is_some());
    assert!(changes_database(&core("lib/version.php"), Some((Layout::Classic, &ComponentMap::builtin(Layout::Classic)))).is_none());
    assert!(changes_database(&core("lib/version.php"), None).is_some());
    // The signed metadata names up to 8 version.php paths; a bundle with more counts as a
    // database change even where none of the named ones would.
    let files = |n: usize| {
        (0..n)
            .map(|i| palier_bundle::manifest::FileEntry {
                path: palier_bundle::names::RelPath::new(format!("lib/x{i:02}/version.php")).unwrap(),
                sha256: palier_bundle::manifest::Sha256Hex::from_digest(&[0; 32]),
                size: 1,
                mode: palier_bundle::manifest::FileMode::from_permissions(0o644),
            })
            .collect::<Vec<_>>()
    };
    let classic = ComponentMap::builtin(Layout::Classic);
    assert!(changes_database(&signed_with_files(bundle("few", "1.0.0"), files(palier_bundle::layout::MAX_VERSION_FILES)), Some((Layout::Classic, &classic))).is_none());
    let why = changes_database(&signed_with_files(bundle("many", "1.0.0"), files(palier_bundle::layout::MAX_VERSION_FILES + 1)), Some((Layout::Classic, &classic))).unwrap();
    assert_eq!(why, "it changes more than 8 version.php files");
}

// ---------------------------------------------------------------------------------------
// Staged rollouts (issue 16), outside the matrix.

/// The first of `univ-0`, `univ-1`, ... whose place for `mod_quiz-fix` is in `range`.
fn platform_at(range: std::ops::Range<u8>) -> PlatformId {
    let id = BundleId::new("mod_quiz-fix").unwrap();
    (0..1000).map(|i| PlatformId::new(format!("univ-{i}")).unwrap()).find(|p| range.contains(&palier_bundle::rollout::place(&id, p))).unwrap()
}

fn rolled(spec: &str) -> BundleMetadata {
    let mut b = bundle("mod_quiz-fix", "1.0.1");
    b.reported_by.clear();
    b.published_at = "2026-12-01T08:00:00Z".into();
    b.rollout = Some(palier_bundle::rollout::Rollout::parse(spec).unwrap());
    b
}

fn on(platform: &PlatformId, bundles: &[BundleMetadata], now: Timestamp) -> Plan {
    let mut k = contract(Level::Three, Level::One);
    k.platform = platform.clone();
    plan(&k, bundles, &[], &moodle(), now)
}

#[test]
fn waiting_rollout_says_which_wave_and_when() {
    let first = platform_at(0..10);
    let second = platform_at(10..50);
    let outside = platform_at(50..100);
    let b = rolled("canary=univ-c; 24h=10%; 48h=50%");
    let now = ts("2026-12-01T09:00:00Z");
    let d = on(&second, std::slice::from_ref(&b), now).bundles.remove(0);
    assert_eq!(dr(&d), (DecisionKind::WaitingRollout, Some(Reason::WaitingRollout)));
    assert_eq!(d.rollout_at.as_ref().map(rfc3339).as_deref(), Some("2026-12-03T09:00:00+01:00"));
    let detail = d.detail.clone().unwrap();
    assert!(detail.starts_with("its wave (2 of 2: 50% of the fleet, 48h after publication; this platform's place is "), "{detail}");
    assert!(detail.ends_with(") opens 2026-12-03T09:00:00+01:00"), "{detail}");
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["rollout_at"], "2026-12-03T09:00:00+01:00");
    assert!(json.get("apply_at").is_none(), "{json}");
    let back: Decision = serde_json::from_value(json).unwrap();
    assert_eq!(back.rollout_at.map(|z| z.timestamp()), d.rollout_at.map(|z| z.timestamp()));
    // The canary and the first wave once it opens.
    assert_eq!(on(&PlatformId::new("univ-c").unwrap(), std::slice::from_ref(&b), now).bundles[0].decision, DecisionKind::Eligible);
    assert_eq!(on(&first, std::slice::from_ref(&b), ts("2026-12-02T08:00:00Z")).bundles[0].decision, DecisionKind::Eligible);
    // Outside the last share: never, and it says how to change that.
    let d = on(&outside, std::slice::from_ref(&b), ts("2027-06-01T00:00:00Z")).bundles.remove(0);
    assert_eq!((d.decision, d.rollout_at.clone()), (DecisionKind::WaitingRollout, None));
    assert!(d.detail.as_deref().unwrap().starts_with("outside the rollout: its waves reach 50% of the fleet"), "{d:?}");
    assert_eq!(serde_json::to_value(&d).unwrap()["rollout_at"], Value::Null);
    // Paused before the second wave: it waits, with no date.
    let mut paused = b.clone();
    paused.rollout.as_mut().unwrap().paused_at = Some(ts("2026-12-02T12:00:00Z"));
    let d = on(&second, std::slice::from_ref(&paused), ts("2026-12-05T00:00:00Z")).bundles.remove(0);
    assert_eq!((d.decision, d.rollout_at.clone()), (DecisionKind::WaitingRollout, None));
    assert!(d.detail.as_deref().unwrap().starts_with("rollout paused since 2026-12-02T13:00:00+01:00: its wave (2 of 2"), "{d:?}");
    // The first wave, open before the pause, stays open.
    assert_eq!(on(&first, std::slice::from_ref(&paused), ts("2026-12-05T00:00:00Z")).bundles[0].decision, DecisionKind::Eligible);
}

#[test]
fn waiting_rollout_comes_after_the_contract_and_supersedes_nothing() {
    let second = platform_at(10..50);
    let now = ts("2026-12-01T09:00:00Z");
    let b = rolled("24h=10%; 48h=100%");
    // The contract's own reasons win: excluded, unvalidated, too much data impact, halted.
    let mut k = contract(Level::One, Level::One);
    k.platform = second.clone();
    assert_eq!(plan(&k, std::slice::from_ref(&b), &[], &moodle(), now).bundles[0].reason, Some(Reason::NotReported));
    let mut unvalidated = b.clone();
    unvalidated.validations.alpha = false;
    assert_eq!(on(&second, &[unvalidated], now).bundles[0].reason, Some(Reason::NotAlphaValidated));
    let mut major = b.clone();
    major.manifest.data_impact = DataImpact::Major;
    assert_eq!(on(&second, &[major], now).bundles[0].reason, Some(Reason::DataImpactTooHigh));
    let mut halted = b.clone();
    halted.state = BundleState::Halted;
    assert_eq!(on(&second, &[halted], now).bundles[0].reason, Some(Reason::Halted));
    // A newer version waiting for its wave leaves the older one eligible.
    let mut old = bundle("mod_quiz-fix", "1.0.0");
    old.reported_by.clear();
    let p = on(&second, &[old.clone(), b.clone()], now);
    assert_eq!(dr(p.get("mod_quiz-fix", "1.0.0").unwrap()), (DecisionKind::Eligible, None));
    assert_eq!(p.get("mod_quiz-fix", "1.0.1").unwrap().decision, DecisionKind::WaitingRollout);
    // Once its wave opens, it supersedes the older one.
    let p = on(&second, &[old, b.clone()], ts("2026-12-03T08:00:00Z"));
    assert_eq!(p.get("mod_quiz-fix", "1.0.0").unwrap().reason, Some(Reason::Superseded));
    // Installed is installed, wave or not.
    let p = plan(&contract(Level::Three, Level::One), std::slice::from_ref(&b), &[r("mod_quiz-fix", "1.0.1")], &moodle(), now);
    assert_eq!(dr(&p.bundles[0]), (DecisionKind::Installed, None));
    // A reporter at improvement level 1 takes it at once.
    let mut reported = b;
    reported.reported_by.insert(second.clone());
    assert_eq!(dr(&plan(&k, &[reported], &[], &moodle(), now).bundles[0]), (DecisionKind::Eligible, None));
}
