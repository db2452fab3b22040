//! Downloading a bundle's archive from the verified repository, and its manifest.
//!
//! The bytes come through tough (length and sha256 checked against the signed targets
//! metadata) over the agent's transport, which bounds a transfer by an idle timeout and a
//! minimum rate rather than a total time, and resumes a broken transfer with an HTTP
//! range request (see `transport`). An archive already downloaded by an earlier cycle is
//! reused when its digest still matches.
//!
//! The signed metadata (format 2) does not list a bundle's files: they are read from the
//! archive's own `bundle.toml`, which must agree with the signed metadata (head, file count,
//! expanded size, path summary) before anything uses it. The agreeing manifest is kept in
//! `state_dir/manifests/<sha256 of the archive>.toml`, so the file ownership check of `plan`
//! knows the files of every bundle downloaded before, even once its archive is pruned.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use palier_bundle::archive::HashWriter;
use palier_bundle::{Manifest, ManifestKind};
use sha2::{Digest, Sha256};
use tough::TargetName;

use crate::error::{Error, Result};
use crate::repository::{Verified, VerifiedBundle};

/// A downloaded archive and its manifest, which agrees with the bundle's signed metadata.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub path: PathBuf,
    pub manifest: Manifest,
}

/// Download a bundle's archive through tough (length and hash checked) into
/// `state_dir/downloads`, and read its manifest, refused unless it agrees with the signed
/// metadata.
pub async fn download(verified: &Verified, bundle: &VerifiedBundle, state_dir: &Path) -> Result<Downloaded> {
    let path = fetch(verified, bundle, &state_dir.join("downloads")).await?;
    let manifest = archive_manifest(bundle, &path)?;
    remember(state_dir, bundle, &manifest);
    Ok(Downloaded { path, manifest })
}

/// The manifest of `bundle` as an earlier download verified it, if the agent has it: from
/// `state_dir/manifests`, else from the archive still in `state_dir/downloads`. Held to the
/// signed metadata again, so a stale or damaged record is never used.
pub fn known_manifest(state_dir: &Path, bundle: &VerifiedBundle) -> Option<Manifest> {
    let record = manifest_path(state_dir, bundle);
    if let Ok(text) = std::fs::read_to_string(&record)
        && let Ok(m) = Manifest::parse(&text, ManifestKind::Built)
        && bundle.meta().check_archive_manifest(&m).is_ok()
    {
        return Some(m);
    }
    let archive = archive_path(&state_dir.join("downloads"), bundle);
    if !archive.is_file() || !digest_matches(&archive, bundle) {
        return None;
    }
    let m = archive_manifest(bundle, &archive).ok()?;
    remember(state_dir, bundle, &m);
    Some(m)
}

/// Drop the manifest records of archives the repository no longer lists.
pub fn forget_others(state_dir: &Path, bundles: &[VerifiedBundle]) {
    let Ok(entries) = std::fs::read_dir(state_dir.join("manifests")) else { return };
    // Usually a few records (the eligible and installed bundles') beside many bundles.
    let records: Vec<_> = entries.flatten().collect();
    if records.is_empty() {
        return;
    }
    let keep: HashSet<&str> = bundles.iter().map(VerifiedBundle::sha256).collect();
    for e in records {
        let name = e.file_name();
        let sha = name.to_str().and_then(|n| n.strip_suffix(".toml"));
        if !sha.is_some_and(|sha| keep.contains(sha)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn manifest_path(state_dir: &Path, bundle: &VerifiedBundle) -> PathBuf {
    state_dir.join("manifests").join(format!("{}.toml", bundle.sha256()))
}

fn archive_path(dir: &Path, bundle: &VerifiedBundle) -> PathBuf {
    dir.join(format!("{}.{}", bundle.sha256(), bundle.target()))
}

/// Keep the verified manifest; a record that cannot be written is only a lost shortcut.
fn remember(state_dir: &Path, bundle: &VerifiedBundle, manifest: &Manifest) {
    let path = manifest_path(state_dir, bundle);
    if path.is_file() {
        return;
    }
    let written = manifest.to_toml().map_err(std::io::Error::other).and_then(|text| {
        let dir = state_dir.join("manifests");
        std::fs::create_dir_all(&dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        std::io::Write::write_all(&mut tmp, text.as_bytes())?;
        tmp.persist(&path).map(|_| ()).map_err(|e| e.error)
    });
    if let Err(e) = written {
        tracing::debug!(file = %path.display(), error = %e, "cannot keep the bundle's manifest");
    }
}

/// The archive's `bundle.toml`, held to the bundle's signed metadata.
fn archive_manifest(bundle: &VerifiedBundle, archive: &Path) -> Result<Manifest> {
    let refused = |e: palier_bundle::Error| Error::Refused(format!("bundle {} refused: {e}; nothing applied", bundle.meta().manifest.key()));
    let file = std::fs::File::open(archive).map_err(Error::io("open bundle archive", archive))?;
    let manifest = palier_bundle::archive::read_manifest(file).map_err(refused)?;
    bundle.meta().check_archive_manifest(&manifest).map_err(refused)?;
    Ok(manifest)
}

fn digest_matches(path: &Path, bundle: &VerifiedBundle) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else { return false };
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut HashWriter(&mut hasher)).is_ok() && hex::encode(hasher.finalize()) == bundle.sha256()
}

/// The archive through tough (length and hash checked), in `dir`.
async fn fetch(verified: &Verified, bundle: &VerifiedBundle, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let path = archive_path(dir, bundle);
    // An archive downloaded by an earlier cycle is reused when its digest still matches.
    if digest_matches(&path, bundle) {
        return Ok(path);
    }
    let name = TargetName::new(bundle.target()).map_err(|e| Error::Repository { url: bundle.target().into(), source: Box::new(e) })?;
    // Described by the bundle's verified length and sha256: the role that lists it may be
    // one the load skipped because this agent knows it (`repository::load`).
    let described = tough::schema::Target {
        length: bundle.length(),
        hashes: tough::schema::Hashes { sha256: hex::decode(bundle.sha256()).map_err(|e| Error::Refused(format!("target {}: {e}", bundle.target())))?.into(), _extra: HashMap::new() },
        custom: HashMap::new(),
        _extra: HashMap::new(),
    };
    let stream = verified
        .repository
        .read_target_as(&name, &described)
        .await
        .map_err(|e| Error::Repository { url: bundle.target().into(), source: Box::new(e) })?;
    let tmp = tempfile::Builder::new().prefix(".download-").tempfile_in(dir).map_err(Error::io("create temporary file in", dir))?;
    let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(Error::io("open", tmp.path()))?);
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Repository { url: bundle.target().into(), source: Box::new(e) })?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await.map_err(Error::io("write", tmp.path()))?;
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(Error::io("write", tmp.path()))?;
    tmp.persist(&path).map_err(|e| Error::io("store", &path)(e.error))?;
    Ok(path)
}
