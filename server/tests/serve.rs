//! `palier-server serve`: the router through `oneshot`, `repo::refresh` against a standard
//! TUF client, and one real server on port 0 stopped with SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use palier_server::http::{AppState, Clock, app};
use palier_server::repo::{self, Expiries, RefreshMargins, RepoPaths, Thresholds};
use tower::ServiceExt;

const BIN: &str = env!("CARGO_BIN_EXE_palier-server");

/// A fresh repository signed as if it were `age` ago; keys beside it.
struct Fixture {
    tmp: tempfile::TempDir,
    paths: RepoPaths,
}

impl Fixture {
    async fn signed_ago(age: SignedDuration) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let paths = RepoPaths::new(tmp.path().join("repo"), None);
        let then = Timestamp::now().checked_sub(age).unwrap();
        repo::init(&paths, Thresholds::default(), Expiries::default(), then).await.unwrap();
        Fixture { tmp, paths }
    }
    async fn new() -> Self {
        Self::signed_ago(SignedDuration::ZERO).await
    }
    fn metadata(&self, name: &str) -> PathBuf {
        self.paths.metadata().join(name)
    }
    fn app(&self) -> axum::Router {
        app(AppState::new(self.paths.clone(), Clock::system()))
    }
}

async fn send(app: &axum::Router, method: Method, uri: &str, headers: &[(header::HeaderName, &str)]) -> (Response, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    let response = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (Response::from_parts(parts, Body::empty()), bytes)
}

async fn get(app: &axum::Router, uri: &str) -> (Response, Vec<u8>) {
    send(app, Method::GET, uri, &[]).await
}

fn h(r: &Response, name: header::HeaderName) -> &str {
    r.headers().get(&name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

fn error_body(bytes: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)));
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 1, "{v}");
    obj["error"].as_str().unwrap().to_owned()
}

fn version_of(path: &Path) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().display().to_string(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Load the repository as an agent would: pinned first root, expiry enforced by the real clock.
async fn client_load(paths: &RepoPaths) -> Result<tough::Repository, tough::error::Error> {
    let root = std::fs::read(paths.pinned_root()).unwrap();
    let url = |p: PathBuf| url::Url::from_directory_path(std::fs::canonicalize(p).unwrap()).unwrap();
    tough::RepositoryLoader::new(&root, url(paths.metadata()), url(paths.targets()))
        .expiration_enforcement(tough::ExpirationEnforcement::Safe)
        .load()
        .await
}

#[tokio::test]
async fn metadata_is_served_with_type_tag_and_cache_policy() {
    let f = Fixture::new().await;
    let app = f.app();
    let (r, body) = get(&app, "/repo/metadata/timestamp.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h(&r, header::CONTENT_TYPE), "application/json");
    assert_eq!(h(&r, header::CACHE_CONTROL), "no-cache");
    assert_eq!(h(&r, header::CONTENT_LENGTH), body.len().to_string());
    let tag = h(&r, header::ETAG);
    assert!(tag.starts_with('"') && tag.ends_with('"'), "strong ETag expected: {tag}");
    assert_eq!(body, std::fs::read(f.metadata("timestamp.json")).unwrap());

    for name in ["1.root.json", "1.snapshot.json", "1.targets.json"] {
        let (r, body) = get(&app, &format!("/repo/metadata/{name}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{name}");
        assert_eq!(h(&r, header::CONTENT_TYPE), "application/json");
        assert_eq!(h(&r, header::CACHE_CONTROL), "public, max-age=31536000, immutable");
        assert_eq!(body, std::fs::read(f.metadata(name)).unwrap());
    }
}

#[tokio::test]
async fn etag_then_not_modified_until_the_file_is_replaced() {
    let f = Fixture::new().await;
    let app = f.app();
    let uri = "/repo/metadata/timestamp.json";
    let (r, _) = get(&app, uri).await;
    let tag = h(&r, header::ETAG).to_owned();

    for sent in [tag.clone(), format!("W/{tag}"), format!("\"nope\", {tag}"), "*".to_owned()] {
        let (r, body) = send(&app, Method::GET, uri, &[(header::IF_NONE_MATCH, &sent)]).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "If-None-Match: {sent}");
        assert!(body.is_empty());
        assert_eq!(h(&r, header::ETAG), tag);
        assert_eq!(h(&r, header::CACHE_CONTROL), "no-cache");
    }
    let (r, body) = send(&app, Method::GET, uri, &[(header::IF_NONE_MATCH, "\"other\"")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!body.is_empty());

    // A re-signed timestamp.json is a new file (rename): the old tag no longer matches.
    assert!(repo::refresh(&f.paths, Timestamp::now() + SignedDuration::from_hours(20), RefreshMargins::default()).await.unwrap());
    let (r, body) = send(&app, Method::GET, uri, &[(header::IF_NONE_MATCH, &tag)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(h(&r, header::ETAG), tag);
    let fresh = std::fs::read(f.metadata("timestamp.json")).unwrap();
    assert_eq!(body, fresh);
    // The in-memory copy of timestamp.json follows the new version too.
    let (r, body) = get(&app, uri).await;
    assert_eq!((r.status(), body), (StatusCode::OK, fresh));
}

#[tokio::test]
async fn head_answers_headers_only() {
    let f = Fixture::new().await;
    let app = f.app();
    let size = std::fs::metadata(f.metadata("1.root.json")).unwrap().len();
    let (get_r, _) = get(&app, "/repo/metadata/1.root.json").await;
    let (r, body) = send(&app, Method::HEAD, "/repo/metadata/1.root.json", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(h(&r, header::CONTENT_LENGTH), size.to_string());
    assert_eq!(h(&r, header::CONTENT_TYPE), "application/json");
    assert_eq!(h(&r, header::ETAG), h(&get_r, header::ETAG));
    let tag = h(&r, header::ETAG).to_owned();
    let (r, _) = send(&app, Method::HEAD, "/repo/metadata/1.root.json", &[(header::IF_NONE_MATCH, &tag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let (r, body) = send(&app, Method::HEAD, "/repo/metadata/nope.json", &[]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(body.is_empty());
}

#[tokio::test]
async fn large_targets_stream_with_their_type() {
    let f = Fixture::new().await;
    let app = f.app();
    // Bigger than what is read in one go, not a multiple of the chunk size.
    let content: Vec<u8> = (0..3_000_001u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let name = format!("{}.mod_quiz-fix-1.0.0.tar.gz", "ab".repeat(32));
    std::fs::write(f.paths.targets().join(&name), &content).unwrap();
    let (r, body) = get(&app, &format!("/repo/targets/{name}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h(&r, header::CONTENT_TYPE), "application/gzip");
    assert_eq!(h(&r, header::CACHE_CONTROL), "public, max-age=31536000, immutable");
    assert_eq!(h(&r, header::CONTENT_LENGTH), content.len().to_string());
    assert!(body == content, "streamed body differs");
}

#[tokio::test]
async fn nothing_outside_the_repository_files_is_reachable() {
    let f = Fixture::new().await;
    let app = f.app();
    // Things that exist and must stay hidden: a staging folder, a temporary target, a dotfile,
    // a symlink to a key, a folder.
    let staging = f.paths.dir.join(".palier-staging-x");
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(staging.join("2.root.json"), "{}").unwrap();
    std::fs::write(f.paths.targets().join(".incoming-x"), "partial").unwrap();
    std::fs::write(f.metadata(".hidden.json"), "{}").unwrap();
    let key = std::fs::canonicalize(f.paths.keys.join("root.der")).unwrap();
    std::os::unix::fs::symlink(&key, f.metadata("key.json")).unwrap();
    std::fs::create_dir(f.metadata("sub")).unwrap();
    assert!(f.tmp.path().join("keys/root.der").exists());

    // `/` is the dashboard: HTML, no file of the repository or the keys.
    let (r, body) = get(&app, "/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h(&r, header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert!(String::from_utf8(body).unwrap().contains("<h1>palier fleet</h1>"));
    for uri in [
        "/repo",
        "/repo/",
        "/repo/../keys/root.der",
        "/repo/metadata/../../keys/root.der",
        "/repo/%2e%2e/keys/root.der",
        "/repo/metadata/%2e%2e%2f%2e%2e%2fkeys%2froot.der",
        "/repo/metadata/..%2F..%2Fkeys%2Froot.der",
        "/repo/.palier-staging-x/2.root.json",
        "/repo/metadata/",
        "/repo/targets/",
        "/repo/metadata/sub",
        "/repo/targets/.incoming-x",
        "/repo/metadata/.hidden.json",
        "/repo/metadata/%2ehidden.json",
        "/repo/metadata/key.json",
        "/repo/metadata/nope.json",
        "/repo/keys/root.der",
        "/repo/metadata/timestamp.json/",
    ] {
        let (r, body) = get(&app, uri).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(h(&r, header::CONTENT_TYPE), "application/json", "{uri}");
        assert_eq!(h(&r, header::CACHE_CONTROL), "no-store", "{uri}");
        assert!(error_body(&body).starts_with("not found"), "{uri}");
    }
    let (r, body) = send(&app, Method::POST, "/repo/metadata/timestamp.json", &[]).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_body(&body), "method not allowed");
}

#[tokio::test]
async fn healthz_follows_the_timestamp_expiry() {
    let f = Fixture::new().await;
    let (r, body) = get(&f.app(), "/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap(), serde_json::json!({"status": "ok"}));

    let later = app(AppState::new(f.paths.clone(), Clock::starting_at(Timestamp::now() + SignedDuration::from_hours(25))));
    let (r, body) = get(&later, "/healthz").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(error_body(&body).contains("expired"));

    std::fs::remove_file(f.metadata("timestamp.json")).unwrap();
    let (r, body) = get(&f.app(), "/healthz").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(error_body(&body).contains("timestamp.json"));
}

#[tokio::test]
async fn metrics_count_requests_bytes_and_expiry() {
    let f = Fixture::new().await;
    let app = f.app();
    let (_, body) = get(&app, "/repo/metadata/timestamp.json").await;
    get(&app, "/repo/metadata/timestamp.json").await;
    let (_, not_found) = get(&app, "/nope").await;
    let (r, text) = get(&app, "/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(h(&r, header::CONTENT_TYPE).starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(text).unwrap();
    let value = |name: &str| -> i64 {
        let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("palier_http_requests_total{route=\"metadata\",status=\"200\"}"), 2);
    assert_eq!(value("palier_http_requests_total{route=\"other\",status=\"404\"}"), 1);
    assert_eq!(value("palier_http_response_bytes_total{route=\"metadata\"}"), 2 * body.len() as i64);
    assert_eq!(value("palier_http_response_bytes_total{route=\"other\"}"), not_found.len() as i64);
    let left = value("palier_timestamp_expires_in_seconds");
    assert!((23 * 3600..=24 * 3600).contains(&left), "{left}");
    assert_eq!(value("palier_timestamp_version"), 1);
    assert_eq!(value("palier_metadata_resign_total"), 0);
}

#[tokio::test]
async fn refresh_leaves_fresh_metadata_alone() {
    let f = Fixture::signed_ago(SignedDuration::from_hours(1)).await;
    let before = tree(&f.paths.dir);
    assert!(!repo::refresh(&f.paths, Timestamp::now(), RefreshMargins::default()).await.unwrap());
    assert_eq!(tree(&f.paths.dir), before);
}

#[tokio::test]
async fn refresh_resigns_an_expiring_timestamp_only() {
    // Signed 19 h ago: the timestamp has 5 h left, under its 6 h margin; the snapshot has days.
    let f = Fixture::signed_ago(SignedDuration::from_hours(19)).await;
    let before = tree(&f.paths.dir);
    let now = Timestamp::now();
    assert!(repo::refresh(&f.paths, now, RefreshMargins::default()).await.unwrap());

    let after = tree(&f.paths.dir);
    let changed: Vec<&String> = after.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
    assert_eq!(changed, ["metadata/timestamp.json"], "only the timestamp may change");
    let repository = client_load(&f.paths).await.expect("a standard client verifies the refreshed repository");
    assert_eq!(repository.timestamp().signed.version.get(), 2);
    assert_eq!(repository.snapshot().signed.version.get(), 1);
    assert_eq!(repository.targets().signed.version.get(), 1);
    let expires = repository.timestamp().signed.expires;
    assert_eq!(expires.subsec_nanosecond(), 0, "whole seconds");
    assert!(expires > now + SignedDuration::from_hours(23));
    // Nothing left behind, and a second call has nothing to do.
    assert!(std::fs::read_dir(&f.paths.dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
    assert!(!repo::refresh(&f.paths, now, RefreshMargins::default()).await.unwrap());
}

#[tokio::test]
async fn refresh_revives_an_expired_repository_without_touching_targets() {
    // Signed 6.5 days ago: timestamp long expired, snapshot within its 1-day margin.
    let f = Fixture::signed_ago(SignedDuration::from_hours(6 * 24 + 12)).await;
    assert!(client_load(&f.paths).await.is_err(), "expired metadata must be refused before the refresh");
    let targets = std::fs::read(f.metadata("1.targets.json")).unwrap();
    assert!(repo::refresh(&f.paths, Timestamp::now(), RefreshMargins::default()).await.unwrap());
    let repository = client_load(&f.paths).await.expect("refreshed repository verifies");
    assert_eq!(repository.timestamp().signed.version.get(), 2);
    assert_eq!(repository.snapshot().signed.version.get(), 2);
    assert_eq!(repository.targets().signed.version.get(), 1);
    assert_eq!(std::fs::read(f.metadata("1.targets.json")).unwrap(), targets);
    assert!(!f.metadata("2.targets.json").exists());
    assert_eq!(version_of(&f.metadata("timestamp.json")), 2);
}

#[tokio::test]
async fn refresh_resigns_targets_close_to_expiry() {
    // Signed 85 days ago: the targets (90 days) are within their 7-day margin.
    let f = Fixture::signed_ago(SignedDuration::from_hours(85 * 24)).await;
    assert!(repo::refresh(&f.paths, Timestamp::now(), RefreshMargins::default()).await.unwrap());
    let repository = client_load(&f.paths).await.expect("refreshed repository verifies");
    assert_eq!(repository.targets().signed.version.get(), 2);
    assert_eq!(repository.snapshot().signed.version.get(), 2);
    assert_eq!(repository.timestamp().signed.version.get(), 2);
    assert!(repository.targets().signed.expires > Timestamp::now() + SignedDuration::from_hours(89 * 24));
}

/// A raw HTTP/1.1 GET; returns the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    (head.lines().next().unwrap().to_owned(), raw[split + 4..].to_vec())
}

#[test]
fn real_server_refreshes_serves_and_stops_on_sigterm() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // 19 h old: the server re-signs the timestamp before it says it is listening.
    let f = rt.block_on(Fixture::signed_ago(SignedDuration::from_hours(19)));
    let mut child = Command::new(BIN)
        .args(["serve", "--repo", f.paths.dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env_remove("PALIER_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();

    let (status, body) = http_get(&addr, "/repo/metadata/timestamp.json");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served["signed"]["version"], 2, "re-signed at start");
    let (status, _) = http_get(&addr, "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (_, metrics) = http_get(&addr, "/metrics");
    assert!(String::from_utf8(metrics).unwrap().lines().any(|l| l == "palier_metadata_resign_total 1"));

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let status = child.wait();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        tx.send((status, err)).unwrap();
    });
    let (status, err) = rx.recv_timeout(Duration::from_secs(30)).expect("the server stops within 30 s of SIGTERM");
    assert!(status.unwrap().success(), "exit after SIGTERM; stderr: {err}");
}

#[test]
fn serve_refuses_a_missing_repository_or_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).args(["serve", "--repo", tmp.path().join("repo").to_str().unwrap(), "--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no repository at"), "{}", String::from_utf8_lossy(&out.stderr));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(Fixture::new());
    let empty = f.tmp.path().join("no-keys");
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--repo", f.paths.dir.to_str().unwrap(), "--keys", empty.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("snapshot"));
}

#[test]
fn a_failing_refresh_is_logged_and_the_server_keeps_serving() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(Fixture::signed_ago(SignedDuration::from_hours(19)));
    // A timestamp key that the root does not list: every re-sign fails.
    let key = f.paths.keys.join("timestamp.der");
    std::fs::remove_file(&key).unwrap();
    palier_server::keys::generate(&key).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--repo", f.paths.dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env_remove("PALIER_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();
    let (status, body) = http_get(&addr, "/repo/metadata/timestamp.json");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["signed"]["version"], 1);
    let (_, metrics) = http_get(&addr, "/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.lines().any(|l| l == "palier_metadata_refresh_failures_total 1"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "palier_metadata_resign_total 0"), "{metrics}");
    // 5 h left and the re-signing failing: unhealthy, with the reason.
    let (status, body) = http_get(&addr, "/healthz");
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("within 6h: it is not being re-signed"), "{body}");

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let status = child.wait();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        tx.send((status, err)).unwrap();
    });
    let (status, err) = rx.recv_timeout(Duration::from_secs(30)).expect("the server stops within 30 s of SIGTERM");
    assert!(status.unwrap().success(), "stderr: {err}");
    assert!(err.contains("cannot refresh the repository metadata"), "the failure is logged: {err}");
}

/// python-tuf's ngclient, through `serve`: refresh, then download a published bundle.
const PYTHON_TUF_CLIENT: &str = r#"
import json, os, sys
from tuf.ngclient import Updater
base, root, target, work = sys.argv[1:5]
os.makedirs(f"{work}/metadata", exist_ok=True)
os.makedirs(f"{work}/downloads", exist_ok=True)
updater = Updater(metadata_dir=f"{work}/metadata", metadata_base_url=f"{base}/repo/metadata/",
                  target_base_url=f"{base}/repo/targets/", target_dir=f"{work}/downloads",
                  bootstrap=open(root, "rb").read())
updater.refresh()
info = updater.get_targetinfo(target)
path = updater.download_target(info)
trusted = json.load(open(f"{work}/metadata/timestamp.json"))
print(json.dumps({"path": path, "timestamp": trusted["signed"]["version"]}))
"#;

#[test]
fn a_standard_tuf_client_updates_through_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).env_remove("PALIER_LOG").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // Everything signed 19 h ago: the server must re-sign the timestamp to be usable for long.
    let then = (Timestamp::now() - SignedDuration::from_hours(19)).to_string();
    run(&["init", "--repo", repo.to_str().unwrap(), "--now", &then]);
    let src = tmp.path().join("src/mod/quiz");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("view.php"), "<?php echo 'fixed';\n").unwrap();
    let manifest = tmp.path().join("bundle.toml");
    std::fs::write(
        &manifest,
        "id = \"mod_quiz-fix\"\nversion = \"1.0.0\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"fix\"\nfixes = []\norigin = \"report\"\n",
    )
    .unwrap();
    let archive = tmp.path().join("b.tar.gz");
    run(&["bundle", "build", "--manifest", manifest.to_str().unwrap(), "--source", tmp.path().join("src").to_str().unwrap(), "--out", archive.to_str().unwrap()]);
    run(&["publish", "--repo", repo.to_str().unwrap(), archive.to_str().unwrap(), "--now", &then]);

    let mut child = Command::new(BIN)
        .args(["serve", "--repo", repo.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env_remove("PALIER_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("listening on ").unwrap().to_owned();
    let out = Command::new("python3")
        .args(["-c", PYTHON_TUF_CLIENT, &base, repo.join("metadata/1.root.json").to_str().unwrap(), "mod_quiz-fix-1.0.0.tar.gz", tmp.path().join("client").to_str().unwrap()])
        .output()
        .expect("python3 runs (install python-tuf: pip install tuf)");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(out.status.success(), "python-tuf client failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(std::fs::read(doc["path"].as_str().unwrap()).unwrap(), std::fs::read(&archive).unwrap());
    assert_eq!(doc["timestamp"], 3, "init wrote version 1, publish 2, the server's refresh 3");
}
