//! The repository's and the keys' modes do not depend on the umask: `init` and `publish` run
//! under `umask 000` leave nothing world-writable in the repository (files 0644, folders 0755)
//! and no key readable by anyone but its owner (keys 0600, their folder 0700).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_palier-server");

/// `palier-server ARGS` started by a shell whose umask is 000.
fn under_umask_000(dir: &Path, args: &[&str]) {
    let out = Command::new("sh").arg("-c").arg("umask 000; exec \"$0\" \"$@\"").arg(BIN).args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "palier-server {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Every entry under `root` (itself included) whose mode is not what `expected` says, as
/// `path: mode`.
fn wrong_modes(root: &Path, expected: impl Fn(&Path, bool) -> u32) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let meta = e.path().symlink_metadata().unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let want = expected(e.path(), meta.is_dir());
            (mode != want).then(|| format!("{}: {mode:o}, expected {want:o}", e.path().display()))
        })
        .collect()
}

#[test]
fn init_and_publish_set_explicit_modes_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    under_umask_000(tmp.path(), &["init", "--repo", "repo"]);
    std::fs::create_dir_all(tmp.path().join("src/mod/quiz")).unwrap();
    std::fs::write(tmp.path().join("src/mod/quiz/view.php"), "<?php // fixed\n").unwrap();
    std::fs::write(
        tmp.path().join("bundle.toml"),
        "id = \"quiz-fix\"\nversion = \"1.0.0\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"test bundle\"\nfixes = [\"MDL-1\"]\norigin = \"report\"\n",
    )
    .unwrap();
    under_umask_000(tmp.path(), &["bundle", "build", "--manifest", "bundle.toml", "--source", "src", "--out", "quiz-fix.tar.gz"]);
    under_umask_000(tmp.path(), &["publish", "--repo", "repo", "quiz-fix.tar.gz"]);

    let targets = std::fs::read_dir(tmp.path().join("repo/targets")).unwrap().count();
    assert!(targets > 0, "nothing published");
    let mut wrong = wrong_modes(&tmp.path().join("repo"), |_, dir| if dir { 0o755 } else { 0o644 });
    wrong.extend(wrong_modes(&tmp.path().join("keys"), |_, dir| if dir { 0o700 } else { 0o600 }));
    assert!(wrong.is_empty(), "entries with the wrong mode:\n{}", wrong.join("\n"));
}
