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
//! without it.

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
            .limits(tough::Limits { max_targets_size: 256 << 20, max_snapshot_size: 16 << 20, ..Default::default() });
        async move { (loader.load().await, cache) }
    };
    let (mut loaded, mut cache) = load(true).await;
    if loaded.is_err() && cache.hits() > 0 {
        tracing::debug!("the load that used cached metadata failed; trying again without the cache");
        (loaded, cache) = load(false).await;
    }
    let mut repository = loaded.map_err(|source| Error::Repository { url: url.clone(), source: Box::new(source) })?;
    cache.keep_only_this_load();
    let listed = delegated_targets(repository.targets_mut()).map_err(|why| Error::Refused(format!("repository {url} refused: {why}")))?;
    let mut bundles = Vec::with_capacity(listed.len());
    let mut markers = Vec::new();
    for (name, target) in listed {
        // Each entry is let go of once read: the memory of ten thousand entries' text is
        // reused by what is read next instead of growing the heap (downloads need only the
        // name, length and hashes).
        let custom = std::mem::take(&mut target.custom);
        if palier_bundle::halt::is_marker(name.raw()) {
            let custom = palier_bundle::metadata::custom_value(&custom);
            markers.push(Marker::from_custom(name.raw(), custom).map_err(|source| Error::Metadata { url: url.clone(), target: name.raw().into(), source })?);
            continue;
        }
        let meta = BundleMetadata::from_custom_map(&custom).map_err(|source| Error::Metadata { url: url.clone(), target: name.raw().into(), source })?;
        drop(custom);
        if !meta.manifest.is_target_name(name.raw()) {
            return Err(Error::Metadata {
                url: url.clone(),
                target: name.raw().into(),
                source: palier_bundle::Error::ManifestMismatch(format!("target name differs from the manifest's {}", meta.manifest.target_name())),
            });
        }
        bundles.push(VerifiedBundle { target: name.raw().into(), length: target.length, sha256: lower_hex(&target.hashes.sha256), meta: Box::new(meta) });
    }
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

/// `bytes` in lowercase hexadecimal, as `hex::encode` writes it, without its per-character
/// iterator (once for each of the repository's bundles at each refresh).
fn lower_hex(bytes: &[u8]) -> String {
    let mut text = vec![0; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut text).expect("the buffer is twice the input's length");
    String::from_utf8(text).expect("hexadecimal digits are ASCII")
}

/// Every target of the verified top-level targets and the roles they delegate to, each
/// checked to be listed by the role a search for its name would consult (the bin its hash
/// falls in, the `halts` role for halt markers): tough verifies every role's signatures but
/// lists every role's targets, so without this a halts key could list a bundle. A name listed
/// twice, or a delegation nested deeper than this repository makes, is refused too.
fn delegated_targets(top: &mut tough::schema::Signed<tough::schema::Targets>) -> std::result::Result<Vec<(&tough::TargetName, &mut tough::schema::Target)>, String> {
    use palier_bundle::halt::{RolePaths, TrustedRoles};
    use tough::schema::PathSet;
    let top = &mut top.signed;
    let mut out: Vec<_> = top.targets.iter_mut().collect();
    let top_len = out.len();
    if let Some(d) = &mut top.delegations {
        let paths: Vec<RolePaths> = d
            .roles
            .iter()
            .map(|r| match &r.paths {
                PathSet::PathHashPrefixes(p) => RolePaths::HashPrefixes(p.iter().map(|x| x.value().to_owned()).collect()),
                PathSet::Paths(p) => RolePaths::Patterns(p.iter().map(|x| x.value().to_owned()).collect()),
            })
            .collect();
        let trusted = TrustedRoles::new(&paths);
        for (i, role) in d.roles.iter_mut().enumerate() {
            let Some(t) = &mut role.targets else { continue };
            if t.signed.delegations.as_ref().is_some_and(|d| !d.roles.is_empty()) {
                return Err(format!("role {} delegates further, which this repository never does", role.name));
            }
            for (name, target) in &mut t.signed.targets {
                if trusted.of(name.raw()) != Some(i) {
                    return Err(format!("target file not delegated: {} (listed by role {}, which is not trusted for that name)", name.raw(), role.name));
                }
                out.push((name, target));
            }
        }
    }
    // A delegated name is listed by its one trusted role only (checked above), once (a
    // role's targets are a map): it can only be listed twice by also being at the top.
    let at_top: HashSet<&str> = out[..top_len].iter().map(|(n, _)| n.raw()).collect();
    if let Some((name, _)) = out[top_len..].iter().find(|(n, _)| at_top.contains(n.raw())) {
        return Err(format!("target {} is listed twice", name.raw()));
    }
    Ok(out)
}

/// Largest metadata file the cache holds in memory while a load runs (tough's own limit for
/// targets metadata).
const MAX_CACHED_FILE: usize = 256 << 20;

/// A transport that answers the versioned targets and bins files (`N.targets.json`,
/// `N.bin-XX.json`) of the metadata folder from `dir` when it holds them, and otherwise fetches
/// them through `inner`. Files fetched are written to `dir` only by
/// [`MetadataCache::keep_only_this_load`], after tough verified the whole load.
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
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) || matches!(role, "root" | "snapshot" | "timestamp") || !role.chars().all(plain) {
            return None;
        }
        Some(name.to_owned())
    }

    fn hits(&self) -> usize {
        self.seen.lock().map(|s| s.hits.len()).unwrap_or(0)
    }

    /// After a verified load: store what was downloaded, drop every cached file this load did
    /// not use (older versions of changed bins).
    fn keep_only_this_load(&self) {
        let Ok(mut seen) = self.seen.lock() else { return };
        for (name, bytes) in std::mem::take(&mut seen.fetched) {
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
