//! The router and its state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::{SignedDuration, Timestamp};

use super::error::AppError;
use super::{api, dashboard, files};
use super::metrics::{Metrics, RouteClass};
use crate::repo::RepoPaths;
use crate::store::Store;

/// Platforms that must report a rollback of the same bundle version before the server halts it.
pub const DEFAULT_HALT_THRESHOLD: u32 = 2;

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
    halt_threshold: u32,
}

impl AppState {
    /// The repository only: `/api/v1/` answers 503 (no store), the dashboard shows bundles only.
    pub fn new(paths: RepoPaths, clock: Clock) -> Self {
        Self::build(paths, clock, None, DEFAULT_HALT_THRESHOLD)
    }
    /// The repository and the control plane.
    pub fn with_store(paths: RepoPaths, clock: Clock, store: Arc<Store>, halt_threshold: u32) -> Self {
        Self::build(paths, clock, Some(store), halt_threshold)
    }
    fn build(paths: RepoPaths, clock: Clock, store: Option<Arc<Store>>, halt_threshold: u32) -> Self {
        let (metadata, targets) = (paths.metadata(), paths.targets());
        AppState {
            inner: Arc::new(Inner {
                paths,
                metadata,
                targets,
                clock,
                metrics: Metrics::default(),
                hot: files::HotFiles::default(),
                store,
                halt_threshold: halt_threshold.max(1),
            }),
        }
    }
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.inner.store.as_ref()
    }
    pub fn halt_threshold(&self) -> u32 {
        self.inner.halt_threshold
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
}

/// The whole HTTP application: `/` the dashboard, `/repo/` the repository, `/api/v1/` the
/// control plane, `/healthz`, `/metrics`; anything else a JSON 404.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/repo/{*path}", get(files::repo_file))
        .nest("/api/v1", api::routes())
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

/// Count every answer by route class and status, and the body bytes it announces.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = RouteClass::of(request.uri().path());
    let head = request.method() == Method::HEAD;
    let response = next.run(request).await;
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
#[derive(Debug, serde::Deserialize)]
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

/// 200 `{"status":"ok"}` when `timestamp.json` reads and has not expired; 503 otherwise.
async fn healthz(State(state): State<AppState>) -> Result<Response, AppError> {
    let head = read_timestamp(state.metadata_dir()).map_err(AppError::Unavailable)?;
    if head.expires <= state.clock().now() {
        return Err(AppError::Unavailable(format!("timestamp metadata (version {}) expired at {}", head.version, head.expires)));
    }
    let mut response = axum::Json(serde_json::json!({ "status": "ok" })).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The Prometheus text exposition format, version 0.0.4.
async fn metrics(State(state): State<AppState>) -> Response {
    let timestamp = read_timestamp(state.metadata_dir()).ok();
    let body = state.metrics().render(timestamp.as_ref().map(|t| (t.expires, t.version)), state.clock().now());
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8")), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        body,
    )
        .into_response()
}
