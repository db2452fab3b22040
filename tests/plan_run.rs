//! plan = run: at every stability level, `plan --json --now T` gives the decision and the
//! time that `run --once --now T` acts on, including inside an open window (level 2) or
//! calendar slot (level 3) whose notice went out in time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{World, manifest, stderr};

fn setup(stability: u8) -> (World, std::path::PathBuf) {
    let w = World::new();
    w.publish(&manifest("quiz-fix", "1.0.1", "mod_quiz", "technical", "none", ""), &[]);
    for v in [vec!["--alpha"], vec!["--dataset", "big-univ"], vec!["--dataset", "small-school"]] {
        let mut args = vec!["validate", "--repo", "repo", "quiz-fix@1.0.1"];
        args.extend(v);
        w.server(&args);
    }
    let config = w.agent_config("univ-a", 3, stability);
    // No web server in this test: no smoke checks; a backup that writes something.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("backup = [\"true\", \"{backup_dir}\"]", "backup = [\"sh\", \"-c\", \"echo dump > \\\"$0/db\\\"\", \"{backup_dir}\"]");
    std::fs::write(&config, format!("{text}\n[checks]\nsmoke = []\n")).unwrap();
    (w, config)
}

/// `plan --json` at `now`: the quiz-fix decision.
fn plan(w: &World, config: &Path, now: &str) -> serde_json::Value {
    let out = w.run("palier-agent", &["plan", "--json", "--config", config.to_str().unwrap(), "--now", now]);
    assert!(out.status.success(), "plan: {}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["bundles"].as_array().unwrap().iter().find(|d| d["id"] == "quiz-fix").cloned().unwrap()
}

fn run(w: &World, config: &Path, now: &str) -> String {
    let out = w.run("palier-agent", &["run", "--once", "--config", config.to_str().unwrap(), "--now", now]);
    assert!(out.status.success(), "run --once: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The plan at `now` says "now", and run at `now` applies.
fn plan_says_now_and_run_applies(w: &World, config: &Path, now: &str) {
    let d = plan(w, config, now);
    assert_eq!(d["decision"], "eligible", "{d}");
    let at: jiff::Timestamp = d["apply_at"].as_str().unwrap().parse().unwrap();
    let now_ts: jiff::Timestamp = now.parse().unwrap();
    assert_eq!(at, now_ts, "plan: {d}");
    let out = run(w, config, now);
    assert!(out.contains("applied quiz-fix@1.0.1"), "plan said {d}, run said: {out}");
}

#[test]
fn level_1_plan_and_run_agree() {
    let (w, config) = setup(1);
    // Tuesday 10:00: the low-load slot (20:00) is beyond max_defer (4 h): now.
    plan_says_now_and_run_applies(&w, &config, "2026-12-01T10:00:00+01:00");
}

#[test]
fn level_1_plan_and_run_agree_on_waiting_for_the_low_load_slot() {
    let (w, config) = setup(1);
    // Tuesday 17:00: the low-load slot starts at 20:00, within max_defer: both wait for it.
    let d = plan(&w, &config, "2026-12-01T17:00:00+01:00");
    assert_eq!(d["apply_at"], "2026-12-01T20:00:00+01:00", "{d}");
    let out = run(&w, &config, "2026-12-01T17:00:00+01:00");
    assert!(!out.contains("applied"), "{out}");
    plan_says_now_and_run_applies(&w, &config, "2026-12-01T20:00:00+01:00");
}

#[test]
fn level_2_inside_an_open_window_plan_says_this_window() {
    let (w, config) = setup(2);
    // The notice for Tuesday's 22:00 window goes out at 19:50 (2 h ahead, 15 min early at most).
    let out = run(&w, &config, "2026-12-01T19:50:00+01:00");
    assert!(out.contains("notice posted"), "{out}");
    assert_eq!(plan(&w, &config, "2026-12-01T19:50:00+01:00")["apply_at"], "2026-12-01T22:00:00+01:00");
    // At 22:30, inside the window: plan and run both say now.
    plan_says_now_and_run_applies(&w, &config, "2026-12-01T22:30:00+01:00");
}

#[test]
fn level_3_inside_an_open_calendar_slot_plan_says_this_slot() {
    let (w, config) = setup(3);
    let out = run(&w, &config, "2026-12-04T20:50:00+01:00");
    assert!(out.contains("notice posted"), "{out}");
    // At 21:30, inside the 21:00-01:00 slot: before the fix, plan said "no calendar slot
    // starts between now + notice and 366 days" while run applied.
    let d = plan(&w, &config, "2026-12-05T21:30:00+01:00");
    assert!(d["detail"].as_str().unwrap().contains("inside the calendar slot"), "{d}");
    plan_says_now_and_run_applies(&w, &config, "2026-12-05T21:30:00+01:00");
}
