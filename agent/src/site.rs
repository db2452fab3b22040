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
    let path = installed_path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", &path)(e)),
    };
    let file: InstalledFile = serde_json::from_str(&text).map_err(|e| Error::Site { path, why: format!("invalid installed bundles record: {e}") })?;
    Ok(file.bundles)
}

/// Record the installed bundles (atomically).
pub fn write_installed(state_dir: &Path, bundles: &[Installed]) -> Result<()> {
    let file = InstalledFile { bundles: bundles.to_vec() };
    let text = serde_json::to_vec_pretty(&file).map_err(|e| Error::Refused(format!("cannot encode the installed record: {e}")))?;
    crate::journal::write_atomically(&installed_path(state_dir), &text)
}

/// The installed bundles as references, for the policy.
pub fn installed_refs(installed: &[Installed]) -> Vec<BundleRef> {
    installed.iter().map(|i| BundleRef { id: i.id.clone(), version: i.version.clone() }).collect()
}
