//! `palier-server serve`: the repository as static files under `/repo/`, `/healthz`,
//! `/metrics`, and a background task that keeps the timestamp and snapshot metadata fresh.
//!
//! [`app`] builds the router from an [`AppState`] without binding anything, so tests drive it
//! with `oneshot`; [`serve`] binds, refreshes and shuts down gracefully.

mod api;
mod app;
mod calendar;
mod dashboard;
mod error;
mod files;
mod limits;
mod metrics;
mod operator;
mod serve;
mod worker;

pub use api::{MAX_BODY, MAX_RECEIPT_BUNDLES, PLATFORM_HEADER, is_format};
pub use calendar::path as calendar_path;
pub use app::{AppOptions, AppState, Clock, DEFAULT_HALT_THRESHOLD, HEALTH_EXPIRY_MARGIN, REQUEST_DEADLINE, app};
pub use limits::Limits;
pub use error::AppError;
pub use metrics::{Metrics, RouteClass};
pub use serve::{DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, ServeConfig, TlsFiles, is_loopback, listen_address, raise_nofile_limit, serve, shutdown_signal};
