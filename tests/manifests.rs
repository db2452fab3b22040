//! Every example in `manifests/` is valid: bundle manifests parse and build, agent configs load,
//! and between them the examples cover every class, data impact and level combination.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use palier_bundle::archive::{self, ReadLimits, VerifyOnly};
use palier_bundle::{ChangeClass, DataImpact, Manifest, ManifestKind};

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

#[test]
fn every_example_bundle_parses_builds_and_reads_back() {
    let mut classes = BTreeSet::new();
    let mut impacts = BTreeSet::new();
    let mut count = 0;
    for entry in std::fs::read_dir(manifests().join("bundles")).unwrap() {
        let dir = entry.unwrap().path();
        let manifest_path = dir.join("bundle.toml");
        let text = std::fs::read_to_string(&manifest_path).unwrap();
        let m = Manifest::parse(&text, ManifestKind::Source).unwrap_or_else(|e| panic!("{}: {e}", manifest_path.display()));
        assert_eq!(dir.file_name().unwrap().to_str().unwrap(), m.id.as_str(), "folder is named after the bundle id");
        classes.insert(m.class);
        impacts.insert(m.data_impact);
        let mut archive_bytes = Vec::new();
        let built = archive::build_from_dir(&m, &dir.join("files"), &mut archive_bytes).unwrap();
        assert!(!built.files.is_empty(), "{} has files to ship", m.id);
        let read = archive::read_archive(&archive_bytes[..], ReadLimits { max_expanded: built.expanded_size(), expected: Some(&built) }, &mut VerifyOnly).unwrap();
        assert_eq!(read, built);
        count += 1;
    }
    assert!(count >= 6, "only {count} example bundles");
    assert_eq!(classes, ChangeClass::ALL.into_iter().collect(), "every class has an example");
    assert_eq!(impacts, DataImpact::ALL.into_iter().collect(), "every data impact has an example");
}

#[test]
fn every_example_agent_config_loads_and_all_nine_levels_are_there() {
    let mut combos = BTreeSet::new();
    for path in files_with_extension(&manifests().join("agents"), "toml") {
        let c = palier_agent::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.ignored.is_empty(), "{}: keys that do not apply: {:?}", path.display(), c.ignored);
        let (i, s) = (c.contract.improvement.level.get(), c.contract.stability.level.get());
        let expected_name = format!("improvement{i}-stability{s}.toml");
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), expected_name);
        combos.insert((i, s));
    }
    assert_eq!(combos.len(), 9, "all nine level combinations: {combos:?}");
}
