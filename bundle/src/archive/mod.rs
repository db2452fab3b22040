//! Bundle archives: the deterministic writer and the streaming, verifying reader.
//!
//! Layout: `bundle.toml` first (so a streaming reader knows every file's digest before
//! it sees the file), then `files/<path>` for each file, sorted by path.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::manifest::{FileEntry, FileMode, MAX_MANIFEST_BYTES, Manifest, ManifestKind, Sha256Hex};
use crate::names::RelPath;

mod compress;

/// Name of the manifest entry.
pub const MANIFEST_ENTRY: &str = "bundle.toml";
/// Prefix of every file entry.
pub const FILES_PREFIX: &str = "files/";
/// The fixed modification time written in every header.
const MTIME: u64 = 0;

/// A regular file found under a build's source directory.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: RelPath,
    pub disk_path: PathBuf,
    pub mode: FileMode,
}

/// List the regular files under `dir`, sorted by path. Symlinks and special files are refused:
/// a bundle carries regular files only.
pub fn scan_source_dir(dir: &Path) -> Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    scan(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn scan(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) -> Result<()> {
    let source_err = |path: &Path, source: io::Error| Error::Source { path: path.display().to_string(), source };
    for entry in std::fs::read_dir(dir).map_err(|e| source_err(dir, e))? {
        let entry = entry.map_err(|e| source_err(dir, e))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| source_err(&path, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            scan(root, &path, out)?;
        } else if ft.is_file() {
            let rel = path.strip_prefix(root).map_err(|e| source_err(&path, io::Error::other(e)))?;
            let rel = rel
                .to_str()
                .ok_or_else(|| source_err(&path, io::Error::other("file name is not UTF-8")))?;
            use std::os::unix::fs::PermissionsExt;
            out.push(SourceFile {
                path: RelPath::new(rel)?,
                disk_path: path.clone(),
                mode: FileMode::from_permissions(meta.permissions().mode()),
            });
        } else {
            let what = if ft.is_symlink() { "a symlink" } else { "a special file" };
            return Err(source_err(&path, io::Error::other(format!("{what}: bundles carry regular files only"))));
        }
    }
    Ok(())
}

/// Hash every source file and return the built manifest (`files` filled in).
pub fn manifest_for(source: &Manifest, files: &[SourceFile]) -> Result<Manifest> {
    source.validate(ManifestKind::Source)?;
    let entries = compress::map_parallel(files, |f| {
        let mut reader = File::open(&f.disk_path).map_err(|e| Error::Source { path: f.disk_path.display().to_string(), source: e })?;
        let mut hasher = Sha256::new();
        let size = io::copy(&mut reader, &mut HashWriter(&mut hasher))
            .map_err(|e| Error::Source { path: f.disk_path.display().to_string(), source: e })?;
        Ok(FileEntry { path: f.path.clone(), sha256: Sha256Hex::from_digest(&hasher.finalize()), size, mode: f.mode })
    })?;
    let mut built = source.clone();
    built.files = entries;
    built.validate(ManifestKind::Built)?;
    Ok(built)
}

/// Build a bundle from a hand-written manifest and a source directory, writing the
/// gzip-compressed archive to `out`. The same inputs give byte-identical output.
pub fn build_from_dir(source: &Manifest, dir: &Path, out: impl Write + Send) -> Result<Manifest> {
    let files = scan_source_dir(dir)?;
    let manifest = manifest_for(source, &files)?;
    write_archive(&manifest, &files, out)?;
    Ok(manifest)
}

/// Write the archive of a built manifest; `files` must be the manifest's files, in order.
pub fn write_archive(manifest: &Manifest, files: &[SourceFile], out: impl Write + Send) -> Result<()> {
    let toml = manifest.to_toml()?;
    compress::gzip_parallel(out, |tar_out| {
        let mut builder = tar::Builder::new(tar_out);
        append(&mut builder, MANIFEST_ENTRY, FileMode::Regular, toml.len() as u64, toml.as_bytes())?;
        for (entry, file) in manifest.files.iter().zip(files) {
            let reader = File::open(&file.disk_path).map_err(|e| Error::Source { path: file.disk_path.display().to_string(), source: e })?;
            // The manifest's size and digest were taken from this file: a file that changed
            // in between is refused by the length check in `append`, and by the reader.
            let name = format!("{FILES_PREFIX}{}", entry.path);
            append(&mut builder, &name, entry.mode, entry.size, BufReader::with_capacity(256 * 1024, reader))?;
        }
        builder.into_inner().map_err(Error::Write)?;
        Ok(())
    })
}

fn append<W: Write>(builder: &mut tar::Builder<W>, name: &str, mode: FileMode, size: u64, data: impl Read) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode.bits());
    header.set_mtime(MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut limited = ExactReader { inner: data, remaining: size, name };
    builder.append_data(&mut header, name, &mut limited).map_err(Error::Write)?;
    if limited.remaining != 0 {
        return Err(Error::Source { path: name.to_owned(), source: io::Error::other("file shrank while the bundle was built") });
    }
    Ok(())
}

/// Reads exactly `remaining` bytes, failing if the source has more or fewer.
struct ExactReader<'a, R> {
    inner: R,
    remaining: u64,
    name: &'a str,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!("{} grew while the bundle was built", self.name))),
            };
        }
        let max = buf.len().min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::other(format!("{} shrank while the bundle was built", self.name)));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A writer that feeds a sha256: `io::copy(&mut file, &mut HashWriter(&mut hasher))` hashes a
/// stream without holding it.
pub struct HashWriter<'a>(pub &'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where the reader sends each verified-as-it-streams file. The data is only known good
/// once `read_archive` returns `Ok`: a sink writes into a staging area, never in place.
pub trait EntrySink {
    fn file(&mut self, entry: &FileEntry, data: &mut dyn Read) -> io::Result<()>;
}

/// A sink that reads and discards: verification only.
pub struct VerifyOnly;

impl EntrySink for VerifyOnly {
    fn file(&mut self, _entry: &FileEntry, data: &mut dyn Read) -> io::Result<()> {
        io::copy(data, &mut io::sink()).map(|_| ())
    }
}

/// What the reader accepts.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits<'a> {
    /// Most bytes the files may expand to (from the signed metadata on the agent).
    pub max_expanded: u64,
    /// When set, the archive's manifest must equal this one (the signed manifest).
    pub expected: Option<&'a Manifest>,
}

/// Read a gzip-compressed bundle archive, verifying every entry as it streams, and
/// return its manifest. Refuses absolute paths, `..`, symlinks, hard links, devices,
/// duplicate entries, entries outside `files/` other than `bundle.toml`, files not in
/// the manifest or missing from the archive, digests that differ, and archives that
/// expand beyond `limits.max_expanded`.
pub fn read_archive<R: Read + Send>(input: R, limits: ReadLimits<'_>, sink: &mut dyn EntrySink) -> Result<Manifest> {
    // Inflating is the slow part: it runs on its own thread, a bounded channel ahead of
    // the tar parser and the per-file hashing. When the reader stops (a refusal, a bomb
    // over budget), the channel closes and the inflater stops too.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(INFLATE_AHEAD);
        scope.spawn(move || inflate(input, tx));
        read_tar(Chunks { rx, chunk: Vec::new(), pos: 0 }, limits, sink)
    })
}

/// Decompressed chunks the inflater may run ahead of the reader (of `CHUNK` bytes each).
/// Two of 128 KiB keep both threads busy (a 300 MB bundle stages as fast as with eight of
/// 256 KiB) and the agent's peak memory 2 MiB lower.
const INFLATE_AHEAD: usize = 2;
const CHUNK: usize = 128 * 1024;

fn inflate<R: Read>(input: R, tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>) {
    let mut gz = flate2::bufread::GzDecoder::new(BufReader::with_capacity(CHUNK, input));
    loop {
        let mut buf = vec![0u8; CHUNK];
        let result = match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) => Err(e),
        };
        let failed = result.is_err();
        if tx.send(result).is_err() || failed {
            return;
        }
    }
    // Nothing may follow the gzip member: the signed length covers the whole file, but a
    // reader that stops early must not leave bytes unexamined.
    let mut probe = [0u8; 1];
    let trailing = match gz.into_inner().read(&mut probe) {
        Ok(0) => return,
        Ok(_) => io::Error::other(TrailingData),
        Err(e) => e,
    };
    let _ = tx.send(Err(trailing));
}

#[derive(Debug)]
struct TrailingData;

impl std::fmt::Display for TrailingData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("data after the end of the gzip stream")
    }
}
impl std::error::Error for TrailingData {}

/// The inflater's chunks as one stream.
struct Chunks {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk?;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn read_tar(decompressed: Chunks, limits: ReadLimits<'_>, sink: &mut dyn EntrySink) -> Result<Manifest> {
    // Until the manifest is read, only its own size is allowed.
    let budget = std::rc::Rc::new(std::cell::Cell::new(MAX_MANIFEST_BYTES + 64 * 1024));
    let counted = Budgeted { inner: decompressed, budget: budget.clone(), limit: limits.max_expanded };
    let mut archive = tar::Archive::new(counted);
    let mut entries = archive.entries().map_err(read_err)?;

    let manifest = first_manifest(&mut entries)?;
    if let Some(expected) = limits.expected
        && let Some(diff) = first_difference(expected, &manifest)
    {
        return Err(Error::ManifestMismatch(diff));
    }
    let expanded = manifest.expanded_size();
    if expanded > limits.max_expanded {
        return Err(Error::TooLarge { limit: limits.max_expanded });
    }
    // Headers, long-name records and padding: at most 2 KiB plus the path per entry.
    let overhead: u64 = manifest.files.iter().map(|f| 2048 + f.path.as_str().len() as u64).sum::<u64>() + 64 * 1024;
    budget.set(expanded.saturating_add(overhead));

    let by_path: HashMap<&str, &FileEntry> = manifest.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut seen = vec![false; manifest.files.len()];
    let index: HashMap<&str, usize> = manifest.files.iter().enumerate().map(|(i, f)| (f.path.as_str(), i)).collect();

    for entry in entries {
        let mut entry = entry.map_err(read_err)?;
        let path = entry_path(&entry)?;
        let is_dir = check_entry_type(&entry, &path)?;
        if path == MANIFEST_ENTRY {
            return Err(Error::EntryRefused { path, why: "duplicate entry".into() });
        }
        let Some(rel) = path.strip_prefix(FILES_PREFIX) else {
            return Err(Error::EntryRefused { path, why: "outside files/ (only bundle.toml and files/... are allowed)".into() });
        };
        if is_dir {
            continue;
        }
        let Some(&file) = by_path.get(rel) else {
            return Err(Error::EntryRefused { path, why: "not listed in the manifest".into() });
        };
        let i = index[rel];
        if std::mem::replace(&mut seen[i], true) {
            return Err(Error::EntryRefused { path, why: "duplicate entry".into() });
        }
        let header_size = entry.header().size().map_err(read_err)?;
        if header_size != file.size {
            return Err(Error::EntryRefused { path, why: format!("size {header_size} differs from the manifest's {}", file.size) });
        }
        let mode = entry.header().mode().map_err(read_err)?;
        if FileMode::from_permissions(mode) != file.mode {
            return Err(Error::EntryRefused { path, why: format!("mode {mode:o} differs from the manifest's") });
        }
        let mut hashing = HashingReader { inner: &mut entry, hasher: Sha256::new(), read: 0 };
        sink.file(file, &mut hashing).map_err(|e| Error::Sink { path: file.path.to_string(), source: e })?;
        io::copy(&mut hashing, &mut io::sink()).map_err(read_err)?;
        let actual = Sha256Hex::from_digest(&hashing.hasher.finalize());
        if actual != file.sha256 || hashing.read != file.size {
            return Err(Error::HashMismatch { path, expected: file.sha256.to_string(), actual: actual.to_string() });
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(Error::ArchiveRefused(format!("{} is listed in the manifest but missing from the archive", manifest.files[i].path)));
    }
    // Read to the end of the gzip member: only tar padding may follow the last entry, the
    // gzip trailer's CRC and length are checked, and nothing may follow the gzip member.
    let mut rest = archive.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = rest.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(Error::ArchiveRefused("data after the end of the tar archive".into()));
        }
    }
    Ok(manifest)
}

/// The archive's own manifest, its first entry `bundle.toml`, read without the files: what
/// the agent holds to the signed metadata once the archive is downloaded (its length and
/// sha256 checked against the signed target). The files are verified when the archive is
/// read whole ([`read_archive`]).
pub fn read_manifest<R: Read>(input: R) -> Result<Manifest> {
    let gz = flate2::read::GzDecoder::new(BufReader::with_capacity(64 * 1024, input));
    // The manifest's own size bounds what is inflated.
    let budget = std::rc::Rc::new(std::cell::Cell::new(MAX_MANIFEST_BYTES + 64 * 1024));
    let counted = Budgeted { inner: gz, budget, limit: MAX_MANIFEST_BYTES };
    let mut archive = tar::Archive::new(counted);
    let mut entries = archive.entries().map_err(read_err)?;
    first_manifest(&mut entries)
}

/// Read and parse the first entry, which must be `bundle.toml`.
fn first_manifest<R: Read>(entries: &mut tar::Entries<'_, R>) -> Result<Manifest> {
    let mut first = match entries.next() {
        Some(e) => e.map_err(read_err)?,
        None => return Err(Error::ArchiveRefused("empty archive: no bundle.toml".into())),
    };
    let path = entry_path(&first)?;
    check_entry_type(&first, &path)?;
    if path != MANIFEST_ENTRY {
        return Err(Error::EntryRefused { path, why: "the first entry must be bundle.toml".into() });
    }
    let size = first.header().size().map_err(read_err)?;
    if size > MAX_MANIFEST_BYTES {
        return Err(Error::EntryRefused { path, why: format!("manifest larger than {MAX_MANIFEST_BYTES} bytes") });
    }
    let mut text = String::with_capacity(size as usize);
    first.read_to_string(&mut text).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData if e.get_ref().is_none() => Error::EntryRefused { path: path.clone(), why: "manifest is not UTF-8".into() },
        _ => read_err(e),
    })?;
    Manifest::parse(&text, ManifestKind::Built)
}

fn read_err(e: io::Error) -> Error {
    // The budget error travels through the tar reader as an io::Error.
    if let Some(limit) = e.get_ref().and_then(|inner| inner.downcast_ref::<OverBudget>()) {
        return Error::TooLarge { limit: limit.0 };
    }
    if e.get_ref().is_some_and(|inner| inner.is::<TrailingData>()) {
        return Error::ArchiveRefused(TrailingData.to_string());
    }
    // The tar reader quotes header bytes in its messages ("numeric field was not a number:
    // ..."): bytes of the archive, which may hold a newline or a terminal escape. Refusals are
    // one line and must not carry an attacker's control characters into a log or a terminal.
    let text = e.to_string();
    if text.chars().any(char::is_control) {
        let printable: String = text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect();
        return Error::Read(io::Error::new(e.kind(), printable));
    }
    Error::Read(e)
}

fn entry_path<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String> {
    let raw = entry.path_bytes();
    let path = std::str::from_utf8(&raw)
        .map_err(|_| Error::EntryRefused { path: String::from_utf8_lossy(&raw).into_owned(), why: "path is not UTF-8".into() })?
        .to_owned();
    let refuse = |why: &str| Err(Error::EntryRefused { path: path.clone(), why: why.into() });
    if path.starts_with('/') {
        return refuse("absolute path");
    }
    let trimmed = path.strip_suffix('/').unwrap_or(&path);
    if trimmed.split('/').any(|s| s == "..") {
        return refuse("'..' segment escapes the code root");
    }
    if trimmed != MANIFEST_ENTRY
        && let Some(rel) = trimmed.strip_prefix(FILES_PREFIX)
    {
        RelPath::new(rel).map_err(|e| Error::EntryRefused { path: path.clone(), why: e.to_string() })?;
    }
    Ok(trimmed.to_owned())
}

/// Refuse every entry type but regular files and directories; true for a directory.
fn check_entry_type<R: Read>(entry: &tar::Entry<'_, R>, path: &str) -> Result<bool> {
    use tar::EntryType::*;
    let why = match entry.header().entry_type() {
        Regular | Continuous => return Ok(false),
        Directory => return Ok(true),
        Symlink => "symlink",
        Link => "hard link",
        Char | Block => "device",
        Fifo => "fifo",
        other => return Err(Error::EntryRefused { path: path.into(), why: format!("unsupported entry type {:?}", other.as_byte() as char) }),
    };
    Err(Error::EntryRefused { path: path.into(), why: format!("{why} entries are refused: bundles carry regular files only") })
}

/// The first field where two manifests differ, for a one-line error.
fn first_difference(a: &Manifest, b: &Manifest) -> Option<String> {
    if a == b {
        return None;
    }
    let (ja, jb) = (serde_json::to_value(a).ok()?, serde_json::to_value(b).ok()?);
    if let (Some(ma), Some(mb)) = (ja.as_object(), jb.as_object()) {
        for key in ma.keys().chain(mb.keys()) {
            if ma.get(key) != mb.get(key) {
                return Some(format!("field {key} differs"));
            }
        }
    }
    Some("manifests differ".into())
}

#[derive(Debug)]
struct OverBudget(u64);

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expanded size exceeds the declared limit of {} bytes", self.0)
    }
}
impl std::error::Error for OverBudget {}

/// Counts decompressed bytes and fails once they pass the budget: a decompression bomb
/// stops at the budget, whatever its headers claim.
struct Budgeted<R> {
    inner: R,
    budget: std::rc::Rc<std::cell::Cell<u64>>,
    limit: u64,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let left = self.budget.get();
        if n as u64 > left {
            return Err(io::Error::other(OverBudget(self.limit)));
        }
        self.budget.set(left - n as u64);
        Ok(n)
    }
}

struct HashingReader<'a, R> {
    inner: &'a mut R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
