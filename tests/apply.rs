//! Applying bundles to a fixture Moodle site through the real binaries: each stability
//! level's procedure and hook order, automatic rollback of a broken bundle, a failing
//! backup, a hanging hook, a rollback by hand, and SIGKILL at random instants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::site::{Site, copy_tree};
use common::{bin, stderr};
use palier_fixture::{FATAL_MARKER, HookBehaviour, HookName, tree_hash};

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
    assert_eq!(s.hooks.order().unwrap(), ["guard", "reload", "purge_caches"]);
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
    // In plain words: the hold and how to release it, the outcome in the receipts' words.
    let words = String::from_utf8(s.agent(&["status", "--config", config.to_str().unwrap()]).stdout).unwrap();
    assert!(words.contains("held:        login-break@1.0.0 since"), "{words}");
    assert!(words.contains("palier-agent release login-break@1.0.0 --config"), "{words}");
    assert!(words.contains("login-break@1.0.0 rolled back on") && !words.contains("RolledBack"), "{words}");
    // The next cycle does not try the same version again: it is held on this site.
    let out = s.run_once(&config, "2026-12-01T10:05:00+01:00");
    assert!(!out.contains("applied"), "{out}");
    let (_, reason, detail) = decision(&s, &config, "2026-12-01T10:05:00+01:00", "login-break@1.0.0");
    assert_eq!(reason, "held");
    assert!(detail.contains("held on this site since") && detail.contains("palier-agent release login-break@1.0.0"), "{detail}");
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
        ["notice", "guard", "maintenance_on", "backup", "reload", "upgrade", "purge_caches", "validate", "maintenance_off"]
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
    // The agent reads only a token file its owner alone may read.
    std::fs::set_permissions(s.w.path("token"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
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
    // Refused before anything is staged: the signed sizes say it cannot fit.
    s.run_once_refused(&config, "2026-12-01T10:00:00+01:00", "not enough free space for staging on");
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

/// Issue 11, item 6: the backup fills the disk of the state folder. The intervention ends
/// in a `failed` receipt, maintenance is off again, the partial backup is gone and the
/// site is unchanged.
#[test]
fn a_backup_that_fills_the_disk_ends_in_a_failed_receipt_and_no_maintenance() {
    let s = Site::new(100);
    let small = s.w.path("small");
    std::fs::create_dir_all(&small).unwrap();
    let status = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(&small).status().unwrap();
    assert!(status.success(), "mounting a 4 MiB tmpfs needs root (CI runs as root)");
    let _guard = Mounted(small.clone());
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, "");
    let config = s.config(3, 3, "");
    let state = small.join("state");
    let text = std::fs::read_to_string(&config).unwrap().replace("state_dir = \"state-univ-a\"", &format!("state_dir = \"{}\"", state.display()));
    std::fs::write(&config, text).unwrap();
    s.run_once(&config, "2026-12-04T20:50:00+01:00");
    // 5 MB of course files cannot be backed up into what is left.
    let files = s.w.path("site/dataroot/filedir");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("big"), vec![7u8; 5 << 20]).unwrap();
    let before = s.hash();
    let out = s.agent(&["run", "--once", "--config", config.to_str().unwrap(), "--now", "2026-12-05T21:30:00+01:00"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("backup failed, nothing applied"), "{}", stderr(&out));
    assert_eq!(s.hash(), before);
    assert!(!s.w.path("site/dataroot/climaintenance.html").exists(), "maintenance turned off again");
    assert_eq!(s.hooks.order().unwrap(), ["notice", "guard", "maintenance_on", "backup", "maintenance_off"]);
    assert!(!state.join("journal.json").exists());
    let backups: Vec<_> = std::fs::read_dir(state.join("backups")).unwrap().collect();
    assert!(backups.is_empty(), "the partial backup is removed");
    let receipts: Vec<serde_json::Value> =
        std::fs::read_dir(state.join("receipts")).unwrap().map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap()).collect();
    assert!(receipts.iter().any(|r| r["outcome"] == "failed"), "{receipts:?}");
}

/// Issue 11, item 5: with dirroot a symlink (`moodle -> releases/moodle-4.5`), names never
/// nest and `keep_previous` prunes the trees the agent staged; the operator's own release
/// folder stays.
#[test]
fn a_symlinked_dirroot_keeps_its_names_and_prunes_previous_trees() {
    let s = Site::new(100);
    let releases = s.w.path("site/releases");
    std::fs::create_dir_all(&releases).unwrap();
    std::fs::rename(s.dirroot(), releases.join("moodle-4.5")).unwrap();
    std::os::unix::fs::symlink("releases/moodle-4.5", s.dirroot()).unwrap();
    let config = s.config(3, 1, "");
    let text = std::fs::read_to_string(&config).unwrap().replace("[moodle]\n", "[moodle]\nkeep_previous = 1\n");
    std::fs::write(&config, text).unwrap();
    for (i, name) in ["first", "second", "third", "fourth"].iter().enumerate() {
        s.publish(name, ("technical", "none"), &[(&format!("mod/quiz/{name}.php"), "<?php // fix\n")], "");
        let out = s.run_once(&config, &format!("2026-12-01T1{i}:00:00+01:00"));
        assert!(out.contains(&format!("applied {name}@1.0.0")), "{out}");
    }
    let mut names: Vec<String> = std::fs::read_dir(&releases).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert!(names.iter().all(|n| n == "moodle-4.5" || (n.starts_with(".palier-stage-dirroot-") && n.matches("palier").count() == 1)), "{names:?}");
    assert_eq!(names.len(), 3, "the live tree, one previous tree, the operator's folder: {names:?}");
    let out = s.agent(&["rollback", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(s.dirroot().join("mod/quiz/third.php").exists() && !s.dirroot().join("mod/quiz/fourth.php").exists());
}

/// The decision and reason of `key` in `plan --json`, with its detail.
fn decision(s: &Site, config: &Path, now: &str, key: &str) -> (String, String, String) {
    let out = s.agent(&["plan", "--config", config.to_str().unwrap(), "--json", "--now", now]);
    assert!(out.status.success(), "plan: {}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = plan["bundles"].as_array().unwrap().iter().find(|d| format!("{}@{}", d["id"].as_str().unwrap(), d["version"].as_str().unwrap()) == key).unwrap().clone();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    (text(&d["decision"]), text(&d["reason"]), text(&d["detail"]))
}

/// A rollback by hand holds the version: the next cycle does not apply it again, `plan`
/// says `held` with since when and why, the older good version is eligible again (a held
/// version supersedes nothing), `release` lifts the hold and `hold` sets one by hand.
#[test]
fn a_rollback_by_hand_holds_the_version_until_released() {
    let s = Site::new(200);
    let before = s.hash();
    s.publish_version("quiz-fix", "1.0.0", ("technical", "none"), QUIZ_FIX, "");
    s.publish_version("quiz-fix", "1.0.1", ("technical", "none"), &[("mod/quiz/view.php", "<?php // fixed quiz view 1.0.1\n")], "");
    let config = s.config(3, 1, "");
    let c = config.to_str().unwrap();
    let now = "2026-12-01T10:00:00+01:00";
    assert_eq!(decision(&s, &config, now, "quiz-fix@1.0.0").1, "superseded");
    let out = s.run_once(&config, now);
    assert!(out.contains("applied quiz-fix@1.0.1"), "{out}");
    let applied = s.hash();

    let out = s.agent(&["rollback", "--config", c]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.hash(), before);
    let (kind, reason, detail) = decision(&s, &config, "2026-12-01T10:05:00+01:00", "quiz-fix@1.0.1");
    assert_eq!((kind.as_str(), reason.as_str()), ("skipped", "held"));
    assert!(detail.contains("held on this site since") && detail.contains("rolled back by hand"), "{detail}");
    assert_eq!(decision(&s, &config, "2026-12-01T10:05:00+01:00", "quiz-fix@1.0.0").0, "eligible", "a held version supersedes nothing");

    // plan and run agree: the next cycle applies 1.0.0, never 1.0.1.
    let out = s.run_once(&config, "2026-12-01T10:05:00+01:00");
    assert!(out.contains("applied quiz-fix@1.0.0") && !out.contains("applied quiz-fix@1.0.1"), "{out}");
    assert_ne!(s.hash(), applied);

    let out = s.agent(&["release", "--config", c, "quiz-fix@1.0.1"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("released quiz-fix@1.0.1"), "{}", stderr(&out));
    assert_eq!(decision(&s, &config, "2026-12-01T10:10:00+01:00", "quiz-fix@1.0.1").0, "eligible");
    let again = s.agent(&["release", "--config", c, "quiz-fix@1.0.1"]);
    assert!(again.status.success() && String::from_utf8_lossy(&again.stdout).contains("was not held"), "releasing twice changes nothing");

    let out = s.agent(&["hold", "--config", c, "quiz-fix@1.0.1", "--reason", "waiting for the exam week to end"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, reason, detail) = decision(&s, &config, "2026-12-01T10:10:00+01:00", "quiz-fix@1.0.1");
    assert_eq!(reason, "held");
    assert!(detail.contains("waiting for the exam week to end") && detail.contains("palier-agent release quiz-fix@1.0.1"), "{detail}");
    let out = s.run_once(&config, "2026-12-01T10:10:00+01:00");
    assert!(!out.contains("applied"), "{out}");
}

/// Two bundles due together, one of which cannot be staged (it writes a file where the site
/// has a folder): the set fails to stage, each is then staged alone, the good one is
/// applied and the culprit held with a back-off that `plan` shows.
#[test]
fn a_bundle_that_cannot_be_staged_is_held_and_the_others_are_applied() {
    let s = Site::new(200);
    std::fs::create_dir_all(s.dirroot().join("mod/forum/blocker/inside")).unwrap();
    std::fs::write(s.dirroot().join("mod/forum/blocker/inside/keep.txt"), "site file\n").unwrap();
    s.publish("bad-fix", ("technical", "none"), &[("mod/forum/blocker", "a file where the site has a folder\n")], "");
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, "");
    let config = s.config(3, 1, "");
    let now = "2026-12-01T10:00:00+01:00";
    let out = s.run_once(&config, now);
    assert!(out.contains("could not stage bad-fix@1.0.0, quiz-fix@1.0.0 together"), "{out}");
    assert!(out.contains("held bad-fix@1.0.0 until") && out.contains("it cannot be staged"), "{out}");
    assert!(out.contains("applied quiz-fix@1.0.0"), "{out}");
    assert!(std::fs::read_to_string(s.dirroot().join("mod/quiz/view.php")).unwrap().contains("fixed quiz view"));
    assert!(s.dirroot().join("mod/forum/blocker/inside/keep.txt").exists());
    let (kind, reason, detail) = decision(&s, &config, "2026-12-01T10:05:00+01:00", "bad-fix@1.0.0");
    assert_eq!((kind.as_str(), reason.as_str()), ("skipped", "held"));
    assert!(detail.contains("cannot be staged") && detail.contains("retried after"), "{detail}");
    // After the back-off (15 minutes for a first failure) it is tried again, alone, and held longer.
    assert_eq!(decision(&s, &config, "2026-12-01T10:20:00+01:00", "bad-fix@1.0.0").0, "eligible");
    let out = s.agent(&["run", "--once", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:20:00+01:00"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr(&out).contains("staging failed"), "{}", stderr(&out));
    let (_, _, detail) = decision(&s, &config, "2026-12-01T10:21:00+01:00", "bad-fix@1.0.0");
    assert!(detail.contains("failed once") && detail.contains("retried after"), "{detail}");
    let out = s.run_once(&config, "2026-12-01T10:25:00+01:00");
    assert!(!out.contains("(receipt"), "the same set waits for its back-off, no intervention: {out}");
}

/// File ownership: `publish` refuses a bundle writing a path another active bundle of a
/// different id writes; once that one is yanked it can be published, but a site where the
/// first is installed refuses it, naming both.
#[test]
fn two_bundles_writing_the_same_file_are_refused_at_publish_and_on_the_site() {
    let s = Site::new(200);
    s.publish("quiz-a", ("technical", "none"), &[("mod/quiz/view.php", "<?php // quiz-a\n")], "");
    let config = s.config(3, 1, "");
    let out = s.run_once(&config, "2026-12-01T10:00:00+01:00");
    assert!(out.contains("applied quiz-a@1.0.0"), "{out}");

    let refused = s.try_publish("quiz-b", "1.0.0", ("technical", "none"), &[("mod/quiz/view.php", "<?php // quiz-b\n")], "");
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused);
    assert!(err.contains("quiz-a@1.0.0 and quiz-b@1.0.0 both write or delete mod/quiz/view.php") && err.contains("nothing published"), "{err}");
    // Naming the other in `after` carries both fixes: accepted.
    let after = s.try_publish("quiz-c", "1.0.0", ("technical", "none"), &[("mod/quiz/view.php", "<?php // quiz-a and c\n")], "after = [\"quiz-a >=1.0.0\"]\n");
    assert!(after.status.success(), "{}", stderr(&after));

    s.w.server(&["yank", "--repo", "repo", "quiz-a@1.0.0", "--reason", "replaced"]);
    s.w.server(&["yank", "--repo", "repo", "quiz-c@1.0.0", "--reason", "replaced"]);
    s.publish("quiz-b", ("technical", "none"), &[("mod/quiz/view.php", "<?php // quiz-b\n")], "");
    let (kind, reason, detail) = decision(&s, &config, "2026-12-01T10:05:00+01:00", "quiz-b@1.0.0");
    assert_eq!((kind.as_str(), reason.as_str()), ("skipped", "file-conflict"));
    assert!(detail.contains("quiz-a@1.0.0") && detail.contains("quiz-b@1.0.0") && detail.contains("mod/quiz/view.php"), "{detail}");
    let out = s.run_once(&config, "2026-12-01T10:05:00+01:00");
    assert!(out.contains("quiz-b@1.0.0: refused: quiz-a@1.0.0 and quiz-b@1.0.0 both write"), "{out}");
    assert!(!out.contains("applied quiz-b"), "{out}");
    assert!(std::fs::read_to_string(s.dirroot().join("mod/quiz/view.php")).unwrap().contains("quiz-a"));
}

/// A bundle built on another (`after`) carries both fixes in a shared file; a newer version
/// of the first must not write over it, or the installed record would list a bundle whose
/// file is no longer live: the site refuses it, naming both.
#[test]
fn a_newer_version_does_not_overwrite_a_bundle_built_on_the_older_one() {
    let s = Site::new(200);
    s.publish("quiz-a", ("technical", "none"), &[("mod/quiz/view.php", "<?php // quiz-a\n")], "");
    s.publish("quiz-b", ("technical", "none"), &[("mod/quiz/view.php", "<?php // quiz-a and quiz-b\n")], "after = [\"quiz-a >=1.0.0\"]\n");
    let config = s.config(3, 1, "");
    let out = s.run_once(&config, "2026-12-01T10:00:00+01:00");
    assert!(out.contains("applied quiz-a@1.0.0, quiz-b@1.0.0"), "{out}");
    s.publish_version("quiz-a", "1.0.1", ("technical", "none"), &[("mod/quiz/view.php", "<?php // quiz-a 1.0.1\n")], "");
    let (_, reason, detail) = decision(&s, &config, "2026-12-01T10:05:00+01:00", "quiz-a@1.0.1");
    assert_eq!(reason, "file-conflict", "{detail}");
    assert!(detail.contains("quiz-b@1.0.0 and quiz-a@1.0.1 both write or delete mod/quiz/view.php"), "{detail}");
    let out = s.run_once(&config, "2026-12-01T10:05:00+01:00");
    assert!(!out.contains("applied"), "{out}");
    assert!(std::fs::read_to_string(s.dirroot().join("mod/quiz/view.php")).unwrap().contains("quiz-a and quiz-b"));
}
