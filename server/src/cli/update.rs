//! Commands that change a published bundle's signed metadata.

use clap::Parser;
use jiff::Timestamp;
use palier_bundle::{BundleRef, BundleState, PlatformId};

use super::RepoArgs;
use crate::error::{Error, Result};
use crate::repo;

pub(super) fn report(bundle: &BundleRef, changed: bool, what: &str) {
    if changed {
        println!("{bundle}: {what}");
    } else {
        println!("{bundle}: already {what}; nothing re-signed");
    }
}

#[derive(Debug, Parser)]
#[command(group(clap::ArgGroup::new("validation").required(true).args(["alpha", "dataset"])))]
pub struct ValidateArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The bundle, as ID@VERSION.
    bundle: BundleRef,
    /// The internal alpha team validated it.
    #[arg(long)]
    alpha: bool,
    /// It passed qualification on this significant test dataset.
    #[arg(long, value_name = "NAME")]
    dataset: Option<String>,
}

impl ValidateArgs {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        if let Some(d) = &self.dataset
            && (d.is_empty() || d.len() > 64 || !d.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(Error::Refused(format!("dataset name {d:?}: expected 1 to 64 of a-z A-Z 0-9 . _ -")));
        }
        let (alpha, dataset) = (self.alpha, self.dataset.clone());
        let (_, changed) = repo::update(&self.repo.paths(), &self.bundle, now, |m| {
            refuse_yanked(&self.bundle, m)?;
            let mut changed = false;
            if alpha && !m.validations.alpha {
                m.validations.alpha = true;
                changed = true;
            }
            if let Some(d) = dataset {
                changed |= m.validations.datasets.insert(d);
            }
            Ok(changed)
        })
        .await?;
        let what = match (&self.dataset, self.alpha) {
            (Some(d), true) => format!("validated by alpha and on dataset {d}"),
            (Some(d), false) => format!("validated on dataset {d}"),
            _ => "validated by alpha".into(),
        };
        report(&self.bundle, changed, &what);
        Ok(())
    }
}

pub(super) fn refuse_yanked(bundle: &BundleRef, m: &palier_bundle::BundleMetadata) -> Result<()> {
    if m.state == BundleState::Yanked {
        return Err(Error::Refused(format!("bundle {bundle} is yanked; publish a new version instead")));
    }
    Ok(())
}

#[derive(Debug, Parser)]
pub struct StateArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The bundle, as ID@VERSION.
    bundle: BundleRef,
    /// Why, shown to operators in `plan` and in the dashboard.
    #[arg(long)]
    reason: String,
}

impl StateArgs {
    pub async fn run(self, now: Timestamp, state: BundleState) -> Result<()> {
        let reason = self.reason.trim().to_owned();
        if reason.is_empty() || reason.len() > 200 || reason.chars().any(char::is_control) {
            return Err(Error::Refused("--reason must be one line of 1 to 200 bytes".into()));
        }
        let paths = self.repo.paths();
        // Stopping code needs no offline key: without the bins key, a halt marker (the online
        // halts key), which only the offline `resume` undoes.
        if state == BundleState::Halted
            && let Err(missing) = paths.signing_keys("bins")
        {
            if !crate::halts::has_role(&paths)? {
                return Err(missing);
            }
            let changed = crate::halts::write_marker(&paths, &self.bundle, &reason, now).await?;
            report(&self.bundle, changed, "halted (a halt marker; `resume` with the offline keys lifts it)");
            return Ok(());
        }
        let (_, changed) = repo::update(&paths, &self.bundle, now, |m| {
            // Already in that state (yanking a yanked bundle included): nothing to do.
            if m.state == state {
                return Ok(false);
            }
            refuse_yanked(&self.bundle, m)?;
            m.state = state;
            m.state_reason = Some(reason);
            Ok(true)
        })
        .await?;
        report(&self.bundle, changed, state.as_str());
        Ok(())
    }
}

#[derive(Debug, Parser)]
pub struct ResumeArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The bundle, as ID@VERSION.
    bundle: BundleRef,
}

impl ResumeArgs {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        let paths = self.repo.paths();
        // Un-halting is the release manager's word: the bins key (offline), even when only a
        // halt marker halts the bundle.
        crate::repo_keys::require_keys(&paths, &["bins"])?;
        // Any halt marker the repository ever listed for it, even one removed since: an agent
        // that saw it keeps the bundle halted until a resume after it.
        let marked = crate::halts::newest_marker_ever(&paths, &self.bundle)?;
        let (_, changed) = repo::update(&paths, &self.bundle, now, |m| {
            refuse_yanked(&self.bundle, m)?;
            let resumed = m.resumed_at.as_deref().and_then(|r| r.parse::<Timestamp>().ok());
            if m.state == BundleState::Active && marked.is_none_or(|at| resumed.is_some_and(|r| r >= at)) {
                return Ok(false);
            }
            m.state = BundleState::Active;
            m.state_reason = None;
            // Agents that saw a halt marker keep the bundle halted until its own metadata says
            // it was resumed after the marker.
            m.resumed_at = Some(now.to_string());
            Ok(true)
        })
        .await?;
        // The marker too (the `halts` key): agents that never saw it need not.
        let unmarked = crate::halts::remove_marker(&paths, &self.bundle, now).await?;
        report(&self.bundle, changed || unmarked, "active");
        Ok(())
    }
}

#[derive(Debug, Parser)]
pub struct LinkArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The bundle, as ID@VERSION.
    bundle: BundleRef,
    /// The platform that reported the defect this bundle fixes.
    #[arg(long)]
    platform: PlatformId,
    /// The control-plane store: the platform must be registered there.
    #[arg(long, value_name = "FILE")]
    db: Option<std::path::PathBuf>,
}

impl LinkArgs {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        if let Some(db) = &self.db {
            super::known_platform(&crate::store::Store::open_existing(db)?, &self.platform, "--platform")?;
        }
        let platform = self.platform.clone();
        let (_, changed) = repo::update(&self.repo.paths(), &self.bundle, now, |m| Ok(m.reported_by.insert(platform))).await?;
        report(&self.bundle, changed, &format!("reported by {}", self.platform));
        Ok(())
    }
}
