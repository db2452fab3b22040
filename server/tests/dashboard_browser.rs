//! The dashboard in a real browser: `palier-server serve` on port 0 with a store of two
//! platforms, an operator credential and HTTPS (a certificate made with openssl at test time,
//! pinned in the browser), loaded by Debian's `chromium` in headless mode, logged in as the
//! operator with HTTP Basic (the DOM dumped and checked, a screenshot
//! saved); without the credential the browser gets the 401 page. Chromium missing is a
//! failure, not a skip: CI installs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use jiff::Timestamp;
use palier_bundle::{Component, PlatformId};
use palier_server::store::{Installed, PlatformContract, Status, Store};

const BIN: &str = env!("CARGO_BIN_EXE_palier-server");
const OPERATOR: &str = "0123456789abcdef0123456789abcdef";

/// Stops the server (SIGTERM) however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn chromium(profile: &Path, extra: &[&str], url: &str) -> Output {
    // `timeout` bounds a browser that hangs; the flags keep it off the network but for `url`.
    let out = Command::new("timeout")
        .args(["120", "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,900"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run timeout/chromium");
    assert!(
        out.status.success(),
        "chromium failed ({}); is Debian's `chromium` installed (apt-get install -y chromium)? stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_dashboard_renders_the_fleet_in_headless_chromium() {
    let which = Command::new("sh").args(["-c", "command -v chromium"]).output().unwrap();
    assert!(which.status.success(), "chromium is not installed: this test needs Debian's `chromium` package (apt-get install -y chromium)");

    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let db = tmp.path().join("palier.db");
    let init = Command::new(BIN).args(["init", "--repo"]).arg(&repo).output().unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    {
        let store = Store::open(&db).unwrap();
        let now = Timestamp::now();
        let (a, b) = (PlatformId::new("univ-a").unwrap(), PlatformId::new("univ-b").unwrap());
        let contract = |i, s| PlatformContract::new(i, s, Vec::new(), Vec::new()).unwrap();
        store.add_platform_with(&a, Some(&contract(1, 3)), now).unwrap();
        store.add_platform_with(&b, Some(&contract(3, 1)), now).unwrap();
        let status = |improvement, stability, outcome: &str| {
            Status::basic(
                improvement,
                stability,
                vec![Installed { id: "mod_quiz-fix".into(), version: "1.0.1".into() }],
                Some("2026-03-02T02:00:00Z".parse().unwrap()),
                Some(outcome.into()),
            )
        };
        store.set_status(&a, &status(1, 3, "applied"), now).unwrap();
        store.set_status(&b, &status(3, 1, "rolled-back"), now).unwrap();
        store.add_fix_request(&a, &Component::new("mod_quiz").unwrap(), "timer <b>resets</b>", None, now).unwrap();
    }

    let token_file = tmp.path().join("operator.token");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&token_file).unwrap();
        std::io::Write::write_all(&mut f, format!("{OPERATOR}\n").as_bytes()).unwrap();
    }
    // HTTPS with a certificate made at test time; the browser trusts its key (SPKI pin).
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let sh = |script: &str| {
        let out = Command::new("sh").args(["-c", script]).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    sh(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
         -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout {} -out {} 2>/dev/null",
        key.display(),
        cert.display()
    ));
    let spki = sh(&format!("openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64", cert.display()));
    let pin = format!("--ignore-certificate-errors-spki-list={spki}");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap(), "--repo"])
        .arg(&repo)
        .arg("--db")
        .arg(&db)
        .arg("--admin-token-file")
        .arg(&token_file)
        .env_remove("PALIER_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("listening on https://").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();

    // Without the operator credential: no fleet (the browser gets the 401 challenge).
    let refused = chromium(&tmp.path().join("profile-anon"), &[&pin, "--dump-dom"], &format!("https://{base}/"));
    let refused = String::from_utf8(refused.stdout).unwrap();
    assert!(!refused.contains("univ-a") && !refused.contains("<table"), "{refused}");

    // Logged in as the operator (HTTP Basic, the credentials in the address).
    let url = format!("https://operator:{OPERATOR}@{base}/");
    let dom = chromium(&tmp.path().join("profile-dom"), &[&pin, "--dump-dom"], &url);
    let dom = String::from_utf8(dom.stdout).unwrap();
    let platforms = dom.split("id=\"platforms\"").nth(1).unwrap_or_else(|| panic!("no platform list in {dom}"));
    let rows: Vec<&str> = platforms.split("</table>").next().unwrap().split("<tr>").skip(1).collect();
    let row = |name: &str| rows.iter().find(|r| r.contains(&format!(">{name}</a></td>"))).unwrap_or_else(|| panic!("no row for {name} in {dom}"));
    let a = row("univ-a");
    for cell in ["<td class=\"num\">1</td><td class=\"num\">3</td>", "mod_quiz-fix@1.0.1", "2026-03-02T02:00:00Z", ">applied<"] {
        assert!(a.contains(cell), "univ-a row lacks {cell}: {a}");
    }
    let b = row("univ-b");
    for cell in ["<td class=\"num\">3</td><td class=\"num\">1</td>", ">rolled-back<"] {
        assert!(b.contains(cell), "univ-b row lacks {cell}: {b}");
    }
    assert!(dom.contains("<td>FR-1</td>"), "{dom}");
    assert!(!dom.contains("Summaries are shown to operators only"), "logged in as the operator: {dom}");
    assert!(dom.contains("timer &lt;b&gt;resets&lt;/b&gt;"), "the summary is shown as text: {dom}");
    assert!(dom.contains("<th>Last seen</th>"));

    let png = tmp.path().join("dashboard.png");
    chromium(&tmp.path().join("profile-shot"), &[&pin, &format!("--screenshot={}", png.display())], &url);
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(bytes.len() > 1000, "a suspiciously small screenshot: {} bytes", bytes.len());
    if let Some(dir) = std::env::var_os("PALIER_SCREENSHOT_DIR") {
        let _ = std::fs::copy(&png, Path::new(&dir).join("dashboard.png"));
    }
    drop(server);
}

#[path = "../examples/dashboard_gen.rs"]
#[allow(dead_code)]
mod dashboard_gen;

/// What `dashboard_cdp.py` measured of one page.
fn page_facts(all: &serde_json::Value, page: &str) -> serde_json::Value {
    all.get(page).cloned().unwrap_or_else(|| panic!("no page {page} in {all}"))
}

/// The element `selector` of `page` was found and starts within the first viewport.
fn assert_visible(all: &serde_json::Value, page: &str, selector: &str) -> String {
    let facts = page_facts(all, page);
    let e = &facts["elements"][selector];
    assert_eq!(e["found"], true, "{page}: no element {selector}: {facts}");
    assert_eq!(e["in_first_viewport"], true, "{page}: {selector} is not in the first viewport (top {}, viewport {}): {facts}", e["top"], facts["viewport"]);
    e["text"].as_str().unwrap_or_default().to_owned()
}

/// The acceptance at size: 300 platforms and 50 bundles (seeded by the bench's generator), the
/// overview, a bundle page and a platform page loaded in headless Chromium at 1280x900,
/// logged in as the operator; on each, the failures are laid out in the first viewport. The
/// screenshots are kept in target/tmp/dashboard-screenshots (the path is printed).
#[test]
fn at_300_platforms_and_50_bundles_the_failures_are_visible_without_scrolling() {
    let which = Command::new("sh").args(["-c", "command -v chromium"]).output().unwrap();
    assert!(which.status.success(), "chromium is not installed: this test needs Debian's `chromium` package (apt-get install -y chromium)");
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let g = rt.block_on(dashboard_gen::generate(tmp.path(), 300, 50));
    assert!(!g.failing.is_empty() && !g.held.is_empty(), "the generated fleet has failures: {g:?}");

    let token_file = tmp.path().join("operator.token");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&token_file).unwrap();
        std::io::Write::write_all(&mut f, format!("{OPERATOR}\n").as_bytes()).unwrap();
    }
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--timezone", "Europe/Paris", "--repo"])
        .arg(&g.repo)
        .arg("--db")
        .arg(&g.db)
        .arg("--admin-token-file")
        .arg(&token_file)
        .env_remove("PALIER_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();

    let (held_platform, held_bundle) = g.held[0].clone();
    let (id, version) = held_bundle.split_once('@').unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let auth = format!("Basic {}", base64_encode(&format!("operator:{OPERATOR}")));
    let out = Command::new("timeout")
        .arg("180")
        .arg("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard_cdp.py"))
        .arg(&shots)
        .args([&auth, "1280", "900"])
        .arg(format!("overview={base}/=#count-failed,#count-rolled-back,#count-repository-error,#attention tbody tr,#rolling-out"))
        .arg(format!("bundle={base}/bundles/{id}/{version}=#states,#platforms tbody tr"))
        .arg(format!("platform={base}/platforms/{held_platform}=#problems,#latest,#holds"))
        .stdin(Stdio::null())
        .output()
        .expect("cannot run timeout/python3");
    assert!(out.status.success(), "dashboard_cdp.py failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for page in ["overview", "bundle", "platform"] {
        assert_eq!(page_facts(&all, page)["status"], 200, "{page}: {all}");
        let png = shots.join(format!("{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{}: not a screenshot of a page", png.display());
    }
    println!("screenshots of the dashboard at 300 platforms and 50 bundles: {}", shots.display());

    // The overview: the failure counts, and the platforms needing attention, most urgent first.
    assert!(assert_visible(&all, "overview", "#count-failed").contains("failed"));
    assert_visible(&all, "overview", "#count-rolled-back");
    assert_visible(&all, "overview", "#count-repository-error");
    let first = assert_visible(&all, "overview", "#attention tbody tr");
    assert!(first.contains("cannot verify the repository"), "the first platform needing attention refuses the repository: {first}");
    // The bundle: its rolled-back platforms first.
    assert_visible(&all, "bundle", "#states");
    let first = assert_visible(&all, "bundle", "#platforms tbody tr");
    assert!(first.contains("rolled-back") || first.contains("held") || first.contains("failed"), "the bundle's first platform is a failure: {first}");
    // The platform: what is wrong, its latest (rolled-back) intervention and its hold.
    let problems = assert_visible(&all, "platform", "#problems");
    assert!(problems.contains("rolled back"), "{problems}");
    assert!(assert_visible(&all, "platform", "#latest").contains("rolled-back"));
    assert!(assert_visible(&all, "platform", "#holds").contains(&held_bundle));
    if let Some(dir) = std::env::var_os("PALIER_SCREENSHOT_DIR") {
        for page in ["overview", "bundle", "platform"] {
            let _ = std::fs::copy(shots.join(format!("{page}.png")), Path::new(&dir).join(format!("dashboard-{page}.png")));
        }
    }
    drop(server);
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
