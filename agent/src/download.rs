//! Downloading a bundle's archive from the verified repository.
//!
//! The bytes come through tough (length and sha256 checked against the signed targets
//! metadata) over the agent's transport, which bounds a transfer by an idle timeout and a
//! minimum rate rather than a total time, and resumes a broken transfer with an HTTP
//! range request (see `transport`). An archive already downloaded by an earlier cycle is
//! reused when its digest still matches.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use palier_bundle::archive::HashWriter;
use sha2::{Digest, Sha256};
use tough::TargetName;

use crate::error::{Error, Result};
use crate::repository::{Verified, VerifiedBundle};

/// Download a bundle's archive through tough (length and hash checked) into `dir`.
pub async fn download(verified: &Verified, bundle: &VerifiedBundle, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let path = dir.join(format!("{}.{}", bundle.sha256(), bundle.target()));
    // An archive downloaded by an earlier cycle is reused when its digest still matches.
    if let Ok(mut file) = std::fs::File::open(&path) {
        let mut hasher = Sha256::new();
        if std::io::copy(&mut file, &mut HashWriter(&mut hasher)).is_ok() && hex::encode(hasher.finalize()) == bundle.sha256() {
            return Ok(path);
        }
    }
    let name = TargetName::new(bundle.target()).map_err(|e| Error::Repository { url: bundle.target().into(), source: Box::new(e) })?;
    let stream = verified
        .repository
        .read_target(&name)
        .await
        .map_err(|e| Error::Repository { url: bundle.target().into(), source: Box::new(e) })?
        .ok_or_else(|| Error::Refused(format!("target {} is not in the repository", bundle.target())))?;
    let tmp = tempfile::Builder::new().prefix(".download-").tempfile_in(dir).map_err(Error::io("create temporary file in", dir))?;
    let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(Error::io("open", tmp.path()))?);
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Repository { url: bundle.target().into(), source: Box::new(e) })?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await.map_err(Error::io("write", tmp.path()))?;
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(Error::io("write", tmp.path()))?;
    tmp.persist(&path).map_err(|e| Error::io("store", &path)(e.error))?;
    Ok(path)
}

