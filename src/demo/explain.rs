//! Plain-language sentences for a newcomer: what a contract's levels mean, and why a plan
//! did not apply a bundle (from its decision and reason code, as `plan --json` gives them).

use palier_bundle::policy::{Decision, DecisionKind, Reason};
use palier_bundle::{BundleMetadata, ChangeClass};

use super::scenario::{Platform, ZONE};

/// The improvement level: WHICH bundles the platform receives.
pub fn improvement(p: &Platform) -> String {
    match p.improvement {
        1 => "level 1, \"on defect report\": it receives only the fixes for defects it reported itself".to_owned(),
        2 => format!(
            "level 2, \"selective systematic\": its own reports, plus purely technical fixes (bug, performance) \
             for the components in its contract ({}), whoever asked for them",
            p.components.join(", ")
        ),
        _ => "level 3, \"global continuous\": every validated bundle, for every component".to_owned(),
    }
}

/// The stability level: WHEN and HOW they are applied.
pub fn stability(p: &Platform) -> String {
    match p.stability {
        1 => "level 1, \"as soon as possible\": a bundle is applied once the alpha team has validated it, at any hour; \
              then its own checks and the home, login and course pages are checked, and a failure puts the previous \
              code back within the 5-minute recovery budget. A major or global data impact is never applied automatically."
            .to_owned(),
        2 => format!(
            "level 2, \"negotiated windows\": only in its windows ({}, {ZONE} time), after a notice shown to users at \
             least {} before; everything due in a window goes live in one swap, then is checked, and rolled back on \
             failure. Bundles need alpha validation plus qualification on 2 test datasets; a global data impact is never \
             applied automatically.",
            p.windows.join(" and "),
            p.notice
        ),
        _ => format!(
            "level 3, \"maintenance calendar\": only in the slots of its calendar ({}), announced {} before: maintenance \
             mode on, full backup (it must succeed), swap, validation while still in maintenance, maintenance off, checks; \
             a failure puts the previous code back and restores the backup if data changed. Bundles need alpha validation \
             plus 2 test datasets.",
            p.calendar.iter().map(|s| slot(s)).collect::<Vec<_>>().join(", "),
            p.notice
        ),
    }
}

/// `2026-12-05T21:00/2026-12-06T01:00` as `Sat 5 Dec 21:00 to Sun 6 Dec 01:00`.
fn slot(s: &str) -> String {
    let fmt = |t: &str| {
        t.parse::<jiff::civil::DateTime>().map(|d| d.strftime("%a %-d %b %H:%M").to_string()).unwrap_or_else(|_| t.to_owned())
    };
    match s.split_once('/') {
        Some((a, b)) => format!("{} to {}", fmt(a), fmt(b)),
        None => s.to_owned(),
    }
}

fn class_meaning(c: ChangeClass) -> &'static str {
    match c {
        ChangeClass::Technical => "a purely technical fix",
        ChangeClass::NonLayout => "a functional change (\"non-layout\": new behaviour, same page layout)",
        ChangeClass::Global => "a \"global\" change (it may reorganise how the platform is used or move page elements)",
    }
}

/// Why the plan did not (or not yet) apply this bundle, in one sentence; the decision and
/// reason codes follow in brackets, as `palier-agent plan --json` prints them.
pub fn why_not(p: &Platform, d: &Decision, meta: Option<&BundleMetadata>) -> String {
    let Some(reason) = d.reason else {
        return format!("{} [{}]", d.detail.clone().unwrap_or_else(|| "no reason given".into()), d.decision);
    };
    let m = meta.map(|m| &m.manifest);
    let detail = d.detail.clone().unwrap_or_default();
    let sentence = match reason {
        Reason::NotReported => format!("{} did not report the defect it fixes, and improvement level 1 only receives its own fix requests", p.id),
        Reason::ComponentNotSelected => match m {
            Some(m) => format!("it changes {}, which is not one of the components in {}'s contract", m.component, p.id),
            None => detail,
        },
        Reason::ClassNotAllowed => match m {
            Some(m) => format!("it is {}; improvement level 2 only takes purely technical fixes", class_meaning(m.class)),
            None => detail,
        },
        Reason::DataImpactTooHigh => match m {
            Some(m) => format!(
                "its data impact is {}, which stability level {} never applies automatically: it needs an intervention planned with the platform owner",
                m.data_impact, p.stability
            ),
            None => detail,
        },
        Reason::NotAlphaValidated => "the alpha team has not validated it yet".to_owned(),
        Reason::InsufficientDatasets => {
            let n = meta.map_or(0, |m| m.validations.datasets.len());
            format!("validated by the alpha team, but qualified on {n} test dataset{} so far; stability level {} needs 2", if n == 1 { "" } else { "s" }, p.stability)
        }
        Reason::MoodleVersionMismatch => format!("it does not fit this site's Moodle release ({detail})"),
        Reason::MoodleLayoutMismatch => format!("its files do not fit this site's Moodle code ({detail})"),
        Reason::DependencyMissing => format!("it must come after another bundle that is neither installed nor due here ({detail})"),
        Reason::Superseded => format!("a newer version replaces it ({detail})"),
        Reason::Yanked => format!("the release manager withdrew it ({detail})"),
        Reason::Halted => {
            let why = meta.and_then(|m| m.state_reason.clone()).unwrap_or(detail);
            match why.strip_prefix("auto-halt: ") {
                Some(rollbacks) => format!("the control plane paused it for every platform: {rollbacks}"),
                None => format!("the release manager paused it: {why}"),
            }
        }
    };
    let kind = match d.decision {
        DecisionKind::WaitingValidation => "waiting for validation: ",
        DecisionKind::NeedsScheduledIntervention => "needs a scheduled intervention: ",
        DecisionKind::Skipped => "",
        DecisionKind::Eligible | DecisionKind::Installed => "",
    };
    format!("{kind}{sentence} [{}: {reason}]", d.decision)
}
