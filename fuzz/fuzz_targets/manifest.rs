//! `bundle.toml` parsing, both kinds. Three properties beyond "never panics":
//! - the fast path for built manifests' `[[files]]` tables agrees with the TOML parser
//!   (same manifest, or both refuse);
//! - an accepted manifest written back with `to_toml` parses to the same value;
//! - every refusal is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palier_bundle::{Manifest, ManifestKind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for kind in [ManifestKind::Built, ManifestKind::Source] {
        let parsed = Manifest::parse(text, kind);
        let reference = toml::from_str::<Manifest>(text).ok().filter(|m| m.validate(kind).is_ok());
        match parsed {
            Ok(manifest) => {
                assert_eq!(Some(&manifest), reference.as_ref(), "the fast path and the TOML parser disagree");
                let written = manifest.to_toml().expect("an accepted manifest serialises");
                let again = Manifest::parse(&written, kind).expect("a written manifest parses back");
                assert_eq!(again, manifest, "to_toml then parse changed the manifest");
            }
            Err(error) => {
                assert!(reference.is_none(), "the fast path refused what the TOML parser accepts: {error}");
                assert!(!error.to_string().contains('\n'), "a refusal spans several lines: {error:?}");
            }
        }
    }
});
