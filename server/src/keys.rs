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

/// The delegated roles with keys of their own: the hashed bins (one key set for all of them).
pub const DELEGATED: [&str; 1] = ["bins"];

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
