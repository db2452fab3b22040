//! The dashboard's pages through `oneshot` on `app(state)`, with a real repository and store in
//! a temporary folder: the overview, a bundle's page, a platform's page, their filters,
//! pagination, times, links, escaping, the JSON overview and the server timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use palier_bundle::{PlatformId, hostile};
use palier_server::http::{AppOptions, AppState, Clock, app};
use palier_server::repo::{self, Expiries, RepoPaths, Thresholds};
use palier_server::store::{Hold, Installed, NewReceipt, PlatformContract, ReportedPlan, Status, Store};
use tower::ServiceExt;

const OPERATOR: &str = "0123456789abcdef0123456789abcdef";

struct Fx {
    _tmp: tempfile::TempDir,
    store: Arc<Store>,
    app: axum::Router,
    now: Timestamp,
}

fn contract(improvement: u8, stability: u8, components: &[&str]) -> PlatformContract {
    PlatformContract::new(improvement, stability, components.iter().map(|c| c.to_string()).collect(), Vec::new()).unwrap()
}

/// A repository holding `crafted@1.0.0` (component mod_quiz), a store, and the app with
/// `options` (the clock is the system's: instants are made relative to it).
async fn fixture(options: AppOptions) -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let paths = RepoPaths::new(tmp.path().join("repo"), None);
    let now = Timestamp::now();
    repo::init(&paths, Thresholds::default(), Expiries::default(), now).await.unwrap();
    let archive = tmp.path().join("crafted.tar.gz");
    std::fs::write(&archive, hostile::craft(&hostile::valid_entries())).unwrap();
    repo::publish(&paths, &archive, Default::default(), repo::DEFAULT_MAX_EXPANDED, now).await.unwrap();
    let store = Arc::new(Store::open(&tmp.path().join("palier.db")).unwrap());
    let app = app(AppState::with_options(paths, Clock::system(), Some(store.clone()), options));
    Fx { _tmp: tmp, store, app, now }
}

fn pid(name: &str) -> PlatformId {
    PlatformId::new(name).unwrap()
}

fn basic() -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("ops:{OPERATOR}")))
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::builder().method(Method::GET).uri(uri).header(header::AUTHORIZATION, basic()).body(Body::empty()).unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
}

fn installed(key: &str) -> Installed {
    let (id, version) = key.split_once('@').unwrap();
    Installed { id: id.into(), version: version.into() }
}

fn receipt(platform: &str, id: &str, outcome: &str, at: Timestamp, body: serde_json::Value) -> NewReceipt {
    NewReceipt {
        id: id.into(),
        platform: pid(platform),
        outcome: outcome.into(),
        bundles: vec!["crafted@1.0.0".parse().unwrap()],
        reason: body.get("reason").and_then(|r| r.as_str()).map(str::to_owned),
        started_at: at,
        finished_at: at,
        body,
    }
}

/// The `<tr>` of the table `id` whose text names `needle`.
fn row<'a>(html: &'a str, table: &str, needle: &str) -> &'a str {
    let t = html.split(&format!("id=\"{table}\"")).nth(1).unwrap_or_else(|| panic!("no table {table} in {html}"));
    let t = t.split("</table>").next().unwrap();
    t.split("<tr").find(|r| r.contains(needle)).unwrap_or_else(|| panic!("no row with {needle} in table {table}: {t}"))
}

/// The plan an agent reports: crafted@1.0.0 with `decision` and `reason`, eligible ones
/// applied at `apply_at`.
fn plan(now: Timestamp, decision: &str, reason: Option<&str>, apply_at: Option<Timestamp>) -> Option<ReportedPlan> {
    let mut d = serde_json::json!({ "id": "crafted", "version": "1.0.0", "decision": decision, "reason": reason });
    if let Some(at) = apply_at {
        d["apply_at"] = at.to_string().into();
    }
    Some(serde_json::from_value(serde_json::json!({ "now": now.to_string(), "bundles": [d] })).unwrap())
}

/// A fleet: univ-ok applied, univ-fail failed (crafted@1.0.0 scheduled again), univ-repo
/// refuses the repository, univ-stale not seen for a day, univ-new never seen; univ-rb
/// rolled back crafted@1.0.0 and holds it. Each reports its plan but univ-repo (which
/// cannot) and univ-new.
async fn fleet(options: AppOptions) -> Fx {
    let fx = fixture(options).await;
    let s = &fx.store;
    let now = fx.now;
    let names = ["univ-ok", "univ-fail", "univ-repo", "univ-stale", "univ-new", "univ-rb", "college-x"];
    let list: Vec<(PlatformId, Option<PlatformContract>)> = names.iter().map(|n| (pid(n), Some(contract(3, 1, &[])))).collect();
    s.add_platforms(&list, now - SignedDuration::from_hours(48)).unwrap();
    let status = |outcome: &str| Status {
        plan: plan(now, "installed", None, None),
        ..Status::basic(3, 1, vec![installed("crafted@1.0.0")], Some(now + SignedDuration::from_hours(5)), Some(outcome.into()))
    };
    s.set_status(&pid("univ-ok"), &status("applied"), now).unwrap();
    s.set_status(&pid("college-x"), &status("applied"), now).unwrap();
    let failed = Status { plan: plan(now, "eligible", None, Some(now + SignedDuration::from_hours(5))), ..Status::basic(3, 1, vec![], None, Some("failed".into())) };
    s.set_status(&pid("univ-fail"), &failed, now).unwrap();
    let mut repo_error = Status { plan: None, ..status("applied") };
    repo_error.repository_error = Some("timestamp metadata expired".into());
    s.set_status(&pid("univ-repo"), &repo_error, now).unwrap();
    s.set_status(&pid("univ-stale"), &status("applied"), now - SignedDuration::from_hours(24)).unwrap();
    let mut rb = Status { plan: plan(now, "skipped", Some("held"), None), ..Status::basic(3, 1, vec![], None, Some("rolled-back".into())) };
    rb.due = Some(vec![]);
    rb.holds = Some(vec![Hold { id: "crafted".into(), version: "1.0.0".into(), since: now.to_string(), reason: "rolled back: check /login/index.php failed".into() }]);
    s.set_status(&pid("univ-rb"), &rb, now).unwrap();
    fx
}

#[tokio::test]
async fn the_overview_counts_outcomes_and_lists_failures_first() {
    let fx = fleet(AppOptions::default()).await;
    let (s, headers, html) = get(&fx.app, "/").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(html.contains("<meta http-equiv=\"refresh\""), "reloads itself, no script");
    assert!(!html.contains("<script"));
    // Counts by last outcome, each a link to the platforms it counts.
    assert!(html.contains("id=\"count-applied\" href=\"/?state=applied\"><b>4</b>"), "{html}");
    assert!(html.contains("id=\"count-failed\" href=\"/?state=failed\"><b>1</b>"), "{html}");
    assert!(html.contains("id=\"count-none\" href=\"/?state=none\"><b>1</b>"), "{html}");
    assert!(html.contains("id=\"count-stale\" href=\"/?state=stale\"><b>1</b>"), "{html}");
    // Needs attention: refusing the repository, then failed, rolled back, stale, never seen.
    let attention = html.split("id=\"attention\"").nth(1).unwrap().split("</table>").next().unwrap();
    let order: Vec<usize> = ["univ-repo", "univ-fail", "univ-rb", "univ-stale", "univ-new"].iter().map(|n| attention.find(&format!(">{n}</a>")).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "attention order {order:?}: {attention}");
    assert!(!attention.contains("univ-ok") && !attention.contains("college-x"));
    assert!(row(&html, "attention", "univ-stale").contains("not seen for 1 d (stale after 3 h)"));
    // Rolling out: crafted@1.0.0 installed on 4 (ok, college-x, repo, stale) of the 6 that
    // take it (and univ-fail, scheduled again, and univ-rb, which holds it).
    let r = row(&html, "rolling-out", "crafted@1.0.0");
    assert!(r.contains("href=\"/bundles/crafted/1.0.0\"") && r.contains("4 / 6"), "{r}");
    // Links between pages.
    assert!(html.contains("<a href=\"/platforms/univ-fail\">univ-fail</a>"));
}

#[tokio::test]
async fn filters_and_search_live_in_the_address() {
    let fx = fleet(AppOptions::default()).await;
    let list = |html: &str| html.split("id=\"platforms\"").nth(1).unwrap().split("</table>").next().unwrap().to_owned();
    let (_, _, html) = get(&fx.app, "/?state=failed").await;
    let l = list(&html);
    assert!(l.contains(">univ-fail</a>") && !l.contains(">univ-ok</a>") && !l.contains(">univ-rb</a>"), "{l}");
    assert!(html.contains("1 of 7 platforms: state failed"), "{html}");
    let (_, _, html) = get(&fx.app, "/?q=univ-").await;
    let l = list(&html);
    assert!(l.contains(">univ-ok</a>") && !l.contains("college-x"), "{l}");
    let (_, _, html) = get(&fx.app, "/?state=problem&q=STALE").await;
    let l = list(&html);
    assert!(l.contains(">univ-stale</a>") && l.matches("<tr><td>").count() == 1, "{l}");
    // The search box keeps the search.
    assert!(html.contains("name=\"q\" placeholder=\"platform or bundle\" value=\"STALE\""));
    // A component: level 3 platforms take every component, so all; the bundles of another none.
    let (_, _, html) = get(&fx.app, "/?component=mod_forum").await;
    assert!(html.contains("No bundle matches the filters."), "{html}");
    let (_, _, html) = get(&fx.app, "/?component=mod_quiz").await;
    assert!(row(&html, "bundles", "crafted@1.0.0").contains("mod_quiz"));
    let (_, _, html) = get(&fx.app, "/?state=nonsense").await;
    assert!(html.contains("Unknown state &quot;nonsense&quot;"), "{html}");
}

#[tokio::test]
async fn times_are_in_the_chosen_zone_to_the_minute_with_ago() {
    let fx = fixture(AppOptions { timezone: jiff::tz::TimeZone::get("Europe/Paris").unwrap(), ..AppOptions::default() }).await;
    fx.store.add_platform_with(&pid("univ-a"), Some(&contract(3, 1, &[])), fx.now).unwrap();
    let next: Timestamp = "2026-07-14T10:15:42.123456789Z".parse().unwrap();
    fx.store.set_status(&pid("univ-a"), &Status::basic(3, 1, vec![], Some(next), Some("applied".into())), fx.now - SignedDuration::from_mins(90)).unwrap();
    let (_, _, html) = get(&fx.app, "/").await;
    let r = row(&html, "platforms", "univ-a");
    assert!(r.contains("2026-07-14 12:15 CEST"), "Paris summer time, to the minute: {r}");
    assert!(r.contains("1 h 30 min ago"), "{r}");
    assert!(!html.contains("123456789") && !html.contains(".123"), "no fraction of a second anywhere: {html}");
    assert!(html.contains("times in Europe/Paris"));
}

#[tokio::test]
async fn the_platform_page_shows_contracts_holds_and_receipts_with_their_details() {
    let fx = fleet(AppOptions { operator_token: Some(OPERATOR.into()), ..AppOptions::default() }).await;
    let at = fx.now - SignedDuration::from_hours(2);
    let mut stdout = String::new();
    for i in 0..500 {
        stdout.push_str(&format!("line {i} of the upgrade\n"));
    }
    let body = serde_json::json!({
        "id": "r-1", "platform": "univ-rb", "outcome": "rolled-back", "bundles": ["crafted@1.0.0"],
        "started_at": at.to_string(), "finished_at": at.to_string(), "reason": "check /login/index.php answered 500",
        "steps": [{"name": "swap", "started_at": at.to_string(), "duration_ms": 12, "ok": true},
                  {"name": "checks", "started_at": at.to_string(), "duration_ms": 900, "ok": false, "detail": "1 of 2 failed"}],
        "checks": [{"path": "/login/index.php", "expect_status": 200, "status": 500, "ok": false, "attempts": 3, "duration_ms": 800}],
        "hooks": [{"hook": "post_apply", "argv": ["php", "admin/cli/upgrade.php"], "exit_code": 1, "timed_out": false,
                   "duration_ms": 4000, "stdout": stdout, "stderr": "PHP Fatal error: boom"}],
        "backup": {"dir": "/var/backups/x", "sha256": "ab".repeat(32), "bytes": 10, "files": 2}, "recovery_ms": 640
    });
    fx.store.add_receipt(&receipt("univ-rb", "r-1", "rolled-back", at, body), fx.now).unwrap();
    let (s, _, html) = get(&fx.app, "/platforms/univ-rb").await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("<h1>Platform univ-rb</h1>"));
    assert!(html.contains("id=\"problems\"") && html.contains("last intervention rolled back"));
    assert!(html.contains("id=\"latest\">Latest intervention: <a href=\"#receipt-r-1\""), "{html}");
    assert!(row(&html, "holds", "crafted").contains("rolled back: check /login/index.php failed"));
    assert!(row(&html, "contract", "registered").contains("<td class=\"num\">3</td><td class=\"num\">1</td>"));
    let plan = row(&html, "plan", "crafted");
    assert!(plan.contains("href=\"/bundles/crafted/1.0.0\"") && plan.contains(">skipped<") && plan.contains("held"), "{plan}");
    let receipt = html.split("id=\"receipt-r-1\"").nth(1).unwrap().split("</section>").next().unwrap();
    for needle in ["check /login/index.php answered 500", "swap", "1 of 2 failed", "/login/index.php", "PHP Fatal error: boom", "line 499 of the upgrade", &"ab".repeat(32), "640 ms"] {
        assert!(receipt.contains(needle), "no {needle} in the receipt: {receipt}");
    }
    assert!(!receipt.contains("line 0 of the upgrade"), "only the tail of a long output");
    assert!(receipt.contains("bytes before]"));
    let (s, _, body) = get(&fx.app, "/platforms/nobody").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    // Operators only.
    let r = fx.app.clone().oneshot(Request::get("/platforms/univ-rb").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_bundle_page_lists_platforms_by_state_with_links() {
    let fx = fleet(AppOptions::default()).await;
    let (s, _, html) = get(&fx.app, "/bundles/crafted/1.0.0").await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("<h1>Bundle crafted@1.0.0</h1>"));
    assert!(html.contains("id=\"metadata\"") && html.contains("mod_quiz"));
    assert!(html.contains("id=\"validations\" class=\"problem\">None yet"), "{html}");
    // The counts per state, each a link; the held platform comes before the scheduled and
    // installed ones; never seen is unknown.
    assert!(html.contains("id=\"count-state-held\" href=\"/bundles/crafted/1.0.0?state=held\"><b>1</b>"), "{html}");
    assert!(html.contains("id=\"count-state-installed\" href=\"/bundles/crafted/1.0.0?state=installed\"><b>4</b>"), "{html}");
    let table = html.split("id=\"platforms\"").nth(1).unwrap();
    let at = |n: &str| table.find(&format!(">{n}</a>")).unwrap();
    assert!(at("univ-rb") < at("univ-fail") && at("univ-fail") < at("univ-ok") && at("univ-ok") < at("univ-new"), "{table}");
    let rb = row(&html, "platforms", "univ-rb");
    assert!(rb.contains(">held<") && rb.contains("rolled back: check /login/index.php failed"), "{rb}");
    let fail = row(&html, "platforms", "univ-fail");
    assert!(fail.contains(">scheduled<") && fail.contains("applies <time"), "{fail}");
    let (_, _, html) = get(&fx.app, "/bundles/crafted/1.0.0?state=installed").await;
    let table = html.split("id=\"platforms\"").nth(1).unwrap();
    assert!(table.contains(">univ-ok</a>") && !table.contains(">univ-rb</a>"), "{table}");
    let (s, _, _) = get(&fx.app, "/bundles/crafted/9.9.9").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = get(&fx.app, "/bundles/..%2F..%2Fetc/passwd").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_platform_that_rolled_the_bundle_back_links_its_receipt() {
    let fx = fleet(AppOptions::default()).await;
    let at = fx.now - SignedDuration::from_mins(30);
    let body = serde_json::json!({"reason": "check /login/index.php answered 500"});
    fx.store.add_receipt(&receipt("univ-rb", "r-9", "rolled-back", at, body), fx.now).unwrap();
    let (_, _, html) = get(&fx.app, "/bundles/crafted/1.0.0?state=rolled-back").await;
    let rb = row(&html, "platforms", "univ-rb");
    assert!(rb.contains(">rolled-back<") && rb.contains("href=\"/platforms/univ-rb#receipt-r-9\""), "{rb}");
    assert!(rb.contains("check /login/index.php answered 500"), "{rb}");
    assert!(html.contains("1 of 7 platforms match"), "{html}");
}

#[tokio::test]
async fn pages_are_paged_fifty_rows_at_a_time() {
    let fx = fixture(AppOptions::default()).await;
    let names: Vec<(PlatformId, Option<PlatformContract>)> = (0..120).map(|i| (pid(&format!("p{i:03}")), Some(contract(3, 1, &[])))).collect();
    fx.store.add_platforms(&names, fx.now).unwrap();
    for i in 0..120 {
        fx.store.set_status(&pid(&format!("p{i:03}")), &Status::basic(3, 1, vec![installed("crafted@1.0.0")], None, Some("applied".into())), fx.now).unwrap();
    }
    let (_, _, html) = get(&fx.app, "/bundles/crafted/1.0.0?page=3").await;
    assert!(html.contains("page 3 of 3 (120 rows)"), "{html}");
    let table = html.split("id=\"platforms\"").nth(1).unwrap();
    assert_eq!(table.matches("<tr><td>").count(), 20);
    assert!(table.contains(">p100</a>") && !table.contains(">p099</a>"));
    assert!(html.contains("<a rel=\"prev\" href=\"/bundles/crafted/1.0.0?page=2\">"), "{html}");
}

#[tokio::test]
async fn hostile_names_reasons_and_searches_are_escaped_on_every_page() {
    let fx = fleet(AppOptions::default()).await;
    // A store written by something else: a platform name no API would accept.
    let evil = "<script>alert(1)</script>\"'&";
    {
        let conn = rusqlite::Connection::open(fx.store.path()).unwrap();
        conn.execute(
            "INSERT INTO platforms (name, token_sha256, created_at, last_outcome, last_seen, holds, repository_error) VALUES (?1, 'x', ?2, ?3, ?2, ?4, ?5)",
            rusqlite::params![
                evil,
                fx.now.to_string(),
                "<img src=x onerror=alert(2)>",
                serde_json::json!([{"id": "crafted", "version": "1.0.0", "since": "<blink>", "reason": "<iframe src=//x>"}]).to_string(),
                "</td><script>alert(3)</script>"
            ],
        )
        .unwrap();
    }
    let at = fx.now;
    let body = serde_json::json!({"id": "r-x", "reason": "<svg onload=alert(4)>", "steps": [{"name": "<u>step</u>", "ok": false, "detail": "<marquee>"}],
        "hooks": [{"hook": "h", "argv": ["<a>"], "exit_code": 1, "stdout": "</pre><script>alert(5)</script>", "stderr": ""}]});
    fx.store.add_receipt(&receipt("univ-rb", "r-x", "rolled-back", at, body), fx.now).unwrap();
    fx.store.add_fix_request(&pid("univ-ok"), &palier_bundle::Component::new("mod_quiz").unwrap(), "<object data=x>", None, fx.now).unwrap();
    let q = "%22%3E%3Cscript%3Ealert(6)%3C%2Fscript%3E";
    for uri in [
        "/".to_owned(),
        format!("/?q={q}"),
        format!("/?state={q}&component={q}"),
        "/?state=problem".to_owned(),
        "/platforms/univ-rb".to_owned(),
        format!("/platforms/univ-rb?q={q}"),
        format!("/bundles/crafted/1.0.0?q={q}&state={q}"),
        "/bundles/crafted/1.0.0".to_owned(),
    ] {
        let (s, _, html) = get(&fx.app, &uri).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {html}");
        for tag in ["<script", "<img", "<iframe", "<svg", "<u>", "<marquee", "<object", "<a>", "<blink", "</td><script"] {
            assert!(!html.contains(tag), "{uri}: unescaped {tag} in {html}");
        }
    }
    let (_, _, html) = get(&fx.app, "/").await;
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"), "{html}");
    assert!(html.contains("href=\"/platforms/%3Cscript%3Ealert%281%29%3C%2Fscript%3E%22%27%26\""), "the link is percent-encoded: {html}");
    let (_, _, html) = get(&fx.app, "/bundles/crafted/1.0.0").await;
    assert!(html.contains("&lt;iframe src=//x&gt;"), "{html}");
}

#[tokio::test]
async fn the_overview_is_json_for_operators_and_every_page_says_its_server_time() {
    let fx = fleet(AppOptions { operator_token: Some(OPERATOR.into()), ..AppOptions::default() }).await;
    let r = fx.app.clone().oneshot(Request::get("/api/v1/overview").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, headers, body) = get(&fx.app, "/api/v1/overview").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let o: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(o["platforms"], 7);
    assert_eq!(o["by_outcome"]["failed"], 1);
    assert_eq!(o["by_problem"]["repository-error"], 1);
    assert_eq!(o["attention"]["rows"][0]["name"], "univ-repo");
    assert_eq!(o["attention"]["rows"][0]["problems"][0]["kind"], "repository-error");
    assert_eq!(o["rolling_out"][0]["bundle"], "crafted@1.0.0");
    assert_eq!(o["list"]["total"], 7);
    assert_eq!(o["stale_after_s"], 3 * 3600);
    let (_, _, body) = get(&fx.app, "/api/v1/overview?state=failed").await;
    let o: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(o["list"]["rows"].as_array().unwrap().len(), 1);
    assert_eq!(o["list"]["rows"][0]["name"], "univ-fail");
    // Server-Timing: a render the first time, from memory the second.
    let (_, first, _) = get(&fx.app, "/platforms/univ-ok").await;
    let first = first["server-timing"].to_str().unwrap().to_owned();
    assert!(first.starts_with("total;dur=") && first.contains("render;dur="), "{first}");
    let (_, again, _) = get(&fx.app, "/platforms/univ-ok").await;
    assert!(again["server-timing"].to_str().unwrap().contains("render;desc=\"cached\""), "{again:?}");
}

#[tokio::test]
async fn the_plans_the_dashboard_keeps_read_back_as_the_store_reads_them() {
    let fx = fleet(AppOptions::default()).await;
    let rows = fx.store.plan_rows().unwrap();
    let plans = fx.store.plans().unwrap();
    assert_eq!(rows.len(), 5, "every platform but univ-repo and univ-new reported a plan: {rows:?}");
    for (platform, row) in &rows {
        assert_eq!(palier_server::store::StoredPlan::from_row(platform, row).as_ref(), plans.get(platform), "{platform}");
    }
    // A new status changes the row: the dashboard parses that plan again.
    let before = rows["univ-rb"].clone();
    let status = Status { plan: plan(fx.now + SignedDuration::from_mins(5), "installed", None, None), ..Status::basic(3, 1, vec![installed("crafted@1.0.0")], None, Some("applied".into())) };
    fx.store.set_status(&pid("univ-rb"), &status, fx.now).unwrap();
    assert_ne!(fx.store.plan_rows().unwrap()["univ-rb"], before);
}
