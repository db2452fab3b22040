//! The one atomic step of an intervention: the staged tree takes the live tree's place.
//!
//! A real directory is exchanged with `renameat2(RENAME_EXCHANGE)`: both names exist before
//! and after, and no instant sees neither or a mix. Where dirroot is a symlink, a new
//! symlink is renamed over it, which is atomic too.

use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};

/// Exchange two directories atomically: each name now holds the other's tree.
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(io::Error::from)
}

/// Rename the tree at `from` to `to`, which must not exist (never over an empty folder).
pub fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
}

/// Point the symlink `link` at `target` atomically (a new link renamed over the old one).
pub fn flip_symlink(link: &Path, target: &Path) -> io::Result<()> {
    let parent = link.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = link.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".palier-link-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    if let Err(e) = std::fs::rename(&tmp, link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Where the live code really is: dirroot itself, or what its symlink points to.
pub fn live_target(dirroot: &Path) -> io::Result<Option<PathBuf>> {
    let meta = std::fs::symlink_metadata(dirroot)?;
    if !meta.file_type().is_symlink() {
        return Ok(None);
    }
    let target = std::fs::read_link(dirroot)?;
    Ok(Some(if target.is_absolute() {
        target
    } else {
        dirroot.parent().unwrap_or(Path::new(".")).join(target)
    }))
}
