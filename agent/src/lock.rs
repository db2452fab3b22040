//! One intervention at a time: an exclusive lock on `state_dir/lock`. The kernel drops it
//! when the process ends, however it ends (a SIGKILL included), so it never goes stale.
//! `plan` only reads: it takes the lock shared, so it can run during a `run`'s cycle.
//!
//! The state folder belongs to the user the service runs as (the web server's user). A
//! command run as root on a state folder owned by another user refuses, naming the user to
//! run it as: files it created would be root's, and the service could no longer write them.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Held while an intervention (or a rollback, or a recovery) runs, or while `plan` reads.
pub struct Lock {
    _file: File,
}

/// Take the lock, or refuse at once if another agent process holds it.
pub fn acquire(state_dir: &Path) -> Result<Lock> {
    take(state_dir, true)
}

/// Take the lock shared (readers such as `plan`): it goes beside other readers and beside
/// a `run` between its cycles; while a cycle holds the lock it waits for that cycle's end
/// (saying so), rather than read a repository and a state folder half written.
pub fn acquire_shared(state_dir: &Path) -> Result<Lock> {
    match take(state_dir, false) {
        Err(Error::Busy { path }) => {
            eprintln!("waiting for the palier-agent cycle in progress to finish ({})", path.display());
            let file = File::options().write(true).open(&path).map_err(Error::io("open lock", &path))?;
            file.lock_shared().map_err(Error::io("lock", &path))?;
            Ok(Lock { _file: file })
        }
        other => other,
    }
}

fn take(state_dir: &Path, exclusive: bool) -> Result<Lock> {
    check_owner(state_dir, rustix::process::geteuid().as_raw())?;
    crate::repository::create_private_dir(state_dir)?;
    let path = state_dir.join("lock");
    let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(Error::io("open lock", &path))?;
    let taken = if exclusive { file.try_lock() } else { file.try_lock_shared() };
    match taken {
        Ok(()) => Ok(Lock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", &path)(e)),
    }
}

/// Refuse when `euid` is root and `state_dir` (or, before it exists, the folder it would be
/// created in) belongs to another user.
pub fn check_owner(state_dir: &Path, euid: u32) -> Result<()> {
    if euid != 0 {
        return Ok(());
    }
    // The state folder, or the nearest folder above it that exists (where it would be
    // created): owned by root, root may write there.
    let Some(dir) = state_dir.ancestors().find(|p| p.exists()) else { return Ok(()) };
    let Ok(meta) = std::fs::metadata(dir) else { return Ok(()) };
    if meta.uid() == 0 {
        return Ok(());
    }
    let user = user_name(meta.uid()).unwrap_or_else(|| format!("#{}", meta.uid()));
    Err(Error::Refused(format!(
        "state folder {} belongs to {user}, and this command runs as root: files it wrote would be root's and break the service; run it as that user: sudo -u {user} palier-agent ...",
        state_dir.display()
    )))
}

/// The name of user `uid` from `/etc/passwd`.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn root_on_another_users_state_folder_is_refused_naming_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let me = rustix::process::geteuid().as_raw();
        // Not root: nothing to check.
        check_owner(&state, 1000).unwrap();
        if me != 0 {
            // The state folder is ours: as "root" (euid 0 given), it belongs to another user.
            let e = check_owner(&state, 0).unwrap_err().to_string();
            assert!(e.contains("runs as root") && e.contains("sudo -u "), "{e}");
            return;
        }
        // As root: a root-owned folder is fine; one owned by nobody (65534) is refused.
        check_owner(&state, 0).unwrap();
        rustix::fs::chown(&state, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
        let e = check_owner(&state, 0).unwrap_err().to_string();
        let name = user_name(65534).unwrap_or_else(|| "#65534".into());
        assert!(e.contains(&format!("belongs to {name}")) && e.contains(&format!("sudo -u {name} palier-agent")), "{e}");
        assert!(acquire(&state).is_err() && acquire_shared(&state).is_err());
        rustix::fs::chown(&state, Some(rustix::fs::Uid::from_raw(0)), None).unwrap();
        rustix::fs::chown(dir.path(), Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
        // A state folder not created yet: the folder it would be created in decides.
        check_owner(&dir.path().join("not-yet"), 0).unwrap_err();
        check_owner(&state.join("root-owned-parent"), 0).unwrap();
    }

    #[test]
    fn a_shared_lock_goes_beside_another_and_waits_for_an_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let a = acquire_shared(&state).unwrap();
        let b = acquire_shared(&state).unwrap();
        assert!(matches!(acquire(&state), Err(Error::Busy { .. })), "a cycle cannot start while plan reads");
        drop((a, b));
        let x = acquire(&state).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let s = state.clone();
        let reader = std::thread::spawn(move || {
            let got = acquire_shared(&s).map(|_| ());
            tx.send(()).unwrap();
            got
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "the reader waits for the cycle");
        drop(x);
        rx.recv().unwrap();
        reader.join().unwrap().unwrap();
    }
}
