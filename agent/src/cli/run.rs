use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

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
    /// Run the cycle as if the clock said this, with --once: a local date-time in the
    /// platform's time zone (`2026-12-01T22:00`) or RFC 3339.
    #[arg(long, value_name = "DATETIME", requires = "once")]
    now: Option<String>,
    /// Time between two polls (a tenth of it is added at random, so a fleet does not poll at once).
    #[arg(long, default_value = "5m", value_parser = parse_interval)]
    interval: jiff::SignedDuration,
}

fn parse_interval(s: &str) -> std::result::Result<jiff::SignedDuration, String> {
    palier_policy::schedule::parse_duration(s).map_err(|e| e.to_string())
}

/// What a cycle did, one line each: on stdout for `--once`, as log lines for the daemon
/// (info, and warnings for what went wrong). A cycle that did nothing says nothing.
fn print(report: &CycleReport, daemon: bool) {
    let say = |warn: bool, line: String| match (daemon, warn) {
        (false, _) => println!("{line}"),
        (true, false) => tracing::info!("{line}"),
        (true, true) => tracing::warn!("{line}"),
    };
    for r in [&report.recovered, &report.watched, &report.intervention].into_iter().flatten() {
        let reason = r.reason.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
        let times = if r.count > 1 { format!(", {} times in a row", r.count) } else { String::new() };
        say(matches!(r.outcome, Outcome::Failed | Outcome::RolledBack), format!("{} {}{reason} (receipt {}{times})", super::outcome_word(r.outcome), r.bundles.join(", "), r.id));
    }
    if let Some(r) = &report.set_aside {
        say(true, format!("could not stage {} together: {} (receipt {}); staged one by one", r.bundles.join(", "), r.reason.as_deref().unwrap_or("no reason recorded"), r.id));
    }
    for n in &report.notices {
        if n.ok() {
            say(false, format!("notice posted: {}", n.argv.join(" ")));
        } else {
            say(true, format!("notice failed: {}; it is tried again next cycle, and without it in time the window is not used", n.failure()));
        }
    }
    for w in &report.waiting {
        say(false, format!("waiting: {w}"));
    }
}

impl Args {
    /// `run` without `--once`.
    pub fn is_daemon(&self) -> bool {
        !self.once
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
            let now = super::now(self.now.as_deref(), &config)?;
            let report = cycle::run_once(&config, now).await.map_err(|e| super::explain(&config, e))?;
            print(&report, false);
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
        tracing::info!(
            "palier-agent {} started: platform {}, repository {}, server {}, a cycle every {} (plus up to a tenth)",
            env!("CARGO_PKG_VERSION"),
            config.platform,
            config.repository,
            config.server.as_ref().map_or_else(|| "none".to_owned(), ToString::to_string),
            palier_policy::schedule::format_duration(self.interval)
        );
        // A cycle runs to its end: an intervention is never cut in the middle by SIGTERM.
        // During the watch of an intervention the daemon wakes in between for its checks.
        let jitter = Duration::from_millis(u64::from(std::process::id()).wrapping_mul(2_654_435_761) % (base.as_millis() as u64 / 10 + 1));
        let stop = async {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        let each = |done: crate::error::Result<CycleReport>| {
            match done {
                Ok(report) => print(&report, true),
                Err(e) => tracing::warn!("cycle stopped: {}", palier_bundle::error::one_line(&super::explain(&config, e))),
            }
            true
        };
        cycle::daemon(&config, &crate::clock::SystemClock, || base + jitter, each, stop).await;
        tracing::info!("palier-agent stopped");
        Ok(())
    }
}
