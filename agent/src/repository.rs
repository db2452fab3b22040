//! The agent's view of the TUF repository: only the pinned root is trusted; expired,
//! rolled-back or badly signed metadata is refused by tough, and every bundle's signed
//! metadata is checked before the policy sees it.
//!
//! The bundles are targets of hashed bins delegated by the top-level targets; halt markers
//! (`halts/ID@VERSION.json`) are targets of the `halts` role and halt their bundle. tough verifies
//! every bin on every load; with consistent snapshots a bin's file `N.bin-XX.json` never
//! changes once written, so the transport keeps the versioned targets and bins files of the
//! last successful load in `state_dir/tuf-cache` and downloads only those whose version the
//! new snapshot changed. A cached file is verified exactly like a downloaded one (signature,
//! version named by the snapshot); if a load that used the cache fails, it is tried once more
//! without it. Of each delegated role it loads, the agent keeps a listing ([`RoleListing`]);
//! at the next load, tough skips a role whose version has not changed (see
//! `RepositoryLoader::known_delegated_roles`) and its entries are read from the listing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use palier_bundle::BundleMetadata;
use palier_bundle::halt::{HaltMarker, Marker};
use tough::{ExpirationEnforcement, RepositoryLoader, Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::transport::RepoTransport;

/// A bundle whose metadata came out of a verified repository. Only [`load`] makes one, so
/// code that plans or applies cannot be handed metadata that was not verified.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// Boxed: the bundles are sorted and moved by the ten thousand at each refresh.
    meta: Box<BundleMetadata>,
    target: String,
    length: u64,
    sha256: String,
}

impl AsRef<BundleMetadata> for VerifiedBundle {
    fn as_ref(&self) -> &BundleMetadata {
        &self.meta
    }
}

impl VerifiedBundle {
    pub fn meta(&self) -> &BundleMetadata {
        &self.meta
    }
    pub fn target(&self) -> &str {
        &self.target
    }
    pub fn length(&self) -> u64 {
        self.length
    }
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// The verified repository: its bundles, and the loaded tough repository for downloads.
pub struct Verified {
    pub bundles: Vec<VerifiedBundle>,
    pub repository: tough::Repository,
    /// The halt markers the repository lists now, for the cycle to remember (see
    /// [`crate::holds::remember_halt_markers`]).
    pub halt_markers: Vec<HaltMarker>,
}

/// `<repository>/metadata/` and `<repository>/targets/`.
pub fn urls(repository: &Url) -> Result<(Url, Url)> {
    let mut base = repository.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let join = |p: &str| {
        base.join(p).map_err(|e| Error::Site { path: repository.as_str().into(), why: format!("cannot form the {p} URL: {e}") })
    };
    Ok((join("metadata/")?, join("targets/")?))
}

/// Refresh and verify the repository against the pinned root, with tough's datastore in
/// `state_dir/tuf` (so a later refresh cannot be rolled back to older metadata).
pub async fn load(config: &Config) -> Result<Verified> {
    let root = std::fs::read(&config.trusted_root).map_err(Error::io("read trusted root", &config.trusted_root))?;
    let datastore = config.state_dir.join("tuf");
    create_private_dir(&datastore)?;
    let cache_dir = config.state_dir.join("tuf-cache");
    create_private_dir(&cache_dir)?;
    let (metadata_url, targets_url) = urls(&config.repository)?;
    let url = config.repository.to_string();
    let roots = crate::transport::extra_roots(config.ca_file.as_deref()).map_err(|e| Error::Refused(e.to_string()))?;
    let inner = RepoTransport::new(roots, &config.repository).map_err(|e| Error::Refused(format!("cannot build the HTTP client: {}", palier_bundle::error::one_line(&e))))?;
    let load = |use_cache: bool| {
        let cache = MetadataCache::new(inner.clone(), metadata_url.clone(), cache_dir.clone(), use_cache);
        let loader = RepositoryLoader::new(&root, metadata_url.clone(), targets_url.clone())
            .transport(cache.clone())
            .datastore(&datastore)
            .expiration_enforcement(ExpirationEnforcement::Safe)
            // The agent keeps verified metadata through its own cache (`MetadataCache`), not
            // tough's `cache_metadata`: the bins' bytes need not live as long as the load.
            .keep_delegated_metadata(false)
            .known_delegated_roles(cache.known_roles())
            .limits(tough::Limits { max_targets_size: 256 << 20, max_snapshot_size: 16 << 20, ..Default::default() });
        let url = &url;
        async move {
            let read = match loader.load().await {
                Ok(repository) => read_targets(repository, &cache, url),
                Err(source) => Err(Failed::Load(Error::Repository { url: url.clone(), source: Box::new(source) })),
            };
            (read, cache)
        }
    };
    // A load that used the cache and failed in tough, or whose listings could not be used,
    // is tried once more without the cache; a refusal of what the repository signs is not.
    let (mut read, mut cache) = load(true).await;
    if let Err(failed) = &read
        && (matches!(failed, Failed::Listing(_)) || (matches!(failed, Failed::Load(_)) && cache.used()))
    {
        tracing::debug!(error = %failed.error(), "the load that used cached metadata failed; trying again without the cache");
        (read, cache) = load(false).await;
    }
    let (repository, mut bundles, mut markers, listings) = read.map_err(Failed::into_error)?;
    cache.keep_only_this_load(listings);
    // A valid halt marker halts its bundle as the bundle's own metadata would (plan reason
    // `halted`, the marker's reason in the detail), and so does one this site saw earlier and
    // the repository no longer lists, until the bundle's own metadata says it was resumed
    // since; a report marker adds its platforms to the bundle's reporters.
    let halt_markers: Vec<HaltMarker> = markers.iter().filter_map(|m| if let Marker::Halt(h) = m { Some(h.clone()) } else { None }).collect();
    markers.extend(crate::holds::seen_halt_markers(&config.state_dir)?.into_iter().map(Marker::Halt));
    for marker in &markers {
        for b in &mut bundles {
            marker.apply(&mut b.meta);
        }
    }
    bundles.sort_unstable_by(|a, b| (&a.meta.manifest.id, &a.meta.manifest.version).cmp(&(&b.meta.manifest.id, &b.meta.manifest.version)));
    Ok(Verified { bundles, repository, halt_markers })
}

/// The bundles and markers of a verified load, and what to keep of its roles for the next
/// load (see [`Listings`]).
type Read = (tough::Repository, Vec<VerifiedBundle>, Vec<Marker>, Listings);

/// Why a load failed: in tough, in the agent's reading of what tough verified, or in a
/// listing kept from an earlier load (then the load runs again without the cache).
#[derive(Debug)]
enum Failed {
    Load(Error),
    Refused(Error),
    Listing(Error),
}

impl Failed {
    fn error(&self) -> &Error {
        match self {
            Failed::Load(e) | Failed::Refused(e) | Failed::Listing(e) => e,
        }
    }

    fn into_error(self) -> Error {
        match self {
            Failed::Load(e) | Failed::Refused(e) | Failed::Listing(e) => e,
        }
    }
}

/// Every bundle and marker the loaded repository lists, each read and checked from its
/// signed `custom` entry: those of the roles tough loaded, and those of the roles it skipped
/// because this agent knows them (read from the listing it wrote when it loaded them).
fn read_targets(mut repository: tough::Repository, cache: &MetadataCache, url: &str) -> std::result::Result<Read, Failed> {
    let mut bundles = Vec::new();
    let mut markers = Vec::new();
    let listings = list_targets(&mut repository, cache, url, |listed| {
        let Listed { name, length, sha256, custom } = listed;
        let invalid = |source| Error::Metadata { url: url.to_owned(), target: name.clone(), source };
        if palier_bundle::halt::is_marker(&name) {
            markers.push(Marker::from_custom(&name, custom.into_value().map_err(invalid)?).map_err(invalid)?);
            return Ok(());
        }
        let meta = match custom {
            Custom::Entry(text) => BundleMetadata::from_entry_text(&text),
            json @ Custom::Json(_) => json.into_value().and_then(BundleMetadata::from_custom),
        }
        .map_err(invalid)?;
        if !meta.manifest.is_target_name(&name) {
            return Err(invalid(palier_bundle::Error::ManifestMismatch(format!("target name differs from the manifest's {}", meta.manifest.target_name()))));
        }
        bundles.push(VerifiedBundle { target: name, length, sha256: lower_hex(&sha256), meta: Box::new(meta) });
        Ok(())
    })?;
    Ok((repository, bundles, markers, listings))
}

/// `bytes` in lowercase hexadecimal, as `hex::encode` writes it, without its per-character
/// iterator (once for each of the repository's bundles at each refresh).
fn lower_hex(bytes: &[u8]) -> String {
    let mut text = vec![0; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut text).expect("the buffer is twice the input's length");
    String::from_utf8(text).expect("hexadecimal digits are ASCII")
}

/// A target of the repository as the agent reads it.
struct Listed {
    name: String,
    length: u64,
    sha256: Vec<u8>,
    custom: Custom,
}

/// A target's signed `custom` data: the text of a format 3 entry, or any other map (older
/// formats, halt and report markers) as JSON.
enum Custom {
    Entry(String),
    Json(String),
}

impl Custom {
    /// Takes `custom` out of a loaded target: the agent needs only the name, length and
    /// hashes afterwards, and the memory of ten thousand entries' text is then reused by
    /// what is read next instead of growing the heap.
    fn take(custom: &mut HashMap<String, serde_json::Value>) -> Custom {
        match palier_bundle::metadata::take_entry_text(custom) {
            Some(text) => Custom::Entry(text),
            None => Custom::Json(serde_json::Value::Object(std::mem::take(custom).into_iter().collect()).to_string()),
        }
    }

    fn into_value(self) -> std::result::Result<serde_json::Value, palier_bundle::Error> {
        match self {
            Custom::Entry(text) => Ok(serde_json::json!({ "format": palier_bundle::metadata::METADATA_FORMAT, "entry": text })),
            Custom::Json(text) => serde_json::from_str(&text).map_err(|e| palier_bundle::Error::ManifestSyntax(format!("signed metadata: {e}"))),
        }
    }
}

/// Every target of the verified top-level targets and the roles they delegate to, given to
/// `visit` one at a time, each checked to be listed by the role a search for its name would
/// consult (the bin its hash falls in, the `halts` role for halt markers): tough verifies
/// every role's signatures but lists every role's targets, so without this a halts key could
/// list a bundle. A name listed twice, or a delegation nested deeper than this repository
/// makes, is refused too. A role tough skipped because this agent knows it is read from its
/// listing, and checked the same way.
fn list_targets(repository: &mut tough::Repository, cache: &MetadataCache, url: &str, mut visit: impl FnMut(Listed) -> std::result::Result<(), Error>) -> std::result::Result<Listings, Failed> {
    let refused = |why: String| Failed::Refused(Error::Refused(format!("repository {url} refused: {why}")));
    use palier_bundle::halt::{RolePaths, TrustedRoles};
    use tough::schema::PathSet;
    let skipped: HashMap<String, u64> = repository
        .skipped_delegated_roles()
        .iter()
        .filter_map(|name| Some((name.clone(), repository.snapshot().signed.meta.get(&format!("{name}.json"))?.version.get())))
        .collect();
    let mut listings = Listings::default();
    let top = &mut repository.targets_mut().signed;
    let mut at_top = HashSet::new();
    for (name, target) in &mut top.targets {
        at_top.insert(name.raw().to_owned());
        visit(Listed { name: name.raw().into(), length: target.length, sha256: target.hashes.sha256.to_vec(), custom: Custom::take(&mut target.custom) }).map_err(Failed::Refused)?;
    }
    let Some(d) = &mut top.delegations else { return Ok(listings) };
    let paths: Vec<RolePaths> = d
        .roles
        .iter()
        .map(|r| match &r.paths {
            PathSet::PathHashPrefixes(p) => RolePaths::HashPrefixes(p.iter().map(|x| x.value().to_owned()).collect()),
            PathSet::Paths(p) => RolePaths::Patterns(p.iter().map(|x| x.value().to_owned()).collect()),
        })
        .collect();
    let trusted = TrustedRoles::new(&paths);
    // A delegated name is listed by its one trusted role only (checked below), once (a
    // role's targets are a map, a listing is written from one): it can only be listed
    // twice by also being at the top.
    let check = |role: &str, i: usize, name: &str| {
        if trusted.of(name) != Some(i) {
            return Err(format!("target file not delegated: {name} (listed by role {role}, which is not trusted for that name)"));
        }
        if at_top.contains(name) {
            return Err(format!("target {name} is listed twice"));
        }
        Ok(())
    };
    for (i, role) in d.roles.iter_mut().enumerate() {
        let Some(t) = &mut role.targets else {
            if let Some(&version) = skipped.get(&role.name) {
                let file = listing_file_name(version, &role.name);
                let unusable = |why: String| Failed::Listing(Error::Refused(format!("the listing kept of role {} cannot be used: {why}", role.name)));
                let bytes = cache.read_listing(&file).map_err(|e| unusable(e.to_string()))?;
                for listed in RoleListing::decode(&bytes).map_err(|e| unusable(e.to_owned()))? {
                    check(&role.name, i, &listed.name).map_err(unusable)?;
                    visit(listed).map_err(|e| unusable(e.to_string()))?;
                }
                listings.kept.push(file);
            }
            continue;
        };
        if t.signed.delegations.as_ref().is_some_and(|d| !d.roles.is_empty()) {
            return Err(refused(format!("role {} delegates further, which this repository never does", role.name)));
        }
        let mut file = RoleListing::default();
        for (name, target) in &mut t.signed.targets {
            check(&role.name, i, name.raw()).map_err(refused)?;
            let listed = Listed { name: name.raw().into(), length: target.length, sha256: target.hashes.sha256.to_vec(), custom: Custom::take(&mut target.custom) };
            file.push(&listed);
            visit(listed).map_err(Failed::Refused)?;
        }
        if plain_role_name(&role.name)
            && let Some(bytes) = file.finish()
        {
            listings.written.push((listing_file_name(t.signed.version.get(), &role.name), bytes));
        }
    }
    Ok(listings)
}

/// A delegated role's name that can name a file of the cache.
fn plain_role_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `VERSION.ROLE.listing`: what the agent keeps of a delegated role it loaded.
fn listing_file_name(version: u64, role: &str) -> String {
    format!("{version}.{role}.listing")
}

/// The listings of a load: those it read for the roles tough skipped, and those to write for
/// the roles it loaded. Written (and the others dropped) only once the whole load was read.
#[derive(Debug, Default)]
struct Listings {
    kept: Vec<String>,
    written: Vec<(String, Vec<u8>)>,
}

/// What the agent keeps of a delegated role it loaded, so that the next load, when the
/// snapshot names the same version, skips the role (tough neither reads nor parses it, see
/// `RepositoryLoader::known_delegated_roles`): each target's name, length, sha256 and `custom`
/// data, as the verified role listed them. Each entry is read and checked again from this
/// copy at every load, as from the role. Binary, written with the rest of the cache (the
/// same trust as the datastore that holds the trusted root): a magic line, then per target
/// `u32 name length, name, u64 length, u8 hash length, hash, u8 kind (0 format 3 entry text,
/// 1 JSON), u32 text length, text`, then `u32::MAX`, the count of targets and the CRC-32 of
/// all that comes before (integers little-endian), so that a file cut short or damaged on
/// disk is refused (and the load runs again without the cache, which writes it again).
#[derive(Default)]
struct RoleListing {
    bytes: Vec<u8>,
    count: u32,
    /// A name, hash or text too long for its length field: no listing is written.
    too_long: bool,
}

impl RoleListing {
    const MAGIC: &'static [u8] = b"palier role listing 1\n";

    fn push(&mut self, listed: &Listed) {
        if self.bytes.is_empty() {
            self.bytes.extend_from_slice(Self::MAGIC);
        }
        let (kind, text) = match &listed.custom {
            Custom::Entry(t) => (0u8, t),
            Custom::Json(t) => (1u8, t),
        };
        // `u32::MAX` marks the end: a length is below it.
        let len32 = |n: usize| u32::try_from(n).ok().filter(|&n| n < u32::MAX);
        let (Some(name_len), Some(text_len), Ok(hash_len)) = (len32(listed.name.len()), len32(text.len()), u8::try_from(listed.sha256.len())) else {
            self.too_long = true;
            return;
        };
        self.bytes.extend_from_slice(&name_len.to_le_bytes());
        self.bytes.extend_from_slice(listed.name.as_bytes());
        self.bytes.extend_from_slice(&listed.length.to_le_bytes());
        self.bytes.push(hash_len);
        self.bytes.extend_from_slice(&listed.sha256);
        self.bytes.push(kind);
        self.bytes.extend_from_slice(&text_len.to_le_bytes());
        self.bytes.extend_from_slice(text.as_bytes());
        self.count += 1;
    }

    /// The listing's bytes; `None` when a target did not fit.
    fn finish(mut self) -> Option<Vec<u8>> {
        if self.too_long {
            return None;
        }
        if self.bytes.is_empty() {
            self.bytes.extend_from_slice(Self::MAGIC);
        }
        self.bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        self.bytes.extend_from_slice(&self.count.to_le_bytes());
        let crc = crc32fast::hash(&self.bytes);
        self.bytes.extend_from_slice(&crc.to_le_bytes());
        Some(self.bytes)
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Vec<Listed>, &'static str> {
        let (body, crc) = bytes.split_last_chunk::<4>().ok_or("cut short")?;
        if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
            return Err("its checksum differs");
        }
        let mut rest = body.strip_prefix(Self::MAGIC).ok_or("not a role listing")?;
        let mut take = |n: usize| -> std::result::Result<&[u8], &'static str> {
            let (head, tail) = rest.split_at_checked(n).ok_or("cut short")?;
            rest = tail;
            Ok(head)
        };
        let mut out = Vec::new();
        loop {
            let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "cut short")?);
            if len == u32::MAX {
                let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "cut short")?);
                if usize::try_from(count).ok() != Some(out.len()) {
                    return Err("its count of targets differs");
                }
                break;
            }
            let name = std::str::from_utf8(take(len as usize)?).map_err(|_| "a name is not UTF-8")?.to_owned();
            let length = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "cut short")?);
            let hash_len = take(1)?[0];
            let sha256 = take(usize::from(hash_len))?.to_vec();
            let kind = take(1)?[0];
            let text_len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "cut short")?);
            let text = std::str::from_utf8(take(text_len as usize)?).map_err(|_| "an entry is not UTF-8")?.to_owned();
            let custom = match kind {
                0 => Custom::Entry(text),
                1 => Custom::Json(text),
                _ => return Err("unknown kind of entry"),
            };
            out.push(Listed { name, length, sha256, custom });
        }
        if !rest.is_empty() {
            return Err("trailing bytes");
        }
        Ok(out)
    }
}

/// Largest metadata file the cache holds in memory while a load runs (tough's own limit for
/// targets metadata).
const MAX_CACHED_FILE: usize = 256 << 20;

/// A transport that answers the versioned targets and bins files (`N.targets.json`,
/// `N.bin-XX.json`) of the metadata folder from `dir` when it holds them, and otherwise fetches
/// them through `inner`. Files fetched are written to `dir` only by
/// [`MetadataCache::keep_only_this_load`], after the whole load was verified and read, with
/// the listings of the roles loaded (see [`RoleListing`]).
#[derive(Debug, Clone)]
struct MetadataCache {
    inner: RepoTransport,
    metadata_url: Url,
    dir: PathBuf,
    enabled: bool,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Debug, Default)]
struct Seen {
    hits: HashSet<String>,
    fetched: HashMap<String, Vec<u8>>,
    listings_offered: usize,
}

impl MetadataCache {
    fn new(inner: RepoTransport, metadata_url: Url, dir: PathBuf, enabled: bool) -> Self {
        MetadataCache { inner, metadata_url, dir, enabled, seen: Arc::default() }
    }

    /// The file name under which `url` may be cached: a versioned, immutable metadata file.
    fn cacheable(&self, url: &Url) -> Option<String> {
        let name = url.as_str().strip_prefix(self.metadata_url.as_str())?;
        let (version, rest) = name.split_once('.')?;
        let role = rest.strip_suffix(".json")?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) || matches!(role, "root" | "snapshot" | "timestamp") || !plain_role_name(role) {
            return None;
        }
        Some(name.to_owned())
    }

    /// The roles (name, version) whose listing the cache has, for tough to skip.
    fn known_roles(&self) -> Vec<(String, std::num::NonZeroU64)> {
        if !self.enabled {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let listings: Vec<_> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let (version, role) = name.strip_suffix(".listing")?.split_once('.')?;
                Some((role.to_owned(), version.parse().ok()?))
            })
            .collect();
        if let Ok(mut seen) = self.seen.lock() {
            seen.listings_offered = listings.len();
        }
        listings
    }

    fn read_listing(&self, file: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.dir.join(file))
    }

    /// Whether this load used anything of the cache: if it failed, it is tried without.
    fn used(&self) -> bool {
        self.seen.lock().map(|s| !s.hits.is_empty() || s.listings_offered > 0).unwrap_or(false)
    }

    /// After a verified load: store what was downloaded and the listings of the roles
    /// loaded, drop every cached file this load did not use (older versions of changed bins,
    /// the bins files of the roles now listed).
    fn keep_only_this_load(&self, listings: Listings) {
        let Ok(mut seen) = self.seen.lock() else { return };
        let fetched = std::mem::take(&mut seen.fetched);
        seen.hits.extend(listings.kept);
        for (name, bytes) in fetched.into_iter().chain(listings.written) {
            let path = self.dir.join(&name);
            let written = tempfile::NamedTempFile::new_in(&self.dir).and_then(|mut tmp| {
                std::io::Write::write_all(&mut tmp, &bytes)?;
                tmp.persist(&path).map_err(|e| e.error)
            });
            match written {
                Ok(_) => {
                    seen.hits.insert(name);
                }
                Err(e) => tracing::debug!(file = %path.display(), error = %e, "cannot cache metadata"),
            }
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !seen.hits.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn one_chunk(bytes: Vec<u8>) -> TransportStream {
    Box::pin(futures::stream::iter([Ok(bytes::Bytes::from(bytes))]))
}

#[async_trait::async_trait]
impl Transport for MetadataCache {
    async fn fetch(&self, url: Url) -> std::result::Result<TransportStream, TransportError> {
        let Some(name) = self.cacheable(&url) else {
            return self.inner.fetch(url).await;
        };
        // tough reads this version of the role: its listing, if any, is dropped until this
        // load writes it again (the role's record may now be another, under rotated keys).
        if let Some(stem) = name.strip_suffix(".json") {
            let _ = std::fs::remove_file(self.dir.join(format!("{stem}.listing")));
        }
        if self.enabled
            && let Ok(bytes) = std::fs::read(self.dir.join(&name))
        {
            if let Ok(mut seen) = self.seen.lock() {
                seen.hits.insert(name);
            }
            return Ok(one_chunk(bytes));
        }
        let mut stream = self.inner.fetch(url.clone()).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            bytes.extend_from_slice(&chunk?);
            if bytes.len() > MAX_CACHED_FILE {
                return Err(TransportError::new_with_cause(TransportErrorKind::Other, url.as_str(), format!("metadata file larger than {MAX_CACHED_FILE} bytes")));
            }
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.fetched.insert(name, bytes.clone());
        }
        Ok(one_chunk(bytes))
    }
}

pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(Error::io("create folder", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, custom: Custom) -> Listed {
        Listed { name: name.into(), length: 42, sha256: vec![7; 32], custom }
    }

    fn file(items: Vec<Listed>) -> Vec<u8> {
        let mut file = RoleListing::default();
        for item in &items {
            file.push(item);
        }
        file.finish().unwrap()
    }

    #[test]
    fn a_role_listing_reads_back_what_was_written() {
        let bytes = file(vec![listed("a-1.0.0.tar.gz", Custom::Entry("{\"format\": 2}".into())), listed("halts/a@1.0.0.json", Custom::Json("{\"reason\":\"é\"}".into()))]);
        let back = RoleListing::decode(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].name.as_str(), back[0].length, back[0].sha256.as_slice()), ("a-1.0.0.tar.gz", 42, &[7; 32][..]));
        assert!(matches!(&back[0].custom, Custom::Entry(t) if t == "{\"format\": 2}"));
        assert!(matches!(&back[1].custom, Custom::Json(t) if t == "{\"reason\":\"é\"}"));
        assert!(RoleListing::decode(&file(Vec::new())).unwrap().is_empty());
    }

    #[test]
    fn a_role_listing_cut_short_or_damaged_is_refused() {
        let bytes = file(vec![listed("a-1.0.0.tar.gz", Custom::Entry("{}".into())), listed("b-1.0.0.tar.gz", Custom::Entry("{}".into()))]);
        for cut in 0..bytes.len() {
            assert!(RoleListing::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(RoleListing::decode(&damaged).is_err(), "byte {at} changed");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(RoleListing::decode(&longer).is_err());
    }

    #[test]
    fn a_target_too_long_for_its_length_field_leaves_no_listing() {
        let mut file = RoleListing::default();
        file.push(&listed("a-1.0.0.tar.gz", Custom::Entry("{}".into())));
        file.push(&Listed { sha256: vec![1; 256], ..listed("b-1.0.0.tar.gz", Custom::Entry("{}".into())) });
        assert!(file.finish().is_none());
    }
}
