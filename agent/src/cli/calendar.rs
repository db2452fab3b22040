use std::path::PathBuf;

use clap::Parser;
use jiff::{SignedDuration, Timestamp};

use crate::error::Result;

/// How far ahead the calendar looks.
pub const HORIZON: SignedDuration = SignedDuration::from_hours(90 * 24);

#[derive(Debug, Parser)]
pub struct Args {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// As if the clock said this (RFC 3339); default: now.
    #[arg(long, value_name = "RFC3339")]
    now: Option<Timestamp>,
}

impl Args {
    pub async fn run(self) -> Result<()> {
        let config = super::load_config(&self.config)?;
        let now = self.now.unwrap_or_else(Timestamp::now);
        let plan = super::plan::make_plan(&config, now).await?;
        let events = palier_bundle::ical_out::from_plan(&plan, config.platform.as_str(), now, HORIZON);
        print!("{}", palier_bundle::ical_out::calendar(config.platform.as_str(), now, &events));
        Ok(())
    }
}
