use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::Parser;
use jiff::Timestamp;
use palier_bundle::PlatformId;

use super::RepoArgs;
use crate::error::Result;
use crate::repo::{self, DEFAULT_MAX_EXPANDED};

#[derive(Debug, Parser)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// The bundle archive (from `bundle build`).
    archive: PathBuf,
    /// A platform that reported a defect this bundle fixes (for defects tracked elsewhere).
    #[arg(long = "reported-by", value_name = "PLATFORM")]
    reported_by: Vec<PlatformId>,
    /// Refuse an archive that expands to more than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_EXPANDED)]
    max_expanded: u64,
}

impl Args {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        let reported: BTreeSet<PlatformId> = self.reported_by.into_iter().collect();
        let p = repo::publish(&self.repo.paths(), &self.archive, reported, self.max_expanded, now).await?;
        println!("published {} as target {} ({} bytes, sha256 {})", p.meta.manifest.key(), p.target, p.length, p.sha256);
        Ok(())
    }
}
