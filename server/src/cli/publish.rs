use std::path::PathBuf;

use clap::Parser;
use jiff::Timestamp;
use palier_bundle::PlatformId;

use super::RepoArgs;
use crate::error::Result;
use crate::release::{self, PublishedFix};
use crate::repo::DEFAULT_MAX_EXPANDED;
use crate::store::Store;

#[derive(Debug, Parser)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// The bundle archive (from `bundle build`).
    archive: PathBuf,
    /// A platform that reported a defect this bundle fixes (for defects tracked elsewhere).
    #[arg(long = "reported-by", value_name = "PLATFORM")]
    reported_by: Vec<PlatformId>,
    /// The control-plane store: the manifest's `fixes` of the form `FR-<n>` are looked up there,
    /// their platforms become `reported_by`, and they are linked to the bundle. An `FR-<n>` the
    /// store does not hold is refused; other ids (tracked elsewhere) are left alone.
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Refuse an archive that expands to more than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_EXPANDED)]
    max_expanded: u64,
}

impl Args {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        let store = self.db.as_deref().map(Store::open).transpose()?;
        let reported = self.reported_by.into_iter().collect();
        let PublishedFix { published: p, linked } = release::publish(&self.repo.paths(), &self.archive, reported, store.as_ref(), self.max_expanded, now).await?;
        println!("published {} as target {} ({} bytes, sha256 {})", p.meta.manifest.key(), p.target, p.length, p.sha256);
        if !linked.is_empty() {
            let who: Vec<&str> = p.meta.reported_by.iter().map(|p| p.as_str()).collect();
            println!("linked {} to {}; reported by {}", linked.join(", "), p.meta.manifest.key(), who.join(", "));
        }
        Ok(())
    }
}
