//! Applying bundles to a fixture Moodle site through the real binaries: each stability
//! level's procedure and hook order, automatic rollback of a broken bundle, a failing
//! backup, a hanging hook, a rollback by hand, and SIGKILL at random instants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{World, bin, stderr};
use palier_fixture::{FATAL_MARKER, HookBehaviour, HookName, Hooks, MoodleServer, TreeOptions, generate, tree_hash, write_hook_scripts};

/// A world with a generated Moodle site, its HTTP server and logging hook scripts.
struct Site {
    w: World,
    server: MoodleServer,
    hooks: Hooks,
}

impl Site {
    fn new(files: usize) -> Site {
        let w = World::new();
        let dirroot = w.path("site/dirroot");
        std::fs::remove_dir_all(&dirroot).unwrap();
        let dataroot = w.path("site/dataroot");
        generate(&dirroot, &TreeOptions { files, bytes: files as u64 * 2_000, dataroot: dataroot.clone(), ..TreeOptions::default() }).unwrap();
        let server = MoodleServer::start(dirroot, dataroot);
        let hooks = write_hook_scripts(&w.path("hooks"), &w.path("hooks.log")).unwrap();
        Site { w, server, hooks }
    }

    fn dirroot(&self) -> PathBuf {
        self.w.path("site/dirroot")
    }

    fn hash(&self) -> String {
        tree_hash(&self.dirroot()).unwrap()
    }

    /// An agent config at these levels, with the fixture's wwwroot and hooks.
    fn config(&self, improvement: u8, stability: u8, extra_stability: &str) -> PathBuf {
        let path = self.w.agent_config("univ-a", improvement, stability);
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("wwwroot = \"http://127.0.0.1:9\"", &format!("wwwroot = \"{}\"", self.server.url()));
        let hooks_start = text.find("[hooks]").unwrap();
        let mut text = text[..hooks_start].to_owned();
        text = text.replace("[stability]\n", &format!("[stability]\n{extra_stability}"));
        let names: &[HookName] = match stability {
            1 => &[HookName::Guard, HookName::Upgrade, HookName::PurgeCaches],
            2 => &[HookName::Guard, HookName::Notice, HookName::Upgrade, HookName::PurgeCaches],
            _ => &HookName::ALL,
        };
        text.push_str(&format!("[hooks]\n{}timeout = \"3s\"\n", self.hooks.toml_lines(names)));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Publish a bundle whose files are `(path, content)`, validated alpha + 2 datasets.
    fn publish(&self, id: &str, class_impact: (&str, &str), files: &[(&str, &str)], extra: &str) {
        let dir = self.w.path(&format!("bundles/{id}"));
        // A bundle changes only its component's folder: files outside mod/quiz are core's.
        let component = if files.iter().all(|(p, _)| p.starts_with("mod/quiz/")) { "mod_quiz" } else { "core" };
        for (p, c) in files {
            let f = dir.join("files").join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, c).unwrap();
        }
        std::fs::write(
            dir.join("bundle.toml"),
            format!(
                "id = \"{id}\"\nversion = \"1.0.0\"\ncomponent = \"{component}\"\nclass = \"{}\"\ndata_impact = \"{}\"\nsummary = \"bundle {id}\"\norigin = \"report\"\n{extra}",
                class_impact.0, class_impact.1
            ),
        )
        .unwrap();
        let d = dir.to_str().unwrap();
        self.w.server(&["bundle", "build", "--manifest", &format!("{d}/bundle.toml"), "--source", &format!("{d}/files"), "--out", &format!("{d}.tar.gz")]);
        self.w.server(&["publish", "--repo", "repo", &format!("{d}.tar.gz")]);
        let b = format!("{id}@1.0.0");
        self.w.server(&["validate", "--repo", "repo", &b, "--alpha"]);
        self.w.server(&["validate", "--repo", "repo", &b, "--dataset", "big-univ"]);
        self.w.server(&["validate", "--repo", "repo", &b, "--dataset", "small-school"]);
    }

    fn agent(&self, args: &[&str]) -> Output {
        self.w.run("palier-agent", args)
    }

    fn run_once(&self, config: &Path, now: &str) -> String {
        let out = self.agent(&["run", "--once", "--config", config.to_str().unwrap(), "--now", now]);
        assert!(out.status.success(), "run --once: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A cycle whose intervention fails or is rolled back: exit 1, one line saying why.
    fn run_once_refused(&self, config: &Path, now: &str, needle: &str) -> String {
        let out = self.agent(&["run", "--once", "--config", config.to_str().unwrap(), "--now", now]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "run --once should exit 1: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "expected {needle:?} in {err}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn last_receipt(&self) -> serde_json::Value {
        let dir = self.w.path("state-univ-a/receipts");
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        serde_json::from_slice(&std::fs::read(names.last().unwrap()).unwrap()).unwrap()
    }
}

const QUIZ_FIX: &[(&str, &str)] = &[("mod/quiz/view.php", "<?php // fixed quiz view\necho 'quiz';\n"), ("mod/quiz/classes/timer.php", "<?php // timer\n")];
const QUIZ_CHECK: &str = "[[checks]]\npath = \"/mod/quiz/view.php?id=1\"\nexpect_status = 200\nexpect_body = \"fixed quiz view\"\n";

#[test]
fn level_1_applies_at_once_with_checks() {
    let s = Site::new(300);
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, QUIZ_CHECK);
    let config = s.config(3, 1, "");
    let out = s.run_once(&config, "2026-12-01T10:00:00+01:00");
    assert!(out.contains("applied quiz-fix@1.0.0"), "{out}");
    assert!(std::fs::read_to_string(s.dirroot().join("mod/quiz/view.php")).unwrap().contains("fixed quiz view"));
    assert_eq!(s.hooks.order().unwrap(), ["guard", "purge_caches"]);
    let r = s.last_receipt();
    assert_eq!(r["outcome"], "applied");
    let checks: Vec<&str> = r["checks"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(checks, ["/mod/quiz/view.php?id=1", "/", "/login/index.php", "/course/view.php?id=2"]);
    // Installed now: the plan says so, and a second cycle applies nothing.
    let plan = s.agent(&["plan", "--config", config.to_str().unwrap(), "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["bundles"][0]["decision"], "installed");
    assert!(!s.run_once(&config, "2026-12-01T10:05:00+01:00").contains("applied"));
    // status shows the installed bundle and the previous tree.
    let status = s.agent(&["status", "--config", config.to_str().unwrap(), "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["installed"][0]["id"], "quiz-fix");
    assert!(status["previous_tree"].as_str().unwrap().contains(".palier-prev-dirroot-"));
}

#[test]
fn a_broken_bundle_is_rolled_back_and_the_tree_hashes_as_before() {
    let s = Site::new(300);
    let before = s.hash();
    let fatal = format!("<?php // {FATAL_MARKER}\n");
    s.publish("login-break", ("technical", "none"), &[("login/index.php", fatal.as_str())], "");
    let config = s.config(3, 1, "");
    let out = s.run_once_refused(&config, "2026-12-01T10:00:00+01:00", "rolled back (login-break@1.0.0): check /login/index.php failed");
    assert!(out.contains("rolled back login-break@1.0.0"), "{out}");
    assert_eq!(s.hash(), before, "the whole tree is exactly the old one");
    let r = s.last_receipt();
    assert_eq!(r["outcome"], "rolled-back");
    assert!(r["reason"].as_str().unwrap().contains("/login/index.php"), "{r}");
    let recovery = r["recovery_ms"].as_u64().unwrap();
    assert!(recovery < 5 * 60 * 1000, "side effect under the 5-minute recovery budget: {recovery} ms");
    let status = s.agent(&["status", "--config", config.to_str().unwrap(), "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status["installed"].as_array().unwrap().is_empty());
    assert_eq!(status["rolled_back"][0]["bundle"], "login-break@1.0.0");
    // The next cycle does not try the same version again.
    let out = s.run_once(&config, "2026-12-01T10:05:00+01:00");
    assert!(out.contains("login-break@1.0.0 was rolled back on this site") && out.contains("not retried"), "{out}");
    assert_eq!(s.hash(), before);
}

#[test]
fn level_3_runs_maintenance_backup_validate_in_order() {
    let s = Site::new(300);
    s.publish("quiz-fix", ("technical", "minor"), QUIZ_FIX, &format!("upgrade = true\n{QUIZ_CHECK}"));
    let config = s.config(3, 3, "");
    // The config's calendar has the slot of 5 December 21:00-01:00 in Paris, announced 24 h ahead.
    let out = s.run_once(&config, "2026-12-04T20:50:00+01:00");
    assert!(out.contains("notice posted"), "{out}");
    let out = s.run_once(&config, "2026-12-05T21:30:00+01:00");
    assert!(out.contains("applied quiz-fix@1.0.0"), "{out}");
    assert_eq!(
        s.hooks.order().unwrap(),
        ["notice", "guard", "maintenance_on", "backup", "upgrade", "purge_caches", "validate", "maintenance_off"]
    );
    let r = s.last_receipt();
    let backup = &r["backup"];
    assert_eq!(backup["sha256"].as_str().unwrap().len(), 64);
    assert!(backup["bytes"].as_u64().unwrap() > 0);
    assert!(!s.w.path("site/dataroot/climaintenance.html").exists());
}

#[test]
fn level_3_with_a_failing_backup_applies_nothing_and_leaves_maintenance() {
    let s = Site::new(300);
    let before = s.hash();
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, "");
    let config = s.config(3, 3, "");
    s.hooks.set(HookName::Backup, HookBehaviour::Fail).unwrap();
    s.run_once(&config, "2026-12-04T20:50:00+01:00");
    let out = s.run_once_refused(&config, "2026-12-05T21:30:00+01:00", "backup failed, nothing applied");
    assert!(out.contains("failed quiz-fix@1.0.0: backup failed, nothing applied"), "{out}");
    assert_eq!(s.hash(), before);
    assert_eq!(s.hooks.order().unwrap(), ["notice", "guard", "maintenance_on", "backup", "maintenance_off"]);
    assert!(!s.w.path("site/dataroot/climaintenance.html").exists(), "maintenance turned off again");
    assert_eq!(s.last_receipt()["outcome"], "failed");
}

#[test]
fn level_3_outside_the_calendar_applies_nothing() {
    let s = Site::new(100);
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, "");
    let config = s.config(3, 3, "");
    let before = s.hash();
    s.run_once(&config, "2026-12-04T12:00:00+01:00");
    assert_eq!(s.hash(), before);
    assert!(s.hooks.order().unwrap().is_empty());
}

#[test]
fn level_2_applies_only_after_a_notice_in_time() {
    let s = Site::new(100);
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, "");
    let config = s.config(3, 2, "");
    let before = s.hash();
    // Inside Tuesday's window with no notice posted before it: nothing is applied.
    let out = s.run_once(&config, "2026-12-01T22:10:00+01:00");
    assert!(out.contains("no notice"), "{out}");
    assert_eq!(s.hash(), before);
    // Thursday 3 December: the notice is due at 20:00 (a poll at 19:50 may post it), the
    // window opens at 22:00.
    let out = s.run_once(&config, "2026-12-03T19:50:00+01:00");
    assert!(out.contains("notice posted"), "{out}");
    assert!(s.hooks.log_lines().unwrap().iter().any(|l| l.starts_with("notice 130 quiz-fix@1.0.0")), "{:?}", s.hooks.log_lines());
    assert_eq!(s.hash(), before, "a notice changes nothing");
    let out = s.run_once(&config, "2026-12-03T22:01:00+01:00");
    assert!(out.contains("applied quiz-fix@1.0.0"), "{out}");
}

#[test]
fn a_hanging_guard_times_out_and_postpones() {
    let s = Site::new(100);
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, "");
    let config = s.config(3, 1, "");
    s.hooks.set(HookName::Guard, HookBehaviour::Hang).unwrap();
    let before = s.hash();
    let out = s.run_once(&config, "2026-12-01T10:00:00+01:00");
    assert!(out.contains("postponed") && out.contains("timed out"), "{out}");
    assert_eq!(s.hash(), before);
}

#[test]
fn rollback_by_hand_puts_the_previous_tree_back() {
    let s = Site::new(300);
    let before = s.hash();
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, "");
    let config = s.config(3, 1, "");
    s.run_once(&config, "2026-12-01T10:00:00+01:00");
    assert_ne!(s.hash(), before);
    let out = s.agent(&["rollback", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.hash(), before);
    let again = s.agent(&["rollback", "--config", config.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("nothing to roll back"), "{}", stderr(&again));
}

#[test]
fn an_unreachable_repository_is_one_line_and_changes_nothing() {
    let s = Site::new(100);
    let config = s.config(3, 1, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.lines().map(|l| if l.starts_with("repository = ") { "repository = \"http://127.0.0.1:9/repo\"".to_owned() } else { l.to_owned() }).collect::<Vec<_>>().join("\n");
    std::fs::write(&config, text).unwrap();
    let before = s.hash();
    let out = s.agent(&["run", "--once", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim_end().lines().count(), 1, "{}", stderr(&out));
    assert_eq!(s.hash(), before);
}

/// SIGKILL at 30 instants spread over an apply: after each, one `run --once` leaves the
/// tree exactly old or exactly new, and the lock is free again.
#[test]
fn a_kill_at_any_instant_leaves_the_old_or_the_new_tree() {
    let s = Site::new(1500);
    let big: Vec<(String, String)> = (0..400).map(|i| (format!("mod/quiz/gen/f{i}.php"), format!("<?php // generated {i}\n{}", "x".repeat(4000)))).collect();
    let mut files: Vec<(&str, &str)> = big.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    files.extend_from_slice(QUIZ_FIX);
    s.publish("quiz-big", ("technical", "none"), &files, "");
    let config = s.config(3, 1, "");
    let pristine = s.w.path("pristine");
    copy_tree(&s.dirroot(), &pristine);
    let old = s.hash();

    // One undisturbed apply gives the new tree's hash and the apply's duration.
    let started = std::time::Instant::now();
    s.run_once(&config, "2026-12-01T10:00:00+01:00");
    let full = started.elapsed();
    let new = s.hash();
    assert_ne!(old, new);

    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut seen = (0, 0);
    for i in 0..30 {
        reset(&s, &pristine);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = full.mul_f64((seed % 1000) as f64 / 1000.0);
        let mut child = std::process::Command::new(bin("palier-agent"))
            .args(["run", "--once", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"])
            .current_dir(s.w.tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The instant of the kill is what varies; nothing waits on it for correctness.
        std::thread::sleep(at);
        let _ = child.kill();
        let _ = child.wait();
        let out = s.agent(&["run", "--once", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"]);
        assert!(out.status.success(), "kill #{i} at {at:?}: recovery run failed: {}", stderr(&out));
        let h = s.hash();
        assert!(h == old || h == new, "kill #{i} at {at:?}: the tree is neither old nor new");
        if h == old { seen.0 += 1 } else { seen.1 += 1 }
    }
    eprintln!("after 30 kills: {} old, {} new", seen.0, seen.1);
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

/// Back to the pristine site: old tree, no state, no hook log.
fn reset(s: &Site, pristine: &Path) {
    let dirroot = s.dirroot();
    std::fs::remove_dir_all(&dirroot).unwrap();
    copy_tree(pristine, &dirroot);
    let state = s.w.path("state-univ-a");
    for name in ["installed.json", "last.json", "journal.json", "notices.json"] {
        let _ = std::fs::remove_file(state.join(name));
    }
    for e in std::fs::read_dir(dirroot.parent().unwrap()).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with(".palier-") {
            std::fs::remove_dir_all(p).unwrap();
        }
    }
}

#[test]
fn receipts_wait_in_the_outbox_while_the_server_is_down() {
    let s = Site::new(100);
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, "");
    let config = s.config(3, 1, "");
    std::fs::write(s.w.path("token"), "not-a-real-token\n").unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "trusted_root = ",
        &format!("server = \"http://127.0.0.1:9\"\ntoken_file = \"{}\"\ntrusted_root = ", s.w.path("token").display()),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let out = s.run_once(&config, "2026-12-01T10:00:00+01:00");
    assert!(out.contains("applied quiz-fix@1.0.0"), "an unreachable server does not stop the site's work: {out}");
    let outbox: Vec<_> = std::fs::read_dir(s.w.path("state-univ-a/outbox")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(outbox.len(), 1, "the receipt is kept for the next cycle: {outbox:?}");
    // The next cycle tries again and keeps it again.
    s.run_once(&config, "2026-12-01T10:05:00+01:00");
    assert_eq!(std::fs::read_dir(s.w.path("state-univ-a/outbox")).unwrap().count(), 1);
    let out = s.agent(&["request-fix", "--config", config.to_str().unwrap(), "--component", "mod_quiz", "--summary", "timer drifts"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unreachable"), "{}", stderr(&out));
}

/// Unmounts a test filesystem when dropped, even if the test panics.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The disk fills up while staging: the intervention fails, the site is untouched, and the
/// half-written staging tree is gone. The site lives on a 4 MiB tmpfs (the tests run as
/// root, as CI does).
#[test]
fn a_full_disk_during_staging_leaves_the_site_untouched() {
    let s = Site::new(100);
    let small = s.w.path("small");
    std::fs::create_dir_all(&small).unwrap();
    let status = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(&small).status().unwrap();
    assert!(status.success(), "mounting a 4 MiB tmpfs needs root (CI runs as root)");
    let _guard = Mounted(small.clone());
    // Move the site onto the small filesystem.
    let dirroot = small.join("dirroot");
    copy_tree(&s.dirroot(), &dirroot);
    let config = s.config(3, 1, "");
    let text = std::fs::read_to_string(&config).unwrap().replace("dirroot = \"site/dirroot\"", &format!("dirroot = \"{}\"", dirroot.display()));
    std::fs::write(&config, text).unwrap();
    let before = tree_hash(&dirroot).unwrap();
    // 6 MB of new files cannot fit in what is left.
    let big: Vec<(String, String)> = (0..6).map(|i| (format!("mod/quiz/big{i}.php"), "x".repeat(1 << 20))).collect();
    let files: Vec<(&str, &str)> = big.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    s.publish("quiz-big", ("technical", "none"), &files, "");
    s.run_once_refused(&config, "2026-12-01T10:00:00+01:00", "No space left on device");
    assert_eq!(tree_hash(&dirroot).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&small).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, [std::ffi::OsString::from("dirroot")], "the staging tree was removed");
    assert_eq!(s.last_receipt()["outcome"], "failed");
}

#[test]
fn only_keep_previous_trees_are_kept() {
    let s = Site::new(100);
    let config = s.config(3, 1, "");
    let text = std::fs::read_to_string(&config).unwrap().replace("[moodle]\n", "[moodle]\nkeep_previous = 1\n");
    std::fs::write(&config, text).unwrap();
    s.publish("first", ("technical", "none"), &[("mod/quiz/first.php", "<?php // 1\n")], "");
    s.run_once(&config, "2026-12-01T10:00:00+01:00");
    s.publish("second", ("technical", "none"), &[("mod/quiz/second.php", "<?php // 2\n")], "");
    s.run_once(&config, "2026-12-01T11:00:00+01:00");
    let prev: Vec<_> = std::fs::read_dir(s.dirroot().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".palier-prev-"))
        .collect();
    assert_eq!(prev.len(), 1, "{prev:?}");
    // The one kept is the tree from before the second intervention: a rollback goes one step back.
    let out = s.agent(&["rollback", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(s.dirroot().join("mod/quiz/first.php").exists() && !s.dirroot().join("mod/quiz/second.php").exists());
}
