//! Halt markers: the `halts` role's targets `halts/ID@VERSION.json`. Writing or removing one
//! re-signs the `halts` role (its key is online, with `serve`), the snapshot and the
//! timestamp, and nothing else: the bundle's own metadata and its bin are left as they are.
//!
//! The auto-halt writes markers; `resume` removes them. A repository made before the `halts`
//! role existed has none: there, [`halt`] records the halt in the bundle's own metadata, as
//! before, until `palier-server migrate` adds the role.

use std::path::Path;

use jiff::Timestamp;
use palier_bundle::halt::HaltMarker;
use palier_bundle::{BundleRef, BundleState};
use tough::TargetName;
use tough::schema::decoded::Decoded;
use tough::schema::{Hashes, Target};

use crate::error::{Error, Result};
use crate::repo::{self, Change, HALTS, Head, RepoPaths};

/// Whether the repository's top-level targets delegate to a `halts` role.
pub fn has_role(paths: &RepoPaths) -> Result<bool> {
    paths.require()?;
    let head = Head::load(paths)?;
    Ok(head.targets.signed.delegations.as_ref().is_some_and(|d| d.roles.iter().any(|r| r.name == HALTS)))
}

/// Halt `bundle` for every platform: a halt marker when the repository has the `halts` role,
/// else (a repository not migrated yet) the bundle's own metadata. Returns whether anything
/// changed; a bundle already halted or yanked is left as it is.
pub async fn halt(paths: &RepoPaths, bundle: &BundleRef, reason: &str, now: Timestamp) -> Result<bool> {
    if has_role(paths)? {
        return write_marker(paths, bundle, reason, now).await;
    }
    let reason = reason.to_owned();
    let (_, changed) = repo::update(paths, bundle, now, move |m| {
        if m.state != BundleState::Active {
            return Ok(false);
        }
        m.state = BundleState::Halted;
        m.state_reason = Some(reason);
        Ok(true)
    })
    .await?;
    Ok(changed)
}

/// Add the halt marker of `bundle` (published, active in its own metadata). Needs only the
/// halts, snapshot and timestamp keys. Returns false when the marker is already there or the
/// bundle's own metadata already halts or withdraws it.
pub async fn write_marker(paths: &RepoPaths, bundle: &BundleRef, reason: &str, now: Timestamp) -> Result<bool> {
    let _lock = repo::lock(paths)?;
    let head = Head::load(paths)?;
    let name = bundle.target_name();
    let bin = head.load_bin(paths, &head.bin_of(&paths.dir, &name)?)?;
    let tname = TargetName::new(name.clone()).map_err(repo::tuf_err(&paths.dir, "target name"))?;
    let Some(target) = bin.signed.targets.get(&tname) else {
        return Err(not_published(paths, bundle));
    };
    if repo::published(&tname, target)?.meta.state != BundleState::Active {
        return Ok(false);
    }
    let mut halts = load_role(paths, &head)?;
    let marker = HaltMarker { bundle: bundle.clone(), reason: reason.to_owned(), at: now.to_string() };
    let marker_name = TargetName::new(marker.target_name()).map_err(repo::tuf_err(&paths.dir, "halt marker name"))?;
    if halts.targets.contains_key(&marker_name) {
        return Ok(false);
    }
    let custom = marker.to_custom();
    let mut bytes = serde_json::to_vec_pretty(&custom).map_err(|e| Error::Refused(format!("cannot serialise halt marker: {e}")))?;
    bytes.push(b'\n');
    let sha256 = <sha2::Sha256 as sha2::Digest>::digest(&bytes).to_vec();
    let file = format!("{}.{}", hex::encode(&sha256), marker_name.raw().trim_start_matches(palier_bundle::halt::PREFIX));
    write_marker_file(&paths.targets().join(HALTS), &file, &bytes)?;
    let custom = match custom {
        serde_json::Value::Object(map) => map.into_iter().collect(),
        _ => Default::default(),
    };
    let target = Target { length: bytes.len() as u64, hashes: Hashes { sha256: Decoded::from(sha256), _extra: Default::default() }, custom, _extra: Default::default() };
    halts.targets.insert(marker_name, target);
    repo::commit(paths, head, Change { bins: vec![(HALTS.into(), halts)], ..Default::default() }, now, None).await?;
    Ok(true)
}

/// Remove the halt marker of `bundle`. Returns false when there is none (or no `halts` role).
pub async fn remove_marker(paths: &RepoPaths, bundle: &BundleRef, now: Timestamp) -> Result<bool> {
    let _lock = repo::lock(paths)?;
    let head = Head::load(paths)?;
    if !head.targets.signed.delegations.as_ref().is_some_and(|d| d.roles.iter().any(|r| r.name == HALTS)) {
        return Ok(false);
    }
    let mut halts = load_role(paths, &head)?;
    let name = TargetName::new(palier_bundle::halt::target_name(bundle)).map_err(repo::tuf_err(&paths.dir, "halt marker name"))?;
    if halts.targets.remove(&name).is_none() {
        return Ok(false);
    }
    repo::commit(paths, head, Change { bins: vec![(HALTS.into(), halts)], ..Default::default() }, now, None).await?;
    Ok(true)
}

/// The halt markers in force, verified like every reader's view (see [`repo::list`]).
pub fn markers(paths: &RepoPaths) -> Result<Vec<HaltMarker>> {
    paths.require()?;
    let head = Head::load(paths)?;
    if !head.targets.signed.delegations.as_ref().is_some_and(|d| d.roles.iter().any(|r| r.name == HALTS)) {
        return Ok(Vec::new());
    }
    let halts = load_role(paths, &head)?;
    let mut out = Vec::new();
    for (name, target) in &halts.targets {
        let custom = serde_json::Value::Object(target.custom.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        out.push(HaltMarker::from_custom(name.raw(), custom).map_err(|e| Error::Refused(format!("repository {}: halt marker {}: {e}", paths.dir.display(), name.raw())))?);
    }
    out.sort_by_key(|m| m.bundle.to_string());
    Ok(out)
}

fn load_role(paths: &RepoPaths, head: &Head) -> Result<tough::schema::Targets> {
    Ok(head.load_bin(paths, HALTS)?.signed)
}

fn not_published(paths: &RepoPaths, bundle: &BundleRef) -> Error {
    let dir = paths.dir.display();
    Error::Refused(format!("bundle {bundle} is not published in {dir} (see `palier-server list --repo {dir}`)"))
}

/// Write a marker's file under `targets/halts/` (content-addressed: an existing one is the same).
fn write_marker_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let dest = dir.join(name);
    if dest.exists() {
        return Ok(());
    }
    repo::create_public_dir(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".incoming-").tempfile_in(dir).map_err(Error::io("create temporary file in", dir))?;
    std::io::Write::write_all(tmp.as_file_mut(), bytes).map_err(Error::io("write", &dest))?;
    repo::set_readable(tmp.as_file(), &dest)?;
    tmp.as_file().sync_all().map_err(Error::io("sync", &dest))?;
    tmp.persist(&dest).map_err(|e| Error::Io { action: "store halt marker as", path: dest.clone(), source: e.error })?;
    repo::sync_dir(dir)
}
