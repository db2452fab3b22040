//! The tamper corpus: hostile repositories and archives, each refused with the right error
//! while the Moodle site stays exactly as it was.
//!
//! Metadata cases go through the real `palier-agent run --once`; archive cases through the
//! agent's staging (`palier_agent::apply::stage_all`) with the crafted archives of
//! `palier_bundle::hostile`, as if a signed target carried them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use std::collections::HashMap;
use std::num::NonZeroU64;

use common::{World, manifest, stderr};
use tough::TargetName;
use tough::editor::signed::SignedRole;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::{DelegatedTargets, Hashes, KeyHolder, Metafile, Role, Root, Signed, Snapshot, Targets, Timestamp};
use palier_bundle::{Manifest, ManifestKind, hostile};
use palier_fixture::tree_hash;

/// A world with three publishes (snapshot versions 2, 3, 4), before any agent has run. The
/// top-level targets stay at version 1; each publish re-signs the bin of its bundle.
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
    // A site that answers, so that the intervention gets past its preflight to the download.
    let _served = w.serve_site(&config, None, "[{ path = \"/version.php\", expect_status = 200 }]");
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

/// `plan` must succeed (the agent sees the repository as it is now).
fn plans(w: &World) {
    let config = w.agent_config("univ-a", 3, 1);
    let out = w.run("palier-agent", &["plan", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
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
    for key in ["\"version\"", "\"expires\"", "\"sha256\"", "\"length\"", "\"sig\"", "\"keyid\"", "\"path_hash_prefixes\""] {
        if let Some(i) = text.find(key) {
            // A byte of the value after the key, not of the key itself.
            let value = text[i + key.len()..].find(|c: char| c.is_ascii_alphanumeric()).map(|j| i + key.len() + j + 1).unwrap_or(i);
            out.push((key.trim_matches('"').to_owned(), value));
        }
    }
    out
}

/// The bin that holds `target` (`bin-XX`, 256 bins: the first two hex digits of its sha256).
fn bin_of(target: &str) -> String {
    use sha2::Digest;
    format!("bin-{}", &hex::encode(sha2::Sha256::digest(target.as_bytes()))[..2])
}

/// The version the current snapshot names for `role`.
fn version_in_snapshot(w: &World, role: &str) -> u64 {
    let ts: serde_json::Value = serde_json::from_slice(&std::fs::read(w.path("repo/metadata/timestamp.json")).unwrap()).unwrap();
    let v = ts["signed"]["meta"]["snapshot.json"]["version"].as_u64().unwrap();
    let snap: serde_json::Value = serde_json::from_slice(&std::fs::read(w.path(&format!("repo/metadata/{v}.snapshot.json"))).unwrap()).unwrap();
    snap["signed"]["meta"][format!("{role}.json")]["version"].as_u64().unwrap()
}

#[test]
fn bit_flips_in_every_metadata_role_are_refused() {
    let bin = bin_of("quiz-fix-1.0.2.tar.gz");
    let bin_file = format!("2.{bin}.json");
    let mut cases = 0;
    for (file, needles) in [
        ("timestamp.json", &["timestamp", "signature", "json", "version"][..]),
        ("4.snapshot.json", &["snapshot", "hash"][..]),
        ("1.targets.json", &["targets", "signature", "json", "version"][..]),
        (bin_file.as_str(), &["targets", "signature", "json", "version", "delegat"][..]),
    ] {
        let template = world();
        assert_eq!(version_in_snapshot(&template, &bin), 2);
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
    assert!(cases >= 20, "{cases} metadata bit flips");
}

#[test]
fn signatures_by_a_wrong_key_are_refused() {
    let bin = bin_of("quiz-fix-1.0.0.tar.gz");
    for file in ["timestamp.json".to_owned(), "2.snapshot.json".into(), "1.targets.json".into(), format!("2.{bin}.json")] {
        let w = World::new();
        w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
        w.server(&["init", "--repo", "other/repo"]);
        w.server(&["publish", "--repo", "other/repo", "bundles/quiz-fix-1.0.0/bundle.tar.gz"]);
        std::fs::copy(w.path(&format!("other/repo/metadata/{file}")), w.path(&format!("repo/metadata/{file}"))).unwrap();
        // A foreign snapshot also breaks the hash chain; either refusal is right. A foreign file
        // longer than the length the chain declares is refused for its size before its hash is
        // computed; either refusal is right.
        let needle = if file.ends_with(".snapshot.json") { "hash|maximum size" } else { "signature" };
        refused(&w, &format!("foreign {file}"), needle);
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
    let old = w.path("repo/metadata/timestamp.json");
    let old_bytes = std::fs::read(&old).unwrap();
    w.publish(&manifest("quiz-fix", "1.0.3", "mod_quiz", "technical", "none", ""), &[]);
    plans(&w);
    std::fs::write(&old, old_bytes).unwrap();
    refused(&w, "rolled-back timestamp", "previously fetched");

    // Mix and match: an older snapshot or bin under the newer name.
    let bin = bin_of("quiz-fix-1.0.2.tar.gz");
    let (older_bin, newer_bin) = (format!("1.{bin}.json"), format!("2.{bin}.json"));
    for (older, newer, needle) in [("3.snapshot.json", "4.snapshot.json", "hash|maximum size"), (older_bin.as_str(), newer_bin.as_str(), "version")] {
        let w = world();
        std::fs::copy(w.path(&format!("repo/metadata/{older}")), w.path(&format!("repo/metadata/{newer}"))).unwrap();
        refused(&w, &format!("{older} as {newer}"), needle);
    }
}

/// A bin rolled back by a snapshot that is correctly signed (a stolen snapshot key): after the
/// agent has seen a bin at version 3, a new snapshot naming its version 2 is refused.
#[test]
fn a_bin_rolled_back_by_a_signed_snapshot_is_refused() {
    let w = World::new();
    w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
    let bin = bin_of("quiz-fix-1.0.0.tar.gz");
    w.server(&["validate", "--repo", "repo", "quiz-fix@1.0.0", "--alpha"]);
    assert_eq!(version_in_snapshot(&w, &bin), 3);
    plans(&w);
    resign(&w, Vec::new(), |meta| meta.get_mut(&format!("{bin}.json")).unwrap().version = NonZeroU64::new(2).unwrap());
    refused(&w, "rolled-back bin", "is greater than version 2");
}

/// A bundle entry moved into a bin whose hash prefixes do not cover its name is refused,
/// even though the bin is signed by the right key.
#[test]
fn a_bundle_in_the_wrong_bin_is_refused() {
    let w = World::new();
    w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
    let right = bin_of("quiz-fix-1.0.0.tar.gz");
    let wrong = if right == "bin-00" { "bin-01".to_owned() } else { "bin-00".to_owned() };
    let name = TargetName::new("quiz-fix-1.0.0.tar.gz").unwrap();
    let mut from = read_bin(&w, &right);
    let mut to = read_bin(&w, &wrong);
    let target = from.targets.remove(&name).unwrap();
    to.targets.insert(name, target);
    resign(&w, vec![(right, from), (wrong, to)], |_| {});
    refused(&w, "bundle in the wrong bin", "target file not delegated: quiz-fix-1.0.0.tar.gz");
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
    std::fs::remove_file(w.path("repo/metadata/1.targets.json")).unwrap();
    refused(&w, "missing targets", "targets");

    let w = world();
    std::fs::remove_file(w.path(&format!("repo/metadata/2.{}.json", bin_of("quiz-fix-1.0.1.tar.gz")))).unwrap();
    refused(&w, "missing bin", "bin-");

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

/// Issue 15: the signed metadata no longer lists the files; they are read from the archive's
/// own `bundle.toml` after download. An archive whose manifest disagrees with the bundle's
/// signed metadata (here one file more than it counts, the bin re-signed over the archive's
/// new digest, as a holder of the bins' key could) is refused in one line and nothing is
/// applied.
#[test]
fn an_archive_whose_manifest_disagrees_with_its_signed_metadata_is_refused() {
    let w = World::new();
    w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
    w.server(&["validate", "--repo", "repo", "quiz-fix@1.0.0", "--alpha"]);
    let name = "quiz-fix-1.0.0.tar.gz";
    let stored = std::fs::read_dir(w.path("repo/targets")).unwrap().next().unwrap().unwrap().path();
    let mut m = signed_manifest_of(&std::fs::read(&stored).unwrap()).unwrap();
    let original = b"<?php // quiz-fix 1.0.0\n";
    assert_eq!(m.files.len(), 1);
    let extra = hostile::manifest_for("x", "1.0.0", &[("mod/quiz/extra.php", hostile::A)]).files.remove(0);
    m.files.insert(0, extra);
    let archive = hostile::craft(&[
        hostile::manifest_entry(&m),
        hostile::RawEntry::file("files/mod/quiz/extra.php", hostile::A),
        hostile::RawEntry::file(&format!("files/{}", m.files[1].path), original),
    ]);
    use sha2::Digest;
    let digest = sha2::Sha256::digest(&archive).to_vec();
    std::fs::write(w.path(&format!("repo/targets/{}.{name}", hex::encode(&digest))), &archive).unwrap();
    let bin = bin_of(name);
    let mut targets = read_bin(&w, &bin);
    let target = targets.targets.get_mut(&TargetName::new(name).unwrap()).unwrap();
    target.length = archive.len() as u64;
    target.hashes.sha256 = digest.into();
    resign(&w, vec![(bin, targets)], |_| {});
    refused(&w, "archive manifest disagrees", "file count 2 differs from the signed metadata of quiz-fix@1.0.0");
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

fn read_json<T: serde::de::DeserializeOwned>(w: &World, file: &str) -> T {
    serde_json::from_slice(&std::fs::read(w.path(&format!("repo/metadata/{file}"))).unwrap()).unwrap()
}

/// The current content of a bin, as the snapshot names it.
fn read_bin(w: &World, bin: &str) -> Targets {
    read_json::<Signed<Targets>>(w, &format!("{}.{bin}.json", version_in_snapshot(w, bin))).signed
}

/// Sign `role` with the key file `keys/<key>.der`, as the holder's metadata allows.
fn sign<T: Role + serde::Serialize>(w: &World, role: T, holder: &KeyHolder, key: &str) -> Vec<u8> {
    let keys: Vec<Box<dyn KeySource>> = vec![Box::new(LocalKeySource { path: w.path(&format!("keys/{key}.der")) })];
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let signed = rt.block_on(SignedRole::new(role, holder, &keys, &aws_lc_rs::rand::SystemRandom::new())).unwrap();
    serde_json::to_vec(signed.signed()).unwrap()
}

/// What a holder of the repository's own online keys (bins, snapshot, timestamp) can write:
/// `bins` re-signed at their next version, then a snapshot whose meta `edit` may change, then
/// a timestamp over it.
fn resign(w: &World, bins: Vec<(String, Targets)>, edit: impl FnOnce(&mut HashMap<String, Metafile>)) {
    let roles = bins.into_iter().map(|(name, t)| {
        let key = match name.as_str() {
            "halts" => "halts",
            "reports" => "reports",
            _ => "bins",
        };
        (name, t, key)
    });
    resign_with(w, roles.collect(), edit);
}

/// [`resign`], each delegated role signed with the key named beside it (`bins`, `halts`,
/// `reports`, or a top-level role's such as `snapshot`), whether or not the delegations trust
/// that key for the role.
fn resign_with(w: &World, bins: Vec<(String, Targets, &str)>, edit: impl FnOnce(&mut HashMap<String, Metafile>)) {
    let root: Signed<Root> = read_json(w, "1.root.json");
    let top: Signed<Targets> = read_json(w, "1.targets.json");
    let mut delegations = top.signed.delegations.unwrap();
    // The top-level roles' keys too, so that a holder may name one of them for a bin.
    delegations.keys.extend(root.signed.keys.clone());
    let top_level = |key: &str| match key {
        "snapshot" => Some(tough::schema::RoleType::Snapshot),
        "timestamp" => Some(tough::schema::RoleType::Timestamp),
        "targets" => Some(tough::schema::RoleType::Targets),
        _ => None,
    };
    let ids_of = |key: &str| match top_level(key) {
        Some(role) => root.signed.roles[&role].keyids.clone(),
        None => delegations.roles.iter().find(|r| if key == "bins" { r.name.starts_with("bin-") } else { r.name == key }).unwrap().keyids.clone(),
    };
    let root_holder = KeyHolder::Root(root.signed.clone());
    let mut timestamp: Signed<Timestamp> = read_json(w, "timestamp.json");
    let snapshot_version = timestamp.signed.meta["snapshot.json"].version;
    let mut snapshot: Signed<Snapshot> = read_json(w, &format!("{snapshot_version}.snapshot.json"));
    for (name, mut bin, key) in bins {
        let meta = snapshot.signed.meta.get_mut(&format!("{name}.json")).unwrap();
        meta.version = meta.version.checked_add(1).unwrap();
        bin.version = meta.version;
        // A holder that names `key` for this role, so that it signs whatever the repository says.
        let mut holder = delegations.clone();
        holder.roles.iter_mut().find(|r| r.name == name).unwrap().keyids = ids_of(key);
        let bytes = sign(w, DelegatedTargets { name: name.clone(), targets: bin }, &KeyHolder::Delegations(holder), key);
        std::fs::write(w.path(&format!("repo/metadata/{}.{name}.json", meta.version)), bytes).unwrap();
    }
    edit(&mut snapshot.signed.meta);
    snapshot.signed.version = snapshot.signed.version.checked_add(1).unwrap();
    let version = snapshot.signed.version;
    let bytes = sign(w, snapshot.signed, &root_holder, "snapshot");
    std::fs::write(w.path(&format!("repo/metadata/{version}.snapshot.json")), &bytes).unwrap();
    use sha2::Digest;
    timestamp.signed.meta.insert(
        "snapshot.json".into(),
        Metafile { length: Some(bytes.len() as u64), hashes: Some(Hashes { sha256: sha2::Sha256::digest(&bytes).to_vec().into(), _extra: HashMap::new() }), version, _extra: HashMap::new() },
    );
    timestamp.signed.version = timestamp.signed.version.checked_add(1).unwrap();
    let bytes = sign(w, timestamp.signed, &root_holder, "timestamp");
    std::fs::write(w.path("repo/metadata/timestamp.json"), bytes).unwrap();
}

/// How many files of the agent's metadata cache end with `suffix`.
fn cached(w: &World, suffix: &str) -> usize {
    std::fs::read_dir(w.path("state-univ-a/tuf-cache")).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(suffix)).count()
}

/// The agent keeps the versioned bins of its last verified load and, of each delegated role it
/// loaded, a listing of what the role lists; a refresh downloads only the bins a new
/// snapshot changed, and reads only those: the roles whose version did not change are taken
/// from their listings (tough skips them, `vendor/tough/PATCHES.md`). A cached bin is
/// verified like a downloaded one; a bad one, or a listing damaged on disk, is replaced
/// without refusing the repository.
#[test]
fn cached_bins_are_verified_and_a_bad_one_is_fetched_again() {
    let w = world();
    plans(&w);
    let cache = w.path("state-univ-a/tuf-cache");
    let bin = bin_of("quiz-fix-1.0.2.tar.gz");
    let cached_bin = cache.join(format!("2.{bin}.json"));
    assert_eq!(std::fs::read(&cached_bin).unwrap(), std::fs::read(w.path(&format!("repo/metadata/2.{bin}.json"))).unwrap());
    assert_eq!((cached(&w, ".json"), cached(&w, ".listing")), (259, 258), "the top-level targets and every role are cached, every role listed");

    // After a change to one bin, only that bin is downloaded and read: every other bin file
    // may be gone from the repository and from the cache.
    w.server(&["validate", "--repo", "repo", "quiz-fix@1.0.2", "--alpha"]);
    let metadata = w.path("repo/metadata");
    let kept = format!("3.{bin}.json");
    let saved = w.path("saved-bins");
    std::fs::create_dir(&saved).unwrap();
    for entry in std::fs::read_dir(&metadata).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.contains(".bin-") && name != kept {
            std::fs::rename(metadata.join(&name), saved.join(&name)).unwrap();
        }
    }
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains(".bin-") && path.extension().is_some_and(|e| e == "json") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let planned = plan_json(&w);
    assert_eq!(planned["bundles"].as_array().unwrap().len(), 3, "{planned}");
    assert!(cache.join(format!("3.{bin}.listing")).exists() && !cache.join(format!("2.{bin}.listing")).exists());
    assert_eq!((cached(&w, ".json"), cached(&w, ".listing")), (2, 258), "the top-level targets and the changed bin's file, every role listed");

    // The same plan as an agent that reads every bin (its cache removed).
    for entry in std::fs::read_dir(&saved).unwrap() {
        let name = entry.unwrap().file_name();
        std::fs::rename(saved.join(&name), metadata.join(&name)).unwrap();
    }
    std::fs::rename(&cache, w.path("cache-before")).unwrap();
    assert_eq!(plan_json(&w), planned);
    assert_eq!((cached(&w, ".json"), cached(&w, ".listing")), (259, 258));

    // A listing damaged on disk: the load that used it fails, the one without the cache
    // succeeds, and the listing is written again.
    let bin = bin_of("quiz-fix-1.0.1.tar.gz");
    let listing = cache.join(format!("{}.{bin}.listing", version_in_snapshot(&w, &bin)));
    let good = std::fs::read(&listing).unwrap();
    let at = String::from_utf8_lossy(&good).find("test bundle quiz-fix").unwrap();
    flip_byte(&listing, at);
    assert_eq!(plan_json(&w), planned);
    assert_eq!(std::fs::read(&listing).unwrap(), good);

    // A cached bin changed on disk, with no listing: the same.
    std::fs::remove_file(&listing).unwrap();
    let cached_bin = cache.join(format!("{}.{bin}.json", version_in_snapshot(&w, &bin)));
    let good = std::fs::read(&cached_bin).unwrap();
    let text = String::from_utf8(good.clone()).unwrap().replace("test bundle quiz-fix", "evil bundle quiz-fix");
    assert_ne!(text.as_bytes(), good.as_slice());
    std::fs::write(&cached_bin, text).unwrap();
    assert_eq!(plan_json(&w), planned);
    assert_eq!(std::fs::read(&cached_bin).unwrap(), good);
    assert!(listing.exists());
}

/// Moves every bin file out of the repository's metadata folder: a load that needs one from
/// the repository (the load without the cache, after one that failed) then fails.
fn remove_bins_from_repository(w: &World) {
    let metadata = w.path("repo/metadata");
    for entry in std::fs::read_dir(&metadata).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains(".bin-") {
            std::fs::remove_file(path).unwrap();
        }
    }
}

/// A role the agent knows is skipped only while its record says the version the snapshot
/// names was verified under the same keys, threshold and paths, and has not expired: a
/// record that says it expired, or that was made under another fingerprint, sends the role
/// to be read and verified in full (from the cache here, so without falling back to a load
/// without it: every bin file is gone from the repository), and its record written again.
#[test]
fn a_known_role_is_read_again_when_its_record_expired_or_its_keys_changed() {
    let w = world();
    plans(&w);
    let records = w.path("state-univ-a/tuf/verified-delegations.txt");
    let text = std::fs::read_to_string(&records).unwrap();
    let line_of = |text: &str, bin: &str| text.lines().find(|l| l.starts_with(&format!("{} ", hex::encode(bin)))).unwrap().to_owned();
    let (expired, rotated) = (bin_of("quiz-fix-1.0.1.tar.gz"), bin_of("quiz-fix-1.0.2.tar.gz"));
    let (expired_line, rotated_line) = (line_of(&text, &expired), line_of(&text, &rotated));
    let (head, expires) = expired_line.rsplit_once(' ').unwrap();
    assert!(expires.parse::<i64>().unwrap() > jiff::Timestamp::now().as_second());
    let mut fields: Vec<&str> = rotated_line.split(' ').collect();
    let other_fingerprint = "0".repeat(64);
    fields[2] = &other_fingerprint;
    let edited = text.replace(&expired_line, &format!("{head} 1")).replace(&rotated_line, &fields.join(" "));
    std::fs::write(&records, edited).unwrap();
    remove_bins_from_repository(&w);
    let planned = plan_json(&w);
    assert_eq!(planned["bundles"].as_array().unwrap().len(), 3, "{planned}");
    let now = std::fs::read_to_string(&records).unwrap();
    assert_eq!(line_of(&now, &expired), expired_line, "the role whose record expired was skipped");
    assert_eq!(line_of(&now, &rotated), rotated_line, "the role whose record has another fingerprint was skipped");
}

/// A snapshot that names a known role's version with a hash of other bytes is not answered
/// from the listing: the role is read, and bytes that do not match are refused.
#[test]
fn a_snapshot_pinning_other_bytes_for_a_known_version_is_refused() {
    let w = world();
    plans(&w);
    let bin = bin_of("quiz-fix-1.0.1.tar.gz");
    resign(&w, Vec::new(), |meta| {
        meta.get_mut(&format!("{bin}.json")).unwrap().hashes = Some(Hashes { sha256: vec![0xab; 32].into(), _extra: HashMap::new() });
    });
    refused(&w, "a snapshot pinning other bytes for a known bin", "hash");
}

/// A listing whose entries do not belong to its role (here another bin's listing under its
/// name) is not used: the load runs again without the cache, and the listing is written again.
#[test]
fn a_listing_whose_entries_belong_to_another_role_is_not_used() {
    let w = world();
    plans(&w);
    let planned = plan_json(&w);
    let cache = w.path("state-univ-a/tuf-cache");
    let full = bin_of("quiz-fix-1.0.1.tar.gz");
    let empty = (0..=255u8).map(|b| format!("bin-{b:02x}")).find(|b| *b != full && *b != bin_of("quiz-fix-1.0.0.tar.gz") && *b != bin_of("quiz-fix-1.0.2.tar.gz")).unwrap();
    let target = cache.join(format!("{}.{empty}.listing", version_in_snapshot(&w, &empty)));
    let good = std::fs::read(&target).unwrap();
    std::fs::copy(cache.join(format!("{}.{full}.listing", version_in_snapshot(&w, &full))), &target).unwrap();
    assert_eq!(plan_json(&w), planned);
    assert_eq!(std::fs::read(&target).unwrap(), good);
}

/// A halt marker for `bundle` (`halts/ID@VERSION.json`) as a target of the `halts` role.
fn marker(bundle: &str, reason: &str) -> (TargetName, tough::schema::Target) {
    let m = palier_bundle::halt::HaltMarker { bundle: bundle.parse().unwrap(), reason: reason.into(), at: "2026-11-30T10:00:00Z".into() };
    marker_target(m.target_name(), m.to_custom())
}

/// A report marker for `bundle` (`reports/ID@VERSION.json`) naming `platforms`.
fn report_marker(bundle: &str, platforms: &[&str]) -> (TargetName, tough::schema::Target) {
    let m = palier_bundle::halt::ReportMarker {
        bundle: bundle.parse().unwrap(),
        platforms: platforms.iter().map(|p| palier_bundle::PlatformId::new(*p).unwrap()).collect(),
        at: "2026-11-30T10:00:00Z".into(),
    };
    marker_target(m.target_name(), m.to_custom())
}

/// A marker's target: its `custom` is its content.
fn marker_target(name: String, custom: serde_json::Value) -> (TargetName, tough::schema::Target) {
    let bytes = serde_json::to_vec(&custom).unwrap();
    use sha2::Digest;
    let custom = match custom {
        serde_json::Value::Object(map) => map.into_iter().collect(),
        _ => unreachable!(),
    };
    let target = tough::schema::Target {
        length: bytes.len() as u64,
        hashes: Hashes { sha256: sha2::Sha256::digest(&bytes).to_vec().into(), _extra: HashMap::new() },
        custom,
        _extra: HashMap::new(),
    };
    (TargetName::new(name).unwrap(), target)
}

/// The agent's plan as JSON.
fn plan_json(w: &World) -> serde_json::Value {
    let config = w.agent_config("univ-a", 3, 1);
    let out = w.run("palier-agent", &["plan", "--json", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A halt marker signed by the `halts` key halts its bundle (reason `halted`, the marker's
/// reason in the detail) without its bin changing; the bundle's other versions are untouched.
#[test]
fn a_valid_halt_marker_halts_its_bundle() {
    let w = world();
    let before = version_in_snapshot(&w, &bin_of("quiz-fix-1.0.1.tar.gz"));
    let mut halts = read_bin(&w, "halts");
    let (name, target) = marker("quiz-fix@1.0.1", "auto-halt: rolled back on univ-b, univ-c");
    halts.targets.insert(name, target);
    resign(&w, vec![("halts".into(), halts)], |_| {});
    assert_eq!(version_in_snapshot(&w, &bin_of("quiz-fix-1.0.1.tar.gz")), before);
    let plan = plan_json(&w);
    let entry = |v: &str| plan["bundles"].as_array().unwrap().iter().find(|b| b["version"] == v).unwrap().clone();
    let halted = entry("1.0.1");
    assert_eq!(halted["reason"], "halted", "{plan}");
    assert!(halted["detail"].as_str().unwrap().contains("auto-halt: rolled back on univ-b, univ-c"), "{plan}");
    assert_ne!(entry("1.0.0")["reason"], "halted", "{plan}");
    assert_ne!(entry("1.0.2")["reason"], "halted", "{plan}");
    // The next load skips the halts role (the agent knows it): the marker still halts.
    assert_eq!(plan_json(&w), plan);
}

/// A halt marker signed by another key than the halts role's is refused.
#[test]
fn a_halt_marker_signed_by_another_key_is_refused() {
    let w = world();
    let mut halts = read_bin(&w, "halts");
    let (name, target) = marker("quiz-fix@1.0.1", "forged");
    halts.targets.insert(name, target);
    resign_with(&w, vec![("halts".into(), halts, "bins")], |_| {});
    refused(&w, "halt marker signed by the bins key", "signature");
}

/// The halts role is trusted for `halts/*` only, and only the halts role for markers: a
/// bundle listed by the halts role, and a marker listed by a bin (signed by the bins key),
/// are both refused.
#[test]
fn halt_markers_and_bundles_outside_their_roles_paths_are_refused() {
    // A bundle entry in the halts role (a leaked halts key must not ship code).
    let w = world();
    let bin = bin_of("quiz-fix-1.0.1.tar.gz");
    let name = TargetName::new("quiz-fix-1.0.1.tar.gz").unwrap();
    let mut from = read_bin(&w, &bin);
    let target = from.targets.remove(&name).unwrap();
    let mut halts = read_bin(&w, "halts");
    halts.targets.insert(name, target);
    resign(&w, vec![(bin, from), ("halts".into(), halts)], |_| {});
    refused(&w, "bundle in the halts role", "target file not delegated: quiz-fix-1.0.1.tar.gz");

    // A marker in the bin its name hashes to.
    let w = world();
    let (name, target) = marker("quiz-fix@1.0.1", "from a bin");
    let bin = bin_of(name.raw());
    let mut into = read_bin(&w, &bin);
    into.targets.insert(name, target);
    resign(&w, vec![(bin, into)], |_| {});
    refused(&w, "halt marker in a bin", "target file not delegated: halts/quiz-fix@1.0.1.json");
}

/// A report marker signed by the `reports` key adds its platform to the bundle's reporters: a
/// level-1 platform that reported it gets it, another does not; a marker for a bundle that is
/// not published applies to nothing.
#[test]
fn a_valid_report_marker_makes_its_bundle_eligible_for_its_platforms_only() {
    let w = world();
    w.server(&["validate", "--repo", "repo", "quiz-fix@1.0.1", "--alpha"]);
    let level1 = |platform: &str| {
        let config = w.agent_config(platform, 1, 1);
        let out = w.run("palier-agent", &["plan", "--json", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let b = plan["bundles"].as_array().unwrap().iter().find(|b| b["version"] == "1.0.1").unwrap().clone();
        (b["decision"].as_str().unwrap().to_owned(), b["reason"].as_str().map(str::to_owned))
    };
    assert_eq!(level1("univ-a"), ("skipped".into(), Some("not-reported".into())));
    let mut reports = read_bin(&w, "reports");
    let (name, target) = report_marker("quiz-fix@1.0.1", &["univ-a"]);
    reports.targets.insert(name, target);
    let (name, target) = report_marker("quiz-fix@9.0.0", &["univ-b"]);
    reports.targets.insert(name, target);
    resign(&w, vec![("reports".into(), reports)], |_| {});
    assert_eq!(level1("univ-a"), ("eligible".into(), None));
    assert_eq!(level1("univ-b"), ("skipped".into(), Some("not-reported".into())));
}

/// A report marker signed by another key than the reports role's, and one listed by a bin,
/// are refused; so is a bundle listed by the reports role.
#[test]
fn report_markers_outside_their_role_or_signed_by_another_key_are_refused() {
    let w = world();
    let mut reports = read_bin(&w, "reports");
    let (name, target) = report_marker("quiz-fix@1.0.1", &["univ-a"]);
    reports.targets.insert(name, target);
    resign_with(&w, vec![("reports".into(), reports, "halts")], |_| {});
    refused(&w, "report marker signed by the halts key", "signature");

    let w = world();
    let (name, target) = report_marker("quiz-fix@1.0.1", &["univ-a"]);
    let bin = bin_of(name.raw());
    let mut into = read_bin(&w, &bin);
    into.targets.insert(name, target);
    resign(&w, vec![(bin, into)], |_| {});
    refused(&w, "report marker in a bin", "target file not delegated: reports/quiz-fix@1.0.1.json");

    let w = world();
    let bin = bin_of("quiz-fix-1.0.1.tar.gz");
    let name = TargetName::new("quiz-fix-1.0.1.tar.gz").unwrap();
    let mut from = read_bin(&w, &bin);
    let target = from.targets.remove(&name).unwrap();
    let mut reports = read_bin(&w, "reports");
    reports.targets.insert(name, target);
    resign(&w, vec![(bin, from), ("reports".into(), reports)], |_| {});
    refused(&w, "bundle in the reports role", "target file not delegated: quiz-fix-1.0.1.tar.gz");
}

/// With the online keys alone (halts, reports, snapshot, timestamp) no bundle can be added:
/// a bin that lists a new bundle, signed by any of them, is refused.
#[test]
fn a_bin_signed_by_an_online_key_is_refused() {
    for key in ["halts", "reports", "snapshot"] {
        let w = world();
        let bin = bin_of("quiz-fix-1.0.1.tar.gz");
        let mut into = read_bin(&w, &bin);
        let target = into.targets[&TargetName::new("quiz-fix-1.0.1.tar.gz").unwrap()].clone();
        into.targets.insert(TargetName::new("quiz-fix-1.0.9.tar.gz").unwrap(), target);
        resign_with(&w, vec![(bin, into, key)], |_| {});
        refused(&w, &format!("a bin signed by the {key} key"), "signature");
    }
}

/// A bin that an earlier load verified is not verified again while its bytes stay the same
/// (the agent's patched tough keeps a record of what it verified, `vendor/tough/PATCHES.md`);
/// new bytes are verified in full, so a bin re-signed by an online key after a good load is
/// still refused.
#[test]
fn a_bin_verified_at_an_earlier_load_is_verified_again_when_its_bytes_change() {
    let w = world();
    plans(&w);
    let records = std::fs::read_to_string(w.path("state-univ-a/tuf/verified-delegations.txt")).unwrap();
    assert_eq!(records.lines().count(), 258, "every bin and both marker roles are recorded");
    plans(&w);
    assert_eq!(std::fs::read_to_string(w.path("state-univ-a/tuf/verified-delegations.txt")).unwrap(), records);

    let bin = bin_of("quiz-fix-1.0.1.tar.gz");
    let mut into = read_bin(&w, &bin);
    let target = into.targets[&TargetName::new("quiz-fix-1.0.1.tar.gz").unwrap()].clone();
    into.targets.insert(TargetName::new("quiz-fix-1.0.9.tar.gz").unwrap(), target);
    resign_with(&w, vec![(bin, into, "snapshot")], |_| {});
    refused(&w, "a bin re-signed by the snapshot key after a good load", "signature");
}
