//! The router and its state.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::{SignedDuration, Timestamp};

use super::dashboard::ViewCache;
use super::error::AppError;
use super::limits::{FailedTokens, Limits, RateLimiter};
use super::metrics::{Metrics, RouteClass};
use super::operator::{self, Operator};
use super::worker::RepoWorker;
use super::{api, calendar, dashboard, files};
use crate::repo::RepoPaths;
use crate::store::Store;

/// Platforms that must report a rollback of the same bundle version before the server halts it.
pub const DEFAULT_HALT_THRESHOLD: u32 = 2;

/// Longest time a request may take to produce its answer (a download then streams on).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// `/healthz` fails when the timestamp metadata expires within this.
pub const HEALTH_EXPIRY_MARGIN: SignedDuration = SignedDuration::from_hours(6);

/// The server's clock: the system clock, or the system clock shifted so that it read a given
/// instant when the server started (the hidden `--now` flag), so time still goes on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset: SignedDuration,
}

impl Clock {
    pub fn system() -> Self {
        Clock::default()
    }
    /// A clock that says `now` at the moment it is made.
    pub fn starting_at(now: Timestamp) -> Self {
        Clock { offset: now.duration_since(Timestamp::now()) }
    }
    pub fn now(&self) -> Timestamp {
        let real = Timestamp::now();
        real.checked_add(self.offset).unwrap_or(real)
    }
}

/// How the control plane behaves, beyond the repository and the store.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// Distinct platforms (whose contract admits the bundle and that had it) reporting a
    /// rollback of one bundle version before it is halted.
    pub halt_threshold: u32,
    /// When set, the rollbacks must also be at least this share (0 to 1) of the platforms that
    /// applied the bundle version (applied or rolled it back).
    pub halt_share: Option<f64>,
    /// The operator credential for the dashboard and `/metrics`; `None` leaves them open
    /// (loopback only: `serve` refuses another address without one).
    pub operator_token: Option<String>,
    /// Per-platform quotas.
    pub limits: Limits,
    /// How often the metadata refresh runs; `/healthz` fails when the last successful one is
    /// older than twice this. `None` (no refresh loop, as in tests of the router) skips that check.
    pub refresh_every: Option<Duration>,
    /// How often agents report; a platform not seen for three of these is flagged.
    pub poll_interval: SignedDuration,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            halt_threshold: DEFAULT_HALT_THRESHOLD,
            halt_share: None,
            operator_token: None,
            limits: Limits::default(),
            refresh_every: None,
            poll_interval: SignedDuration::from_hours(1),
        }
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    paths: RepoPaths,
    metadata: PathBuf,
    targets: PathBuf,
    clock: Clock,
    metrics: Metrics,
    hot: files::HotFiles,
    store: Option<Arc<Store>>,
    options: AppOptions,
    operator: Option<Operator>,
    repo: RepoWorker,
    view: ViewCache,
    rates: RateLimiter,
    failed_tokens: FailedTokens,
    /// When the metadata refresh last succeeded (re-signed or found nothing due).
    last_refresh: Mutex<Option<Timestamp>>,
    started: Timestamp,
}

impl AppState {
    /// The repository only: `/api/v1/` answers 503 (no store), the dashboard shows bundles only.
    pub fn new(paths: RepoPaths, clock: Clock) -> Self {
        Self::build(paths, clock, None, AppOptions::default())
    }
    /// The repository and the control plane.
    pub fn with_store(paths: RepoPaths, clock: Clock, store: Arc<Store>, halt_threshold: u32) -> Self {
        Self::build(paths, clock, Some(store), AppOptions { halt_threshold, ..AppOptions::default() })
    }
    /// The repository, the control plane when `store` is given, and every option.
    pub fn with_options(paths: RepoPaths, clock: Clock, store: Option<Arc<Store>>, options: AppOptions) -> Self {
        Self::build(paths, clock, store, options)
    }
    fn build(paths: RepoPaths, clock: Clock, store: Option<Arc<Store>>, mut options: AppOptions) -> Self {
        let (metadata, targets) = (paths.metadata(), paths.targets());
        options.halt_threshold = options.halt_threshold.max(1);
        options.halt_share = options.halt_share.filter(|s| s.is_finite() && *s > 0.0).map(|s| s.min(1.0));
        #[allow(clippy::expect_used)]
        let repo = RepoWorker::start().expect("cannot start the repository thread");
        let operator = options.operator_token.as_deref().map(Operator::new);
        AppState {
            inner: Arc::new(Inner {
                paths,
                metadata,
                targets,
                clock,
                metrics: Metrics::default(),
                hot: files::HotFiles::default(),
                store,
                rates: RateLimiter::new(options.limits.clone()),
                options,
                operator,
                repo,
                view: ViewCache::default(),
                failed_tokens: FailedTokens::default(),
                last_refresh: Mutex::new(None),
                started: clock.now(),
            }),
        }
    }
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.inner.store.as_ref()
    }
    pub fn halt_threshold(&self) -> u32 {
        self.inner.options.halt_threshold
    }
    pub fn options(&self) -> &AppOptions {
        &self.inner.options
    }
    pub fn paths(&self) -> &RepoPaths {
        &self.inner.paths
    }
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    pub(crate) fn metadata_dir(&self) -> &Path {
        &self.inner.metadata
    }
    pub(crate) fn targets_dir(&self) -> &Path {
        &self.inner.targets
    }
    pub(crate) fn hot_files(&self) -> &files::HotFiles {
        &self.inner.hot
    }
    pub(crate) fn repo(&self) -> &RepoWorker {
        &self.inner.repo
    }
    pub(crate) fn view(&self) -> &ViewCache {
        &self.inner.view
    }
    pub(crate) fn operator(&self) -> Option<&Operator> {
        self.inner.operator.as_ref()
    }
    pub(crate) fn rates(&self) -> &RateLimiter {
        &self.inner.rates
    }
    pub(crate) fn failed_tokens(&self) -> &FailedTokens {
        &self.inner.failed_tokens
    }
    /// The metadata refresh succeeded at `at`.
    pub(crate) fn refreshed(&self, at: Timestamp) {
        *self.inner.last_refresh.lock().unwrap_or_else(PoisonError::into_inner) = Some(at);
    }
    fn last_refresh(&self) -> Option<Timestamp> {
        *self.inner.last_refresh.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The whole HTTP application: `/` the dashboard, `/repo/` the repository, `/api/v1/` the
/// control plane, `/calendar/` the platforms' iCalendar feeds, `/healthz`, `/metrics`;
/// anything else a JSON 404.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/repo/{*path}", get(files::repo_file))
        .nest("/api/v1", api::routes())
        .route("/calendar/{platform}/{file}", get(calendar::feed))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> AppError {
    AppError::not_found(uri.path())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

/// Give every request [`REQUEST_DEADLINE`] to answer; count every answer by route class and
/// status, and the body bytes it announces.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = RouteClass::of(request.uri().path());
    let head = request.method() == Method::HEAD;
    let response = match tokio::time::timeout(REQUEST_DEADLINE, next.run(request)).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(route = route.as_str(), deadline_s = REQUEST_DEADLINE.as_secs(), "request over its deadline; answered 503");
            AppError::Unavailable(format!("the server could not answer within {} s; try again later", REQUEST_DEADLINE.as_secs())).into_response()
        }
    };
    // A file answer announces its length; a JSON answer knows its size.
    let bytes = if head {
        0
    } else {
        response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .or_else(|| response.body().size_hint().exact())
            .unwrap_or(0)
    };
    state.metrics().record(route, response.status().as_u16(), bytes);
    tracing::debug!(route = route.as_str(), status = response.status().as_u16(), bytes, "answered");
    response
}

/// What `/healthz` and `/metrics` need of `timestamp.json`: read, not verified.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct TimestampHead {
    pub expires: Timestamp,
    pub version: u64,
}

pub(crate) fn read_timestamp(metadata: &Path) -> Result<TimestampHead, String> {
    #[derive(serde::Deserialize)]
    struct File {
        signed: TimestampHead,
    }
    let path = metadata.join("timestamp.json");
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice::<File>(&bytes).map(|f| f.signed).map_err(|e| format!("cannot parse {}: {e}", path.display()))
}

/// Why the server is not healthy, or `None`: the timestamp metadata unreadable, expired or
/// expiring within [`HEALTH_EXPIRY_MARGIN`], or the refresh not having succeeded for twice
/// its interval.
pub(crate) fn unhealthy(state: &AppState) -> Option<String> {
    let now = state.clock().now();
    let head = match read_timestamp(state.metadata_dir()) {
        Ok(h) => h,
        Err(e) => return Some(e),
    };
    if head.expires <= now {
        return Some(format!("timestamp metadata (version {}) expired at {}", head.version, head.expires));
    }
    if now.checked_add(HEALTH_EXPIRY_MARGIN).is_ok_and(|horizon| head.expires <= horizon) {
        return Some(format!(
            "timestamp metadata (version {}) expires at {}, within {}h: it is not being re-signed (see the server's log)",
            head.version,
            head.expires,
            HEALTH_EXPIRY_MARGIN.as_hours()
        ));
    }
    if let Some(every) = state.options().refresh_every {
        let limit = SignedDuration::try_from(every.saturating_mul(2)).unwrap_or(SignedDuration::MAX);
        let since = state.last_refresh().unwrap_or(state.inner.started);
        if now.duration_since(since) > limit {
            let last = state.last_refresh().map_or_else(|| "never since the start".to_owned(), |t| format!("last at {t}"));
            return Some(format!("the metadata refresh has not succeeded for over {}s ({last}): see the server's log", limit.as_secs()));
        }
    }
    None
}

/// 200 `{"status":"ok"}` when the timestamp is readable, fresh and being re-signed; 503 with
/// the reason otherwise.
async fn healthz(State(state): State<AppState>) -> Result<Response, AppError> {
    if let Some(why) = unhealthy(&state) {
        return Err(AppError::Unavailable(why));
    }
    let mut response = axum::Json(serde_json::json!({ "status": "ok" })).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The Prometheus text exposition format, version 0.0.4; operators only.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Result<Response, AppError> {
    operator::check(&state, &headers)?;
    let timestamp = read_timestamp(state.metadata_dir()).ok();
    let mut body = state.metrics().render(timestamp.as_ref().map(|t| (t.expires, t.version)), state.clock().now());
    if let Some(store) = state.store().cloned() {
        let view = dashboard::repo_view(&state, None).await;
        let active: Vec<palier_bundle::BundleRef> = view
            .bundles
            .iter()
            .filter(|p| p.meta.state == palier_bundle::BundleState::Active)
            .map(|p| palier_bundle::BundleRef { id: p.meta.manifest.id.clone(), version: p.meta.manifest.version.clone() })
            .collect();
        let rows = tokio::task::spawn_blocking(move || -> crate::Result<Vec<(String, std::collections::BTreeMap<crate::fleet::State, usize>)>> {
            let fleet = crate::fleet::Fleet::load(&store)?;
            Ok(active.iter().map(|b| (b.to_string(), fleet.counts(b))).collect())
        })
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?;
        super::metrics::render_bundle_platforms(&mut body, &rows);
    }
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8")), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        body,
    )
        .into_response())
}
