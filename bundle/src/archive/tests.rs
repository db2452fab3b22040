use std::io::Read;
use std::os::unix::fs::PermissionsExt;


use super::*;
use crate::hostile::{self, A, cases, craft, manifest_entry, manifest_for, tar_bytes, valid_entries};
use crate::manifest::tests_support::SOURCE;

fn source_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("{}/deep.php", "nested-directory-name".repeat(6));
    let files: Vec<(String, Vec<u8>)> = vec![
        ("mod/quiz/view.php".into(), b"<?php echo 'quiz';\n".to_vec()),
        ("mod/quiz/lib.php".into(), b"<?php function quiz_x() {}\n".repeat(50_000)),
        ("admin/cli/tool.sh".into(), b"#!/bin/sh\nexit 0\n".to_vec()),
        (long, b"long path\n".to_vec()),
        ("big.bin".into(), (0..3_500_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()),
    ];
    for (p, data) in &files {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
    }
    let sh = dir.path().join("admin/cli/tool.sh");
    std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn source_manifest() -> Manifest {
    Manifest::parse(SOURCE, ManifestKind::Source).unwrap()
}

fn build(dir: &Path) -> (Manifest, Vec<u8>) {
    let mut out = Vec::new();
    let m = build_from_dir(&source_manifest(), dir, &mut out).unwrap();
    (m, out)
}

fn limits(max: u64) -> ReadLimits<'static> {
    ReadLimits { max_expanded: max, expected: None }
}

#[test]
fn build_is_deterministic_and_reads_back() {
    let dir = source_tree();
    let (m1, a1) = build(dir.path());
    let (m2, a2) = build(dir.path());
    assert_eq!(a1, a2, "two builds of the same inputs differ");
    assert_eq!(m1, m2);
    assert_eq!(m1.files.len(), 5);
    let sh = m1.files.iter().find(|f| f.path.as_str() == "admin/cli/tool.sh").unwrap();
    assert_eq!(sh.mode, FileMode::Executable);

    let read = read_archive(&a1[..], limits(u64::MAX), &mut VerifyOnly).unwrap();
    assert_eq!(read, m1);
    // The manifest alone, without reading the files.
    assert_eq!(read_manifest(&a1[..]).unwrap(), m1);
}

#[test]
fn read_manifest_refuses_an_archive_whose_first_entry_is_not_the_manifest() {
    assert!(read_manifest(&b"not gzip"[..]).is_err());
    let mut only_a_file = Vec::new();
    {
        let mut gz = flate2::write::GzEncoder::new(&mut only_a_file, flate2::Compression::fast());
        let mut b = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "files/a.php", &b"x"[..]).unwrap();
        b.finish().unwrap();
    }
    let e = read_manifest(&only_a_file[..]).unwrap_err().to_string();
    assert!(e.contains("the first entry must be bundle.toml"), "{e}");
}

#[test]
fn the_manifest_alone_reads_back_without_the_files() {
    let dir = source_tree();
    let (m, archive) = build(dir.path());
    assert_eq!(read_manifest(&archive[..]).unwrap(), m);
    // Only the first entry is inflated: an archive cut after its manifest still gives it.
    assert_eq!(read_manifest(&archive[..archive.len() / 2]).unwrap(), m);
}

#[test]
fn archive_is_standard_gzip_tar_with_fixed_headers() {
    let dir = source_tree();
    let (m, bytes) = build(dir.path());
    let mut tar_data = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut tar_data).unwrap();
    let mut archive = tar::Archive::new(&tar_data[..]);
    let mut names = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        assert_eq!(e.header().mtime().unwrap(), 0);
        assert_eq!(e.header().uid().unwrap(), 0);
        assert_eq!(e.header().gid().unwrap(), 0);
        assert!(matches!(e.header().mode().unwrap(), 0o644 | 0o755));
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if let Some(rel) = name.strip_prefix("files/") {
            let on_disk = std::fs::read(dir.path().join(rel)).unwrap();
            let mut in_tar = Vec::new();
            e.read_to_end(&mut in_tar).unwrap();
            assert_eq!(on_disk, in_tar, "{rel}");
        }
        names.push(name);
    }
    assert_eq!(names[0], "bundle.toml");
    let mut sorted = names[1..].to_vec();
    sorted.sort();
    assert_eq!(names[1..], sorted[..]);
    assert_eq!(names.len(), m.files.len() + 1);
}

#[test]
fn sink_receives_every_file_in_order() {
    struct Collect(Vec<(String, Vec<u8>)>);
    impl EntrySink for Collect {
        fn file(&mut self, entry: &FileEntry, data: &mut dyn Read) -> io::Result<()> {
            let mut v = Vec::new();
            data.read_to_end(&mut v)?;
            self.0.push((entry.path.to_string(), v));
            Ok(())
        }
    }
    let dir = source_tree();
    let (_, bytes) = build(dir.path());
    let mut sink = Collect(Vec::new());
    read_archive(&bytes[..], limits(u64::MAX), &mut sink).unwrap();
    for (p, data) in &sink.0 {
        assert_eq!(&std::fs::read(dir.path().join(p)).unwrap(), data);
    }
}

#[test]
fn empty_source_dir_builds_a_bundle_with_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let (m, bytes) = build(dir.path());
    assert!(m.files.is_empty());
    assert_eq!(read_archive(&bytes[..], limits(0), &mut VerifyOnly).unwrap(), m);
}

#[test]
fn symlink_in_source_is_refused() {
    let dir = source_tree();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("mod/quiz/passwd")).unwrap();
    let e = build_from_dir(&source_manifest(), dir.path(), Vec::new()).unwrap_err().to_string();
    assert!(e.contains("symlink"), "{e}");
}


fn refusal(archive: &[u8]) -> String {
    let e = read_archive(archive, limits(1 << 20), &mut VerifyOnly).unwrap_err().to_string();
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

#[test]
fn crafted_valid_archive_is_accepted() {
    read_archive(&craft(&valid_entries())[..], limits(1 << 20), &mut VerifyOnly).unwrap();
}

#[test]
fn every_hostile_archive_is_refused_with_its_reason() {
    for (name, archive, needle) in cases() {
        let e = refusal(&archive);
        assert!(e.contains(needle), "{name}: expected {needle:?} in: {e}");
    }
}

/// Found by the `archive` fuzz target: the tar reader quoted a header's bytes, newline included,
/// in its message, so the refusal spanned two lines and carried the archive's bytes as they were.
#[test]
fn header_bytes_quoted_in_a_refusal_are_escaped() {
    let mut tar = tar_bytes(&valid_entries());
    // The second header (after bundle.toml's header and data blocks) gets a checksum field
    // holding a newline and an escape character.
    let manifest_len = u64::from_str_radix(std::str::from_utf8(&tar[124..135]).unwrap(), 8).unwrap() as usize;
    let second = 512 + manifest_len.div_ceil(512) * 512;
    tar[second + 148..second + 156].copy_from_slice(b"av>\n\x1b[2J");
    let e = refusal(&hostile::gzip(&tar));
    assert!(e.contains("cksum") || e.contains("checksum"), "{e}");
    assert!(!e.chars().any(char::is_control), "control characters in the refusal: {e:?}");
}

#[test]
fn decompression_bomb_stops_at_the_budget() {
    // A header that claims 1 GiB of zeros under a manifest declaring 11 bytes: the reader
    // must stop after the budget, not inflate the gigabyte.
    let m = manifest_for("crafted", "1.0.0", &[("a.php", A)]);
    let mut raw = tar_bytes(&[manifest_entry(&m)]);
    raw.truncate(raw.len() - 1024);
    let mut header = tar::Header::new_gnu();
    header.set_path("files/a.php").unwrap();
    header.set_size(1 << 30);
    header.set_mode(0o644);
    header.set_cksum();
    raw.extend_from_slice(header.as_bytes());
    let mut enc = flate2::write::GzEncoder::new(raw.clone(), flate2::Compression::best());
    let mut enc_out = Vec::new();
    {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(&mut enc_out, flate2::Compression::best());
        e.write_all(&raw).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            e.write_all(&zeros).unwrap();
        }
        e.finish().unwrap();
    }
    drop(enc.try_finish());
    assert!(enc_out.len() < 2 << 20, "bomb is small compressed");
    let e = refusal(&enc_out);
    assert!(e.contains("size") || e.contains("exceeds"), "{e}");
}

#[test]
fn signed_manifest_must_match() {
    let archive = craft(&valid_entries());
    let mut other = manifest_for("crafted", "1.0.0", &[("a.php", A)]);
    other.summary = "something else".into();
    let e = read_archive(&archive[..], ReadLimits { max_expanded: 1 << 20, expected: Some(&other) }, &mut VerifyOnly)
        .unwrap_err()
        .to_string();
    assert!(e.contains("differs from the signed manifest") && e.contains("summary"), "{e}");
}

#[test]
fn signed_limit_below_manifest_total_is_refused() {
    let e = read_archive(&craft(&valid_entries())[..], limits(3), &mut VerifyOnly).unwrap_err().to_string();
    assert!(e.contains("exceeds the declared limit of 3 bytes"), "{e}");
}
