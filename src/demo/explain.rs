//! Plain-language sentences for a newcomer: why a plan did not apply a bundle (from its
//! decision and reason code, as `plan --json` gives them). What a contract's levels mean is
//! said by `palier_agent::cli::contract`, which `check-config` prints too.

use palier_policy::{Decision, DecisionKind, Reason};
use palier_bundle::{BundleMetadata, ChangeClass};

use super::scenario::Platform;

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
        Reason::Held => format!("this site holds it ({detail})"),
        Reason::FileConflict => format!("it would overwrite another bundle's fix ({detail})"),
        Reason::BackupMissing => format!("it changes the database and this site takes no backup ({detail})"),
    };
    let kind = match d.decision {
        DecisionKind::WaitingValidation => "waiting for validation: ",
        DecisionKind::NeedsScheduledIntervention => "needs a scheduled intervention: ",
        DecisionKind::Skipped => "",
        DecisionKind::Eligible | DecisionKind::Installed => "",
    };
    format!("{kind}{sentence} [{}: {reason}]", d.decision)
}
