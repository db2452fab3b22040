//! The `palier-agent` command line: one module per subcommand, each with `Args::run()`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::error::Result;

mod calendar;
mod hold;
pub mod plan;
mod request_fix;
mod rollback;
mod run;
mod status;

/// palier-agent: pulls what this Moodle platform's contract permits and applies it in its window.
#[derive(Debug, Parser)]
#[command(name = "palier-agent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Refresh and verify the repository, then list every bundle with its decision and reason.
    Plan(plan::Args),
    /// The daemon loop: poll, post notices, apply due interventions; `--once` does one cycle.
    Run(run::Args),
    /// Installed bundles, current and previous code trees, last intervention and its result.
    Status(status::Args),
    /// Put the previous code tree back (and restore its backup where data changed); the
    /// versions it takes back are held on this site.
    Rollback(rollback::Args),
    /// Hold a bundle version on this site: it is not applied until released.
    Hold(hold::HoldArgs),
    /// Lift the hold on bundle versions (set by a rollback or by `hold`).
    Release(hold::ReleaseArgs),
    /// File a fix request with the server (`--bundle`: we have the defect this bundle fixes).
    RequestFix(request_fix::Args),
    /// The coming interventions and notices (next 90 days) as an iCalendar document.
    Calendar(calendar::Args),
    /// Validate the config file and print the contract it describes.
    CheckConfig(CheckConfigArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

impl Cli {
    pub async fn run(self) -> Result<()> {
        match self.command {
            Command::Plan(a) => a.run().await,
            Command::Run(a) => a.run().await,
            Command::Status(a) => a.run().await,
            Command::Rollback(a) => a.run().await,
            Command::Hold(a) => a.run(),
            Command::Release(a) => a.run(),
            Command::RequestFix(a) => a.run().await,
            Command::Calendar(a) => a.run().await,
            Command::CheckConfig(a) => a.run(),
        }
    }
}

/// Load the config, warning about keys that do not apply at its levels.
fn load_config(path: &std::path::Path) -> Result<Config> {
    let c = Config::load(path)?;
    for key in &c.ignored {
        tracing::warn!(config = %c.path.display(), "ignoring {key}");
    }
    Ok(c)
}

impl CheckConfigArgs {
    fn run(self) -> Result<()> {
        let c = load_config(&self.config)?;
        println!(
            "{}: platform {}, improvement level {}, stability level {}",
            c.path.display(),
            c.platform,
            c.contract.improvement.level,
            c.contract.stability.level
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
