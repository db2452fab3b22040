//! Shared set-up for the end-to-end tests: the real binaries, a repository, a Moodle site
//! and an agent config, all in a temporary folder.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod control;
pub mod site;


use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace's binaries. `cargo test --workspace` builds both (each crate has
/// integration tests); when one is missing or older than the sources (a lone
/// `cargo test --test NAME` after an edit), they are built once per test process.
pub fn bin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        // The test executable is target/<profile>/deps/<name>: the binaries are one folder up.
        let exe = std::env::current_exe().expect("the test executable has a path");
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf();
        let newest_source = ["bundle/src", "policy/src", "agent/src", "server/src", "vendor/tough/src"].iter().map(|d| newest(&root.join(d))).max().flatten();
        let fresh = |b: &str| {
            let built = std::fs::metadata(dir.join(b)).and_then(|m| m.modified()).ok();
            matches!((built, newest_source), (Some(b), Some(s)) if b >= s)
        };
        if !(fresh("palier-server") && fresh("palier-agent")) {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "palier-server", "-p", "palier-agent"])
                .current_dir(root)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the binaries failed");
        }
        dir
    });
    dir.join(name)
}

/// The newest modification time under `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut best = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() { newest(&p) } else { e.metadata().ok().and_then(|m| m.modified().ok()) };
        best = best.max(t);
    }
    best
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary world: `repo/` and `keys/` (the server's), `site/` (Moodle code), `state/`.
pub struct World {
    pub tmp: tempfile::TempDir,
}

impl World {
    pub fn new() -> Self {
        Self::new_in(&std::env::temp_dir())
    }

    /// A world in a temporary folder under `parent`.
    pub fn new_in(parent: &Path) -> Self {
        let w = World { tmp: tempfile::tempdir_in(parent).unwrap() };
        w.server(&["init", "--repo", "repo"]);
        std::fs::create_dir_all(w.path("site/dirroot")).unwrap();
        std::fs::create_dir_all(w.path("site/dataroot")).unwrap();
        std::fs::write(
            w.path("site/dirroot/version.php"),
            "<?php\ndefined('MOODLE_INTERNAL') || die();\n$version  = 2024100702.00;\n$release  = '4.5.2+ (Build: 20250101)';\n$branch   = '405';\n$maturity = MATURITY_STABLE;\n",
        )
        .unwrap();
        w
    }

    /// Serve the world's site (`site/dirroot`, the fixture's Moodle pages) and point the
    /// agent config `config` at it, with `smoke` (a TOML array of checks) as its smoke
    /// checks. The preflight needs a site that answers; a check wanting a bundle's file
    /// absent (`expect_status = 404`) makes the site fail its checks once that bundle is
    /// live, and pass them again after the rollback.
    pub fn serve_site(&self, config: &Path, site: Option<&palier_fixture::MoodleServer>, smoke: &str) -> Option<palier_fixture::MoodleServer> {
        let started = site.is_none().then(|| palier_fixture::MoodleServer::start(self.path("site/dirroot"), self.path("site/dataroot")));
        let url = site.or(started.as_ref()).map(|s| s.url().to_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(config).unwrap();
        let text = text.replace("wwwroot = \"http://127.0.0.1:9\"", &format!("wwwroot = \"{url}\"")).replacen("[hooks]\n", &format!("[checks]\nsmoke = {smoke}\n\n[hooks]\n"), 1);
        std::fs::write(config, text).unwrap();
        started
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new(bin(program)).args(args).current_dir(self.tmp.path()).env_remove("PALIER_LOG").output().unwrap()
    }

    /// Run palier-server; it must succeed.
    pub fn server(&self, args: &[&str]) -> String {
        let out = self.run("palier-server", args);
        assert!(out.status.success(), "palier-server {args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Build and publish a one-file bundle with these manifest lines (id and version included).
    pub fn publish(&self, manifest: &str, extra_args: &[&str]) {
        let id = manifest.lines().find_map(|l| l.strip_prefix("id = \"")).unwrap().trim_end_matches('"').to_owned();
        let version = manifest.lines().find_map(|l| l.strip_prefix("version = \"")).unwrap().trim_end_matches('"').to_owned();
        let dir = self.path(&format!("bundles/{id}-{version}"));
        // The file lies in its component's folder, as `bundle build` requires; one file per
        // id: two ids writing the same path are refused at publish.
        let component = manifest.lines().find_map(|l| l.strip_prefix("component = \"")).unwrap().trim_end_matches('"');
        let folder = match component.split_once('_') {
            Some(("mod", name)) => format!("mod/{name}"),
            Some(("theme", name)) => format!("theme/{name}"),
            _ => "lib".to_owned(),
        };
        std::fs::create_dir_all(dir.join("files").join(&folder)).unwrap();
        std::fs::write(dir.join("files").join(&folder).join(format!("fix-{id}.php")), format!("<?php // {id} {version}\n")).unwrap();
        std::fs::write(dir.join("bundle.toml"), manifest).unwrap();
        let archive = dir.join("bundle.tar.gz");
        let (m, s, a) = (dir.join("bundle.toml"), dir.join("files"), archive.clone());
        self.server(&["bundle", "build", "--manifest", m.to_str().unwrap(), "--source", s.to_str().unwrap(), "--out", a.to_str().unwrap()]);
        let mut args = vec!["publish", "--repo", "repo", archive.to_str().unwrap()];
        args.extend_from_slice(extra_args);
        self.server(&args);
    }

    /// Write an agent config for `platform` at these levels; returns its path.
    pub fn agent_config(&self, platform: &str, improvement: u8, stability: u8) -> PathBuf {
        let imp = if improvement == 2 { "components = [\"mod_quiz\"]\n" } else { "" };
        let stab = match stability {
            1 => "low_load = [\"20:00-07:00\"]\nmax_defer = \"4h\"\n",
            2 => "windows = [\"Tue 22:00-23:30\", \"Thu 22:00-23:30\"]\nnotice = \"2h\"\n",
            _ => "calendar = [\"2026-12-05T21:00/2026-12-06T01:00\"]\nnotice = \"24h\"\n",
        };
        let text = format!(
            r#"platform = "{platform}"
repository = "file://{repo}"
trusted_root = "repo/metadata/1.root.json"
state_dir = "state-{platform}"
timezone = "Europe/Paris"

[moodle]
dirroot = "site/dirroot"
dataroot = "site/dataroot"
wwwroot = "http://127.0.0.1:9"

[improvement]
level = {improvement}
{imp}
[stability]
level = {stability}
{stab}
[hooks]
notice = ["true", "{{minutes}}"]
maintenance_on = ["true"]
maintenance_off = ["true"]
backup = ["true", "{{backup_dir}}"]
restore = ["true", "{{backup_dir}}"]
"#,
            repo = self.path("repo").display()
        );
        let path = self.path(&format!("agent-{platform}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A manifest with the given fields.
pub fn manifest(id: &str, version: &str, component: &str, class: &str, impact: &str, fixes: &str) -> String {
    format!(
        "id = \"{id}\"\nversion = \"{version}\"\ncomponent = \"{component}\"\nclass = \"{class}\"\ndata_impact = \"{impact}\"\nsummary = \"test bundle {id}\"\nfixes = [{fixes}]\norigin = \"report\"\n"
    )
}

/// `GET path` from `addr` (`HOST:PORT`) over plain HTTP/1.0, as a browser's first request:
/// the whole answer, status line and headers included.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}
