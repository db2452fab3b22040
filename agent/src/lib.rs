//! palier-agent: pulls what a Moodle platform's contract permits and applies it in its window.
//!
//! `config` reads the agent's config; `repository` verifies the TUF repository against the
//! pinned root; `site` reads the Moodle site's facts; the policy itself is pure and lives in
//! `palier_policy`.

pub mod apply;
pub mod cli;
pub mod config;
pub mod cycle;
pub mod download;
pub mod holds;
pub mod prune;
pub mod checks;
pub mod clock;
pub mod crash;
pub mod error;
pub mod hooks;
pub mod intervene;
pub mod journal;
pub mod lock;
pub mod receipt;
pub mod report;
pub mod repository;
pub mod site;
pub mod transport;

pub use config::{Config, ConfigError};
pub use error::{Error, Result};
