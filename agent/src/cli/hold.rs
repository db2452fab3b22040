//! `palier-agent hold ID@VERSION --reason R` and `palier-agent release ID@VERSION...`: the
//! site's holds by hand (see `holds`). A rollback holds what it took back on its own.

use std::path::PathBuf;

use clap::Parser;
use jiff::Timestamp;
use palier_bundle::BundleRef;

use crate::error::Result;
use crate::{holds, lock};

#[derive(Debug, Parser)]
pub struct HoldArgs {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The bundle version to hold on this site, e.g. mod_quiz-fix@1.0.1.
    #[arg(value_name = "ID@VERSION")]
    bundle: BundleRef,
    /// Why (shown by `plan` and `status`, and sent with the status).
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Parser)]
pub struct ReleaseArgs {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The held bundle versions to release.
    #[arg(value_name = "ID@VERSION", required = true)]
    bundles: Vec<BundleRef>,
}

impl HoldArgs {
    pub fn run(self) -> Result<()> {
        let config = super::load_config(&self.config)?;
        let _lock = lock::acquire(&config.state_dir)?;
        let key = self.bundle.to_string();
        if holds::hold(&config.state_dir, &key, Timestamp::now(), self.reason.trim())? {
            println!("held {key} on this site: not applied until `palier-agent release {key} --config {}`", config.path.display());
        } else {
            println!("{key} is already held on this site: nothing changed");
        }
        Ok(())
    }
}

impl ReleaseArgs {
    pub fn run(self) -> Result<()> {
        let config = super::load_config(&self.config)?;
        let _lock = lock::acquire(&config.state_dir)?;
        for b in &self.bundles {
            let key = b.to_string();
            if holds::release(&config.state_dir, &key)? {
                println!("released {key}: the next cycle plans it like any other version");
            } else {
                println!("{key} was not held on this site: nothing changed");
            }
        }
        Ok(())
    }
}
