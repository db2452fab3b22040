//! The `palier-agent` command line: one module per subcommand, each with `Args::run()`.


use clap::{Parser, Subcommand};

use jiff::Timestamp;

use crate::config::Config;
use crate::error::{Error, Result};

mod calendar;
pub mod check_config;
pub mod contract;
mod hold;
pub mod plan;
mod request_fix;
mod rollback;
mod run;
mod status;

/// palier-agent: pulls what this Moodle platform's contract permits and applies it in its window.
#[derive(Debug, Parser)]
#[command(name = "palier-agent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Refresh and verify the repository, then list every bundle with its decision and reason.
    Plan(plan::Args),
    /// The daemon loop: poll, post notices, apply due interventions; `--once` does one cycle.
    Run(run::Args),
    /// Installed bundles, current and previous code trees, last intervention and its result.
    Status(status::Args),
    /// Put the previous code tree back (and restore its backup where data changed); the
    /// versions it takes back are held on this site.
    Rollback(rollback::Args),
    /// Hold a bundle version on this site: it is not applied until released.
    Hold(hold::HoldArgs),
    /// Lift the hold on bundle versions (set by a rollback or by `hold`).
    Release(hold::ReleaseArgs),
    /// File a fix request with the server (`--bundle`: we have the defect this bundle fixes).
    RequestFix(request_fix::Args),
    /// The coming interventions and notices (next 90 days) as an iCalendar document.
    Calendar(calendar::Args),
    /// Check everything the config needs (files, site, folders, hooks, slots; `--online`: the
    /// repository and the token) and print the contract it describes; exit 0 only if all would work.
    CheckConfig(check_config::Args),
}

impl Cli {
    pub async fn run(self) -> Result<()> {
        match self.command {
            Command::Plan(a) => a.run().await,
            Command::Run(a) => a.run().await,
            Command::Status(a) => a.run().await,
            Command::Rollback(a) => a.run().await,
            Command::Hold(a) => a.run(),
            Command::Release(a) => a.run(),
            Command::RequestFix(a) => a.run().await,
            Command::Calendar(a) => a.run().await,
            Command::CheckConfig(a) => a.run().await,
        }
    }

    /// The daemon (`run` without `--once`): it says what it does at info level.
    pub fn is_daemon(&self) -> bool {
        matches!(&self.command, Command::Run(a) if a.is_daemon())
    }
}

/// Load the config, warning about keys that do not apply at its levels.
fn load_config(path: &std::path::Path) -> Result<Config> {
    let c = Config::load(path)?;
    for key in &c.ignored {
        tracing::warn!("{}: ignoring {key}", c.path.display());
    }
    Ok(c)
}

/// An outcome in the receipts' words, for a sentence: `rolled back`.
pub(crate) fn outcome_word(outcome: crate::receipt::Outcome) -> &'static str {
    use crate::receipt::Outcome;
    match outcome {
        Outcome::Applied => "applied",
        Outcome::RolledBack => "rolled back",
        Outcome::Failed => "failed",
        Outcome::Postponed => "postponed",
        Outcome::Recovered => "recovered",
    }
}

/// `--now`: RFC 3339 (`2026-12-01T21:00:00Z`), or a local date-time in the platform's time
/// zone (`2026-12-01T22:00`, `2026-12-01 22:00`); default: the clock.
pub fn now(text: Option<&str>, config: &Config) -> Result<Timestamp> {
    let Some(text) = text else { return Ok(Timestamp::now()) };
    parse_now(text, &config.contract.timezone, &config.timezone_name).map_err(Error::Refused)
}

fn parse_now(text: &str, zone: &jiff::tz::TimeZone, zone_name: &str) -> std::result::Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let wrong = || {
        format!(
            "--now {text:?}: expected a local date-time in {zone_name} like 2026-12-01T22:00 or \"2026-12-01 22:00\", or RFC 3339 like 2026-12-01T21:00:00Z"
        )
    };
    let local: jiff::civil::DateTime = text.replacen(' ', "T", 1).parse().map_err(|_| wrong())?;
    palier_policy::schedule::resolve(zone, local).ok_or_else(wrong)
}

/// A repository error as an operator reads it: unreachable, not found, or refused (tampered,
/// expired, wrongly signed), and a trusted root that does not parse named as the local file.
pub fn explain(config: &Config, e: Error) -> Error {
    use tough::TransportErrorKind;
    let Error::Repository { url, source } = &e else { return e };
    let check = format!("`palier-agent check-config --config {} --online` checks it again", config.path.display());
    let text = match source.as_ref() {
        tough::error::Error::Transport { url: file, source: t, .. } if t.kind() == TransportErrorKind::FileNotFound => format!(
            "repository {url} not found: no {file}; is `repository` in {} the folder that holds metadata/ and targets/? {check}",
            config.path.display()
        ),
        tough::error::Error::Transport { source: t, .. } => {
            // The innermost causes (`tcp connect error: Connection refused`), not the URL again.
            let cause = std::error::Error::source(t).map(|c| c.to_string()).unwrap_or_else(|| t.to_string());
            let parts: Vec<&str> = cause.split(": ").collect();
            let cause = parts[parts.len().saturating_sub(2)..].join(": ");
            if cause.contains("certificate") {
                return Error::Refused(format!(
                    "repository {url}: its TLS certificate is not trusted ({cause}): set `ca_file` in {} to the PEM certificate of the CA that signs it, or use a certificate the system trusts. Nothing on the site changed",
                    config.path.display()
                ));
            }
            format!("repository {url} unreachable ({cause}): is the server up and the address right? Nothing on the site changed; the next cycle tries again")
        }
        tough::error::Error::ParseTrustedMetadata { source: why, .. } => format!(
            "trusted root {} (trusted_root in {}) is not a TUF root.json ({why}); copy the repository's metadata/1.root.json there",
            config.trusted_root.display(),
            config.path.display()
        ),
        tough::error::Error::VerifyTrustedMetadata { .. } | tough::error::Error::KeysNotFoundInRoot { .. } => format!(
            "trusted root {} (trusted_root in {}) cannot verify itself ({}); copy the repository's metadata/1.root.json there",
            config.trusted_root.display(),
            config.path.display(),
            palier_bundle::error::one_line(source.as_ref())
        ),
        other => format!(
            "repository {url} refused: {}; its metadata is tampered with, expired or signed by other keys than trusted_root's: nothing was applied, tell the release manager",
            palier_bundle::error::one_line(other)
        ),
    };
    Error::Refused(text)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn now_reads_a_local_date_time_in_the_platform_s_zone() {
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let utc: jiff::Timestamp = "2026-12-01T21:00:00Z".parse().unwrap();
        for text in ["2026-12-01T22:00", "2026-12-01 22:00", "2026-12-01T21:00:00Z", "2026-12-01T22:00:00+01:00"] {
            assert_eq!(super::parse_now(text, &paris, "Europe/Paris").unwrap(), utc, "{text}");
        }
        let e = super::parse_now("1/12/2026 22h", &paris, "Europe/Paris").unwrap_err();
        assert!(e.contains("2026-12-01T22:00") && e.contains("Europe/Paris"), "{e}");
    }
}
