//! Halt markers: target files `halts/ID@VERSION.json` of the repository's `halts` role, a
//! delegated role whose key may live with the online server and that is trusted for nothing
//! but these names. A marker stops one bundle version; it cannot ship or change code.
//!
//! The marker's `custom` (and the file's content) is `{"bundle", "version", "reason", "at"}`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metadata::{BundleMetadata, BundleRef, BundleState};

/// The folder of halt markers among the target names, and the `halts` role's only path.
pub const PREFIX: &str = "halts/";

/// The path pattern the top-level targets delegate to the `halts` role.
pub const PATH_PATTERN: &str = "halts/*";

/// The name of the delegated role that signs halt markers.
pub const ROLE: &str = "halts";

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

impl HaltMarker {
    /// The marker's target name: `halts/ID@VERSION.json`.
    pub fn target_name(&self) -> String {
        target_name(&self.bundle)
    }

    pub fn to_custom(&self) -> serde_json::Value {
        let wire = Wire { bundle: self.bundle.id.to_string(), version: self.bundle.version.to_string(), reason: self.reason.clone(), at: self.at.clone() };
        serde_json::to_value(wire).unwrap_or(serde_json::Value::Null)
    }

    /// Read a marker from its target's `custom`, refusing one whose name is not its own.
    pub fn from_custom(target_name: &str, custom: serde_json::Value) -> Result<HaltMarker> {
        let wire: Wire = serde_json::from_value(custom).map_err(|e| Error::invalid("halt marker", target_name, e.to_string()))?;
        let bundle: BundleRef = format!("{}@{}", wire.bundle, wire.version).parse()?;
        if wire.reason.is_empty() || wire.reason.len() > 500 || wire.reason.chars().any(char::is_control) {
            return Err(Error::invalid("halt marker", target_name, "its reason must be one line of 1 to 500 bytes"));
        }
        let marker = HaltMarker { bundle, reason: wire.reason, at: wire.at };
        if marker.target_name() != target_name {
            return Err(Error::invalid("halt marker", target_name, format!("it names {}, whose marker is {}", marker.bundle, marker.target_name())));
        }
        Ok(marker)
    }

    /// Apply the marker to its bundle's metadata: an active bundle becomes halted with the
    /// marker's reason (as the bundle's own halt would read); a bundle already halted or yanked by its own metadata keeps its word.
    /// Returns whether it changed anything.
    pub fn apply(&self, meta: &mut BundleMetadata) -> bool {
        if meta.manifest.id != self.bundle.id || meta.manifest.version != self.bundle.version || meta.state != BundleState::Active {
            return false;
        }
        meta.state = BundleState::Halted;
        meta.state_reason = Some(self.reason.clone());
        true
    }
}

/// The marker target name of `bundle`.
pub fn target_name(bundle: &BundleRef) -> String {
    format!("{PREFIX}{bundle}.json")
}

/// Whether a target name is in the halt markers' folder.
pub fn is_marker(target_name: &str) -> bool {
    target_name.starts_with(PREFIX)
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
        assert!(glob(b"halts/*", b"halts/a@1.0.0.json"));
        assert!(!glob(b"halts/*", b"halt/a.json"));
        assert!(glob(b"a?c*", b"abcdef"));
        assert!(!glob(b"a?c", b"ac"));
    }
}
