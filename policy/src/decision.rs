//! The policy's output: one [`Decision`] per bundle, gathered in a [`Plan`] whose JSON is
//! the `plan --json` document of SPEC 5.

use std::fmt;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use semver::Version;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::contract::Level;
use palier_bundle::metadata::BundleRef;
use palier_bundle::names::{BundleId, PlatformId};

/// What the plan says about a bundle (SPEC 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionKind {
    /// Will be applied automatically at `apply_at`.
    Eligible,
    /// Already installed on the platform.
    Installed,
    /// Not for this platform, or not applicable: see the reason.
    Skipped,
    /// Admitted by the improvement axis, excluded by the stability axis: never applied automatically.
    NeedsScheduledIntervention,
    /// Admitted, but not yet validated as this platform's stability level requires.
    WaitingValidation,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Eligible => "eligible",
            DecisionKind::Installed => "installed",
            DecisionKind::Skipped => "skipped",
            DecisionKind::NeedsScheduledIntervention => "needs-scheduled-intervention",
            DecisionKind::WaitingValidation => "waiting-validation",
        }
    }
}

impl fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a bundle is not eligible: the reason codes of SPEC 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    NotReported,
    ComponentNotSelected,
    ClassNotAllowed,
    DataImpactTooHigh,
    NotAlphaValidated,
    InsufficientDatasets,
    MoodleVersionMismatch,
    MoodleLayoutMismatch,
    DependencyMissing,
    Superseded,
    Yanked,
    Halted,
    /// Held on this site (rolled back there, held by hand, or backing off after a failure).
    Held,
    /// Writes or deletes a path that another bundle of a different id, installed or due,
    /// also writes or deletes, and neither names the other in `after`.
    FileConflict,
    /// Changes the database (`upgrade = true`, or a `version.php`) and the site has no
    /// backup hook: never applied without a backup to restore.
    BackupMissing,
}

impl Reason {
    pub const ALL: [Reason; 15] = [
        Reason::NotReported,
        Reason::ComponentNotSelected,
        Reason::ClassNotAllowed,
        Reason::DataImpactTooHigh,
        Reason::NotAlphaValidated,
        Reason::InsufficientDatasets,
        Reason::MoodleVersionMismatch,
        Reason::MoodleLayoutMismatch,
        Reason::DependencyMissing,
        Reason::Superseded,
        Reason::Yanked,
        Reason::Halted,
        Reason::Held,
        Reason::FileConflict,
        Reason::BackupMissing,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotReported => "not-reported",
            Reason::ComponentNotSelected => "component-not-selected",
            Reason::ClassNotAllowed => "class-not-allowed",
            Reason::DataImpactTooHigh => "data-impact-too-high",
            Reason::NotAlphaValidated => "not-alpha-validated",
            Reason::InsufficientDatasets => "insufficient-datasets",
            Reason::MoodleVersionMismatch => "moodle-version-mismatch",
            Reason::MoodleLayoutMismatch => "moodle-layout-mismatch",
            Reason::DependencyMissing => "dependency-missing",
            Reason::Superseded => "superseded",
            Reason::Yanked => "yanked",
            Reason::Halted => "halted",
            Reason::Held => "held",
            Reason::FileConflict => "file-conflict",
            Reason::BackupMissing => "backup-missing",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bundle version held on one site: an input of the plan (the agent keeps its holds),
/// never decided by the policy itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub bundle: BundleRef,
    pub since: Timestamp,
    pub reason: String,
    /// A hold that lifts itself at this instant (a back-off); `None`: until released.
    pub until: Option<Timestamp>,
}

impl Hold {
    /// Whether the hold stops the bundle at `now`.
    pub fn active(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// The decision for one bundle.
///
/// JSON (SPEC 5): `id`, `version`, `decision` and `reason` (`null` when none) always;
/// `detail` when there is one; `apply_at` and `notice_at` (RFC 3339 with the platform's
/// offset, or `null`) for eligible bundles only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: BundleId,
    pub version: Version,
    pub decision: DecisionKind,
    pub reason: Option<Reason>,
    /// Human readable, e.g. "class global; level 2 admits technical".
    pub detail: Option<String>,
    /// When it will be applied (eligible only); `None` when no slot is found within the horizon.
    pub apply_at: Option<Zoned>,
    /// When the users' notice goes out (eligible at stability 2 and 3 only).
    pub notice_at: Option<Zoned>,
}

impl Decision {
    pub fn key(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }
}

/// The whole `plan --json` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub platform: PlatformId,
    pub now: Zoned,
    pub improvement_level: Level,
    pub stability_level: Level,
    /// Sorted by id, then version.
    pub bundles: Vec<Decision>,
}

impl Plan {
    pub fn get(&self, id: &str, version: &str) -> Option<&Decision> {
        self.bundles.iter().find(|d| d.id.as_str() == id && d.version.to_string() == version)
    }
}

/// `2026-12-01T22:00:00+01:00`: RFC 3339 with the zone's offset at that instant.
pub fn rfc3339(z: &Zoned) -> String {
    z.timestamp().display_with_offset(z.offset()).to_string()
}

fn parse_rfc3339(s: &str) -> Result<Zoned, String> {
    let ts: Timestamp = s.parse().map_err(|e| format!("{s:?} is not an RFC 3339 timestamp: {e}"))?;
    let offset = jiff::fmt::temporal::Pieces::parse(s)
        .ok()
        .and_then(|p| p.to_numeric_offset())
        .ok_or_else(|| format!("{s:?} has no UTC offset"))?;
    Ok(ts.to_zoned(TimeZone::fixed(offset)))
}

struct Rfc(Zoned);
impl Serialize for Rfc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(&self.0))
    }
}
impl<'de> Deserialize<'de> for Rfc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_rfc3339(&String::deserialize(d)?).map(Rfc).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let eligible = self.decision == DecisionKind::Eligible;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("version", &self.version)?;
        map.serialize_entry("decision", &self.decision)?;
        map.serialize_entry("reason", &self.reason)?;
        if let Some(detail) = &self.detail {
            map.serialize_entry("detail", detail)?;
        }
        if eligible {
            map.serialize_entry("apply_at", &self.apply_at.as_ref().map(rfc3339))?;
            map.serialize_entry("notice_at", &self.notice_at.as_ref().map(rfc3339))?;
        }
        map.end()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionRepr {
    id: BundleId,
    version: Version,
    decision: DecisionKind,
    reason: Option<Reason>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    apply_at: Option<Rfc>,
    #[serde(default)]
    notice_at: Option<Rfc>,
}

/// Reads the JSON back; zones come back as fixed offsets (the JSON carries no zone name).
impl<'de> Deserialize<'de> for Decision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = DecisionRepr::deserialize(d)?;
        Ok(Decision {
            id: r.id,
            version: r.version,
            decision: r.decision,
            reason: r.reason,
            detail: r.detail,
            apply_at: r.apply_at.map(|z| z.0),
            notice_at: r.notice_at.map(|z| z.0),
        })
    }
}

impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("platform", &self.platform)?;
        map.serialize_entry("now", &rfc3339(&self.now))?;
        map.serialize_entry("improvement_level", &self.improvement_level)?;
        map.serialize_entry("stability_level", &self.stability_level)?;
        map.serialize_entry("bundles", &self.bundles)?;
        map.end()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanRepr {
    platform: PlatformId,
    now: Rfc,
    improvement_level: Level,
    stability_level: Level,
    bundles: Vec<Decision>,
}

impl<'de> Deserialize<'de> for Plan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = PlanRepr::deserialize(d)?;
        Ok(Plan {
            platform: r.platform,
            now: r.now.0,
            improvement_level: r.improvement_level,
            stability_level: r.stability_level,
            bundles: r.bundles,
        })
    }
}
