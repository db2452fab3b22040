//! One intervention at a time: an exclusive lock on `state_dir/lock`. The kernel drops it
//! when the process ends, however it ends (a SIGKILL included), so it never goes stale.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// Held while an intervention (or a rollback, or a recovery) runs.
pub struct Lock {
    _file: File,
}

/// Take the lock, or refuse at once if another agent process holds it.
pub fn acquire(state_dir: &Path) -> Result<Lock> {
    crate::repository::create_private_dir(state_dir)?;
    let path = state_dir.join("lock");
    let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(Error::io("open lock", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", &path)(e)),
    }
}
