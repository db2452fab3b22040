//! The fleet dashboard at `/`, for operators: one server-rendered HTML page, no script, every
//! value escaped. The fleet (registered contract and what the agent reports, installed
//! bundles, next intervention, last outcome, last seen, and what is wrong: a contract
//! mismatch, a repository the agent refuses, a platform not seen for three poll intervals),
//! the bundles (state, validations, adoption, failures and rollbacks from receipts), the
//! auto-halts with the receipts behind them, failing tokens, and the fix requests not yet fixed.
//!
//! Nothing here reads the repository or the store per request: the bundles come from a view
//! rebuilt when `timestamp.json` changes, the fleet from one re-read at most every second; a
//! page is rendered once per pair of views (then served from memory), and at most
//! [`MAX_RENDERS`] render at once.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use palier_bundle::BundleRef;
use tokio::sync::Semaphore;

use super::app::AppState;
use super::error::AppError;
use super::limits::Failure;
use super::operator;
use crate::repo::{self, Published};
use crate::store::{AutoHalt, BundleOutcomes, FixRequest, Platform};

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

/// Dashboard renders at once; more wait (within the request's deadline).
const MAX_RENDERS: usize = 2;
/// Rows per page of the platforms and fix-requests tables.
pub(crate) const PAGE_ROWS: usize = 100;
/// The fleet view is rebuilt from the store at most this often while the store changes...
const FLEET_MIN_AGE: Duration = Duration::from_secs(1);
/// ...and at least this often (changes made by other processes, e.g. `platform add`).
const FLEET_MAX_AGE: Duration = Duration::from_secs(5);
/// How long a page waits for a newer view of the bundles before showing the one it has.
const REPO_VIEW_WAIT: Duration = Duration::from_secs(2);

/// The repository as the dashboard and the API's checks see it: the bundles of the metadata
/// in force, read once per change of `timestamp.json` (every write replaces it), on the
/// repository thread; never per request.
#[derive(Debug)]
pub(crate) struct RepoView {
    key: Option<FileKey>,
    pub bundles: Vec<Published>,
    /// Why the last rebuild failed, if it did (the bundles are then those of the one before).
    pub error: Option<String>,
}

impl RepoView {
    /// The published bundle `id@version`.
    pub fn find(&self, bundle: &BundleRef) -> Option<&Published> {
        self.bundles.iter().find(|p| p.meta.manifest.id == bundle.id && p.meta.manifest.version == bundle.version)
    }
}

/// What identifies one version of `timestamp.json`: it is replaced by rename on every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

fn file_key(path: &std::path::Path) -> Option<FileKey> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileKey { dev: m.dev(), ino: m.ino(), size: m.size(), mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()) })
}

/// The fleet as the store holds it, re-read at most every [`FLEET_MIN_AGE`].
#[derive(Debug)]
struct FleetView {
    generation: u64,
    built: Instant,
    platforms: Option<Vec<Platform>>,
    outcomes: BTreeMap<String, BundleOutcomes>,
    fix_requests: Vec<FixRequest>,
    auto_halts: Vec<AutoHalt>,
}

/// The dashboard's cached views and its render cap.
#[derive(Debug)]
pub(crate) struct ViewCache {
    repo: RwLock<Option<Arc<RepoView>>>,
    repo_rebuild: tokio::sync::Mutex<()>,
    fleet: RwLock<Option<Arc<FleetView>>>,
    fleet_rebuild: tokio::sync::Mutex<()>,
    /// Bumped by every change the API makes to the store.
    generation: AtomicU64,
    renders: Arc<Semaphore>,
    /// Pages rendered from the current views, by (page, fix page, operator): a storm of
    /// `GET /` costs one render per page and view, not one per request.
    pages: Mutex<RenderedPages>,
}

#[derive(Debug, Default)]
struct RenderedPages {
    repo: Option<Arc<RepoView>>,
    fleet: Option<Arc<FleetView>>,
    html: HashMap<(usize, usize, bool), Arc<str>>,
}

impl RenderedPages {
    /// Whether the pages were rendered from these views.
    fn of(&self, repo: &Arc<RepoView>, fleet: &Arc<FleetView>) -> bool {
        self.repo.as_ref().is_some_and(|r| Arc::ptr_eq(r, repo)) && self.fleet.as_ref().is_some_and(|f| Arc::ptr_eq(f, fleet))
    }
}

/// Pages kept per pair of views; past it the oldest set is dropped (a crawler of every page).
const MAX_CACHED_PAGES: usize = 64;

impl Default for ViewCache {
    fn default() -> Self {
        ViewCache {
            repo: RwLock::new(None),
            repo_rebuild: tokio::sync::Mutex::new(()),
            fleet: RwLock::new(None),
            fleet_rebuild: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            renders: Arc::new(Semaphore::new(MAX_RENDERS)),
            pages: Mutex::new(RenderedPages::default()),
        }
    }
}

impl ViewCache {
    /// The store changed.
    pub(crate) fn store_changed(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    fn current_repo(&self) -> Option<Arc<RepoView>> {
        self.repo.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The bundles as of the `timestamp.json` in place: the cached view, or a new one read on the
/// repository thread when the file changed since. `wait` bounds how long a caller that has a
/// view already waits for the new one (the rebuild goes on and lands in the cache anyway).
pub(crate) async fn repo_view(state: &AppState, wait: Option<Duration>) -> Arc<RepoView> {
    let cache = state.view();
    let key = file_key(&state.metadata_dir().join("timestamp.json"));
    if let Some(v) = cache.current_repo().filter(|v| v.key == key) {
        return v;
    }
    let rebuild = async {
        let _one = cache.repo_rebuild.lock().await;
        let key = file_key(&state.metadata_dir().join("timestamp.json"));
        if let Some(v) = cache.current_repo().filter(|v| v.key == key) {
            return v;
        }
        let (paths, st) = (state.paths().clone(), state.clone());
        let built = state
            .repo()
            .run(move || async move {
                let listed = repo::list(&paths).await;
                let cache = st.view();
                let view = match listed {
                    Ok(bundles) => RepoView { key, bundles, error: None },
                    Err(e) => {
                        let error = crate::error::one_line(&e);
                        tracing::error!(%error, "cannot read the repository for the dashboard; showing the last view");
                        let bundles = cache.current_repo().map(|v| v.bundles.clone()).unwrap_or_default();
                        RepoView { key, bundles, error: Some(error) }
                    }
                };
                let view = Arc::new(view);
                *cache.repo.write().unwrap_or_else(PoisonError::into_inner) = Some(view.clone());
                view
            })
            .await;
        built.or_else(|| cache.current_repo()).unwrap_or_else(|| Arc::new(RepoView { key: None, bundles: Vec::new(), error: Some("the repository could not be read".into()) }))
    };
    match (wait, cache.current_repo()) {
        (Some(wait), Some(stale)) => tokio::time::timeout(wait, rebuild).await.unwrap_or(stale),
        _ => rebuild.await,
    }
}

async fn fleet_view(state: &AppState) -> Result<Arc<FleetView>, AppError> {
    let cache = state.view();
    let fresh = |v: &FleetView| {
        let age = v.built.elapsed();
        age < FLEET_MIN_AGE || (age < FLEET_MAX_AGE && v.generation == cache.generation.load(Ordering::Relaxed))
    };
    let current = || cache.fleet.read().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(v) = current().filter(|v| fresh(v)) {
        return Ok(v);
    }
    let _one = cache.fleet_rebuild.lock().await;
    if let Some(v) = current().filter(|v| fresh(v)) {
        return Ok(v);
    }
    let generation = cache.generation.load(Ordering::Relaxed);
    let store = state.store().cloned();
    let view = tokio::task::spawn_blocking(move || -> crate::Result<FleetView> {
        let built = Instant::now();
        Ok(match store {
            Some(s) => FleetView {
                generation,
                built,
                platforms: Some(s.platforms()?),
                outcomes: s.bundle_outcomes()?,
                fix_requests: s.unfixed_fix_requests()?,
                auto_halts: s.auto_halts()?,
            },
            None => FleetView { generation, built, platforms: None, outcomes: BTreeMap::new(), fix_requests: Vec::new(), auto_halts: Vec::new() },
        })
    })
    .await
    .map_err(AppError::internal)?
    .map_err(AppError::internal)?;
    let view = Arc::new(view);
    *cache.fleet.write().unwrap_or_else(PoisonError::into_inner) = Some(view.clone());
    Ok(view)
}

/// `?page=N` (platforms) and `?fix_page=N` (fix requests), from 1; anything else is ignored.
#[derive(Debug, Default)]
pub(crate) struct Pages {
    page: Option<usize>,
    fix_page: Option<usize>,
}

impl Pages {
    fn of(query: Option<&str>) -> Pages {
        let mut pages = Pages::default();
        for pair in query.unwrap_or_default().split('&') {
            match pair.split_once('=') {
                Some(("page", n)) => pages.page = n.parse().ok(),
                Some(("fix_page", n)) => pages.fix_page = n.parse().ok(),
                _ => {}
            }
        }
        pages
    }
}

/// What one render needs.
struct View<'a> {
    now: Timestamp,
    repo: &'a RepoView,
    fleet: &'a FleetView,
    pages: Pages,
    operator: bool,
    failed_tokens: Vec<(String, Failure)>,
    stale_after: SignedDuration,
}

pub(crate) async fn page(State(state): State<AppState>, headers: HeaderMap, uri: axum::http::Uri) -> Result<Response, AppError> {
    operator::check(&state, &headers)?;
    let pages = Pages::of(uri.query());
    let operator = operator::is_operator(&state, &headers);
    let repo = repo_view(&state, Some(REPO_VIEW_WAIT)).await;
    let fleet = fleet_view(&state).await?;
    let key = (pages.page.unwrap_or(1), pages.fix_page.unwrap_or(1), operator);
    let cached = {
        let cache = state.view().pages.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.of(&repo, &fleet) { cache.html.get(&key).cloned() } else { None }
    };
    let html = match cached {
        Some(html) => html,
        None => {
            let _permit = state
                .view()
                .renders
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| AppError::Unavailable("the dashboard is shutting down".into()))?;
            let stale_after = state.options().poll_interval.checked_mul(3).unwrap_or(SignedDuration::MAX);
            let view = View { now: state.clock().now(), repo: &repo, fleet: &fleet, pages, operator, failed_tokens: state.failed_tokens().snapshot(), stale_after };
            let html: Arc<str> = Arc::from(render(&view));
            let mut cache = state.view().pages.lock().unwrap_or_else(PoisonError::into_inner);
            if !cache.of(&repo, &fleet) || cache.html.len() >= MAX_CACHED_PAGES {
                *cache = RenderedPages { repo: Some(repo.clone()), fleet: Some(fleet.clone()), html: HashMap::new() };
            }
            cache.html.insert(key, html.clone());
            html
        }
    };
    let mut response = axum::body::Body::from(axum::body::Bytes::from(html.as_bytes().to_vec())).into_response();
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
.outcome-applied{color:#176317}.outcome-rolled-back,.outcome-failed{color:#a00;font-weight:bold}.muted{color:#777}.num{text-align:right}\
.problem{color:#a00}.pager{font-size:.9rem}";

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

/// The rows of page `page` (from 1) of `rows`, and a pager line when there is more than one.
fn paged<'a, T>(rows: &'a [T], page: Option<usize>, param: &str) -> (&'a [T], String) {
    let pages = rows.len().div_ceil(PAGE_ROWS).max(1);
    let page = page.unwrap_or(1).clamp(1, pages);
    let start = (page - 1) * PAGE_ROWS;
    let slice = &rows[start.min(rows.len())..(start + PAGE_ROWS).min(rows.len())];
    if pages == 1 {
        return (slice, String::new());
    }
    let mut pager = format!("<p class=\"pager\">page {page} of {pages} ({} rows)", rows.len());
    if page > 1 {
        let _ = write!(pager, " <a href=\"?{param}={}\">previous</a>", page - 1);
    }
    if page < pages {
        let _ = write!(pager, " <a href=\"?{param}={}\">next</a>", page + 1);
    }
    pager.push_str("</p>\n");
    (slice, pager)
}

/// What is wrong with a platform, in words; empty when nothing is.
fn problems(p: &Platform, now: Timestamp, stale_after: SignedDuration) -> Vec<String> {
    let mut out = Vec::new();
    if p.contract.is_none() {
        out.push("no contract registered (palier-server platform set NAME --improvement N --stability N)".to_owned());
    }
    let mismatch = p.contract_mismatch();
    if !mismatch.is_empty() {
        out.push(format!("contract mismatch: the agent runs {}", mismatch.join("; ")));
    }
    if let Some(e) = &p.repository_error {
        out.push(format!("cannot verify the repository: {e}"));
    }
    match p.last_seen.as_deref().and_then(|t| t.parse::<Timestamp>().ok()) {
        Some(seen) if now.duration_since(seen) > stale_after => out.push(format!("not seen for over {}h", stale_after.as_hours())),
        Some(_) => {}
        None => out.push("never seen".to_owned()),
    }
    out
}

fn render(v: &View) -> String {
    let mut h = String::with_capacity(16384);
    let now = Timestamp::from_second(v.now.as_second()).unwrap_or(v.now);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>palier fleet</title><style>{STYLE}</style></head><body>\n\
         <h1>palier fleet</h1><p class=\"muted\">as of {}</p>\n",
        escape(&now.to_string())
    );
    if let Some(e) = &v.repo.error {
        let _ = writeln!(h, "<p class=\"problem\">The repository could not be read: {}</p>", escape(e));
    }

    // The fleet.
    h.push_str("<h2>Platforms</h2>\n");
    match &v.fleet.platforms {
        None => h.push_str("<p class=\"muted\">No control-plane store (serve --db FILE).</p>\n"),
        Some(ps) if ps.is_empty() => h.push_str("<p class=\"muted\">No platform registered.</p>\n"),
        Some(ps) => {
            let flagged = ps.iter().filter(|p| !problems(p, v.now, v.stale_after).is_empty()).count();
            let _ = writeln!(h, "<p>{} platforms, {flagged} with a problem.</p>", ps.len());
            let (rows, pager) = paged(ps, v.pages.page, "page");
            h.push_str(&pager);
            h.push_str(
                "<table id=\"platforms\"><thead><tr><th>Platform</th><th>Improvement</th><th>Stability</th><th>Contract</th><th>Installed bundles</th>\
                 <th>Next intervention</th><th>Last outcome</th><th>Last seen</th><th>Problems</th></tr></thead><tbody>\n",
            );
            for p in rows {
                let installed: Vec<String> = p.installed.iter().map(|i| escape(&format!("{}@{}", i.id, i.version))).collect();
                let level = |l: Option<u8>| l.map(|l| l.to_string());
                let outcome = match &p.last_outcome {
                    Some(o) => format!("<span class=\"{}\">{}</span>", class("outcome", o), escape(o)),
                    None => dash(None),
                };
                let problems = problems(p, v.now, v.stale_after);
                let problems = if problems.is_empty() {
                    dash(None)
                } else {
                    problems.iter().map(|p| format!("<span class=\"problem\">{}</span>", escape(p))).collect::<Vec<_>>().join("<br>")
                };
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&p.name),
                    dash(level(p.improvement_level).as_deref()),
                    dash(level(p.stability_level).as_deref()),
                    dash(p.contract.as_ref().map(|c| c.describe()).as_deref()),
                    if installed.is_empty() { dash(None) } else { installed.join("<br>") },
                    dash(p.next_intervention.as_deref()),
                    outcome,
                    dash(p.last_seen.as_deref()),
                    problems,
                );
            }
            h.push_str("</tbody></table>\n");
        }
    }

    // The bundles.
    h.push_str("<h2>Bundles</h2>\n");
    if v.repo.bundles.is_empty() {
        h.push_str("<p class=\"muted\">No bundle published.</p>\n");
    } else {
        h.push_str(
            "<table id=\"bundles\"><thead><tr><th>Bundle</th><th>Component</th><th>State</th><th>Validations</th><th>Reported by</th>\
             <th>Installed on</th><th>Applied</th><th>Rolled back</th><th>Failed</th></tr></thead><tbody>\n",
        );
        let mut installed_on: BTreeMap<(String, String), usize> = BTreeMap::new();
        for p in v.fleet.platforms.iter().flatten() {
            for i in &p.installed {
                *installed_on.entry((i.id.clone(), i.version.clone())).or_default() += 1;
            }
        }
        for b in &v.repo.bundles {
            let m = &b.meta.manifest;
            let key = format!("{}@{}", m.id, m.version);
            let installed = installed_on.get(&(m.id.to_string(), m.version.to_string())).copied().unwrap_or(0);
            let o = v.fleet.outcomes.get(&key).cloned().unwrap_or_default();
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

    // Auto-halts and the receipts behind them.
    if !v.fleet.auto_halts.is_empty() {
        h.push_str(
            "<h2>Auto-halts</h2>\n<table id=\"auto-halts\"><thead><tr><th>Bundle</th><th>Halted at</th><th>Platforms</th><th>Receipts</th></tr></thead><tbody>\n",
        );
        for a in &v.fleet.auto_halts {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&a.bundle),
                escape(&a.halted_at),
                escape(&a.platforms.join(", ")),
                a.receipts.iter().map(|r| escape(r)).collect::<Vec<_>>().join("<br>"),
            );
        }
        h.push_str("</tbody></table>\n");
    }

    // Tokens that keep failing.
    if !v.failed_tokens.is_empty() {
        h.push_str(
            "<h2>Refused tokens</h2>\n<p class=\"muted\">API requests refused for a wrong token, by the platform name they claimed \
             (X-Palier-Platform) or, without one, by source address.</p>\n\
             <table id=\"refused-tokens\"><thead><tr><th>Claimed platform or source</th><th>Refusals</th><th>Last</th></tr></thead><tbody>\n",
        );
        for (name, f) in &v.failed_tokens {
            let last = Timestamp::from_second(f.last.as_second()).unwrap_or(f.last);
            let _ = writeln!(h, "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>", escape(name), f.count, escape(&last.to_string()));
        }
        h.push_str("</tbody></table>\n");
    }

    // Fix requests not yet fixed.
    h.push_str("<h2>Open fix requests</h2>\n");
    if v.fleet.fix_requests.is_empty() {
        h.push_str("<p class=\"muted\">None.</p>\n");
    } else {
        if !v.operator {
            h.push_str("<p class=\"muted\">Summaries are shown to operators only (serve --admin-token-file).</p>\n");
        }
        let (rows, pager) = paged(&v.fleet.fix_requests, v.pages.fix_page, "fix_page");
        h.push_str(&pager);
        h.push_str(
            "<table id=\"fix-requests\"><thead><tr><th>Id</th><th>Platform</th><th>Component</th><th>Summary</th><th>Bundle</th>\
             <th>Status</th><th>Filed</th></tr></thead><tbody>\n",
        );
        for f in rows {
            let summary = if v.operator { escape(&f.summary) } else { dash(None) };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&f.id),
                escape(&f.platform),
                escape(&f.component),
                summary,
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
