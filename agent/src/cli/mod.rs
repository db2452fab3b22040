//! The `palier-agent` command line: one module per subcommand, each with `Args::run()`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};

/// palier-agent: pulls what this Moodle platform's contract permits and applies it in its window.
#[derive(Debug, Parser)]
#[command(name = "palier-agent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config file and print the contract it describes.
    CheckConfig(CheckConfigArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// What went wrong, and so the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl CliError {
    /// Exit codes, as documented in the README: 1 failure, 2 bad usage, 64 invalid config.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => 64,
        }
    }
}

impl Cli {
    pub fn run(self) -> Result<(), CliError> {
        match self.command {
            Command::CheckConfig(a) => a.run(),
        }
    }
}

impl CheckConfigArgs {
    fn run(self) -> Result<(), CliError> {
        let c = Config::load(&self.config)?;
        for key in &c.ignored {
            tracing::warn!(config = %c.path.display(), "ignoring {key}");
        }
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
