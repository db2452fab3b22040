//! What the agent tells the control plane, against a scripted server on port 0: receipts
//! kept on 401 and given up only on 422 (with a warning naming them), `Retry-After`
//! honoured across runs, the status sent every cycle with its new fields, also when the
//! repository cannot be verified, identical postponements merged, a guard that cannot start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{World, manifest, stderr};

/// A request the server saw: path and JSON body.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    body: serde_json::Value,
}

/// Per path: the status to answer and the `Retry-After` seconds to send with it.
type Answers = Arc<Mutex<HashMap<String, (u16, Option<u32>)>>>;

/// A server answering each path with a scripted status (and `Retry-After` when given).
struct Scripted {
    addr: String,
    answers: Answers,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let answers: Answers = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (a, s) = (answers.clone(), seen.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut length = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                s.lock().unwrap().push(Seen { path: path.clone(), body: serde_json::from_slice(&body).unwrap_or_default() });
                let (status, retry) = a.lock().unwrap().get(&path).copied().unwrap_or((200, None));
                let retry = retry.map(|r| format!("retry-after: {r}\r\n")).unwrap_or_default();
                let text = if status == 200 { "{}".to_owned() } else { format!("{{\"error\": \"scripted {status}\"}}") };
                let _ = write!(conn, "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{retry}\r\n{text}", text.len());
            }
        });
        Scripted { addr, answers, seen }
    }

    fn answer(&self, path: &str, status: u16, retry_after: Option<u32>) {
        self.answers.lock().unwrap().insert(path.to_owned(), (status, retry_after));
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// A level 3/1 agent of univ-a with this server, a token, and the given guard.
fn config(w: &World, server: &Scripted, guard: &str) -> PathBuf {
    let path = w.agent_config("univ-a", 3, 1);
    std::fs::write(w.path("token"), "a-token\n").unwrap();
    std::fs::set_permissions(w.path("token"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("trusted_root = ", &format!("server = \"http://{}\"\ntoken_file = \"{}\"\ntrusted_root = ", server.addr, w.path("token").display()), 1)
        .replace("[hooks]\n", &format!("[hooks]\nguard = {guard}\n"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run_once(w: &World, config: &Path, now: &str) -> std::process::Output {
    w.run("palier-agent", &["run", "--once", "--config", config.to_str().unwrap(), "--now", now])
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json")).count()).unwrap_or(0)
}

#[test]
fn receipts_are_kept_or_given_up_as_the_server_says_and_retry_after_is_honoured() {
    let w = World::new();
    let server = Scripted::start();
    w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
    w.server(&["validate", "--repo", "repo", "quiz-fix@1.0.0", "--alpha"]);
    // A guard saying "not now" with its own reason: the intervention is postponed.
    let config = config(&w, &server, "[\"sh\", \"-c\", \"echo '2 quiz attempts open'; exit 1\"]");
    let outbox = w.path("state-univ-a/outbox");

    // 401 (a rotated token): the receipt is kept. The status carries the new fields.
    server.answer("/api/v1/receipts", 401, None);
    let out = run_once(&w, &config, "2026-12-01T10:00:00+01:00");
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("postponed quiz-fix@1.0.0: hook guard exited with 1: 2 quiz attempts open"), "{stdout}");
    assert!(!stdout.contains("postponed: postponed"), "{stdout}");
    assert_eq!(count(&outbox), 1, "kept on 401");
    let seen = server.take();
    let status = &seen.iter().find(|s| s.path == "/api/v1/status").unwrap().body;
    assert_eq!(status["repository_error"], serde_json::Value::Null);
    assert_eq!(status["due"], serde_json::json!([{"id": "quiz-fix", "version": "1.0.0"}]));
    assert_eq!(status["holds"], serde_json::json!([]));
    assert!(status["components"].is_array() && status["level2_classes"].is_array(), "{status}");

    // The same postponement again: one receipt with a count, still one in the outbox.
    let out = run_once(&w, &config, "2026-12-01T10:05:00+01:00");
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 times in a row"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(count(&w.path("state-univ-a/receipts")), 1, "identical postponements are one receipt");
    assert_eq!(count(&outbox), 1);
    let queued: serde_json::Value = serde_json::from_slice(&std::fs::read(std::fs::read_dir(&outbox).unwrap().find(|e| e.as_ref().unwrap().path().is_file()).unwrap().unwrap().path()).unwrap()).unwrap();
    assert_eq!(queued["count"], 2);
    server.take();

    // 429 with Retry-After: 3600 s: kept, and nothing more is sent before then, even by a
    // new process.
    server.answer("/api/v1/receipts", 429, Some(3600));
    run_once(&w, &config, "2026-12-01T10:10:00+01:00");
    assert_eq!(server.take().iter().filter(|s| s.path == "/api/v1/receipts").count(), 1);
    assert_eq!(count(&outbox), 1, "kept on 429");
    run_once(&w, &config, "2026-12-01T10:40:00+01:00");
    assert!(server.take().is_empty(), "nothing sent before Retry-After has passed");

    // 422 (this receipt is refused): given up, with a warning naming it.
    server.answer("/api/v1/receipts", 422, None);
    let out = w.run("palier-agent", &["run", "--once", "--config", config.to_str().unwrap(), "--now", "2026-12-01T11:20:00+01:00"]);
    let err = stderr(&out);
    assert_eq!(count(&outbox), 0, "given up on 422");
    assert_eq!(count(&outbox.join("rejected")), 1);
    let id = std::fs::read_dir(outbox.join("rejected")).unwrap().next().unwrap().unwrap().path().file_stem().unwrap().to_string_lossy().into_owned();
    assert!(err.lines().any(|l| l.starts_with(&format!("warning: the server refused receipt {id} ("))), "the warning names the receipt: {err}");
    assert!(!err.contains("warning: warning"), "one level word: {err}");
    server.take();

    // The repository cannot be verified: the cycle fails, the status still goes, saying why.
    std::fs::remove_file(w.path("repo/metadata/timestamp.json")).unwrap();
    let out = run_once(&w, &config, "2026-12-01T11:25:00+01:00");
    assert_eq!(out.status.code(), Some(1));
    let seen = server.take();
    let status = &seen.iter().find(|s| s.path == "/api/v1/status").expect("a status even when the repository fails").body;
    assert!(status["repository_error"].as_str().unwrap().contains("repository"), "{status}");
    assert_eq!(status["due"], serde_json::json!([]));
}

#[test]
fn a_guard_that_cannot_start_fails_the_intervention_and_backs_off() {
    let w = World::new();
    let server = Scripted::start();
    w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
    w.server(&["validate", "--repo", "repo", "quiz-fix@1.0.0", "--alpha"]);
    let config = config(&w, &server, "[\"/nonexistent/guard.sh\"]");
    let out = run_once(&w, &config, "2026-12-01T10:00:00+01:00");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("hook guard could not be started") && err.contains("[hooks]"), "{err}");
    // The same set is not tried again at the next poll (back-off), and plan says until when.
    let out = run_once(&w, &config, "2026-12-01T10:05:00+01:00");
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = w.run("palier-agent", &["plan", "--config", config.to_str().unwrap(), "--json", "--now", "2026-12-01T10:05:00+01:00"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["bundles"][0]["reason"], "held", "{plan}");
    assert!(plan["bundles"][0]["detail"].as_str().unwrap().contains("retried after"), "{plan}");
}

#[test]
fn plain_http_to_another_host_is_warned_once() {
    let w = World::new();
    let server = Scripted::start();
    let config = config(&w, &server, "[\"true\"]");
    let text = std::fs::read_to_string(&config).unwrap().replace(&format!("http://{}", server.addr), "http://palier.example.org:9");
    std::fs::write(&config, text).unwrap();
    let out = w.run("palier-agent", &["plan", "--config", config.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(err.matches("warning: ").count(), 1, "{err}");
    assert!(err.contains("`server` is plain http:// to palier.example.org"), "{err}");
    let loopback = w.agent_config("univ-b", 3, 1);
    let out = w.run("palier-agent", &["plan", "--config", loopback.to_str().unwrap()]);
    assert!(!stderr(&out).contains("warning: "), "{}", stderr(&out));
}

/// Run as root on a state folder that belongs to the service's user, `plan` and `run`
/// refuse and name the user to run as; nothing is created as root. (CI runs as root; as
/// another user there is no root to refuse.)
#[test]
fn root_on_another_users_state_folder_is_refused_naming_the_user() {
    let w = World::new();
    let config = w.agent_config("univ-a", 3, 1);
    let state = w.path("state-univ-a");
    std::fs::create_dir_all(&state).unwrap();
    let chown = std::process::Command::new("chown").args(["65534", state.to_str().unwrap()]).status().unwrap();
    let is_root = std::process::Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if !is_root {
        assert!(!chown.success(), "only root can give the folder away");
        return;
    }
    assert!(chown.success());
    for args in [&["plan", "--config"][..], &["run", "--once", "--config"][..]] {
        let mut args = args.to_vec();
        args.push(config.to_str().unwrap());
        let out = w.run("palier-agent", &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("runs as root") && err.contains("sudo -u ") && err.contains("palier-agent"), "{err}");
    }
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "nothing written as root");
}
