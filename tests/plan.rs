//! `palier-agent plan` and `calendar` against a real repository written by `palier-server`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{World, manifest, stderr};
use serde::Deserialize;

/// The `plan --json` document of SPEC 5, read back strictly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanDoc {
    platform: String,
    now: String,
    improvement_level: u8,
    stability_level: u8,
    bundles: Vec<Row>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    id: String,
    version: String,
    decision: String,
    reason: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    apply_at: Option<String>,
    #[serde(default)]
    notice_at: Option<String>,
    #[serde(default)]
    slot_end: Option<String>,
}

fn plan(w: &World, config: &std::path::Path, now: &str) -> PlanDoc {
    let out = w.run("palier-agent", &["plan", "--config", config.to_str().unwrap(), "--now", now, "--json"]);
    assert!(out.status.success(), "plan: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("plan --json: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn by_id(doc: &PlanDoc) -> BTreeMap<&str, &Row> {
    doc.bundles.iter().map(|r| (r.id.as_str(), r)).collect()
}

/// Bundles that exercise each axis for a level-2/level-2 platform.
fn publish_mix(w: &World) {
    let repo = "repo";
    w.publish(&manifest("quiz-fix", "1.0.1", "mod_quiz", "technical", "none", ""), &[]);
    w.publish(&manifest("forum-fix", "1.0.0", "mod_forum", "technical", "none", ""), &[]);
    w.publish(&manifest("nav-rework", "2.0.0", "theme_boost", "global", "none", ""), &["--reported-by", "univ-a"]);
    w.publish(&manifest("quiz-big", "3.0.0", "mod_quiz", "technical", "global", ""), &[]);
    for (b, datasets) in [("quiz-fix@1.0.1", 2), ("forum-fix@1.0.0", 2), ("nav-rework@2.0.0", 1), ("quiz-big@3.0.0", 2)] {
        w.server(&["validate", "--repo", repo, b, "--alpha"]);
        for i in 0..datasets {
            w.server(&["validate", "--repo", repo, b, "--dataset", &format!("ds-{i}")]);
        }
    }
}

#[test]
fn plan_json_has_the_spec_shape_and_the_contract_decisions() {
    let w = World::new();
    publish_mix(&w);
    let config = w.agent_config("univ-a", 2, 2);
    // Tuesday 1 December 2026, 10:00 in Paris.
    let doc = plan(&w, &config, "2026-12-01T10:00:00+01:00");
    assert_eq!((doc.platform.as_str(), doc.improvement_level, doc.stability_level), ("univ-a", 2, 2));
    assert_eq!(doc.now, "2026-12-01T10:00:00+01:00");
    let rows = by_id(&doc);
    let quiz = rows["quiz-fix"];
    assert_eq!((quiz.decision.as_str(), quiz.reason.as_deref()), ("eligible", None));
    assert_eq!(quiz.version, "1.0.1");
    assert_eq!(quiz.apply_at.as_deref(), Some("2026-12-01T22:00:00+01:00"), "first window: Tuesday 22:00");
    assert_eq!(quiz.notice_at.as_deref(), Some("2026-12-01T20:00:00+01:00"), "notice 2 h before");
    assert_eq!(quiz.slot_end.as_deref(), Some("2026-12-01T23:30:00+01:00"), "the window's end");
    let forum = rows["forum-fix"];
    assert_eq!((forum.decision.as_str(), forum.reason.as_deref()), ("skipped", Some("component-not-selected")));
    let nav = rows["nav-rework"];
    assert_eq!(nav.decision, "waiting-validation", "reported by univ-a, but only one dataset: {nav:?}");
    assert_eq!(nav.reason.as_deref(), Some("insufficient-datasets"));
    let big = rows["quiz-big"];
    assert_eq!((big.decision.as_str(), big.reason.as_deref()), ("needs-scheduled-intervention", Some("data-impact-too-high")));
    assert!(big.detail.is_some());
}

#[test]
fn plan_table_reads_at_a_glance() {
    let w = World::new();
    publish_mix(&w);
    let config = w.agent_config("univ-b", 3, 1);
    let out = w.run("palier-agent", &["plan", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("improvement level 3  stability level 1"), "{text}");
    let line = text.lines().find(|l| l.starts_with("quiz-fix@1.0.1")).unwrap();
    assert!(line.contains("eligible") && line.contains("apply"), "{line}");
    let line = text.lines().find(|l| l.starts_with("quiz-big@3.0.0")).unwrap();
    assert!(line.contains("needs-scheduled-intervention (data-impact-too-high)"), "{line}");
}

#[test]
fn halted_and_yanked_bundles_are_skipped_with_their_reason() {
    let w = World::new();
    publish_mix(&w);
    w.server(&["halt", "--repo", "repo", "quiz-fix@1.0.1", "--reason", "rollbacks"]);
    w.server(&["yank", "--repo", "repo", "forum-fix@1.0.0", "--reason", "withdrawn"]);
    let config = w.agent_config("univ-c", 3, 2);
    let doc = plan(&w, &config, "2026-12-01T10:00:00+01:00");
    let rows = by_id(&doc);
    assert_eq!(rows["quiz-fix"].reason.as_deref(), Some("halted"));
    assert_eq!(rows["forum-fix"].reason.as_deref(), Some("yanked"));
}

/// Refused: exit 1, one line naming the repository; the state folder's bundles record and
/// the site are untouched.
fn refused(w: &World, config: &std::path::Path, needle: &str) {
    let site_before = std::fs::read(w.path("site/dirroot/version.php")).unwrap();
    let out = w.run("palier-agent", &["plan", "--config", config.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("repository") && err.to_lowercase().contains(needle), "expected {needle:?} in {err}");
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read(w.path("site/dirroot/version.php")).unwrap(), site_before);
}

#[test]
fn tampered_metadata_is_refused() {
    let w = World::new();
    w.publish(&manifest("quiz-fix", "1.0.1", "mod_quiz", "technical", "none", ""), &[]);
    let config = w.agent_config("univ-a", 3, 1);
    // The bundle's entry is in the hashed bin its name falls in, re-signed at version 2.
    let bin = std::fs::read_dir(w.path("repo/metadata")).unwrap().map(|e| e.unwrap().path()).find(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        name.starts_with("2.bin-") && std::fs::read_to_string(p).unwrap().contains("quiz-fix")
    });
    let path = bin.expect("the bin holding quiz-fix");
    let text = std::fs::read_to_string(&path).unwrap().replace("test bundle quiz-fix", "evil bundle quiz-fix");
    std::fs::write(&path, text).unwrap();
    refused(&w, &config, "signature");
}

#[test]
fn a_signature_by_the_wrong_key_is_refused() {
    let w = World::new();
    let config = w.agent_config("univ-a", 3, 1);
    w.publish(&manifest("quiz-fix", "1.0.1", "mod_quiz", "technical", "none", ""), &[]);
    // Another repository's timestamp, signed by keys the pinned root does not trust.
    w.server(&["init", "--repo", "other/repo"]);
    w.server(&["publish", "--repo", "other/repo", "bundles/quiz-fix-1.0.1/bundle.tar.gz"]);
    std::fs::copy(w.path("other/repo/metadata/timestamp.json"), w.path("repo/metadata/timestamp.json")).unwrap();
    refused(&w, &config, "signature");
}

#[test]
fn expired_metadata_is_refused() {
    let w = World::new();
    let config = w.agent_config("univ-a", 3, 1);
    // Signed three days ago: the timestamp (1 day) has expired.
    let then = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_hours(72)).unwrap().to_string();
    let dir = w.path("bundles/x");
    std::fs::create_dir_all(dir.join("files/mod/quiz")).unwrap();
    std::fs::write(dir.join("files/mod/quiz/a.php"), "x").unwrap();
    std::fs::write(dir.join("bundle.toml"), manifest("quiz-fix", "1.0.1", "mod_quiz", "technical", "none", "")).unwrap();
    w.server(&["bundle", "build", "--manifest", "bundles/x/bundle.toml", "--source", "bundles/x/files", "--out", "x.tar.gz"]);
    w.server(&["publish", "--repo", "repo", "x.tar.gz", "--now", &then]);
    refused(&w, &config, "expired");
}

#[test]
fn rolled_back_metadata_is_refused() {
    let w = World::new();
    let config = w.agent_config("univ-a", 3, 1);
    w.publish(&manifest("quiz-fix", "1.0.1", "mod_quiz", "technical", "none", ""), &[]);
    let old = std::fs::read(w.path("repo/metadata/timestamp.json")).unwrap();
    w.publish(&manifest("quiz-fix", "1.0.2", "mod_quiz", "technical", "none", ""), &[]);
    plan(&w, &config, "2026-12-01T10:00:00+01:00");
    // An attacker (or a stale mirror) serves the older, still validly signed timestamp.
    std::fs::write(w.path("repo/metadata/timestamp.json"), old).unwrap();
    refused(&w, &config, "previously fetched version");
}

#[test]
fn calendar_is_an_icalendar_document_of_the_coming_interventions() {
    let w = World::new();
    publish_mix(&w);
    let config = w.agent_config("univ-a", 2, 2);
    let out = w.run("palier-agent", &["calendar", "--config", config.to_str().unwrap(), "--now", "2026-12-01T10:00:00+01:00"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("BEGIN:VCALENDAR\r\n") && text.ends_with("END:VCALENDAR\r\n"), "{text}");
    assert!(text.contains("DTSTART:20261201T210000Z\r\nDTEND:20261201T223000Z\r\n"), "the Tuesday 22:00-23:30 Paris window, in UTC, whole: {text}");
    assert!(text.contains("quiz-fix"), "{text}");
}

/// The agent reads the repository over HTTP from `palier-server serve` as well as from a
/// folder.
#[test]
fn plan_over_http_from_palier_server_serve() {
    use std::io::BufRead;
    let w = World::new();
    publish_mix(&w);
    let mut server = std::process::Command::new(common::bin("palier-server"))
        .args(["serve", "--repo", "repo", "--listen", "127.0.0.1:0"])
        .current_dir(w.tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(addr.starts_with("http://127.0.0.1:"), "{line}");
    let config = w.agent_config("univ-a", 2, 2);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.lines().map(|l| if l.starts_with("repository = ") { format!("repository = \"{addr}/repo\"") } else { l.to_owned() }).collect::<Vec<_>>().join("\n");
    std::fs::write(&config, text).unwrap();
    let doc = plan(&w, &config, "2026-12-01T10:00:00+01:00");
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(by_id(&doc)["quiz-fix"].decision, "eligible");
    assert_eq!(doc.bundles.len(), 4);
}
