//! The `palier` command line.

use std::io::Write;

use clap::{Parser, Subcommand};

/// palier: signed fix bundles for a fleet of hosted Moodle platforms. The product's commands
/// are palier-server (build, sign, publish bundles) and palier-agent (plan and apply them on a
/// Moodle host); this one runs the demo.
#[derive(Debug, Parser)]
#[command(name = "palier", version, about, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the end-to-end demo: a repository, three Moodle sites with different contracts,
    /// one simulated week, and what each platform got, when, and why.
    Demo(crate::demo::Args),
}

impl Cli {
    pub async fn run(self, out: &mut dyn Write) -> anyhow::Result<()> {
        match self.command {
            Command::Demo(args) => crate::demo::run(&args, out).await,
        }
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
