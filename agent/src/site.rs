//! Facts about the Moodle site: its layout, release and component map, and the bundles
//! installed on it.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use palier_bundle::BundleRef;
use palier_bundle::components::ComponentMap;
use palier_bundle::layout::Layout;
use palier_bundle::moodle::MoodleSite;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the plan needs of the Moodle site at `dirroot`, its **code root** (the folder
/// holding `config.php`): the layout (5.1+ when `public/version.php` exists, 4.x when
/// `version.php` does), the release from that layout's `version.php`, and the component map
/// of the site's own `lib/components.json` plus every plugin's `db/subplugins.json` (Moodle's
/// built-in map for the layout when the site has no `lib/components.json`, as very old
/// trees and test sites do).
pub fn moodle_release(dirroot: &Path) -> Result<MoodleSite> {
    let layout = if dirroot.join(Layout::Public.version_php()).is_file() {
        Layout::Public
    } else if dirroot.join(Layout::Classic.version_php()).is_file() {
        Layout::Classic
    } else {
        return Err(Error::Site {
            path: dirroot.to_path_buf(),
            why: "neither public/version.php (Moodle 5.1+) nor version.php (Moodle 4.x) is there: dirroot must be Moodle's code root, the folder holding config.php".into(),
        });
    };
    let path = dirroot.join(layout.version_php());
    let text = std::fs::read_to_string(&path).map_err(Error::io("read Moodle version file", &path))?;
    let release = palier_bundle::moodle::release_from_version_php(&text).map_err(|e| Error::Site { path, why: e.to_string() })?;
    let components = component_map(dirroot, layout)?;
    Ok(MoodleSite { release, layout, components })
}

/// The site's component map: `lib/components.json`, then each plugin's `db/subplugins.json`.
fn component_map(dirroot: &Path, layout: Layout) -> Result<ComponentMap> {
    let path = dirroot.join("lib/components.json");
    let mut map = match std::fs::read_to_string(&path) {
        Ok(text) => ComponentMap::from_components_json(&text, layout).map_err(|e| Error::Site { path: path.clone(), why: e.to_string() })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ComponentMap::builtin(layout),
        Err(e) => return Err(Error::io("read Moodle component map", &path)(e)),
    };
    let type_folders: Vec<String> = map.plugintype_folders().map(str::to_owned).collect();
    for folder in type_folders {
        let Ok(plugins) = std::fs::read_dir(dirroot.join(&folder)) else { continue };
        for plugin in plugins.flatten() {
            let file = plugin.path().join("db/subplugins.json");
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            let plugin_folder = format!("{folder}/{}", plugin.file_name().to_string_lossy());
            map.add_subplugins(&plugin_folder, &text).map_err(|e| Error::Site { path: file, why: e.to_string() })?;
        }
    }
    Ok(map)
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
    installed_pending(state_dir, bundles)?.put_synced()
}

/// [`write_installed`]'s new record, written and synced but not yet in place.
pub fn installed_pending(state_dir: &Path, bundles: &[Installed]) -> Result<crate::journal::Pending> {
    crate::journal::Pending::record(&installed_path(state_dir), &InstalledFile { bundles: bundles.to_vec() }, "installed bundles record")
}

/// The installed bundles as references, for the policy.
pub fn installed_refs(installed: &[Installed]) -> Vec<BundleRef> {
    installed.iter().map(|i| BundleRef { id: i.id.clone(), version: i.version.clone() }).collect()
}

/// The record beside dirroot that palier manages the site, and with which state folder:
/// `.palier-<dirroot's name>.site.json`, written with every commit. A run whose `state_dir`
/// is another folder, or lost its record of the installed bundles, would otherwise take the
/// site for a new one and apply every bundle again.
pub fn mark_path(dirroot: &Path) -> PathBuf {
    let name = dirroot.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dirroot".into());
    dirroot.with_file_name(format!(".palier-{name}.site.json"))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteMark {
    state_dir: PathBuf,
}

/// Record, beside dirroot, that `state_dir` holds this site's state (after the installed
/// record: a mark always has its installed record).
pub fn mark(dirroot: &Path, state_dir: &Path) -> Result<()> {
    let state_dir = std::fs::canonicalize(state_dir).map_err(Error::io("resolve", state_dir))?;
    let path = mark_path(dirroot);
    let current: Option<SiteMark> = crate::journal::read_record(&path, "record of the site's state folder").ok().flatten();
    if current.is_some_and(|c| c.state_dir == state_dir) {
        return Ok(());
    }
    crate::journal::write_record(&path, &SiteMark { state_dir }, "record of the site's state folder")
}

/// Refuse a state folder that is not the one the site was changed with, or that lost its
/// record of the installed bundles, saying what to do.
pub fn check_mark(dirroot: &Path, state_dir: &Path) -> Result<()> {
    let path = mark_path(dirroot);
    let Some(mark) = crate::journal::read_record::<SiteMark>(&path, "record of the site's state folder")? else { return Ok(()) };
    let here = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    if mark.state_dir != here {
        return Err(Error::Refused(format!(
            "the site {} is managed with the state folder {} ({}), not {}: is this the right config? Fix state_dir, or delete {} if the site was reinstalled from scratch",
            dirroot.display(),
            mark.state_dir.display(),
            path.display(),
            here.display(),
            path.display()
        )));
    }
    if !installed_path(state_dir).exists() {
        return Err(Error::Refused(format!(
            "{} has no record of the bundles installed on {}, though palier changed that site ({}): restore the state folder from a backup, or delete {} to take the site as new (every bundle it admits would be applied again)",
            state_dir.display(),
            dirroot.display(),
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

