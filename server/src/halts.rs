//! Markers (see `palier_bundle::halt`), written with the online keys alone: halt markers,
//! the `halts` role's targets `halts/ID@VERSION.json`, and report markers, the `reports`
//! role's targets `reports/ID@VERSION.json`. Writing one re-signs its role (its key is online,
//! with `serve`), the snapshot and the timestamp, and nothing else: the bundle's own metadata
//! and its bin are left as the release manager signed them.
//!
//! The auto-halt and `halt` without the bins key write halt markers; `resume` records the
//! resume in the bundle's own metadata (`resumed_at`, the bins key: offline) and removes the
//! marker. Removing a marker alone does not un-halt an agent that saw it. A fix request that
//! names a published bundle adds its platform to the bundle's report marker ([`link`]).
//! A repository made before the `halts` role existed has none: there, [`halt`] records the
//! halt in the bundle's own metadata, as before, until `palier-server migrate` adds the role.

use std::collections::BTreeSet;
use std::path::Path;

use jiff::Timestamp;
use palier_bundle::halt::{HaltMarker, ReportMarker};
use palier_bundle::{BundleRef, BundleState, PlatformId};
use tough::TargetName;
use tough::schema::decoded::Decoded;
use tough::schema::{Hashes, Target};

use crate::error::{Error, Result};
use crate::repo::{self, Change, HALTS, Head, REPORTS, RepoPaths};

/// Whether the repository's top-level targets delegate to a `halts` role.
pub fn has_role(paths: &RepoPaths) -> Result<bool> {
    has_marker_role(paths, HALTS)
}

/// Whether the repository's top-level targets delegate to marker role `role`.
pub fn has_marker_role(paths: &RepoPaths, role: &str) -> Result<bool> {
    paths.require()?;
    let head = Head::load(paths)?;
    Ok(has(&head, role))
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
    let meta = published_meta(paths, &head, bundle)?;
    if meta.state != BundleState::Active {
        return Ok(false);
    }
    let mut halts = load_role(paths, &head, HALTS)?;
    let marker = HaltMarker { bundle: bundle.clone(), reason: reason.to_owned(), at: now.to_string() };
    let name = TargetName::new(marker.target_name()).map_err(repo::tuf_err(&paths.dir, "halt marker name"))?;
    // A marker still listed halts unless the bundle was resumed since; one the resume answered
    // (its removal failed) is replaced by the new one.
    if let Some(existing) = halts.targets.get(&name)
        && HaltMarker::from_custom(name.raw(), custom_of(existing)).is_ok_and(|m| !m.resumed_by(&meta))
    {
        return Ok(false);
    }
    put_marker(paths, &mut halts, name, marker.to_custom())?;
    repo::commit(paths, head, Change { bins: vec![(HALTS.into(), halts)], ..Default::default() }, now, None).await?;
    Ok(true)
}

/// Add `platform` to the report marker of `bundle` (published): the platforms whose fix
/// requests name it, which agents add to its signed `reported_by`. Needs only the reports,
/// snapshot and timestamp keys; the bundle's bin is left as the release manager signed it.
/// Returns false when the platform is already a reporter (signed or marked). Refused when the
/// repository has no `reports` role (`palier-server migrate` adds it).
pub async fn link(paths: &RepoPaths, bundle: &BundleRef, platform: &PlatformId, now: Timestamp) -> Result<bool> {
    let _lock = repo::lock(paths)?;
    let head = Head::load(paths)?;
    if !has(&head, REPORTS) {
        let dir = paths.dir.display();
        return Err(Error::Refused(format!("repository {dir} has no {REPORTS} role: run `palier-server migrate --repo {dir}` (with the offline keys) to add it")));
    }
    if published_meta(paths, &head, bundle)?.reported_by.contains(platform) {
        return Ok(false);
    }
    let mut reports = load_role(paths, &head, REPORTS)?;
    let name = TargetName::new(palier_bundle::halt::reports_target_name(bundle)).map_err(repo::tuf_err(&paths.dir, "report marker name"))?;
    let mut platforms = BTreeSet::new();
    if let Some(existing) = reports.targets.get(&name) {
        platforms = ReportMarker::from_custom(name.raw(), custom_of(existing)).map_err(|e| Error::Refused(format!("repository {}: report marker {}: {e}", paths.dir.display(), name.raw())))?.platforms;
    }
    if !platforms.insert(platform.clone()) {
        return Ok(false);
    }
    let marker = ReportMarker { bundle: bundle.clone(), platforms, at: now.to_string() };
    put_marker(paths, &mut reports, name, marker.to_custom())?;
    repo::commit(paths, head, Change { bins: vec![(REPORTS.into(), reports)], ..Default::default() }, now, None).await?;
    Ok(true)
}

/// The signed metadata of published `bundle`, from its bin (refused when not published).
fn published_meta(paths: &RepoPaths, head: &Head, bundle: &BundleRef) -> Result<palier_bundle::BundleMetadata> {
    let name = bundle.target_name();
    let bin = head.load_bin(paths, &head.bin_of(&paths.dir, &name)?)?;
    let tname = TargetName::new(name).map_err(repo::tuf_err(&paths.dir, "target name"))?;
    let target = bin.signed.targets.get(&tname).ok_or_else(|| not_published(paths, bundle))?;
    Ok(repo::published(&tname, target)?.meta)
}

/// Write a marker's file under `targets/<role>/` and list it (as `name`) in `role`.
fn put_marker(paths: &RepoPaths, role: &mut tough::schema::Targets, name: TargetName, custom: serde_json::Value) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(&custom).map_err(|e| Error::Refused(format!("cannot serialise marker: {e}")))?;
    bytes.push(b'\n');
    let sha256 = <sha2::Sha256 as sha2::Digest>::digest(&bytes).to_vec();
    let (folder, base) = name.raw().split_once('/').ok_or_else(|| Error::Refused(format!("marker name {} has no folder", name.raw())))?;
    write_marker_file(&paths.targets().join(folder), &format!("{}.{base}", hex::encode(&sha256)), &bytes)?;
    let custom = match custom {
        serde_json::Value::Object(map) => map.into_iter().collect(),
        _ => Default::default(),
    };
    let target = Target { length: bytes.len() as u64, hashes: Hashes { sha256: Decoded::from(sha256), _extra: Default::default() }, custom, _extra: Default::default() };
    role.targets.insert(name, target);
    Ok(())
}

fn custom_of(target: &Target) -> serde_json::Value {
    palier_bundle::metadata::custom_value(&target.custom)
}

/// Remove the halt marker of `bundle`. Returns false when there is none (or no `halts` role).
pub async fn remove_marker(paths: &RepoPaths, bundle: &BundleRef, now: Timestamp) -> Result<bool> {
    let _lock = repo::lock(paths)?;
    let head = Head::load(paths)?;
    if !has(&head, HALTS) {
        return Ok(false);
    }
    let mut halts = load_role(paths, &head, HALTS)?;
    let name = TargetName::new(palier_bundle::halt::target_name(bundle)).map_err(repo::tuf_err(&paths.dir, "halt marker name"))?;
    if halts.targets.remove(&name).is_none() {
        return Ok(false);
    }
    repo::commit(paths, head, Change { bins: vec![(HALTS.into(), halts)], ..Default::default() }, now, None).await?;
    Ok(true)
}

/// The halt markers in force, verified like every reader's view (see [`repo::list`]).
pub fn markers(paths: &RepoPaths) -> Result<Vec<HaltMarker>> {
    listed_markers(paths, HALTS, "halt marker", HaltMarker::from_custom, |m| m.bundle.to_string())
}

/// The markers `role` lists, each read by `parse` (`what` names one in a refusal), sorted by
/// `key`; none when the repository does not delegate to `role`.
fn listed_markers<M>(paths: &RepoPaths, role: &str, what: &str, parse: fn(&str, serde_json::Value) -> palier_bundle::Result<M>, key: fn(&M) -> String) -> Result<Vec<M>> {
    paths.require()?;
    let head = Head::load(paths)?;
    if !has(&head, role) {
        return Ok(Vec::new());
    }
    let signed = load_role(paths, &head, role)?;
    let mut out = Vec::new();
    for (name, target) in &signed.targets {
        out.push(parse(name.raw(), custom_of(target)).map_err(|e| Error::Refused(format!("repository {}: {what} {}: {e}", paths.dir.display(), name.raw())))?);
    }
    out.sort_by_key(key);
    Ok(out)
}

/// The newest time of any halt marker of `bundle` the repository ever published: every
/// version of the halts role (`N.halts.json`, never removed), current or not. An agent may
/// have seen any of them and keeps the bundle halted until its own metadata says it was
/// resumed after that (see `palier_bundle::halt`), so `resume` compares with this, not with the
/// markers listed now. The files are read, not verified: a forged one can only make `resume`
/// re-sign.
pub fn newest_marker_ever(paths: &RepoPaths, bundle: &BundleRef) -> Result<Option<Timestamp>> {
    paths.require()?;
    let md = paths.metadata();
    let name = TargetName::new(palier_bundle::halt::target_name(bundle)).map_err(repo::tuf_err(&paths.dir, "halt marker name"))?;
    let suffix = format!(".{HALTS}.json");
    let mut newest: Option<Timestamp> = None;
    for entry in std::fs::read_dir(&md).map_err(Error::io("list", &md))? {
        let entry = entry.map_err(Error::io("list", &md))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if !file.strip_suffix(&suffix).is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let Ok(role) = repo::read_json::<tough::schema::Signed<tough::schema::Targets>>(&entry.path()) else { continue };
        if let Some(target) = role.signed.targets.get(&name)
            && let Ok(marker) = HaltMarker::from_custom(name.raw(), custom_of(target))
        {
            newest = newest.max(Some(marker.at()));
        }
    }
    Ok(newest)
}

/// The report markers, verified like every reader's view.
pub fn report_markers(paths: &RepoPaths) -> Result<Vec<ReportMarker>> {
    listed_markers(paths, REPORTS, "report marker", ReportMarker::from_custom, |m| m.bundle.to_string())
}

/// Whether the top-level targets delegate to `role`.
fn has(head: &Head, role: &str) -> bool {
    head.targets.signed.delegations.as_ref().is_some_and(|d| d.roles.iter().any(|r| r.name == role))
}

fn load_role(paths: &RepoPaths, head: &Head, role: &str) -> Result<tough::schema::Targets> {
    Ok(head.load_bin(paths, role)?.signed)
}

fn not_published(paths: &RepoPaths, bundle: &BundleRef) -> Error {
    let dir = paths.dir.display();
    Error::Refused(format!("bundle {bundle} is not published in {dir} (see `palier-server list --repo {dir}`)"))
}

/// Write a marker's file under `targets/<role>/` (content-addressed: an existing one is the same).
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
