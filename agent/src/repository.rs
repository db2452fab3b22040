//! The agent's view of the TUF repository: only the pinned root is trusted; expired,
//! rolled-back or badly signed metadata is refused by tough, and every bundle's signed
//! metadata is checked before the policy sees it.

use std::path::Path;

use palier_bundle::BundleMetadata;
use tough::{ExpirationEnforcement, RepositoryLoader};
use url::Url;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::transport::RepoTransport;

/// A bundle whose metadata came out of a verified repository. Only [`load`] makes one, so
/// code that plans or applies cannot be handed metadata that was not verified.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    meta: BundleMetadata,
    target: String,
    length: u64,
    sha256: String,
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
    let (metadata_url, targets_url) = urls(&config.repository)?;
    let url = config.repository.to_string();
    let transport = RepoTransport::new().map_err(|e| Error::Refused(format!("cannot build the HTTP client: {}", palier_bundle::error::one_line(&e))))?;
    let repository = RepositoryLoader::new(&root, metadata_url, targets_url)
        .transport(transport)
        .datastore(&datastore)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .limits(tough::Limits { max_targets_size: 256 << 20, max_snapshot_size: 16 << 20, ..Default::default() })
        .load()
        .await
        .map_err(|source| Error::Repository { url: url.clone(), source: Box::new(source) })?;
    let mut bundles = Vec::new();
    for (name, target) in &repository.targets().signed.targets {
        let custom = serde_json::Value::Object(target.custom.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        let meta = BundleMetadata::from_custom(custom).map_err(|source| Error::Metadata { url: url.clone(), target: name.raw().into(), source })?;
        if meta.manifest.target_name() != name.raw() {
            return Err(Error::Metadata {
                url: url.clone(),
                target: name.raw().into(),
                source: palier_bundle::Error::ManifestMismatch(format!("target name differs from the manifest's {}", meta.manifest.target_name())),
            });
        }
        bundles.push(VerifiedBundle { target: name.raw().into(), length: target.length, sha256: hex::encode(&target.hashes.sha256), meta });
    }
    bundles.sort_by(|a, b| (&a.meta.manifest.id, &a.meta.manifest.version).cmp(&(&b.meta.manifest.id, &b.meta.manifest.version)));
    Ok(Verified { bundles, repository })
}

pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(Error::io("create folder", path))
}
