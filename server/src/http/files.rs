//! `/repo/metadata/<name>` and `/repo/targets/<name>`: the repository's files, and nothing else.
//!
//! The request path must be exactly one of those two folders and one flat file name made of
//! `A-Z a-z 0-9 . _ + -` not starting with a dot (percent-decoded first, so `%2e%2e` and `%2f`
//! are refused like `..` and `/`): no other file, no dotfile (staging folders, temporary files),
//! no directory listing, no symlink (opened with `O_NOFOLLOW`). Everything else is a 404.
//!
//! The ETag is strong, made of the inode, size and modification time of the file actually
//! opened: metadata files are replaced by rename, so a new version has a new inode. Files are
//! stat-ed and opened on the worker thread (microseconds on a local disk: a 304 costs one
//! `statx`, as does `timestamp.json` from [`HotFiles`]); metadata up to [`SMALL`] is read in
//! one go, anything larger (targets) is streamed in 64 KiB chunks, never read whole.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::{PoisonError, RwLock};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::app::AppState;
use super::error::AppError;

/// Files up to this size are read into memory in one read; larger ones are streamed.
const SMALL: u64 = 256 << 10;
const CHUNK: usize = 64 << 10;
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Metadata,
    Targets,
}

/// A file name that may be served: flat, no leading dot, a small safe alphabet.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

/// `metadata/<name>` or `targets/<name>` (the part after `/repo/`), or `None`.
fn parse(rest: &str) -> Option<(Area, String)> {
    let (area, raw) = rest.split_once('/')?;
    let area = match area {
        "metadata" => Area::Metadata,
        "targets" => Area::Targets,
        _ => return None,
    };
    let name = percent_encoding::percent_decode_str(raw).decode_utf8().ok()?;
    valid_name(&name).then(|| (area, name.into_owned()))
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".json") {
        "application/json"
    } else if name.ends_with(".tar.gz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    }
}

/// Versioned metadata (`N.root.json`, `N.targets.json`, `N.snapshot.json`) and hash-prefixed
/// targets never change under their name; `timestamp.json` (and anything else) must be revalidated.
fn cache_control(area: Area, name: &str) -> &'static str {
    let immutable = match area {
        Area::Metadata => name.split_once('.').is_some_and(|(n, rest)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && rest.ends_with(".json")),
        Area::Targets => name.split_once('.').is_some_and(|(h, _)| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())),
    };
    if immutable { IMMUTABLE } else { REVALIDATE }
}

fn etag(meta: &Metadata) -> String {
    format!("\"{:x}-{:x}-{:x}.{:x}\"", meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec())
}

/// `If-None-Match` against our tag, with the weak comparison RFC 9110 asks for there.
fn none_match(header: &HeaderValue, tag: &str) -> bool {
    let Ok(value) = header.to_str() else { return false };
    value.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

fn io_error(path: &std::path::Path, uri: &Uri) -> impl FnOnce(std::io::Error) -> AppError {
    move |e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory => AppError::not_found(uri.path()),
        // ELOOP: the name is a symlink, refused by O_NOFOLLOW.
        _ if e.raw_os_error() == Some(libc::ELOOP) => AppError::not_found(uri.path()),
        _ => AppError::internal(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

/// The current version of each unversioned metadata file (`timestamp.json`, which every agent
/// fetches at every poll), kept in memory under its ETag: a hit costs one `statx`, no open or
/// read. Versioned files are fetched once per version by each client and are not kept.
#[derive(Debug, Default)]
pub(crate) struct HotFiles {
    entries: RwLock<HashMap<String, (String, Bytes)>>,
}

/// At most this many names are kept; the map is emptied when a new one would exceed it.
const HOT_NAMES: usize = 8;

impl HotFiles {
    fn get(&self, name: &str, tag: &str) -> Option<Bytes> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.get(name).filter(|(t, _)| t == tag).map(|(_, b)| b.clone())
    }
    fn put(&self, name: &str, tag: String, bytes: Bytes) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= HOT_NAMES && !entries.contains_key(name) {
            entries.clear();
        }
        entries.insert(name.to_owned(), (tag, bytes));
    }
}

pub(crate) async fn repo_file(State(state): State<AppState>, method: Method, headers: HeaderMap, uri: Uri) -> Result<Response, AppError> {
    let rest = uri.path().strip_prefix("/repo/").unwrap_or_default();
    let (area, name) = parse(rest).ok_or_else(|| AppError::not_found(uri.path()))?;
    let dir = match area {
        Area::Metadata => state.metadata_dir(),
        Area::Targets => state.targets_dir(),
    };
    let path = dir.join(&name);
    let cache = cache_control(area, &name);
    let base = |tag: &str| {
        Response::builder()
            .header(header::CACHE_CONTROL, cache)
            .header(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"))
            .header(header::ETAG, tag)
    };
    let not_modified = |tag: &str| headers.get(header::IF_NONE_MATCH).is_some_and(|h| none_match(h, tag));
    let ok = |tag: &str, length: u64, body: Body| {
        base(tag)
            .header(header::CONTENT_TYPE, content_type(&name))
            .header(header::CONTENT_LENGTH, length)
            .body(body)
            .map_err(AppError::internal)
    };

    // lstat first: a 304, a HEAD or a hot file needs nothing more.
    let meta = std::fs::symlink_metadata(&path).map_err(io_error(&path, &uri))?;
    if !meta.file_type().is_file() {
        return Err(AppError::not_found(uri.path()));
    }
    let tag = etag(&meta);
    if not_modified(&tag) {
        return base(&tag).status(StatusCode::NOT_MODIFIED).body(Body::empty()).map_err(AppError::internal);
    }
    if method == Method::HEAD {
        return ok(&tag, meta.len(), Body::empty());
    }
    let hot = area == Area::Metadata && cache == REVALIDATE;
    if hot && let Some(bytes) = state.hot_files().get(&name, &tag) {
        return ok(&tag, bytes.len() as u64, Body::from(bytes));
    }

    // O_NONBLOCK: opening a FIFO planted in the folder must not hang the worker. The tag is
    // taken again from the file opened, which may be a newer version than the one lstat saw.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(io_error(&path, &uri))?;
    let meta = file.metadata().map_err(io_error(&path, &uri))?;
    if !meta.file_type().is_file() {
        return Err(AppError::not_found(uri.path()));
    }
    let tag = etag(&meta);
    if not_modified(&tag) {
        return base(&tag).status(StatusCode::NOT_MODIFIED).body(Body::empty()).map_err(AppError::internal);
    }
    let length = meta.len();
    if length > SMALL {
        let stream = ReaderStream::with_capacity(tokio::fs::File::from_std(file).take(length), CHUNK);
        return ok(&tag, length, Body::from_stream(stream));
    }
    let mut bytes = Vec::with_capacity(length as usize);
    file.take(length).read_to_end(&mut bytes).map_err(io_error(&path, &uri))?;
    if bytes.len() as u64 != length {
        return Err(AppError::internal(anyhow::anyhow!("{} shrank while it was read", path.display())));
    }
    let bytes = Bytes::from(bytes);
    if hot {
        state.hot_files().put(&name, tag.clone(), bytes.clone());
    }
    ok(&tag, length, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flat_safe_names_in_the_two_folders() {
        assert_eq!(parse("metadata/timestamp.json"), Some((Area::Metadata, "timestamp.json".into())));
        assert_eq!(parse("targets/ab.x-1.0.0%2Bbuild.tar.gz"), Some((Area::Targets, "ab.x-1.0.0+build.tar.gz".into())));
        for bad in [
            "metadata/",
            "metadata",
            "../keys/root.der",
            "metadata/../../keys/root.der",
            "metadata/%2e%2e",
            "%2e%2e/keys/root.der",
            "metadata/..%2fkeys",
            "metadata/a%2fb",
            "metadata/.hidden",
            "metadata/%2ehidden",
            ".palier-staging-x/1.root.json",
            "targets/.incoming-x",
            "keys/root.der",
            "metadata/a\\b",
            "metadata/a%00b",
            "metadata/a/b",
            "metadata/%ff",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn cache_policy() {
        assert_eq!(cache_control(Area::Metadata, "timestamp.json"), REVALIDATE);
        assert_eq!(cache_control(Area::Metadata, "12.snapshot.json"), IMMUTABLE);
        assert_eq!(cache_control(Area::Metadata, "1.root.json"), IMMUTABLE);
        assert_eq!(cache_control(Area::Metadata, "root.json"), REVALIDATE);
        assert_eq!(cache_control(Area::Targets, &format!("{}.a-1.0.0.tar.gz", "ab".repeat(32))), IMMUTABLE);
        assert_eq!(cache_control(Area::Targets, "a-1.0.0.tar.gz"), REVALIDATE);
    }

    #[test]
    fn if_none_match_weak_comparison() {
        let tag = "\"1-2-3.4\"";
        assert!(none_match(&HeaderValue::from_static("\"1-2-3.4\""), tag));
        assert!(none_match(&HeaderValue::from_static("W/\"1-2-3.4\""), tag));
        assert!(none_match(&HeaderValue::from_static("\"x\", \"1-2-3.4\""), tag));
        assert!(none_match(&HeaderValue::from_static("*"), tag));
        assert!(!none_match(&HeaderValue::from_static("\"1-2-3.5\""), tag));
    }
}
