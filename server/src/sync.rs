//! `palier-server sync --to DIR`: a consistent copy of the repository for a static host (a
//! folder nginx serves, or one an object-store client uploads).
//!
//! The timestamp is read first and written last: everything it leads to (snapshot, targets,
//! bins, halts, the archives) is versioned or content-addressed, never rewritten and never
//! removed at the source, so once those are copied the saved timestamp names a complete set.
//! Targets go first, then roots, targets and bins, then snapshots, the timestamp last; only
//! files missing or different at the destination are written, each through a temporary file
//! and a rename, so a client reading the copy meanwhile sees the old state or the new one.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::repo::{self, RepoPaths};

/// What a sync wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub copied: usize,
    pub bytes: u64,
    pub unchanged: usize,
}

/// Copy the repository at `paths.dir` to `to`. Needs no key and no lock.
pub fn sync(paths: &RepoPaths, to: &Path) -> Result<Synced> {
    paths.require()?;
    let src_abs = std::fs::canonicalize(&paths.dir).map_err(Error::io("resolve", &paths.dir))?;
    let to_abs = if to.exists() { std::fs::canonicalize(to) } else { std::path::absolute(to) }.map_err(Error::io("resolve", to))?;
    if to_abs.starts_with(&src_abs) || src_abs.starts_with(&to_abs) {
        return Err(Error::Refused(format!("sync target {} and the repository {} overlap; choose a separate folder", to.display(), paths.dir.display())));
    }
    repo::create_public_dir(to)?;
    let timestamp_path = paths.metadata().join("timestamp.json");
    let timestamp = std::fs::read(&timestamp_path).map_err(Error::io("read", &timestamp_path))?;

    let mut out = Synced::default();
    // 1. The archives and halt markers.
    let mut targets = Vec::new();
    list_files(&paths.targets(), Path::new(""), &mut targets)?;
    for rel in &targets {
        copy_if_changed(&paths.targets().join(rel), &to.join("targets").join(rel), false, &mut out)?;
    }
    // 2. Metadata: roots, targets and delegated roles, then snapshots, the timestamp last.
    let mut metadata = Vec::new();
    list_files(&paths.metadata(), Path::new(""), &mut metadata)?;
    let rank = |p: &PathBuf| {
        let name = p.to_string_lossy();
        if name.ends_with(".snapshot.json") { 1 } else { 0 }
    };
    metadata.retain(|p| p.as_os_str() != "timestamp.json");
    metadata.sort_by_key(|p| (rank(p), p.clone()));
    for rel in &metadata {
        copy_if_changed(&paths.metadata().join(rel), &to.join("metadata").join(rel), true, &mut out)?;
    }
    let dest = to.join("metadata/timestamp.json");
    if std::fs::read(&dest).is_ok_and(|b| b == timestamp) {
        out.unchanged += 1;
    } else {
        write_atomic(&dest, &timestamp)?;
        out.copied += 1;
        out.bytes += timestamp.len() as u64;
    }
    Ok(out)
}

/// Every regular file under `dir`, relative, skipping hidden names (a writer's staging
/// folder, a temporary file not yet renamed).
fn list_files(base: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = base.join(rel);
    for entry in std::fs::read_dir(&dir).map_err(Error::io("list", &dir))? {
        let entry = entry.map_err(Error::io("list", &dir))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry.file_type().map_err(Error::io("read the type of", entry.path()))?;
        if kind.is_dir() {
            list_files(base, &rel.join(&name), out)?;
        } else if kind.is_file() {
            out.push(rel.join(&name));
        }
    }
    Ok(())
}

/// Copy `src` to `dest` unless `dest` already holds it: the same bytes for metadata, the same
/// length for archives (their names carry their sha256).
fn copy_if_changed(src: &Path, dest: &Path, compare_bytes: bool, out: &mut Synced) -> Result<()> {
    let same = if compare_bytes {
        match (std::fs::read(dest), std::fs::read(src)) {
            (Ok(d), Ok(s)) => d == s,
            _ => false,
        }
    } else {
        match (std::fs::metadata(dest), std::fs::metadata(src)) {
            (Ok(d), Ok(s)) => d.len() == s.len(),
            _ => false,
        }
    };
    if same {
        out.unchanged += 1;
        return Ok(());
    }
    let parent = dest.parent().ok_or_else(|| Error::Refused(format!("{} has no parent folder", dest.display())))?;
    repo::create_public_dir(parent)?;
    let mut tmp = tempfile::Builder::new().prefix(".sync-").tempfile_in(parent).map_err(Error::io("create temporary file in", parent))?;
    let mut input = File::open(src).map_err(Error::io("open", src))?;
    let n = std::io::copy(&mut input, tmp.as_file_mut()).map_err(Error::io("copy to", dest))?;
    finish(tmp, dest)?;
    out.copied += 1;
    out.bytes += n;
    Ok(())
}

fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let parent = dest.parent().ok_or_else(|| Error::Refused(format!("{} has no parent folder", dest.display())))?;
    repo::create_public_dir(parent)?;
    let mut tmp = tempfile::Builder::new().prefix(".sync-").tempfile_in(parent).map_err(Error::io("create temporary file in", parent))?;
    std::io::Write::write_all(tmp.as_file_mut(), bytes).map_err(Error::io("write", dest))?;
    finish(tmp, dest)
}

fn finish(tmp: tempfile::NamedTempFile, dest: &Path) -> Result<()> {
    repo::set_readable(tmp.as_file(), dest)?;
    tmp.as_file().sync_all().map_err(Error::io("sync", dest))?;
    tmp.persist(dest).map_err(|e| Error::Io { action: "move into place", path: dest.to_path_buf(), source: e.error })?;
    let parent = dest.parent().unwrap_or(Path::new("."));
    repo::sync_dir(parent)
}
