//! The agent's Moodle-safe procedure on the fixture site through the real binaries, in
//! both code layouts (4.x, and 5.1+ with its `public/` web root): a database change runs in
//! maintenance after a backup at every stability level (and is never applied without a
//! backup hook), the one rollback procedure (maintenance first, restore, reload, caches,
//! checks after; a refusal when the database cannot be restored), the reload hook in front
//! of an opcode cache, the watch paused by maintenance, preflight, whose files, and the
//! site's own files carried forward.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::site::Site;
use common::stderr;
use palier_fixture::{FATAL_MARKER, HookName, Layout, tree_hash};

const LAYOUTS: [Layout; 2] = [Layout::Classic, Layout::Public];
const NOW: &str = "2026-12-01T10:00:00+01:00";

fn quiz_fix(layout: Layout) -> Vec<(String, String)> {
    vec![
        (layout.place("mod/quiz/view.php"), "<?php // fixed quiz view\necho 'quiz';\n".to_owned()),
        (layout.place("mod/quiz/classes/timer.php"), "<?php // timer\n".to_owned()),
    ]
}

fn refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect()
}

/// The config at these levels with the maintenance, backup and restore hooks added.
fn with_backup(s: &Site, config: &Path) {
    let lines = s.hooks.toml_lines(&[HookName::MaintenanceOn, HookName::MaintenanceOff, HookName::Backup, HookName::Restore]);
    let text = std::fs::read_to_string(config).unwrap().replace("[hooks]\n", &format!("[hooks]\n{lines}"));
    std::fs::write(config, text).unwrap();
}

fn forget_hooks(s: &Site) {
    let _ = std::fs::remove_file(&s.hooks.log);
}

/// The decision, reason and detail of `key` in `plan --json`.
fn decision(s: &Site, config: &Path, now: &str, key: &str) -> (String, String, String) {
    let out = s.agent(&["plan", "--config", config.to_str().unwrap(), "--json", "--now", now]);
    assert!(out.status.success(), "plan: {}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = plan["bundles"].as_array().unwrap().iter().find(|d| format!("{}@{}", d["id"].as_str().unwrap(), d["version"].as_str().unwrap()) == key).unwrap().clone();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    (text(&d["decision"]), text(&d["reason"]), text(&d["detail"]))
}

/// The names of a receipt's steps, in order.
fn steps(r: &serde_json::Value) -> Vec<String> {
    r["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect()
}

fn position(steps: &[String], name: &str) -> usize {
    steps.iter().position(|s| s == name).unwrap_or_else(|| panic!("no step {name:?} in {steps:?}"))
}

/// Whether the tests run as root: a file they create is root's.
fn as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::metadata(f.path()).unwrap().uid() == 0
}

/// The receipt of the last rollback (by hand or by the watch): `<intervention>-rollback`.
fn rollback_receipt(s: &Site) -> serde_json::Value {
    let dir = s.w.path("state-univ-a/receipts");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().ends_with("-rollback.json")).collect();
    names.sort();
    serde_json::from_slice(&std::fs::read(names.last().expect("a rollback receipt")).unwrap()).unwrap()
}

fn rollback(s: &Site, config: &Path) -> std::process::Output {
    s.agent(&["rollback", "--config", config.to_str().unwrap()])
}

/// Issue 13, item 2: a bundle that bumps a plugin's `version.php` changes the database.
/// At stability 1 without a backup hook it is never applied (`backup-missing`); with one it
/// runs in maintenance after the backup, upgrade included; its hand rollback turns
/// maintenance on first, restores the backup, reloads PHP, purges the caches and checks.
#[test]
fn a_database_change_at_stability_1_runs_in_maintenance_after_a_backup_and_its_rollback_restores_it() {
    for layout in LAYOUTS {
        let s = Site::with_layout(200, layout);
        let before = s.hash();
        let dataroot = s.w.path("site/dataroot");
        let data_before = tree_hash(&dataroot).unwrap();
        let version = layout.place("mod/quiz/version.php");
        let bumped = "<?php\ndefined('MOODLE_INTERNAL') || die();\n$plugin->version = 2025100601;\n$plugin->component = 'mod_quiz';\n";
        s.publish("quiz-version", ("technical", "minor"), &[(version.as_str(), bumped)], "");
        let config = s.config(3, 1, "");

        let (kind, reason, detail) = decision(&s, &config, NOW, "quiz-version@1.0.0");
        assert_eq!((kind.as_str(), reason.as_str()), ("needs-scheduled-intervention", "backup-missing"), "{layout:?}: {detail}");
        assert!(detail.contains(&version) && detail.contains("no backup hook"), "{detail}");
        let out = s.run_once(&config, NOW);
        assert!(!out.contains("applied"), "{layout:?}: never applied unprotected: {out}");
        assert_eq!(s.hash(), before);
        assert!(s.hooks.order().unwrap().is_empty());

        with_backup(&s, &config);
        assert_eq!(decision(&s, &config, NOW, "quiz-version@1.0.0").0, "eligible");
        let out = s.run_once(&config, NOW);
        assert!(out.contains("applied quiz-version@1.0.0"), "{layout:?}: {out}");
        assert_eq!(s.hooks.order().unwrap(), ["guard", "maintenance_on", "backup", "reload", "upgrade", "purge_caches", "maintenance_off"], "{layout:?}");
        let r = s.last_receipt();
        assert_eq!(r["backup"]["sha256"].as_str().unwrap().len(), 64);
        assert!(dataroot.join("palier-fixture-upgrades").exists(), "the upgrade ran");
        assert!(!dataroot.join("climaintenance.html").exists());

        forget_hooks(&s);
        let out = rollback(&s, &config);
        assert!(out.status.success(), "{layout:?}: {}", stderr(&out));
        assert_eq!(s.hooks.order().unwrap(), ["maintenance_on", "restore", "reload", "purge_caches", "maintenance_off"], "{layout:?}");
        assert_eq!(s.hash(), before, "{layout:?}: the old tree");
        assert_eq!(tree_hash(&dataroot).unwrap(), data_before, "{layout:?}: the database restored");
        assert!(!dataroot.join("climaintenance.html").exists());
        let r = rollback_receipt(&s);
        assert_eq!(r["outcome"], "rolled-back");
        let st = steps(&r);
        assert!(position(&st, "maintenance on (rollback)") < position(&st, "rollback"), "maintenance before the old code goes live: {st:?}");
        assert!(position(&st, "restore backup") < position(&st, "checks after the rollback"), "{st:?}");
        assert!(!r["checks"].as_array().unwrap().is_empty(), "the smoke checks ran after the rollback");
    }
}

/// Issue 13, item 2: a rollback of a database change whose backup is gone refuses, exit 1,
/// and says on stderr and in the receipt that the database holds newer plugin versions
/// than the old code; nothing moves.
#[test]
fn a_rollback_that_cannot_restore_the_database_refuses_and_says_so() {
    let s = Site::new(200);
    s.publish("quiz-upgrade", ("technical", "minor"), &refs(&quiz_fix(Layout::Classic)), "upgrade = true\n");
    let config = s.config(3, 1, "");
    with_backup(&s, &config);
    let out = s.run_once(&config, NOW);
    assert!(out.contains("applied quiz-upgrade@1.0.0"), "{out}");
    let applied = s.hash();
    std::fs::remove_dir_all(s.w.path("state-univ-a/backups")).unwrap();
    let out = rollback(&s, &config);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("the database holds newer plugin versions than the old code") && err.contains("is gone"), "{err}");
    assert_eq!(s.hash(), applied, "nothing moved");
    let r = rollback_receipt(&s);
    assert_eq!(r["outcome"], "failed");
    assert!(r["reason"].as_str().unwrap().contains("the database holds newer plugin versions than the old code"), "{r}");
    let status = String::from_utf8(s.agent(&["status", "--config", config.to_str().unwrap()]).stdout).unwrap();
    assert!(status.contains("newer plugin versions"), "{status}");
}

/// Issue 13, item 3: a hand rollback at level 3 turns maintenance on before the old code
/// goes live, reloads PHP, purges the caches, and runs the smoke checks after.
#[test]
fn a_hand_rollback_at_level_3_turns_maintenance_on_first_and_checks_after() {
    for layout in LAYOUTS {
        let s = Site::with_layout(200, layout);
        let before = s.hash();
        s.publish("quiz-fix", ("technical", "none"), &refs(&quiz_fix(layout)), "");
        let config = s.config(3, 3, "");
        s.run_once(&config, "2026-12-04T20:50:00+01:00");
        let out = s.run_once(&config, "2026-12-05T21:30:00+01:00");
        assert!(out.contains("applied quiz-fix@1.0.0"), "{out}");
        forget_hooks(&s);
        let out = rollback(&s, &config);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(s.hooks.order().unwrap(), ["maintenance_on", "reload", "purge_caches", "maintenance_off"]);
        assert_eq!(s.hash(), before);
        let st = steps(&rollback_receipt(&s));
        assert!(position(&st, "maintenance on (rollback)") < position(&st, "rollback"), "{st:?}");
        assert!(position(&st, "maintenance off") < position(&st, "checks after the rollback"), "{st:?}");
    }
}

/// Issue 13, item 4: maintenance turned on by hand during the watch of a good fix pauses
/// the watch (status and the cycle say so); nothing is rolled back for it. Once maintenance
/// is off the watch resumes, extended by the pause, and still catches a failure.
#[test]
fn the_watch_pauses_while_the_site_is_in_a_maintenance_it_did_not_start() {
    for layout in LAYOUTS {
        let s = Site::with_layout(200, layout);
        s.publish("quiz-fix", ("technical", "none"), &refs(&quiz_fix(layout)), "");
        let config = s.config(3, 1, "");
        let c = config.to_str().unwrap();
        assert!(s.run_once(&config, NOW).contains("applied quiz-fix@1.0.0"));
        let applied = s.hash();
        let maintenance = s.w.path("site/dataroot/climaintenance.html");
        std::fs::write(&maintenance, "<h1>Site maintenance</h1>").unwrap();
        let out = s.run_once(&config, "2026-12-01T10:05:00+01:00");
        assert!(out.contains("the watch of quiz-fix@1.0.0 is paused") && !out.contains("rolled back quiz-fix"), "{layout:?}: {out}");
        assert_eq!(s.hash(), applied);
        let words = String::from_utf8(s.agent(&["status", "--config", c]).stdout).unwrap();
        assert!(words.contains("watching:    paused since") && words.contains("maintenance mode that palier did not start"), "{words}");
        let status: serde_json::Value = serde_json::from_slice(&s.agent(&["status", "--config", c, "--json"]).stdout).unwrap();
        assert!(status["watch_paused"]["reason"].as_str().unwrap().contains("climaintenance.html"), "{status}");

        // Still in maintenance a cycle later: still paused, nothing preflighted or applied.
        assert!(s.run_once(&config, "2026-12-01T10:10:00+01:00").contains("is paused"));
        std::fs::remove_file(&maintenance).unwrap();
        // 10:20 is past the watch's first end (10:15), but it was paused 15 minutes.
        let out = s.run_once(&config, "2026-12-01T10:20:00+01:00");
        assert!(!out.contains("rolled back quiz-fix") && !out.contains("paused"), "{out}");
        let broken = s.dirroot().join(layout.place("login/index.php"));
        std::fs::write(&broken, format!("<?php // {FATAL_MARKER}\n")).unwrap();
        let out = s.agent(&["run", "--once", "--config", c, "--now", "2026-12-01T10:25:00+01:00"]);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr(&out).contains("failed during the watch"), "{layout:?}: {}", stderr(&out));
    }
}

/// Issue 13, item 9: a site that already fails its smoke checks (or is in maintenance)
/// postpones the intervention: receipt `postponed` naming the check and its answer, no
/// hold, no blame, nothing changed; once the site is well it is applied.
#[test]
fn a_site_that_already_fails_its_checks_postpones_without_blame() {
    let s = Site::new(200);
    let login = s.dirroot().join("login/index.php");
    let good_login = std::fs::read(&login).unwrap();
    std::fs::write(&login, format!("<?php // {FATAL_MARKER}\n")).unwrap();
    let broken = s.hash();
    s.publish("quiz-fix", ("technical", "none"), &refs(&quiz_fix(Layout::Classic)), "");
    let config = s.config(3, 1, "");
    let out = s.run_once(&config, NOW);
    assert!(out.contains("postponed quiz-fix@1.0.0: the site already fails its checks before anything changed: check /login/index.php failed: status 500"), "{out}");
    assert_eq!(s.hash(), broken);
    assert_eq!(s.hooks.order().unwrap(), ["guard"]);
    let r = s.last_receipt();
    assert_eq!(r["outcome"], "postponed");
    assert_eq!(decision(&s, &config, "2026-12-01T10:05:00+01:00", "quiz-fix@1.0.0").0, "eligible", "no hold, no back-off");

    std::fs::write(&login, &good_login).unwrap();
    std::fs::write(s.w.path("site/dataroot/climaintenance.html"), "<h1>Site maintenance</h1>").unwrap();
    let out = s.run_once(&config, "2026-12-01T10:05:00+01:00");
    assert!(out.contains("postponed quiz-fix@1.0.0: the site is in maintenance mode"), "{out}");
    std::fs::remove_file(s.w.path("site/dataroot/climaintenance.html")).unwrap();
    assert!(s.run_once(&config, "2026-12-01T10:10:00+01:00").contains("applied quiz-fix@1.0.0"));
}

/// Issue 13, item 7: behind a PHP opcode cache that never revalidates, the checks would
/// see the old code; the `reload` hook runs after the swap, so the broken bundle is seen,
/// rolled back and never committed.
#[test]
fn a_broken_bundle_behind_an_opcode_cache_is_rolled_back_never_committed() {
    for layout in LAYOUTS {
        let s = Site::with_layout(200, layout);
        let before = s.hash();
        s.server.opcache(s.hooks.reload_file());
        // Visitors have the old login page (and the quiz library it includes) compiled.
        let addr = s.server.local_addr().to_string();
        assert!(common::http_get(&addr, "/login/index.php").starts_with("HTTP/1.1 200"));
        let fatal = format!("<?php // {FATAL_MARKER}\n");
        s.publish("login-break", ("technical", "none"), &[(layout.place("login/index.php").as_str(), fatal.as_str())], "");
        let config = s.config(3, 1, "");
        s.run_once_refused(&config, NOW, "rolled back (login-break@1.0.0): check /login/index.php failed");
        assert_eq!(s.hash(), before);
        let order = s.hooks.order().unwrap();
        assert_eq!(order.iter().filter(|h| *h == "reload").count(), 2, "after the swap and after the swap back: {order:?}");
        assert!(common::http_get(&addr, "/login/index.php").starts_with("HTTP/1.1 200"), "the old code again, PHP reloaded");
    }
}

/// Issue 13, item 11: config.php edited after an apply and a local/ plugin installed since
/// survive a rollback (the live copy is carried into the old tree).
#[test]
fn config_php_and_a_local_plugin_added_after_an_apply_survive_the_rollback() {
    for layout in LAYOUTS {
        let s = Site::with_layout(200, layout);
        s.publish("quiz-fix", ("technical", "none"), &refs(&quiz_fix(layout)), "");
        let config = s.config(3, 1, "");
        assert!(s.run_once(&config, NOW).contains("applied quiz-fix@1.0.0"));
        let root = s.dirroot();
        let edited = format!("{}// edited after the apply\n", std::fs::read_to_string(root.join("config.php")).unwrap());
        std::fs::write(root.join("config.php.tmp"), &edited).unwrap();
        std::fs::rename(root.join("config.php.tmp"), root.join("config.php")).unwrap();
        let plugin = root.join(layout.place("local/added/version.php"));
        std::fs::create_dir_all(plugin.parent().unwrap()).unwrap();
        std::fs::write(&plugin, "<?php $plugin->component = 'local_added';\n").unwrap();
        // A .htaccess created since in a folder of the code: carried right after the swap back.
        let htaccess = root.join(layout.place("mod/quiz/.htaccess"));
        std::fs::write(&htaccess, "Require ip 10.0.0.0/8\n").unwrap();
        let out = rollback(&s, &config);
        assert!(out.status.success(), "{layout:?}: {}", stderr(&out));
        // No backup to restore: PHP is reloaded as soon as the old tree is live, the files
        // created since being carried while the hook runs.
        let receipts = std::fs::read_dir(s.w.path("state-univ-a/receipts")).unwrap().map(|e| e.unwrap().path());
        let receipt: serde_json::Value = receipts.filter(|p| p.to_string_lossy().ends_with("-rollback.json")).map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).next().unwrap();
        let steps = steps(&receipt);
        let at = |name| position(&steps, name);
        assert!(at("rollback") < at("reload") && at("reload") < at("carry new site-local files"), "{layout:?}: {steps:?}");
        assert_eq!(std::fs::read_to_string(&htaccess).unwrap(), "Require ip 10.0.0.0/8\n", "{layout:?}");
        assert_eq!(std::fs::read_to_string(root.join("config.php")).unwrap(), edited, "{layout:?}");
        assert!(plugin.is_file(), "{layout:?}: the plugin installed since is still there");
        assert!(!std::fs::read_to_string(root.join(layout.place("mod/quiz/view.php"))).unwrap().contains("fixed quiz view"), "{layout:?}: the code went back");
    }
}

/// Issue 13, item 10: the agent refuses to act on a code root that belongs to another user,
/// and says which user to run as. (The tests run as root, as CI does.)
#[test]
fn another_user_than_the_owner_of_dirroot_is_refused() {
    if !as_root() {
        eprintln!("skipped: needs root (CI runs as root) to give the tree to another user");
        return;
    }
    let s = Site::new(100);
    s.publish("quiz-fix", ("technical", "none"), &refs(&quiz_fix(Layout::Classic)), "");
    let config = s.config(3, 1, "");
    let before = s.hash();
    std::os::unix::fs::chown(s.dirroot(), Some(4321), Some(4321)).unwrap();
    let out = s.agent(&["run", "--once", "--config", config.to_str().unwrap(), "--now", NOW]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("belongs to") && err.contains("runs as root") && err.contains("sudo -u"), "{err}");
    assert_eq!(s.hash(), before);
    assert!(s.hooks.order().unwrap().is_empty());
}
