//! Staged rollouts through the real processes (issue 16's acceptance): 20 platforms on
//! generated Moodle sites, a bundle with canaries and two waves, simulated time (`--now`):
//! the canaries take it first, each wave opens at its time and only for its share, a
//! platform that reported the defect is never held back, and a rollback in the first wave
//! halts the bundle before the second wave opens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::control::{Served, expected_state, serve_with};
use common::{World, http_get, manifest, stderr};
use jiff::{SignedDuration, Timestamp};
use palier_fixture::{MoodleServer, TreeOptions, generate};
use serde_json::Value;
use sha2::{Digest, Sha256};

const BUNDLE: &str = "quiz-fix";
const VERSION: &str = "1.0.1";
const CANARIES: [&str; 2] = ["univ-01", "univ-02"];
/// Wave 1 opens 24 h after publication for 30% of the fleet, wave 2 at 48 h for 60%.
const SPEC: &str = "canary=univ-01,univ-02; 24h=30%; 48h=60%";

/// A platform's place for a bundle, computed here from the documented formula
/// (docs/rollouts.md), independently of `palier_bundle::rollout`.
fn place(bundle: &str, platform: &str) -> u8 {
    let d = Sha256::digest(format!("{bundle}/{platform}").as_bytes());
    let n = u128::from(u64::from_be_bytes(d[..8].try_into().unwrap()));
    u8::try_from((n * 100) >> 64).unwrap()
}

/// Where a platform stands, as the test expects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Canary,
    /// Improvement 1, in `reported_by`, placed outside the first wave.
    Reporter,
    /// Improvement 2 without mod_quiz: its contract excludes the bundle.
    Excluded,
    Wave1,
    /// In the first wave, with a site whose checks fail: rolled back.
    Broken,
    Wave2,
    Outside,
}

struct Platform {
    name: String,
    role: Role,
    config: PathBuf,
    _site: MoodleServer,
}

/// Register `name`, generate its Moodle site (served unless `broken`) and write its agent
/// config: stability 1 without low-load slots, so an eligible bundle is applied at once.
fn platform(w: &World, served: &Served, name: &str, role: Role) -> Platform {
    let (improvement, components) = match role {
        Role::Reporter => (1, ""),
        Role::Excluded => (2, "components = [\"mod_forum\"]\n"),
        _ => (3, ""),
    };
    let level = improvement.to_string();
    let mut add = vec!["platform", "add", name, "--improvement", &level, "--stability", "1", "--db", "palier.db"];
    if role == Role::Excluded {
        add.extend(["--components", "mod_forum"]);
    }
    let out = w.server(&add);
    let token = out.lines().last().unwrap().trim().to_owned();
    let token_file = w.path(&format!("token-{name}"));
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (dirroot, dataroot) = (w.path(&format!("{name}/dirroot")), w.path(&format!("{name}/dataroot")));
    generate(&dirroot, &TreeOptions { files: 0, bytes: 0, dataroot: dataroot.clone(), ..TreeOptions::default() }).unwrap();
    let site = MoodleServer::start(dirroot.clone(), dataroot.clone());
    let wwwroot = site.url().to_owned();
    // The broken site passes its checks before the intervention (the preflight), and fails
    // them once the bundle is live: one of its checks wants the bundle's file absent. The
    // bundle is rolled back, and the site passes its checks again after the rollback.
    let checks = if role == Role::Broken {
        format!("[checks]\nsmoke = [{{ path = \"/\", expect_status = 200 }}, {{ path = \"/mod/quiz/fix-{BUNDLE}.php\", expect_status = 404 }}]\n\n")
    } else {
        String::new()
    };
    let text = format!(
        r#"platform = "{name}"
repository = "file://{repo}"
server = "{server}"
token_file = "{token}"
trusted_root = "repo/metadata/1.root.json"
state_dir = "state-{name}"
timezone = "Europe/Paris"

[moodle]
dirroot = "{dirroot}"
dataroot = "{dataroot}"
wwwroot = "{wwwroot}"

[improvement]
level = {improvement}
{components}
[stability]
level = 1

{checks}[hooks]
timeout = "3s"
"#,
        repo = w.path("repo").display(),
        server = served.url,
        token = token_file.display(),
        dirroot = dirroot.display(),
        dataroot = dataroot.display(),
    );
    let config = w.path(&format!("agent-{name}.toml"));
    std::fs::write(&config, text).unwrap();
    Platform { name: name.to_owned(), role, config, _site: site }
}

/// 20 platforms: two canaries, a reporter and an excluded platform, the rest placed by
/// their hash; the last platform of the first wave has a broken site.
fn fleet(w: &World, served: &Served) -> Vec<Platform> {
    let names: Vec<String> = (1..=20).map(|i| format!("univ-{i:02}")).collect();
    let mut roles: BTreeMap<&str, Role> = BTreeMap::new();
    for name in &names {
        let role = if CANARIES.contains(&name.as_str()) {
            Role::Canary
        } else {
            match place(BUNDLE, name) {
                p if p < 30 => Role::Wave1,
                p if p < 60 => Role::Wave2,
                _ => Role::Outside,
            }
        };
        roles.insert(name, role);
    }
    // The reporter and the excluded platform: the first two outside the first wave.
    let mut later = names.iter().filter(|n| matches!(roles[n.as_str()], Role::Wave2 | Role::Outside));
    let reporter = later.next().expect("a platform outside the first wave").clone();
    let excluded = later.next().expect("another platform outside the first wave").clone();
    roles.insert(&reporter, Role::Reporter);
    roles.insert(&excluded, Role::Excluded);
    let broken = names.iter().rfind(|n| roles[n.as_str()] == Role::Wave1).expect("a platform in the first wave").clone();
    roles.insert(&broken, Role::Broken);
    for role in [Role::Wave1, Role::Wave2, Role::Outside] {
        assert!(roles.values().any(|r| *r == role), "the 20 names give no {role:?} platform: {roles:?}");
    }
    names.iter().map(|n| platform(w, served, n, roles[n.as_str()])).collect()
}

/// `palier-agent plan --json` of every platform at `now`, in parallel: each one's entry for
/// the bundle, with the plan's `now` added as `plan_now`.
fn plans(w: &World, fleet: &[Platform], now: &str) -> BTreeMap<String, Value> {
    std::thread::scope(|s| {
        let handles: Vec<_> = fleet
            .iter()
            .map(|p| {
                s.spawn(move || {
                    let out = w.run("palier-agent", &["plan", "--config", p.config.to_str().unwrap(), "--json", "--now", now]);
                    assert!(out.status.success(), "plan {}: {}", p.name, stderr(&out));
                    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
                    let mut entry = doc["bundles"].as_array().unwrap().iter().find(|b| b["id"] == BUNDLE).cloned().unwrap();
                    entry["plan_now"] = doc["now"].clone();
                    (p.name.clone(), entry)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// `palier-agent run --once` on these platforms at `now`, in parallel: each applies what is
/// due and reports its receipt and status. Returns each one's exit code.
fn run_once(w: &World, fleet: &[&Platform], now: &str) -> BTreeMap<String, (Option<i32>, String)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = fleet
            .iter()
            .map(|p| {
                s.spawn(move || {
                    let out = w.run("palier-agent", &["run", "--once", "--config", p.config.to_str().unwrap(), "--now", now]);
                    (p.name.clone(), (out.status.code(), stderr(&out)))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn decision(entry: &Value) -> (&str, Option<&str>) {
    (entry["decision"].as_str().unwrap_or("absent"), entry["reason"].as_str())
}

/// The instant in an RFC 3339 string (whatever its offset).
fn instant(v: &Value) -> Option<Timestamp> {
    v.as_str().map(|s| s.parse().unwrap())
}

/// The outcome of the latest receipt of `name`'s agent naming the bundle.
fn last_outcome(w: &World, name: &str) -> Option<String> {
    let key = format!("{BUNDLE}@{VERSION}");
    let receipts = palier_agent::receipt::all(&w.path(&format!("state-{name}"))).unwrap();
    receipts.iter().filter(|r| r.bundles.contains(&key)).max_by_key(|r| r.finished_at).map(|r| serde_json::to_value(r.outcome).unwrap().as_str().unwrap().to_owned())
}

/// The control plane's per-bundle view (`GET /api/v1/bundles/{id}/{version}`, loopback: no
/// operator credential) says, for every platform, what that platform's own plan says.
fn assert_view_agrees(w: &World, served: &Served, plans: &BTreeMap<String, Value>, step: &str) {
    let answer = http_get(served.url.strip_prefix("http://").unwrap(), &format!("/api/v1/bundles/{BUNDLE}/{VERSION}"));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.lines().next().unwrap().contains(" 200 "), "{step}: {answer:.300}");
    let view: Value = serde_json::from_str(body).unwrap();
    let entries = view["platforms"].as_array().unwrap();
    assert_eq!(entries.len(), plans.len(), "{step}: {view}");
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for (name, row) in plans {
        let entry = entries.iter().find(|p| p["platform"] == name.as_str()).unwrap_or_else(|| panic!("{step}: {name} not in the view"));
        let want = expected_state(row, row["plan_now"].as_str().unwrap(), last_outcome(w, name).as_deref());
        assert_eq!(entry["state"], want, "{step}: {name}: the server says {entry}, the agent's plan {row}");
        for field in ["reason", "apply_at", "notice_at", "slot_end", "rollout_at"] {
            assert_eq!(entry[field], row.get(field).cloned().unwrap_or(Value::Null), "{step}: {name} {field}: {entry} vs {row}");
        }
        *counts.entry(want).or_default() += 1;
    }
    let served_counts: BTreeMap<&str, u64> = view["counts"].as_object().unwrap().iter().filter(|(_, n)| n.as_u64() != Some(0)).map(|(k, n)| (k.as_str(), n.as_u64().unwrap())).collect();
    assert_eq!(served_counts, counts, "{step}: counts");
    // The rollout's progress (what the bundle page shows): per stage, the platforms whose
    // place falls in it and how many of them have it installed or rolled it back.
    let mut stages: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for (name, row) in plans {
        let stage = if CANARIES.contains(&name.as_str()) {
            "canary"
        } else {
            match place(BUNDLE, name) {
                0..30 => "wave 1",
                30..60 => "wave 2",
                _ => continue,
            }
        };
        let e = stages.entry(stage).or_default();
        e.0 += 1;
        match expected_state(row, row["plan_now"].as_str().unwrap(), last_outcome(w, name).as_deref()) {
            "installed" => e.1 += 1,
            "rolled-back" => e.2 += 1,
            _ => {}
        }
    }
    let rollout = &view["bundle"]["rollout"];
    assert_eq!(rollout["spec"], SPEC, "{step}: {rollout}");
    let served_stages: BTreeMap<&str, (u64, u64, u64)> = rollout["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["platforms"].as_u64() != Some(0))
        .map(|s| (s["name"].as_str().unwrap(), (s["platforms"].as_u64().unwrap(), s["installed"].as_u64().unwrap(), s["rolled_back"].as_u64().unwrap())))
        .collect();
    assert_eq!(served_stages, stages, "{step}: rollout stages {rollout}");
}

#[test]
fn canaries_first_then_each_wave_at_its_time_for_its_share_and_a_rollback_halts_the_rest() {
    let w = World::new();
    let served = serve_with(&w, &["--halt-threshold", "1"]);
    let fleet = fleet(&w, &served);
    let of = |role: Role| -> Vec<&Platform> { fleet.iter().filter(|p| p.role == role).collect() };
    let reporter = of(Role::Reporter)[0].name.clone();

    // Published now (the real clock signs the metadata, so it is valid whatever day the test
    // runs), reported by the reporter, validated by alpha (what stability 1 needs).
    w.publish(&manifest(BUNDLE, VERSION, "mod_quiz", "technical", "none", ""), &["--reported-by", &reporter, "--rollout", SPEC]);
    let key = format!("{BUNDLE}@{VERSION}");
    w.server(&["validate", "--repo", "repo", &key, "--alpha"]);
    let list: Value = serde_json::from_str(&w.server(&["list", "--repo", "repo", "--json"])).unwrap();
    assert_eq!(list["bundles"][0]["rollout"], SPEC, "{list}");
    let published: Timestamp = list["bundles"][0]["published_at"].as_str().unwrap().parse().unwrap();
    let at = |hours: i64| (published + SignedDuration::from_hours(hours)).to_string();
    let wave1_opens = published + SignedDuration::from_hours(24);
    let wave2_opens = published + SignedDuration::from_hours(48);

    // `rollout show` prints the stages with the instants they open.
    let show = w.server(&["rollout", "show", "--repo", "repo", &key, "--now", &at(1)]);
    assert!(show.contains("wave 1   30% of the fleet") && show.contains(&wave1_opens.to_string()), "{show}");
    assert!(show.contains("the waves stop at 60% of the fleet"), "{show}");

    // Hour 1: the canaries and the reporter take it; the waves wait, each with its instant.
    let t = at(1);
    let before = plans(&w, &fleet, &t);
    for p in &fleet {
        let e = &before[&p.name];
        match p.role {
            Role::Canary | Role::Reporter => assert_eq!(decision(e), ("eligible", None), "{}: {e}", p.name),
            Role::Excluded => assert_eq!(decision(e), ("skipped", Some("component-not-selected")), "{}: {e}", p.name),
            Role::Wave1 | Role::Broken => {
                assert_eq!(decision(e), ("waiting-rollout", Some("waiting-rollout")), "{}: {e}", p.name);
                assert_eq!(instant(&e["rollout_at"]), Some(wave1_opens), "{}: {e}", p.name);
            }
            Role::Wave2 => assert_eq!(instant(&e["rollout_at"]), Some(wave2_opens), "{}: {e}", p.name),
            Role::Outside => {
                assert_eq!(decision(e), ("waiting-rollout", Some("waiting-rollout")), "{}: {e}", p.name);
                assert_eq!(e["rollout_at"], Value::Null, "{}: {e}", p.name);
                assert!(e["detail"].as_str().unwrap().starts_with("outside the rollout: its waves reach 60% of the fleet"), "{e}");
            }
        }
    }
    let all: Vec<&Platform> = fleet.iter().collect();
    for (name, (code, err)) in run_once(&w, &all, &t) {
        assert_eq!(code, Some(0), "run {name}: {err}");
    }
    let installed = |plans: &BTreeMap<String, Value>| -> Vec<String> {
        plans.iter().filter(|(_, e)| e["decision"] == "installed").map(|(n, _)| n.clone()).collect()
    };
    let first: Vec<String> = fleet.iter().filter(|p| matches!(p.role, Role::Canary | Role::Reporter)).map(|p| p.name.clone()).collect();
    let after = plans(&w, &fleet, &t);
    assert_eq!(installed(&after), first, "hour 1: only the canaries and the reporter");
    assert_view_agrees(&w, &served, &after, "hour 1");

    // Just before the first wave opens, nothing more is due.
    let just_before = (wave1_opens - SignedDuration::from_secs(1)).to_string();
    let p = plans(&w, &fleet, &just_before);
    assert!(p.values().all(|e| e["decision"] != "eligible"), "{p:?}");

    // Hour 25: the first wave, and only it, takes it; its broken site rolls it back (run
    // last), and the control plane halts the bundle.
    let t = at(25);
    let p = plans(&w, &fleet, &t);
    for pl in &fleet {
        let due = matches!(pl.role, Role::Wave1 | Role::Broken);
        assert_eq!(p[&pl.name]["decision"] == "eligible", due, "{}: {}", pl.name, p[&pl.name]);
    }
    for (name, (code, err)) in run_once(&w, &of(Role::Wave1), &t) {
        assert_eq!(code, Some(0), "run {name}: {err}");
    }
    let broken = of(Role::Broken);
    let (code, err) = run_once(&w, &broken, &t).into_values().next().unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("rolled back"), "{err}");
    let list: Value = serde_json::from_str(&w.server(&["list", "--repo", "repo", "--json"])).unwrap();
    assert_eq!(list["bundles"][0]["state"], "halted", "{list}");
    assert!(list["bundles"][0]["state_reason"].as_str().unwrap().contains(&broken[0].name), "{list}");
    // Every agent reports again at the same instant: nothing is due any more.
    for (name, (code, err)) in run_once(&w, &all, &t) {
        assert_eq!(code, Some(0), "run {name}: {err}");
    }
    let p = plans(&w, &fleet, &t);
    let mut expected: Vec<String> = fleet.iter().filter(|p| matches!(p.role, Role::Canary | Role::Reporter | Role::Wave1)).map(|p| p.name.clone()).collect();
    expected.sort();
    assert_eq!(installed(&p), expected, "hour 25: the first wave joined");
    assert_eq!(decision(&p[&broken[0].name]), ("skipped", Some("held")));
    assert_view_agrees(&w, &served, &p, "hour 25");

    // Hour 49: the second wave's time, but the bundle is halted: nobody else takes it.
    let t = at(49);
    for (name, (code, err)) in run_once(&w, &all, &t) {
        assert_eq!(code, Some(0), "run {name}: {err}");
    }
    let p = plans(&w, &fleet, &t);
    assert_eq!(installed(&p), expected, "hour 49: the halted bundle went no further");
    for pl in of(Role::Wave2).iter().chain(of(Role::Outside).iter()) {
        assert_eq!(decision(&p[&pl.name]), ("skipped", Some("halted")), "{}", pl.name);
    }
    assert_view_agrees(&w, &served, &p, "hour 49");
}

#[test]
fn pause_and_resume_through_the_cli() {
    let w = World::new();
    w.publish(&manifest(BUNDLE, VERSION, "mod_quiz", "technical", "none", ""), &["--rollout", "24h=10%; 48h=100%"]);
    let key = format!("{BUNDLE}@{VERSION}");
    let run = |args: &[&str]| {
        let out = w.run("palier-server", args);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), stderr(&out))
    };
    let list = || -> Value { serde_json::from_str(&w.server(&["list", "--repo", "repo", "--json"])).unwrap() };
    let published: Timestamp = list()["bundles"][0]["published_at"].as_str().unwrap().parse().unwrap();
    let paused_at = (published + SignedDuration::from_hours(30)).to_string();
    let (code, out, _) = run(&["rollout", "pause", "--repo", "repo", &key, "--now", &paused_at]);
    assert_eq!((code, out.trim()), (Some(0), format!("{key}: paused").as_str()));
    let (code, out, _) = run(&["rollout", "pause", "--repo", "repo", &key]);
    assert_eq!((code, out.trim()), (Some(0), format!("{key}: already paused; nothing re-signed").as_str()));
    assert_eq!(list()["bundles"][0]["rollout_paused_at"], paused_at);
    // Resumed 24 h after the pause: the second wave (48 h) moves to 72 h, the first stays.
    let resumed = (published + SignedDuration::from_hours(54)).to_string();
    let (code, out, _) = run(&["rollout", "resume", "--repo", "repo", &key, "--now", &resumed]);
    assert_eq!((code, out.trim()), (Some(0), format!("{key}: rollout resumed; now 24h=10%; 72h=100%").as_str()));
    let (code, out, _) = run(&["rollout", "resume", "--repo", "repo", &key]);
    assert_eq!((code, out.trim()), (Some(0), format!("{key}: already rolling out (not paused); nothing re-signed").as_str()));
    assert_eq!(list()["bundles"][0]["rollout_paused_at"], Value::Null);
    // set, the same again, none; a bad spec is one line with an example, exit 2.
    let (code, out, _) = run(&["rollout", "set", "--repo", "repo", &key, "canary=univ-a; 24h=50%"]);
    assert_eq!((code, out.trim()), (Some(0), format!("{key}: rollout canary=univ-a; 24h=50%").as_str()));
    let (_, out, _) = run(&["rollout", "set", "--repo", "repo", &key, "canary=univ-a;24h=50%"]);
    assert_eq!(out.trim(), format!("{key}: already rollout canary=univ-a; 24h=50%; nothing re-signed"));
    let (code, _, err) = run(&["rollout", "set", "--repo", "repo", &key, "24h=50%; 48h=10%"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("invalid rollout \"24h=50%; 48h=10%\": wave 48h=10% does not grow from 24h=50%") && err.contains("for example canary="), "{err}");
    let (code, out, _) = run(&["rollout", "set", "--repo", "repo", &key, "none"]);
    assert_eq!((code, out.trim()), (Some(0), format!("{key}: without a rollout").as_str()));
    let (code, _, err) = run(&["rollout", "pause", "--repo", "repo", &key]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("bundle {key} has no rollout to pause or resume")), "{err}");

    // The repository's default rollout: applied by publish unless --rollout says otherwise.
    let (code, out, _) = run(&["rollout", "default", "--repo", "repo", "canary=univ-b; 72h=100%"]);
    assert_eq!((code, out.trim()), (Some(0), "default rollout: canary=univ-b; 72h=100%"));
    assert!(!w.path("repo").join("settings.json").exists(), "the settings are never in the served folder");
    assert!(w.path("keys/settings.json").exists());
    let (_, out, _) = run(&["rollout", "default", "--repo", "repo"]);
    assert_eq!(out.trim(), "default rollout: canary=univ-b; 72h=100%");
    w.publish(&manifest("forum-fix", "1.0.0", "mod_forum", "technical", "none", ""), &[]);
    w.publish(&manifest("assign-fix", "1.0.0", "mod_assign", "technical", "none", ""), &["--rollout", "none"]);
    let rows: BTreeMap<String, Value> = list()["bundles"].as_array().unwrap().iter().map(|b| (b["id"].as_str().unwrap().to_owned(), b["rollout"].clone())).collect();
    assert_eq!(rows["forum-fix"], "canary=univ-b; 72h=100%");
    assert_eq!(rows["assign-fix"], Value::Null);
    let table = w.server(&["list", "--repo", "repo"]);
    assert!(table.lines().next().unwrap().ends_with("ROLLOUT"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("forum-fix@1.0.0") && l.ends_with("canary=univ-b; 72h=100%")), "{table}");
    let (code, out, _) = run(&["rollout", "default", "--repo", "repo", "none"]);
    assert_eq!((code, out.trim()), (Some(0), "default rollout: none"));
}
