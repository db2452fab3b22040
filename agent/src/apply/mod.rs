//! Applying bundles without ever editing the live code tree in place: stage a hard-link
//! clone, write and verify the new files there, then exchange it with the live tree in one
//! atomic step; the previous tree is kept for rollback.

pub mod stage;
pub mod swap;

use std::path::{Path, PathBuf};

use palier_bundle::Manifest;

use crate::error::{Error, Result};

/// A tree ready to go live.
#[derive(Debug)]
pub struct Staged {
    pub path: PathBuf,
    pub files_cloned: u64,
}

/// Stage `bundles` (signed manifest and downloaded archive, in `after` order) onto a clone
/// of the live tree. On any error the staging tree is removed and the site is untouched.
pub fn stage_all(dirroot: &Path, tag: &str, bundles: &[(&Manifest, &Path)]) -> Result<Staged> {
    let live = swap::live_target(dirroot).map_err(Error::io("read", dirroot))?.unwrap_or_else(|| dirroot.to_path_buf());
    let path = stage::sibling(&live, "stage", tag);
    let result = (|| {
        let files_cloned = stage::clone_tree(&live, &path)?;
        for (manifest, archive) in bundles {
            stage::apply_bundle(&path, archive, manifest)?;
        }
        stage::sync(&path)?;
        Ok(files_cloned)
    })();
    match result {
        Ok(files_cloned) => Ok(Staged { path, files_cloned }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&path);
            Err(e)
        }
    }
}

/// Put the staged tree live in one atomic step; returns where the previous tree now is.
pub fn go_live(dirroot: &Path, staged: &Staged, tag: &str) -> Result<PathBuf> {
    match swap::live_target(dirroot).map_err(Error::io("read", dirroot))? {
        None => {
            swap::exchange(&staged.path, dirroot).map_err(Error::io("exchange the staged tree with", dirroot))?;
            // The staging name now holds the old tree: give it its kept name.
            let previous = stage::sibling(dirroot, "prev", tag);
            std::fs::rename(&staged.path, &previous).map_err(Error::io("keep the previous tree as", &previous))?;
            Ok(previous)
        }
        Some(old_target) => {
            swap::flip_symlink(dirroot, &staged.path).map_err(Error::io("point the symlink at the staged tree", dirroot))?;
            Ok(old_target)
        }
    }
}

/// Put `previous` back live in one atomic step; the tree it replaces is returned (kept
/// for inspection until cleaned up).
pub fn restore(dirroot: &Path, previous: &Path) -> Result<PathBuf> {
    match swap::live_target(dirroot).map_err(Error::io("read", dirroot))? {
        None => {
            swap::exchange(previous, dirroot).map_err(Error::io("exchange the previous tree with", dirroot))?;
            Ok(previous.to_path_buf())
        }
        Some(current) => {
            swap::flip_symlink(dirroot, previous).map_err(Error::io("point the symlink at the previous tree", dirroot))?;
            Ok(current)
        }
    }
}

#[cfg(test)]
mod tests;
