//! The fleet view (wire contracts 1, 3 and 4) through `oneshot` on `app(state)`, with a real
//! repository and a store seeded by statuses and receipts as agents send them: the plan in
//! the status, the per-bundle and per-platform JSON, the `/metrics` gauges and the served
//! calendar.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jiff::Timestamp;
use palier_bundle::{BundleState, PlatformId, hostile};
use palier_server::http::{AppOptions, AppState, Clock, MAX_BODY, app};
use palier_server::repo::{self, Expiries, RepoPaths, Thresholds};
use palier_server::store::{PlatformContract, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

const BIN: &str = env!("CARGO_BIN_EXE_palier-server");
const OPERATOR: &str = "operator-token-0123456789abcdef";

struct Fx {
    tmp: tempfile::TempDir,
    db: PathBuf,
    store: Arc<Store>,
    app: axum::Router,
    tokens: Vec<(String, String)>,
}

impl Fx {
    fn token(&self, platform: &str) -> &str {
        &self.tokens.iter().find(|(p, _)| p == platform).unwrap().1
    }
}

/// The platforms of the seeded fleet, each registered with contract 3/2.
const PLATFORMS: [&str; 12] = ["univ-a", "univ-b", "univ-c", "univ-d", "univ-e", "univ-f", "univ-g", "univ-h", "univ-i", "univ-j", "univ-k", "univ-l"];

/// A repository holding `crafted@1.0.0` (active) and `other@1.0.0` (halted), a store with
/// the platforms of [`PLATFORMS`], the operator credential set.
async fn fixture() -> Fx {
    fixture_with(Clock::system()).await
}

/// [`fixture`] with the control plane's clock `clock` (the calendar shows only what is to come).
async fn fixture_with(clock: Clock) -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let paths = RepoPaths::new(tmp.path().join("repo"), None);
    let now = Timestamp::now();
    repo::init(&paths, Thresholds::default(), Expiries::default(), now).await.unwrap();
    let archive = tmp.path().join("crafted.tar.gz");
    std::fs::write(&archive, hostile::craft(&hostile::valid_entries())).unwrap();
    repo::publish(&paths, &archive, Default::default(), repo::DEFAULT_MAX_EXPANDED, now).await.unwrap();
    let b: &[u8] = b"<?php // b\n";
    let other = hostile::manifest_for("other", "1.0.0", &[("b.php", b)]);
    let archive = tmp.path().join("other.tar.gz");
    std::fs::write(&archive, hostile::craft(&[hostile::manifest_entry(&other), hostile::RawEntry::file("files/b.php", b)])).unwrap();
    repo::publish(&paths, &archive, Default::default(), repo::DEFAULT_MAX_EXPANDED, now).await.unwrap();
    repo::update(&paths, &"other@1.0.0".parse().unwrap(), now, |m| {
        m.state = BundleState::Halted;
        Ok(true)
    })
    .await
    .unwrap();
    let db = tmp.path().join("palier.db");
    let store = Arc::new(Store::open(&db).unwrap());
    let contract = PlatformContract::new(3, 2, Vec::new(), Vec::new()).unwrap();
    let tokens = PLATFORMS
        .iter()
        .map(|p| (p.to_string(), store.add_platform_with(&PlatformId::new(*p).unwrap(), Some(&contract), now).unwrap()))
        .collect();
    let options = AppOptions { operator_token: Some(OPERATOR.into()), ..AppOptions::default() };
    let app = app(AppState::with_options(paths, clock, Some(store.clone()), options));
    Fx { tmp, db, store, app, tokens }
}

async fn call(app: &axum::Router, method: Method, uri: &str, auth: Option<String>, body: impl Into<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let response = app.clone().oneshot(req.body(body.into()).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// `GET uri` as the operator: status and JSON body.
async fn operator_get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let (s, _, body) = call(app, Method::GET, uri, Some(format!("Bearer {OPERATOR}")), Body::empty()).await;
    (s, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A status with `plan` (the agent's compact form) from `platform`.
fn status(plan: Option<Value>, installed: &[&str]) -> String {
    let installed: Vec<Value> = installed.iter().map(|k| {
        let (id, version) = k.split_once('@').unwrap();
        json!({"id": id, "version": version})
    }).collect();
    let mut s = json!({
        "improvement_level": 3, "stability_level": 2, "installed": installed,
        "next_intervention": null, "last_outcome": null, "components": [], "level2_classes": [],
        "repository_error": null, "due": [], "holds": []
    });
    if let Some(p) = plan {
        s["plan"] = p;
    }
    s.to_string()
}

/// A plan at 2026-12-01T10:00 Paris naming `crafted@1.0.0` with `entry` (id and version added).
fn plan_with(entry: Value) -> Value {
    let mut e = json!({"id": "crafted", "version": "1.0.0"});
    e.as_object_mut().unwrap().extend(entry.as_object().unwrap().clone());
    json!({"now": "2026-12-01T10:00:00+01:00", "bundles": [e]})
}

async fn post_status(fx: &Fx, platform: &str, body: String) -> StatusCode {
    call(&fx.app, Method::POST, "/api/v1/status", Some(format!("Bearer {}", fx.token(platform))), body).await.0
}

async fn post_receipt(fx: &Fx, platform: &str, id: &str, outcome: &str, finished_at: &str) {
    let body = json!({
        "id": id, "platform": platform, "outcome": outcome, "bundles": ["crafted@1.0.0"],
        "stability_level": 2, "started_at": finished_at, "finished_at": finished_at,
        "steps": [], "hooks": [], "checks": [], "reason": format!("{outcome} for the test")
    });
    let (s, _, b) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(format!("Bearer {}", fx.token(platform))), body.to_string()).await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
}

/// Every state of wire contract 3, one platform each, from the plans and receipts sent.
async fn seed(fx: &Fx) {
    let eligible = |notice: Option<&str>| {
        json!({"decision": "eligible", "apply_at": "2026-12-01T22:00:00+01:00", "notice_at": notice, "slot_end": "2026-12-01T23:30:00+01:00"})
    };
    let skipped = |reason: &str| json!({"decision": "skipped", "reason": reason});
    let seeded: Vec<(&str, Option<Value>, &[&str])> = vec![
        ("univ-a", Some(json!({"decision": "installed"})), &["crafted@1.0.0"]),
        // The notice time (08:00) is before the plan's now: out.
        ("univ-b", Some(eligible(Some("2026-12-01T08:00:00+01:00"))), &[]),
        ("univ-c", Some(eligible(Some("2026-12-01T20:00:00+01:00"))), &[]),
        ("univ-d", Some(skipped("class-not-allowed")), &[]),
        ("univ-e", Some(skipped("held")), &[]),
        ("univ-f", Some(skipped("superseded")), &[]),
        ("univ-g", Some(json!({"decision": "waiting-validation", "reason": "insufficient-datasets"})), &[]),
        // univ-h sends nothing.
        ("univ-i", Some(eligible(None)), &[]),
        ("univ-j", Some(json!({"decision": "needs-scheduled-intervention", "reason": "data-impact-too-high"})), &[]),
        ("univ-k", Some(skipped("held")), &[]),
        // An older agent: no plan, but its installed list.
        ("univ-l", None, &["crafted@1.0.0"]),
    ];
    for (p, entry, installed) in seeded {
        let plan = entry.map(plan_with);
        assert_eq!(post_status(fx, p, status(plan, installed)).await, StatusCode::NO_CONTENT, "{p}");
    }
    // univ-e rolled it back (then holds it); univ-i failed to apply it and plans it again;
    // univ-b applied it once before (an older receipt), then a later one was postponed.
    post_receipt(fx, "univ-e", "r-e1", "applied", "2026-11-30T22:00:00Z").await;
    post_receipt(fx, "univ-e", "r-e2", "rolled-back", "2026-11-30T22:05:00Z").await;
    post_receipt(fx, "univ-i", "r-i1", "failed", "2026-11-30T22:00:00Z").await;
    post_receipt(fx, "univ-b", "r-b1", "failed", "2026-11-29T22:00:00Z").await;
    post_receipt(fx, "univ-b", "r-b2", "postponed", "2026-11-30T22:00:00Z").await;
}

#[tokio::test]
async fn the_bundle_view_derives_every_state_from_plans_and_receipts() {
    let fx = fixture().await;
    seed(&fx).await;
    let (s, view) = operator_get(&fx.app, "/api/v1/bundles/crafted/1.0.0").await;
    assert_eq!(s, StatusCode::OK, "{view}");
    assert_eq!(view["bundle"]["id"], "crafted");
    assert_eq!(view["bundle"]["state"], "active");
    let states: Vec<(String, String)> = view["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["platform"].as_str().unwrap().to_owned(), p["state"].as_str().unwrap().to_owned()))
        .collect();
    let want = [
        ("univ-a", "installed"),
        ("univ-b", "scheduled"),
        ("univ-c", "waiting-notice"),
        ("univ-d", "excluded"),
        ("univ-e", "rolled-back"),
        ("univ-f", "skipped"),
        ("univ-g", "waiting-validation"),
        ("univ-h", "unknown"),
        ("univ-i", "failed"),
        ("univ-j", "needs-intervention"),
        ("univ-k", "held"),
        ("univ-l", "installed"),
    ];
    assert_eq!(states, want.map(|(p, s)| (p.to_owned(), s.to_owned())));
    let counts = &view["counts"];
    for (state, n) in [("installed", 2), ("scheduled", 1), ("waiting-notice", 1), ("excluded", 1), ("rolled-back", 1), ("skipped", 1), ("waiting-validation", 1), ("unknown", 1), ("failed", 1), ("needs-intervention", 1), ("held", 1), ("waiting-rollout", 0)] {
        assert_eq!(counts[state], n, "{state}: {counts}");
    }
    let c = &view["platforms"][2];
    assert_eq!(c["apply_at"], "2026-12-01T22:00:00+01:00");
    assert_eq!(c["notice_at"], "2026-12-01T20:00:00+01:00");
    assert_eq!(c["slot_end"], "2026-12-01T23:30:00+01:00");
    assert_eq!(c["rollout_at"], Value::Null);
    assert_eq!(c["receipt"], Value::Null);
    let d = &view["platforms"][3];
    assert_eq!((d["reason"].as_str(), &d["apply_at"]), (Some("class-not-allowed"), &Value::Null));
    let e = &view["platforms"][4];
    assert_eq!(e["receipt"]["id"], "r-e2");
    assert_eq!(e["receipt"]["outcome"], "rolled-back");
    assert_eq!(e["reason"], "held");
    // The latest receipt naming the bundle decides: univ-b's failure was followed by a postponement.
    assert_eq!(view["platforms"][1]["receipt"]["id"], "r-b2");

    // Unknown bundle, malformed name: 404 and 400.
    let (s, body) = operator_get(&fx.app, "/api/v1/bundles/crafted/9.9.9").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("crafted@9.9.9 is not published"), "{body}");
    let (s, _) = operator_get(&fx.app, "/api/v1/bundles/Crafted!/1.0.0").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_status_without_a_plan_keeps_the_last_one_and_a_new_plan_replaces_it() {
    let fx = fixture().await;
    let eligible = plan_with(json!({"decision": "eligible", "apply_at": "2026-12-01T22:00:00+01:00", "notice_at": "2026-12-01T20:00:00+01:00"}));
    assert_eq!(post_status(&fx, "univ-a", status(Some(eligible), &[])).await, StatusCode::NO_CONTENT);
    // The repository could not be verified this cycle: no plan, the last one stands.
    let mut failing: Value = serde_json::from_str(&status(None, &[])).unwrap();
    failing["repository_error"] = json!("repository unreachable");
    assert_eq!(post_status(&fx, "univ-a", failing.to_string()).await, StatusCode::NO_CONTENT);
    let stored = fx.store.plan(&PlatformId::new("univ-a").unwrap()).unwrap().unwrap();
    assert_eq!(stored.now, "2026-12-01T09:00:00Z".parse::<Timestamp>().unwrap());
    assert_eq!(stored.bundles.len(), 1);
    let installed = plan_with(json!({"decision": "installed"}));
    assert_eq!(post_status(&fx, "univ-a", status(Some(installed), &["crafted@1.0.0"])).await, StatusCode::NO_CONTENT);
    let (_, view) = operator_get(&fx.app, "/api/v1/bundles/crafted/1.0.0").await;
    assert_eq!(view["platforms"][0]["state"], "installed");

    // A decision the policy does not know is refused, with nothing stored.
    let bad = json!({"now": "2026-12-01T10:00:00+01:00", "bundles": [{"id": "crafted", "version": "1.0.0", "decision": "maybe"}]});
    assert_eq!(post_status(&fx, "univ-a", status(Some(bad), &[])).await, StatusCode::BAD_REQUEST);
    let bad = json!({"now": "2026-12-01T10:00:00+01:00", "bundles": [{"id": "crafted", "version": "1.0.0", "decision": "skipped", "reason": "because"}]});
    assert_eq!(post_status(&fx, "univ-a", status(Some(bad), &[])).await, StatusCode::BAD_REQUEST);
    let (_, view) = operator_get(&fx.app, "/api/v1/bundles/crafted/1.0.0").await;
    assert_eq!(view["platforms"][0]["state"], "installed");
}

#[tokio::test]
async fn a_plan_of_1000_bundles_fits_the_body_limit() {
    let fx = fixture().await;
    // The longest ids there can be (64 characters), every time field set.
    let bundles: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"id": format!("{:0<60}{i:04}", "mod_quiz-"), "version": "10.20.30", "decision": "eligible",
                   "apply_at": "2026-12-01T22:00:00+01:00", "notice_at": "2026-12-01T20:00:00+01:00", "slot_end": "2026-12-01T23:30:00+01:00"})
        })
        .collect();
    let body = status(Some(json!({"now": "2026-12-01T10:00:00+01:00", "bundles": bundles})), &[]);
    assert!(body.len() < MAX_BODY / 4, "{} bytes", body.len());
    println!("a status with a plan of 1,000 bundles: {} bytes of {MAX_BODY}", body.len());
    assert_eq!(post_status(&fx, "univ-a", body).await, StatusCode::NO_CONTENT);
    assert_eq!(fx.store.plan(&PlatformId::new("univ-a").unwrap()).unwrap().unwrap().bundles.len(), 1000);
}

#[tokio::test]
async fn the_platform_view_has_the_contract_plan_holds_and_receipts() {
    let fx = fixture().await;
    seed(&fx).await;
    let (s, view) = operator_get(&fx.app, "/api/v1/platforms/univ-e").await;
    assert_eq!(s, StatusCode::OK, "{view}");
    assert_eq!(view["platform"]["name"], "univ-e");
    assert_eq!(view["platform"]["contract"]["stability"], 2);
    assert_eq!(view["platform"]["stability_level"], 2);
    assert_eq!(view["plan"]["now"], "2026-12-01T09:00:00Z");
    assert_eq!(view["plan"]["bundles"][0]["reason"], "held");
    let receipts: Vec<&str> = view["receipts"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(receipts, ["r-e2", "r-e1"], "the latest first");
    assert_eq!(view["receipts"][0]["body"]["reason"], "rolled-back for the test");
    let (s, body) = operator_get(&fx.app, "/api/v1/platforms/univ-zz").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, _) = operator_get(&fx.app, "/api/v1/platforms/Bad%20Name").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_fleet_json_is_for_operators_only() {
    let fx = fixture().await;
    for uri in ["/api/v1/bundles/crafted/1.0.0", "/api/v1/platforms/univ-a"] {
        let (s, _, _) = call(&fx.app, Method::GET, uri, None, Body::empty()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}");
        // A platform's own token is not the operator's.
        let (s, _, _) = call(&fx.app, Method::GET, uri, Some(format!("Bearer {}", fx.token("univ-a"))), Body::empty()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}");
    }
}

#[tokio::test]
async fn metrics_have_per_bundle_per_state_gauges_for_active_bundles() {
    let fx = fixture().await;
    seed(&fx).await;
    let (s, _, body) = call(&fx.app, Method::GET, "/metrics", Some(format!("Bearer {OPERATOR}")), Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    for line in [
        "palier_bundle_platforms{bundle=\"crafted@1.0.0\",state=\"installed\"} 2",
        "palier_bundle_platforms{bundle=\"crafted@1.0.0\",state=\"rolled-back\"} 1",
        "palier_bundle_platforms{bundle=\"crafted@1.0.0\",state=\"waiting-rollout\"} 0",
        "palier_bundle_platforms{bundle=\"crafted@1.0.0\",state=\"unknown\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    // The halted bundle has no series: the label set is the active bundles'.
    assert!(!text.contains("bundle=\"other@1.0.0\""), "{text}");
}

/// The platform's calendar URL, as `platform calendar` prints it.
fn calendar_url(fx: &Fx, platform: &str) -> String {
    let out = std::process::Command::new(BIN).args(["platform", "calendar", platform, "--db"]).arg(&fx.db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn the_calendar_is_served_at_a_secret_url_with_stable_uids_and_slot_lengths() {
    // The control plane's clock at the plans' own time: the events are to come whatever day
    // the test runs.
    let fx = fixture_with(Clock::starting_at("2026-12-01T09:00:00Z".parse().unwrap())).await;
    let plan = plan_with(json!({"decision": "eligible", "apply_at": "2026-12-01T22:00:00+01:00", "notice_at": "2026-12-01T20:00:00+01:00", "slot_end": "2026-12-01T23:30:00+01:00"}));
    assert_eq!(post_status(&fx, "univ-c", status(Some(plan.clone()), &[])).await, StatusCode::NO_CONTENT);
    let path = calendar_url(&fx, "univ-c");
    assert!(path.starts_with("/calendar/univ-c/") && path.ends_with(".ics"), "{path}");

    let fetch = |uri: String| {
        let app = fx.app.clone();
        async move {
            let (s, h, body) = call(&app, Method::GET, &uri, None, Body::empty()).await;
            (s, h, String::from_utf8(body).unwrap())
        }
    };
    let (s, headers, first) = fetch(path.clone()).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(headers[header::CONTENT_TYPE], "text/calendar; charset=utf-8");
    // The intervention lasts its window, 22:00 to 23:30 Paris; the notice is its own event.
    assert!(first.contains("DTSTART:20261201T210000Z\r\nDTEND:20261201T223000Z\r\n"), "{first}");
    assert!(first.contains("DTSTART:20261201T190000Z\r\n"), "{first}");
    assert_eq!(first.matches("BEGIN:VEVENT").count(), 2, "{first}");
    let uids = |text: &str| text.lines().filter(|l| l.starts_with("UID:")).map(str::to_owned).collect::<Vec<_>>();

    // A later refresh, after the agent reported again: the same UIDs.
    let mut later = plan.clone();
    later["now"] = json!("2026-12-01T11:00:00+01:00");
    assert_eq!(post_status(&fx, "univ-c", status(Some(later), &[])).await, StatusCode::NO_CONTENT);
    let (_, _, second) = fetch(path.clone()).await;
    assert_eq!(uids(&first), uids(&second));
    assert_eq!(uids(&first).len(), 2);

    // A wrong secret, another platform's secret, an unknown platform, a malformed file: the same 404.
    let other = calendar_url(&fx, "univ-a");
    let secret = path.rsplit('/').next().unwrap();
    let other_secret = other.rsplit('/').next().unwrap();
    let wrong = format!("{}.ics", "0".repeat(64));
    for uri in [
        format!("/calendar/univ-c/{wrong}"),
        format!("/calendar/univ-c/{other_secret}"),
        format!("/calendar/univ-zz/{secret}"),
        format!("/calendar/univ-zz/{wrong}"),
        format!("/calendar/univ-c/{}", secret.trim_end_matches(".ics")),
    ] {
        let (s, _, body) = fetch(uri.clone()).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], format!("not found: {uri}"), "{uri}: no word about the platform");
    }

    // A new API token does not change the calendar's URL.
    let out = std::process::Command::new(BIN).args(["platform", "token", "univ-c", "--db"]).arg(&fx.db).output().unwrap();
    assert!(out.status.success());
    assert_eq!(calendar_url(&fx, "univ-c"), path);
    // With the server's address, the whole URL.
    let out = std::process::Command::new(BIN)
        .args(["platform", "calendar", "univ-c", "--server-url", "https://palier.example.org/", "--db"])
        .arg(&fx.db)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), format!("https://palier.example.org{path}"));
    let _ = &fx.tmp;
}

#[tokio::test]
async fn a_platform_without_a_plan_has_an_empty_calendar() {
    let fx = fixture().await;
    let path = calendar_url(&fx, "univ-h");
    let (s, _, body) = call(&fx.app, Method::GET, &path, None, Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with("BEGIN:VCALENDAR\r\n") && !text.contains("VEVENT"), "{text}");
}
