//! File ownership at publish, through the ownership index (`palier_server::index`): the
//! refusals `publish` made when it read every bundle, kept when the index is stale (a bin
//! changed by another command, a repository restored from a backup), missing or corrupt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use palier_bundle::hostile::{self, RawEntry};
use palier_bundle::{BundleState, Dependency, RelPath};
use palier_server::repo::{self, Bins, Expiries, RepoPaths, Thresholds};

struct Repo {
    tmp: tempfile::TempDir,
    paths: RepoPaths,
}

fn now() -> Timestamp {
    "2026-12-01T09:00:00Z".parse().unwrap()
}

async fn repo() -> Repo {
    let tmp = tempfile::tempdir().unwrap();
    let paths = RepoPaths::new(tmp.path().join("repo"), None);
    repo::init(&paths, Thresholds::default(), Expiries::default(), now()).await.unwrap();
    Repo { tmp, paths }
}

impl Repo {
    fn index(&self) -> PathBuf {
        self.paths.keys.join(palier_server::index::FILE)
    }

    /// The index's files: the database and SQLite's write-ahead log and its shared memory.
    fn index_files(&self) -> Vec<PathBuf> {
        ["", "-wal", "-shm"].iter().map(|s| PathBuf::from(format!("{}{s}", self.index().display()))).collect()
    }

    /// The index as it is now, every file of it (`None` for one that does not exist).
    fn save_index(&self) -> Vec<(PathBuf, Option<Vec<u8>>)> {
        self.index_files().into_iter().map(|p| (p.clone(), std::fs::read(&p).ok())).collect()
    }

    fn restore_index(&self, saved: &[(PathBuf, Option<Vec<u8>>)]) {
        for (path, bytes) in saved {
            match bytes {
                Some(b) => std::fs::write(path, b).unwrap(),
                None => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }

    /// An archive of `id@version` writing `writes`, deleting `deletes`, built on `after`.
    fn archive(&self, id: &str, version: &str, writes: &[&str], deletes: &[&str], after: &[&str]) -> PathBuf {
        let contents: Vec<(&str, Vec<u8>)> = writes.iter().map(|p| (*p, format!("<?php // {id} {version} {p}\n").into_bytes())).collect();
        let files: Vec<(&str, &[u8])> = contents.iter().map(|(p, c)| (*p, c.as_slice())).collect();
        let mut m = hostile::manifest_for(id, version, &files);
        m.delete = deletes.iter().map(|d| RelPath::new(*d).unwrap()).collect();
        m.after = after.iter().map(|a| Dependency::parse(a).unwrap()).collect();
        let mut entries = vec![hostile::manifest_entry(&m)];
        entries.extend(contents.iter().map(|(p, c)| RawEntry::file(&format!("files/{p}"), c)));
        let path = self.tmp.path().join(format!("{id}-{version}.tar.gz"));
        std::fs::write(&path, hostile::craft(&entries)).unwrap();
        path
    }

    async fn publish(&self, id: &str, version: &str, writes: &[&str], deletes: &[&str], after: &[&str]) -> Result<(), String> {
        let archive = self.archive(id, version, writes, deletes, after);
        repo::publish(&self.paths, &archive, Default::default(), repo::DEFAULT_MAX_EXPANDED, now()).await.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn set_state(&self, bundle: &str, state: BundleState) {
        repo::update(&self.paths, &bundle.parse().unwrap(), now(), |m| {
            m.state = state;
            Ok(true)
        })
        .await
        .unwrap();
    }

    async fn ids(&self) -> Vec<String> {
        repo::list(&self.paths).await.unwrap().iter().map(|p| p.meta.manifest.key()).collect()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let dest = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A bundle id, other than `other`'s, whose target lands in the same bin as `other@1.0.0`.
fn id_in_the_bin_of(other: &str) -> String {
    let bins = Bins::default();
    let bin = bins.of(&format!("{other}-1.0.0.tar.gz"));
    (0..).map(|n| format!("same-bin-{n}")).find(|id| bins.of(&format!("{id}-1.0.0.tar.gz")) == bin).unwrap()
}

#[tokio::test]
async fn publish_refuses_a_path_another_active_id_writes_unless_named_in_after_or_yanked() {
    let r = repo().await;
    r.publish("quiz-a", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap();
    let e = r.publish("quiz-b", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap_err();
    assert_eq!(
        e,
        "quiz-a@1.0.0 and quiz-b@1.0.0 both write or delete mod/quiz/view.php, and neither names the other in `after`; nothing published: name the other bundle in `after` (the new one then carries both fixes) or yank it first"
    );
    // A folder deleted above a written path, a path written under a deleted folder.
    let e = r.publish("quiz-c", "1.0.0", &[], &["mod/quiz"], &[]).await.unwrap_err();
    assert!(e.starts_with("quiz-a@1.0.0 and quiz-c@1.0.0 both write or delete mod/quiz/view.php"), "{e}");
    r.publish("quiz-d", "1.0.0", &[], &["mod/forum/old"], &[]).await.unwrap();
    let e = r.publish("quiz-e", "1.0.0", &["mod/forum/old/x/y.php"], &[], &[]).await.unwrap_err();
    assert!(e.starts_with("quiz-d@1.0.0 and quiz-e@1.0.0 both write or delete mod/forum/old/x/y.php"), "{e}");
    r.publish("quiz-e", "1.0.0", &["mod/forum/older.php"], &[], &[]).await.unwrap();
    // Built on the other: accepted. A newer version of the same id: accepted.
    r.publish("quiz-f", "1.0.0", &["mod/quiz/view.php"], &[], &["quiz-a >=1.0.0"]).await.unwrap();
    r.publish("quiz-a", "1.0.1", &["mod/quiz/view.php", "mod/quiz/lib.php"], &[], &[]).await.unwrap();
    // Only the newest version of an id counts: once quiz-g moves off g.php, another may take it.
    r.publish("quiz-g", "1.0.0", &["mod/quiz/g.php"], &[], &[]).await.unwrap();
    r.publish("quiz-h", "1.0.0", &["mod/quiz/g.php"], &[], &[]).await.unwrap_err();
    r.publish("quiz-g", "1.1.0", &["mod/quiz/g2.php"], &[], &[]).await.unwrap();
    r.publish("quiz-h", "1.0.0", &["mod/quiz/g.php"], &[], &[]).await.unwrap();
    // Yanked bundles own nothing.
    r.set_state("quiz-a@1.0.0", BundleState::Yanked).await;
    r.set_state("quiz-a@1.0.1", BundleState::Yanked).await;
    r.publish("quiz-b", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap_err();
    r.set_state("quiz-f@1.0.0", BundleState::Yanked).await;
    r.publish("quiz-b", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap();
    assert!(r.ids().await.contains(&"quiz-b@1.0.0".to_owned()));
}

#[tokio::test]
async fn a_bundle_published_behind_the_index_still_refuses_the_conflicting_publish() {
    let r = repo().await;
    r.publish("quiz-a", "1.0.0", &["mod/quiz/a.php"], &[], &[]).await.unwrap();
    // The index as it was, put back after another bundle is published: it knows nothing of
    // quiz-x and records quiz-x's bin at its older version.
    let before = r.save_index();
    r.publish("quiz-x", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap();
    r.restore_index(&before);
    let e = r.publish("quiz-y", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap_err();
    assert!(e.starts_with("quiz-x@1.0.0 and quiz-y@1.0.0 both write or delete mod/quiz/view.php"), "{e}");
}

#[tokio::test]
async fn a_yank_by_another_command_frees_the_path_for_the_next_publish() {
    let r = repo().await;
    r.publish("quiz-a", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap();
    r.publish("quiz-b", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap_err();
    // `yank` re-signs the bin without the index.
    r.set_state("quiz-a@1.0.0", BundleState::Yanked).await;
    r.publish("quiz-b", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap();
    // And a halted bundle still owns its paths.
    r.set_state("quiz-b@1.0.0", BundleState::Halted).await;
    r.publish("quiz-c", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap_err();
}

#[tokio::test]
async fn a_deleted_or_corrupt_index_is_built_again_from_the_archives() {
    let r = repo().await;
    r.publish("quiz-a", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap();
    r.publish("quiz-b", "1.0.0", &["mod/quiz/b.php"], &["mod/quiz/old"], &[]).await.unwrap();
    std::fs::remove_file(r.index()).unwrap();
    let e = r.publish("quiz-c", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap_err();
    assert!(e.starts_with("quiz-a@1.0.0 and quiz-c@1.0.0 both write"), "{e}");
    assert!(r.index().is_file(), "the index is built again");

    for path in r.index_files() {
        let _ = std::fs::remove_file(&path);
    }
    std::fs::write(r.index(), b"not a database, whatever it was").unwrap();
    let e = r.publish("quiz-c", "1.0.0", &["mod/quiz/old/x.php"], &[], &[]).await.unwrap_err();
    assert!(e.starts_with("quiz-b@1.0.0 and quiz-c@1.0.0 both write or delete mod/quiz/old/x.php"), "{e}");
    r.publish("quiz-c", "1.0.0", &["mod/quiz/c.php"], &[], &[]).await.unwrap();

    // Pages damaged in place, as a disk fault would: the database's and the log's.
    for path in r.index_files().iter().filter(|p| p.is_file()) {
        damage(path);
    }
    let e = r.publish("quiz-d", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap_err();
    assert!(e.starts_with("quiz-a@1.0.0 and quiz-d@1.0.0 both write"), "{e}");
}

/// Overwrite the first half of a file after its first 100 bytes (the database's header).
fn damage(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let half = bytes.len() / 2;
    if half > 100 {
        bytes[100..half].fill(0x5a);
    }
    std::fs::write(file, bytes).unwrap();
}

#[tokio::test]
async fn a_repository_restored_from_a_backup_is_indexed_again_even_at_the_same_versions() {
    let r = repo().await;
    let a = "quiz-a";
    let b = id_in_the_bin_of(a);
    r.publish(a, "1.0.0", &["mod/quiz/a.php"], &[], &[]).await.unwrap();
    let backup = r.tmp.path().join("backup");
    copy_dir(&r.paths.dir, &backup);
    // The index records quiz-a's bin with `b` in it.
    r.publish(&b, "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap();
    std::fs::remove_dir_all(&r.paths.dir).unwrap();
    copy_dir(&backup, &r.paths.dir);
    // Another command re-signs that bin: it is at the version the index recorded, without `b`.
    repo::update(&r.paths, &format!("{a}@1.0.0").parse().unwrap(), now(), |m| {
        m.validations.alpha = true;
        Ok(true)
    })
    .await
    .unwrap();
    assert_eq!(r.ids().await, vec![format!("{a}@1.0.0")]);
    r.publish("quiz-c", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap();
}

#[tokio::test]
async fn an_archive_missing_from_targets_is_named_and_nothing_is_published() {
    let r = repo().await;
    r.publish("quiz-a", "1.0.0", &["mod/quiz/view.php"], &[], &[]).await.unwrap();
    std::fs::remove_file(r.index()).unwrap();
    for entry in std::fs::read_dir(r.paths.targets()).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let e = r.publish("quiz-b", "1.0.0", &["mod/quiz/b.php"], &[], &[]).await.unwrap_err();
    assert!(e.contains("cannot read the archive of quiz-a-1.0.0.tar.gz") && e.contains("restore"), "{e}");
    assert_eq!(r.ids().await, vec!["quiz-a@1.0.0".to_owned()]);
}
