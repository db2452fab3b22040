//! `palier-server serve`: the repository as static files under `/repo/`, `/healthz`,
//! `/metrics`, and a background task that keeps the timestamp and snapshot metadata fresh.
//!
//! [`app`] builds the router from an [`AppState`] without binding anything, so tests drive it
//! with `oneshot`; [`serve`] binds, refreshes and shuts down gracefully.

mod api;
mod app;
mod dashboard;
mod error;
mod files;
mod metrics;
mod serve;

pub use api::MAX_BODY;
pub use app::{AppState, Clock, DEFAULT_HALT_THRESHOLD, app};
pub use error::AppError;
pub use metrics::{Metrics, RouteClass};
pub use serve::{ServeConfig, serve, shutdown_signal};
