use std::path::PathBuf;

use clap::Parser;

use crate::error::Result;
use crate::{intervene, lock};

#[derive(Debug, Parser)]
pub struct Args {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

impl Args {
    pub async fn run(self) -> Result<()> {
        let config = super::load_config(&self.config)?;
        let _lock = lock::acquire(&config.state_dir)?;
        crate::apply::check_owner(&config.moodle.dirroot, rustix::process::geteuid().as_raw())?;
        let clock = crate::clock::SystemClock;
        if let Some(r) = intervene::recover(&config, &clock).await? {
            println!("recovered {}: {}", r.bundles.join(", "), r.reason.unwrap_or_default());
        }
        let r = intervene::rollback_last(&config, &clock, "rolled back by hand").await?;
        if r.outcome == crate::receipt::Outcome::Failed {
            // Refused before anything moved (a database change with no backup to restore).
            return Err(crate::error::Error::Refused(r.reason.unwrap_or_else(|| "rollback refused".into())));
        }
        // The versions taken back are held here: the next cycle does not apply them again.
        crate::cycle::hold_rolled_back(&config.state_dir, &r)?;
        println!("rolled back {} (receipt {}); held on this site until `palier-agent release {}`", r.bundles.join(", "), r.id, r.bundles.join(" "));
        Ok(())
    }
}
