//! `palier-server root sign`: a new root version, signed by the old and new root keys.

use clap::{Parser, Subcommand};
use jiff::Timestamp;

use super::RepoArgs;
use crate::error::Result;
use crate::repo_keys;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write N+1.root.json with a fresh expiry (one year), signed by a threshold of the current
    /// root keys; needs the root key (--offline-keys). Run it before the root expires.
    Sign(SignArgs),
}

#[derive(Debug, Parser)]
pub struct SignArgs {
    #[command(flatten)]
    repo: RepoArgs,
}

impl Command {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        match self {
            Command::Sign(a) => {
                let paths = a.repo.paths();
                let version = repo_keys::root_sign(&paths, now).await?;
                println!("signed {}", paths.metadata().join(format!("{version}.root.json")).display());
                Ok(())
            }
        }
    }
}
