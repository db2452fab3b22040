//! What the demo prints: the week's events as they happen, then per platform what it got,
//! when, and why not the rest; and the checks that the story went as told.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result, anyhow};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use palier_agent::cycle::{CycleReport, Notice};
use palier_agent::receipt::{Outcome, Receipt};
use palier_bundle::BundleMetadata;
use palier_policy::{DecisionKind, Plan};

use super::explain;
use super::scenario::{Platform, START, ZONE};

/// Width the paragraphs are wrapped to.
const WIDTH: usize = 110;

/// Wall-clock time in the platforms' zone.
pub struct Clock {
    zone: TimeZone,
    pub start: Timestamp,
}

impl Clock {
    pub fn new() -> Result<Clock> {
        let zone = TimeZone::get(ZONE).with_context(|| format!("time zone {ZONE} is not known on this machine"))?;
        let start: Timestamp = START.parse().with_context(|| format!("demo start {START}"))?;
        Ok(Clock { zone, start })
    }
    /// `hour` hours after the start.
    pub fn at(&self, hour: i64) -> Result<Timestamp> {
        self.start.checked_add(SignedDuration::from_hours(hour)).map_err(|e| anyhow!("simulated time out of range: {e}"))
    }
    /// `Tue  1 Dec 22:00` (day padded, so columns line up).
    pub fn show(&self, t: Timestamp) -> String {
        t.to_zoned(self.zone.clone()).strftime("%a %e %b %H:%M").to_string()
    }
    /// `Tue 1 Dec 22:00`, inside a sentence.
    pub fn short(&self, t: Timestamp) -> String {
        t.to_zoned(self.zone.clone()).strftime("%a %-d %b %H:%M").to_string()
    }
}

/// Something that happened on a platform, at a simulated instant.
#[derive(Debug)]
pub struct Happening {
    pub at: Timestamp,
    pub what: What,
}

#[derive(Debug)]
pub enum What {
    Notice(Notice),
    /// An intervention (or a rollback during the watch, or a recovery), and whether the live
    /// code tree was afterwards byte for byte the one before it.
    Intervention { receipt: Box<Receipt>, tree_unchanged: bool },
    Waiting(String),
}

/// What one agent cycle did: the notices it posted (from the agent's notice record), its
/// receipts, and why it waited. `hash` is the live tree's digest before the cycle; it is
/// updated after each intervention.
pub fn happenings(now: Timestamp, report: CycleReport, new_notices: Vec<Notice>, mut tree_hash: impl FnMut() -> Result<String>, hash: &mut String) -> Result<Vec<Happening>> {
    let mut out: Vec<Happening> = new_notices.into_iter().map(|n| Happening { at: now, what: What::Notice(n) }).collect();
    for receipt in [report.recovered, report.watched, report.intervention].into_iter().flatten() {
        let after = tree_hash()?;
        let tree_unchanged = after == *hash;
        *hash = after;
        out.push(Happening { at: now, what: What::Intervention { receipt: Box::new(receipt), tree_unchanged } });
    }
    out.extend(report.waiting.into_iter().map(|w| Happening { at: now, what: What::Waiting(w) }));
    Ok(out)
}

/// `text` wrapped to [`WIDTH`]: the first line after `first`, the others after `indent` spaces.
pub fn wrap(first: &str, indent: usize, text: &str) -> String {
    let mut out = first.to_owned();
    let mut col = first.chars().count();
    // The first word follows `first` after one space, unless `first` ends with blanks.
    let mut line_empty = first.is_empty() || first.ends_with(' ');
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if !line_empty && col + 1 + len > WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
            line_empty = true;
        }
        if !line_empty {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += len;
        line_empty = false;
    }
    out
}

/// `text` as a paragraph of its own, wrapped to [`WIDTH`].
pub fn paragraph(out: &mut dyn Write, text: &str) -> Result<()> {
    writeln!(out, "{}", wrap("", 0, text))?;
    Ok(())
}

pub fn bundles(keys: &[String]) -> String {
    keys.join(" + ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The week's log line for a happening.
pub fn one_liner(clock: &Clock, h: &Happening) -> String {
    match &h.what {
        What::Notice(n) => format!("notice posted to users: intervention at {} for {}", clock.short(n.apply_at), bundles(&n.bundles)),
        What::Intervention { receipt: r, .. } => {
            let b = bundles(&r.bundles);
            let why = r.reason.as_deref().unwrap_or("");
            match r.outcome {
                Outcome::Applied => {
                    let how = if r.backup.is_some() { " in maintenance mode, after a full backup" } else { "" };
                    format!("APPLIED {b}{how}; {} passed", plural(r.checks.len(), "check", "checks"))
                }
                Outcome::RolledBack => format!("ROLLED BACK {b} automatically: {why}"),
                Outcome::Failed => format!("FAILED {b}, nothing changed: {why}"),
                Outcome::Postponed => format!("postponed {b}: {why}"),
                Outcome::Recovered => format!("recovered an interrupted intervention: {why}"),
            }
        }
        What::Waiting(w) => format!("waiting: {w}"),
    }
}

/// From the start of the swap to the end of the rollback, by the receipt's steps.
fn exposure_ms(r: &Receipt) -> Option<u64> {
    let swap = r.steps.iter().find(|s| s.name == "swap")?;
    let back = r.steps.iter().rev().find(|s| s.name == "rollback")?;
    let end = back.started_at.checked_add(SignedDuration::from_millis(back.duration_ms as i64)).ok()?;
    u64::try_from(end.duration_since(swap.started_at).as_millis()).ok()
}

fn millis(ms: u64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1000.0) }
}

/// The bundles table, as the repository holds them.
pub fn bundles_table(out: &mut dyn Write, metas: &[BundleMetadata]) -> Result<()> {
    let rows: Vec<[String; 6]> = metas
        .iter()
        .map(|m| {
            let v = &m.validations;
            let validated = match (v.alpha, v.datasets.len()) {
                (false, _) => "not yet".to_owned(),
                (true, 0) => "alpha only".to_owned(),
                (true, n) => format!("alpha + {}", plural(n, "dataset", "datasets")),
            };
            let reported: Vec<&str> = m.reported_by.iter().map(|p| p.as_str()).collect();
            [
                m.manifest.key(),
                m.manifest.component.to_string(),
                m.manifest.class.to_string(),
                m.manifest.data_impact.to_string(),
                validated,
                if reported.is_empty() { "-".to_owned() } else { reported.join(", ") },
            ]
        })
        .collect();
    let header = ["bundle", "component", "class", "data impact", "validated", "reported by"].map(str::to_owned);
    let mut widths = [0; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "  {}", cells.join("  ").trim_end())?;
    }
    Ok(())
}

/// One platform's part: contract, notices, interventions, and its plan at the end.
pub fn platform(
    out: &mut dyn Write,
    clock: &Clock,
    p: &Platform,
    config: &palier_agent::Config,
    happened: &[Happening],
    plan: &Plan,
    metas: &BTreeMap<String, BundleMetadata>,
) -> Result<()> {
    use palier_agent::cli::contract;
    writeln!(out, "PLATFORM {}  (improvement {} / stability {})", p.id, p.improvement, p.stability)?;
    writeln!(out, "{}", wrap("  Which fixes it gets: ", 23, &format!("{}.", contract::improvement(config))))?;
    writeln!(out, "{}", wrap("  When and how:        ", 23, &contract::stability(config)))?;

    if p.stability >= 2 {
        writeln!(out, "  Notices posted to users (its notice hook):")?;
        let mut any = false;
        for h in happened {
            if let What::Notice(n) = &h.what {
                any = true;
                let minutes = n.apply_at.duration_since(n.posted_at).as_mins();
                let line = format!("    {}  ", clock.show(n.posted_at));
                let text = format!("\"maintenance in {minutes} minutes\" ({} h ahead), for {}", minutes / 60, bundles(&n.bundles));
                writeln!(out, "{}", wrap(&line, line.len(), &text))?;
            }
        }
        if !any {
            writeln!(out, "    none")?;
        }
    }

    writeln!(out, "  Interventions:")?;
    let mut any = false;
    for h in happened {
        let What::Intervention { receipt: r, tree_unchanged } = &h.what else { continue };
        any = true;
        let when = clock.show(h.at);
        let pad = " ".repeat(4 + when.len() + 2);
        let b = bundles(&r.bundles);
        let head = match r.outcome {
            Outcome::Applied if r.bundles.len() > 1 => format!("applied {b} (staged together, live in one swap)"),
            Outcome::Applied => format!("applied {b}"),
            Outcome::RolledBack => format!("applied {b}, then ROLLED BACK automatically"),
            Outcome::Failed => format!("FAILED {b}, nothing was changed"),
            Outcome::Postponed => format!("postponed {b}"),
            Outcome::Recovered => format!("recovered an interrupted intervention on {b}"),
        };
        writeln!(out, "{}", wrap(&format!("    {when}  "), pad.len(), &head))?;
        let steps: Vec<&str> = r.steps.iter().map(|s| s.name.as_str()).collect();
        writeln!(out, "{}", wrap(&format!("{pad}steps:"), pad.len() + 7, &steps.join(" > ")))?;
        if let Some(b) = &r.backup {
            writeln!(out, "{pad}backup, taken before any change: {}", b.dir.display())?;
            writeln!(out, "{pad}  {}, {} bytes, sha256 {}", plural(b.files as usize, "file", "files"), b.bytes, b.sha256)?;
        }
        let checks: Vec<String> = r.checks.iter().map(|c| format!("{} {}", c.path, if c.ok { "ok" } else { "FAILED" })).collect();
        if !checks.is_empty() {
            writeln!(out, "{}", wrap(&format!("{pad}checks:"), pad.len() + 8, &checks.join(", ")))?;
        }
        if r.outcome != Outcome::Applied
            && let Some(why) = &r.reason
        {
            writeln!(out, "{}", wrap(&format!("{pad}why:"), pad.len() + 5, why))?;
        }
        if r.outcome == Outcome::RolledBack {
            let live = match exposure_ms(r) {
                Some(ms) => format!("the bundle's code was live for {} in all (swap, checks, rollback);", millis(ms)),
                None => "the previous code was put back;".to_owned(),
            };
            writeln!(out, "{}", wrap(&pad, pad.len(), &format!("{live} the contract's recovery budget is 5 min")))?;
            let same = if *tree_unchanged { "byte for byte the code it ran before (same tree digest)" } else { "NOT the code it ran before" };
            writeln!(out, "{pad}the site runs {same}")?;
        }
    }
    if !any {
        writeln!(out, "    none")?;
    }

    let installed: Vec<String> = plan.bundles.iter().filter(|d| d.decision == DecisionKind::Installed).map(|d| d.key()).collect();
    writeln!(out, "  Installed at the end of the week: {}", if installed.is_empty() { "nothing".to_owned() } else { installed.join(", ") })?;
    writeln!(out, "  Not applied, and why (its plan at the end of the week, with the codes of `palier-agent plan --json`):")?;
    // Bundles with the same explanation are listed together.
    let mut groups: Vec<(Vec<String>, String)> = Vec::new();
    for d in plan.bundles.iter().filter(|d| d.decision != DecisionKind::Installed) {
        let why = if d.decision == DecisionKind::Eligible {
            match (&d.apply_at, &d.notice_at) {
                (Some(a), Some(n)) => format!("due on {} (notice {}) [eligible]", clock.short(a.timestamp()), clock.short(n.timestamp())),
                (Some(a), None) => format!("due on {} [eligible]", clock.short(a.timestamp())),
                _ => format!("{} [eligible]", d.detail.clone().unwrap_or_default()),
            }
        } else {
            explain::why_not(p, d, metas.get(&d.key()))
        };
        match groups.iter_mut().find(|(_, w)| *w == why) {
            Some((keys, _)) => keys.push(d.key()),
            None => groups.push((vec![d.key()], why)),
        }
    }
    if groups.is_empty() {
        writeln!(out, "    nothing: every bundle in the repository is installed")?;
    }
    for (keys, why) in groups {
        writeln!(out, "{}", wrap("    ", 4, &keys.join(", ")))?;
        writeln!(out, "{}", wrap("        ", 8, &why))?;
    }
    writeln!(out)?;
    Ok(())
}

fn receipts(happened: &[Happening], outcome: Outcome) -> Vec<(Timestamp, &Receipt)> {
    happened
        .iter()
        .filter_map(|h| match &h.what {
            What::Intervention { receipt, .. } if receipt.outcome == outcome => Some((h.at, receipt.as_ref())),
            _ => None,
        })
        .collect()
}

/// One sentence per platform.
pub fn summary(clock: &Clock, p: &Platform, happened: &[Happening], plan: &Plan) -> String {
    let notices = happened.iter().filter(|h| matches!(h.what, What::Notice(_))).count();
    let mut parts = Vec::new();
    if p.stability >= 2 {
        parts.push(plural(notices, "notice", "notices"));
    }
    for (at, r) in receipts(happened, Outcome::Applied) {
        let how = match p.stability {
            1 => "as soon as it was due",
            2 => "in its window",
            _ => "in its calendar slot, in maintenance mode after a backup,",
        };
        parts.push(format!("applied {} {how} on {}", plural(r.bundles.len(), "bundle", "bundles"), clock.short(at)));
    }
    let mut rolled: Vec<String> = receipts(happened, Outcome::RolledBack).iter().map(|(_, r)| bundles(&r.bundles)).collect();
    rolled.dedup();
    for b in rolled {
        parts.push(format!("rolled back {b} automatically"));
    }
    if parts.is_empty() {
        parts.push("nothing applied".to_owned());
    }
    let not_applied = plan.bundles.iter().filter(|d| !matches!(d.decision, DecisionKind::Installed)).count();
    parts.push(format!("{} not applied, each with its reason", plural(not_applied, "bundle", "bundles")));
    format!("{}.", parts.join("; "))
}

/// When the bundle `key` went live on each platform.
pub fn journey(clock: &Clock, key: &str, all: &[(&Platform, &[Happening])]) -> String {
    let mut parts = Vec::new();
    for (p, happened) in all {
        let when = receipts(happened, Outcome::Applied).into_iter().find(|(_, r)| r.bundles.iter().any(|b| b == key)).map(|(at, _)| at);
        parts.push(match when {
            Some(at) => format!("{} on {}", p.id, clock.short(at)),
            None => format!("{} not yet", p.id),
        });
    }
    parts.join(", ")
}

/// What the story promises, checked: the demo fails (exit 1) rather than tell a wrong story.
pub fn expectations(p: &Platform, happened: &[Happening]) -> Vec<String> {
    let applied = receipts(happened, Outcome::Applied);
    let rolled = receipts(happened, Outcome::RolledBack);
    let has = |list: &[(Timestamp, &Receipt)], id: &str| list.iter().any(|(_, r)| r.bundles.iter().any(|b| b.starts_with(&format!("{id}@"))));
    let notices = happened.iter().any(|h| matches!(h.what, What::Notice(_)));
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            problems.push(format!("{}: {what}", p.id));
        }
    };
    check(
        happened.iter().all(|h| !matches!(&h.what, What::Intervention { receipt, tree_unchanged: false } if receipt.outcome == Outcome::RolledBack)),
        "a rollback left a different code tree",
    );
    match p.stability {
        1 => check(has(&applied, "mod_quiz-timer-drift"), "its reported fix was not applied"),
        2 => {
            check(notices, "no notice was posted");
            check(has(&applied, "mod_quiz-timer-drift") && has(&applied, "mod_assign-grading-speedup"), "its technical bundles were not applied");
            check(has(&rolled, "mod_quiz-broken-login"), "the broken bundle was not rolled back");
        }
        _ => {
            check(notices, "no notice was posted");
            check(applied.iter().any(|(_, r)| r.backup.is_some()), "nothing was applied with a backup");
        }
    }
    problems
}
