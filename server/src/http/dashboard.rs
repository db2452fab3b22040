//! The fleet dashboard at `/`: one server-rendered HTML page, no script, every value escaped.
//! The fleet (contract levels, installed bundles, next intervention, last outcome, last seen),
//! the bundles (state, validations, adoption, failures and rollbacks from receipts) and the
//! fix requests not yet fixed.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::app::AppState;
use super::error::AppError;
use crate::repo::{self, Published};
use crate::store::{BundleOutcomes, FixRequest, Platform};

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the page shows, gathered before rendering.
struct View {
    now: String,
    platforms: Option<Vec<Platform>>,
    bundles: Vec<Published>,
    outcomes: BTreeMap<String, BundleOutcomes>,
    fix_requests: Vec<FixRequest>,
}

pub(crate) async fn page(State(state): State<AppState>) -> Result<Response, AppError> {
    let paths = state.paths().clone();
    let store = state.store().cloned();
    let now = state.clock().now();
    let handle = tokio::runtime::Handle::current();
    let view = tokio::task::spawn_blocking(move || -> crate::Result<View> {
        let bundles = handle.block_on(repo::list(&paths))?;
        let (platforms, outcomes, fix_requests) = match store {
            Some(s) => (Some(s.platforms()?), s.bundle_outcomes()?, s.unfixed_fix_requests()?),
            None => (None, BTreeMap::new(), Vec::new()),
        };
        Ok(View { now: jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string(), platforms, bundles, outcomes, fix_requests })
    })
    .await
    .map_err(AppError::internal)?
    .map_err(AppError::internal)?;
    let mut response = render(&view).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // No script, no outside resource, no framing.
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.8rem}\
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.state-active{color:#176317}.state-halted{color:#a35a00;font-weight:bold}.state-yanked{color:#a00;font-weight:bold}\
.outcome-applied{color:#176317}.outcome-rolled-back,.outcome-failed{color:#a00;font-weight:bold}.muted{color:#777}.num{text-align:right}";

fn dash(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.is_empty() => escape(s),
        _ => "<span class=\"muted\">-</span>".into(),
    }
}

/// A class name from a value: letters, digits and `-` only.
fn class(prefix: &str, value: &str) -> String {
    let v: String = value.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    format!("{prefix}-{v}")
}

fn render(v: &View) -> String {
    let mut h = String::with_capacity(8192);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>palier fleet</title><style>{STYLE}</style></head><body>\n\
         <h1>palier fleet</h1><p class=\"muted\">as of {}</p>\n",
        escape(&v.now)
    );

    // The fleet.
    h.push_str("<h2>Platforms</h2>\n");
    match &v.platforms {
        None => h.push_str("<p class=\"muted\">No control-plane store (serve --db FILE).</p>\n"),
        Some(ps) if ps.is_empty() => h.push_str("<p class=\"muted\">No platform registered.</p>\n"),
        Some(ps) => {
            h.push_str(
                "<table id=\"platforms\"><thead><tr><th>Platform</th><th>Improvement</th><th>Stability</th><th>Installed bundles</th>\
                 <th>Next intervention</th><th>Last outcome</th><th>Last seen</th></tr></thead><tbody>\n",
            );
            for p in ps {
                let installed: Vec<String> = p.installed.iter().map(|i| escape(&format!("{}@{}", i.id, i.version))).collect();
                let level = |l: Option<u8>| l.map(|l| l.to_string());
                let outcome = match &p.last_outcome {
                    Some(o) => format!("<span class=\"{}\">{}</span>", class("outcome", o), escape(o)),
                    None => dash(None),
                };
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&p.name),
                    dash(level(p.improvement_level).as_deref()),
                    dash(level(p.stability_level).as_deref()),
                    if installed.is_empty() { dash(None) } else { installed.join("<br>") },
                    dash(p.next_intervention.as_deref()),
                    outcome,
                    dash(p.last_seen.as_deref()),
                );
            }
            h.push_str("</tbody></table>\n");
        }
    }

    // The bundles.
    h.push_str("<h2>Bundles</h2>\n");
    if v.bundles.is_empty() {
        h.push_str("<p class=\"muted\">No bundle published.</p>\n");
    } else {
        h.push_str(
            "<table id=\"bundles\"><thead><tr><th>Bundle</th><th>Component</th><th>State</th><th>Validations</th><th>Reported by</th>\
             <th>Installed on</th><th>Applied</th><th>Rolled back</th><th>Failed</th></tr></thead><tbody>\n",
        );
        for b in &v.bundles {
            let m = &b.meta.manifest;
            let key = format!("{}@{}", m.id, m.version);
            let installed = v
                .platforms
                .iter()
                .flatten()
                .filter(|p| p.installed.iter().any(|i| i.id == m.id.as_str() && i.version == m.version.to_string()))
                .count();
            let o = v.outcomes.get(&key).cloned().unwrap_or_default();
            let mut validations: Vec<String> = Vec::new();
            if b.meta.validations.alpha {
                validations.push("alpha".into());
            }
            validations.extend(b.meta.validations.datasets.iter().map(|d| format!("dataset {d}")));
            let state = b.meta.state.as_str();
            let state_cell = match &b.meta.state_reason {
                Some(r) => format!("<span class=\"{}\">{}</span><br><span class=\"muted\">{}</span>", class("state", state), state, escape(r)),
                None => format!("<span class=\"{}\">{}</span>", class("state", state), state),
            };
            let reported: Vec<&str> = b.meta.reported_by.iter().map(|p| p.as_str()).collect();
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&key),
                escape(m.component.as_str()),
                state_cell,
                if validations.is_empty() { dash(None) } else { escape(&validations.join(", ")) },
                if reported.is_empty() { dash(None) } else { escape(&reported.join(", ")) },
                installed,
                o.applied,
                o.rolled_back,
                o.failed,
            );
        }
        h.push_str("</tbody></table>\n");
    }

    // Fix requests not yet fixed.
    h.push_str("<h2>Open fix requests</h2>\n");
    if v.fix_requests.is_empty() {
        h.push_str("<p class=\"muted\">None.</p>\n");
    } else {
        h.push_str(
            "<table id=\"fix-requests\"><thead><tr><th>Id</th><th>Platform</th><th>Component</th><th>Summary</th><th>Bundle</th>\
             <th>Status</th><th>Filed</th></tr></thead><tbody>\n",
        );
        for f in &v.fix_requests {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&f.id),
                escape(&f.platform),
                escape(&f.component),
                escape(&f.summary),
                dash(f.bundle.as_deref()),
                escape(&f.status),
                escape(&f.created_at),
            );
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape("<script>alert('x')</script> & \"y\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;");
        assert_eq!(class("outcome", "rolled-back\"><x"), "outcome-rolled-backx");
    }
}
