//! The control-plane API under `/api/v1/`, the dashboard and the auto-halt, through `oneshot`
//! on `app(state)` with a real repository and store in a temporary folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jiff::Timestamp;
use palier_bundle::{BundleRef, BundleState, PlatformId, hostile};
use palier_server::http::{AppOptions, AppState, Clock, Limits, MAX_BODY, PLATFORM_HEADER, app};
use palier_server::repo::{self, Expiries, RepoPaths, Thresholds};
use palier_server::store::{PlatformContract, Store};
use tower::ServiceExt;

const BIN: &str = env!("CARGO_BIN_EXE_palier-server");

struct Fx {
    _tmp: tempfile::TempDir,
    paths: RepoPaths,
    db: PathBuf,
    store: Arc<Store>,
    app: axum::Router,
    a: String,
    b: String,
}

/// A repository holding `crafted@1.0.0`, a store with platforms `univ-a` and `univ-b`, both
/// registered with contract 3/1 (every validated bundle).
async fn fixture(halt_threshold: u32) -> Fx {
    fixture_with(AppOptions { halt_threshold, ..AppOptions::default() }).await
}

fn contract(improvement: u8, components: &[&str]) -> PlatformContract {
    PlatformContract::new(improvement, 1, components.iter().map(|c| c.to_string()).collect(), Vec::new()).unwrap()
}

async fn fixture_with(options: AppOptions) -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let paths = RepoPaths::new(tmp.path().join("repo"), None);
    let now = Timestamp::now();
    repo::init(&paths, Thresholds::default(), Expiries::default(), now).await.unwrap();
    let archive = tmp.path().join("crafted.tar.gz");
    std::fs::write(&archive, hostile::craft(&hostile::valid_entries())).unwrap();
    repo::publish(&paths, &archive, Default::default(), repo::DEFAULT_MAX_EXPANDED, now).await.unwrap();
    let db = tmp.path().join("palier.db");
    let store = Arc::new(Store::open(&db).unwrap());
    let a = store.add_platform_with(&PlatformId::new("univ-a").unwrap(), Some(&contract(3, &[])), now).unwrap();
    let b = store.add_platform_with(&PlatformId::new("univ-b").unwrap(), Some(&contract(3, &[])), now).unwrap();
    let app = app(AppState::with_options(paths.clone(), Clock::system(), Some(store.clone()), options));
    Fx { _tmp: tmp, paths, db, store, app, a, b }
}

async fn call(app: &axum::Router, method: Method, uri: &str, token: Option<&str>, body: impl Into<Body>) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let response = app.clone().oneshot(req.body(body.into()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, bytes)
}

const OPERATOR: &str = "operator-token-0123456789abcdef";

/// `Authorization: Basic` for user `ops` and `password`.
fn basic(password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("ops:{password}")))
}

/// `GET uri` with an optional `Authorization` value: status, headers, body as text.
async fn get(app: &axum::Router, uri: &str, auth: Option<&str>) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::get(uri);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let response = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (status, headers, body)
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// A JSON error body `{"error": "..."}`, nothing else; returns the message.
fn error(bytes: &[u8]) -> String {
    let v = json(bytes);
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 1, "{v}");
    obj["error"].as_str().unwrap().to_owned()
}

fn receipt(id: &str, platform: &str, outcome: &str, bundles: &[&str]) -> String {
    serde_json::json!({
        "id": id, "platform": platform, "outcome": outcome, "bundles": bundles,
        "stability_level": 2, "started_at": "2026-03-01T10:00:00Z", "finished_at": "2026-03-01T10:01:00Z",
        "steps": [], "hooks": [], "checks": [], "reason": null
    })
    .to_string()
}

fn crafted() -> BundleRef {
    "crafted@1.0.0".parse().unwrap()
}

async fn state_of(paths: &RepoPaths, bundle: &BundleRef) -> (BundleState, Option<String>, Vec<String>) {
    let all = repo::list(paths).await.unwrap();
    let p = all.iter().find(|p| p.meta.manifest.id == bundle.id && p.meta.manifest.version == bundle.version).unwrap();
    (p.meta.state, p.meta.state_reason.clone(), p.meta.reported_by.iter().map(|p| p.to_string()).collect())
}

fn nothing_stored(fx: &Fx) {
    assert_eq!(fx.store.receipt_count().unwrap(), 0);
    for p in ["univ-a", "univ-b"] {
        assert!(fx.store.fix_requests_of(&PlatformId::new(p).unwrap()).unwrap().is_empty());
    }
    assert!(fx.store.platforms().unwrap().iter().all(|p| p.last_seen.is_none() && p.improvement_level.is_none()));
}

#[tokio::test]
async fn a_fix_request_is_stored_and_listed_for_its_platform_only() {
    let fx = fixture(2).await;
    let (s, body) = call(&fx.app, Method::POST, "/api/v1/fix-requests", Some(&fx.a), r#"{"component":"mod_quiz","summary":"quiz timer resets"}"#).await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    let fr = json(&body);
    assert_eq!(fr["id"], "FR-1");
    assert_eq!(fr["platform"], "univ-a");
    assert_eq!(fr["component"], "mod_quiz");
    assert_eq!(fr["summary"], "quiz timer resets");
    assert_eq!(fr["bundle"], serde_json::Value::Null);
    assert_eq!(fr["status"], "open");
    fr["created_at"].as_str().unwrap().parse::<Timestamp>().unwrap();
    assert_eq!(fr.as_object().unwrap().len(), 7);

    let (s, body) = call(&fx.app, Method::GET, "/api/v1/fix-requests", Some(&fx.a), Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["fix_requests"].as_array().unwrap(), &vec![fr]);
    let (s, body) = call(&fx.app, Method::GET, "/api/v1/fix-requests", Some(&fx.b), Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body), serde_json::json!({ "fix_requests": [] }));
}

#[tokio::test]
async fn a_fix_request_naming_a_published_bundle_adds_the_platform_to_reported_by() {
    let fx = fixture(2).await;
    assert!(state_of(&fx.paths, &crafted()).await.2.is_empty());
    let before = std::fs::read(fx.paths.metadata().join("timestamp.json")).unwrap();
    let (s, body) = call(&fx.app, Method::POST, "/api/v1/fix-requests", Some(&fx.b), r#"{"component":"mod_quiz","summary":"same bug","bundle":"crafted@1.0.0"}"#).await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    let fr = json(&body);
    assert_eq!((fr["status"].as_str(), fr["bundle"].as_str()), (Some("linked"), Some("crafted@1.0.0")));
    assert_eq!(state_of(&fx.paths, &crafted()).await.2, vec!["univ-b"]);
    assert_ne!(std::fs::read(fx.paths.metadata().join("timestamp.json")).unwrap(), before, "re-signed");

    // Not published: 404, nothing stored, nothing re-signed.
    let before = std::fs::read(fx.paths.metadata().join("timestamp.json")).unwrap();
    let (s, body) = call(&fx.app, Method::POST, "/api/v1/fix-requests", Some(&fx.a), r#"{"component":"mod_quiz","summary":"x","bundle":"crafted@9.9.9"}"#).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error(&body).contains("crafted@9.9.9 is not published"));
    assert!(fx.store.fix_requests_of(&PlatformId::new("univ-a").unwrap()).unwrap().is_empty());
    assert_eq!(std::fs::read(fx.paths.metadata().join("timestamp.json")).unwrap(), before);
}

#[tokio::test]
async fn bad_input_is_refused_with_a_json_error_and_nothing_stored() {
    let fx = fixture(2).await;
    let ok_fr = r#"{"component":"mod_quiz","summary":"s"}"#;
    let status_body = r#"{"improvement_level":1,"stability_level":2,"installed":[],"next_intervention":null,"last_outcome":null}"#;
    // (what, path, token, body, expected status, words of the error)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, String, StatusCode, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("no token", "/api/v1/fix-requests", None, ok_fr.into(), StatusCode::UNAUTHORIZED, "missing Authorization"),
        ("wrong token", "/api/v1/fix-requests", Some("0123456789abcdef"), ok_fr.into(), StatusCode::UNAUTHORIZED, "unknown API token"),
        ("no token, status", "/api/v1/status", None, status_body.into(), StatusCode::UNAUTHORIZED, "missing Authorization"),
        ("wrong token, receipt", "/api/v1/receipts", Some(&fx.b[..63]), receipt("r1", "univ-b", "applied", &[]), StatusCode::UNAUTHORIZED, "unknown API token"),
        ("another platform", "/api/v1/receipts", Some(&fx.b), receipt("r1", "univ-a", "rolled-back", &["crafted@1.0.0"]), StatusCode::FORBIDDEN, "univ-b cannot send a receipt for platform \"univ-a\""),
        ("malformed JSON", "/api/v1/fix-requests", Some(&fx.a), r#"{"component":"#.into(), StatusCode::BAD_REQUEST, "malformed JSON"),
        ("malformed receipt", "/api/v1/receipts", Some(&fx.a), "not json".into(), StatusCode::BAD_REQUEST, "malformed JSON"),
        ("too large", "/api/v1/fix-requests", Some(&fx.a), format!(r#"{{"component":"mod_quiz","summary":"{}"}}"#, "x".repeat(MAX_BODY)), StatusCode::PAYLOAD_TOO_LARGE, "larger than 1048576 bytes"),
        ("too large receipt", "/api/v1/receipts", Some(&fx.a), format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_BODY)), StatusCode::PAYLOAD_TOO_LARGE, "larger than"),
        ("unknown field", "/api/v1/fix-requests", Some(&fx.a), r#"{"component":"mod_quiz","summary":"s","platform":"univ-b"}"#.into(), StatusCode::BAD_REQUEST, "unknown field `platform`"),
        ("unknown status field", "/api/v1/status", Some(&fx.a), r#"{"improvement_level":1,"stability_level":2,"installed":[],"next_intervention":null,"last_outcome":null,"x":1}"#.into(), StatusCode::BAD_REQUEST, "unknown field `x`"),
        ("bad component", "/api/v1/fix-requests", Some(&fx.a), r#"{"component":"Mod Quiz","summary":"s"}"#.into(), StatusCode::BAD_REQUEST, "component"),
        ("two-line summary", "/api/v1/fix-requests", Some(&fx.a), r#"{"component":"mod_quiz","summary":"a\nb"}"#.into(), StatusCode::BAD_REQUEST, "summary: must be one line"),
        ("long summary", "/api/v1/fix-requests", Some(&fx.a), format!(r#"{{"component":"mod_quiz","summary":"{}"}}"#, "x".repeat(201)), StatusCode::BAD_REQUEST, "summary"),
        ("bad bundle ref", "/api/v1/fix-requests", Some(&fx.a), r#"{"component":"mod_quiz","summary":"s","bundle":"Nope@x"}"#.into(), StatusCode::BAD_REQUEST, "bundle"),
        ("bidi summary", "/api/v1/fix-requests", Some(&fx.a), r#"{"component":"mod_quiz","summary":"abc\u202edcba"}"#.into(), StatusCode::BAD_REQUEST, "summary: must be one line"),
        ("zero-width summary", "/api/v1/fix-requests", Some(&fx.a), r#"{"component":"mod_quiz","summary":"a\u200bb"}"#.into(), StatusCode::BAD_REQUEST, "bidi"),
        ("bidi outcome", "/api/v1/status", Some(&fx.a), r#"{"improvement_level":1,"stability_level":2,"installed":[],"next_intervention":null,"last_outcome":"ok\u2066"}"#.into(), StatusCode::BAD_REQUEST, "last_outcome"),
        ("bidi repository error", "/api/v1/status", Some(&fx.a), r#"{"improvement_level":1,"stability_level":2,"installed":[],"next_intervention":null,"last_outcome":null,"repository_error":"x\u202ey"}"#.into(), StatusCode::BAD_REQUEST, "repository_error"),
        ("receipt with 101 bundles", "/api/v1/receipts", Some(&fx.a), receipt("r1", "univ-a", "rolled-back", &vec!["crafted@1.0.0"; 101]), StatusCode::UNPROCESSABLE_ENTITY, "at most 100 bundles"),
        ("receipt naming an unpublished bundle", "/api/v1/receipts", Some(&fx.a), receipt("r1", "univ-a", "rolled-back", &["other@1.0.0"]), StatusCode::UNPROCESSABLE_ENTITY, "other@1.0.0 is not published"),
        ("bad outcome", "/api/v1/receipts", Some(&fx.a), receipt("r1", "univ-a", "exploded", &[]), StatusCode::BAD_REQUEST, "outcome"),
        ("receipt missing id", "/api/v1/receipts", Some(&fx.a), r#"{"platform":"univ-a","outcome":"applied","bundles":[],"started_at":"2026-03-01T10:00:00Z","finished_at":"2026-03-01T10:00:00Z"}"#.into(), StatusCode::BAD_REQUEST, "missing field `id`"),
        ("receipt not an object", "/api/v1/receipts", Some(&fx.a), "[1]".into(), StatusCode::BAD_REQUEST, "JSON object"),
        ("bad level", "/api/v1/status", Some(&fx.a), r#"{"improvement_level":4,"stability_level":2,"installed":[],"next_intervention":null,"last_outcome":null}"#.into(), StatusCode::BAD_REQUEST, "improvement_level"),
    ];
    for (what, uri, token, body, want, needle) in cases {
        let (s, bytes) = call(&fx.app, Method::POST, uri, token, body).await;
        assert_eq!(s, want, "{what}: {}", String::from_utf8_lossy(&bytes));
        let msg = error(&bytes);
        assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
        nothing_stored(&fx);
    }
    // GET without a token, and a wrong method.
    let (s, bytes) = call(&fx.app, Method::GET, "/api/v1/fix-requests", None, Body::empty()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    error(&bytes);
    let (s, bytes) = call(&fx.app, Method::GET, "/api/v1/receipts", Some(&fx.a), Body::empty()).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    error(&bytes);
    assert_eq!(state_of(&fx.paths, &crafted()).await.0, BundleState::Active);
}

#[tokio::test]
async fn a_resent_receipt_is_stored_once() {
    let fx = fixture(2).await;
    let r = receipt("20260301T100000Z-abcd1234", "univ-a", "applied", &["crafted@1.0.0"]);
    let (s, body) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(&fx.a), r.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body), serde_json::json!({ "id": "20260301T100000Z-abcd1234", "stored": true }));
    let (s, body) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(&fx.a), r).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["stored"], false);
    assert_eq!(fx.store.receipt_count().unwrap(), 1);
    // The same id from another platform is that platform's own receipt.
    let (s, _) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(&fx.b), receipt("20260301T100000Z-abcd1234", "univ-b", "applied", &[])).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(fx.store.receipt_count().unwrap(), 2);
    assert_eq!(fx.store.bundle_outcomes().unwrap()["crafted@1.0.0"].applied, 1);
}

#[tokio::test]
async fn a_status_report_updates_the_fleet_view() {
    let fx = fixture(2).await;
    let body = r#"{"improvement_level":1,"stability_level":3,"installed":[{"id":"crafted","version":"1.0.0"}],"next_intervention":"2026-03-02T02:00:00Z","last_outcome":"applied"}"#;
    let (s, bytes) = call(&fx.app, Method::POST, "/api/v1/status", Some(&fx.b), body).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{}", String::from_utf8_lossy(&bytes));
    let b = fx.store.platforms().unwrap().into_iter().find(|p| p.name == "univ-b").unwrap();
    assert_eq!((b.improvement_level, b.stability_level), (Some(1), Some(3)));
    assert_eq!(b.installed.len(), 1);
    assert_eq!(b.next_intervention.as_deref(), Some("2026-03-02T02:00:00Z"));
    assert_eq!(b.last_outcome.as_deref(), Some("applied"));
    assert!(b.last_seen.is_some());
}

#[tokio::test]
async fn two_platforms_rolling_back_the_same_bundle_halt_it_in_the_signed_metadata() {
    let fx = fixture(2).await;
    // One platform, twice: still one platform.
    for id in ["r1", "r2"] {
        let (s, _) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(&fx.a), receipt(id, "univ-a", "rolled-back", &["crafted@1.0.0"])).await;
        assert_eq!(s, StatusCode::CREATED);
    }
    assert_eq!(state_of(&fx.paths, &crafted()).await.0, BundleState::Active);
    let (s, _) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(&fx.b), receipt("r1", "univ-b", "rolled-back", &["crafted@1.0.0"])).await;
    assert_eq!(s, StatusCode::CREATED);
    let (state, reason, _) = state_of(&fx.paths, &crafted()).await;
    assert_eq!(state, BundleState::Halted);
    assert_eq!(reason.as_deref(), Some("auto-halt: rolled back on univ-a, univ-b"));

    // As the release manager sees it.
    let out = std::process::Command::new(BIN).args(["list", "--json", "--repo"]).arg(&fx.paths.dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &list["bundles"][0];
    assert_eq!((row["id"].as_str(), row["state"].as_str()), (Some("crafted"), Some("halted")));
    assert_eq!(row["state_reason"], "auto-halt: rolled back on univ-a, univ-b");
    let _ = &fx.db;
}

#[tokio::test]
async fn a_higher_threshold_waits_for_more_platforms() {
    let fx = fixture(3).await;
    for (token, p) in [(&fx.a, "univ-a"), (&fx.b, "univ-b")] {
        let (s, _) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(token), receipt("r1", p, "rolled-back", &["crafted@1.0.0"])).await;
        assert_eq!(s, StatusCode::CREATED);
    }
    assert_eq!(state_of(&fx.paths, &crafted()).await.0, BundleState::Active);
}

#[tokio::test]
async fn the_dashboard_shows_the_fleet_and_escapes_every_value() {
    let fx = fixture_with(AppOptions { operator_token: Some(OPERATOR.into()), ..AppOptions::default() }).await;
    let evil = "<script>alert(1)</script>&\"'";
    let body = serde_json::json!({ "component": "mod_quiz", "summary": evil }).to_string();
    let (s, _) = call(&fx.app, Method::POST, "/api/v1/fix-requests", Some(&fx.a), body).await;
    assert_eq!(s, StatusCode::CREATED);
    let status = serde_json::json!({
        "improvement_level": 2, "stability_level": 1, "installed": [{"id": "crafted", "version": "1.0.0"}],
        "next_intervention": null, "last_outcome": "<img src=x onerror=alert(2)>"
    });
    let (s, _) = call(&fx.app, Method::POST, "/api/v1/status", Some(&fx.a), status.to_string()).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(&fx.b), receipt("r1", "univ-b", "rolled-back", &["crafted@1.0.0"])).await;
    assert_eq!(s, StatusCode::CREATED);

    let response = fx.app.clone().oneshot(Request::get("/").header(header::AUTHORIZATION, basic(OPERATOR)).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let html = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"), "{html}");
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
    for needle in ["univ-a", "univ-b", "crafted@1.0.0", "FR-1", "mod_quiz", "active"] {
        assert!(html.contains(needle), "no {needle} in {html}");
    }
    // crafted@1.0.0: installed on 1 platform, 0 applied, 1 rolled back, 0 failed.
    assert!(html.contains("<td class=\"num\">1</td><td class=\"num\">0</td><td class=\"num\">1</td><td class=\"num\">0</td>"), "{html}");
}

#[tokio::test]
async fn metrics_count_api_requests_by_endpoint_and_status() {
    let fx = fixture(2).await;
    call(&fx.app, Method::POST, "/api/v1/receipts", Some(&fx.a), receipt("r1", "univ-a", "applied", &[])).await;
    call(&fx.app, Method::POST, "/api/v1/receipts", None, "{}").await;
    call(&fx.app, Method::GET, "/api/v1/fix-requests", Some(&fx.a), Body::empty()).await;
    let (s, body) = call(&fx.app, Method::GET, "/metrics", None, Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    for line in [
        "palier_http_requests_total{route=\"api_receipts\",status=\"201\"} 1",
        "palier_http_requests_total{route=\"api_receipts\",status=\"401\"} 1",
        "palier_http_requests_total{route=\"api_fix_requests\",status=\"200\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
}

#[tokio::test]
async fn without_a_store_the_api_answers_503() {
    let fx = fixture(2).await;
    let app = app(AppState::new(fx.paths.clone(), Clock::system()));
    let (s, body) = call(&app, Method::POST, "/api/v1/status", Some(&fx.a), "{}").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(error(&body).contains("--db"));
}

/// Register `name` with `contract`; its token.
fn register(fx: &Fx, name: &str, contract: PlatformContract) -> String {
    fx.store.add_platform_with(&PlatformId::new(name).unwrap(), Some(&contract), Timestamp::now()).unwrap()
}

async fn rolled_back(fx: &Fx, token: &str, platform: &str, id: &str) -> StatusCode {
    call(&fx.app, Method::POST, "/api/v1/receipts", Some(token), receipt(id, platform, "rolled-back", &["crafted@1.0.0"])).await.0
}

#[tokio::test]
async fn forged_rollbacks_from_platforms_whose_contract_excludes_the_bundle_never_halt_it() {
    let fx = fixture(1).await;
    // crafted@1.0.0 changes mod_quiz (technical) and nobody reported it: level 1 never gets
    // it, nor level 2 on other components; an unregistered contract is not trusted either.
    let l1 = register(&fx, "only-own", contract(1, &[]));
    let l2 = register(&fx, "forum-only", contract(2, &["mod_forum"]));
    let none = fx.store.add_platform(&PlatformId::new("no-contract").unwrap(), Timestamp::now()).unwrap();
    for (token, p) in [(&l1, "only-own"), (&l2, "forum-only"), (&none, "no-contract")] {
        assert_eq!(rolled_back(&fx, token, p, "r1").await, StatusCode::CREATED);
    }
    assert_eq!(state_of(&fx.paths, &crafted()).await.0, BundleState::Active, "halted on the word of platforms that could never get it");
    // A level-2 platform that lists the component is admitted: at threshold 1 it halts it.
    let quiz = register(&fx, "quiz", contract(2, &["mod_quiz"]));
    assert_eq!(rolled_back(&fx, &quiz, "quiz", "r1").await, StatusCode::CREATED);
    let (state, reason, _) = state_of(&fx.paths, &crafted()).await;
    assert_eq!(state, BundleState::Halted);
    assert_eq!(reason.as_deref(), Some("auto-halt: rolled back on quiz"));
}

#[tokio::test]
async fn an_agent_that_reports_what_is_due_counts_only_for_bundles_it_had() {
    let fx = fixture(2).await;
    // univ-a's agent reports `due` (a newer agent) and never named crafted@1.0.0.
    let status = r#"{"improvement_level":3,"stability_level":1,"installed":[],"next_intervention":null,"last_outcome":null,"due":[],"holds":[]}"#;
    assert_eq!(call(&fx.app, Method::POST, "/api/v1/status", Some(&fx.a), status).await.0, StatusCode::NO_CONTENT);
    assert_eq!(rolled_back(&fx, &fx.a, "univ-a", "r1").await, StatusCode::CREATED);
    assert_eq!(rolled_back(&fx, &fx.b, "univ-b", "r1").await, StatusCode::CREATED);
    assert_eq!(state_of(&fx.paths, &crafted()).await.0, BundleState::Active, "univ-a never had it");
    // Its next status holds the bundle (it rolled it back): now it counts, and the halt follows.
    let status = r#"{"improvement_level":3,"stability_level":1,"installed":[],"next_intervention":null,"last_outcome":"rolled-back",
        "due":[],"holds":[{"id":"crafted","version":"1.0.0","since":"2026-03-01T10:01:00Z","reason":"rolled back: check failed"}]}"#;
    assert_eq!(call(&fx.app, Method::POST, "/api/v1/status", Some(&fx.a), status).await.0, StatusCode::NO_CONTENT);
    let (state, reason, _) = state_of(&fx.paths, &crafted()).await;
    assert_eq!(state, BundleState::Halted);
    assert_eq!(reason.as_deref(), Some("auto-halt: rolled back on univ-a, univ-b"));
    // Shown with the receipts that triggered it.
    let halts = fx.store.auto_halts().unwrap();
    assert_eq!(halts.len(), 1);
    assert_eq!(halts[0].receipts, vec!["univ-a/r1".to_owned(), "univ-b/r1".to_owned()]);
    let (_, _, html) = get(&fx.app, "/", None).await;
    let row = html.split("<tr>").find(|r| r.contains("univ-a/r1")).unwrap_or_else(|| panic!("no auto-halt row: {html}"));
    assert!(row.contains(">crafted@1.0.0</a></td>") && row.contains("univ-b/r1"), "{row}");
}

#[tokio::test]
async fn the_halt_share_waits_for_a_share_of_the_platforms_that_applied_it() {
    let fx = fixture_with(AppOptions { halt_threshold: 2, halt_share: Some(0.5), ..AppOptions::default() }).await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        let name = format!("ok-{i}");
        let t = register(&fx, &name, contract(3, &[]));
        let (s, _) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(&t), receipt("r0", &name, "applied", &["crafted@1.0.0"])).await;
        assert_eq!(s, StatusCode::CREATED);
        tokens.push(t);
    }
    // 2 rollbacks of 6 platforms that applied it: under half.
    assert_eq!(rolled_back(&fx, &fx.a, "univ-a", "r1").await, StatusCode::CREATED);
    assert_eq!(rolled_back(&fx, &fx.b, "univ-b", "r1").await, StatusCode::CREATED);
    assert_eq!(state_of(&fx.paths, &crafted()).await.0, BundleState::Active);
    // 3 of 6: half.
    assert_eq!(rolled_back(&fx, &tokens[0], "ok-0", "r1").await, StatusCode::CREATED);
    assert_eq!(state_of(&fx.paths, &crafted()).await.0, BundleState::Halted);
}

#[tokio::test]
async fn the_dashboard_and_metrics_are_for_operators_only() {
    let fx = fixture_with(AppOptions { operator_token: Some(OPERATOR.into()), ..AppOptions::default() }).await;
    for uri in ["/", "/metrics", "/?page=2"] {
        let (s, h, body) = get(&fx.app, uri, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}: {body}");
        assert!(h[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Basic "), "{uri}");
        assert!(!body.contains("univ-a"), "{uri}: {body}");
        let (s, _, _) = get(&fx.app, uri, Some(&basic("wrong-token-0123456789"))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}");
        let (s, _, _) = get(&fx.app, uri, Some(&format!("Bearer {}", fx.a))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}: a platform token is not an operator's");
        let (s, _, body) = get(&fx.app, uri, Some(&basic(OPERATOR))).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {body}");
        let (s, _, _) = get(&fx.app, uri, Some(&format!("Bearer {OPERATOR}"))).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
    }
    // The repository and /healthz stay open to agents.
    assert_eq!(get(&fx.app, "/repo/metadata/timestamp.json", None).await.0, StatusCode::OK);
    assert_eq!(get(&fx.app, "/healthz", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn fix_request_summaries_are_shown_to_operators_only() {
    let fx = fixture(2).await;
    let body = r#"{"component":"mod_quiz","summary":"secret customer detail"}"#;
    assert_eq!(call(&fx.app, Method::POST, "/api/v1/fix-requests", Some(&fx.a), body).await.0, StatusCode::CREATED);
    // No operator credential configured (loopback only): the page shows no summary.
    let (s, _, html) = get(&fx.app, "/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("FR-1") && !html.contains("secret customer detail"), "{html}");
    assert!(html.contains("Summaries are shown to operators only"));
}

#[tokio::test]
async fn over_its_quota_a_platform_gets_429_with_retry_after() {
    let limits = Limits { receipts_per_minute: 3, statuses_per_minute: 2, fix_requests_per_minute: 1, ..Limits::default() };
    let fx = fixture_with(AppOptions { limits, ..AppOptions::default() }).await;
    for i in 0..3 {
        let (s, _) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(&fx.a), receipt(&format!("r{i}"), "univ-a", "applied", &[])).await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let req = Request::post("/api/v1/receipts")
        .header(header::AUTHORIZATION, format!("Bearer {}", fx.a))
        .body(Body::from(receipt("r9", "univ-a", "applied", &[])))
        .unwrap();
    let response = fx.app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let msg = error(&response.into_body().collect().await.unwrap().to_bytes());
    assert!(msg.contains("more than 3 receipts in a minute"), "{msg}");
    assert_eq!(fx.store.receipt_count().unwrap(), 3);
    // Another platform has its own quota.
    let (s, _) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(&fx.b), receipt("r9", "univ-b", "applied", &[])).await;
    assert_eq!(s, StatusCode::CREATED);
    let fr = r#"{"component":"mod_quiz","summary":"s"}"#;
    assert_eq!(call(&fx.app, Method::POST, "/api/v1/fix-requests", Some(&fx.a), fr).await.0, StatusCode::CREATED);
    assert_eq!(call(&fx.app, Method::POST, "/api/v1/fix-requests", Some(&fx.a), fr).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_platform_over_its_stored_size_gets_507_and_nothing_more_is_stored() {
    let limits = Limits { stored_bytes_per_platform: 400, ..Limits::default() };
    let fx = fixture_with(AppOptions { limits, ..AppOptions::default() }).await;
    let (s, _) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(&fx.a), receipt("r1", "univ-a", "applied", &[])).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, body) = call(&fx.app, Method::POST, "/api/v1/receipts", Some(&fx.a), receipt("r2", "univ-a", "applied", &[])).await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{}", String::from_utf8_lossy(&body));
    assert!(error(&body).contains("its quota is 400"));
    assert_eq!(fx.store.receipt_count().unwrap(), 1);
}

#[tokio::test]
async fn the_dashboard_says_what_is_wrong_with_each_platform() {
    let fx = fixture(2).await;
    // univ-a cannot verify the repository, and runs another contract than the registered one.
    let status = r#"{"improvement_level":2,"stability_level":1,"installed":[],"next_intervention":null,"last_outcome":null,
        "components":["mod_quiz"],"level2_classes":["technical"],"repository_error":"timestamp metadata expired at 2026-03-01T00:00:00Z","due":[],"holds":[]}"#;
    let (s, body) = call(&fx.app, Method::POST, "/api/v1/status", Some(&fx.a), status).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{}", String::from_utf8_lossy(&body));
    // A wrong token claiming univ-c, twice.
    for _ in 0..2 {
        let req = Request::post("/api/v1/status")
            .header(header::AUTHORIZATION, "Bearer 0000000000000000")
            .header(PLATFORM_HEADER, "univ-c")
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(fx.app.clone().oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let (s, _, html) = get(&fx.app, "/", None).await;
    assert_eq!(s, StatusCode::OK);
    let row = html.split("<tr>").find(|r| r.contains(">univ-a</a></td>")).unwrap();
    assert!(row.contains("cannot verify the repository: timestamp metadata expired at 2026-03-01T00:00:00Z"), "{row}");
    assert!(row.contains("contract mismatch: the agent runs improvement 2, registered 3"), "{row}");
    let row = html.split("<tr>").find(|r| r.contains(">univ-b</a></td>")).unwrap();
    assert!(row.contains("never seen"), "{row}");
    let row = html.split("<tr>").find(|r| r.contains("<td>univ-c</td>")).unwrap_or_else(|| panic!("no refused-token row: {html}"));
    assert!(row.contains("<td class=\"num\">2</td>"), "{row}");
}

#[tokio::test]
async fn a_fix_request_names_a_bundle_of_its_component_that_is_not_yanked() {
    let fx = fixture(2).await;
    // Bare id: the newest published version.
    let (s, body) = call(&fx.app, Method::POST, "/api/v1/fix-requests", Some(&fx.a), r#"{"component":"mod_quiz","summary":"s","bundle":"crafted"}"#).await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["bundle"], "crafted@1.0.0");
    // Another component.
    let (s, body) = call(&fx.app, Method::POST, "/api/v1/fix-requests", Some(&fx.a), r#"{"component":"mod_forum","summary":"s","bundle":"crafted@1.0.0"}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&body).contains("changes component mod_quiz, not mod_forum"));
    // Yanked.
    repo::update(&fx.paths, &crafted(), Timestamp::now(), |m| {
        m.state = BundleState::Yanked;
        Ok(true)
    })
    .await
    .unwrap();
    let (s, body) = call(&fx.app, Method::POST, "/api/v1/fix-requests", Some(&fx.b), r#"{"component":"mod_quiz","summary":"s","bundle":"crafted"}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&body).contains("crafted@1.0.0 is yanked"));
    assert!(fx.store.fix_requests_of(&PlatformId::new("univ-b").unwrap()).unwrap().is_empty());
}

#[tokio::test]
async fn the_dashboard_pages_its_long_tables() {
    let fx = fixture(2).await;
    let names: Vec<(PlatformId, Option<PlatformContract>)> = (0..250).map(|i| (PlatformId::new(format!("p{i:03}")).unwrap(), Some(contract(3, &[])))).collect();
    fx.store.add_platforms(&names, Timestamp::now()).unwrap();
    // The list of every platform, 50 a page (the attention list above it shows the first 50
    // never seen).
    let list = |html: &str| html.split("id=\"platforms\"").nth(1).unwrap_or_else(|| panic!("no platform list in {html}")).to_owned();
    let (_, _, first) = get(&fx.app, "/", None).await;
    assert!(first.contains("page 1 of 6 (252 rows)") && list(&first).contains(">p000</a>") && !list(&first).contains(">p050</a>"), "{first}");
    let (_, _, fifth) = get(&fx.app, "/?page=5", None).await;
    assert!(fifth.contains("page 5 of 6") && list(&fifth).contains(">p249</a>") && !list(&fifth).contains(">p000</a>"));
    assert!(first.contains("href=\"/?page=2\""), "the pager links the next page");
    assert!(first.len() < 100_000, "{} bytes", first.len());
}
