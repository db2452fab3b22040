use std::io::BufWriter;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use palier_bundle::components::ComponentMap;
use palier_bundle::layout::{self, Layout};
use palier_bundle::{Manifest, ManifestKind, archive};

use crate::error::{Error, Result};
use crate::repo::{self, DEFAULT_MAX_EXPANDED};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a deterministic bundle archive from a manifest and a source folder.
    Build(BuildArgs),
    /// Read an archive, verify every file against its manifest, and print the manifest.
    Verify(VerifyArgs),
}

impl Command {
    pub fn run(self) -> Result<()> {
        match self {
            Command::Build(a) => a.run(),
            Command::Verify(a) => a.run(),
        }
    }
}

#[derive(Debug, Parser)]
pub struct BuildArgs {
    /// The hand-written manifest (bundle.toml, without `files`).
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// The files to add or replace, by their paths relative to DIR.
    #[arg(long, value_name = "DIR")]
    source: PathBuf,
    /// Where to write the archive.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

impl BuildArgs {
    fn run(self) -> Result<()> {
        let text = std::fs::read_to_string(&self.manifest).map_err(Error::io("read manifest", &self.manifest))?;
        let source = Manifest::parse(&text, ManifestKind::Source)
            .map_err(|e| Error::Refused(format!("manifest {}: {e}", self.manifest.display())))?;
        if !self.source.is_dir() {
            return Err(Error::Refused(format!("source {} is not a folder", self.source.display())));
        }
        if source.delete.is_empty() && !has_a_file(&self.source) {
            return Err(Error::Refused(format!(
                "source {} holds no files and the manifest deletes nothing: the bundle would change nothing; \
                 put the fixed files there under their paths in the Moodle code (like mod/quiz/view.php)",
                self.source.display()
            )));
        }
        let dir = self.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(Error::Refused(format!(
                "cannot write {}: the folder {} does not exist; create it (`mkdir -p {}`) or choose another --out",
                self.out.display(),
                dir.display(),
                dir.display()
            )));
        }
        let tmp = tempfile::Builder::new().prefix(".palier-build-").tempfile_in(dir).map_err(Error::io("create temporary file in", dir))?;
        let built = {
            let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file());
            let built = archive::build_from_dir(&source, &self.source, &mut out)?;
            std::io::Write::flush(&mut out).map_err(Error::io("write", &self.out))?;
            built
        };
        let components = std::fs::read_to_string(self.source.join("lib/components.json")).ok();
        let fit = check_paths(&built, components.as_deref().map(|t| (t, "the source tree's lib/components.json")))
            .map_err(|e| Error::Refused(format!("{e}; nothing written")))?;
        repo::set_readable(tmp.as_file(), &self.out)?;
        tmp.as_file().sync_all().map_err(Error::io("sync", &self.out))?;
        tmp.persist(&self.out).map_err(|e| Error::Io { action: "write", path: self.out.clone(), source: e.error })?;
        let fit = fit.map_or("any Moodle layout".to_owned(), |l| format!("Moodle {l} layout"));
        println!(
            "built {} ({} files, {} bytes expanded, {fit}) -> {}",
            built.key(),
            built.files.len(),
            built.expanded_size(),
            self.out.display()
        );
        Ok(())
    }
}

/// Whether `dir` holds a file, at any depth.
fn has_a_file(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| match e.file_type() {
            Ok(t) if t.is_dir() => has_a_file(&e.path()),
            Ok(_) => true,
            Err(_) => false,
        })
    })
}

#[derive(Debug, Parser)]
pub struct VerifyArgs {
    /// The archive to read.
    archive: PathBuf,
    /// Refuse an archive that expands to more than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_EXPANDED)]
    max_expanded: u64,
}

impl VerifyArgs {
    fn run(self) -> Result<()> {
        let checked = repo::check_archive(&self.archive, self.max_expanded)?;
        let m = &checked.manifest;
        let fit = check_paths(m, None)?;
        println!(
            "ok {} component={} class={} data_impact={} files={} expanded={} {} sha256={}",
            m.key(),
            m.component,
            m.class,
            m.data_impact,
            m.files.len(),
            m.expanded_size(),
            fit.map_or("layout=any".to_owned(), |l| format!("layout={l}")),
            hex::encode(&checked.sha256)
        );
        Ok(())
    }
}

/// What `bundle build`, `bundle verify` and `publish` check of a bundle's paths before it
/// goes anywhere: they fit one Moodle layout (never both), lie inside the component's folder
/// (component `core` may change any) and touch no site-local file (see
/// [`palier_bundle::layout`]). The map is `components` (a components.json text and where it
/// came from) or Moodle's built-in map for the bundle's layout. Returns the layout the
/// bundle is for, `None` when its paths fit both.
pub fn check_paths(manifest: &Manifest, components: Option<(&str, &str)>) -> Result<Option<Layout>> {
    let refuse = |e: &dyn std::fmt::Display| Error::Refused(format!("bundle {}: {e}", manifest.key()));
    let paths = manifest.files.iter().map(|f| f.path.as_str()).chain(manifest.delete.iter().map(|p| p.as_str()));
    let wanted = layout::layout_of(paths).map_err(|e| refuse(&e))?;
    let layout = wanted.unwrap_or(Layout::Classic);
    let (map, source) = match components {
        Some((text, source)) => (ComponentMap::from_components_json(text, layout).map_err(|e| refuse(&format!("{source}: {e}")))?, source),
        None => (ComponentMap::builtin(layout), "Moodle's standard map"),
    };
    layout::check_paths(manifest, layout, &map, source).map_err(|e| refuse(&e))?;
    Ok(wanted)
}
