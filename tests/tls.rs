//! The agent over TLS through real processes: `palier-server serve --tls-cert --tls-key`
//! with a test certificate, an agent whose `repository` and `server` are `https://` and
//! whose `ca_file` names the test CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{World, bin, manifest, stderr};

/// `palier-server serve` over TLS on a free port, stopped when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_tls(w: &World, cert: &Path, key: &Path) -> Served {
    let mut child = Command::new(bin("palier-server"))
        .args(["serve", "--repo", "repo", "--db", "palier.db", "--create", "--listen", "127.0.0.1:0"])
        .args(["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
        .current_dir(w.tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{line}");
    Served { child, url }
}

/// A test CA and a certificate it signs for 127.0.0.1 and localhost, made with openssl at
/// test time: (CA certificate, server certificate, server key).
fn certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
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
    (ca.into(), cert.into(), key.into())
}

/// Register `name` (level 1/1) and write its agent config: repository and server over
/// `https://` at `served`, trusting `ca` when given.
fn platform(w: &World, served: &Served, name: &str, ca: Option<&Path>) -> PathBuf {
    let out = w.server(&["platform", "add", name, "--improvement", "1", "--stability", "1", "--db", "palier.db"]);
    let token = out.lines().last().unwrap().trim().to_owned();
    let token_file = w.path(&format!("token-{name}"));
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = w.agent_config(name, 1, 1);
    let text = std::fs::read_to_string(&config).unwrap();
    let repository = text.lines().find(|l| l.starts_with("repository = ")).unwrap().to_owned();
    let ca_line = ca.map(|ca| format!("ca_file = \"{}\"\n", ca.display())).unwrap_or_default();
    let text = text.replacen(
        &repository,
        &format!("repository = \"{0}/repo\"\nserver = \"{0}\"\ntoken_file = \"{1}\"\n{ca_line}", served.url, token_file.display()),
        1,
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// The platform's row in `palier-server platform list --json`.
fn stored(w: &World, name: &str) -> serde_json::Value {
    let list: serde_json::Value = serde_json::from_str(&w.server(&["platform", "list", "--db", "palier.db", "--json"])).unwrap();
    list["platforms"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name} not in {list}")).clone()
}

const NOW: &str = "2026-12-01T10:00:00+01:00";

#[test]
fn the_agent_verifies_the_repository_and_reports_over_tls_trusting_its_ca_file() {
    let w = World::new();
    let (ca, cert, key) = certificate(w.tmp.path());
    w.publish(&manifest("quiz-fix", "1.0.1", "mod_quiz", "technical", "none", ""), &[]);
    let served = serve_tls(&w, &cert, &key);
    let config = platform(&w, &served, "univ-a", Some(&ca));
    let config = config.to_str().unwrap();

    // The configuration is checked, the CA file included.
    let out = w.run("palier-agent", &["check-config", "--config", config, "--now", NOW]);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!all.contains("ca_file"), "{all}");

    // The repository is fetched and verified over https.
    let out = w.run("palier-agent", &["plan", "--config", config, "--json", "--now", NOW]);
    assert!(out.status.success(), "plan: {}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(plan["bundles"].as_array().unwrap().iter().any(|b| b["id"] == "quiz-fix"), "{plan}");

    // The status reaches the server, which stores it.
    assert!(stored(&w, "univ-a")["last_seen"].is_null());
    let out = w.run("palier-agent", &["run", "--once", "--config", config, "--now", NOW]);
    assert!(out.status.success(), "run --once: {}", stderr(&out));
    let row = stored(&w, "univ-a");
    assert!(row["last_seen"].is_string(), "no status stored: {row}");
    assert!(row["repository_error"].is_null(), "{row}");
    assert_eq!(row["improvement_level"], 1, "{row}");
}

#[test]
fn without_ca_file_the_agent_refuses_the_unknown_certificate_in_one_line() {
    let w = World::new();
    let (_, cert, key) = certificate(w.tmp.path());
    let served = serve_tls(&w, &cert, &key);
    let config = platform(&w, &served, "univ-b", None);
    let out = w.run("palier-agent", &["plan", "--config", config.to_str().unwrap(), "--now", NOW]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].contains("certificate"), "{err}");
    assert!(lines[0].contains("ca_file"), "the line does not say what to do: {err}");

    // A CA file that holds no certificate is refused by check-config, naming it.
    let bogus = w.path("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replacen("trusted_root = ", &format!("ca_file = \"{}\"\ntrusted_root = ", bogus.display()), 1);
    std::fs::write(&config, text).unwrap();
    let out = w.run("palier-agent", &["check-config", "--config", config.to_str().unwrap(), "--now", NOW]);
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(all.contains(&format!("ca_file {} holds no PEM certificate", bogus.display())), "{all}");
}
