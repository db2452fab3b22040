//! The `palier-agent` command line: usage, exit codes, config errors.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_palier-agent");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("PALIER_LOG").output().unwrap()
}

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/agents")
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(run(&["plan"]).status.code(), Some(2), "--config is required");
    assert_eq!(run(&["run", "--now", "2026-12-01T10:00:00Z", "--config", "x"]).status.code(), Some(2), "--now needs --once");
}

#[test]
fn check_config_reads_every_example() {
    for e in std::fs::read_dir(examples()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let out = run(&["check-config", "--config", p.to_str().unwrap()]);
            assert!(out.status.success(), "{}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[test]
fn an_invalid_config_exits_64_with_one_line_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let text = std::fs::read_to_string(examples().join("improvement2-stability2.toml")).unwrap().replace("notice = \"2h\"", "notice = \"20m\"");
    std::fs::write(&path, text).unwrap();
    for cmd in ["check-config", "plan", "run", "status", "rollback", "calendar"] {
        let mut args = vec![cmd, "--config", path.to_str().unwrap()];
        if cmd == "run" {
            args.push("--once");
        }
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{cmd}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{cmd}: {err}");
        assert!(err.contains(path.to_str().unwrap()) && err.contains("stability.notice"), "{cmd}: {err}");
    }
}

#[test]
fn a_missing_trusted_root_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let text = std::fs::read_to_string(examples().join("improvement3-stability1.toml"))
        .unwrap()
        .replace("/etc/palier/root.json", "missing-root.json")
        .replace("/var/lib/palier", "state");
    std::fs::write(&path, text).unwrap();
    let out = run(&["plan", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("missing-root.json"), "{err}");
}
