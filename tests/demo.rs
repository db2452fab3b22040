//! `palier demo` end to end: the real binary, its exit status, the key lines of its story,
//! and what it leaves in the folder it was given.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::http_get;

fn palier(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palier")).args(args).env_remove("PALIER_LOG").output().unwrap()
}

/// The output with every run of blanks and line breaks as one space, so the checks do not
/// depend on where a paragraph wraps.
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_demo_tells_the_week_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = palier(&["demo", "--dir", dir.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\nstderr: {stderr}\nstdout:\n{stdout}", out.status.code());
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
    let text = flat(&stdout);
    let has = |line: &str| assert!(text.contains(line), "missing {line:?} in:\n{stdout}");

    // The week, in the order the contracts allow.
    has("Mon 30 Nov 09:00 univ-a reports a defect");
    has("Mon 30 Nov 09:00 univ-a APPLIED mod_quiz-timer-drift@1.0.1; 4 checks passed");
    has("Tue 1 Dec 20:00 univ-b notice posted to users: intervention at Tue 1 Dec 22:00 for mod_assign-grading-speedup@2.3.0 + mod_quiz-timer-drift@1.0.1");
    has("Tue 1 Dec 22:00 univ-b APPLIED mod_assign-grading-speedup@2.3.0 + mod_quiz-timer-drift@1.0.1 in maintenance mode, after a full backup; 4 checks passed");
    has("Thu 3 Dec 22:00 univ-b ROLLED BACK mod_quiz-broken-login@1.0.0 automatically: check /login/index.php failed");
    has("Fri 4 Dec 21:00 univ-c notice posted to users: intervention at Sat 5 Dec 21:00");
    has("Sat 5 Dec 21:00 univ-c APPLIED core-session-cleanup@4.5.3 + mod_assign-grading-speedup@2.3.0 + mod_quiz-timer-drift@1.0.1 in maintenance mode, after a full backup");
    assert!(!text.contains("univ-a ROLLED BACK") && !text.contains("univ-c ROLLED BACK"), "{stdout}");

    // Per platform: contract, level-3 procedure and backup, the rollback, the reasons.
    has("Which fixes it gets: level 1, \"on defect report\"");
    has("When and how: level 3, \"maintenance calendar\"");
    has("steps: guard > preflight checks > download > free space > maintenance on > backup > stage > swap > carry new site-local files > reload > upgrade");
    has("> purge caches > validate (in maintenance) > maintenance off > checks");
    has(&format!("backup, taken before any change: {}/univ-c/state/backups/", dir.display()));
    let sha = text.split("sha256 ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or_default();
    assert!(sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()), "backup sha256 {sha:?}");
    has("the site runs byte for byte the code it ran before (same tree digest)");
    for code in [
        "[skipped: not-reported]",
        "[skipped: component-not-selected]",
        "[skipped: class-not-allowed]",
        "[skipped: halted]",
        "[waiting-validation: not-alpha-validated]",
        "[waiting-validation: insufficient-datasets]",
    ] {
        has(code);
    }
    // The control plane: the fix request filed from univ-a, linked to its fix at publication;
    // every receipt stored; the rollback receipt halting the broken bundle for everyone.
    has("Mon 30 Nov 09:00 univ-a reports a defect from its platform (`palier-agent request-fix");
    has("the control plane files it as FR-1");
    has("Thu 3 Dec 22:00 control plane halts mod_quiz-broken-login@1.0.0 in the signed metadata (auto-halt: rolled back on univ-b)");
    has("fix request FR-1 from univ-a (mod_quiz): \"Quiz timers drift when the server clock jumps\" -> mod_quiz-timer-drift@1.0.1");
    has("auto-halt: mod_quiz-broken-login@1.0.0");
    has("lists 3 of 3 platforms");
    has("serves univ-b's coming interventions and notices (iCalendar");
    let receipts = text.split("receipts: ").nth(1).unwrap_or_default();
    let mut numbers = receipts.split(' ').filter_map(|w| w.parse::<u32>().ok());
    let (stored, written) = (numbers.next().unwrap(), numbers.next().unwrap());
    assert!(stored == 4 && stored == written, "four interventions, four receipts stored: {receipts:.60}");
    has("SUMMARY");
    has("went live on univ-a on Mon 30 Nov 09:00, univ-b on Tue 1 Dec 22:00, univ-c on Sat 5 Dec 21:00");
    has(&format!("Kept {}.", dir.display()));
    has("The dashboard was at http://127.0.0.1:");

    // The folder holds what the story says happened.
    let hooks = std::fs::read_to_string(dir.join("univ-c/hooks.log")).unwrap();
    let order: Vec<&str> = hooks.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(order, ["notice", "guard", "maintenance_on", "backup", "reload", "upgrade", "purge_caches", "validate", "maintenance_off"]);
    let backups: Vec<_> = std::fs::read_dir(dir.join("univ-c/state/backups")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(backups.len(), 1);
    assert!(backups[0].join("dataroot.tar").is_file());
    assert!(!dir.join("univ-c/moodledata/climaintenance.html").exists(), "maintenance mode is off again");
    for p in ["univ-a", "univ-b", "univ-c"] {
        assert!(Path::new(&dir.join(p).join("agent.toml")).is_file());
    }
}

/// `--keep` leaves the control plane running after the demo exits: the dashboard answers at
/// the address the demo printed, and the process it named stops when asked.
#[test]
fn keep_leaves_the_control_plane_running() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = palier(&["demo", "--keep", "--dir", dir.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "stderr: {}\nstdout:\n{stdout}", String::from_utf8_lossy(&out.stderr));
    // The last lines: what was kept and how to reach it.
    let after = |label: &str| stdout.lines().rev().find_map(|l| l.trim().strip_prefix(label)).unwrap_or_else(|| panic!("no {label:?} in:\n{stdout}")).trim().to_owned();
    let dashboard = after("dashboard:");
    let pid: i32 = after("stop it:").strip_prefix("kill ").unwrap().parse().unwrap();
    let _stop = Stop(pid);
    let addr = dashboard.strip_prefix("http://").unwrap().trim_end_matches('/');
    let page = http_get(addr, "/");
    assert!(page.starts_with("HTTP/1.1 200") || page.starts_with("HTTP/1.0 200"), "{page:.200}");
    for p in ["univ-a", "univ-b", "univ-c", "mod_quiz-broken-login"] {
        assert!(page.contains(p), "{p} not on the dashboard");
    }
    let healthz = http_get(addr, "/healthz");
    assert!(healthz.contains(" 200 "), "{healthz:.200}");
    // The commands to try use the built agent beside the demo's binary, never `cargo run`
    // (minutes of compiling), and work as printed.
    assert!(!stdout.contains("cargo run"), "{stdout}");
    let plan = after("plan:");
    let argv: Vec<&str> = plan.split_whitespace().collect();
    let agent = Path::new(env!("CARGO_BIN_EXE_palier")).with_file_name("palier-agent");
    assert_eq!(Path::new(argv[0]), agent, "{plan}");
    if agent.exists() {
        let out = Command::new(argv[0]).args(&argv[1..]).env_remove("PALIER_LOG").output().unwrap();
        assert!(out.status.success(), "{plan}: {}", String::from_utf8_lossy(&out.stderr));
    } else {
        assert!(stdout.contains("build it:   cargo build --release -p palier-agent"), "{stdout}");
    }
    // univ-b's calendar feed answers at the URL printed, with its secret.
    let calendar = after("calendar:");
    let path = calendar.strip_prefix(&format!("http://{addr}")).unwrap();
    assert!(path.starts_with("/calendar/univ-b/") && path.ends_with(".ics"), "{calendar}");
    let feed = http_get(addr, path);
    assert!(feed.contains(" 200 ") && feed.contains("BEGIN:VCALENDAR"), "{feed:.300}");
}

/// Stops the kept control plane at the end of the test, pass or fail.
struct Stop(i32);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

#[test]
fn a_folder_that_is_not_empty_is_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let out = palier(&["demo", "--dir", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(std::fs::read_to_string(tmp.path().join("precious.txt")).unwrap(), "keep me");
}

#[test]
fn no_command_is_bad_usage() {
    assert_eq!(palier(&[]).status.code(), Some(2));
    assert_eq!(palier(&["demo", "--no-such-option"]).status.code(), Some(2));
}
