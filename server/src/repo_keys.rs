//! Key rotation and root signing.
//!
//! - `key rotate ROLE`: new keys for ROLE (as many as it has), the old ones revoked in the
//!   metadata that delegates to it: a new root (`N+1.root.json`) for root, targets, snapshot
//!   and timestamp; new top-level targets for the bins and `halts`. Everything the role signs
//!   is re-signed with the new keys, then snapshot and timestamp. The old key files move to
//!   `retired/` in their folder.
//! - `root sign`: a new `N+1.root.json` with a fresh expiry, the same keys.
//!
//! A new root is signed by a threshold of the previous root's root keys and of its own, so an
//! agent pinned to `1.root.json` follows every rotation (TUF 5.3) without being re-pinned, and
//! a key once revoked no longer signs anything an agent accepts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use tough::editor::signed::SignedRole;
use tough::key_source::KeySource;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{KeyHolder, RoleType, Root, Signed};

use crate::error::{Error, Result};
use crate::keys;
use crate::repo::{self, Change, Expiries, Head, RepoPaths};

/// The roles `key rotate` knows.
pub const ROTATABLE: [&str; 7] = ["root", "targets", "snapshot", "timestamp", "bins", "halts", "reports"];

/// What a rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub role: String,
    pub keys: usize,
    /// The metadata that now names the new keys: `N.root.json` or `N.targets.json`.
    pub delegating: String,
    pub retired_to: PathBuf,
    /// The folder the new keys are in.
    pub folder: PathBuf,
}

/// The keys a command needs before it starts, each from its folder: refused with one line
/// naming the folder to pass when one is missing.
pub fn require_keys(paths: &RepoPaths, roles: &[&str]) -> Result<()> {
    for role in roles {
        paths.signing_keys(role)?;
    }
    Ok(())
}

/// The folder holding `role`'s key files (the offline folder for root and targets when the
/// repository keeps them there).
fn key_folder(paths: &RepoPaths, role: &str) -> Result<PathBuf> {
    if keys::is_offline(role)
        && let Some(dir) = &paths.offline
        && keys::key_path(dir, role, 1).exists()
    {
        return Ok(dir.clone());
    }
    paths.signing_keys(role)?;
    Ok(paths.keys.clone())
}

fn key_count(folder: &Path, role: &str) -> usize {
    (1..).take_while(|i| keys::key_path(folder, role, *i).exists()).count()
}

/// Sign `root` with the root keys of `new` and of `old`; refuse unless both thresholds are met.
async fn sign_root(dir: &Path, root: Root, old: &Root, new_keys: &[Box<dyn KeySource>], old_keys: &[Box<dyn KeySource>]) -> Result<Vec<u8>> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let by_new = SignedRole::new(root.clone(), &KeyHolder::Root(root.clone()), new_keys, &rng).await.map_err(repo::tuf_err(dir, "sign root"))?;
    let by_old = SignedRole::new(root, &KeyHolder::Root(old.clone()), old_keys, &rng).await.map_err(repo::tuf_err(dir, "sign root"))?;
    let mut signed: Signed<Root> = by_new.signed().clone();
    let seen: HashSet<Decoded<Hex>> = signed.signatures.iter().map(|s| s.keyid.clone()).collect();
    signed.signatures.extend(by_old.signed().signatures.iter().filter(|s| !seen.contains(&s.keyid)).cloned());
    let name = format!("{}.root.json", signed.signed.version);
    old.verify_role(&signed).map_err(|e| Error::Refused(format!("{name} would not be trusted by the current root's keys ({e}); pass the folder holding a threshold of them")))?;
    signed.signed.verify_role(&signed).map_err(|e| Error::Refused(format!("{name} would not be trusted by its own root keys ({e})")))?;
    let mut bytes = serde_json::to_vec(&signed).map_err(|e| Error::Refused(format!("cannot serialise root: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The next root: version + 1, a fresh expiry.
fn next_root(head: &Head, now: Timestamp) -> Result<Root> {
    let mut root = head.root.signed.clone();
    root.version = repo::next(root.version)?;
    root.expires = repo::expiry(now, Expiries::default().root)?;
    Ok(root)
}

/// `root sign`: a new `N+1.root.json` with a fresh expiry and the same keys, then a new
/// snapshot and timestamp. Needs the root key (offline). Returns the new root's version.
pub async fn root_sign(paths: &RepoPaths, now: Timestamp) -> Result<u64> {
    require_keys(paths, &["root", "snapshot", "timestamp"])?;
    let _lock = repo::lock(paths)?;
    let head = Head::load(paths)?;
    let root = next_root(&head, now)?;
    let version = root.version.get();
    let root_keys = paths.signing_keys("root")?;
    let bytes = sign_root(&paths.dir, root.clone(), &head.root.signed, &root_keys, &root_keys).await?;
    repo::commit(paths, head, Change { root: Some((root, bytes)), snapshot: true, ..Default::default() }, now, None).await?;
    Ok(version)
}

/// `key rotate ROLE`.
pub async fn rotate(paths: &RepoPaths, role: &str, now: Timestamp) -> Result<Rotated> {
    if !ROTATABLE.contains(&role) {
        return Err(Error::Refused(format!("no role {role:?} to rotate: expected one of {}", ROTATABLE.join(", "))));
    }
    let delegated = keys::DELEGATED.contains(&role);
    // What the rotation signs: the delegating metadata, what the role signs, snapshot, timestamp.
    // The role's own old keys are not needed: nothing is signed with them any more.
    require_keys(paths, &[if delegated { "targets" } else { "root" }, "snapshot", "timestamp"])?;
    let folder = key_folder(paths, role)?;
    // An offline role's new keys go to the offline folder when one is given, wherever the old
    // ones were: `key rotate bins --offline-keys DIR` takes a bins key that a repository made
    // before the bins went offline kept online out of the online folder, and revokes it.
    let new_folder = match &paths.offline {
        Some(offline) if keys::is_offline(role) => {
            repo::create_private_dir(offline)?;
            offline.clone()
        }
        _ => folder.clone(),
    };
    let _lock = repo::lock(paths)?;
    let head = Head::load(paths)?;
    let count = key_count(&folder, role);
    let staged = new_folder.join(format!(".rotate-{role}"));
    if staged.exists() {
        return Err(Error::Refused(format!(
            "{} exists: an earlier rotation of {role} did not finish; check which keys the repository's metadata names, keep those, and remove that folder",
            staged.display()
        )));
    }
    repo::create_private_dir(&staged)?;
    let outcome = rotate_staged(paths, &head, role, count, &staged, now).await;
    let (change, delegating) = match outcome {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(e);
        }
    };
    let mut signing = paths.clone();
    signing.rotating = Some((role.to_owned(), staged.clone()));
    if let Err(e) = repo::commit(&signing, head, change, now, None).await {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e);
    }
    // The metadata names the new keys: put them in place, the old ones in `retired/`.
    let retired = folder.join("retired");
    repo::create_private_dir(&retired)?;
    for i in 1..=count {
        let old = keys::key_path(&folder, role, i);
        let to = retired.join(format!("{role}-{}-{i}.der", now.as_second()));
        std::fs::rename(&old, &to).map_err(Error::io("retire key", &old))?;
    }
    for i in 1..=count {
        let new = keys::key_path(&staged, role, i);
        let to = keys::key_path(&new_folder, role, i);
        std::fs::rename(&new, &to).map_err(Error::io("put in place new key", &to))?;
    }
    std::fs::remove_dir(&staged).map_err(Error::io("remove", &staged))?;
    Ok(Rotated { role: role.to_owned(), keys: count, delegating, retired_to: retired, folder: new_folder })
}

/// Make the new keys in `staged` and the change that trusts them and re-signs with them.
async fn rotate_staged(paths: &RepoPaths, head: &Head, role: &str, count: usize, staged: &Path, now: Timestamp) -> Result<(Change, String)> {
    let mut new_ids = Vec::new();
    let mut new_keys = Vec::new();
    for i in 1..=count {
        let (id, key) = repo::new_key(staged, role, i)?;
        new_ids.push(id);
        new_keys.push(key);
    }
    if keys::DELEGATED.contains(&role) {
        let mut targets = head.targets.signed.clone();
        let delegations = targets.delegations.as_mut().ok_or_else(|| Error::Refused(format!("repository {}: the targets delegate to no role; run `palier-server migrate` first", paths.dir.display())))?;
        let is_role = |name: &str| repo::key_role(name) == role;
        if !delegations.roles.iter().any(|r| is_role(&r.name)) {
            return Err(Error::Refused(format!("repository {} has no {role} role; run `palier-server migrate --repo {}` first", paths.dir.display(), paths.dir.display())));
        }
        let mut old_ids: HashSet<Decoded<Hex>> = HashSet::new();
        for r in delegations.roles.iter_mut().filter(|r| is_role(&r.name)) {
            old_ids.extend(r.keyids.drain(..));
            r.keyids = new_ids.clone();
        }
        let still_used: HashSet<Decoded<Hex>> = delegations.roles.iter().flat_map(|r| r.keyids.iter().cloned()).collect();
        delegations.keys.retain(|id, _| !old_ids.contains(id) || still_used.contains(id));
        for (id, key) in new_ids.iter().zip(new_keys) {
            delegations.keys.insert(id.clone(), key);
        }
        let names: Vec<String> = delegations.roles.iter().filter(|r| is_role(&r.name)).map(|r| r.name.clone()).collect();
        let mut roles = Vec::new();
        for name in names {
            roles.push((name.clone(), head.load_bin(paths, &name)?.signed));
        }
        let version = repo::next(head.targets.signed.version)?;
        return Ok((Change { bins: roles, targets: Some(targets), snapshot: true, root: None }, format!("{version}.targets.json")));
    }
    let role_type = match role {
        "root" => RoleType::Root,
        "targets" => RoleType::Targets,
        "snapshot" => RoleType::Snapshot,
        _ => RoleType::Timestamp,
    };
    let mut root = next_root(head, now)?;
    let entry = root.roles.get_mut(&role_type).ok_or_else(|| Error::Refused(format!("root names no {role} role")))?;
    let old_ids: Vec<Decoded<Hex>> = std::mem::replace(&mut entry.keyids, new_ids.clone());
    let still_used: HashSet<Decoded<Hex>> = root.roles.values().flat_map(|r| r.keyids.iter().cloned()).collect();
    for id in old_ids {
        if !still_used.contains(&id) {
            root.keys.remove(&id);
        }
    }
    for (id, key) in new_ids.iter().zip(new_keys) {
        root.keys.insert(id.clone(), key);
    }
    let old_root_keys = paths.signing_keys("root")?;
    let new_root_keys = if role == "root" { keys::role_keys(staged, "root")? } else { paths.signing_keys("root")? };
    let bytes = sign_root(&paths.dir, root.clone(), &head.root.signed, &new_root_keys, &old_root_keys).await?;
    let delegating = format!("{}.root.json", root.version);
    let targets = (role == "targets").then(|| head.targets.signed.clone());
    Ok((Change { root: Some((root, bytes)), targets, snapshot: true, bins: Vec::new() }, delegating))
}
