//! Writes the crafted archives of `hostile::cases()` (and one valid one) as seeds for the
//! `archive` fuzz target: `cargo run -p palier-bundle --example fuzz_seeds -- DIR`.
//! Each seed is the fuzz input format: a mode byte (0: gzip file as is), then the archive.

use palier_bundle::hostile;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os().nth(1).expect("usage: fuzz_seeds DIR");
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let mut seeds = vec![("valid".to_owned(), hostile::craft(&hostile::valid_entries()))];
    // Bombs are left out: a seed must run in milliseconds.
    seeds.extend(hostile::cases().into_iter().filter(|(name, bytes, _)| bytes.len() < 1 << 20 && !name.contains("bomb")).map(|(name, bytes, _)| (name.to_owned(), bytes)));
    for (name, bytes) in seeds {
        let mut input = vec![0u8];
        input.extend_from_slice(&bytes);
        std::fs::write(dir.join(format!("crafted-{name}")), input)?;
    }
    Ok(())
}
