use std::process::ExitCode;

use clap::Parser;
use palier_agent::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    palier_agent::crash::arm(std::env::var("PALIER_CRASH_AT").ok(), std::env::var_os("PALIER_CRASH_TRACE").map(Into::into));
    // Warnings and errors for a one-shot command; the long-running one says what it does too.
    // The TLS verifier logs each refused certificate at error level: the agent's own line
    // already says it, with what to do (`ca_file`).
    palier_bundle::log::init(if cli.is_daemon() { "warn,palier_agent=info,rustls_platform_verifier=off" } else { "warn,rustls_platform_verifier=off" });
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
