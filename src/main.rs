//! `palier`: the project's root binary. The product's commands are `palier-server` (the
//! release manager's side) and `palier-agent` (on each Moodle host).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "palier {}\n\nThe commands are:\n  palier-server   build, sign, publish and serve fix bundles\n  palier-agent    plan and apply them on a Moodle host\n\nSee README.md.",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
