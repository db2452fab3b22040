//! The intervention journal (`state_dir/journal.json`): written atomically before each step
//! that changes the site, so that after a crash or a kill at any instant the next start can
//! bring the site back to one whole tree and say what happened.
//!
//! Trees are recognised by identity (device and inode of the tree's directory), which moves
//! with the tree through the atomic exchange: whatever instant the agent died at, comparing
//! the live tree's identity with the journal's tells which tree is live. No tree is ever
//! renamed or deleted without its identity matching the journal's first.
//!
//! The journal stays a set of atomic JSON files rather than one SQLite store: each step
//! writes one record (temporary file, fsync, rename, fsync of the folder), and every record
//! that must change with the commit (installed bundles, the last intervention) is carried
//! inside the committed journal itself, so recovery rewrites them from it. Every step of
//! recovery is idempotent: a kill during recovery is recovered the same way.
//!
//! Phases, in order: `preparing` (maintenance, backup, staging; the live tree has not
//! changed), `swapping` (the exchange is about to happen or has happened), then either
//! `committed` (the new tree stays; installed record and receipt follow) or `rolling-back`
//! (the old tree goes back) and, where data may have changed and a backup exists,
//! `restoring` (the restore hook runs in maintenance; recovery runs it again until it
//! succeeds, so restore hooks must be idempotent).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::site::Installed;

/// A tree's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeId {
    pub dev: u64,
    pub ino: u64,
}

impl TreeId {
    pub fn of(path: &Path) -> Result<TreeId> {
        let m = std::fs::metadata(path).map_err(Error::io("read", path))?;
        Ok(TreeId { dev: m.dev(), ino: m.ino() })
    }
    /// The identity of `path`, or `None` if nothing is there.
    pub fn at(path: &Path) -> Option<TreeId> {
        std::fs::metadata(path).ok().map(|m| TreeId { dev: m.dev(), ino: m.ino() })
    }
    /// The identity of the directory at `path` itself (a symlink there is not followed).
    pub fn dir_at(path: &Path) -> Option<TreeId> {
        std::fs::symlink_metadata(path).ok().filter(|m| m.is_dir()).map(|m| TreeId { dev: m.dev(), ino: m.ino() })
    }
}

/// How far an intervention got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Maintenance, backup or staging under way: the live tree has not changed.
    Preparing,
    /// The exchange is about to happen or has happened; checks have not passed yet.
    Swapping,
    /// Checks passed: the new tree stays; the installed record and the last intervention
    /// are carried in the journal (`commit`) and written from it.
    Committed,
    /// A rollback was decided (a failure after the swap, the watch, by hand) or an
    /// interrupted swap is being undone: the old tree goes back.
    RollingBack,
    /// The old tree is live again and the backup is being restored, in maintenance.
    Restoring,
}

/// What the commit writes, kept in the journal so that recovery can write it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    pub installed: Vec<Installed>,
    pub last: crate::intervene::Last,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    pub id: String,
    pub started_at: Timestamp,
    pub bundles: Vec<String>,
    pub phase: Phase,
    /// The live tree's identity before the intervention.
    pub old_tree: TreeId,
    /// The staged tree's identity, once it exists.
    pub new_tree: Option<TreeId>,
    /// Where the staged tree is built.
    pub staging: PathBuf,
    /// Where the old tree is kept once the new one is live (directory mode).
    pub previous: PathBuf,
    /// The installed record before the intervention, put back if it is undone.
    pub installed_before: Vec<Installed>,
    /// Maintenance mode was turned on (level 3): turn it off after a recovery.
    pub maintenance: bool,
    /// The backup taken before the change (level 3).
    pub backup_dir: Option<PathBuf>,
    /// Hooks that may change data (upgrade) have started: undoing needs the restore hook.
    pub data_changed: bool,
    /// The id of the receipt this operation ends with (the intervention's id, or
    /// `<id>-rollback` for a rollback by hand or by the watch).
    #[serde(default)]
    pub receipt: String,
    /// A decided rollback (not an interrupted swap): remembered as rolled back once done.
    #[serde(default)]
    pub hold: bool,
    /// Why the rollback was decided.
    #[serde(default)]
    pub reason: Option<String>,
    /// Set with phase `committed`.
    #[serde(default)]
    pub commit: Option<Commit>,
    /// The paths the bundles write or delete: theirs. Every other site-local file is the
    /// site's, carried into whichever tree goes live (see `apply::carry_site_local`).
    #[serde(default)]
    pub touched: Vec<String>,
    /// The site's own files outside `local/` that the old tree holds (`config.php`,
    /// `.htaccess`, `.user.ini`), noted by the staging clone: where a rollback looks for
    /// edits made since, instead of walking the whole tree. `None` in a journal from before
    /// the agent kept it: the whole tree is walked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_local: Option<Vec<String>>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("journal.json")
}

/// Write the journal atomically (temporary file, fsync, rename, fsync of the folder).
pub fn write(state_dir: &Path, journal: &Journal) -> Result<()> {
    write_record(&path(state_dir), journal, "journal")?;
    crate::crash::point(match journal.phase {
        Phase::Preparing => "journal:preparing",
        Phase::Swapping => "journal:swapping",
        Phase::Committed => "journal:committed",
        Phase::RollingBack => "journal:rolling-back",
        Phase::Restoring => "journal:restoring",
    });
    Ok(())
}

pub fn read(state_dir: &Path) -> Result<Option<Journal>> {
    read_record(&path(state_dir), "journal")
}

/// Write one of the agent's JSON records (`what` names it in errors) atomically.
pub fn write_record<T: Serialize>(path: &Path, value: &T, what: &str) -> Result<()> {
    Pending::record(path, value, what)?.put_synced()
}

/// Read one of the agent's JSON records; `None` when it does not exist.
pub fn read_record<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Site { path: path.into(), why: format!("unreadable {what}: {e}") }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

/// Remove the journal once the intervention's receipt is saved. Not synced: a journal that a
/// power loss brings back describes work already done, whose receipt is saved; its recovery
/// finds everything in place and only adds a recovery receipt (the crash-point test kills
/// the agent between the receipt and this removal, for every kind of intervention).
pub fn clear(state_dir: &Path) -> Result<()> {
    let p = path(state_dir);
    match std::fs::remove_file(&p) {
        Ok(()) => {
            crate::crash::point("journal:clear");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", p)(e)),
    }
}

/// Write `data` to `path` so that a crash leaves either the old or the new content.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    Pending::new(path, data)?.put_synced()
}

/// A record's new content, written and synced beside it under a temporary name: [`Pending::put`]
/// puts it in place in one rename. Several records of one folder so become final with one sync
/// of the folder after their renames, instead of one each. Dropped unput, the temporary file
/// goes.
pub struct Pending {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl Pending {
    pub fn new(path: &Path, data: &[u8]) -> Result<Pending> {
        use std::io::Write;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new().prefix(".palier-").tempfile_in(dir).map_err(Error::io("create temporary file in", dir))?;
        tmp.write_all(data).map_err(Error::io("write", path))?;
        tmp.as_file().sync_all().map_err(Error::io("sync", path))?;
        Ok(Pending { tmp, path: path.to_owned() })
    }

    /// [`Pending::new`] for one of the agent's JSON records (`what` names it in errors).
    pub fn record<T: Serialize>(path: &Path, value: &T, what: &str) -> Result<Pending> {
        let text = serde_json::to_vec_pretty(value).map_err(|e| Error::Refused(format!("cannot encode the {what}: {e}")))?;
        Pending::new(path, &text)
    }

    /// The new content in place (visible at once; durable once its folder is synced).
    pub fn put(self) -> Result<()> {
        let path = self.path;
        self.tmp.persist(&path).map_err(|e| Error::io("write", &path)(e.error))?;
        Ok(())
    }

    /// [`Pending::put`], then its folder synced: final at once.
    pub fn put_synced(self) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        self.put()?;
        sync_dir(&dir)
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("sync folder", dir))
}
