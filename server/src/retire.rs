//! Retirement: yanked and superseded bundles older than a retention period leave the active
//! bins, so the metadata an agent downloads and plans over stops growing with the history.
//!
//! A bundle is retired when all of these hold:
//!
//! - it is **yanked**, or it is **superseded**: a later version of the same id is active
//!   (not halted, not yanked, no halt marker) and replaces it everywhere it applies. That
//!   later version has the same component and class, every validation the older one has
//!   (alpha, datasets), every platform of its `reported_by` (a level-1 platform takes only
//!   the bundles it reported), the same Moodle requirement or none, and a staged rollout (if
//!   any) whose last wave, at 100 % of the fleet, is open and was not paused before it opened;
//!   and no bundle of another id that is not yanked names the older version in its `after`
//!   with a requirement the later one does not meet. A halted version can be superseded; a halted
//!   version that is not stays (a halt is a pause, not a withdrawal).
//! - it left the active set longer ago than the retention: a superseded bundle counts from
//!   the moment its successor reached the whole fleet (its publication, or its last wave), or
//!   from its own publication when that came later; a
//!   yanked bundle from its publication, since the signed metadata does not record when a
//!   bundle was yanked.
//! - with the control plane's store, no platform's latest status or plan reports it
//!   installed, and no platform's latest plan still has it due (eligible, waiting for its
//!   validation or its wave, or needing a scheduled intervention).
//!
//! Retired entries, the signed target entries as they were with the bin and the bin version
//! that last listed them (that version's file stays in `metadata/`: versioned files are never
//! removed), are appended to an archive in the keys folder, which is never served, with when
//! and why. The archive tarballs stay in `targets/`: an agent that has one installed can still
//! be reasoned about, and deleting blobs is a separate decision. `list --retired` reads the
//! archive, and `publish` refuses an id@version that was retired (it was published once).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use palier_bundle::{BundleRef, BundleState};
use palier_policy::DecisionKind;
use serde::{Deserialize, Serialize};
use tough::TargetName;
use tough::schema::Target;

use crate::error::{Error, Result};
use crate::repo::{self, Change, Head, Published, RepoPaths};
use crate::store::Store;

/// The retention when neither `--older-than` nor the repository's settings say otherwise.
pub const DEFAULT_RETENTION: &str = "90d";

/// The archive of retired entries, in the keys folder (never served).
pub const ARCHIVE_FILE: &str = "retired-bundles.json";

/// Format of the archive file.
const ARCHIVE_FORMAT: u32 = 1;

/// Why a bundle is a candidate for retirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Yanked,
    Superseded,
}

/// What retirement decided about one candidate (a yanked bundle, or one with a later active
/// version): retired, or kept with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// `id@version`.
    pub bundle: String,
    pub target: String,
    pub kind: Kind,
    pub retire: bool,
    /// One sentence: why it is retired, or why it stays.
    pub reason: String,
}

/// Which platforms report each bundle (`id@version`) installed, or still due, in the control
/// plane's store: their latest status and their latest plan.
#[derive(Debug, Clone, Default)]
pub struct FleetUse {
    installed: BTreeMap<String, BTreeSet<String>>,
    due: BTreeMap<String, BTreeSet<String>>,
    /// Registered platforms that never sent a status: what they run is not known.
    pub silent: BTreeSet<String>,
}

impl FleetUse {
    /// Read every platform's latest status and plan.
    pub fn load(store: &Store) -> Result<FleetUse> {
        let mut fleet = FleetUse::default();
        for p in store.platforms()? {
            if p.last_seen.is_none() {
                fleet.silent.insert(p.name.clone());
            }
            for i in &p.installed {
                fleet.installed(&p.name, &format!("{}@{}", i.id, i.version));
            }
            for d in p.due.iter().flatten() {
                fleet.due(&p.name, &format!("{}@{}", d.id, d.version));
            }
        }
        for (platform, plan) in store.plans()? {
            for d in &plan.bundles {
                match d.decision {
                    DecisionKind::Installed => fleet.installed(&platform, &d.key()),
                    DecisionKind::Skipped => {}
                    _ => fleet.due(&platform, &d.key()),
                }
            }
        }
        Ok(fleet)
    }
    /// Record that `platform` reports `bundle` (`id@version`) installed.
    pub fn installed(&mut self, platform: &str, bundle: &str) {
        self.installed.entry(bundle.to_owned()).or_default().insert(platform.to_owned());
    }
    /// Record that `platform`'s plan still has `bundle` (`id@version`) due.
    pub fn due(&mut self, platform: &str, bundle: &str) {
        self.due.entry(bundle.to_owned()).or_default().insert(platform.to_owned());
    }
}

/// "3 platforms: a, b, c".
fn platforms(names: &BTreeSet<String>) -> String {
    let list: Vec<&str> = names.iter().map(String::as_str).collect();
    format!("{} platform{}: {}", list.len(), if list.len() == 1 { "" } else { "s" }, list.join(", "))
}

/// A duration in words: whole days from one day up (rounded down), else as `2h30m`.
pub fn in_words(d: SignedDuration) -> String {
    match d.as_secs() / 86_400 {
        0 => palier_bundle::duration::format_duration(d),
        1 => "1 day".into(),
        days => format!("{days} days"),
    }
}

/// Why `newer` does not replace `older` everywhere `older` applies, if so; else `Ok` with the
/// instant from which it did (its publication, or the opening of its last wave).
fn replaces(older: &Published, newer: &Published, not_yanked: &[&Published]) -> std::result::Result<Timestamp, String> {
    let (o, n) = (&older.meta, &newer.meta);
    let v = &n.manifest.version;
    if n.manifest.component != o.manifest.component || n.manifest.class != o.manifest.class {
        return Err(format!("version {v} is for {} ({}), not {} ({})", n.manifest.component, n.manifest.class, o.manifest.component, o.manifest.class));
    }
    if o.validations.alpha && !n.validations.alpha {
        return Err(format!("version {v} is not alpha-validated"));
    }
    let missing: Vec<&str> = o.validations.datasets.difference(&n.validations.datasets).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(format!("version {v} is not validated on {}", missing.join(", ")));
    }
    let unlinked: Vec<&str> = o.reported_by.difference(&n.reported_by).map(|p| p.as_str()).collect();
    if !unlinked.is_empty() {
        return Err(format!("version {v} is not reported by {} (a level-1 platform takes only what it reported)", unlinked.join(", ")));
    }
    let (newer_req, older_req) = (n.manifest.requires_moodle.as_ref().map(ToString::to_string), o.manifest.requires_moodle.as_ref().map(ToString::to_string));
    if let Some(r) = &newer_req
        && newer_req != older_req
    {
        return Err(format!("version {v} requires Moodle {r}, this one {}", older_req.unwrap_or_else(|| "any release".into())));
    }
    let published: Timestamp = n.published_at.parse().map_err(|e| format!("version {v}'s publication time {:?} cannot be read: {e}", n.published_at))?;
    let mut since = published;
    if let Some(r) = &n.rollout {
        if r.reach() < 100 {
            return Err(format!("version {v}'s rollout stops at {}% of the fleet", r.reach()));
        }
        let last = r.wave_opens(published, r.waves.len().saturating_sub(1));
        if r.paused_at.is_some_and(|p| p < last) {
            return Err(format!("version {v}'s rollout is paused before its last wave"));
        }
        since = last;
    }
    for a in not_yanked.iter().filter(|a| a.meta.manifest.id != o.manifest.id) {
        for dep in &a.meta.manifest.after {
            if dep.id == o.manifest.id && dep.req.matches(&o.manifest.version) && !dep.req.matches(v) {
                return Err(format!("{} names it in `after` ({dep}), which version {v} does not meet", a.meta.manifest.key()));
            }
        }
    }
    Ok(since)
}

/// Decide, for every yanked bundle and every bundle with a later active version, whether it
/// is retired at `now` with `retention`; `fleet` is what the control plane's store reports
/// (`None`: retire without looking at the fleet). Sorted as `bundles` is.
pub fn decide(bundles: &[Published], fleet: Option<&FleetUse>, retention: SignedDuration, now: Timestamp) -> Vec<Verdict> {
    let active: Vec<&Published> = bundles.iter().filter(|p| p.meta.state == BundleState::Active).collect();
    // A halted bundle may be resumed: its `after` counts too.
    let not_yanked: Vec<&Published> = bundles.iter().filter(|p| p.meta.state != BundleState::Yanked).collect();
    let mut out = Vec::new();
    for b in bundles {
        let m = &b.meta.manifest;
        let key = m.key();
        let verdict = |kind, retire, reason: String| Verdict { bundle: key.clone(), target: b.target.clone(), kind, retire, reason };
        // Which kind, and since when it left the active set; or why it stays.
        let (kind, since, by) = if b.meta.state == BundleState::Yanked {
            match b.meta.published_at.parse::<Timestamp>() {
                Ok(t) => (Kind::Yanked, t, None),
                Err(e) => {
                    out.push(verdict(Kind::Yanked, false, format!("its publication time {:?} cannot be read: {e}", b.meta.published_at)));
                    continue;
                }
            }
        } else {
            let mut later: Vec<&&Published> = active.iter().filter(|n| n.meta.manifest.id == m.id && n.meta.manifest.version > m.version).collect();
            if later.is_empty() {
                continue;
            }
            later.sort_by(|x, y| y.meta.manifest.version.cmp(&x.meta.manifest.version));
            let mut first_refusal = None;
            let mut found = None;
            for n in &later {
                match replaces(b, n, &not_yanked) {
                    Ok(since) => {
                        found = Some((n.meta.manifest.version.clone(), since));
                        break;
                    }
                    Err(why) => {
                        first_refusal.get_or_insert(why);
                    }
                }
            }
            match found {
                // Published after its successor (a late fix of an older line): from then.
                Some((by, since)) => (Kind::Superseded, b.meta.published_at.parse::<Timestamp>().map_or(since, |own| own.max(since)), Some(by)),
                None => {
                    let why = first_refusal.unwrap_or_default();
                    out.push(verdict(Kind::Superseded, false, format!("not superseded everywhere: {why}")));
                    continue;
                }
            }
        };
        if let Some(fleet) = fleet {
            if let Some(on) = fleet.installed.get(&key) {
                out.push(verdict(kind, false, format!("installed on {}", platforms(on))));
                continue;
            }
            if let Some(on) = fleet.due.get(&key) {
                out.push(verdict(kind, false, format!("still planned on {}", platforms(on))));
                continue;
            }
        }
        let what = match by {
            None => format!("yanked, published {since}"),
            Some(v) => format!("superseded by {v} since {since}"),
        };
        let age = now.duration_since(since);
        if age < retention {
            out.push(verdict(kind, false, format!("{what}, {} ago: within the retention of {}", in_words(age.max(SignedDuration::ZERO)), in_words(retention))));
        } else {
            out.push(verdict(kind, true, format!("{what}, {} ago: beyond the retention of {}", in_words(age), in_words(retention))));
        }
    }
    out
}

/// One retired entry in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retired {
    pub target: String,
    pub kind: Kind,
    pub reason: String,
    pub retired_at: Timestamp,
    /// The bin that listed it, and the version of that bin's file in `metadata/` that last
    /// did (signed: the entry can be checked against it).
    pub bin: String,
    pub bin_version: u64,
    /// The signed target entry as the bin held it.
    pub entry: Target,
}

impl Retired {
    /// The bundle as it was published, from its archived entry.
    pub fn published(&self) -> Result<Published> {
        let name = TargetName::new(self.target.clone()).map_err(|e| Error::Refused(format!("retired entry {}: {e}", self.target)))?;
        repo::published(&name, &self.entry)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveFile {
    format: u32,
    bundles: Vec<Retired>,
}

/// Where the archive of retired entries is.
pub fn archive_path(paths: &RepoPaths) -> PathBuf {
    paths.keys.join(ARCHIVE_FILE)
}

/// Every retired entry, oldest first; none when nothing was ever retired.
pub fn archived(paths: &RepoPaths) -> Result<Vec<Retired>> {
    Ok(read_archive(&archive_path(paths))?.bundles)
}

fn read_archive(path: &Path) -> Result<ArchiveFile> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ArchiveFile { format: ARCHIVE_FORMAT, bundles: Vec::new() }),
        Err(e) => return Err(Error::Io { action: "read the archive of retired bundles", path: path.to_path_buf(), source: e }),
    };
    let file: ArchiveFile = serde_json::from_slice(&bytes).map_err(|e| Error::Refused(format!("archive of retired bundles {}: {e}; restore it from a backup", path.display())))?;
    if file.format != ARCHIVE_FORMAT {
        return Err(Error::Refused(format!("archive of retired bundles {}: format {}, this build reads {ARCHIVE_FORMAT}", path.display(), file.format)));
    }
    Ok(file)
}

/// Write the archive through a temporary file and a rename, synced.
fn write_archive(path: &Path, file: &ArchiveFile) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Through a `Value`, so that the entries' `custom` maps are written in key order.
    let value = serde_json::to_value(file).map_err(|e| Error::Refused(format!("archive of retired bundles: {e}")))?;
    let mut text = serde_json::to_vec_pretty(&value).map_err(|e| Error::Refused(format!("archive of retired bundles: {e}")))?;
    text.push(b'\n');
    let io = |e: std::io::Error| Error::Io { action: "write the archive of retired bundles", path: path.to_path_buf(), source: e };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut tmp, &text).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    repo::sync_dir(dir)
}

/// Refuse to publish an id@version that was retired: an id@version is published once, and an
/// agent that has the retired one installed must never meet other bytes under its name.
pub fn refuse_retired(paths: &RepoPaths, bundle: &BundleRef) -> Result<()> {
    let target = bundle.target_name();
    if let Some(r) = archived(paths)?.into_iter().find(|r| r.target == target) {
        return Err(Error::Refused(format!(
            "bundle {bundle} was published and then retired at {} ({}); publish a new version",
            r.retired_at, r.reason
        )));
    }
    Ok(())
}

/// What [`retire`] did (or, in a dry run, would do).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdicts: Vec<Verdict>,
    /// The bins re-signed (each once), sorted.
    pub bins: Vec<String>,
    /// The archive the retired entries went to.
    pub archive: PathBuf,
}

/// Retire what [`decide`] says from the active bins: each bin that loses an entry is re-signed
/// once, then the snapshot and the timestamp; the entries go to the archive first. With
/// `dry_run`, nothing is written and no key is needed.
#[tracing::instrument(skip_all, fields(repo = %paths.dir.display()))]
pub async fn retire(paths: &RepoPaths, fleet: Option<&FleetUse>, retention: SignedDuration, dry_run: bool, now: Timestamp) -> Result<Outcome> {
    paths.require()?;
    let archive = archive_path(paths);
    if dry_run {
        let verdicts = decide(&repo::list(paths).await?, fleet, retention, now);
        let head = Head::load(paths)?;
        let mut bins: Vec<String> = verdicts.iter().filter(|v| v.retire).map(|v| head.bin_of(&paths.dir, &v.target)).collect::<Result<_>>()?;
        bins.sort();
        bins.dedup();
        return Ok(Outcome { verdicts, bins, archive });
    }
    // Every key the change needs, before anything is written.
    for role in ["bins", "snapshot", "timestamp"] {
        paths.signing_keys(role)?;
    }
    let _lock = repo::lock(paths)?;
    let verdicts = decide(&repo::list(paths).await?, fleet, retention, now);
    let head = Head::load(paths)?;
    let mut by_bin: BTreeMap<String, Vec<&Verdict>> = BTreeMap::new();
    for v in verdicts.iter().filter(|v| v.retire) {
        by_bin.entry(head.bin_of(&paths.dir, &v.target)?).or_default().push(v);
    }
    if by_bin.is_empty() {
        return Ok(Outcome { verdicts, bins: Vec::new(), archive });
    }
    let original = read_archive(&archive)?;
    let mut file = original.clone();
    let mut bins = Vec::new();
    for (bin_name, retiring) in &by_bin {
        let mut bin = head.load_bin(paths, bin_name)?;
        for v in retiring {
            let name = TargetName::new(v.target.clone()).map_err(repo::tuf_err(&paths.dir, "target name"))?;
            let entry = bin.signed.targets.remove(&name).ok_or_else(|| Error::Refused(format!("repository {}: {} is not in {bin_name}", paths.dir.display(), v.target)))?;
            file.bundles.retain(|r| r.target != v.target);
            file.bundles.push(Retired {
                target: v.target.clone(),
                kind: v.kind,
                reason: v.reason.clone(),
                retired_at: now,
                bin: bin_name.clone(),
                bin_version: bin.signed.version.get(),
                entry,
            });
            tracing::info!(bundle = %v.bundle, bin = %bin_name, "retiring");
        }
        bins.push((bin_name.clone(), bin.signed));
    }
    // The archive first: once the bins no longer list an entry, the archive has it.
    write_archive(&archive, &file)?;
    let names: Vec<String> = bins.iter().map(|(n, _)| n.clone()).collect();
    if let Err(e) = repo::commit(paths, head, Change { bins, ..Default::default() }, now, None).await {
        // Nothing was moved in: the entries are still active, so the archive goes back as it
        // was (should that fail too, `list --retired` leaves out entries still active).
        if let Err(undo) = write_archive(&archive, &original) {
            tracing::warn!(error = %crate::error::one_line(&undo), "cannot put the archive of retired bundles back");
        }
        return Err(e);
    }
    Ok(Outcome { verdicts, bins: names, archive })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use palier_bundle::rollout::Rollout;
    use palier_bundle::{BundleMetadata, PlatformId};

    use super::*;

    fn bundle(id: &str, version: &str, published_at: &str) -> Published {
        let text = format!(
            "id = \"{id}\"\nversion = \"{version}\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"s\"\norigin = \"report\"\n\n[[files]]\npath = \"mod/quiz/{id}.php\"\nsha256 = \"{}\"\nsize = 1\nmode = \"0644\"\n",
            "0".repeat(64)
        );
        let manifest = palier_bundle::Manifest::parse(&text, palier_bundle::manifest::ManifestKind::Built).unwrap();
        let meta = BundleMetadata::new(manifest, BTreeSet::new(), published_at.into());
        Published { target: format!("{id}-{version}.tar.gz"), length: 1, sha256: String::new(), meta }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const DAY90: SignedDuration = SignedDuration::from_hours(90 * 24);

    fn one(v: &[Verdict], bundle: &str) -> (bool, String) {
        let found = v.iter().find(|v| v.bundle == bundle).unwrap_or_else(|| panic!("no verdict for {bundle}: {v:?}"));
        (found.retire, found.reason.clone())
    }

    #[test]
    fn a_superseded_bundle_counts_from_its_successor_and_the_newest_is_never_a_candidate() {
        let old = bundle("fix", "1.0.0", "2026-01-01T00:00:00Z");
        let new = bundle("fix", "1.0.1", "2026-06-01T00:00:00Z");
        let v = decide(&[old.clone(), new.clone()], None, DAY90, ts("2026-08-01T00:00:00Z"));
        assert_eq!(v.len(), 1, "{v:?}");
        let (retire, why) = one(&v, "fix@1.0.0");
        assert!(!retire && why.contains("superseded by 1.0.1 since 2026-06-01") && why.contains("61 days ago") && why.contains("90 days"), "{why}");
        let v = decide(&[old, new], None, DAY90, ts("2026-09-01T00:00:00Z"));
        assert!(one(&v, "fix@1.0.0").0);
    }

    #[test]
    fn a_version_published_after_its_successor_counts_from_its_own_publication() {
        let old = bundle("fix", "1.0.0", "2026-06-01T00:00:00Z");
        let new = bundle("fix", "1.0.1", "2026-01-01T00:00:00Z");
        let (retire, why) = one(&decide(&[old, new], None, DAY90, ts("2026-08-01T00:00:00Z")), "fix@1.0.0");
        assert!(!retire && why.contains("superseded by 1.0.1 since 2026-06-01"), "{why}");
    }

    #[test]
    fn a_yanked_bundle_counts_from_its_publication_and_a_halted_one_stays() {
        let mut y = bundle("y", "1.0.0", "2026-01-01T00:00:00Z");
        y.meta.state = BundleState::Yanked;
        let mut h = bundle("h", "1.0.0", "2026-01-01T00:00:00Z");
        h.meta.state = BundleState::Halted;
        let v = decide(&[y, h], None, DAY90, ts("2026-08-01T00:00:00Z"));
        assert_eq!(v.len(), 1, "a halted bundle with no successor is no candidate: {v:?}");
        let (retire, why) = one(&v, "y@1.0.0");
        assert!(retire && why.starts_with("yanked, published 2026-01-01"), "{why}");
    }

    #[test]
    fn a_successor_that_does_not_replace_it_everywhere_keeps_it() {
        let now = ts("2027-01-01T00:00:00Z");
        let mut old = bundle("fix", "1.0.0", "2026-01-01T00:00:00Z");
        let mut new = bundle("fix", "1.0.1", "2026-02-01T00:00:00Z");
        let check = |old: &Published, new: &Published, others: &[Published], needle: &str| {
            let mut all = vec![old.clone(), new.clone()];
            all.extend_from_slice(others);
            let (retire, why) = one(&decide(&all, None, DAY90, now), "fix@1.0.0");
            assert!(!retire && why.contains(needle), "expected {needle:?} in {why}");
        };
        old.meta.validations.alpha = true;
        check(&old, &new, &[], "not alpha-validated");
        new.meta.validations.alpha = true;
        old.meta.validations.datasets.insert("big-univ".into());
        check(&old, &new, &[], "not validated on big-univ");
        new.meta.validations.datasets.insert("big-univ".into());
        old.meta.reported_by.insert(PlatformId::new("univ-a").unwrap());
        check(&old, &new, &[], "not reported by univ-a");
        new.meta.reported_by.insert(PlatformId::new("univ-a").unwrap());
        new.meta.manifest.requires_moodle = Some(">=4.5.0".parse().unwrap());
        check(&old, &new, &[], "requires Moodle >=4.5.0");
        new.meta.manifest.requires_moodle = None;
        new.meta.rollout = Some(Rollout::parse("24h=10%; 48h=50%").unwrap());
        check(&old, &new, &[], "stops at 50%");
        let mut r = Rollout::parse("24h=10%; 48h=100%").unwrap();
        r.paused_at = Some(ts("2026-02-02T12:00:00Z"));
        new.meta.rollout = Some(r);
        check(&old, &new, &[], "paused before its last wave");
        // Paused after the last wave opened: complete, superseded from that wave on.
        new.meta.rollout.as_mut().unwrap().paused_at = Some(ts("2026-02-05T00:00:00Z"));
        let mut dependent = bundle("other", "2.0.0", "2026-01-01T00:00:00Z");
        dependent.meta.manifest.after = vec![palier_bundle::Dependency::parse("fix =1.0.0").unwrap()];
        check(&old, &new, &[dependent.clone()], "other@2.0.0 names it in `after`");
        let mut halted_dependent = dependent.clone();
        halted_dependent.meta.state = BundleState::Halted;
        check(&old, &new, &[halted_dependent], "other@2.0.0 names it in `after`");
        dependent.meta.manifest.after = vec![palier_bundle::Dependency::parse("fix >=1.0.0").unwrap()];
        let v = decide(&[old, new, dependent], None, DAY90, now);
        let (retire, why) = one(&v, "fix@1.0.0");
        assert!(retire && why.contains("superseded by 1.0.1 since 2026-02-03T00:00:00Z"), "{why}");
    }

    #[test]
    fn a_halted_or_yanked_successor_supersedes_nothing_but_a_halted_older_version_is_superseded() {
        let now = ts("2027-01-01T00:00:00Z");
        let old = bundle("fix", "1.0.0", "2026-01-01T00:00:00Z");
        let mut new = bundle("fix", "1.0.1", "2026-02-01T00:00:00Z");
        new.meta.state = BundleState::Halted;
        assert!(decide(&[old.clone(), new.clone()], None, DAY90, now).is_empty());
        new.meta.state = BundleState::Active;
        let mut halted_old = old;
        halted_old.meta.state = BundleState::Halted;
        assert!(one(&decide(&[halted_old, new], None, DAY90, now), "fix@1.0.0").0);
    }

    #[test]
    fn installed_or_due_on_a_platform_keeps_it_and_says_where() {
        let now = ts("2027-01-01T00:00:00Z");
        let mut y = bundle("y", "1.0.0", "2026-01-01T00:00:00Z");
        y.meta.state = BundleState::Yanked;
        let old = bundle("fix", "1.0.0", "2026-01-01T00:00:00Z");
        let new = bundle("fix", "1.0.1", "2026-02-01T00:00:00Z");
        let mut fleet = FleetUse::default();
        for p in ["univ-c", "univ-a", "univ-b"] {
            fleet.installed(p, "y@1.0.0");
        }
        fleet.due("univ-d", "fix@1.0.0");
        let v = decide(&[y, old, new], Some(&fleet), DAY90, now);
        assert_eq!(one(&v, "y@1.0.0"), (false, "installed on 3 platforms: univ-a, univ-b, univ-c".into()));
        assert_eq!(one(&v, "fix@1.0.0"), (false, "still planned on 1 platform: univ-d".into()));
    }
}
