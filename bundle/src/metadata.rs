//! The signed metadata of a bundle: what goes into its TUF target's `custom` field.
//!
//! The manifest (with its `files` list) plus what the server adds: the platforms that
//! reported the defects it fixes, its validations and its state.

use std::collections::BTreeSet;
use std::fmt;

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::{FileEntry, FileMode, Manifest, ManifestKind, Sha256Hex};
use crate::names::{BundleId, PlatformId, RelPath};
use crate::rollout::Rollout;

/// Format version of the `custom` object, so a future layout can be told apart.
pub const METADATA_FORMAT: u32 = 1;

/// Whether a bundle may be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleState {
    Active,
    /// Paused by the release manager or by the auto-halt: not applied until made active again.
    Halted,
    /// Withdrawn for good.
    Yanked,
}

impl BundleState {
    pub fn as_str(self) -> &'static str {
        match self {
            BundleState::Active => "active",
            BundleState::Halted => "halted",
            BundleState::Yanked => "yanked",
        }
    }
}

impl fmt::Display for BundleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validations recorded by the release manager.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validations {
    /// Pre-validated by the internal alpha team.
    pub alpha: bool,
    /// The significant test datasets the bundle was qualified on.
    pub datasets: BTreeSet<String>,
}

/// The `custom` field of a bundle's TUF target.
///
/// In JSON the manifest's `files` travel as a separate list of compact lines,
/// `"<sha256> <size> <mode> <path>"` (the path last, so it may hold spaces): a 30,000-file
/// bundle's metadata is a few MB of strings instead of 120,000 JSON objects, which keeps
/// `publish` and the agent's metadata load small.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Wire")]
pub struct BundleMetadata {
    pub format: u32,
    pub manifest: Manifest,
    /// Sum of the sizes of the files: the reader refuses an archive that expands beyond it.
    pub expanded_size: u64,
    pub reported_by: BTreeSet<PlatformId>,
    pub validations: Validations,
    pub state: BundleState,
    pub state_reason: Option<String>,
    /// When the release manager last resumed it, RFC 3339: a halt marker written before
    /// then no longer halts it (see [`crate::halt`]). Absent from the JSON when `None`.
    pub resumed_at: Option<String>,
    /// When it was published, RFC 3339, as the server's clock said.
    pub published_at: String,
    /// A staged rollout: canaries, then waves of the fleet (see [`crate::rollout`]).
    /// Absent from the JSON when `None`, so a bundle without one signs as before.
    pub rollout: Option<Rollout>,
}

/// The JSON form of [`BundleMetadata`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: u32,
    manifest: Manifest,
    files: Vec<String>,
    expanded_size: u64,
    reported_by: BTreeSet<PlatformId>,
    validations: Validations,
    state: BundleState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resumed_at: Option<String>,
    published_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rollout: Option<Rollout>,
}

/// One file as a compact line: `<sha256> <size> <mode> <path>`.
pub fn file_line(f: &FileEntry) -> String {
    format!("{} {} {} {}", f.sha256, f.size, f.mode.as_str(), f.path)
}

/// Parse a line written by [`file_line`].
pub fn parse_file_line(line: &str) -> Result<FileEntry> {
    let bad = |why: &str| Error::invalid("signed file entry", line, why);
    let mut parts = line.splitn(4, ' ');
    let (Some(sha), Some(size), Some(mode), Some(path)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected \"<sha256> <size> <mode> <path>\""));
    };
    let size = if size.len() > 1 && size.starts_with('0') { None } else { size.parse::<u64>().ok() };
    Ok(FileEntry {
        sha256: Sha256Hex::new(sha)?,
        size: size.ok_or_else(|| bad("size is not a whole number"))?,
        mode: FileMode::parse(mode).ok_or_else(|| bad("mode is not 0644 or 0755"))?,
        path: RelPath::new(path)?,
    })
}

impl TryFrom<Wire> for BundleMetadata {
    type Error = Error;
    fn try_from(w: Wire) -> Result<Self> {
        if !w.manifest.files.is_empty() {
            return Err(Error::invalid("signed manifest", "files", "the file list travels beside the manifest, not in it"));
        }
        let mut manifest = w.manifest;
        manifest.files = w.files.iter().map(|l| parse_file_line(l)).collect::<Result<_>>()?;
        Ok(BundleMetadata {
            format: w.format,
            manifest,
            expanded_size: w.expanded_size,
            reported_by: w.reported_by,
            validations: w.validations,
            state: w.state,
            state_reason: w.state_reason,
            resumed_at: w.resumed_at,
            published_at: w.published_at,
            rollout: w.rollout,
        })
    }
}

impl Serialize for BundleMetadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        Wire {
            format: self.format,
            manifest: self.manifest.without_files(),
            files: self.manifest.files.iter().map(file_line).collect(),
            expanded_size: self.expanded_size,
            reported_by: self.reported_by.clone(),
            validations: self.validations.clone(),
            state: self.state,
            state_reason: self.state_reason.clone(),
            resumed_at: self.resumed_at.clone(),
            published_at: self.published_at.clone(),
            rollout: self.rollout.clone(),
        }
        .serialize(s)
    }
}

impl BundleMetadata {
    /// Fresh metadata for a newly published bundle.
    pub fn new(manifest: Manifest, reported_by: BTreeSet<PlatformId>, published_at: String) -> Self {
        BundleMetadata {
            format: METADATA_FORMAT,
            expanded_size: manifest.expanded_size(),
            manifest,
            reported_by,
            validations: Validations::default(),
            state: BundleState::Active,
            state_reason: None,
            resumed_at: None,
            published_at,
            rollout: None,
        }
    }

    /// Read from a target's `custom` field, checking the format and the manifest.
    pub fn from_custom(value: serde_json::Value) -> Result<Self> {
        let meta: BundleMetadata =
            serde_json::from_value(value).map_err(|e| Error::ManifestSyntax(format!("signed metadata: {e}")))?;
        if meta.format != METADATA_FORMAT {
            return Err(Error::invalid("metadata format", &meta.format.to_string(), format!("this build reads format {METADATA_FORMAT}")));
        }
        meta.manifest.validate(ManifestKind::Built)?;
        if meta.expanded_size != meta.manifest.expanded_size() {
            return Err(Error::invalid(
                "expanded_size",
                &meta.expanded_size.to_string(),
                "differs from the sum of the file sizes",
            ));
        }
        Ok(meta)
    }

    /// The `custom` field as JSON.
    pub fn to_custom(&self) -> serde_json::Value {
        // Every field is plain data: serialisation cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// `<id>@<version>`, as the CLI names a published bundle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleRef {
    pub id: BundleId,
    pub version: Version,
}

impl BundleRef {
    pub fn target_name(&self) -> String {
        format!("{}-{}.tar.gz", self.id, self.version)
    }
}

impl std::str::FromStr for BundleRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (id, version) = s
            .split_once('@')
            .ok_or_else(|| Error::invalid("bundle", s, "expected ID@VERSION, for example mod_quiz-fix@1.0.1"))?;
        Ok(BundleRef {
            id: BundleId::new(id)?,
            version: Version::parse(version).map_err(|_| Error::invalid("bundle version", version, "expected MAJOR.MINOR.PATCH, for example mod_quiz-fix@1.0.1"))?,
        })
    }
}

impl fmt::Display for BundleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_json_round_trips_with_compact_file_lines() {
        let mut m = crate::hostile::manifest_for("b", "1.0.0", &[("a b.php", b"x"), ("c/d.js", b"yy")]);
        m.files[1].mode = FileMode::Executable;
        let meta = BundleMetadata::new(m, BTreeSet::from([PlatformId::new("univ-a").unwrap()]), "2026-11-29T00:00:00Z".into());
        let custom = meta.to_custom();
        assert_eq!(custom["files"][0].as_str().unwrap().rsplit_once(' ').unwrap().1, "b.php");
        assert!(custom["files"][0].as_str().unwrap().ends_with(" 1 0644 a b.php"));
        assert!(custom["files"][1].as_str().unwrap().ends_with(" 2 0755 c/d.js"));
        assert!(custom["manifest"].get("files").is_none());
        assert_eq!(BundleMetadata::from_custom(custom).unwrap(), meta);
    }

    #[test]
    fn a_rollout_travels_in_the_custom_field_and_its_absence_changes_nothing() {
        let m = crate::hostile::manifest_for("b", "1.0.0", &[("a.php", b"x")]);
        let mut meta = BundleMetadata::new(m, BTreeSet::new(), "2026-11-29T00:00:00Z".into());
        let before = meta.to_custom();
        assert!(before.get("rollout").is_none(), "no rollout, no key: {before}");
        meta.rollout = Some(Rollout::parse("canary=univ-x; 24h=10%; 48h=100%").unwrap());
        let custom = meta.to_custom();
        assert_eq!(custom["rollout"], serde_json::json!({"canary": ["univ-x"], "waves": [{"after": "24h", "share": 10}, {"after": "48h", "share": 100}]}));
        assert_eq!(BundleMetadata::from_custom(custom.clone()).unwrap(), meta);
        // A signed rollout that breaks the rules is refused with the metadata.
        let mut bad = custom;
        bad["rollout"]["waves"][1]["share"] = serde_json::json!(5);
        let e = BundleMetadata::from_custom(bad).unwrap_err().to_string();
        assert!(e.contains("rollout: wave 48h=5% does not grow from 24h=10%"), "{e}");
    }

    #[test]
    fn bad_file_lines_are_refused() {
        let sha = "0".repeat(64);
        for bad in ["", "x 1 0644 a", &format!("{sha} -1 0644 a"), &format!("{sha} 01 0644 a"), &format!("{sha} 1 0600 a"), &format!("{sha} 1 0644 ../a"), &format!("{sha} 1 0644")] {
            assert!(parse_file_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bundle_ref_parses() {
        let r: BundleRef = "mod_quiz-fix@1.0.1".parse().unwrap();
        assert_eq!(r.target_name(), "mod_quiz-fix-1.0.1.tar.gz");
        assert_eq!(r.to_string(), "mod_quiz-fix@1.0.1");
        for bad in ["mod_quiz-fix", "mod_quiz-fix@1.0", "Bad@1.0.0", "@1.0.0"] {
            assert!(bad.parse::<BundleRef>().is_err(), "{bad}");
        }
        let why = "mod_quiz-fix@1.0".parse::<BundleRef>().unwrap_err().to_string();
        assert!(why.contains("expected MAJOR.MINOR.PATCH, for example mod_quiz-fix@1.0.1") && !why.contains("unexpected end of input"), "{why}");
    }
}
