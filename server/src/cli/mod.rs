//! The `palier-server` command line: one module per subcommand, each with `Args::run()`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::repo::RepoPaths;

pub mod bundle;
mod init;
mod key;
mod list;
mod migrate;
mod platform;
mod publish;
mod refresh;
mod retire;
mod rollout;
mod root;
mod serve;
mod sync;
mod update;

/// palier-server: build, sign and publish fix bundles for a fleet of Moodle platforms.
#[derive(Debug, Parser)]
#[command(name = "palier-server", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Act as if the clock said this (RFC 3339); for tests and the demo.
    #[arg(long, global = true, hide = true, value_name = "RFC3339")]
    pub now: Option<Timestamp>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new TUF repository and its signing keys.
    Init(init::Args),
    /// Build or inspect bundle archives.
    #[command(subcommand)]
    Bundle(bundle::Command),
    /// Check a bundle archive and add it to the repository with its signed metadata.
    Publish(publish::Args),
    /// Record a validation (alpha, or a test dataset) in a bundle's signed metadata.
    Validate(update::ValidateArgs),
    /// Pause a bundle: agents skip it until it is resumed.
    Halt(update::StateArgs),
    /// Resume a halted bundle.
    Resume(update::ResumeArgs),
    /// Withdraw a bundle for good.
    Yank(update::StateArgs),
    /// Add a platform to a bundle's reporters (it reported the defect the bundle fixes).
    Link(update::LinkArgs),
    /// List the published bundles with their metadata.
    List(list::Args),
    /// A bundle's staged rollout (canaries, then waves of the fleet): set, pause, resume,
    /// show; and the repository's default rollout.
    #[command(subcommand)]
    Rollout(rollout::Command),
    /// Retire yanked and superseded bundles older than the retention from the active bins
    /// (kept while a platform still reports them installed); archived beside the keys.
    Retire(retire::Args),
    /// Re-sign snapshot and timestamp (and targets) that near expiry; for a statically
    /// served repository, from cron or a systemd timer. `--check` only reports.
    Refresh(refresh::Args),
    /// Rotate a role's signing keys (`key rotate ROLE`).
    #[command(subcommand)]
    Key(key::Command),
    /// Sign a new root version (`root sign`).
    #[command(subcommand)]
    Root(root::Command),
    /// Move a repository of the single-targets layout into hashed bins and add the halts role
    /// (needs the targets key).
    Migrate(migrate::Args),
    /// Copy the repository to a folder a static host serves: targets first, the timestamp
    /// last, only what changed, each file atomically. Needs no key.
    Sync(sync::Args),
    /// Register, change and list the platforms of the control plane and their contracts.
    #[command(subcommand)]
    Platform(platform::Command),
    /// Serve the repository over HTTP (`/repo/`), the control-plane API (`/api/v1/`), the fleet
    /// dashboard (`/`), `/healthz` and `/metrics`; keep the metadata re-signed before it expires.
    Serve(serve::Args),
}

impl Cli {
    pub async fn run(self) -> Result<()> {
        let now = self.now.unwrap_or_else(Timestamp::now);
        match self.command {
            Command::Init(a) => a.run(now).await,
            Command::Bundle(c) => c.run(),
            Command::Publish(a) => a.run(now).await,
            Command::Validate(a) => a.run(now).await,
            Command::Halt(a) => a.run(now, palier_bundle::BundleState::Halted).await,
            Command::Resume(a) => a.run(now).await,
            Command::Yank(a) => a.run(now, palier_bundle::BundleState::Yanked).await,
            Command::Link(a) => a.run(now).await,
            Command::List(a) => a.run().await,
            Command::Rollout(c) => c.run(now).await,
            Command::Retire(a) => a.run(now).await,
            Command::Refresh(a) => a.run(now).await,
            Command::Key(c) => c.run(now).await,
            Command::Root(c) => c.run(now).await,
            Command::Sync(a) => a.run(),
            Command::Migrate(a) => a.run(now).await,
            Command::Platform(c) => c.run(now),
            Command::Serve(a) => a.run(self.now).await,
        }
    }
}

/// `--repo DIR [--keys KEYDIR]`, shared by every repository command.
#[derive(Debug, clap::Args)]
pub struct RepoArgs {
    /// The repository folder (metadata/ and targets/ under it).
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// The online signing keys folder (halts, reports, snapshot, timestamp; every key in a
    /// repository made without --offline-keys); default: `keys` beside DIR.
    #[arg(long, value_name = "KEYDIR")]
    pub keys: Option<PathBuf>,
    /// The offline keys folder (root, targets, bins), for the commands that need them: `init`
    /// writes them there; publish, validate, yank, link, rollout changes, resume, `key
    /// rotate`, `root sign`, `migrate` and a due `refresh` of the top-level targets read them.
    #[arg(long, value_name = "DIR")]
    pub offline_keys: Option<PathBuf>,
}

impl RepoArgs {
    pub fn paths(&self) -> RepoPaths {
        RepoPaths::new(&self.repo, self.keys.clone()).with_offline(self.offline_keys.clone())
    }
}

/// `platform` (given as `what`, an option's name) must be registered in `store`: a mistyped
/// name would sign a reporter that no agent is.
pub(crate) fn known_platform(store: &crate::store::Store, platform: &palier_bundle::PlatformId, what: &str) -> Result<()> {
    if store.platform(platform)?.is_none() {
        let db = store.path().display();
        return Err(Error::Refused(format!("{what} {platform}: no platform {platform} in {db} (`palier-server platform list --db {db}` lists them)")));
    }
    Ok(())
}

/// Exit codes, as documented in the README.
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const CONFIG: u8 = 64;
}

/// The exit code for an error.
pub fn exit_code(err: &Error) -> u8 {
    match err {
        Error::Key { .. } => exit::CONFIG,
        _ => exit::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
