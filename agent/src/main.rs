use std::process::ExitCode;

use clap::Parser;
use palier_agent::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    palier_agent::crash::arm(std::env::var("PALIER_CRASH_AT").ok(), std::env::var_os("PALIER_CRASH_TRACE").map(Into::into));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PALIER_LOG").unwrap_or_else(|_| "warn".into()))
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
            eprintln!("error: {}", palier_bundle::error::one_line(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
