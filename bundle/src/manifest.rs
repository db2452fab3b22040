//! The bundle manifest (`bundle.toml`): types, parsing and validation.

use std::collections::BTreeSet;
use std::fmt;

use semver::{Version, VersionReq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::names::{BundleId, Component, RelPath};

/// Largest manifest accepted, in bytes (30,000 file entries fit comfortably).
pub const MAX_MANIFEST_BYTES: u64 = 32 * 1024 * 1024;

/// What kind of change a bundle makes, set by the release manager (SPEC 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeClass {
    /// Bug or performance fix only.
    Technical,
    /// Functional change that keeps usage organisation and main element placement.
    NonLayout,
    /// May change usage organisation or layout.
    Global,
}

impl ChangeClass {
    pub const ALL: [ChangeClass; 3] = [ChangeClass::Technical, ChangeClass::NonLayout, ChangeClass::Global];
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeClass::Technical => "technical",
            ChangeClass::NonLayout => "non-layout",
            ChangeClass::Global => "global",
        }
    }
}

/// How much a bundle touches the platform's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataImpact {
    None,
    Minor,
    Major,
    Global,
}

impl DataImpact {
    pub const ALL: [DataImpact; 4] = [DataImpact::None, DataImpact::Minor, DataImpact::Major, DataImpact::Global];
    pub fn as_str(self) -> &'static str {
        match self {
            DataImpact::None => "none",
            DataImpact::Minor => "minor",
            DataImpact::Major => "major",
            DataImpact::Global => "global",
        }
    }
}

/// What triggered a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Report,
    Roadmap,
}

impl fmt::Display for ChangeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for DataImpact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HTTP check against the site: a bundle's own local-effect check, or a smoke check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Path and query under wwwroot, starting with `/`.
    pub path: String,
    pub expect_status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
}

impl Check {
    pub fn validate(&self) -> Result<()> {
        if !self.path.starts_with('/') || self.path.starts_with("//") || self.path.chars().any(|c| c.is_control() || c == ' ') {
            return Err(Error::invalid("check path", &self.path, "must start with a single / and hold no space or control character"));
        }
        if !(100..=599).contains(&self.expect_status) {
            return Err(Error::invalid("check expect_status", &self.expect_status.to_string(), "not an HTTP status"));
        }
        Ok(())
    }
}

/// A bundle that must be installed first: `"<id> [<semver requirement>]"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub id: BundleId,
    pub req: VersionReq,
}

impl Dependency {
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let (id, req) = match s.split_once(char::is_whitespace) {
            Some((id, req)) => (id, req.trim()),
            None => (s, "*"),
        };
        let id = BundleId::new(id)?;
        let req = VersionReq::parse(req).map_err(|e| Error::invalid("after requirement", s, e.to_string()))?;
        Ok(Dependency { id, req })
    }
    pub fn matches(&self, id: &BundleId, version: &Version) -> bool {
        &self.id == id && self.req.matches(version)
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.req == VersionReq::STAR {
            write!(f, "{}", self.id)
        } else {
            write!(f, "{} {}", self.id, self.req)
        }
    }
}

impl Serialize for Dependency {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for Dependency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Dependency::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A lowercase hex sha256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(Error::invalid("sha256", &s, "expected 64 lowercase hex digits"));
        }
        Ok(Sha256Hex(s))
    }
    pub fn from_digest(d: &[u8]) -> Self {
        Sha256Hex(hex::encode(d))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl Serialize for Sha256Hex {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Sha256Hex::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// File mode in a bundle: only 0644 and 0755 exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileMode {
    Regular,
    Executable,
}

impl FileMode {
    pub fn from_permissions(mode: u32) -> Self {
        if mode & 0o111 != 0 { FileMode::Executable } else { FileMode::Regular }
    }
    pub fn bits(self) -> u32 {
        match self {
            FileMode::Regular => 0o644,
            FileMode::Executable => 0o755,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            FileMode::Regular => "0644",
            FileMode::Executable => "0755",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "0644" => Some(FileMode::Regular),
            "0755" => Some(FileMode::Executable),
            _ => None,
        }
    }
}
impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FileMode::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("mode {s:?} is not \"0644\" or \"0755\"")))
    }
}

/// One file a bundle adds or replaces under dirroot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: RelPath,
    pub sha256: Sha256Hex,
    pub size: u64,
    pub mode: FileMode,
}

/// The manifest of a bundle. `files` is written by `bundle build`, never by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub id: BundleId,
    pub version: Version,
    pub component: Component,
    pub class: ChangeClass,
    pub data_impact: DataImpact,
    pub summary: String,
    #[serde(default)]
    pub fixes: Vec<String>,
    pub origin: Origin,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_moodle: Option<VersionReq>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Dependency>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<RelPath>,
    #[serde(default)]
    pub upgrade: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
}

/// A manifest without its file list: what a bundle's signed metadata carries (format 2).
///
/// The type has no `files`, so code that plans from the signed metadata cannot iterate an
/// empty file list by mistake: the files are read from the verified archive's own
/// `bundle.toml` ([`Manifest`]), which must agree with this head and the signed counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestHead {
    pub id: BundleId,
    pub version: Version,
    pub component: Component,
    pub class: ChangeClass,
    pub data_impact: DataImpact,
    pub summary: String,
    #[serde(default)]
    pub fixes: Vec<String>,
    pub origin: Origin,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_moodle: Option<VersionReq>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Dependency>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<RelPath>,
    #[serde(default)]
    pub upgrade: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

impl ManifestHead {
    /// The TUF target name of this bundle: `<id>-<version>.tar.gz`.
    pub fn target_name(&self) -> String {
        format!("{}-{}.tar.gz", self.id, self.version)
    }

    /// Whether `name` is [`Self::target_name`], without building it (the agent checks every
    /// bundle of the repository at each refresh).
    pub fn is_target_name(&self, name: &str) -> bool {
        name.strip_suffix(".tar.gz")
            .and_then(|n| n.strip_prefix(self.id.as_str()))
            .and_then(|n| n.strip_prefix('-'))
            .is_some_and(|v| semver::Version::parse(v).is_ok_and(|v| v == self.version))
    }

    /// `<id>@<version>`, as the CLI spells a bundle.
    pub fn key(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }

    /// The full manifest of these fields and `files`.
    pub fn with_files(self, files: Vec<FileEntry>) -> Manifest {
        Manifest {
            id: self.id,
            version: self.version,
            component: self.component,
            class: self.class,
            data_impact: self.data_impact,
            summary: self.summary,
            fixes: self.fixes,
            origin: self.origin,
            requires_moodle: self.requires_moodle,
            after: self.after,
            delete: self.delete,
            upgrade: self.upgrade,
            checks: self.checks,
            files,
        }
    }

    /// Every rule that does not need the file list.
    pub fn validate(&self) -> Result<()> {
        validate_head(&self.id, &self.summary, &self.fixes, &self.after, &self.checks, &self.delete).map(|_| ())
    }
}

/// The rules of the fields a [`ManifestHead`] holds; returns the deleted paths.
fn validate_head<'a>(id: &BundleId, summary: &str, fixes: &[String], after: &[Dependency], checks: &[Check], delete: &'a [RelPath]) -> Result<BTreeSet<&'a RelPath>> {
    let trimmed = summary.trim();
    if trimmed.is_empty() || trimmed.len() > 200 || summary.chars().any(char::is_control) {
        return Err(Error::invalid("summary", summary, "must be one non-empty line of at most 200 bytes"));
    }
    let mut seen = BTreeSet::new();
    for fix in fixes {
        if fix.is_empty() || fix.len() > 64 || !fix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '#')) {
            return Err(Error::invalid("fixes entry", fix, "expected a ticket id such as FR-12"));
        }
        if !seen.insert(fix.as_str()) {
            return Err(Error::invalid("fixes entry", fix, "listed twice"));
        }
    }
    for dep in after {
        if &dep.id == id {
            return Err(Error::invalid("after", &dep.to_string(), "a bundle cannot depend on itself"));
        }
    }
    for check in checks {
        check.validate()?;
    }
    let mut deleted = BTreeSet::new();
    for path in delete {
        if !deleted.insert(path) {
            return Err(Error::invalid("delete", path.as_str(), "listed twice"));
        }
    }
    Ok(deleted)
}

/// Whether the manifest is the release manager's source (no `files`) or a built one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// Written by hand, input of `bundle build`: `files` must be absent.
    Source,
    /// Inside an archive or in signed metadata: `files` lists every file.
    Built,
}

impl Manifest {
    /// Parse and validate a manifest; errors are one line.
    pub fn parse(text: &str, kind: ManifestKind) -> Result<Self> {
        let manifest = match fast_files::split(text) {
            Some((head, files)) => {
                let mut m: Manifest = toml::from_str(head).map_err(|e| Error::ManifestSyntax(one_line_toml_error(head, &e)))?;
                let head_has_files = toml::from_str::<toml::Table>(head).map(|t| t.contains_key("files")).unwrap_or(true);
                if !head_has_files {
                    m.files = files;
                    m
                } else {
                    // `files` defined twice: let the TOML parser word the error.
                    toml::from_str(text).map_err(|e| Error::ManifestSyntax(one_line_toml_error(text, &e)))?
                }
            }
            None => toml::from_str(text).map_err(|e| Error::ManifestSyntax(one_line_toml_error(text, &e)))?,
        };
        manifest.validate(kind)?;
        Ok(manifest)
    }

    /// The manifest as TOML; `parse` reads it back to an equal value.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::ManifestSerialize(e.to_string()))
    }

    /// The TUF target name of this bundle: `<id>-<version>.tar.gz`.
    pub fn target_name(&self) -> String {
        format!("{}-{}.tar.gz", self.id, self.version)
    }

    /// `<id>@<version>`, as the CLI spells a bundle.
    pub fn key(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }

    /// Everything but the file list, as the signed metadata carries it.
    pub fn head(&self) -> ManifestHead {
        ManifestHead {
            id: self.id.clone(),
            version: self.version.clone(),
            component: self.component.clone(),
            class: self.class,
            data_impact: self.data_impact,
            summary: self.summary.clone(),
            fixes: self.fixes.clone(),
            origin: self.origin,
            requires_moodle: self.requires_moodle.clone(),
            after: self.after.clone(),
            delete: self.delete.clone(),
            upgrade: self.upgrade,
            checks: self.checks.clone(),
        }
    }

    /// Every path the bundle writes (`files`) or deletes (`delete`).
    pub fn paths(&self) -> impl Iterator<Item = &RelPath> {
        self.files.iter().map(|f| &f.path).chain(self.delete.iter())
    }

    /// Total bytes of the files the bundle writes.
    pub fn expanded_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Check every cross-field rule.
    pub fn validate(&self, kind: ManifestKind) -> Result<()> {
        let deleted = validate_head(&self.id, &self.summary, &self.fixes, &self.after, &self.checks, &self.delete)?;
        match kind {
            ManifestKind::Source if !self.files.is_empty() => {
                return Err(Error::invalid("files", "[...]", "is written by `bundle build`, not by hand"));
            }
            ManifestKind::Source => {}
            ManifestKind::Built => {
                let mut paths = BTreeSet::new();
                for f in &self.files {
                    if !paths.insert(&f.path) {
                        return Err(Error::invalid("files", f.path.as_str(), "listed twice"));
                    }
                    if deleted.contains(&f.path) {
                        return Err(Error::invalid("files", f.path.as_str(), "both written and deleted"));
                    }
                }
                check_no_file_dir_clash(paths.iter().map(|p| p.as_str()))?;
            }
        }
        Ok(())
    }
}

/// A fast path for the `[[files]]` tables that `bundle build` writes at the end of a manifest.
///
/// A 30,000-file manifest is about 5 MB of TOML; the general parser needs some 75 MB and
/// 200 ms for it. The tables `bundle build` writes have one exact shape, read here line by
/// line into `FileEntry` values. Anything else (an escape, a comment, another key, a
/// duplicate key, CRLF...) returns `None` and the whole text goes to the TOML parser, so
/// the fast path never accepts what TOML would refuse or reads it differently.
mod fast_files {
    use super::{FileEntry, FileMode, RelPath, Sha256Hex};

    const HEADER: &str = "[[files]]";

    /// `(text before the first [[files]] line, the files)`, or `None` to use the TOML parser.
    pub(super) fn split(text: &str) -> Option<(&str, Vec<FileEntry>)> {
        let start = if text.starts_with("[[files]]\n") { 0 } else { text.find("\n[[files]]\n")? + 1 };
        let (head, tail) = text.split_at(start);
        let mut files = Vec::with_capacity(tail.len() / 150);
        let mut current: Option<[Option<&str>; 4]> = None;
        for line in tail.split('\n') {
            if line == HEADER {
                if let Some(fields) = current.take() {
                    files.push(entry(fields)?);
                }
                current = Some([None; 4]);
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let fields = current.as_mut()?;
            let (key, value) = line.split_once(" = ")?;
            let slot = match key {
                "path" => 0,
                "sha256" => 1,
                "size" => 2,
                "mode" => 3,
                _ => return None,
            };
            if fields[slot].replace(value).is_some() {
                return None;
            }
        }
        files.push(entry(current?)?);
        Some((head, files))
    }

    /// A basic string with nothing TOML would read differently: no escape, quote or control.
    fn plain_string(v: &str) -> Option<&str> {
        let inner = v.strip_prefix('"')?.strip_suffix('"')?;
        if inner.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
            return None;
        }
        Some(inner)
    }

    fn entry(fields: [Option<&str>; 4]) -> Option<FileEntry> {
        let [path, sha256, size, mode] = fields;
        let size = size?;
        // A TOML decimal integer: no sign, no leading zero, no underscore, fits in i64.
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return None;
        }
        let size: u64 = size.parse().ok().filter(|&n| n <= i64::MAX as u64)?;
        let mode = FileMode::parse(plain_string(mode?)?)?;
        Some(FileEntry {
            path: RelPath::new(plain_string(path?)?).ok()?,
            sha256: Sha256Hex::new(plain_string(sha256?)?).ok()?,
            size,
            mode,
        })
    }
}

/// A path cannot be both a file and the parent directory of another file.
fn check_no_file_dir_clash<'a>(sorted: impl Iterator<Item = &'a str>) -> Result<()> {
    let all: BTreeSet<&str> = sorted.collect();
    for p in &all {
        let mut prefix = String::with_capacity(p.len());
        for seg in p.split('/') {
            if !prefix.is_empty() {
                if all.contains(prefix.as_str()) {
                    return Err(Error::invalid("files", p, format!("its parent {prefix:?} is also a file")));
                }
                prefix.push('/');
            }
            prefix.push_str(seg);
        }
    }
    Ok(())
}

fn one_line_toml_error(text: &str, e: &toml::de::Error) -> String {
    let at = crate::error::TomlErrorAt::new(text, e);
    match at.line {
        Some((line, line_text)) => {
            let key = line_text.split('=').next().unwrap_or("").trim();
            format!("line {line} `{line_text}`: {}", in_words(key, &at.message))
        }
        None => crate::error::unknown_key(&at.message).unwrap_or(at.message),
    }
}

/// serde's and semver's message about `key` (`invalid type: string "FR-1", expected a
/// sequence`, `unexpected end of input while parsing minor version number`) as what the key
/// expects, with an example; an unknown key gets its "did you mean". The line itself, quoted
/// before it, shows what was found. Messages of the manifest's own checks pass unchanged.
fn in_words(key: &str, message: &str) -> String {
    if let Some(unknown) = crate::error::unknown_key(message) {
        return unknown;
    }
    let serde_words = ["invalid type", "invalid value", "unknown variant", "invalid length"].iter().any(|w| message.starts_with(w));
    let form = match key {
        // semver's own messages come through serde as they are.
        "version" => "expected a version MAJOR.MINOR.PATCH in quotes, like `version = \"1.0.1\"`",
        "requires_moodle" => "expected the Moodle releases it fits in quotes, like `requires_moodle = \">=4.4.0, <5.2.0\"`",
        _ if !serde_words => return message.to_owned(),
        "id" => "expected a bundle name in quotes, like `id = \"mod_quiz-timer-drift\"`",
        "component" => "expected a Moodle component in quotes, like `component = \"mod_quiz\"`",
        "class" => "expected \"technical\", \"non-layout\" or \"global\", like `class = \"technical\"`",
        "data_impact" => "expected \"none\", \"minor\", \"major\" or \"global\", like `data_impact = \"none\"`",
        "origin" => "expected \"report\" or \"roadmap\", like `origin = \"report\"`",
        "summary" => "expected one line in quotes, like `summary = \"Fix quiz timer drift\"`",
        "fixes" => "expected a list of ticket ids, like `fixes = [\"FR-12\", \"MDL-81234\"]`",
        "after" => "expected a list of bundles installed first, like `after = [\"mod_quiz-base >=1.0.0\"]`",
        "delete" => "expected a list of paths under the Moodle code root, like `delete = [\"mod/quiz/old.js\"]`",
        "upgrade" => "expected true or false, like `upgrade = true`",
        "path" => "expected a URL path in quotes, like `path = \"/mod/quiz/view.php?id=1\"`",
        "expect_status" => "expected an HTTP status number, like `expect_status = 200`",
        "expect_body" => "expected a text in quotes, like `expect_body = \"quiz\"`",
        _ => return message.to_owned(),
    };
    form.to_owned()
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// A hand-written manifest with every optional field.
    pub(crate) const SOURCE: &str = r#"
id = "mod_quiz-timer-drift"
version = "1.0.1"
component = "mod_quiz"
class = "technical"
data_impact = "none"
summary = "Fix quiz timer drift when the clock jumps"
fixes = ["FR-12"]
origin = "report"
requires_moodle = ">=4.4.0, <5.2.0"
after = ["mod_quiz-base >=1.0.0"]
delete = ["mod/quiz/old.js"]
upgrade = false

[[checks]]
path = "/mod/quiz/view.php?id=1"
expect_status = 200
expect_body = "quiz"
"#;
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::tests_support::SOURCE as EXAMPLE;

    #[test]
    fn spec_example_parses_and_round_trips() {
        let m = Manifest::parse(EXAMPLE, ManifestKind::Source).unwrap();
        assert_eq!(m.id.as_str(), "mod_quiz-timer-drift");
        assert_eq!(m.class, ChangeClass::Technical);
        assert_eq!(m.after[0].id.as_str(), "mod_quiz-base");
        assert!(m.after[0].req.matches(&Version::new(1, 2, 0)));
        assert!(m.requires_moodle.as_ref().unwrap().matches(&Version::new(4, 5, 2)));
        let again = Manifest::parse(&m.to_toml().unwrap(), ManifestKind::Source).unwrap();
        assert_eq!(m, again);
        assert_eq!(m.target_name(), "mod_quiz-timer-drift-1.0.1.tar.gz");
    }

    fn refused(text: &str, kind: ManifestKind) -> String {
        let e = Manifest::parse(text, kind).unwrap_err().to_string();
        assert!(!e.contains('\n'), "error is not one line: {e}");
        e
    }

    #[test]
    fn refusals_are_one_line_and_name_the_field() {
        let cases = [
            ("id = \"mod_quiz-timer-drift\"", "id = \"Bad Id\"", "bundle id"),
            ("version = \"1.0.1\"", "version = \"1.0\"", "version"),
            ("component = \"mod_quiz\"", "component = \"quiz\"", "component"),
            ("class = \"technical\"", "class = \"cosmetic\"", "class"),
            ("data_impact = \"none\"", "data_impact = \"huge\"", "data_impact"),
            ("requires_moodle = \">=4.4.0, <5.2.0\"", "requires_moodle = \"four\"", "requires_moodle"),
            ("after = [\"mod_quiz-base >=1.0.0\"]", "after = [\"mod_quiz-base >=x\"]", "after"),
            ("delete = [\"mod/quiz/old.js\"]", "delete = [\"../etc/passwd\"]", "delete"),
            ("upgrade = false", "upgrade = false\nsurprise = 1", "surprise"),
            ("expect_status = 200", "expect_status = 42", "expect_status"),
            ("fixes = [\"FR-12\"]", "fixes = [\"FR-12\", \"FR-12\"]", "listed twice"),
            ("summary = \"Fix quiz timer drift when the clock jumps\"", "summary = \"\"", "summary"),
        ];
        for (from, to, needle) in cases {
            let text = EXAMPLE.replace(from, to);
            assert_ne!(text, EXAMPLE, "{from} not in the example");
            let e = refused(&text, ManifestKind::Source);
            assert!(e.contains(needle), "{to:?}: {e}");
        }
    }

    fn with_files(n: usize) -> Manifest {
        let mut m = Manifest::parse(EXAMPLE, ManifestKind::Source).unwrap();
        m.delete.clear();
        m.files = (0..n)
            .map(|i| FileEntry {
                path: RelPath::new(format!("mod/quiz/f{i}.php")).unwrap(),
                sha256: Sha256Hex::from_digest(&[i as u8; 32]),
                size: i as u64 * 1000,
                mode: if i % 3 == 0 { FileMode::Executable } else { FileMode::Regular },
            })
            .collect();
        m
    }

    #[test]
    fn fast_files_path_reads_what_the_toml_parser_reads() {
        let m = with_files(50);
        let text = m.to_toml().unwrap();
        assert!(fast_files::split(&text).is_some(), "the writer's own output takes the fast path");
        let general: Manifest = toml::from_str(&text).unwrap();
        assert_eq!(Manifest::parse(&text, ManifestKind::Built).unwrap(), general);
        assert_eq!(general, m);
    }

    #[test]
    fn fast_files_path_hands_anything_unusual_to_the_toml_parser() {
        let text = with_files(3).to_toml().unwrap();
        let variants = [
            text.replace("size = 1000", "size = 1_000"),
            text.replace("size = 1000", "size = 01000"),
            text.replace("size = 1000", "size = 1000 # comment"),
            text.replace("mode = \"0644\"\n", "mode = \"0644\"\nmode = \"0644\"\n"),
            text.replace("path = \"mod/quiz/f1.php\"", "path = \"mod/quiz/f\\u0031.php\""),
            text.replace("path = \"mod/quiz/f1.php\"", "path = 'mod/quiz/f1.php'"),
            text.replace('\n', "\r\n"),
            format!("{text}\n[extra]\nkey = 1\n"),
            format!("files = []\n{text}"),
        ];
        for v in variants {
            assert!(fast_files::split(&v).is_none() || Manifest::parse(&v, ManifestKind::Built).is_err(), "fast path took: {v}");
            let general = toml::from_str::<Manifest>(&v).map_err(|e| e.to_string()).and_then(|m| m.validate(ManifestKind::Built).map(|()| m).map_err(|e| e.to_string()));
            let ours = Manifest::parse(&v, ManifestKind::Built).map_err(|e| e.to_string());
            assert_eq!(ours.is_ok(), general.is_ok(), "{v}");
            if let (Ok(a), Ok(b)) = (ours, general) {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn serde_and_semver_words_become_the_key_s_expected_form() {
        for (from, to, wanted) in [
            ("version = \"1.0.1\"", "version = \"1.0\"", "line 3 `version = \"1.0\"`: expected a version MAJOR.MINOR.PATCH in quotes, like `version = \"1.0.1\"`"),
            ("fixes = [\"FR-12\"]", "fixes = \"FR-12\"", "expected a list of ticket ids, like `fixes = [\"FR-12\", \"MDL-81234\"]`"),
            ("upgrade = false", "upgrade = \"yes\"", "expected true or false, like `upgrade = true`"),
            ("class = \"technical\"", "class = \"tech\"", "expected \"technical\", \"non-layout\" or \"global\""),
            ("requires_moodle = \">=4.4.0, <5.2.0\"", "requires_moodle = \"4.x.y\"", "like `requires_moodle = \">=4.4.0, <5.2.0\"`"),
            ("component = ", "componnet = ", "unknown key `componnet`: did you mean `component`?"),
        ] {
            assert!(EXAMPLE.contains(from), "{from}");
            let why = refused(&EXAMPLE.replace(from, to), ManifestKind::Source);
            assert!(why.contains(wanted), "{to}: {why}");
            for jargon in ["invalid type", "expected a sequence", "unexpected end of input", "unknown field", "unknown variant", "wildcard"] {
                assert!(!why.contains(jargon), "{to}: {why}");
            }
        }
    }

    #[test]
    fn source_manifest_may_not_list_files() {
        let text = format!("{EXAMPLE}\n[[files]]\npath = \"a.php\"\nsha256 = \"{}\"\nsize = 1\nmode = \"0644\"\n", "0".repeat(64));
        assert!(refused(&text, ManifestKind::Source).contains("bundle build"));
        Manifest::parse(&text, ManifestKind::Built).unwrap();
    }

    #[test]
    fn built_manifest_refuses_file_dir_clash_and_written_deleted() {
        let entry = |p: &str| format!("\n[[files]]\npath = \"{p}\"\nsha256 = \"{}\"\nsize = 1\nmode = \"0644\"\n", "0".repeat(64));
        let text = format!("{EXAMPLE}{}{}", entry("a"), entry("a/b.php"));
        assert!(refused(&text, ManifestKind::Built).contains("parent"));
        let text = format!("{EXAMPLE}{}", entry("mod/quiz/old.js"));
        assert!(refused(&text, ManifestKind::Built).contains("both written and deleted"));
    }
}
