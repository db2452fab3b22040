use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use palier_bundle::{Manifest, ManifestKind, archive};

use super::*;
use crate::journal::TreeId;

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
    let old = TreeId::of(&f.live()).unwrap();
    let previous = go_live(&f.live(), &staged, &stage::sibling(&f.live(), &f.live(), "prev", "t1"), old).unwrap();

    let live = f.live();
    assert_eq!(std::fs::read_to_string(live.join("mod/quiz/view.php")).unwrap(), "new quiz");
    assert_eq!(std::fs::read_to_string(live.join("mod/quiz/classes/timer.php")).unwrap(), "timer");
    assert!(!live.join("mod/quiz/old.js").exists());
    assert_eq!(std::fs::read_link(live.join("home.php")).unwrap(), Path::new("index.php"));
    assert_eq!(std::fs::metadata(live.join("lib/keep.php")).unwrap().ino(), keep_inode, "unchanged files are hard links");
    assert_ne!(std::fs::metadata(live.join("mod/quiz/view.php")).unwrap().ino(), view_inode, "new files are new inodes");
    assert_eq!(snapshot(&previous), before, "the previous tree is the old tree, untouched");
    assert!(!staged.path.exists());

    restore(&f.live(), &previous, old, staged.tree).unwrap();
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
    assert_eq!(staged.path.file_name().unwrap(), ".palier-stage-moodle-t1", "named after dirroot, not its target");
    let old = TreeId::of(&real).unwrap();
    let previous = go_live(&f.live(), &staged, &real, old).unwrap();
    assert_eq!(previous, real);
    assert_eq!(std::fs::read_to_string(f.live().join("mod/quiz/view.php")).unwrap(), "new quiz");
    assert!(std::fs::symlink_metadata(f.live()).unwrap().file_type().is_symlink());
    // The next staging beside a staged target keeps dirroot's name: names never nest.
    let (m2, a2) = f.bundle("again");
    let again = stage_all(&f.live(), "t2", &[(&m2, &a2)]).unwrap();
    assert_eq!(again.path.file_name().unwrap(), ".palier-stage-moodle-t2");
    std::fs::remove_dir_all(&again.path).unwrap();
    restore(&f.live(), &previous, old, staged.tree).unwrap();
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
    go_live(&f.live(), &staged, &f.tmp.path().join("prev"), TreeId::of(&f.live()).unwrap()).unwrap();
    assert_eq!(std::fs::read_to_string(f.live().join("mod/quiz/view.php")).unwrap(), "second quiz");
    assert_eq!(std::fs::read_to_string(f.live().join("mod/quiz/classes/timer.php")).unwrap(), "timer");
}

impl Fixture {
    /// A bundle that writes view.php and deletes `delete` (TOML array items).
    fn deleting(&self, name: &str, delete: &str) -> (Manifest, PathBuf) {
        let src = self.tmp.path().join(format!("src-{name}"));
        std::fs::create_dir_all(src.join("mod/quiz")).unwrap();
        std::fs::write(src.join("mod/quiz/view.php"), "new quiz").unwrap();
        let text = format!(
            "id = \"{name}\"\nversion = \"1.0.0\"\ncomponent = \"mod_quiz\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"s\"\norigin = \"report\"\ndelete = [{delete}]\n"
        );
        let source = Manifest::parse(&text, ManifestKind::Source).unwrap();
        let out = self.tmp.path().join(format!("{name}.tar.gz"));
        let built = archive::build_from_dir(&source, &src, std::fs::File::create(&out).unwrap()).unwrap();
        (built, out)
    }
}

/// Issue 11, item 3: `local/ext -> /elsewhere` and `local/alias -> <dirroot>/lib`; a bundle
/// deleting through them deleted a file outside the site and one of the live tree.
#[test]
fn a_delete_never_crosses_a_symlink() {
    let f = Fixture::new();
    let elsewhere = f.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("victim.txt"), "outside").unwrap();
    std::fs::create_dir_all(f.live().join("local")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, f.live().join("local/ext")).unwrap();
    std::os::unix::fs::symlink(f.live().join("lib"), f.live().join("local/alias")).unwrap();
    let before = snapshot(&f.live());
    for (name, delete) in [("ext", "\"local/ext/victim.txt\""), ("alias", "\"local/alias/keep.php\"")] {
        let (m, a) = f.deleting(name, delete);
        let e = stage_all(&f.live(), name, &[(&m, &a)]).unwrap_err().to_string();
        assert!(e.contains("is a symlink in the site: not crossed") && e.contains(&format!("bundle {name}@1.0.0 refused")), "{e}");
        assert_eq!(std::fs::read_to_string(elsewhere.join("victim.txt")).unwrap(), "outside");
        assert_eq!(snapshot(&f.live()), before, "the live tree is untouched");
        assert!(!f.tmp.path().join(format!(".palier-stage-moodle-{name}")).exists(), "nothing staged is left");
    }
    // A symlink named by the bundle itself is unlinked, never followed.
    let (m, a) = f.deleting("link", "\"home.php\"");
    let staged = stage_all(&f.live(), "link", &[(&m, &a)]).unwrap();
    assert!(std::fs::symlink_metadata(staged.path.join("home.php")).is_err());
    assert!(staged.path.join("index.php").exists());
}

#[test]
fn a_delete_of_a_folder_is_refused_not_removed_whole() {
    let f = Fixture::new();
    let before = snapshot(&f.live());
    let (m, a) = f.deleting("wipe", "\"lib\"");
    let e = stage_all(&f.live(), "t1", &[(&m, &a)]).unwrap_err().to_string();
    assert!(e.contains("delete lib: it is a folder in the site"), "{e}");
    assert_eq!(snapshot(&f.live()), before);
}

#[test]
fn trees_are_moved_and_removed_only_by_identity() {
    let f = Fixture::new();
    let (m, a) = f.bundle("quiz-fix");
    let staged = stage_all(&f.live(), "t1", &[(&m, &a)]).unwrap();
    let old = TreeId::of(&f.live()).unwrap();
    // A name holding another tree than the one recorded is left alone.
    assert!(!remove_tree(&staged.path, old).unwrap());
    assert!(staged.path.exists());
    let e = go_live(&f.live(), &Staged { path: staged.path.clone(), tree: old, files_cloned: 0, site_local: Vec::new(), outline: staged.outline.clone() }, &f.tmp.path().join("prev"), old).unwrap_err();
    assert!(e.to_string().contains("not the tree the journal recorded"), "{e}");
    assert_eq!(TreeId::of(&f.live()).unwrap(), old, "nothing was exchanged");
    // The kept name must be free: a previous tree is never renamed over anything.
    std::fs::create_dir(f.tmp.path().join("prev")).unwrap();
    let e = go_live(&f.live(), &staged, &f.tmp.path().join("prev"), old).unwrap_err();
    assert!(e.to_string().contains("rename"), "{e}");
    assert_eq!(TreeId::of(&f.live()).unwrap(), staged.tree, "the exchange happened; the old tree waits at the staging name");
    assert_eq!(TreeId::of(&staged.path).unwrap(), old);
    assert!(remove_tree(&staged.path, staged.tree).is_ok_and(|removed| !removed), "the old tree is not the staged one");
}

/// A live tree with the site's own files, and a clone of it (`old`) as an apply leaves the
/// previous tree; then, after the apply: config.php edited by rename (a new inode, as
/// editors do), a plugin installed under local/, another removed, a new .htaccess in lib/,
/// the root .htaccess edited; the bundle owns local/owned. Returns (live, old, what the
/// clone found).
fn site_local_fixture(f: &Fixture) -> (PathBuf, PathBuf, stage::Cloned) {
    let live = f.live();
    for (p, c) in [
        ("config.php", "<?php $CFG->x = 1;"),
        ("local/custom/a.php", "mine"),
        ("local/gone/b.php", "removed later"),
        ("mod/quiz/.htaccess", "deny"),
        (".htaccess", "Options -Indexes"),
        ("local/owned/c.php", "bundle's v1"),
    ] {
        std::fs::create_dir_all(live.join(p).parent().unwrap()).unwrap();
        std::fs::write(live.join(p), c).unwrap();
    }
    let old = f.tmp.path().join("old");
    std::fs::create_dir(&old).unwrap();
    let cloned = stage::clone_into(&live, &old).unwrap();
    std::fs::write(live.join("config.php.new"), "<?php $CFG->x = 2;").unwrap();
    std::fs::rename(live.join("config.php.new"), live.join("config.php")).unwrap();
    std::fs::write(live.join(".htaccess.new"), "Options -Indexes -FollowSymLinks").unwrap();
    std::fs::rename(live.join(".htaccess.new"), live.join(".htaccess")).unwrap();
    std::fs::create_dir_all(live.join("local/added")).unwrap();
    std::fs::write(live.join("local/added/version.php"), "new plugin").unwrap();
    std::fs::remove_dir_all(live.join("local/gone")).unwrap();
    std::fs::write(live.join("lib/.htaccess"), "deny from all").unwrap();
    std::fs::remove_file(live.join("local/owned/c.php")).unwrap();
    std::fs::write(live.join("local/owned/c.php"), "bundle's v2").unwrap();
    std::fs::remove_file(live.join("mod/quiz/view.php")).unwrap();
    std::fs::write(live.join("mod/quiz/view.php"), "not site-local").unwrap();
    (live, old, cloned)
}

fn check_carried(old: &Path) {
    let read = |p: &str| std::fs::read_to_string(old.join(p)).unwrap();
    assert_eq!(read("config.php"), "<?php $CFG->x = 2;");
    assert_eq!(read(".htaccess"), "Options -Indexes -FollowSymLinks");
    assert_eq!(read("local/added/version.php"), "new plugin");
    assert_eq!(read("lib/.htaccess"), "deny from all");
    assert_eq!(read("mod/quiz/.htaccess"), "deny");
    assert!(!old.join("local/gone/b.php").exists());
    assert_eq!(read("local/custom/a.php"), "mine");
    assert_eq!(read("local/owned/c.php"), "bundle's v1", "the bundle's own file goes back with its tree");
    assert_eq!(read("mod/quiz/view.php"), "old quiz", "code is not carried");
}

/// Issue 13, item 11: the site's own files (config.php, .htaccess, local/ customisations)
/// as they are live are carried into the tree about to go live; the bundles' own paths are
/// not; a local/ plugin removed since is removed there too. Without a record of the tree's
/// own files, the whole live tree is walked before the swap.
#[test]
fn the_sites_own_files_are_carried_into_the_tree_going_live() {
    let f = Fixture::new();
    let (live, old, _) = site_local_fixture(&f);
    let owned = ["local/owned/c.php".to_owned()];
    let changed = carry_site_local(&live, &old, &owned, None).unwrap();
    assert_eq!(changed, 5, "config.php, .htaccess, local/added/version.php, lib/.htaccess in; local/gone/b.php out");
    check_carried(&old);
    assert_eq!(carry_site_local(&live, &old, &owned, None).unwrap(), 0, "idempotent");
    assert!(carry_new_site_local(&live, &old, &owned, None).unwrap().is_empty(), "nothing left for after the swap");
}

/// Issue 11's figures: the rollback's exchange took 50-190 ms because carrying the site's
/// own files walked both whole trees before it. The clone notes the site's own files it
/// finds; before the swap only those, the fixed places and local/ are looked at; a
/// .htaccess created since in another folder is carried right after the swap, from the tree
/// just left. Together they carry exactly what the whole walk carries.
#[test]
fn the_site_local_files_the_clone_noted_are_carried_before_the_swap_and_new_ones_after() {
    let f = Fixture::new();
    let (live, old, cloned) = site_local_fixture(&f);
    let noted = cloned.site_local;
    assert_eq!(noted, [".htaccess", "config.php", "mod/quiz/.htaccess"], "local/ is walked on its own; code is not noted");
    let owned = ["local/owned/c.php".to_owned()];
    let changed = carry_site_local(&live, &old, &owned, Some(&noted)).unwrap();
    assert_eq!(changed, 4, "config.php, .htaccess, local/added/version.php in; local/gone/b.php out");
    assert!(!old.join("lib/.htaccess").exists(), "not looked for before the swap: no whole-tree walk");
    // After the swap the tree just left is `live` here, the tree now live `old`; the
    // clone's outline says which folders changed since.
    assert!(cloned.outline.dirs.contains("lib") && cloned.outline.dirs.contains("mod/quiz"), "{:?}", cloned.outline.dirs);
    assert_eq!(carry_new_site_local(&live, &old, &owned, Some(&cloned.outline)).unwrap(), ["lib/.htaccess"]);
    check_carried(&old);
    assert_eq!(carry_site_local(&live, &old, &owned, Some(&noted)).unwrap(), 0, "idempotent");
    assert!(carry_new_site_local(&live, &old, &owned, None).unwrap().is_empty(), "idempotent");
    // A .htaccess the bundle owns (never, the publisher refuses it) or one already live stays.
    std::fs::write(live.join("lib/.user.ini"), "x").unwrap();
    std::fs::write(old.join("lib/.user.ini"), "the live tree's own").unwrap();
    assert!(carry_new_site_local(&live, &old, &owned, None).unwrap().is_empty());
    assert_eq!(std::fs::read_to_string(old.join("lib/.user.ini")).unwrap(), "the live tree's own");
}

/// The staging clone notes the site's own files wherever they are, never inside local/
/// (walked on its own) and never code named like one (theme/boost/config.php).
#[test]
fn the_clone_notes_the_sites_own_files_outside_local() {
    let f = Fixture::new();
    let live = f.live();
    for p in ["public/config.php", "public/.user.ini", "public/local/x/.htaccess", "local/y/.htaccess", "theme/boost/config.php", "a/b/c/.htaccess"] {
        std::fs::create_dir_all(live.join(p).parent().unwrap()).unwrap();
        std::fs::write(live.join(p), "x").unwrap();
    }
    std::os::unix::fs::symlink("/nonexistent", live.join("lib/.htaccess")).unwrap();
    let into = f.tmp.path().join("clone");
    std::fs::create_dir(&into).unwrap();
    let noted = stage::clone_into(&live, &into).unwrap().site_local;
    assert_eq!(noted, ["a/b/c/.htaccess", "lib/.htaccess", "public/.user.ini", "public/config.php"]);
    assert_eq!(site_local_outside_local(&live).unwrap().into_iter().collect::<Vec<_>>(), noted, "the same as a walk finds");
}

/// Issue 13, item 10: the agent acts only as the owner of the code root.
#[test]
fn another_user_than_the_owner_of_dirroot_is_refused_naming_the_owner() {
    let f = Fixture::new();
    let me = rustix::process::geteuid().as_raw();
    check_owner(&f.live(), me).unwrap();
    let e = check_owner(&f.live(), me + 4242).unwrap_err().to_string();
    let owner = crate::lock::user_name(me).unwrap_or_else(|| format!("#{me}"));
    assert!(e.contains(&format!("belongs to {owner}")) && e.contains(&format!("sudo -u {owner} palier-agent")), "{e}");
}

/// Issue 13, item 10: run as root, what the agent writes takes the owner and group of the
/// file it replaces, or of its folder; unchanged files stay hard links with their owners.
#[test]
fn written_files_take_the_owner_of_what_they_replace_when_run_as_root() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root (CI runs as root) to give files away");
        return;
    }
    let f = Fixture::new();
    let live = f.live();
    let give = |p: &Path, id: u32| std::os::unix::fs::lchown(p, Some(id), Some(id + 1)).unwrap();
    for p in ["mod", "mod/quiz", "mod/quiz/view.php", "mod/quiz/old.js"] {
        give(&live.join(p), 4321);
    }
    give(&live.join("lib/keep.php"), 5555);
    let (m, a) = f.bundle("quiz-fix");
    let staged = stage_all(&live, "own", &[(&m, &a)]).unwrap();
    let owner = |p: &str| {
        let m = std::fs::symlink_metadata(staged.path.join(p)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner("mod/quiz/view.php"), (4321, 4322), "replaced: the old file's owner");
    assert_eq!(owner("mod/quiz/classes"), (4321, 4322), "a new folder: its parent's owner");
    assert_eq!(owner("mod/quiz/classes/timer.php"), (4321, 4322), "a new file: its folder's owner");
    assert_eq!(owner("mod/quiz"), (4321, 4322));
    assert_eq!(owner("lib/keep.php"), (5555, 5556));
    assert_eq!(owner("index.php"), (0, 0));
}

/// The outline finds the site's own files that appeared after it was taken: in a folder
/// it knows, in a new folder, in a folder renamed into place; it does not read a folder
/// unchanged since (here: an outline taken after every change finds nothing).
#[test]
fn an_outline_reads_only_the_folders_changed_since_it_was_taken() {
    let f = Fixture::new();
    let live = f.live();
    std::fs::write(live.join("mod/quiz/.htaccess"), "deny").unwrap();
    let into = f.tmp.path().join("clone");
    std::fs::create_dir(&into).unwrap();
    let outline = stage::clone_into(&live, &into).unwrap().outline;
    assert_eq!(outline.dirs.iter().map(String::as_str).collect::<Vec<_>>(), ["lib", "mod", "mod/quiz"]);
    // What the clone saw is not "since".
    let none_yet: Vec<String> = Vec::new();
    let found = |o: &Outline| o.site_local_since(&live).unwrap().into_iter().filter(|p| p != "mod/quiz/.htaccess").collect::<Vec<_>>();
    assert_eq!(found(&outline), none_yet);
    std::fs::write(live.join("lib/.htaccess"), "deny").unwrap();
    std::fs::create_dir_all(live.join("admin/tool")).unwrap();
    std::fs::write(live.join("admin/tool/.user.ini"), "x").unwrap();
    std::fs::create_dir_all(f.tmp.path().join("elsewhere/blocks")).unwrap();
    std::fs::write(f.tmp.path().join("elsewhere/blocks/.htaccess"), "x").unwrap();
    std::fs::rename(f.tmp.path().join("elsewhere/blocks"), live.join("mod/blocks")).unwrap();
    std::fs::create_dir_all(live.join("local/x")).unwrap();
    std::fs::write(live.join("local/x/.htaccess"), "the local/ walk's").unwrap();
    assert_eq!(found(&outline), ["admin/tool/.user.ini", "lib/.htaccess", "mod/blocks/.htaccess"]);
    // Taken after every change: no folder has changed since, none is read.
    let later = Outline { since: std::time::SystemTime::now() + std::time::Duration::from_secs(3600), dirs: outline.dirs.clone() };
    assert!(later.site_local_since(&live).unwrap().is_empty());
    // Taken right after a change (as a rollback's outline is, just after the apply's
    // staging wrote its last folders): that change is before it, not since.
    // (A change in the same tick of the filesystem's clock counts as since: the outline is
    // taken once that clock has moved past the last change.)
    let ctime = |d: &str| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(live.join(d)).unwrap();
        std::time::UNIX_EPOCH + std::time::Duration::new(m.ctime() as u64, m.ctime_nsec() as u32)
    };
    let last_change = ["lib", "admin", "admin/tool", "mod", "mod/blocks", "local", "local/x"].into_iter().map(ctime).max().unwrap();
    let just_after = loop {
        let now = fs_now(f.tmp.path()).unwrap();
        if now > last_change {
            break Outline { since: now, dirs: outline.dirs.clone() };
        }
    };
    assert!(just_after.site_local_since(&live).unwrap().is_empty(), "{:?}", just_after.site_local_since(&live));
    std::fs::write(live.join("mod/quiz/.user.ini"), "x").unwrap();
    assert_eq!(found(&just_after), ["mod/quiz/.user.ini"]);
    // The filesystem's clock (here the same as the agent's) is read without leaving a file.
    let before = std::fs::read_dir(f.tmp.path()).unwrap().count();
    let now = fs_now(f.tmp.path()).unwrap();
    let skew = now.duration_since(std::time::SystemTime::now()).or_else(|e| Ok::<_, ()>(e.duration())).unwrap();
    assert!(skew < std::time::Duration::from_secs(2), "{skew:?}");
    assert_eq!(std::fs::read_dir(f.tmp.path()).unwrap().count(), before);
    // Kept as text and read back the same; a folder name with a line break is not kept.
    assert_eq!(Outline::from_text(&outline.to_text().unwrap()), Some(outline.clone()));
    assert_eq!(Outline::from_text("not an outline\nlib\n"), None);
    let mut odd = outline;
    odd.dirs.insert("a\nb".into());
    assert_eq!(odd.to_text(), None);
}
