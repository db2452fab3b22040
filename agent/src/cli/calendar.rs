use std::path::PathBuf;

use clap::Parser;
use jiff::SignedDuration;

use crate::error::Result;

/// How far ahead the calendar looks.
pub const HORIZON: SignedDuration = SignedDuration::from_hours(90 * 24);

#[derive(Debug, Parser)]
pub struct Args {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// As if the clock said this: a local date-time in the platform's time zone
    /// (`2026-12-01T22:00`) or RFC 3339; default: now.
    #[arg(long, value_name = "DATETIME")]
    now: Option<String>,
}

impl Args {
    pub async fn run(self) -> Result<()> {
        let config = super::load_config(&self.config)?;
        let now = super::now(self.now.as_deref(), &config)?;
        let plan = super::plan::make_plan(&config, now).await?;
        let events = palier_policy::ical_out::from_plan(&plan, config.platform.as_str(), now, HORIZON);
        print!("{}", palier_policy::ical_out::calendar(config.platform.as_str(), now, &events));
        Ok(())
    }
}
