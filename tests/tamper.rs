//! The tamper corpus: hostile repositories and archives, each refused with the right error
//! while the Moodle site stays exactly as it was.
//!
//! Metadata cases go through the real `palier-agent run --once`; archive cases through the
//! agent's staging (`palier_agent::apply::stage_all`) with the crafted archives of
//! `palier_bundle::hostile`, as if a signed target carried them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{World, manifest, stderr};
use palier_bundle::{Manifest, ManifestKind, hostile};
use palier_fixture::tree_hash;

/// A world with three publishes (metadata versions 2, 3, 4), before any agent has run.
fn world() -> World {
    let w = World::new();
    for v in ["1.0.0", "1.0.1", "1.0.2"] {
        w.publish(&manifest("quiz-fix", v, "mod_quiz", "technical", "none", ""), &[]);
    }
    w
}

/// Run the agent once; it must refuse (exit 1, one line containing `needle`, or one of its
/// `|`-separated alternatives), and the site and installed record must not change.
fn refused(w: &World, name: &str, needle: &str) {
    let config = w.agent_config("univ-a", 3, 1);
    let site = w.path("site/dirroot");
    let before = tree_hash(&site).unwrap();
    let out = w.run("palier-agent", &["run", "--once", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{name}: expected a refusal, got {:?}: {err}", out.status.code());
    assert_eq!(err.trim_end().lines().count(), 1, "{name}: not one line: {err}");
    let lower = err.to_lowercase();
    assert!(needle.split('|').any(|n| lower.contains(&n.to_lowercase())), "{name}: expected {needle:?} in {err}");
    assert_eq!(tree_hash(&site).unwrap(), before, "{name}: the site changed");
    assert!(!w.path("state-univ-a/installed.json").exists(), "{name}: something was recorded as installed");
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = at.min(bytes.len() - 1);
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// Offsets inside a metadata file's `signed` part and its signature.
fn offsets(path: &Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for key in ["\"version\"", "\"expires\"", "\"sha256\"", "\"length\"", "\"sig\"", "\"keyid\""] {
        if let Some(i) = text.find(key) {
            // A byte of the value after the key, not of the key itself.
            let value = text[i + key.len()..].find(|c: char| c.is_ascii_alphanumeric()).map(|j| i + key.len() + j + 1).unwrap_or(i);
            out.push((key.trim_matches('"').to_owned(), value));
        }
    }
    out
}

#[test]
fn bit_flips_in_every_metadata_role_are_refused() {
    let mut cases = 0;
    for (file, needles) in [
        ("timestamp.json", &["timestamp", "signature", "json", "version"][..]),
        ("4.snapshot.json", &["snapshot", "hash"][..]),
        ("4.targets.json", &["targets", "hash"][..]),
    ] {
        let template = world();
        let path = template.path(&format!("repo/metadata/{file}"));
        for (field, at) in offsets(&path) {
            let w = world();
            flip_byte(&w.path(&format!("repo/metadata/{file}")), at);
            let config = w.agent_config("univ-a", 3, 1);
            let out = w.run("palier-agent", &["run", "--once", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"]);
            let err = stderr(&out).to_lowercase();
            assert_eq!(out.status.code(), Some(1), "{file} {field}: {err}");
            assert!(needles.iter().any(|n| err.contains(n)), "{file} {field}: {err}");
            assert!(!w.path("state-univ-a/installed.json").exists());
            cases += 1;
        }
    }
    assert!(cases >= 15, "{cases} metadata bit flips");
}

#[test]
fn signatures_by_a_wrong_key_are_refused() {
    for file in ["timestamp.json", "2.snapshot.json", "2.targets.json"] {
        let w = World::new();
        w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
        w.server(&["init", "--repo", "other/repo"]);
        w.server(&["publish", "--repo", "other/repo", "bundles/quiz-fix-1.0.0/bundle.tar.gz"]);
        std::fs::copy(w.path(&format!("other/repo/metadata/{file}")), w.path(&format!("repo/metadata/{file}"))).unwrap();
        // A foreign snapshot or targets file also breaks the hash chain; either refusal is right.
        // A foreign file longer than the length the chain declares is refused for its size
        // before its hash is computed; either refusal is right.
        refused(&w, &format!("foreign {file}"), if file == "timestamp.json" { "signature" } else { "hash|maximum size" });
    }
}

#[test]
fn expired_rolled_back_and_mixed_metadata_are_refused() {
    // Expired: signed three days ago.
    let w = World::new();
    let then = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_hours(72)).unwrap().to_string();
    w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &["--now", &then]);
    refused(&w, "expired timestamp", "expired");

    // Rolled back: an older timestamp after a newer one was seen.
    let w = world();
    let config = w.agent_config("univ-a", 3, 1);
    let old = w.path("repo/metadata/timestamp.json");
    let old_bytes = std::fs::read(&old).unwrap();
    w.publish(&manifest("quiz-fix", "1.0.3", "mod_quiz", "technical", "none", ""), &[]);
    let out = w.run("palier-agent", &["plan", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(&old, old_bytes).unwrap();
    refused(&w, "rolled-back timestamp", "previously fetched");

    // Mix and match: an older snapshot or targets under the newer name.
    for (older, newer, needle) in [("3.snapshot.json", "4.snapshot.json", "hash|maximum size"), ("3.targets.json", "4.targets.json", "hash|maximum size")] {
        let w = world();
        std::fs::copy(w.path(&format!("repo/metadata/{older}")), w.path(&format!("repo/metadata/{newer}"))).unwrap();
        refused(&w, &format!("{older} as {newer}"), needle);
    }
}

#[test]
fn oversize_truncated_and_missing_metadata_are_refused() {
    let w = world();
    let ts = w.path("repo/metadata/timestamp.json");
    let mut text = std::fs::read(&ts).unwrap();
    text.extend(std::iter::repeat_n(b' ', 2 << 20));
    std::fs::write(&ts, text).unwrap();
    refused(&w, "oversize timestamp", "timestamp");

    let w = world();
    let ts = w.path("repo/metadata/timestamp.json");
    let text = std::fs::read(&ts).unwrap();
    std::fs::write(&ts, &text[..text.len() / 2]).unwrap();
    refused(&w, "truncated timestamp", "timestamp");

    let w = world();
    std::fs::remove_file(w.path("repo/metadata/4.targets.json")).unwrap();
    refused(&w, "missing targets", "targets");

    let w = world();
    std::fs::write(w.path("repo/metadata/4.snapshot.json"), b"").unwrap();
    refused(&w, "empty snapshot", "snapshot");
}

#[test]
fn tampered_archives_in_the_repository_are_refused_at_download() {
    type Tamper = fn(&Path);
    let cases: [(&str, Tamper); 3] = [
        ("bit flip", |p| flip_byte(p, 100)),
        ("truncated", |p| {
            let b = std::fs::read(p).unwrap();
            std::fs::write(p, &b[..b.len() / 2]).unwrap();
        }),
        ("replaced", |p| std::fs::write(p, hostile::craft(&hostile::valid_entries())).unwrap()),
    ];
    for (name, tamper) in cases {
        let w = World::new();
        w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
        w.server(&["validate", "--repo", "repo", "quiz-fix@1.0.0", "--alpha"]);
        let target = std::fs::read_dir(w.path("repo/targets")).unwrap().next().unwrap().unwrap().path();
        tamper(&target);
        refused(&w, &format!("archive {name}"), "quiz-fix-1.0.0.tar.gz");
    }
}

/// Every hostile archive of SPEC 3, as if a signed target carried it: staging refuses it and
/// the site is untouched (no staging tree left, nothing written outside).
#[test]
fn hostile_archives_never_reach_the_site() {
    let w = World::new();
    let site = w.path("site/dirroot");
    let before = tree_hash(&site).unwrap();
    let mut count = 0;
    for (name, bytes, needle) in hostile::cases() {
        let archive = w.path(&format!("{name}.tar.gz"));
        std::fs::write(&archive, &bytes).unwrap();
        // The signed manifest: the archive's own when it has a valid one (so the refusal is
        // the archive's flaw, not a mismatch); the small crafted one when the archive's own
        // declares more than the 1 MiB the signed metadata allows.
        let small = hostile::manifest_for("crafted", "1.0.0", &[("a.php", hostile::A)]);
        let signed = signed_manifest_of(&bytes).filter(|m| m.expanded_size() <= 1 << 20).unwrap_or(small);
        let e = palier_agent::apply::stage_all(&site, &format!("t{count}"), &[(&signed, archive.as_path())]);
        let e = e.err().unwrap_or_else(|| panic!("{name}: staged")).to_string();
        let needle = if name == "over-declared-limit" { "differs from the signed manifest" } else { needle };
        assert!(e.contains(needle), "{name}: expected {needle:?} in {e}");
        assert_eq!(tree_hash(&site).unwrap(), before, "{name}: site changed");
        let leftovers = std::fs::read_dir(site.parent().unwrap()).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".palier-")).count();
        assert_eq!(leftovers, 0, "{name}: staging left behind");
        count += 1;
    }
    assert!(count >= 20);
}

/// The manifest inside an archive, if it has a readable one.
fn signed_manifest_of(bytes: &[u8]) -> Option<Manifest> {
    use std::io::Read;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut raw).ok()?;
    let mut archive = tar::Archive::new(&raw[..]);
    let mut first = archive.entries().ok()?.next()?.ok()?;
    let mut text = String::new();
    first.read_to_string(&mut text).ok()?;
    Manifest::parse(&text, ManifestKind::Built).ok()
}
