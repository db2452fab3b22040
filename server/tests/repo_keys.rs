//! Keys kept offline, the halts role, key rotation and `root sign`, `sync` and `migrate`,
//! through the real `palier-server` binary (and the library where a test needs a writer the
//! command line does not offer, as the auto-halt's halt marker).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jiff::{SignedDuration, Timestamp};
use palier_server::repo::RepoPaths;
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_palier-server");

struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    /// A repository `repo` with its root, targets and bins keys in `offline`, the others in
    /// `keys`.
    fn new() -> Self {
        let s = Site::empty();
        s.ok(&["init", "--repo", "repo", "--offline-keys", "offline"]);
        s
    }
    fn empty() -> Self {
        Site { tmp: tempfile::tempdir().unwrap() }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).current_dir(self.tmp.path()).env_remove("PALIER_LOG").output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }
    /// Refused: a non-zero exit (`code`), one line on stderr containing `needle`.
    fn refused(&self, args: &[&str], code: i32, needle: &str) -> String {
        let out = self.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?} should fail with {code}; stderr: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: error is not one line: {err}");
        assert!(err.contains(needle), "{args:?}: expected {needle:?} in {err}");
        err
    }
    /// Build a bundle with one source file; returns the archive path.
    fn build(&self, id: &str, version: &str) -> PathBuf {
        let src = self.path(&format!("src-{id}-{version}"));
        std::fs::create_dir_all(src.join("mod/quiz")).unwrap();
        // One file per id: two ids writing the same path are refused at publish.
        std::fs::write(src.join(format!("mod/quiz/{id}.php")), format!("<?php // {id} {version}\n")).unwrap();
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
    /// Publish with the offline keys when the site has them (a legacy repository has not).
    fn publish(&self, id: &str, version: &str) {
        let a = self.build(id, version);
        let mut args = vec!["publish", "--repo", "repo", a.to_str().unwrap()];
        if self.path("offline").is_dir() {
            args.extend(["--offline-keys", "offline"]);
        }
        self.ok(&args);
    }
    fn list(&self, repo: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["list", "--repo", repo, "--json"])).unwrap()
    }
    fn paths(&self) -> RepoPaths {
        RepoPaths::new(self.path("repo"), Some(self.path("keys")))
    }
    fn json(&self, file: &str) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.path(&format!("repo/metadata/{file}"))).unwrap()).unwrap()
    }
    /// The newest root, as `N.root.json`.
    fn newest_root(&self) -> serde_json::Value {
        let n = (1..).take_while(|n| self.path(&format!("repo/metadata/{n}.root.json")).exists()).last().unwrap();
        self.json(&format!("{n}.root.json"))
    }
    fn snapshot(&self) -> serde_json::Value {
        let v = self.json("timestamp.json")["signed"]["meta"]["snapshot.json"]["version"].as_u64().unwrap();
        self.json(&format!("{v}.snapshot.json"))
    }
    fn version_of(&self, role: &str) -> u64 {
        self.snapshot()["signed"]["meta"][format!("{role}.json")]["version"].as_u64().unwrap()
    }
    fn top_targets(&self) -> serde_json::Value {
        self.json(&format!("{}.targets.json", self.version_of("targets")))
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    out.sort();
    out
}

/// Every file under `dir` with its content hash, hidden names left out.
fn tree_hash(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).into_iter().filter_entry(|e| !e.file_name().to_string_lossy().starts_with('.')) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            out.insert(rel, hex::encode(Sha256::digest(std::fs::read(e.path()).unwrap())));
        }
    }
    out
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn init_puts_root_targets_and_bins_keys_offline_and_refuses_a_bad_offline_folder() {
    let s = Site::new();
    assert_eq!(files(&s.path("offline")), ["bins.der", "root.der", "targets.der"]);
    let online: Vec<String> = files(&s.path("keys")).into_iter().filter(|f| !f.starts_with('.')).collect();
    assert_eq!(online, ["halts.der", "reports.der", "snapshot.der", "timestamp.der"]);

    let t = Site::empty();
    std::fs::create_dir_all(t.path("repo")).unwrap();
    t.refused(&["init", "--repo", "repo", "--offline-keys", "repo/offline"], 1, "is inside the served repository");
    t.refused(&["init", "--repo", "repo", "--offline-keys", "keys"], 1, "is the online keys folder");
    t.refused(&["init", "--repo", "repo", "--keys", "k", "--offline-keys", "k/sub"], 1, "is the online keys folder");
    assert!(!t.path("repo/metadata/1.root.json").exists());
}

/// With only the online keys folder, nothing can be published, validated, linked through the
/// bins, yanked, rolled out or un-halted: each command says so in one line naming
/// `--offline-keys`, exits 64 and writes nothing. Halting still works (a halt marker). With
/// the offline folder, each works.
#[test]
fn with_only_the_online_keys_nothing_is_published_validated_or_un_halted() {
    let s = Site::new();
    s.publish("b", "1.0.0");
    let b2 = s.build("b", "2.0.0");
    let before = tree_hash(&s.path("repo"));
    let mut commands = vec![
        vec!["publish", "--repo", "repo", b2.to_str().unwrap()],
        vec!["validate", "--repo", "repo", "b@1.0.0", "--alpha"],
        vec!["link", "--repo", "repo", "b@1.0.0", "--platform", "univ-a"],
        vec!["yank", "--repo", "repo", "b@1.0.0", "--reason", "withdrawn"],
        vec!["rollout", "set", "--repo", "repo", "b@1.0.0", "canary=univ-a; 24h=50%"],
        vec!["resume", "--repo", "repo", "b@1.0.0"],
        vec!["key", "rotate", "--repo", "repo", "targets"],
        vec!["key", "rotate", "--repo", "repo", "root"],
        vec!["key", "rotate", "--repo", "repo", "timestamp"],
        vec!["key", "rotate", "--repo", "repo", "bins"],
        vec!["key", "rotate", "--repo", "repo", "halts"],
        vec!["key", "rotate", "--repo", "repo", "reports"],
        vec!["root", "sign", "--repo", "repo"],
        vec!["migrate", "--repo", "repo"],
    ];
    for args in &commands {
        let err = s.refused(args, 64, "--offline-keys");
        assert!(err.contains("not in ./keys"), "{err}");
    }
    assert_eq!(tree_hash(&s.path("repo")), before, "a refused command wrote something");

    // Halting needs no offline key: a halt marker; un-halting does.
    let out = s.ok(&["halt", "--repo", "repo", "b@1.0.0", "--reason", "login errors"]);
    assert!(out.contains("b@1.0.0: halted (a halt marker"), "{out}");
    assert_eq!(s.list("repo")["bundles"][0]["state"], "halted");
    let before = tree_hash(&s.path("repo"));
    s.refused(&["resume", "--repo", "repo", "b@1.0.0"], 64, "--offline-keys");
    assert_eq!(tree_hash(&s.path("repo")), before);

    // With the offline folder, every one of them works.
    for args in &mut commands[..6] {
        args.extend(["--offline-keys", "offline"]);
    }
    let order = [0, 1, 2, 4, 5, 3];
    for i in order {
        s.ok(&commands[i]);
    }
    let listed = s.list("repo");
    let b1 = listed["bundles"].as_array().unwrap().iter().find(|b| b["version"] == "1.0.0").unwrap();
    assert_eq!(b1["state"], "yanked", "{listed}");
    assert!(b1["resumed_at"].is_string(), "{listed}");

    // A refresh when the top-level targets near their expiry (89 days on): the timestamp and
    // snapshot are re-signed, and the targets are refused for want of their key.
    let later = (Timestamp::now() + SignedDuration::from_hours(89 * 24)).to_string();
    let ts = s.json("timestamp.json")["signed"]["version"].as_u64().unwrap();
    s.refused(&["refresh", "--repo", "repo", "--now", &later], 1, "--offline-keys DIR` where the offline keys are");
    assert_eq!(s.json("timestamp.json")["signed"]["version"].as_u64().unwrap(), ts + 1);
    s.ok(&["refresh", "--repo", "repo", "--offline-keys", "offline", "--now", &later]);
    assert!(s.ok(&["refresh", "--repo", "repo", "--now", &later]).contains("nothing due"));
}

/// A halt marker (the auto-halt's writer) re-signs the halts role, snapshot and timestamp only,
/// with the online keys; `list` shows the bundle halted with the marker's reason; `resume`
/// removes the marker.
#[test]
fn a_halt_marker_halts_without_touching_the_bin_and_resume_removes_it() {
    let s = Site::new();
    s.publish("b", "1.0.0");
    let before = s.snapshot()["signed"]["meta"].clone();
    let bundle = "b@1.0.0".parse().unwrap();
    let written = rt().block_on(palier_server::halts::write_marker(&s.paths(), &bundle, "auto-halt: rolled back on univ-a, univ-b", Timestamp::now())).unwrap();
    assert!(written);
    let after = s.snapshot()["signed"]["meta"].clone();
    let changed: Vec<&String> = after.as_object().unwrap().iter().filter(|(k, v)| before.get(k.as_str()) != Some(v)).map(|(k, _)| k).collect();
    assert_eq!(changed, ["halts.json"], "only the halts role changes");
    let halts = s.json(&format!("{}.halts.json", s.version_of("halts")));
    let marker = &halts["signed"]["targets"]["halts/b@1.0.0.json"];
    assert_eq!(marker["custom"]["reason"], "auto-halt: rolled back on univ-a, univ-b");
    assert_eq!(marker["custom"]["bundle"], "b");
    assert_eq!(marker["custom"]["version"], "1.0.0");
    let sha = marker["hashes"]["sha256"].as_str().unwrap();
    assert!(s.path(&format!("repo/targets/halts/{sha}.b@1.0.0.json")).is_file());

    let listed = s.list("repo");
    assert_eq!(listed["bundles"][0]["state"], "halted", "{listed}");
    assert!(listed["bundles"][0]["state_reason"].as_str().unwrap().contains("auto-halt: rolled back on univ-a, univ-b"), "{listed}");
    // Writing it again changes nothing.
    assert!(!rt().block_on(palier_server::halts::write_marker(&s.paths(), &bundle, "again", Timestamp::now())).unwrap());

    // Removing the marker (the online halts key can) leaves the bundle active in the
    // repository's view, but agents that saw the marker keep it halted (tests/repo_keys.rs):
    // `resume` records the resume in the bundle's own metadata, with the offline bins key.
    let out = s.ok(&["resume", "--repo", "repo", "b@1.0.0", "--offline-keys", "offline"]);
    assert!(out.contains("b@1.0.0: active"), "{out}");
    assert_eq!(s.list("repo")["bundles"][0]["state"], "active");
    assert!(s.list("repo")["bundles"][0]["resumed_at"].is_string());
    assert!(rt().block_on(async { palier_server::halts::markers(&s.paths()) }).unwrap().is_empty());
    // In place: nothing re-signed.
    assert!(s.ok(&["resume", "--repo", "repo", "b@1.0.0", "--offline-keys", "offline"]).contains("already active"));

    // A marker still listed that a resume answered (its removal did not happen) halts nothing,
    // and a new halt replaces it.
    let t1 = Timestamp::now();
    assert!(rt().block_on(palier_server::halts::write_marker(&s.paths(), &bundle, "first", t1)).unwrap());
    let release_manager = s.paths().with_offline(Some(s.path("offline")));
    let t2 = t1 + SignedDuration::from_secs(60);
    rt().block_on(palier_server::repo::update(&release_manager, &bundle, t2, |m| {
        m.resumed_at = Some(t2.to_string());
        Ok(true)
    }))
    .unwrap();
    assert_eq!(s.list("repo")["bundles"][0]["state"], "active", "resumed after the marker");
    let t3 = t2 + SignedDuration::from_secs(60);
    assert!(rt().block_on(palier_server::halts::write_marker(&s.paths(), &bundle, "second", t3)).unwrap());
    let markers = palier_server::halts::markers(&s.paths()).unwrap();
    assert_eq!((markers.len(), markers[0].reason.as_str(), markers[0].at()), (1, "second", t3));
    assert_eq!(s.list("repo")["bundles"][0]["state"], "halted");
}

/// Every role rotated in turn: the old key is revoked from the metadata that delegates to it,
/// its file moves to `retired/`, the repository stays readable from the pinned root and
/// writable, and python-tuf still reads it.
#[test]
fn every_role_rotates_and_the_old_key_is_revoked() {
    let s = Site::new();
    s.publish("b", "1.0.0");
    for (i, role) in ["timestamp", "snapshot", "targets", "bins", "halts", "reports", "root"].iter().enumerate() {
        let (folder, delegating) = match *role {
            "root" | "targets" => ("offline", "root"),
            "bins" => ("offline", "targets"),
            "halts" | "reports" => ("keys", "targets"),
            _ => ("keys", "root"),
        };
        let old_key = std::fs::read(s.path(&format!("{folder}/{role}.der"))).unwrap();
        let keyids_of = |s: &Site| -> Vec<String> {
            let (keys, names): (serde_json::Value, Vec<String>) = if delegating == "root" {
                let root = s.newest_root();
                (root["signed"]["keys"].clone(), root["signed"]["roles"][role]["keyids"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_owned()).collect())
            } else {
                let t = s.top_targets();
                let d = &t["signed"]["delegations"];
                let r = d["roles"].as_array().unwrap().iter().find(|r| if *role == "bins" { r["name"].as_str().unwrap().starts_with("bin-") } else { r["name"] == *role }).unwrap();
                (d["keys"].clone(), r["keyids"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_owned()).collect())
            };
            assert!(names.iter().all(|id| keys.get(id).is_some()));
            names
        };
        let before = keyids_of(&s);
        let out = s.ok(&["key", "rotate", "--repo", "repo", "--offline-keys", "offline", role]);
        assert!(out.contains("revoked"), "{out}");
        let after = keyids_of(&s);
        assert_ne!(before, after, "{role}: the keys did not change");
        let keys = if delegating == "root" { s.newest_root()["signed"]["keys"].clone() } else { s.top_targets()["signed"]["delegations"]["keys"].clone() };
        assert!(before.iter().all(|id| keys.get(id).is_none()), "{role}: the old key is still trusted");
        assert_ne!(std::fs::read(s.path(&format!("{folder}/{role}.der"))).unwrap(), old_key);
        let retired = files(&s.path(&format!("{folder}/retired")));
        assert!(retired.iter().any(|f| f.starts_with(&format!("{role}-"))), "{retired:?}");
        // Still verified from the pinned root, and still writable.
        s.publish("b", &format!("1.1.{i}"));
        assert_eq!(s.list("repo")["bundles"].as_array().unwrap().len(), i + 2);
    }
    let root = s.newest_root();
    assert_eq!(root["signed"]["version"], 5, "timestamp, snapshot, targets, root: four new roots");
    let out = s.ok(&["root", "sign", "--repo", "repo", "--offline-keys", "offline"]);
    assert!(out.contains("6.root.json"), "{out}");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tuf_client.py");
    let out = Command::new("python3").arg(script).arg(s.path("repo")).arg("b-1.1.6.tar.gz").arg(s.path("client")).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
}

/// `sync --to DIR` writes a copy that is itself a valid repository, then only what changed,
/// the timestamp last; a folder overlapping the repository is refused.
#[test]
fn sync_writes_a_consistent_copy_and_then_only_what_changed() {
    let s = Site::new();
    s.publish("b", "1.0.0");
    let out = s.ok(&["sync", "--repo", "repo", "--to", "www"]);
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(tree_hash(&s.path("www")), tree_hash(&s.path("repo")));
    assert_eq!(s.list("www")["bundles"][0]["id"], "b");

    let out = s.ok(&["sync", "--repo", "repo", "--to", "www"]);
    assert!(out.contains(": 0 file(s) written"), "{out}");

    s.publish("b", "1.0.1");
    let out = s.ok(&["sync", "--repo", "repo", "--to", "www"]);
    // The archive, the bin, the snapshot and the timestamp.
    assert!(out.contains(": 4 file(s) written"), "{out}");
    assert_eq!(tree_hash(&s.path("www")), tree_hash(&s.path("repo")));
    assert_eq!(s.list("www")["bundles"].as_array().unwrap().len(), 2);

    s.refused(&["sync", "--repo", "repo", "--to", "repo/public"], 1, "overlap");
    assert!(!s.path("repo/public").exists());
}

/// A repository of the single-targets layout, as the first release wrote it (tough's editor:
/// every bundle a target of the top-level targets with metadata format 1, all four keys in `keys/`).
fn legacy_repository(s: &Site, bundles: &[(&str, &str)]) {
    use tough::editor::RepositoryEditor;
    use tough::editor::signed::SignedRole;
    use tough::key_source::{KeySource, LocalKeySource};
    use tough::schema::decoded::{Decoded, Hex};
    use tough::schema::key::{Ed25519Key, Ed25519Scheme, Key};
    use tough::schema::{Hashes, KeyHolder, RoleKeys, RoleType, Root, Target};

    let rt = rt();
    let now = Timestamp::now();
    let expires = |days: i64| Timestamp::from_second((now + SignedDuration::from_hours(24 * days)).as_second()).unwrap();
    for dir in ["repo/metadata", "repo/targets", "keys"] {
        std::fs::create_dir_all(s.path(dir)).unwrap();
    }
    let mut root = Root {
        spec_version: "1.0.0".into(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires: expires(365),
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    for (role, rt_) in [("root", RoleType::Root), ("targets", RoleType::Targets), ("snapshot", RoleType::Snapshot), ("timestamp", RoleType::Timestamp)] {
        let public = palier_server::keys::generate(&s.path(&format!("keys/{role}.der"))).unwrap();
        let key = Key::Ed25519 { keyval: Ed25519Key { public: Decoded::<Hex>::from(public), _extra: HashMap::new() }, scheme: Ed25519Scheme::Ed25519, _extra: HashMap::new() };
        let id = key.key_id().unwrap();
        root.keys.insert(id.clone(), key);
        root.roles.insert(rt_, RoleKeys { keyids: vec![id], threshold: NonZeroU64::MIN, _extra: HashMap::new() });
    }
    let key = |role: &str| -> Box<dyn KeySource> { Box::new(LocalKeySource { path: s.path(&format!("keys/{role}.der")) }) };
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signed = rt.block_on(SignedRole::new(root.clone(), &KeyHolder::Root(root), &[key("root")], &rng)).unwrap();
    std::fs::write(s.path("repo/metadata/1.root.json"), serde_json::to_vec_pretty(signed.signed()).unwrap()).unwrap();

    let mut editor = rt.block_on(RepositoryEditor::new(s.path("repo/metadata/1.root.json"))).unwrap();
    for (id, version) in bundles {
        let archive = s.build(id, version);
        let checked = palier_server::repo::check_archive(&archive, 1 << 30).unwrap();
        let name = checked.manifest.target_name();
        let files: Vec<String> = checked.manifest.files.iter().map(palier_bundle::metadata::file_line).collect();
        let meta = palier_bundle::BundleMetadata::new(checked.manifest, Default::default(), now.to_string());
        // As the releases of that layout signed it: metadata format 1, the file list as lines.
        let custom = match meta.to_fields() {
            serde_json::Value::Object(mut map) => {
                map.insert("format".into(), 1.into());
                map.remove("file_count");
                map.remove("paths");
                map.insert("files".into(), files.into());
                map.into_iter().collect()
            }
            _ => unreachable!(),
        };
        let target = Target { length: checked.length, hashes: Hashes { sha256: Decoded::from(checked.sha256.clone()), _extra: HashMap::new() }, custom, _extra: HashMap::new() };
        editor.add_target(tough::TargetName::new(name.clone()).unwrap(), target).unwrap();
        std::fs::copy(&archive, s.path(&format!("repo/targets/{}.{name}", hex::encode(&checked.sha256)))).unwrap();
    }
    editor.targets_version(NonZeroU64::MIN).unwrap();
    editor.targets_expires(expires(90)).unwrap();
    editor.snapshot_version(NonZeroU64::MIN).snapshot_expires(expires(7)).timestamp_version(NonZeroU64::MIN).timestamp_expires(expires(1));
    let signed = rt.block_on(editor.sign(&[key("targets"), key("snapshot"), key("timestamp")])).unwrap();
    rt.block_on(signed.write(s.path("repo/metadata"))).unwrap();
}

/// `migrate` moves every bundle of a single-targets repository into its bin, unchanged, and
/// adds the halts role; writers meanwhile point to it; python-tuf reads the result.
#[test]
fn migrate_moves_a_single_targets_repository_into_bins() {
    let s = Site::empty();
    legacy_repository(&s, &[("a", "1.0.0"), ("b", "1.0.0"), ("b", "1.0.1")]);
    let before = s.list("repo");
    assert_eq!(before["bundles"].as_array().unwrap().len(), 3, "{before}");
    let a2 = s.build("a", "2.0.0");
    s.refused(&["publish", "--repo", "repo", a2.to_str().unwrap()], 1, "run `palier-server migrate --repo");
    s.refused(&["validate", "--repo", "repo", "a@1.0.0", "--alpha"], 1, "run `palier-server migrate --repo");

    let out = s.ok(&["migrate", "--repo", "repo", "--bins", "16"]);
    assert!(out.contains("moved 3 bundle(s) from the top-level targets into 16 hashed bins"), "{out}");
    assert_eq!(s.list("repo"), before, "the bundles and their signed metadata are unchanged");
    let top = s.top_targets();
    assert_eq!(top["signed"]["targets"].as_object().unwrap().len(), 0);
    let roles: Vec<&str> = top["signed"]["delegations"]["roles"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(roles.len(), 18);
    assert_eq!(roles[..2], ["halts", "reports"]);
    assert!(s.path("keys/bins.der").is_file() && s.path("keys/halts.der").is_file() && s.path("keys/reports.der").is_file());

    // Writers work again, and a second migrate has nothing to do.
    s.ok(&["publish", "--repo", "repo", a2.to_str().unwrap()]);
    s.ok(&["validate", "--repo", "repo", "a@1.0.0", "--alpha"]);
    assert!(s.ok(&["migrate", "--repo", "repo"]).contains("already in the current layout"));

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tuf_client.py");
    let out = Command::new("python3").arg(script).arg(s.path("repo")).arg("b-1.0.1.tar.gz").arg(s.path("client")).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
}

/// The auto-halt (two platforms roll the same bundle back) writes a halt marker with the
/// online keys alone: the offline folder is not even on the machine, and the bundle's bin is
/// not re-signed.
#[tokio::test]
async fn the_auto_halt_writes_a_halt_marker_with_the_online_keys_alone() {
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use palier_server::http::{AppOptions, AppState, Clock, app};
    use palier_server::store::{PlatformContract, Store};
    use tower::ServiceExt;

    let s = Site::new();
    let paths = s.paths();
    let now = Timestamp::now();
    let archive = s.path("crafted.tar.gz");
    std::fs::write(&archive, palier_bundle::hostile::craft(&palier_bundle::hostile::valid_entries())).unwrap();
    let release_manager = paths.clone().with_offline(Some(s.path("offline")));
    palier_server::repo::publish(&release_manager, &archive, Default::default(), palier_server::repo::DEFAULT_MAX_EXPANDED, now).await.unwrap();
    std::fs::rename(s.path("offline"), s.path("elsewhere")).unwrap();
    let store = std::sync::Arc::new(Store::open(&s.path("palier.db")).unwrap());
    let contract = PlatformContract::new(3, 1, Vec::new(), Vec::new()).unwrap();
    let mut tokens = Vec::new();
    for p in ["univ-a", "univ-b"] {
        tokens.push((p, store.add_platform_with(&palier_bundle::PlatformId::new(p).unwrap(), Some(&contract), now).unwrap()));
    }
    let app = app(AppState::with_options(paths.clone(), Clock::system(), Some(store), AppOptions { halt_threshold: 2, ..AppOptions::default() }));
    let before = s.snapshot()["signed"]["meta"].clone();
    for (platform, token) in &tokens {
        let receipt = serde_json::json!({
            "id": "r1", "platform": platform, "outcome": "rolled-back", "bundles": ["crafted@1.0.0"],
            "stability_level": 2, "started_at": "2026-03-01T10:00:00Z", "finished_at": "2026-03-01T10:01:00Z",
            "steps": [], "hooks": [], "checks": [], "reason": null
        });
        let req = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/receipts")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(receipt.to_string()))
            .unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::CREATED);
    }
    let after = s.snapshot()["signed"]["meta"].clone();
    let changed: Vec<&String> = after.as_object().unwrap().iter().filter(|(k, v)| before.get(k.as_str()) != Some(v)).map(|(k, _)| k).collect();
    assert_eq!(changed, ["halts.json"], "the auto-halt re-signs the halts role only");
    let markers = palier_server::halts::markers(&paths).unwrap();
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].bundle.to_string(), "crafted@1.0.0");
    assert_eq!(markers[0].reason, "auto-halt: rolled back on univ-a, univ-b");
    let listed = palier_server::repo::list(&paths).await.unwrap();
    assert_eq!(listed[0].meta.state, palier_bundle::BundleState::Halted);
}

/// A fix request naming a published bundle links it with the online keys alone: the
/// platform joins the bundle's report marker (the `reports` role), the bundle's bin is not
/// re-signed, and the repository's view counts the platform among the reporters. A second
/// request from the same platform changes nothing; one naming an unpublished bundle is a 404.
#[tokio::test]
async fn a_fix_request_links_its_bundle_with_the_online_keys_alone() {
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use palier_server::http::{AppState, Clock, app};
    use palier_server::store::{PlatformContract, Store};
    use tower::ServiceExt;

    let s = Site::new();
    let paths = s.paths();
    let now = Timestamp::now();
    let archive = s.path("crafted.tar.gz");
    std::fs::write(&archive, palier_bundle::hostile::craft(&palier_bundle::hostile::valid_entries())).unwrap();
    let release_manager = paths.clone().with_offline(Some(s.path("offline")));
    palier_server::repo::publish(&release_manager, &archive, Default::default(), palier_server::repo::DEFAULT_MAX_EXPANDED, now).await.unwrap();
    std::fs::rename(s.path("offline"), s.path("elsewhere")).unwrap();
    let store = std::sync::Arc::new(Store::open(&s.path("palier.db")).unwrap());
    let contract = PlatformContract::new(1, 1, Vec::new(), Vec::new()).unwrap();
    let token = store.add_platform_with(&palier_bundle::PlatformId::new("univ-a").unwrap(), Some(&contract), now).unwrap();
    let app = app(AppState::with_options(paths.clone(), Clock::system(), Some(store), palier_server::http::AppOptions::default()));
    let request = |body: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/fix-requests")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let before = s.snapshot()["signed"]["meta"].clone();
    let fr = r#"{"component":"mod_quiz","summary":"quiz timer resets","bundle":"crafted@1.0.0"}"#;
    let resp = app.clone().oneshot(request(fr)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let after = s.snapshot()["signed"]["meta"].clone();
    let changed: Vec<&String> = after.as_object().unwrap().iter().filter(|(k, v)| before.get(k.as_str()) != Some(v)).map(|(k, _)| k).collect();
    assert_eq!(changed, ["reports.json"], "the link re-signs the reports role only");
    let markers = palier_server::halts::report_markers(&paths).unwrap();
    assert_eq!(markers.len(), 1);
    assert_eq!((markers[0].bundle.to_string(), markers[0].platforms.iter().map(|p| p.as_str()).collect::<Vec<_>>()), ("crafted@1.0.0".into(), vec!["univ-a"]));
    let reports = s.json(&format!("{}.reports.json", s.version_of("reports")));
    let sha = reports["signed"]["targets"]["reports/crafted@1.0.0.json"]["hashes"]["sha256"].as_str().unwrap().to_owned();
    assert!(s.path(&format!("repo/targets/reports/{sha}.crafted@1.0.0.json")).is_file());
    let listed = palier_server::repo::list(&paths).await.unwrap();
    assert!(listed[0].meta.reported_by.contains(&palier_bundle::PlatformId::new("univ-a").unwrap()));

    let version = s.version_of("reports");
    assert_eq!(app.clone().oneshot(request(fr)).await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(s.version_of("reports"), version, "already a reporter: nothing re-signed");
    let missing = r#"{"component":"mod_quiz","summary":"x","bundle":"crafted@9.0.0"}"#;
    assert_eq!(app.clone().oneshot(request(missing)).await.unwrap().status(), StatusCode::NOT_FOUND);
}

/// A repository whose bins key is still in the online folder (made before the bins went
/// offline): `key rotate bins --offline-keys DIR` writes the new key to the offline folder and
/// revokes the old one; from then on publishing needs the offline folder.
#[test]
fn rotating_the_bins_key_with_offline_keys_moves_it_offline() {
    let s = Site::new();
    std::fs::rename(s.path("offline/bins.der"), s.path("keys/bins.der")).unwrap();
    s.publish("b", "1.0.0");
    let a = s.build("b", "1.0.1");
    s.ok(&["publish", "--repo", "repo", a.to_str().unwrap()]);
    let out = s.ok(&["key", "rotate", "--repo", "repo", "--offline-keys", "offline", "bins"]);
    assert!(out.contains("new key(s) in offline"), "{out}");
    assert!(s.path("offline/bins.der").is_file() && !s.path("keys/bins.der").exists());
    assert!(files(&s.path("keys/retired")).iter().any(|f| f.starts_with("bins-")));
    let a = s.build("b", "1.0.2");
    let err = s.refused(&["publish", "--repo", "repo", a.to_str().unwrap()], 64, "--offline-keys");
    assert!(err.contains("bins"), "{err}");
    s.ok(&["publish", "--repo", "repo", a.to_str().unwrap(), "--offline-keys", "offline"]);
    assert_eq!(s.list("repo")["bundles"].as_array().unwrap().len(), 3);
}

/// The repository as a release before the reports role wrote it: the top-level targets
/// delegate to `halts` and the bins only, no reports key. Re-signed with the repository's own
/// targets, snapshot and timestamp keys (all in `keys/`).
fn without_reports_role(s: &Site) {
    use tough::editor::signed::SignedRole;
    use tough::key_source::{KeySource, LocalKeySource};
    use tough::schema::{Hashes, KeyHolder, Metafile, Root, Signed, Snapshot, Targets, Timestamp as TufTimestamp};
    fn sign<T: tough::schema::Role + serde::Serialize>(s: &Site, role: T, holder: &KeyHolder, key: &str) -> Vec<u8> {
        let keys: Vec<Box<dyn KeySource>> = vec![Box::new(LocalKeySource { path: s.path(&format!("keys/{key}.der")) })];
        let signed = rt().block_on(SignedRole::new(role, holder, &keys, &aws_lc_rs::rand::SystemRandom::new())).unwrap();
        serde_json::to_vec(signed.signed()).unwrap()
    }
    let read = |file: &str| std::fs::read(s.path(&format!("repo/metadata/{file}"))).unwrap();
    let root: Signed<Root> = serde_json::from_slice(&read("1.root.json")).unwrap();
    let holder = KeyHolder::Root(root.signed.clone());
    let mut timestamp: Signed<TufTimestamp> = serde_json::from_slice(&read("timestamp.json")).unwrap();
    let mut snapshot: Signed<Snapshot> = serde_json::from_slice(&read(&format!("{}.snapshot.json", timestamp.signed.meta["snapshot.json"].version))).unwrap();
    let mut top: Signed<Targets> = serde_json::from_slice(&read(&format!("{}.targets.json", snapshot.signed.meta["targets.json"].version))).unwrap();
    let delegations = top.signed.delegations.as_mut().unwrap();
    let reports = delegations.roles.iter().position(|r| r.name == "reports").unwrap();
    for id in delegations.roles.remove(reports).keyids {
        delegations.keys.remove(&id);
    }
    top.signed.version = top.signed.version.checked_add(1).unwrap();
    let version = top.signed.version;
    let bytes = sign(s, top.signed, &holder, "targets");
    std::fs::write(s.path(&format!("repo/metadata/{version}.targets.json")), bytes).unwrap();
    snapshot.signed.meta.remove("reports.json");
    snapshot.signed.meta.get_mut("targets.json").unwrap().version = version;
    snapshot.signed.version = snapshot.signed.version.checked_add(1).unwrap();
    let version = snapshot.signed.version;
    let bytes = sign(s, snapshot.signed, &holder, "snapshot");
    std::fs::write(s.path(&format!("repo/metadata/{version}.snapshot.json")), &bytes).unwrap();
    let hashes = Hashes { sha256: Sha256::digest(&bytes).to_vec().into(), _extra: HashMap::new() };
    timestamp.signed.meta.insert("snapshot.json".into(), Metafile { length: Some(bytes.len() as u64), hashes: Some(hashes), version, _extra: HashMap::new() });
    timestamp.signed.version = timestamp.signed.version.checked_add(1).unwrap();
    let bytes = sign(s, timestamp.signed, &holder, "timestamp");
    std::fs::write(s.path("repo/metadata/timestamp.json"), bytes).unwrap();
    std::fs::remove_file(s.path("keys/reports.der")).unwrap();
}

/// `migrate` adds the reports role to a repository made before it, after the halts role; until
/// then a fix request's link goes through the bundle's bin, after it through a report marker.
#[test]
fn migrate_adds_the_reports_role_to_a_repository_made_before_it() {
    let s = Site::empty();
    s.ok(&["init", "--repo", "repo", "--bins", "16"]);
    s.publish("b", "1.0.0");
    without_reports_role(&s);
    let paths = s.paths();
    assert!(!palier_server::halts::has_marker_role(&paths, "reports").unwrap());
    let platform = palier_bundle::PlatformId::new("univ-a").unwrap();
    let bundle = "b@1.0.0".parse().unwrap();
    let err = rt().block_on(palier_server::halts::link(&paths, &bundle, &platform, Timestamp::now())).unwrap_err().to_string();
    assert!(err.contains("run `palier-server migrate"), "{err}");
    let before = s.list("repo");

    let out = s.ok(&["migrate", "--repo", "repo"]);
    assert!(out.contains("added the reports role(s)"), "{out}");
    let roles: Vec<String> = s.top_targets()["signed"]["delegations"]["roles"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!((roles.len(), &roles[..2]), (18, &["halts".to_owned(), "reports".to_owned()][..]));
    assert!(s.path("keys/reports.der").is_file());
    assert_eq!(s.list("repo"), before, "the bundles are unchanged");
    assert!(rt().block_on(palier_server::halts::link(&paths, &bundle, &platform, Timestamp::now())).unwrap());
    assert_eq!(s.list("repo")["bundles"][0]["reported_by"], serde_json::json!(["univ-a"]));
    assert!(s.ok(&["migrate", "--repo", "repo"]).contains("already in the current layout"));
}
