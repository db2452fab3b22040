//! The product as a new operator meets it, reading only the README and docs/: each test
//! replays one way it was found wanting at 2 a.m. (a silent daemon, a mistyped `--db`, a
//! token file holding the whole `platform add` output, ...) through the real binaries, and
//! checks what it does now and what it says, the command to run next included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::control::serve;
use common::site::Site;
use common::{World, bin, manifest, stderr};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Exit `code`, and one line on stderr holding every one of `wanted`; that line.
#[track_caller]
fn one_line(o: &Output, code: i32, wanted: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for w in wanted {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    err.trim_end().to_owned()
}

/// Register `name` (3/1) in `w`'s store; its token.
fn register(w: &World, name: &str) -> String {
    let out = w.server(&["platform", "add", name, "--improvement", "3", "--stability", "1", "--db", "palier.db"]);
    out.lines().last().unwrap().trim().to_owned()
}

/// Write `text` as the token file `token-NAME`, with `mode`; its path.
fn token_file(w: &World, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = w.path(&format!("token-{name}"));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Point `config` at the control plane `url` with the token in `token`.
fn with_server(config: &Path, url: &str, token: &Path) {
    let text = std::fs::read_to_string(config).unwrap().replacen("trusted_root = ", &format!("server = \"{url}\"\ntoken_file = \"{}\"\ntrusted_root = ", token.display()), 1);
    std::fs::write(config, text).unwrap();
}

/// A level-1 config that applies as soon as a bundle is eligible (no low-load slot to wait
/// for), whatever the hour the test runs at.
fn at_once(s: &Site) -> PathBuf {
    let config = s.config(3, 1, "");
    let text: String = std::fs::read_to_string(&config).unwrap().lines().filter(|l| !l.starts_with("low_load") && !l.starts_with("max_defer")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&config, text).unwrap();
    config
}

const QUIZ_FIX: &[(&str, &str)] = &[("mod/quiz/view.php", "<?php // fixed quiz view\necho 'quiz';\n")];

/// Finding 3: the daemon said nothing (no start line, no line per cycle), a refused token was
/// one WARN line, and colour codes went into pipes. Now: a start line with what it works on,
/// a line for what a cycle did, a `warning:` naming the command that fixes the token, plain
/// text in a pipe.
#[test]
fn the_daemon_says_it_started_what_each_cycle_did_and_what_to_do_about_a_refused_token() {
    let s = Site::new(50);
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, "");
    register(&s.w, "univ-a");
    let served = serve(&s.w);
    let config = at_once(&s);
    // A token that is not this platform's (the store holds only its hash).
    let token = token_file(&s.w, "univ-a", &format!("{}\n", "0".repeat(64)), 0o600);
    with_server(&config, &served.url, &token);

    let mut child = Command::new(bin("palier-agent"))
        .args(["run", "--config", config.to_str().unwrap(), "--interval", "1h"])
        .current_dir(s.w.tmp.path())
        .env_remove("PALIER_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = BufReader::new(child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Read until the first cycle has applied the bundle and met the refused token; the
    // timeout only keeps a broken daemon from hanging the test.
    let mut lines: Vec<String> = Vec::new();
    while !(lines.iter().any(|l| l.contains("applied quiz-fix@1.0.0")) && lines.iter().any(|l| l.contains("(401)"))) {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("the daemon's first cycle was not logged:\n{}", lines.join("\n"));
            }
        }
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let all = lines.join("\n");
    assert!(status.success(), "SIGTERM ends the daemon cleanly: {status:?}\n{all}");

    let start = &lines[0];
    assert!(start.starts_with(&format!("palier-agent {} started: platform univ-a, repository file://", env!("CARGO_PKG_VERSION"))), "{all}");
    assert!(start.contains(&format!("server {}", served.url)) && start.contains("a cycle every 1h"), "{start}");
    let applied = lines.iter().find(|l| l.contains("applied quiz-fix@1.0.0")).unwrap();
    assert!(applied.starts_with("applied quiz-fix@1.0.0") && applied.contains("(receipt "), "an info line, no level word: {applied}");
    let refused = lines.iter().find(|l| l.contains("(401)")).unwrap();
    assert!(refused.starts_with("warning: the server refused this platform's token (401)"), "{refused}");
    assert!(refused.contains("palier-server platform token univ-a --db FILE") && refused.contains(&token.display().to_string()), "what to run, and where to put it: {refused}");
    assert_eq!(lines.last().map(String::as_str), Some("palier-agent stopped"), "{all}");
    assert!(!all.contains('\x1b'), "no colour in a pipe: {all:?}");
    for l in &lines {
        assert!(!l.contains("palier_agent::") && !l.contains(" WARN ") && !l.starts_with(|c: char| c.is_ascii_digit()), "no module path, level column or timestamp: {l}");
    }
}

/// Findings 4 and 15: a token file holding the whole `platform add` output gave "builder
/// error: failed to parse header value"; a token file others may read was accepted. Now each
/// is one line naming the file and the fix, before anything is sent.
#[test]
fn the_agent_refuses_a_pasted_platform_add_output_and_a_token_file_others_may_read() {
    let w = World::new();
    w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
    let token = register(&w, "univ-a");
    let config = w.agent_config("univ-a", 3, 1);
    let add = w.server(&["platform", "add", "univ-b", "--improvement", "3", "--stability", "1", "--db", "palier.db"]);
    assert!(add.contains("put the next line alone in the agent's token_file, mode 0600"), "{add}");
    let pasted = add.replace(add.lines().last().unwrap(), &token);
    assert!(pasted.lines().count() > 1, "{add}");
    // Nothing listens on port 9: the token is refused before any connection is tried.
    let file = token_file(&w, "univ-a", &pasted, 0o600);
    with_server(&config, "http://127.0.0.1:9", &file);
    let c = config.to_str().unwrap();
    let f = file.display().to_string();
    for args in [vec!["run", "--once", "--config", c], vec!["request-fix", "--config", c, "--component", "mod_quiz", "--summary", "s"]] {
        let line = one_line(&w.run("palier-agent", &args), 1, &[&f, "lines", "put only the token (the last line of `palier-server platform add"]);
        assert!(!line.contains("header value") && !line.contains("builder error"), "{line}");
    }
    token_file(&w, "univ-a", &format!("{token}\n"), 0o644);
    one_line(&w.run("palier-agent", &["run", "--once", "--config", c]), 1, &[&f, "chmod 600"]);
}

/// Finding 5: a repository that was down was reported as "refused" (the README's word for
/// tampered metadata) with its address three times. Now: unreachable or not found, the
/// address once, and what to check.
#[test]
fn a_down_repository_is_unreachable_and_a_wrong_one_not_found_never_refused() {
    let w = World::new();
    let config = w.agent_config("univ-a", 3, 1);
    let text = std::fs::read_to_string(&config).unwrap();
    let repo = format!("file://{}", w.path("repo").display());
    let c = config.to_str().unwrap();

    std::fs::write(&config, text.replace(&repo, "http://127.0.0.1:9/repo")).unwrap();
    for cmd in ["plan", "run"] {
        let args = if cmd == "run" { vec![cmd, "--once", "--config", c] } else { vec![cmd, "--config", c] };
        let line = one_line(&w.run("palier-agent", &args), 1, &["unreachable", "is the server up"]);
        assert_eq!(line.matches("127.0.0.1:9").count(), 1, "the address once: {line}");
        assert!(!line.contains("refused:") && !line.contains("repository refused"), "a down server is not tampering: {line}");
    }

    std::fs::create_dir_all(w.path("empty")).unwrap();
    std::fs::write(&config, text.replace(&repo, &format!("file://{}", w.path("empty").display()))).unwrap();
    let line = one_line(&w.run("palier-agent", &["plan", "--config", c]), 1, &["not found", "metadata/"]);
    assert!(!line.contains("refused:"), "{line}");
    assert!(!w.path("site/dirroot/.palier").exists());
}

/// A snapshot of every file under `dir`: path to content.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(tree(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

/// Build a one-file bundle `id` fixing `fixes` (manifest ids); its archive.
fn build(w: &World, id: &str, fixes: &str) -> PathBuf {
    let dir = w.path(&format!("bundles/{id}"));
    std::fs::create_dir_all(dir.join("files/mod/quiz")).unwrap();
    std::fs::write(dir.join(format!("files/mod/quiz/{id}.php")), "<?php\n").unwrap();
    std::fs::write(dir.join("bundle.toml"), manifest(id, "1.0.0", "mod_quiz", "technical", "none", fixes)).unwrap();
    let archive = w.path(&format!("{id}.tar.gz"));
    let d = dir.display();
    w.server(&["bundle", "build", "--manifest", &format!("{d}/bundle.toml"), "--source", &format!("{d}/files"), "--out", archive.to_str().unwrap()]);
    archive
}

/// Finding 6: a mistyped `--db` on `publish` silently created an empty store (and `serve`
/// on it answered every agent 401). Now only `platform add` creates one; `publish` names the
/// command that does, and nothing is created or published.
#[test]
fn publish_with_a_mistyped_db_creates_nothing_and_says_what_creates_a_store() {
    let w = World::new();
    register(&w, "univ-a");
    let archive = build(&w, "quiz-fix", "\"MDL-1\"");
    let before = tree(&w.path("repo"));
    let typo = w.path("palier.bd");
    let t = typo.display().to_string();
    one_line(
        &w.run("palier-server", &["publish", "--repo", "repo", "--db", &t, archive.to_str().unwrap()]),
        1,
        &[&format!("no control-plane store at {t}"), &format!("palier-server platform add NAME --improvement N --stability N --db {t}")],
    );
    assert!(!typo.exists(), "a mistyped --db created a store");
    assert_eq!(tree(&w.path("repo")), before, "nothing published");
    w.server(&["publish", "--repo", "repo", "--db", "palier.db", archive.to_str().unwrap()]);
}

/// Finding 7: `link` and `--reported-by` accepted platforms that do not exist (a typo signs a
/// reporter no agent is). Now, given the store, each is checked against it, and the line
/// names the command that lists the platforms.
#[test]
fn reported_by_and_link_are_checked_against_the_store() {
    let w = World::new();
    register(&w, "univ-a");
    let archive = build(&w, "quiz-fix", "\"MDL-1\"");
    let before = tree(&w.path("repo"));
    let lists = "`palier-server platform list --db palier.db` lists them";
    one_line(
        &w.run("palier-server", &["publish", "--repo", "repo", "--db", "palier.db", "--reported-by", "univ-x", archive.to_str().unwrap()]),
        1,
        &["--reported-by univ-x: no platform univ-x in palier.db", lists, "nothing published"],
    );
    assert_eq!(tree(&w.path("repo")), before);
    w.server(&["publish", "--repo", "repo", "--db", "palier.db", "--reported-by", "univ-a", archive.to_str().unwrap()]);

    let before = tree(&w.path("repo"));
    one_line(&w.run("palier-server", &["link", "--repo", "repo", "quiz-fix@1.0.0", "--platform", "univ-x", "--db", "palier.db"]), 1, &["--platform univ-x: no platform univ-x in palier.db", lists]);
    assert_eq!(tree(&w.path("repo")), before);
    one_line(&w.run("palier-server", &["link", "--repo", "repo", "quiz-fix@1.0.0", "--platform", "univ-a", "--db", "palier.bd"]), 1, &["no control-plane store at"]);
    assert!(!w.path("palier.bd").exists());
    register(&w, "univ-b");
    let out = w.server(&["link", "--repo", "repo", "quiz-fix@1.0.0", "--platform", "univ-b", "--db", "palier.db"]);
    assert!(out.contains("quiz-fix@1.0.0: reported by univ-b"), "{out}");
}

/// Finding 7: `request-fix --bundle` linked a yanked bundle and accepted a component that was
/// not the bundle's. Now, through the agent's command: a bare id is the newest published
/// version; a yanked bundle or another component is refused, saying why.
#[test]
fn request_fix_takes_a_bare_id_and_refuses_a_yanked_or_foreign_bundle() {
    let w = World::new();
    w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
    w.publish(&manifest("quiz-fix", "1.1.0", "mod_quiz", "technical", "none", ""), &[]);
    let token = register(&w, "univ-a");
    let served = serve(&w);
    let config = w.agent_config("univ-a", 3, 1);
    with_server(&config, &served.url, &token_file(&w, "univ-a", &format!("{token}\n"), 0o600));
    let c = config.to_str().unwrap();
    let fix = |component: &str, bundle: &str| w.run("palier-agent", &["request-fix", "--config", c, "--component", component, "--summary", "quiz timer drifts", "--bundle", bundle]);

    let out = fix("mod_quiz", "quiz-fix");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("FR-1 filed for univ-a (mod_quiz), linked to quiz-fix@1.1.0"), "{}", stdout(&out));
    one_line(&fix("mod_forum", "quiz-fix@1.0.0"), 1, &["changes component mod_quiz, not mod_forum"]);
    w.server(&["yank", "--repo", "repo", "quiz-fix@1.1.0", "--reason", "broken"]);
    one_line(&fix("mod_quiz", "quiz-fix@1.1.0"), 1, &["quiz-fix@1.1.0 is yanked"]);
    // A bare id is the newest published version: yanked, it is refused too, saying what to do.
    one_line(&fix("mod_quiz", "quiz-fix"), 1, &["quiz-fix@1.1.0 is yanked", "name the version that replaces it"]);
    let out = fix("mod_quiz", "quiz-fix@1.0.0");
    assert!(stdout(&out).contains("FR-2 filed for univ-a (mod_quiz), linked to quiz-fix@1.0.0"), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(fix("mod_quiz", "Quiz Fix").status.code(), Some(2), "not a bundle id: bad usage");
}

/// Finding 9: the README had no bundle.toml example. The one it shows builds as written.
#[test]
fn the_readme_manifest_example_builds_and_publishes() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = readme.split_once("The manifest the release manager writes").expect("the README shows a bundle.toml").1;
    let example = after.split_once("```toml\n").unwrap().1.split_once("```").unwrap().0;
    assert!(example.contains("[[checks]]") && example.contains('#'), "a commented example: {example}");
    let w = World::new();
    std::fs::write(w.path("bundle.toml"), example).unwrap();
    std::fs::create_dir_all(w.path("fixed/mod/quiz")).unwrap();
    std::fs::write(w.path("fixed/mod/quiz/view.php"), "<?php // fixed\n").unwrap();
    w.server(&["bundle", "build", "--manifest", "bundle.toml", "--source", "fixed/", "--out", "fix.tar.gz"]);
    // It names a fix request: without the store, publishing it says so; --no-db on purpose.
    one_line(&w.run("palier-server", &["publish", "--repo", "repo", "fix.tar.gz"]), 1, &["no --db was given", "add --db FILE"]);
    w.server(&["publish", "--repo", "repo", "--no-db", "fix.tar.gz"]);
}

/// Finding 12: `yank` twice failed while `halt` twice succeeded. Every change already in
/// place exits 0, says so, and re-signs nothing; the agent's `hold` and `release` likewise.
#[test]
fn recording_what_is_already_recorded_exits_0_says_so_and_re_signs_nothing() {
    let w = World::new();
    w.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
    register(&w, "univ-a");
    let b = "quiz-fix@1.0.0";
    let cases: [&[&str]; 6] = [
        &["validate", "--repo", "repo", b, "--alpha"],
        &["validate", "--repo", "repo", b, "--dataset", "big-univ"],
        &["link", "--repo", "repo", b, "--platform", "univ-a", "--db", "palier.db"],
        &["halt", "--repo", "repo", b, "--reason", "login errors"],
        &["resume", "--repo", "repo", b],
        &["yank", "--repo", "repo", b, "--reason", "withdrawn"],
    ];
    for args in cases {
        w.server(args);
        let before = tree(&w.path("repo"));
        let again = w.server(args);
        assert!(again.contains("already") && again.contains("nothing re-signed"), "{args:?}: {again}");
        assert_eq!(tree(&w.path("repo")), before, "{args:?} re-signed");
    }
    // Resuming an active bundle (it was never halted) is in place too.
    let w2 = World::new();
    w2.publish(&manifest("quiz-fix", "1.0.0", "mod_quiz", "technical", "none", ""), &[]);
    assert!(w2.server(&["resume", "--repo", "repo", b]).contains("already active"));

    let config = w.agent_config("univ-a", 3, 1);
    let c = config.to_str().unwrap();
    let ok = |args: &[&str]| {
        let out = w.run("palier-agent", args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let held = ok(&["hold", "--config", c, b, "--reason", "customer asked"]);
    assert!(held.contains(&format!("not applied until `palier-agent release {b} --config {c}`")), "the whole command to run: {held}");
    assert!(ok(&["hold", "--config", c, b, "--reason", "again"]).contains("already held on this site: nothing changed"));
    ok(&["release", "--config", c, b]);
    assert!(ok(&["release", "--config", c, b]).contains("was not held on this site: nothing changed"));
}

/// Finding 10: `status` hid the watch in progress and a running intervention, printed
/// outcomes in Rust's Debug case and times in UTC with nanoseconds. Now it says both, in
/// the receipts' words and the platform's local time to the minute.
#[test]
fn status_says_the_watch_and_a_running_intervention_in_local_time() {
    let s = Site::new(50);
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, "");
    let config = at_once(&s);
    let c = config.to_str().unwrap();
    // The clock: `status` reads the watch against the real one, so the cycle runs at it too.
    let out = s.agent(&["run", "--once", "--config", c]);
    assert!(out.status.success() && stdout(&out).contains("applied quiz-fix@1.0.0"), "{}{}", stdout(&out), stderr(&out));
    let words = stdout(&s.agent(&["status", "--config", c]));
    let line = |label: &str| words.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label:?} in:\n{words}")).to_owned();
    assert!(line("platform univ-a").contains("times in Europe/Paris"), "{words}");
    let watching = line("watching:");
    assert!(watching.starts_with("watching:    until ") && watching.contains("the smoke checks run at least every 2m30s, and a failure rolls quiz-fix@1.0.0 back"), "{watching}");
    assert!(line("last:").contains("quiz-fix@1.0.0 applied on"), "{words}");
    assert!(line("installed:").starts_with("installed:   quiz-fix@1.0.0 since"), "{words}");
    assert!(line("rollback:").starts_with(&format!("rollback:    `palier-agent rollback --config {c}` puts ")), "the whole command to run: {words}");
    local_to_the_minute(&words);

    // An intervention under way: the second bundle's guard waits until the test lets it go.
    s.publish("quiz-extra", ("technical", "none"), &[("mod/quiz/extra.php", "<?php\n")], "");
    let (started, go) = (s.w.path("guard-started"), s.w.path("guard-go"));
    for f in [&started, &go] {
        assert!(Command::new("mkfifo").arg(f).status().unwrap().success());
    }
    let guard = s.w.path("waiting-guard");
    std::fs::write(&guard, format!("#!/bin/sh\necho started > {}\nread line < {}\nexit 0\n", started.display(), go.display())).unwrap();
    std::fs::set_permissions(&guard, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let text: String = text.lines().map(|l| if l.starts_with("guard = ") { format!("guard = [\"{}\"]\n", guard.display()) } else { format!("{l}\n") }).collect();
    std::fs::write(&config, text.replace("timeout = \"3s\"", "timeout = \"5m\"")).unwrap();
    let mut run = Command::new(bin("palier-agent")).args(["run", "--once", "--config", c]).current_dir(s.w.tmp.path()).env_remove("PALIER_LOG").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Opening the fifo waits until the guard writes to it: the agent is then inside its
    // intervention, holding the lock.
    let mut line = String::new();
    BufReader::new(std::fs::File::open(&started).unwrap()).read_line(&mut line).unwrap();
    let words = stdout(&s.agent(&["status", "--config", c]));
    std::fs::write(&go, "go\n").unwrap();
    assert!(run.wait().unwrap().success());
    let running = words.lines().find(|l| l.starts_with("running:")).unwrap_or_else(|| panic!("no running line:\n{words}"));
    assert!(running.starts_with(&format!("running:     process {}", run.id())), "{running}");
    local_to_the_minute(&words);
}

/// Times as an operator reads them: the platform's zone by its abbreviation, to the minute;
/// no `[Europe/Paris]` suffix, no UTC `Z`, no fractions of a second, no Debug case.
#[track_caller]
fn local_to_the_minute(text: &str) {
    assert!(!text.contains("[Europe/Paris]"), "{text}");
    assert!(text.contains(" CET") || text.contains(" CEST"), "local times: {text}");
    for word in text.split_whitespace() {
        let digits_after_dot = word.split_once('.').map(|(a, b)| a.ends_with(|c: char| c.is_ascii_digit()) && b.chars().take_while(char::is_ascii_digit).count() >= 3);
        assert!(digits_after_dot != Some(true) || !word.contains(':'), "fractions of a second in {word:?}: {text}");
        assert!(!(word.contains('T') && word.contains(':') && word.ends_with('Z')), "a UTC time {word:?}: {text}");
    }
    for debug in ["RolledBack", "Applied", "Postponed", "Some(", "None"] {
        assert!(!text.contains(debug), "{debug:?} in {text}");
    }
}

/// Findings 10 and 14: times with a raw `[Europe/Paris]` suffix or nanoseconds, `24h`
/// printed as `1d`. What `plan`, `run --once`, `check-config` and `calendar` print for a
/// level-2 and a level-3 platform reads in local time to the minute.
#[test]
fn plan_run_and_check_config_print_local_times_and_durations_as_written() {
    let s = Site::new(50);
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, "");
    for stability in [2, 3] {
        let config = s.config(3, stability, "");
        let c = config.to_str().unwrap();
        let now = "2026-12-01T10:00";
        let plan = s.agent(&["plan", "--config", c, "--now", now]);
        assert!(plan.status.success(), "{}", stderr(&plan));
        local_to_the_minute(&stdout(&plan));
        let run = s.agent(&["run", "--once", "--config", c, "--now", now]);
        assert!(run.status.success(), "{}", stderr(&run));
        let check = s.agent(&["check-config", "--config", c, "--now", now]);
        let text = format!("{}{}", stdout(&check), stderr(&check));
        local_to_the_minute(&text);
        if stability == 3 {
            assert!(text.contains("24h") && !text.contains("1d"), "{text}");
        }
        let json: serde_json::Value = serde_json::from_slice(&s.agent(&["plan", "--config", c, "--now", now, "--json"]).stdout).unwrap();
        for b in json["bundles"].as_array().unwrap() {
            let detail = b["detail"].as_str().unwrap_or_default();
            assert!(!detail.contains("[Europe/Paris]"), "{detail}");
        }
        // Whatever `run` printed for a cycle that waits (stdout) or warned (stderr).
        let printed = format!("{}{}", stdout(&run), stderr(&run));
        assert!(!printed.contains("[Europe/Paris]"), "{printed}");
    }
}

/// The online check: `check-config --online` shows the token to the control plane, and a
/// refused token is one line naming the command that issues a new one.
#[test]
fn check_config_online_shows_the_token_to_the_server() {
    let s = Site::new(50);
    let token = register(&s.w, "univ-a");
    let served = serve(&s.w);
    let config = at_once(&s);
    let file = token_file(&s.w, "univ-a", &format!("{token}\n"), 0o600);
    with_server(&config, &served.url, &file);
    let text = std::fs::read_to_string(&config).unwrap().replace(&format!("file://{}", s.w.path("repo").display()), &format!("{}/repo", served.url));
    std::fs::write(&config, text).unwrap();
    let c = config.to_str().unwrap();
    let out = s.agent(&["check-config", "--config", c, "--online"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));

    token_file(&s.w, "univ-a", &format!("{}\n", "0".repeat(64)), 0o600);
    let out = s.agent(&["check-config", "--config", c, "--online"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    let line = err.lines().find(|l| l.starts_with("error: ") && l.contains("token")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("palier-server platform token univ-a"), "the command that issues a new token: {line}");
}

/// Finding 10: with a wrong `state_dir` (another folder, or one that lost its records) the
/// agent took the site for a new one and re-applied every bundle. Now the site carries,
/// beside dirroot, which state folder changed it: `run` and `plan` refuse another folder, or
/// one without its installed record, in one line saying what to do, and change nothing.
#[test]
fn a_wrong_or_emptied_state_dir_is_refused_before_anything_is_applied_again() {
    let s = Site::new(50);
    s.publish("quiz-fix", ("technical", "none"), QUIZ_FIX, "");
    let config = at_once(&s);
    let c = config.to_str().unwrap();
    let out = s.agent(&["run", "--once", "--config", c]);
    assert!(out.status.success() && stdout(&out).contains("applied quiz-fix@1.0.0"), "{}{}", stdout(&out), stderr(&out));
    let applied = s.hash();
    let text = std::fs::read_to_string(&config).unwrap();
    let state = text.lines().find_map(|l| l.strip_prefix("state_dir = ")).unwrap().trim_matches('"').to_owned();

    // Another state folder: refused by run and by plan, the folder that changed the site named.
    let other = s.w.path("other-state");
    let wrong = config.with_file_name("wrong.toml");
    std::fs::write(&wrong, text.replace(&format!("state_dir = \"{state}\""), &format!("state_dir = \"{}\"", other.display()))).unwrap();
    for cmd in [&["run", "--once"][..], &["plan"][..]] {
        let mut args = cmd.to_vec();
        args.extend(["--config", wrong.to_str().unwrap()]);
        let line = one_line(&s.agent(&args), 1, &["is managed with the state folder", "is this the right config? Fix state_dir"]);
        assert!(line.contains(&state), "{line}");
    }
    assert_eq!(s.hash(), applied, "nothing applied again");

    // The right folder, but its installed record lost: refused, with the two ways out.
    std::fs::remove_file(config.parent().unwrap().join(&state).join("installed.json")).unwrap();
    one_line(&s.agent(&["run", "--once", "--config", c]), 1, &["has no record of the bundles installed", "restore the state folder from a backup"]);
    assert_eq!(s.hash(), applied, "nothing applied again");
}
