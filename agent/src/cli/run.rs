use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use jiff::Timestamp;

use crate::cycle::{self, CycleReport};
use crate::error::Result;
use crate::receipt::Outcome;

#[derive(Debug, Parser)]
pub struct Args {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// One cycle, then exit.
    #[arg(long)]
    once: bool,
    /// Run the cycle as if the clock said this (RFC 3339); with --once.
    #[arg(long, value_name = "RFC3339", requires = "once")]
    now: Option<Timestamp>,
    /// Time between two polls (a tenth of it is added at random, so a fleet does not poll at once).
    #[arg(long, default_value = "5m", value_parser = parse_interval)]
    interval: jiff::SignedDuration,
}

fn parse_interval(s: &str) -> std::result::Result<jiff::SignedDuration, String> {
    palier_bundle::schedule::parse_duration(s).map_err(|e| e.to_string())
}

fn print(report: &CycleReport) {
    for r in [&report.recovered, &report.watched, &report.intervention].into_iter().flatten() {
        let what = match r.outcome {
            Outcome::Applied => "applied",
            Outcome::RolledBack => "rolled back",
            Outcome::Failed => "failed",
            Outcome::Postponed => "postponed",
            Outcome::Recovered => "recovered",
        };
        let reason = r.reason.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
        let times = if r.count > 1 { format!(", {} times in a row", r.count) } else { String::new() };
        println!("{what} {}{reason} (receipt {}{times})", r.bundles.join(", "), r.id);
    }
    if let Some(r) = &report.set_aside {
        println!("could not stage {} together: {} (receipt {}); staged one by one", r.bundles.join(", "), r.reason.as_deref().unwrap_or("no reason recorded"), r.id);
    }
    for n in &report.notices {
        if n.ok() {
            println!("notice posted: {}", n.argv.join(" "));
        } else {
            println!("notice failed: {}", n.failure());
        }
    }
    for w in &report.waiting {
        println!("waiting: {w}");
    }
}

impl Args {
    pub async fn run(self) -> Result<()> {
        let config = super::load_config(&self.config)?;
        // Once per start: the daemon says it here, not every cycle.
        for w in crate::report::plain_http_warnings(&config) {
            eprintln!("{w}");
        }
        if self.once {
            let report = cycle::run_once(&config, self.now.unwrap_or_else(Timestamp::now)).await?;
            print(&report);
            // A cycle whose intervention failed or was rolled back exits 1, with the reason.
            for r in [&report.watched, &report.intervention].into_iter().flatten() {
                if matches!(r.outcome, Outcome::Failed | Outcome::RolledBack) {
                    let what = if r.outcome == Outcome::Failed { "failed" } else { "rolled back" };
                    return Err(crate::error::Error::Refused(format!(
                        "intervention {} {what} ({}): {}",
                        r.id,
                        r.bundles.join(", "),
                        r.reason.as_deref().unwrap_or("no reason recorded")
                    )));
                }
            }
            return Ok(());
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(crate::error::Error::io("listen for SIGTERM on", &config.path))?;
        let base = Duration::from_secs(self.interval.as_secs().max(1) as u64);
        loop {
            // A cycle runs to its end: an intervention is never cut in the middle by SIGTERM.
            match cycle::run_once(&config, Timestamp::now()).await {
                Ok(report) => print(&report),
                Err(e) => tracing::error!(error = %palier_bundle::error::one_line(&e), "cycle failed"),
            }
            let jitter = Duration::from_millis(u64::from(std::process::id()).wrapping_mul(2_654_435_761) % (base.as_millis() as u64 / 10 + 1));
            tokio::select! {
                _ = tokio::time::sleep(base + jitter) => {}
                _ = term.recv() => return Ok(()),
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
}
