//! The control plane through real processes: `palier-server serve --db`, agents filing fix
//! requests and sending receipts, the level-1 flow and the auto-halt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::control::{Served, serve};
use common::{World, http_get, manifest, stderr};

/// Register `platform` with the contract `improvement`/1 and write an agent config (levels
/// `improvement`/1) talking to the server.
fn platform(w: &World, served: &Served, name: &str, improvement: u8) -> PathBuf {
    common::control::platform(w, served, name, improvement, 1)
}

fn agent_ok(w: &World, args: &[&str]) -> String {
    let out = w.run("palier-agent", args);
    assert!(out.status.success(), "palier-agent {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn decision(w: &World, config: &Path, id: &str) -> (String, Option<String>) {
    let out = agent_ok(w, &["plan", "--config", config.to_str().unwrap(), "--json", "--now", "2026-12-01T10:00:00+01:00"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let b = doc["bundles"].as_array().unwrap().iter().find(|b| b["id"] == id).unwrap_or_else(|| panic!("{id} not in {doc}"));
    (b["decision"].as_str().unwrap().to_owned(), b["reason"].as_str().map(str::to_owned))
}

/// SPEC 2.1 level 1 through the real processes (issue 5's first acceptance point).
#[test]
fn level_1_receives_only_what_it_reported() {
    let w = World::new();
    let served = serve(&w);
    let a = platform(&w, &served, "univ-a", 1);
    let b = platform(&w, &served, "univ-b", 1);

    // A files a fix request from its platform.
    let out = agent_ok(&w, &["request-fix", "--config", a.to_str().unwrap(), "--component", "mod_quiz", "--summary", "quiz timer drifts"]);
    let fr = out.split_whitespace().next().unwrap().to_owned();
    assert!(fr.starts_with("FR-"), "{out}");

    // The release manager publishes the fix naming that request, with the store.
    let fixes = format!("\"{fr}\"");
    w.publish(&manifest("quiz-fix", "1.0.1", "mod_quiz", "technical", "none", &fixes), &["--db", "palier.db"]);
    w.server(&["validate", "--repo", "repo", "quiz-fix@1.0.1", "--alpha"]);

    assert_eq!(decision(&w, &a, "quiz-fix"), ("eligible".into(), None));
    assert_eq!(decision(&w, &b, "quiz-fix"), ("skipped".into(), Some("not-reported".into())));

    // B reports that it has the defect this published bundle fixes.
    let out = agent_ok(&w, &["request-fix", "--config", b.to_str().unwrap(), "--component", "mod_quiz", "--summary", "same here", "--bundle", "quiz-fix@1.0.1"]);
    assert!(out.contains("linked to quiz-fix@1.0.1"), "{out}");
    assert_eq!(decision(&w, &b, "quiz-fix"), ("eligible".into(), None));
}

/// The site's check: quiz-fix's file absent, so that it fails once quiz-fix is live.
const QUIZ_FIX_ABSENT: &str = "[{ path = \"/mod/quiz/fix-quiz-fix.php\", expect_status = 404 }]";

/// Two platforms roll the same bundle back: the server halts it in the signed metadata, and
/// a third platform's plan says `halted`.
#[test]
fn two_rollbacks_halt_a_bundle_for_everyone() {
    let w = World::new();
    let served = serve(&w);
    let configs: Vec<PathBuf> = ["univ-a", "univ-b", "univ-c"].iter().map(|p| platform(&w, &served, p, 3)).collect();
    w.publish(&manifest("quiz-fix", "1.0.1", "mod_quiz", "technical", "none", ""), &[]);
    w.server(&["validate", "--repo", "repo", "quiz-fix@1.0.1", "--alpha"]);
    // The sites of univ-a and univ-b pass their checks before the intervention and fail one
    // once quiz-fix is live (it wants quiz-fix's file absent): the bundle is rolled back.
    let site = w.serve_site(&configs[0], None, QUIZ_FIX_ABSENT);
    w.serve_site(&configs[1], site.as_ref(), QUIZ_FIX_ABSENT);
    for config in &configs[..2] {
        let out = w.run("palier-agent", &["run", "--once", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("rolled back"), "{}", stderr(&out));
    }
    let list: serde_json::Value = serde_json::from_str(&w.server(&["list", "--repo", "repo", "--json"])).unwrap();
    let bundle = &list["bundles"][0];
    assert_eq!(bundle["state"], "halted", "{bundle}");
    assert!(bundle["state_reason"].as_str().unwrap().contains("univ-a"), "{bundle}");
    assert_eq!(decision(&w, &configs[2], "quiz-fix"), ("skipped".into(), Some("halted".into())));

    // An agent whose token is wrong names the platform it claims to be: the dashboard counts
    // the refusals under that name.
    let wrong = w.path("token-univ-x");
    std::fs::write(&wrong, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let stranger = w.agent_config("univ-x", 3, 1);
    let text = std::fs::read_to_string(&stranger).unwrap().replacen(
        "trusted_root = ",
        &format!("server = \"{}\"\ntoken_file = \"{}\"\ntrusted_root = ", served.url, wrong.display()),
        1,
    );
    std::fs::write(&stranger, text).unwrap();
    let out = w.run("palier-agent", &["run", "--once", "--config", stranger.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"]);
    assert!(stderr(&out).contains("refused this platform's token (401)"), "{}", stderr(&out));

    // The dashboard shows the fleet and the halt, with the two rollbacks that caused it.
    let page = http_get(served.url.strip_prefix("http://").unwrap(), "/");
    assert!(page.lines().next().is_some_and(|l| l.ends_with(" 200 OK")), "{page:.200}");
    for p in ["univ-a", "univ-b", "univ-c", "quiz-fix"] {
        assert!(page.contains(p), "{p} not on the dashboard");
    }
    assert!(page.contains("state-halted"), "the halt is not on the dashboard");
    assert!(page.contains("auto-halt: rolled back on univ-a, univ-b"), "the halt's reason is not on the dashboard");
    let refused = page.split("<h2>Refused tokens</h2>").nth(1).unwrap_or_else(|| panic!("no refused tokens on the dashboard: {page}"));
    assert!(refused.split("<tr>").any(|r| r.contains("<td>univ-x</td>")), "the claimed name is not on the dashboard: {refused}");
}
