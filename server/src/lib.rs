//! palier-server: the release manager's side. The TUF repository editor (init, publish,
//! validations, halt and yank), the control plane (its SQLite store, the agents' API, the
//! fleet dashboard, the auto-halt), and the command line on top of it.

pub mod cli;
pub mod error;
pub mod fleet;
pub mod halts;
pub mod http;
pub mod index;
pub mod keys;
pub mod migrate;
pub mod release;
pub mod repo;
pub mod repo_keys;
pub mod retire;
pub mod store;
pub mod sync;

pub use error::{Error, Result};
