use std::path::PathBuf;

use clap::Parser;
use jiff::Timestamp;
use palier_bundle::PlatformId;

use super::RepoArgs;
use crate::error::{Error, Result};
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
    #[arg(long, value_name = "FILE", conflicts_with = "no_db")]
    db: Option<PathBuf>,
    /// Publish a manifest whose `fixes` name fix requests (`FR-<n>`) without the store, on
    /// purpose: those requests stay open and their platforms are not added as reporters.
    #[arg(long)]
    no_db: bool,
    /// Refuse an archive that expands to more than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_EXPANDED)]
    max_expanded: u64,
}

impl Args {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        if self.db.is_none() && !self.no_db {
            refuse_unlinked_fix_requests(&self.archive, self.max_expanded).await?;
        }
        // Only `platform add` creates a store: a mistyped --db is refused, not created empty.
        let store = self.db.as_deref().map(Store::open_existing).transpose()?;
        if let Some(store) = &store {
            for p in &self.reported_by {
                super::known_platform(store, p, "--reported-by").map_err(|e| Error::Refused(format!("{}; nothing published", crate::error::one_line(&e))))?;
            }
        }
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

/// Without the store, the `FR-<n>` a manifest fixes could not be linked: a level-1 platform
/// that reported the defect would silently not receive its own fix. Refused unless `--no-db`.
async fn refuse_unlinked_fix_requests(archive: &std::path::Path, max_expanded: u64) -> Result<()> {
    let path = archive.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || crate::repo::check_archive(&path, max_expanded))
        .await
        .map_err(|e| Error::Refused(format!("archive check stopped: {e}")))??;
    let requests: Vec<&str> = checked.manifest.fixes.iter().map(String::as_str).filter(|f| crate::store::looks_like_fix_id(f)).collect();
    if requests.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "{} fixes {} (fix requests of the control plane) but no --db was given: the platforms that reported them would not receive it; \
         add --db FILE (the store `serve --db` uses), or --no-db to publish without linking them; nothing published",
        checked.manifest.key(),
        requests.join(", ")
    )))
}
