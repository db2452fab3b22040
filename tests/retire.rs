//! A bundle installed on a platform and then retired from the repository, through the real
//! binaries: the agent's plan, run and status go on (the installed record keeps it, the plan
//! no longer names it), and, like `publish`, the agent's file ownership check takes a retired
//! bundle as no longer active: a bundle of another id may then take its files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{World, manifest, stderr};

const MONDAY: &str = "2026-12-01T10:00:00+01:00";
const LATER: &str = "2026-12-01T10:30:00+01:00";

/// A level-3 improvement, level-1 stability agent without smoke checks (no web server here).
fn config(w: &World) -> std::path::PathBuf {
    let config = w.agent_config("univ-a", 3, 1);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[checks]\nsmoke = []\n")).unwrap();
    config
}

fn validate(w: &World, bundle: &str) {
    for v in [vec!["--alpha"], vec!["--dataset", "big-univ"], vec!["--dataset", "small-school"]] {
        let mut args = vec!["validate", "--repo", "repo", bundle];
        args.extend(v);
        w.server(&args);
    }
}

fn agent(w: &World, args: &[&str]) -> String {
    let out = w.run("palier-agent", args);
    assert!(out.status.success(), "palier-agent {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The `plan --json` decisions at `now`, as `id@version` with the decision.
fn plan(w: &World, config: &Path, now: &str) -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(&agent(w, &["plan", "--json", "--config", config.to_str().unwrap(), "--now", now])).unwrap();
    doc["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (format!("{}@{}", d["id"].as_str().unwrap(), d["version"].as_str().unwrap()), d["decision"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn an_installed_bundle_retired_from_the_repository_leaves_the_agent_working() {
    let w = World::new();
    w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
    validate(&w, "quiz-fix@1.0.0");
    let config = config(&w);
    let c = config.to_str().unwrap();
    assert!(agent(&w, &["run", "--once", "--config", c, "--now", MONDAY]).contains("applied quiz-fix@1.0.0"));
    let file = w.path("site/dirroot/mod/quiz/fix-quiz-fix.php");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "<?php // quiz-fix 1.0.0\n");

    // Yanked, then retired without looking at the fleet: the repository no longer lists it.
    w.server(&["yank", "--repo", "repo", "quiz-fix@1.0.0", "--reason", "withdrawn"]);
    let out = w.server(&["retire", "--repo", "repo", "--no-fleet-check", "--older-than", "0s"]);
    assert!(out.contains("retired quiz-fix@1.0.0: yanked"), "{out}");
    let listed: serde_json::Value = serde_json::from_str(&w.server(&["list", "--repo", "repo", "--json"])).unwrap();
    assert!(listed["bundles"].as_array().unwrap().is_empty(), "{listed}");

    // plan, run and status go on: the plan does not name it, status still has it installed.
    assert!(plan(&w, &config, LATER).is_empty());
    let out = agent(&w, &["run", "--once", "--config", c, "--now", LATER]);
    assert!(!out.contains("applied"), "{out}");
    let status: serde_json::Value = serde_json::from_str(&agent(&w, &["status", "--config", c, "--json"])).unwrap();
    assert_eq!((&status["installed"][0]["id"], &status["installed"][0]["version"]), (&serde_json::json!("quiz-fix"), &serde_json::json!("1.0.0")), "{status}");
    assert!(agent(&w, &["status", "--config", c]).contains("quiz-fix@1.0.0"));

    // A bundle of another id writing the retired one's file: `publish` takes it (a retired
    // bundle is not active), and so does the agent, which applies it over the file.
    let dir = w.path("bundles/quiz-other");
    std::fs::create_dir_all(dir.join("files/mod/quiz")).unwrap();
    std::fs::write(dir.join("files/mod/quiz/fix-quiz-fix.php"), "<?php // quiz-other 1.0.0\n").unwrap();
    std::fs::write(dir.join("bundle.toml"), manifest("quiz-other", "1.0.0", "mod_quiz", "technical", "none", "")).unwrap();
    let (m, s, a) = (dir.join("bundle.toml"), dir.join("files"), dir.join("bundle.tar.gz"));
    w.server(&["bundle", "build", "--manifest", m.to_str().unwrap(), "--source", s.to_str().unwrap(), "--out", a.to_str().unwrap()]);
    w.server(&["publish", "--repo", "repo", a.to_str().unwrap()]);
    validate(&w, "quiz-other@1.0.0");
    assert_eq!(plan(&w, &config, LATER), [("quiz-other@1.0.0".to_owned(), "eligible".to_owned())]);
    assert!(agent(&w, &["run", "--once", "--config", c, "--now", LATER]).contains("applied quiz-other@1.0.0"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "<?php // quiz-other 1.0.0\n");
    let status: serde_json::Value = serde_json::from_str(&agent(&w, &["status", "--config", c, "--json"])).unwrap();
    let installed: Vec<&str> = status["installed"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(installed, ["quiz-fix", "quiz-other"], "{status}");
}
