//! The fleet view (SPEC 6, wire contract 3): for a bundle version, where each platform stands,
//! derived from the latest plan its agent reported with its status and from its receipts.
//!
//! Pure functions over what the store holds ([`Fleet`], read once by [`Fleet::load`]): the
//! JSON API, `/metrics` and the dashboard call the same ones, so they cannot disagree.
//!
//! A platform's state for a bundle, first match wins:
//!
//! 1. no plan reported yet: `installed` when its status lists the bundle as installed,
//!    else `unknown`;
//! 2. its plan says `installed`: `installed`;
//! 3. the latest receipt naming the bundle is `rolled-back` or `failed`: that;
//! 4. the plan's decision: `eligible` is `scheduled` when the notice is out or none is
//!    needed (`notice_at` null or not after the plan's `now`), else `waiting-notice`;
//!    `waiting-rollout`, `waiting-validation`; `needs-scheduled-intervention` is
//!    `needs-intervention`; `skipped` is `held` (reason `held`), `excluded` when the
//!    contract does not take it (not-reported, component-not-selected, class-not-allowed,
//!    moodle-version-mismatch, moodle-layout-mismatch), else `skipped` (superseded, yanked,
//!    halted, dependency-missing, file-conflict);
//! 5. the plan does not name the bundle (published after the agent's last cycle): `unknown`.

use std::collections::BTreeMap;

use palier_policy::{Decision, Reason};
use jiff::Timestamp;
use palier_bundle::rollout::{Position, Rollout};
use palier_bundle::{BundleMetadata, BundleRef, PlatformId};
use serde::Serialize;

use crate::error::Result;
use crate::store::{Platform, ReceiptRef, StoredPlan, StoredReceipt, Store};

/// Where a platform stands for one bundle version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Installed,
    /// Eligible; its notice went out, or none is needed.
    Scheduled,
    /// Eligible; its notice is not out yet.
    WaitingNotice,
    /// Eligible but for its rollout wave, which has not opened for this platform.
    WaitingRollout,
    WaitingValidation,
    /// Admitted, but beyond what its stability level applies automatically.
    NeedsIntervention,
    /// The contract does not take it.
    Excluded,
    /// Not applied for another reason: superseded, yanked, halted, dependency-missing, file-conflict.
    Skipped,
    /// Held on the site.
    Held,
    RolledBack,
    Failed,
    /// No plan reported (or the plan does not name it yet).
    Unknown,
}

impl State {
    pub const ALL: [State; 12] = [
        State::Installed,
        State::Scheduled,
        State::WaitingNotice,
        State::WaitingRollout,
        State::WaitingValidation,
        State::NeedsIntervention,
        State::Excluded,
        State::Skipped,
        State::Held,
        State::RolledBack,
        State::Failed,
        State::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Installed => "installed",
            State::Scheduled => "scheduled",
            State::WaitingNotice => "waiting-notice",
            State::WaitingRollout => "waiting-rollout",
            State::WaitingValidation => "waiting-validation",
            State::NeedsIntervention => "needs-intervention",
            State::Excluded => "excluded",
            State::Skipped => "skipped",
            State::Held => "held",
            State::RolledBack => "rolled-back",
            State::Failed => "failed",
            State::Unknown => "unknown",
        }
    }

    /// The state named `text` (as in `?state=failed`).
    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reasons of a `skipped` decision that mean the contract does not take the bundle.
const EXCLUDED: [Reason; 5] = [Reason::NotReported, Reason::ComponentNotSelected, Reason::ClassNotAllowed, Reason::MoodleVersionMismatch, Reason::MoodleLayoutMismatch];

/// What the store knows of every platform: its record, its latest plan, and its latest
/// receipt per bundle.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub platforms: Vec<Platform>,
    /// By platform name.
    pub plans: BTreeMap<String, StoredPlan>,
    /// By (platform, `id@version`).
    pub receipts: BTreeMap<(String, String), ReceiptRef>,
}

impl Fleet {
    /// Read the whole fleet from the store (three queries).
    pub fn load(store: &Store) -> Result<Fleet> {
        Ok(Fleet { platforms: store.platforms()?, plans: store.plans()?, receipts: store.latest_receipts(None)? })
    }

    /// Where `platform` stands for `bundle`.
    pub fn state_of(&self, platform: &Platform, bundle: &BundleRef) -> PlatformState {
        let key = bundle.to_string();
        let receipt = self.receipts.get(&(platform.name.clone(), key)).cloned();
        let plan = self.plans.get(&platform.name);
        let decision = plan.and_then(|p| p.get(bundle));
        let (state, reason) = derive(platform, plan, decision, receipt.as_ref(), bundle);
        let times = decision.map(times).unwrap_or_default();
        PlatformState {
            platform: platform.name.clone(),
            state,
            reason,
            apply_at: times.apply_at,
            notice_at: times.notice_at,
            slot_end: times.slot_end,
            rollout_at: times.rollout_at,
            receipt,
        }
    }

    /// Every platform's state for `bundle`, by platform name.
    pub fn states(&self, bundle: &BundleRef) -> Vec<PlatformState> {
        self.platforms.iter().map(|p| self.state_of(p, bundle)).collect()
    }

    /// How many platforms are in each state for `bundle` (every state, zeros included).
    pub fn counts(&self, bundle: &BundleRef) -> BTreeMap<State, usize> {
        let mut counts: BTreeMap<State, usize> = State::ALL.into_iter().map(|s| (s, 0)).collect();
        for p in &self.platforms {
            let plan = self.plans.get(&p.name);
            let receipt = self.receipts.get(&(p.name.clone(), bundle.to_string()));
            let (state, _) = derive(p, plan, plan.and_then(|pl| pl.get(bundle)), receipt, bundle);
            *counts.entry(state).or_default() += 1;
        }
        counts
    }

    /// The view of one published bundle: its metadata, the counts and every platform.
    pub fn bundle_view(&self, meta: &BundleMetadata) -> BundleView {
        let m = &meta.manifest;
        let bundle = BundleRef { id: m.id.clone(), version: m.version.clone() };
        let platforms = self.states(&bundle);
        let mut counts: BTreeMap<State, usize> = State::ALL.into_iter().map(|s| (s, 0)).collect();
        for p in &platforms {
            *counts.entry(p.state).or_default() += 1;
        }
        BundleView {
            bundle: BundleSummary {
                id: m.id.to_string(),
                version: m.version.to_string(),
                component: m.component.to_string(),
                class: m.class.as_str().to_owned(),
                data_impact: m.data_impact.as_str().to_owned(),
                summary: m.summary.clone(),
                state: meta.state.as_str().to_owned(),
                state_reason: meta.state_reason.clone(),
                published_at: meta.published_at.clone(),
                alpha_validated: meta.validations.alpha,
                datasets: meta.validations.datasets.iter().cloned().collect(),
                reported_by: meta.reported_by.iter().map(ToString::to_string).collect(),
                rollout: meta.rollout.as_ref().map(|r| RolloutView::new(r, meta, &platforms)),
            },
            counts,
            platforms,
        }
    }
}

/// A bundle's staged rollout and how far it has got: one stage for the canaries (when it
/// names any) and one per wave, each with the instant it opens and, of the platforms the
/// control plane knows whose place falls in it, how many have the bundle installed, rolled
/// it back or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutView {
    /// The text form, as `rollout set` takes it.
    pub spec: String,
    /// Set while the rollout is paused: no wave opens after it.
    pub paused_at: Option<String>,
    pub stages: Vec<RolloutStage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutStage {
    /// `canary`, or `wave N` from 1.
    pub name: String,
    /// The cumulative share of the fleet the stage reaches (waves only).
    pub share: Option<u8>,
    /// When it opens (pause aside); null when the publication time cannot be read.
    pub opens_at: Option<String>,
    /// Platforms in the stage, and of them those in each end state.
    pub platforms: usize,
    pub installed: usize,
    pub rolled_back: usize,
    pub failed: usize,
}

impl RolloutView {
    fn new(rollout: &Rollout, meta: &BundleMetadata, platforms: &[PlatformState]) -> RolloutView {
        let published: Option<Timestamp> = meta.published_at.parse().ok();
        let mut stages: Vec<RolloutStage> = Vec::new();
        let stage = |name: String, share: Option<u8>, opens: Option<Timestamp>| RolloutStage {
            name,
            share,
            opens_at: opens.map(|t| t.to_string()),
            platforms: 0,
            installed: 0,
            rolled_back: 0,
            failed: 0,
        };
        let canary_stage = !rollout.canary.is_empty();
        if canary_stage {
            stages.push(stage("canary".into(), None, published));
        }
        for (i, w) in rollout.waves.iter().enumerate() {
            stages.push(stage(format!("wave {}", i + 1), Some(w.share), published.map(|p| rollout.wave_opens(p, i))));
        }
        for p in platforms {
            let Ok(name) = p.platform.parse::<PlatformId>() else { continue };
            let index = match rollout.position(&meta.manifest.id, &name) {
                Position::Canary => 0,
                Position::Wave(i) => i + usize::from(canary_stage),
                Position::Outside => continue,
            };
            let Some(s) = stages.get_mut(index) else { continue };
            s.platforms += 1;
            match p.state {
                State::Installed => s.installed += 1,
                State::RolledBack => s.rolled_back += 1,
                State::Failed => s.failed += 1,
                _ => {}
            }
        }
        RolloutView { spec: rollout.to_string(), paused_at: rollout.paused_at.map(|t| t.to_string()), stages }
    }
}

/// One platform's state for a bundle: wire contract 3's `platforms[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlatformState {
    pub platform: String,
    pub state: State,
    /// The plan's reason code when it gives one (`held`, `class-not-allowed`...).
    pub reason: Option<String>,
    pub apply_at: Option<String>,
    pub notice_at: Option<String>,
    pub slot_end: Option<String>,
    pub rollout_at: Option<String>,
    /// The latest receipt of the platform naming the bundle.
    pub receipt: Option<ReceiptRef>,
}

/// The published bundle, as the fleet view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleSummary {
    pub id: String,
    pub version: String,
    pub component: String,
    pub class: String,
    pub data_impact: String,
    pub summary: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub published_at: String,
    pub alpha_validated: bool,
    pub datasets: Vec<String>,
    pub reported_by: Vec<String>,
    /// The staged rollout, when the bundle has one.
    pub rollout: Option<RolloutView>,
}

/// `GET /api/v1/bundles/{id}/{version}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleView {
    pub bundle: BundleSummary,
    pub counts: BTreeMap<State, usize>,
    pub platforms: Vec<PlatformState>,
}

/// `GET /api/v1/platforms/{name}`: the registered and reported contract and status (the
/// store's record), the latest plan, the holds, the recent receipts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlatformView {
    pub platform: Platform,
    /// How what the agent reports differs from the registered contract, in words.
    pub contract_mismatch: Vec<String>,
    pub plan: Option<StoredPlan>,
    pub receipts: Vec<StoredReceipt>,
}

/// Receipts shown per platform.
pub const RECENT_RECEIPTS: usize = 20;

impl PlatformView {
    /// The view of `name`, `None` when it is not registered.
    pub fn load(store: &Store, name: &PlatformId) -> Result<Option<PlatformView>> {
        let Some(platform) = store.platform(name)? else { return Ok(None) };
        Ok(Some(PlatformView {
            contract_mismatch: platform.contract_mismatch(),
            plan: store.plan(name)?,
            receipts: store.recent_receipts(name, RECENT_RECEIPTS)?,
            platform,
        }))
    }
}

fn derive(platform: &Platform, plan: Option<&StoredPlan>, decision: Option<&Decision>, receipt: Option<&ReceiptRef>, bundle: &BundleRef) -> (State, Option<String>) {
    let listed_installed = || platform.installed.iter().any(|i| i.id == bundle.id.as_str() && i.version == bundle.version.to_string());
    let Some(plan) = plan else {
        return (if listed_installed() { State::Installed } else { State::Unknown }, None);
    };
    let reason = decision.and_then(|d| d.reason).map(|r| r.as_str().to_owned());
    let kind = decision.map(|d| d.decision.as_str());
    if kind == Some("installed") {
        return (State::Installed, reason);
    }
    match receipt.map(|r| r.outcome.as_str()) {
        Some("rolled-back") => return (State::RolledBack, reason),
        Some("failed") => return (State::Failed, reason),
        _ => {}
    }
    let Some(d) = decision else { return (State::Unknown, None) };
    let state = match d.decision.as_str() {
        "eligible" => match &d.notice_at {
            Some(n) if n.timestamp() > plan.now => State::WaitingNotice,
            _ => State::Scheduled,
        },
        "waiting-rollout" => State::WaitingRollout,
        "waiting-validation" => State::WaitingValidation,
        "needs-scheduled-intervention" => State::NeedsIntervention,
        _ => match d.reason {
            Some(Reason::Held) => State::Held,
            Some(r) if EXCLUDED.contains(&r) => State::Excluded,
            Some(_) => State::Skipped,
            None => State::Unknown,
        },
    };
    (state, reason)
}

/// The times of a decision, as `plan --json` writes them (RFC 3339 with the platform's
/// offset): read from its JSON so that every time a decision carries comes through.
#[derive(Debug, Default)]
struct Times {
    apply_at: Option<String>,
    notice_at: Option<String>,
    slot_end: Option<String>,
    rollout_at: Option<String>,
}

fn times(d: &Decision) -> Times {
    let json = serde_json::to_value(d).unwrap_or_default();
    let get = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    Times { apply_at: get("apply_at"), notice_at: get("notice_at"), slot_end: get("slot_end"), rollout_at: get("rollout_at") }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn platform(name: &str, installed: &[&str]) -> Platform {
        let installed: Vec<serde_json::Value> = installed
            .iter()
            .map(|k| {
                let (id, version) = k.split_once('@').unwrap();
                serde_json::json!({"id": id, "version": version})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "name": name, "created_at": "2026-12-01T00:00:00Z", "improvement_level": 3, "stability_level": 2,
            "installed": installed, "next_intervention": null, "last_outcome": null, "last_seen": null
        }))
        .unwrap()
    }

    fn plan(entries: serde_json::Value) -> StoredPlan {
        StoredPlan { now: "2026-12-01T09:00:00Z".parse().unwrap(), received_at: "2026-12-01T09:00:01Z".into(), bundles: serde_json::from_value(entries).unwrap() }
    }

    fn receipt(outcome: &str) -> ReceiptRef {
        ReceiptRef { id: format!("r-{outcome}"), outcome: outcome.into(), finished_at: "2026-11-30T22:00:00Z".into(), reason: None }
    }

    fn fleet(plans: Vec<(&str, StoredPlan)>, receipts: Vec<(&str, ReceiptRef)>, platforms: Vec<Platform>) -> Fleet {
        Fleet {
            platforms,
            plans: plans.into_iter().map(|(p, plan)| (p.to_owned(), plan)).collect(),
            receipts: receipts.into_iter().map(|(p, r)| ((p.to_owned(), "fix@1.0.0".to_owned()), r)).collect(),
        }
    }

    #[test]
    fn precedence_of_the_states() {
        let fix: BundleRef = "fix@1.0.0".parse().unwrap();
        let installed = plan(serde_json::json!([{"id": "fix", "version": "1.0.0", "decision": "installed", "reason": null}]));
        let at_now = plan(serde_json::json!([{"id": "fix", "version": "1.0.0", "decision": "eligible", "reason": null,
            "apply_at": "2026-12-01T22:00:00+01:00", "notice_at": "2026-12-01T10:00:00+01:00"}]));
        let other = plan(serde_json::json!([{"id": "other", "version": "1.0.0", "decision": "installed", "reason": null}]));
        let f = fleet(
            vec![("a", installed), ("b", at_now.clone()), ("c", other), ("e", at_now)],
            // a re-applied it after rolling it back: its plan (installed) wins over the old receipt.
            vec![("a", receipt("rolled-back")), ("e", receipt("applied"))],
            vec![platform("a", &[]), platform("b", &[]), platform("c", &[]), platform("d", &["fix@1.0.0"]), platform("e", &[])],
        );
        let states: Vec<State> = f.states(&fix).iter().map(|s| s.state).collect();
        // b: the notice time is the plan's now, so it is out; c: the plan does not name it yet;
        // d: no plan, but its status lists it installed; e: an applied receipt is no state.
        assert_eq!(states, [State::Installed, State::Scheduled, State::Unknown, State::Installed, State::Scheduled]);
        let counts = f.counts(&fix);
        assert_eq!((counts[&State::Installed], counts[&State::Scheduled], counts[&State::Unknown], counts[&State::Failed]), (2, 2, 1, 0));
        assert_eq!(counts.len(), State::ALL.len());
    }

    #[test]
    fn state_names_read_back() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(State::parse("eligible"), None);
    }
}
