//! Which Moodle component owns which folder.
//!
//! Moodle says it itself in `lib/components.json` (at the code root in every layout): plugin
//! types and core subsystems map to folders relative to the code root (`"mod": "public/mod"`
//! from 5.1, `"mod": "mod"` before). A plugin's own subplugin types are in its
//! `db/subplugins.json`: `subplugintypes` maps a type to a folder relative to the plugin's
//! folder (5.1+), the older `plugintypes` to a folder relative to the web root.
//!
//! [`ComponentMap::from_components_json`] reads the first, [`ComponentMap::add_subplugins`]
//! the second, and [`ComponentMap::builtin`] is Moodle's standard map for a layout (what
//! `bundle build` and `publish` use when the source tree carries no `lib/components.json`).
//! Pure: the callers read the files.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::layout::Layout;
use crate::names::Component;

/// Why a `components.json` or `subplugins.json` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComponentsError {
    #[error("not Moodle's components.json: {0}")]
    ComponentsJson(String),
    #[error("not a Moodle db/subplugins.json: {0}")]
    SubpluginsJson(String),
    #[error("folder {folder:?} for {what} is not a relative path inside the code root")]
    BadFolder { what: String, folder: String },
}

/// Where a component's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Anywhere in the code root (`core`, and core subsystems without a folder of their own,
    /// such as `core_access`, whose code lives in `lib/`).
    Anywhere,
    /// Inside this folder, relative to the code root.
    Folder(String),
}

/// Plugin types and subsystems mapped to folders relative to the code root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComponentMap {
    plugintypes: BTreeMap<String, String>,
    subsystems: BTreeMap<String, Option<String>>,
    /// Prefix of the web root inside the code root: `public/` from 5.1, empty before.
    webroot: String,
}

#[derive(Deserialize)]
struct ComponentsJson {
    plugintypes: BTreeMap<String, String>,
    subsystems: BTreeMap<String, Option<String>>,
    #[serde(default, rename = "deprecatedplugintypes")]
    deprecated: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct SubpluginsJson {
    #[serde(default)]
    subplugintypes: Option<BTreeMap<String, String>>,
    #[serde(default)]
    plugintypes: Option<BTreeMap<String, String>>,
}

/// Moodle's standard plugin types and subsystems, folders as in a 4.x code root.
const STANDARD_PLUGINTYPES: &[(&str, &str)] = &[
    ("aiplacement", "ai/placement"),
    ("aiprovider", "ai/provider"),
    ("antivirus", "lib/antivirus"),
    ("auth", "auth"),
    ("availability", "availability/condition"),
    ("block", "blocks"),
    ("cachelock", "cache/locks"),
    ("cachestore", "cache/stores"),
    ("calendartype", "calendar/type"),
    ("communication", "communication/provider"),
    ("contenttype", "contentbank/contenttype"),
    ("coursereport", "course/report"),
    ("customfield", "customfield/field"),
    ("dataformat", "dataformat"),
    ("editor", "lib/editor"),
    ("enrol", "enrol"),
    ("fileconverter", "files/converter"),
    ("filter", "filter"),
    ("format", "course/format"),
    ("gradeexport", "grade/export"),
    ("gradeimport", "grade/import"),
    ("gradepenalty", "grade/penalty"),
    ("gradereport", "grade/report"),
    ("gradingform", "grade/grading/form"),
    ("h5plib", "h5p/h5plib"),
    ("local", "local"),
    ("media", "media/player"),
    ("message", "message/output"),
    ("mlbackend", "lib/mlbackend"),
    ("mnetservice", "mnet/service"),
    ("mod", "mod"),
    ("paygw", "payment/gateway"),
    ("plagiarism", "plagiarism"),
    ("portfolio", "portfolio"),
    ("profilefield", "user/profile/field"),
    ("qbank", "question/bank"),
    ("qbehaviour", "question/behaviour"),
    ("qformat", "question/format"),
    ("qtype", "question/type"),
    ("report", "report"),
    ("repository", "repository"),
    ("search", "search/engine"),
    ("smsgateway", "sms/gateway"),
    ("theme", "theme"),
    ("tool", "admin/tool"),
    ("webservice", "webservice"),
    // Subplugin types of the standard plugins (their db/subplugins.json).
    ("assignfeedback", "mod/assign/feedback"),
    ("assignsubmission", "mod/assign/submission"),
    ("atto", "lib/editor/atto/plugins"),
    ("booktool", "mod/book/tool"),
    ("datafield", "mod/data/field"),
    ("datapreset", "mod/data/preset"),
    ("forumreport", "mod/forum/report"),
    ("logstore", "admin/tool/log/store"),
    ("ltiservice", "mod/lti/service"),
    ("ltisource", "mod/lti/source"),
    ("quiz", "mod/quiz/report"),
    ("quizaccess", "mod/quiz/accessrule"),
    ("tiny", "lib/editor/tiny/plugins"),
    ("workshopallocation", "mod/workshop/allocation"),
    ("workshopeval", "mod/workshop/eval"),
    ("workshopform", "mod/workshop/form"),
];

/// Moodle's core subsystems and their folders as in a 4.x code root (`None`: no folder).
const STANDARD_SUBSYSTEMS: &[(&str, Option<&str>)] = &[
    ("access", None),
    ("admin", Some("admin")),
    ("adminpresets", Some("admin/presets")),
    ("ai", Some("ai")),
    ("analytics", Some("analytics")),
    ("antivirus", Some("lib/antivirus")),
    ("auth", Some("auth")),
    ("availability", Some("availability")),
    ("backup", Some("backup/util/ui")),
    ("badges", Some("badges")),
    ("block", Some("blocks")),
    ("blog", Some("blog")),
    ("cache", Some("cache")),
    ("calendar", Some("calendar")),
    ("cohort", Some("cohort")),
    ("comment", Some("comment")),
    ("communication", Some("communication")),
    ("competency", Some("competency")),
    ("completion", Some("completion")),
    ("contentbank", Some("contentbank")),
    ("course", Some("course")),
    ("courseformat", Some("course/format")),
    ("customfield", Some("customfield")),
    ("editor", Some("lib/editor")),
    ("enrol", Some("enrol")),
    ("external", Some("lib/external")),
    ("favourites", Some("favourites")),
    ("fileconverter", Some("files/converter")),
    ("files", Some("files")),
    ("filters", Some("filter")),
    ("form", Some("lib/form")),
    ("grades", Some("grade")),
    ("grading", Some("grade/grading")),
    ("group", Some("group")),
    ("h5p", Some("h5p")),
    ("media", Some("media")),
    ("message", Some("message")),
    ("mnet", Some("mnet")),
    ("my", Some("my")),
    ("notes", Some("notes")),
    ("payment", Some("payment")),
    ("plagiarism", Some("plagiarism")),
    ("portfolio", Some("portfolio")),
    ("privacy", Some("privacy")),
    ("question", Some("question")),
    ("rating", Some("rating")),
    ("report", Some("report")),
    ("reportbuilder", Some("reportbuilder")),
    ("repository", Some("repository")),
    ("role", Some("admin/roles")),
    ("rss", Some("rss")),
    ("search", Some("search")),
    ("sms", Some("sms")),
    ("table", Some("lib/table")),
    ("tag", Some("tag")),
    ("user", Some("user")),
    ("userkey", Some("lib/userkey")),
    ("webservice", Some("webservice")),
    ("xapi", Some("lib/xapi")),
];

fn check_folder(what: &str, folder: &str) -> Result<String, ComponentsError> {
    let folder = folder.trim_end_matches('/');
    let bad = folder.is_empty() || folder.starts_with('/') || folder.contains('\\') || folder.split('/').any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        return Err(ComponentsError::BadFolder { what: what.to_owned(), folder: folder.to_owned() });
    }
    Ok(folder.to_owned())
}

impl ComponentMap {
    /// Moodle's standard plugin types and subsystems for `layout`.
    pub fn builtin(layout: Layout) -> ComponentMap {
        let web = layout.webroot();
        ComponentMap {
            plugintypes: STANDARD_PLUGINTYPES.iter().map(|(t, f)| ((*t).to_owned(), format!("{web}{f}"))).collect(),
            subsystems: STANDARD_SUBSYSTEMS.iter().map(|(s, f)| ((*s).to_owned(), f.map(|f| format!("{web}{f}")))).collect(),
            webroot: web.to_owned(),
        }
    }

    /// The map of a site's or a source tree's `lib/components.json`, whose folders are
    /// relative to the code root (so they carry `public/` in the 5.1+ layout).
    pub fn from_components_json(text: &str, layout: Layout) -> Result<ComponentMap, ComponentsError> {
        let raw: ComponentsJson = serde_json::from_str(text).map_err(|e| ComponentsError::ComponentsJson(e.to_string()))?;
        let mut map = ComponentMap { webroot: layout.webroot().to_owned(), ..ComponentMap::default() };
        for (t, f) in raw.deprecated.into_iter().chain(raw.plugintypes) {
            let folder = check_folder(&format!("plugin type {t}"), &f)?;
            map.plugintypes.insert(t, folder);
        }
        for (s, f) in raw.subsystems {
            let folder = f.map(|f| check_folder(&format!("subsystem {s}"), &f)).transpose()?;
            map.subsystems.insert(s, folder);
        }
        Ok(map)
    }

    /// Add the subplugin types of the plugin whose folder (relative to the code root) is
    /// `plugin_folder`, from the text of its `db/subplugins.json`. Types already known keep
    /// their folder.
    pub fn add_subplugins(&mut self, plugin_folder: &str, text: &str) -> Result<(), ComponentsError> {
        let raw: SubpluginsJson = serde_json::from_str(text).map_err(|e| ComponentsError::SubpluginsJson(e.to_string()))?;
        let types: Vec<(String, String)> = match (raw.subplugintypes, raw.plugintypes) {
            (Some(rel), _) => rel.into_iter().map(|(t, f)| (t, format!("{}/{f}", plugin_folder.trim_end_matches('/')))).collect(),
            (None, Some(web)) => web.into_iter().map(|(t, f)| (t, format!("{}{f}", self.webroot))).collect(),
            (None, None) => Vec::new(),
        };
        for (t, f) in types {
            let folder = check_folder(&format!("subplugin type {t}"), &f)?;
            self.plugintypes.entry(t).or_insert(folder);
        }
        Ok(())
    }

    /// The folders of every plugin type, relative to the code root (to look for plugins'
    /// `db/subplugins.json`).
    pub fn plugintype_folders(&self) -> impl Iterator<Item = &str> {
        self.plugintypes.values().map(String::as_str)
    }

    /// Where `component`'s files live; `None` for a plugin type or subsystem this map does
    /// not know.
    pub fn owner(&self, component: &Component) -> Option<Owner> {
        let name = component.as_str();
        if name == "core" {
            return Some(Owner::Anywhere);
        }
        let (kind, rest) = name.split_once('_')?;
        if kind == "core" {
            return match self.subsystems.get(rest)? {
                Some(folder) => Some(Owner::Folder(folder.clone())),
                None => Some(Owner::Anywhere),
            };
        }
        self.plugintypes.get(kind).map(|folder| Owner::Folder(format!("{folder}/{rest}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn c(s: &str) -> Component {
        Component::new(s).unwrap()
    }

    /// An excerpt of Moodle 5.1's lib/components.json, as shipped.
    const COMPONENTS_51: &str = r#"{
    "plugintypes": {
        "mod": "public/mod",
        "theme": "public/theme",
        "tool": "public/admin/tool",
        "local": "public/local"
    },
    "subsystems": {
        "access": null,
        "grades": "public/grade",
        "payment" : "public/payment"
    },
    "deprecatedplugintypes":
    {
        "mnetservice": "public/mnet/service"
    }
}"#;

    #[test]
    fn reads_moodle_5_1_components_json() {
        let map = ComponentMap::from_components_json(COMPONENTS_51, Layout::Public).unwrap();
        assert_eq!(map.owner(&c("mod_quiz")), Some(Owner::Folder("public/mod/quiz".into())));
        assert_eq!(map.owner(&c("tool_task")), Some(Owner::Folder("public/admin/tool/task".into())));
        assert_eq!(map.owner(&c("mnetservice_enrol")), Some(Owner::Folder("public/mnet/service/enrol".into())));
        assert_eq!(map.owner(&c("core_grades")), Some(Owner::Folder("public/grade".into())));
        assert_eq!(map.owner(&c("core_access")), Some(Owner::Anywhere));
        assert_eq!(map.owner(&c("core")), Some(Owner::Anywhere));
        assert_eq!(map.owner(&c("block_html")), None, "not in the excerpt");
        assert_eq!(map.owner(&c("core_nosuch")), None);
    }

    #[test]
    fn subplugins_in_both_forms() {
        let mut map = ComponentMap::from_components_json(COMPONENTS_51, Layout::Public).unwrap();
        // Moodle 5.1's mod/quiz/db/subplugins.json carries both; the relative form wins.
        let quiz = r#"{"subplugintypes": {"quiz": "report", "quizaccess": "accessrule"},
                       "plugintypes": {"quiz": "mod/quiz/report", "quizaccess": "mod/quiz/accessrule"}}"#;
        map.add_subplugins("public/mod/quiz", quiz).unwrap();
        assert_eq!(map.owner(&c("quiz_statistics")), Some(Owner::Folder("public/mod/quiz/report/statistics".into())));
        assert_eq!(map.owner(&c("quizaccess_seb")), Some(Owner::Folder("public/mod/quiz/accessrule/seb".into())));
        // The older form alone: relative to the web root.
        map.add_subplugins("public/mod/book", r#"{"plugintypes": {"booktool": "mod/book/tool"}}"#).unwrap();
        assert_eq!(map.owner(&c("booktool_print")), Some(Owner::Folder("public/mod/book/tool/print".into())));
        assert!(map.add_subplugins("public/mod/x", "{").is_err());
        assert!(map.add_subplugins("public/mod/x", r#"{"subplugintypes": {"x": "../../../etc"}}"#).is_err());
    }

    #[test]
    fn builtin_maps_for_both_layouts() {
        let classic = ComponentMap::builtin(Layout::Classic);
        let public = ComponentMap::builtin(Layout::Public);
        assert_eq!(classic.owner(&c("mod_quiz")), Some(Owner::Folder("mod/quiz".into())));
        assert_eq!(public.owner(&c("mod_quiz")), Some(Owner::Folder("public/mod/quiz".into())));
        assert_eq!(public.owner(&c("theme_boost")), Some(Owner::Folder("public/theme/boost".into())));
        assert_eq!(classic.owner(&c("quizaccess_seb")), Some(Owner::Folder("mod/quiz/accessrule/seb".into())));
        assert_eq!(classic.owner(&c("core_grades")), Some(Owner::Folder("grade".into())));
        assert_eq!(classic.owner(&c("nosuchtype_x")), None);
    }

    #[test]
    fn refuses_what_is_not_a_components_json() {
        for bad in ["", "[]", "{\"plugintypes\": {}}", r#"{"plugintypes": {"mod": "/etc"}, "subsystems": {}}"#, r#"{"plugintypes": {"mod": "a/../b"}, "subsystems": {}}"#] {
            assert!(ComponentMap::from_components_json(bad, Layout::Classic).is_err(), "{bad}");
        }
    }
}
