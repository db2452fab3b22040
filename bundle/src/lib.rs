//! palier-bundle: the bundle format (manifest, archive), its signed metadata, and what a
//! bundle may touch on a Moodle site (layouts, components, file ownership).
//!
//! Pure logic: no async runtime, no network, no clock of its own (callers pass `now`).
//! The archive code reads and writes the streams it is handed.

pub mod archive;
pub mod components;
pub mod duration;
pub mod error;
pub mod halt;
#[cfg(any(test, feature = "test-support"))]
pub mod hostile;
pub mod layout;
#[cfg(feature = "log")]
pub mod log;
pub mod manifest;
pub mod metadata;
pub mod moodle;
pub mod names;
pub mod ownership;
pub mod rollout;

pub use error::{Error, Result};
pub use manifest::{ChangeClass, Check, DataImpact, Dependency, FileEntry, FileMode, Manifest, ManifestHead, ManifestKind, Origin, Sha256Hex};
pub use metadata::{BundleMetadata, BundleRef, BundleState, Validations};
pub use names::{BundleId, Component, PlatformId, RelPath};
