//! `/` and `/api/v1/overview`: the fleet at a glance.
//!
//! Platforms are counted by their last outcome; those with a problem come first, ranked:
//! refusing the repository, last intervention failed, rolled back, contract missing or not
//! what the agent runs, stale (not seen for three `--poll-interval`s), never seen. Then the
//! bundles rolling out now with their progress, every platform and every bundle (filtered by
//! the address, 50 a page), auto-halts, refused tokens and open fix requests.

use std::collections::BTreeMap;
use std::fmt::Write;

use jiff::Timestamp;
use serde::Serialize;

use super::Ctx;
use super::html::{self, Paged, bundle_key_link, bundle_link, class, dash, escape, platform_link, seconds_text};
use palier_bundle::BundleRef;

use crate::fleet::State;
use crate::repo::Published;
use crate::store::{AutoHalt, Platform};

/// The last outcomes a platform can report, then `none` (no intervention reported yet).
pub(crate) const OUTCOMES: [&str; 6] = ["applied", "rolled-back", "failed", "postponed", "recovered", "none"];

/// What can be wrong with a platform, most urgent first: the `?state=` values that select them.
pub(crate) const PROBLEMS: [&str; 6] = ["repository-error", "failed", "rolled-back", "contract", "stale", "never-seen"];

/// One thing wrong with a platform.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Problem {
    /// One of [`PROBLEMS`].
    pub kind: &'static str,
    pub text: String,
}

/// One platform in a list.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlatformRow {
    pub name: String,
    /// The registered contract in words (`2/1 components mod_quiz`).
    pub contract: Option<String>,
    /// The levels the agent reports it runs with.
    pub improvement_level: Option<u8>,
    pub stability_level: Option<u8>,
    pub installed: Vec<String>,
    pub next_intervention: Option<String>,
    pub last_outcome: Option<String>,
    pub last_seen: Option<String>,
    pub problems: Vec<Problem>,
}

/// A bundle being taken by the fleet: how many of the platforms that admit it have it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RollingOut {
    pub bundle: String,
    pub component: String,
    pub published_at: String,
    pub installed: usize,
    pub admitted: usize,
    pub rolled_back: u64,
    pub failed: u64,
}

/// One published bundle in the list.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BundleRow {
    pub bundle: String,
    pub component: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub validations: Vec<String>,
    pub reported_by: Vec<String>,
    pub published_at: String,
    pub installed: usize,
    pub applied: u64,
    pub rolled_back: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RefusedToken {
    pub claimed: String,
    pub count: u64,
    pub last: Timestamp,
}

/// A fix request not yet fixed; the summary for operators only.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FixRequestRow {
    pub id: String,
    pub platform: String,
    pub component: String,
    pub summary: Option<String>,
    pub bundle: Option<String>,
    pub status: String,
    pub created_at: String,
}

/// The overview, as `/api/v1/overview` answers it and `/` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Overview {
    pub now: Timestamp,
    pub timezone: String,
    /// Seconds without a status after which a platform is stale.
    pub stale_after_s: i64,
    /// `None`: the server runs without a store.
    pub platforms: Option<usize>,
    pub by_outcome: BTreeMap<&'static str, usize>,
    pub by_problem: BTreeMap<&'static str, usize>,
    /// Platforms with a problem, most urgent first (the first page; `?state=problem` lists all).
    pub attention: Paged<PlatformRow>,
    pub rolling_out: Vec<RollingOut>,
    /// The platforms the filters select, by name.
    pub list: Paged<PlatformRow>,
    /// A `state` filter that names nothing known, if given.
    pub unknown_state: Option<String>,
    pub bundles: Paged<BundleRow>,
    pub repository_error: Option<String>,
    pub auto_halts: Vec<AutoHalt>,
    pub refused_tokens: Vec<RefusedToken>,
    pub fix_requests: Paged<FixRequestRow>,
}

/// What is wrong with a platform, most urgent first; empty when nothing is.
pub(crate) fn problems(p: &Platform, ctx: &Ctx) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut add = |kind, text: String| out.push(Problem { kind, text });
    if let Some(e) = &p.repository_error {
        add("repository-error", format!("cannot verify the repository: {e}"));
    }
    match p.last_outcome.as_deref() {
        Some("failed") => add("failed", "last intervention failed".into()),
        Some("rolled-back") => add("rolled-back", "last intervention rolled back".into()),
        _ => {}
    }
    if p.contract.is_none() {
        add("contract", "no contract registered (palier-server platform set NAME --improvement N --stability N)".into());
    }
    let mismatch = p.contract_mismatch();
    if !mismatch.is_empty() {
        add("contract", format!("contract mismatch: the agent runs {}", mismatch.join("; ")));
    }
    match p.last_seen.as_deref().and_then(|t| t.parse::<Timestamp>().ok()) {
        Some(seen) if ctx.times.now.duration_since(seen) > ctx.stale_after => {
            add("stale", format!("not seen for {} (stale after {})", html::span_words(ctx.times.now.duration_since(seen)), html::span_words(ctx.stale_after)))
        }
        Some(_) => {}
        None => add("never-seen", "never seen".into()),
    }
    out
}

fn rank(problems: &[Problem]) -> usize {
    problems.iter().filter_map(|p| PROBLEMS.iter().position(|k| *k == p.kind)).min().unwrap_or(PROBLEMS.len())
}

fn row(p: &Platform, ctx: &Ctx) -> PlatformRow {
    PlatformRow {
        name: p.name.clone(),
        contract: p.contract.as_ref().map(|c| c.describe()),
        improvement_level: p.improvement_level,
        stability_level: p.stability_level,
        installed: p.installed.iter().map(|i| format!("{}@{}", i.id, i.version)).collect(),
        next_intervention: p.next_intervention.as_deref().map(seconds_text),
        last_outcome: p.last_outcome.clone(),
        last_seen: p.last_seen.as_deref().map(seconds_text),
        problems: problems(p, ctx),
    }
}

/// Whether a platform takes bundles of `component`: its registered contract takes every
/// component (improvement 3) or names it, or it has a bundle of it installed.
fn takes_component(p: &Platform, component: &str, ctx: &Ctx) -> bool {
    p.contract.as_ref().is_some_and(|c| c.improvement == 3 || c.components.iter().any(|x| x == component))
        || p.installed.iter().any(|i| ctx.repo.bundles.iter().any(|b| b.meta.manifest.id.as_str() == i.id && b.meta.manifest.component.as_str() == component))
}

/// Whether a platform row is in the `state` selected: an outcome, a problem, or `problem`.
fn in_state(r: &PlatformRow, state: &str) -> bool {
    match state {
        "problem" => !r.problems.is_empty(),
        "none" => r.last_outcome.is_none(),
        s if OUTCOMES.contains(&s) && r.last_outcome.as_deref() == Some(s) => true,
        s => r.problems.iter().any(|p| p.kind == s),
    }
}

fn known_state(state: &str) -> bool {
    state == "problem" || OUTCOMES.contains(&state) || PROBLEMS.contains(&state)
}

/// `(installed, admitted)` of a bundle from the fleet view's counts: the platforms that have
/// it, and those whose plan takes it (installed, scheduled, waiting, needing an
/// intervention, held, rolled back or failed; not excluded by their contract, skipped for
/// another reason, nor without a plan).
fn progress(counts: &BTreeMap<State, usize>) -> (usize, usize) {
    let n = |s: State| counts.get(&s).copied().unwrap_or(0);
    let admitted = counts.iter().filter(|(s, _)| !matches!(s, State::Excluded | State::Skipped | State::Unknown)).map(|(_, n)| n).sum();
    (n(State::Installed), admitted)
}

pub(crate) fn build(ctx: &Ctx) -> Overview {
    let f = &ctx.filters;
    let platforms = ctx.fleet.platforms();
    let rows: Vec<PlatformRow> = platforms.iter().map(|p| row(p, ctx)).collect();
    let mut by_outcome: BTreeMap<&'static str, usize> = OUTCOMES.iter().map(|o| (*o, 0)).collect();
    let mut by_problem: BTreeMap<&'static str, usize> = PROBLEMS.iter().map(|o| (*o, 0)).collect();
    for r in &rows {
        let outcome = OUTCOMES.iter().find(|o| r.last_outcome.as_deref() == Some(**o)).copied().unwrap_or("none");
        *by_outcome.entry(outcome).or_default() += 1;
        for kind in PROBLEMS {
            if r.problems.iter().any(|p| p.kind == kind) {
                *by_problem.entry(kind).or_default() += 1;
            }
        }
    }
    let mut attention: Vec<&PlatformRow> = rows.iter().filter(|r| !r.problems.is_empty()).collect();
    attention.sort_by(|a, b| (rank(&a.problems), &a.name).cmp(&(rank(&b.problems), &b.name)));
    let attention: Vec<PlatformRow> = attention.into_iter().cloned().collect();

    let unknown_state = f.state.clone().filter(|s| !known_state(s));
    let selected: Vec<PlatformRow> = rows
        .iter()
        .zip(platforms)
        .filter(|(r, p)| {
            f.matches(&r.name) && f.state.as_deref().is_none_or(|s| in_state(r, s)) && f.component.as_deref().is_none_or(|c| takes_component(p, c, ctx))
        })
        .map(|(r, _)| r.clone())
        .collect();

    let mut rolling_out = Vec::new();
    let mut bundles = Vec::new();
    let mut published: Vec<&Published> = ctx.repo.bundles.iter().collect();
    published.sort_by(|a, b| (&b.meta.published_at, &a.meta.manifest.id).cmp(&(&a.meta.published_at, &b.meta.manifest.id)));
    for b in published {
        let m = &b.meta.manifest;
        let key = format!("{}@{}", m.id, m.version);
        let bundle = BundleRef { id: m.id.clone(), version: m.version.clone() };
        let (installed, admitted) = ctx.fleet.fleet.as_ref().map_or((0, 0), |f| progress(&f.counts(&bundle)));
        let o = ctx.fleet.outcomes.get(&key).cloned().unwrap_or_default();
        let component_ok = f.component.as_deref().is_none_or(|c| c == m.component.as_str());
        if b.meta.state == palier_bundle::BundleState::Active && installed < admitted && component_ok {
            rolling_out.push(RollingOut {
                bundle: key.clone(),
                component: m.component.to_string(),
                published_at: seconds_text(&b.meta.published_at),
                installed,
                admitted,
                rolled_back: o.rolled_back,
                failed: o.failed,
            });
        }
        if component_ok && (f.matches(&key) || f.q.as_deref().is_some_and(|_| selected.iter().any(|r| r.installed.contains(&key)))) {
            let mut validations: Vec<String> = Vec::new();
            if b.meta.validations.alpha {
                validations.push("alpha".into());
            }
            validations.extend(b.meta.validations.datasets.iter().map(|d| format!("dataset {d}")));
            bundles.push(BundleRow {
                bundle: key,
                component: m.component.to_string(),
                state: b.meta.state.as_str().to_owned(),
                state_reason: b.meta.state_reason.clone(),
                validations,
                reported_by: b.meta.reported_by.iter().map(ToString::to_string).collect(),
                published_at: seconds_text(&b.meta.published_at),
                installed,
                applied: o.applied,
                rolled_back: o.rolled_back,
                failed: o.failed,
            });
        }
    }

    let fix_requests: Vec<FixRequestRow> = ctx
        .fleet
        .fix_requests
        .iter()
        .map(|r| FixRequestRow {
            id: r.id.clone(),
            platform: r.platform.clone(),
            component: r.component.clone(),
            summary: ctx.operator.then(|| r.summary.clone()),
            bundle: r.bundle.clone(),
            status: r.status.clone(),
            created_at: r.created_at.clone(),
        })
        .collect();
    Overview {
        now: html::whole_seconds(ctx.times.now),
        timezone: ctx.times.tz.iana_name().unwrap_or("UTC").to_owned(),
        stale_after_s: ctx.stale_after.as_secs(),
        platforms: ctx.fleet.fleet.as_ref().map(|f| f.platforms.len()),
        by_outcome,
        by_problem,
        attention: Paged::of(&attention, 1),
        rolling_out,
        list: Paged::of(&selected, f.page),
        unknown_state,
        bundles: Paged::of(&bundles, f.bundle_page),
        repository_error: ctx.repo.error.clone(),
        auto_halts: ctx.fleet.auto_halts.clone(),
        refused_tokens: ctx.failed_tokens.iter().map(|(k, v)| RefusedToken { claimed: k.clone(), count: v.count, last: html::whole_seconds(v.last) }).collect(),
        fix_requests: Paged::of(&fix_requests, f.fix_page),
    }
}

fn outcome_label(o: &str) -> &str {
    match o {
        "rolled-back" => "rolled back",
        "none" => "no outcome yet",
        o => o,
    }
}

fn problem_label(p: &str) -> &str {
    match p {
        "repository-error" => "refusing the repository",
        "failed" => "last failed",
        "rolled-back" => "last rolled back",
        "contract" => "contract problem",
        "stale" => "stale",
        _ => "never seen",
    }
}

/// A platform's problems as lines of a cell.
pub(crate) fn problem_cell(problems: &[Problem]) -> String {
    if problems.is_empty() {
        return html::muted_dash();
    }
    problems.iter().map(|p| format!("<span class=\"problem {}\">{}</span>", class("problem", p.kind), escape(&p.text))).collect::<Vec<_>>().join("<br>")
}

fn outcome_cell(o: Option<&str>) -> String {
    match o {
        Some(o) => format!("<span class=\"{}\">{}</span>", class("outcome", o), escape(o)),
        None => html::muted_dash(),
    }
}

pub(crate) fn render(ctx: &Ctx, o: &Overview) -> String {
    let f = &ctx.filters;
    let t = &ctx.times;
    let mut h = String::with_capacity(64 * 1024);
    if let Some(e) = &o.repository_error {
        let _ = writeln!(h, "<p class=\"problem\">The repository could not be read: {}</p>", escape(e));
    }
    let Some(total) = o.platforms else {
        h.push_str("<p class=\"muted\">No control-plane store (serve --db FILE): no platform to show.</p>\n");
        render_bundles(&mut h, ctx, o);
        return html::page("palier fleet", t, f, &h);
    };

    // Counts: every box a link to the platforms it counts.
    h.push_str("<div class=\"counts\" id=\"outcomes\">");
    let _ = write!(h, "<a class=\"count\" href=\"/{}\"><b>{total}</b> platforms</a>", f.with_state(None));
    for (outcome, n) in &o.by_outcome {
        let bad = matches!(*outcome, "failed" | "rolled-back") && *n > 0;
        let _ = write!(
            h,
            "<a class=\"count{}\" id=\"count-{outcome}\" href=\"/{}\"><b>{n}</b> {}</a>",
            if bad { " bad" } else { "" },
            f.with_state(Some(outcome)),
            outcome_label(outcome)
        );
    }
    h.push_str("</div>\n<div class=\"counts\" id=\"problems\">");
    for (problem, n) in &o.by_problem {
        if matches!(*problem, "failed" | "rolled-back") {
            continue;
        }
        let _ = write!(
            h,
            "<a class=\"count{}\" id=\"count-{problem}\" href=\"/{}\"><b>{n}</b> {}</a>",
            if *n > 0 { " bad" } else { "" },
            f.with_state(Some(problem)),
            problem_label(problem)
        );
    }
    h.push_str("</div>\n");

    // Who needs attention, most urgent first.
    h.push_str("<h2>Needs attention</h2>\n");
    if o.attention.total == 0 {
        h.push_str("<p class=\"muted\">Nothing: every platform reports, verifies the repository and applied its last intervention.</p>\n");
    } else {
        h.push_str("<table id=\"attention\"><thead><tr><th>Platform</th><th>Problems</th><th>Last outcome</th><th>Last seen</th></tr></thead><tbody>\n");
        for r in &o.attention.rows {
            let _ = writeln!(
                h,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                class("rank", r.problems.first().map_or("", |p| p.kind)),
                platform_link(&r.name),
                problem_cell(&r.problems),
                outcome_cell(r.last_outcome.as_deref()),
                t.cell(r.last_seen.as_deref()),
            );
        }
        h.push_str("</tbody></table>\n");
        if o.attention.total > o.attention.rows.len() {
            let _ = writeln!(h, "<p class=\"pager\">{} more: <a href=\"/?state=problem\">every platform with a problem</a></p>", o.attention.total - o.attention.rows.len());
        }
    }

    // Rolling out now.
    h.push_str("<h2>Rolling out now</h2>\n");
    if o.rolling_out.is_empty() {
        h.push_str("<p class=\"muted\">No active bundle is waiting for a platform that admits it.</p>\n");
    } else {
        h.push_str(
            "<table id=\"rolling-out\"><thead><tr><th>Bundle</th><th>Component</th><th>Published</th><th>Installed / admitted</th>\
             <th>Rolled back</th><th>Failed</th></tr></thead><tbody>\n",
        );
        for r in &o.rolling_out {
            #[allow(clippy::cast_precision_loss)]
            let pct = if r.admitted == 0 { 0.0 } else { 100.0 * r.installed as f64 / r.admitted as f64 };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"bar\"><span style=\"width:{pct:.0}%\"></span></span>{} / {}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                bundle_key_link(&r.bundle),
                escape(&r.component),
                t.cell(Some(&r.published_at)),
                r.installed,
                r.admitted,
                r.rolled_back,
                r.failed
            );
        }
        h.push_str("</tbody></table>\n");
    }

    // Every platform the filters select.
    h.push_str("<h2>Platforms</h2>\n");
    if let Some(s) = &o.unknown_state {
        let mut known: Vec<&str> = vec!["problem"];
        known.extend(OUTCOMES.iter().chain(PROBLEMS.iter()).filter(|s| !matches!(**s, "failed" | "rolled-back")).copied());
        known.extend(["failed", "rolled-back"]);
        known.sort_unstable();
        let _ = writeln!(h, "<p class=\"problem\">Unknown state &quot;{}&quot;: use one of {}.</p>", escape(s), known.join(", "));
    }
    if f.any() {
        let mut said = Vec::new();
        if let Some(s) = &f.state {
            said.push(format!("state {}", escape(s)));
        }
        if let Some(c) = &f.component {
            said.push(format!("taking component {}", escape(c)));
        }
        if let Some(q) = &f.q {
            said.push(format!("matching \u{201c}{}\u{201d}", escape(q)));
        }
        let _ = writeln!(h, "<p>{} of {total} platforms: {} (<a href=\"/\">show all</a>).</p>", o.list.total, said.join(", "));
    } else {
        let _ = writeln!(h, "<p>{total} platforms, {} with a problem.</p>", o.attention.total);
    }
    if total == 0 {
        h.push_str("<p class=\"muted\">No platform registered.</p>\n");
    } else {
        let pager = o.list.pager(|n| format!("/{}", f.with(|f| f.page = n)));
        h.push_str(&pager);
        h.push_str(
            "<table id=\"platforms\"><thead><tr><th>Platform</th><th>Improvement</th><th>Stability</th><th>Contract</th><th>Installed</th>\
             <th>Next intervention</th><th>Last outcome</th><th>Last seen</th><th>Problems</th></tr></thead><tbody>\n",
        );
        for r in &o.list.rows {
            let level = |l: Option<u8>| l.map(|l| l.to_string());
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                platform_link(&r.name),
                dash(level(r.improvement_level).as_deref()),
                dash(level(r.stability_level).as_deref()),
                dash(r.contract.as_deref()),
                installed_cell(r),
                t.cell(r.next_intervention.as_deref()),
                outcome_cell(r.last_outcome.as_deref()),
                t.cell(r.last_seen.as_deref()),
                problem_cell(&r.problems),
            );
        }
        h.push_str("</tbody></table>\n");
        h.push_str(&pager);
    }

    render_bundles(&mut h, ctx, o);

    if !o.auto_halts.is_empty() {
        h.push_str(
            "<h2>Auto-halts</h2>\n<table id=\"auto-halts\"><thead><tr><th>Bundle</th><th>Halted at</th><th>Platforms</th><th>Receipts</th></tr></thead><tbody>\n",
        );
        for a in &o.auto_halts {
            let receipts: Vec<String> = a.receipts.iter().map(|r| receipt_link(r)).collect();
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                bundle_key_link(&a.bundle),
                t.cell(Some(&a.halted_at)),
                a.platforms.iter().map(|p| platform_link(p)).collect::<Vec<_>>().join(", "),
                receipts.join("<br>"),
            );
        }
        h.push_str("</tbody></table>\n");
    }

    if !o.refused_tokens.is_empty() {
        h.push_str(
            "<h2>Refused tokens</h2>\n<p class=\"muted\">API requests refused for a wrong token, by the platform name they claimed \
             (X-Palier-Platform) or, without one, by source address.</p>\n\
             <table id=\"refused-tokens\"><thead><tr><th>Claimed platform or source</th><th>Refusals</th><th>Last</th></tr></thead><tbody>\n",
        );
        for r in &o.refused_tokens {
            let _ = writeln!(h, "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>", escape(&r.claimed), r.count, t.html(r.last));
        }
        h.push_str("</tbody></table>\n");
    }

    h.push_str("<h2>Open fix requests</h2>\n");
    if o.fix_requests.total == 0 {
        h.push_str("<p class=\"muted\">None.</p>\n");
    } else {
        if !ctx.operator {
            h.push_str("<p class=\"muted\">Summaries are shown to operators only (serve --admin-token-file).</p>\n");
        }
        let pager = o.fix_requests.pager(|n| format!("/{}", f.with(|f| f.fix_page = n)));
        h.push_str(&pager);
        h.push_str(
            "<table id=\"fix-requests\"><thead><tr><th>Id</th><th>Platform</th><th>Component</th><th>Summary</th><th>Bundle</th>\
             <th>Status</th><th>Filed</th></tr></thead><tbody>\n",
        );
        for r in &o.fix_requests.rows {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.id),
                platform_link(&r.platform),
                escape(&r.component),
                dash(r.summary.as_deref()),
                r.bundle.as_deref().map_or_else(html::muted_dash, bundle_key_link),
                escape(&r.status),
                t.cell(Some(&r.created_at)),
            );
        }
        h.push_str("</tbody></table>\n");
    }
    html::page("palier fleet", t, f, &h)
}

/// How many bundles a platform has installed, a link to its page (which lists them); the
/// bundle itself when it is one.
fn installed_cell(r: &PlatformRow) -> String {
    match r.installed.as_slice() {
        [] => html::muted_dash(),
        [one] => bundle_key_link(one),
        many => format!("<a href=\"/platforms/{}\">{} bundles</a>", html::encode(&r.name), many.len()),
    }
}

/// `platform/receipt-id` as a link to the receipt on the platform's page.
pub(crate) fn receipt_link(r: &str) -> String {
    match r.split_once('/') {
        Some((p, id)) => format!("<a href=\"/platforms/{}#receipt-{}\">{}</a>", html::encode(p), html::encode(id), escape(r)),
        None => escape(r),
    }
}

fn render_bundles(h: &mut String, ctx: &Ctx, o: &Overview) {
    let (f, t) = (&ctx.filters, &ctx.times);
    h.push_str("<h2>Bundles</h2>\n");
    if ctx.repo.bundles.is_empty() {
        h.push_str("<p class=\"muted\">No bundle published.</p>\n");
        return;
    }
    if o.bundles.total == 0 {
        h.push_str("<p class=\"muted\">No bundle matches the filters.</p>\n");
        return;
    }
    let pager = o.bundles.pager(|n| format!("/{}", f.with(|f| f.bundle_page = n)));
    h.push_str(&pager);
    h.push_str(
        "<table id=\"bundles\"><thead><tr><th>Bundle</th><th>Component</th><th>State</th><th>Published</th><th>Validations</th><th>Reported by</th>\
         <th>Installed on</th><th>Applied</th><th>Rolled back</th><th>Failed</th></tr></thead><tbody>\n",
    );
    for b in &o.bundles.rows {
        let state_cell = match &b.state_reason {
            Some(r) => format!("<span class=\"{}\">{}</span><br><span class=\"muted\">{}</span>", class("state", &b.state), escape(&b.state), escape(r)),
            None => format!("<span class=\"{}\">{}</span>", class("state", &b.state), escape(&b.state)),
        };
        let link = match b.bundle.split_once('@') {
            Some((id, v)) => bundle_link(id, v),
            None => escape(&b.bundle),
        };
        let _ = writeln!(
            h,
            "<tr><td>{link}</td><td>{}</td><td>{state_cell}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&b.component),
            t.cell(Some(&b.published_at)),
            if b.validations.is_empty() { html::muted_dash() } else { escape(&b.validations.join(", ")) },
            if b.reported_by.is_empty() { html::muted_dash() } else { b.reported_by.iter().map(|p| platform_link(p)).collect::<Vec<_>>().join(", ") },
            b.installed,
            b.applied,
            b.rolled_back,
            b.failed,
        );
    }
    h.push_str("</tbody></table>\n");
    h.push_str(&pager);
}
