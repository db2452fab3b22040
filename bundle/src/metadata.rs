//! The signed metadata of a bundle: what goes into its TUF target's `custom` field.
//!
//! The manifest without its `files` list, plus what the server adds: the platforms that
//! reported the defects it fixes, its validations and its state. The file list itself is not
//! signed metadata: it is the archive's own manifest, authenticated by the archive's signed
//! sha256 and length. The entry carries what the agent needs before downloading (the
//! number of files and their expanded size, which bounds the archive reader) and the sha256
//! of the file list, which the archive's manifest must match. A bundle's entry stays well
//! under 1 KB whatever its number of files, so the metadata an agent downloads to plan does
//! not grow with the size of bundles.

use std::collections::BTreeSet;
use std::fmt;

use semver::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::manifest::{FileEntry, FileMode, Manifest, ManifestKind, Sha256Hex};
use crate::names::{BundleId, PlatformId, RelPath};

/// Format version of the `custom` object written by this build. Format 1 (the file list as
/// compact lines) is still read.
pub const METADATA_FORMAT: u32 = 2;

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

/// The `custom` field of a bundle's TUF target. Its `manifest.files` is always empty: the
/// list is in the archive, and [`BundleMetadata::check_archive_manifest`] ties the two.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Wire")]
pub struct BundleMetadata {
    pub format: u32,
    pub manifest: Manifest,
    /// How many files the archive writes.
    pub file_count: u64,
    /// sha256 of the file list, as [`files_sha256`] computes it.
    pub files_sha256: Sha256Hex,
    /// Sum of the sizes of the files: the reader refuses an archive that expands beyond it.
    pub expanded_size: u64,
    pub reported_by: BTreeSet<PlatformId>,
    pub validations: Validations,
    pub state: BundleState,
    pub state_reason: Option<String>,
    /// When it was published, RFC 3339, as the server's clock said.
    pub published_at: String,
}

/// The JSON form of [`BundleMetadata`]: format 2 writes `file_count` and `files_sha256`;
/// format 1 (read only) carried `files` as compact lines.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: u32,
    manifest: Manifest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files_sha256: Option<String>,
    expanded_size: u64,
    reported_by: BTreeSet<PlatformId>,
    validations: Validations,
    state: BundleState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_reason: Option<String>,
    published_at: String,
}

/// One file as a compact line: `<sha256> <size> <mode> <path>`.
pub fn file_line(f: &FileEntry) -> String {
    format!("{} {} {} {}", f.sha256, f.size, f.mode.as_str(), f.path)
}

/// The sha256 of a file list: of its compact lines ([`file_line`]), each ended by `\n`, in
/// the manifest's order.
pub fn files_sha256(files: &[FileEntry]) -> Sha256Hex {
    let mut hasher = Sha256::new();
    for f in files {
        hasher.update(file_line(f).as_bytes());
        hasher.update(b"\n");
    }
    Sha256Hex::from_digest(&hasher.finalize())
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

impl TryFrom<Wire> for BundleMetadata {
    type Error = Error;
    fn try_from(w: Wire) -> Result<Self> {
        if !w.manifest.files.is_empty() {
            return Err(Error::invalid("signed manifest", "files", "the file list travels in the archive, not in the signed manifest"));
        }
        let (file_count, files_sha256) = match (w.format, w.files, w.file_count, w.files_sha256) {
            (1, Some(lines), None, None) => {
                let files = lines.iter().map(|l| parse_file_line(l)).collect::<Result<Vec<_>>>()?;
                let mut full = w.manifest.clone();
                full.files = files;
                full.validate(ManifestKind::Built)?;
                if full.expanded_size() != w.expanded_size {
                    return Err(Error::invalid("expanded_size", &w.expanded_size.to_string(), "differs from the sum of the file sizes"));
                }
                (full.files.len() as u64, files_sha256(&full.files))
            }
            (METADATA_FORMAT, None, Some(count), Some(sha)) => (count, Sha256Hex::new(sha)?),
            (1 | METADATA_FORMAT, ..) => {
                return Err(Error::invalid("signed metadata", &w.format.to_string(), "format 1 carries `files`; format 2 carries `file_count` and `files_sha256`"));
            }
            (other, ..) => {
                return Err(Error::invalid("metadata format", &other.to_string(), format!("this build reads formats 1 and {METADATA_FORMAT}")));
            }
        };
        Ok(BundleMetadata {
            format: METADATA_FORMAT,
            manifest: w.manifest,
            file_count,
            files_sha256,
            expanded_size: w.expanded_size,
            reported_by: w.reported_by,
            validations: w.validations,
            state: w.state,
            state_reason: w.state_reason,
            published_at: w.published_at,
        })
    }
}

impl Serialize for BundleMetadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        Wire {
            format: METADATA_FORMAT,
            manifest: self.manifest.without_files(),
            files: None,
            file_count: Some(self.file_count),
            files_sha256: Some(self.files_sha256.to_string()),
            expanded_size: self.expanded_size,
            reported_by: self.reported_by.clone(),
            validations: self.validations.clone(),
            state: self.state,
            state_reason: self.state_reason.clone(),
            published_at: self.published_at.clone(),
        }
        .serialize(s)
    }
}

impl BundleMetadata {
    /// Fresh metadata for a newly published bundle (its file list becomes a count and a digest).
    pub fn new(manifest: Manifest, reported_by: BTreeSet<PlatformId>, published_at: String) -> Self {
        BundleMetadata {
            format: METADATA_FORMAT,
            expanded_size: manifest.expanded_size(),
            file_count: manifest.files.len() as u64,
            files_sha256: files_sha256(&manifest.files),
            manifest: manifest.without_files(),
            reported_by,
            validations: Validations::default(),
            state: BundleState::Active,
            state_reason: None,
            published_at,
        }
    }

    /// Read from a target's `custom` field, checking the format and the manifest.
    pub fn from_custom(value: serde_json::Value) -> Result<Self> {
        let meta: BundleMetadata =
            serde_json::from_value(value).map_err(|e| Error::ManifestSyntax(format!("signed metadata: {e}")))?;
        meta.manifest.validate(ManifestKind::Built)?;
        Ok(meta)
    }

    /// Check an archive's own manifest against this signed metadata: the same manifest apart
    /// from the files, and a file list with the signed count, expanded size and sha256.
    /// Returns the archive's manifest, which then drives the staging of its files.
    pub fn check_archive_manifest(&self, archive: Manifest) -> Result<Manifest> {
        let mismatch = |what: &str| Error::ManifestMismatch(format!("the archive's {what} differs from the signed metadata"));
        if archive.without_files() != self.manifest {
            return Err(mismatch("manifest"));
        }
        if archive.files.len() as u64 != self.file_count {
            return Err(mismatch("number of files"));
        }
        if archive.expanded_size() != self.expanded_size {
            return Err(mismatch("expanded size"));
        }
        if files_sha256(&archive.files) != self.files_sha256 {
            return Err(mismatch("file list"));
        }
        Ok(archive)
    }

    /// The `custom` field as JSON.
    pub fn to_custom(&self) -> serde_json::Value {
        // Every field is plain data: serialisation cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
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
            version: Version::parse(version).map_err(|e| Error::invalid("bundle version", version, e.to_string()))?,
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

    fn sample() -> (Manifest, BundleMetadata) {
        let mut m = crate::hostile::manifest_for("b", "1.0.0", &[("a b.php", b"x"), ("c/d.js", b"yy")]);
        m.files[1].mode = FileMode::Executable;
        let meta = BundleMetadata::new(m.clone(), BTreeSet::from([PlatformId::new("univ-a").unwrap()]), "2026-11-29T00:00:00Z".into());
        (m, meta)
    }

    #[test]
    fn custom_json_round_trips_with_a_digest_instead_of_the_file_list() {
        let (m, meta) = sample();
        let custom = meta.to_custom();
        assert_eq!(custom["format"], 2);
        assert!(custom.get("files").is_none());
        assert!(custom["manifest"].get("files").is_none());
        assert_eq!(custom["file_count"], 2);
        assert_eq!(custom["expanded_size"], 3);
        assert_eq!(custom["files_sha256"].as_str().unwrap(), files_sha256(&m.files).to_string());
        assert_eq!(BundleMetadata::from_custom(custom).unwrap(), meta);
    }

    /// A bundle's entry stays under 1 KB however many files it has.
    #[test]
    fn an_entry_stays_small_whatever_its_file_count() {
        let names: Vec<String> = (0..5000).map(|i| format!("mod/quiz/classes/local/a-rather-long-folder-name/file-{i}.php")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"<?php\n"[..])).collect();
        let m = crate::hostile::manifest_for("mod_quiz-big", "1.0.0", &files);
        let meta = BundleMetadata::new(m, BTreeSet::new(), "2026-11-29T00:00:00Z".into());
        let bytes = serde_json::to_vec(&meta.to_custom()).unwrap().len();
        assert!(bytes < 1024, "{bytes} bytes");
    }

    #[test]
    fn format_1_with_file_lines_is_still_read() {
        let (m, meta) = sample();
        let mut custom = meta.to_custom();
        let obj = custom.as_object_mut().unwrap();
        obj.insert("format".into(), 1.into());
        obj.remove("file_count");
        obj.remove("files_sha256");
        obj.insert("files".into(), m.files.iter().map(file_line).collect::<Vec<_>>().into());
        assert_eq!(BundleMetadata::from_custom(custom.clone()).unwrap(), meta);
        // A format 1 entry whose sizes do not add up is refused, as before.
        custom["expanded_size"] = 4.into();
        assert!(BundleMetadata::from_custom(custom).is_err());
    }

    #[test]
    fn the_archive_manifest_must_match_the_signed_digest() {
        let (m, meta) = sample();
        assert_eq!(meta.check_archive_manifest(m.clone()).unwrap(), m);
        let mut other = m.clone();
        other.files[0].sha256 = Sha256Hex::new("0".repeat(64)).unwrap();
        assert!(meta.check_archive_manifest(other).unwrap_err().to_string().contains("file list"));
        let mut other = m.clone();
        other.files.pop();
        assert!(meta.check_archive_manifest(other).is_err());
        let mut other = m.clone();
        other.summary = "another summary".into();
        assert!(meta.check_archive_manifest(other).unwrap_err().to_string().contains("manifest"));
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
    }
}
