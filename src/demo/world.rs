//! The demo's world in its folder: the release manager's repository and keys, and one
//! fixture Moodle site per platform with its HTTP server, hook scripts and agent config.

use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use jiff::Timestamp;
use palier_bundle::{BundleMetadata, BundleRef, BundleState, Manifest, ManifestKind, PlatformId};
use palier_fixture::{HookName, Hooks, MoodleServer, TreeOptions};
use palier_server::repo::{self, DEFAULT_MAX_EXPANDED, Expiries, RepoPaths, Thresholds};

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
        repo::init(&paths, Thresholds::default(), Expiries::default(), Timestamp::now()).await.map_err(server_err)?;
        Ok(Repository { paths, bundles: dir.join("bundles") })
    }

    /// `palier-server bundle build` then `palier-server publish [--reported-by P]`.
    pub async fn publish(&self, example: &Example, reported_by: Option<&str>) -> Result<BundleMetadata> {
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
        let reported: BTreeSet<PlatformId> = reported_by.map(PlatformId::new).transpose()?.into_iter().collect();
        let published = repo::publish(&self.paths, &archive, reported, DEFAULT_MAX_EXPANDED, Timestamp::now()).await.map_err(server_err)?;
        Ok(published.meta)
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

    /// `palier-server halt ID@VERSION --reason R`.
    pub async fn halt(&self, bundle: &BundleRef, reason: &str) -> Result<()> {
        repo::update(&self.paths, bundle, Timestamp::now(), |m| {
            m.state = BundleState::Halted;
            m.state_reason = Some(reason.to_owned());
            Ok(true)
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

/// One platform: a generated Moodle code tree served over HTTP, hook scripts that log their
/// calls, and the agent config of its contract.
pub struct Site {
    pub platform: Platform,
    pub dirroot: PathBuf,
    pub config_path: PathBuf,
    pub config: palier_agent::Config,
    pub server: MoodleServer,
}

impl Site {
    pub fn create(root: &Path, platform: Platform, repository: &RepoPaths) -> Result<Site> {
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
        let config_path = dir.join("agent.toml");
        let text = config_text(&platform, repository, server.url(), &hooks)?;
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
/// relative to the config's folder.
fn config_text(p: &Platform, repository: &RepoPaths, wwwroot: &str, hooks: &Hooks) -> Result<String> {
    let repo_dir = std::fs::canonicalize(&repository.dir).with_context(|| format!("cannot resolve {}", repository.dir.display()))?;
    let repo_url = format!("file://{}", repo_dir.display());
    let mut text = format!(
        "# Agent config of {id}: improvement level {i}, stability level {s} (written by `palier demo`).\n\
         platform = {id_q}\n\
         repository = {repo}\n\
         trusted_root = \"../repo/metadata/1.root.json\"\n\
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
        repo = q(&repo_url),
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
    let names: &[HookName] = match p.stability {
        1 => &[HookName::Guard, HookName::Upgrade, HookName::PurgeCaches],
        2 => &[HookName::Guard, HookName::Notice, HookName::Upgrade, HookName::PurgeCaches],
        _ => &HookName::ALL,
    };
    text.push_str("# The fixture's hook scripts: each logs its call to ../hooks.log and does what the real hook would.\n");
    text.push_str(&format!("[hooks]\n{}timeout = \"30s\"\nlong_timeout = \"2m\"\n", hooks.toml_lines(names)));
    Ok(text)
}
