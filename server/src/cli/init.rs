use clap::Parser;
use jiff::Timestamp;

use super::RepoArgs;
use crate::error::{Error, Result};
use crate::repo::{self, Bins, Expiries, Thresholds};

#[derive(Debug, Parser)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// Signature threshold of a role, as ROLE=N (root, targets, snapshot, timestamp, bins,
    /// halts, reports); the role gets N keys. Default 1 for each.
    #[arg(long = "threshold", value_name = "ROLE=N")]
    thresholds: Vec<String>,
    /// Number of hashed bins the bundles are spread over (a power of two from 16 to 65536);
    /// fixed for the repository's life.
    #[arg(long, default_value_t = repo::DEFAULT_BINS)]
    bins: u32,
}

impl Args {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        let mut t = Thresholds::default();
        for spec in &self.thresholds {
            let bad = || Error::Refused(format!("--threshold {spec:?}: expected ROLE=N with ROLE one of root, targets, snapshot, timestamp, bins, halts, reports and N from 1 to 16"));
            let (role, n) = spec.split_once('=').ok_or_else(bad)?;
            let n: u64 = n.parse().ok().filter(|n| (1..=16).contains(n)).ok_or_else(bad)?;
            match role {
                "root" => t.root = n,
                "targets" => t.targets = n,
                "snapshot" => t.snapshot = n,
                "timestamp" => t.timestamp = n,
                "bins" => t.bins = n,
                "halts" => t.halts = n,
                "reports" => t.reports = n,
                _ => return Err(bad()),
            }
        }
        let bins = Bins::new(self.bins)?;
        let paths = self.repo.paths();
        repo::init_with_bins(&paths, t, Expiries::default(), bins, now).await?;
        println!("created repository {} ({} hashed bins)", paths.dir.display(), bins.count());
        match &paths.offline {
            Some(offline) => {
                println!(
                    "offline keys (root, targets, bins) in {}: move that folder off this machine; publish, validate, yank, link, rollout changes, resume, `key rotate`, `root sign`, `migrate` and a due `refresh` of the targets take --offline-keys",
                    offline.display()
                );
                println!("online keys (halts, reports, snapshot, timestamp) in {}: all `serve` needs (auto-halt, fix-request links, timestamp)", paths.keys.display());
            }
            None => println!("keys in {} (all roles: pass --offline-keys DIR to keep root, targets and bins apart)", paths.keys.display()),
        }
        println!("agents pin {}", paths.pinned_root().display());
        Ok(())
    }
}
