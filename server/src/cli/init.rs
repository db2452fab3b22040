use clap::Parser;
use jiff::Timestamp;

use super::RepoArgs;
use crate::error::{Error, Result};
use crate::repo::{self, Expiries, Thresholds};

#[derive(Debug, Parser)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// Signature threshold of a role, as ROLE=N (root, targets, snapshot, timestamp); the
    /// role gets N keys. Default 1 for each.
    #[arg(long = "threshold", value_name = "ROLE=N")]
    thresholds: Vec<String>,
}

impl Args {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        let mut t = Thresholds::default();
        for spec in &self.thresholds {
            let bad = || Error::Refused(format!("--threshold {spec:?}: expected ROLE=N with ROLE one of root, targets, snapshot, timestamp and N from 1 to 16"));
            let (role, n) = spec.split_once('=').ok_or_else(bad)?;
            let n: u64 = n.parse().ok().filter(|n| (1..=16).contains(n)).ok_or_else(bad)?;
            match role {
                "root" => t.root = n,
                "targets" => t.targets = n,
                "snapshot" => t.snapshot = n,
                "timestamp" => t.timestamp = n,
                _ => return Err(bad()),
            }
        }
        let paths = self.repo.paths();
        repo::init(&paths, t, Expiries::default(), now).await?;
        println!("created repository {}", paths.dir.display());
        println!("keys in {} (keep the root key offline)", paths.keys.display());
        println!("agents pin {}", paths.pinned_root().display());
        Ok(())
    }
}
