//! `/bundles/{id}/{version}`: one bundle version. Its signed metadata, validations and
//! rollout, then every platform by its state for it (installed, scheduled with dates,
//! waiting and why, excluded and why, held, rolled back or failed with a link to the
//! receipt), filtered by `?state=` and `?q=`, 50 a page.

use std::collections::BTreeMap;
use std::fmt::Write;

use palier_bundle::BundleRef;

use super::super::error::AppError;
use super::Ctx;
use super::html::{self, Paged, class, dash, escape, platform_link};
use crate::fleet::{PlatformState, RolloutView, State};
use crate::repo::Published;
use crate::store::ReceiptRef;

/// The states in the order the page lists them: what needs a look first.
const ORDER: [State; 12] = [
    State::Failed,
    State::RolledBack,
    State::Held,
    State::NeedsIntervention,
    State::Scheduled,
    State::WaitingNotice,
    State::WaitingRollout,
    State::WaitingValidation,
    State::Installed,
    State::Excluded,
    State::Skipped,
    State::Unknown,
];

fn state_rank(state: State) -> usize {
    ORDER.iter().position(|s| *s == state).unwrap_or(ORDER.len())
}

/// The published bundle named in the address, or a 404.
pub(crate) fn find<'a>(ctx: &'a Ctx, id: &str, version: &str) -> Result<&'a Published, AppError> {
    let unknown = || AppError::NotFound(format!("no bundle {id}@{version} is published (the overview lists them: /)"));
    let wanted: BundleRef = format!("{id}@{version}").parse().map_err(|_| unknown())?;
    ctx.repo.find(&wanted).ok_or_else(unknown)
}

/// The whole page.
pub(crate) fn render(ctx: &Ctx, id: &str, version: &str) -> Result<String, AppError> {
    let b = find(ctx, id, version)?;
    let view = ctx.fleet.fleet.as_ref().map(|f| f.bundle_view(&b.meta));
    let view_rollout = view.as_ref().and_then(|v| v.bundle.rollout.clone());
    let entries = view.map(|v| v.platforms).unwrap_or_default();
    let mut h = String::with_capacity(32 * 1024);
    let m = &b.meta.manifest;
    let _ = writeln!(
        h,
        "<p id=\"headline\"><span class=\"{}\">{}</span> · {} · {} · published {}</p>",
        class("state", b.meta.state.as_str()),
        b.meta.state.as_str(),
        escape(m.component.as_str()),
        escape(&m.summary),
        ctx.times.cell(Some(&b.meta.published_at)),
    );
    // The platforms first, the failures at their top: what needs a look is seen without scrolling.
    render_platforms(&mut h, ctx, b, &entries);
    render_rollout(&mut h, ctx, view_rollout.as_ref());
    render_meta(&mut h, ctx, b);
    Ok(html::page(&format!("Bundle {}@{}", b.meta.manifest.id, b.meta.manifest.version), &ctx.times, &ctx.filters, &h))
}

fn render_meta(h: &mut String, ctx: &Ctx, b: &Published) {
    let m = &b.meta.manifest;
    let meta = &b.meta;
    let state = match &meta.state_reason {
        Some(r) => format!("<span class=\"{}\">{}</span> <span class=\"muted\">{}</span>", class("state", meta.state.as_str()), meta.state.as_str(), escape(r)),
        None => format!("<span class=\"{}\">{}</span>", class("state", meta.state.as_str()), meta.state.as_str()),
    };
    let after: Vec<String> = m.after.iter().map(|d| escape(&d.to_string())).collect();
    let reported: Vec<String> = meta.reported_by.iter().map(|p| platform_link(p.as_str())).collect();
    let _ = writeln!(
        h,
        "<h2>Metadata</h2>\n<p>{}</p>\n<dl id=\"metadata\"><dt>State</dt><dd>{state}</dd><dt>Component</dt><dd>{}</dd><dt>Class</dt><dd>{}</dd><dt>Data impact</dt><dd>{}</dd>\
         <dt>Published</dt><dd>{}</dd><dt>Fixes</dt><dd>{}</dd><dt>Reported by</dt><dd>{}</dd><dt>Moodle</dt><dd>{}</dd><dt>After</dt><dd>{}</dd>\
         <dt>Files</dt><dd>{} ({} bytes expanded)</dd><dt>Target</dt><dd><code>{}</code> sha256 <code>{}</code></dd></dl>",
        escape(&m.summary),
        escape(m.component.as_str()),
        escape(m.class.as_str()),
        escape(m.data_impact.as_str()),
        ctx.times.cell(Some(&meta.published_at)),
        if m.fixes.is_empty() { html::muted_dash() } else { escape(&m.fixes.join(", ")) },
        if reported.is_empty() { html::muted_dash() } else { reported.join(", ") },
        dash(m.requires_moodle.as_ref().map(ToString::to_string).as_deref()),
        if after.is_empty() { html::muted_dash() } else { after.join(", ") },
        meta.file_count,
        meta.expanded_size,
        escape(&b.target),
        escape(&b.sha256),
    );
    h.push_str("<h2>Validations</h2>\n");
    let mut v = Vec::new();
    if meta.validations.alpha {
        v.push("alpha team".to_owned());
    }
    v.extend(meta.validations.datasets.iter().map(|d| format!("dataset {}", escape(d))));
    if v.is_empty() {
        h.push_str("<p id=\"validations\" class=\"problem\">None yet: contracts that require validation wait for it.</p>\n");
    } else {
        let _ = writeln!(h, "<p id=\"validations\">{}</p>", v.join(", "));
    }
}

/// The staged rollout: a row per stage (canaries, then each wave) with the instant it opens,
/// its cumulative share, and of the platforms in it how many installed it, rolled it back or
/// failed.
fn render_rollout(h: &mut String, ctx: &Ctx, rollout: Option<&RolloutView>) {
    h.push_str("<h2>Rollout</h2>\n");
    let Some(r) = rollout else {
        h.push_str("<p id=\"rollout\" class=\"muted\">No staged rollout: every platform whose contract admits it takes it at its first slot.</p>\n");
        return;
    };
    let _ = write!(h, "<p id=\"rollout\"><code>{}</code>", escape(&r.spec));
    if let Some(p) = &r.paused_at {
        let _ = write!(h, " · <span class=\"problem\">paused {}</span>: no wave opens until <code>rollout resume</code>", ctx.times.cell(Some(p)));
    }
    h.push_str("</p>\n<table id=\"rollout-stages\"><tr><th>stage</th><th>share</th><th>opens</th><th>platforms</th><th>installed</th><th>rolled back</th><th>failed</th></tr>\n");
    for s in &r.stages {
        let share = s.share.map_or_else(html::muted_dash, |v| format!("{v}%"));
        let bad = |n: usize| if n > 0 { format!("<span class=\"problem\">{n}</span>") } else { n.to_string() };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{share}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.name),
            ctx.times.cell(s.opens_at.as_deref()),
            s.platforms,
            s.installed,
            bad(s.rolled_back),
            bad(s.failed),
        );
    }
    h.push_str("</table>\n");
}

/// The plan's reason code, and the hold's reason when the platform holds it.
fn why(e: &PlatformState, hold: Option<&str>) -> String {
    match (e.reason.as_deref(), hold) {
        (None, None) => html::muted_dash(),
        (Some(r), None) => escape(r),
        (None, Some(h)) => format!("<span class=\"problem\">{}</span>", escape(h)),
        (Some(r), Some(h)) => format!("{}<br><span class=\"problem\">{}</span>", escape(r), escape(h)),
    }
}

/// The latest receipt naming the bundle: its outcome, a link to it on the platform's page,
/// when it finished and why.
fn receipt_cell(ctx: &Ctx, platform: &str, r: &ReceiptRef) -> String {
    let mut out = format!(
        "<a class=\"{}\" href=\"/platforms/{}#receipt-{}\">{}</a> {}",
        class("outcome", &r.outcome),
        html::encode(platform),
        html::encode(&r.id),
        escape(&r.outcome),
        ctx.times.cell(Some(&r.finished_at))
    );
    if let Some(why) = &r.reason {
        out.push_str(&format!("<br><span class=\"problem\">{}</span>", escape(why)));
    }
    out
}

fn when(ctx: &Ctx, e: &PlatformState) -> String {
    let mut parts = Vec::new();
    for (label, v) in [("applies", &e.apply_at), ("notice", &e.notice_at), ("slot ends", &e.slot_end), ("wave opens", &e.rollout_at)] {
        if let Some(v) = v {
            parts.push(format!("{label} {}", ctx.times.cell(Some(v))));
        }
    }
    if parts.is_empty() { html::muted_dash() } else { parts.join("<br>") }
}

fn render_platforms(h: &mut String, ctx: &Ctx, b: &Published, entries: &[PlatformState]) {
    let f = &ctx.filters;
    let path = format!("/bundles/{}/{}", html::encode(b.meta.manifest.id.as_str()), html::encode(&b.meta.manifest.version.to_string()));
    let mut counts: BTreeMap<State, usize> = BTreeMap::new();
    for e in entries {
        *counts.entry(e.state).or_default() += 1;
    }
    h.push_str("<div class=\"counts\" id=\"states\">");
    let _ = write!(h, "<a class=\"count\" href=\"{path}{}\"><b>{}</b> platforms</a>", f.with_state(None), entries.len());
    let mut states: Vec<(State, usize)> = counts.into_iter().collect();
    states.sort_by_key(|(s, _)| state_rank(*s));
    for (state, n) in states {
        let s = state.as_str();
        let bad = matches!(state, State::Failed | State::RolledBack | State::Held | State::NeedsIntervention);
        let _ = write!(
            h,
            "<a class=\"count{}\" id=\"count-{}\" href=\"{path}{}\"><b>{n}</b> {}</a>",
            if bad { " bad" } else { "" },
            class("state", s),
            f.with_state(Some(s)),
            escape(s)
        );
    }
    h.push_str("</div>\n");
    let mut selected: Vec<&PlatformState> = entries.iter().filter(|e| f.matches(&e.platform) && f.state.as_deref().is_none_or(|s| s == e.state.as_str())).collect();
    selected.sort_by(|a, b| (state_rank(a.state), &a.platform).cmp(&(state_rank(b.state), &b.platform)));
    let selected: Vec<PlatformState> = selected.into_iter().cloned().collect();
    let page = Paged::of(&selected, f.page);
    if f.any() {
        let _ = writeln!(h, "<p>{} of {} platforms match (<a href=\"{path}\">show all</a>).</p>", page.total, entries.len());
    }
    if page.total == 0 {
        h.push_str("<p class=\"muted\">No platform.</p>\n");
        return;
    }
    // Why a platform holds it, in the agent's words.
    let (id, version) = (b.meta.manifest.id.as_str(), b.meta.manifest.version.to_string());
    let holds: BTreeMap<&str, &str> = ctx
        .fleet
        .platforms()
        .iter()
        .filter_map(|p| p.holds.iter().find(|h| h.id == id && h.version == version).map(|h| (p.name.as_str(), h.reason.as_str())))
        .collect();
    let pager = page.pager(|n| format!("{path}{}", f.with(|f| f.page = n)));
    h.push_str(&pager);
    h.push_str("<table id=\"platforms\"><thead><tr><th>Platform</th><th>State</th><th>Why</th><th>When</th><th>Receipt</th></tr></thead><tbody>\n");
    for e in &page.rows {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><span class=\"{}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            platform_link(&e.platform),
            class("fleet", e.state.as_str()),
            e.state.as_str(),
            why(e, holds.get(e.platform.as_str()).copied()),
            when(ctx, e),
            e.receipt.as_ref().map_or_else(html::muted_dash, |r| receipt_cell(ctx, &e.platform, r)),
        );
    }
    h.push_str("</tbody></table>\n");
    h.push_str(&pager);
}
