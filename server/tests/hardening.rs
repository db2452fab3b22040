//! `palier-server serve` under load and abuse, through the real binary on port 0: hundreds of
//! concurrent dashboard requests while the API, an auto-halt, a `halt` and the re-signing
//! must go on; slowloris and idle connections; the connection cap; `/healthz` when the
//! re-signing stops; the operator credential off loopback; TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use palier_bundle::hostile::{self, RawEntry};
use palier_bundle::{BundleState, PlatformId};
use palier_server::repo::{self, Expiries, RepoPaths, Thresholds};
use palier_server::store::{PlatformContract, Store};

const BIN: &str = env!("CARGO_BIN_EXE_palier-server");

/// Stops the server (SIGTERM, then SIGKILL) however the test ends.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` with `args` after the repository; waits for its `listening on` line.
fn start(repo: &Path, args: &[&str]) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--repo", repo.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("PALIER_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().rsplit("://").next().unwrap_or_default().to_owned();
    assert!(addr.starts_with("127.0.0.1:") || addr.starts_with("0.0.0.0:"), "unexpected first line {line:?}");
    Server { child, addr }
}

/// A repository with `crafted@1.0.0` and `other@1.0.0` (both mod_quiz, technical), and a
/// store with `univ-a` and `univ-b` on contract 3/1; their tokens.
struct Fleet {
    tmp: tempfile::TempDir,
    paths: RepoPaths,
    db: PathBuf,
    a: String,
    b: String,
}

async fn fleet() -> Fleet {
    let tmp = tempfile::tempdir().unwrap();
    let paths = RepoPaths::new(tmp.path().join("repo"), None);
    let now = Timestamp::now();
    repo::init(&paths, Thresholds::default(), Expiries::default(), now).await.unwrap();
    // Each its own file: `publish` refuses two ids writing one path.
    for (id, file) in [("crafted", "a.php"), ("other", "b.php")] {
        let m = hostile::manifest_for(id, "1.0.0", &[(file, hostile::A)]);
        let archive = tmp.path().join(format!("{id}.tar.gz"));
        std::fs::write(&archive, hostile::craft(&[hostile::manifest_entry(&m), RawEntry::file(&format!("files/{file}"), hostile::A)])).unwrap();
        repo::publish(&paths, &archive, Default::default(), repo::DEFAULT_MAX_EXPANDED, now).await.unwrap();
    }
    let db = tmp.path().join("palier.db");
    let store = Store::open(&db).unwrap();
    let contract = PlatformContract::new(3, 1, Vec::new(), Vec::new()).unwrap();
    let a = store.add_platform_with(&PlatformId::new("univ-a").unwrap(), Some(&contract), now).unwrap();
    let b = store.add_platform_with(&PlatformId::new("univ-b").unwrap(), Some(&contract), now).unwrap();
    Fleet { tmp, paths, db, a, b }
}

/// One HTTP/1.1 request on a new connection; the status line and the body.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (String, String) {
    try_request(addr, method, path, headers, body).unwrap()
}

/// [`request`], or the I/O error (a server at its connection cap may close before it reads).
fn try_request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(stream, "{head}\r\n{body}")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((head.lines().next().unwrap_or_default().to_owned(), body.to_owned()))
}

fn receipt(id: &str, platform: &str, bundle: &str) -> String {
    serde_json::json!({
        "id": id, "platform": platform, "outcome": "rolled-back", "bundles": [bundle],
        "started_at": "2026-03-01T10:00:00Z", "finished_at": "2026-03-01T10:01:00Z", "reason": "check failed"
    })
    .to_string()
}

async fn state_of(paths: &RepoPaths, id: &str) -> BundleState {
    repo::list(paths).await.unwrap().into_iter().find(|p| p.meta.manifest.id.as_str() == id).unwrap().meta.state
}

/// The reproduction: about 700 concurrent `GET /` wedged the server for good (the
/// dashboard took the repository's writer lock inside `spawn_blocking(block_on(...))`). Now
/// 700 concurrent dashboard clients run while two rollback receipts auto-halt a bundle, the
/// release manager halts another with the CLI, and the refresh loop must keep succeeding
/// (`/healthz` fails when it has not for two intervals); every step within a bound.
#[test]
fn hundreds_of_dashboard_requests_never_wedge_the_api_a_halt_or_the_resigning() {
    palier_server::http::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let f = rt.block_on(fleet());
    let server = start(&f.paths.dir, &["--db", f.db.to_str().unwrap(), "--refresh-interval", "1s", "--halt-threshold", "2"]);
    let addr = server.addr.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let pages = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..700)
        .map(|_| {
            let (addr, stop, pages) = (addr.clone(), stop.clone(), pages.clone());
            rt.spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else { continue };
                    if s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.is_err() {
                        continue;
                    }
                    let mut sink = Vec::new();
                    if s.read_to_end(&mut sink).await.is_ok() && sink.starts_with(b"HTTP/1.1 200") {
                        pages.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Let the storm build up.
    let t0 = Instant::now();
    while pages.load(Ordering::Relaxed) < 200 && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }

    let bounded = |what: &str, limit: Duration, f: &dyn Fn()| {
        let start = Instant::now();
        f();
        let took = start.elapsed();
        assert!(took < limit, "{what} took {took:?} under load (limit {limit:?})");
    };
    bounded("two rollback receipts and the auto-halt", Duration::from_secs(20), &|| {
        let (s, body) = request(&addr, "POST", "/api/v1/receipts", &[("Authorization", &format!("Bearer {}", f.a))], &receipt("r1", "univ-a", "crafted@1.0.0"));
        assert!(s.contains(" 201 "), "{s} {body}");
        let (s, body) = request(&addr, "POST", "/api/v1/receipts", &[("Authorization", &format!("Bearer {}", f.b))], &receipt("r1", "univ-b", "crafted@1.0.0"));
        assert!(s.contains(" 201 "), "{s} {body}");
    });
    bounded("palier-server halt", Duration::from_secs(20), &|| {
        let out = Command::new(BIN).args(["halt", "--repo", f.paths.dir.to_str().unwrap(), "other@1.0.0", "--reason", "by hand"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    });
    bounded("/healthz (the refresh keeps succeeding)", Duration::from_secs(20), &|| {
        std::thread::sleep(Duration::from_millis(2500));
        let (s, body) = request(&addr, "GET", "/healthz", &[], "");
        assert!(s.contains(" 200 "), "{s} {body}");
    });
    let served = pages.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for c in clients {
            let _ = tokio::time::timeout(Duration::from_secs(30), c).await;
        }
    });
    assert!(served >= 200, "only {served} dashboard pages served");
    assert_eq!(rt.block_on(state_of(&f.paths, "crafted")), BundleState::Halted);
    assert_eq!(rt.block_on(state_of(&f.paths, "other")), BundleState::Halted);
    drop(server);
    drop(f.tmp);
}

/// Bytes until the server closes the connection (or `limit` passes): the time it took.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => return start.elapsed(),
            Err(e) => panic!("not closed within {limit:?}: {e}"),
        }
    }
}

#[test]
fn slowloris_and_idle_connections_are_closed_after_the_header_timeout() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(fleet());
    let server = start(&f.paths.dir, &["--header-timeout", "1s"]);
    // Half a request head, then nothing.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(&server.addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    for s in &mut slow {
        let took = closed_within(s, Duration::from_secs(15));
        assert!(took < Duration::from_secs(15));
    }
    // A kept-alive connection left idle after its answer.
    let mut idle = TcpStream::connect(&server.addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    closed_within(&mut idle, Duration::from_secs(15));
    // The server still answers.
    assert!(request(&server.addr, "GET", "/healthz", &[], "").0.contains(" 200 "));
}

#[test]
fn serve_raises_its_open_file_limit_to_the_hard_limit() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(fleet());
    // Started with a soft limit of 256 (the hard limit left as it is).
    let mut child = Command::new("sh")
        .args(["-c", &format!("ulimit -Sn 256 && exec {BIN} serve --repo {} --listen 127.0.0.1:0", f.paths.dir.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("listening on "), "{line:?}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let row = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    let (soft, hard) = (cells[3], cells[4]);
    assert_eq!(soft, hard, "{row}");
    assert_ne!(soft, "256", "{row}");
}

#[test]
fn past_the_connection_cap_a_connection_is_refused_in_one_line() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(fleet());
    let server = start(&f.paths.dir, &["--max-connections", "16", "--header-timeout", "30s"]);
    let held: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(&server.addr).unwrap()).collect();
    // The accept loop takes them in order: the 17th is past the cap.
    let mut refused = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while refused.is_none() && Instant::now() < deadline {
        let mut extra = TcpStream::connect(&server.addr).unwrap();
        extra.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut text = String::new();
        if extra.read_to_string(&mut text).is_ok() && !text.is_empty() {
            refused = Some(text);
        }
    }
    let text = refused.expect("a connection past the cap is answered");
    assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{text}");
    assert!(text.contains("retry-after: 5") && text.contains("too many open connections"), "{text}");
    drop(held);
    // Once they are gone, connections are served again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = try_request(&server.addr, "GET", "/healthz", &[], "");
        if answer.as_ref().is_ok_and(|(s, _)| s.contains(" 200 ")) {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {answer:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn healthz_fails_when_the_refresh_stops_succeeding() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(fleet());
    let server = start(&f.paths.dir, &["--refresh-interval", "1s"]);
    assert!(request(&server.addr, "GET", "/healthz", &[], "").0.contains(" 200 "));
    // The snapshot metadata disappears: every refresh fails from now on.
    for entry in std::fs::read_dir(f.paths.metadata()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_str().unwrap().ends_with(".snapshot.json") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let (s, b) = request(&server.addr, "GET", "/healthz", &[], "");
        if !s.contains(" 200 ") || Instant::now() > deadline {
            break (s, b);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.contains(" 503 "), "{status}");
    assert!(body.contains("the metadata refresh has not succeeded for over 2s"), "{body}");
}

#[test]
fn off_loopback_the_dashboard_needs_an_operator_credential() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(fleet());
    let run = |args: &[&str]| Command::new(BIN).args(["serve", "--repo", f.paths.dir.to_str().unwrap()]).args(args).output().unwrap();
    let out = run(&["--listen", "0.0.0.0:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--admin-token-file FILE"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let token_file = f.tmp.path().join("operator.token");
    std::fs::write(&token_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = run(&["--listen", "0.0.0.0:0", "--admin-token-file", token_file.to_str().unwrap()]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let server = start(&f.paths.dir, &["--admin-token-file", token_file.to_str().unwrap(), "--db", f.db.to_str().unwrap()]);
    let (s, _) = request(&server.addr, "GET", "/", &[], "");
    assert!(s.contains(" 401 "), "{s}");
    // ops:0123456789abcdef0123456789abcdef
    let (s, body) = request(&server.addr, "GET", "/", &[("Authorization", "Basic b3BzOjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVm")], "");
    assert!(s.contains(" 200 ") && body.contains("univ-a"), "{s}");
    // A bare port is 127.0.0.1:PORT.
    let out = run(&["--listen", "99999"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen 127.0.0.1:8080"));
}

/// A test CA and a certificate it signs for 127.0.0.1 and localhost, made with openssl at
/// test time: (CA certificate, server certificate, server key).
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |ext: &str| dir.join(format!("{name}-{ext}")).to_str().unwrap().to_owned();
    let ext = p("ext.cnf");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    let (ca_key, ca, key, csr, cert) = (p("ca.key"), p("ca.pem"), p("key.pem"), p("csr.pem"), p("cert.pem"));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: [Vec<&str>; 3] = [
        [&["req", "-x509"][..], &ec, &["-days", "1", "-subj", "/CN=palier test CA", "-keyout", &ca_key, "-out", &ca]].concat(),
        [&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr]].concat(),
        vec!["x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial", "-days", "1", "-extfile", &ext, "-out", &cert],
    ];
    for args in steps {
        let out = Command::new("openssl").args(&args).output().expect("openssl is needed to make the test certificate");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (p("ca.pem").into(), p("cert.pem").into(), p("key.pem").into())
}

/// `GET path` over TLS trusting only `ca`; the status line and the server's certificate.
async fn tls_get(addr: &str, ca: &Path, path: &str) -> (String, Vec<u8>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(ServerName::try_from("127.0.0.1").unwrap().to_owned(), tcp).await.unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    (String::from_utf8_lossy(&raw).lines().next().unwrap_or_default().to_owned(), presented)
}

#[test]
fn tls_from_the_server_itself_reloaded_on_sighup() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(fleet());
    let (ca, cert, key) = certificate(f.tmp.path(), "first");
    let (served_cert, served_key) = (f.tmp.path().join("server.pem"), f.tmp.path().join("server.key"));
    std::fs::copy(&cert, &served_cert).unwrap();
    std::fs::copy(&key, &served_key).unwrap();
    let server = start(&f.paths.dir, &["--tls-cert", served_cert.to_str().unwrap(), "--tls-key", served_key.to_str().unwrap()]);
    let (status, first) = rt.block_on(tls_get(&server.addr, &ca, "/healthz"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    // Plain HTTP on the TLS port gets nothing served.
    let mut plain = TcpStream::connect(&server.addr).unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = Vec::new();
    plain.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = plain.read_to_end(&mut text);
    assert!(!String::from_utf8_lossy(&text).contains("200 OK"));

    // A new pair in place, SIGHUP: new connections get the new certificate.
    let (ca2, cert2, key2) = certificate(f.tmp.path(), "second");
    let both = f.tmp.path().join("both.pem");
    std::fs::write(&both, [std::fs::read(&ca).unwrap(), std::fs::read(&ca2).unwrap()].concat()).unwrap();
    std::fs::copy(&cert2, &served_cert).unwrap();
    std::fs::copy(&key2, &served_key).unwrap();
    assert!(Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, now) = rt.block_on(tls_get(&server.addr, &both, "/healthz"));
        if now != first {
            assert_eq!(status, "HTTP/1.1 200 OK");
            break;
        }
        assert!(Instant::now() < deadline, "the certificate was not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_logs_its_start_each_auto_halt_and_each_refused_platform_without_colour() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(fleet());
    let mut child = Command::new(BIN)
        .args(["serve", "--repo", f.paths.dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--db", f.db.to_str().unwrap()])
        .env_remove("PALIER_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on http://").unwrap().to_owned();
    for (token, p) in [(&f.a, "univ-a"), (&f.b, "univ-b")] {
        let (s, _) = request(&addr, "POST", "/api/v1/receipts", &[("Authorization", &format!("Bearer {token}"))], &receipt("r1", p, "crafted@1.0.0"));
        assert!(s.contains(" 201 "), "{s}");
    }
    let (s, _) = request(&addr, "POST", "/api/v1/status", &[("Authorization", "Bearer 0000000000000000"), ("X-Palier-Platform", "univ-z")], "{}");
    assert!(s.contains(" 401 "), "{s}");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    child.wait().unwrap();
    assert!(!err.contains('\x1b'), "colour codes in a pipe: {err:?}");
    for needle in ["palier-server serving", "auto-halt", "receipts=univ-a/r1,univ-b/r1", "refused an API request", "claimed=univ-z"] {
        assert!(err.contains(needle), "{needle:?} not logged: {err}");
    }
}
