use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use palier_bundle::{Manifest, ManifestKind, archive};

use super::*;

/// Path -> (content, mode) of every file, and symlink targets: equal trees are equal maps.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                out.insert(rel, format!("dir {:o}", m.mode() & 0o7777));
                walk(root, &p, out);
            } else if m.file_type().is_symlink() {
                out.insert(rel, format!("link {}", std::fs::read_link(&p).unwrap().display()));
            } else {
                out.insert(rel, format!("{:o} {}", m.mode() & 0o7777, String::from_utf8_lossy(&std::fs::read(&p).unwrap())));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let f = Fixture { tmp: tempfile::tempdir().unwrap() };
        let live = f.live();
        for (p, c) in [("index.php", "home page-site-index"), ("mod/quiz/view.php", "old quiz"), ("mod/quiz/old.js", "old js"), ("lib/keep.php", "keep")] {
            std::fs::create_dir_all(live.join(p).parent().unwrap()).unwrap();
            std::fs::write(live.join(p), c).unwrap();
        }
        std::os::unix::fs::symlink("index.php", live.join("home.php")).unwrap();
        f
    }
    fn live(&self) -> PathBuf {
        self.tmp.path().join("moodle")
    }
    /// A bundle that replaces view.php, adds a file in a new folder and deletes old.js.
    fn bundle(&self, name: &str) -> (Manifest, PathBuf) {
        let src = self.tmp.path().join(format!("src-{name}"));
        std::fs::create_dir_all(src.join("mod/quiz/classes")).unwrap();
        std::fs::write(src.join("mod/quiz/view.php"), "new quiz").unwrap();
        std::fs::write(src.join("mod/quiz/classes/timer.php"), "timer").unwrap();
        let text = format!(
            "id = \"{name}\"\nversion = \"1.0.0\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"s\"\norigin = \"report\"\ndelete = [\"mod/quiz/old.js\"]\n"
        );
        let source = Manifest::parse(&text, ManifestKind::Source).unwrap();
        let out = self.tmp.path().join(format!("{name}.tar.gz"));
        let built = archive::build_from_dir(&source, &src, std::fs::File::create(&out).unwrap()).unwrap();
        (built, out)
    }
}

#[test]
fn stage_swap_and_restore_a_real_directory() {
    let f = Fixture::new();
    let before = snapshot(&f.live());
    let keep_inode = std::fs::metadata(f.live().join("lib/keep.php")).unwrap().ino();
    let view_inode = std::fs::metadata(f.live().join("mod/quiz/view.php")).unwrap().ino();
    let (m, a) = f.bundle("quiz-fix");

    let staged = stage_all(&f.live(), "t1", &[(&m, &a)]).unwrap();
    assert_eq!(snapshot(&f.live()), before, "staging never touches the live tree");
    let previous = go_live(&f.live(), &staged, "t1").unwrap();

    let live = f.live();
    assert_eq!(std::fs::read_to_string(live.join("mod/quiz/view.php")).unwrap(), "new quiz");
    assert_eq!(std::fs::read_to_string(live.join("mod/quiz/classes/timer.php")).unwrap(), "timer");
    assert!(!live.join("mod/quiz/old.js").exists());
    assert_eq!(std::fs::read_link(live.join("home.php")).unwrap(), Path::new("index.php"));
    assert_eq!(std::fs::metadata(live.join("lib/keep.php")).unwrap().ino(), keep_inode, "unchanged files are hard links");
    assert_ne!(std::fs::metadata(live.join("mod/quiz/view.php")).unwrap().ino(), view_inode, "new files are new inodes");
    assert_eq!(snapshot(&previous), before, "the previous tree is the old tree, untouched");
    assert!(!staged.path.exists());

    restore(&f.live(), &previous).unwrap();
    assert_eq!(snapshot(&f.live()), before, "after restore the site hashes exactly as before");
}

#[test]
fn a_symlinked_dirroot_is_flipped_atomically() {
    let f = Fixture::new();
    let real = f.tmp.path().join("releases/moodle-1");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::rename(f.live(), &real).unwrap();
    std::os::unix::fs::symlink(&real, f.live()).unwrap();
    let before = snapshot(&real);
    let (m, a) = f.bundle("quiz-fix");
    let staged = stage_all(&f.live(), "t1", &[(&m, &a)]).unwrap();
    assert_eq!(staged.path.parent(), real.parent(), "staged beside the real tree");
    let previous = go_live(&f.live(), &staged, "t1").unwrap();
    assert_eq!(previous, real);
    assert_eq!(std::fs::read_to_string(f.live().join("mod/quiz/view.php")).unwrap(), "new quiz");
    assert!(std::fs::symlink_metadata(f.live()).unwrap().file_type().is_symlink());
    restore(&f.live(), &previous).unwrap();
    assert_eq!(std::fs::read_link(f.live()).unwrap(), real);
    assert_eq!(snapshot(&f.live()), before);
}

#[test]
fn a_bundle_that_differs_from_its_signed_manifest_leaves_the_site_untouched() {
    let f = Fixture::new();
    let before = snapshot(&f.live());
    let (mut m, a) = f.bundle("quiz-fix");
    m.summary = "not what was signed".into();
    let e = stage_all(&f.live(), "t1", &[(&m, &a)]).unwrap_err().to_string();
    assert!(e.contains("differs from the signed manifest"), "{e}");
    assert_eq!(snapshot(&f.live()), before);
    let leftovers: Vec<_> = std::fs::read_dir(f.tmp.path()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(".palier-stage")).collect();
    assert!(leftovers.is_empty(), "staging tree removed: {leftovers:?}");
}

#[test]
fn a_hostile_archive_cannot_write_through_a_symlink_in_the_site() {
    let f = Fixture::new();
    // The site has mod/quiz/classes as a symlink to a folder outside dirroot.
    let outside = f.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, f.live().join("mod/quiz/classes")).unwrap();
    let (m, a) = f.bundle("quiz-fix");
    let e = stage_all(&f.live(), "t1", &[(&m, &a)]).unwrap_err().to_string();
    assert!(e.contains("symlink"), "{e}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing written outside the tree");
}

#[test]
fn two_bundles_stage_together_in_order() {
    let f = Fixture::new();
    let (m1, a1) = f.bundle("first");
    let src = f.tmp.path().join("src-second");
    std::fs::create_dir_all(src.join("mod/quiz")).unwrap();
    std::fs::write(src.join("mod/quiz/view.php"), "second quiz").unwrap();
    let text = "id = \"second\"\nversion = \"1.0.0\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"s\"\norigin = \"report\"\nafter = [\"first\"]\n";
    let source = Manifest::parse(text, ManifestKind::Source).unwrap();
    let a2 = f.tmp.path().join("second.tar.gz");
    let m2 = archive::build_from_dir(&source, &src, std::fs::File::create(&a2).unwrap()).unwrap();
    let staged = stage_all(&f.live(), "t1", &[(&m1, &a1), (&m2, &a2)]).unwrap();
    go_live(&f.live(), &staged, "t1").unwrap();
    assert_eq!(std::fs::read_to_string(f.live().join("mod/quiz/view.php")).unwrap(), "second quiz");
    assert_eq!(std::fs::read_to_string(f.live().join("mod/quiz/classes/timer.php")).unwrap(), "timer");
}
