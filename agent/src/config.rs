//! The agent's config file (SPEC 5): TOML with unknown keys refused, every default in one
//! place, validated completely before anything starts. Every error names the file and the key.
//!
//! Relative paths in the file are read relative to the file's own folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use jiff::SignedDuration;
use jiff::tz::TimeZone;
use palier_policy::{Contract, Improvement, Level, Notice, Stability};
use palier_policy::schedule::{Calendar, DatedSlot, Window, parse_duration};
use palier_bundle::{ChangeClass, Check, Component, PlatformId};
use serde::Deserialize;
use url::Url;

/// A config that cannot be used: the file, the key, and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid agent config {}: {key}: {why}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub key: String,
    pub why: String,
}

/// Default timeout of a hook.
pub const DEFAULT_HOOK_TIMEOUT: SignedDuration = SignedDuration::from_mins(15);
/// Default timeout of the backup, restore and upgrade hooks, which walk the whole site.
pub const DEFAULT_LONG_HOOK_TIMEOUT: SignedDuration = SignedDuration::from_hours(4);
/// The placeholders a hook argument may use.
pub const PLACEHOLDERS: [&str; 5] = ["dirroot", "dataroot", "backup_dir", "minutes", "bundles"];

/// The smoke checks used when the config names none: home page, login page, course access.
pub fn default_smoke_checks() -> Vec<Check> {
    vec![
        Check { path: "/".into(), expect_status: 200, expect_body: Some("page-site-index".into()) },
        Check { path: "/login/index.php".into(), expect_status: 200, expect_body: Some("logintoken".into()) },
        Check { path: "/course/view.php?id=2".into(), expect_status: 303, expect_body: None },
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    platform: String,
    repository: String,
    server: Option<String>,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    trusted_root: PathBuf,
    state_dir: PathBuf,
    timezone: String,
    moodle: RawMoodle,
    improvement: RawImprovement,
    stability: RawStability,
    #[serde(default)]
    checks: Option<RawChecks>,
    #[serde(default)]
    hooks: RawHooks,
    #[serde(default)]
    retention: RawRetention,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    max_age: Option<String>,
    backups: Option<i64>,
    downloads: Option<i64>,
    receipts: Option<i64>,
    rejected: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMoodle {
    dirroot: PathBuf,
    dataroot: PathBuf,
    wwwroot: String,
    keep_previous: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImprovement {
    level: i64,
    #[serde(default)]
    components: Vec<String>,
    level2_classes: Option<Vec<ChangeClass>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStability {
    level: i64,
    #[serde(default)]
    windows: Vec<String>,
    notice: Option<String>,
    #[serde(default)]
    low_load: Vec<String>,
    max_defer: Option<String>,
    #[serde(default)]
    calendar: Vec<String>,
    calendar_file: Option<PathBuf>,
    watch: Option<String>,
    recovery_budget: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChecks {
    smoke: Option<Vec<Check>>,
    opcache_revalidate: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    maintenance_on: Option<RawHook>,
    maintenance_off: Option<RawHook>,
    notice: Option<RawHook>,
    backup: Option<RawHook>,
    restore: Option<RawHook>,
    upgrade: Option<RawHook>,
    purge_caches: Option<RawHook>,
    validate: Option<RawHook>,
    guard: Option<RawHook>,
    reload: Option<RawHook>,
    timeout: Option<String>,
    long_timeout: Option<String>,
}

/// A hook as written: a plain argv array `["php", "x.php"]`, or a table
/// `{ argv = [...], ok_exit = [0, 1] }` that also says which exit codes count as success
/// (default `[0]`). Read by hand from the TOML value so that every error names its key.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct RawHook(toml::Value);

impl RawHook {
    /// (argv, ok_exit), or why not, for the hook at `key`.
    fn read(&self, key: &str) -> Result<(Vec<String>, Vec<i32>), KeyError> {
        let strings = |v: &toml::Value, key: &str| -> Result<Vec<String>, KeyError> {
            let bad = || (key.to_owned(), "expected an argv array of strings, e.g. [\"php\", \"{dirroot}/admin/cli/checks.php\"]".to_owned());
            v.as_array().ok_or_else(bad)?.iter().map(|a| a.as_str().map(str::to_owned).ok_or_else(bad)).collect()
        };
        match &self.0 {
            toml::Value::Table(t) => {
                if let Some(other) = t.keys().find(|k| !matches!(k.as_str(), "argv" | "ok_exit")) {
                    return Err((format!("{key}.{other}"), "unknown key; a hook table has argv and ok_exit".into()));
                }
                let argv = t.get("argv").ok_or_else(|| (format!("{key}.argv"), "missing: the program and its arguments".into()))?;
                let argv = strings(argv, &format!("{key}.argv"))?;
                let ok_key = format!("{key}.ok_exit");
                let ok_exit = match t.get("ok_exit") {
                    None => vec![0],
                    Some(v) => {
                        let codes: Option<Vec<i32>> = v
                            .as_array()
                            .and_then(|a| a.iter().map(|c| c.as_integer().filter(|c| (0..=255).contains(c)).map(|c| c as i32)).collect());
                        match codes {
                            Some(c) if !c.is_empty() => c,
                            _ => return Err((ok_key, format!("{v}: list the exit codes (0 to 255) that count as success, e.g. [0, 1]"))),
                        }
                    }
                };
                Ok((argv, ok_exit))
            }
            toml::Value::String(shell) => {
                let name = key.rsplit('.').next().unwrap_or(key);
                let words: Vec<String> = shell.split_whitespace().map(|w| format!("{w:?}")).collect();
                Err((key.to_owned(), format!("expected an argv array like `{name} = [{}]` (never a shell string), or a table {{ argv = [...], ok_exit = [0] }}", words.join(", "))))
            }
            v => Ok((strings(v, key)?, vec![0])),
        }
    }
}

/// PHP's default `opcache.revalidate_freq`: 2 seconds.
pub const DEFAULT_OPCACHE_REVALIDATE: SignedDuration = SignedDuration::from_secs(2);

/// Previous code trees kept for rollback unless `[moodle] keep_previous` says otherwise.
pub const DEFAULT_KEEP_PREVIOUS: usize = 2;

/// The Moodle site the agent looks after.
#[derive(Debug, Clone)]
pub struct Moodle {
    pub dirroot: PathBuf,
    pub dataroot: PathBuf,
    pub wwwroot: Url,
    /// Previous code trees kept beside dirroot for rollback (1 to 10).
    pub keep_previous: usize,
}

/// What the end of each cycle keeps in `state_dir` (`[retention]`): of each kind, at most
/// the newest `count`, and of those none older than `max_age`, except the newest backup and
/// the backup the last intervention may still need for a rollback, which are always kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub max_age: SignedDuration,
    pub backups: usize,
    pub downloads: usize,
    pub receipts: usize,
    pub rejected: usize,
}

impl Default for Retention {
    /// 30 days; 3 backups, 10 downloads, 1,000 receipts, 100 rejected receipts.
    fn default() -> Retention {
        Retention { max_age: SignedDuration::from_hours(30 * 24), backups: 3, downloads: 10, receipts: 1000, rejected: 100 }
    }
}

fn retention(raw: &RawRetention) -> Result<Retention, (String, String)> {
    let d = Retention::default();
    let count = |key: &str, v: Option<i64>, default: usize| match v {
        None => Ok(default),
        Some(n @ 1..=100_000) => Ok(n as usize),
        Some(n) => Err((format!("retention.{key}"), format!("{n}: keep 1 to 100000"))),
    };
    let max_age = match &raw.max_age {
        None => d.max_age,
        Some(s) => palier_policy::schedule::parse_duration(s).map_err(|e| ("retention.max_age".to_owned(), format!("{s:?}: {e}; for example \"30d\"")))?,
    };
    Ok(Retention {
        max_age,
        backups: count("backups", raw.backups, d.backups)?,
        downloads: count("downloads", raw.downloads, d.downloads)?,
        receipts: count("receipts", raw.receipts, d.receipts)?,
        rejected: count("rejected", raw.rejected, d.rejected)?,
    })
}

/// A hook: an argv array (never a shell string) with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub argv: Vec<String>,
    pub timeout: SignedDuration,
    /// Exit codes that count as success: `[0]` unless the config says `ok_exit`
    /// (`php admin/cli/checks.php` exits 1 for a WARNING, 2 for CRITICAL, 3 for UNKNOWN).
    pub ok_exit: Vec<i32>,
}

/// The hooks of SPEC 5; each is optional unless the stability level needs it.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub maintenance_on: Option<Hook>,
    pub maintenance_off: Option<Hook>,
    pub notice: Option<Hook>,
    pub backup: Option<Hook>,
    pub restore: Option<Hook>,
    pub upgrade: Option<Hook>,
    pub purge_caches: Option<Hook>,
    pub validate: Option<Hook>,
    pub guard: Option<Hook>,
    /// Makes the web server's PHP run the code now on disk (`systemctl reload php8.2-fpm`):
    /// after every swap and every swap back, before the checks. Without it, PHP's opcode
    /// cache may serve the old code for up to `opcache.revalidate_freq` seconds (or until
    /// its next restart with `opcache.validate_timestamps=0`).
    pub reload: Option<Hook>,
}

/// A validated agent config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub platform: PlatformId,
    pub repository: Url,
    pub server: Option<Url>,
    pub token_file: Option<PathBuf>,
    /// PEM certificates trusted, in addition to the system's, for `https://` to the
    /// repository and the server (a private CA, or a test certificate).
    pub ca_file: Option<PathBuf>,
    pub trusted_root: PathBuf,
    pub state_dir: PathBuf,
    pub timezone_name: String,
    pub contract: Contract,
    pub moodle: Moodle,
    pub smoke_checks: Vec<Check>,
    /// PHP's `opcache.revalidate_freq` on this host (`[checks] opcache_revalidate`): without
    /// a `reload` hook, the checks after a swap are run a second time this long plus one
    /// second later, when PHP has seen the new files, and only that round counts for the
    /// bundles' own checks.
    pub opcache_revalidate: SignedDuration,
    pub hooks: Hooks,
    /// Keys that are set but do not apply at the configured levels (the agent warns, and
    /// ignores them, so one file can carry every level's settings as SPEC 5's example does).
    pub ignored: Vec<String>,
    /// What is kept of backups, downloads and receipts.
    pub retention: Retention,
}

impl Config {
    /// Read and validate the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError { path: path.into(), key: "(file)".into(), why: e.to_string() })?;
        Config::parse(&text, path)
    }

    /// Validate config `text`, read from `path` (used in errors and to resolve relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let err = |key: &str, why: String| ConfigError { path: path.into(), key: key.into(), why };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (key, why) = toml_error(text, &e);
            err(&key, why)
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };

        let platform = PlatformId::new(&raw.platform).map_err(|e| err("platform", e.to_string()))?;
        let repository = parse_url(&raw.repository, &["http", "https", "file"]).map_err(|why| err("repository", why))?;
        let server = raw.server.as_deref().map(|s| parse_url(s, &["http", "https"])).transpose().map_err(|why| err("server", why))?;
        if raw.token_file.is_some() && server.is_none() {
            return Err(err("token_file", "set, but there is no `server` to send it to".into()));
        }
        let timezone = time_zone(&raw.timezone).map_err(|e| err("timezone", format!("{:?} is not a known IANA time zone: {e}", raw.timezone)))?;
        let wwwroot = parse_url(&raw.moodle.wwwroot, &["http", "https"]).map_err(|why| err("moodle.wwwroot", why))?;
        let keep_previous = match raw.moodle.keep_previous {
            None => DEFAULT_KEEP_PREVIOUS,
            Some(n @ 1..=10) => n as usize,
            Some(n) => return Err(err("moodle.keep_previous", format!("{n}: keep 1 to 10 previous trees (a rollback needs at least one)"))),
        };

        let mut ignored = Vec::new();
        let improvement = improvement(&raw.improvement, &mut ignored).map_err(|(key, why)| err(&key, why))?;
        let stability = stability(&raw.stability, &timezone, &resolve, &mut ignored).map_err(|(key, why)| err(&key, why))?;

        let (smoke, opcache) = raw.checks.map(|c| (c.smoke, c.opcache_revalidate)).unwrap_or_default();
        let smoke_checks = match smoke {
            None => default_smoke_checks(),
            Some(smoke) => {
                for (i, check) in smoke.iter().enumerate() {
                    check.validate().map_err(|e| err(&format!("checks.smoke[{i}]"), e.to_string()))?;
                }
                smoke
            }
        };
        let opcache_revalidate = match &opcache {
            None => DEFAULT_OPCACHE_REVALIDATE,
            Some(v) => parse_duration(v)
                .ok()
                .filter(|d| !d.is_negative() && *d <= SignedDuration::from_mins(10))
                .ok_or_else(|| err("checks.opcache_revalidate", format!("{v:?}: PHP's opcache.revalidate_freq as a duration from \"0s\" to \"10m\", e.g. \"2s\"")))?,
        };
        let hooks = hooks(&raw.hooks).map_err(|(key, why)| err(&key, why))?;
        // A backup is taken for a database change at every level: it runs in maintenance
        // mode, and a rollback restores it.
        if hooks.backup.is_some() {
            let why = "a backup hook protects database changes at every stability level: they run in maintenance mode, and a rollback restores the backup";
            for (name, hook) in [("restore", &hooks.restore), ("maintenance_on", &hooks.maintenance_on), ("maintenance_off", &hooks.maintenance_off)] {
                if hook.is_none() {
                    return Err(err(&format!("hooks.{name}"), format!("missing, and [hooks] backup is set: {why}")));
                }
            }
        }
        let retention = retention(&raw.retention).map_err(|(key, why)| err(&key, why))?;
        let needs = |hook: &Option<Hook>, name: &str, level: u8, why: &str| match hook {
            Some(_) => Ok(()),
            None => Err(err(&format!("hooks.{name}"), format!("stability level {level} needs it: {why}"))),
        };
        match stability.level {
            Level::One => {}
            Level::Two => needs(&hooks.notice, "notice", 2, "no notice in time means no apply")?,
            Level::Three => {
                needs(&hooks.maintenance_on, "maintenance_on", 3, "interventions run in full maintenance mode")?;
                needs(&hooks.maintenance_off, "maintenance_off", 3, "interventions run in full maintenance mode")?;
                needs(&hooks.backup, "backup", 3, "a full backup must succeed before anything changes")?;
                needs(&hooks.restore, "restore", 3, "a rollback restores the backup when the bundle changed data")?;
            }
        }

        Ok(Config {
            path: path.into(),
            platform: platform.clone(),
            repository,
            server,
            token_file: raw.token_file.as_deref().map(resolve),
            ca_file: raw.ca_file.as_deref().map(resolve),
            trusted_root: resolve(&raw.trusted_root),
            state_dir: resolve(&raw.state_dir),
            timezone_name: raw.timezone,
            contract: Contract { platform, timezone, improvement, stability: Stability { backup: hooks.backup.is_some(), ..stability } },
            moodle: Moodle { dirroot: resolve(&raw.moodle.dirroot), dataroot: resolve(&raw.moodle.dataroot), wwwroot, keep_previous },
            smoke_checks,
            opcache_revalidate,
            hooks,
            ignored,
            retention,
        })
    }
}

type KeyError = (String, String);

fn improvement(raw: &RawImprovement, ignored: &mut Vec<String>) -> Result<Improvement, KeyError> {
    let level = Level::new(raw.level).map_err(|e| ("improvement.level".to_owned(), e.to_string()))?;
    let mut components = BTreeSet::new();
    for c in &raw.components {
        let c = Component::new(c).map_err(|e| ("improvement.components".to_owned(), e.to_string()))?;
        if !components.insert(c.clone()) {
            return Err(("improvement.components".into(), format!("{c} listed twice")));
        }
    }
    if level == Level::Two && components.is_empty() {
        return Err(("improvement.components".into(), "improvement level 2 needs the components named in the contract".into()));
    }
    let mut imp = Improvement::new(level);
    if level == Level::Two {
        imp = imp.with_components(components);
        if let Some(classes) = &raw.level2_classes {
            imp = imp.with_level2_classes(classes.iter().copied()).map_err(|e| ("improvement.level2_classes".to_owned(), e.to_string()))?;
        }
    } else {
        if !components.is_empty() {
            ignored.push(format!("improvement.components (improvement level {level} selects no components)"));
        }
        if raw.level2_classes.is_some() {
            ignored.push(format!("improvement.level2_classes (this is improvement level {level})"));
        }
    }
    Ok(imp)
}

fn duration(key: &str, value: &Option<String>, default: SignedDuration) -> Result<SignedDuration, KeyError> {
    match value {
        None => Ok(default),
        Some(v) => {
            let d = parse_duration(v).map_err(|e| (key.to_owned(), e.to_string()))?;
            if d.is_negative() || d.is_zero() {
                return Err((key.to_owned(), format!("{v:?} must be longer than zero")));
            }
            Ok(d)
        }
    }
}

fn stability(raw: &RawStability, zone: &TimeZone, resolve: &dyn Fn(&Path) -> PathBuf, ignored: &mut Vec<String>) -> Result<Stability, KeyError> {
    let level = Level::new(raw.level).map_err(|e| ("stability.level".to_owned(), e.to_string()))?;
    let mut s = Stability::new(level);
    // Every key is still validated; one that does not apply at this level is then ignored.
    let mut only = |key: &str, set: bool, wanted: &[Level]| {
        if set && !wanted.contains(&level) {
            ignored.push(format!("stability.{key} (it applies to stability level {}, this is level {level})", wanted.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(" and ")));
        }
    };
    only("windows", !raw.windows.is_empty(), &[Level::Two]);
    only("low_load", !raw.low_load.is_empty(), &[Level::One]);
    only("max_defer", raw.max_defer.is_some(), &[Level::One]);
    only("calendar", !raw.calendar.is_empty(), &[Level::Three]);
    only("calendar_file", raw.calendar_file.is_some(), &[Level::Three]);
    only("notice", raw.notice.is_some(), &[Level::Two, Level::Three]);
    let windows = |key: &str, list: &[String]| -> Result<Vec<Window>, KeyError> {
        list.iter().map(|w| Window::parse(w).map_err(|e| (format!("stability.{key}"), e.to_string()))).collect()
    };
    s.windows = windows("windows", &raw.windows)?;
    s.low_load = windows("low_load", &raw.low_load)?;
    if let Some(n) = &raw.notice {
        s.notice = Notice::parse(n).map_err(|e| ("stability.notice".to_owned(), e.to_string()))?;
    }
    s.max_defer = duration("stability.max_defer", &raw.max_defer, s.max_defer)?;
    s.watch = duration("stability.watch", &raw.watch, s.watch)?;
    s.recovery_budget = duration("stability.recovery_budget", &raw.recovery_budget, s.recovery_budget)?;
    let slots: Vec<DatedSlot> =
        raw.calendar.iter().map(|c| DatedSlot::parse(c).map_err(|e| ("stability.calendar".to_owned(), e.to_string()))).collect::<Result<_, _>>()?;
    let mut calendar = Calendar::from_slots(slots);
    if let Some(file) = &raw.calendar_file {
        let file = resolve(file);
        let text = std::fs::read_to_string(&file).map_err(|e| ("stability.calendar_file".to_owned(), format!("cannot read {}: {e}", file.display())))?;
        calendar = Calendar::parse_ics(&text, zone, jiff::tz::db())
            .map_err(|e| ("stability.calendar_file".to_owned(), format!("{}: {e}", file.display())))?
            .with_slots(calendar.slots().to_vec());
    }
    s.calendar = calendar;
    match level {
        Level::Two if s.windows.is_empty() => Err(("stability.windows".into(), "stability level 2 needs at least one negotiated window".into())),
        Level::Three if s.calendar.is_empty() => {
            Err(("stability.calendar".into(), "stability level 3 needs a maintenance calendar (calendar or calendar_file)".into()))
        }
        _ => Ok(s),
    }
}

fn hooks(raw: &RawHooks) -> Result<Hooks, KeyError> {
    let timeout = duration("hooks.timeout", &raw.timeout, DEFAULT_HOOK_TIMEOUT)?;
    let long = duration("hooks.long_timeout", &raw.long_timeout, DEFAULT_LONG_HOOK_TIMEOUT)?;
    let hook = |name: &str, raw: &Option<RawHook>, timeout: SignedDuration| -> Result<Option<Hook>, KeyError> {
        let key = format!("hooks.{name}");
        let Some(raw) = raw else { return Ok(None) };
        let (argv, ok_exit) = raw.read(&key)?;
        let argv = &argv;
        if argv.is_empty() || argv[0].trim().is_empty() {
            return Err((key, "an argv array needs at least the program".into()));
        }
        if argv.len() == 1 && argv[0].contains(' ') && !Path::new(&argv[0]).exists() {
            return Err((key, format!("{:?} looks like a shell string; hooks are argv arrays, e.g. [\"php\", \"admin/cli/x.php\"]", argv[0])));
        }
        for arg in argv {
            check_placeholders(arg).map_err(|why| (key.clone(), why))?;
        }
        Ok(Some(Hook { argv: argv.clone(), timeout, ok_exit }))
    };
    Ok(Hooks {
        maintenance_on: hook("maintenance_on", &raw.maintenance_on, timeout)?,
        maintenance_off: hook("maintenance_off", &raw.maintenance_off, timeout)?,
        notice: hook("notice", &raw.notice, timeout)?,
        backup: hook("backup", &raw.backup, long)?,
        restore: hook("restore", &raw.restore, long)?,
        upgrade: hook("upgrade", &raw.upgrade, long)?,
        purge_caches: hook("purge_caches", &raw.purge_caches, timeout)?,
        validate: hook("validate", &raw.validate, timeout)?,
        guard: hook("guard", &raw.guard, timeout)?,
        reload: hook("reload", &raw.reload, timeout)?,
    })
}

fn check_placeholders(arg: &str) -> Result<(), String> {
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after.find('}').ok_or_else(|| format!("unclosed {{ in {arg:?}"))?;
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!("unknown placeholder {{{name}}} in {arg:?}; known: {}", PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

fn parse_url(s: &str, schemes: &[&str]) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!("{s:?}: scheme must be one of {}", schemes.join(", ")));
    }
    Ok(url)
}

/// The key a TOML error is about, when the parser says, and its message on one line, with
/// serde's words (`invalid type: string "2", expected i64`) put as what the key expects.
fn toml_error(text: &str, e: &toml::de::Error) -> (String, String) {
    let at = palier_bundle::error::TomlErrorAt::new(text, e);
    let Some((line, line_text)) = at.line else { return ("(file)".into(), translate(None, "", &at.message)) };
    // The table the line is in: the last `[header]` above it.
    let section = text.lines().take(line).filter_map(|l| {
        let l = l.split('#').next().unwrap_or("").trim();
        (l.starts_with('[') && !l.starts_with("[[")).then(|| l.trim_matches(['[', ']']).trim().to_owned())
    }).last();
    let name = line_text.split('=').next().unwrap_or("").trim();
    let key = if name.is_empty() || name.starts_with('[') { format!("line {line}") } else { format!("{name} (line {line})") };
    let named = (!name.is_empty() && !name.starts_with('[')).then_some(name);
    (key, translate(section.as_deref().filter(|_| named.is_some()), named.unwrap_or(""), &at.message))
}

/// What a key expects, in the words of the config and with an example.
fn expected_form(section: Option<&str>, name: &str) -> Option<String> {
    let hook_example = match name {
        "maintenance_on" | "maintenance_off" => "[\"php\", \"{dirroot}/admin/cli/maintenance.php\", \"--enable\"]",
        "upgrade" => "[\"php\", \"{dirroot}/admin/cli/upgrade.php\", \"--non-interactive\"]",
        "purge_caches" => "[\"php\", \"{dirroot}/admin/cli/purge_caches.php\"]",
        "validate" => "[\"php\", \"{dirroot}/admin/cli/checks.php\"]",
        "reload" => "[\"systemctl\", \"reload\", \"php8.2-fpm\"]",
        "backup" | "restore" => "[\"/usr/local/sbin/moodle-backup\", \"{backup_dir}\"]",
        _ => "[\"/usr/local/bin/no-quiz-running\", \"--strict\"]",
    };
    Some(match (section.unwrap_or(""), name) {
        ("improvement" | "stability", "level") => format!("[{}] level: expected a number 1, 2 or 3, like `level = 2`", section.unwrap_or("")),
        ("moodle", "keep_previous") => "expected a number from 1 to 10, like `keep_previous = 2`".into(),
        ("hooks", "timeout" | "long_timeout") | ("stability", "notice" | "watch" | "recovery_budget" | "max_defer") => {
            format!("expected a duration in quotes, like `{name} = \"2h\"` (units d, h, m, s: `1h30m`)")
        }
        ("hooks", _) => format!("expected an argv array like `{name} = {hook_example}` (never a shell string)"),
        ("improvement", "components") => "expected a list of Moodle components, like `components = [\"mod_quiz\", \"theme_boost\"]`".into(),
        ("improvement", "level2_classes") => "expected a list of classes, like `level2_classes = [\"technical\", \"non-layout\"]`".into(),
        ("stability", "windows" | "low_load") => format!("expected a list of weekly windows, like `{name} = [\"Tue 22:00-23:30\", \"Sat,Sun 08:00-10:00\"]`"),
        ("stability", "calendar") => "expected a list of dated slots, like `calendar = [\"2026-12-05T21:00/2026-12-06T01:00\"]`".into(),
        ("checks", "opcache_revalidate") => "expected a duration in quotes, like `opcache_revalidate = \"2s\"`".into(),
        ("checks", "smoke") => "expected a list of checks, like `smoke = [{ path = \"/\", expect_status = 200 }]`".into(),
        ("", "platform" | "repository" | "server" | "token_file" | "ca_file" | "trusted_root" | "state_dir" | "timezone" | "calendar_file")
        | ("moodle", "dirroot" | "dataroot" | "wwwroot")
        | ("stability", "calendar_file") => format!("expected a string in quotes, like `{name} = \"...\"`"),
        _ => return None,
    })
}

/// serde's message as the config's reader would say it.
fn translate(section: Option<&str>, name: &str, message: &str) -> String {
    if let Some(unknown) = palier_bundle::error::unknown_key(message) {
        return unknown;
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let place = section.map(|s| format!(" in [{s}]")).unwrap_or_default();
        return format!("missing key `{field}`{place} (docs/agent-config.md lists every key)");
    }
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        let got = message.split(',').next().unwrap_or(message).trim_start_matches("invalid type: ").trim_start_matches("invalid value: ");
        if let Some(form) = expected_form(section, name) {
            return format!("{form}; found {got}");
        }
    }
    message.to_owned()
}

/// Whether `bytes` is a TUF root (the file `trusted_root` names); why not, in one line.
pub fn parse_trusted_root(bytes: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<tough::schema::Signed<tough::schema::Root>>(bytes).map(|_| ()).map_err(|e| e.to_string())
}

/// What is wrong with a token file, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}; {fix}")]
pub struct TokenError {
    pub what: String,
    pub fix: String,
}

/// The platform's API token from `path`: one line, the file readable by its owner only.
pub fn read_token(path: &Path) -> Result<String, TokenError> {
    use std::os::unix::fs::PermissionsExt;
    let put = "put only the token there (the last line of `palier-server platform add NAME`)";
    let text = std::fs::read_to_string(path).map_err(|e| TokenError { what: format!("cannot read token file {}: {e}", path.display()), fix: put.into() })?;
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
    if mode & 0o077 != 0 {
        return Err(TokenError {
            what: format!("token file {} can be read by group or others (mode {mode:o})", path.display()),
            fix: format!("`chmod 600 {0}` and `chown USER {0}` to the user the agent runs as", path.display()),
        });
    }
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match lines.as_slice() {
        [token] if token.bytes().all(|b| b.is_ascii_graphic()) => Ok((*token).to_owned()),
        [] => Err(TokenError { what: format!("token file {} is empty", path.display()), fix: put.into() }),
        [_] => Err(TokenError { what: format!("token file {} holds spaces or characters a token never has", path.display()), fix: put.into() }),
        many => Err(TokenError {
            what: format!("token file {} holds {} lines", path.display(), many.len()),
            fix: "put only the token (the last line of `palier-server platform add NAME`)".into(),
        }),
    }
}

/// The IANA time zone `name` (`Europe/Paris`), read straight from the system's zoneinfo
/// folder (`TZDIR`, or the first of jiff's usual folders that exists) when it holds that
/// very file, the file jiff would read; any other name (another case, `UTC`, a folder
/// without it) is looked up by jiff. jiff's database lists every zone of the folder at its
/// first use, about 1 ms of each start of the agent, which a rollback or a plan need not wait for.
pub fn time_zone(name: &str) -> Result<TimeZone, jiff::Error> {
    let plain = name.contains('/')
        && !name.starts_with("posix/")
        && !name.starts_with("right/")
        && name.split('/').all(|part| !part.is_empty() && !part.starts_with('.') && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-+".contains(&b)));
    if plain {
        let folder = std::env::var_os("TZDIR").map(PathBuf::from).or_else(|| {
            ["/usr/share/zoneinfo", "/usr/share/lib/zoneinfo", "/etc/zoneinfo"].into_iter().map(PathBuf::from).find(|p| p.is_dir())
        });
        if let Some(bytes) = folder.and_then(|f| std::fs::read(f.join(name)).ok())
            && let Ok(zone) = TimeZone::tzif(name, &bytes)
        {
            return Ok(zone);
        }
    }
    TimeZone::get(name)
}

#[cfg(test)]
mod tests;
