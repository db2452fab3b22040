use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;

use crate::apply::swap;
use crate::error::Result;
use crate::intervene::{self, Last};
use crate::receipt::{self, Receipt};
use crate::site::{self, Installed};
use crate::journal;

#[derive(Debug, Parser)]
pub struct Args {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Status {
    platform: String,
    dirroot: PathBuf,
    /// Where the live code is (dirroot itself, or its symlink's target).
    current_tree: PathBuf,
    /// The tree a rollback would put back.
    previous_tree: Option<PathBuf>,
    installed: Vec<Installed>,
    last_intervention: Option<Receipt>,
    watch_until: Option<jiff::Timestamp>,
    /// An intervention was interrupted and not yet recovered (the next run recovers it).
    interrupted: Option<String>,
    /// Bundle versions rolled back on this site: not retried automatically.
    rolled_back: Vec<crate::cycle::RolledBack>,
}

impl Args {
    pub async fn run(self) -> Result<()> {
        let config = super::load_config(&self.config)?;
        let dirroot = config.moodle.dirroot.clone();
        let current = swap::live_target(&dirroot).ok().flatten().unwrap_or_else(|| dirroot.clone());
        let last: Option<Last> = intervene::read_last(&config.state_dir)?;
        let status = Status {
            platform: config.platform.to_string(),
            dirroot,
            current_tree: current,
            previous_tree: last.as_ref().map(|l| l.previous.clone()),
            installed: site::installed(&config.state_dir)?,
            last_intervention: receipt::all(&config.state_dir)?.pop(),
            watch_until: last.as_ref().map(|l| l.watch_until),
            interrupted: journal::read(&config.state_dir)?.map(|j| j.id),
            rolled_back: crate::cycle::read_rolled_back(&config.state_dir)?,
        };
        if self.json {
            println!("{}", serde_json::to_string_pretty(&status).unwrap_or_default());
            return Ok(());
        }
        println!("platform {}", status.platform);
        println!("current tree  {}", status.current_tree.display());
        match &status.previous_tree {
            Some(p) => println!("previous tree {}", p.display()),
            None => println!("previous tree -"),
        }
        if status.installed.is_empty() {
            println!("installed     -");
        }
        for i in &status.installed {
            println!("installed     {}@{} ({})", i.id, i.version, i.installed_at);
        }
        match &status.last_intervention {
            Some(r) => println!(
                "last          {} {:?} {}{}",
                r.id,
                r.outcome,
                r.bundles.join(", "),
                r.reason.as_deref().map(|w| format!(": {w}")).unwrap_or_default()
            ),
            None => println!("last          -"),
        }
        for r in &status.rolled_back {
            println!("rolled back   {} at {}: not retried ({})", r.bundle, r.at, r.reason);
        }
        if let Some(j) = &status.interrupted {
            println!("interrupted   {j} (the next run recovers it)");
        }
        Ok(())
    }
}
