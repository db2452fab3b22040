//! `palier-server migrate`: from the single-targets layout to hashed bins and the halts role.

use clap::Parser;
use jiff::Timestamp;

use super::RepoArgs;
use crate::error::Result;
use crate::migrate::{self, Migrated};
use crate::repo::{self, Bins};

#[derive(Debug, Parser)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// Number of hashed bins to spread the bundles over (a power of two from 16 to 65536),
    /// when the repository keeps every bundle in its top-level targets.
    #[arg(long, default_value_t = repo::DEFAULT_BINS)]
    bins: u32,
}

impl Args {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        let bins = Bins::new(self.bins)?;
        let paths = self.repo.paths();
        match migrate::migrate(&paths, bins, now).await? {
            Migrated::ToBins { bundles, bins } => {
                println!("moved {bundles} bundle(s) from the top-level targets into {bins} hashed bins; added the halts and reports roles");
                match &paths.offline {
                    Some(offline) => println!("new keys: bins in {}, halts and reports in {}", offline.display(), paths.keys.display()),
                    None => println!("new keys (bins, halts, reports) in {}; `key rotate bins --offline-keys DIR` moves the bins key offline", paths.keys.display()),
                }
            }
            Migrated::RolesAdded(roles) => println!("added the {} role(s); their keys are in {}", roles.join(", "), paths.keys.display()),
            Migrated::Current => println!("{} is already in the current layout; nothing re-signed", paths.dir.display()),
        }
        Ok(())
    }
}
