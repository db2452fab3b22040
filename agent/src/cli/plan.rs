use std::path::PathBuf;

use clap::Parser;
use jiff::Timestamp;
use palier_policy::{DecisionKind, Plan};

use crate::config::Config;
use crate::error::Result;
use crate::{cycle, holds, lock, repository, site};

#[derive(Debug, Parser)]
pub struct Args {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Plan as if the clock said this: a local date-time in the platform's time zone
    /// (`2026-12-01T22:00`) or RFC 3339; default: now.
    #[arg(long, value_name = "DATETIME")]
    now: Option<String>,
    /// One JSON document on stdout (SPEC 5 shape).
    #[arg(long)]
    json: bool,
}

/// Refresh and verify the repository, read the site, and plan every bundle as `run` would
/// (the site's holds, back-off and file ownership included: see `cycle::planned`, which
/// downloads the archives of the eligible bundles to read their files).
pub async fn make_plan(config: &Config, now: Timestamp) -> Result<Plan> {
    let _lock = lock::acquire_shared(&config.state_dir)?;
    site::check_mark(&config.moodle.dirroot, &config.state_dir)?;
    let verified = repository::load(config).await.map_err(|e| super::explain(config, e))?;
    let release = site::moodle_release(&config.moodle.dirroot)?;
    let installed = site::installed(&config.state_dir)?;
    let held = holds::read_all(&config.state_dir)?;
    let mut waiting = Vec::new();
    let plan = cycle::planned(config, &verified, &release, &installed, &held, now, &mut waiting).await;
    for w in waiting {
        eprintln!("{w}");
    }
    // The commands that call this (`plan`, `calendar`) end right after: the process's exit
    // frees the verified repository at once, where dropping it frees every bundle's metadata
    // one by one (at 10,000 bundles, about a tenth of the command's CPU).
    std::mem::forget(verified);
    Ok(plan)
}

impl Args {
    pub async fn run(self) -> Result<()> {
        let config = super::load_config(&self.config)?;
        for w in crate::report::plain_http_warnings(&config) {
            eprintln!("{w}");
        }
        let plan = make_plan(&config, super::now(self.now.as_deref(), &config)?).await?;
        if self.json {
            // Straight to stdout: at 10,000 bundles the document is megabytes.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = serde_json::to_writer_pretty(&mut out, &plan).map_err(std::io::Error::from).and_then(|()| {
                use std::io::Write;
                writeln!(out)?;
                out.flush()
            });
            if let Err(e) = written {
                return Err(crate::error::Error::Refused(format!("cannot write the plan to stdout: {e}")));
            }
        } else {
            print!("{}", table(&plan));
        }
        Ok(())
    }
}

fn short(z: &jiff::Zoned) -> String {
    z.strftime("%a %Y-%m-%d %H:%M %Z").to_string()
}

/// The plan as a table an operator reads at a glance.
pub fn table(plan: &Plan) -> String {
    let mut out = format!(
        "platform {}  improvement level {}  stability level {}  now {}\n\n",
        plan.platform,
        plan.improvement_level,
        plan.stability_level,
        short(&plan.now)
    );
    if plan.bundles.is_empty() {
        out.push_str("no bundles in the repository\n");
        return out;
    }
    out.push_str(&format!("{:<36} {:<28} {}\n", "BUNDLE", "DECISION", "WHEN / WHY"));
    for d in &plan.bundles {
        let decision = match d.reason {
            Some(r) if d.decision != DecisionKind::Eligible => format!("{} ({})", d.decision.as_str(), r.as_str()),
            _ => d.decision.as_str().to_owned(),
        };
        let why = match (&d.apply_at, &d.notice_at) {
            (Some(at), Some(notice)) => format!("apply {} (notice {})", short(at), short(notice)),
            (Some(at), None) => format!("apply {}", short(at)),
            _ => d.detail.clone().unwrap_or_default(),
        };
        out.push_str(&format!("{:<36} {:<28} {}\n", d.key(), decision, why));
    }
    out
}
