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
use crate::names::{Component, RelPath};

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
    if let Some(why) = always_site_local(path) {
        return Some(why);
    }
    let own = matches!(owner, Owner::Folder(folder) if under(path, folder));
    if is_local(path) && !own {
        return Some("the site's own customisations under local/, owned by no bundle but their plugin's");
    }
    None
}

/// Why `path` is a site-local file whatever the bundle's component, if it is one.
fn always_site_local(path: &str) -> Option<&'static str> {
    if path == "config.php" || path == "public/config.php" {
        return Some("the site's own configuration");
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    if name == ".htaccess" || name == ".user.ini" {
        return Some("this host's web server and PHP settings");
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
/// from, for the message): [`PathSummary::check`] over the manifest's paths.
pub fn check_paths(manifest: &Manifest, layout: Layout, map: &ComponentMap, map_source: &str) -> Result<(), PathRefusal> {
    PathSummary::of(manifest.paths()).check(&manifest.component, layout, map, map_source)
}

/// How many `version.php` paths a [`PathSummary`] lists; a bundle with more is said to have
/// more (`version_files_more`), which counts as a database change.
pub const MAX_VERSION_FILES: usize = 8;

/// What the checks a site runs before download need of a bundle's paths, in a few paths
/// whatever their number: signed in the bundle's metadata (format 2) instead of the file list.
///
/// [`PathSummary::check`] decides exactly as checking every path would: the paths under a
/// folder `F/` are contiguous in path order, so they all lie under `F/` exactly when the
/// first and the last do; a site-local file, a path under `local/` and a path that does not
/// fit a layout are each kept as the first such path. `version_files` are the paths named
/// `version.php` (core's or a plugin's, which make Moodle upgrade), read against the site's
/// layout by the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathSummary {
    /// The first and the last path, in path order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<RelPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<RelPath>,
    /// The first path that is site-local whatever the component (`config.php`, `.htaccess`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_local: Option<RelPath>,
    /// The first path under `local/` or `public/local/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<RelPath>,
    /// The first path a 4.x site cannot hold, and the first a 5.1+ site cannot hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_classic: Option<RelPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_public: Option<RelPath>,
    /// The paths whose last segment is `version.php`, at most [`MAX_VERSION_FILES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub version_files: Vec<RelPath>,
    /// More `version.php` paths than [`MAX_VERSION_FILES`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub version_files_more: bool,
}

impl PathSummary {
    /// The summary of `paths` (in any order).
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a RelPath>) -> PathSummary {
        let mut sorted: Vec<&RelPath> = paths.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let first_where = |f: &dyn Fn(&str) -> bool| sorted.iter().find(|p| f(p.as_str())).map(|p| (*p).clone());
        let versions: Vec<&RelPath> = sorted.iter().copied().filter(|p| p.as_str() == "version.php" || p.as_str().ends_with("/version.php")).collect();
        PathSummary {
            first: sorted.first().map(|p| (*p).clone()),
            last: sorted.last().map(|p| (*p).clone()),
            site_local: first_where(&|p| always_site_local(p).is_some()),
            local: first_where(&is_local),
            not_classic: first_where(&|p| !Layout::Classic.fits(p)),
            not_public: first_where(&|p| !Layout::Public.fits(p)),
            version_files_more: versions.len() > MAX_VERSION_FILES,
            version_files: versions.into_iter().take(MAX_VERSION_FILES).cloned().collect(),
        }
    }

    /// The checks of [`check_paths`] for a bundle of `component`: site-local files first,
    /// then the layout, then the component's folder; the first refusal is returned.
    pub fn check(&self, component: &Component, layout: Layout, map: &ComponentMap, map_source: &str) -> Result<(), PathRefusal> {
        let owner = map.owner(component).ok_or_else(|| PathRefusal::UnknownComponent { component: component.to_string(), source_of_map: map_source.to_owned() })?;
        let local = |p: &RelPath| site_local(p.as_str(), &owner).map(|why| PathRefusal::SiteLocal { path: p.to_string(), why });
        if let Some(refusal) = self.site_local.iter().chain(&self.local).find_map(local) {
            return Err(refusal);
        }
        let misfit = match layout {
            Layout::Classic => &self.not_classic,
            Layout::Public => &self.not_public,
        };
        if let Some(path) = misfit {
            let hint = match layout {
                Layout::Classic => "a 4.x site has no public/ folder: this is a 5.1+ bundle",
                Layout::Public => "a 5.1+ site keeps its web code under public/: this is a 4.x bundle",
            };
            return Err(PathRefusal::Layout { path: path.to_string(), layout, hint });
        }
        if let Owner::Folder(folder) = &owner
            && let Some(outside) = self.first.iter().chain(&self.last).find(|p| !under(p.as_str(), folder))
        {
            // A path under local/ outside the plugin's own folder is the site's.
            if let Some(refusal) = local(outside) {
                return Err(refusal);
            }
            return Err(PathRefusal::OutsideComponent { path: outside.to_string(), component: component.to_string(), folder: folder.clone() });
        }
        Ok(())
    }
}

/// Whether `path` is inside `folder` (`folder/...`).
fn under(path: &str, folder: &str) -> bool {
    path.strip_prefix(folder).is_some_and(|rest| rest.starts_with('/'))
}

/// Under `local/` (or `public/local/` from 5.1).
fn is_local(path: &str) -> bool {
    path.starts_with("local/") || path.starts_with("public/local/")
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

    /// Every path checked one by one, in order: the rule the summary must decide as.
    fn check_each(paths: &[&str], component: &str, layout: Layout, map: &ComponentMap) -> Result<(), PathRefusal> {
        let owner = map.owner(&Component::new(component).unwrap()).unwrap();
        for path in paths {
            if let Some(why) = site_local(path, &owner) {
                return Err(PathRefusal::SiteLocal { path: (*path).to_owned(), why });
            }
            if !layout.fits(path) {
                return Err(PathRefusal::Layout { path: (*path).to_owned(), layout, hint: "" });
            }
            if let Owner::Folder(folder) = &owner
                && !path.starts_with(&format!("{folder}/"))
            {
                return Err(PathRefusal::OutsideComponent { path: (*path).to_owned(), component: component.into(), folder: folder.clone() });
            }
        }
        Ok(())
    }

    /// The few paths of a [`PathSummary`] decide every check exactly as every path would,
    /// with the same kind of refusal, for every set of up to three paths of a sample that
    /// crosses each rule, each component and each layout.
    #[test]
    fn the_path_summary_decides_as_every_path_would() {
        let sample = [
            "mod/quiz/view.php", "mod/quiz/version.php", "mod/quizz/x.php", "mod/quiz/.htaccess", "mod/forum/a.php", "public/mod/quiz/view.php",
            "public/mod/quiz/.user.ini", "config.php", "public/config.php", "local/custom/lib.php", "local/other/a.php", "public/local/custom/b.php",
            "lib/setup.php", "lib/classes/a.php", "admin/cli/x.php", "vendor/a/b.php", "version.php", "a", "z/z.php",
        ];
        let mut sets: Vec<Vec<&str>> = Vec::new();
        for (i, a) in sample.iter().enumerate() {
            sets.push(vec![a]);
            for (j, b) in sample.iter().enumerate().skip(i + 1) {
                sets.push(vec![a, b]);
                for c in sample.iter().skip(j + 1) {
                    sets.push(vec![a, b, c]);
                }
            }
        }
        let kind = |r: &Result<(), PathRefusal>| match r {
            Ok(()) => "ok",
            Err(PathRefusal::SiteLocal { .. }) => "site-local",
            Err(PathRefusal::Layout { .. }) => "layout",
            Err(PathRefusal::OutsideComponent { .. }) => "outside",
            Err(PathRefusal::UnknownComponent { .. }) => "unknown",
            Err(PathRefusal::Mixed { .. }) => "mixed",
        };
        let mut refusals = 0;
        for layout in [Layout::Classic, Layout::Public] {
            let map = ComponentMap::builtin(layout);
            for component in ["mod_quiz", "local_custom", "core", "core_admin"] {
                for set in &sets {
                    let paths: Vec<RelPath> = set.iter().map(|p| RelPath::new(*p).unwrap()).collect();
                    let summary = PathSummary::of(&paths);
                    let by_summary = summary.check(&Component::new(component).unwrap(), layout, &map, "the built-in map");
                    let mut sorted = set.clone();
                    sorted.sort();
                    let by_each = check_each(&sorted, component, layout, &map);
                    assert_eq!(by_summary.is_ok(), by_each.is_ok(), "{set:?} {component} {layout}: {by_summary:?} / {by_each:?}");
                    if by_each.is_err() {
                        refusals += 1;
                        // The refusal names a path of the bundle.
                        let named = by_summary.as_ref().unwrap_err().to_string();
                        assert!(set.iter().any(|p| named.starts_with(p)), "{set:?}: {named}");
                        // Site-local paths are said as such whichever comes first.
                        if kind(&by_each) == "site-local" && set.iter().all(|p| site_local(p, &ComponentMap::builtin(layout).owner(&Component::new(component).unwrap()).unwrap()).is_some()) {
                            assert_eq!(kind(&by_summary), "site-local", "{set:?} {component}");
                        }
                    }
                }
            }
        }
        assert!(refusals > 1000, "the sample crosses the rules: {refusals}");
    }
}
