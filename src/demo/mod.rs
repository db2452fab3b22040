//! `palier demo`: the whole product on one machine, in a temporary folder, in under a minute.
//!
//! A release manager's repository, the control plane serving it (`palier-server serve --db`
//! on a free loopback port), three fixture Moodle sites with the contracts 1/1, 2/2 and 3/3,
//! a fix request filed from one of them, and each site's agent run once an hour through a
//! simulated week (virtual time, as `palier-agent run --once --now T` does), reading the
//! repository over HTTP and sending its receipts to the control plane. Then, per platform,
//! in plain language: its contract, what was applied and when, the notices, the level-3
//! backup, the automatic rollback of a broken bundle (which the control plane then halts for
//! everyone), and why everything else was not applied. It ends with the dashboard's address.
//!
//! # What runs where
//!
//! The control plane is a process of its own: this binary again, as the hidden `palier
//! server serve ...`, which is `palier-server`'s command line (so `palier demo --keep` can
//! leave it running, and the agents talk to it over real HTTP). The release manager's
//! commands and the agents' cycles run in this process, through the functions the
//! `palier-server` and `palier-agent` commands are thin wrappers of
//! (`palier_server::{repo, release}`, `palier_agent::cycle::run_once`,
//! `palier_agent::report::request_fix`, `palier_agent::cli::plan::make_plan`):
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
use palier_bundle::{BundleMetadata, BundleRef, BundleState, Manifest, ManifestKind};

use report::{Clock, Happening};
use scenario::{Action, EVENTS, Event, EXAMPLES, HOURS, PLATFORMS, REPORT_COMPONENT, REPORT_SUMMARY, REPORTER, ZONE};
use world::{ControlPlane, HALT_THRESHOLD, Repository, Site};

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

/// Do `event`'s action, and say what the week's log tells of it, with who did it: the
/// event's sentence, or for the fix request one with the id the control plane gave it.
async fn perform(repository: &Repository, control: &ControlPlane, sites: &[Site], event: &Event) -> Result<Option<(&'static str, String)>> {
    match event.action {
        Action::RequestFix => {
            let site = sites.iter().find(|s| s.platform.id == REPORTER).ok_or_else(|| anyhow!("the demo has no platform {REPORTER}"))?;
            let fr = palier_agent::report::request_fix(&site.config, REPORT_COMPONENT, REPORT_SUMMARY, None)
                .await
                .map_err(|e| anyhow!("{REPORTER}: request-fix: {}", palier_bundle::error::one_line(&e)))?;
            return Ok(Some((
                event.who,
                format!(
                    "reports a defect from its platform (`palier-agent request-fix --component {REPORT_COMPONENT} --summary \"{REPORT_SUMMARY}\"`): \
                     the control plane files it as {} ({}).",
                    fr.id, fr.status
                ),
            )));
        }
        Action::Publish { id } => {
            let example = EXAMPLES.iter().find(|e| e.id == id).ok_or_else(|| anyhow!("the demo has no example bundle {id}"))?;
            repository.publish(example, &control.store).await?;
        }
        Action::Validate { id, alpha, datasets } => repository.validate(&example_ref(id)?, alpha, datasets).await?,
    }
    Ok((!event.story.is_empty()).then(|| (event.who, event.story.to_owned())))
}

/// The bundles the signed metadata says are halted, with why.
async fn halted(repository: &Repository) -> Result<BTreeMap<String, String>> {
    Ok(repository
        .list()
        .await?
        .into_iter()
        .filter(|m| m.state == BundleState::Halted)
        .map(|m| (m.manifest.key(), m.state_reason.unwrap_or_default()))
        .collect())
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
    report::paragraph(
        out,
        &format!(
            "The week is simulated: it starts {} ({ZONE}) and each platform's agent runs once an hour, as \
             `palier-agent run --once --now T` does, until {}.",
            clock.short(clock.start),
            clock.short(clock.at(HOURS)?)
        )
    )?;
    writeln!(out)?;

    let repository = Repository::init(&root).await?;
    let control = ControlPlane::start(&root, &repository.paths)?;
    let mut sites = Vec::new();
    for p in PLATFORMS {
        sites.push(Site::create(&root, p, &control)?);
    }
    writeln!(out, "THE PLATFORMS")?;
    report::paragraph(
        out,
        "Each runs a Moodle site (a generated fixture, served over HTTP) and palier-agent with its contract. A contract \
         has two levels: improvement (1-3) says WHICH fixes the platform receives, stability (1-3) WHEN and HOW they are applied."
    )?;
    report::paragraph(
        out,
        "An intervention's steps: guard (the operator's hook that can say \"not now\", e.g. while a quiz is running), \
         download (checked against the signed metadata), free space (enough for the staged tree and the backup, \
         checked before anything changes), stage (a hard-linked copy of the live code with the bundle's \
         files), swap (one atomic exchange with the live code), the upgrade and cache hooks, then the checks."
    )?;
    for s in &sites {
        let p = &s.platform;
        writeln!(out, "  {}  improvement {} / stability {}   site {}   config {}", p.id, p.improvement, p.stability, s.server.url(), rel(&root, &s.config_path))?;
    }
    report::paragraph(
        out,
        &format!(
            "The control plane, `palier-server serve --db`, runs at {url}: the signed repository under {url}/repo/ (the agents \
             read it over HTTP and trust only the root metadata they were given), the agents' API under /api/v1/ (fix \
             requests, receipts, status; one token per platform) and the fleet dashboard at /. Its log: {log}.",
            url = control.url,
            log = rel(&root, &control.log)
        )
    )?;
    writeln!(out)?;

    // What happens before the week starts (hour 0, before any agent runs): the release
    // manager's roadmap, the fix request and its fix. Told at the start of the week.
    let mut first_hour = Vec::new();
    for e in EVENTS.iter().filter(|e| e.hour == 0) {
        first_hour.extend(perform(&repository, &control, &sites, e).await?);
    }
    writeln!(out, "THE BUNDLES (built, signed and published by the release manager with palier-server, {})", clock.short(clock.start))?;
    report::bundles_table(out, &repository.list().await?)?;
    writeln!(out, "  class: technical = bug or performance fix only; non-layout = new behaviour, same layout; global = may change")?;
    writeln!(out, "  layout or usage. data impact: how much it changes the database (none, minor, major, global).")?;
    writeln!(out)?;

    writeln!(out, "THE WEEK (only the hours when something happened)")?;
    report::paragraph(
        out,
        &format!(
            "After each intervention an agent sends its receipt to the control plane. A bundle rolled back on {HALT_THRESHOLD} \
             platform is halted for everyone by the control plane (`palier-server serve --halt-threshold {HALT_THRESHOLD}`)."
        )
    )?;
    let mut story: Vec<Vec<Happening>> = sites.iter().map(|_| Vec::new()).collect();
    let mut hashes: Vec<String> = sites.iter().map(Site::tree_hash).collect::<Result<_>>()?;
    let mut halts = halted(&repository).await?;
    let mut auto_halted = Vec::new();
    for hour in 0..=HOURS {
        let now = clock.at(hour)?;
        let mut told = if hour == 0 { std::mem::take(&mut first_hour) } else { Vec::new() };
        for e in EVENTS.iter().filter(|e| e.hour == hour && hour > 0) {
            told.extend(perform(&repository, &control, &sites, e).await?);
        }
        for (who, story) in told {
            let line = format!("{}  {:<15}  ", clock.show(now), who);
            writeln!(out, "{}", report::wrap(&line, line.len(), &story))?;
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
        // The control plane acts on the receipts as they arrive: a halt it signed shows in
        // the repository's metadata.
        let now_halted = halted(&repository).await?;
        for (key, reason) in &now_halted {
            if !halts.contains_key(key) {
                let line = format!("{}  {:<15}  ", clock.show(now), "control plane");
                let text = format!("halts {key} in the signed metadata ({reason}): no agent applies it any more.");
                writeln!(out, "{}", report::wrap(&line, line.len(), &text))?;
                auto_halted.push(key.clone());
            }
        }
        halts = now_halted;
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
        report::platform(out, &clock, &site.platform, &site.config, happened, &plan, &metas)?;
        plans.push(plan);
    }

    let mut problems = Vec::new();
    writeln!(out, "THE CONTROL PLANE (what `palier-server serve` recorded; its dashboard shows the same)")?;
    problems.extend(control_plane(out, &control, &sites, &story, &auto_halted)?);
    writeln!(out)?;

    writeln!(out, "SUMMARY")?;
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
    writeln!(out, "The demo took {:.1} s.", started.elapsed().as_secs_f64())?;

    // Stop the Moodle servers before their folder goes.
    drop(sites);
    let dashboard = format!("{}/", control.url);
    if args.keep {
        let kept = match folder {
            Folder::Temp(t) => t.keep(),
            Folder::Given(dir) => dir,
        };
        let calendar = calendar_url(&control)?;
        let pid = control.keep();
        writeln!(out, "Kept {}; the control plane is still running (process {pid}).", kept.display())?;
        writeln!(out, "  dashboard:  {dashboard}")?;
        writeln!(out, "  calendar:   {calendar}")?;
        // The agent built beside this binary (target/release/ after `cargo build --release`).
        let agent = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("palier-agent"))).unwrap_or_else(|| "target/release/palier-agent".into());
        if !agent.exists() {
            writeln!(out, "  build it:   cargo build --release -p palier-agent   (once, for the commands below)")?;
        }
        writeln!(out, "  plan:       {} plan --config {}/univ-b/agent.toml --now {end}", agent.display(), kept.display())?;
        writeln!(out, "  status:     {} status --config {}/univ-c/agent.toml", agent.display(), kept.display())?;
        writeln!(out, "  check:      {} check-config --config {}/univ-a/agent.toml", agent.display(), kept.display())?;
        writeln!(out, "  stop it:    kill {pid}")?;
    } else {
        drop(control);
        match folder {
            Folder::Temp(t) => {
                let path = t.path().to_path_buf();
                t.close().with_context(|| format!("cannot remove {}", path.display()))?;
                writeln!(out, "Removed {}.", path.display())?;
            }
            Folder::Given(dir) => writeln!(out, "Kept {}.", dir.display())?,
        }
        writeln!(out, "The dashboard was at {dashboard}; the control plane stopped with the demo (`palier demo --keep` leaves it running).")?;
    }
    if !problems.is_empty() {
        return Err(anyhow!("the demo did not go as its story says: {}", problems.join("; ")));
    }
    Ok(())
}

/// The URL of univ-b's calendar feed on the control plane (`palier-server platform calendar`).
fn calendar_url(control: &ControlPlane) -> Result<String> {
    let name = palier_bundle::PlatformId::new("univ-b")?;
    let secret = control.store.calendar_secret(&name, jiff::Timestamp::now()).map_err(|e| anyhow!(palier_server::error::one_line(&e)))?;
    Ok(format!("{}{}", control.url, palier_server::http::calendar_path(name.as_str(), &secret)))
}

/// What the control plane holds at the end of the week, told from its store and its dashboard,
/// and what of it is not as the story says.
fn control_plane(out: &mut dyn Write, control: &ControlPlane, sites: &[Site], story: &[Vec<Happening>], auto_halted: &[String]) -> Result<Vec<String>> {
    let err = |e: palier_server::Error| anyhow!(palier_server::error::one_line(&e));
    let mut problems = Vec::new();
    let fixed = example_ref(scenario::REPORTED_FIX)?;
    let fixed = format!("{}@{}", fixed.id, fixed.version);
    let requests = control.store.fix_requests_of(&palier_bundle::PlatformId::new(REPORTER)?).map_err(err)?;
    for fr in &requests {
        let bundle = fr.bundle.as_deref().unwrap_or("no bundle yet");
        let line = format!("  fix request {} ", fr.id);
        writeln!(out, "{}", report::wrap(&line, 4, &format!("from {} ({}): \"{}\" -> {bundle}, status {}", fr.platform, fr.component, fr.summary, fr.status)))?;
    }
    if !requests.iter().any(|fr| fr.bundle.as_deref() == Some(fixed.as_str())) {
        problems.push(format!("the control plane has no fix request of {REPORTER} linked to {fixed}"));
    }
    let sent: usize = story.iter().map(|h| h.iter().filter(|h| matches!(h.what, report::What::Intervention { .. })).count()).sum();
    let stored = control.store.receipt_count().map_err(err)?;
    writeln!(out, "  receipts: {stored} stored, of the {sent} the agents wrote")?;
    if stored != sent as u64 {
        problems.push(format!("the control plane stored {stored} receipts, the agents wrote {sent}"));
    }
    for (bundle, o) in control.store.bundle_outcomes().map_err(err)? {
        let line = format!("  {bundle:<36} ");
        writeln!(out, "{}", report::wrap(&line, line.len(), &format!("applied on {} platform(s), rolled back on {}, failed on {}", o.applied, o.rolled_back, o.failed)))?;
    }
    if auto_halted.is_empty() {
        problems.push("the control plane halted no bundle".to_owned());
    }
    for key in auto_halted {
        writeln!(out, "  auto-halt: {key}, after {HALT_THRESHOLD} platform's rollback receipt")?;
    }
    // univ-b's calendar, as its customer's calendar application would get it.
    let url = calendar_url(control)?;
    let path = url.strip_prefix(&control.url).unwrap_or(&url);
    let feed = control.get(path)?;
    let events = feed.matches("BEGIN:VEVENT").count();
    let line = "  calendar: ";
    writeln!(
        out,
        "{}",
        report::wrap(line, 4, &format!("{url} serves univ-b's coming interventions and notices (iCalendar, {events} event(s) as the server's clock sees them): subscribe to it in a calendar application"))
    )?;
    if !feed.starts_with("BEGIN:VCALENDAR") {
        problems.push(format!("the calendar at {url} is not an iCalendar document"));
    }
    // The dashboard, as a browser would get it.
    let page = control.get("/")?;
    let listed = sites.iter().filter(|s| page.contains(s.platform.id)).count();
    writeln!(out, "  dashboard: {}/ lists {listed} of {} platforms", control.url, sites.len())?;
    if listed != sites.len() {
        problems.push(format!("the dashboard lists {listed} of {} platforms", sites.len()));
    }
    Ok(problems)
}
