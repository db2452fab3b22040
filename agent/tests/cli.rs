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
fn check_config_reads_every_example_and_says_what_this_machine_lacks() {
    // Here the examples point at /etc/palier and /var/www/moodle, which this machine does not
    // have: each config is valid (its contract is printed), and each missing thing is a line.
    // tests/check_config.rs points them at a fixture site, where they pass.
    for e in std::fs::read_dir(examples()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let out = run(&["check-config", "--config", p.to_str().unwrap(), "--now", "2026-11-30T10:00"]);
            let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(stdout.contains("which fixes:") && stdout.contains("when and how:"), "{}: {stdout}{stderr}", p.display());
            if !Path::new("/etc/palier/root.json").exists() {
                assert_eq!(out.status.code(), Some(64), "{}: {stderr}", p.display());
                assert!(stderr.contains("error: trusted_root /etc/palier/root.json does not exist; copy the repository's metadata/1.root.json"), "{stderr}");
            }
        }
    }
}

#[test]
fn warnings_are_plain_lines_without_time_module_or_colour() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    // A level-2 key at stability level 1: a warning, and the config still loads.
    let text = std::fs::read_to_string(examples().join("improvement3-stability1.toml")).unwrap().replace("max_defer = \"4h\"", "max_defer = \"4h\"\nwindows = [\"Tue 22:00-23:30\"]");
    std::fs::write(&path, text).unwrap();
    let out = run(&["check-config", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("ignoring stability.windows")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.starts_with("warning: "), "{line}");
    assert!(!line.contains("palier_agent") && !line.contains("WARN") && !line.contains('\x1b'), "{line}");
    assert!(!line.chars().take(4).all(|c| c.is_ascii_digit()), "no timestamp: {line}");
}

#[test]
fn now_takes_a_local_date_time_and_says_the_forms_when_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::copy(examples().join("improvement2-stability2.toml"), &path).unwrap();
    let out = run(&["check-config", "--config", path.to_str().unwrap(), "--now", "2026-12-01 10:00"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("next slot:    Tue 1 Dec 2026 22:00 CET"), "{}", String::from_utf8_lossy(&out.stdout));
    let out = run(&["plan", "--config", path.to_str().unwrap(), "--now", "tomorrow 10h"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--now \"tomorrow 10h\": expected a local date-time in Europe/Paris like 2026-12-01T22:00"), "{err}");
}

#[test]
fn status_with_an_empty_state_dir_asks_whether_the_config_is_right() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let text = std::fs::read_to_string(examples().join("improvement3-stability1.toml")).unwrap().replace("/var/lib/palier", "wrong-state");
    std::fs::write(&path, text).unwrap();
    let out = run(&["status", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("error: no state in {}: is this the right config?", dir.path().join("wrong-state").display())), "{err}");
    assert!(out.stdout.is_empty(), "nothing printed as if the site had nothing installed");
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

#[test]
fn a_trusted_root_that_is_not_a_root_is_named_as_the_local_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(dir.path().join("root.json"), "{\"signed\": {\"_type\": \"targets\"}, \"signatures\": []}").unwrap();
    let text = std::fs::read_to_string(examples().join("improvement3-stability1.toml"))
        .unwrap()
        .replace("/etc/palier/root.json", "root.json")
        .replace("/var/lib/palier", "state")
        .replace("http://127.0.0.1:8080/repo", &format!("file://{}/repo", dir.path().display()));
    std::fs::write(&path, text).unwrap();
    let out = run(&["plan", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let root = dir.path().join("root.json");
    assert!(err.contains(&format!("trusted root {} (trusted_root in", root.display())) && err.contains("is not a TUF root.json"), "the local file is blamed, not the repository: {err}");
    assert!(err.contains("copy the repository's metadata/1.root.json there"), "{err}");
}
