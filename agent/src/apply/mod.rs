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

/// Refuse to act on a site whose code root (dirroot, or its symlink's target) belongs to
/// another user than the one running (`euid`): what the agent wrote would be its own, and
/// the site's user could no longer change it (a `run --once` as root once made a whole tree
/// root's). Says which user to run as.
pub fn check_owner(dirroot: &Path, euid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let live = live_path(dirroot)?;
    let owner = std::fs::metadata(&live).map_err(Error::io("read", &live))?.uid();
    if owner == euid {
        return Ok(());
    }
    let name = |uid: u32| crate::lock::user_name(uid).unwrap_or_else(|| format!("#{uid}"));
    let (owner, me) = (name(owner), name(euid));
    Err(Error::Refused(format!(
        "dirroot {} belongs to {owner}, and this command runs as {me}: the files it wrote would be {me}'s and the site's own user could not change them; run it as that user: sudo -u {owner} palier-agent ...",
        dirroot.display()
    )))
}

/// The site's own files under `root` (relative paths): `config.php`, `public/config.php`,
/// every `.htaccess` and `.user.ini`, and every file or symlink under `local/` and
/// `public/local/` (the deny-list of `palier_bundle::layout::site_local`). Symlinks are never
/// followed.
fn site_local_files(root: &Path) -> Result<std::collections::BTreeSet<String>> {
    use std::collections::BTreeSet;
    fn walk(root: &Path, dir: &Path, all: bool, out: &mut BTreeSet<String>) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let ft = e.file_type()?;
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
            let local = all || rel == "local" || rel == "public/local";
            if ft.is_dir() {
                walk(root, &path, local, out)?;
            } else if local || matches!(e.file_name().to_str(), Some(".htaccess" | ".user.ini")) {
                out.insert(rel);
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    for top in ["config.php", "public/config.php"] {
        if std::fs::symlink_metadata(root.join(top)).is_ok_and(|m| !m.is_dir()) {
            out.insert(top.to_owned());
        }
    }
    walk(root, root, false, &mut out).map_err(Error::io("list", root))?;
    Ok(out)
}

/// Carry the site's own files from the `live` tree into `into`, a tree about to go live
/// (the staged tree before the swap, the previous tree before a rollback), except the
/// paths in `touched` (the bundles' own files): each is hard-linked (a symlink copied)
/// into `into` where `into` does not already hold that very file, and a file under `local/`
/// that `into` has and the live tree no longer has is removed there. So a `config.php`
/// edited after an apply, or a plugin installed under `local/` since, is never undone by a
/// swap. `into` is never live here. Returns how many paths changed.
pub fn carry_site_local(live: &Path, into: &Path, touched: &[String]) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let theirs = |p: &String| touched.iter().any(|t| t == p);
    let from = site_local_files(live)?;
    let mut changed = 0;
    for rel in from.iter().filter(|p| !theirs(p)) {
        let src = live.join(rel);
        let dst = into.join(rel);
        let sm = std::fs::symlink_metadata(&src).map_err(Error::io("read", &src))?;
        match std::fs::symlink_metadata(&dst) {
            Ok(dm) if dm.dev() == sm.dev() && dm.ino() == sm.ino() => continue,
            Ok(dm) if dm.is_dir() => {
                return Err(Error::Site { path: dst, why: format!("is a folder where the live tree has the site's file {rel}: cannot carry it") });
            }
            _ => {}
        }
        if let Some(parent) = dst.parent() {
            stage::make_dirs(into, parent).map_err(Error::io("create folder", parent))?;
        }
        let tmp = dst.with_file_name(format!(".palier-carry-{}", dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
        let _ = std::fs::remove_file(&tmp);
        if sm.file_type().is_symlink() {
            let target = std::fs::read_link(&src).map_err(Error::io("read link", &src))?;
            std::os::unix::fs::symlink(target, &tmp).map_err(Error::io("create link", &tmp))?;
        } else {
            std::fs::hard_link(&src, &tmp).map_err(Error::io("hard-link", &tmp))?;
        }
        std::fs::rename(&tmp, &dst).map_err(Error::io("replace", &dst))?;
        changed += 1;
    }
    for rel in site_local_files(into)?.difference(&from).filter(|p| !theirs(p)) {
        if rel.starts_with("local/") || rel.starts_with("public/local/") {
            let p = into.join(rel);
            std::fs::remove_file(&p).map_err(Error::io("remove", &p))?;
            changed += 1;
        }
    }
    if changed > 0 {
        crash::point("carry:done");
    }
    Ok(changed)
}

#[cfg(test)]
mod tests;
