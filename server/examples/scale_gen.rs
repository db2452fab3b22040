//! Load for `bench/scale.sh`: add COUNT generated bundles of FILES files each to a repository
//! made by `palier-server init`, in one signing pass, so that a 10,000-bundle repository takes
//! seconds rather than 10,000 publishes.
//!
//!     scale_gen REPO KEYS COUNT FILES
//!
//! It writes the layout the repository has: hashed bins (signed metadata format 2) when the
//! top-level targets delegate, else every bundle in the top-level targets with the file list
//! as lines (format 1, the layout and format of releases before hashed bins). Each bundle's
//! archive is written to `targets/` as `publish` stores it (small generated files): the
//! publish-time file ownership check reads the other bundles' manifests from them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use palier_bundle::metadata::file_line;
use palier_bundle::{BundleMetadata, Manifest, ManifestKind, hostile};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tough::editor::signed::SignedRole;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::decoded::Decoded;
use tough::schema::{DelegatedTargets, Hashes, KeyHolder, Metafile, PathSet, Role, Root, Signed, Snapshot, Target, Targets, Timestamp};
use tough::TargetName;

fn read<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> T {
    serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
}

async fn sign<T: Role + Serialize>(role: T, holder: &KeyHolder, keys: &Path, key: &str) -> Vec<u8> {
    let keys: Vec<Box<dyn KeySource>> = vec![Box::new(LocalKeySource { path: keys.join(format!("{key}.der")) })];
    let signed = SignedRole::new(role, holder, &keys, &aws_lc_rs::rand::SystemRandom::new()).await.unwrap();
    let mut bytes = serde_json::to_vec(signed.signed()).unwrap();
    bytes.push(b'\n');
    bytes
}

fn version_only(version: NonZeroU64) -> Metafile {
    Metafile { length: None, hashes: None, version, _extra: HashMap::new() }
}

/// Bundle `i`: FILES files under mod/quiz, as `bundle build` would list them, and its archive.
fn bundle(i: usize, files: usize) -> (Manifest, Vec<u8>) {
    let mut text = format!(
        "id = \"scale-{i:05}\"\nversion = \"1.0.0\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"generated bundle {i} for the scale benchmark\"\nfixes = [\"FR-{i}\"]\norigin = \"report\"\n"
    );
    let mut contents = Vec::new();
    for f in 0..files {
        let path = format!("mod/quiz/classes/generated/b{i}/file-{f:02}.php");
        let data: Vec<u8> = format!("<?php // {i}/{f}\n").bytes().cycle().take(1000 + f).collect();
        let sha = hex::encode(Sha256::digest(&data));
        text.push_str(&format!("\n[[files]]\npath = \"{path}\"\nsha256 = \"{sha}\"\nsize = {}\nmode = \"0644\"\n", data.len()));
        contents.push((path, data));
    }
    let m = Manifest::parse(&text, ManifestKind::Built).unwrap();
    let mut entries = vec![hostile::manifest_entry(&m)];
    entries.extend(contents.iter().map(|(path, data)| hostile::RawEntry::file(&format!("files/{path}"), data)));
    (m, hostile::craft(&entries))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, repo, keys, count, files] = &args[..] else {
        eprintln!("usage: scale_gen REPO KEYS COUNT FILES");
        std::process::exit(2);
    };
    let (count, files): (usize, usize) = (count.parse().unwrap(), files.parse().unwrap());
    let md = PathBuf::from(repo).join("metadata");
    let keys = PathBuf::from(keys);
    let now = jiff::Timestamp::now();
    let expires = |hours: i64| jiff::Timestamp::from_second((now + jiff::SignedDuration::from_hours(hours)).as_second()).unwrap();

    let root: Signed<Root> = read(&md, "1.root.json");
    let root_holder = KeyHolder::Root(root.signed);
    let mut timestamp: Signed<Timestamp> = read(&md, "timestamp.json");
    let sv = timestamp.signed.meta["snapshot.json"].version;
    let mut snapshot: Signed<Snapshot> = read(&md, &format!("{sv}.snapshot.json"));
    let tv = snapshot.signed.meta["targets.json"].version;
    let mut targets: Signed<Targets> = read(&md, &format!("{tv}.targets.json"));

    // The single-targets layout may carry an empty `delegations`.
    let delegations = targets.signed.delegations.clone().filter(|d| !d.roles.is_empty());
    let single = delegations.is_none();
    let targets_dir = PathBuf::from(repo).join("targets");
    let entries = (0..count).map(|i| {
        let (m, archive) = bundle(i, files);
        let name = m.target_name();
        // The archive as `publish` stores it: its own manifest is what the server reads.
        let sha = Sha256::digest(&archive).to_vec();
        std::fs::write(targets_dir.join(format!("{}.{name}", hex::encode(&sha))), &archive).unwrap();
        let meta = BundleMetadata::new(m.clone(), BTreeSet::new(), now.to_string());
        // The single-targets layout's releases signed format 1 (an object with file lines).
        let mut custom = match if single { meta.to_fields() } else { meta.to_custom() } {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        let target = |custom: serde_json::Map<String, serde_json::Value>| Target {
            length: archive.len() as u64,
            hashes: Hashes { sha256: Decoded::from(sha), _extra: HashMap::new() },
            custom: custom.into_iter().collect(),
            _extra: HashMap::new(),
        };
        if single {
            custom.insert("format".into(), 1.into());
            custom.remove("file_count");
            custom.remove("paths");
            custom.insert("files".into(), m.files.iter().map(file_line).collect::<Vec<_>>().into());
        }
        (TargetName::new(name.clone()).unwrap(), target(custom))
    });

    match delegations {
        None => {
            targets.signed.targets.extend(entries);
            targets.signed.version = targets.signed.version.checked_add(1).unwrap();
            targets.signed.expires = expires(90 * 24);
            let v = targets.signed.version;
            std::fs::write(md.join(format!("{v}.targets.json")), sign(targets.signed, &root_holder, &keys, "targets").await).unwrap();
            snapshot.signed.meta.insert("targets.json".into(), version_only(v));
        }
        Some(delegations) => {
            let mut bins: BTreeMap<String, Targets> = BTreeMap::new();
            for (name, target) in entries {
                let digest = hex::encode(Sha256::digest(name.raw().as_bytes()));
                let role = delegations
                    .roles
                    .iter()
                    .find(|r| matches!(&r.paths, PathSet::PathHashPrefixes(p) if p.iter().any(|p| digest.starts_with(p.value()))))
                    .unwrap();
                let bin = bins.entry(role.name.clone()).or_insert_with(|| {
                    let v = snapshot.signed.meta[&format!("{}.json", role.name)].version;
                    read::<Signed<Targets>>(&md, &format!("{v}.{}.json", role.name)).signed
                });
                bin.targets.insert(name, target);
            }
            let holder = KeyHolder::Delegations(delegations);
            for (name, mut bin) in bins {
                bin.version = bin.version.checked_add(1).unwrap();
                bin.expires = expires(90 * 24);
                let v = bin.version;
                let bytes = sign(DelegatedTargets { name: name.clone(), targets: bin }, &holder, &keys, "bins").await;
                std::fs::write(md.join(format!("{v}.{name}.json")), bytes).unwrap();
                snapshot.signed.meta.insert(format!("{name}.json"), version_only(v));
            }
        }
    }
    snapshot.signed.version = snapshot.signed.version.checked_add(1).unwrap();
    snapshot.signed.expires = expires(7 * 24);
    let v = snapshot.signed.version;
    let bytes = sign(snapshot.signed, &root_holder, &keys, "snapshot").await;
    std::fs::write(md.join(format!("{v}.snapshot.json")), &bytes).unwrap();
    timestamp.signed.meta.insert(
        "snapshot.json".into(),
        Metafile { length: Some(bytes.len() as u64), hashes: Some(Hashes { sha256: Decoded::from(Sha256::digest(&bytes).to_vec()), _extra: HashMap::new() }), version: v, _extra: HashMap::new() },
    );
    timestamp.signed.version = timestamp.signed.version.checked_add(1).unwrap();
    timestamp.signed.expires = expires(24);
    std::fs::write(md.join("timestamp.json"), sign(timestamp.signed, &root_holder, &keys, "timestamp").await).unwrap();
    println!("added {count} bundles of {files} files");
}
