//! Applying bundles without ever editing the live code tree in place: stage a hard-link
//! clone, write and verify the new files there, then exchange it with the live tree in one
//! atomic step; the previous tree is kept for rollback.
//!
//! Trees are moved and deleted only after their identity (device, inode) matched the one
//! the caller recorded: a name alone never decides which tree is touched.

pub mod stage;
pub mod swap;

use std::collections::BTreeSet;
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
    /// The site's own files outside `local/` that the clone found (and so holds).
    pub site_local: Vec<String>,
    /// The folders of the tree cloned, and when the clone started.
    pub outline: Outline,
}

/// The folders of a tree (relative paths) at a time `since`: a folder whose entries
/// changed after it (a `.htaccess` created there) has a change time (ctime) from then
/// on, which no user can set back; a new folder shows in its parent's. So the folders
/// changed since are found with one `lstat` each instead of reading every folder.
/// `since` is a time of the tree's own filesystem (see [`fs_now`]), not the agent's
/// clock: a file server whose clock differs does not hide a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    pub since: std::time::SystemTime,
    pub dirs: BTreeSet<String>,
}

/// Now, by the clock of the filesystem holding the folder `dir`: the change time of a
/// temporary file created there (and removed at once). Nothing of `dir`'s own changes
/// but its entries' for that instant: give it the folder that holds the trees, not a tree.
pub fn fs_now(dir: &Path) -> Result<std::time::SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::Builder::new().prefix(".palier-now-").tempfile_in(dir).map_err(Error::io("create temporary file in", dir))?;
    let m = tmp.as_file().metadata().map_err(Error::io("read", tmp.path()))?;
    let at = std::time::Duration::new(u64::try_from(m.ctime()).unwrap_or(0), u32::try_from(m.ctime_nsec()).unwrap_or(0));
    Ok(std::time::UNIX_EPOCH + at)
}

impl Outline {
    /// The outline as a file: a first line `palier tree outline 1 <secs>.<nanos>` (when
    /// it was taken), then one folder a line. `None` when a folder name holds a line break.
    pub fn to_text(&self) -> Option<String> {
        let since = self.since.duration_since(std::time::UNIX_EPOCH).ok()?;
        let mut text = format!("palier tree outline 1 {}.{:09}\n", since.as_secs(), since.subsec_nanos());
        for d in &self.dirs {
            if d.contains('\n') {
                return None;
            }
            text.push_str(d);
            text.push('\n');
        }
        Some(text)
    }

    /// Read back [`Outline::to_text`]; `None` when it is not one.
    pub fn from_text(text: &str) -> Option<Outline> {
        let mut lines = text.lines();
        let (secs, nanos) = lines.next()?.strip_prefix("palier tree outline 1 ")?.split_once('.')?;
        let since = std::time::UNIX_EPOCH + std::time::Duration::new(secs.parse().ok()?, nanos.parse().ok()?);
        Some(Outline { since, dirs: lines.map(str::to_owned).collect() })
    }

    /// The site's own files outside `local/` in `root` (whose folders this outlines) that
    /// may have appeared since: those of the folders changed since (ctime from `since` on),
    /// and of every folder below them that the outline does not know. `since` and the
    /// ctimes come from the same clock, the filesystem's (see [`fs_now`]): a change after
    /// `since` has a ctime of `since` or later, and no margin is needed (one of 50 ms
    /// re-read, after a rollback, the last folders the apply's staging had written just
    /// before its swap). Two cases escape this, as they escaped that margin when larger
    /// than it: the system's clock stepped back, and a cluster filesystem whose ctimes come
    /// from each client's own clock (CephFS, Lustre), where a change made from a node whose
    /// clock lags is dated before `since`.
    pub fn site_local_since(&self, root: &Path) -> Result<BTreeSet<String>> {
        use rustix::fs::{AtFlags, FileType, Mode, OFlags};
        let since = self.since.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let since = (since.as_secs() as i64, i64::from(since.subsec_nanos()));
        let dirs = std::iter::once(".").chain(self.dirs.iter().map(String::as_str)).filter(|d| !in_local(d));
        // One stat a folder is most of the time taken here: each relative to the open tree
        // (no walk of the tree's own path every time), on this one thread (the reload hook's
        // process and the rollback's records run meanwhile: a second thread sharing the stats
        // was slower on two cores, interleaved, 25 runs each: 20.8 ms median with it, 18.6
        // without).
        let fd = match rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(BTreeSet::new()),
            Err(e) => return Err(Error::io("open", root)(e.into())),
        };
        let mut out = BTreeSet::new();
        for dir in dirs {
            #[allow(clippy::unnecessary_cast)] // the ctime's seconds are an i32 on 32-bit targets
            let changed = match rustix::fs::statat(&fd, dir, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode) == FileType::Directory && (st.st_ctime as i64, st.st_ctime_nsec as i64) >= since,
                Err(rustix::io::Errno::NOENT) => false,
                Err(e) => return Err(Error::io("read", root.join(dir))(e.into())),
            };
            let dir = if dir == "." { "" } else { dir };
            if !changed || !real_parents(root, dir) {
                continue;
            }
            let path = if dir.is_empty() { root.to_path_buf() } else { root.join(dir) };
            let entries = std::fs::read_dir(&path).map_err(Error::io("list", &path))?;
            for e in entries {
                let e = e.map_err(Error::io("list", &path))?;
                let name = e.file_name();
                let rel = join_rel(dir, &name.to_string_lossy());
                if e.file_type().map_err(Error::io("read", e.path()))?.is_dir() {
                    if !self.dirs.contains(&rel) {
                        walk(root, &rel, &|d, n| !in_local(d) && is_site_local_outside_local(d, n), &mut |p| {
                            out.insert(p);
                        })?;
                    }
                } else if is_site_local_outside_local(dir, name.as_encoded_bytes()) {
                    out.insert(rel);
                }
            }
        }
        Ok(out)
    }
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
pub fn fill_staging(dirroot: &Path, staging: &Path, bundles: &[(&Manifest, &Path)]) -> Result<stage::Cloned> {
    let live = live_path(dirroot)?;
    let cloned = stage::clone_into(&live, staging)?;
    crash::point("stage:clone");
    for (manifest, archive) in bundles {
        stage::apply_bundle(staging, archive, manifest)?;
        crash::point("stage:bundle");
    }
    stage::sync(staging)?;
    crash::point("stage:sync");
    Ok(cloned)
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

/// Rename the tree at `from` to `to` (which must not exist) if it is `tree`. Not synced:
/// only a tree no record names is moved (one set aside for deletion), so a power loss that
/// undoes the rename leaves it under its old name, where the pruning of previous trees
/// deletes it instead.
pub fn move_tree(from: &Path, to: &Path, tree: TreeId) -> Result<bool> {
    if TreeId::dir_at(from) != Some(tree) {
        return Ok(false);
    }
    swap::rename_new(from, to).map_err(Error::io("rename", from))?;
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
        Ok(cloned) => Ok(Staged { path, tree, files_cloned: cloned.files, site_local: cloned.site_local, outline: cloned.outline }),
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
            crash::point("swap:exchange");
            // The staging name now holds the old tree: give it its kept name (a sibling of
            // dirroot). One sync of their folder makes both renames durable; a crash before
            // it leaves the old tree under one of the two names the journal holds, where
            // recovery finds it by identity.
            let kept = if TreeId::dir_at(&staged.path) != Some(old) {
                Err(changed(&staged.path, "the tree swapped out"))
            } else {
                swap::rename_new(&staged.path, previous).map_err(Error::io("rename", &staged.path))
            };
            sync_parent(dirroot)?;
            kept?;
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

/// `dir/name` for a path relative to a tree's root (`dir` empty at the root).
pub(crate) fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") }
}

/// The folders whose every file is the site's own (the deny-list's `local/`).
const LOCAL_DIRS: [&str; 2] = ["local", "public/local"];

/// The site's own files that can be anywhere or at a known place, outside `local/`:
/// checked at these places before every swap, whatever was recorded.
const FIXED: [&str; 6] = ["config.php", "public/config.php", ".htaccess", ".user.ini", "public/.htaccess", "public/.user.ini"];

fn in_local(rel: &str) -> bool {
    LOCAL_DIRS.iter().any(|l| rel == *l || rel.strip_prefix(l).is_some_and(|r| r.starts_with('/')))
}

/// Whether the file `name` in folder `dir` (relative to the code root) is one of the site's
/// own files outside `local/` (the deny-list of `palier_bundle::layout::site_local`):
/// `config.php` and `public/config.php`, any `.htaccess` or `.user.ini`.
pub(crate) fn is_site_local_outside_local(dir: &str, name: &[u8]) -> bool {
    let known = name == b".htaccess" || name == b".user.ini" || (name == b"config.php" && (dir.is_empty() || dir == "public"));
    known && !in_local(dir)
}

/// Walk `root` (symlinks never followed), calling `found` with the relative path of each
/// file or symlink whose folder and name `keep` accepts; `all` folders below `prefix` only.
/// A missing `root/prefix` is an empty walk.
fn walk(root: &Path, prefix: &str, keep: &dyn Fn(&str, &[u8]) -> bool, found: &mut dyn FnMut(String)) -> Result<()> {
    fn dir(path: &Path, rel: &str, keep: &dyn Fn(&str, &[u8]) -> bool, found: &mut dyn FnMut(String)) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let name = e.file_name();
            if e.file_type()?.is_dir() {
                dir(&e.path(), &join_rel(rel, &name.to_string_lossy()), keep, found)?;
            } else if keep(rel, name.as_encoded_bytes()) {
                found(join_rel(rel, &name.to_string_lossy()));
            }
        }
        Ok(())
    }
    let start = if prefix.is_empty() { root.to_path_buf() } else { root.join(prefix) };
    // A prefix that is a symlink is never crossed (read_dir would follow it).
    if !prefix.is_empty() && std::fs::symlink_metadata(&start).is_ok_and(|m| !m.is_dir()) {
        return Ok(());
    }
    dir(&start, prefix, keep, found).map_err(Error::io("list", &start))
}

/// Every file or symlink under `local/` and `public/local/` of `root`: all the site's (a
/// `local` that is itself a symlink, a shared plugin folder, is one of them, not crossed).
fn local_files(root: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for l in LOCAL_DIRS {
        if real_parents(root, l) && std::fs::symlink_metadata(root.join(l)).is_ok_and(|m| !m.is_dir()) {
            out.insert(l.to_owned());
            continue;
        }
        walk(root, l, &|_, _| true, &mut |p| {
            out.insert(p);
        })?;
    }
    Ok(out)
}

/// The site's own files of `root` outside `local/`, found by walking the whole tree.
pub fn site_local_outside_local(root: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    walk(root, "", &|dir, name| !in_local(dir) && is_site_local_outside_local(dir, name), &mut |p| {
        out.insert(p);
    })?;
    Ok(out)
}

/// Whether every folder between `root` and `rel` is a real folder (no symlink crossed).
fn real_parents(root: &Path, rel: &str) -> bool {
    let mut current = root.to_path_buf();
    let Some(parent) = Path::new(rel).parent() else { return true };
    parent.components().all(|part| {
        current.push(part);
        std::fs::symlink_metadata(&current).is_ok_and(|m| m.is_dir())
    })
}

/// Carry `rel` from `from` into `into` unless `into` already holds that very file: a hard
/// link (a symlink copied) renamed over the path, so the file appears whole. Returns
/// whether it changed `into`; `Ok(false)` when `from` has no such file.
fn carry_one(from: &Path, into: &Path, rel: &str) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let src = from.join(rel);
    let dst = into.join(rel);
    if !real_parents(from, rel) {
        return Ok(false);
    }
    let sm = match std::fs::symlink_metadata(&src) {
        Ok(m) if m.is_dir() => return Ok(false),
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("read", &src)(e)),
    };
    match std::fs::symlink_metadata(&dst) {
        Ok(dm) if dm.dev() == sm.dev() && dm.ino() == sm.ino() => return Ok(false),
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
    Ok(true)
}

/// Carry the site's own files from the `live` tree into `into`, a tree about to go live
/// (the staged tree before the swap, the previous tree before a rollback), except the
/// paths in `touched` (the bundles' own files): each is hard-linked (a symlink copied)
/// into `into` where `into` does not already hold that very file, and a file under `local/`
/// that `into` has and the live tree no longer has is removed there. So a `config.php`
/// edited after an apply, or a plugin installed under `local/` since, is never undone by a
/// swap. `into` is never live here. Returns how many paths changed.
///
/// `known`: the site's own files outside `local/` that `into` holds (recorded when it was
/// cloned). Then only those paths, the fixed places (`config.php`, `public/config.php`,
/// `.htaccess` and `.user.ini` at the code root and in `public/`) and the `local/` folders
/// are looked at, not the whole tree: what this cannot see, a `.htaccess` created in
/// another folder since, [`carry_new_site_local`] carries right after the swap. `None`
/// (a record from before the agent kept that list): the whole live tree is walked.
pub fn carry_site_local(live: &Path, into: &Path, touched: &[String], known: Option<&[String]>) -> Result<u64> {
    let theirs = |p: &String| touched.iter().any(|t| t == p);
    let outside: BTreeSet<String> = match known {
        Some(known) => FIXED.iter().map(|p| (*p).to_owned()).chain(known.iter().cloned()).collect(),
        None => site_local_outside_local(live)?,
    };
    let from_local = local_files(live)?;
    let mut changed = 0;
    for rel in outside.iter().chain(&from_local).filter(|p| !theirs(p)) {
        if carry_one(live, into, rel)? {
            changed += 1;
        }
    }
    for rel in local_files(into)?.difference(&from_local).filter(|p| !theirs(p)) {
        let p = into.join(rel);
        std::fs::remove_file(&p).map_err(Error::io("remove", &p))?;
        changed += 1;
    }
    if changed > 0 {
        crash::point("carry:done");
    }
    Ok(changed)
}

/// Right after a swap: the site's own files outside `local/` that the tree just `left`
/// has and the `live` tree lacks (a `.htaccess` created in some folder since the live
/// tree was cloned, which [`carry_site_local`] did not look for), except `touched`, are
/// carried into the live tree, each appearing whole. With `left`'s outline, only the
/// folders changed since it was taken are read; without one, the whole tree. Returns the
/// paths carried.
pub fn carry_new_site_local(left: &Path, live: &Path, touched: &[String], outline: Option<&Outline>) -> Result<Vec<String>> {
    let found = match outline {
        Some(o) => o.site_local_since(left)?,
        None => site_local_outside_local(left)?,
    };
    let mut carried = Vec::new();
    for rel in found {
        if touched.contains(&rel) || std::fs::symlink_metadata(live.join(&rel)).is_ok() {
            continue;
        }
        if carry_one(left, live, &rel)? {
            carried.push(rel);
        }
    }
    if !carried.is_empty() {
        crash::point("carry:new");
    }
    Ok(carried)
}

#[cfg(test)]
mod tests;
