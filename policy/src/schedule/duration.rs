//! Human durations of the agent config: `2h`, `15m`, `90s`, `1h30m`, `1d`. The parser lives in
//! `palier_bundle::duration`, beside the signed metadata whose rollout waves are written the
//! same way; here it answers with this module's [`ScheduleError`].

use jiff::SignedDuration;

use super::error::{Result, ScheduleError};

pub use palier_bundle::duration::{duration_serde, format_duration};

/// [`palier_bundle::duration::parse_duration`], refusing with a [`ScheduleError::Duration`].
pub fn parse_duration(text: &str) -> Result<SignedDuration> {
    palier_bundle::duration::parse_duration(text).map_err(|e| ScheduleError::Duration { value: e.value, why: e.why })
}
