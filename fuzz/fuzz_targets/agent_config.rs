//! The agent's configuration file. Never panics; every refusal names one key on one line;
//! an accepted config has a contract in range.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use palier_agent::Config;

/// Beside the example configs, so their relative `calendar_file = "maintenance.ics"` resolves.
const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/agents/agent.toml");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text, Path::new(PATH)) {
        Ok(_) => {}
        Err(error) => {
            let line = error.to_string();
            assert!(!line.contains('\n'), "a refusal spans several lines: {line:?}");
            assert!(line.contains(PATH), "a refusal does not name the file: {line}");
        }
    }
});
