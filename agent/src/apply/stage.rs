//! Staging: a hard-link clone of the live tree, then every bundle's files written as new
//! inodes (never through a link into the live tree), each checked against its sha256 as it
//! streams, and the bundle's deletions. The live tree is never written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use palier_bundle::archive::{self, EntrySink, ReadLimits};
use palier_bundle::{FileEntry, Manifest};

use crate::error::{Error, Result};

/// Whether the agent runs as root: only then can (and must) it give what it creates the
/// owner of what it replaces. As the site's own user, what it creates is already the site's.
fn as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Give `path` (not followed when a symlink) the owner and group of `like`, when root.
fn own_like(path: &Path, like: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if as_root() {
        std::os::unix::fs::lchown(path, Some(like.uid()), Some(like.gid()))?;
    }
    Ok(())
}

/// Create the staging tree's root (which must not exist) with the live tree's mode and owner.
pub fn create_root(live: &Path, staging: &Path) -> Result<()> {
    let meta = fs::metadata(live).map_err(Error::io("read", live))?;
    fs::create_dir(staging).map_err(Error::io("create staging tree", staging))?;
    own_like(staging, &meta).map_err(Error::io("set owner of", staging))?;
    fs::set_permissions(staging, fs::Permissions::from_mode(meta.permissions().mode())).map_err(Error::io("set mode of", staging))
}

/// What a clone found on its way.
#[derive(Debug)]
pub struct Cloned {
    /// Entries cloned (files, symlinks, folders).
    pub files: u64,
    /// The folders of the tree cloned, and when the clone started reading them.
    pub outline: super::Outline,
    /// The site's own files outside `local/` (see [`super::site_local_outside_local`]):
    /// `config.php`, `public/config.php`, every `.htaccess` and `.user.ini`, as relative
    /// paths. The clone visits every entry anyway: noting them costs no extra syscall.
    pub site_local: Vec<String>,
}

/// Clone `live` into the empty `staging`: directories are created with their modes,
/// regular files are hard links (no data copied), symlinks are copied as symlinks.
pub fn clone_into(live: &Path, staging: &Path) -> Result<Cloned> {
    // By the filesystem's own clock, before the first folder is read.
    let beside = staging.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let outline = super::Outline { since: super::fs_now(beside)?, dirs: Default::default() };
    let mut cloned = Cloned { files: 0, outline, site_local: Vec::new() };
    clone_dir(live, staging, "", &mut cloned)?;
    cloned.site_local.sort();
    Ok(cloned)
}

/// `rel` is `src`'s path relative to the tree's root (`""` at the root).
fn clone_dir(src: &Path, dst: &Path, rel: &str, cloned: &mut Cloned) -> Result<()> {
    for entry in fs::read_dir(src).map_err(Error::io("list", src))? {
        let entry = entry.map_err(Error::io("list", src))?;
        let from = entry.path();
        let name = entry.file_name();
        let to = dst.join(&name);
        let ft = entry.file_type().map_err(Error::io("read", &from))?;
        if ft.is_dir() {
            let meta = entry.metadata().map_err(Error::io("read", &from))?;
            fs::create_dir(&to).map_err(Error::io("create", &to))?;
            own_like(&to, &meta).map_err(Error::io("set owner of", &to))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.permissions().mode())).map_err(Error::io("set mode of", &to))?;
            let sub = super::join_rel(rel, &name.to_string_lossy());
            clone_dir(&from, &to, &sub, cloned)?;
            cloned.outline.dirs.insert(sub);
        } else {
            if ft.is_symlink() {
                let target = fs::read_link(&from).map_err(Error::io("read link", &from))?;
                std::os::unix::fs::symlink(target, &to).map_err(Error::io("create link", &to))?;
                if as_root() {
                    let meta = entry.metadata().map_err(Error::io("read", &from))?;
                    own_like(&to, &meta).map_err(Error::io("set owner of", &to))?;
                }
            } else {
                fs::hard_link(&from, &to).map_err(Error::io("hard-link", &to))?;
            }
            if super::is_site_local_outside_local(rel, name.as_encoded_bytes()) {
                cloned.site_local.push(super::join_rel(rel, &name.to_string_lossy()));
            }
        }
        cloned.files += 1;
    }
    Ok(())
}

/// Writes a bundle's files into the staging tree, each as a new inode.
struct StageSink<'a> {
    root: &'a Path,
    /// One copy buffer for every file of the bundle (not one allocation per file).
    buf: Vec<u8>,
}

/// The copy buffer's size: a whole typical PHP file in one `write`.
const COPY_BUF: usize = 128 * 1024;

impl EntrySink for StageSink<'_> {
    fn file(&mut self, entry: &FileEntry, data: &mut dyn Read) -> io::Result<()> {
        let path = self.root.join(entry.path.as_str());
        if let Some(parent) = path.parent() {
            make_dirs(self.root, parent)?;
        }
        // The staged name may be a hard link to the live file: unlink it, never write through it.
        // The new file takes the owner of the one it replaces, or of its folder.
        let owner = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => return Err(io::Error::other(format!("{} is a directory in the site", entry.path))),
            Ok(m) => {
                fs::remove_file(&path)?;
                m
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::metadata(path.parent().unwrap_or(self.root))?,
            Err(e) => return Err(e),
        };
        let mut file = OpenOptions::new().write(true).create_new(true).mode(entry.mode.bits()).open(&path)?;
        if as_root() {
            use std::os::unix::fs::MetadataExt;
            std::os::unix::fs::fchown(&file, Some(owner.uid()), Some(owner.gid()))?;
        }
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            io::Write::write_all(&mut file, &self.buf[..n])?;
        }
        file.set_permissions(fs::Permissions::from_mode(entry.mode.bits()))?;
        Ok(())
    }
}

/// Create the missing directories of `dir` under `root`, refusing to follow a symlink; a
/// new folder takes the owner of the folder it is created in.
pub(crate) fn make_dirs(root: &Path, dir: &Path) -> io::Result<()> {
    let rel = dir.strip_prefix(root).map_err(io::Error::other)?;
    let mut current = root.to_path_buf();
    for part in rel.components() {
        let parent = current.clone();
        current.push(part);
        let create = |current: &Path| -> io::Result<()> {
            fs::create_dir(current)?;
            own_like(current, &fs::metadata(&parent)?)
        };
        match fs::symlink_metadata(&current) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io::Error::other(format!("{} is a symlink in the site: not written through", current.display())));
            }
            Ok(_) => fs::remove_file(&current).and_then(|()| create(&current))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => create(&current)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Apply one bundle's archive onto the staging tree, verifying it against its signed
/// manifest as it streams, then its deletions.
pub fn apply_bundle(staging: &Path, archive_path: &Path, signed: &Manifest) -> Result<()> {
    let file = File::open(archive_path).map_err(Error::io("open bundle archive", archive_path))?;
    let limits = ReadLimits { max_expanded: signed.expanded_size(), expected: Some(signed) };
    archive::read_archive(file, limits, &mut StageSink { root: staging, buf: vec![0; COPY_BUF] })
        .map_err(|e| Error::Site { path: archive_path.into(), why: format!("bundle {} refused: {e}", signed.key()) })?;
    let refused = |path: &str, why: String| Error::Site { path: staging.join(path), why: format!("bundle {} refused: delete {path}: {why}", signed.key()) };
    for path in &signed.delete {
        // Every folder on the way must be a real folder of the tree: a symlink there
        // (a shared plugin folder, a link into the live tree) is never crossed.
        let Some(target) = beneath(staging, path.as_str()).map_err(|e| refused(path.as_str(), e.to_string()))? else { continue };
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => return Err(refused(path.as_str(), "it is a folder in the site; a bundle deletes files, never a whole folder".into())),
            // A file or a symlink itself: unlinked, never followed.
            Ok(_) => fs::remove_file(&target).map_err(Error::io("delete", &target))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("delete", &target)(e)),
        }
    }
    Ok(())
}

/// `root/rel` when every folder between them is a real folder; `None` when one is missing
/// (so nothing is there); an error naming the first symlink on the way.
fn beneath(root: &Path, rel: &str) -> io::Result<Option<PathBuf>> {
    let rel = Path::new(rel);
    let mut current = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for part in parent.components() {
            current.push(part);
            match fs::symlink_metadata(&current) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    let shown = current.strip_prefix(root).unwrap_or(&current);
                    return Err(io::Error::other(format!("{} is a symlink in the site: not crossed", shown.display())));
                }
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Some(root.join(rel)))
}

/// Flush the staged tree to disk before it goes live (one `syncfs` of its filesystem).
pub fn sync(staging: &Path) -> Result<()> {
    let dir = File::open(staging).map_err(Error::io("open", staging))?;
    rustix::fs::syncfs(&dir).map_err(|e| Error::io("sync", staging)(e.into()))?;
    Ok(())
}

/// A path beside `beside` (the live tree, or a tree being set aside) for a tree in `kind`
/// (`stage`, `prev`, `trash`) of intervention `tag`: same filesystem, so hard links and the
/// atomic exchange work. The name derives from dirroot's own name, never from the name of
/// the tree beside it (a symlinked dirroot's target may itself be a staged tree).
pub fn sibling(dirroot: &Path, beside: &Path, kind: &str, tag: &str) -> PathBuf {
    let name = dirroot.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dirroot".into());
    beside.with_file_name(format!(".palier-{kind}-{name}-{tag}"))
}

