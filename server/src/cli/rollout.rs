//! `palier-server rollout`: a bundle's staged rollout (canaries, then waves of the fleet) in
//! its signed metadata, and the repository's default rollout. The logic of waves, places and
//! pauses is `palier_bundle::rollout`; this module edits and prints.

use clap::{Parser, Subcommand};
use jiff::Timestamp;
use palier_bundle::rollout::{Rollout, RolloutError};
use palier_bundle::{BundleMetadata, BundleRef};
use serde_json::json;

use super::RepoArgs;
use super::update::{refuse_yanked, report};
use crate::error::{Error, Result};
use crate::release::Settings;
use crate::repo;

/// A rollout on the command line: the text form, or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutArg {
    None,
    Spec(Rollout),
}

impl RolloutArg {
    pub fn into_option(self) -> Option<Rollout> {
        match self {
            RolloutArg::None => None,
            RolloutArg::Spec(r) => Some(r),
        }
    }
}

impl std::str::FromStr for RolloutArg {
    type Err = RolloutError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s.trim() == "none" {
            return Ok(RolloutArg::None);
        }
        Rollout::parse(s).map(RolloutArg::Spec)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set (or, with `none`, remove) a published bundle's rollout; a pause is kept.
    Set(SetArgs),
    /// Pause a bundle's rollout: what is open stays open, no further wave opens.
    Pause(BundleArgs),
    /// Resume a paused rollout: the waves not yet open move later by the length of the pause.
    Resume(BundleArgs),
    /// The rollout of a bundle: its canaries and waves with the instants they open.
    Show(ShowArgs),
    /// The repository's default rollout, applied by `publish` unless `--rollout` says
    /// otherwise; with no SPEC, print it; `none` removes it.
    Default(DefaultArgs),
}

impl Command {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        match self {
            Command::Set(a) => a.run(now).await,
            Command::Pause(a) => a.pause(now).await,
            Command::Resume(a) => a.resume(now).await,
            Command::Show(a) => a.run(now).await,
            Command::Default(a) => a.run(),
        }
    }
}

#[derive(Debug, Parser)]
pub struct SetArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The bundle, as ID@VERSION.
    bundle: BundleRef,
    /// `canary=univ-x,univ-y; 24h=10%; 48h=50%; 72h=100%`, or `none`.
    spec: RolloutArg,
}

impl SetArgs {
    async fn run(self, now: Timestamp) -> Result<()> {
        let wanted = self.spec.clone().into_option();
        let (p, changed) = repo::update(&self.repo.paths(), &self.bundle, now, |m| {
            refuse_yanked(&self.bundle, m)?;
            let paused_at = m.rollout.as_ref().and_then(|r| r.paused_at);
            let next = wanted.map(|mut r| {
                r.paused_at = paused_at;
                r
            });
            if m.rollout == next {
                return Ok(false);
            }
            m.rollout = next;
            Ok(true)
        })
        .await?;
        let what = match &p.meta.rollout {
            Some(r) => format!("rollout {r}{}", if r.paused_at.is_some() { " (paused)" } else { "" }),
            None => "without a rollout".into(),
        };
        report(&self.bundle, changed, &what);
        Ok(())
    }
}

#[derive(Debug, Parser)]
pub struct BundleArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The bundle, as ID@VERSION.
    bundle: BundleRef,
}

fn no_rollout(bundle: &BundleRef) -> Error {
    Error::Refused(format!(
        "bundle {bundle} has no rollout to pause or resume: `palier-server halt {bundle} --reason ...` stops it for every platform, `rollout set` gives it waves"
    ))
}

fn published_at(bundle: &BundleRef, m: &BundleMetadata) -> Result<Timestamp> {
    m.published_at.parse().map_err(|_| Error::Refused(format!("bundle {bundle}: its published_at {:?} is not an RFC 3339 instant", m.published_at)))
}

impl BundleArgs {
    async fn pause(self, now: Timestamp) -> Result<()> {
        let (_, changed) = repo::update(&self.repo.paths(), &self.bundle, now, |m| {
            let Some(r) = m.rollout.as_ref() else { return Err(no_rollout(&self.bundle)) };
            if r.paused_at.is_some() {
                return Ok(false);
            }
            refuse_yanked(&self.bundle, m)?;
            Ok(m.rollout.as_mut().is_some_and(|r| r.pause(now)))
        })
        .await?;
        report(&self.bundle, changed, "paused");
        Ok(())
    }

    async fn resume(self, now: Timestamp) -> Result<()> {
        let (p, changed) = repo::update(&self.repo.paths(), &self.bundle, now, |m| {
            let published = published_at(&self.bundle, m)?;
            let Some(r) = m.rollout.as_ref() else { return Err(no_rollout(&self.bundle)) };
            if r.paused_at.is_none() {
                return Ok(false);
            }
            refuse_yanked(&self.bundle, m)?;
            Ok(m.rollout.as_mut().is_some_and(|r| r.resume(published, now)))
        })
        .await?;
        match (&p.meta.rollout, changed) {
            (Some(r), true) => println!("{}: rollout resumed; now {r}", self.bundle),
            _ => println!("{}: already rolling out (not paused); nothing re-signed", self.bundle),
        }
        Ok(())
    }
}

#[derive(Debug, Parser)]
pub struct ShowArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The bundle, as ID@VERSION.
    bundle: BundleRef,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// One stage of a rollout as `rollout show` prints it.
struct Stage {
    name: String,
    who: String,
    opens_at: Timestamp,
    state: &'static str,
}

/// The stages of `r` with the instants they open and their state at `now`.
fn stages(r: &Rollout, published: Timestamp, now: Timestamp) -> Vec<Stage> {
    let state = |at: Timestamp| match r.paused_at {
        Some(p) if at > p => "paused",
        _ if at <= now => "open",
        _ => "pending",
    };
    let mut out = Vec::new();
    if !r.canary.is_empty() {
        let names: Vec<&str> = r.canary.iter().map(|p| p.as_str()).collect();
        out.push(Stage { name: "canary".into(), who: names.join(","), opens_at: published, state: state(published) });
    }
    for (i, w) in r.waves.iter().enumerate() {
        let at = r.wave_opens(published, i);
        out.push(Stage { name: format!("wave {}", i + 1), who: format!("{}% of the fleet", w.share), opens_at: at, state: state(at) });
    }
    out
}

impl ShowArgs {
    async fn run(self, now: Timestamp) -> Result<()> {
        let published = repo::list(&self.repo.paths()).await?;
        let Some(p) = published.iter().find(|p| p.meta.manifest.id == self.bundle.id && p.meta.manifest.version == self.bundle.version) else {
            let dir = self.repo.repo.display();
            return Err(Error::Refused(format!("bundle {} is not published in {dir} (see `palier-server list --repo {dir}`)", self.bundle)));
        };
        let Some(r) = &p.meta.rollout else {
            if self.json {
                println!("{}", json!({ "bundle": self.bundle.to_string(), "rollout": null }));
            } else {
                println!("{}: no rollout; every platform its contract admits takes it at once", self.bundle);
            }
            return Ok(());
        };
        let at = published_at(&self.bundle, &p.meta)?;
        let stages = stages(r, at, now);
        if self.json {
            let rows: Vec<_> = stages
                .iter()
                .map(|s| json!({ "stage": s.name, "who": s.who, "opens_at": s.opens_at.to_string(), "state": s.state }))
                .collect();
            let doc = json!({
                "bundle": self.bundle.to_string(),
                "rollout": r.to_string(),
                "signed": r,
                "published_at": at.to_string(),
                "paused_at": r.paused_at.map(|t| t.to_string()),
                "reach": r.reach(),
                "stages": rows,
            });
            println!("{doc}");
            return Ok(());
        }
        println!("{}: rollout {r}", self.bundle);
        println!("published {at}");
        if let Some(paused) = r.paused_at {
            println!("paused since {paused}: no wave opens after it until `palier-server rollout resume {}`", self.bundle);
        }
        println!("{:<8} {:<32} {:<22} STATE", "STAGE", "WHO", "OPENS");
        for s in &stages {
            println!("{:<8} {:<32} {:<22} {}", s.name, s.who, s.opens_at.to_string(), s.state);
        }
        if r.reach() < 100 {
            println!("the waves stop at {}% of the fleet: the other platforms do not take it until the rollout is widened", r.reach());
        }
        Ok(())
    }
}

#[derive(Debug, Parser)]
pub struct DefaultArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The default rollout, or `none` to remove it; without it, print the current one.
    spec: Option<RolloutArg>,
}

impl DefaultArgs {
    fn run(self) -> Result<()> {
        let paths = self.repo.paths();
        paths.require()?;
        let mut settings = Settings::load(&paths)?;
        let Some(spec) = self.spec else {
            match settings.default_rollout()? {
                Some(r) => println!("default rollout: {r}"),
                None => println!("no default rollout: publish applies none unless --rollout says so"),
            }
            return Ok(());
        };
        let wanted = spec.into_option().map(|r| r.to_string());
        if settings.default_rollout == wanted {
            println!("default rollout already {}; nothing written", wanted.as_deref().unwrap_or("none"));
            return Ok(());
        }
        settings.default_rollout = wanted;
        settings.save(&paths)?;
        println!("default rollout: {}", settings.default_rollout.as_deref().unwrap_or("none"));
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_argument_takes_none_or_a_spec() {
        assert_eq!("none".parse::<RolloutArg>().unwrap(), RolloutArg::None);
        assert!(matches!("24h=100%".parse::<RolloutArg>().unwrap(), RolloutArg::Spec(_)));
        assert!("nothing".parse::<RolloutArg>().unwrap_err().to_string().contains("for example canary="));
    }

    #[test]
    fn stages_say_when_each_opens_and_whether_it_is_open() {
        let mut r = Rollout::parse("canary=univ-x,univ-y; 24h=10%; 48h=100%").unwrap();
        let published = ts("2026-12-01T09:00:00Z");
        let s = stages(&r, published, ts("2026-12-02T10:00:00Z"));
        let got: Vec<(String, String, String, &str)> = s.iter().map(|s| (s.name.clone(), s.who.clone(), s.opens_at.to_string(), s.state)).collect();
        assert_eq!(
            got,
            [
                ("canary".into(), "univ-x,univ-y".into(), "2026-12-01T09:00:00Z".into(), "open"),
                ("wave 1".into(), "10% of the fleet".into(), "2026-12-02T09:00:00Z".into(), "open"),
                ("wave 2".into(), "100% of the fleet".into(), "2026-12-03T09:00:00Z".into(), "pending"),
            ]
        );
        r.paused_at = Some(ts("2026-12-02T12:00:00Z"));
        assert_eq!(stages(&r, published, ts("2026-12-04T00:00:00Z"))[2].state, "paused");
    }
}
