//! Errors of the agent library. Each names what it was working on.

use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("repository {url} refused: {source}")]
    Repository {
        url: String,
        #[source]
        source: Box<tough::error::Error>,
    },
    #[error("repository {url}: target {target} has invalid signed metadata: {source}")]
    Metadata {
        url: String,
        target: String,
        #[source]
        source: palier_bundle::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("site {path}: {why}")]
    Site { path: PathBuf, why: String },
    #[error("another palier-agent holds {path}: one intervention at a time")]
    Busy { path: PathBuf },
    #[error("{0}")]
    Refused(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }

    /// Exit codes, as documented in the README: 1 failure, 64 invalid config.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 64,
            _ => 1,
        }
    }
}
