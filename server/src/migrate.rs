//! `palier-server migrate`: bring a repository to the current layout.
//!
//! - From the single-targets layout (every bundle a target of the top-level `targets.json`,
//!   as the first release wrote it): new halts and reports keys in the online folder, a new
//!   bins key in the offline folder when `--offline-keys` is given (else the online one), the
//!   top-level targets re-signed to list no bundle and delegate to the `halts` and `reports`
//!   roles and to N hashed bins, each bundle moved, unchanged (its custom metadata, length and
//!   hashes), into the bin its name hashes to; then snapshot and timestamp.
//! - From hashed bins without the `halts` or `reports` role: its key and the role added.
//!
//! A repository whose bins key is still in the online folder (made before the bins went
//! offline) is moved with `key rotate bins --offline-keys DIR`: a new bins key written to the
//! offline folder, the old one revoked.
//!
//! Needs the targets key (offline when the repository keeps it there), snapshot and
//! timestamp. Agents follow without any change on their side: the new top-level targets
//! and bins are verified like any other update.

use std::collections::HashMap;
use std::num::NonZeroU64;

use jiff::Timestamp;
use tough::schema::Targets;

use crate::error::{Error, Result};
use crate::repo::{self, Bins, Change, Head, MARKER_ROLES, RepoPaths};
use crate::{keys, repo_keys};

/// What `migrate` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Migrated {
    /// Bundles moved from the top-level targets into `bins` bins; the marker roles added.
    ToBins { bundles: usize, bins: u32 },
    /// Marker roles (`halts`, `reports`) added to a repository with bins.
    RolesAdded(Vec<String>),
    /// Nothing to do.
    Current,
}

pub async fn migrate(paths: &RepoPaths, bins: Bins, now: Timestamp) -> Result<Migrated> {
    repo_keys::require_keys(paths, &["targets", "snapshot", "timestamp"])?;
    let _lock = repo::lock(paths)?;
    let head = Head::load(paths)?;
    let legacy = head.targets.signed.delegations.as_ref().is_none_or(|d| d.roles.is_empty());
    let has = |role: &str| head.targets.signed.delegations.as_ref().is_some_and(|d| d.roles.iter().any(|r| r.name == role));
    let missing: Vec<&str> = MARKER_ROLES.iter().copied().filter(|r| !has(r)).collect();
    if !legacy && missing.is_empty() {
        return Ok(Migrated::Current);
    }
    // Each new key goes to the folder its role belongs in: the bins key to the offline
    // folder when one is given.
    let folder_of = |role: &str| match &paths.offline {
        Some(offline) if keys::is_offline(role) => offline.clone(),
        _ => paths.keys.clone(),
    };
    let mut fresh: Vec<&str> = missing.clone();
    if legacy {
        fresh.push("bins");
    }
    for role in &fresh {
        if keys::key_path(&folder_of(role), role, 1).exists() {
            return Err(Error::Refused(format!(
                "keys folder {} already holds a {role} key the repository does not use; move it away and run migrate again",
                folder_of(role).display()
            )));
        }
    }
    if let Some(offline) = &paths.offline {
        repo::create_private_dir(offline)?;
    }
    let mut made: Vec<std::path::PathBuf> = Vec::new();
    let outcome = prepare(&head, legacy, &missing, bins, &folder_of, &mut made);
    let (change, outcome) = match outcome {
        Ok(v) => v,
        Err(e) => {
            remove(&made);
            return Err(e);
        }
    };
    if let Err(e) = repo::commit(paths, head, change, now, None).await {
        // The new keys are trusted by nothing yet: remove them so that migrate can run again.
        remove(&made);
        return Err(e);
    }
    Ok(outcome)
}

fn remove(made: &[std::path::PathBuf]) {
    for path in made {
        let _ = std::fs::remove_file(path);
    }
}

/// The new keys (their files listed in `made`) and the change that trusts them.
fn prepare(
    head: &Head,
    legacy: bool,
    missing: &[&str],
    bins: Bins,
    folder_of: &dyn Fn(&str) -> std::path::PathBuf,
    made: &mut Vec<std::path::PathBuf>,
) -> Result<(Change, Migrated)> {
    let mut targets = head.targets.signed.clone();
    let mut delegations = targets.delegations.take().unwrap_or_default();
    let mut new_keys = |role: &str| -> Result<(Vec<_>, NonZeroU64)> {
        let folder = folder_of(role);
        let (id, key) = repo::new_key(&folder, role, 1)?;
        made.push(keys::key_path(&folder, role, 1));
        Ok((vec![(id, key)], NonZeroU64::MIN))
    };
    let expires = targets.expires;
    let mut roles = Vec::new();
    let mut changed = Vec::new();
    for role in MARKER_ROLES {
        if missing.contains(&role) {
            let (role_keys, threshold) = new_keys(role)?;
            let ids: Vec<_> = role_keys.iter().map(|(id, _)| id.clone()).collect();
            delegations.keys.extend(role_keys);
            roles.push(repo::marker_role(role, ids, threshold)?);
            changed.push((role.to_owned(), Targets::new("1.0.0".into(), NonZeroU64::MIN, expires)));
        } else if let Some(i) = delegations.roles.iter().position(|r| r.name == role) {
            roles.push(delegations.roles.remove(i));
        }
    }
    let outcome = if legacy {
        let (bin_keys, threshold) = new_keys("bins")?;
        let bin_ids: Vec<_> = bin_keys.iter().map(|(id, _)| id.clone()).collect();
        delegations.keys.extend(bin_keys);
        roles.extend(repo::bin_roles(bins, &bin_ids, threshold)?);
        let mut contents: HashMap<String, Targets> = HashMap::new();
        let moved = std::mem::take(&mut targets.targets);
        let count = moved.len();
        for i in 0..bins.count() {
            contents.insert(bins.name(i), Targets::new("1.0.0".into(), NonZeroU64::MIN, expires));
        }
        for (name, target) in moved {
            let bin = bins.name(bins.of(name.raw()));
            contents.get_mut(&bin).ok_or_else(|| Error::Refused(format!("no bin {bin}")))?.targets.insert(name, target);
        }
        let mut sorted: Vec<_> = contents.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        changed.extend(sorted);
        Migrated::ToBins { bundles: count, bins: bins.count() }
    } else {
        Migrated::RolesAdded(missing.iter().map(|r| (*r).to_owned()).collect())
    };
    // The marker roles first (see `repo::init_with_bins`), then the bins already there.
    roles.append(&mut delegations.roles);
    delegations.roles = roles;
    targets.delegations = Some(delegations);
    Ok((Change { bins: changed, targets: Some(targets), snapshot: true, root: None }, outcome))
}
