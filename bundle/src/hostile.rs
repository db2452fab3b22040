//! Crafting archives that the reader must refuse, for tests here and in the other crates.
//! Compiled only with the `test-support` feature.

use std::io::Write;

use tar::EntryType;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::manifest::{FileEntry, FileMode, Manifest, ManifestKind, Sha256Hex};
use crate::names::RelPath;

/// One tar entry, written as given: no path or type check at all.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub path: String,
    pub kind: tar::EntryType,
    pub data: Vec<u8>,
    pub link: Option<String>,
    pub mode: u32,
    /// Size to write in the header, when it should lie about the data.
    pub header_size: Option<u64>,
}

impl RawEntry {
    pub fn file(path: &str, data: &[u8]) -> Self {
        RawEntry { path: path.into(), kind: tar::EntryType::Regular, data: data.to_vec(), link: None, mode: 0o644, header_size: None }
    }
    pub fn special(path: &str, kind: tar::EntryType, link: Option<&str>) -> Self {
        RawEntry { path: path.into(), kind, data: Vec::new(), link: link.map(String::from), mode: 0o644, header_size: None }
    }
}

/// The raw tar stream of `entries` (not compressed).
pub fn tar_bytes(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut header = tar::Header::new_gnu();
        {
            let name = &mut header.as_old_mut().name;
            assert!(e.path.len() <= name.len(), "crafted path too long");
            name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        }
        if let Some(link) = &e.link {
            let field = &mut header.as_old_mut().linkname;
            field[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(e.kind);
        header.set_mode(e.mode);
        header.set_mtime(0);
        header.set_size(e.header_size.unwrap_or(e.data.len() as u64));
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&e.data);
        let pad = (512 - e.data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// The compressed archive of `entries`.
pub fn craft(entries: &[RawEntry]) -> Vec<u8> {
    gzip(&tar_bytes(entries))
}

/// A valid built manifest listing `files` (path, content), on top of a minimal source manifest.
pub fn manifest_for(id: &str, version: &str, files: &[(&str, &[u8])]) -> Manifest {
    let text = format!(
        "id = \"{id}\"\nversion = \"{version}\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"crafted\"\norigin = \"report\"\n"
    );
    let mut m = Manifest::parse(&text, ManifestKind::Source).expect("crafted manifest is valid");
    m.files = files
        .iter()
        .map(|(p, data)| {
            use sha2::Digest;
            FileEntry {
                path: RelPath::new(*p).expect("crafted path is valid"),
                sha256: Sha256Hex::from_digest(&sha2::Sha256::digest(data)),
                size: data.len() as u64,
                mode: FileMode::Regular,
            }
        })
        .collect();
    m
}

/// The `bundle.toml` entry of `manifest`.
pub fn manifest_entry(manifest: &Manifest) -> RawEntry {
    RawEntry::file("bundle.toml", manifest.to_toml().expect("manifest serializes").as_bytes())
}

/// The content of the one file of the crafted valid bundle.
pub const A: &[u8] = b"<?php // a\n";

/// A valid crafted bundle `crafted@1.0.0` with one file, `a.php`.
pub fn valid_entries() -> Vec<RawEntry> {
    let m = manifest_for("crafted", "1.0.0", &[("a.php", A)]);
    vec![manifest_entry(&m), RawEntry::file("files/a.php", A)]
}

/// Each refusal of SPEC section 3, with a crafted archive, and the words the error must hold.
pub fn cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let m = manifest_for("crafted", "1.0.0", &[("a.php", A)]);
    let with = |extra: RawEntry| {
        let mut v = valid_entries();
        v.push(extra);
        craft(&v)
    };
    let replace_file = |e: RawEntry| craft(&[manifest_entry(&m), e]);
    let big = manifest_for("crafted", "1.0.0", &[("a.php", &vec![b'x'; 2 << 20])]);
    vec![
        ("absolute-path", with(RawEntry::file("/etc/passwd", b"x")), "absolute path"),
        ("dot-dot", with(RawEntry::file("files/../../etc/passwd", b"x")), "'..'"),
        ("dot-dot-manifest-listed", replace_file(RawEntry::file("files/../a.php", A)), "'..'"),
        ("symlink", with(RawEntry::special("files/link.php", EntryType::Symlink, Some("/etc/passwd"))), "symlink"),
        ("hard-link", with(RawEntry::special("files/hard.php", EntryType::Link, Some("files/a.php"))), "hard link"),
        ("char-device", with(RawEntry::special("files/null", EntryType::Char, None)), "device"),
        ("block-device", with(RawEntry::special("files/sda", EntryType::Block, None)), "device"),
        ("fifo", with(RawEntry::special("files/pipe", EntryType::Fifo, None)), "fifo"),
        ("duplicate-file", with(RawEntry::file("files/a.php", A)), "duplicate entry"),
        ("duplicate-manifest", with(manifest_entry(&m)), "duplicate entry"),
        ("outside-files", with(RawEntry::file("other.txt", b"x")), "outside files/"),
        ("not-listed", with(RawEntry::file("files/b.php", b"x")), "not listed"),
        ("missing-file", craft(&[manifest_entry(&m)]), "missing from the archive"),
        ("hash-mismatch", replace_file(RawEntry::file("files/a.php", b"<?php // b\n")), "sha256"),
        ("size-mismatch", replace_file(RawEntry::file("files/a.php", b"<?php")), "size"),
        ("no-manifest", craft(&[RawEntry::file("files/a.php", A)]), "bundle.toml"),
        ("empty-archive", craft(&[]), "empty archive"),
        ("invalid-manifest", craft(&[RawEntry::file("bundle.toml", b"id = 3\n")]), "invalid"),
        ("source-manifest-without-files-lying", craft(&[RawEntry::file("bundle.toml", b"not toml at all [")]), "invalid manifest"),
        ("over-declared-limit", craft(&[manifest_entry(&big), RawEntry::file("files/a.php", &vec![b'x'; 2 << 20])]), "exceeds the declared limit"),
        ("not-gzip", tar_bytes(&valid_entries()), "cannot read archive"),
        ("trailing-garbage", {
            let mut a = craft(&valid_entries());
            a.extend_from_slice(b"hidden");
            a
        }, "after the end of the gzip stream"),
        ("data-after-tar-end", {
            let mut raw = tar_bytes(&valid_entries());
            raw.extend_from_slice(b"hidden payload");
            gzip(&raw)
        }, "after the end of the tar archive"),
        ("truncated", {
            let full = craft(&valid_entries());
            full[..full.len() / 2].to_vec()
        }, "cannot read archive"),
    ]
}

