//! palier-server: the release manager's side. The TUF repository editor (init, publish,
//! validations, halt and yank), and the command line on top of it.

pub mod cli;
pub mod error;
pub mod http;
pub mod keys;
pub mod repo;

pub use error::{Error, Result};
