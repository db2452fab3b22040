//! The TUF repository, release manager's side: create it, read its bundles, and change it
//! (publish, validations, state, reporters) with every change re-signed and written atomically.
//!
//! Layout: `DIR/metadata/` (consistent snapshots: `N.root.json`, `N.targets.json`,
//! `N.bin-XX.json`, `N.snapshot.json`, `timestamp.json`) and
//! `DIR/targets/<sha256>.<id>-<version>.tar.gz`. The top-level `targets` role lists no bundle:
//! it delegates to a fixed number of hashed bins (`path_hash_prefixes` on the sha256 of the
//! target name, chosen at `init`), and each bundle is a target of the one bin its name hashes
//! to. A change re-signs that bin, the snapshot and the timestamp, nothing else, so its cost
//! and what an agent downloads next do not grow with the repository's history.
//!
//! Readers take no lock: writes only add files and rename new ones into place, timestamp last,
//! and versioned files are never removed, so a reader always finds a consistent set. Writers
//! hold a lock in the keys folder. Keys live in a separate folder, one DER PKCS#8 file per key.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use palier_bundle::archive::{self, ReadLimits, VerifyOnly};
use palier_bundle::halt::{Marker, RolePaths};
use palier_bundle::ownership::Claims;
use palier_bundle::{BundleMetadata, BundleRef, Manifest, PlatformId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tough::editor::signed::SignedRole;
use tough::key_source::KeySource;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{Ed25519Key, Ed25519Scheme, Key};
use tough::schema::{
    DelegatedRole, DelegatedTargets, Delegations, Hashes, KeyHolder, Metafile, PathHashPrefix, PathPattern, PathSet, Role, RoleKeys, RoleType, Root, Signed,
    Snapshot, Target, Targets,
};
use tough::{ExpirationEnforcement, FilesystemTransport, RepositoryLoader, TargetName};

use crate::error::{Error, Result};
use crate::index::{BinSeen, Index, Refreshed};
use crate::keys;

pub(crate) type TufTimestamp = tough::schema::Timestamp;

/// How long each role's metadata stays valid after it is signed. The bins live as long as the
/// top-level targets.
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

/// Where a repository and its keys are: `keys` is the online keys folder; `offline`, when
/// given, the folder of the root and targets keys (see [`keys::OFFLINE`]).
#[derive(Debug, Clone)]
pub struct RepoPaths {
    pub dir: PathBuf,
    pub keys: PathBuf,
    pub offline: Option<PathBuf>,
    /// During `key rotate ROLE`: ROLE's new keys, in this folder, sign in place of the old.
    pub(crate) rotating: Option<(String, PathBuf)>,
}

impl RepoPaths {
    /// `keys` defaults to a `keys` folder beside `dir`.
    pub fn new(dir: impl Into<PathBuf>, keys: Option<PathBuf>) -> Self {
        let dir = dir.into();
        let keys = keys.unwrap_or_else(|| {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            parent.join("keys")
        });
        RepoPaths { dir, keys, offline: None, rotating: None }
    }
    /// The same repository with the offline keys folder `offline`.
    pub fn with_offline(mut self, offline: Option<PathBuf>) -> Self {
        self.offline = offline;
        self
    }
    /// The signing keys of `role`, from the folder it belongs in.
    pub fn signing_keys(&self, role: &str) -> Result<Vec<Box<dyn KeySource>>> {
        if let Some((rotating, dir)) = &self.rotating
            && rotating == role
        {
            return keys::role_keys(dir, role);
        }
        keys::signing_keys(&self.keys, self.offline.as_deref(), role)
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
    /// Refuse a folder that holds no repository, saying how to make one.
    pub fn require(&self) -> Result<()> {
        if self.pinned_root().is_file() {
            return Ok(());
        }
        let dir = self.dir.display();
        Err(Error::Refused(format!("no repository at {dir} (run `palier-server init --repo {dir}`)")))
    }
}

/// Signature thresholds per role; each role gets that many keys.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub root: u64,
    pub targets: u64,
    pub snapshot: u64,
    pub timestamp: u64,
    /// The hashed bins' role (one key set for every bin).
    pub bins: u64,
    /// The `halts` role, which signs only halt markers.
    pub halts: u64,
    /// The `reports` role, which signs only report markers.
    pub reports: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { root: 1, targets: 1, snapshot: 1, timestamp: 1, bins: 1, halts: 1, reports: 1 }
    }
}

impl Thresholds {
    fn of(&self, role: &str) -> u64 {
        match role {
            "root" => self.root,
            "targets" => self.targets,
            "snapshot" => self.snapshot,
            "bins" => self.bins,
            "halts" => self.halts,
            "reports" => self.reports,
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

/// Number of hashed bins `init` makes unless told otherwise. At 10,000 bundles a bin holds
/// about 40 entries, and the snapshot lists 256 versions: both stay a few tens of KB.
pub const DEFAULT_BINS: u32 = 256;

/// The hashed bins: `count` delegated roles `bin-<hex>`, each trusted for the target names
/// whose sha256 (hex) starts with one of its prefixes. Every prefix has the same length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bins(u32);

impl Default for Bins {
    fn default() -> Self {
        Bins(DEFAULT_BINS)
    }
}

impl Bins {
    pub fn new(count: u32) -> Result<Bins> {
        if !(16..=65536).contains(&count) || !count.is_power_of_two() {
            return Err(Error::Refused(format!("{count} bins: expected a power of two from 16 to 65536")));
        }
        Ok(Bins(count))
    }
    pub fn count(self) -> u32 {
        self.0
    }
    fn hex_len(self) -> usize {
        self.0.trailing_zeros().div_ceil(4) as usize
    }
    fn per_bin(self) -> u32 {
        (1u32 << (4 * self.hex_len())) / self.0
    }
    /// The role name of bin `i`.
    pub fn name(self, i: u32) -> String {
        format!("bin-{:0w$x}", i, w = self.hex_len())
    }
    fn prefixes(self, i: u32) -> Vec<String> {
        let per = self.per_bin();
        (i * per..(i + 1) * per).map(|p| format!("{:0w$x}", p, w = self.hex_len())).collect()
    }
    /// The bin a target name hashes to.
    pub fn of(self, target_name: &str) -> u32 {
        let digest = Sha256::digest(target_name.as_bytes());
        let head = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        let prefix = head >> (32 - 4 * self.hex_len() as u32);
        prefix / self.per_bin()
    }
}

/// Expiry `after` from `now`, in whole seconds: other TUF clients refuse fractions.
pub(crate) fn expiry(now: Timestamp, after: SignedDuration) -> Result<Timestamp> {
    let t = now.checked_add(after).map_err(|e| Error::Refused(format!("expiry out of range: {e}")))?;
    Timestamp::from_second(t.as_second()).map_err(|e| Error::Refused(format!("expiry out of range: {e}")))
}

pub(crate) fn next(v: NonZeroU64) -> Result<NonZeroU64> {
    v.checked_add(1).ok_or_else(|| Error::Refused("metadata version overflow".into()))
}

pub(crate) fn tuf_err(dir: &Path, what: &'static str) -> impl FnOnce(tough::error::Error) -> Error {
    let dir = dir.to_path_buf();
    move |source| Error::Tuf { dir, what, source: Box::new(source) }
}

/// Metadata that does not verify: named, with why.
pub(crate) fn refused(dir: &Path, what: impl std::fmt::Display, why: impl std::fmt::Display) -> Error {
    Error::Refused(format!("repository {}: {what} does not verify: {why}", dir.display()))
}

/// A new ed25519 key for `role`, written as key file `i`; returns its TUF form and id.
pub(crate) fn new_key(keys_dir: &Path, role: &str, i: usize) -> Result<(Decoded<Hex>, Key)> {
    let path = keys::key_path(keys_dir, role, i);
    let public = keys::generate(&path)?;
    let key = Key::Ed25519 {
        keyval: Ed25519Key { public: Decoded::<Hex>::from(public), _extra: HashMap::new() },
        scheme: Ed25519Scheme::Ed25519,
        _extra: HashMap::new(),
    };
    let id = key.key_id().map_err(|e| Error::Key { path, why: format!("cannot compute key id: {e}") })?;
    Ok((id, key))
}

/// Sign `role` with the keys among `keys` that `holder` names for it; the compact JSON bytes.
pub(crate) async fn sign<T: Role + Serialize>(dir: &Path, role: T, holder: &KeyHolder, keys: &[Box<dyn KeySource>], what: &'static str) -> Result<Vec<u8>> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signed = SignedRole::new(role, holder, keys, &rng).await.map_err(tuf_err(dir, what))?;
    let mut bytes = serde_json::to_vec(signed.signed()).map_err(|e| Error::Refused(format!("cannot serialise {what}: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

pub(crate) fn version_only(version: NonZeroU64) -> Metafile {
    Metafile { length: None, hashes: None, version, _extra: HashMap::new() }
}

/// Create a new repository with fresh keys and the default number of bins.
pub async fn init(paths: &RepoPaths, thresholds: Thresholds, expiries: Expiries, now: Timestamp) -> Result<()> {
    init_with_bins(paths, thresholds, expiries, Bins::default(), now).await
}

/// Create a new repository with fresh keys: root, the top-level targets delegating to `bins`
/// empty hashed bins, snapshot and timestamp, all version 1.
pub async fn init_with_bins(paths: &RepoPaths, thresholds: Thresholds, expiries: Expiries, bins: Bins, now: Timestamp) -> Result<()> {
    if paths.pinned_root().exists() {
        return Err(Error::Refused(format!("repository {} already exists (found {})", paths.dir.display(), paths.pinned_root().display())));
    }
    if !paths.dir.is_dir() {
        create_public_dir(&paths.dir)?;
    }
    create_private_dir(&paths.keys)?;
    let (dir_abs, keys_abs) = (canonical(&paths.dir)?, canonical(&paths.keys)?);
    if keys_abs.starts_with(&dir_abs) {
        return Err(Error::Refused(format!(
            "keys folder {} is inside the served repository {}; choose --keys outside it",
            paths.keys.display(),
            paths.dir.display()
        )));
    }
    if let Some(offline) = &paths.offline {
        check_offline_folder(offline, &dir_abs, &keys_abs, paths)?;
    }
    // Each key goes to the folder it belongs in: with `--offline-keys`, root and targets there.
    let folder_of = |role: &str| match &paths.offline {
        Some(offline) if keys::is_offline(role) => offline.clone(),
        _ => paths.keys.clone(),
    };
    for role in keys::ROLES.iter().chain(keys::DELEGATED.iter()) {
        if keys::key_path(&folder_of(role), role, 1).exists() {
            return Err(Error::Refused(format!("keys folder {} already holds a {role} key; use an empty folder", folder_of(role).display())));
        }
    }
    create_public_dir(&paths.metadata())?;
    create_public_dir(&paths.targets())?;
    let dir = &paths.dir;

    let mut root = Root {
        spec_version: "1.0.0".into(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires: expiry(now, expiries.root)?,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    let threshold_of = |role: &str| NonZeroU64::new(thresholds.of(role)).ok_or_else(|| Error::Refused(format!("threshold of {role} must be at least 1")));
    for role in keys::ROLES {
        let threshold = threshold_of(role)?;
        let mut keyids = Vec::new();
        for i in 1..=threshold.get() as usize {
            let (id, key) = new_key(&folder_of(role), role, i)?;
            keyids.push(id.clone());
            root.keys.insert(id, key);
        }
        root.roles.insert(role_type(role), RoleKeys { keyids, threshold, _extra: HashMap::new() });
    }
    let mut delegations = Delegations::new();
    // The marker roles first: a marker's name also hashes into some bin, and the bins are
    // terminating, so a client searching by name must meet the marker roles before them.
    for role in MARKER_ROLES {
        let threshold = threshold_of(role)?;
        let mut keyids = Vec::new();
        for i in 1..=threshold.get() as usize {
            let (id, key) = new_key(&folder_of(role), role, i)?;
            keyids.push(id.clone());
            delegations.keys.insert(id, key);
        }
        delegations.roles.push(marker_role(role, keyids, threshold)?);
    }
    let bins_threshold = threshold_of("bins")?;
    let mut bin_keyids = Vec::new();
    for i in 1..=bins_threshold.get() as usize {
        let (id, key) = new_key(&folder_of("bins"), "bins", i)?;
        bin_keyids.push(id.clone());
        delegations.keys.insert(id, key);
    }
    delegations.roles.extend(bin_roles(bins, &bin_keyids, bins_threshold)?);

    let staging = Staging::new(dir)?;
    let root_holder = KeyHolder::Root(root.clone());
    let root_bytes = sign(dir, root, &root_holder, &paths.signing_keys("root")?, "sign root").await?;
    staging.write("1.root.json", &root_bytes)?;

    let mut snapshot = Snapshot::new("1.0.0".into(), NonZeroU64::MIN, expiry(now, expiries.snapshot)?);
    let bin_holder = KeyHolder::Delegations(delegations.clone());
    let bin_keys = paths.signing_keys("bins")?;
    let bins_expire = expiry(now, expiries.targets)?;
    for role in MARKER_ROLES {
        let empty = DelegatedTargets { name: role.into(), targets: Targets::new("1.0.0".into(), NonZeroU64::MIN, bins_expire) };
        let bytes = sign(dir, empty, &bin_holder, &paths.signing_keys(role)?, "sign marker role").await?;
        staging.write(&format!("1.{role}.json"), &bytes)?;
        snapshot.meta.insert(format!("{role}.json"), version_only(NonZeroU64::MIN));
    }
    for i in 0..bins.count() {
        let name = bins.name(i);
        let role = DelegatedTargets { name: name.clone(), targets: Targets::new("1.0.0".into(), NonZeroU64::MIN, bins_expire) };
        let bytes = sign(dir, role, &bin_holder, &bin_keys, "sign bin").await?;
        staging.write(&format!("1.{name}.json"), &bytes)?;
        snapshot.meta.insert(format!("{name}.json"), version_only(NonZeroU64::MIN));
    }
    let mut targets = Targets::new("1.0.0".into(), NonZeroU64::MIN, expiry(now, expiries.targets)?);
    targets.delegations = Some(delegations);
    let bytes = sign(dir, targets, &root_holder, &paths.signing_keys("targets")?, "sign targets").await?;
    staging.write("1.targets.json", &bytes)?;
    snapshot.meta.insert("targets.json".into(), version_only(NonZeroU64::MIN));

    let mut online = paths.signing_keys("snapshot")?;
    online.extend(paths.signing_keys("timestamp")?);
    let snapshot_bytes = sign(dir, snapshot, &root_holder, &online, "sign snapshot").await?;
    staging.write("1.snapshot.json", &snapshot_bytes)?;
    let mut timestamp = TufTimestamp::new("1.0.0".into(), NonZeroU64::MIN, expiry(now, expiries.timestamp)?);
    timestamp.meta.insert("snapshot.json".into(), snapshot_metafile(NonZeroU64::MIN, &snapshot_bytes));
    let bytes = sign(dir, timestamp, &root_holder, &online, "sign timestamp").await?;
    staging.write("timestamp.json", &bytes)?;
    // The pinned root last but one, the timestamp last: until then the folder is no repository.
    staging.publish_all(&paths.metadata())
}

/// The name of the delegated role that signs halt markers.
pub const HALTS: &str = palier_bundle::halt::ROLE;

/// The name of the delegated role that signs report markers.
pub const REPORTS: &str = palier_bundle::halt::REPORTS_ROLE;

/// The delegated roles that sign markers, with online keys, in delegation order.
pub const MARKER_ROLES: [&str; 2] = palier_bundle::halt::MARKER_ROLES;

/// The key set (`bins`, `halts`, `reports`) that signs the delegated role `name`.
pub(crate) fn key_role(name: &str) -> &'static str {
    MARKER_ROLES.iter().find(|r| **r == name).copied().unwrap_or("bins")
}

/// The delegations of `bins` hashed bins, all trusting the same keys.
pub(crate) fn bin_roles(bins: Bins, keyids: &[Decoded<Hex>], threshold: NonZeroU64) -> Result<Vec<DelegatedRole>> {
    let mut out = Vec::new();
    for i in 0..bins.count() {
        let prefixes = bins.prefixes(i).into_iter().map(PathHashPrefix::new).collect::<std::result::Result<Vec<_>, _>>();
        let prefixes = prefixes.map_err(|e| Error::Refused(format!("bin prefix: {e}")))?;
        out.push(DelegatedRole {
            name: bins.name(i),
            keyids: keyids.to_vec(),
            threshold,
            paths: PathSet::PathHashPrefixes(prefixes),
            terminating: true,
            targets: None,
        });
    }
    Ok(out)
}

/// A marker role's delegation (`halts` or `reports`): trusted for its folder of markers
/// only, terminating.
pub(crate) fn marker_role(role: &str, keyids: Vec<Decoded<Hex>>, threshold: NonZeroU64) -> Result<DelegatedRole> {
    let pattern = if role == HALTS { palier_bundle::halt::PATH_PATTERN } else { palier_bundle::halt::REPORTS_PATH_PATTERN };
    let pattern = PathPattern::new(pattern).map_err(|e| Error::Refused(format!("{role} path pattern: {e}")))?;
    Ok(DelegatedRole { name: role.into(), keyids, threshold, paths: PathSet::Paths(vec![pattern]), terminating: true, targets: None })
}

/// The offline keys folder must be neither the online one nor inside the served repository
/// (nor nested with the online one, which would put both in one place).
fn check_offline_folder(offline: &Path, dir_abs: &Path, keys_abs: &Path, paths: &RepoPaths) -> Result<()> {
    let offline_abs = if offline.exists() { canonical(offline)? } else { std::path::absolute(offline).map_err(Error::io("resolve", offline))? };
    if offline_abs.starts_with(dir_abs) {
        return Err(Error::Refused(format!(
            "offline keys folder {} is inside the served repository {}; choose --offline-keys outside it (on removable media)",
            offline.display(),
            paths.dir.display()
        )));
    }
    if offline_abs.starts_with(keys_abs) || keys_abs.starts_with(&offline_abs) {
        return Err(Error::Refused(format!(
            "offline keys folder {} is the online keys folder {} or nested with it; choose a separate folder (on removable media)",
            offline.display(),
            paths.keys.display()
        )));
    }
    create_private_dir(offline)
}

pub(crate) fn snapshot_metafile(version: NonZeroU64, bytes: &[u8]) -> Metafile {
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes { sha256: Decoded::from(Sha256::digest(bytes).to_vec()), _extra: HashMap::new() }),
        version,
        _extra: HashMap::new(),
    }
}

/// Create the keys folder, mode 0700 whatever the umask (an existing one is left as it is).
pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(Error::io("create keys folder", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(Error::io("set permissions of", path))
}

/// Create a repository folder (and missing parents), mode 0755 whatever the umask: served
/// as static files, readable by any web server user, writable by its owner only.
pub(crate) fn create_public_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(path).map_err(Error::io("create folder", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(Error::io("set permissions of", path))
}

pub(crate) fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(Error::io("resolve", path))
}

/// One published bundle as the repository holds it.
#[derive(Debug, Clone)]
pub struct Published {
    pub target: String,
    pub length: u64,
    pub sha256: String,
    pub meta: BundleMetadata,
}

pub(crate) fn published(name: &TargetName, target: &Target) -> Result<Published> {
    let meta = BundleMetadata::from_custom_map(&target.custom)
        .map_err(|e| Error::Refused(format!("target {} has invalid signed metadata: {e}", name.raw())))?;
    Ok(Published { target: name.raw().to_owned(), length: target.length, sha256: hex::encode(&target.hashes.sha256), meta })
}

/// The manifest of a published bundle's archive (`targets/<sha256>.<target>`), held to its
/// signed metadata.
pub(crate) fn archive_manifest(paths: &RepoPaths, p: &Published) -> Result<Manifest> {
    let path = paths.targets().join(format!("{}.{}", p.sha256, p.target));
    let file = File::open(&path).map_err(Error::io("open bundle archive", &path))?;
    let m = archive::read_manifest(file).map_err(|source| Error::Archive { path: path.clone(), source })?;
    p.meta.check_archive_manifest(&m).map_err(|source| Error::Archive { path, source })?;
    Ok(m)
}

pub(crate) fn dir_url(path: &Path) -> Result<url::Url> {
    let abs = canonical(path)?;
    url::Url::from_directory_path(&abs).map_err(|()| Error::Refused(format!("{} cannot be a file URL", abs.display())))
}

/// Every bundle, sorted by id then version, read and verified (signatures, versions,
/// delegations; not expiry) from the pinned root, without any lock or key: writers only add
/// files and rename new ones in, so a reader never sees a half-written repository.
pub async fn list(paths: &RepoPaths) -> Result<Vec<Published>> {
    paths.require()?;
    let root_path = paths.pinned_root();
    let root = std::fs::read(&root_path).map_err(Error::io("read root metadata", &root_path))?;
    let repository = RepositoryLoader::new(&root, dir_url(&paths.metadata())?, dir_url(&paths.targets())?)
        .transport(FilesystemTransport)
        .expiration_enforcement(ExpirationEnforcement::Unsafe)
        .limits(tough::Limits { max_targets_size: 256 << 20, max_snapshot_size: 16 << 20, ..Default::default() })
        .load()
        .await
        .map_err(tuf_err(&paths.dir, "load"))?;
    let mut out = Vec::new();
    let mut markers = Vec::new();
    // Only the role the delegations trust for a name may list it, as the agent checks.
    let top = &repository.targets().signed;
    let mut listed: Vec<(&TargetName, &Target)> = top.targets.iter().collect();
    if let Some(d) = &top.delegations {
        let role_paths: Vec<RolePaths> = d
            .roles
            .iter()
            .map(|r| match &r.paths {
                PathSet::PathHashPrefixes(p) => RolePaths::HashPrefixes(p.iter().map(|x| x.value().to_owned()).collect()),
                PathSet::Paths(p) => RolePaths::Patterns(p.iter().map(|x| x.value().to_owned()).collect()),
            })
            .collect();
        let trusted = palier_bundle::halt::TrustedRoles::new(&role_paths);
        for (i, role) in d.roles.iter().enumerate() {
            for (name, target) in role.targets.iter().flat_map(|t| t.signed.targets.iter()) {
                if trusted.of(name.raw()) != Some(i) {
                    return Err(refused(&paths.dir, &role.name, format!("it lists {}, a name it is not trusted for", name.raw())));
                }
                listed.push((name, target));
            }
        }
    }
    for (name, target) in listed {
        let custom = palier_bundle::metadata::custom_value(&target.custom);
        match Marker::from_target(name.raw(), custom) {
            Some(marker) => markers.push(marker.map_err(|e| refused(&paths.dir, format!("marker {}", name.raw()), e))?),
            None => out.push(published(name, target)?),
        }
    }
    // A halt marker halts its bundle as the bundle's own metadata would (unless the bundle was
    // resumed since); a report marker adds its platforms to the bundle's reporters.
    for marker in &markers {
        for p in &mut out {
            marker.apply(&mut p.meta);
        }
    }
    out.sort_by(|a, b| (&a.meta.manifest.id, &a.meta.manifest.version).cmp(&(&b.meta.manifest.id, &b.meta.manifest.version)));
    Ok(out)
}

/// The writers' lock, in the keys folder. Held until dropped.
pub(crate) fn lock(paths: &RepoPaths) -> Result<File> {
    paths.require()?;
    if !paths.keys.is_dir() {
        return Err(Error::Key {
            path: paths.keys.clone(),
            why: "no such keys folder (pass --keys KEYDIR, the folder `init` wrote the keys to)".into(),
        });
    }
    let lock_path = paths.keys.join(".lock");
    // Mode 0600 like the keys beside it, whatever the umask.
    let lock = std::os::unix::fs::OpenOptionsExt::mode(File::options().create(true).truncate(false).write(true), 0o600)
        .open(&lock_path)
        .map_err(Error::io("open lock", &lock_path))?;
    lock.lock().map_err(Error::io("lock", &lock_path))?;
    Ok(lock)
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(Error::io("read metadata", path))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Refused(format!("metadata {} cannot be parsed: {e}", path.display())))
}

/// The newest root, reached from the pinned `1.root.json` through each `N+1.root.json`, each
/// signed by a threshold of the previous root's keys and of its own.
pub(crate) fn load_root(paths: &RepoPaths) -> Result<Signed<Root>> {
    let md = paths.metadata();
    let mut root: Signed<Root> = read_json(&md.join("1.root.json"))?;
    root.signed.verify_role(&root).map_err(|e| refused(&paths.dir, "1.root.json", e))?;
    loop {
        let name = format!("{}.root.json", next(root.signed.version)?);
        let path = md.join(&name);
        if !path.exists() {
            return Ok(root);
        }
        let newer: Signed<Root> = read_json(&path)?;
        root.signed.verify_role(&newer).map_err(|e| refused(&paths.dir, format!("{name} (by the previous root's keys)"), e))?;
        newer.signed.verify_role(&newer).map_err(|e| refused(&paths.dir, format!("{name} (by its own keys)"), e))?;
        if newer.signed.version != next(root.signed.version)? {
            return Err(refused(&paths.dir, &name, format!("it says version {}", newer.signed.version)));
        }
        root = newer;
    }
}

/// The verified top of the repository, what a writer starts from: the newest root, the
/// timestamp, the snapshot it names and the top-level targets the snapshot names.
pub(crate) struct Head {
    pub(crate) root: Signed<Root>,
    pub(crate) timestamp: Signed<TufTimestamp>,
    pub(crate) snapshot: Signed<Snapshot>,
    pub(crate) targets: Signed<Targets>,
}

impl Head {
    pub(crate) fn load(paths: &RepoPaths) -> Result<Head> {
        let md = paths.metadata();
        let dir = &paths.dir;
        let root = load_root(paths)?;
        let timestamp: Signed<TufTimestamp> = read_json(&md.join("timestamp.json"))?;
        root.signed.verify_role(&timestamp).map_err(|e| refused(dir, "timestamp.json", e))?;
        let version = timestamp.signed.meta.get("snapshot.json").ok_or_else(|| refused(dir, "timestamp.json", "it names no snapshot"))?.version;
        let name = format!("{version}.snapshot.json");
        let snapshot: Signed<Snapshot> = read_json(&md.join(&name))?;
        root.signed.verify_role(&snapshot).map_err(|e| refused(dir, &name, e))?;
        if snapshot.signed.version != version {
            return Err(refused(dir, &name, format!("it says version {}", snapshot.signed.version)));
        }
        let version = snapshot.signed.meta.get("targets.json").ok_or_else(|| refused(dir, &name, "it names no targets"))?.version;
        let name = format!("{version}.targets.json");
        let targets: Signed<Targets> = read_json(&md.join(&name))?;
        root.signed.verify_role(&targets).map_err(|e| refused(dir, &name, e))?;
        if targets.signed.version != version {
            return Err(refused(dir, &name, format!("it says version {}", targets.signed.version)));
        }
        Ok(Head { root, timestamp, snapshot, targets })
    }

    pub(crate) fn delegations(&self, dir: &Path) -> Result<&Delegations> {
        match &self.targets.signed.delegations {
            Some(d) if !d.roles.is_empty() => Ok(d),
            _ => Err(Error::Refused(format!(
                "repository {} keeps every bundle in its top-level targets (the layout before hashed bins); run `palier-server migrate --repo {}` first",
                dir.display(),
                dir.display()
            ))),
        }
    }

    /// The delegated role trusted for `target_name`: the first whose hash prefixes match.
    pub(crate) fn bin_of(&self, dir: &Path, target_name: &str) -> Result<String> {
        let digest = hex::encode(Sha256::digest(target_name.as_bytes()));
        let delegations = self.delegations(dir)?;
        for role in &delegations.roles {
            if let PathSet::PathHashPrefixes(prefixes) = &role.paths
                && prefixes.iter().any(|p| digest.starts_with(p.value()))
            {
                return Ok(role.name.clone());
            }
        }
        Err(Error::Refused(format!("repository {}: no bin is trusted for {target_name}", dir.display())))
    }

    /// A delegated role's metadata, at the version the snapshot names, verified by the keys
    /// the top-level targets give it.
    pub(crate) fn load_bin(&self, paths: &RepoPaths, name: &str) -> Result<Signed<Targets>> {
        let dir = &paths.dir;
        let version = self.snapshot.signed.meta.get(&format!("{name}.json")).ok_or_else(|| refused(dir, "snapshot", format!("it does not list {name}")))?.version;
        let file = format!("{version}.{name}.json");
        let bin: Signed<Targets> = read_json(&paths.metadata().join(&file))?;
        self.delegations(dir)?.verify_role(&bin, name).map_err(|e| refused(dir, &file, e))?;
        if bin.signed.version != version {
            return Err(refused(dir, &file, format!("it says version {}", bin.signed.version)));
        }
        Ok(bin)
    }
}

/// What one change re-signs besides snapshot and timestamp.
#[derive(Default)]
pub(crate) struct Change {
    /// Delegated roles (bins, halts) with their new content (versions and expiries are set here).
    pub(crate) bins: Vec<(String, Targets)>,
    /// The top-level targets with new content, or re-signed as they are.
    pub(crate) targets: Option<Targets>,
    /// Re-sign the snapshot even if nothing above changed.
    pub(crate) snapshot: bool,
    /// A new root (already signed: its bytes), written first and trusted for what follows.
    pub(crate) root: Option<(Root, Vec<u8>)>,
}

/// Sign what `change` says, then a new snapshot (when anything under it changed, or asked) and
/// a new timestamp, all with versions + 1 and fresh expiries, and move them in: bins and
/// targets first, then the snapshot, the timestamp last. `archive` is copied into `targets/`
/// first, under its consistent-snapshot name.
pub(crate) async fn commit(paths: &RepoPaths, head: Head, change: Change, now: Timestamp, archive: Option<(&Path, &str)>) -> Result<()> {
    let dir = &paths.dir;
    let exp = Expiries::default();
    let staging = Staging::new(dir)?;
    let root_holder = match change.root {
        Some((root, bytes)) => {
            staging.write(&format!("{}.root.json", root.version), &bytes)?;
            KeyHolder::Root(root)
        }
        None => KeyHolder::Root(head.root.signed.clone()),
    };
    let mut snapshot = head.snapshot.signed.clone();
    let resign_snapshot = change.snapshot || change.targets.is_some() || !change.bins.is_empty();
    let mut delegations = head.targets.signed.delegations.clone();
    if let Some(mut targets) = change.targets {
        targets.version = next(head.targets.signed.version)?;
        targets.expires = expiry(now, exp.targets)?;
        let version = targets.version;
        delegations = targets.delegations.clone();
        let bytes = sign(dir, targets, &root_holder, &paths.signing_keys("targets")?, "sign targets").await?;
        staging.write(&format!("{version}.targets.json"), &bytes)?;
        snapshot.meta.insert("targets.json".into(), version_only(version));
    }
    if !change.bins.is_empty() {
        let holder = KeyHolder::Delegations(delegations.ok_or_else(|| Error::Refused(format!("repository {}: the targets delegate to no bin", dir.display())))?);
        // Each key set, read only when a role signed with it changes.
        let mut key_sets: HashMap<&'static str, Vec<Box<dyn KeySource>>> = HashMap::new();
        for (name, _) in &change.bins {
            let role = key_role(name);
            if !key_sets.contains_key(role) {
                key_sets.insert(role, paths.signing_keys(role)?);
            }
        }
        for (name, mut bin) in change.bins {
            let keys = key_sets.get(key_role(&name)).map(Vec::as_slice).unwrap_or_default();
            let meta_name = format!("{name}.json");
            bin.version = bin_version_after(&snapshot, &name, bin.version)?;
            bin.expires = expiry(now, exp.targets)?;
            let version = bin.version;
            let bytes = sign(dir, DelegatedTargets { name: name.clone(), targets: bin }, &holder, keys, "sign bin").await?;
            staging.write(&format!("{version}.{name}.json"), &bytes)?;
            snapshot.meta.insert(meta_name, version_only(version));
        }
    }
    let mut online = paths.signing_keys("snapshot")?;
    online.extend(paths.signing_keys("timestamp")?);
    let mut timestamp = head.timestamp.signed.clone();
    if resign_snapshot {
        snapshot.version = next(snapshot.version)?;
        snapshot.expires = expiry(now, exp.snapshot)?;
        let version = snapshot.version;
        let bytes = sign(dir, snapshot, &root_holder, &online, "sign snapshot").await?;
        staging.write(&format!("{version}.snapshot.json"), &bytes)?;
        timestamp.meta.insert("snapshot.json".into(), snapshot_metafile(version, &bytes));
    }
    timestamp.version = next(timestamp.version)?;
    timestamp.expires = expiry(now, exp.timestamp)?;
    let bytes = sign(dir, timestamp, &root_holder, &online, "sign timestamp").await?;
    staging.write("timestamp.json", &bytes)?;
    let copied = match archive {
        Some((path, name)) => Some(copy_target(path, &paths.targets(), name)?),
        None => None,
    };
    if let Err(e) = staging.publish_all(&paths.metadata()) {
        if let Some(copied) = copied {
            let _ = std::fs::remove_file(copied);
        }
        return Err(e);
    }
    Ok(())
}

/// The version [`commit`] gives delegated role `name` (now at `current`) when it re-signs it
/// over `snapshot`: one more than the newer of the two.
pub(crate) fn bin_version_after(snapshot: &Snapshot, name: &str, current: NonZeroU64) -> Result<NonZeroU64> {
    let old = snapshot.meta.get(&format!("{name}.json")).map(|m| m.version).unwrap_or(NonZeroU64::MIN);
    next(old.max(current))
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

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("sync folder", dir))
}

/// A hidden folder inside the repository where new metadata is written before it is moved in.
pub(crate) struct Staging(tempfile::TempDir);

impl Staging {
    pub(crate) fn new(dir: &Path) -> Result<Self> {
        let t = tempfile::Builder::new().prefix(".palier-staging-").tempdir_in(dir).map_err(Error::io("create staging folder in", dir))?;
        Ok(Staging(t))
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path().join(name);
        let mut file = File::create(&path).map_err(Error::io("create", &path))?;
        std::io::Write::write_all(&mut file, bytes).map_err(Error::io("write", &path))?;
        set_readable(&file, &path)
    }
    /// Move everything staged in: new roots first, then bins and targets, the snapshot, and
    /// the timestamp last. A client reading meanwhile sees the old timestamp (and the old,
    /// still present, versioned files) or the new one.
    pub(crate) fn publish_all(&self, metadata: &Path) -> Result<()> {
        let mut names: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(self.path()).map_err(Error::io("list", self.path()))? {
            let name = entry.map_err(Error::io("list", self.path()))?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".root.json") && metadata.join(&name).exists() {
                continue;
            }
            names.push(name);
        }
        let rank = |n: &str| match n {
            n if n.ends_with(".root.json") => 0,
            n if n.ends_with(".snapshot.json") => 2,
            "timestamp.json" => 3,
            _ => 1,
        };
        names.sort_by_key(|n| (rank(n), n.clone()));
        for name in &names {
            let src = self.path().join(name);
            File::open(&src).and_then(|f| f.sync_all()).map_err(Error::io("sync", &src))?;
        }
        // One folder sync per group, so each group is on disk before the next one names it.
        let mut group = None;
        for name in &names {
            if group.is_some_and(|g| g != rank(name)) {
                sync_dir(metadata)?;
            }
            group = Some(rank(name));
            std::fs::rename(self.path().join(name), metadata.join(name)).map_err(Error::io("move into place", metadata.join(name)))?;
        }
        sync_dir(metadata)
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

/// Publish a bundle archive: check it, add it as a target of its bin with its signed
/// metadata, re-sign that bin, the snapshot and the timestamp.
pub async fn publish(paths: &RepoPaths, archive_path: &Path, reported_by: BTreeSet<PlatformId>, max_expanded: u64, now: Timestamp) -> Result<Published> {
    publish_with_rollout(paths, archive_path, reported_by, None, max_expanded, now).await
}

/// [`publish`] with a staged rollout signed in the same metadata, so no agent ever sees the
/// bundle without it.
pub async fn publish_with_rollout(
    paths: &RepoPaths,
    archive_path: &Path,
    reported_by: BTreeSet<PlatformId>,
    rollout: Option<palier_bundle::rollout::Rollout>,
    max_expanded: u64,
    now: Timestamp,
) -> Result<Published> {
    let _lock = lock(paths)?;
    let head = Head::load(paths)?;
    let path = archive_path.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || check_archive(&path, max_expanded))
        .await
        .map_err(|e| Error::Refused(format!("archive check stopped: {e}")))??;
    let name = checked.manifest.target_name();
    let bundle = BundleRef { id: checked.manifest.id.clone(), version: checked.manifest.version.clone() };
    let target_name = TargetName::new(name.clone()).map_err(tuf_err(&paths.dir, "target name"))?;
    let bin_name = head.bin_of(&paths.dir, &name)?;
    let mut bin = head.load_bin(paths, &bin_name)?;
    if bin.signed.targets.contains_key(&target_name) {
        return Err(Error::Refused(format!("bundle {bundle} is already published; publish a new version")));
    }
    // File ownership, under the lock, against the index brought up to date with this head.
    let claims = Claims::from(&checked.manifest);
    let (mut index, conflict, refreshed) = Index::check(paths, &head, &claims)?;
    if refreshed != Refreshed::default() {
        tracing::info!(rebuilt = refreshed.rebuilt, bins = refreshed.bins, archives = refreshed.archives, "ownership index brought up to date");
    }
    if let Some(c) = conflict {
        return Err(Error::Refused(format!("{c}; nothing published: name the other bundle in `after` (the new one then carries both fixes) or yank it first")));
    }
    let bin_version = bin_version_after(&head.snapshot.signed, &bin_name, bin.signed.version)?;
    let mut meta = BundleMetadata::new(checked.manifest, reported_by, now.to_string());
    meta.rollout = rollout;
    let target = Target {
        length: checked.length,
        hashes: Hashes { sha256: Decoded::from(checked.sha256.clone()), _extra: HashMap::new() },
        custom: custom_map(&meta),
        _extra: HashMap::new(),
    };
    bin.signed.targets.insert(target_name, target);
    let sha256 = hex::encode(&checked.sha256);
    let stored_name = format!("{sha256}.{name}");
    let change = Change { bins: vec![(bin_name.clone(), bin.signed)], ..Default::default() };
    commit(paths, head, change, now, Some((archive_path, &stored_name))).await?;
    index.record_published(&bin_name, BinSeen::of(paths, &bin_name, bin_version), &name, &sha256, &claims);
    Ok(Published { target: name, length: checked.length, sha256, meta })
}

pub(crate) fn custom_map(meta: &BundleMetadata) -> HashMap<String, serde_json::Value> {
    match meta.to_custom() {
        serde_json::Value::Object(map) => map.into_iter().collect(),
        _ => HashMap::new(),
    }
}

/// Change a published bundle's signed metadata. `change` returns whether it changed anything;
/// when it did not, nothing is re-signed. Only the bundle's bin, the snapshot and the
/// timestamp are re-signed.
pub async fn update(
    paths: &RepoPaths,
    bundle: &BundleRef,
    now: Timestamp,
    change: impl FnOnce(&mut BundleMetadata) -> Result<bool>,
) -> Result<(Published, bool)> {
    let _lock = lock(paths)?;
    let head = Head::load(paths)?;
    let name = TargetName::new(bundle.target_name()).map_err(tuf_err(&paths.dir, "target name"))?;
    let bin_name = head.bin_of(&paths.dir, name.raw())?;
    let mut bin = head.load_bin(paths, &bin_name)?;
    let Some(target) = bin.signed.targets.get_mut(&name) else {
        return Err(Error::Refused(format!("bundle {bundle} is not published in {} (see `palier-server list --repo {}`)", paths.dir.display(), paths.dir.display())));
    };
    let mut meta = published(&name, target)?.meta;
    if !change(&mut meta)? {
        return Ok((published(&name, target)?, false));
    }
    target.custom = custom_map(&meta);
    let after = published(&name, target)?;
    commit(paths, head, Change { bins: vec![(bin_name, bin.signed)], ..Default::default() }, now, None).await?;
    Ok((after, true))
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
/// - targets due: the top-level targets and every bin, then snapshot and timestamp. Bins are
///   signed with the same lifetime as the top-level targets and only ever made fresher by a
///   publish, so no bin expires before the targets that delegate to it.
///
/// Targets and bins are never re-signed unless they are due themselves, so agents download
/// nothing but the timestamp (and snapshot) for a refresh. Returns whether it wrote anything.
/// A cheap unlocked look at the files comes first; only when something is due is the
/// repository locked and verified and the decision taken again on what was verified.
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

    let _lock = lock(paths)?;
    let head = Head::load(paths)?;
    let targets_due = due(head.targets.signed.expires, margins.targets)?;
    // Kept offline, the targets key is not here: refresh what the online keys can, then say so.
    let targets_key_missing = if targets_due { paths.signing_keys("targets").err() } else { None };
    if targets_due && targets_key_missing.is_none() {
        tracing::info!(version = head.targets.signed.version.get() + 1, "re-signing targets, bins, snapshot and timestamp");
        let mut bins = Vec::new();
        if let Some(d) = &head.targets.signed.delegations {
            for role in &d.roles {
                bins.push((role.name.clone(), head.load_bin(paths, &role.name)?.signed));
            }
        }
        let change = Change { bins, targets: Some(head.targets.signed.clone()), snapshot: true, ..Default::default() };
        commit(paths, head, change, now, None).await?;
        return Ok(true);
    }
    let snapshot_due = due(head.snapshot.signed.expires, margins.snapshot)?;
    let targets_expire = head.targets.signed.expires;
    let wrote = if snapshot_due || due(head.timestamp.signed.expires, margins.timestamp)? {
        if snapshot_due {
            tracing::info!(version = head.snapshot.signed.version.get() + 1, "re-signing snapshot");
        }
        tracing::info!(version = head.timestamp.signed.version.get() + 1, "re-signing timestamp");
        commit(paths, head, Change { snapshot: snapshot_due, ..Default::default() }, now, None).await?;
        true
    } else {
        false
    };
    if let Some(missing) = targets_key_missing {
        let dir = paths.dir.display();
        return Err(Error::Refused(format!(
            "repository {dir}: the top-level targets expire at {targets_expire} and their key is not here ({}); run `palier-server refresh --repo {dir} --offline-keys DIR` where the offline keys are",
            crate::error::one_line(&missing)
        )));
    }
    Ok(wrote)
}

/// A role's expiry as the verified repository says, and whether it is within its margin.
#[derive(Debug, Clone)]
pub struct Expiry {
    pub role: &'static str,
    pub version: u64,
    pub expires: Timestamp,
    pub due: bool,
}

/// The expiries of timestamp, snapshot and top-level targets (bins expire no earlier than
/// the targets), verified, without the writers' lock and without keys: what `refresh
/// --check` reports.
pub fn expiries(paths: &RepoPaths, now: Timestamp, margins: RefreshMargins) -> Result<Vec<Expiry>> {
    paths.require()?;
    let head = Head::load(paths)?;
    let due = |expires: Timestamp, margin: SignedDuration| -> Result<bool> {
        Ok(expires <= now.checked_add(margin).map_err(|e| Error::Refused(format!("refresh margin out of range: {e}")))?)
    };
    Ok(vec![
        Expiry { role: "timestamp", version: head.timestamp.signed.version.get(), expires: head.timestamp.signed.expires, due: due(head.timestamp.signed.expires, margins.timestamp)? },
        Expiry { role: "snapshot", version: head.snapshot.signed.version.get(), expires: head.snapshot.signed.expires, due: due(head.snapshot.signed.expires, margins.snapshot)? },
        Expiry { role: "targets", version: head.targets.signed.version.get(), expires: head.targets.signed.expires, due: due(head.targets.signed.expires, margins.targets)? },
    ])
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
