//! palier-agent: pulls what a Moodle platform's contract permits and applies it in its window.

pub mod cli;
pub mod config;

pub use config::{Config, ConfigError};
