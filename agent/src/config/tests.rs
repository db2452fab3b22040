use super::*;

/// The example of SPEC section 5, as written there.
const SPEC_EXAMPLE: &str = r#"
platform = "univ-a"
repository = "http://127.0.0.1:8080/repo"   # or file:///srv/palier/repo
server = "http://127.0.0.1:8080"           # control plane; optional
token_file = "/etc/palier/token"           # optional
trusted_root = "/etc/palier/root.json"
state_dir = "/var/lib/palier"
timezone = "Europe/Paris"

[moodle]
dirroot = "/var/www/moodle"
dataroot = "/var/moodledata"
wwwroot = "http://127.0.0.1:8081"

[improvement]
level = 2
components = ["mod_quiz", "mod_assign"]
# level2_classes = ["technical", "non-layout"]   # default ["technical"]

[stability]
level = 2
windows = ["Tue 22:00-23:30", "Thu 22:00-23:30"]   # level 2, in `timezone`
notice = "2h"
low_load = ["12:00-14:00", "20:00-07:00"]          # level 1, optional
max_defer = "4h"                                   # level 1
calendar = ["2026-12-05T21:00/2026-12-06T01:00"]   # level 3 (or calendar_file = "x.ics")
watch = "15m"
recovery_budget = "5m"

[checks]
smoke = [
  { path = "/", expect_status = 200, expect_body = "page-site-index" },
  { path = "/login/index.php", expect_status = 200, expect_body = "logintoken" },
  { path = "/course/view.php?id=2", expect_status = 303 },
]

[hooks]   # argv arrays, never a shell string; placeholders {dirroot} {dataroot} {backup_dir} {minutes} {bundles}
maintenance_on  = ["php", "{dirroot}/admin/cli/maintenance.php", "--enable"]
maintenance_off = ["php", "{dirroot}/admin/cli/maintenance.php", "--disable"]
notice  = ["/usr/local/bin/moodle-notice", "{minutes}"]
backup  = ["/usr/local/sbin/moodle-backup", "{backup_dir}"]
restore = ["/usr/local/sbin/moodle-restore", "{backup_dir}"]
upgrade = ["php", "{dirroot}/admin/cli/upgrade.php", "--non-interactive"]
purge_caches = ["php", "{dirroot}/admin/cli/purge_caches.php"]
validate = ["php", "{dirroot}/admin/cli/checks.php"]   # level 3: run while still in maintenance; non-zero exit fails the intervention
guard   = ["/usr/local/bin/no-quiz-running"]   # non-zero exit: postpone, e.g. while quiz attempts are open
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/palier/agent.toml"))
}

fn refused(text: &str) -> String {
    let e = parse(text).unwrap_err().to_string();
    assert!(e.starts_with("invalid agent config /etc/palier/agent.toml: "), "{e}");
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

#[test]
fn spec_example_loads_and_reports_what_does_not_apply() {
    let c = parse(SPEC_EXAMPLE).unwrap();
    assert_eq!(c.platform.as_str(), "univ-a");
    assert_eq!(c.contract.improvement.level, Level::Two);
    assert_eq!(c.contract.stability.level, Level::Two);
    assert_eq!(c.contract.stability.windows.len(), 2);
    assert_eq!(c.contract.stability.notice.get(), SignedDuration::from_hours(2));
    assert_eq!(c.smoke_checks, default_smoke_checks());
    assert_eq!(c.moodle.keep_previous, DEFAULT_KEEP_PREVIOUS);
    assert_eq!(c.hooks.backup.as_ref().unwrap().timeout, DEFAULT_LONG_HOOK_TIMEOUT);
    assert_eq!(c.hooks.guard.as_ref().unwrap().timeout, DEFAULT_HOOK_TIMEOUT);
    let ignored = c.ignored.join("; ");
    for key in ["stability.low_load", "stability.max_defer", "stability.calendar"] {
        assert!(ignored.contains(key), "{key} not reported as ignored: {ignored}");
    }
}

#[test]
fn relative_paths_are_read_from_the_config_folder() {
    let text = SPEC_EXAMPLE.replace("\"/etc/palier/root.json\"", "\"root.json\"").replace("\"/var/lib/palier\"", "\"state\"");
    let c = parse(&text).unwrap();
    assert_eq!(c.trusted_root, Path::new("/etc/palier/root.json"));
    assert_eq!(c.state_dir, Path::new("/etc/palier/state"));
}

#[test]
fn each_bad_value_names_its_key() {
    let cases = [
        ("platform = \"univ-a\"", "platform = \"Univ A\"", "platform"),
        ("repository = \"http://127.0.0.1:8080/repo\"", "repository = \"ftp://x/repo\"", "repository"),
        ("timezone = \"Europe/Paris\"", "timezone = \"Mars/Olympus\"", "timezone"),
        ("wwwroot = \"http://127.0.0.1:8081\"", "wwwroot = \"not a url\"", "moodle.wwwroot"),
        ("[improvement]\nlevel = 2", "[improvement]\nlevel = 4", "improvement.level"),
        ("components = [\"mod_quiz\", \"mod_assign\"]", "components = [\"quiz\"]", "improvement.components"),
        ("components = [\"mod_quiz\", \"mod_assign\"]", "components = []", "improvement.components"),
        ("# level2_classes = [\"technical\", \"non-layout\"]", "level2_classes = [\"global\"]", "improvement.level2_classes"),
        ("[stability]\nlevel = 2", "[stability]\nlevel = 0", "stability.level"),
        ("windows = [\"Tue 22:00-23:30\", \"Thu 22:00-23:30\"]", "windows = [\"Tuesday at ten\"]", "stability.windows"),
        ("windows = [\"Tue 22:00-23:30\", \"Thu 22:00-23:30\"]", "windows = []", "stability.windows"),
        ("notice = \"2h\"", "notice = \"30m\"", "stability.notice"),
        ("watch = \"15m\"", "watch = \"soon\"", "stability.watch"),
        ("recovery_budget = \"5m\"", "recovery_budget = \"0s\"", "stability.recovery_budget"),
        ("calendar = [\"2026-12-05T21:00/2026-12-06T01:00\"]", "calendar = [\"next saturday\"]", "stability.calendar"),
        ("{ path = \"/\", expect_status = 200", "{ path = \"nope\", expect_status = 200", "checks.smoke[0]"),
        ("notice  = [\"/usr/local/bin/moodle-notice\", \"{minutes}\"]", "notice  = []", "hooks.notice"),
        ("notice  = [\"/usr/local/bin/moodle-notice\", \"{minutes}\"]", "notice  = [\"/usr/local/bin/moodle-notice\", \"{hours}\"]", "hooks.notice"),
        ("guard   = [\"/usr/local/bin/no-quiz-running\"]", "guard   = [\"/usr/local/bin/no-quiz-running --strict\"]", "hooks.guard"),
        ("guard   = [\"/usr/local/bin/no-quiz-running\"]", "guard   = [\"x\"]\nsurprise = [\"y\"]", "surprise"),
        ("state_dir = \"/var/lib/palier\"", "state_dir = \"/var/lib/palier\"\nsurprise = 1", "surprise"),
        ("token_file = \"/etc/palier/token\"", "token_file = 7", "token_file"),
        ("wwwroot = \"http://127.0.0.1:8081\"", "wwwroot = \"http://127.0.0.1:8081\"\nkeep_previous = 0", "moodle.keep_previous"),
        ("validate = [\"php\", \"{dirroot}/admin/cli/checks.php\"]", "validate = { argv = [\"php\"], ok_exit = [] }", "hooks.validate.ok_exit"),
        ("validate = [\"php\", \"{dirroot}/admin/cli/checks.php\"]", "validate = { argv = [\"php\"], ok_exit = [0, 256] }", "hooks.validate.ok_exit"),
        ("validate = [\"php\", \"{dirroot}/admin/cli/checks.php\"]", "validate = { argv = [\"php\"], ok_exit = \"1\" }", "hooks.validate.ok_exit"),
        ("validate = [\"php\", \"{dirroot}/admin/cli/checks.php\"]", "validate = { argv = [\"php\"], ok_exits = [0] }", "hooks.validate.ok_exits"),
        ("validate = [\"php\", \"{dirroot}/admin/cli/checks.php\"]", "validate = { ok_exit = [0] }", "hooks.validate.argv"),
        ("validate = [\"php\", \"{dirroot}/admin/cli/checks.php\"]", "validate = { argv = [\"php\", 1] }", "hooks.validate.argv"),
        ("validate = [\"php\", \"{dirroot}/admin/cli/checks.php\"]", "validate = { argv = [\"{hours}\"] }", "hooks.validate"),
        ("validate = [\"php\", \"{dirroot}/admin/cli/checks.php\"]", "validate = \"php checks.php\"", "hooks.validate"),
    ];
    for (from, to, key) in cases {
        assert!(SPEC_EXAMPLE.contains(from), "{from:?} is not in the example");
        let e = refused(&SPEC_EXAMPLE.replace(from, to));
        assert!(e.contains(key), "{to:?}: expected key {key:?} in {e}");
    }
}

#[test]
fn hooks_are_argv_arrays_or_tables_with_ok_exit() {
    let c = parse(&SPEC_EXAMPLE.replace(
        "validate = [\"php\", \"{dirroot}/admin/cli/checks.php\"]",
        "validate = { argv = [\"php\", \"{dirroot}/admin/cli/checks.php\"], ok_exit = [0, 1] }",
    ))
    .unwrap();
    let validate = c.hooks.validate.unwrap();
    assert_eq!(validate.argv, ["php", "{dirroot}/admin/cli/checks.php"]);
    assert_eq!(validate.ok_exit, [0, 1]);
    // The plain array form, and a table without ok_exit: 0 alone.
    assert_eq!(c.hooks.upgrade.unwrap().ok_exit, [0]);
    let c = parse(&SPEC_EXAMPLE.replace("guard   = [\"/usr/local/bin/no-quiz-running\"]", "guard = { argv = [\"/usr/local/bin/no-quiz-running\"] }")).unwrap();
    assert_eq!(c.hooks.guard.unwrap().ok_exit, [0]);
}

#[test]
fn a_level_refuses_a_config_missing_what_it_needs() {
    let no_notice = SPEC_EXAMPLE.replace("notice  = [\"/usr/local/bin/moodle-notice\", \"{minutes}\"]\n", "");
    assert!(refused(&no_notice).contains("hooks.notice"));
    let level3 = SPEC_EXAMPLE.replace("[stability]\nlevel = 2", "[stability]\nlevel = 3");
    parse(&level3).unwrap();
    let no_backup = level3.replace("backup  = [\"/usr/local/sbin/moodle-backup\", \"{backup_dir}\"]\n", "");
    assert!(refused(&no_backup).contains("hooks.backup"));
    let no_calendar = level3.replace("calendar = [\"2026-12-05T21:00/2026-12-06T01:00\"]", "");
    assert!(refused(&no_calendar).contains("stability.calendar"));
    let token_without_server = SPEC_EXAMPLE.replace("server = \"http://127.0.0.1:8080\"", "");
    assert!(refused(&token_without_server).contains("token_file"));
}

#[test]
fn a_missing_file_is_named() {
    let e = Config::load(Path::new("/nonexistent/agent.toml")).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/agent.toml"), "{e}");
}

#[test]
fn serde_jargon_becomes_the_key_s_expected_form() {
    let cases = [
        ("[improvement]\nlevel = 2", "[improvement]\nlevel = \"2\"", "[improvement] level: expected a number 1, 2 or 3, like `level = 2`; found string \"2\""),
        ("[stability]\nlevel = 2", "[stability]\nlevel = \"two\"", "[stability] level: expected a number 1, 2 or 3"),
        (
            "guard   = [\"/usr/local/bin/no-quiz-running\"]",
            "guard   = \"/usr/local/bin/no-quiz-running --strict\"",
            "expected an argv array like `guard = [\"/usr/local/bin/no-quiz-running\", \"--strict\"]` (never a shell string)",
        ),
        ("notice = \"2h\"", "notice = 2", "expected a duration in quotes, like `notice = \"2h\"`"),
        ("windows = [\"Tue 22:00-23:30\", \"Thu 22:00-23:30\"]", "windows = \"Tue 22:00-23:30\"", "expected a list of weekly windows, like `windows = [\"Tue 22:00-23:30\""),
        ("state_dir = \"/var/lib/palier\"", "state_dir = 3", "expected a string in quotes, like `state_dir = \"...\"`"),
    ];
    for (from, to, wanted) in cases {
        assert!(SPEC_EXAMPLE.contains(from), "{from:?} is not in the example");
        let e = refused(&SPEC_EXAMPLE.replace(from, to));
        assert!(e.contains(wanted), "{to:?}: expected {wanted:?} in {e}");
        assert!(!e.contains("expected i64") && !e.contains("expected a sequence"), "serde's words: {e}");
    }
}

#[test]
fn an_unknown_key_gets_a_did_you_mean() {
    let e = refused(&SPEC_EXAMPLE.replace("recovery_budget = \"5m\"", "recovery_budjet = \"5m\""));
    assert!(e.contains("unknown key `recovery_budjet`: did you mean `recovery_budget`?"), "{e}");
    let e = refused(&SPEC_EXAMPLE.replace("token_file = ", "tokenfile = "));
    assert!(e.contains("did you mean `token_file`?"), "{e}");
    let e = refused(&SPEC_EXAMPLE.replace("state_dir = \"/var/lib/palier\"", "state_dir = \"/var/lib/palier\"\nzzzz = 1"));
    assert!(e.contains("unknown key `zzzz`; the keys here are") && e.contains("state_dir"), "{e}");
}

#[test]
fn a_token_file_is_one_line_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let write = |text: &str, mode: u32| {
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("abc123\n", 0o600);
    assert_eq!(read_token(&path).unwrap(), "abc123");
    write("abc123\n", 0o640);
    let e = read_token(&path).unwrap_err().to_string();
    assert!(e.contains("can be read by group or others (mode 640)") && e.contains(&format!("`chmod 600 {}`", path.display())) && e.contains("chown"), "{e}");
    // The whole `platform add` output pasted.
    write("platform univ-a registered\nits token (shown once):\nabc123\n", 0o600);
    let e = read_token(&path).unwrap_err().to_string();
    assert!(e.contains("holds 3 lines; put only the token (the last line of `palier-server platform add NAME`)"), "{e}");
    write("\n", 0o600);
    assert!(read_token(&path).unwrap_err().to_string().contains("is empty"));
    write("Bearer abc123\n", 0o600);
    assert!(read_token(&path).unwrap_err().to_string().contains("spaces"));
}

#[test]
fn a_trusted_root_must_be_a_tuf_root() {
    assert!(parse_trusted_root(b"{\"signed\": {}}").is_err());
    assert!(parse_trusted_root(b"not json").is_err());
}

#[test]
fn the_reload_hook_and_the_opcache_delay() {
    let c = parse(SPEC_EXAMPLE).unwrap();
    assert!(c.hooks.reload.is_none());
    assert_eq!(c.opcache_revalidate, DEFAULT_OPCACHE_REVALIDATE);
    assert!(c.contract.stability.backup, "the example has a backup hook");
    let text = SPEC_EXAMPLE
        .replace("guard   = [", "reload = [\"systemctl\", \"reload\", \"php8.2-fpm\"]\nguard   = [")
        .replace("[checks]\n", "[checks]\nopcache_revalidate = \"0s\"\n");
    let c = parse(&text).unwrap();
    assert_eq!(c.hooks.reload.as_ref().unwrap().argv, ["systemctl", "reload", "php8.2-fpm"]);
    assert_eq!(c.opcache_revalidate, SignedDuration::ZERO);
    // Only opcache_revalidate in [checks]: the default smoke checks stay.
    let only = SPEC_EXAMPLE.split("[checks]").next().unwrap().to_owned() + "[checks]\nopcache_revalidate = \"5s\"\n" + &SPEC_EXAMPLE[SPEC_EXAMPLE.find("[hooks]").unwrap()..];
    let c = parse(&only).unwrap();
    assert_eq!((c.smoke_checks, c.opcache_revalidate), (default_smoke_checks(), SignedDuration::from_secs(5)));
    let e = refused(&text.replace("opcache_revalidate = \"0s\"", "opcache_revalidate = \"1h\""));
    assert!(e.contains("checks.opcache_revalidate"), "{e}");
}

#[test]
fn a_backup_hook_comes_with_restore_and_maintenance_and_tells_the_policy() {
    // Level 2 without a backup hook: database changes are never applied (the policy says
    // `backup-missing`).
    let none = SPEC_EXAMPLE.lines().filter(|l| !l.starts_with("backup") && !l.starts_with("restore")).collect::<Vec<_>>().join("\n");
    assert!(!parse(&none).unwrap().contract.stability.backup);
    for missing in ["restore", "maintenance_on", "maintenance_off"] {
        let text = SPEC_EXAMPLE.lines().filter(|l| !l.starts_with(missing)).collect::<Vec<_>>().join("\n");
        let e = refused(&text);
        assert!(e.contains(&format!("hooks.{missing}")) && e.contains("[hooks] backup is set"), "{e}");
    }
}

/// A zone read straight from the zoneinfo folder is the zone jiff's database gives, at
/// instants across its history; other spellings still go through jiff.
#[test]
fn time_zones_read_from_the_zoneinfo_folder_are_jiffs() {
    for name in ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Argentina/Buenos_Aires"] {
        let ours = time_zone(name).unwrap();
        let jiffs = TimeZone::get(name).unwrap();
        assert_eq!(ours.iana_name(), Some(name));
        for instant in ["1970-01-01T00:00:00Z", "2001-03-25T01:30:00Z", "2026-10-25T00:59:59Z", "2026-10-25T01:00:00Z", "2040-07-01T12:00:00Z"] {
            let t: jiff::Timestamp = instant.parse().unwrap();
            assert_eq!(ours.to_offset(t), jiffs.to_offset(t), "{name} at {instant}");
        }
    }
    assert_eq!(time_zone("europe/paris").unwrap().to_offset(jiff::Timestamp::UNIX_EPOCH), TimeZone::get("Europe/Paris").unwrap().to_offset(jiff::Timestamp::UNIX_EPOCH));
    assert_eq!(time_zone("UTC").unwrap(), TimeZone::UTC);
    // jiff's database leaves out the posix/ and right/ folders: so does this.
    for name in ["right/Europe/Paris", "posix/Europe/Paris"] {
        assert_eq!(time_zone(name).is_ok(), TimeZone::get(name).is_ok(), "{name}");
    }
    for bad in ["Mars/Olympus_Mons", "../etc/passwd", "Europe/../Europe/Paris", ""] {
        assert!(time_zone(bad).is_err(), "{bad:?}");
    }
}
