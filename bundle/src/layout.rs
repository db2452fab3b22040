//! Moodle's two code layouts, and the check that a bundle's paths fit a site.
//!
//! `dirroot` is always the Moodle **code root**, the folder holding `config.php`, and bundle
//! paths are relative to it.
//!
//! - **4.x layout** ([`Layout::Classic`]): the code root is also the web root; `version.php`,
//!   `index.php`, `mod/`, `login/`, `lib/` ... are at the top.
//! - **5.1+ layout** ([`Layout::Public`]): the web root is `public/` (`public/version.php`,
//!   `public/mod/quiz/view.php`, `public/lib/`); the code root keeps `config.php`,
//!   `admin/cli/`, `lib/setup.php`, `lib/components.json`, the composer files and
//!   `vendor/`. A 5.1 bundle says `public/mod/quiz/view.php`.
//!
//! [`check_paths`] is what `bundle build`, `publish` and the agent's plan run on every path a
//! bundle writes or deletes: the path must fit the layout, lie inside its component's folder
//! ([`crate::components`]; component `core` may touch anything), and never be a
//! **site-local file**:
//!
//! | path | why |
//! | --- | --- |
//! | `config.php`, `public/config.php` | the site's own configuration (database, dataroot, wwwroot) |
//! | any `.htaccess`, any `.user.ini` | the web server's and PHP's per-folder settings of this host |
//! | `local/...` (`public/local/...` from 5.1) | the site's own customisations, unless the bundle's component is the `local_*` plugin that owns that folder |
//!
//! Pure: no file is read here.

use std::fmt;

use crate::components::{ComponentMap, Owner};
use crate::manifest::Manifest;

/// The code layout of a Moodle site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Before 5.1: the code root is the web root (`version.php` at the top).
    Classic,
    /// 5.1 and later: the web root is `public/` (`public/version.php`).
    Public,
}

impl Layout {
    /// Where `version.php` (with `$release`) is, relative to the code root.
    pub fn version_php(self) -> &'static str {
        match self {
            Layout::Classic => "version.php",
            Layout::Public => "public/version.php",
        }
    }

    /// The web root inside the code root, as a path prefix (`""` or `"public/"`).
    pub fn webroot(self) -> &'static str {
        match self {
            Layout::Classic => "",
            Layout::Public => "public/",
        }
    }

    /// Whether `path` (relative to the code root) can exist in this layout.
    ///
    /// A 4.x tree has no `public/` folder. A 5.1+ tree keeps outside `public/` only
    /// `admin/cli/`, `lib/setup.php`, `lib/components.json`, `lib/plugins.json`, `lib/behat/`,
    /// `vendor/`, the dot folders of its tooling and top-level files other than
    /// `version.php`: anything else outside `public/` (`mod/quiz/view.php`,
    /// `lib/classes/x.php`) is a 4.x path.
    pub fn fits(self, path: &str) -> bool {
        match self {
            Layout::Classic => !path.starts_with("public/"),
            Layout::Public => {
                let Some((top, rest)) = path.split_once('/') else { return path != "version.php" };
                match top {
                    "public" | "vendor" => true,
                    "admin" => rest.starts_with("cli/"),
                    "lib" => matches!(rest, "setup.php" | "components.json" | "plugins.json") || rest.starts_with("behat/"),
                    _ => top.starts_with('.'),
                }
            }
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Classic => "4.x",
            Layout::Public => "5.1+",
        })
    }
}

/// Why a bundle's paths do not fit a site. One line each, naming the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("{path} is a site-local file ({why}): no bundle may write or delete it")]
    SiteLocal { path: String, why: &'static str },
    #[error("{path} does not fit the Moodle {layout} layout ({hint})")]
    Layout { path: String, layout: Layout, hint: &'static str },
    #[error("{path} lies outside {folder}/, the folder of component {component}: a bundle changes only its component's files (component core may change any)")]
    OutsideComponent { path: String, component: String, folder: String },
    #[error("component {component} is not a plugin type or subsystem that {source_of_map} knows")]
    UnknownComponent { component: String, source_of_map: String },
    #[error("its paths mix the 4.x layout ({classic}) and the 5.1+ layout ({public})")]
    Mixed { classic: String, public: String },
}

/// Why `path` is a site-local file, if it is one; `owner` is the bundle component's folder
/// (a `local_*` plugin may change its own folder).
pub fn site_local(path: &str, owner: &Owner) -> Option<&'static str> {
    if path == "config.php" || path == "public/config.php" {
        return Some("the site's own configuration");
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    if name == ".htaccess" || name == ".user.ini" {
        return Some("this host's web server and PHP settings");
    }
    let local = path.starts_with("local/") || path.starts_with("public/local/");
    let own = matches!(owner, Owner::Folder(folder) if path.starts_with(&format!("{folder}/")));
    if local && !own {
        return Some("the site's own customisations under local/, owned by no bundle but their plugin's");
    }
    None
}

/// The layout a bundle's own paths call for: `Ok(None)` when they fit both, an error when
/// they mix both.
pub fn layout_of<'a>(paths: impl IntoIterator<Item = &'a str>) -> Result<Option<Layout>, PathRefusal> {
    let (mut classic, mut public) = (None, None);
    for p in paths {
        if !Layout::Classic.fits(p) {
            public.get_or_insert(p);
        }
        if !Layout::Public.fits(p) {
            classic.get_or_insert(p);
        }
    }
    match (classic, public) {
        (Some(c), Some(p)) => Err(PathRefusal::Mixed { classic: c.to_owned(), public: p.to_owned() }),
        (Some(_), None) => Ok(Some(Layout::Classic)),
        (None, Some(_)) => Ok(Some(Layout::Public)),
        (None, None) => Ok(None),
    }
}

/// Check every path `manifest` writes (`files`) or deletes (`delete`) against a site of
/// `layout` whose components map as `map` says (`map_source` names where the map came
/// from, for the message). Site-local files first, then the layout, then the component's
/// folder; the first refusal is returned.
pub fn check_paths(manifest: &Manifest, layout: Layout, map: &ComponentMap, map_source: &str) -> Result<(), PathRefusal> {
    let owner = map.owner(&manifest.component).ok_or_else(|| PathRefusal::UnknownComponent {
        component: manifest.component.to_string(),
        source_of_map: map_source.to_owned(),
    })?;
    let paths = manifest.files.iter().map(|f| f.path.as_str()).chain(manifest.delete.iter().map(|p| p.as_str()));
    for path in paths {
        if let Some(why) = site_local(path, &owner) {
            return Err(PathRefusal::SiteLocal { path: path.to_owned(), why });
        }
        if !layout.fits(path) {
            let hint = match layout {
                Layout::Classic => "a 4.x site has no public/ folder: this is a 5.1+ bundle",
                Layout::Public => "a 5.1+ site keeps its web code under public/: this is a 4.x bundle",
            };
            return Err(PathRefusal::Layout { path: path.to_owned(), layout, hint });
        }
        if let Owner::Folder(folder) = &owner
            && !path.starts_with(&format!("{folder}/"))
        {
            return Err(PathRefusal::OutsideComponent { path: path.to_owned(), component: manifest.component.to_string(), folder: folder.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::{FileEntry, FileMode, Sha256Hex};
    use crate::names::{Component, RelPath};

    fn manifest(component: &str, files: &[&str], delete: &[&str]) -> Manifest {
        let text = format!(
            "id = \"x\"\nversion = \"1.0.0\"\ncomponent = \"{component}\"\nclass = \"technical\"\ndata_impact = \"none\"\nsummary = \"s\"\norigin = \"roadmap\"\n"
        );
        let mut m = Manifest::parse(&text, crate::ManifestKind::Source).unwrap();
        m.component = Component::new(component).unwrap();
        m.files = files
            .iter()
            .map(|p| FileEntry { path: RelPath::new(*p).unwrap(), sha256: Sha256Hex::from_digest(&[0; 32]), size: 1, mode: FileMode::from_permissions(0o644) })
            .collect();
        m.delete = delete.iter().map(|p| RelPath::new(*p).unwrap()).collect();
        m
    }

    fn check(layout: Layout, component: &str, files: &[&str], delete: &[&str]) -> Result<(), PathRefusal> {
        check_paths(&manifest(component, files, delete), layout, &ComponentMap::builtin(layout), "the built-in map")
    }

    #[test]
    fn paths_fit_their_layout() {
        for p in ["mod/quiz/view.php", "version.php", "lib/classes/x.php", "admin/cli/upgrade.php", "composer.json"] {
            assert!(Layout::Classic.fits(p), "{p}");
        }
        assert!(!Layout::Classic.fits("public/mod/quiz/view.php"));
        for p in ["public/mod/quiz/view.php", "public/version.php", "admin/cli/upgrade.php", "lib/setup.php", "lib/components.json", "vendor/a/b.php", "composer.lock", ".github/x.yml"] {
            assert!(Layout::Public.fits(p), "{p}");
        }
        for p in ["mod/quiz/view.php", "version.php", "lib/classes/x.php", "admin/index.php", "login/index.php"] {
            assert!(!Layout::Public.fits(p), "{p}");
        }
    }

    #[test]
    fn a_bundle_fits_one_layout_or_both() {
        assert_eq!(layout_of(["mod/quiz/view.php"]).unwrap(), Some(Layout::Classic));
        assert_eq!(layout_of(["public/mod/quiz/view.php", "admin/cli/x.php"]).unwrap(), Some(Layout::Public));
        assert_eq!(layout_of(["admin/cli/x.php", "composer.json"]).unwrap(), None);
        let e = layout_of(["mod/quiz/a.php", "public/mod/quiz/b.php"]).unwrap_err().to_string();
        assert!(e.contains("mod/quiz/a.php") && e.contains("public/mod/quiz/b.php"), "{e}");
    }

    #[test]
    fn a_bundle_of_the_other_layout_is_refused() {
        check(Layout::Classic, "mod_quiz", &["mod/quiz/view.php"], &[]).unwrap();
        check(Layout::Public, "mod_quiz", &["public/mod/quiz/view.php"], &[]).unwrap();
        let e = check(Layout::Public, "mod_quiz", &["mod/quiz/view.php"], &[]).unwrap_err();
        assert!(matches!(e, PathRefusal::Layout { layout: Layout::Public, .. }), "{e}");
        assert!(e.to_string().contains("this is a 4.x bundle"), "{e}");
        let e = check(Layout::Classic, "core", &["public/lib/x.php"], &[]).unwrap_err();
        assert!(e.to_string().starts_with("public/lib/x.php does not fit the Moodle 4.x layout"), "{e}");
        // Deletions too.
        assert!(check(Layout::Public, "core", &[], &["lib/classes/old.php"]).is_err());
    }

    #[test]
    fn files_outside_the_component_folder_are_refused() {
        let e = check(Layout::Classic, "mod_quiz", &["mod/quiz/view.php", "login/index.php"], &[]).unwrap_err();
        assert_eq!(e, PathRefusal::OutsideComponent { path: "login/index.php".into(), component: "mod_quiz".into(), folder: "mod/quiz".into() });
        // A sibling whose name starts alike is outside.
        assert!(check(Layout::Classic, "mod_quiz", &["mod/quizzes/x.php"], &[]).is_err());
        assert!(check(Layout::Public, "mod_quiz", &[], &["public/mod/assign/x.php"]).is_err());
        check(Layout::Classic, "core", &["login/index.php", "mod/quiz/view.php", "lib/setup.php"], &[]).unwrap();
        check(Layout::Public, "core_grades", &["public/grade/lib.php"], &[]).unwrap();
        check(Layout::Classic, "core_access", &["lib/accesslib.php"], &[]).unwrap();
        let e = check(Layout::Classic, "nosuch_plugin", &["x.php"], &[]).unwrap_err();
        assert!(e.to_string().contains("component nosuch_plugin is not a plugin type or subsystem that the built-in map knows"), "{e}");
    }

    #[test]
    fn site_local_files_are_never_written_or_deleted() {
        for (layout, path) in [
            (Layout::Classic, "config.php"),
            (Layout::Public, "config.php"),
            (Layout::Public, "public/config.php"),
            (Layout::Classic, ".htaccess"),
            (Layout::Classic, "mod/quiz/.htaccess"),
            (Layout::Public, "public/.user.ini"),
            (Layout::Classic, "local/custom/lib.php"),
            (Layout::Public, "public/local/custom/lib.php"),
        ] {
            for component in ["core", "mod_quiz"] {
                let e = check(layout, component, &[path], &[]).unwrap_err();
                assert!(matches!(e, PathRefusal::SiteLocal { .. }), "{path} {component}: {e}");
                assert!(e.to_string().starts_with(&format!("{path} is a site-local file")), "{e}");
                let e = check(layout, component, &[], &[path]).unwrap_err();
                assert!(matches!(e, PathRefusal::SiteLocal { .. }), "delete {path}: {e}");
            }
        }
        // A local plugin may change its own folder, not another's.
        check(Layout::Classic, "local_custom", &["local/custom/lib.php"], &[]).unwrap();
        check(Layout::Public, "local_custom", &["public/local/custom/lib.php"], &[]).unwrap();
        assert!(matches!(check(Layout::Classic, "local_custom", &["local/other/lib.php"], &[]), Err(PathRefusal::SiteLocal { .. })));
        // theme/boost/config.php is code, not the site's configuration.
        check(Layout::Classic, "theme_boost", &["theme/boost/config.php"], &[]).unwrap();
    }
}
