//! The demo's story, as data: the three platforms and their contracts, the example bundles,
//! and what the release manager does when, in simulated time from [`START`].
//!
//! Everything here is fixed, so the demo tells the same story on every run.

/// The platforms' time zone; every time the demo prints is wall-clock time there.
pub const ZONE: &str = "Europe/Paris";

/// The demo's "now" when it starts: Monday 30 November 2026, 09:00 in Paris.
pub const START: &str = "2026-11-30T09:00:00+01:00";

/// The simulated week lasts this many hours; each agent runs once at every hour of it,
/// from [`START`] to `START + HOURS` included.
pub const HOURS: i64 = 7 * 24;

/// The test datasets a bundle is qualified on (stability levels 2 and 3 need two).
pub const DATASETS: [&str; 2] = ["big-univ", "small-school"];

/// A platform of the demo and its service contract.
#[derive(Debug, Clone, Copy)]
pub struct Platform {
    pub id: &'static str,
    pub improvement: u8,
    pub stability: u8,
    /// Improvement level 2: the components its contract lists.
    pub components: &'static [&'static str],
    /// Stability level 2: the negotiated windows.
    pub windows: &'static [&'static str],
    /// Stability level 3: the maintenance calendar's slots.
    pub calendar: &'static [&'static str],
    /// Stability levels 2 and 3: how long before a window the users are told.
    pub notice: &'static str,
}

pub const PLATFORMS: [Platform; 3] = [
    Platform { id: "univ-a", improvement: 1, stability: 1, components: &[], windows: &[], calendar: &[], notice: "" },
    Platform {
        id: "univ-b",
        improvement: 2,
        stability: 2,
        components: &["mod_quiz", "mod_assign", "theme_boost"],
        windows: &["Tue 22:00-23:30", "Thu 22:00-23:30"],
        calendar: &[],
        notice: "2h",
    },
    Platform {
        id: "univ-c",
        improvement: 3,
        stability: 3,
        components: &[],
        windows: &[],
        calendar: &["2026-12-05T21:00/2026-12-06T01:00"],
        notice: "24h",
    },
];

/// The platform that reports a defect (its fix request), and what it says.
pub const REPORTER: &str = "univ-a";
pub const REPORT_COMPONENT: &str = "mod_quiz";
pub const REPORT_SUMMARY: &str = "Quiz timers drift when the server clock jumps";

/// An example bundle of `manifests/bundles/`, compiled into the binary so the demo runs
/// from anywhere.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// The folder name, which is the bundle id.
    pub id: &'static str,
    pub manifest: &'static str,
    /// `(path under files/, content)`.
    pub files: &'static [(&'static str, &'static str)],
}

macro_rules! example {
    ($id:literal, [$($file:literal),* $(,)?]) => {
        Example {
            id: $id,
            manifest: include_str!(concat!("../../manifests/bundles/", $id, "/bundle.toml")),
            files: &[$(($file, include_str!(concat!("../../manifests/bundles/", $id, "/files/", $file)))),*],
        }
    };
}

pub const EXAMPLES: [Example; 7] = [
    example!("mod_quiz-timer-drift", ["mod/quiz/classes/timer.php"]),
    example!("mod_assign-grading-speedup", ["mod/assign/db/upgrade.php"]),
    example!("mod_forum-digest-options", ["mod/forum/classes/digest.php"]),
    example!("theme_boost-new-nav", ["theme/boost/templates/navbar.mustache"]),
    example!("core-session-cleanup", ["lib/classes/session/cleanup.php"]),
    example!("core-gradebook-rework", ["grade/classes/categories.php"]),
    example!("mod_quiz-broken-login", ["mod/quiz/lib.php"]),
];

/// Something the release manager does (with `palier-server`), or a platform's fix request.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// [`REPORTER`] files a fix request from its platform (`palier-agent request-fix`).
    RequestFix,
    /// `palier-server publish --db`: a manifest whose `fixes` names a fix request is linked to
    /// it, and its platform becomes a reporter of the bundle.
    Publish { id: &'static str },
    /// `palier-server validate --alpha` and/or `--dataset` for each of `datasets`.
    Validate { id: &'static str, alpha: bool, datasets: &'static [&'static str] },
}

/// The bundle of [`REPORTER`]'s defect report (its manifest says `fixes = ["FR-1"]`).
pub const REPORTED_FIX: &str = "mod_quiz-timer-drift";

/// An action at `hour` hours after [`START`], with who does it and the sentence that tells
/// it in the week's log (none for the publications listed in the bundles table; the fix
/// request's sentence is made when it is filed, with the id the control plane gave it).
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub hour: i64,
    pub who: &'static str,
    pub action: Action,
    pub story: &'static str,
}

const RM: &str = "release manager";

const fn quiet(action: Action) -> Event {
    Event { hour: 0, who: RM, action, story: "" }
}

pub const EVENTS: &[Event] = &[
    // Before the week: the roadmap and earlier reports, at various stages of validation.
    quiet(Action::Publish { id: "mod_assign-grading-speedup" }),
    quiet(Action::Validate { id: "mod_assign-grading-speedup", alpha: true, datasets: &DATASETS }),
    quiet(Action::Publish { id: "core-session-cleanup" }),
    quiet(Action::Validate { id: "core-session-cleanup", alpha: true, datasets: &DATASETS }),
    quiet(Action::Publish { id: "mod_forum-digest-options" }),
    quiet(Action::Validate { id: "mod_forum-digest-options", alpha: true, datasets: &[] }),
    quiet(Action::Publish { id: "theme_boost-new-nav" }),
    quiet(Action::Validate { id: "theme_boost-new-nav", alpha: true, datasets: &[] }),
    quiet(Action::Publish { id: "core-gradebook-rework" }),
    // Monday 09:00: a platform reports a defect; its fix is ready and passed the alpha team.
    Event { hour: 0, who: REPORTER, action: Action::RequestFix, story: "" },
    Event {
        hour: 0,
        who: RM,
        action: Action::Publish { id: REPORTED_FIX },
        story: "publishes its fix, mod_quiz-timer-drift@1.0.1, whose manifest says `fixes = [\"FR-1\"]`: the control plane \
                links FR-1 to it and the signed metadata lists univ-a as a reporter. Validated by the alpha team only.",
    },
    quiet(Action::Validate { id: REPORTED_FIX, alpha: true, datasets: &[] }),
    Event {
        hour: 6,
        who: RM,
        action: Action::Validate { id: REPORTED_FIX, alpha: false, datasets: &DATASETS },
        story: "records that mod_quiz-timer-drift@1.0.1 passed qualification on 2 test datasets (big-univ, small-school).",
    },
    Event {
        hour: 48,
        who: RM,
        action: Action::Publish { id: "mod_quiz-broken-login" },
        story: "publishes mod_quiz-broken-login@1.0.0 (technical, mod_quiz) and records alpha + 2 datasets. \
                Unknown to everyone, it breaks the login page on some sites.",
    },
    Event { hour: 48, who: RM, action: Action::Validate { id: "mod_quiz-broken-login", alpha: true, datasets: &DATASETS }, story: "" },
];
