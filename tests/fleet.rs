//! The fleet view through real processes: agents of four contracts send their plan with each
//! status to `palier-server serve --db`, and the control plane's per-bundle view says, for
//! every platform and every bundle, what that platform's own `plan --json` says, at every
//! step of a simulated day. And a users' notice missed while the agent was not running.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::control::{Served, expected_state, platform, serve_with};
use common::{World, http_get, manifest, stderr};
use serde_json::Value;

/// The bundles of the day: one every contract may take, one not validated, one a level-2
/// contract does not take (global class), one whose data impact needs an intervention.
fn publish(w: &World) {
    w.publish(&manifest("quiz-fix", "1.0.1", "mod_quiz", "technical", "none", ""), &[]);
    w.publish(&manifest("forum-fix", "1.0.0", "mod_forum", "technical", "none", ""), &[]);
    w.publish(&manifest("nav-rework", "2.0.0", "theme_boost", "global", "none", ""), &[]);
    w.publish(&manifest("quiz-big", "3.0.0", "mod_quiz", "technical", "major", ""), &[]);
    for b in ["quiz-fix@1.0.1", "nav-rework@2.0.0", "quiz-big@3.0.0"] {
        w.server(&["validate", "--repo", "repo", b, "--alpha"]);
        for ds in ["ds-a", "ds-b"] {
            w.server(&["validate", "--repo", "repo", b, "--dataset", ds]);
        }
    }
}

/// The site's one check: quiz-fix's file absent, so that it fails once quiz-fix is live.
const QUIZ_FIX_ABSENT: &str = "[{ path = \"/mod/quiz/fix-quiz-fix.php\", expect_status = 404 }]";

fn agent(w: &World, args: &[&str]) -> std::process::Output {
    w.run("palier-agent", args)
}

fn plan_json(w: &World, config: &Path, now: &str) -> Value {
    let out = agent(w, &["plan", "--config", config.to_str().unwrap(), "--json", "--now", now]);
    assert!(out.status.success(), "plan: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The body of `GET path` from the control plane (loopback: no operator credential needed).
fn get_json(served: &Served, path: &str) -> Value {
    let answer = http_get(served.url.strip_prefix("http://").unwrap(), path);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.lines().next().unwrap().contains(" 200 "), "{path}: {answer:.300}");
    serde_json::from_str(body).unwrap()
}

/// The outcome of the latest receipt of the agent naming `key`.
fn last_outcome(w: &World, name: &str, key: &str) -> Option<String> {
    let receipts = palier_agent::receipt::all(&w.path(&format!("state-{name}"))).unwrap();
    receipts.iter().filter(|r| r.bundles.iter().any(|b| b == key)).max_by_key(|r| r.finished_at).map(|r| serde_json::to_value(r.outcome).unwrap().as_str().unwrap().to_owned())
}

/// For every bundle and every platform, the control plane's view against the agent's plan.
fn assert_view_agrees(w: &World, served: &Served, platforms: &[(&str, PathBuf)], now: &str, step: &str) -> usize {
    let plans: Vec<(&str, Value)> = platforms.iter().map(|(name, config)| (*name, plan_json(w, config, now))).collect();
    let mut compared = 0;
    for (id, version) in [("quiz-fix", "1.0.1"), ("forum-fix", "1.0.0"), ("nav-rework", "2.0.0"), ("quiz-big", "3.0.0")] {
        let key = format!("{id}@{version}");
        let view = get_json(served, &format!("/api/v1/bundles/{id}/{version}"));
        for (name, plan) in &plans {
            let row = plan["bundles"].as_array().unwrap().iter().find(|b| b["id"] == id && b["version"] == version).unwrap();
            let entry = view["platforms"].as_array().unwrap().iter().find(|p| p["platform"] == *name).unwrap();
            let outcome = last_outcome(w, name, &key);
            let want = expected_state(row, plan["now"].as_str().unwrap(), outcome.as_deref());
            assert_eq!(entry["state"], want, "{step}: {name} {key}: the server says {entry}, the agent's plan {row}");
            for field in ["reason", "apply_at", "notice_at", "slot_end"] {
                assert_eq!(entry[field], row.get(field).cloned().unwrap_or(Value::Null), "{step}: {name} {key} {field}: {entry} vs {row}");
            }
            compared += 1;
        }
        let total: u64 = view["counts"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
        assert_eq!(total, platforms.len() as u64, "{step}: {key}: {}", view["counts"]);
    }
    compared
}

#[test]
fn the_control_plane_view_agrees_with_every_agents_plan_at_every_step() {
    let w = World::new();
    // Rollbacks here come from the site's checks, not from the bundles: the site passes its
    // checks before an intervention (the preflight) and fails one once quiz-fix is live (it
    // wants quiz-fix's file absent). No auto-halt, which would change the plans between two
    // agents' cycles.
    let served = serve_with(&w, &["--halt-threshold", "100"]);
    publish(&w);
    let mut site = None;
    let platforms: Vec<(&str, PathBuf)> = [("univ-a", 3, 1), ("univ-b", 2, 2), ("univ-c", 3, 3), ("univ-d", 3, 2)]
        .into_iter()
        .map(|(name, imp, stab)| {
            let config = platform(&w, &served, name, imp, stab);
            if let Some(started) = w.serve_site(&config, site.as_ref(), QUIZ_FIX_ABSENT) {
                site = Some(started);
            }
            (name, config)
        })
        .collect();
    // Before any agent reported: every platform unknown.
    let view = get_json(&served, "/api/v1/bundles/quiz-fix/1.0.1");
    assert_eq!(view["counts"]["unknown"], 4, "{view}");

    // Tuesday 1 December 2026 in Paris: 10:00 (univ-a applies at once and rolls back: the
    // site's check fails once quiz-fix is live), 20:00 (the level-2 notices go out), 22:05 (inside the
    // Tuesday window: univ-b and univ-d apply, and roll back).
    let mut compared = 0;
    for now in ["2026-12-01T10:00:00+01:00", "2026-12-01T20:00:00+01:00", "2026-12-01T22:05:00+01:00"] {
        for (name, config) in &platforms {
            let out = agent(&w, &["run", "--once", "--config", config.to_str().unwrap(), "--now", now]);
            assert!(matches!(out.status.code(), Some(0 | 1)), "{name} at {now}: {}", stderr(&out));
        }
        compared += assert_view_agrees(&w, &served, &platforms, now, now);
    }
    assert_eq!(compared, 3 * 4 * 4);
    // The day went through the states it should: each kind seen at least once at the end.
    let quiz = get_json(&served, "/api/v1/bundles/quiz-fix/1.0.1");
    assert_eq!(quiz["counts"]["rolled-back"], 3, "{quiz}");
    assert_eq!(quiz["counts"]["waiting-notice"], 1, "univ-c's slot is Saturday: {quiz}");
    let forum = get_json(&served, "/api/v1/bundles/forum-fix/1.0.0");
    assert_eq!(forum["counts"]["waiting-validation"], 3, "{forum}");
    assert_eq!(forum["counts"]["excluded"], 1, "univ-b takes mod_quiz only: {forum}");
    let big = get_json(&served, "/api/v1/bundles/quiz-big/3.0.0");
    assert_eq!(big["counts"]["needs-intervention"], 1, "univ-a, stability 1: {big}");

    // The platform's own page: its plan as reported, its receipts.
    let a = get_json(&served, "/api/v1/platforms/univ-a");
    assert_eq!(a["plan"]["now"], "2026-12-01T21:05:00Z");
    assert!(a["receipts"].as_array().is_some_and(|r| !r.is_empty()), "{a}");
}

/// Issue 14, item 14: the agent did not run at the notice's time (the clock steps over it).
/// It says so at once, in `run` and in `status`, and the window's intervention is postponed
/// to the next window, with its notice: never applied without it.
#[test]
fn a_missed_notice_is_said_at_once_and_postpones_the_intervention() {
    let w = World::new();
    w.publish(&manifest("quiz-fix", "1.0.1", "mod_quiz", "technical", "none", ""), &[]);
    w.server(&["validate", "--repo", "repo", "quiz-fix@1.0.1", "--alpha"]);
    for ds in ["ds-a", "ds-b"] {
        w.server(&["validate", "--repo", "repo", "quiz-fix@1.0.1", "--dataset", ds]);
    }
    // Stability 2: windows Tue and Thu 22:00-23:30, notice 2 h.
    let config = w.agent_config("univ-b", 3, 2);
    let c = config.to_str().unwrap();
    let run = |now: &str| {
        let out = agent(&w, &["run", "--once", "--config", c, "--now", now]);
        assert!(out.status.success(), "run at {now}: {}", stderr(&out));
        (String::from_utf8(out.stdout.clone()).unwrap(), stderr(&out))
    };

    // Tuesday 10:00: the notice is planned for 20:00, the intervention for 22:00.
    let (_, err) = run("2026-12-01T10:00:00+01:00");
    assert!(!err.contains("warning:"), "{err}");
    // The agent does not run again before 21:00: the 20:00 notice was never posted.
    let (_, err) = run("2026-12-01T21:00:00+01:00");
    let warning = "warning: the users' notice of the intervention at Tue 1 Dec 2026 22:00 CET was due at Tue 1 Dec 2026 20:00 CET and was never posted \
                   (the agent was not running then: its previous cycle was at Tue 1 Dec 2026 10:00 CET); nothing is applied without its notice: \
                   quiz-fix@1.0.1 postponed to Thu 3 Dec 2026 22:00 CET (its notice at Thu 3 Dec 2026 20:00 CET)";
    assert!(err.lines().any(|l| l == warning), "{err}");
    let status = agent(&w, &["status", "--config", c]);
    assert!(String::from_utf8(status.stdout).unwrap().lines().any(|l| l == warning), "status says it too");

    // In the Tuesday window, the plan says Thursday, and why; run applies nothing.
    let doc = plan_json(&w, &config, "2026-12-01T22:10:00+01:00");
    let quiz = &doc["bundles"][0];
    assert_eq!(quiz["decision"], "eligible");
    assert_eq!(quiz["apply_at"], "2026-12-03T22:00:00+01:00", "{quiz}");
    assert_eq!(quiz["notice_at"], "2026-12-03T20:00:00+01:00");
    assert_eq!(quiz["slot_end"], "2026-12-03T23:30:00+01:00");
    let detail = quiz["detail"].as_str().unwrap();
    assert!(detail.contains("was due at Tue 1 Dec 2026 20:00 CET and never posted") && detail.contains("postponed to the next window it can take, Thu 3 Dec 2026 22:00 CET"), "{detail}");
    let (out, err) = run("2026-12-01T22:10:00+01:00");
    assert!(!err.contains("warning:"), "said once: {err}");
    assert!(out.contains("no notice went out"), "{out}");
    assert!(palier_agent::receipt::all(&w.path("state-univ-b")).unwrap().is_empty(), "no intervention");

    // Thursday 20:00: the notice of the next window goes out; the warning has done its job.
    let (out, _) = run("2026-12-03T20:00:00+01:00");
    assert!(out.contains("notice posted"), "{out}");
    let status = agent(&w, &["status", "--config", c]);
    assert!(!String::from_utf8(status.stdout).unwrap().contains("warning:"));
}
