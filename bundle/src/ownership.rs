//! File ownership across bundles: two bundles of different ids must not write or delete
//! the same path, or the one applied last would silently undo the other's fix, unless one
//! names the other in `after` (it is then built on top of it and carries both fixes).
//!
//! [`conflicts`] is used by `publish` (against the active bundles of the repository, whose
//! [`Claims`] the server keeps in an index) and by
//! the agent (against the bundles installed and due on its site), so both refuse the same
//! pairs. A `delete` of a folder owns everything under it.

use std::collections::BTreeMap;
use std::fmt;

use crate::manifest::{Dependency, Manifest};
use crate::metadata::BundleRef;
use crate::names::RelPath;

/// Two bundles of different ids that both write or delete `path`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    pub path: String,
    pub first: BundleRef,
    pub second: BundleRef,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} and {} both write or delete {}, and neither names the other in `after`",
            self.first, self.second, self.path
        )
    }
}

/// What a bundle owns on a site: the paths it writes and deletes, and the bundles it is built
/// on (`after`). All the ownership rules need of a manifest; the server's ownership index
/// keeps these for every active bundle instead of their whole manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub bundle: BundleRef,
    pub writes: Vec<RelPath>,
    pub deletes: Vec<RelPath>,
    pub after: Vec<Dependency>,
}

impl From<&Manifest> for Claims {
    fn from(m: &Manifest) -> Self {
        Claims {
            bundle: BundleRef { id: m.id.clone(), version: m.version.clone() },
            writes: m.files.iter().map(|f| f.path.clone()).collect(),
            deletes: m.delete.clone(),
            after: m.after.clone(),
        }
    }
}

impl Claims {
    /// Every path it writes or deletes.
    pub fn paths(&self) -> impl Iterator<Item = &RelPath> {
        self.writes.iter().chain(&self.deletes)
    }
}

/// How a bundle touches a path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Touch {
    Write,
    Delete,
}

/// Whether `a` names `b` in its `after` list (by id, with a version requirement `b` meets).
fn names_in_after(a: &Claims, b: &Claims) -> bool {
    a.after.iter().any(|dep| dep.id == b.bundle.id && dep.req.matches(&b.bundle.version))
}

/// Every pair of bundles of different ids among `manifests` that touch the same path (or,
/// for a delete, a path under the deleted one) where neither names the other in `after`.
/// Each pair is reported once, with the first path found (in path order); pairs come
/// sorted, `first` being the bundle listed first in `manifests`.
pub fn conflicts(manifests: &[&Manifest]) -> Vec<Conflict> {
    let claims: Vec<Claims> = manifests.iter().map(|m| Claims::from(*m)).collect();
    conflicts_among(&claims.iter().collect::<Vec<_>>())
}

/// [`conflicts`] on what each bundle claims.
pub fn conflicts_among(bundles: &[&Claims]) -> Vec<Conflict> {
    let mut by_path: BTreeMap<&str, Vec<(usize, Touch)>> = BTreeMap::new();
    for (i, c) in bundles.iter().enumerate() {
        for p in &c.writes {
            by_path.entry(p.as_str()).or_default().push((i, Touch::Write));
        }
        for d in &c.deletes {
            by_path.entry(d.as_str()).or_default().push((i, Touch::Delete));
        }
    }
    let mut pairs: BTreeMap<(usize, usize), String> = BTreeMap::new();
    let mut note = |a: usize, b: usize, path: &str| {
        let (x, y) = if a < b { (a, b) } else { (b, a) };
        let (ca, cb) = (bundles[x], bundles[y]);
        if ca.bundle.id != cb.bundle.id && !names_in_after(ca, cb) && !names_in_after(cb, ca) {
            pairs.entry((x, y)).or_insert_with(|| path.to_owned());
        }
    };
    for (path, touches) in &by_path {
        for (k, (a, _)) in touches.iter().enumerate() {
            for (b, _) in &touches[k + 1..] {
                note(*a, *b, path);
            }
        }
        // A deleted folder: every path under it belongs to the deleting bundle too.
        let prefix = format!("{path}/");
        for (a, _) in touches.iter().filter(|(_, t)| *t == Touch::Delete) {
            for (under, others) in by_path.range::<str, _>((std::ops::Bound::Excluded(prefix.as_str()), std::ops::Bound::Unbounded)) {
                if !under.starts_with(&prefix) {
                    break;
                }
                for (b, _) in others {
                    note(*a, *b, under);
                }
            }
        }
    }
    pairs
        .into_iter()
        .map(|((a, b), path)| Conflict { path, first: bundles[a].bundle.clone(), second: bundles[b].bundle.clone() })
        .collect()
}

/// The first path `next` would take from a bundle of `live` (of another id) on a site where
/// `live` is installed: unlike [`conflicts`], the order matters. `next` may write over a
/// live bundle's path only if `next` names that bundle in `after` (it is built on top of
/// it); a live bundle naming `next`'s id does not let a newer `next` undo it. `first` is
/// the live bundle, `second` is `next`.
pub fn overwrites(live: &[&Manifest], next: &Manifest) -> Option<Conflict> {
    let next = Claims::from(next);
    live.iter().map(|m| Claims::from(*m)).filter(|m| m.bundle.id != next.bundle.id && !names_in_after(&next, m)).find_map(|mut m| {
        // Pairwise, without the `after` exemption the live bundle would give.
        m.after.retain(|d| d.id != next.bundle.id);
        conflicts_among(&[&m, &next]).into_iter().next()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use semver::Version;

    use super::*;
    use crate::manifest::{ChangeClass, DataImpact, Dependency, FileEntry, FileMode, Origin, Sha256Hex};
    use crate::names::{BundleId, Component, RelPath};

    fn manifest(id: &str, version: &str, writes: &[&str], deletes: &[&str], after: &[&str]) -> Manifest {
        Manifest {
            id: BundleId::new(id).unwrap(),
            version: Version::parse(version).unwrap(),
            component: Component::new("mod_quiz").unwrap(),
            class: ChangeClass::Technical,
            data_impact: DataImpact::None,
            summary: "test".into(),
            fixes: Vec::new(),
            origin: Origin::Report,
            requires_moodle: None,
            after: after.iter().map(|a| Dependency::parse(a).unwrap()).collect(),
            delete: deletes.iter().map(|d| RelPath::new(*d).unwrap()).collect(),
            upgrade: false,
            checks: Vec::new(),
            files: writes
                .iter()
                .map(|p| FileEntry { path: RelPath::new(*p).unwrap(), sha256: Sha256Hex::new("0".repeat(64)).unwrap(), size: 1, mode: FileMode::Regular })
                .collect(),
        }
    }

    #[test]
    fn two_ids_writing_the_same_file_conflict_naming_both() {
        let a = manifest("quiz-a", "1.0.0", &["mod/quiz/view.php", "mod/quiz/a.php"], &[], &[]);
        let b = manifest("quiz-b", "2.0.0", &["mod/quiz/view.php"], &[], &[]);
        let c = conflicts(&[&a, &b]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, "mod/quiz/view.php");
        assert_eq!(c[0].to_string(), "quiz-a@1.0.0 and quiz-b@2.0.0 both write or delete mod/quiz/view.php, and neither names the other in `after`");
    }

    #[test]
    fn a_delete_conflicts_with_a_write_of_the_same_path_or_under_it() {
        let a = manifest("quiz-a", "1.0.0", &["mod/quiz/old/x.php"], &[], &[]);
        let b = manifest("quiz-b", "1.0.0", &[], &["mod/quiz/old"], &[]);
        assert_eq!(conflicts(&[&a, &b]).len(), 1);
        let c = manifest("quiz-c", "1.0.0", &["mod/quiz/old"], &[], &[]);
        assert_eq!(conflicts(&[&b, &c]).len(), 1);
        let d = manifest("quiz-d", "1.0.0", &["mod/quiz/older.php"], &[], &[]);
        assert!(conflicts(&[&b, &d]).is_empty(), "a sibling whose name only starts alike is not under the folder");
    }

    #[test]
    fn naming_the_other_in_after_or_the_same_id_is_no_conflict() {
        let a = manifest("quiz-a", "1.0.0", &["mod/quiz/view.php"], &[], &[]);
        let b = manifest("quiz-b", "1.0.0", &["mod/quiz/view.php"], &[], &["quiz-a >=1.0.0"]);
        assert!(conflicts(&[&a, &b]).is_empty());
        let wrong_version = manifest("quiz-b", "1.0.0", &["mod/quiz/view.php"], &[], &["quiz-a >=2.0.0"]);
        assert_eq!(conflicts(&[&a, &wrong_version]).len(), 1);
        let a2 = manifest("quiz-a", "1.0.1", &["mod/quiz/view.php"], &[], &[]);
        assert!(conflicts(&[&a, &a2]).is_empty(), "versions of one id replace each other");
    }

    #[test]
    fn a_newer_version_may_not_overwrite_a_live_bundle_built_on_its_older_one() {
        // quiz-b was built on quiz-a 1.0.0 and carries both fixes in view.php.
        let b = manifest("quiz-b", "1.0.0", &["mod/quiz/view.php"], &[], &["quiz-a >=1.0.0"]);
        let a2 = manifest("quiz-a", "1.0.1", &["mod/quiz/view.php"], &[], &[]);
        let c = overwrites(&[&b], &a2).unwrap();
        assert_eq!((c.first.to_string(), c.second.to_string(), c.path.as_str()), ("quiz-b@1.0.0".into(), "quiz-a@1.0.1".into(), "mod/quiz/view.php"));
        // A bundle built on the live one may replace its file; other paths are free.
        let c2 = manifest("quiz-c", "1.0.0", &["mod/quiz/view.php"], &[], &["quiz-b >=1.0.0"]);
        assert!(overwrites(&[&b], &c2).is_none());
        let elsewhere = manifest("quiz-a", "1.0.2", &["mod/quiz/other.php"], &[], &[]);
        assert!(overwrites(&[&b], &elsewhere).is_none());
    }
}
