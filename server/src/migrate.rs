//! `palier-server migrate`: bring a repository to the current layout.
//!
//! - From the single-targets layout (every bundle a target of the top-level `targets.json`,
//!   as the first release wrote it): new bins and halts keys in the online folder, the
//!   top-level targets re-signed to list no bundle and delegate to the `halts` role and to N
//!   hashed bins, each bundle moved, unchanged (its custom metadata, length and hashes), into
//!   the bin its name hashes to; then snapshot and timestamp.
//! - From hashed bins without the `halts` role: a halts key and the role added.
//!
//! Needs the targets key (offline when the repository keeps it there), snapshot and
//! timestamp. Agents follow without any change on their side: the new top-level targets
//! and bins are verified like any other update.

use std::collections::HashMap;
use std::num::NonZeroU64;

use jiff::Timestamp;
use tough::schema::Targets;

use crate::error::{Error, Result};
use crate::repo::{self, Bins, Change, HALTS, Head, RepoPaths};
use crate::{keys, repo_keys};

/// What `migrate` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Migrated {
    /// Bundles moved from the top-level targets into `bins` bins; the halts role added.
    ToBins { bundles: usize, bins: u32 },
    /// The halts role added to a repository with bins.
    HaltsAdded,
    /// Nothing to do.
    Current,
}

pub async fn migrate(paths: &RepoPaths, bins: Bins, now: Timestamp) -> Result<Migrated> {
    repo_keys::require_keys(paths, &["targets", "snapshot", "timestamp"])?;
    let _lock = repo::lock(paths)?;
    let head = Head::load(paths)?;
    let legacy = head.targets.signed.delegations.as_ref().is_none_or(|d| d.roles.is_empty());
    let has_halts = head.targets.signed.delegations.as_ref().is_some_and(|d| d.roles.iter().any(|r| r.name == HALTS));
    if !legacy && has_halts {
        return Ok(Migrated::Current);
    }
    let fresh: &[&str] = if legacy { &["halts", "bins"] } else { &["halts"] };
    for role in fresh {
        if keys::key_path(&paths.keys, role, 1).exists() {
            return Err(Error::Refused(format!(
                "keys folder {} already holds a {role} key the repository does not use; move it away and run migrate again",
                paths.keys.display()
            )));
        }
    }
    let mut targets = head.targets.signed.clone();
    let mut delegations = targets.delegations.take().unwrap_or_else(tough::schema::Delegations::new);
    let new_keys = |role: &str| -> Result<(Vec<_>, NonZeroU64)> {
        let (id, key) = repo::new_key(&paths.keys, role, 1)?;
        Ok((vec![(id, key)], NonZeroU64::MIN))
    };
    let (halts_keys, threshold) = new_keys("halts")?;
    let halts_ids: Vec<_> = halts_keys.iter().map(|(id, _)| id.clone()).collect();
    delegations.keys.extend(halts_keys);
    let mut roles = vec![repo::halts_role(halts_ids, threshold)?];
    let expires = targets.expires;
    let mut changed = vec![(HALTS.to_owned(), Targets::new("1.0.0".into(), NonZeroU64::MIN, expires))];
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
        Migrated::HaltsAdded
    };
    // The halts role first (see `repo::init_with_bins`), then the bins already there.
    roles.append(&mut delegations.roles);
    delegations.roles = roles;
    targets.delegations = Some(delegations);
    if let Err(e) = repo::commit(paths, head, Change { bins: changed, targets: Some(targets), snapshot: true, root: None }, now, None).await {
        // The new keys are trusted by nothing yet: remove them so that migrate can run again.
        for role in fresh {
            let _ = std::fs::remove_file(keys::key_path(&paths.keys, role, 1));
        }
        return Err(e);
    }
    Ok(outcome)
}
