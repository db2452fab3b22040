//! `palier demo`: the whole product on one machine, in a temporary folder, in under a minute.
//!
//! A release manager's repository, three fixture Moodle sites with the contracts 1/1, 2/2 and
//! 3/3, a defect reported by one of them, and each site's agent run once an hour through a
//! simulated week (virtual time, as `palier-agent run --once --now T` does). Then, per
//! platform, in plain language: its contract, what was applied and when, the notices, the
//! level-3 backup, the automatic rollback of a broken bundle, and why everything else was
//! not applied.
//!
//! # Why in-process
//!
//! The demo links the server's and the agent's libraries and calls the functions their
//! commands are thin wrappers of (`palier_server::repo::{init, publish, update}`,
//! `palier_agent::cycle::run_once`, `palier_agent::cli::plan::make_plan`) rather than
//! spawning the `palier-server` and `palier-agent` binaries:
//!
//! - `cargo run --release -- demo` builds only the root package's binary; linking the crates
//!   makes that build include everything the demo runs, so no second binary can be missing
//!   or older than the sources, and nothing needs `cargo` at run time;
//! - the results come back typed (the cycle report, receipts, the plan with its reason
//!   codes) instead of being parsed back from text.
//!
//! The agent code that runs is the same as `run --once --now T`'s; what the demo adds is the
//! clock that says which T, and the narration.

mod explain;
mod report;
mod scenario;
mod world;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use palier_bundle::{BundleMetadata, BundleRef, Manifest, ManifestKind};

use report::{Clock, Happening};
use scenario::{Action, EVENTS, EXAMPLES, HOURS, PLATFORMS, REPORTER, ZONE};
use world::{Repository, Site};

/// `palier demo [--keep] [--dir DIR]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the demo's folder (repository, keys, sites, agent configs, receipts) and say where.
    #[arg(long)]
    pub keep: bool,
    /// Run in DIR (created if missing, must be empty) instead of a temporary folder; DIR is kept.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The folder the demo works in: a temporary one (removed at the end unless kept), or `--dir`.
enum Folder {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl Folder {
    fn open(args: &Args) -> Result<Folder> {
        let Some(dir) = &args.dir else {
            return Ok(Folder::Temp(tempfile::Builder::new().prefix("palier-demo-").tempdir().context("cannot create a temporary folder")?));
        };
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if entries.next().is_some() {
            return Err(anyhow!("--dir {}: the folder is not empty; give a new or empty folder", dir.display()));
        }
        Ok(Folder::Given(std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?))
    }

    fn path(&self) -> PathBuf {
        match self {
            Folder::Temp(t) => t.path().to_path_buf(),
            Folder::Given(p) => p.clone(),
        }
    }
}

fn example_ref(id: &str) -> Result<BundleRef> {
    let example = EXAMPLES.iter().find(|e| e.id == id).ok_or_else(|| anyhow!("the demo has no example bundle {id}"))?;
    let m = Manifest::parse(example.manifest, ManifestKind::Source).with_context(|| format!("example bundle {id}"))?;
    Ok(BundleRef { id: m.id, version: m.version })
}

async fn release_manager(repository: &Repository, action: &Action) -> Result<()> {
    match *action {
        Action::Publish { id, reported_by } => {
            let example = EXAMPLES.iter().find(|e| e.id == id).ok_or_else(|| anyhow!("the demo has no example bundle {id}"))?;
            repository.publish(example, reported_by).await?;
        }
        Action::Validate { id, alpha, datasets } => repository.validate(&example_ref(id)?, alpha, datasets).await?,
        Action::Halt { id, reason } => repository.halt(&example_ref(id)?, reason).await?,
    }
    Ok(())
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Run the demo, writing its story to `out`. An error is one line (with `{:#}`).
pub async fn run(args: &Args, out: &mut dyn Write) -> Result<()> {
    let started = std::time::Instant::now();
    let folder = Folder::open(args)?;
    let root = folder.path();
    let clock = Clock::new()?;

    writeln!(out, "palier demo: signed fix bundles, applied to three Moodle platforms as each one's contract allows")?;
    writeln!(out, "Everything runs on this machine, in {}.", root.display())?;
    writeln!(
        out,
        "{}",
        report::wrap(
            "",
            0,
            &format!(
                "The week is simulated: it starts {} ({ZONE}) and each platform's agent runs once an hour, as \
                 `palier-agent run --once --now T` does, until {}.",
                clock.short(clock.start),
                clock.short(clock.at(HOURS)?)
            )
        )
    )?;
    writeln!(out)?;

    let repository = Repository::init(&root).await?;
    let mut sites = Vec::new();
    for p in PLATFORMS {
        sites.push(Site::create(&root, p, &repository.paths)?);
    }
    writeln!(out, "THE PLATFORMS")?;
    writeln!(
        out,
        "{}",
        report::wrap(
            "",
            0,
            "Each runs a Moodle site (a generated fixture, served over HTTP) and palier-agent with its contract. A contract \
             has two levels: improvement (1-3) says WHICH fixes the platform receives, stability (1-3) WHEN and HOW they are applied."
        )
    )?;
    writeln!(
        out,
        "{}",
        report::wrap(
            "",
            0,
            "An intervention's steps: guard (the operator's hook that can say \"not now\", e.g. while a quiz is running), \
             download (checked against the signed metadata), stage (a hard-linked copy of the live code with the bundle's \
             files), swap (one atomic exchange with the live code), the upgrade and cache hooks, then the checks."
        )
    )?;
    for s in &sites {
        let p = &s.platform;
        writeln!(out, "  {}  improvement {} / stability {}   site {}   config {}", p.id, p.improvement, p.stability, s.server.url(), rel(&root, &s.config_path))?;
    }
    writeln!(out)?;

    // What the release manager publishes before the week starts (hour 0, before any agent runs).
    for e in EVENTS.iter().filter(|e| e.hour == 0) {
        release_manager(&repository, &e.action).await?;
    }
    writeln!(out, "THE BUNDLES (built, signed and published by the release manager with palier-server, {})", clock.short(clock.start))?;
    report::bundles_table(out, &repository.list().await?)?;
    writeln!(out, "  class: technical = bug or performance fix only; non-layout = new behaviour, same layout; global = may change")?;
    writeln!(out, "  layout or usage. data impact: how much it changes the database (none, minor, major, global).")?;
    writeln!(out)?;

    writeln!(out, "THE WEEK (only the hours when something happened)")?;
    writeln!(
        out,
        "{}",
        report::wrap(
            "",
            0,
            &format!(
                "This demo does not use fix requests and the control plane yet: {REPORTER}'s defect report is simulated by publishing \
                 the fix with `palier-server publish --reported-by {REPORTER}`, and the release manager halts the bundle that rolled \
                 back by hand."
            )
        )
    )?;
    let mut story: Vec<Vec<Happening>> = sites.iter().map(|_| Vec::new()).collect();
    let mut hashes: Vec<String> = sites.iter().map(Site::tree_hash).collect::<Result<_>>()?;
    for hour in 0..=HOURS {
        let now = clock.at(hour)?;
        for e in EVENTS.iter().filter(|e| e.hour == hour) {
            if hour > 0 {
                release_manager(&repository, &e.action).await?;
            }
            if !e.story.is_empty() {
                let line = format!("{}  {:<15}  ", clock.show(now), e.who);
                writeln!(out, "{}", report::wrap(&line, line.len(), e.story))?;
            }
        }
        for (i, site) in sites.iter().enumerate() {
            let before = site.notices()?;
            let cycle = palier_agent::cycle::run_once(&site.config, now)
                .await
                .map_err(|e| anyhow!("{}: agent run at {}: {}", site.platform.id, clock.short(now), palier_bundle::error::one_line(&e)))?;
            let new_notices = site.notices()?.into_iter().filter(|n| !before.contains(n)).collect();
            let happened = report::happenings(now, cycle, new_notices, || site.tree_hash(), &mut hashes[i])?;
            for h in &happened {
                let line = format!("{}  {:<15}  ", clock.show(h.at), site.platform.id);
                writeln!(out, "{}", report::wrap(&line, line.len(), &report::one_liner(&clock, h)))?;
            }
            story[i].extend(happened);
        }
    }
    writeln!(out)?;

    // Per platform: its contract, what happened, and why the rest was not applied.
    let end = clock.at(HOURS)?;
    let metas: BTreeMap<String, BundleMetadata> = repository.list().await?.into_iter().map(|m| (m.manifest.key(), m)).collect();
    let mut plans = Vec::new();
    for (site, happened) in sites.iter().zip(&story) {
        let plan = palier_agent::cli::plan::make_plan(&site.config, end)
            .await
            .map_err(|e| anyhow!("{}: plan: {}", site.platform.id, palier_bundle::error::one_line(&e)))?;
        report::platform(out, &clock, &site.platform, happened, &plan, &metas)?;
        plans.push(plan);
    }

    writeln!(out, "SUMMARY")?;
    let mut problems = Vec::new();
    for ((site, happened), plan) in sites.iter().zip(&story).zip(&plans) {
        let p = &site.platform;
        let line = format!("  {} ({}/{}) ", p.id, p.improvement, p.stability);
        writeln!(out, "{}", report::wrap(&line, line.len(), &report::summary(&clock, p, happened, plan)))?;
        problems.extend(report::expectations(p, happened));
    }
    let reported = example_ref(scenario::REPORTED_FIX)?;
    let key = format!("{}@{}", reported.id, reported.version);
    let all: Vec<(&scenario::Platform, &[Happening])> = sites.iter().zip(&story).map(|(s, h)| (&s.platform, h.as_slice())).collect();
    writeln!(
        out,
        "{}",
        report::wrap(
            "  ",
            2,
            &format!("The fix {REPORTER} reported, {key}, went live on {}: one fix, three contracts.", report::journey(&clock, &key, &all))
        )
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        report::wrap(
            "",
            0,
            "Not in this demo yet: fix requests (`palier-agent request-fix`), the control plane and its dashboard \
             (`palier-server serve`). The agents read the repository from its folder (file://), as they would from any web server."
        )
    )?;
    writeln!(out, "The demo took {:.1} s.", started.elapsed().as_secs_f64())?;

    // Stop the Moodle servers before their folder goes.
    drop(sites);
    match folder {
        Folder::Temp(t) if args.keep => {
            let kept = t.keep();
            writeln!(out, "Kept {}. To look around (within a day: the repository's signed timestamp expires then):", kept.display())?;
            writeln!(out, "  cargo run -p palier-agent -- plan --config {}/univ-b/agent.toml --now {}", kept.display(), end)?;
            writeln!(out, "  cargo run -p palier-agent -- status --config {}/univ-c/agent.toml", kept.display())?;
        }
        Folder::Temp(t) => {
            let path = t.path().to_path_buf();
            t.close().with_context(|| format!("cannot remove {}", path.display()))?;
            writeln!(out, "Removed {} (`palier demo --keep` keeps it).", path.display())?;
        }
        Folder::Given(dir) => writeln!(out, "Kept {}.", dir.display())?,
    }
    if !problems.is_empty() {
        return Err(anyhow!("the demo did not go as its story says: {}", problems.join("; ")));
    }
    Ok(())
}
