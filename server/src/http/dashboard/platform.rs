//! `/platforms/{name}`: one platform, everything the control plane knows of it. Its
//! registered contract beside the one its agent reports, what is wrong, its plan, the bundles
//! it holds, its fix requests, and its receipts (the latest first, 50 a page) with their
//! steps, checks, hooks with the tails of their output, and backup hashes.

use std::fmt::Write;

use palier_bundle::PlatformId;
use serde_json::Value;

use super::html::{self, Paged, PAGE_ROWS, bundle_key_link, class, dash, escape};
use super::overview::{self, problem_cell};
use super::Ctx;
use crate::store::{Platform, StoredReceipt};
use super::super::error::AppError;

/// Bytes of a hook's stdout and stderr shown: the end, where the error is.
const TAIL_BYTES: usize = 2000;

/// The last `max` bytes of `text`, cut at a character boundary, with a mark when cut.
pub(crate) fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[... {} bytes before]\n{}", start, &text[start..])
}

/// The platform named in the address, or a 404.
pub(crate) fn find<'a>(ctx: &'a Ctx, name: &str) -> Result<&'a Platform, AppError> {
    let unknown = || AppError::NotFound(format!("no platform {name:?} is registered (the overview lists them: /)"));
    PlatformId::new(name).map_err(|_| unknown())?;
    ctx.fleet.platforms().iter().find(|p| p.name == name).ok_or_else(unknown)
}

/// The platform's receipts page `page` (from 1), the latest first.
pub(crate) fn receipts(ctx: &Ctx, p: &Platform) -> Result<Paged<StoredReceipt>, AppError> {
    let Some(store) = &ctx.store else { return Ok(Paged { total: 0, page: 1, pages: 1, rows: Vec::new() }) };
    let id = PlatformId::new(&p.name).map_err(AppError::internal)?;
    let total = store.receipt_count_of(&id).map_err(AppError::internal)?;
    let pages = total.div_ceil(PAGE_ROWS).max(1);
    let page = ctx.filters.page.clamp(1, pages);
    let rows = store.receipts_page(&id, (page - 1) * PAGE_ROWS, PAGE_ROWS).map_err(AppError::internal)?;
    Ok(Paged { total, page, pages, rows })
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn ok_cell(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "<span class=\"outcome-applied\">ok</span>",
        Some(false) => "<span class=\"outcome-failed\">failed</span>",
        None => "<span class=\"muted\">-</span>",
    }
}

fn num(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_u64).map_or_else(html::muted_dash, |n| n.to_string())
}

/// One receipt as a section: its outcome and bundles, then the steps, checks, hooks and backup
/// its body carries (whatever of them it has; the body is the agent's, as it sent it).
pub(crate) fn render_receipt(h: &mut String, ctx: &Ctx, r: &StoredReceipt) {
    let t = &ctx.times;
    let b = &r.body;
    let _ = writeln!(
        h,
        "<section class=\"receipt\" id=\"receipt-{}\"><h3><span class=\"{}\">{}</span> {} <span class=\"muted\">receipt {}</span></h3>",
        html::encode(&r.id),
        class("outcome", &r.outcome),
        escape(&r.outcome),
        r.bundles.iter().map(|k| bundle_key_link(k)).collect::<Vec<_>>().join(", "),
        escape(&r.id),
    );
    let _ = write!(h, "<dl><dt>Started</dt><dd>{}</dd><dt>Finished</dt><dd>{}</dd>", t.cell(text(b, "started_at")), t.cell(Some(&r.finished_at)));
    if let Some(reason) = text(b, "reason") {
        let _ = write!(h, "<dt>Reason</dt><dd class=\"problem\">{}</dd>", escape(reason));
    }
    if let Some(n) = b.get("count").and_then(Value::as_u64).filter(|n| *n > 1) {
        let _ = write!(h, "<dt>Times</dt><dd>{n}</dd>");
    }
    if let Some(ms) = b.get("recovery_ms").and_then(Value::as_u64) {
        let _ = write!(h, "<dt>Recovery</dt><dd>{ms} ms</dd>");
    }
    if let Some(backup) = b.get("backup").filter(|v| v.is_object()) {
        let _ = write!(
            h,
            "<dt>Backup</dt><dd><code>{}</code> sha256 <code class=\"sha256\">{}</code>, {} bytes, {} files</dd>",
            dash(text(backup, "dir")),
            dash(text(backup, "sha256")),
            num(backup, "bytes"),
            num(backup, "files"),
        );
    }
    h.push_str("</dl>\n");
    if let Some(steps) = b.get("steps").and_then(Value::as_array).filter(|s| !s.is_empty()) {
        h.push_str("<table class=\"steps\"><thead><tr><th>Step</th><th>Started</th><th>ms</th><th></th><th>Detail</th></tr></thead><tbody>\n");
        for s in steps {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                dash(text(s, "name")),
                t.cell(text(s, "started_at")),
                num(s, "duration_ms"),
                ok_cell(s.get("ok").and_then(Value::as_bool)),
                dash(text(s, "detail")),
            );
        }
        h.push_str("</tbody></table>\n");
    }
    if let Some(checks) = b.get("checks").and_then(Value::as_array).filter(|s| !s.is_empty()) {
        h.push_str(
            "<table class=\"checks\"><thead><tr><th>Check</th><th>Expected</th><th>Answer</th><th></th><th>Attempts</th><th>ms</th><th>Detail</th></tr></thead><tbody>\n",
        );
        for c in checks {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                dash(text(c, "path")),
                num(c, "expect_status"),
                num(c, "status"),
                ok_cell(c.get("ok").and_then(Value::as_bool)),
                num(c, "attempts"),
                num(c, "duration_ms"),
                dash(text(c, "detail")),
            );
        }
        h.push_str("</tbody></table>\n");
    }
    if let Some(hooks) = b.get("hooks").and_then(Value::as_array).filter(|s| !s.is_empty()) {
        h.push_str("<table class=\"hooks\"><thead><tr><th>Hook</th><th>Exit</th><th>ms</th><th>Output (the end)</th></tr></thead><tbody>\n");
        for k in hooks {
            let exit = match (k.get("exit_code").and_then(Value::as_i64), k.get("timed_out").and_then(Value::as_bool)) {
                (_, Some(true)) => "<span class=\"outcome-failed\">timed out</span>".to_owned(),
                (Some(c), _) => c.to_string(),
                (None, _) => "<span class=\"outcome-failed\">killed</span>".to_owned(),
            };
            let argv: Vec<&str> = k.get("argv").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let mut output = String::new();
            for stream in ["stdout", "stderr"] {
                if let Some(out) = text(k, stream).filter(|o| !o.trim().is_empty()) {
                    let _ = write!(output, "<pre class=\"{stream}\" title=\"{stream}\">{}</pre>", escape(&tail(out, TAIL_BYTES)));
                }
            }
            let _ = writeln!(
                h,
                "<tr><td>{}<br><code class=\"muted\">{}</code></td><td>{exit}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                dash(text(k, "hook")),
                escape(&argv.join(" ")),
                num(k, "duration_ms"),
                if output.is_empty() { html::muted_dash() } else { output },
            );
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str("</section>\n");
}

/// The page's head: contracts, what is wrong, installed bundles, holds, fix requests.
pub(crate) fn render_head(h: &mut String, ctx: &Ctx, p: &Platform, latest: Option<&StoredReceipt>) {
    let t = &ctx.times;
    let problems = overview::problems(p, ctx);
    if !problems.is_empty() {
        let _ = writeln!(h, "<p id=\"problems\">{}</p>", problem_cell(&problems));
    }
    if let Some(r) = latest {
        let _ = writeln!(
            h,
            "<p id=\"latest\">Latest intervention: <a href=\"#receipt-{}\" class=\"{}\">{}</a> {} {}{}</p>",
            html::encode(&r.id),
            class("outcome", &r.outcome),
            escape(&r.outcome),
            r.bundles.iter().map(|k| bundle_key_link(k)).collect::<Vec<_>>().join(", "),
            t.cell(Some(&r.finished_at)),
            text(&r.body, "reason").map_or_else(String::new, |why| format!("<br><span class=\"problem\">{}</span>", escape(why))),
        );
    }
    h.push_str("<h2>Holds</h2>\n");
    if p.holds.is_empty() {
        h.push_str("<p class=\"muted\">None: nothing is held on this site.</p>\n");
    } else {
        h.push_str("<table id=\"holds\"><thead><tr><th>Bundle</th><th>Since</th><th>Why</th></tr></thead><tbody>\n");
        for hold in &p.holds {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"problem\">{}</td></tr>",
                bundle_key_link(&format!("{}@{}", hold.id, hold.version)),
                t.cell(Some(&hold.since)),
                escape(&hold.reason)
            );
        }
        h.push_str("</tbody></table>\n");
    }
    let level = |l: Option<u8>| l.map_or_else(html::muted_dash, |l| l.to_string());
    let list = |l: &Option<Vec<String>>| match l {
        Some(v) if !v.is_empty() => escape(&v.join(", ")),
        Some(_) => "none".to_owned(),
        None => html::muted_dash(),
    };
    h.push_str("<h2>Contract</h2>\n<table id=\"contract\"><thead><tr><th></th><th>Improvement</th><th>Stability</th><th>Components</th><th>Level-2 classes</th></tr></thead><tbody>\n");
    match &p.contract {
        Some(c) => {
            let _ = writeln!(
                h,
                "<tr><th>registered</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                c.improvement,
                c.stability,
                list(&Some(c.components.clone())),
                if c.level2_classes.is_empty() { "technical (default)".to_owned() } else { escape(&c.level2_classes.join(", ")) },
            );
        }
        None => h.push_str("<tr><th>registered</th><td colspan=\"4\" class=\"problem\">none (palier-server platform set NAME --improvement N --stability N)</td></tr>\n"),
    }
    let _ = writeln!(
        h,
        "<tr><th>reported by the agent</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
        level(p.improvement_level),
        level(p.stability_level),
        list(&p.reported_components),
        list(&p.reported_level2_classes),
    );
    h.push_str("</tbody></table>\n");
    let installed: Vec<String> = p.installed.iter().map(|i| bundle_key_link(&format!("{}@{}", i.id, i.version))).collect();
    let _ = writeln!(
        h,
        "<dl><dt>Registered</dt><dd>{}</dd><dt>Last seen</dt><dd>{}</dd><dt>Last outcome</dt><dd>{}</dd><dt>Next intervention</dt><dd>{}</dd>\
         <dt>Installed</dt><dd>{}</dd></dl>",
        t.cell(Some(&p.created_at)),
        t.cell(p.last_seen.as_deref()),
        p.last_outcome.as_deref().map_or_else(html::muted_dash, |o| format!("<span class=\"{}\">{}</span>", class("outcome", o), escape(o))),
        t.cell(p.next_intervention.as_deref()),
        if installed.is_empty() { html::muted_dash() } else { installed.join(", ") },
    );
}

/// The receipts section, paged.
pub(crate) fn render_receipts(h: &mut String, ctx: &Ctx, receipts: &Paged<StoredReceipt>, path: &str) {
    let _ = writeln!(h, "<h2>Receipts</h2>");
    if receipts.total == 0 {
        h.push_str("<p class=\"muted\">No receipt: the agent has not reported an intervention yet.</p>\n");
        return;
    }
    let f = &ctx.filters;
    let pager = receipts.pager(|n| format!("{path}{}", f.with(|f| f.page = n)));
    let _ = writeln!(h, "<p class=\"muted\">{} receipts, the latest first.</p>", receipts.total);
    h.push_str(&pager);
    for r in &receipts.rows {
        render_receipt(h, ctx, r);
    }
    h.push_str(&pager);
}

/// The whole page.
pub(crate) fn render(ctx: &Ctx, name: &str) -> Result<String, AppError> {
    let p = find(ctx, name)?;
    let receipts = receipts(ctx, p)?;
    let fix_requests = match &ctx.store {
        Some(s) => s.fix_requests_of(&PlatformId::new(&p.name).map_err(AppError::internal)?).map_err(AppError::internal)?,
        None => Vec::new(),
    };
    let mut h = String::with_capacity(32 * 1024);
    render_head(&mut h, ctx, p, receipts.rows.first().filter(|_| receipts.page == 1));
    render_plan(&mut h, ctx, p);
    if !fix_requests.is_empty() {
        h.push_str("<h2>Fix requests</h2>\n<table id=\"fix-requests\"><thead><tr><th>Id</th><th>Component</th><th>Summary</th><th>Bundle</th><th>Status</th><th>Filed</th></tr></thead><tbody>\n");
        for r in &fix_requests {
            let summary = if ctx.operator { escape(&r.summary) } else { html::muted_dash() };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{summary}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.id),
                escape(&r.component),
                r.bundle.as_deref().map_or_else(html::muted_dash, bundle_key_link),
                escape(&r.status),
                ctx.times.cell(Some(&r.created_at)),
            );
        }
        h.push_str("</tbody></table>\n");
    }
    render_receipts(&mut h, ctx, &receipts, &format!("/platforms/{}", html::encode(&p.name)));
    Ok(html::page(&format!("Platform {}", p.name), &ctx.times, &ctx.filters, &h))
}

/// The plan the agent reported with its latest status: every bundle version with its
/// decision, the reason, and when (as `plan --json` says it).
fn render_plan(h: &mut String, ctx: &Ctx, p: &Platform) {
    h.push_str("<h2>Plan</h2>\n");
    let Some(plan) = ctx.fleet.fleet.as_ref().and_then(|f| f.plans.get(&p.name)) else {
        h.push_str("<p class=\"muted\">No plan reported: the agent has not sent one with its status yet (or is older than plans in the status).</p>\n");
        return;
    };
    let t = &ctx.times;
    let _ = writeln!(h, "<p class=\"muted\">As the agent planned it for {}, received {}.</p>", t.html(plan.now), t.cell(Some(&plan.received_at)));
    if plan.bundles.is_empty() {
        h.push_str("<p class=\"muted\">No bundle in the plan.</p>\n");
        return;
    }
    h.push_str("<table id=\"plan\"><thead><tr><th>Bundle</th><th>Decision</th><th>Reason</th><th>When</th></tr></thead><tbody>\n");
    for d in &plan.bundles {
        // The times as `plan --json` writes them, whichever the decision carries.
        let json = serde_json::to_value(d).unwrap_or_default();
        let mut when = Vec::new();
        for (label, key) in [("applies", "apply_at"), ("notice", "notice_at"), ("slot ends", "slot_end"), ("wave opens", "rollout_at")] {
            if let Some(v) = json.get(key).and_then(Value::as_str) {
                when.push(format!("{label} {}", t.cell(Some(v))));
            }
        }
        let decision = d.decision.as_str();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><span class=\"{}\">{}</span></td><td>{}</td><td>{}</td></tr>",
            html::bundle_link(d.id.as_str(), &d.version.to_string()),
            class("decision", decision),
            decision,
            d.reason.map_or_else(html::muted_dash, |r| r.as_str().to_owned()),
            if when.is_empty() { html::muted_dash() } else { when.join("<br>") },
        );
    }
    h.push_str("</tbody></table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_end_at_a_character_boundary() {
        assert_eq!(tail("short", 10), "short");
        let t = tail("ééééé", 5);
        assert!(t.ends_with("éé") && t.starts_with("[... 6 bytes before]"), "{t}");
    }
}
