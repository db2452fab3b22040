//! The TUF repository, release manager's side: create it, read its bundles, and change it
//! (publish, validations, state, reporters) with every change re-signed and written atomically.
//!
//! Layout: `DIR/metadata/` (consistent snapshots: `N.root.json`, `N.targets.json`,
//! `N.snapshot.json`, `timestamp.json`) and `DIR/targets/<sha256>.<id>-<version>.tar.gz`.
//! Keys live in a separate folder, one DER PKCS#8 file per key.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use palier_bundle::archive::{self, ReadLimits, VerifyOnly};
use palier_bundle::{BundleMetadata, BundleRef, Manifest, PlatformId};
use sha2::{Digest, Sha256};
use tough::editor::RepositoryEditor;
use tough::editor::signed::SignedRole;
use tough::key_source::KeySource;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{Ed25519Key, Ed25519Scheme, Key};
use tough::schema::{Hashes, KeyHolder, Metafile, RoleKeys, RoleType, Root, Target};
use tough::{ExpirationEnforcement, FilesystemTransport, RepositoryLoader, TargetName};

use crate::error::{Error, Result};
use crate::keys;

/// How long each role's metadata stays valid after it is signed.
#[derive(Debug, Clone, Copy)]
pub struct Expiries {
    pub root: SignedDuration,
    pub targets: SignedDuration,
    pub snapshot: SignedDuration,
    pub timestamp: SignedDuration,
}

impl Default for Expiries {
    fn default() -> Self {
        Expiries {
            root: SignedDuration::from_hours(365 * 24),
            targets: SignedDuration::from_hours(90 * 24),
            snapshot: SignedDuration::from_hours(7 * 24),
            timestamp: SignedDuration::from_hours(24),
        }
    }
}

/// Largest expanded size `publish` accepts unless told otherwise: 4 GiB.
pub const DEFAULT_MAX_EXPANDED: u64 = 4 << 30;

/// Where a repository and its keys are.
#[derive(Debug, Clone)]
pub struct RepoPaths {
    pub dir: PathBuf,
    pub keys: PathBuf,
}

impl RepoPaths {
    /// `keys` defaults to a `keys` folder beside `dir`.
    pub fn new(dir: impl Into<PathBuf>, keys: Option<PathBuf>) -> Self {
        let dir = dir.into();
        let keys = keys.unwrap_or_else(|| {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            parent.join("keys")
        });
        RepoPaths { dir, keys }
    }
    pub fn metadata(&self) -> PathBuf {
        self.dir.join("metadata")
    }
    pub fn targets(&self) -> PathBuf {
        self.dir.join("targets")
    }
    /// The first root, which agents pin.
    pub fn pinned_root(&self) -> PathBuf {
        self.metadata().join("1.root.json")
    }
}

/// Signature thresholds per role; each role gets that many keys.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub root: u64,
    pub targets: u64,
    pub snapshot: u64,
    pub timestamp: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { root: 1, targets: 1, snapshot: 1, timestamp: 1 }
    }
}

impl Thresholds {
    fn of(&self, role: &str) -> u64 {
        match role {
            "root" => self.root,
            "targets" => self.targets,
            "snapshot" => self.snapshot,
            _ => self.timestamp,
        }
    }
}

fn role_type(role: &str) -> RoleType {
    match role {
        "root" => RoleType::Root,
        "targets" => RoleType::Targets,
        "snapshot" => RoleType::Snapshot,
        _ => RoleType::Timestamp,
    }
}

/// Expiry `after` from `now`, in whole seconds: other TUF clients refuse fractions.
fn expiry(now: Timestamp, after: SignedDuration) -> Result<Timestamp> {
    let t = now.checked_add(after).map_err(|e| Error::Refused(format!("expiry out of range: {e}")))?;
    Timestamp::from_second(t.as_second()).map_err(|e| Error::Refused(format!("expiry out of range: {e}")))
}

fn tuf_err(dir: &Path, what: &'static str) -> impl FnOnce(tough::error::Error) -> Error {
    let dir = dir.to_path_buf();
    move |source| Error::Tuf { dir, what, source: Box::new(source) }
}

/// Create a new repository with fresh keys.
pub async fn init(paths: &RepoPaths, thresholds: Thresholds, expiries: Expiries, now: Timestamp) -> Result<()> {
    if paths.pinned_root().exists() {
        return Err(Error::Refused(format!("repository {} already exists (found {})", paths.dir.display(), paths.pinned_root().display())));
    }
    std::fs::create_dir_all(&paths.dir).map_err(Error::io("create repository folder", &paths.dir))?;
    create_private_dir(&paths.keys)?;
    let (dir_abs, keys_abs) = (canonical(&paths.dir)?, canonical(&paths.keys)?);
    if keys_abs.starts_with(&dir_abs) {
        return Err(Error::Refused(format!(
            "keys folder {} is inside the served repository {}; choose --keys outside it",
            paths.keys.display(),
            paths.dir.display()
        )));
    }
    for role in keys::ROLES {
        if keys::key_path(&paths.keys, role, 1).exists() {
            return Err(Error::Refused(format!("keys folder {} already holds a {role} key; use an empty folder", paths.keys.display())));
        }
    }
    std::fs::create_dir_all(paths.metadata()).map_err(Error::io("create folder", paths.metadata()))?;
    std::fs::create_dir_all(paths.targets()).map_err(Error::io("create folder", paths.targets()))?;

    let mut root = Root {
        spec_version: "1.0.0".into(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires: expiry(now, expiries.root)?,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    for role in keys::ROLES {
        let n = thresholds.of(role);
        let threshold = NonZeroU64::new(n).ok_or_else(|| Error::Refused(format!("threshold of {role} must be at least 1")))?;
        let mut keyids = Vec::new();
        for i in 1..=n as usize {
            let public = keys::generate(&keys::key_path(&paths.keys, role, i))?;
            let key = Key::Ed25519 {
                keyval: Ed25519Key { public: Decoded::<Hex>::from(public), _extra: HashMap::new() },
                scheme: Ed25519Scheme::Ed25519,
                _extra: HashMap::new(),
            };
            let id = key.key_id().map_err(|e| Error::Key { path: keys::key_path(&paths.keys, role, i), why: format!("cannot compute key id: {e}") })?;
            keyids.push(id.clone());
            root.keys.insert(id, key);
        }
        root.roles.insert(role_type(role), RoleKeys { keyids, threshold, _extra: HashMap::new() });
    }
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let root_keys = keys::role_keys(&paths.keys, "root")?;
    let signed_root = SignedRole::new(root.clone(), &KeyHolder::Root(root), &root_keys, &rng)
        .await
        .map_err(tuf_err(&paths.dir, "sign root"))?;
    let staging = Staging::new(&paths.dir)?;
    signed_root.write(staging.path(), true).await.map_err(tuf_err(&paths.dir, "write root"))?;
    staging.publish_file("1.root.json", &paths.metadata())?;

    let mut editor = RepositoryEditor::new(paths.pinned_root()).await.map_err(tuf_err(&paths.dir, "open root"))?;
    let targets_expires = expiry(now, expiries.targets)?;
    editor.targets_version(NonZeroU64::MIN).map_err(tuf_err(&paths.dir, "set targets version"))?;
    editor.targets_expires(targets_expires).map_err(tuf_err(&paths.dir, "set targets expiry"))?;
    editor
        .snapshot_version(NonZeroU64::MIN)
        .snapshot_expires(expiry(now, expiries.snapshot)?)
        .timestamp_version(NonZeroU64::MIN)
        .timestamp_expires(expiry(now, expiries.timestamp)?);
    let signed = editor.sign(&signing_keys(&paths.keys)?).await.map_err(tuf_err(&paths.dir, "sign"))?;
    let staging = Staging::new(&paths.dir)?;
    signed.write(staging.path()).await.map_err(tuf_err(&paths.dir, "write metadata"))?;
    staging.publish_metadata(&paths.metadata(), 1)?;
    Ok(())
}

fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(Error::io("create keys folder", path))
}

fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(Error::io("resolve", path))
}

/// The keys that sign everyday changes: targets, snapshot, timestamp (root stays offline).
fn signing_keys(keys_dir: &Path) -> Result<Vec<Box<dyn KeySource>>> {
    let mut all = Vec::new();
    for role in ["targets", "snapshot", "timestamp"] {
        all.extend(keys::role_keys(keys_dir, role)?);
    }
    Ok(all)
}

/// One published bundle as the repository holds it.
#[derive(Debug, Clone)]
pub struct Published {
    pub target: String,
    pub length: u64,
    pub sha256: String,
    pub meta: BundleMetadata,
}

/// An open repository, locked against other writers until dropped.
pub struct Repo {
    paths: RepoPaths,
    repository: tough::Repository,
    _lock: File,
}

impl Repo {
    /// Open and verify the repository (signatures and versions; expiry is not enforced here,
    /// so the release manager can re-sign an expired repository).
    pub async fn open(paths: &RepoPaths) -> Result<Repo> {
        let lock_path = paths.keys.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io("open lock", &lock_path))?;
        lock.lock().map_err(Error::io("lock", &lock_path))?;
        let root_path = paths.pinned_root();
        let root = std::fs::read(&root_path).map_err(Error::io("read root metadata", &root_path))?;
        let meta_url = dir_url(&paths.metadata())?;
        let targets_url = dir_url(&paths.targets())?;
        let repository = RepositoryLoader::new(&root, meta_url, targets_url)
            .transport(FilesystemTransport)
            .expiration_enforcement(ExpirationEnforcement::Unsafe)
            .limits(tough::Limits { max_targets_size: 256 << 20, max_snapshot_size: 16 << 20, ..Default::default() })
            .load()
            .await
            .map_err(tuf_err(&paths.dir, "load"))?;
        Ok(Repo { paths: paths.clone(), repository, _lock: lock })
    }

    /// Every bundle, sorted by id then version.
    pub fn bundles(&self) -> Result<Vec<Published>> {
        let mut out = Vec::new();
        for (name, target) in &self.repository.targets().signed.targets {
            out.push(published(name, target)?);
        }
        out.sort_by(|a, b| (&a.meta.manifest.id, &a.meta.manifest.version).cmp(&(&b.meta.manifest.id, &b.meta.manifest.version)));
        Ok(out)
    }

    fn find(&self, bundle: &BundleRef) -> Result<(TargetName, Target)> {
        let name = TargetName::new(bundle.target_name()).map_err(tuf_err(&self.paths.dir, "target name"))?;
        match self.repository.targets().signed.targets.get(&name) {
            Some(t) => Ok((name, t.clone())),
            None => Err(Error::Refused(format!("bundle {bundle} is not published in {}", self.paths.dir.display()))),
        }
    }

    /// Re-sign targets, snapshot and timestamp with `edits` applied, and write them atomically.
    /// `archive` is copied into `targets/` first, under its consistent-snapshot name.
    async fn write(self, now: Timestamp, edits: Vec<(TargetName, Target)>, archive: Option<(&Path, &str)>) -> Result<()> {
        let dir = self.paths.dir.clone();
        let latest_root = latest_root(&self.paths.metadata())?;
        let next = |v: NonZeroU64| v.checked_add(1).ok_or_else(|| Error::Refused("metadata version overflow".into()));
        let targets_version = next(self.repository.targets().signed.version)?;
        let snapshot_version = next(self.repository.snapshot().signed.version)?;
        let timestamp_version = next(self.repository.timestamp().signed.version)?;
        let exp = Expiries::default();
        let mut editor = RepositoryEditor::from_repo(&latest_root, self.repository).await.map_err(tuf_err(&dir, "edit"))?;
        for (name, target) in edits {
            editor.remove_target(&name).map_err(tuf_err(&dir, "edit target"))?;
            editor.add_target(name, target).map_err(tuf_err(&dir, "add target"))?;
        }
        // from_repo drops versions and expiries: set them again.
        let targets_expires = expiry(now, exp.targets)?;
        editor.targets_version(targets_version).map_err(tuf_err(&dir, "set targets version"))?;
        editor.targets_expires(targets_expires).map_err(tuf_err(&dir, "set targets expiry"))?;
        editor
            .snapshot_version(snapshot_version)
            .snapshot_expires(expiry(now, exp.snapshot)?)
            .timestamp_version(timestamp_version)
            .timestamp_expires(expiry(now, exp.timestamp)?);
        let signed = editor.sign(&signing_keys(&self.paths.keys)?).await.map_err(tuf_err(&dir, "sign"))?;
        let staging = Staging::new(&dir)?;
        signed.write(staging.path()).await.map_err(tuf_err(&dir, "write metadata"))?;
        let copied = match archive {
            Some((path, name)) => Some(copy_target(path, &self.paths.targets(), name)?),
            None => None,
        };
        if let Err(e) = staging.publish_metadata(&self.paths.metadata(), targets_version.get()) {
            if let Some(copied) = copied {
                let _ = std::fs::remove_file(copied);
            }
            return Err(e);
        }
        Ok(())
    }
}

fn published(name: &TargetName, target: &Target) -> Result<Published> {
    let custom = serde_json::Value::Object(target.custom.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let meta = BundleMetadata::from_custom(custom)
        .map_err(|e| Error::Refused(format!("target {} has invalid signed metadata: {e}", name.raw())))?;
    Ok(Published { target: name.raw().to_owned(), length: target.length, sha256: hex::encode(&target.hashes.sha256), meta })
}

fn dir_url(path: &Path) -> Result<url::Url> {
    let abs = canonical(path)?;
    url::Url::from_directory_path(&abs).map_err(|()| Error::Refused(format!("{} cannot be a file URL", abs.display())))
}

/// The newest `N.root.json` in the metadata folder.
fn latest_root(metadata: &Path) -> Result<PathBuf> {
    let mut best = (1u64, metadata.join("1.root.json"));
    for entry in std::fs::read_dir(metadata).map_err(Error::io("list", metadata))? {
        let entry = entry.map_err(Error::io("list", metadata))?;
        let name = entry.file_name();
        if let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".root.json")).and_then(|n| n.parse::<u64>().ok())
            && n > best.0
        {
            best = (n, entry.path());
        }
    }
    Ok(best.1)
}

/// Copy an archive into `targets/` as `<sha256>.<name>`, through a temporary file and a rename.
fn copy_target(src: &Path, targets: &Path, name_with_hash: &str) -> Result<PathBuf> {
    let dest = targets.join(name_with_hash);
    let mut tmp = tempfile::Builder::new().prefix(".incoming-").tempfile_in(targets).map_err(Error::io("create temporary file in", targets))?;
    let mut input = File::open(src).map_err(Error::io("open", src))?;
    std::io::copy(&mut input, tmp.as_file_mut()).map_err(Error::io("copy archive to", &dest))?;
    set_readable(tmp.as_file(), &dest)?;
    tmp.as_file().sync_all().map_err(Error::io("sync", &dest))?;
    tmp.persist_noclobber(&dest).map_err(|e| Error::Io { action: "store archive as", path: dest.clone(), source: e.error })?;
    sync_dir(targets)?;
    Ok(dest)
}

/// Mode 0644: the repository is plain static files that any web server user may read.
pub(crate) fn set_readable(file: &File, path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(Error::io("set permissions of", path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("sync folder", dir))
}

/// A hidden folder inside the repository where new metadata is written before it is moved in.
struct Staging(tempfile::TempDir);

impl Staging {
    fn new(dir: &Path) -> Result<Self> {
        let t = tempfile::Builder::new().prefix(".palier-staging-").tempdir_in(dir).map_err(Error::io("create staging folder in", dir))?;
        Ok(Staging(t))
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn publish_file(&self, name: &str, metadata: &Path) -> Result<()> {
        let src = self.path().join(name);
        File::open(&src).and_then(|f| f.sync_all()).map_err(Error::io("sync", &src))?;
        std::fs::rename(&src, metadata.join(name)).map_err(Error::io("move into place", metadata.join(name)))?;
        sync_dir(metadata)
    }
    /// Move the new metadata in, timestamp last: a client reading meanwhile sees the old
    /// timestamp (and the old, still present, versioned files) or the new one.
    fn publish_metadata(&self, metadata: &Path, targets_version: u64) -> Result<()> {
        let mut names: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(self.path()).map_err(Error::io("list", self.path()))? {
            let name = entry.map_err(Error::io("list", self.path()))?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".root.json") && metadata.join(&name).exists() {
                continue;
            }
            names.push(name);
        }
        let rank = |n: &str| match n {
            n if n.ends_with(".targets.json") => 0,
            n if n.ends_with(".snapshot.json") => 1,
            "timestamp.json" => 2,
            _ => 0,
        };
        names.sort_by_key(|n| rank(n));
        if !names.iter().any(|n| n == &format!("{targets_version}.targets.json")) {
            return Err(Error::Refused(format!("signed metadata is missing {targets_version}.targets.json")));
        }
        for name in names {
            self.publish_file(&name, metadata)?;
        }
        Ok(())
    }
}

/// What `check_archive` learnt of an archive.
pub struct CheckedArchive {
    pub manifest: Manifest,
    pub length: u64,
    pub sha256: Vec<u8>,
}

/// Read the whole archive once, streaming: verify every entry and hash the file.
pub fn check_archive(path: &Path, max_expanded: u64) -> Result<CheckedArchive> {
    let file = File::open(path).map_err(Error::io("open bundle archive", path))?;
    let mut hashing = HashingFile { inner: file, hasher: Sha256::new(), length: 0 };
    let manifest = archive::read_archive(&mut hashing, ReadLimits { max_expanded, expected: None }, &mut VerifyOnly)
        .map_err(|source| Error::Archive { path: path.into(), source })?;
    Ok(CheckedArchive { manifest, length: hashing.length, sha256: hashing.hasher.finalize().to_vec() })
}

struct HashingFile {
    inner: File,
    hasher: Sha256,
    length: u64,
}

impl Read for HashingFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.length += n as u64;
        Ok(n)
    }
}

/// Publish a bundle archive: check it, add it as a target with its signed metadata, re-sign.
pub async fn publish(paths: &RepoPaths, archive_path: &Path, reported_by: BTreeSet<PlatformId>, max_expanded: u64, now: Timestamp) -> Result<Published> {
    let repo = Repo::open(paths).await?;
    let path = archive_path.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || check_archive(&path, max_expanded))
        .await
        .map_err(|e| Error::Refused(format!("archive check stopped: {e}")))??;
    let name = checked.manifest.target_name();
    let bundle = BundleRef { id: checked.manifest.id.clone(), version: checked.manifest.version.clone() };
    if repo.find(&bundle).is_ok() {
        return Err(Error::Refused(format!("bundle {bundle} is already published; publish a new version")));
    }
    let meta = BundleMetadata::new(checked.manifest, reported_by, now.to_string());
    let target = Target {
        length: checked.length,
        hashes: Hashes { sha256: Decoded::from(checked.sha256.clone()), _extra: HashMap::new() },
        custom: custom_map(&meta),
        _extra: HashMap::new(),
    };
    let target_name = TargetName::new(name.clone()).map_err(tuf_err(&paths.dir, "target name"))?;
    let sha256 = hex::encode(&checked.sha256);
    let stored_name = format!("{sha256}.{name}");
    repo.write(now, vec![(target_name, target)], Some((archive_path, &stored_name))).await?;
    Ok(Published { target: name, length: checked.length, sha256, meta })
}

fn custom_map(meta: &BundleMetadata) -> HashMap<String, serde_json::Value> {
    match meta.to_custom() {
        serde_json::Value::Object(map) => map.into_iter().collect(),
        _ => HashMap::new(),
    }
}

/// Change a published bundle's signed metadata. `change` returns whether it changed anything;
/// when it did not, nothing is re-signed.
pub async fn update(
    paths: &RepoPaths,
    bundle: &BundleRef,
    now: Timestamp,
    change: impl FnOnce(&mut BundleMetadata) -> Result<bool>,
) -> Result<(Published, bool)> {
    let repo = Repo::open(paths).await?;
    let (name, mut target) = repo.find(bundle)?;
    let mut meta = published(&name, &target)?.meta;
    if !change(&mut meta)? {
        return Ok((published(&name, &target)?, false));
    }
    target.custom = custom_map(&meta);
    repo.write(now, vec![(name.clone(), target.clone())], None).await?;
    Ok((published(&name, &target)?, true))
}

/// Open the repository and list its bundles.
pub async fn list(paths: &RepoPaths) -> Result<Vec<Published>> {
    Repo::open(paths).await?.bundles()
}

/// How close to its expiry a role must be for [`refresh`] to re-sign it.
#[derive(Debug, Clone, Copy)]
pub struct RefreshMargins {
    pub timestamp: SignedDuration,
    pub snapshot: SignedDuration,
    pub targets: SignedDuration,
}

impl Default for RefreshMargins {
    /// A quarter of the timestamp's lifetime (6 h of 1 day), 1 day for the snapshot, 7 days for
    /// the targets (re-signed anyway by every publish, so this only matters on a quiet repository).
    fn default() -> Self {
        RefreshMargins { timestamp: SignedDuration::from_hours(6), snapshot: SignedDuration::from_hours(24), targets: SignedDuration::from_hours(7 * 24) }
    }
}

/// Keep the repository's metadata from expiring: re-sign what expires within its margin.
///
/// - timestamp due: a new timestamp (version + 1, fresh expiry) over the same snapshot;
/// - snapshot due: a new snapshot (version + 1, same targets) and a new timestamp over it;
/// - targets due: everything, through the same path as publish ([`Repo::write`] with no edit).
///
/// Targets are never re-signed unless they are due themselves, so agents do not download the
/// (possibly large) targets metadata again for a timestamp refresh. Returns whether it wrote
/// anything. A cheap unlocked look at the files comes first; only when something is due is the
/// repository opened (locked and verified) and the decision taken again on what was verified.
#[tracing::instrument(skip_all, fields(repo = %paths.dir.display()))]
pub async fn refresh(paths: &RepoPaths, now: Timestamp, margins: RefreshMargins) -> Result<bool> {
    let due = |expires: Timestamp, margin: SignedDuration| -> Result<bool> {
        let horizon = now.checked_add(margin).map_err(|e| Error::Refused(format!("refresh margin out of range: {e}")))?;
        Ok(expires <= horizon)
    };
    if let Some(seen) = peek_expiries(&paths.metadata())
        && !due(seen.timestamp, margins.timestamp)?
        && !due(seen.snapshot, margins.snapshot)?
        && !due(seen.targets, margins.targets)?
    {
        return Ok(false);
    }

    let repo = Repo::open(paths).await?;
    let r = &repo.repository;
    if due(r.targets().signed.expires, margins.targets)? {
        tracing::info!(version = r.targets().signed.version.get() + 1, "re-signing targets, snapshot and timestamp");
        repo.write(now, Vec::new(), None).await?;
        return Ok(true);
    }
    let snapshot_due = due(r.snapshot().signed.expires, margins.snapshot)?;
    if !snapshot_due && !due(r.timestamp().signed.expires, margins.timestamp)? {
        return Ok(false);
    }

    let dir = &paths.dir;
    let exp = Expiries::default();
    let next = |v: NonZeroU64| v.checked_add(1).ok_or_else(|| Error::Refused("metadata version overflow".into()));
    let root = r.root().signed.clone();
    let consistent = root.consistent_snapshot;
    let holder = KeyHolder::Root(root);
    let mut keys = keys::role_keys(&paths.keys, "snapshot")?;
    keys.extend(keys::role_keys(&paths.keys, "timestamp")?);
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let staging = Staging::new(dir)?;

    let mut timestamp = r.timestamp().signed.clone();
    let mut snapshot_file = None;
    if snapshot_due {
        let mut snapshot = r.snapshot().signed.clone();
        snapshot.version = next(snapshot.version)?;
        snapshot.expires = expiry(now, exp.snapshot)?;
        let signed = SignedRole::new(snapshot, &holder, &keys, &rng).await.map_err(tuf_err(dir, "sign snapshot"))?;
        signed.write(staging.path(), consistent).await.map_err(tuf_err(dir, "write snapshot"))?;
        let version = signed.signed().signed.version;
        timestamp.meta.insert(
            "snapshot.json".to_owned(),
            Metafile {
                length: Some(*signed.length()),
                hashes: Some(Hashes { sha256: Decoded::from(signed.sha256().to_vec()), _extra: HashMap::new() }),
                version,
                _extra: HashMap::new(),
            },
        );
        snapshot_file = Some(if consistent { format!("{version}.snapshot.json") } else { "snapshot.json".to_owned() });
        tracing::info!(%version, "re-signing snapshot");
    }
    timestamp.version = next(timestamp.version)?;
    timestamp.expires = expiry(now, exp.timestamp)?;
    tracing::info!(version = %timestamp.version, expires = %timestamp.expires, "re-signing timestamp");
    let signed = SignedRole::new(timestamp, &holder, &keys, &rng).await.map_err(tuf_err(dir, "sign timestamp"))?;
    signed.write(staging.path(), consistent).await.map_err(tuf_err(dir, "write timestamp"))?;
    // Snapshot first, timestamp last: a client sees the old timestamp or the new one, and
    // whichever it sees names a snapshot that is in place.
    if let Some(name) = snapshot_file {
        staging.publish_file(&name, &paths.metadata())?;
    }
    staging.publish_file("timestamp.json", &paths.metadata())?;
    Ok(true)
}

/// The expiries of timestamp, snapshot and targets as the files say, unverified; `None` when
/// any cannot be read (then `refresh` opens the repository, which says what is wrong).
fn peek_expiries(metadata: &Path) -> Option<Peeked> {
    #[derive(serde::Deserialize)]
    struct PeekFile {
        signed: PeekSigned,
    }
    #[derive(serde::Deserialize)]
    struct PeekSigned {
        expires: Timestamp,
        #[serde(default)]
        meta: HashMap<String, PeekMeta>,
    }
    #[derive(serde::Deserialize)]
    struct PeekMeta {
        version: u64,
    }
    let read = |name: &str| -> Option<PeekSigned> {
        let bytes = std::fs::read(metadata.join(name)).ok()?;
        serde_json::from_slice::<PeekFile>(&bytes).ok().map(|f| f.signed)
    };
    let timestamp = read("timestamp.json")?;
    let snapshot = read(&format!("{}.snapshot.json", timestamp.meta.get("snapshot.json")?.version))?;
    let targets = read(&format!("{}.targets.json", snapshot.meta.get("targets.json")?.version))?;
    Some(Peeked { timestamp: timestamp.expires, snapshot: snapshot.expires, targets: targets.expires })
}

struct Peeked {
    timestamp: Timestamp,
    snapshot: Timestamp,
    targets: Timestamp,
}
