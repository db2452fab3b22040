//! The real-Moodle test: installs a real Moodle 5.1+ (the source from `PALIER_MOODLE_SRC`, a
//! tarball or a code folder) on Debian's PHP 8.2 and PostgreSQL 15, serves it with `php -S`
//! from `public/`, and drives the real `palier-server` and `palier-agent` binaries against
//! it, the agent running as `www-data` with `dirroot` = the code root.
//!
//! The web server is `tests/real_moodle/serve.sh`, which restarts `php -S` on SIGUSR1 (what
//! `tests/real_moodle/reload.sh` sends), with the PHP settings of its `serve.ini`. The
//! scenarios run with PHP's opcode cache off (`opcache.enable=0`): with it on, the built-in
//! server may serve a file's old code for `opcache.revalidate_freq` (2 s) after a swap, and
//! whether the checks then see the new code depends on timing.
//!
//! Scenarios, on one site installed once, with one agent (one platform, one state folder)
//! whose contract changes between scenarios:
//! 1. a technical fix at stability 1: plan, run, status; a 4.x-layout bundle is skipped
//!    `moodle-layout-mismatch`;
//! 2. a bundle that breaks the login page is rolled back automatically, the tree identical;
//! 3. an upgrade bundle (mod_quiz's version.php bumped, a language string changed) at
//!    stability 1: never applied without a backup hook (`backup-missing`); with one, applied
//!    in maintenance (503 during the upgrade) after the backup; its hand rollback restores
//!    the database (pg_dump/pg_restore hooks in tests/real_moodle/);
//! 4. the same bundle at stability 3, announced with Moodle's own countdown
//!    (`maintenance.php --enablelater`): 503 during the upgrade, the database upgraded, the
//!    hooks in order, only that bundle applied; its hand rollback restores the database,
//!    purges the caches (the fix's language string is gone) and ends out of maintenance,
//!    with nothing left to upgrade;
//! 5. maintenance turned on by hand during the watch of a good fix: the watch pauses,
//!    nothing is rolled back;
//! 6. a broken bundle behind a web server whose opcode cache never revalidates
//!    (`opcache.validate_timestamps=0`) with a `reload` hook that restarts it: rolled back,
//!    never committed.
//!
//! Beside it, `the_web_server_reloads_when_started_with_sighup_ignored` tries serve.sh and
//! reload.sh alone, with a stand-in for `php -S`, in every run.
//!
//! Without `PALIER_MOODLE_SRC`, or without root, PHP or PostgreSQL, it says that it skipped
//! and why, and passes, unless `PALIER_MOODLE_REQUIRED=1` (as `.ci/run` sets when the
//! tarball is there): then a skip is a failure. `.ci/run` installs the packages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, stderr};

/// The release of `mod_quiz` in the Moodle 5.1+ tarball, and the one the upgrade bundle brings.
const QUIZ_VERSION: &str = "2025100600";
const QUIZ_UPGRADED: &str = "2025100601";
/// mod_quiz's `modulename` string, and the one the upgrade bundle brings.
const QUIZ_NAME: &str = "Quiz";
const QUIZ_NAME_FIXED: &str = "Quiz (palier fix)";

fn skip(why: &str) {
    if std::env::var("PALIER_MOODLE_REQUIRED").as_deref() == Ok("1") {
        panic!("the real-Moodle test would skip ({why}) but PALIER_MOODLE_REQUIRED=1");
    }
    eprintln!("real_moodle: SKIPPED: {why}");
}

fn found(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Run as `www-data` (the owner of the code tree, the dataroot and the agent's state).
fn as_www_data(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=www-data", "--regid=www-data", "--init-groups", "--"]).arg(program);
    c
}

fn ok(what: &str, out: Output) -> String {
    assert!(out.status.success(), "{what}: exit {:?}\n{}\n{}", out.status.code(), String::from_utf8_lossy(&out.stdout), stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The web server: `tests/real_moodle/serve.sh` keeping `php -S` running (restarted by the
/// `reload` hook), in its own process group, stopped with the test.
struct WebServer {
    supervisor: Child,
    /// Where serve.sh keeps serve.pid, serve.ini and serve.generation.
    dir: PathBuf,
}

impl WebServer {
    /// Wait (30 s at most) until serve.sh's first server listens on `addr`.
    fn wait_serving(&mut self, addr: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.dir.join("serve.generation").exists() {
            // A server that exited could not take the port.
            assert!(self.supervisor.try_wait().unwrap().is_none(), "the web server exited: {addr} is taken by another program");
            assert!(Instant::now() < deadline, "php -S did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many times serve.sh has started its server.
    fn generation(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("serve.generation")).unwrap().trim().parse().unwrap()
    }

    /// Serve with these PHP settings from now on: written to serve.ini, then the server
    /// restarted by the reload hook, as the agent's `reload` hook does.
    fn set_ini(&self, settings: &[&str]) {
        std::fs::write(self.dir.join("serve.ini"), settings.iter().map(|s| format!("{s}\n")).collect::<String>()).unwrap();
        let out = as_www_data(&self.dir.join("../hooks/reload.sh")).arg(&self.dir).output().unwrap();
        ok("reload.sh", out);
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        // The whole group: serve.sh and the `php -S` it started.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.supervisor.id())]).status();
        let _ = self.supervisor.wait();
    }
}

/// The database, dropped with the test.
struct Database(String);

impl Drop for Database {
    fn drop(&mut self) {
        // One `-c` each: psql sends a `-c` as one query, and DROP DATABASE refuses to run in
        // the transaction that several statements make.
        let (database, role) = (format!("DROP DATABASE IF EXISTS {}", self.0), format!("DROP ROLE IF EXISTS {}", self.0));
        let _ = Command::new("runuser").args(["-u", "postgres", "--", "psql", "-q", "-c", &database, "-c", &role]).output();
    }
}

/// `GET path`: (status, body). Moodle's pages take a second or two on this machine.
fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // The request in one write: `php -S` (PHP 8.2) often answers a request that arrives in
    // pieces with "Malformed HTTP request" and closes the connection (a broken pipe here).
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

struct Moodle {
    work: PathBuf,
    addr: String,
    db: String,
    web: WebServer,
    _database: Database,
}

impl Moodle {
    fn path(&self, p: &str) -> PathBuf {
        self.work.join(p)
    }

    fn code(&self) -> PathBuf {
        self.path("moodle")
    }

    fn psql(&self, sql: &str) -> String {
        let out = Command::new("runuser").args(["-u", "postgres", "--", "psql", "-tAq", "-d", &self.db, "-c", sql]).output().unwrap();
        ok("psql", out).trim().to_owned()
    }

    fn quiz_version(&self) -> String {
        self.psql("SELECT value FROM mdl_config_plugins WHERE plugin = 'mod_quiz' AND name = 'version'")
    }

    /// mod_quiz's `modulename` string as Moodle gives it, through its string cache.
    fn quiz_string(&self) -> String {
        let out = as_www_data(Path::new("php")).arg(self.path("hooks/string.php")).arg(self.code()).args(["modulename", "quiz"]).output().unwrap();
        ok("string.php", out)
    }

    fn server(&self, args: &[&str]) -> String {
        ok(&format!("palier-server {args:?}"), Command::new(bin("palier-server")).args(args).current_dir(&self.work).output().unwrap())
    }

    fn agent(&self, args: &[&str]) -> Output {
        as_www_data(&self.path("bin/palier-agent")).args(args).current_dir(&self.work).env_remove("PALIER_LOG").output().unwrap()
    }

    /// Build a bundle from `files` (paths relative to the code root) and publish it,
    /// validated by alpha and two datasets.
    fn publish(&self, id: &str, version: &str, component: &str, extra: &str, files: &[(&str, String)]) {
        let dir = self.path(&format!("bundles/{id}-{version}"));
        for (p, text) in files {
            let f = dir.join("files").join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        }
        let manifest = format!(
            "id = \"{id}\"\nversion = \"{version}\"\ncomponent = \"{component}\"\nclass = \"technical\"\nsummary = \"real-Moodle test bundle {id}\"\norigin = \"roadmap\"\n{extra}"
        );
        std::fs::write(dir.join("bundle.toml"), manifest).unwrap();
        let d = dir.to_str().unwrap();
        self.server(&["bundle", "build", "--manifest", &format!("{d}/bundle.toml"), "--source", &format!("{d}/files"), "--out", &format!("{d}.tar.gz")]);
        self.server(&["publish", "--repo", "repo", &format!("{d}.tar.gz")]);
        let key = format!("{id}@{version}");
        for v in [vec!["--alpha"], vec!["--dataset", "big-univ"], vec!["--dataset", "small-school"]] {
            let mut args = vec!["validate", "--repo", "repo", &key];
            args.extend(v);
            self.server(&args);
        }
        // The agent, as www-data, reads the repository.
        Command::new("chmod").args(["-R", "a+rX", self.path("repo").to_str().unwrap()]).status().unwrap();
    }

    /// The site's agent config `agent-{name}.toml`, at improvement 3 and `stability`, with
    /// Moodle's own CLI scripts as hooks. Every config is the same platform's, with the same
    /// state folder: one site has one agent, whose contract changes between scenarios.
    fn config(&self, name: &str, stability: &str, hooks: &str) -> PathBuf {
        let state = self.path("state");
        std::fs::create_dir_all(&state).unwrap();
        Command::new("chown").args(["www-data:www-data", state.to_str().unwrap()]).status().unwrap();
        let text = format!(
            r#"platform = "real-moodle"
repository = "file://{repo}"
trusted_root = "repo/metadata/1.root.json"
state_dir = "state"
timezone = "Europe/Paris"

[moodle]
dirroot = "moodle"
dataroot = "moodledata"
wwwroot = "http://{addr}"

[improvement]
level = 3

[stability]
{stability}

[checks]
smoke = [
  {{ path = "/", expect_status = 200, expect_body = "page-site-index" }},
  {{ path = "/login/index.php", expect_status = 200, expect_body = "logintoken" }},
]

[hooks]
purge_caches = ["php", "{{dirroot}}/admin/cli/purge_caches.php"]
{hooks}
"#,
            repo = self.path("repo").display(),
            addr = self.addr,
        );
        let path = self.path(&format!("agent-{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn hash(&self) -> String {
        palier_fixture::tree_hash(&self.code()).unwrap()
    }
}

/// Install Moodle from `src` into a new temporary folder and serve it.
fn install(src: &Path) -> Moodle {
    let tmp = tempfile::Builder::new().prefix("palier-real-moodle-").tempdir().unwrap().keep();
    Command::new("chmod").args(["755", tmp.to_str().unwrap()]).status().unwrap();
    // A free port for the site's wwwroot (Moodle writes it into config.php), taken by the web
    // server at once: the install takes minutes, in which another program could take a port
    // that was only probed. The server serves the web root the install then fills.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    std::fs::create_dir_all(tmp.join("moodle/public")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real_moodle/install.sh");
    // The web server's folder and the hooks, where www-data can run and write them.
    let web_dir = tmp.join("web");
    std::fs::create_dir_all(&web_dir).unwrap();
    std::fs::create_dir_all(tmp.join("hooks")).unwrap();
    for h in ["backup.sh", "restore.sh", "upgrade.sh", "serve.sh", "reload.sh", "string.php"] {
        std::fs::copy(script.with_file_name(h), tmp.join("hooks").join(h)).unwrap();
    }
    // The opcode cache off, unless a scenario about it turns it on: with it, PHP's built-in
    // server keeps serving a file's old code for up to opcache.revalidate_freq (2 s) after the
    // swap, and the checks that run within those 2 s would pass against the old code.
    std::fs::write(web_dir.join("serve.ini"), "opcache.enable=0\n").unwrap();
    Command::new("chown").args(["-R", "www-data:www-data", web_dir.to_str().unwrap(), tmp.join("hooks").to_str().unwrap()]).status().unwrap();
    let supervisor = as_www_data(&tmp.join("hooks/serve.sh"))
        .args([&addr, tmp.join("moodle/public").to_str().unwrap(), web_dir.to_str().unwrap()])
        .process_group(0)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut web = WebServer { supervisor, dir: web_dir.clone() };
    web.wait_serving(&addr);

    let db = format!("palier_rm_{}", std::process::id());
    let started = Instant::now();
    let out = Command::new("bash").arg(&script).arg(src).arg(&tmp).arg(port.to_string()).arg(&db).output().unwrap();
    eprint!("{}", stderr(&out));
    let database = Database(db.clone());
    ok("tests/real_moodle/install.sh", out);
    eprintln!("real_moodle: Moodle installed in {:.0} s", started.elapsed().as_secs_f64());
    assert!(web.supervisor.try_wait().unwrap().is_none(), "the web server on {addr} exited during the install");

    // The binaries and the hook scripts, where www-data can run them.
    std::fs::create_dir_all(tmp.join("bin")).unwrap();
    std::fs::copy(bin("palier-agent"), tmp.join("bin/palier-agent")).unwrap();
    std::fs::write(tmp.join("wwwroot"), format!("http://{addr}")).unwrap();
    std::fs::write(tmp.join("status-during-upgrade"), "").unwrap();
    // www-data owns the site and writes beside the code root (staged and previous trees).
    for p in ["", "bin", "hooks", "wwwroot", "status-during-upgrade"] {
        Command::new("chown").args(["www-data:www-data", tmp.join(p).to_str().unwrap()]).status().unwrap();
    }
    let m = Moodle { work: tmp, addr, db, web, _database: database };
    m.server(&["init", "--repo", "repo"]);
    let (status, body) = get(&m.addr, "/");
    assert_eq!(status, 200, "the installed site's front page: {body}");
    assert!(body.contains("page-site-index"), "{body}");
    m
}

#[test]
fn real_moodle() {
    let Some(src) = std::env::var_os("PALIER_MOODLE_SRC").map(PathBuf::from) else {
        return skip("PALIER_MOODLE_SRC is not set (a Moodle 5.1+ tarball or code folder)");
    };
    if !src.exists() {
        return skip(&format!("PALIER_MOODLE_SRC={} does not exist", src.display()));
    }
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    if uid != "0" {
        return skip("it must run as root (it starts PostgreSQL and runs Moodle as www-data)");
    }
    for p in ["php", "pg_ctlcluster", "pg_dump", "setpriv", "curl"] {
        if !found(p) {
            return skip(&format!("{p} is not installed (.ci/run installs what the test needs)"));
        }
    }
    let started = Instant::now();
    let src = std::fs::canonicalize(&src).unwrap();
    let m = install(&src);

    technical_fix_at_stability_1(&m);
    broken_login_rolled_back_automatically(&m);
    upgrade_at_stability_1_needs_a_backup_and_its_rollback_restores(&m);
    upgrade_at_stability_3_and_hand_rollback(&m);
    watch_pauses_for_maintenance_turned_on_by_hand(&m);
    broken_bundle_behind_an_opcode_cache_that_never_revalidates(&m);

    eprintln!("real_moodle: all scenarios in {:.0} s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&m.work);
}

/// The 5.1 code root as dirroot: plan, run, status; a 4.x bundle does not fit.
fn technical_fix_at_stability_1(m: &Moodle) {
    let lib = std::fs::read_to_string(m.code().join("public/mod/quiz/lib.php")).unwrap();
    let fixed = format!("{lib}\n// palier real-Moodle test: quiz-fix 1.0.1\n");
    let probe = "<?php\n// A page of the fix, to see it live.\necho 'palier-quiz-fix-1.0.1';\n".to_owned();
    m.publish(
        "quiz-fix",
        "1.0.1",
        "mod_quiz",
        "data_impact = \"none\"\n\n[[checks]]\npath = \"/mod/quiz/palier_probe.php\"\nexpect_status = 200\nexpect_body = \"palier-quiz-fix-1.0.1\"\n",
        &[("public/mod/quiz/lib.php", fixed.clone()), ("public/mod/quiz/palier_probe.php", probe)],
    );
    m.publish("quiz-old-layout", "1.0.0", "mod_quiz", "data_impact = \"none\"\n", &[("mod/quiz/view.php", "<?php // 4.x path\n".to_owned())]);
    let config = m.config("s1", "level = 1", "");
    let c = config.to_str().unwrap();

    let plan: serde_json::Value = serde_json::from_str(&ok("plan", m.agent(&["plan", "--config", c, "--json"]))).unwrap();
    let decision = |id: &str| plan["bundles"].as_array().unwrap().iter().find(|d| d["id"] == id).cloned().unwrap();
    assert_eq!(decision("quiz-fix")["decision"], "eligible", "{plan}");
    let old = decision("quiz-old-layout");
    assert_eq!((old["decision"].as_str(), old["reason"].as_str()), (Some("skipped"), Some("moodle-layout-mismatch")), "{old}");
    assert!(old["detail"].as_str().unwrap().contains("this is a 4.x bundle"), "{old}");

    let t = Instant::now();
    let out = ok("run --once", m.agent(&["run", "--once", "--config", c]));
    eprintln!("real_moodle: technical fix applied in {:.1} s", t.elapsed().as_secs_f64());
    assert!(out.contains("applied quiz-fix@1.0.1"), "{out}");
    assert_eq!(std::fs::read_to_string(m.code().join("public/mod/quiz/lib.php")).unwrap(), fixed);
    assert_eq!(get(&m.addr, "/mod/quiz/palier_probe.php").1, "palier-quiz-fix-1.0.1");
    // The swapped tree is the whole code root: config.php and admin/cli are in it, and no
    // kept tree lies inside the code root or the web root.
    assert!(m.code().join("config.php").is_file() && m.code().join("admin/cli/checks.php").is_file());
    for dir in [m.code(), m.code().join("public")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name();
            assert!(!name.to_string_lossy().starts_with(".palier"), "{} inside {}", name.to_string_lossy(), dir.display());
        }
    }
    let status = ok("status", m.agent(&["status", "--config", c, "--json"]));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status.to_string().contains("quiz-fix"), "{status}");
    let (code, body) = get(&m.addr, "/login/index.php");
    assert!(code == 200 && body.contains("logintoken"), "{code}");
}

/// A bundle that breaks the login page: rolled back by the smoke checks, the tree as before.
fn broken_login_rolled_back_automatically(m: &Moodle) {
    let before = m.hash();
    let login = std::fs::read_to_string(m.code().join("public/login/index.php")).unwrap();
    let broken = login.replacen("require('../config.php');", "require('../config.php');\npalier_login_return_to_attempt(); // undefined: a fatal error", 1);
    assert_ne!(broken, login, "public/login/index.php has changed shape");
    m.publish("login-break", "1.0.0", "core", "data_impact = \"none\"\n", &[("public/login/index.php", broken)]);
    let config = m.path("agent-s1.toml");
    let t = Instant::now();
    let out = m.agent(&["run", "--once", "--config", config.to_str().unwrap()]);
    eprintln!("real_moodle: broken login applied and rolled back in {:.1} s", t.elapsed().as_secs_f64());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("rolled back") && err.contains("login-break@1.0.0") && err.contains("/login/index.php"), "{err}");
    assert_eq!(m.hash(), before, "the tree is not the one before the broken bundle");
    // The site holds it (rolled back here), and the release manager halts it for the fleet.
    m.server(&["halt", "--repo", "repo", "login-break@1.0.0", "--reason", "breaks the login page"]);
    Command::new("chmod").args(["-R", "a+rX", m.path("repo").to_str().unwrap()]).status().unwrap();
    let (code, body) = get(&m.addr, "/login/index.php");
    assert!(code == 200 && body.contains("logintoken"), "{code}");
}

/// The upgrade bundle's files: mod_quiz's version.php bumped (a database change) and one of
/// its language strings changed.
fn quiz_upgrade_files(m: &Moodle) -> Vec<(&'static str, String)> {
    let version = std::fs::read_to_string(m.code().join("public/mod/quiz/version.php")).unwrap();
    let bumped = version.replacen(&format!("$plugin->version   = {QUIZ_VERSION};"), &format!("$plugin->version   = {QUIZ_UPGRADED};"), 1);
    let bumped = if bumped == version { version.replacen(QUIZ_VERSION, QUIZ_UPGRADED, 1) } else { bumped };
    assert!(bumped.contains(QUIZ_UPGRADED), "mod_quiz's version.php has changed shape");
    let lang = std::fs::read_to_string(m.code().join("public/mod/quiz/lang/en/quiz.php")).unwrap();
    let changed = lang.replacen(&format!("$string['modulename'] = '{QUIZ_NAME}';"), &format!("$string['modulename'] = '{QUIZ_NAME_FIXED}';"), 1);
    assert_ne!(changed, lang, "mod_quiz's language file has changed shape");
    vec![("public/mod/quiz/version.php", bumped), ("public/mod/quiz/lang/en/quiz.php", changed)]
}

/// The hooks of a site whose database changes are protected: Moodle's maintenance mode, the
/// pg_dump/pg_restore backup and restore, the upgrade (recording what visitors get), and the
/// reload of the web server.
fn protected_hooks(m: &Moodle) -> String {
    let h = m.path("hooks");
    let h = h.display();
    format!(
        r#"maintenance_on  = ["php", "{{dirroot}}/admin/cli/maintenance.php", "--enable"]
maintenance_off = ["php", "{{dirroot}}/admin/cli/maintenance.php", "--disable"]
backup  = ["{h}/backup.sh", "{{backup_dir}}"]
restore = ["{h}/restore.sh", "{{backup_dir}}"]
upgrade = ["{h}/upgrade.sh", "{{dirroot}}"]
reload  = ["{h}/reload.sh", "{web}"]
timeout = "5m"
long_timeout = "10m"
"#,
        web = m.web.dir.display()
    )
}

fn plan_decision(m: &Moodle, config: &str, now: Option<&str>, id: &str) -> serde_json::Value {
    let mut args = vec!["plan", "--config", config, "--json"];
    if let Some(now) = now {
        args.extend(["--now", now]);
    }
    let plan: serde_json::Value = serde_json::from_str(&ok("plan", m.agent(&args))).unwrap();
    plan["bundles"].as_array().unwrap().iter().find(|d| d["id"] == id).cloned().unwrap_or_else(|| panic!("{id} not in the plan: {plan}"))
}

/// The hooks a receipt ran, in order.
fn hooks_run(receipt: &serde_json::Value) -> Vec<String> {
    receipt["hooks"].as_array().unwrap().iter().map(|h| h["hook"].as_str().unwrap().to_owned()).collect()
}

/// `names` all ran, in this order (other hooks may run between them).
fn assert_in_order(hooks: &[String], names: &[&str]) {
    let positions: Vec<usize> =
        names.iter().map(|n| hooks.iter().position(|h| h == n).unwrap_or_else(|| panic!("hook {n} did not run: {hooks:?}"))).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "hooks out of order, expected {names:?} in: {hooks:?}");
}

/// What visitors got each time the upgrade hook ran.
fn statuses_during_upgrade(m: &Moodle) -> Vec<String> {
    std::fs::read_to_string(m.path("status-during-upgrade")).unwrap().lines().map(str::to_owned).collect()
}

/// A rollback restores the database, puts the old code and its language string back (the
/// caches purged) and ends out of maintenance; Moodle then has nothing to upgrade.
fn assert_rolled_back_and_restored(m: &Moodle, tree_before: &str) {
    assert_eq!(m.quiz_version(), QUIZ_VERSION, "the database was not restored");
    assert_eq!(m.hash(), tree_before, "the tree is not the one before the upgrade");
    assert_eq!(m.quiz_string(), QUIZ_NAME, "Moodle still serves the fix's string: its caches were not purged");
    assert!(!m.path("moodledata/climaintenance.html").exists(), "still in maintenance after the rollback");
    let (code, body) = get(&m.addr, "/login/index.php");
    assert!(code == 200 && body.contains("logintoken"), "{code}");
    let out = as_www_data(Path::new("php")).arg(m.code().join("admin/cli/upgrade.php")).args(["--non-interactive", "--is-pending"]).output().unwrap();
    assert_ne!(out.status.code(), Some(2), "an upgrade is pending after the rollback: {}", String::from_utf8_lossy(&out.stdout));
}

/// The upgrade bundle at stability 1: never applied without a backup hook; with one, in
/// maintenance after the backup; its hand rollback restores the database.
fn upgrade_at_stability_1_needs_a_backup_and_its_rollback_restores(m: &Moodle) {
    assert_eq!(m.quiz_version(), QUIZ_VERSION);
    assert_eq!(m.quiz_string(), QUIZ_NAME);
    m.publish("quiz-upgrade", "1.1.0", "mod_quiz", "data_impact = \"minor\"\nupgrade = true\n", &quiz_upgrade_files(m));
    let before = m.hash();

    // Without a backup hook the database change is never made unprotected.
    let unprotected = m.path("agent-s1.toml");
    let c = unprotected.to_str().unwrap();
    let d = plan_decision(m, c, None, "quiz-upgrade");
    assert_eq!((d["decision"].as_str(), d["reason"].as_str()), (Some("needs-scheduled-intervention"), Some("backup-missing")), "{d}");
    let out = ok("run --once (no backup hook)", m.agent(&["run", "--once", "--config", c]));
    assert!(!out.contains("applied quiz-upgrade"), "{out}");
    assert_eq!(m.quiz_version(), QUIZ_VERSION);
    assert_eq!(m.hash(), before);

    // With one: maintenance on, backup, swap, upgrade, caches, maintenance off.
    let config = m.config("s1-backup", "level = 1", &protected_hooks(m));
    let c = config.to_str().unwrap();
    assert_eq!(plan_decision(m, c, None, "quiz-upgrade")["decision"], "eligible");
    let t = Instant::now();
    let out = ok("run --once (stability 1, backup)", m.agent(&["run", "--once", "--config", c]));
    eprintln!("real_moodle: upgrade at stability 1 in {:.1} s", t.elapsed().as_secs_f64());
    assert!(out.contains("applied quiz-upgrade@1.1.0 "), "{out}");
    assert_eq!(m.quiz_version(), QUIZ_UPGRADED, "the database was not upgraded");
    assert_eq!(statuses_during_upgrade(m), ["503"], "what visitors got during the upgrade");
    let receipt = last_receipt(&m.path("state/receipts"), false);
    assert_eq!(receipt["bundles"], serde_json::json!(["quiz-upgrade@1.1.0"]), "{receipt}");
    assert_in_order(&hooks_run(&receipt), &["maintenance_on", "backup", "upgrade", "purge_caches", "maintenance_off"]);
    assert!(!m.path("moodledata/climaintenance.html").exists(), "still in maintenance");
    assert_eq!(m.quiz_string(), QUIZ_NAME_FIXED);

    let t = Instant::now();
    ok("rollback (stability 1)", m.agent(&["rollback", "--config", c]));
    eprintln!("real_moodle: hand rollback at stability 1 with restore in {:.1} s", t.elapsed().as_secs_f64());
    assert_rolled_back_and_restored(m, &before);
    let receipt = last_receipt(&m.path("state/receipts"), true);
    assert_in_order(&hooks_run(&receipt), &["maintenance_on", "restore", "reload", "purge_caches", "maintenance_off"]);
    // The hand rollback held it on this site: released for the level-3 scenario.
    ok("release", m.agent(&["release", "--config", c, "quiz-upgrade@1.1.0"]));
}

/// The upgrade at stability 3 in a calendar slot, announced with Moodle's own countdown, then
/// its hand rollback with the database restored and the caches purged.
fn upgrade_at_stability_3_and_hand_rollback(m: &Moodle) {
    assert_eq!(m.quiz_version(), QUIZ_VERSION);
    let before = m.hash();
    let hooks = format!(
        "{}notice = [\"php\", \"{{dirroot}}/admin/cli/maintenance.php\", \"--enablelater={{minutes}}\"]\nvalidate = {{ argv = [\"php\", \"{{dirroot}}/admin/cli/checks.php\"], ok_exit = [0, 1] }}\n",
        protected_hooks(m)
    );
    let config = m.config("s3", "level = 3\ncalendar = [\"2026-12-05T21:00/2026-12-06T01:00\"]\nnotice = \"24h\"\nwatch = \"15m\"", &hooks);
    let c = config.to_str().unwrap();

    let out = ok("run --once (notice)", m.agent(&["run", "--once", "--config", c, "--now", "2026-12-04T20:50:00+01:00"]));
    assert!(out.contains("notice posted"), "{out}");
    // Moodle's countdown: maintenance announced for the slot (1450 minutes from now).
    let later = m.psql("SELECT value FROM mdl_config WHERE name = 'maintenance_later'");
    assert!(!later.is_empty(), "maintenance.php --enablelater set no countdown");
    let t = Instant::now();
    let out = ok("run --once (slot)", m.agent(&["run", "--once", "--config", c, "--now", "2026-12-05T21:30:00+01:00"]));
    eprintln!("real_moodle: upgrade at stability 3 in {:.1} s", t.elapsed().as_secs_f64());
    assert!(out.contains("applied quiz-upgrade@1.1.0 "), "{out}");
    assert_eq!(m.quiz_version(), QUIZ_UPGRADED, "the database was not upgraded");
    assert_eq!(statuses_during_upgrade(m), ["503", "503"], "what visitors got during the upgrades");
    assert_eq!(m.psql("SELECT count(*) FROM mdl_config WHERE name = 'maintenance_later'"), "0", "the countdown outlived the maintenance");
    let receipt = last_receipt(&m.path("state/receipts"), false);
    // Only the upgrade: the fix is installed, the broken login held and halted.
    assert_eq!(receipt["bundles"], serde_json::json!(["quiz-upgrade@1.1.0"]), "{receipt}");
    assert_in_order(&hooks_run(&receipt), &["maintenance_on", "backup", "upgrade", "purge_caches", "validate", "maintenance_off"]);
    assert!(!m.path("moodledata/climaintenance.html").exists(), "still in maintenance");
    assert_eq!(get(&m.addr, "/").0, 200);
    assert_eq!(m.quiz_string(), QUIZ_NAME_FIXED);

    // By hand: maintenance first, the old code back, the database restored, the caches purged.
    let t = Instant::now();
    let out = m.agent(&["rollback", "--config", c]);
    eprintln!("real_moodle: hand rollback at stability 3 with restore in {:.1} s", t.elapsed().as_secs_f64());
    ok("rollback", out);
    assert_rolled_back_and_restored(m, &before);
    let receipt = last_receipt(&m.path("state/receipts"), true);
    assert_in_order(&hooks_run(&receipt), &["maintenance_on", "restore", "reload", "purge_caches", "maintenance_off"]);
    let steps: Vec<&str> = receipt["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    let at = |name: &str| steps.iter().position(|s| *s == name).unwrap_or_else(|| panic!("no step {name}: {steps:?}"));
    assert!(at("maintenance on (rollback)") < at("rollback"), "the old code went live before maintenance: {steps:?}");
    assert!(at("maintenance off") < at("checks after the rollback"), "{steps:?}");
}

/// An administrator turns maintenance on during the watch of a good fix: the watch pauses and
/// says so; nothing is rolled back. Once maintenance is off the watch goes on.
fn watch_pauses_for_maintenance_turned_on_by_hand(m: &Moodle) {
    let lib = std::fs::read_to_string(m.code().join("public/mod/forum/lib.php")).unwrap();
    let fixed = format!("{lib}\n// palier real-Moodle test: forum-fix 1.0.0\n");
    m.publish("forum-fix", "1.0.0", "mod_forum", "data_impact = \"none\"\n", &[("public/mod/forum/lib.php", fixed)]);
    let config = m.config("watch", "level = 1\nwatch = \"15m\"", "");
    let c = config.to_str().unwrap();
    let out = ok("run --once (watch)", m.agent(&["run", "--once", "--config", c, "--now", "2026-12-06T10:00:00+01:00"]));
    assert!(out.contains("applied forum-fix@1.0.0"), "{out}");
    let applied = m.hash();

    let maintenance = |flag: &str| {
        ok(&format!("maintenance.php {flag}"), as_www_data(Path::new("php")).arg(m.code().join("admin/cli/maintenance.php")).arg(flag).output().unwrap())
    };
    maintenance("--enable");
    assert_eq!(get(&m.addr, "/").0, 503, "Moodle's maintenance page");
    let out = ok("run --once (maintenance by hand)", m.agent(&["run", "--once", "--config", c, "--now", "2026-12-06T10:05:00+01:00"]));
    assert!(out.contains("the watch of forum-fix@1.0.0 is paused") && !out.contains("rolled back forum-fix"), "{out}");
    assert_eq!(m.hash(), applied, "the fix was rolled back for a maintenance");
    let status: serde_json::Value = serde_json::from_str(&ok("status", m.agent(&["status", "--config", c, "--json"]))).unwrap();
    assert!(status["watch_paused"]["reason"].as_str().is_some_and(|r| r.contains("climaintenance.html")), "{status}");
    assert!(m.path("moodledata/climaintenance.html").exists(), "palier turned off a maintenance it did not start");

    maintenance("--disable");
    let out = ok("run --once (maintenance over)", m.agent(&["run", "--once", "--config", c, "--now", "2026-12-06T10:20:00+01:00"]));
    assert!(!out.contains("rolled back forum-fix") && !out.contains("paused"), "{out}");
    assert_eq!(m.hash(), applied);
    assert_eq!(get(&m.addr, "/").0, 200);
}

/// PHP's opcode cache on and never revalidating (`opcache.validate_timestamps=0`, common in
/// production): without a reload the checks would pass against the old front page and the
/// broken bundle be committed. The `reload` hook restarts PHP after the swap (the checks see
/// the fatal error) and after the swap back (the old page is served again).
fn broken_bundle_behind_an_opcode_cache_that_never_revalidates(m: &Moodle) {
    m.web.set_ini(&["opcache.enable=1", "opcache.validate_timestamps=0"]);
    // Visitors have the old pages compiled.
    for p in ["/", "/login/index.php"] {
        assert_eq!(get(&m.addr, p).0, 200, "{p}");
    }
    let before = m.hash();
    let index = std::fs::read_to_string(m.code().join("public/index.php")).unwrap();
    let broken = index.replacen("require_once('config.php');", "require_once('config.php');\npalier_front_page_undefined(); // a fatal error", 1);
    assert_ne!(broken, index, "public/index.php has changed shape");
    m.publish("front-break", "1.0.0", "core", "data_impact = \"none\"\n", &[("public/index.php", broken)]);
    let reload = format!("reload = [\"{}\", \"{}\"]\n", m.path("hooks/reload.sh").display(), m.web.dir.display());
    let config = m.config("opcache", "level = 1", &reload);
    let restarts = m.web.generation();

    let t = Instant::now();
    let out = m.agent(&["run", "--once", "--config", config.to_str().unwrap(), "--now", "2026-12-07T10:00:00+01:00"]);
    eprintln!("real_moodle: broken front page behind the opcode cache rolled back in {:.1} s", t.elapsed().as_secs_f64());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "committed behind a stale opcode cache: {}\n{err}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("rolled back") && err.contains("front-break@1.0.0"), "{err}");
    assert_eq!(m.hash(), before, "the tree is not the one before the broken bundle");
    assert_eq!(m.web.generation() - restarts, 2, "PHP reloaded after the swap and after the swap back");
    let (code, body) = get(&m.addr, "/");
    assert!(code == 200 && body.contains("page-site-index"), "the old front page is not served again: {code}");
    m.web.set_ini(&["opcache.enable=0"]);
}

/// The newest receipt in `dir`: of a hand rollback (`<id>-rollback.json`) or not. Receipt
/// names start with the intervention's time, and the scenarios' times only go forward.
fn last_receipt(dir: &Path, rollback: bool) -> serde_json::Value {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-rollback.json") == rollback)
        .collect();
    names.sort();
    serde_json::from_slice(&std::fs::read(names.last().unwrap()).unwrap()).unwrap()
}

/// The test's web server restarts on the reload hook's signal even when it was started with
/// SIGHUP ignored, as under `nohup`: a shell cannot trap a signal ignored at its start, and
/// with SIGHUP as that signal the reload hook timed out after 30 s under `nohup .ci/run`. A
/// stand-in `php` (Python's HTTP server) answers on the port, so this runs without PHP.
#[test]
fn the_web_server_reloads_when_started_with_sighup_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real_moodle");
    let (fake, docroot, dir) = (tmp.path().join("bin"), tmp.path().join("public"), tmp.path().join("web"));
    for d in [&fake, &docroot, &dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(
        fake.join("php"),
        "#!/usr/bin/env python3\nimport sys, http.server\n\
         host, port = sys.argv[sys.argv.index('-S') + 1].rsplit(':', 1)\n\
         http.server.HTTPServer((host, int(port)), http.server.SimpleHTTPRequestHandler).serve_forever()\n",
    )
    .unwrap();
    std::fs::set_permissions(fake.join("php"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    // `exec` keeps the ignored disposition, as `nohup` hands it on.
    let supervisor = Command::new("bash")
        .args(["-c", "trap '' HUP; exec \"$0\" \"$@\""])
        .arg(scripts.join("serve.sh"))
        .args([&format!("127.0.0.1:{port}"), docroot.to_str().unwrap(), dir.to_str().unwrap()])
        .env("PATH", &path)
        .process_group(0)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut web = WebServer { supervisor, dir };
    web.wait_serving(&format!("127.0.0.1:{port}"));
    let out = Command::new(scripts.join("reload.sh")).arg(&web.dir).output().unwrap();
    ok("reload.sh", out);
    assert_eq!(web.generation(), 2, "the server did not restart");
}
