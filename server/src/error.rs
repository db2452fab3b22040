//! Errors of the server library. Each names what it was working on.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Bundle(#[from] palier_bundle::Error),
    #[error("bundle archive {path} refused: {source}")]
    Archive {
        path: PathBuf,
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
    #[error("repository {dir}: {what}: {source}")]
    Tuf {
        dir: PathBuf,
        what: &'static str,
        #[source]
        source: Box<tough::error::Error>,
    },
    #[error("signing key {path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error("control-plane store {path}: cannot {what}: {source}")]
    Store {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("ownership index {path}: cannot {what}: {source} (it is derived data: delete it and the -wal and -shm files beside it, and it is built again)")]
    Index {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Refused(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }
}

pub use palier_bundle::error::one_line;
