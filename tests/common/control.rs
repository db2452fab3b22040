//! `palier-server serve --db` as a process, and platforms registered with it whose agent
//! configs talk to it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use jiff::Timestamp;
use serde_json::Value;

use super::{World, bin};

/// `palier-server serve` on a free port, stopped when dropped.
pub struct Served {
    child: Child,
    pub url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serve the world's repository with the store `palier.db` (created).
pub fn serve(w: &World) -> Served {
    serve_with(w, &[])
}

/// [`serve`] with more options.
pub fn serve_with(w: &World, extra: &[&str]) -> Served {
    let mut child = Command::new(bin("palier-server"))
        .args(["serve", "--repo", "repo", "--db", "palier.db", "--create", "--listen", "127.0.0.1:0"])
        .args(extra)
        .current_dir(w.tmp.path())
        .env_remove("PALIER_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    Served { child, url }
}

/// Register `name` with the contract `improvement`/`stability` and write its agent config
/// (the same levels) talking to the server, with its token file (0600).
pub fn platform(w: &World, served: &Served, name: &str, improvement: u8, stability: u8) -> PathBuf {
    let mut args = vec!["platform", "add", name, "--improvement", &improvement.to_string()[..], "--stability", &stability.to_string()[..], "--db", "palier.db"]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    if improvement == 2 {
        // As the agent config of `World::agent_config` says.
        args.extend(["--components".to_owned(), "mod_quiz".to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = w.server(&args);
    let token = out.lines().last().unwrap().trim().to_owned();
    let token_file = w.path(&format!("token-{name}"));
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    // The agent reads only a token file its owner alone may read.
    std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = w.agent_config(name, improvement, stability);
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "trusted_root = ",
        &format!("server = \"{}\"\ntoken_file = \"{}\"\ntrusted_root = ", served.url, token_file.display()),
        1,
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// The state wire contract 3 gives a platform whose plan says `row`, planned at `now`, whose
/// latest receipt naming the bundle has `outcome`: the table of docs/http-api.md, written
/// again here as the test's oracle.
pub fn expected_state(row: &Value, now: &str, outcome: Option<&str>) -> &'static str {
    let decision = row["decision"].as_str().unwrap();
    if decision == "installed" {
        return "installed";
    }
    match outcome {
        Some("rolled-back") => return "rolled-back",
        Some("failed") => return "failed",
        _ => {}
    }
    let at = |v: &Value| v.as_str().map(|s| s.parse::<Timestamp>().unwrap());
    match (decision, row["reason"].as_str()) {
        ("eligible", _) => match at(&row["notice_at"]) {
            Some(n) if n > now.parse::<Timestamp>().unwrap() => "waiting-notice",
            _ => "scheduled",
        },
        ("waiting-rollout", _) => "waiting-rollout",
        ("waiting-validation", _) => "waiting-validation",
        ("needs-scheduled-intervention", _) => "needs-intervention",
        (_, Some("held")) => "held",
        (_, Some("not-reported" | "component-not-selected" | "class-not-allowed" | "moodle-version-mismatch" | "moodle-layout-mismatch")) => "excluded",
        _ => "skipped",
    }
}
