//! `palier-server key rotate ROLE`: new keys for a role, the old ones revoked.

use clap::{Parser, Subcommand};
use jiff::Timestamp;

use super::RepoArgs;
use crate::error::Result;
use crate::repo_keys;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replace ROLE's keys (root, targets, snapshot, timestamp, bins, halts, reports) with new
    /// ones and revoke the old: root, targets, snapshot and timestamp in a new root (needs the
    /// root key, --offline-keys), bins, halts and reports in new top-level targets (needs the
    /// targets key, --offline-keys). The new root, targets and bins keys are written to the
    /// offline folder. Agents follow without being re-pinned.
    Rotate(RotateArgs),
}

#[derive(Debug, Parser)]
pub struct RotateArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The role whose keys are replaced.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(repo_keys::ROTATABLE))]
    role: String,
}

impl Command {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        match self {
            Command::Rotate(a) => {
                let r = repo_keys::rotate(&a.repo.paths(), &a.role, now).await?;
                println!(
                    "{}: {} new key(s) in {} trusted by {}; the old ones are revoked and kept in {}",
                    r.role,
                    r.keys,
                    r.folder.display(),
                    r.delegating,
                    r.retired_to.display()
                );
                Ok(())
            }
        }
    }
}
