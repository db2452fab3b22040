//! The fleet dashboard, for operators: server-rendered HTML pages, no script, every value
//! escaped, reloaded every minute by the browser itself.
//!
//! - `/`, the overview ([`overview`]): platforms by last outcome, those failing or refusing
//!   the repository first, stale ones, the bundles rolling out with their progress, every
//!   platform and bundle (filtered and paged), auto-halts, refused tokens, open fix requests;
//! - `/bundles/{id}/{version}` ([`bundle`]): a bundle's metadata, validations and the platforms
//!   by state;
//! - `/platforms/{name}` ([`platform`]): a platform's contracts, plan, receipts and holds.
//!
//! Every page reads its filters from the address (`?state=failed&component=mod_quiz&q=univ-
//! &page=2`, [`html::Filters`]) and is also served as JSON under `/api/v1/` (operators only).
//!
//! Nothing here reads the repository per request: the bundles come from a view rebuilt when
//! `timestamp.json` changes, the fleet from one re-read of the store at most every second; a
//! page is rendered once per view and address (then served from memory), and at most
//! [`MAX_RENDERS`] render at once. Each answer says how long the server took in a
//! `Server-Timing` header (`total`, and `render` when it rendered the page).

mod bundle;
mod html;
mod overview;
mod platform;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use jiff::SignedDuration;
use palier_bundle::BundleRef;
use tokio::sync::Semaphore;

use super::app::AppState;
use super::error::AppError;
use super::limits::Failure;
use super::operator;
use crate::repo::{self, Published};
use crate::fleet::Fleet;
use crate::store::{AutoHalt, BundleOutcomes, FixRequest, PlanRow, Platform, StoredPlan, Store};
use html::{Filters, Times};

/// Dashboard renders at once; more wait (within the request's deadline).
const MAX_RENDERS: usize = 2;
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
pub(crate) struct FleetView {
    generation: u64,
    built: Instant,
    /// How long reading the store took.
    read: Duration,
    /// The platforms, their latest plans and receipts (`None`: no store).
    fleet: Option<Fleet>,
    /// The plans as their rows held them: the next rebuild parses only the plans that changed.
    plan_rows: BTreeMap<String, PlanRow>,
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
    /// Pages rendered from the current views, by address and operator: a storm of `GET /`
    /// costs one render per page and view, not one per request.
    pages: Mutex<RenderedPages>,
}

#[derive(Debug, Default)]
struct RenderedPages {
    repo: Option<Arc<RepoView>>,
    fleet: Option<Arc<FleetView>>,
    html: HashMap<(String, bool), Rendered>,
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
    let previous = current();
    let view = tokio::task::spawn_blocking(move || -> crate::Result<FleetView> {
        let built = Instant::now();
        let mut view = match store {
            Some(s) => {
                // Fleet::load, but a plan whose row did not change since the last view is
                // taken from it rather than parsed again (15,000 decisions at 300 platforms).
                let plan_rows = s.plan_rows()?;
                let mut plans = BTreeMap::new();
                for (platform, row) in &plan_rows {
                    let known = previous.as_ref().filter(|v| v.plan_rows.get(platform) == Some(row)).and_then(|v| v.fleet.as_ref()?.plans.get(platform).cloned());
                    if let Some(plan) = known.or_else(|| StoredPlan::from_row(platform, row)) {
                        plans.insert(platform.clone(), plan);
                    }
                }
                FleetView {
                    generation,
                    built,
                    read: Duration::ZERO,
                    fleet: Some(Fleet { platforms: s.platforms()?, plans, receipts: s.latest_receipts(None)? }),
                    plan_rows,
                outcomes: s.bundle_outcomes()?,
                fix_requests: s.unfixed_fix_requests()?,
                    auto_halts: s.auto_halts()?,
                }
            }
            None => FleetView { generation, built, read: Duration::ZERO, fleet: None, plan_rows: BTreeMap::new(), outcomes: BTreeMap::new(), fix_requests: Vec::new(), auto_halts: Vec::new() },
        };
        view.read = built.elapsed();
        Ok(view)
    })
    .await
    .map_err(AppError::internal)?
    .map_err(AppError::internal)?;
    let view = Arc::new(view);
    *cache.fleet.write().unwrap_or_else(PoisonError::into_inner) = Some(view.clone());
    Ok(view)
}

impl FleetView {
    /// Every platform, by name (none without a store).
    pub(crate) fn platforms(&self) -> &[Platform] {
        self.fleet.as_ref().map_or(&[], |f| f.platforms.as_slice())
    }
}

/// What a page is rendered from.
pub(crate) struct Ctx {
    pub times: Times,
    pub repo: Arc<RepoView>,
    pub fleet: Arc<FleetView>,
    pub filters: Filters,
    /// The request carries the operator credential (fix-request summaries are shown).
    pub operator: bool,
    pub failed_tokens: Vec<(String, Failure)>,
    /// A platform not seen for this long is stale: three `--poll-interval`s.
    pub stale_after: SignedDuration,
    /// For what a page reads of one platform (its receipts).
    pub store: Option<Arc<Store>>,
}

/// A page rendered, and how long that took.
#[derive(Debug, Clone)]
struct Rendered {
    body: Arc<str>,
    render: Duration,
}

/// What a page is answered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Html,
    Json,
}

/// Answer a page: from the cache when these views already rendered it for this address,
/// else rendered by `render` on the blocking pool (at most [`MAX_RENDERS`] at once).
async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    format: Format,
    render: impl FnOnce(&Ctx) -> Result<String, AppError> + Send + 'static,
) -> Result<Response, AppError> {
    let start = Instant::now();
    operator::check(state, headers)?;
    let filters = Filters::parse(uri.query());
    let operator = operator::is_operator(state, headers);
    let repo = repo_view(state, Some(REPO_VIEW_WAIT)).await;
    let fleet = fleet_view(state).await?;
    let key = (format!("{}{}", uri.path(), filters.query()), operator);
    let cached = {
        let cache = state.view().pages.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.of(&repo, &fleet) { cache.html.get(&key).cloned() } else { None }
    };
    let (page, rendered_now) = match cached {
        Some(page) => (page, false),
        None => {
            let _permit = state
                .view()
                .renders
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| AppError::Unavailable("the dashboard is shutting down".into()))?;
            let ctx = Ctx {
                times: Times { now: state.clock().now(), tz: state.options().timezone.clone() },
                repo: repo.clone(),
                fleet: fleet.clone(),
                filters,
                operator,
                failed_tokens: state.failed_tokens().snapshot(),
                stale_after: state.options().poll_interval.checked_mul(3).unwrap_or(SignedDuration::MAX),
                store: state.store().cloned(),
            };
            let page = tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                render(&ctx).map(|body| Rendered { body: Arc::from(body), render: t.elapsed() })
            })
            .await
            .map_err(AppError::internal)??;
            let mut cache = state.view().pages.lock().unwrap_or_else(PoisonError::into_inner);
            if !cache.of(&repo, &fleet) || cache.html.len() >= MAX_CACHED_PAGES {
                *cache = RenderedPages { repo: Some(repo.clone()), fleet: Some(fleet.clone()), html: HashMap::new() };
            }
            cache.html.insert(key.clone(), page.clone());
            (page, true)
        }
    };
    let total = start.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut timing = if rendered_now {
        format!("total;dur={:.3}, render;dur={:.3}", ms(total), ms(page.render))
    } else {
        format!("total;dur={:.3}, render;desc=\"cached\"", ms(total))
    };
    if fleet.built >= start {
        // This request re-read the store.
        timing.push_str(&format!(", store;dur={:.3}", ms(fleet.read)));
    }
    tracing::debug!(page = %key.0, total_ms = ms(total), render_ms = ms(page.render), rendered = rendered_now, "dashboard page");
    let mut response = axum::body::Body::from(axum::body::Bytes::from(page.body.as_bytes().to_vec())).into_response();
    let h = response.headers_mut();
    let content_type = match format {
        Format::Html => "text/html; charset=utf-8",
        Format::Json => "application/json",
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if format == Format::Html {
        // No script, no outside resource, no framing; forms only to this server.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
        );
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&timing) {
        h.insert("server-timing", v);
    }
    Ok(response)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(AppError::internal)
}

/// `GET /`: the overview.
pub(crate) async fn overview_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Result<Response, AppError> {
    answer(&state, &headers, &uri, Format::Html, |ctx| Ok(overview::render(ctx, &overview::build(ctx)))).await
}

/// `GET /api/v1/overview`: the overview's data.
pub(crate) async fn overview_json(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Result<Response, AppError> {
    answer(&state, &headers, &uri, Format::Json, |ctx| to_json(&overview::build(ctx))).await
}

/// `GET /platforms/{name}`: one platform.
pub(crate) async fn platform_page(State(state): State<AppState>, Path(name): Path<String>, headers: HeaderMap, uri: Uri) -> Result<Response, AppError> {
    answer(&state, &headers, &uri, Format::Html, move |ctx| platform::render(ctx, &name)).await
}

/// `GET /bundles/{id}/{version}`: one bundle version.
pub(crate) async fn bundle_page(State(state): State<AppState>, Path((id, version)): Path<(String, String)>, headers: HeaderMap, uri: Uri) -> Result<Response, AppError> {
    answer(&state, &headers, &uri, Format::Html, move |ctx| bundle::render(ctx, &id, &version)).await
}
