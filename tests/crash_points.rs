//! Crash points: the real `palier-agent` is killed with SIGKILL at every named step it
//! passes (see `agent/src/crash.rs`) during a level-3 apply, a rollback after a failed
//! validation (with its restore) and a rollback by hand, then again at every step of the
//! recovery of each of those kills (nested two deep). After each, one more `run --once`
//! must leave: the site on exactly the old or the new tree, the data restored where it was
//! touched, no tree destroyed, a receipt for every intervention that committed, and the
//! installed record equal to the tree on disk. Each test prints how many kills it made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::site::{Site, copy_tree};
use common::stderr;
use palier_fixture::{HookBehaviour, HookName, tree_hash};

const NOTICE_AT: &str = "2026-12-04T20:50:00+01:00";
/// Inside the config's level-3 calendar slot, and inside the watch of an apply made then.
const NOW: &str = "2026-12-05T21:30:00+01:00";
const BUNDLE: &str = "quiz-fix@1.0.0";
/// A site's own file that the hand rollback scenario creates after the apply.
const HTACCESS: &str = "mod/.htaccess";
const QUIZ_FIX: &[(&str, &str)] = &[("mod/quiz/view.php", "<?php // fixed quiz view\necho 'quiz';\n"), ("mod/quiz/classes/timer.php", "<?php // timer\n")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// A level-3 apply of a bundle with `upgrade = true` that passes.
    Apply,
    /// The same, with the validate hook failing: rollback and restore of the backup.
    FailedValidation,
    /// `palier-agent rollback` of the applied bundle (its data restored from the backup).
    HandRollback,
    /// The apply, with dirroot a symlink to `releases/moodle-4.5`: the symlink is flipped.
    ApplySymlinked,
}

/// A level-3 site (small tree, a data marker in the dataroot) with the bundle published
/// and its notice posted, and a pristine copy of everything a trial changes.
struct Lab {
    s: Site,
    config: PathBuf,
    /// dirroot is a symlink to `site/releases/moodle-4.5`.
    symlinked: bool,
    old: String,
    new: String,
    data: String,
}

impl Lab {
    fn new(symlinked: bool) -> Lab {
        // In memory where the system has one: a kill of the process loses no page cache, so
        // the fsyncs the agent makes only cost time here (hundreds of runs).
        let shm = Path::new("/dev/shm");
        let s = if shm.is_dir() { Site::new_in(60, shm) } else { Site::new(60) };
        if symlinked {
            std::fs::create_dir_all(s.w.path("site/releases")).unwrap();
            std::fs::rename(s.dirroot(), s.w.path("site/releases/moodle-4.5")).unwrap();
            std::os::unix::fs::symlink("releases/moodle-4.5", s.dirroot()).unwrap();
        }
        std::fs::create_dir_all(s.w.path("site/dataroot/filedir")).unwrap();
        std::fs::write(s.w.path("site/dataroot/filedir/marker"), "course files").unwrap();
        s.publish("quiz-fix", ("technical", "minor"), QUIZ_FIX, "upgrade = true\n");
        let config = s.config(3, 3, "");
        s.run_once(&config, NOTICE_AT);
        let old = s.hash();
        let data = tree_hash(&s.w.path("site/dataroot")).unwrap();
        std::fs::create_dir_all(s.w.path("pristine")).unwrap();
        let code = if symlinked { "site/releases" } else { "site/dirroot" };
        for (from, to) in [(code, "pristine/code"), ("site/dataroot", "pristine/dataroot"), ("state-univ-a", "pristine/state")] {
            copy_tree(&s.w.path(from), &s.w.path(to));
        }
        let out = s.run_once(&config, NOW);
        assert!(out.contains(&format!("applied {BUNDLE}")), "{out}");
        let new = s.hash();
        assert_ne!(old, new);
        Lab { s, config, symlinked, old, new, data }
    }

    /// Back to the pristine site: old tree, data, state; hooks behaving.
    fn reset(&self) {
        let site = self.s.w.path("site");
        for e in std::fs::read_dir(&site).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name == "dirroot" && self.symlinked {
                std::fs::remove_file(&p).unwrap();
            } else if name == "dirroot" || name == "dataroot" || name == "releases" || name.starts_with(".palier-") {
                // Kept and staged trees, and the record of the site's state folder (a file).
                if p.is_dir() { std::fs::remove_dir_all(&p).unwrap() } else { std::fs::remove_file(&p).unwrap() }
            }
        }
        let state = self.s.w.path("state-univ-a");
        std::fs::remove_dir_all(&state).unwrap();
        if self.symlinked {
            copy_tree(&self.s.w.path("pristine/code"), &site.join("releases"));
            std::os::unix::fs::symlink("releases/moodle-4.5", self.s.dirroot()).unwrap();
        } else {
            copy_tree(&self.s.w.path("pristine/code"), &self.s.dirroot());
        }
        copy_tree(&self.s.w.path("pristine/dataroot"), &site.join("dataroot"));
        copy_tree(&self.s.w.path("pristine/state"), &state);
        let _ = std::fs::remove_file(&self.s.hooks.log);
        self.s.hooks.set(HookName::Validate, HookBehaviour::Ok).unwrap();
    }

    fn agent(&self, args: &[&str], crash_at: Option<&str>, trace: Option<&Path>) -> Output {
        let mut env: Vec<(&str, &OsStr)> = Vec::new();
        if let Some(at) = crash_at {
            env.push(("PALIER_CRASH_AT", OsStr::new(at)));
        }
        if let Some(t) = trace {
            env.push(("PALIER_CRASH_TRACE", t.as_os_str()));
        }
        self.s.agent_with(args, &env)
    }

    fn run_args(&self) -> Vec<&str> {
        vec!["run", "--once", "--config", self.config.to_str().unwrap(), "--now", NOW]
    }

    /// The trial's starting state, and the command the scenario runs.
    fn start(&self, sc: Scenario) -> Vec<&str> {
        self.reset();
        match sc {
            Scenario::Apply | Scenario::ApplySymlinked => self.run_args(),
            Scenario::FailedValidation => {
                self.s.hooks.set(HookName::Validate, HookBehaviour::Fail).unwrap();
                self.run_args()
            }
            Scenario::HandRollback => {
                let out = self.s.run_once(&self.config, NOW);
                assert!(out.contains(&format!("applied {BUNDLE}")), "{out}");
                // config.php rewritten since the apply (a new inode, the same text): the
                // rollback carries it into the old tree, a step of its own.
                let config_php = self.s.dirroot().join("config.php");
                let text = std::fs::read(&config_php).unwrap();
                std::fs::write(self.s.dirroot().join("config.php.new"), text).unwrap();
                std::fs::rename(self.s.dirroot().join("config.php.new"), &config_php).unwrap();
                // A .htaccess created since in a code folder: carried into the old tree
                // right after the swap back, a step of its own too.
                std::fs::write(self.s.dirroot().join(HTACCESS), "Require all denied\n").unwrap();
                vec!["rollback", "--config", self.config.to_str().unwrap()]
            }
        }
    }

    /// Run `args` killed at crash point `at`, which it must reach.
    fn kill(&self, args: &[&str], at: &str, what: &str) {
        let out = self.agent(args, Some(at), None);
        assert_eq!(out.status.signal(), Some(9), "{what}: the agent was not killed at {at}: {}", stderr(&out));
    }

    /// The last `run --once`, traced: returns the points it passed as `name:N`.
    fn final_run(&self, what: &str) -> Vec<String> {
        let trace = self.s.w.path("trace");
        let _ = std::fs::remove_file(&trace);
        let out = self.agent(&self.run_args(), None, Some(&trace));
        // A cycle may end in a rollback (exit 1, one line), never in a crash or a refusal to recover.
        assert!(matches!(out.status.code(), Some(0) | Some(1)), "{what}: run --once: {:?} {}", out.status, stderr(&out));
        if out.status.code() == Some(1) {
            assert!(stderr(&out).contains("rolled back"), "{what}: run --once failed: {}", stderr(&out));
        }
        points(&trace)
    }

    /// The invariants after a kill and one more `run --once`.
    fn check(&self, sc: Scenario, what: &str) {
        let s = &self.s;
        // The .htaccess created after the apply is live whichever tree is (then set aside:
        // the trees are compared without it).
        let htaccess = s.dirroot().join(HTACCESS);
        if sc == Scenario::HandRollback {
            assert_eq!(std::fs::read_to_string(&htaccess).ok().as_deref(), Some("Require all denied\n"), "{what}: the site's .htaccess was lost");
            std::fs::remove_file(&htaccess).unwrap();
        }
        let hash = s.hash();
        let is_new = hash == self.new;
        assert!(is_new || hash == self.old, "{what}: the site is on neither the old nor the new tree");
        if self.symlinked {
            assert!(std::fs::symlink_metadata(s.dirroot()).unwrap().file_type().is_symlink(), "{what}: dirroot is still a symlink");
        }
        if sc == Scenario::FailedValidation {
            assert!(!is_new, "{what}: a bundle whose validation fails never stays");
        }
        let state = s.w.path("state-univ-a");
        assert!(!state.join("journal.json").exists(), "{what}: the journal is still there");
        let dataroot = s.w.path("site/dataroot");
        assert!(!dataroot.join("climaintenance.html").exists(), "{what}: the site stayed in maintenance");
        assert_eq!(std::fs::read_to_string(dataroot.join("filedir/marker")).unwrap(), "course files", "{what}");
        let installed: Vec<String> = read_json(&state.join("installed.json"))
            .map(|v| v["bundles"].as_array().unwrap().iter().map(|b| format!("{}@{}", b["id"].as_str().unwrap(), b["version"].as_str().unwrap())).collect())
            .unwrap_or_default();
        let receipts: Vec<serde_json::Value> = std::fs::read_dir(state.join("receipts")).unwrap().map(|e| read_json(&e.unwrap().path()).unwrap()).collect();
        // Where the trees are: beside dirroot, or beside its symlink's targets.
        let (beside, live) = if self.symlinked {
            let target = std::fs::read_link(s.dirroot()).unwrap();
            (s.w.path("site/releases"), Some(s.w.path("site").join(target)))
        } else {
            (s.w.path("site"), None)
        };
        let siblings: Vec<PathBuf> = std::fs::read_dir(&beside).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(
            !siblings.iter().any(|p| p.file_name().unwrap().to_string_lossy().starts_with(".palier-stage-") && Some(p) != live.as_ref()),
            "{what}: a staged tree was left: {siblings:?}"
        );
        if is_new {
            assert_eq!(installed, [BUNDLE], "{what}: installed record");
            assert!(
                receipts.iter().any(|r| r["outcome"] == "applied" && r["bundles"][0] == BUNDLE),
                "{what}: no receipt for the committed intervention"
            );
            assert_eq!(std::fs::read_to_string(dataroot.join("palier-fixture-upgrades")).unwrap(), "upgraded\n", "{what}: upgraded once");
            let kept = siblings.iter().filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(".palier-prev-dirroot-") || (self.symlinked && name == "moodle-4.5")
            });
            assert!(kept.into_iter().any(|p| tree_hash(p).unwrap() == self.old), "{what}: the old tree was destroyed");
        } else {
            assert!(installed.is_empty(), "{what}: installed record {installed:?} on the old tree");
            assert_eq!(tree_hash(&dataroot).unwrap(), self.data, "{what}: the data was not restored");
            if sc == Scenario::HandRollback {
                assert_eq!(held(&state), [BUNDLE], "{what}: the rollback by hand holds the bundle");
            }
        }
    }
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    std::fs::read(path).ok().map(|b| serde_json::from_slice(&b).unwrap())
}

/// The bundle versions held on the site (`state_dir/holds.json`).
fn held(state: &Path) -> Vec<String> {
    read_json(&state.join("holds.json")).map_or_else(Vec::new, |h| h["holds"].as_array().unwrap().iter().map(|h| h["bundle"].as_str().unwrap().to_owned()).collect())
}

/// The crash points of a trace, each as `name:N` (its N-th hit).
fn points(trace: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    let mut hits: BTreeMap<&str, u32> = BTreeMap::new();
    text.lines()
        .map(|name| {
            let n = hits.entry(name).or_default();
            *n += 1;
            format!("{name}:{n}")
        })
        .collect()
}

/// Kill the scenario at each point it passes, then at each point of each recovery; the
/// points `expected` must be among them.
fn every_point(sc: Scenario, expected: &[&str]) {
    let lab = Lab::new(sc == Scenario::ApplySymlinked);
    // The points the undisturbed scenario passes.
    let args = lab.start(sc);
    let trace = lab.s.w.path("trace");
    let _ = std::fs::remove_file(&trace);
    let out = lab.agent(&args, None, Some(&trace));
    assert!(out.status.signal().is_none(), "{}", stderr(&out));
    let first = points(&trace);
    assert!(first.len() >= 5, "{sc:?}: too few crash points: {first:?}");
    let mut names = BTreeSet::new();
    let mut nested = 0;
    for p1 in &first {
        let what = format!("{sc:?} killed at {p1}");
        let args = lab.start(sc);
        lab.kill(&args, p1, &what);
        let after = lab.final_run(&what);
        lab.check(sc, &what);
        names.insert(p1.rsplit_once(':').unwrap().0.to_owned());
        // The recovery's own points: from its start to its journal being cleared (a kill
        // before anything was journaled leaves nothing to recover; the run then is a
        // fresh intervention, whose points are the first level's).
        let recovery: Vec<&String> = match after.first() {
            Some(p) if p.starts_with("recover:start:") => {
                let end = after.iter().position(|p| p.starts_with("journal:clear:")).map_or(after.len(), |i| i + 1);
                after[..end].iter().collect()
            }
            _ => Vec::new(),
        };
        for p2 in recovery {
            let what = format!("{sc:?} killed at {p1}, then its recovery killed at {p2}");
            let args = lab.start(sc);
            lab.kill(&args, p1, &what);
            lab.kill(&lab.run_args(), p2, &what);
            lab.final_run(&what);
            lab.check(sc, &what);
            names.insert(p2.rsplit_once(':').unwrap().0.to_owned());
            nested += 1;
        }
    }
    println!("{sc:?}: {} kill points, {nested} nested kills, {} distinct points: {names:?}", first.len(), names.len());
    for p in expected {
        assert!(names.contains(*p), "{sc:?}: crash point {p} not covered: {names:?}");
    }
}

#[test]
fn a_kill_at_every_point_of_an_apply_and_its_recovery() {
    every_point(Scenario::Apply, &["receipt:written", "preflight:done", "hook:maintenance_on", "hook:backup", "hook:reload", "hook:upgrade", "checks:done"]);
}

#[test]
fn a_kill_at_every_point_of_a_rollback_with_restore_and_its_recovery() {
    every_point(Scenario::FailedValidation, &["receipt:written", "hook:validate", "journal:rolling-back", "hook:maintenance_on", "journal:restoring", "hook:restore", "hook:reload", "rollback:checks"]);
}

#[test]
fn a_kill_at_every_point_of_a_rollback_by_hand_and_its_recovery() {
    every_point(Scenario::HandRollback, &["receipt:written", "carry:done", "rollback:exchange", "carry:new", "hook:restore", "hook:reload", "hook:purge_caches", "rollback:checks"]);
}

#[test]
fn a_kill_at_every_point_of_an_apply_on_a_symlinked_dirroot_and_its_recovery() {
    every_point(Scenario::ApplySymlinked, &["receipt:written", "preflight:done", "hook:reload", "swap:exchange"]);
}

/// Issue 11, item 1: the restore hook emptied the dataroot and the agent died. The next
/// run restores the original backup again (no new backup of the emptied dataroot, no new
/// apply in that cycle) and leaves maintenance only once it succeeded.
#[test]
fn a_kill_during_the_restore_restores_the_original_backup_again() {
    let lab = Lab::new(false);
    let args = lab.start(Scenario::FailedValidation);
    lab.kill(&args, "journal:restoring", "restore");
    // What a restore hook killed half-way leaves: an empty dataroot.
    let dataroot = lab.s.w.path("site/dataroot");
    for e in std::fs::read_dir(&dataroot).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { std::fs::remove_dir_all(p).unwrap() } else { std::fs::remove_file(p).unwrap() }
    }
    std::fs::write(dataroot.join("climaintenance.html"), "maintenance").unwrap();
    let _ = std::fs::remove_file(&lab.s.hooks.log);
    // The restore fails once: the site stays in maintenance, the journal stays.
    lab.s.hooks.set(HookName::Restore, HookBehaviour::Fail).unwrap();
    let out = lab.agent(&lab.run_args(), None, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("the site stays in maintenance"), "{}", stderr(&out));
    assert!(dataroot.join("climaintenance.html").exists());
    assert!(lab.s.w.path("state-univ-a/journal.json").exists());
    lab.s.hooks.set(HookName::Restore, HookBehaviour::Ok).unwrap();
    let out = lab.agent(&lab.run_args(), None, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("recovered quiz-fix@1.0.0: rollback interrupted, now finished"), "{stdout}");
    lab.check(Scenario::FailedValidation, "restore");
    let order = lab.s.hooks.order().unwrap();
    assert!(!order.contains(&"backup".to_owned()) && !order.contains(&"upgrade".to_owned()), "nothing new applied: {order:?}");
    assert_eq!(std::fs::read_dir(lab.s.w.path("state-univ-a/backups")).unwrap().count(), 1, "one backup, the original");
    assert_eq!(held(&lab.s.w.path("state-univ-a")), [BUNDLE], "the recovered rollback holds the bundle");
}

/// Issue 11, item 2: killed after the swap, then killed again while its recovery put the
/// old tree back. The old tree survives, and the next apply (a new id) keeps it.
#[test]
fn a_kill_during_the_recovery_of_a_kill_after_the_swap_destroys_no_tree() {
    let lab = Lab::new(false);
    let args = lab.start(Scenario::Apply);
    lab.kill(&args, "swap:keep-previous", "after the swap");
    lab.kill(&lab.run_args(), "rollback:exchange", "during the undo");
    lab.final_run("after two kills");
    lab.check(Scenario::Apply, "after two kills");
    assert_eq!(lab.s.hash(), lab.old);
    let out = lab.s.run_once(&lab.config, NOW);
    assert!(out.contains(&format!("applied {BUNDLE}")), "{out}");
    lab.check(Scenario::Apply, "the next apply");
    assert_eq!(lab.s.hash(), lab.new);
}
