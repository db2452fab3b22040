//! The streaming archive reader, as the agent and `bundle verify` run it on untrusted bytes.
//! The first byte picks how the rest is read: even, as the gzip file itself; odd, as the
//! tar stream inside (the harness compresses it with `store`, so mutations reach the tar
//! parser, the path rules and the digest checks instead of dying in the gzip header).
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use palier_bundle::archive::{read_archive, ReadLimits, VerifyOnly};
use palier_bundle::ManifestKind;

/// Small enough that a bomb stops quickly, large enough for every seed.
const MAX_EXPANDED: u64 = 4 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let gz;
    let input: &[u8] = if mode % 2 == 0 {
        rest
    } else {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        encoder.write_all(rest).expect("writing to a Vec");
        gz = encoder.finish().expect("writing to a Vec");
        &gz
    };
    let limits = ReadLimits { max_expanded: MAX_EXPANDED, expected: None };
    match read_archive(input, limits, &mut VerifyOnly) {
        Ok(manifest) => {
            // What the reader accepts is a valid built manifest whose files all fit.
            manifest.validate(ManifestKind::Built).expect("an accepted archive's manifest is valid");
            assert!(manifest.expanded_size() <= MAX_EXPANDED);
        }
        Err(error) => assert!(!error.to_string().contains('\n'), "a refusal spans several lines: {error:?}"),
    }
});
