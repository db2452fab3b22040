use std::process::ExitCode;

use clap::Parser;
use palier_server::cli::{Cli, exit_code};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` says at the default level when it starts, each auto-halt and each refused token.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PALIER_LOG").unwrap_or_else(|_| "warn,palier_server::http=info".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
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
