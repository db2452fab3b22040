//! `palier-agent check-config`: everything the agent will need, checked before it is needed.
//!
//! The config is parsed and validated as every command does; then the files it names (the
//! trusted root, the token), the Moodle site (either code layout), the folders the agent
//! writes (dirroot's parent, state_dir), the hook programs (through PATH, as they are
//! started), and the windows or calendar (future slots, no overlap). `--online` fetches and
//! verifies the repository and shows the token to the server. It prints the contract in plain
//! words with the next slot and notice, and each problem as one line with its fix; it exits 0
//! only when nothing was found.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Parser;
use jiff::{SignedDuration, Timestamp};
use palier_policy::Level;
use palier_policy::schedule::{self, Slot, SlotSource};

use super::contract;
use crate::config::{self, Config, ConfigError, Hook};
use crate::error::Result;

#[derive(Debug, Parser)]
pub struct Args {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Also fetch and verify the repository, and show the token to the server.
    #[arg(long)]
    online: bool,
    /// Check as if the clock said this: a local date-time in the platform's time zone
    /// (`2026-12-01T22:00` or `2026-12-01 22:00`) or RFC 3339; default: now.
    #[arg(long, value_name = "DATETIME")]
    now: Option<String>,
    /// The user the service runs as (`User=` of its unit), whose access to the folders and
    /// the token is checked; default: the user running this command.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
}

/// Something that would not work, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.what, self.fix)
    }
}

fn problem(what: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem { what: what.into(), fix: fix.into() }
}

impl Args {
    pub async fn run(self) -> Result<()> {
        let c = super::load_config(&self.config)?;
        let now = super::now(self.now.as_deref(), &c)?;
        let who = match &self.user {
            Some(name) => User::named(name).ok_or_else(|| crate::error::Error::Refused(format!("--user {name}: no such user in /etc/passwd; give the `User=` of the agent's unit")))?,
            None => User::current(),
        };
        if who.uid == 0 {
            tracing::warn!("checking as root, which may write everywhere: add `--user www-data` (the `User=` of the agent's unit) to check that user's access");
        }
        let mut problems = offline(&c, now, &who);
        if self.online {
            problems.extend(online(&c).await);
        }
        println!("{}: platform {}", c.path.display(), c.platform);
        println!("  which fixes:  {}.", contract::improvement(&c));
        println!("  when and how: {}", contract::stability(&c));
        match contract::next_slot(&c, now) {
            Some((slot, notice)) => {
                let end = slot.end.strftime("%H:%M");
                match notice {
                    Some(n) => println!("  next slot:    {} to {end}, notice {}", contract::local(slot.start.timestamp(), &c), contract::local(n, &c)),
                    None => println!("  next slot:    {} to {end}", contract::local(slot.start.timestamp(), &c)),
                }
            }
            None if c.contract.stability.level == Level::One => println!("  next slot:    any time (no low-load slot set)"),
            None => {}
        }
        if problems.is_empty() {
            println!("ok: {}", if self.online { "everything checked, the repository and the server included" } else { "everything checked (add --online to try the repository and the server)" });
            return Ok(());
        }
        for p in &problems {
            eprintln!("error: {p}");
        }
        let n = problems.len();
        Err(ConfigError {
            path: c.path.clone(),
            key: format!("{n} problem{} above", if n == 1 { "" } else { "s" }),
            why: format!("fix {}, then run `palier-agent check-config --config {}` again", if n == 1 { "it" } else { "them" }, c.path.display()),
        }
        .into())
    }
}

/// The user whose access is checked: name, uid and groups, from /etc/passwd and /etc/group.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gids: Vec<u32>,
}

impl User {
    /// The user running this process.
    pub fn current() -> User {
        let uid = rustix::process::geteuid().as_raw();
        let name = crate::lock::user_name(uid);
        let mut gids: Vec<u32> = rustix::process::getgroups().unwrap_or_default().iter().map(|g| g.as_raw()).collect();
        gids.push(rustix::process::getegid().as_raw());
        User { name: name.unwrap_or_else(|| uid.to_string()), uid, gids }
    }

    /// A user by name, with the groups /etc/group gives it.
    pub fn named(name: &str) -> Option<User> {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        let f: Vec<&str> = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() > 3 && f[0] == name)?;
        let (uid, gid) = (f[2].parse().ok()?, f[3].parse().ok()?);
        let mut gids = vec![gid];
        for l in std::fs::read_to_string("/etc/group").unwrap_or_default().lines() {
            let g: Vec<&str> = l.split(':').collect();
            if g.len() > 3 && g[3].split(',').any(|m| m == name)
                && let Ok(id) = g[2].parse()
            {
                gids.push(id);
            }
        }
        Some(User { name: name.to_owned(), uid, gids })
    }

    /// Whether this user may create files in `dir`: its mode bits for this user (ACLs are
    /// not read), and a read-only mount refuses everyone.
    pub fn may_write(&self, dir: &Path) -> bool {
        if rustix::fs::statvfs(dir).is_ok_and(|v| v.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY)) {
            return false;
        }
        let Ok(m) = std::fs::metadata(dir) else { return false };
        if self.uid == 0 {
            return true;
        }
        let mode = m.mode();
        let bits = if m.uid() == self.uid {
            mode >> 6
        } else if self.gids.contains(&m.gid()) {
            mode >> 3
        } else {
            mode
        };
        bits & 0o3 == 0o3
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (uid {})", self.name, self.uid)
    }
}

/// Every check that needs no network, at `now`.
pub fn offline(c: &Config, now: Timestamp, who: &User) -> Vec<Problem> {
    let mut out = Vec::new();
    trusted_root(c, who, &mut out);
    token(c, who, &mut out);
    ca_file(c, &mut out);
    site(c, who, &mut out);
    hooks(c, &mut out);
    slots(c, now, &mut out);
    out
}

fn readable(key: &str, path: &Path, what: &str, who: &User, out: &mut Vec<Problem>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            out.push(problem(format!("{key} {} does not exist", path.display()), what));
            None
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            out.push(problem(
                format!("{key} {} cannot be read by {who}", path.display()),
                format!("make it readable by the user the agent runs as (`chown {} {}`)", who.name, path.display()),
            ));
            None
        }
        Err(e) => {
            out.push(problem(format!("{key} {} cannot be read: {e}", path.display()), what));
            None
        }
    }
}

fn trusted_root(c: &Config, who: &User, out: &mut Vec<Problem>) {
    let fix = "copy the repository's metadata/1.root.json there (from the release manager)";
    if let Some(bytes) = readable("trusted_root", &c.trusted_root, fix, who, out)
        && let Err(e) = config::parse_trusted_root(&bytes)
    {
        out.push(problem(format!("trusted_root {} is not a TUF root: {e}", c.trusted_root.display()), fix));
    }
}

fn token(c: &Config, who: &User, out: &mut Vec<Problem>) {
    if c.server.is_none() {
        return;
    }
    let Some(path) = &c.token_file else {
        out.push(problem(
            "`server` is set but `token_file` is not",
            "add `token_file = \"/etc/palier/token\"` holding the platform's token (the last line of `palier-server platform add NAME`)",
        ));
        return;
    };
    // One function reads the token for the agent and here: the same refusals, the same words.
    if path.exists()
        && let Err(why) = config::read_token(path)
    {
        out.push(problem(why.what, why.fix));
        return;
    }
    if readable("token_file", path, "put the platform's token there (the last line of `palier-server platform add NAME`)", who, out).is_none() {
        return;
    }
    // Mode 0600 (checked above): only its owner reads it, so the service's user must own it.
    if let Ok(m) = std::fs::metadata(path)
        && who.uid != 0
        && m.uid() != who.uid
    {
        out.push(problem(
            format!("token_file {} belongs to uid {}, and mode 600 lets only its owner read it, not {who}", path.display(), m.uid()),
            format!("`chown {} {}`", who.name, path.display()),
        ));
    }
}

/// The extra CA certificates parse (the agent reads them as the same function does).
fn ca_file(c: &Config, out: &mut Vec<Problem>) {
    if let Err(e) = crate::transport::extra_roots(c.ca_file.as_deref()) {
        out.push(problem(e.what, e.fix));
    }
}

fn site(c: &Config, who: &User, out: &mut Vec<Problem>) {
    let dirroot = &c.moodle.dirroot;
    if !dirroot.is_dir() {
        out.push(problem(
            format!("moodle.dirroot {} is not a folder", dirroot.display()),
            "set [moodle] dirroot to the Moodle code folder (the one holding version.php)",
        ));
    } else {
        let layouts = [dirroot.join("version.php"), dirroot.join("public/version.php")];
        match layouts.iter().find(|p| p.is_file()) {
            None => out.push(problem(
                format!("moodle.dirroot {} does not look like Moodle: neither version.php (4.x) nor public/version.php (5.1+)", dirroot.display()),
                "set [moodle] dirroot to the folder that holds Moodle's version.php",
            )),
            Some(v) => match std::fs::read_to_string(v).map_err(|e| e.to_string()).and_then(|t| palier_bundle::moodle::release_from_version_php(&t).map_err(|e| e.to_string())) {
                Ok(_) => {}
                Err(e) => out.push(problem(format!("{}: {e}", v.display()), "dirroot must hold an installed Moodle's code, with its $release")),
            },
        }
    }
    if !c.moodle.dataroot.is_dir() {
        out.push(problem(
            format!("moodle.dataroot {} is not a folder", c.moodle.dataroot.display()),
            "set [moodle] dataroot to Moodle's $CFG->dataroot",
        ));
    }
    // The staged tree is built beside dirroot and exchanged with it.
    if let Some(parent) = dirroot.parent().filter(|p| p.is_dir())
        && !who.may_write(parent)
    {
        out.push(problem(
            format!("{} (dirroot's parent) is not writable by {who}: the new tree is staged beside dirroot", parent.display()),
            format!("`chown {} {}`, or run the agent as the owner of the Moodle code", who.name, parent.display()),
        ));
    }
    // state_dir is created when missing: its nearest existing ancestor must then be writable.
    let mut dir = c.state_dir.as_path();
    while !dir.exists() {
        match dir.parent() {
            Some(p) => dir = p,
            None => break,
        }
    }
    if !who.may_write(dir) {
        let fix = if dir == c.state_dir {
            format!("`chown {} {}`", who.name, c.state_dir.display())
        } else {
            format!("`mkdir -p {0} && chown {1} {0}`", c.state_dir.display(), who.name)
        };
        out.push(problem(format!("state_dir {} is not writable by {who}", c.state_dir.display()), fix));
    }
}

/// The file `program` names, resolved as `exec` resolves it: a path when it holds a `/`,
/// else the first executable of that name in PATH.
pub fn resolve_program(program: &str, path_var: Option<&str>) -> std::result::Result<PathBuf, String> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return match std::fs::metadata(&p) {
            Err(_) => Err(format!("{program} does not exist")),
            Ok(m) if !m.is_file() => Err(format!("{program} is not a file")),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(format!("{program} is not executable (mode {:o})", m.permissions().mode() & 0o7777)),
            Ok(_) => Ok(p),
        };
    }
    let path_var = path_var.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(program);
        if let Ok(m) = std::fs::metadata(&p)
            && m.is_file()
            && m.permissions().mode() & 0o111 != 0
        {
            return Ok(p);
        }
    }
    Err(format!("{program} is not found in PATH ({path_var})"))
}

fn hooks(c: &Config, out: &mut Vec<Problem>) {
    let h = &c.hooks;
    let all: [(&str, &Option<Hook>); 10] = [
        ("maintenance_on", &h.maintenance_on),
        ("maintenance_off", &h.maintenance_off),
        ("notice", &h.notice),
        ("backup", &h.backup),
        ("restore", &h.restore),
        ("upgrade", &h.upgrade),
        ("purge_caches", &h.purge_caches),
        ("validate", &h.validate),
        ("guard", &h.guard),
        ("reload", &h.reload),
    ];
    let path_var = std::env::var("PATH").ok();
    for (name, hook) in all {
        let Some(hook) = hook else { continue };
        let program = hook.argv[0].replace("{dirroot}", &c.moodle.dirroot.to_string_lossy()).replace("{dataroot}", &c.moodle.dataroot.to_string_lossy());
        if let Err(why) = resolve_program(&program, path_var.as_deref()) {
            out.push(problem(
                format!("hooks.{name}: {why}"),
                format!("install it, or give the program's full path as the first item of `{name} = [\"/path/to/program\", ...]`"),
            ));
        }
    }
}

/// The slots of each window (or calendar source) in the coming `span`, labelled with the
/// text the config wrote, for the overlap check.
fn labelled<S: SlotSource>(sources: &[(String, S)], c: &Config, now: Timestamp, span: SignedDuration) -> Vec<(Slot, String)> {
    let mut all = Vec::new();
    for (label, s) in sources {
        all.extend(schedule::next_slots(s, &c.contract.timezone, now, span).into_iter().map(|slot| (slot, label.clone())));
    }
    all.sort_by_key(|(s, _)| (s.start.timestamp(), s.end.timestamp()));
    all
}

fn overlaps(key: &str, all: &[(Slot, String)], c: &Config, out: &mut Vec<Problem>) {
    for pair in all.windows(2) {
        let ((a, la), (b, lb)) = (&pair[0], &pair[1]);
        if b.start.timestamp() < a.end.timestamp() {
            let what = if la == lb { format!("`{la}` overlaps itself") } else { format!("`{la}` and `{lb}` overlap") };
            out.push(problem(
                format!("stability.{key}: {what} ({} to {})", contract::local(b.start.timestamp(), c), (if b.end < a.end { &b.end } else { &a.end }).strftime("%H:%M")),
                "merge them into one slot or correct one of them",
            ));
            return;
        }
    }
}

fn slots(c: &Config, now: Timestamp, out: &mut Vec<Problem>) {
    let s = &c.contract.stability;
    let two_weeks = SignedDuration::from_hours(24 * 15);
    match s.level {
        Level::One => {
            let all = labelled(&s.low_load.iter().map(|w| (w.to_string(), *w)).collect::<Vec<_>>(), c, now, two_weeks);
            overlaps("low_load", &all, c, out);
        }
        Level::Two => {
            let all = labelled(&s.windows.iter().map(|w| (w.to_string(), *w)).collect::<Vec<_>>(), c, now, two_weeks);
            if all.is_empty() {
                out.push(problem("stability.windows: no window in the next two weeks", "write windows like `Tue 22:00-23:30`"));
            }
            overlaps("windows", &all, c, out);
        }
        Level::Three => {
            let all: Vec<(Slot, String)> = schedule::next_slots(&s.calendar, &c.contract.timezone, now, schedule::HORIZON)
                .into_iter()
                .map(|slot| {
                    let label = format!("{} to {}", slot.start.strftime("%Y-%m-%dT%H:%M"), slot.end.strftime("%Y-%m-%dT%H:%M"));
                    (slot, label)
                })
                .collect();
            if all.is_empty() {
                out.push(problem(
                    format!("stability.calendar: no slot after {} in the coming year (every slot is past)", contract::local(now, c)),
                    "add the coming maintenance slots to `calendar` or `calendar_file`",
                ));
            }
            overlaps("calendar", &all, c, out);
        }
    }
    if s.level != Level::One && contract::next_slot(c, now).is_none() {
        let key = if s.level == Level::Two { "windows" } else { "calendar" };
        let have = if s.level == Level::Two { !s.windows.is_empty() } else { !s.calendar.is_empty() };
        if have && !out.iter().any(|p| p.what.starts_with(&format!("stability.{key}: no"))) {
            out.push(problem(
                format!("stability.{key}: no slot starts at least {} (the notice) from now", schedule::format_duration(s.notice.get())),
                "add later slots, or shorten `notice` with the platform owner's agreement",
            ));
        }
    }
}

/// The checks that need the network: the repository, verified against the trusted root, and
/// the token, shown to the server.
pub async fn online(c: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Err(e) = crate::repository::load(c).await {
        let e = super::explain(c, e);
        out.push(problem(palier_bundle::error::one_line(&e), "see above; `palier-agent plan` says the same once it is fixed"));
    }
    if let (Some(server), Some(path)) = (&c.server, &c.token_file)
        && let Ok(token) = config::read_token(path)
    {
        match token_answer(c, server, &token).await {
            Ok(200..=299) => {}
            Ok(401) => out.push(problem(
                format!("the server {server} refused the token in {} (401)", path.display()),
                format!(
                    "put this platform's token there: `palier-server platform add {0}` printed it once; a lost one is replaced with `palier-server platform token {0}`",
                    c.platform
                ),
            )),
            Ok(status) => out.push(problem(format!("the server {server} answered {status} to the token check"), "check `server` in the config and the control plane's log")),
            Err(why) => out.push(problem(format!("the server {server} is unreachable: {why}"), "check `server` in the config and that the control plane runs")),
        }
    }
    out
}

/// `GET /api/v1/fix-requests` with the token: 200 when the server knows it.
async fn token_answer(c: &Config, server: &url::Url, token: &str) -> std::result::Result<u16, String> {
    let url = server.join("api/v1/fix-requests").map_err(|e| e.to_string())?;
    let roots = crate::transport::extra_roots(c.ca_file.as_deref()).map_err(|e| e.to_string())?;
    let client = crate::transport::client_builder(roots)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let r = client.get(url).bearer_auth(token).header(crate::report::PLATFORM_HEADER, c.platform.to_string()).send().await.map_err(|e| palier_bundle::error::one_line(&e))?;
    Ok(r.status().as_u16())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_through_path_as_exec_does() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("tool");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = dir.path().to_str().unwrap();
        assert!(resolve_program("tool", Some(path)).unwrap_err().contains("not found in PATH"));
        assert!(resolve_program(prog.to_str().unwrap(), None).unwrap_err().contains("not executable"));
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(resolve_program("tool", Some(path)).unwrap(), prog);
        assert!(resolve_program("/nonexistent/tool", None).unwrap_err().contains("does not exist"));
    }
}
