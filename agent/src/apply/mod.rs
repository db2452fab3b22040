//! Applying bundles without ever editing the live code tree in place: stage a hard-link
//! clone, write and verify the new files there, then exchange it with the live tree in one
//! atomic step; the previous tree is kept for rollback.
//!
//! Trees are moved and deleted only after their identity (device, inode) matched the one
//! the caller recorded: a name alone never decides which tree is touched.

pub mod stage;
pub mod swap;

use std::path::{Path, PathBuf};

use palier_bundle::Manifest;

use crate::crash;
use crate::error::{Error, Result};
use crate::journal::TreeId;

/// A tree ready to go live.
#[derive(Debug)]
pub struct Staged {
    pub path: PathBuf,
    pub tree: TreeId,
    pub files_cloned: u64,
}

/// Where the code really is: dirroot, or the folder its symlink points to.
pub fn live_path(dirroot: &Path) -> Result<PathBuf> {
    Ok(swap::live_target(dirroot).map_err(Error::io("read", dirroot))?.unwrap_or_else(|| dirroot.to_path_buf()))
}

/// Create the empty staging tree for intervention `tag` beside the live tree (same
/// filesystem, named after dirroot); its identity is recorded before anything fills it.
pub fn create_staging(dirroot: &Path, tag: &str) -> Result<(PathBuf, TreeId)> {
    let live = live_path(dirroot)?;
    let path = stage::sibling(dirroot, &live, "stage", tag);
    stage::create_root(&live, &path)?;
    let tree = TreeId::dir_at(&path).ok_or_else(|| Error::Site { path: path.clone(), why: "staging tree vanished as it was created".into() })?;
    crash::point("stage:create");
    Ok((path, tree))
}

/// Fill the staging tree: a hard-link clone of the live tree, then `bundles` (signed
/// manifest and downloaded archive, in `after` order), then one sync.
pub fn fill_staging(dirroot: &Path, staging: &Path, bundles: &[(&Manifest, &Path)]) -> Result<u64> {
    let live = live_path(dirroot)?;
    let files_cloned = stage::clone_into(&live, staging)?;
    crash::point("stage:clone");
    for (manifest, archive) in bundles {
        stage::apply_bundle(staging, archive, manifest)?;
        crash::point("stage:bundle");
    }
    stage::sync(staging)?;
    crash::point("stage:sync");
    Ok(files_cloned)
}

/// Delete the tree at `path` if it is `tree`; anything else there is left alone.
/// Returns whether it was deleted.
pub fn remove_tree(path: &Path, tree: TreeId) -> Result<bool> {
    if TreeId::dir_at(path) != Some(tree) {
        return Ok(false);
    }
    std::fs::remove_dir_all(path).map_err(Error::io("delete", path))?;
    crash::point("tree:removed");
    Ok(true)
}

/// Rename the tree at `from` to `to` (which must not exist) if it is `tree`.
pub fn move_tree(from: &Path, to: &Path, tree: TreeId) -> Result<bool> {
    if TreeId::dir_at(from) != Some(tree) {
        return Ok(false);
    }
    swap::rename_new(from, to).map_err(Error::io("rename", from))?;
    sync_parent(to)?;
    Ok(true)
}

fn sync_parent(path: &Path) -> Result<()> {
    crate::journal::sync_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// Stage `bundles` onto a new clone of the live tree, in one call. On any error the
/// staging tree is removed and the site is untouched.
pub fn stage_all(dirroot: &Path, tag: &str, bundles: &[(&Manifest, &Path)]) -> Result<Staged> {
    let (path, tree) = create_staging(dirroot, tag)?;
    match fill_staging(dirroot, &path, bundles) {
        Ok(files_cloned) => Ok(Staged { path, tree, files_cloned }),
        Err(e) => {
            let _ = remove_tree(&path, tree);
            Err(e)
        }
    }
}

fn changed(path: &Path, what: &str) -> Error {
    Error::Site { path: path.into(), why: format!("{what} is not the tree the journal recorded: nothing moved") }
}

/// Put the staged tree live in one atomic step, the live tree being `old`; a real
/// directory's old tree is then renamed to `previous`. Returns where the old tree now is.
/// After an error, the live tree's identity says whether the exchange happened.
pub fn go_live(dirroot: &Path, staged: &Staged, previous: &Path, old: TreeId) -> Result<PathBuf> {
    if TreeId::dir_at(&staged.path) != Some(staged.tree) {
        return Err(changed(&staged.path, "the staged tree"));
    }
    match swap::live_target(dirroot).map_err(Error::io("read", dirroot))? {
        None => {
            if TreeId::dir_at(dirroot) != Some(old) {
                return Err(changed(dirroot, "the live tree"));
            }
            swap::exchange(&staged.path, dirroot).map_err(Error::io("exchange the staged tree with", dirroot))?;
            sync_parent(dirroot)?;
            crash::point("swap:exchange");
            // The staging name now holds the old tree: give it its kept name.
            if !move_tree(&staged.path, previous, old)? {
                return Err(changed(&staged.path, "the tree swapped out"));
            }
            crash::point("swap:keep-previous");
            Ok(previous.to_path_buf())
        }
        Some(old_target) => {
            if TreeId::dir_at(&old_target) != Some(old) {
                return Err(changed(&old_target, "the live tree"));
            }
            swap::flip_symlink(dirroot, &staged.path).map_err(Error::io("point the symlink at the staged tree", dirroot))?;
            sync_parent(dirroot)?;
            crash::point("swap:exchange");
            Ok(old_target)
        }
    }
}

/// Put the tree `old`, kept at `previous`, back live in one atomic step, the live tree
/// being `current`; returns where `current` now is. Nothing moves unless both identities
/// match.
pub fn restore(dirroot: &Path, previous: &Path, old: TreeId, current: TreeId) -> Result<PathBuf> {
    if TreeId::dir_at(previous) != Some(old) {
        return Err(changed(previous, "the previous tree"));
    }
    match swap::live_target(dirroot).map_err(Error::io("read", dirroot))? {
        None => {
            if TreeId::dir_at(dirroot) != Some(current) {
                return Err(changed(dirroot, "the live tree"));
            }
            swap::exchange(previous, dirroot).map_err(Error::io("exchange the previous tree with", dirroot))?;
            sync_parent(dirroot)?;
            crash::point("rollback:exchange");
            Ok(previous.to_path_buf())
        }
        Some(live) => {
            if TreeId::dir_at(&live) != Some(current) {
                return Err(changed(&live, "the live tree"));
            }
            swap::flip_symlink(dirroot, previous).map_err(Error::io("point the symlink at the previous tree", dirroot))?;
            sync_parent(dirroot)?;
            crash::point("rollback:exchange");
            Ok(live)
        }
    }
}

#[cfg(test)]
mod tests;
