//! A generated Moodle site with its HTTP server and logging hook scripts, a repository and
//! agent configs: the world of the end-to-end apply and crash-point tests.

use std::path::{Path, PathBuf};
use std::process::Output;

use palier_fixture::{HookName, Hooks, Layout, MoodleServer, TreeOptions, generate, tree_hash, write_hook_scripts};

use super::{World, stderr};

/// A world with a generated Moodle site, its HTTP server and logging hook scripts.
pub struct Site {
    pub w: World,
    pub server: MoodleServer,
    pub hooks: Hooks,
}

impl Site {
    pub fn new(files: usize) -> Site {
        Self::new_in(files, &std::env::temp_dir())
    }

    /// A site in a temporary folder under `parent`.
    pub fn new_in(files: usize, parent: &Path) -> Site {
        Self::generated(files, parent, Layout::default())
    }

    /// A site of the given code layout (4.x, or 5.1+ with its `public/` web root).
    pub fn with_layout(files: usize, layout: Layout) -> Site {
        Self::generated(files, &std::env::temp_dir(), layout)
    }

    fn generated(files: usize, parent: &Path, layout: Layout) -> Site {
        let w = World::new_in(parent);
        let dirroot = w.path("site/dirroot");
        std::fs::remove_dir_all(&dirroot).unwrap();
        let dataroot = w.path("site/dataroot");
        generate(&dirroot, &TreeOptions { files, bytes: files as u64 * 2_000, dataroot: dataroot.clone(), layout, ..TreeOptions::default() }).unwrap();
        let server = MoodleServer::start(dirroot, dataroot);
        let hooks = write_hook_scripts(&w.path("hooks"), &w.path("hooks.log")).unwrap();
        Site { w, server, hooks }
    }

    pub fn dirroot(&self) -> PathBuf {
        self.w.path("site/dirroot")
    }

    pub fn hash(&self) -> String {
        tree_hash(&self.dirroot()).unwrap()
    }

    /// An agent config at these levels, with the fixture's wwwroot and hooks.
    pub fn config(&self, improvement: u8, stability: u8, extra_stability: &str) -> PathBuf {
        let path = self.w.agent_config("univ-a", improvement, stability);
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("wwwroot = \"http://127.0.0.1:9\"", &format!("wwwroot = \"{}\"", self.server.url()));
        let hooks_start = text.find("[hooks]").unwrap();
        let mut text = text[..hooks_start].to_owned();
        text = text.replace("[stability]\n", &format!("[stability]\n{extra_stability}"));
        // Every level reloads PHP after a swap (the fixture's server may cache PHP files).
        let names: &[HookName] = match stability {
            1 => &[HookName::Guard, HookName::Upgrade, HookName::PurgeCaches, HookName::Reload],
            2 => &[HookName::Guard, HookName::Notice, HookName::Upgrade, HookName::PurgeCaches, HookName::Reload],
            _ => &HookName::EVERY,
        };
        text.push_str(&format!("[hooks]\n{}timeout = \"3s\"\n", self.hooks.toml_lines(names)));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Publish a bundle whose files are `(path, content)`, validated alpha + 2 datasets.
    pub fn publish(&self, id: &str, class_impact: (&str, &str), files: &[(&str, &str)], extra: &str) {
        self.publish_version(id, "1.0.0", class_impact, files, extra);
    }

    /// [`Site::publish`] at `version`.
    pub fn publish_version(&self, id: &str, version: &str, class_impact: (&str, &str), files: &[(&str, &str)], extra: &str) {
        let out = self.try_publish(id, version, class_impact, files, extra);
        assert!(out.status.success(), "publish {id}@{version}: {}", stderr(&out));
        let b = format!("{id}@{version}");
        for validation in [&["--alpha"][..], &["--dataset", "big-univ"], &["--dataset", "small-school"]] {
            let mut args = vec!["validate", "--repo", "repo", &b];
            args.extend_from_slice(validation);
            args.extend_from_slice(self.offline_keys());
            self.w.server(&args);
        }
    }

    /// Build and publish a bundle; the output of `publish`, whether it succeeded or not.
    pub fn try_publish(&self, id: &str, version: &str, class_impact: (&str, &str), files: &[(&str, &str)], extra: &str) -> Output {
        let dir = self.w.path(&format!("bundles/{id}-{version}"));
        // A bundle changes only its component's folder: files outside mod/quiz are core's.
        let quiz = |p: &str| p.starts_with("mod/quiz/") || p.starts_with("public/mod/quiz/");
        let component = if files.iter().all(|(p, _)| quiz(p)) { "mod_quiz" } else { "core" };
        for (p, c) in files {
            let f = dir.join("files").join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, c).unwrap();
        }
        std::fs::write(
            dir.join("bundle.toml"),
            format!(
                "id = \"{id}\"\nversion = \"{version}\"\ncomponent = \"{component}\"\nclass = \"{}\"\ndata_impact = \"{}\"\nsummary = \"bundle {id}\"\norigin = \"report\"\n{extra}",
                class_impact.0, class_impact.1
            ),
        )
        .unwrap();
        let d = dir.to_str().unwrap();
        self.w.server(&["bundle", "build", "--manifest", &format!("{d}/bundle.toml"), "--source", &format!("{d}/files"), "--out", &format!("{d}.tar.gz")]);
        let archive = format!("{d}.tar.gz");
        let mut args = vec!["publish", "--repo", "repo", &archive];
        args.extend_from_slice(self.offline_keys());
        self.w.run("palier-server", &args)
    }

    /// `--offline-keys offline` when the repository keeps keys there (made with
    /// `init --offline-keys offline`), else nothing.
    fn offline_keys(&self) -> &'static [&'static str] {
        if self.w.path("offline").is_dir() { &["--offline-keys", "offline"] } else { &[] }
    }

    pub fn agent(&self, args: &[&str]) -> Output {
        self.w.run("palier-agent", args)
    }

    /// Run palier-agent with these extra environment variables (crash points).
    pub fn agent_with(&self, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
        let mut cmd = std::process::Command::new(super::bin("palier-agent"));
        cmd.args(args).current_dir(self.w.tmp.path()).env_remove("PALIER_LOG").env_remove("PALIER_CRASH_AT").env_remove("PALIER_CRASH_TRACE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    pub fn run_once(&self, config: &Path, now: &str) -> String {
        let out = self.agent(&["run", "--once", "--config", config.to_str().unwrap(), "--now", now]);
        assert!(out.status.success(), "run --once: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A cycle whose intervention fails or is rolled back: exit 1, one line saying why.
    pub fn run_once_refused(&self, config: &Path, now: &str, needle: &str) -> String {
        let out = self.agent(&["run", "--once", "--config", config.to_str().unwrap(), "--now", now]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "run --once should exit 1: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "expected {needle:?} in {err}");
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn last_receipt(&self) -> serde_json::Value {
        let dir = self.w.path("state-univ-a/receipts");
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        serde_json::from_slice(&std::fs::read(names.last().unwrap()).unwrap()).unwrap()
    }
}

/// `cp -a`: a copy with modes and symlinks.
pub fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}
