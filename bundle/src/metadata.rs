//! The signed metadata of a bundle: what goes into its TUF target's `custom` field.
//!
//! The manifest (with its `files` list) plus what the server adds: the platforms that
//! reported the defects it fixes, its validations and its state.

use std::collections::BTreeSet;
use std::fmt;

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::{Manifest, ManifestKind};
use crate::names::{BundleId, PlatformId};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleMetadata {
    pub format: u32,
    pub manifest: Manifest,
    /// Sum of the sizes of the files: the reader refuses an archive that expands beyond it.
    pub expanded_size: u64,
    pub reported_by: BTreeSet<PlatformId>,
    pub validations: Validations,
    pub state: BundleState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// When it was published, RFC 3339, as the server's clock said.
    pub published_at: String,
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
            published_at,
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
            version: Version::parse(version).map_err(|e| Error::invalid("bundle version", version, e.to_string()))?,
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
    fn bundle_ref_parses() {
        let r: BundleRef = "mod_quiz-fix@1.0.1".parse().unwrap();
        assert_eq!(r.target_name(), "mod_quiz-fix-1.0.1.tar.gz");
        assert_eq!(r.to_string(), "mod_quiz-fix@1.0.1");
        for bad in ["mod_quiz-fix", "mod_quiz-fix@1.0", "Bad@1.0.0", "@1.0.0"] {
            assert!(bad.parse::<BundleRef>().is_err(), "{bad}");
        }
    }
}
