//! `palier-agent check-config` on the nine example configs pointed at a fixture Moodle site
//! (exit 0), and on each way a config can point at something that would not work (exit 64,
//! one line with the fix).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{World, bin};
use palier_fixture::TreeOptions;

/// A local date-time in Europe/Paris (the examples' zone): a Monday before the examples'
/// windows and before the first Saturday of December's maintenance slot.
const NOW: &str = "2026-11-30 10:00";

/// The fixture world every example is pointed at: a repository (its root pinned), a token,
/// a generated Moodle site, and the examples' hook programs (the fixture's hook scripts).
struct Fixture {
    w: World,
    bin_dir: PathBuf,
    token: String,
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Fixture {
    fn new() -> Fixture {
        let w = World::new();
        let dirroot = w.path("www/moodle");
        let dataroot = w.path("moodledata");
        std::fs::create_dir_all(&dataroot).unwrap();
        let opts = TreeOptions { files: 20, bytes: 20_000, dataroot: dataroot.clone(), wwwroot: "https://moodle.example.org".into(), ..TreeOptions::default() };
        palier_fixture::generate(&dirroot, &opts).unwrap();
        let hooks = palier_fixture::write_hook_scripts(&w.path("hooks"), &w.path("hooks.log")).unwrap();
        // The examples' programs, as symlinks to the fixture's hook scripts; `php` too.
        let bin_dir = w.path("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        for (name, script) in [("moodle-notice", &hooks.notice), ("no-quiz-running", &hooks.guard), ("moodle-backup", &hooks.backup), ("moodle-restore", &hooks.restore), ("php", &hooks.purge_caches)] {
            std::os::unix::fs::symlink(&script[0], bin_dir.join(name)).unwrap();
        }
        let out = w.server(&["platform", "add", "example", "--db", "palier.db"]);
        let token = out.lines().last().unwrap().trim().to_owned();
        let f = Fixture { w, bin_dir, token };
        f.write_token(&format!("{}\n", f.token), 0o600);
        f
    }

    fn write_token(&self, text: &str, mode: u32) {
        let path = self.w.path("token");
        std::fs::write(&path, text).unwrap();
        chmod(&path, mode);
    }

    /// Example `name` with every machine path replaced by the fixture's; returns its path.
    fn example(&self, name: &str) -> PathBuf {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/agents");
        let text = std::fs::read_to_string(examples.join(name)).unwrap();
        let p = |s: &str| self.w.path(s).display().to_string();
        let text = text
            .replace("/etc/palier/root.json", &p("repo/metadata/1.root.json"))
            .replace("/etc/palier/token", &p("token"))
            .replace("/var/lib/palier", &p("state"))
            .replace("/var/www/moodle", &p("www/moodle"))
            .replace("/var/moodledata", &p("moodledata"))
            .replace("/usr/local/bin/", &format!("{}/", self.bin_dir.display()))
            .replace("/usr/local/sbin/", &format!("{}/", self.bin_dir.display()));
        std::fs::copy(examples.join("maintenance.ics"), self.w.path("maintenance.ics")).unwrap();
        let path = self.w.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn check(&self, config: &Path, extra: &[&str]) -> Output {
        let path = format!("{}:{}", self.bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        Command::new(bin("palier-agent"))
            .args(["check-config", "--config", config.to_str().unwrap(), "--now", NOW])
            .args(extra)
            .env("PATH", path)
            .env_remove("PALIER_LOG")
            .output()
            .unwrap()
    }
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn the_nine_examples_pass_pointed_at_the_fixture_and_print_their_contract() {
    let f = Fixture::new();
    let mut n = 0;
    for i in 1..=3 {
        for s in 1..=3 {
            let config = f.example(&format!("improvement{i}-stability{s}.toml"));
            let out = f.check(&config, &[]);
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            assert_eq!(out.status.code(), Some(0), "improvement {i} stability {s}: {stderr}\n{stdout}");
            assert!(!stderr.contains("error:"), "{stderr}");
            assert!(stdout.contains(&format!("which fixes:  level {i}")) && stdout.contains(&format!("when and how: level {s}")), "{stdout}");
            if s > 1 {
                assert!(stdout.contains("next slot:") && stdout.contains("notice"), "the next slot and its notice: {stdout}");
            }
            n += 1;
        }
    }
    assert_eq!(n, 9);
}

#[test]
fn the_next_slot_and_notice_are_said_in_local_time() {
    let f = Fixture::new();
    let out = f.check(&f.example("improvement2-stability2.toml"), &[]);
    let stdout = text(&out.stdout);
    // Monday 30 Nov 10:00: the next window is Tue 1 Dec 22:00, announced 2h before.
    assert!(stdout.contains("next slot:    Tue 1 Dec 2026 22:00 CET to 23:30, notice Tue 1 Dec 2026 20:00 CET"), "{stdout}");
    let out = f.check(&f.example("improvement3-stability3.toml"), &[]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("notice 24h before") || stdout.contains("announced 24h before"), "24h, not 1d: {stdout}");
    assert!(stdout.contains("Sat 5 Dec 2026 21:00 CET"), "{stdout}");
}

/// Each broken variant: exit 64, and an `error:` line naming the problem with its fix.
#[track_caller]
fn refused(out: &Output, wanted: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error: ") && wanted.iter().all(|w| l.contains(w)));
    assert!(line.is_some(), "no one line with {wanted:?} in:\n{stderr}");
    assert!(stderr.lines().last().unwrap().contains("check-config --config"), "the last line says what to run next: {stderr}");
}

#[test]
fn each_broken_file_is_one_line_with_its_fix() {
    let f = Fixture::new();
    let config = f.example("improvement1-stability1.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let with = |from: &str, to: &str| {
        assert!(original.contains(from), "{from}");
        std::fs::write(&config, original.replace(from, to)).unwrap();
    };
    let root = f.w.path("repo/metadata/1.root.json").display().to_string();

    with(&root, "/nonexistent/root.json");
    refused(&f.check(&config, &[]), &["trusted_root /nonexistent/root.json does not exist", "metadata/1.root.json"]);

    std::fs::write(f.w.path("not-root.json"), "{\"signed\": {}}").unwrap();
    with(&root, &f.w.path("not-root.json").display().to_string());
    refused(&f.check(&config, &[]), &["is not a TUF root", "copy the repository's metadata/1.root.json"]);
    std::fs::write(&config, &original).unwrap();

    std::fs::remove_file(f.w.path("token")).unwrap();
    refused(&f.check(&config, &[]), &["token_file", "does not exist", "platform add"]);

    f.write_token(&format!("{}\n", f.token), 0o644);
    refused(&f.check(&config, &[]), &["can be read by group or others (mode 644)", "chmod 600"]);

    // The whole output of `platform add` pasted into the file.
    f.write_token(&format!("platform example registered\nits API token (shown once):\n{}\n", f.token), 0o600);
    refused(&f.check(&config, &[]), &["holds 3 lines", "put only the token (the last line of `palier-server platform add"]);

    f.write_token(&format!("{}\n", f.token), 0o600);
    let out = f.check(&config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn the_site_the_folders_and_the_hooks_are_checked() {
    let f = Fixture::new();
    let config = f.example("improvement1-stability1.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let set = |text: String| std::fs::write(&config, text).unwrap();
    let www = f.w.path("www/moodle").display().to_string();

    set(original.replace(&www, "/nonexistent/moodle"));
    refused(&f.check(&config, &[]), &["moodle.dirroot /nonexistent/moodle is not a folder", "version.php"]);

    std::fs::create_dir_all(f.w.path("empty")).unwrap();
    set(original.replace(&www, &f.w.path("empty").display().to_string()));
    refused(&f.check(&config, &[]), &["does not look like Moodle", "public/version.php (5.1+)"]);

    // Moodle 5.1's layout: the code under public/.
    std::fs::create_dir_all(f.w.path("m51/moodle/public")).unwrap();
    std::fs::copy(f.w.path("www/moodle/version.php"), f.w.path("m51/moodle/public/version.php")).unwrap();
    set(original.replace(&www, &f.w.path("m51/moodle").display().to_string()));
    let out = f.check(&config, &[]);
    assert_eq!(out.status.code(), Some(0), "5.1 layout: {}", text(&out.stderr));
    set(original.clone());

    // A read-only dirroot parent and state_dir, for the user the service runs as.
    std::fs::create_dir_all(f.w.path("state")).unwrap();
    chmod(&f.w.path("www"), 0o555);
    chmod(&f.w.path("state"), 0o555);
    let out = f.check(&config, &["--user", "nobody"]);
    chmod(&f.w.path("www"), 0o755);
    chmod(&f.w.path("state"), 0o755);
    refused(&out, &["(dirroot's parent) is not writable by nobody", "chown nobody"]);
    refused(&out, &["state_dir", "is not writable by nobody", "chown nobody"]);
    refused(&out, &["token_file", "only its owner read it, not nobody", "chown nobody"]);

    let guard = f.bin_dir.join("no-quiz-running").display().to_string();
    set(original.replace(&guard, "/nonexistent/no-quiz-running"));
    refused(&f.check(&config, &[]), &["hooks.guard: /nonexistent/no-quiz-running does not exist", "guard = [\"/path/to/program\""]);

    std::fs::write(f.w.path("not-exec"), "#!/bin/sh\n").unwrap();
    chmod(&f.w.path("not-exec"), 0o644);
    set(original.replace(&guard, &f.w.path("not-exec").display().to_string()));
    refused(&f.check(&config, &[]), &["hooks.guard", "is not executable"]);

    set(original.replace("[\"php\", \"{dirroot}/admin/cli/upgrade.php\"", "[\"php-not-installed\", \"{dirroot}/admin/cli/upgrade.php\""));
    refused(&f.check(&config, &[]), &["hooks.upgrade: php-not-installed is not found in PATH", "full path"]);
}

#[test]
fn slots_must_come_and_must_not_overlap() {
    let f = Fixture::new();
    let config = f.example("improvement2-stability2.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, original.replace("\"Thu 22:00-23:30\"", "\"Tue 23:00-23:59\"")).unwrap();
    refused(&f.check(&config, &[]), &["stability.windows: `Tue 22:00-23:30` and `Tue 23:00-23:59` overlap", "merge them"]);

    let config = f.example("improvement3-stability3.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let past = original.replace("calendar_file = \"maintenance.ics\"", "calendar = [\"2025-12-06T21:00/2025-12-07T01:00\"]");
    std::fs::write(&config, &past).unwrap();
    refused(&f.check(&config, &[]), &["stability.calendar: no slot after", "every slot is past", "add the coming maintenance slots"]);

    let overlapping = original.replace(
        "calendar_file = \"maintenance.ics\"",
        "calendar = [\"2026-12-12T21:00/2026-12-13T01:00\", \"2026-12-13T00:00/2026-12-13T02:00\"]",
    );
    std::fs::write(&config, overlapping).unwrap();
    refused(&f.check(&config, &[]), &["stability.calendar:", "overlap"]);
}

#[test]
fn online_verifies_the_repository_and_says_unreachable_or_not_found() {
    let f = Fixture::new();
    let config = f.example("improvement3-stability1.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    // No control plane here: the repository alone, read from the folder.
    let no_server = original.replace("server = \"http://127.0.0.1:8080\"\n", "").replace(&format!("token_file = \"{}\"\n", f.w.path("token").display()), "");
    let repo = format!("file://{}", f.w.path("repo").display());
    std::fs::write(&config, no_server.replace("http://127.0.0.1:8080/repo", &repo)).unwrap();
    let out = f.check(&config, &["--online"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    std::fs::write(&config, no_server.replace("http://127.0.0.1:8080/repo", &format!("{repo}/nothing-here"))).unwrap();
    refused(&f.check(&config, &["--online"]), &["not found", "metadata/"]);

    // Port 9 (discard) on loopback: nothing listens there.
    std::fs::write(&config, no_server.replace("http://127.0.0.1:8080/repo", "http://127.0.0.1:9/repo")).unwrap();
    let out = f.check(&config, &["--online"]);
    refused(&out, &["unreachable", "Connection refused", "is the server up"]);
    let line = text(&out.stderr).lines().find(|l| l.contains("unreachable")).unwrap().to_owned();
    assert_eq!(line.matches("127.0.0.1:9").count(), 1, "the address once, not three times: {line}");
}
