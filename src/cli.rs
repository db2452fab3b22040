//! The `palier` command line.

use std::ffi::OsString;
use std::io::Write;

use anyhow::anyhow;
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
    /// `palier-server`'s command line, built into this binary: the demo starts its control
    /// plane as `palier server serve ...`, a process of its own that `demo --keep` leaves
    /// running. Use `palier-server` itself for anything else.
    #[command(hide = true)]
    Server {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<OsString>,
    },
}

impl Cli {
    pub async fn run(self, out: &mut dyn Write) -> anyhow::Result<()> {
        match self.command {
            Command::Demo(args) => crate::demo::run(&args, out).await,
            Command::Server { args } => {
                let cli = palier_server::cli::Cli::parse_from(std::iter::once(OsString::from("palier-server")).chain(args));
                cli.run().await.map_err(|e| anyhow!(palier_server::error::one_line(&e)))
            }
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
