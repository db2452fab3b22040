//! Publishing against the control plane: a bundle whose manifest `fixes` names fix requests
//! (`FR-<n>`) is published as reported by their platforms, and the requests are linked to it.

use std::collections::BTreeSet;
use std::path::Path;

use jiff::Timestamp;
use palier_bundle::{BundleRef, PlatformId};

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
pub async fn publish(paths: &RepoPaths, archive: &Path, mut reported: BTreeSet<PlatformId>, store: Option<&Store>, max_expanded: u64, now: Timestamp) -> Result<PublishedFix> {
    let mut linked: Vec<(i64, String)> = Vec::new();
    // The archive is checked here for its manifest (its paths, its fix requests), and again
    // by `repo::publish`.
    let path = archive.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || repo::check_archive(&path, max_expanded))
        .await
        .map_err(|e| Error::Refused(format!("archive check stopped: {e}")))??;
    crate::cli::bundle::check_paths(&checked.manifest, None).map_err(|e| Error::Refused(format!("{e}; nothing published")))?;
    refuse_file_conflicts(paths, &checked.manifest).await?;
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
    let published = repo::publish(paths, archive, reported, max_expanded, now).await?;
    if let Some(store) = store
        && !linked.is_empty()
    {
        let bundle = BundleRef { id: published.meta.manifest.id.clone(), version: published.meta.manifest.version.clone() };
        let ns: Vec<i64> = linked.iter().map(|(n, _)| *n).collect();
        store.link_fix_requests(&ns, &bundle)?;
    }
    Ok(PublishedFix { published, linked: linked.into_iter().map(|(_, id)| id).collect() })
}

/// File ownership across bundles (`palier_bundle::ownership`): the newest version of every
/// other id that is not yanked must not write or delete a path this bundle touches, unless
/// one names the other in `after`.
async fn refuse_file_conflicts(paths: &RepoPaths, manifest: &palier_bundle::Manifest) -> Result<()> {
    let published = repo::list(paths).await?;
    let mut newest: std::collections::BTreeMap<&palier_bundle::BundleId, &palier_bundle::Manifest> = std::collections::BTreeMap::new();
    for p in published.iter().filter(|p| p.meta.state != palier_bundle::BundleState::Yanked && p.meta.manifest.id != manifest.id) {
        let m = &p.meta.manifest;
        if newest.get(&m.id).is_none_or(|n| n.version < m.version) {
            newest.insert(&m.id, m);
        }
    }
    let mut all: Vec<&palier_bundle::Manifest> = newest.into_values().collect();
    all.push(manifest);
    let me = BundleRef { id: manifest.id.clone(), version: manifest.version.clone() };
    match palier_bundle::ownership::conflicts(&all).into_iter().find(|c| c.first == me || c.second == me) {
        Some(c) => Err(Error::Refused(format!("{c}; nothing published: name the other bundle in `after` (the new one then carries both fixes) or yank it first"))),
        None => Ok(()),
    }
}
