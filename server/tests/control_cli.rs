//! The control plane's commands through the real binary: `platform add|set|token|remove|list`,
//! `publish --db`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jiff::Timestamp;
use palier_bundle::{Component, PlatformId};
use palier_server::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_palier-server");

struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        let s = Site { tmp: tempfile::tempdir().unwrap() };
        s.ok(&["init", "--repo", s.s("repo").as_str()]);
        s
    }
    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    fn s(&self, p: &str) -> String {
        self.path(p).to_str().unwrap().to_owned()
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).current_dir(self.tmp.path()).env_remove("PALIER_LOG").output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
    fn refused(&self, args: &[&str], needle: &str) {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    /// A bundle fixing `fixes`; returns the archive.
    fn build(&self, id: &str, fixes: &[&str]) -> PathBuf {
        let src = self.path(&format!("src-{id}"));
        std::fs::create_dir_all(src.join("mod/quiz")).unwrap();
        std::fs::write(src.join(format!("mod/quiz/{id}.php")), "<?php // fixed\n").unwrap();
        let manifest = self.path(&format!("{id}.toml"));
        let fixes: Vec<String> = fixes.iter().map(|f| format!("{f:?}")).collect();
        std::fs::write(
            &manifest,
            format!(
                "id = \"{id}\"\nversion = \"1.0.0\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"test\"\nfixes = [{}]\norigin = \"report\"\n",
                fixes.join(", ")
            ),
        )
        .unwrap();
        let out = self.path(&format!("{id}.tar.gz"));
        self.ok(&["bundle", "build", "--manifest", manifest.to_str().unwrap(), "--source", src.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        out
    }
    fn bundles(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["list", "--repo", &self.s("repo"), "--json"])).unwrap()
    }
}

fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn platform_add_prints_the_token_once_on_the_last_line_and_stores_its_hash() {
    let site = Site::new();
    let db = site.s("palier.db");
    let out = site.ok(&["platform", "add", "univ-a", "--improvement", "1", "--stability", "1", "--db", &db]);
    let token = out.lines().last().unwrap();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let store = Store::open(Path::new(&db)).unwrap();
    assert_eq!(store.authenticate(token).unwrap().unwrap().as_str(), "univ-a");
    drop(store);
    for file in [db.clone(), format!("{db}-wal")] {
        let raw = std::fs::read(&file).unwrap_or_default();
        assert!(!raw.windows(token.len()).any(|w| w == token.as_bytes()), "the token itself is stored in {file}");
    }

    site.refused(&["platform", "add", "univ-a", "--improvement", "1", "--stability", "1", "--db", &db], "platform univ-a already exists");
    let bad = site.run(&["platform", "add", "Univ A", "--improvement", "1", "--stability", "1", "--db", &db]);
    assert_eq!(bad.status.code(), Some(2), "a bad name is a usage error");

    site.ok(&["platform", "add", "univ-b", "--improvement", "1", "--stability", "1", "--db", &db]);
    let list: serde_json::Value = serde_json::from_str(&site.ok(&["platform", "list", "--db", &db, "--json"])).unwrap();
    let names: Vec<&str> = list["platforms"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["univ-a", "univ-b"]);
    assert!(!site.ok(&["platform", "list", "--db", &db]).contains(token));
}

#[test]
fn publish_with_db_turns_fix_requests_into_reported_by_and_links_them() {
    let site = Site::new();
    let db = site.s("palier.db");
    site.ok(&["platform", "add", "univ-a", "--improvement", "1", "--stability", "1", "--db", &db]);
    site.ok(&["platform", "add", "univ-b", "--improvement", "1", "--stability", "1", "--db", &db]);
    // With --db, a --reported-by platform must be registered too.
    site.ok(&["platform", "add", "univ-c", "--improvement", "1", "--stability", "1", "--db", &db]);
    {
        let store = Store::open(Path::new(&db)).unwrap();
        let c = Component::new("mod_quiz").unwrap();
        let now = Timestamp::now();
        assert_eq!(store.add_fix_request(&PlatformId::new("univ-a").unwrap(), &c, "timer", None, now).unwrap().id, "FR-1");
        assert_eq!(store.add_fix_request(&PlatformId::new("univ-b").unwrap(), &c, "other", None, now).unwrap().id, "FR-2");
    }
    // `MDL-81234` is tracked elsewhere: left alone. `--reported-by` adds to the store's.
    let archive = site.build("quiz-fix", &["FR-1", "MDL-81234"]);
    let out = site.ok(&["publish", "--repo", &site.s("repo"), "--db", &db, "--reported-by", "univ-c", archive.to_str().unwrap()]);
    assert!(out.contains("linked FR-1 to quiz-fix@1.0.0"), "{out}");
    let list = site.bundles();
    assert_eq!(list["bundles"][0]["reported_by"], serde_json::json!(["univ-a", "univ-c"]));

    let store = Store::open(Path::new(&db)).unwrap();
    let fr1 = store.fix_request(1).unwrap().unwrap();
    assert_eq!((fr1.status.as_str(), fr1.bundle.as_deref()), ("linked", Some("quiz-fix@1.0.0")));
    assert_eq!(store.fix_request(2).unwrap().unwrap().status, "open");
}

#[test]
fn publish_with_db_refuses_an_unknown_fr_id_and_changes_nothing() {
    let site = Site::new();
    let db = site.s("palier.db");
    site.ok(&["platform", "add", "univ-a", "--improvement", "1", "--stability", "1", "--db", &db]);
    let before = tree(&site.path("repo"));
    for fixes in [&["FR-7"][..], &["FR-0"], &["MDL-1", "FR-01"]] {
        let archive = site.build("quiz-fix", fixes);
        site.refused(&["publish", "--repo", &site.s("repo"), "--db", &db, archive.to_str().unwrap()], &format!("manifest fixes {}: no such fix request", fixes.last().unwrap()));
        assert_eq!(tree(&site.path("repo")), before);
    }
    // A forgotten --db would drop the reporters' link: refused, saying what to add.
    let archive = site.build("quiz-fix", &["FR-7"]);
    site.refused(&["publish", "--repo", &site.s("repo"), archive.to_str().unwrap()], "quiz-fix@1.0.0 fixes FR-7 (fix requests of the control plane) but no --db was given");
    site.refused(&["publish", "--repo", &site.s("repo"), archive.to_str().unwrap()], "add --db FILE");
    assert_eq!(tree(&site.path("repo")), before);
    // --no-db says it on purpose: fixes are not looked up.
    site.ok(&["publish", "--repo", &site.s("repo"), "--no-db", archive.to_str().unwrap()]);
    assert_eq!(site.bundles()["bundles"][0]["reported_by"], serde_json::json!([]));
    // Fixes tracked elsewhere need no store (quiz-fix is yanked first: both change the same file).
    site.ok(&["yank", "--repo", &site.s("repo"), "quiz-fix@1.0.0", "--reason", "replaced"]);
    let other = site.build("other-fix", &["MDL-81234"]);
    site.ok(&["publish", "--repo", &site.s("repo"), other.to_str().unwrap()]);
}

#[test]
fn platform_contracts_tokens_and_removal() {
    let site = Site::new();
    let db = site.s("palier.db");
    // A contract is required, and checked.
    site.refused(&["platform", "add", "univ-a", "--db", &db], "--improvement N is required");
    assert!(!site.path("palier.db").exists(), "nothing created for a refused add");
    site.refused(&["platform", "add", "univ-a", "--improvement", "2", "--stability", "1", "--level2-classes", "global", "--db", &db], "level 2 may be widened to \"non-layout\"");
    let out = site.ok(&["platform", "add", "univ-a", "--improvement", "2", "--stability", "3", "--components", "mod_quiz,mod_forum", "--db", &db]);
    assert!(out.contains("contract 2/3 components mod_forum,mod_quiz"), "{out}");
    let old = out.lines().last().unwrap().to_owned();
    let store = || Store::open(Path::new(&db)).unwrap();
    let contract = store().platform(&PlatformId::new("univ-a").unwrap()).unwrap().unwrap().contract.unwrap();
    assert_eq!((contract.improvement, contract.stability, contract.components.clone()), (2, 3, vec!["mod_forum".to_owned(), "mod_quiz".to_owned()]));

    // set changes only what it is given; the same contract again changes nothing, says so.
    let out = site.ok(&["platform", "set", "univ-a", "--stability", "1", "--db", &db]);
    assert!(out.contains("contract 2/1 components mod_forum,mod_quiz"), "{out}");
    assert!(site.ok(&["platform", "set", "univ-a", "--stability", "1", "--db", &db]).contains("nothing changed"));
    site.refused(&["platform", "set", "univ-x", "--stability", "1", "--db", &db], "no platform univ-x");

    // token: the old one stops working.
    let out = site.ok(&["platform", "token", "univ-a", "--db", &db]);
    let new = out.lines().last().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(store().authenticate(&old).unwrap(), None);
    assert_eq!(store().authenticate(&new).unwrap().unwrap().as_str(), "univ-a");

    // remove: gone with its fix requests.
    store().add_fix_request(&PlatformId::new("univ-a").unwrap(), &Component::new("mod_quiz").unwrap(), "s", None, Timestamp::now()).unwrap();
    assert!(site.ok(&["platform", "remove", "univ-a", "--db", &db]).contains("platform univ-a removed"));
    assert!(store().platforms().unwrap().is_empty());
    assert_eq!(store().authenticate(&new).unwrap(), None);
    site.refused(&["platform", "remove", "univ-a", "--db", &db], "no platform univ-a");
}

#[test]
fn only_platform_add_creates_a_store_and_it_is_private() {
    let site = Site::new();
    let missing = site.s("typo.db");
    for args in [
        vec!["platform", "list", "--db", &missing],
        vec!["platform", "set", "univ-a", "--stability", "1", "--db", &missing],
        vec!["platform", "token", "univ-a", "--db", &missing],
        vec!["serve", "--repo", "repo", "--listen", "127.0.0.1:0", "--db", &missing],
    ] {
        site.refused(&args, &format!("no control-plane store at {missing} (create one with `palier-server platform add"));
        assert!(!site.path("typo.db").exists(), "{args:?} created it");
    }
    // Under umask 000 the store is still 0600.
    let db = site.s("palier.db");
    let out = Command::new("sh")
        .args(["-c", &format!("umask 000; exec {BIN} platform add univ-a --improvement 1 --stability 1 --db {db}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use std::os::unix::fs::PermissionsExt;
    for file in [db.clone(), format!("{db}-wal")] {
        if let Ok(meta) = std::fs::metadata(&file) {
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
        }
    }
}

#[test]
fn platform_add_from_csv_registers_300_platforms_in_one_transaction() {
    let site = Site::new();
    let db = site.s("palier.db");
    let mut csv = String::from("name,improvement,stability,components,level2_classes\n");
    for i in 0..300 {
        csv.push_str(&format!("univ-{i:03},{},{},mod_quiz;mod_forum,technical\n", i % 3 + 1, i % 3 + 1));
    }
    let file = site.path("fleet.csv");
    std::fs::write(&file, &csv).unwrap();
    let out = site.ok(&["platform", "add", "--from-csv", file.to_str().unwrap(), "--db", &db]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 300);
    let store = Store::open(Path::new(&db)).unwrap();
    let (name, token) = lines[42].split_once(' ').unwrap();
    assert_eq!(store.authenticate(token).unwrap().unwrap().as_str(), name);
    assert_eq!(store.platforms().unwrap().len(), 300);
    drop(store);
    // One bad line: nothing of the file is registered.
    std::fs::write(&file, "name,improvement,stability,components,level2_classes\nnew-a,1,1,,\nnew-b,4,1,,\n").unwrap();
    site.refused(&["platform", "add", "--from-csv", file.to_str().unwrap(), "--db", &db], "fleet.csv:3: improvement \"4\": expected 1, 2 or 3");
    assert_eq!(Store::open(Path::new(&db)).unwrap().platforms().unwrap().len(), 300);
}
