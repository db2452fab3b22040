//! `palier-server retire`: yanked and superseded bundles older than the retention leave the
//! active bins (see [`crate::retire`]); `retire --set-default DURATION` sets the repository's
//! retention.

use std::path::PathBuf;

use clap::Parser;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::RepoArgs;
use crate::error::{Error, Result};
use crate::release::Settings;
use crate::retire::{self, FleetUse, Verdict};
use crate::store::Store;

fn duration(text: &str) -> std::result::Result<SignedDuration, String> {
    palier_bundle::duration::parse_duration(text).map_err(|e| e.to_string())
}

/// A retention as written (`90d`), kept with its text for the summary.
#[derive(Debug, Clone)]
struct Retention(SignedDuration, String);

impl std::str::FromStr for Retention {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        Ok(Retention(duration(text)?, text.to_owned()))
    }
}

#[derive(Debug, Parser)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// The control-plane store (the one `serve --db` uses): a bundle that any platform's latest
    /// status or plan reports installed, or still has due, is kept.
    #[arg(long, value_name = "FILE", conflicts_with = "no_fleet_check")]
    db: Option<PathBuf>,
    /// Retire without the store, on purpose: nothing checks that no platform still runs a
    /// bundle it retires.
    #[arg(long)]
    no_fleet_check: bool,
    /// The retention: retire what left the active set longer ago than this (`90d`, `36h`).
    /// Default: the repository's (`retire --set-default`), else 90 days.
    #[arg(long, value_name = "DURATION")]
    older_than: Option<Retention>,
    /// Say what would be retired and why; write nothing, need no key.
    #[arg(long)]
    dry_run: bool,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
    /// Set the repository's retention (in the settings beside the keys) and do nothing else.
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["db", "no_fleet_check", "older_than", "dry_run", "json"])]
    set_default: Option<String>,
}

/// `retire --json`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    dry_run: bool,
    /// The retention applied, as `parse_duration` reads it.
    retention: String,
    /// Whether the fleet was checked (`--db`), or not (`--no-fleet-check`).
    fleet_checked: bool,
    /// Registered platforms that never sent a status: what they run is not known.
    platforms_without_status: Vec<&'a str>,
    retired: Vec<&'a Verdict>,
    kept: Vec<&'a Verdict>,
    /// The bins re-signed (in a dry run: that would be), each once.
    bins: &'a [String],
    archive: String,
}

impl Args {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        let paths = self.repo.paths();
        paths.require()?;
        if let Some(text) = &self.set_default {
            duration(text).map_err(|e| Error::Refused(format!("--set-default: {e}")))?;
            let mut settings = Settings::load(&paths)?;
            if settings.retention.as_deref() == Some(text.as_str()) {
                println!("default retention already {text}; nothing written");
                return Ok(());
            }
            settings.retention = Some(text.clone());
            settings.save(&paths)?;
            println!("default retention: {text}");
            return Ok(());
        }
        let fleet = match (&self.db, self.no_fleet_check) {
            (Some(db), _) => Some(FleetUse::load(&Store::open_existing(db)?)?),
            (None, true) => None,
            (None, false) => {
                return Err(Error::Refused(
                    "retire keeps the bundles still installed on a platform, and needs the control plane's store to know them: \
                     add --db FILE (the store `serve --db` uses), or --no-fleet-check to retire without looking; nothing retired"
                        .into(),
                ));
            }
        };
        let (retention, retention_text) = match self.older_than {
            Some(Retention(d, text)) => (d, text),
            None => {
                let settings = Settings::load(&paths)?;
                match (settings.retention()?, settings.retention) {
                    (Some(d), Some(text)) => (d, text),
                    _ => (duration(retire::DEFAULT_RETENTION).map_err(Error::Refused)?, retire::DEFAULT_RETENTION.to_owned()),
                }
            }
        };
        let out = retire::retire(&paths, fleet.as_ref(), retention, self.dry_run, now).await?;
        let (retired, kept): (Vec<&Verdict>, Vec<&Verdict>) = out.verdicts.iter().partition(|v| v.retire);
        let silent: Vec<&str> = fleet.iter().flat_map(|f| f.silent.iter().map(String::as_str)).collect();
        if self.json {
            let report = Report {
                dry_run: self.dry_run,
                retention: retention_text,
                fleet_checked: fleet.is_some(),
                platforms_without_status: silent,
                retired,
                kept,
                bins: &out.bins,
                archive: out.archive.display().to_string(),
            };
            println!("{}", serde_json::to_string(&report).map_err(|e| Error::Refused(format!("cannot write the report: {e}")))?);
            return Ok(());
        }
        let verb = if self.dry_run { "would retire" } else { "retired" };
        for v in &retired {
            println!("{verb} {}: {}", v.bundle, v.reason);
        }
        for v in &kept {
            println!("kept {}: {}", v.bundle, v.reason);
        }
        if fleet.is_none() {
            println!("fleet not checked (--no-fleet-check)");
        }
        if !silent.is_empty() {
            println!("{} platform(s) never sent a status, so what they run is not known: {}", silent.len(), silent.join(", "));
        }
        let n = retired.len();
        let bundles = if n == 1 { "bundle" } else { "bundles" };
        if n == 0 {
            println!("nothing to retire (retention {retention_text}); nothing written");
        } else if self.dry_run {
            println!("dry run: {n} {bundles} would leave {} bin(s) (retention {retention_text}); nothing written", out.bins.len());
        } else {
            println!(
                "{n} {bundles} retired from {} bin(s), each re-signed once, then the snapshot and the timestamp (retention {retention_text}); entries archived in {}",
                out.bins.len(),
                out.archive.display()
            );
        }
        Ok(())
    }
}
