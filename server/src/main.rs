use std::process::ExitCode;

use clap::Parser;
use palier_server::cli::{Cli, Command, exit_code};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings and errors for a one-shot command; the long-running one says what it does too.
    palier_bundle::log::init(if matches!(cli.command, Command::Serve(_)) { "warn,palier_server=info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", palier_server::error::one_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}
