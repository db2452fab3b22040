//! Markers: small signed targets of delegated roles whose keys may live with the online
//! server, each trusted for nothing but its own folder of names. They cannot ship or change
//! code; each says one thing about one published bundle version:
//!
//! - halt markers, `halts/ID@VERSION.json`, targets of the `halts` role: the bundle is halted
//!   (`{"bundle", "version", "reason", "at"}`). A halt marker no longer halts once the bundle's
//!   own (offline-signed) metadata says it was resumed after the marker's time (`resumed_at`):
//!   un-halting takes the release manager's keys, whatever the online role signs next.
//! - report markers, `reports/ID@VERSION.json`, targets of the `reports` role: the platforms
//!   whose fix requests name the bundle (`{"bundle", "version", "platforms", "at"}`); they join
//!   the bundle's signed `reported_by`. A marker for a bundle that is not published applies to
//!   nothing.
//!
//! The marker's `custom` is also the file's content.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metadata::{BundleMetadata, BundleRef, BundleState};
use crate::names::PlatformId;

/// The folder of halt markers among the target names, and the `halts` role's only path.
pub const PREFIX: &str = "halts/";

/// The path pattern the top-level targets delegate to the `halts` role.
pub const PATH_PATTERN: &str = "halts/*";

/// The name of the delegated role that signs halt markers.
pub const ROLE: &str = "halts";

/// The folder of report markers, the `reports` role's only path.
pub const REPORTS_PREFIX: &str = "reports/";

/// The path pattern the top-level targets delegate to the `reports` role.
pub const REPORTS_PATH_PATTERN: &str = "reports/*";

/// The name of the delegated role that signs report markers.
pub const REPORTS_ROLE: &str = "reports";

/// The roles that sign markers (their keys are online), in delegation order: before the
/// bins, which are terminating, so that a search by name meets them first.
pub const MARKER_ROLES: [&str; 2] = [ROLE, REPORTS_ROLE];

/// One halt marker: which bundle version, why, and when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaltMarker {
    pub bundle: BundleRef,
    pub reason: String,
    /// RFC 3339, as written by the server.
    pub at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    bundle: String,
    version: String,
    reason: String,
    at: String,
}

/// One report marker: the platforms that reported the defect a published bundle fixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMarker {
    pub bundle: BundleRef,
    pub platforms: BTreeSet<PlatformId>,
    /// RFC 3339, as written by the server (when the last platform was added).
    pub at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportWire {
    bundle: String,
    version: String,
    platforms: BTreeSet<PlatformId>,
    at: String,
}

/// Any marker, as read from a role's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    Halt(HaltMarker),
    Reports(ReportMarker),
}

impl Marker {
    /// The marker a target names, `None` for a name in no marker folder (a bundle).
    pub fn from_target(target_name: &str, custom: serde_json::Value) -> Option<Result<Marker>> {
        is_marker(target_name).then(|| Marker::from_custom(target_name, custom))
    }

    /// Read the marker of a target in a marker folder (see [`is_marker`]).
    pub fn from_custom(target_name: &str, custom: serde_json::Value) -> Result<Marker> {
        if target_name.starts_with(REPORTS_PREFIX) {
            return ReportMarker::from_custom(target_name, custom).map(Marker::Reports);
        }
        HaltMarker::from_custom(target_name, custom).map(Marker::Halt)
    }

    pub fn bundle(&self) -> &BundleRef {
        match self {
            Marker::Halt(m) => &m.bundle,
            Marker::Reports(m) => &m.bundle,
        }
    }

    /// Apply the marker to its bundle's metadata (see [`HaltMarker::apply`],
    /// [`ReportMarker::apply`]); other bundles are left as they are.
    pub fn apply(&self, meta: &mut BundleMetadata) -> bool {
        match self {
            Marker::Halt(m) => m.apply(meta),
            Marker::Reports(m) => m.apply(meta),
        }
    }
}

/// Whether `meta` is the metadata of `bundle`.
fn is_of(meta: &BundleMetadata, bundle: &BundleRef) -> bool {
    meta.manifest.id == bundle.id && meta.manifest.version == bundle.version
}

/// Parse a marker's `at` (RFC 3339).
fn instant(what: &'static str, target_name: &str, at: &str) -> Result<jiff::Timestamp> {
    at.parse().map_err(|e| Error::invalid(what, target_name, format!("its time {at:?} is not an RFC 3339 instant: {e}")))
}

impl HaltMarker {
    /// The marker's target name: `halts/ID@VERSION.json`.
    pub fn target_name(&self) -> String {
        target_name(&self.bundle)
    }

    pub fn to_custom(&self) -> serde_json::Value {
        let wire = Wire { bundle: self.bundle.id.to_string(), version: self.bundle.version.to_string(), reason: self.reason.clone(), at: self.at.clone() };
        serde_json::to_value(wire).unwrap_or(serde_json::Value::Null)
    }

    /// Read a marker from its target's `custom`, refusing one whose name is not its own or
    /// whose time is not an instant.
    pub fn from_custom(target_name: &str, custom: serde_json::Value) -> Result<HaltMarker> {
        let wire: Wire = serde_json::from_value(custom).map_err(|e| Error::invalid("halt marker", target_name, e.to_string()))?;
        let bundle: BundleRef = format!("{}@{}", wire.bundle, wire.version).parse()?;
        if wire.reason.is_empty() || wire.reason.len() > 500 || wire.reason.chars().any(char::is_control) {
            return Err(Error::invalid("halt marker", target_name, "its reason must be one line of 1 to 500 bytes"));
        }
        instant("halt marker", target_name, &wire.at)?;
        let marker = HaltMarker { bundle, reason: wire.reason, at: wire.at };
        if marker.target_name() != target_name {
            return Err(Error::invalid("halt marker", target_name, format!("it names {}, whose marker is {}", marker.bundle, marker.target_name())));
        }
        Ok(marker)
    }

    /// The marker's time; an unreadable one (never written by the server, refused by
    /// [`HaltMarker::from_custom`]) counts as the latest possible, so it halts.
    pub fn at(&self) -> jiff::Timestamp {
        self.at.parse().unwrap_or(jiff::Timestamp::MAX)
    }

    /// Whether the bundle's own metadata resumed it after this marker was written: then the
    /// marker no longer halts it. Only the offline-signed metadata can say so.
    pub fn resumed_by(&self, meta: &BundleMetadata) -> bool {
        meta.resumed_at.as_deref().and_then(|r| r.parse::<jiff::Timestamp>().ok()).is_some_and(|r| r >= self.at())
    }

    /// Apply the marker to its bundle's metadata: an active bundle not resumed since the
    /// marker's time becomes halted with the marker's reason (as the bundle's own halt would
    /// read); a bundle already halted or yanked by its own metadata keeps its word.
    /// Returns whether it changed anything.
    pub fn apply(&self, meta: &mut BundleMetadata) -> bool {
        if !is_of(meta, &self.bundle) || meta.state != BundleState::Active || self.resumed_by(meta) {
            return false;
        }
        meta.state = BundleState::Halted;
        meta.state_reason = Some(self.reason.clone());
        true
    }
}

impl ReportMarker {
    /// The marker's target name: `reports/ID@VERSION.json`.
    pub fn target_name(&self) -> String {
        reports_target_name(&self.bundle)
    }

    pub fn to_custom(&self) -> serde_json::Value {
        let wire = ReportWire { bundle: self.bundle.id.to_string(), version: self.bundle.version.to_string(), platforms: self.platforms.clone(), at: self.at.clone() };
        serde_json::to_value(wire).unwrap_or(serde_json::Value::Null)
    }

    /// Read a marker from its target's `custom`, refusing one whose name is not its own, that
    /// names no platform, or whose time is not an instant.
    pub fn from_custom(target_name: &str, custom: serde_json::Value) -> Result<ReportMarker> {
        let wire: ReportWire = serde_json::from_value(custom).map_err(|e| Error::invalid("report marker", target_name, e.to_string()))?;
        let bundle: BundleRef = format!("{}@{}", wire.bundle, wire.version).parse()?;
        if wire.platforms.is_empty() {
            return Err(Error::invalid("report marker", target_name, "it names no platform"));
        }
        instant("report marker", target_name, &wire.at)?;
        let marker = ReportMarker { bundle, platforms: wire.platforms, at: wire.at };
        if marker.target_name() != target_name {
            return Err(Error::invalid("report marker", target_name, format!("it names {}, whose marker is {}", marker.bundle, marker.target_name())));
        }
        Ok(marker)
    }

    /// Add the marker's platforms to its bundle's `reported_by`. Returns whether it changed
    /// anything.
    pub fn apply(&self, meta: &mut BundleMetadata) -> bool {
        if !is_of(meta, &self.bundle) {
            return false;
        }
        let before = meta.reported_by.len();
        meta.reported_by.extend(self.platforms.iter().cloned());
        meta.reported_by.len() != before
    }
}

/// The report marker target name of `bundle`.
pub fn reports_target_name(bundle: &BundleRef) -> String {
    format!("{REPORTS_PREFIX}{bundle}.json")
}

/// The marker target name of `bundle`.
pub fn target_name(bundle: &BundleRef) -> String {
    format!("{PREFIX}{bundle}.json")
}

/// Whether a target name is in a marker folder (halts or reports).
pub fn is_marker(target_name: &str) -> bool {
    target_name.starts_with(PREFIX) || target_name.starts_with(REPORTS_PREFIX)
}

/// The names a delegated role is trusted for, as the top-level targets delegate them.
#[derive(Debug, Clone)]
pub enum RolePaths {
    /// `path_hash_prefixes`: the sha256 (hex) of the name starts with one of these.
    HashPrefixes(Vec<String>),
    /// `paths`: shell-style patterns, `*` any run of characters and `?` one character; a
    /// pattern with other glob syntax (`[`) matches nothing here.
    Patterns(Vec<String>),
}

impl RolePaths {
    fn matches(&self, name: &str, digest_hex: &str) -> bool {
        match self {
            RolePaths::HashPrefixes(prefixes) => prefixes.iter().any(|p| digest_hex.starts_with(p.as_str())),
            RolePaths::Patterns(patterns) => patterns.iter().any(|p| !p.contains('[') && glob(p.as_bytes(), name.as_bytes())),
        }
    }
}

/// Which of `roles` (in delegation order, every one terminating, as this repository makes
/// them) a client searching for `name` consults: the first whose paths match. Only that role
/// may list the name; a listing by another role is one a search would never find, and the
/// agent refuses it (tough lists every role's targets without this check). One sha256 per
/// name and a prefix comparison per role.
pub fn trusted_role(roles: &[RolePaths], name: &str) -> Option<usize> {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    roles.iter().position(|r| r.matches(name, &digest))
}

/// [`trusted_role`] for many names over the same roles: the hash prefixes in a map, so a
/// name costs one sha256 and a lookup per prefix length instead of a comparison per role
/// (10,000 names over 256 bins).
pub struct TrustedRoles<'a> {
    roles: &'a [RolePaths],
    /// The first role (in delegation order) holding each prefix.
    prefixes: std::collections::HashMap<&'a str, usize>,
    lengths: Vec<usize>,
}

impl<'a> TrustedRoles<'a> {
    pub fn new(roles: &'a [RolePaths]) -> Self {
        let mut prefixes = std::collections::HashMap::new();
        let mut lengths = Vec::new();
        for (i, r) in roles.iter().enumerate() {
            if let RolePaths::HashPrefixes(ps) = r {
                for p in ps {
                    prefixes.entry(p.as_str()).or_insert(i);
                    if !lengths.contains(&p.len()) {
                        lengths.push(p.len());
                    }
                }
            }
        }
        TrustedRoles { roles, prefixes, lengths }
    }

    /// The same answer as [`trusted_role`].
    pub fn of(&self, name: &str) -> Option<usize> {
        use sha2::Digest;
        let mut hex = [0u8; 64];
        hex::encode_to_slice(sha2::Sha256::digest(name.as_bytes()), &mut hex).ok()?;
        let digest = std::str::from_utf8(&hex).ok()?;
        let by_pattern = self.roles.iter().position(|r| matches!(r, RolePaths::Patterns(_)) && r.matches(name, digest));
        let by_prefix = self.lengths.iter().filter_map(|&l| digest.get(..l).and_then(|p| self.prefixes.get(p)).copied()).min();
        match (by_pattern, by_prefix) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `*` matches any run of bytes (`/` included, as tough's and python-tuf's matching of one
/// path segment against one segment would for our single-level names), `?` one byte.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn marker() -> HaltMarker {
        HaltMarker { bundle: "quiz-fix@1.0.1".parse().unwrap(), reason: "auto-halt: rolled back on univ-a".into(), at: "2026-11-30T10:00:00Z".into() }
    }

    #[test]
    fn round_trips_through_custom() {
        let m = marker();
        assert_eq!(m.target_name(), "halts/quiz-fix@1.0.1.json");
        assert!(is_marker(&m.target_name()));
        assert_eq!(HaltMarker::from_custom(&m.target_name(), m.to_custom()).unwrap(), m);
    }

    fn meta_of(id: &str, version: &str) -> BundleMetadata {
        BundleMetadata::new(crate::hostile::manifest_for(id, version, &[("a.php", b"x")]), BTreeSet::new(), "2026-11-29T00:00:00Z".into())
    }

    /// A halt marker halts until the bundle's own metadata says it was resumed at or after
    /// the marker's time; a marker written after the resume halts again.
    #[test]
    fn a_halt_marker_halts_until_the_bundles_own_metadata_resumes_it_after_the_marker() {
        let m = HaltMarker { bundle: "quiz-fix@1.0.1".parse().unwrap(), reason: "auto-halt".into(), at: "2026-11-30T10:00:00Z".into() };
        let mut meta = meta_of("quiz-fix", "1.0.1");
        assert!(m.clone().apply(&mut meta.clone()));
        meta.resumed_at = Some("2026-11-30T09:59:59Z".into());
        let mut before = meta.clone();
        assert!(m.apply(&mut before), "resumed before the marker: still halted");
        assert_eq!((before.state, before.state_reason.as_deref()), (BundleState::Halted, Some("auto-halt")));
        meta.resumed_at = Some("2026-11-30T10:00:00Z".into());
        assert!(!m.apply(&mut meta.clone()), "resumed at the marker's time: not halted");
        let later = HaltMarker { at: "2026-11-30T11:00:00Z".into(), ..m.clone() };
        assert!(later.apply(&mut meta.clone()), "a marker after the resume halts again");
        assert!(!m.apply(&mut meta_of("quiz-fix", "1.0.2")), "another version is left alone");
        let mut unreadable = m.to_custom();
        unreadable["at"] = serde_json::json!("yesterday");
        assert!(HaltMarker::from_custom(&m.target_name(), unreadable).is_err());
    }

    #[test]
    fn a_report_marker_adds_its_platforms_to_its_bundle_only() {
        let p = |s: &str| PlatformId::new(s).unwrap();
        let m = ReportMarker { bundle: "quiz-fix@1.0.1".parse().unwrap(), platforms: BTreeSet::from([p("univ-a"), p("univ-b")]), at: "2026-11-30T10:00:00Z".into() };
        assert_eq!(m.target_name(), "reports/quiz-fix@1.0.1.json");
        assert!(is_marker(&m.target_name()));
        let parsed = Marker::from_target(&m.target_name(), m.to_custom()).unwrap().unwrap();
        assert_eq!(parsed, Marker::Reports(m.clone()));
        let mut meta = meta_of("quiz-fix", "1.0.1");
        meta.reported_by.insert(p("univ-c"));
        assert!(parsed.apply(&mut meta));
        assert_eq!(meta.reported_by, BTreeSet::from([p("univ-a"), p("univ-b"), p("univ-c")]));
        assert!(!parsed.apply(&mut meta), "applied twice: nothing new");
        let mut other = meta_of("quiz-fix", "1.0.2");
        assert!(!parsed.apply(&mut other) && other.reported_by.is_empty());
        let mut empty = m.to_custom();
        empty["platforms"] = serde_json::json!([]);
        assert!(ReportMarker::from_custom(&m.target_name(), empty).is_err(), "names no platform");
        assert!(ReportMarker::from_custom("reports/quiz-fix@1.0.2.json", m.to_custom()).is_err(), "under another name");
        assert!(Marker::from_target("quiz-fix-1.0.1.tar.gz", m.to_custom()).is_none());
    }

    #[test]
    fn a_marker_under_another_name_is_refused() {
        let m = marker();
        let e = HaltMarker::from_custom("halts/quiz-fix@1.0.2.json", m.to_custom()).unwrap_err().to_string();
        assert!(e.contains("whose marker is halts/quiz-fix@1.0.1.json"), "{e}");
        let mut extra = m.to_custom();
        extra["files"] = serde_json::json!([]);
        assert!(HaltMarker::from_custom(&m.target_name(), extra).is_err());
    }

    #[test]
    fn the_first_matching_role_is_the_trusted_one() {
        let roles = [RolePaths::Patterns(vec![PATH_PATTERN.into()]), RolePaths::HashPrefixes(vec!["0".into(), "1".into(), "2".into(), "3".into(), "4".into(), "5".into(), "6".into(), "7".into()]), RolePaths::HashPrefixes(vec!["8".into(), "9".into(), "a".into(), "b".into(), "c".into(), "d".into(), "e".into(), "f".into()])];
        assert_eq!(trusted_role(&roles, "halts/quiz-fix@1.0.1.json"), Some(0));
        use sha2::Digest;
        let name = "quiz-fix-1.0.1.tar.gz";
        let first = hex::encode(sha2::Sha256::digest(name.as_bytes())).as_bytes()[0];
        assert_eq!(trusted_role(&roles, name), Some(if first < b'8' { 1 } else { 2 }));
        assert_eq!(trusted_role(&roles[..1], name), None);
        assert_eq!(TrustedRoles::new(&roles).of(name), trusted_role(&roles, name));
        assert_eq!(TrustedRoles::new(&roles[..1]).of(name), None);
        assert!(glob(b"halts/*", b"halts/a@1.0.0.json"));
        assert!(!glob(b"halts/*", b"halt/a.json"));
        assert!(glob(b"a?c*", b"abcdef"));
        assert!(!glob(b"a?c", b"ac"));
    }
}
