//! `palier-server sync --to DIR`: a consistent copy of the repository for a static host.

use std::path::PathBuf;

use clap::Parser;

use super::RepoArgs;
use crate::error::Result;

#[derive(Debug, Parser)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// The folder the static host serves (created if missing; never inside the repository).
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
}

impl Args {
    pub fn run(self) -> Result<()> {
        let s = crate::sync::sync(&self.repo.paths(), &self.to)?;
        println!("synced {} to {}: {} file(s) written ({} bytes), {} unchanged", self.repo.repo.display(), self.to.display(), s.copied, s.bytes, s.unchanged);
        Ok(())
    }
}
