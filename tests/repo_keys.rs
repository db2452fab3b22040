//! Keys kept offline, rotation and static hosting, end to end: the real `palier-server` and
//! `palier-agent`, the agent pinned once to `1.root.json`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use common::{World, manifest, stderr};
use tough::editor::signed::SignedRole;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::{DelegatedTargets, Hashes, KeyHolder, Metafile, Role, Root, Signed, Snapshot, Targets, Timestamp};

/// A world whose repository keeps root, targets and bins keys in `offline/`.
fn world_with_offline_keys() -> World {
    let w = World::new();
    std::fs::remove_dir_all(w.path("repo")).unwrap();
    std::fs::remove_dir_all(w.path("keys")).unwrap();
    w.server(&["init", "--repo", "repo", "--offline-keys", "offline"]);
    w
}

fn publish(w: &World, version: &str) {
    w.publish(&manifest("quiz-fix", version, "mod_quiz", "technical", "none", ""), &["--offline-keys", "offline"]);
}

/// The versions the agent's plan lists (it verified the repository to make it).
fn planned_versions(w: &World, config: &Path) -> Vec<String> {
    let out = w.run("palier-agent", &["plan", "--json", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"]);
    assert!(out.status.success(), "plan: {}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["bundles"].as_array().unwrap().iter().map(|b| b["version"].as_str().unwrap().to_owned()).collect()
}

/// The agent refuses the repository: exit 1, one line containing `needle`.
fn plan_refused(w: &World, config: &Path, needle: &str) {
    let out = w.run("palier-agent", &["plan", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "expected a refusal: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.to_lowercase().contains(needle), "expected {needle:?} in {err}");
}

fn read_json<T: serde::de::DeserializeOwned>(w: &World, file: &str) -> T {
    serde_json::from_slice(&std::fs::read(w.path(&format!("repo/metadata/{file}"))).unwrap()).unwrap()
}

fn newest_root(w: &World) -> (u64, Signed<Root>) {
    let n = (1..).take_while(|n| w.path(&format!("repo/metadata/{n}.root.json")).exists()).last().unwrap();
    (n, read_json(w, &format!("{n}.root.json")))
}

fn sign<T: Role + serde::Serialize>(role: T, holder: &KeyHolder, key: &Path) -> Vec<u8> {
    let keys: Vec<Box<dyn KeySource>> = vec![Box::new(LocalKeySource { path: key.to_path_buf() })];
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let signed = rt.block_on(SignedRole::new(role, holder, &keys, &aws_lc_rs::rand::SystemRandom::new())).unwrap();
    serde_json::to_vec(signed.signed()).unwrap()
}

/// The one retired key file of `role` in `folder/retired/`.
fn retired(w: &World, folder: &str, role: &str) -> PathBuf {
    let dir = w.path(&format!("{folder}/retired"));
    let found: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{role}-"))).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

fn snapshot_metafile(bytes: &[u8], version: std::num::NonZeroU64) -> Metafile {
    use sha2::Digest;
    Metafile { length: Some(bytes.len() as u64), hashes: Some(Hashes { sha256: sha2::Sha256::digest(bytes).to_vec().into(), _extra: HashMap::new() }), version, _extra: HashMap::new() }
}

/// Rotate every role, one after the other, publishing between rotations: the agent, pinned
/// once to `1.root.json`, follows each new root and key without being re-pinned. Then
/// metadata forged with each revoked key (timestamp, bins, root) is refused.
#[test]
fn agents_follow_every_rotation_and_refuse_what_a_revoked_key_signs() {
    let w = world_with_offline_keys();
    publish(&w, "1.0.0");
    let config = w.agent_config("univ-a", 3, 1);
    assert_eq!(planned_versions(&w, &config), ["1.0.0"]);
    let roles = ["timestamp", "snapshot", "targets", "bins", "halts", "reports", "root"];
    for (i, role) in roles.iter().enumerate() {
        w.server(&["key", "rotate", "--repo", "repo", "--offline-keys", "offline", role]);
        let version = format!("1.1.{i}");
        publish(&w, &version);
        let seen = planned_versions(&w, &config);
        assert!(seen.contains(&version), "after rotating {role}: {seen:?}");
    }
    w.server(&["root", "sign", "--repo", "repo", "--offline-keys", "offline"]);
    assert_eq!(planned_versions(&w, &config).len(), 8);
    assert_eq!(newest_root(&w).0, 6);

    let good_timestamp = std::fs::read(w.path("repo/metadata/timestamp.json")).unwrap();
    // 1. A timestamp signed by the revoked timestamp key (as the first root trusted it).
    let first_root: Signed<Root> = read_json(&w, "1.root.json");
    let mut ts: Signed<Timestamp> = read_json(&w, "timestamp.json");
    ts.signed.version = ts.signed.version.checked_add(1).unwrap();
    let forged = sign(ts.signed.clone(), &KeyHolder::Root(first_root.signed.clone()), &retired(&w, "keys", "timestamp"));
    std::fs::write(w.path("repo/metadata/timestamp.json"), forged).unwrap();
    plan_refused(&w, &config, "signature");
    std::fs::write(w.path("repo/metadata/timestamp.json"), &good_timestamp).unwrap();

    // 2. A bin signed by the revoked bins key, under a snapshot and timestamp signed by the
    //    current keys (only the bin's signature is wrong).
    let (_, root) = newest_root(&w);
    let snapshot_version = ts.signed.meta["snapshot.json"].version;
    let mut snapshot: Signed<Snapshot> = read_json(&w, &format!("{snapshot_version}.snapshot.json"));
    let targets_version = snapshot.signed.meta["targets.json"].version;
    let mut first_top: Option<Signed<Targets>> = None;
    for v in 1..=targets_version.get() {
        let t: Signed<Targets> = read_json(&w, &format!("{v}.targets.json"));
        if t.signed.delegations.is_some() {
            first_top = Some(t);
            break;
        }
    }
    let bin = "bin-00";
    let meta = snapshot.signed.meta.get_mut(&format!("{bin}.json")).unwrap();
    meta.version = meta.version.checked_add(1).unwrap();
    let bin_version = meta.version;
    let mut bin_targets: Targets = read_json::<Signed<Targets>>(&w, &format!("{}.{bin}.json", bin_version.get() - 1)).signed;
    bin_targets.version = bin_version;
    // Signed as the first delegations trusted the old key, so the signature itself is valid.
    let old_holder = KeyHolder::Delegations(first_top.unwrap().signed.delegations.unwrap());
    let bytes = sign(DelegatedTargets { name: bin.into(), targets: bin_targets }, &old_holder, &retired(&w, "offline", "bins"));
    std::fs::write(w.path(&format!("repo/metadata/{bin_version}.{bin}.json")), bytes).unwrap();
    snapshot.signed.version = snapshot.signed.version.checked_add(1).unwrap();
    let sv = snapshot.signed.version;
    let root_holder = KeyHolder::Root(root.signed.clone());
    let snapshot_bytes = sign(snapshot.signed, &root_holder, &w.path("keys/snapshot.der"));
    std::fs::write(w.path(&format!("repo/metadata/{sv}.snapshot.json")), &snapshot_bytes).unwrap();
    let mut ts2: Signed<Timestamp> = serde_json::from_slice(&good_timestamp).unwrap();
    ts2.signed.version = ts2.signed.version.checked_add(1).unwrap();
    ts2.signed.meta.insert("snapshot.json".into(), snapshot_metafile(&snapshot_bytes, sv));
    std::fs::write(w.path("repo/metadata/timestamp.json"), sign(ts2.signed, &root_holder, &w.path("keys/timestamp.der"))).unwrap();
    plan_refused(&w, &config, "signature");
    std::fs::remove_file(w.path(&format!("repo/metadata/{sv}.snapshot.json"))).unwrap();
    std::fs::remove_file(w.path(&format!("repo/metadata/{bin_version}.{bin}.json"))).unwrap();
    std::fs::write(w.path("repo/metadata/timestamp.json"), &good_timestamp).unwrap();
    assert_eq!(planned_versions(&w, &config).len(), 8);

    // 3. A root 7 signed by the revoked root key alone.
    let (n, current) = newest_root(&w);
    let mut next = current.signed.clone();
    next.version = next.version.checked_add(1).unwrap();
    let bytes = sign(next.clone(), &KeyHolder::Root(first_root.signed.clone()), &retired(&w, "offline", "root"));
    std::fs::write(w.path(&format!("repo/metadata/{}.root.json", n + 1)), bytes).unwrap();
    plan_refused(&w, &config, "root");
    std::fs::remove_file(w.path(&format!("repo/metadata/{}.root.json", n + 1))).unwrap();
    assert_eq!(planned_versions(&w, &config).len(), 8);
}

/// A plain static file server for `root` on a free loopback port: GET only, 200 or 404.
fn static_server(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let root = root.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_owned();
                let rel = percent_decode(path.trim_start_matches('/'));
                let file = root.join(&rel);
                let body = if rel.split('/').any(|c| c == "..") { None } else { std::fs::File::open(&file).ok().filter(|_| file.is_file()) };
                match body {
                    Some(mut f) => {
                        let mut bytes = Vec::new();
                        f.read_to_end(&mut bytes).unwrap();
                        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", bytes.len());
                        let _ = stream.write_all(&bytes);
                    }
                    None => {
                        let _ = write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                }
            });
        }
    });
    addr
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The repository copied by `sync` to a folder that a plain static file server serves: once
/// its timestamp has expired the agent refuses it; `refresh` then `sync` (a cron job's two
/// lines) and the agent accepts it again, without `serve` anywhere.
#[test]
fn a_statically_served_copy_stays_accepted_with_refresh_and_sync() {
    let w = world_with_offline_keys();
    std::fs::remove_dir_all(w.path("repo")).unwrap();
    std::fs::remove_dir_all(w.path("keys")).unwrap();
    std::fs::remove_dir_all(w.path("offline")).unwrap();
    // Signed 25 hours ago: the timestamp (one day) has expired now.
    let then = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(25)).to_string();
    w.server(&["init", "--repo", "repo", "--offline-keys", "offline", "--now", &then]);
    let m = manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", "");
    w.publish(&m, &["--now", &then, "--offline-keys", "offline"]);
    w.server(&["sync", "--repo", "repo", "--to", "www"]);
    let addr = static_server(w.path("www"));
    let config = w.agent_config("univ-a", 3, 1);
    let text = std::fs::read_to_string(&config).unwrap().replace(&format!("file://{}", w.path("repo").display()), &format!("http://{addr}/"));
    std::fs::write(&config, text).unwrap();
    plan_refused(&w, &config, "expired");

    // The cron job: refresh with the online keys only, then sync.
    w.server(&["refresh", "--repo", "repo"]);
    let out = w.server(&["sync", "--repo", "repo", "--to", "www"]);
    assert!(out.contains(": 1 file(s) written"), "the timestamp alone (the snapshot lasts 7 days): {out}");
    assert_eq!(planned_versions(&w, &config), ["1.0.0"]);

    // A publish reaches the agent through the same two steps.
    publish(&w, "1.0.1");
    assert_eq!(planned_versions(&w, &config), ["1.0.0"]);
    w.server(&["sync", "--repo", "repo", "--to", "www"]);
    assert_eq!(planned_versions(&w, &config), ["1.0.0", "1.0.1"]);
}

/// Serve holding only the online keys (the offline folder is not on the machine): a fix request
/// from a level-1 platform naming a published, validated bundle makes it eligible for that
/// platform (a report marker), not for another.
#[test]
fn serve_with_the_online_keys_alone_links_a_fix_request_and_level_1_gets_the_bundle() {
    let w = world_with_offline_keys();
    publish(&w, "1.0.1");
    w.server(&["validate", "--repo", "repo", "quiz-fix@1.0.1", "--alpha", "--offline-keys", "offline"]);
    std::fs::rename(w.path("offline"), w.path("elsewhere")).unwrap();
    let served = common::control::serve(&w);
    let a = common::control::platform(&w, &served, "univ-a", 1, 1);
    let b = common::control::platform(&w, &served, "univ-b", 1, 1);
    let decision = |config: &Path| {
        let out = w.run("palier-agent", &["plan", "--json", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"]);
        assert!(out.status.success(), "plan: {}", stderr(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let found = plan["bundles"].as_array().unwrap().iter().find(|x| x["id"] == "quiz-fix").unwrap().clone();
        (found["decision"].as_str().unwrap().to_owned(), found["reason"].as_str().map(str::to_owned))
    };
    assert_eq!(decision(&a), ("skipped".into(), Some("not-reported".into())));

    let out = w.run("palier-agent", &["request-fix", "--config", a.to_str().unwrap(), "--component", "mod_quiz", "--summary", "quiz timer drifts", "--bundle", "quiz-fix@1.0.1"]);
    assert!(out.status.success(), "request-fix: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("linked to quiz-fix@1.0.1"));
    assert_eq!(decision(&a), ("eligible".into(), None));
    assert_eq!(decision(&b), ("skipped".into(), Some("not-reported".into())));
}

/// Un-halting needs the offline keys: a bundle halted by a halt marker stays halted for an
/// agent that saw the marker when the halts key (online) signs a halts role without it; the
/// release manager's `resume` (offline bins key) lets it apply.
#[test]
fn a_halt_marker_seen_once_is_lifted_only_by_the_offline_resume() {
    use common::site::Site;
    let s = Site::new(50);
    for dir in ["repo", "keys"] {
        std::fs::remove_dir_all(s.w.path(dir)).unwrap();
    }
    s.w.server(&["init", "--repo", "repo", "--offline-keys", "offline"]);
    s.publish("quiz-fix", ("technical", "none"), &[("mod/quiz/view.php", "<?php // fixed quiz view\n")], "");
    let config = s.config(3, 1, "");
    let plan = |now: &str| -> serde_json::Value {
        let out = s.agent(&["plan", "--json", "--config", config.to_str().unwrap(), "--now", now]);
        assert!(out.status.success(), "plan: {}", stderr(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        plan["bundles"][0].clone()
    };

    // Halted with the online keys alone: a halt marker. The cycle sees it and applies nothing.
    let out = s.w.server(&["halt", "--repo", "repo", "quiz-fix@1.0.0", "--reason", "auto-halt: rolled back on univ-b"]);
    assert!(out.contains("halted (a halt marker"), "{out}");
    let out = s.run_once(&config, "2026-12-01T10:00:00+01:00");
    assert!(!out.contains("applied"), "{out}");
    assert_eq!(plan("2026-12-01T10:01:00+01:00")["reason"], "halted");

    // The halts key signs a new halts role without the marker: the repository's own view says
    // active, but this agent saw the marker and keeps the bundle halted.
    let paths = palier_server::repo::RepoPaths::new(s.w.path("repo"), Some(s.w.path("keys")));
    let bundle = "quiz-fix@1.0.0".parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(rt.block_on(palier_server::halts::remove_marker(&paths, &bundle, jiff::Timestamp::now())).unwrap());
    let listed: serde_json::Value = serde_json::from_str(&s.w.server(&["list", "--repo", "repo", "--json"])).unwrap();
    assert_eq!(listed["bundles"][0]["state"], "active");
    let entry = plan("2026-12-01T10:02:00+01:00");
    assert_eq!(entry["reason"], "halted", "{entry}");
    assert!(entry["detail"].as_str().unwrap().contains("halt marker seen"), "{entry}");
    let out = s.run_once(&config, "2026-12-01T10:03:00+01:00");
    assert!(!out.contains("applied"), "{out}");

    // Only the release manager's resume, with the offline keys, lifts it.
    let err = s.w.run("palier-server", &["resume", "--repo", "repo", "quiz-fix@1.0.0"]);
    assert_eq!(err.status.code(), Some(64), "{}", stderr(&err));
    let out = s.w.server(&["resume", "--repo", "repo", "quiz-fix@1.0.0", "--offline-keys", "offline"]);
    assert!(out.contains("quiz-fix@1.0.0: active"), "{out}");
    assert_ne!(plan("2026-12-01T10:04:00+01:00")["reason"], "halted");
    let out = s.run_once(&config, "2026-12-01T10:05:00+01:00");
    assert!(out.contains("applied quiz-fix@1.0.0"), "{out}");
}
