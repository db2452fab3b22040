//! `palier-server retire`, through the real binary: yanked and superseded bundles older than
//! the retention leave the active bins (each bin re-signed once), newer ones stay, a bundle
//! still installed on a platform stays with its reason, `--dry-run` writes nothing, the
//! entries are archived beside the keys, and python-tuf still reads the repository.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use palier_server::store::{Installed, Status, Store};
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_palier-server");

/// When the first bundles were published.
const EARLY: &str = "2026-01-01T09:00:00Z";
/// When the later versions were published.
const LATER: &str = "2026-03-01T09:00:00Z";
/// When the young ones were published.
const RECENT: &str = "2026-06-20T09:00:00Z";
/// When `retire` runs: 121 days after LATER, 11 days after RECENT.
const NOW: &str = "2026-07-01T09:00:00Z";

struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        let s = Site { tmp: tempfile::tempdir().unwrap() };
        s.ok(&["init", "--repo", "repo", "--bins", "16"]);
        s
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
    /// Refused: exit `code`, one line on stderr containing `needle`.
    fn refused(&self, args: &[&str], code: i32, needle: &str) -> String {
        let out = self.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?} should fail with {code}; stderr: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: error is not one line: {err}");
        assert!(err.contains(needle), "{args:?}: expected {needle:?} in {err}");
        err
    }
    /// Build `id@version` (one file of its own per id) and publish it at `at`.
    fn publish(&self, id: &str, version: &str, at: &str) -> PathBuf {
        let src = self.path(&format!("src-{id}-{version}"));
        std::fs::create_dir_all(src.join("mod/quiz")).unwrap();
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
        self.ok(&["publish", "--repo", "repo", out.to_str().unwrap(), "--now", at]);
        out
    }
    /// The bundles `list --json` shows, as `id@version`.
    fn listed(&self) -> Vec<String> {
        let doc: serde_json::Value = serde_json::from_str(&self.ok(&["list", "--repo", "repo", "--json"])).unwrap();
        doc["bundles"].as_array().unwrap().iter().map(|b| format!("{}@{}", b["id"].as_str().unwrap(), b["version"].as_str().unwrap())).collect()
    }
    /// The repository: a.1.0.0 superseded by a@1.0.1 long ago, y@1.0.0 yanked long ago, b@1.0.0
    /// superseded by b@1.0.1 recently, z@1.0.0 yanked but published recently, n@1.0.0 alone.
    fn history() -> Self {
        let s = Site::new();
        for (id, v, at) in [("a", "1.0.0", EARLY), ("a", "1.0.1", LATER), ("y", "1.0.0", EARLY), ("b", "1.0.0", EARLY), ("b", "1.0.1", RECENT), ("z", "1.0.0", RECENT), ("n", "1.0.0", EARLY)] {
            s.publish(id, v, at);
        }
        s.ok(&["yank", "--repo", "repo", "y@1.0.0", "--reason", "broke logins", "--now", LATER]);
        s.ok(&["yank", "--repo", "repo", "z@1.0.0", "--reason", "broke quizzes", "--now", RECENT]);
        s
    }
    /// `retire --json` with these arguments, at NOW.
    fn retire(&self, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["retire", "--repo", "repo", "--json", "--now", NOW];
        args.extend_from_slice(extra);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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

/// The files that differ between two `tree_hash`es (added, changed or removed).
fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = after.iter().filter(|(k, v)| before.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
    out.extend(before.keys().filter(|k| !after.contains_key(*k)).cloned());
    out.sort();
    out
}

/// The `bundle` field of each entry of a `retire --json` list, with its reason.
fn verdicts(doc: &serde_json::Value, list: &str) -> BTreeMap<String, String> {
    doc[list].as_array().unwrap().iter().map(|v| (v["bundle"].as_str().unwrap().to_owned(), v["reason"].as_str().unwrap().to_owned())).collect()
}

/// The role a bundle's target name hashes to among 16 bins (`bin-<first hex digit>`).
fn bin_of(target: &str) -> String {
    format!("bin-{}", &hex::encode(Sha256::digest(target.as_bytes()))[..1])
}

#[test]
fn old_yanked_and_superseded_bundles_leave_the_bins_each_re_signed_once_and_newer_ones_stay() {
    let s = Site::history();
    let everything = ["a@1.0.0", "a@1.0.1", "b@1.0.0", "b@1.0.1", "n@1.0.0", "y@1.0.0", "z@1.0.0"];
    assert_eq!(s.listed(), everything);

    // A dry run says what would go, and writes nothing (nor the archive beside the keys).
    let (repo_before, keys_before) = (tree_hash(&s.path("repo")), tree_hash(&s.path("keys")));
    let dry = s.retire(&["--no-fleet-check", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(verdicts(&dry, "retired").keys().collect::<Vec<_>>(), ["a@1.0.0", "y@1.0.0"]);
    assert_eq!((tree_hash(&s.path("repo")), tree_hash(&s.path("keys"))), (repo_before.clone(), keys_before));
    let text = s.ok(&["retire", "--repo", "repo", "--no-fleet-check", "--dry-run", "--now", NOW]);
    assert!(text.contains("would retire a@1.0.0: superseded by 1.0.1 since 2026-03-01T09:00:00Z, 122 days ago: beyond the retention of 90 days"), "{text}");
    assert!(text.contains("dry run: 2 bundles would leave 2 bin(s)"), "{text}");

    let doc = s.retire(&["--no-fleet-check"]);
    assert_eq!(doc["retention"], "90d");
    assert_eq!(doc["fleet_checked"], false);
    let retired = verdicts(&doc, "retired");
    assert_eq!(retired.keys().collect::<Vec<_>>(), ["a@1.0.0", "y@1.0.0"]);
    assert!(retired["y@1.0.0"].starts_with("yanked, published 2026-01-01T09:00:00Z, 181 days ago"), "{retired:?}");
    // The recent ones stay, each with why.
    let kept = verdicts(&doc, "kept");
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["b@1.0.0", "z@1.0.0"]);
    assert!(kept["b@1.0.0"].contains("superseded by 1.0.1 since 2026-06-20T09:00:00Z, 11 days ago: within the retention of 90 days"), "{kept:?}");
    assert!(kept["z@1.0.0"].contains("within the retention"), "{kept:?}");
    assert_eq!(s.listed(), ["a@1.0.1", "b@1.0.0", "b@1.0.1", "n@1.0.0", "z@1.0.0"]);

    // One new version of each bin that lost an entry, then the snapshot and the timestamp; no
    // archive leaves targets/, and the archive of entries is beside the keys, not served.
    let mut bins: Vec<String> = ["a-1.0.0.tar.gz", "y-1.0.0.tar.gz"].iter().map(|t| bin_of(t)).collect();
    bins.sort();
    bins.dedup();
    assert_eq!(doc["bins"], serde_json::json!(bins));
    let diff = changed(&repo_before, &tree_hash(&s.path("repo")));
    let bin_files: Vec<&String> = diff.iter().filter(|f| f.contains(".bin-")).collect();
    assert_eq!(bin_files.len(), bins.len(), "{diff:?}");
    for b in &bins {
        assert_eq!(bin_files.iter().filter(|f| f.ends_with(&format!(".{b}.json"))).count(), 1, "{b} re-signed once: {diff:?}");
    }
    assert_eq!(diff.len(), bins.len() + 2, "{diff:?}");
    assert!(diff.iter().any(|f| f.ends_with(".snapshot.json")) && diff.contains(&"metadata/timestamp.json".to_owned()), "{diff:?}");
    assert!(!diff.iter().any(|f| f.starts_with("targets/")), "{diff:?}");
    let archive = s.path("keys/retired-bundles.json");
    assert!(archive.is_file());
    assert_eq!(doc["archive"], "./keys/retired-bundles.json");
    assert!(!tree_hash(&s.path("repo")).keys().any(|f| f.contains("retired")));
    // A copy for a static host has the new bins and no archive of retired entries.
    s.ok(&["sync", "--repo", "repo", "--to", "www"]);
    let copy = tree_hash(&s.path("www"));
    assert!(!copy.keys().any(|f| f.contains("retired")), "{copy:?}");
    assert_eq!(copy.get("metadata/timestamp.json"), tree_hash(&s.path("repo")).get("metadata/timestamp.json"));

    // `list --retired` shows them with when and why, from the signed entries as they were.
    let listed: serde_json::Value = serde_json::from_str(&s.ok(&["list", "--repo", "repo", "--retired", "--json"])).unwrap();
    let rows = listed["retired"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{listed}");
    let y = rows.iter().find(|r| r["id"] == "y").unwrap();
    assert_eq!((&y["state"], &y["state_reason"], &y["kind"]), (&serde_json::json!("yanked"), &serde_json::json!("broke logins"), &serde_json::json!("yanked")));
    assert_eq!(y["retired_at"], NOW);
    assert!(y["retired_because"].as_str().unwrap().starts_with("yanked, published"), "{y}");
    let text = s.ok(&["list", "--repo", "repo", "--retired"]);
    assert!(text.contains("a@1.0.0") && text.contains("superseded by 1.0.1 since"), "{text}");

    // A second run has nothing more to retire and writes nothing.
    let before = tree_hash(&s.path("repo"));
    let again = s.retire(&["--no-fleet-check"]);
    assert!(again["retired"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(tree_hash(&s.path("repo")), before);

    // A retired id@version was published once: it cannot come back with other bytes.
    s.refused(&["publish", "--repo", "repo", s.path("y-1.0.0.tar.gz").to_str().unwrap()], 1, "y@1.0.0 was published and then retired");

}

/// python-tuf's client against `repo`: the target's document, or its "not found" error.
fn tuf_client(s: &Site, target: &str, work: &str) -> (bool, serde_json::Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tuf_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(s.path("repo"))
        .arg(target)
        .arg(s.path(work))
        .output()
        .expect("python3 runs (install python-tuf: pip install tuf)");
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("python-tuf client: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out)));
    (out.status.success(), doc)
}

/// On the real clock (python-tuf checks expiries against it): after a retirement the standard
/// client still refreshes, finds the active bundles and no longer finds the retired one.
#[test]
fn a_standard_tuf_client_reads_the_repository_after_a_retirement() {
    // A bundle's entry (metadata format 3) is a JSON text in `custom`.
    let entry = |doc: &serde_json::Value| serde_json::from_str::<serde_json::Value>(doc["custom"]["entry"].as_str().unwrap()).unwrap();
    let s = Site::new();
    let now = jiff::Timestamp::now().to_string();
    for (id, v) in [("a", "1.0.0"), ("a", "1.0.1"), ("y", "1.0.0")] {
        s.publish(id, v, &now);
    }
    s.ok(&["yank", "--repo", "repo", "y@1.0.0", "--reason", "broke logins"]);
    assert_eq!(entry(&tuf_client(&s, "y-1.0.0.tar.gz", "client-before").1)["state"], "yanked");
    let doc = serde_json::from_str::<serde_json::Value>(&s.ok(&["retire", "--repo", "repo", "--no-fleet-check", "--older-than", "0s", "--json"])).unwrap();
    assert_eq!(verdicts(&doc, "retired").keys().collect::<Vec<_>>(), ["a@1.0.0", "y@1.0.0"]);
    let (ok, fetched) = tuf_client(&s, "a-1.0.1.tar.gz", "client");
    assert!(ok, "{fetched}");
    assert_eq!(entry(&fetched)["manifest"]["version"], "1.0.1");
    // The client that had read the repository before follows it: y is gone from its bin.
    let (ok, missing) = tuf_client(&s, "y-1.0.0.tar.gz", "client-before");
    assert!(!ok && missing["error"] == "target y-1.0.0.tar.gz not found", "{missing}");
}

#[test]
fn a_bundle_a_platform_still_reports_installed_stays_and_says_where() {
    let s = Site::history();
    let db = s.path("palier.db");
    for p in ["univ-c", "univ-a", "univ-b", "univ-d"] {
        s.ok(&["platform", "add", p, "--improvement", "3", "--stability", "1", "--db", db.to_str().unwrap()]);
    }
    let store = Store::open(&db).unwrap();
    let installed = |id: &str| Installed { id: id.into(), version: "1.0.0".into() };
    for p in ["univ-c", "univ-a", "univ-b"] {
        let status = Status::basic(3, 1, vec![installed("y"), installed("n")], None, None);
        store.set_status(&p.parse().unwrap(), &status, NOW.parse().unwrap()).unwrap();
    }
    drop(store);
    let doc = s.retire(&["--db", db.to_str().unwrap()]);
    assert_eq!(doc["fleet_checked"], true);
    assert_eq!(doc["platforms_without_status"], serde_json::json!(["univ-d"]));
    assert_eq!(verdicts(&doc, "retired").keys().collect::<Vec<_>>(), ["a@1.0.0"]);
    assert_eq!(verdicts(&doc, "kept")["y@1.0.0"], "installed on 3 platforms: univ-a, univ-b, univ-c");
    assert!(s.listed().contains(&"y@1.0.0".to_owned()));
    let text = s.ok(&["retire", "--repo", "repo", "--db", db.to_str().unwrap(), "--now", NOW]);
    assert!(text.contains("kept y@1.0.0: installed on 3 platforms: univ-a, univ-b, univ-c"), "{text}");
    assert!(text.contains("1 platform(s) never sent a status, so what they run is not known: univ-d"), "{text}");

    // Once no platform reports it, it goes.
    let store = Store::open(&db).unwrap();
    for p in ["univ-c", "univ-a", "univ-b"] {
        store.set_status(&p.parse().unwrap(), &Status::basic(3, 1, vec![installed("n")], None, None), NOW.parse().unwrap()).unwrap();
    }
    drop(store);
    let doc = s.retire(&["--db", db.to_str().unwrap()]);
    assert_eq!(verdicts(&doc, "retired").keys().collect::<Vec<_>>(), ["y@1.0.0"]);
}

#[test]
fn without_the_store_retire_refuses_unless_told_and_writes_nothing() {
    let s = Site::history();
    let before = (tree_hash(&s.path("repo")), tree_hash(&s.path("keys")));
    s.refused(&["retire", "--repo", "repo", "--now", NOW], 1, "add --db FILE");
    s.refused(&["retire", "--repo", "repo", "--dry-run", "--now", NOW], 1, "--no-fleet-check");
    s.refused(&["retire", "--repo", "repo", "--db", "missing.db", "--now", NOW], 1, "missing.db");
    // Without the bins key: exit 64, nothing written, the archive not even started.
    s.refused(&["retire", "--repo", "repo", "--keys", "elsewhere", "--no-fleet-check", "--now", NOW], 64, "elsewhere");
    assert_eq!((tree_hash(&s.path("repo")), tree_hash(&s.path("keys"))), before);
}

/// `retire --json`, read back with every field known.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Report {
    dry_run: bool,
    retention: String,
    fleet_checked: bool,
    platforms_without_status: Vec<String>,
    retired: Vec<ReportVerdict>,
    kept: Vec<ReportVerdict>,
    bins: Vec<String>,
    markers_removed: Vec<String>,
    archive: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ReportVerdict {
    bundle: String,
    target: String,
    kind: String,
    retire: bool,
    reason: String,
}

#[test]
fn the_retention_comes_from_older_than_else_the_settings_else_90_days() {
    let s = Site::history();
    let report: Report = serde_json::from_value(s.retire(&["--no-fleet-check", "--dry-run"])).unwrap();
    assert_eq!((report.retired.len(), report.kept.len(), report.retention.as_str()), (2, 2, "90d"), "{report:?}");
    assert!(report.retired.iter().all(|v| v.retire) && report.kept.iter().all(|v| !v.retire));
    assert_eq!(report.retired.iter().map(|v| (v.kind.as_str(), v.target.as_str())).collect::<Vec<_>>(), [("superseded", "a-1.0.0.tar.gz"), ("yanked", "y-1.0.0.tar.gz")]);
    // b@1.0.0 was superseded 11 days before NOW.
    let doc = s.retire(&["--no-fleet-check", "--dry-run", "--older-than", "10d"]);
    assert_eq!(doc["retention"], "10d");
    assert!(verdicts(&doc, "retired").contains_key("b@1.0.0"), "{doc}");
    assert_eq!(s.ok(&["retire", "--repo", "repo", "--set-default", "200d"]), "default retention: 200d\n");
    assert!(s.ok(&["retire", "--repo", "repo", "--set-default", "200d"]).contains("already 200d"));
    let doc = s.retire(&["--no-fleet-check", "--dry-run"]);
    assert_eq!(doc["retention"], "200d");
    // 181 days for y, 122 for a: both within 200 days.
    assert!(verdicts(&doc, "retired").is_empty(), "{doc}");
    s.refused(&["retire", "--repo", "repo", "--set-default", "soon"], 1, "invalid duration");
    let out = s.run(&["retire", "--repo", "repo", "--no-fleet-check", "--older-than", "3 weeks"]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", stderr(&out));
    assert!(stderr(&out).contains("invalid duration \"3 weeks\""), "{}", stderr(&out));
}

/// The archive is written before the bins; when the change then cannot be signed (here an
/// unreadable timestamp key), the repository is untouched and the archive goes back as it was.
#[test]
fn a_retirement_that_cannot_be_signed_leaves_the_repository_and_the_archive_as_they_were() {
    let s = Site::history();
    // y (181 days) goes with a 150-day retention; a (122 days) stays.
    let doc = s.retire(&["--no-fleet-check", "--older-than", "150d"]);
    assert_eq!(verdicts(&doc, "retired").keys().collect::<Vec<_>>(), ["y@1.0.0"]);
    let archive = std::fs::read(s.path("keys/retired-bundles.json")).unwrap();
    let repo = tree_hash(&s.path("repo"));
    let key = s.path("keys/timestamp.der");
    std::fs::write(&key, b"not a key").unwrap();
    let out = s.run(&["retire", "--repo", "repo", "--no-fleet-check", "--now", NOW]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(stderr(&out).trim_end().lines().count(), 1, "{}", stderr(&out));
    assert_eq!(tree_hash(&s.path("repo")), repo);
    assert_eq!(std::fs::read(s.path("keys/retired-bundles.json")).unwrap(), archive);
    assert!(s.listed().contains(&"a@1.0.0".to_owned()));
}

/// With the bins key offline, `retire` needs the offline keys as `publish` does; a dry run
/// needs no key.
#[test]
fn with_the_bins_key_offline_retire_needs_the_offline_keys() {
    let s = Site { tmp: tempfile::tempdir().unwrap() };
    s.ok(&["init", "--repo", "repo", "--bins", "16", "--offline-keys", "offline"]);
    let src = s.path("src");
    std::fs::create_dir_all(src.join("mod/quiz")).unwrap();
    std::fs::write(src.join("mod/quiz/y.php"), "<?php // y\n").unwrap();
    std::fs::write(
        s.path("y.toml"),
        "id = \"y\"\nversion = \"1.0.0\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"t\"\nfixes = []\norigin = \"report\"\n",
    )
    .unwrap();
    s.ok(&["bundle", "build", "--manifest", "y.toml", "--source", src.to_str().unwrap(), "--out", "y.tar.gz"]);
    s.ok(&["publish", "--repo", "repo", "y.tar.gz", "--offline-keys", "offline", "--now", EARLY]);
    s.ok(&["yank", "--repo", "repo", "y@1.0.0", "--reason", "r", "--offline-keys", "offline", "--now", LATER]);
    let before = (tree_hash(&s.path("repo")), tree_hash(&s.path("keys")));
    let dry = s.retire(&["--no-fleet-check", "--dry-run"]);
    assert_eq!(verdicts(&dry, "retired").keys().collect::<Vec<_>>(), ["y@1.0.0"]);
    s.refused(&["retire", "--repo", "repo", "--no-fleet-check", "--now", NOW], 64, "--offline-keys");
    assert_eq!((tree_hash(&s.path("repo")), tree_hash(&s.path("keys"))), before);
    let doc = s.retire(&["--no-fleet-check", "--offline-keys", "offline"]);
    assert_eq!(verdicts(&doc, "retired").keys().collect::<Vec<_>>(), ["y@1.0.0"]);
    assert!(s.listed().is_empty());
}

/// A retired bundle's halt and report markers leave their roles with it (each role re-signed
/// once) and are archived with its entry.
#[test]
fn the_markers_of_a_retired_bundle_leave_with_it() {
    let s = Site::history();
    let paths = palier_server::repo::RepoPaths::new(s.path("repo"), Some(s.path("keys")));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let at: jiff::Timestamp = LATER.parse().unwrap();
    assert!(rt.block_on(palier_server::halts::write_marker(&paths, &"a@1.0.0".parse().unwrap(), "auto-halt", at)).unwrap());
    assert!(rt.block_on(palier_server::halts::link(&paths, &"n@1.0.0".parse().unwrap(), &"univ-a".parse().unwrap(), at)).unwrap());
    assert!(rt.block_on(palier_server::halts::link(&paths, &"y@1.0.0".parse().unwrap(), &"univ-a".parse().unwrap(), at)).unwrap());
    assert!(rt.block_on(palier_server::halts::write_marker(&paths, &"n@1.0.0".parse().unwrap(), "auto-halt", at)).unwrap());
    let dry = s.retire(&["--no-fleet-check", "--dry-run"]);
    assert_eq!(dry["markers_removed"], serde_json::json!(["halts/a@1.0.0.json", "reports/y@1.0.0.json"]));
    let before = tree_hash(&s.path("repo"));
    let doc = s.retire(&["--no-fleet-check"]);
    assert_eq!(verdicts(&doc, "retired").keys().collect::<Vec<_>>(), ["a@1.0.0", "y@1.0.0"]);
    assert_eq!(doc["markers_removed"], serde_json::json!(["halts/a@1.0.0.json", "reports/y@1.0.0.json"]));
    let diff = changed(&before, &tree_hash(&s.path("repo")));
    assert_eq!(diff.iter().filter(|f| f.ends_with(".halts.json")).count(), 1, "{diff:?}");
    assert_eq!(diff.iter().filter(|f| f.ends_with(".reports.json")).count(), 1, "{diff:?}");
    assert_eq!(palier_server::halts::report_markers(&paths).unwrap().iter().map(|m| m.bundle.to_string()).collect::<Vec<_>>(), ["n@1.0.0"]);
    // n's markers stay with n.
    let markers = palier_server::halts::markers(&paths).unwrap();
    assert_eq!(markers.iter().map(|m| m.bundle.to_string()).collect::<Vec<_>>(), ["n@1.0.0"]);
    let archive: serde_json::Value = serde_json::from_slice(&std::fs::read(s.path("keys/retired-bundles.json")).unwrap()).unwrap();
    let a = archive["bundles"].as_array().unwrap().iter().find(|r| r["target"] == "a-1.0.0.tar.gz").unwrap();
    assert_eq!(a["markers"]["halts/a@1.0.0.json"]["custom"]["reason"], "auto-halt");
}
