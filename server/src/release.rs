//! Publishing against the control plane: a bundle whose manifest `fixes` names fix requests
//! (`FR-<n>`) is published as reported by their platforms, and the requests are linked to it.

use std::collections::BTreeSet;
use std::path::Path;

use jiff::Timestamp;
use palier_bundle::rollout::Rollout;
use palier_bundle::{BundleRef, PlatformId};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repo::{self, Published, RepoPaths};
use crate::store::{self, Store};

/// What `publish --db` did: the published bundle and the fix requests now linked to it.
#[derive(Debug)]
pub struct PublishedFix {
    pub published: Published,
    /// The linked fix requests' ids (`FR-<n>`), in the manifest's order.
    pub linked: Vec<String>,
}

/// `palier-server publish [--reported-by P]... [--db FILE] ARCHIVE`. With a store, every
/// `FR-<n>` in the manifest's `fixes` must be a fix request it holds (else nothing is
/// published); their platforms join `reported_by` and the requests are linked to the bundle.
/// Other ids (defects tracked elsewhere) are left alone.
pub async fn publish(paths: &RepoPaths, archive: &Path, reported: BTreeSet<PlatformId>, store: Option<&Store>, max_expanded: u64, now: Timestamp) -> Result<PublishedFix> {
    publish_with_rollout(paths, archive, reported, None, store, max_expanded, now).await
}

/// [`publish`] with a staged rollout in the signed metadata (`publish --rollout`, or the
/// repository's default rollout: see [`Settings`]).
pub async fn publish_with_rollout(
    paths: &RepoPaths,
    archive: &Path,
    mut reported: BTreeSet<PlatformId>,
    rollout: Option<Rollout>,
    store: Option<&Store>,
    max_expanded: u64,
    now: Timestamp,
) -> Result<PublishedFix> {
    let mut linked: Vec<(i64, String)> = Vec::new();
    // The archive is checked here for its manifest (its paths, its fix requests), and again
    // by `repo::publish`, which also refuses a file conflict with another active bundle
    // (under the writers' lock, through the ownership index).
    let path = archive.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || repo::check_archive(&path, max_expanded))
        .await
        .map_err(|e| Error::Refused(format!("archive check stopped: {e}")))??;
    crate::cli::bundle::check_paths(&checked.manifest, None).map_err(|e| Error::Refused(format!("{e}; nothing published")))?;
    crate::retire::refuse_retired(paths, &BundleRef { id: checked.manifest.id.clone(), version: checked.manifest.version.clone() })?;
    if let Some(store) = store {
        for fix in &checked.manifest.fixes {
            if !store::looks_like_fix_id(fix) {
                continue;
            }
            let fr = store::parse_fix_id(fix).map(|n| store.fix_request(n).map(|f| f.map(|f| (n, f)))).transpose()?.flatten();
            let Some((n, fr)) = fr else {
                return Err(Error::Refused(format!("manifest fixes {fix}: no such fix request in {}; nothing published", store.path().display())));
            };
            reported.insert(PlatformId::new(&fr.platform)?);
            linked.push((n, fr.id));
        }
    }
    let published = repo::publish_with_rollout(paths, archive, reported, rollout, max_expanded, now).await?;
    if let Some(store) = store
        && !linked.is_empty()
    {
        let bundle = BundleRef { id: published.meta.manifest.id.clone(), version: published.meta.manifest.version.clone() };
        let ns: Vec<i64> = linked.iter().map(|(n, _)| *n).collect();
        store.link_fix_requests(&ns, &bundle)?;
    }
    Ok(PublishedFix { published, linked: linked.into_iter().map(|(_, id)| id).collect() })
}

/// The repository's server-side settings: `settings.json` in the keys folder, which is never
/// served (the repository folder may be served whole by a static web server), read by the
/// commands that publish. It holds the default rollout that `publish` applies unless
/// `--rollout` says otherwise, and the retention `retire` applies unless `--older-than` does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The text form of the default rollout (`canary=univ-x; 24h=10%; 48h=100%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_rollout: Option<String>,
    /// How long a yanked or superseded bundle stays in the active bins (`90d`); `retire`
    /// applies 90 days without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
}

impl Settings {
    pub fn path(paths: &RepoPaths) -> std::path::PathBuf {
        paths.keys.join("settings.json")
    }

    /// The settings, or the defaults when the file does not exist.
    pub fn load(paths: &RepoPaths) -> Result<Settings> {
        let path = Self::path(paths);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(Error::Io { action: "read settings", path, source: e }),
        };
        let settings: Settings =
            serde_json::from_slice(&text).map_err(|e| Error::Refused(format!("settings {}: {e}; fix or remove the file", path.display())))?;
        settings.default_rollout()?;
        settings.retention()?;
        Ok(settings)
    }

    /// The default rollout, parsed.
    pub fn default_rollout(&self) -> Result<Option<Rollout>> {
        self.default_rollout
            .as_deref()
            .map(|text| Rollout::parse(text).map_err(|e| Error::Refused(format!("the repository's default rollout: {e}"))))
            .transpose()
    }

    /// The retention, parsed.
    pub fn retention(&self) -> Result<Option<jiff::SignedDuration>> {
        self.retention
            .as_deref()
            .map(|text| palier_bundle::duration::parse_duration(text).map_err(|e| Error::Refused(format!("the repository's retention: {e}"))))
            .transpose()
    }

    /// Write the settings atomically (a new file renamed over the old one), mode 0600.
    pub fn save(&self, paths: &RepoPaths) -> Result<()> {
        paths.require()?;
        if !paths.keys.is_dir() {
            return Err(Error::Refused(format!("no keys folder at {} (give --keys KEYDIR)", paths.keys.display())));
        }
        let path = Self::path(paths);
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| Error::Refused(format!("settings: {e}")))?;
        text.push(b'\n');
        let mut tmp = tempfile::NamedTempFile::new_in(&paths.keys).map_err(|e| Error::Io { action: "write settings", path: path.clone(), source: e })?;
        std::io::Write::write_all(&mut tmp, &text).map_err(|e| Error::Io { action: "write settings", path: path.clone(), source: e })?;
        tmp.as_file().sync_all().map_err(|e| Error::Io { action: "write settings", path: path.clone(), source: e })?;
        tmp.persist(&path).map_err(|e| Error::Io { action: "write settings", path: path.clone(), source: e.error })?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_a_bad_default_is_refused_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = RepoPaths::new(tmp.path().join("repo"), None);
        std::fs::create_dir_all(paths.metadata()).unwrap();
        std::fs::write(paths.pinned_root(), "{}").unwrap();
        std::fs::create_dir_all(&paths.keys).unwrap();
        assert_eq!(Settings::load(&paths).unwrap(), Settings::default());
        let s = Settings { default_rollout: Some("canary=univ-x; 24h=10%; 48h=100%".into()), retention: Some("30d".into()) };
        s.save(&paths).unwrap();
        assert_eq!(Settings::load(&paths).unwrap(), s);
        assert_eq!(s.default_rollout().unwrap().unwrap().waves.len(), 2);
        assert_eq!(s.retention().unwrap(), Some(jiff::SignedDuration::from_hours(30 * 24)));
        std::fs::write(Settings::path(&paths), r#"{"default_rollout": "24h=50%; 48h=10%"}"#).unwrap();
        let e = Settings::load(&paths).unwrap_err().to_string();
        assert!(e.starts_with("the repository's default rollout: invalid rollout"), "{e}");
        std::fs::write(Settings::path(&paths), r#"{"retention": "90 days"}"#).unwrap();
        let e = Settings::load(&paths).unwrap_err().to_string();
        assert!(e.starts_with("the repository's retention: invalid duration"), "{e}");
        std::fs::write(Settings::path(&paths), r#"{"surprise": 1}"#).unwrap();
        let e = Settings::load(&paths).unwrap_err().to_string();
        assert!(e.contains("settings.json") && e.contains("unknown field"), "{e}");
    }
}
