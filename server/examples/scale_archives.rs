//! Load for `bench/publish-scale.sh`: write, into `targets/`, an archive for every bundle that
//! `scale_gen` listed in a repository's bins, so that the server's file-ownership index can
//! be built from the archives' manifests as it is on a real repository (`scale_gen` writes
//! only the metadata).
//!
//!     scale_archives REPO FILES
//!
//! Bundle `scale-NNNNN` gets FILES real files under `mod/quiz/classes/generated/bNNNNN/` (the
//! paths `scale_gen` lists), built by `palier_bundle::archive` as `bundle build` does, and is
//! stored under the name its bin gives it (`<sha256 in the bin>.<target>`). The metadata is
//! read as it is on disk, unverified: a benchmark's own fresh repository.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use palier_bundle::{Manifest, ManifestKind};
use serde_json::Value;

fn read(dir: &Path, name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, repo, files] = &args[..] else {
        eprintln!("usage: scale_archives REPO FILES");
        std::process::exit(2);
    };
    let files: usize = files.parse().unwrap();
    let repo = PathBuf::from(repo);
    let (md, targets) = (repo.join("metadata"), repo.join("targets"));
    let timestamp = read(&md, "timestamp.json");
    let sv = timestamp["signed"]["meta"]["snapshot.json"]["version"].as_u64().unwrap();
    let snapshot = read(&md, &format!("{sv}.snapshot.json"));
    let work = tempfile::tempdir().unwrap();
    let mut written = 0;
    for (role, meta) in snapshot["signed"]["meta"].as_object().unwrap() {
        let Some(bin) = role.strip_suffix(".json").filter(|r| r.starts_with("bin-")) else { continue };
        let version = meta["version"].as_u64().unwrap();
        let bin = read(&md, &format!("{version}.{bin}.json"));
        for (name, target) in bin["signed"]["targets"].as_object().unwrap() {
            let id = target["custom"]["manifest"]["id"].as_str().unwrap();
            let Some(i) = id.strip_prefix("scale-") else { continue };
            let sha = target["hashes"]["sha256"].as_str().unwrap();
            let src = work.path().join(id);
            let dir = src.join(format!("mod/quiz/classes/generated/b{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..files {
                let mut body = format!("<?php // generated bundle {i}, file {f}\n").into_bytes();
                body.resize(1000 + f, b' ');
                std::fs::write(dir.join(format!("file-{f:02}.php")), body).unwrap();
            }
            let text = format!(
                "id = \"{id}\"\nversion = \"1.0.0\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"generated bundle {i} for the scale benchmark\"\nfixes = [\"FR-{}\"]\norigin = \"report\"\n",
                i.parse::<usize>().unwrap()
            );
            let manifest = Manifest::parse(&text, ManifestKind::Source).unwrap();
            let out = std::fs::File::create(targets.join(format!("{sha}.{name}"))).unwrap();
            palier_bundle::archive::build_from_dir(&manifest, &src, std::io::BufWriter::new(out)).unwrap();
            std::fs::remove_dir_all(&src).unwrap();
            written += 1;
        }
    }
    println!("wrote {written} archives of {files} files");
}
