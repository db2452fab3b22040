//! A fleet for `bench/dashboard.sh` and the dashboard's browser test: a repository and a
//! control-plane store in DIR, seeded through the library's own functions (publish, validate,
//! halt; platforms, statuses with plans, receipts, fix requests), deterministic for a seed.
//!
//!     dashboard_gen DIR [PLATFORMS [BUNDLES]]     (default 300 platforms, 50 bundles)
//!
//! Writes DIR/repo (its keys in DIR/keys, as `init` puts them), DIR/palier.db, and
//! DIR/tokens.tsv (`NAME<TAB>TOKEN` per platform, for a client that posts as an agent).
//! The fleet, as of the moment it runs: a few platforms refusing the repository, a few whose
//! last intervention failed or rolled back (with receipts that say why, hook output and
//! all), some stale, some never seen, one contract mismatch; every other platform applied
//! its bundles, level-3 ones with a backup. Bundles across five components, some validated,
//! one halted, one yanked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use jiff::{SignedDuration, Timestamp};
use palier_bundle::{BundleRef, BundleState, Component, PlatformId, hostile};
use palier_server::repo::{self, Expiries, RepoPaths, Thresholds};
use palier_server::store::{Hold, Installed, NewReceipt, PlatformContract, ReportedPlan, Status, Store};

const COMPONENTS: [&str; 5] = ["mod_quiz", "mod_forum", "mod_assign", "block_timeline", "theme_boost"];

/// A small deterministic generator (xorshift), so that two runs seed the same fleet.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn receipt_body(platform: &str, id: &str, outcome: &str, bundles: &[String], stability: u8, at: Timestamp, reason: Option<&str>) -> serde_json::Value {
    let step = |name: &str, ok: bool, offset: i64| {
        serde_json::json!({ "name": name, "started_at": (at + SignedDuration::from_secs(offset)).to_string(), "duration_ms": 40 + offset * 3, "ok": ok })
    };
    let failed = outcome != "applied";
    let mut steps = vec![step("verify", true, 0), step("stage", true, 1), step("swap", true, 2)];
    let mut checks = vec![serde_json::json!({ "path": "/", "expect_status": 200, "status": 200, "ok": true, "attempts": 1, "duration_ms": 35 })];
    if failed {
        steps.push(step("checks", false, 3));
        steps.push(step("rollback", true, 4));
        checks.push(serde_json::json!({ "path": "/login/index.php", "expect_status": 200, "status": 500, "ok": false, "attempts": 3, "duration_ms": 910, "detail": "answered 500: Exception - Call to undefined function quiz_timer_sync()" }));
    } else {
        steps.push(step("checks", true, 3));
    }
    let mut stdout = String::new();
    for i in 0..200 {
        stdout.push_str(&format!("++ Upgrading plugin {i} of 200: mod_quiz ... done\n"));
    }
    let hooks = vec![
        serde_json::json!({ "hook": "pre_apply", "argv": ["php", "/srv/moodle/admin/cli/maintenance.php", "--enable"], "exit_code": 0, "timed_out": false, "duration_ms": 310, "stdout": "Maintenance mode enabled\n", "stderr": "" }),
        serde_json::json!({ "hook": "post_apply", "argv": ["php", "/srv/moodle/admin/cli/upgrade.php", "--non-interactive"], "exit_code": if failed { 1 } else { 0 }, "timed_out": false, "duration_ms": 5400, "stdout": stdout, "stderr": if failed { "PHP Fatal error: Uncaught Error: Call to undefined function quiz_timer_sync() in /srv/moodle/mod/quiz/lib.php:812\n" } else { "" } }),
    ];
    let mut body = serde_json::json!({
        "id": id, "platform": platform, "stability_level": stability, "started_at": at.to_string(),
        "finished_at": (at + SignedDuration::from_secs(12)).to_string(), "bundles": bundles, "outcome": outcome,
        "steps": steps, "hooks": hooks, "checks": checks,
    });
    if let Some(r) = reason {
        body["reason"] = r.into();
        body["recovery_ms"] = 820.into();
    }
    if stability == 3 {
        body["backup"] = serde_json::json!({ "dir": format!("/var/backups/palier/{id}"), "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(id.as_bytes())), "bytes": 734_003_200, "files": 21_544 });
    }
    body
}

/// What [`generate`] made.
#[derive(Debug, Clone)]
pub struct Generated {
    pub repo: PathBuf,
    pub db: PathBuf,
    pub platforms: usize,
    pub bundles: Vec<String>,
    pub receipts: usize,
    /// The platforms whose last intervention failed or rolled back, or that refuse the repository.
    pub failing: Vec<String>,
    /// `(platform, bundle)` of every bundle rolled back and held on a platform.
    pub held: Vec<(String, String)>,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), platforms, bundles) = (args.get(1), args.get(2).map_or(300, |n| n.parse().unwrap()), args.get(3).map_or(50, |n| n.parse().unwrap()))
    else {
        eprintln!("usage: dashboard_gen DIR [PLATFORMS [BUNDLES]]");
        std::process::exit(2);
    };
    let g = generate(std::path::Path::new(dir), platforms, bundles).await;
    println!("{}: {} platforms, {} bundles, {} receipts", dir, g.platforms, g.bundles.len(), g.receipts);
}

/// Seed DIR with a repository of `n_bundles` bundles and a store of `n_platforms` platforms.
pub async fn generate(dir: &std::path::Path, n_platforms: usize, n_bundles: usize) -> Generated {
    std::fs::create_dir_all(dir).unwrap();
    let now = Timestamp::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // The repository: BUNDLES bundles over five components, published over the last weeks.
    let paths = RepoPaths::new(dir.join("repo"), None);
    repo::init(&paths, Thresholds::default(), Expiries::default(), now).await.unwrap();
    let mut published: Vec<(BundleRef, String)> = Vec::new();
    // Per bundle: validated, and its state in the signed metadata.
    let mut signed: Vec<(bool, &'static str)> = Vec::new();
    for i in 0..n_bundles {
        let component = COMPONENTS[i % COMPONENTS.len()];
        let id = format!("{}-fix-{:02}", component.replace('_', "-"), i);
        let content = format!("<?php // fix {i}\n");
        // Each its own file: `publish` refuses two ids writing one path.
        let file = format!("fix-{i:02}.php");
        let mut m = hostile::manifest_for(&id, "1.0.0", &[(file.as_str(), content.as_bytes())]);
        m.component = Component::new(component).unwrap();
        m.summary = format!("Generated fix {i} of {component}");
        let archive = dir.join(format!("{id}.tar.gz"));
        std::fs::write(&archive, hostile::craft(&[hostile::manifest_entry(&m), hostile::RawEntry::file(&format!("files/{file}"), content.as_bytes())])).unwrap();
        let at = now - SignedDuration::from_hours(6 * (n_bundles - i) as i64);
        repo::publish(&paths, &archive, BTreeSet::new(), repo::DEFAULT_MAX_EXPANDED, at).await.unwrap();
        std::fs::remove_file(&archive).unwrap();
        let bundle: BundleRef = format!("{id}@1.0.0").parse().unwrap();
        let (validated, halted, yanked) = (i % 3 != 2, i == n_bundles.saturating_sub(7), i == n_bundles.saturating_sub(20));
        repo::update(&paths, &bundle, at, move |meta| {
            if validated {
                meta.validations.alpha = true;
                meta.validations.datasets.insert("big-univ".into());
            }
            if halted {
                meta.state = BundleState::Halted;
                meta.state_reason = Some("auto-halt: rolled back on p004, p009".into());
            }
            if yanked {
                meta.state = BundleState::Yanked;
                meta.state_reason = Some("superseded by a rework".into());
            }
            Ok(true)
        })
        .await
        .unwrap();
        published.push((bundle, component.to_owned()));
        signed.push((validated, if halted { "halted" } else if yanked { "yanked" } else { "active" }));
    }

    // The fleet.
    let store = Store::open(&dir.join("palier.db")).unwrap();
    let names: Vec<(PlatformId, Option<PlatformContract>)> = (0..n_platforms)
        .map(|i| {
            let improvement = [3, 3, 2, 1][i % 4];
            let stability = [1, 2, 3][i % 3];
            let components = if improvement == 2 { vec![COMPONENTS[i % 2].to_owned()] } else { Vec::new() };
            (PlatformId::new(format!("univ-{i:03}")).unwrap(), Some(PlatformContract::new(improvement, stability, components, Vec::new()).unwrap()))
        })
        .collect();
    let tokens = store.add_platforms(&names, now - SignedDuration::from_hours(24 * 60)).unwrap();
    let mut tsv = String::new();
    for ((name, _), token) in names.iter().zip(&tokens) {
        tsv.push_str(&format!("{name}\t{token}\n"));
    }
    std::fs::write(dir.join("tokens.tsv"), tsv).unwrap();

    let mut receipts = 0;
    let mut failing_platforms = Vec::new();
    let mut held = Vec::new();
    for (i, (name, contract)) in names.iter().enumerate() {
        let c = contract.as_ref().unwrap();
        // Never seen: the last few registered.
        if i + 4 >= n_platforms {
            continue;
        }
        let takes = |component: &str| c.improvement == 3 || c.components.iter().any(|x| x == component);
        let admitted: Vec<&(BundleRef, String)> = published.iter().filter(|(_, comp)| takes(comp)).collect();
        // The older bundles are installed; the newest ones still due.
        let cut = admitted.len().saturating_sub(1 + (rng.below(4) as usize));
        let installed: Vec<Installed> = admitted[..cut].iter().map(|(b, _)| Installed { id: b.id.to_string(), version: b.version.to_string() }).collect();
        let due: Vec<Installed> = admitted[cut..].iter().map(|(b, _)| Installed { id: b.id.to_string(), version: b.version.to_string() }).collect();
        let (failing, rolled_back, repo_error, stale, mismatch) = (i % 37 == 5, i % 41 == 9, i % 53 == 11, i % 31 == 17, i == 22);
        let outcome = if failing {
            "failed"
        } else if rolled_back {
            "rolled-back"
        } else {
            "applied"
        };
        let mut status = Status::basic(
            if mismatch { c.improvement % 3 + 1 } else { c.improvement },
            c.stability,
            installed.clone(),
            Some(now + SignedDuration::from_mins(30 + 47 * i as i64 % 4000)),
            Some(outcome.into()),
        );
        status.components = Some(c.components.clone());
        status.due = Some(due.clone());
        if repo_error {
            status.repository_error = Some("timestamp metadata expired at 2026-11-29T00:00:00Z (is the server re-signing?)".into());
            status.due = Some(Vec::new());
        }
        // The plan, as the agent reports it with its status (plan --json without detail).
        let next = now + SignedDuration::from_mins(30 + 47 * i as i64 % 4000);
        let mut decisions = Vec::new();
        for ((b, comp), (validated, state)) in published.iter().zip(&signed) {
            let key = Installed { id: b.id.to_string(), version: b.version.to_string() };
            let (decision, reason): (&str, Option<&str>) = if installed.contains(&key) {
                ("installed", (*state != "active").then_some(*state))
            } else if *state != "active" {
                ("skipped", Some(*state))
            } else if rolled_back && due.first() == Some(&key) {
                ("skipped", Some("held"))
            } else if !takes(comp) {
                ("skipped", Some(if c.improvement == 1 { "not-reported" } else { "component-not-selected" }))
            } else if !validated {
                ("waiting-validation", Some("not-alpha-validated"))
            } else {
                ("eligible", None)
            };
            let mut d = serde_json::json!({ "id": b.id.to_string(), "version": b.version.to_string(), "decision": decision, "reason": reason });
            if decision == "eligible" {
                let at = |t: Timestamp| t.to_string();
                d["apply_at"] = at(next).into();
                if c.stability > 1 {
                    d["notice_at"] = at(next - SignedDuration::from_hours(if i % 2 == 0 { 48 } else { 1 })).into();
                    d["slot_end"] = at(next + SignedDuration::from_hours(2)).into();
                }
            }
            decisions.push(d);
        }
        if !repo_error {
            status.plan = Some(serde_json::from_value::<ReportedPlan>(serde_json::json!({ "now": now.to_string(), "bundles": decisions })).unwrap());
        }
        if rolled_back && let Some(d) = due.first() {
            held.push((name.to_string(), format!("{}@{}", d.id, d.version)));
            status.holds = Some(vec![Hold { id: d.id.clone(), version: d.version.clone(), since: (now - SignedDuration::from_hours(3)).to_string(), reason: "rolled back: check /login/index.php answered 500".into() }]);
        }

        // Receipts: one per installed bundle (the last few), then the failing one.
        for (k, b) in installed.iter().rev().take(3).enumerate() {
            let at = now - SignedDuration::from_hours(10 + 24 * k as i64 + (i % 7) as i64);
            let id = format!("{}-{:08x}", at.strftime("%Y%m%dT%H%M%SZ"), rng.next() as u32);
            let bundles = vec![format!("{}@{}", b.id, b.version)];
            let body = receipt_body(name.as_str(), &id, "applied", &bundles, c.stability, at, None);
            let r = NewReceipt { id, platform: name.clone(), outcome: "applied".into(), bundles: vec![bundles[0].parse().unwrap()], reason: None, started_at: at, finished_at: at, body };
            store.add_receipt(&r, at).unwrap();
            receipts += 1;
        }
        if (failing || rolled_back) && let Some(d) = due.first() {
            let at = now - SignedDuration::from_hours(3);
            let id = format!("{}-{:08x}", at.strftime("%Y%m%dT%H%M%SZ"), rng.next() as u32);
            let bundles = vec![format!("{}@{}", d.id, d.version)];
            let reason = "check /login/index.php answered 500 (expected 200) after 3 attempts";
            let body = receipt_body(name.as_str(), &id, outcome, &bundles, c.stability, at, Some(reason));
            let r = NewReceipt { id, platform: name.clone(), outcome: outcome.into(), bundles: vec![bundles[0].parse().unwrap()], reason: Some(reason.into()), started_at: at, finished_at: at, body };
            store.add_receipt(&r, at).unwrap();
            receipts += 1;
        }
        if failing || rolled_back || repo_error {
            failing_platforms.push(name.to_string());
        }
        let seen = if stale { now - SignedDuration::from_hours(5 + (i % 30) as i64) } else { now - SignedDuration::from_mins((i % 50) as i64) };
        // After the receipts: a stored receipt counts as seen too.
        store.set_status(name, &status, seen).unwrap();
        if i % 25 == 3 {
            store.add_fix_request(name, &Component::new(COMPONENTS[i % COMPONENTS.len()]).unwrap(), "the quiz timer resets when the page reloads", None, now - SignedDuration::from_hours(30)).unwrap();
        }
    }
    Generated {
        repo: dir.join("repo"),
        db: dir.join("palier.db"),
        platforms: n_platforms,
        bundles: published.iter().map(|(b, _)| b.to_string()).collect(),
        receipts,
        failing: failing_platforms,
        held,
    }
}
