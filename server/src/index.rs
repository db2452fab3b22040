//! The file-ownership index: for every bundle of the repository's bins, the paths it writes
//! and deletes, the bundles it names in `after` and whether it is yanked. `publish` asks it
//! which active bundles touch the new bundle's paths instead of reading every bundle of the
//! repository, so the check costs the same at 10 bundles and at 10,000.
//!
//! It is derived data, kept in one SQLite database in the online keys folder ([`FILE`], with
//! its write-ahead log beside it): that folder is never served (the repository folder may be
//! served whole by a static web server, so nothing server-side goes there), every command
//! that changes the repository already needs it (the writers' lock is there), and a restore
//! of the repository alone leaves the index to notice it is stale. It is only read and
//! written under the writers' lock.
//!
//! Each bin's rows record the bin's version (and its file's size, change time and inode) as
//! the snapshot named it when they were read. On use, every bin whose record differs from
//! the current snapshot (changed by another command, `retire`, `migrate`, a restore from a
//! backup) is indexed again from its verified metadata: its bundles' states from the bin, and
//! the paths of a bundle the index does not hold yet from the manifest inside its archive in
//! `targets/` (never from the signed file list, which the metadata does not need to carry).
//! A missing, unreadable or corrupt index, one of another schema or made for another
//! repository (another pinned root) is deleted and built again.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use palier_bundle::ownership::{Claims, Conflict};
use palier_bundle::{BundleRef, BundleState, Dependency, RelPath};
use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::repo::{Head, MARKER_ROLES, RepoPaths, archive_manifest, published, refused};

/// The index's file name in the online keys folder.
pub const FILE: &str = "ownership-index.sqlite";

/// The schema; a file with another `user_version` is built again.
const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "
    CREATE TABLE repository (root_sha256 TEXT NOT NULL) STRICT;
    CREATE TABLE bins (
        name TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL,
        file_len INTEGER NOT NULL,
        file_ctime_ns INTEGER NOT NULL,
        file_ino INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE bundles (
        target TEXT PRIMARY KEY NOT NULL,
        bin TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        id TEXT NOT NULL,
        version TEXT NOT NULL,
        yanked INTEGER NOT NULL,
        after TEXT NOT NULL
    ) STRICT;
    CREATE INDEX bundles_bin ON bundles(bin);
    CREATE INDEX bundles_id ON bundles(id, yanked);
    CREATE TABLE paths (
        path TEXT NOT NULL,
        target TEXT NOT NULL,
        deletes INTEGER NOT NULL,
        PRIMARY KEY (path, target, deletes)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX paths_target ON paths(target);
";

/// What bringing the index up to date did: how many bins were indexed again and how many
/// archives were read for their manifests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub rebuilt: bool,
    pub bins: usize,
    pub archives: usize,
}

/// A bin's metadata file as the index saw it: version, and the file's size, change time and
/// inode, so that a file of the same version put back from a backup is noticed too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BinSeen {
    version: i64,
    len: i64,
    ctime_ns: i64,
    ino: i64,
}

impl BinSeen {
    pub(crate) fn of(paths: &RepoPaths, name: &str, version: NonZeroU64) -> Option<BinSeen> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(paths.metadata().join(format!("{version}.{name}.json"))).ok()?;
        Some(BinSeen {
            version: i64::try_from(version.get()).ok()?,
            len: i64::try_from(m.len()).ok()?,
            ctime_ns: m.ctime().saturating_mul(1_000_000_000).saturating_add(m.ctime_nsec()),
            ino: m.ino() as i64,
        })
    }
}

/// What indexing one bin again changes: the bundles that left it, the states of those the
/// index holds, the bundles it does not hold yet (target, sha256, yanked, claims).
struct BinUpdate {
    name: String,
    seen: BinSeen,
    forget: Vec<String>,
    states: Vec<(String, bool)>,
    new: Vec<(String, String, bool, Claims)>,
}

/// Why a use of the index failed: the index itself (then it is built again) or the repository.
enum Failure {
    Index(&'static str, rusqlite::Error),
    Repo(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Repo(e)
    }
}

fn db(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Failure {
    move |e| Failure::Index(what, e)
}

/// Rows that do not parse: the file was changed behind the index's back.
fn corrupt(what: impl std::fmt::Display) -> Failure {
    Failure::Index("read a row", rusqlite::Error::InvalidColumnName(what.to_string()))
}

/// The open index, up to date with the head it was checked against.
pub(crate) struct Index {
    conn: Connection,
    path: PathBuf,
}

impl Index {
    /// The index of `paths`, brought up to date with `head` (see the module's documentation),
    /// and the first conflict of `mine` with the active bundles it holds (see
    /// [`Index::conflict`]). An index that cannot be used is deleted and built again, once.
    pub(crate) fn check(paths: &RepoPaths, head: &Head, mine: &Claims) -> Result<(Index, Option<Conflict>, Refreshed)> {
        let path = paths.keys.join(FILE);
        let root_sha256 = root_digest(paths)?;
        let mut rebuilt = false;
        loop {
            let attempt = Self::try_open(&path, &root_sha256, paths, head).and_then(|(index, refreshed)| {
                let conflict = index.conflict(mine)?;
                Ok((index, conflict, refreshed))
            });
            match attempt {
                Ok((index, conflict, mut refreshed)) => {
                    refreshed.rebuilt |= rebuilt;
                    return Ok((index, conflict, refreshed));
                }
                Err(Failure::Repo(e)) => return Err(e),
                Err(Failure::Index(what, source)) if rebuilt => return Err(Error::Index { path, what, source }),
                Err(Failure::Index(what, source)) => {
                    tracing::warn!(index = %path.display(), what, error = %source, "ownership index unusable; building it again");
                    remove(&path)?;
                    rebuilt = true;
                }
            }
        }
    }

    fn try_open(path: &Path, root_sha256: &str, paths: &RepoPaths, head: &Head) -> Result<(Index, Refreshed), Failure> {
        // Mode 0600 like the keys beside it, whatever the umask, and so its WAL files.
        if !path.exists() {
            crate::store::create_private(path).map_err(Failure::Repo)?;
        }
        let mut conn = Connection::open(path).map_err(db("open"))?;
        // Derived data: a crash may lose the last transactions (WAL, synchronous NORMAL: no
        // sync per commit), never consistency, and a lost record only makes a bin look stale.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").map_err(db("set pragmas"))?;
        // No checkpoint when the command ends: the WAL stays beside the file for the next one,
        // which spares every publish the syncs of a checkpoint and of a new WAL file (SQLite
        // checkpoints by itself, inside a commit, once the WAL holds 1,000 pages).
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true).map_err(db("set pragmas"))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db("read the schema version"))?;
        let fresh = if version == 0 {
            // Mode 0600 like the keys beside it, whatever the umask.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Failure::Repo(Error::Io { action: "set permissions of", path: path.to_path_buf(), source: e }))?;
            let tx = conn.transaction().map_err(db("create the schema"))?;
            tx.execute_batch(SCHEMA).map_err(db("create the schema"))?;
            tx.execute("INSERT INTO repository (root_sha256) VALUES (?1)", [root_sha256]).map_err(db("create the schema"))?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(db("create the schema"))?;
            tx.commit().map_err(db("create the schema"))?;
            true
        } else if version != SCHEMA_VERSION {
            return Err(Failure::Index("read the schema version", rusqlite::Error::InvalidQuery));
        } else {
            let recorded: String = conn.query_row("SELECT root_sha256 FROM repository", [], |r| r.get(0)).map_err(db("read the repository's root"))?;
            if recorded != root_sha256 {
                return Err(corrupt(format!("made for another repository (root sha256 {recorded})")));
            }
            false
        };
        let mut index = Index { conn, path: path.to_path_buf() };
        let mut refreshed = index.refresh(paths, head)?;
        refreshed.rebuilt = fresh;
        Ok((index, refreshed))
    }

    /// Index again every bin whose record differs from what `head`'s snapshot names.
    fn refresh(&mut self, paths: &RepoPaths, head: &Head) -> Result<Refreshed, Failure> {
        let delegations = head.delegations(&paths.dir)?;
        let mut recorded: HashMap<String, BinSeen> = HashMap::new();
        {
            let mut stmt = self.conn.prepare("SELECT name, version, file_len, file_ctime_ns, file_ino FROM bins").map_err(db("read the bins"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, BinSeen { version: r.get(1)?, len: r.get(2)?, ctime_ns: r.get(3)?, ino: r.get(4)? })))
                .map_err(db("read the bins"))?;
            for row in rows {
                let (name, seen) = row.map_err(db("read the bins"))?;
                recorded.insert(name, seen);
            }
        }
        let mut refreshed = Refreshed::default();
        let mut delegated = BTreeSet::new();
        let (mut pending, mut pending_bundles) = (Vec::new(), 0);
        for role in delegations.roles.iter().filter(|r| !MARKER_ROLES.contains(&r.name.as_str())) {
            delegated.insert(role.name.as_str());
            let version = head.snapshot.signed.meta.get(&format!("{}.json", role.name)).map(|m| m.version);
            let seen = version.and_then(|v| BinSeen::of(paths, &role.name, v));
            if seen.is_some() && seen == recorded.get(&role.name).copied() {
                continue;
            }
            let update = self.read_bin(paths, head, &role.name)?;
            refreshed.archives += update.new.len();
            refreshed.bins += 1;
            pending_bundles += update.states.len() + update.new.len();
            pending.push(update);
            // Written in a few transactions, not one per bin: a rebuild commits (and syncs) a
            // few times, and holds a bounded number of bundles' paths meanwhile.
            if pending_bundles >= 2048 {
                self.apply(std::mem::take(&mut pending))?;
                pending_bundles = 0;
            }
        }
        self.apply(pending)?;
        // Roles no longer delegated (a repository made again under the same keys folder).
        let gone: Vec<&String> = recorded.keys().filter(|n| !delegated.contains(n.as_str())).collect();
        if !gone.is_empty() {
            let tx = self.conn.transaction().map_err(db("forget a bin"))?;
            for name in gone {
                tx.execute("DELETE FROM paths WHERE target IN (SELECT target FROM bundles WHERE bin = ?1)", [name]).map_err(db("forget a bin"))?;
                tx.execute("DELETE FROM bundles WHERE bin = ?1", [name]).map_err(db("forget a bin"))?;
                tx.execute("DELETE FROM bins WHERE name = ?1", [name]).map_err(db("forget a bin"))?;
            }
            tx.commit().map_err(db("forget a bin"))?;
        }
        Ok(refreshed)
    }

    /// What indexing bin `name` again changes, read from its verified metadata and, for a
    /// bundle the index does not hold yet, its archive.
    fn read_bin(&self, paths: &RepoPaths, head: &Head, name: &str) -> Result<BinUpdate, Failure> {
        let bin = head.load_bin(paths, name)?;
        let version = bin.signed.version;
        let seen = BinSeen::of(paths, name, version).ok_or_else(|| Failure::Repo(refused(&paths.dir, format!("{version}.{name}.json"), "it cannot be read")))?;
        let mut known: HashMap<String, String> = HashMap::new();
        {
            let mut stmt = self.conn.prepare_cached("SELECT target, sha256 FROM bundles WHERE bin = ?1").map_err(db("read a bin's bundles"))?;
            let rows = stmt.query_map([name], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(db("read a bin's bundles"))?;
            for row in rows {
                let (target, sha) = row.map_err(db("read a bin's bundles"))?;
                known.insert(target, sha);
            }
        }
        let mut update = BinUpdate { name: name.to_owned(), seen, forget: Vec::new(), states: Vec::new(), new: Vec::new() };
        for (target_name, target) in &bin.signed.targets {
            if palier_bundle::halt::is_marker(target_name.raw()) {
                continue;
            }
            let p = published(target_name, target)?;
            let yanked = p.meta.state == BundleState::Yanked;
            if known.remove(&p.target).is_some_and(|sha| sha == p.sha256) {
                update.states.push((p.target, yanked));
                continue;
            }
            let manifest = archive_manifest(paths, &p).map_err(|e| match e {
                Error::Io { path, source, .. } => Failure::Repo(Error::Refused(format!(
                    "repository {}: cannot read the archive of {} ({}: {source}) to check file ownership; restore it from a backup of targets/",
                    paths.dir.display(),
                    p.target,
                    path.display()
                ))),
                e => Failure::Repo(e),
            })?;
            update.new.push((p.target, p.sha256, yanked, Claims::from(&manifest)));
        }
        // What the index still holds of this bin left it (retired).
        update.forget = known.into_keys().collect();
        Ok(update)
    }

    /// Write `updates` in one transaction.
    fn apply(&mut self, updates: Vec<BinUpdate>) -> Result<(), Failure> {
        if updates.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(db("index a bin"))?;
        for u in &updates {
            for target in u.forget.iter().chain(u.new.iter().map(|(t, ..)| t)) {
                tx.prepare_cached("DELETE FROM paths WHERE target = ?1").and_then(|mut st| st.execute([target])).map_err(db("index a bin"))?;
                tx.prepare_cached("DELETE FROM bundles WHERE target = ?1").and_then(|mut st| st.execute([target])).map_err(db("index a bin"))?;
            }
            for (target, yanked) in &u.states {
                tx.prepare_cached("UPDATE bundles SET yanked = ?2 WHERE target = ?1").and_then(|mut st| st.execute(params![target, yanked])).map_err(db("index a bin"))?;
            }
            for (target, sha, yanked, claims) in &u.new {
                insert(&tx, &u.name, target, sha, *yanked, claims)?;
            }
            record_bin(&tx, &u.name, u.seen)?;
        }
        tx.commit().map_err(db("index a bin"))
    }

    /// The first conflict (see [`palier_bundle::ownership::conflicts`]) between `mine` and the
    /// newest version that is not yanked of every other id, as `publish` refuses it. Only the
    /// ids that touch one of `mine`'s paths, a folder above one, or a path under a folder
    /// `mine` deletes are read.
    fn conflict(&self, mine: &Claims) -> Result<Option<Conflict>, Failure> {
        let me = mine.bundle.id.as_str();
        let mut ids: BTreeSet<String> = BTreeSet::new();
        let mut collect = |stmt: &mut rusqlite::Statement<'_>, a: &str, b: Option<&str>| -> Result<(), Failure> {
            fn first(r: &rusqlite::Row<'_>) -> rusqlite::Result<String> {
                r.get(0)
            }
            let rows = match b {
                Some(b) => stmt.query_map(params![a, b, me], first),
                None => stmt.query_map(params![a, me], first),
            }
            .map_err(db("look up a path"))?;
            for id in rows {
                ids.insert(id.map_err(db("look up a path"))?);
            }
            Ok(())
        };
        let join = "SELECT DISTINCT b.id FROM paths p JOIN bundles b ON b.target = p.target WHERE b.yanked = 0";
        let mut exact = self.conn.prepare_cached(&format!("{join} AND p.path = ?1 AND b.id != ?2")).map_err(db("look up a path"))?;
        let mut deleted_above = self.conn.prepare_cached(&format!("{join} AND p.path = ?1 AND p.deletes = 1 AND b.id != ?2")).map_err(db("look up a path"))?;
        let mut under = self.conn.prepare_cached(&format!("{join} AND p.path > ?1 AND p.path < ?2 AND b.id != ?3")).map_err(db("look up a path"))?;
        for path in mine.paths() {
            let path = path.as_str();
            collect(&mut exact, path, None)?;
            let mut folder = path;
            while let Some((above, _)) = folder.rsplit_once('/') {
                collect(&mut deleted_above, above, None)?;
                folder = above;
            }
        }
        for deleted in &mine.deletes {
            // Every path starting with `deleted/`: from `deleted/` up to `deleted0` ('0' follows '/').
            let (from, to) = (format!("{deleted}/"), format!("{deleted}0"));
            collect(&mut under, &from, Some(&to))?;
        }
        let mut others: Vec<Claims> = Vec::new();
        for id in &ids {
            if let Some(claims) = self.newest_active(id)? {
                others.push(claims);
            }
        }
        let mut all: Vec<&Claims> = others.iter().collect();
        all.push(mine);
        Ok(palier_bundle::ownership::conflicts_among(&all).into_iter().find(|c| c.first == mine.bundle || c.second == mine.bundle))
    }

    /// The claims of the newest version of `id` that is not yanked.
    fn newest_active(&self, id: &str) -> Result<Option<Claims>, Failure> {
        let mut stmt = self.conn.prepare_cached("SELECT target, version, after FROM bundles WHERE id = ?1 AND yanked = 0").map_err(db("read a bundle"))?;
        let rows = stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))).map_err(db("read a bundle"))?;
        let mut newest: Option<(BundleRef, String, String)> = None;
        for row in rows {
            let (target, version, after) = row.map_err(db("read a bundle"))?;
            let bundle: BundleRef = format!("{id}@{version}").parse().map_err(|e| corrupt(format!("bundle {target}: {e}")))?;
            if newest.as_ref().is_none_or(|(b, ..)| b.version < bundle.version) {
                newest = Some((bundle, target, after));
            }
        }
        let Some((bundle, target, after)) = newest else { return Ok(None) };
        let after: Vec<String> = serde_json::from_str(&after).map_err(|e| corrupt(format!("after of {target}: {e}")))?;
        let after = after.iter().map(|d| Dependency::parse(d)).collect::<Result<Vec<_>, _>>().map_err(|e| corrupt(format!("after of {target}: {e}")))?;
        let mut claims = Claims { bundle, writes: Vec::new(), deletes: Vec::new(), after };
        let mut stmt = self.conn.prepare_cached("SELECT path, deletes FROM paths WHERE target = ?1").map_err(db("read a bundle's paths"))?;
        let rows = stmt.query_map([&target], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))).map_err(db("read a bundle's paths"))?;
        for row in rows {
            let (path, deletes) = row.map_err(db("read a bundle's paths"))?;
            let path = RelPath::new(&path).map_err(|e| corrupt(format!("path of {target}: {e}")))?;
            if deletes { claims.deletes.push(path) } else { claims.writes.push(path) }
        }
        Ok(Some(claims))
    }

    /// Record a bundle just published as a target of bin `bin`, now at `seen`. A failure is
    /// only logged: the publish is done, and the next use indexes that bin again.
    pub(crate) fn record_published(&mut self, bin: &str, seen: Option<BinSeen>, target: &str, sha256: &str, claims: &Claims) {
        let result = (|| -> Result<(), Failure> {
            let tx = self.conn.transaction().map_err(db("record a bundle"))?;
            insert(&tx, bin, target, sha256, false, claims)?;
            if let Some(seen) = seen {
                record_bin(&tx, bin, seen)?;
            }
            tx.commit().map_err(db("record a bundle"))
        })();
        if let Err(f) = result {
            let error = match f {
                Failure::Index(what, e) => format!("cannot {what}: {e}"),
                Failure::Repo(e) => e.to_string(),
            };
            tracing::warn!(index = %self.path.display(), error, "ownership index not updated; the next publish indexes this bin again");
        }
    }
}

fn insert(tx: &rusqlite::Transaction<'_>, bin: &str, target: &str, sha256: &str, yanked: bool, claims: &Claims) -> Result<(), Failure> {
    let after: Vec<String> = claims.after.iter().map(ToString::to_string).collect();
    let after = serde_json::to_string(&after).map_err(corrupt)?;
    tx.prepare_cached("DELETE FROM paths WHERE target = ?1").and_then(|mut st| st.execute([target])).map_err(db("index a bundle"))?;
    tx.prepare_cached("INSERT OR REPLACE INTO bundles (target, bin, sha256, id, version, yanked, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
        .and_then(|mut st| st.execute(params![target, bin, sha256, claims.bundle.id.as_str(), claims.bundle.version.to_string(), yanked, after]))
        .map_err(db("index a bundle"))?;
    let mut stmt = tx.prepare_cached("INSERT OR IGNORE INTO paths (path, target, deletes) VALUES (?1, ?2, ?3)").map_err(db("index a bundle"))?;
    for p in &claims.writes {
        stmt.execute(params![p.as_str(), target, false]).map_err(db("index a bundle"))?;
    }
    for p in &claims.deletes {
        stmt.execute(params![p.as_str(), target, true]).map_err(db("index a bundle"))?;
    }
    Ok(())
}

fn record_bin(tx: &rusqlite::Transaction<'_>, name: &str, seen: BinSeen) -> Result<(), Failure> {
    tx.execute(
        "INSERT OR REPLACE INTO bins (name, version, file_len, file_ctime_ns, file_ino) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, seen.version, seen.len, seen.ctime_ns, seen.ino],
    )
    .map_err(db("record a bin"))?;
    Ok(())
}

fn root_digest(paths: &RepoPaths) -> Result<String> {
    let root = paths.pinned_root();
    let bytes = std::fs::read(&root).map_err(Error::io("read root metadata", &root))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Delete the index and SQLite's files beside it.
fn remove(path: &Path) -> Result<()> {
    let beside = |suffix: &str| PathBuf::from(format!("{}{suffix}", path.display()));
    for p in [path.to_path_buf(), beside("-wal"), beside("-shm"), beside("-journal")] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io { action: "remove the ownership index", path: p, source: e }),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use palier_bundle::BundleState;
    use palier_bundle::hostile::{self, RawEntry};

    use super::*;
    use crate::repo::{self, Expiries, Thresholds};

    fn now() -> jiff::Timestamp {
        "2026-12-01T09:00:00Z".parse().unwrap()
    }

    async fn publish(paths: &RepoPaths, dir: &Path, id: &str, path: &str) {
        let m = hostile::manifest_for(id, "1.0.0", &[(path, b"<?php\n")]);
        let archive = dir.join(format!("{id}.tar.gz"));
        std::fs::write(&archive, hostile::craft(&[hostile::manifest_entry(&m), RawEntry::file(&format!("files/{path}"), b"<?php\n")])).unwrap();
        repo::publish(paths, &archive, Default::default(), repo::DEFAULT_MAX_EXPANDED, now()).await.unwrap();
    }

    fn check(paths: &RepoPaths, id: &str, path: &str) -> (Option<Conflict>, Refreshed) {
        let head = Head::load(paths).unwrap();
        let mine = Claims::from(&hostile::manifest_for(id, "1.0.0", &[(path, b"<?php\n")]));
        let (_, conflict, refreshed) = Index::check(paths, &head, &mine).unwrap();
        (conflict, refreshed)
    }

    /// What a check costs: nothing re-read when the index is current, one bin (and no
    /// archive) after another command re-signed it, every archive once when it is missing.
    #[tokio::test]
    async fn a_current_index_reads_no_bin_and_no_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = RepoPaths::new(tmp.path().join("repo"), None);
        repo::init(&paths, Thresholds::default(), Expiries::default(), now()).await.unwrap();
        for i in 0..5 {
            publish(&paths, tmp.path(), &format!("quiz-{i}"), &format!("mod/quiz/{i}.php")).await;
        }
        let (conflict, refreshed) = check(&paths, "quiz-x", "mod/quiz/3.php");
        assert_eq!(conflict.unwrap().first.to_string(), "quiz-3@1.0.0");
        assert_eq!(refreshed, Refreshed::default());

        repo::update(&paths, &"quiz-3@1.0.0".parse().unwrap(), now(), |m| {
            m.state = BundleState::Yanked;
            Ok(true)
        })
        .await
        .unwrap();
        let (conflict, refreshed) = check(&paths, "quiz-x", "mod/quiz/3.php");
        assert!(conflict.is_none());
        assert_eq!(refreshed, Refreshed { rebuilt: false, bins: 1, archives: 0 });

        std::fs::remove_file(paths.keys.join(FILE)).unwrap();
        let (_, refreshed) = check(&paths, "quiz-x", "mod/quiz/3.php");
        assert_eq!(refreshed, Refreshed { rebuilt: true, bins: repo::DEFAULT_BINS as usize, archives: 5 });
        assert_eq!(check(&paths, "quiz-x", "mod/quiz/3.php").1, Refreshed::default());
    }
}
