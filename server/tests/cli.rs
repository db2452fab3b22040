//! The release manager's commands, through the real `palier-server` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use palier_bundle::hostile;
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_palier-server");

struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        let s = Site { tmp: tempfile::tempdir().unwrap() };
        let out = s.run(&["init", "--repo", s.repo().to_str().unwrap()]);
        assert!(out.status.success(), "init: {}", stderr(&out));
        s
    }
    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    fn repo(&self) -> PathBuf {
        self.path("repo")
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).current_dir(self.tmp.path()).env_remove("PALIER_LOG").output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }
    /// Refused: exit 1, one line on stderr containing `needle`.
    fn refused(&self, args: &[&str], needle: &str) -> String {
        let out = self.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail with 1; stderr: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: error is not one line: {err}");
        assert!(err.contains(needle), "{args:?}: expected {needle:?} in {err}");
        err
    }
    /// Build a bundle with one source file; returns the archive path.
    fn build(&self, id: &str, version: &str, content: &str) -> PathBuf {
        let src = self.path(&format!("src-{id}-{version}"));
        std::fs::create_dir_all(src.join("mod/quiz")).unwrap();
        std::fs::write(src.join("mod/quiz/view.php"), content).unwrap();
        let manifest = self.path(&format!("{id}-{version}.toml"));
        std::fs::write(
            &manifest,
            format!(
                "id = \"{id}\"\nversion = \"{version}\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"test bundle\"\nfixes = [\"MDL-1\"]\norigin = \"report\"\n"
            ),
        )
        .unwrap();
        let out = self.path(&format!("{id}-{version}.tar.gz"));
        self.ok(&["bundle", "build", "--manifest", manifest.to_str().unwrap(), "--source", src.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        out
    }
    fn repo_arg(&self) -> String {
        self.repo().to_str().unwrap().to_owned()
    }
    fn list(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["list", "--repo", &self.repo_arg(), "--json"])).unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir` with its content hash: equal trees hash equal.
fn tree_hash(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        let v = if e.file_type().is_file() { hex::encode(Sha256::digest(std::fs::read(e.path()).unwrap())) } else { "dir".into() };
        out.insert(rel, v);
    }
    out
}

/// The newest metadata file of the bin that holds `target` (the one whose text names it).
fn bin_file(repo: &Path, target: &str) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(repo.join("metadata")).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some((v, rest)) = name.split_once('.') else { continue };
        if !rest.starts_with("bin-") || !std::fs::read_to_string(&path).unwrap().contains(target) {
            continue;
        }
        let v: u64 = v.parse().unwrap();
        if best.as_ref().is_none_or(|(b, _)| v > *b) {
            best = Some((v, path));
        }
    }
    best.unwrap_or_else(|| panic!("no bin names {target}")).1
}

/// The files that differ between two `tree_hash`es (added, changed or removed).
fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = after.iter().filter(|(k, v)| before.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
    out.extend(before.keys().filter(|k| !after.contains_key(*k)).cloned());
    out.sort();
    out
}

#[test]
fn init_writes_private_keys_beside_the_repository() {
    let s = Site::new();
    for role in ["root", "targets", "snapshot", "timestamp"] {
        let key = s.path(&format!("keys/{role}.der"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{role} key mode");
    }
    assert!(s.repo().join("metadata/1.root.json").is_file());
    let served: Vec<_> = walkdir::WalkDir::new(s.repo()).into_iter().filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "der")).collect();
    assert!(served.is_empty(), "keys under the served folder: {served:?}");
    // A second init is refused and changes nothing.
    let before = tree_hash(s.tmp.path());
    s.refused(&["init", "--repo", &s.repo_arg()], "already exists");
    assert_eq!(before, tree_hash(s.tmp.path()));
}

#[test]
fn init_refuses_keys_inside_the_served_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Site { tmp };
    let repo = s.path("repo");
    s.refused(&["init", "--repo", repo.to_str().unwrap(), "--keys", repo.join("keys").to_str().unwrap()], "inside the served repository");
    assert!(!repo.join("metadata/1.root.json").exists());
}

#[test]
fn init_with_thresholds_makes_that_many_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Site { tmp };
    s.ok(&["init", "--repo", "repo", "--threshold", "root=2", "--threshold", "targets=2"]);
    assert!(s.path("keys/root-2.der").exists() && s.path("keys/targets-2.der").exists());
    assert!(!s.path("keys/snapshot-2.der").exists());
    let root: serde_json::Value = serde_json::from_slice(&std::fs::read(s.path("repo/metadata/1.root.json")).unwrap()).unwrap();
    assert_eq!(root["signed"]["roles"]["root"]["threshold"], 2);
    assert_eq!(root["signatures"].as_array().unwrap().len(), 2);
    // The top-level targets are signed by both targets keys.
    let targets: serde_json::Value = serde_json::from_slice(&std::fs::read(s.path("repo/metadata/1.targets.json")).unwrap()).unwrap();
    assert_eq!(targets["signatures"].as_array().unwrap().len(), 2);
    s.refused(&["init", "--repo", "r2", "--keys", "k2", "--threshold", "root=0"], "--threshold");
    // A bins threshold of 2: publishing signs the bin with both bins keys.
    s.ok(&["init", "--repo", "r3", "--keys", "k3", "--threshold", "bins=2"]);
    let archive = s.build("b", "1.0.0", "x");
    s.ok(&["publish", "--repo", "r3", "--keys", "k3", archive.to_str().unwrap()]);
    let bin: serde_json::Value = serde_json::from_slice(&std::fs::read(bin_file(&s.path("r3"), "b-1.0.0.tar.gz")).unwrap()).unwrap();
    assert_eq!(bin["signatures"].as_array().unwrap().len(), 2);
}

#[test]
fn bundle_build_is_byte_identical() {
    let s = Site::new();
    let a = s.build("same", "1.0.0", "<?php echo 1;\n");
    let first = std::fs::read(&a).unwrap();
    let b = s.build("same", "1.0.0", "<?php echo 1;\n");
    assert_eq!(first, std::fs::read(&b).unwrap());
}

#[test]
fn archives_and_stored_targets_are_world_readable_static_files() {
    let s = Site::new();
    let a = s.build("b", "1.0.0", "x");
    assert_eq!(std::fs::metadata(&a).unwrap().permissions().mode() & 0o777, 0o644);
    s.ok(&["publish", "--repo", &s.repo_arg(), a.to_str().unwrap()]);
    for dir in ["metadata", "targets"] {
        for e in std::fs::read_dir(s.repo().join(dir)).unwrap() {
            let e = e.unwrap();
            assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o644, "{}", e.path().display());
        }
    }
}

#[test]
fn bundle_build_refuses_an_empty_source_and_a_missing_out_folder() {
    let s = Site::new();
    std::fs::create_dir_all(s.path("empty/mod")).unwrap();
    let manifest = "id = \"e\"\nversion = \"1.0.0\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"s\"\nfixes = []\norigin = \"report\"\n";
    std::fs::write(s.path("e.toml"), manifest).unwrap();
    s.refused(&["bundle", "build", "--manifest", "e.toml", "--source", "empty", "--out", "e.tar.gz"], "source empty holds no files and the manifest deletes nothing");
    assert!(!s.path("e.tar.gz").exists());
    // A bundle that only deletes needs no file.
    std::fs::write(s.path("d.toml"), format!("{manifest}delete = [\"mod/quiz/old.js\"]\n")).unwrap();
    s.ok(&["bundle", "build", "--manifest", "d.toml", "--source", "empty", "--out", "d.tar.gz"]);
    // --out into a folder that does not exist: said, with no temporary file's name.
    std::fs::write(s.path("empty/mod/x.php"), "<?php\n").unwrap();
    let err = s.refused(&["bundle", "build", "--manifest", "e.toml", "--source", "empty", "--out", "missing/e.tar.gz"], "the folder missing does not exist; create it (`mkdir -p missing`)");
    assert!(!err.contains(".palier-build-"), "{err}");
}

#[test]
fn bundle_build_refuses_a_manifest_with_files_and_bad_fields() {
    let s = Site::new();
    std::fs::create_dir_all(s.path("src")).unwrap();
    std::fs::write(s.path("bad.toml"), "id = \"x\"\nversion = \"1\"\n").unwrap();
    s.refused(&["bundle", "build", "--manifest", "bad.toml", "--source", "src", "--out", "o.tar.gz"], "bad.toml");
    assert!(!s.path("o.tar.gz").exists());
}

#[test]
fn publish_refuses_every_hostile_archive_and_leaves_the_repository_unchanged() {
    let s = Site::new();
    let before = tree_hash(&s.repo());
    for (name, bytes, needle) in hostile::cases() {
        let file = s.path(&format!("{name}.tar.gz"));
        std::fs::write(&file, bytes).unwrap();
        let args = ["publish", "--repo", &s.repo_arg(), file.to_str().unwrap(), "--max-expanded", "1048576"];
        let err = s.refused(&args, needle);
        assert!(err.contains(&format!("{name}.tar.gz")), "{name}: the error names the archive: {err}");
        assert_eq!(before, tree_hash(&s.repo()), "{name}: repository changed");
    }
}

#[test]
fn publish_refuses_a_duplicate_and_keeps_old_versions() {
    let s = Site::new();
    let v1 = s.build("mod_quiz-fix", "1.0.0", "one");
    s.ok(&["publish", "--repo", &s.repo_arg(), v1.to_str().unwrap(), "--reported-by", "univ-a"]);
    let before = tree_hash(&s.repo());
    let again = s.build("mod_quiz-fix", "1.0.0", "changed content");
    s.refused(&["publish", "--repo", &s.repo_arg(), again.to_str().unwrap()], "already published");
    assert_eq!(before, tree_hash(&s.repo()));
    let v2 = s.build("mod_quiz-fix", "1.1.0", "two");
    s.ok(&["publish", "--repo", &s.repo_arg(), v2.to_str().unwrap()]);
    let list = s.list();
    let versions: Vec<&str> = list["bundles"].as_array().unwrap().iter().map(|b| b["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);
    assert_eq!(list["bundles"][0]["reported_by"], serde_json::json!(["univ-a"]));
}

#[test]
fn validations_states_and_links_are_signed_metadata() {
    let s = Site::new();
    let a = s.build("b", "1.0.0", "x");
    let repo = s.repo_arg();
    s.ok(&["publish", "--repo", &repo, a.to_str().unwrap()]);
    s.ok(&["validate", "--repo", &repo, "b@1.0.0", "--alpha"]);
    s.ok(&["validate", "--repo", &repo, "b@1.0.0", "--dataset", "big-univ"]);
    s.ok(&["validate", "--repo", &repo, "b@1.0.0", "--dataset", "small-school"]);
    s.ok(&["link", "--repo", &repo, "b@1.0.0", "--platform", "univ-b"]);
    let b = &s.list()["bundles"][0];
    assert_eq!(b["alpha"], true);
    assert_eq!(b["datasets"], serde_json::json!(["big-univ", "small-school"]));
    assert_eq!(b["reported_by"], serde_json::json!(["univ-b"]));
    // Recording the same thing twice re-signs nothing.
    let before = tree_hash(&s.repo());
    assert!(s.ok(&["validate", "--repo", &repo, "b@1.0.0", "--alpha"]).contains("nothing re-signed"));
    assert_eq!(before, tree_hash(&s.repo()));

    s.ok(&["halt", "--repo", &repo, "b@1.0.0", "--reason", "rollbacks on two platforms"]);
    assert_eq!(s.list()["bundles"][0]["state"], "halted");
    s.ok(&["resume", "--repo", &repo, "b@1.0.0"]);
    assert_eq!(s.list()["bundles"][0]["state"], "active");
    s.ok(&["yank", "--repo", &repo, "b@1.0.0", "--reason", "withdrawn"]);
    let b = &s.list()["bundles"][0];
    assert_eq!((b["state"].as_str(), b["state_reason"].as_str()), (Some("yanked"), Some("withdrawn")));
    s.refused(&["resume", "--repo", &repo, "b@1.0.0"], "yanked");
    s.refused(&["validate", "--repo", &repo, "b@9.9.9", "--alpha"], "not published");
    s.refused(&["halt", "--repo", &repo, "b@1.0.0", "--reason", ""], "--reason");
    s.refused(&["validate", "--repo", &repo, "b@1.0.0", "--dataset", "bad name"], "dataset name");
    let usage = s.run(&["validate", "--repo", &repo, "b@1.0.0"]);
    assert_eq!(usage.status.code(), Some(2), "missing --alpha/--dataset is a usage error");
}

#[test]
fn tampered_metadata_is_refused_by_the_editor() {
    let s = Site::new();
    let a = s.build("b", "1.0.0", "x");
    s.ok(&["publish", "--repo", &s.repo_arg(), a.to_str().unwrap()]);
    let path = bin_file(&s.repo(), "b-1.0.0.tar.gz");
    let text = std::fs::read_to_string(&path).unwrap().replace("test bundle", "evil bundle");
    std::fs::write(&path, text).unwrap();
    s.refused(&["list", "--repo", &s.repo_arg()], "repository");
}

/// A standard TUF client (python-tuf's ngclient) reads what palier wrote.
#[test]
fn a_standard_tuf_client_reads_the_repository() {
    let s = Site::new();
    let a = s.build("mod_quiz-timer-drift", "1.0.1", "<?php echo 'fixed';\n");
    let repo = s.repo_arg();
    s.ok(&["publish", "--repo", &repo, a.to_str().unwrap(), "--reported-by", "univ-a"]);
    s.ok(&["validate", "--repo", &repo, "mod_quiz-timer-drift@1.0.1", "--alpha"]);
    s.ok(&["validate", "--repo", &repo, "mod_quiz-timer-drift@1.0.1", "--dataset", "ds-1"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tuf_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(s.repo())
        .arg("mod_quiz-timer-drift-1.0.1.tar.gz")
        .arg(s.path("client"))
        .output()
        .expect("python3 runs (install python-tuf: pip install tuf)");
    assert!(out.status.success(), "python-tuf client failed: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let archive = std::fs::read(&a).unwrap();
    assert_eq!(doc["length"], archive.len());
    assert_eq!(doc["sha256"], hex::encode(Sha256::digest(&archive)));
    assert_eq!(std::fs::read(doc["path"].as_str().unwrap()).unwrap(), archive);
    // Metadata format 3: a format 2 entry carried as one JSON text.
    assert_eq!(doc["custom"]["format"], 3);
    let custom: serde_json::Value = serde_json::from_str(doc["custom"]["entry"].as_str().unwrap()).unwrap();
    let custom = &custom;
    assert_eq!(custom["manifest"]["id"], "mod_quiz-timer-drift");
    assert_eq!(custom["manifest"]["class"], "technical");
    // Metadata format 2: the file list is in the archive's manifest, not in `custom`.
    assert_eq!(custom["format"], 2);
    assert_eq!(custom["file_count"], 1);
    assert!(custom.get("files").is_none(), "{custom}");
    assert_eq!(custom["validations"]["alpha"], true);
    assert_eq!(custom["validations"]["datasets"], serde_json::json!(["ds-1"]));
    assert_eq!(custom["reported_by"], serde_json::json!(["univ-a"]));
    assert_eq!(custom["state"], "active");
}

#[test]
fn init_spreads_bundles_over_hashed_bins() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Site { tmp };
    s.ok(&["init", "--repo", "repo", "--bins", "16"]);
    let bins: Vec<String> = std::fs::read_dir(s.path("repo/metadata"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("1.bin-"))
        .collect();
    assert_eq!(bins.len(), 16, "{bins:?}");
    let targets: serde_json::Value = serde_json::from_slice(&std::fs::read(s.path("repo/metadata/1.targets.json")).unwrap()).unwrap();
    assert!(targets["signed"]["targets"].as_object().unwrap().is_empty(), "the top-level targets list no bundle");
    let roles = targets["signed"]["delegations"]["roles"].as_array().unwrap();
    // The marker roles first (halts, reports: each trusted for its markers only), then the
    // 16 bins.
    assert_eq!(roles.len(), 18);
    assert_eq!((&roles[0]["name"], &roles[0]["paths"]), (&serde_json::json!("halts"), &serde_json::json!(["halts/*"])));
    assert_eq!((&roles[1]["name"], &roles[1]["paths"]), (&serde_json::json!("reports"), &serde_json::json!(["reports/*"])));
    assert_eq!(roles[2]["path_hash_prefixes"], serde_json::json!(["0"]));
    assert_eq!(roles[17]["name"], "bin-f");
    for bad in ["100", "8", "131072"] {
        s.refused(&["init", "--repo", &format!("r{bad}"), "--keys", &format!("k{bad}"), "--bins", bad], "power of two");
    }
}

/// A change re-signs the bin of its bundle, the snapshot and the timestamp: nothing else.
#[test]
fn every_change_re_signs_one_bin_the_snapshot_and_the_timestamp() {
    let s = Site::new();
    let repo = s.repo_arg();
    let a = s.build("b", "1.0.0", "x");
    let before = tree_hash(&s.repo());
    s.ok(&["publish", "--repo", &repo, a.to_str().unwrap()]);
    let after = tree_hash(&s.repo());
    let bin = bin_file(&s.repo(), "b-1.0.0.tar.gz");
    let bin_name = bin.file_name().unwrap().to_string_lossy().into_owned();
    assert!(bin_name.starts_with("2.bin-"), "{bin_name}");
    let stored = after.keys().find(|k| k.starts_with("targets/")).unwrap().clone();
    assert_eq!(changed(&before, &after), [format!("metadata/{bin_name}"), "metadata/2.snapshot.json".into(), "metadata/timestamp.json".into(), stored]);
    for args in [
        vec!["validate", "--repo", &repo, "b@1.0.0", "--alpha"],
        vec!["link", "--repo", &repo, "b@1.0.0", "--platform", "univ-b"],
        vec!["halt", "--repo", &repo, "b@1.0.0", "--reason", "r"],
        vec!["resume", "--repo", &repo, "b@1.0.0"],
        vec!["yank", "--repo", &repo, "b@1.0.0", "--reason", "r"],
    ] {
        let before = tree_hash(&s.repo());
        s.ok(&args);
        let diff = changed(&before, &tree_hash(&s.repo()));
        assert_eq!(diff.len(), 3, "{args:?}: {diff:?}");
        let bin = bin_name.split_once('.').unwrap().1;
        assert!(diff[0].ends_with(bin) && diff[1].ends_with(".snapshot.json") && diff[2] == "metadata/timestamp.json", "{args:?}: {diff:?}");
    }
}

/// Readers take no lock and need no keys: `list` works while a writer holds the lock, and on
/// a copy of the repository without its keys folder.
#[test]
fn list_reads_without_the_lock_or_the_keys() {
    let s = Site::new();
    let a = s.build("b", "1.0.0", "x");
    s.ok(&["publish", "--repo", &s.repo_arg(), a.to_str().unwrap()]);
    let lock = std::fs::File::options().create(true).truncate(false).write(true).open(s.path("keys/.lock")).unwrap();
    lock.lock().unwrap();
    let mut child = Command::new(BIN).args(["list", "--repo", &s.repo_arg(), "--json"]).current_dir(s.tmp.path()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut status = None;
    for _ in 0..600 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if status.is_none() {
        child.kill().unwrap();
        panic!("list waited on the writers' lock");
    }
    assert!(status.unwrap().success());
    drop(lock);

    let copy = s.path("copy/repo");
    std::fs::create_dir_all(&copy).unwrap();
    for e in walkdir::WalkDir::new(s.repo()) {
        let e = e.unwrap();
        let dest = copy.join(e.path().strip_prefix(s.repo()).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
    assert!(!s.path("copy/keys").exists());
    let listed: serde_json::Value = serde_json::from_str(&s.ok(&["list", "--repo", copy.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(listed["bundles"][0]["id"], "b");
}

#[test]
fn a_wrong_repo_says_there_is_no_repository_and_how_to_make_one() {
    let s = Site::new();
    let a = s.build("b", "1.0.0", "x");
    let wrong = s.path("nowhere");
    let w = wrong.to_str().unwrap();
    let needle = format!("no repository at {w} (run `palier-server init --repo {w}`)");
    for args in [
        vec!["list", "--repo", w],
        vec!["publish", "--repo", w, a.to_str().unwrap()],
        vec!["validate", "--repo", w, "b@1.0.0", "--alpha"],
        vec!["halt", "--repo", w, "b@1.0.0", "--reason", "r"],
        vec!["resume", "--repo", w, "b@1.0.0"],
        vec!["yank", "--repo", w, "b@1.0.0", "--reason", "r"],
        vec!["link", "--repo", w, "b@1.0.0", "--platform", "univ-a"],
    ] {
        s.refused(&args, &needle);
    }
    assert!(!wrong.exists(), "nothing was created");
}

#[test]
fn yanking_a_yanked_bundle_succeeds_and_says_so() {
    let s = Site::new();
    let repo = s.repo_arg();
    let a = s.build("b", "1.0.0", "x");
    s.ok(&["publish", "--repo", &repo, a.to_str().unwrap()]);
    s.ok(&["yank", "--repo", &repo, "b@1.0.0", "--reason", "withdrawn"]);
    let before = tree_hash(&s.repo());
    let out = s.ok(&["yank", "--repo", &repo, "b@1.0.0", "--reason", "withdrawn again"]);
    assert!(out.contains("already yanked"), "{out}");
    assert_eq!(before, tree_hash(&s.repo()));
    assert_eq!(s.list()["bundles"][0]["state_reason"], "withdrawn");
}

/// A repository served by a plain static file server (python's, in tuf_client.py, port 0)
/// expires unless something re-signs it: `refresh --check` says so, `refresh` re-signs, and
/// a standard TUF client then accepts it.
#[test]
fn refresh_keeps_a_statically_served_repository_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Site { tmp };
    let then = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(25)).to_string();
    s.ok(&["init", "--repo", "repo", "--now", &then]);
    let a = s.build("b", "1.0.0", "x");
    s.ok(&["publish", "--repo", "repo", a.to_str().unwrap(), "--now", &then]);
    let client = |dir: &str| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tuf_client.py");
        Command::new("python3").arg(script).arg(s.repo()).arg("b-1.0.0.tar.gz").arg(s.path(dir)).output().unwrap()
    };
    let expired = client("client-1");
    assert!(!expired.status.success(), "an expired timestamp must be refused");
    let repo = s.repo_arg();
    let err = s.refused(&["refresh", "--repo", &repo, "--check"], &format!("run `palier-server refresh --repo {repo}`"));
    assert!(err.contains("timestamp"), "{err}");
    let before = tree_hash(&s.repo());
    s.run(&["refresh", "--repo", &repo, "--check"]);
    assert_eq!(before, tree_hash(&s.repo()), "--check writes nothing");

    s.ok(&["refresh", "--repo", &repo]);
    let check = s.ok(&["refresh", "--repo", &repo, "--check"]);
    assert!(check.contains("timestamp") && !check.contains("(due)"), "{check}");
    let fresh = client("client-2");
    assert!(fresh.status.success(), "{}{}", String::from_utf8_lossy(&fresh.stdout), stderr(&fresh));
    assert!(s.ok(&["refresh", "--repo", &repo]).contains("nothing due"));
}

/// Issue 13 (which component owns which files) and issue 11 item 8 (site-local files):
/// `bundle build`, `bundle verify` and `publish` refuse a bundle that writes config.php or
/// another site-local file, leaves its component's folder, or mixes the two Moodle layouts.
#[test]
fn site_local_files_and_foreign_paths_are_refused_by_build_verify_and_publish() {
    let s = Site::new();
    let cases: [(&str, &[&str], &str); 7] = [
        ("mod_quiz", &["mod/quiz/view.php", "config.php"], "config.php is a site-local file"),
        ("core", &["public/config.php"], "public/config.php is a site-local file"),
        ("core", &["mod/quiz/.htaccess"], "mod/quiz/.htaccess is a site-local file"),
        ("core", &["local/custom/lib.php"], "local/custom/lib.php is a site-local file"),
        ("mod_quiz", &["mod/quiz/view.php", "login/index.php"], "login/index.php lies outside mod/quiz/, the folder of component mod_quiz"),
        ("mod_quiz", &["public/mod/quiz/view.php", "public/mod/assign/view.php"], "lies outside public/mod/quiz/"),
        ("mod_quiz", &["mod/quiz/a.php", "public/mod/quiz/b.php"], "mix the 4.x layout (mod/quiz/a.php) and the 5.1+ layout (public/mod/quiz/b.php)"),
    ];
    for (i, (component, files, needle)) in cases.iter().enumerate() {
        let src = s.path(&format!("bad-{i}"));
        for f in *files {
            let p = src.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "<?php // x\n").unwrap();
        }
        let text = format!("id = \"bad-{i}\"\nversion = \"1.0.0\"\ncomponent = \"{component}\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"s\"\norigin = \"roadmap\"\n");
        let manifest = s.path(&format!("bad-{i}.toml"));
        std::fs::write(&manifest, &text).unwrap();
        let out = s.path(&format!("bad-{i}.tar.gz"));
        let args = ["bundle", "build", "--manifest", manifest.to_str().unwrap(), "--source", src.to_str().unwrap(), "--out", out.to_str().unwrap()];
        let err = s.refused(&args, needle);
        assert!(err.contains("nothing written"), "{err}");
        assert!(!out.exists());
        // The same archive written without the check (as one built before it existed):
        // verify and publish refuse it too.
        let source = palier_bundle::Manifest::parse(&text, palier_bundle::ManifestKind::Source).unwrap();
        let mut file = std::fs::File::create(&out).unwrap();
        palier_bundle::archive::build_from_dir(&source, &src, &mut file).unwrap();
        s.refused(&["bundle", "verify", out.to_str().unwrap()], needle);
        let err = s.refused(&["publish", "--repo", &s.repo_arg(), out.to_str().unwrap()], needle);
        assert!(err.contains("nothing published"), "{err}");
    }
    assert_eq!(s.list()["bundles"].as_array().map_or(0, Vec::len), 0, "{}", s.list());

    // A 5.1+ bundle and a 4.x bundle build; verify says which layout each is for.
    for (id, path, layout) in [("new", "public/mod/quiz/view.php", "layout=5.1+"), ("old", "mod/quiz/view.php", "layout=4.x")] {
        let src = s.path(&format!("src-{id}"));
        std::fs::create_dir_all(src.join(path).parent().unwrap()).unwrap();
        std::fs::write(src.join(path), "<?php // fixed\n").unwrap();
        let manifest = s.path(&format!("{id}.toml"));
        std::fs::write(&manifest, format!("id = \"{id}\"\nversion = \"1.0.0\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"s\"\norigin = \"roadmap\"\n")).unwrap();
        let out = s.path(&format!("{id}.tar.gz"));
        s.ok(&["bundle", "build", "--manifest", manifest.to_str().unwrap(), "--source", src.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let verified = s.ok(&["bundle", "verify", out.to_str().unwrap()]);
        assert!(verified.contains(layout), "{verified}");
    }
}
