//! Facts about the Moodle site: its release, and the bundles installed on it.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use palier_bundle::BundleRef;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The Moodle release of the site, from `$release` in `dirroot/version.php`.
pub fn moodle_release(dirroot: &Path) -> Result<Version> {
    let path = dirroot.join("version.php");
    let text = std::fs::read_to_string(&path).map_err(Error::io("read Moodle version file", &path))?;
    palier_bundle::moodle::release_from_version_php(&text).map_err(|e| Error::Site { path, why: e.to_string() })
}

/// One installed bundle, as recorded in `state_dir/installed.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Installed {
    pub id: palier_bundle::BundleId,
    pub version: Version,
    pub installed_at: Timestamp,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstalledFile {
    bundles: Vec<Installed>,
}

/// Where the installed bundles are recorded.
pub fn installed_path(state_dir: &Path) -> PathBuf {
    state_dir.join("installed.json")
}

/// The installed bundles; none when nothing was ever installed.
pub fn installed(state_dir: &Path) -> Result<Vec<Installed>> {
    let file: Option<InstalledFile> = crate::journal::read_record(&installed_path(state_dir), "installed bundles record")?;
    Ok(file.map(|f| f.bundles).unwrap_or_default())
}

/// Record the installed bundles (atomically).
pub fn write_installed(state_dir: &Path, bundles: &[Installed]) -> Result<()> {
    crate::journal::write_record(&installed_path(state_dir), &InstalledFile { bundles: bundles.to_vec() }, "installed bundles record")
}

/// The installed bundles as references, for the policy.
pub fn installed_refs(installed: &[Installed]) -> Vec<BundleRef> {
    installed.iter().map(|i| BundleRef { id: i.id.clone(), version: i.version.clone() }).collect()
}
