//! The control plane's commands through the real binary: `platform add|list`, `publish --db`.
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
        std::fs::write(src.join("mod/quiz/view.php"), "<?php // fixed\n").unwrap();
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
    let out = site.ok(&["platform", "add", "univ-a", "--db", &db]);
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

    site.refused(&["platform", "add", "univ-a", "--db", &db], "platform univ-a already exists");
    let bad = site.run(&["platform", "add", "Univ A", "--db", &db]);
    assert_eq!(bad.status.code(), Some(2), "a bad name is a usage error");

    site.ok(&["platform", "add", "univ-b", "--db", &db]);
    let list: serde_json::Value = serde_json::from_str(&site.ok(&["platform", "list", "--db", &db, "--json"])).unwrap();
    let names: Vec<&str> = list["platforms"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["univ-a", "univ-b"]);
    assert!(!site.ok(&["platform", "list", "--db", &db]).contains(token));
}

#[test]
fn publish_with_db_turns_fix_requests_into_reported_by_and_links_them() {
    let site = Site::new();
    let db = site.s("palier.db");
    site.ok(&["platform", "add", "univ-a", "--db", &db]);
    site.ok(&["platform", "add", "univ-b", "--db", &db]);
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
    site.ok(&["platform", "add", "univ-a", "--db", &db]);
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
    // Fixes tracked elsewhere need no store.
    let other = site.build("other-fix", &["MDL-81234"]);
    site.ok(&["publish", "--repo", &site.s("repo"), other.to_str().unwrap()]);
}
