//! The signed metadata of a bundle: what goes into its TUF target's `custom` field.
//!
//! Format 2: the manifest without its file list ([`ManifestHead`]), the number of files, the
//! bytes they expand to and a [`PathSummary`] (the few paths the checks before download need,
//! `version.php` files included), plus what the server adds: the platforms that reported the
//! defects it fixes, its validations, its state, when it was published and its rollout. An
//! entry stays under 1 KB whatever the bundle's file count. The file list is read after
//! download from the archive's own `bundle.toml` (its first entry; the archive's length and
//! sha256 are signed in the target), which [`BundleMetadata::check_archive_manifest`] holds
//! to this metadata before it is used.
//!
//! Format 1 (a repository not yet migrated or republished) carried the file list as compact
//! lines `"<sha256> <size> <mode> <path>"`; it is still read: the summary and the counts are
//! worked out from the signed lines, and the next re-signing writes format 2.

use std::collections::BTreeSet;
use std::fmt;

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{MAX_VERSION_FILES, PathSummary};
use crate::manifest::{FileEntry, FileMode, Manifest, ManifestHead, ManifestKind, Sha256Hex};
use crate::names::{BundleId, PlatformId, RelPath};
use crate::rollout::Rollout;

/// Format version of the `custom` object this build writes: `{"format": 3, "entry": TEXT}`,
/// where TEXT is a format 2 entry as one JSON text. A generic TUF client (tough, python-tuf)
/// parses `custom` into a tree of maps and strings and keeps every bin's at once: as one
/// string an entry costs about its own length in memory instead of about eight times it.
pub const METADATA_FORMAT: u32 = 3;
/// The entry's fields without the file list (a JSON object in `custom`, or the text of a
/// format 3 entry), still read.
pub const METADATA_FORMAT_FIELDS: u32 = 2;
/// The format with the file list in the metadata, still read.
pub const METADATA_FORMAT_WITH_FILES: u32 = 1;

/// Whether a bundle may be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleState {
    Active,
    /// Paused by the release manager or by the auto-halt: not applied until made active again.
    Halted,
    /// Withdrawn for good.
    Yanked,
}

impl BundleState {
    pub fn as_str(self) -> &'static str {
        match self {
            BundleState::Active => "active",
            BundleState::Halted => "halted",
            BundleState::Yanked => "yanked",
        }
    }
}

impl fmt::Display for BundleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validations recorded by the release manager.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validations {
    /// Pre-validated by the internal alpha team.
    pub alpha: bool,
    /// The significant test datasets the bundle was qualified on.
    pub datasets: BTreeSet<String>,
}

/// The `custom` field of a bundle's TUF target (format 2; format 1 is read into it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleMetadata {
    /// The manifest without its files: they are in the archive's `bundle.toml`.
    pub manifest: ManifestHead,
    /// How many files the archive holds.
    pub file_count: u64,
    /// Sum of the sizes of the files: the reader refuses an archive that expands beyond it.
    pub expanded_size: u64,
    /// What the checks before download need of the paths written and deleted.
    pub paths: PathSummary,
    pub reported_by: BTreeSet<PlatformId>,
    pub validations: Validations,
    pub state: BundleState,
    pub state_reason: Option<String>,
    /// When the release manager last resumed it, RFC 3339: a halt marker written before
    /// then no longer halts it (see [`crate::halt`]). Absent from the JSON when `None`.
    pub resumed_at: Option<String>,
    /// When it was published, RFC 3339, as the server's clock said.
    pub published_at: String,
    /// A staged rollout: canaries, then waves of the fleet (see [`crate::rollout`]).
    /// Absent from the JSON when `None`, so a bundle without one signs as before.
    pub rollout: Option<Rollout>,
}

/// The JSON form of [`BundleMetadata`], format 2 (the text of a format 3 entry).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: u32,
    manifest: ManifestHead,
    file_count: u64,
    expanded_size: u64,
    paths: PathSummary,
    reported_by: BTreeSet<PlatformId>,
    validations: Validations,
    state: BundleState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resumed_at: Option<String>,
    published_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rollout: Option<Rollout>,
}

/// The JSON form of format 1: the files as compact lines beside the manifest.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireWithFiles {
    format: u32,
    manifest: ManifestHead,
    files: Vec<String>,
    expanded_size: u64,
    reported_by: BTreeSet<PlatformId>,
    validations: Validations,
    state: BundleState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resumed_at: Option<String>,
    published_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rollout: Option<Rollout>,
}

/// One file as a compact line of format 1: `<sha256> <size> <mode> <path>`.
pub fn file_line(f: &FileEntry) -> String {
    format!("{} {} {} {}", f.sha256, f.size, f.mode.as_str(), f.path)
}

/// Parse a line written by [`file_line`].
pub fn parse_file_line(line: &str) -> Result<FileEntry> {
    let bad = |why: &str| Error::invalid("signed file entry", line, why);
    let mut parts = line.splitn(4, ' ');
    let (Some(sha), Some(size), Some(mode), Some(path)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected \"<sha256> <size> <mode> <path>\""));
    };
    let size = if size.len() > 1 && size.starts_with('0') { None } else { size.parse::<u64>().ok() };
    Ok(FileEntry {
        sha256: Sha256Hex::new(sha)?,
        size: size.ok_or_else(|| bad("size is not a whole number"))?,
        mode: FileMode::parse(mode).ok_or_else(|| bad("mode is not 0644 or 0755"))?,
        path: RelPath::new(path)?,
    })
}

impl Serialize for BundleMetadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        Wire {
            format: METADATA_FORMAT_FIELDS,
            manifest: self.manifest.clone(),
            file_count: self.file_count,
            expanded_size: self.expanded_size,
            paths: self.paths.clone(),
            reported_by: self.reported_by.clone(),
            validations: self.validations.clone(),
            state: self.state,
            state_reason: self.state_reason.clone(),
            resumed_at: self.resumed_at.clone(),
            published_at: self.published_at.clone(),
            rollout: self.rollout.clone(),
        }
        .serialize(s)
    }
}

impl AsRef<BundleMetadata> for BundleMetadata {
    fn as_ref(&self) -> &BundleMetadata {
        self
    }
}

impl<'de> Deserialize<'de> for BundleMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        BundleMetadata::from_custom(serde_json::Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl BundleMetadata {
    /// Fresh metadata for a newly published bundle, from its built manifest.
    pub fn new(manifest: Manifest, reported_by: BTreeSet<PlatformId>, published_at: String) -> Self {
        BundleMetadata {
            file_count: manifest.files.len() as u64,
            expanded_size: manifest.expanded_size(),
            paths: PathSummary::of(manifest.paths()),
            manifest: manifest.head(),
            reported_by,
            validations: Validations::default(),
            state: BundleState::Active,
            state_reason: None,
            resumed_at: None,
            published_at,
            rollout: None,
        }
    }

    /// Read from a target's `custom` field (format 3, 2 or 1), checking the manifest.
    pub fn from_custom(value: serde_json::Value) -> Result<Self> {
        let syntax = |e: serde_json::Error| Error::ManifestSyntax(format!("signed metadata: {e}"));
        let format = value.get("format").and_then(serde_json::Value::as_u64);
        match format {
            Some(f) if f == u64::from(METADATA_FORMAT) => {
                let map = value.as_object().filter(|m| m.len() == 2);
                let Some(text) = map.and_then(|m| m.get("entry")).and_then(serde_json::Value::as_str) else {
                    return Err(Error::invalid("metadata format", "3", "expected exactly the fields format and entry (a JSON text)"));
                };
                Self::from_entry_text(text)
            }
            Some(f) if f == u64::from(METADATA_FORMAT_FIELDS) => Self::from_wire(serde_json::from_value(value).map_err(syntax)?),
            Some(f) if f == u64::from(METADATA_FORMAT_WITH_FILES) => {
                let w: WireWithFiles = serde_json::from_value(value).map_err(syntax)?;
                let files = w.files.iter().map(|l| parse_file_line(l)).collect::<Result<Vec<_>>>()?;
                let full = w.manifest.clone().with_files(files);
                full.validate(ManifestKind::Built)?;
                if w.expanded_size != full.expanded_size() {
                    return Err(Error::invalid("expanded_size", &w.expanded_size.to_string(), "differs from the sum of the file sizes"));
                }
                Ok(BundleMetadata {
                    file_count: full.files.len() as u64,
                    expanded_size: w.expanded_size,
                    paths: PathSummary::of(full.paths()),
                    manifest: w.manifest,
                    reported_by: w.reported_by,
                    validations: w.validations,
                    state: w.state,
                    state_reason: w.state_reason,
                    resumed_at: w.resumed_at,
                    published_at: w.published_at,
                    rollout: w.rollout,
                })
            }
            _ => {
                let found = value.get("format").map_or_else(|| "none".to_owned(), ToString::to_string);
                Err(Error::invalid("metadata format", &found, format!("this build reads formats {METADATA_FORMAT_WITH_FILES} to {METADATA_FORMAT}")))
            }
        }
    }

    /// [`Self::from_custom`] from a TUF target's `custom` map as a TUF library holds it:
    /// a format 3 entry is read from its text without copying the map first.
    pub fn from_custom_map<S: std::hash::BuildHasher>(custom: &std::collections::HashMap<String, serde_json::Value, S>) -> Result<Self> {
        match format_3_text(custom) {
            Some(text) => Self::from_entry_text(text),
            None => Self::from_custom(custom_value(custom)),
        }
    }

    /// The text of a format 3 entry (see [`take_entry_text`]): a format 2 object.
    pub fn from_entry_text(text: &str) -> Result<Self> {
        let w: Wire = serde_json::from_str(text).map_err(|e| Error::ManifestSyntax(format!("signed metadata: {e}")))?;
        if w.format != METADATA_FORMAT_FIELDS {
            return Err(Error::invalid("metadata format", &w.format.to_string(), format!("the entry of a format {METADATA_FORMAT} entry is format {METADATA_FORMAT_FIELDS}")));
        }
        Self::from_wire(w)
    }

    /// A format 2 entry, checked.
    fn from_wire(w: Wire) -> Result<Self> {
        w.manifest.validate()?;
        if w.paths.version_files.len() > MAX_VERSION_FILES {
            return Err(Error::invalid("paths", "version_files", format!("lists more than {MAX_VERSION_FILES} paths")));
        }
        Ok(BundleMetadata {
            manifest: w.manifest,
            file_count: w.file_count,
            expanded_size: w.expanded_size,
            paths: w.paths,
            reported_by: w.reported_by,
            validations: w.validations,
            state: w.state,
            state_reason: w.state_reason,
            resumed_at: w.resumed_at,
            published_at: w.published_at,
            rollout: w.rollout,
        })
    }

    /// The `custom` field as JSON (always the current format, 3).
    pub fn to_custom(&self) -> serde_json::Value {
        // Every field is plain data: serialisation cannot fail.
        serde_json::json!({ "format": METADATA_FORMAT, "entry": serde_json::to_string(self).unwrap_or_default() })
    }

    /// The entry's fields as a JSON object (format 2): what [`Self::to_custom`] carries as text.
    pub fn to_fields(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Hold the manifest read from the bundle's archive to this signed metadata: the same
    /// head (id, version, component, delete list...), file count, expanded size and path
    /// summary (`version.php` files included). Only an archive manifest that agrees is used.
    pub fn check_archive_manifest(&self, archive: &Manifest) -> Result<()> {
        let differs = |what: &str| Err(Error::ManifestMismatch(format!("{what} differs from the signed metadata of {}", self.manifest.key())));
        if archive.id != self.manifest.id || archive.version != self.manifest.version {
            return differs(&format!("bundle {}", archive.key()));
        }
        if archive.head() != self.manifest {
            let signed = serde_json::to_value(&self.manifest).unwrap_or_default();
            let read = serde_json::to_value(archive.head()).unwrap_or_default();
            let field = signed
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .chain(read.as_object().into_iter().flat_map(|m| m.keys()))
                .find(|k| signed.get(k.as_str()) != read.get(k.as_str()))
                .cloned()
                .unwrap_or_else(|| "manifest".into());
            return differs(&format!("field {field}"));
        }
        if archive.files.len() as u64 != self.file_count {
            return differs(&format!("file count {}", archive.files.len()));
        }
        if archive.expanded_size() != self.expanded_size {
            return differs(&format!("expanded size {}", archive.expanded_size()));
        }
        if PathSummary::of(archive.paths()) != self.paths {
            return differs("its paths summary (first and last path, site-local, layout or version.php files)");
        }
        Ok(())
    }
}

/// The text of `custom` when it is a format 3 entry (`{"format": 3, "entry": TEXT}`, nothing
/// else), moved out of the map; `None`, the map untouched, for anything else. The text is read
/// with [`BundleMetadata::from_entry_text`].
pub fn take_entry_text<S: std::hash::BuildHasher>(custom: &mut std::collections::HashMap<String, serde_json::Value, S>) -> Option<String> {
    format_3_text(custom)?;
    match custom.get_mut("entry") {
        Some(serde_json::Value::String(text)) => Some(std::mem::take(text)),
        _ => None,
    }
}

/// The entry text of a format 3 `custom` map. Its two keys are looked at in turn rather than
/// hashed (every bundle at every refresh).
fn format_3_text<S: std::hash::BuildHasher>(custom: &std::collections::HashMap<String, serde_json::Value, S>) -> Option<&str> {
    if custom.len() != 2 {
        return None;
    }
    let (mut format, mut text) = (None, None);
    for (key, value) in custom {
        match key.as_str() {
            "format" => format = value.as_u64(),
            "entry" => text = value.as_str(),
            _ => {}
        }
    }
    (format == Some(u64::from(METADATA_FORMAT))).then_some(text).flatten()
}

/// A TUF target's `custom` map (as tough holds it) as one JSON value, for the readers that
/// take one (bundle entries of formats 1 and 2, halt and report markers).
pub fn custom_value<S: std::hash::BuildHasher>(custom: &std::collections::HashMap<String, serde_json::Value, S>) -> serde_json::Value {
    serde_json::Value::Object(custom.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// `<id>@<version>`, as the CLI names a published bundle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleRef {
    pub id: BundleId,
    pub version: Version,
}

impl BundleRef {
    pub fn target_name(&self) -> String {
        format!("{}-{}.tar.gz", self.id, self.version)
    }
}

impl std::str::FromStr for BundleRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (id, version) = s
            .split_once('@')
            .ok_or_else(|| Error::invalid("bundle", s, "expected ID@VERSION, for example mod_quiz-fix@1.0.1"))?;
        Ok(BundleRef {
            id: BundleId::new(id)?,
            version: Version::parse(version).map_err(|_| Error::invalid("bundle version", version, "expected MAJOR.MINOR.PATCH, for example mod_quiz-fix@1.0.1"))?,
        })
    }
}

impl fmt::Display for BundleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = crate::hostile::manifest_for("b", "1.0.0", &[("a b.php", b"x"), ("c/d.js", b"yy"), ("mod/quiz/version.php", b"zzz")]);
        m.files[1].mode = FileMode::Executable;
        m
    }

    #[test]
    fn a_target_name_is_recognised_without_building_it() {
        for (id, version) in [("b", "1.0.0"), ("mod_quiz-fix", "1.2.3-rc.1+build.5"), ("a-b", "10.0.0")] {
            let head = crate::hostile::manifest_for(id, version, &[("a.php", b"x")]).head();
            for name in [head.target_name(), format!("{id}-{version}.tar"), format!("{id}-0{version}.tar.gz"), format!("{id}x-{version}.tar.gz"), format!("{id}--{version}.tar.gz"), "b-1.0.0.tar.gz".into(), format!("{id}-{version}")] {
                assert_eq!(head.is_target_name(&name), name == head.target_name(), "{id} {version} {name}");
            }
        }
    }

    #[test]
    fn format_3_round_trips_a_format_2_entry_as_text() {
        let m = sample();
        let meta = BundleMetadata::new(m.clone(), BTreeSet::from([PlatformId::new("univ-a").unwrap()]), "2026-11-29T00:00:00Z".into());
        let outer = meta.to_custom();
        assert_eq!(outer.as_object().unwrap().len(), 2, "{outer}");
        assert_eq!(outer["format"], 3);
        let custom: serde_json::Value = serde_json::from_str(outer["entry"].as_str().unwrap()).unwrap();
        assert_eq!(custom, meta.to_fields());
        assert_eq!(BundleMetadata::from_custom(outer.clone()).unwrap(), meta);
        let map: std::collections::HashMap<String, serde_json::Value> = outer.as_object().unwrap().clone().into_iter().collect();
        assert_eq!(BundleMetadata::from_custom_map(&map).unwrap(), meta);
        // The entry's fields as an object (format 2) read the same.
        assert_eq!(custom["format"], 2);
        assert!(custom.get("files").is_none() && custom["manifest"].get("files").is_none(), "{custom}");
        assert_eq!((custom["file_count"].as_u64(), custom["expanded_size"].as_u64()), (Some(3), Some(6)));
        assert_eq!(custom["paths"]["version_files"], serde_json::json!(["mod/quiz/version.php"]));
        assert_eq!((custom["paths"]["first"].as_str(), custom["paths"]["last"].as_str()), (Some("a b.php"), Some("mod/quiz/version.php")));
        assert_eq!(BundleMetadata::from_custom(custom).unwrap(), meta);
        meta.check_archive_manifest(&m).unwrap();
    }

    /// A format 1 entry (an old repository, before `migrate` or a re-signing) reads as the
    /// format 2 entry of the same bundle, its summary worked out from the signed lines.
    #[test]
    fn format_1_with_file_lines_is_still_read() {
        let m = sample();
        let meta = BundleMetadata::new(m.clone(), BTreeSet::new(), "2026-11-29T00:00:00Z".into());
        let mut old = meta.to_fields();
        let map = old.as_object_mut().unwrap();
        map.insert("format".into(), 1.into());
        map.remove("file_count");
        map.remove("paths");
        map.insert("files".into(), m.files.iter().map(file_line).collect::<Vec<_>>().into());
        let read = BundleMetadata::from_custom(old.clone()).unwrap();
        assert_eq!(read, meta);
        // Re-signing writes format 3.
        assert_eq!(read.to_custom()["format"], 3);
        // Its lines are still held to the signed size, and a format 1 entry must carry them.
        let mut bad = old.clone();
        bad["expanded_size"] = 7.into();
        assert!(BundleMetadata::from_custom(bad).unwrap_err().to_string().contains("expanded_size"));
        let mut no_lines = old.clone();
        no_lines.as_object_mut().unwrap().remove("files");
        assert!(BundleMetadata::from_custom(no_lines).is_err());
        // A format 2 entry with a file list, as an object or as the text of format 3, a
        // format 3 entry with another field or another entry format, and an unknown format,
        // are refused.
        let mut mixed = meta.to_fields();
        mixed["files"] = old["files"].clone();
        assert!(BundleMetadata::from_custom(mixed.clone()).unwrap_err().to_string().contains("files"));
        let text = serde_json::json!({ "format": 3, "entry": mixed.to_string() });
        assert!(BundleMetadata::from_custom(text).unwrap_err().to_string().contains("files"));
        let mut extra = meta.to_custom();
        extra["state"] = "active".into();
        assert!(BundleMetadata::from_custom(extra).unwrap_err().to_string().contains("exactly the fields format and entry"));
        let inner_1 = serde_json::json!({ "format": 3, "entry": old.to_string() });
        assert!(BundleMetadata::from_custom(inner_1).is_err());
        let mut future = meta.to_custom();
        future["format"] = 4.into();
        let e = BundleMetadata::from_custom(future).unwrap_err().to_string();
        assert!(e.contains("metadata format") && e.contains("reads formats 1 to 3"), "{e}");
    }

    /// Issue 15: a bundle's entry stays under 1 KB whatever its file count.
    #[test]
    fn an_entry_stays_under_1_kb_at_30000_files() {
        let mut m = crate::hostile::manifest_for("moodle-core-upgrade", "4.5.3", &[("x.php", b"x")]);
        m.files = (0..30_000)
            .map(|i| FileEntry {
                path: RelPath::new(format!("mod/plugin{:03}/classes/sub{}/file-{i:05}.php", i % 600, i % 7)).unwrap(),
                sha256: Sha256Hex::from_digest(&[(i % 251) as u8; 32]),
                size: 1000 + i as u64,
                mode: FileMode::Regular,
            })
            .chain((0..600).map(|p| FileEntry { path: RelPath::new(format!("mod/plugin{p:03}/version.php")).unwrap(), sha256: Sha256Hex::from_digest(&[1; 32]), size: 90, mode: FileMode::Regular }))
            .collect();
        m.files.sort_by(|a, b| a.path.cmp(&b.path));
        m.validate(ManifestKind::Built).unwrap();
        let meta = BundleMetadata::new(m, BTreeSet::from([PlatformId::new("univ-a").unwrap()]), "2026-11-29T00:00:00Z".into());
        let bytes = serde_json::to_vec(&meta.to_custom()).unwrap();
        assert!(bytes.len() < 1024, "{} bytes: {}", bytes.len(), String::from_utf8_lossy(&bytes));
        assert_eq!(meta.file_count, 30_600);
        assert!(meta.paths.version_files_more && meta.paths.version_files.len() == crate::layout::MAX_VERSION_FILES);
    }

    /// The archive's own manifest is used only when it agrees with the signed metadata.
    #[test]
    fn an_archive_manifest_that_disagrees_with_the_signed_metadata_is_refused() {
        let m = sample();
        let meta = BundleMetadata::new(m.clone(), BTreeSet::new(), "2026-11-29T00:00:00Z".into());
        type Change = Box<dyn Fn(&mut Manifest)>;
        let changes: Vec<(&str, Change)> = vec![
            ("bundle b@2.0.0", Box::new(|m| m.version = Version::new(2, 0, 0))),
            ("field component", Box::new(|m| m.component = crate::names::Component::new("mod_forum").unwrap())),
            ("field delete", Box::new(|m| m.delete.push(RelPath::new("mod/quiz/old.php").unwrap()))),
            ("field upgrade", Box::new(|m| m.upgrade = true)),
            ("file count 4", Box::new(|m| m.files.push(FileEntry { path: RelPath::new("z.php").unwrap(), sha256: Sha256Hex::from_digest(&[0; 32]), size: 0, mode: FileMode::Regular }))),
            ("expanded size 7", Box::new(|m| m.files[0].size += 1)),
            ("paths summary", Box::new(|m| m.files[1].path = RelPath::new("c/version.php").unwrap())),
            ("paths summary", Box::new(|m| m.files[0].path = RelPath::new("config.php").unwrap())),
        ];
        for (want, change) in changes {
            let mut other = m.clone();
            change(&mut other);
            let e = meta.check_archive_manifest(&other).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("differs from the signed metadata of b@1.0.0") && !e.contains('\n'), "{want}: {e}");
        }
        // A file's digest or mode is the archive reader's to check against the archive's manifest.
        let mut same_shape = m.clone();
        same_shape.files[0].sha256 = Sha256Hex::from_digest(&[9; 32]);
        meta.check_archive_manifest(&same_shape).unwrap();
    }

    #[test]
    fn a_rollout_travels_in_the_custom_field_and_its_absence_changes_nothing() {
        let m = crate::hostile::manifest_for("b", "1.0.0", &[("a.php", b"x")]);
        let mut meta = BundleMetadata::new(m, BTreeSet::new(), "2026-11-29T00:00:00Z".into());
        let before = meta.to_fields();
        assert!(before.get("rollout").is_none(), "no rollout, no key: {before}");
        meta.rollout = Some(Rollout::parse("canary=univ-x; 24h=10%; 48h=100%").unwrap());
        assert_eq!(BundleMetadata::from_custom(meta.to_custom()).unwrap(), meta);
        let custom = meta.to_fields();
        assert_eq!(custom["rollout"], serde_json::json!({"canary": ["univ-x"], "waves": [{"after": "24h", "share": 10}, {"after": "48h", "share": 100}]}));
        assert_eq!(BundleMetadata::from_custom(custom.clone()).unwrap(), meta);
        // A signed rollout that breaks the rules is refused with the metadata.
        let mut bad = custom;
        bad["rollout"]["waves"][1]["share"] = serde_json::json!(5);
        let e = BundleMetadata::from_custom(bad).unwrap_err().to_string();
        assert!(e.contains("rollout: wave 48h=5% does not grow from 24h=10%"), "{e}");
    }

    #[test]
    fn bad_file_lines_are_refused() {
        let sha = "0".repeat(64);
        for bad in ["", "x 1 0644 a", &format!("{sha} -1 0644 a"), &format!("{sha} 01 0644 a"), &format!("{sha} 1 0600 a"), &format!("{sha} 1 0644 ../a"), &format!("{sha} 1 0644")] {
            assert!(parse_file_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bundle_ref_parses() {
        let r: BundleRef = "mod_quiz-fix@1.0.1".parse().unwrap();
        assert_eq!(r.target_name(), "mod_quiz-fix-1.0.1.tar.gz");
        assert_eq!(r.to_string(), "mod_quiz-fix@1.0.1");
        for bad in ["mod_quiz-fix", "mod_quiz-fix@1.0", "Bad@1.0.0", "@1.0.0"] {
            assert!(bad.parse::<BundleRef>().is_err(), "{bad}");
        }
        let why = "mod_quiz-fix@1.0".parse::<BundleRef>().unwrap_err().to_string();
        assert!(why.contains("expected MAJOR.MINOR.PATCH, for example mod_quiz-fix@1.0.1") && !why.contains("unexpected end of input"), "{why}");
    }
}
