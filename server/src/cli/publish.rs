use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::Parser;
use jiff::Timestamp;
use palier_bundle::{BundleRef, PlatformId};

use super::RepoArgs;
use crate::error::{Error, Result};
use crate::repo::{self, DEFAULT_MAX_EXPANDED};
use crate::store::{self, Store};

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
        let mut reported: BTreeSet<PlatformId> = self.reported_by.into_iter().collect();
        let mut linked: Vec<(i64, String)> = Vec::new();
        let store = match &self.db {
            Some(db) => Some(Store::open(db)?),
            None => None,
        };
        if let Some(store) = &store {
            // The archive is checked here for its manifest, and again by `repo::publish`.
            let path = self.archive.clone();
            let max = self.max_expanded;
            let checked = tokio::task::spawn_blocking(move || repo::check_archive(&path, max))
                .await
                .map_err(|e| Error::Refused(format!("archive check stopped: {e}")))??;
            for fix in &checked.manifest.fixes {
                if !store::looks_like_fix_id(fix) {
                    continue;
                }
                let fr = store::parse_fix_id(fix).map(|n| store.fix_request(n).map(|f| f.map(|f| (n, f)))).transpose()?.flatten();
                let Some((n, fr)) = fr else {
                    return Err(Error::Refused(format!(
                        "manifest fixes {fix}: no such fix request in {}; nothing published",
                        store.path().display()
                    )));
                };
                let platform = PlatformId::new(&fr.platform)?;
                reported.insert(platform);
                linked.push((n, fr.id));
            }
        }
        let p = repo::publish(&self.repo.paths(), &self.archive, reported, self.max_expanded, now).await?;
        let bundle = BundleRef { id: p.meta.manifest.id.clone(), version: p.meta.manifest.version.clone() };
        if let Some(store) = &store
            && !linked.is_empty()
        {
            let ns: Vec<i64> = linked.iter().map(|(n, _)| *n).collect();
            store.link_fix_requests(&ns, &bundle)?;
        }
        println!("published {} as target {} ({} bytes, sha256 {})", p.meta.manifest.key(), p.target, p.length, p.sha256);
        if !linked.is_empty() {
            let ids: Vec<&str> = linked.iter().map(|(_, id)| id.as_str()).collect();
            let who: Vec<&str> = p.meta.reported_by.iter().map(|p| p.as_str()).collect();
            println!("linked {} to {bundle}; reported by {}", ids.join(", "), who.join(", "));
        }
        Ok(())
    }
}
