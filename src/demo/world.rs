//! The demo's world in its folder: the release manager's repository and keys, the control
//! plane (`palier-server serve --db`, a process of its own), and one fixture Moodle site per
//! platform with its HTTP server, hook scripts, agent config and control-plane token.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, anyhow};
use jiff::Timestamp;
use palier_bundle::{BundleMetadata, BundleRef, Manifest, ManifestKind, PlatformId};
use palier_fixture::{HookName, Hooks, MoodleServer, TreeOptions};
use palier_server::release::{self, PublishedFix};
use palier_server::repo::{self, DEFAULT_MAX_EXPANDED, Expiries, RepoPaths, Thresholds};
use palier_server::store::Store;

use super::scenario::{Example, Platform, ZONE};

/// The release manager's side: the TUF repository, its keys, and the bundles built from the
/// examples.
pub struct Repository {
    pub paths: RepoPaths,
    /// Where the example bundles are unpacked and built.
    bundles: PathBuf,
}

/// `anyhow` from a server library error, on one line.
fn server_err(e: palier_server::error::Error) -> anyhow::Error {
    anyhow!(palier_server::error::one_line(&e))
}

impl Repository {
    /// `palier-server init --repo DIR/repo` (keys in `DIR/keys`).
    ///
    /// The repository is signed with the real clock, not the demo's: its metadata must be
    /// valid when the agents read it, and they check expiry against the real clock.
    pub async fn init(dir: &Path) -> Result<Repository> {
        let paths = RepoPaths::new(dir.join("repo"), Some(dir.join("keys")));
        // A repository of a handful of bundles: 16 bins (`init --bins 16`), the fewest there
        // are. An agent verifies every bin at each refresh, so the default 256 would cost the
        // demo's 500 agent cycles minutes.
        let bins = repo::Bins::new(16).map_err(server_err)?;
        repo::init_with_bins(&paths, Thresholds::default(), Expiries::default(), bins, Timestamp::now()).await.map_err(server_err)?;
        Ok(Repository { paths, bundles: dir.join("bundles") })
    }

    /// `palier-server bundle build` then `palier-server publish --db FILE`: the fix requests
    /// the manifest's `fixes` names are looked up in the control plane's store and linked.
    pub async fn publish(&self, example: &Example, store: &Store) -> Result<PublishedFix> {
        let dir = self.bundles.join(example.id);
        let files = dir.join("files");
        for (path, content) in example.files {
            let file = files.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&file, content).with_context(|| format!("cannot write {}", file.display()))?;
        }
        let manifest_path = dir.join("bundle.toml");
        std::fs::write(&manifest_path, example.manifest).with_context(|| format!("cannot write {}", manifest_path.display()))?;
        let manifest = Manifest::parse(example.manifest, ManifestKind::Source).with_context(|| format!("example bundle {}", example.id))?;
        let archive = dir.join(manifest.target_name());
        let file = std::fs::File::create(&archive).with_context(|| format!("cannot create {}", archive.display()))?;
        let mut writer = BufWriter::new(file);
        palier_bundle::archive::build_from_dir(&manifest, &files, &mut writer).with_context(|| format!("cannot build bundle {}", manifest.key()))?;
        writer.flush().with_context(|| format!("cannot write {}", archive.display()))?;
        release::publish(&self.paths, &archive, BTreeSet::new(), Some(store), DEFAULT_MAX_EXPANDED, Timestamp::now()).await.map_err(server_err)
    }

    /// `palier-server validate ID@VERSION --alpha` and `--dataset NAME` for each dataset.
    pub async fn validate(&self, bundle: &BundleRef, alpha: bool, datasets: &[&str]) -> Result<()> {
        repo::update(&self.paths, bundle, Timestamp::now(), |m| {
            let mut changed = false;
            if alpha && !m.validations.alpha {
                m.validations.alpha = true;
                changed = true;
            }
            for d in datasets {
                changed |= m.validations.datasets.insert((*d).to_owned());
            }
            Ok(changed)
        })
        .await
        .map_err(server_err)?;
        Ok(())
    }

    /// `palier-server list`: every bundle's signed metadata.
    pub async fn list(&self) -> Result<Vec<BundleMetadata>> {
        Ok(repo::list(&self.paths).await.map_err(server_err)?.into_iter().map(|p| p.meta).collect())
    }
}

/// The control plane: `palier-server serve --db` on a free loopback port, run as a process of
/// its own (this binary again, as `palier server serve`: the same code as `palier-server`), so
/// that `palier demo --keep` can leave it running. Stopped when dropped, unless kept.
pub struct ControlPlane {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub store: Store,
    pub log: PathBuf,
}

/// Distinct platforms rolling a bundle back before the control plane halts it: one, in the
/// demo (a fleet would use more; `palier-server serve` defaults to 2).
pub const HALT_THRESHOLD: u32 = 1;

impl ControlPlane {
    pub fn start(dir: &Path, repository: &RepoPaths) -> Result<ControlPlane> {
        let db = dir.join("control-plane.db");
        let log = dir.join("control-plane.log");
        let store = Store::open(&db).map_err(server_err)?;
        let exe = std::env::current_exe().context("cannot find this program's path to start the control plane")?;
        let log_file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Command::new(exe)
            .args(["server", "serve", "--listen", "127.0.0.1:0", "--halt-threshold", &HALT_THRESHOLD.to_string()])
            // The demo's week passes in seconds: an hourly agent reports many times a minute.
            .args(["--statuses-per-minute", "100000", "--receipts-per-minute", "100000", "--fix-requests-per-minute", "1000"])
            .arg("--keys")
            .arg(&repository.keys)
            .arg("--repo")
            .arg(&repository.dir)
            .arg("--db")
            .arg(&db)
            .env("PALIER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("cannot start the control plane (palier server serve)")?;
        // Its first line on stdout, once bound and its metadata fresh: `listening on http://ADDR`.
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("the control plane has no stdout"))?;
        let read = BufReader::new(stdout).read_line(&mut line);
        let url = line.trim().strip_prefix("listening on ").map(str::to_owned);
        let Some(url) = url.filter(|_| read.is_ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            let why = std::fs::read_to_string(&log).unwrap_or_default();
            let why = why.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("it printed nothing");
            return Err(anyhow!("the control plane did not start: {why} (log {})", log.display()));
        };
        Ok(ControlPlane { child: Some(child), url, store, log })
    }

    /// Register a platform with its contract (`palier-server platform add --improvement N
    /// --stability N --components ...`); its token goes to `token_file` (0600).
    pub fn add_platform(&self, platform: &Platform, token_file: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let components = platform.components.iter().map(|c| (*c).to_owned()).collect();
        let contract = palier_server::store::PlatformContract::new(platform.improvement, platform.stability, components, Vec::new()).map_err(server_err)?;
        let token = self.store.add_platform_with(&PlatformId::new(platform.id)?, Some(&contract), Timestamp::now()).map_err(server_err)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(token_file)
            .with_context(|| format!("cannot create {}", token_file.display()))?;
        writeln!(file, "{token}").with_context(|| format!("cannot write {}", token_file.display()))
    }

    /// `GET path` from the control plane (as a browser would): the body of a 200 answer.
    pub fn get(&self, path: &str) -> Result<String> {
        use std::io::Read;
        let addr = self.url.strip_prefix("http://").unwrap_or(&self.url);
        let mut stream = std::net::TcpStream::connect(addr).with_context(|| format!("cannot connect to the control plane at {addr}"))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).context("cannot set a read timeout")?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").with_context(|| format!("cannot ask the control plane for {path}"))?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).with_context(|| format!("cannot read the control plane's answer to {path}"))?;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head.lines().next().unwrap_or_default();
        if !status.contains(" 200 ") {
            return Err(anyhow!("the control plane answered {path} with {status:?}"));
        }
        Ok(body.to_owned())
    }

    /// Leave the server running after the demo; its process id.
    pub fn keep(mut self) -> u32 {
        self.child.take().map(|c| c.id()).unwrap_or_default()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One platform: a generated Moodle code tree served over HTTP, hook scripts that log their
/// calls, and the agent config of its contract, talking to the control plane.
pub struct Site {
    pub platform: Platform,
    pub dirroot: PathBuf,
    pub config_path: PathBuf,
    pub config: palier_agent::Config,
    pub server: MoodleServer,
}

impl Site {
    pub fn create(root: &Path, platform: Platform, control: &ControlPlane) -> Result<Site> {
        let dir = root.join(platform.id);
        let dirroot = dir.join("moodle");
        let dataroot = dir.join("moodledata");
        std::fs::create_dir_all(&dataroot).with_context(|| format!("cannot create {}", dataroot.display()))?;
        // The server resolves dirroot afresh at every request, so it may start first; the
        // generated config.php then carries its real address.
        let server = MoodleServer::try_start(dirroot.clone(), dataroot.clone()).context("cannot start a fixture Moodle server on 127.0.0.1")?;
        let opts = TreeOptions { files: 300, bytes: 600_000, dataroot: dataroot.clone(), wwwroot: server.url().to_owned(), ..TreeOptions::default() };
        palier_fixture::generate(&dirroot, &opts).with_context(|| format!("cannot generate a Moodle tree in {}", dirroot.display()))?;
        // A little user data, so the level-3 backup has something to keep.
        for (path, text) in [("filedir/3f/a2/3fa2c0de", "a submitted assignment\n"), ("filedir/91/0b/910b7e11", "a course backup\n"), ("lang/fr/langconfig.php", "<?php\n")] {
            let file = dataroot.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        }
        let hooks = palier_fixture::write_hook_scripts(&dir.join("hooks"), &dir.join("hooks.log")).context("cannot write the hook scripts")?;
        control.add_platform(&platform, &dir.join("token"))?;
        let config_path = dir.join("agent.toml");
        let text = config_text(&platform, &control.url, server.url(), &hooks)?;
        std::fs::write(&config_path, text).with_context(|| format!("cannot write {}", config_path.display()))?;
        let config = palier_agent::Config::load(&config_path).map_err(|e| anyhow!(e.to_string()))?;
        if !config.ignored.is_empty() {
            return Err(anyhow!("{}: keys that do not apply: {}", config_path.display(), config.ignored.join("; ")));
        }
        Ok(Site { platform, dirroot, config_path, config, server })
    }

    /// The notices the agent has posted (its record in `state_dir`).
    pub fn notices(&self) -> Result<Vec<palier_agent::cycle::Notice>> {
        palier_agent::cycle::read_notices(&self.config.state_dir).map_err(|e| anyhow!(palier_bundle::error::one_line(&e)))
    }

    /// The digest of the whole live code tree (paths, contents, modes).
    pub fn tree_hash(&self) -> Result<String> {
        palier_fixture::tree_hash(&self.dirroot).with_context(|| format!("cannot read {}", self.dirroot.display()))
    }
}

/// A TOML string.
fn q(s: &str) -> String {
    format!("{s:?}")
}

fn list(items: &[&str]) -> String {
    items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
}

/// The agent config of `p`'s contract, as an operator would write it (SPEC 5). Paths are
/// relative to the config's folder. The repository and the control plane are the same server.
fn config_text(p: &Platform, control: &str, wwwroot: &str, hooks: &Hooks) -> Result<String> {
    let mut text = format!(
        "# Agent config of {id}: improvement level {i}, stability level {s} (written by `palier demo`).\n\
         platform = {id_q}\n\
         repository = {repo}\n\
         # The repository's first root metadata, copied from the release manager: the agent trusts only it.\n\
         trusted_root = \"../repo/metadata/1.root.json\"\n\
         server = {control}\n\
         token_file = \"token\"\n\
         state_dir = \"state\"\n\
         timezone = {zone}\n\n\
         [moodle]\n\
         dirroot = \"moodle\"\n\
         dataroot = \"moodledata\"\n\
         wwwroot = {www}\n\n\
         [improvement]\n\
         level = {i}\n",
        id = p.id,
        id_q = q(p.id),
        i = p.improvement,
        s = p.stability,
        repo = q(&format!("{control}/repo")),
        control = q(control),
        zone = q(ZONE),
        www = q(wwwroot),
    );
    if p.improvement == 2 {
        text.push_str(&format!("components = [{}]\n", list(p.components)));
    }
    text.push_str(&format!("\n[stability]\nlevel = {}\n", p.stability));
    match p.stability {
        1 => {}
        2 => text.push_str(&format!("windows = [{}]\nnotice = {}\n", list(p.windows), q(p.notice))),
        _ => text.push_str(&format!("calendar = [{}]\nnotice = {}\n", list(p.calendar), q(p.notice))),
    }
    text.push_str("watch = \"15m\"\nrecovery_budget = \"5m\"\n\n");
    // Every level backs up before a database change (an upgrade runs in maintenance after it)
    // and reloads PHP after a swap, so the checks see the new code at once.
    let protect = [HookName::MaintenanceOn, HookName::MaintenanceOff, HookName::Backup, HookName::Restore, HookName::Reload];
    let names: Vec<HookName> = match p.stability {
        1 => [HookName::Guard, HookName::Upgrade, HookName::PurgeCaches].into_iter().chain(protect).collect(),
        2 => [HookName::Guard, HookName::Notice, HookName::Upgrade, HookName::PurgeCaches].into_iter().chain(protect).collect(),
        _ => HookName::EVERY.to_vec(),
    };
    text.push_str("# The fixture's hook scripts: each logs its call to ../hooks.log and does what the real hook would.\n");
    text.push_str(&format!("[hooks]\n{}timeout = \"30s\"\nlong_timeout = \"2m\"\n", hooks.toml_lines(&names)));
    Ok(text)
}
