//! Signing keys: ed25519, DER-encoded PKCS#8 (the only form tough reads), one file per key,
//! mode 0600, kept in a keys folder that is never under the served repository.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use tough::key_source::{KeySource, LocalKeySource};

use crate::error::{Error, Result};

/// The four TUF top-level roles, in the order their keys are made.
pub const ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

/// The delegated roles with keys of their own: the hashed bins (one key set for all of them),
/// `halts`, trusted only for halt markers, and `reports`, trusted only for report markers.
pub const DELEGATED: [&str; 3] = ["bins", "halts", "reports"];

/// The roles whose keys `init --offline-keys` puts in the offline folder: they can change
/// which keys are trusted and for what (root), what the delegated roles may sign (targets),
/// and which bundles exist and what their signed metadata says (bins: publish, validate,
/// yank, rollouts, resume). Every other key is online and can only stop code (halts), widen
/// who reported a published bundle (reports), or re-sign what exists (snapshot, timestamp):
/// `serve` holds those.
pub const OFFLINE: [&str; 3] = ["root", "targets", "bins"];

/// Whether `role`'s keys belong in the offline folder.
pub fn is_offline(role: &str) -> bool {
    OFFLINE.contains(&role)
}

/// The signing keys of `role`: an offline role's in `offline` when given (or, in a repository
/// made without `--offline-keys`, in `online`), an online role's in `online`. Refused with
/// one line naming the folder to pass when they are not found.
pub fn signing_keys(online: &Path, offline: Option<&Path>, role: &str) -> Result<Vec<Box<dyn KeySource>>> {
    if is_offline(role) {
        if let Some(dir) = offline
            && key_path(dir, role, 1).exists()
        {
            return role_keys(dir, role);
        }
        if key_path(online, role, 1).exists() {
            return role_keys(online, role);
        }
        let why = match offline {
            Some(dir) => format!("no {role} key in {} nor in {}: pass --offline-keys DIR, the folder `init --offline-keys` wrote the root, targets and bins keys to", dir.display(), online.display()),
            None => format!("the {role} key is an offline key and is not in {}: pass --offline-keys DIR, the folder `init --offline-keys` wrote it to", online.display()),
        };
        return Err(Error::Key { path: key_path(offline.unwrap_or(online), role, 1), why });
    }
    role_keys(online, role)
}

/// File of key `i` (from 1) of `role`: `root.der`, then `root-2.der`, ...
pub fn key_path(keys: &Path, role: &str, i: usize) -> PathBuf {
    if i == 1 { keys.join(format!("{role}.der")) } else { keys.join(format!("{role}-{i}.der")) }
}

/// Create a new key file (refusing to overwrite one) and return its public key bytes.
pub fn generate(path: &Path) -> Result<Vec<u8>> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| Error::Key { path: path.into(), why: format!("cannot generate: {e}") })?;
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|e| Error::Key { path: path.into(), why: format!("generated key unreadable: {e}") })?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io("create key file", path))?;
    // 0600 whatever the umask (a umask can only take bits away from `mode`, even the owner's).
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(Error::io("set permissions of", path))?;
    file.write_all(doc.as_ref()).map_err(Error::io("write key file", path))?;
    file.sync_all().map_err(Error::io("sync key file", path))?;
    Ok(pair.public_key().as_ref().to_vec())
}

/// Every key file of `role` in `keys`, as tough key sources.
pub fn role_keys(keys: &Path, role: &str) -> Result<Vec<Box<dyn KeySource>>> {
    let mut out: Vec<Box<dyn KeySource>> = Vec::new();
    for i in 1.. {
        let path = key_path(keys, role, i);
        if !path.exists() {
            break;
        }
        check_private(&path)?;
        out.push(Box::new(LocalKeySource { path }));
    }
    if out.is_empty() {
        return Err(Error::Key { path: key_path(keys, role, 1), why: format!("no {role} key found (run `palier-server init`, or pass --keys)") });
    }
    Ok(out)
}

/// A key readable by group or others is refused, as ssh does.
fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map_err(Error::io("read key file", path))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(Error::Key { path: path.into(), why: format!("mode {:o} lets others read it; chmod 600 it", mode & 0o777) });
    }
    Ok(())
}
