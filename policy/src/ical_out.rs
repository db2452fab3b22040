//! An RFC 5545 iCalendar writer for the agent's `calendar` command (SPEC 5: "the coming
//! interventions and notices as an iCalendar document"), which a calendar application can
//! subscribe to.
//!
//! [`from_plan`] turns a [`Plan`] into [`Event`]s; [`calendar`] writes them as one
//! `VCALENDAR` document. Pure: `now` is passed in, nothing is read or written.
//!
//! The document, as RFC 5545 asks and as subscribers expect:
//!
//! - content lines end with CRLF and are folded at 75 octets (never inside a UTF-8
//!   character), continuation lines starting with one space (3.1);
//! - TEXT values escape `\`, `;`, `,` and newlines (3.3.11); other control characters,
//!   which TEXT cannot hold, are dropped;
//! - `VERSION:2.0`, `PRODID`, `CALSCALE:GREGORIAN`, `METHOD:PUBLISH`, the de facto
//!   `X-WR-CALNAME`/`X-WR-CALDESC`, and a one-hour refresh hint (`REFRESH-INTERVAL` of
//!   RFC 7986 and its de facto twin `X-PUBLISHED-TTL`): a plan changes when bundles are
//!   published, and subscribers otherwise refresh as rarely as once a day;
//! - every time in UTC (`YYYYMMDDTHHMMSSZ`, whole seconds), so no `VTIMEZONE` is needed
//!   and each calendar application shows its user's own zone;
//! - events sorted by start, with UIDs that depend only on what the event is (platform,
//!   kind, start, bundles), so a refreshed subscription updates events instead of
//!   duplicating them.
//!
//! A calendar with no event is written as an empty `VCALENDAR`. RFC 5545's grammar asks
//! for at least one component, but subscribing applications accept an empty feed, and an
//! invented placeholder event would tell the operator something false.

use std::collections::BTreeMap;

use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp, Zoned};
use sha2::{Digest, Sha256};

use crate::{Decision, DecisionKind, Level, Plan, rfc3339};

/// How long an intervention event lasts in the calendar. The plan gives when an
/// intervention starts, not how long the window or slot it starts is (a [`Decision`]
/// carries `apply_at` only), nor how long the apply will take; 30 minutes is the estimate
/// shown, and the event's description says it is one.
pub const ESTIMATED_INTERVENTION: SignedDuration = SignedDuration::from_mins(30);

/// How long a notice event lasts: the notice goes out at an instant (the agent runs the
/// notice hook), shown as a short event so calendar applications display it at all. Cut
/// short if the intervention starts sooner.
pub const NOTICE_EVENT: SignedDuration = SignedDuration::from_mins(15);

/// `PRODID` of every document this module writes.
pub const PRODID: &str = "-//palier//palier calendar//EN";

/// Category of every event, then one of [`INTERVENTION`] or [`NOTICE`].
pub const CATEGORY: &str = "palier";
/// Category of an intervention event.
pub const INTERVENTION: &str = "intervention";
/// Category of a notice event.
pub const NOTICE: &str = "notice";

/// RFC 5545 3.1: "Lines of text SHOULD NOT be longer than 75 octets, excluding the line break."
const MAX_LINE_OCTETS: usize = 75;

/// One `VEVENT`. `summary`, `description` and `categories` are plain text: [`calendar`] escapes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub uid: String,
    pub start: Timestamp,
    /// Written as `DTEND` when it is after `start` (in whole seconds); otherwise `DTEND` is
    /// left out, which RFC 5545 3.6.1 reads as an event ending when it starts.
    pub end: Timestamp,
    pub summary: String,
    pub description: String,
    pub categories: Vec<String>,
}

/// The iCalendar document of `platform`'s `events`, stamped `now` (`DTSTAMP`).
///
/// Events are written sorted by start, then end, then UID. An event whose start cannot be
/// written as an iCalendar date (a year before 0000) is left out.
pub fn calendar(platform: &str, now: Timestamp, events: &[Event]) -> String {
    let mut out = String::new();
    let mut line = |name: &str, value: &str| content_line(&mut out, name, value);
    line("BEGIN", "VCALENDAR");
    line("VERSION", "2.0");
    line("PRODID", &escape_text(PRODID));
    line("CALSCALE", "GREGORIAN");
    line("METHOD", "PUBLISH");
    line("X-WR-CALNAME", &escape_text(&format!("palier {platform}")));
    line("X-WR-CALDESC", &escape_text(&format!("Coming palier interventions and users' notices on {platform}")));
    line("REFRESH-INTERVAL;VALUE=DURATION", "PT1H");
    line("X-PUBLISHED-TTL", "PT1H");

    let stamp = utc(now).unwrap_or_else(|| "19700101T000000Z".into());
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by(|a, b| (a.start, a.end, &a.uid).cmp(&(b.start, b.end, &b.uid)));
    for e in sorted {
        let Some(start) = utc(e.start) else { continue };
        line("BEGIN", "VEVENT");
        line("UID", &escape_text(&e.uid));
        line("DTSTAMP", &stamp);
        line("DTSTART", &start);
        // After the start, so its year is within 0000-9999 too.
        if e.end.as_second() > e.start.as_second()
            && let Some(end) = utc(e.end)
        {
            line("DTEND", &end);
        }
        line("SUMMARY", &escape_text(&e.summary));
        if !e.description.is_empty() {
            line("DESCRIPTION", &escape_text(&e.description));
        }
        let categories: Vec<String> = e.categories.iter().filter(|c| !c.is_empty()).map(|c| escape_text(c)).collect();
        if !categories.is_empty() {
            line("CATEGORIES", &categories.join(","));
        }
        line("END", "VEVENT");
    }
    line("END", "VCALENDAR");
    out
}

/// The coming interventions and notices of `plan` that overlap `[now, now + horizon]`
/// (an event running at `now` is kept), sorted by start.
///
/// - **Intervention**: one event per distinct `apply_at` of the eligible bundles (bundles
///   without an `apply_at` have no time to show). Bundles that share an `apply_at` are one
///   event listing them all in its description: at stability 2 they are staged together
///   and swapped in one operation, and at any level they happen at the same moment. It
///   lasts [`ESTIMATED_INTERVENTION`].
/// - **Notice**: for an intervention whose bundles have a `notice_at` (stability 2 and 3),
///   one event at the earliest of them (the policy gives every bundle of a plan the same
///   one), lasting [`NOTICE_EVENT`] or until the intervention, whichever is sooner.
///
/// `platform` names the platform in summaries, descriptions and UIDs; callers pass the
/// plan's own (`plan.platform.as_str()`), the same name they give [`calendar`]. UIDs are
/// `<kind>-<start UTC>-<hash>@<platform>.palier`,
/// the hash covering the platform, the kind, the start and the sorted `id@version` of the
/// bundles: the same intervention keeps its UID from one refresh to the next, and a
/// change of time or of bundles is a new event (the old one disappears with the refresh).
pub fn from_plan(plan: &Plan, platform: &str, now: Timestamp, horizon: SignedDuration) -> Vec<Event> {
    let until = now.checked_add(horizon).unwrap_or(Timestamp::MAX);
    let shown = |start: Timestamp, end: Timestamp| end > now && start <= until;

    let mut groups: BTreeMap<Timestamp, Vec<&Decision>> = BTreeMap::new();
    for d in &plan.bundles {
        if d.decision == DecisionKind::Eligible
            && let Some(at) = &d.apply_at
        {
            groups.entry(at.timestamp()).or_default().push(d);
        }
    }

    let mut events = Vec::new();
    for (start, mut decisions) in groups {
        decisions.sort_by(|a, b| (&a.id, &a.version).cmp(&(&b.id, &b.version)));
        let Some(apply_at) = decisions.first().and_then(|d| d.apply_at.as_ref()) else { continue };
        let keys: Vec<String> = decisions.iter().map(|d| d.key()).collect();
        let notice_at = decisions.iter().filter_map(|d| d.notice_at.as_ref()).min_by_key(|z| z.timestamp());
        let group = Group { plan, platform, apply_at, decisions: &decisions, keys: &keys, notice_at };

        let end = start.checked_add(ESTIMATED_INTERVENTION).unwrap_or(Timestamp::MAX);
        if shown(start, end) {
            events.push(group.intervention(end));
        }
        if let Some(notice) = notice_at {
            let at = notice.timestamp();
            let mut end = at.checked_add(NOTICE_EVENT).unwrap_or(Timestamp::MAX);
            if start > at {
                end = end.min(start);
            }
            if shown(at, end) {
                events.push(group.notice(at, end));
            }
        }
    }
    events.sort_by(|a, b| (a.start, a.end, &a.uid).cmp(&(b.start, b.end, &b.uid)));
    events
}

/// The bundles of one `apply_at`.
struct Group<'a> {
    plan: &'a Plan,
    platform: &'a str,
    apply_at: &'a Zoned,
    decisions: &'a [&'a Decision],
    /// `id@version`, sorted.
    keys: &'a [String],
    notice_at: Option<&'a Zoned>,
}

impl Group<'_> {
    fn platform(&self) -> &str {
        self.platform
    }

    fn what(&self) -> String {
        match self.decisions {
            [one] => format!("{} {}", one.id, one.version),
            many => format!("{} bundles", many.len()),
        }
    }

    fn bundle_list(&self) -> String {
        let lines: Vec<String> = self.decisions.iter().map(|d| format!("- {} {}", d.id, d.version)).collect();
        lines.join("\n")
    }

    fn intervention(&self, end: Timestamp) -> Event {
        let platform = self.platform();
        let level = self.plan.stability_level;
        let together = if self.decisions.len() > 1 && level == Level::Two { ", in one operation" } else { "" };
        let mut description = format!(
            "palier applies on {platform}{together}:\n{}\nStart: {}.\nEnd: an estimate ({} minutes); the real length depends on the bundles and checks.\n",
            self.bundle_list(),
            local(self.apply_at),
            ESTIMATED_INTERVENTION.as_mins(),
        );
        if let Some(n) = self.notice_at {
            description.push_str(&format!("Users' notice: {}.\n", local(n)));
        }
        description.push_str(&format!("Procedure (stability level {level}): {}", procedure(level)));
        Event {
            uid: uid(INTERVENTION, platform, self.apply_at.timestamp(), self.keys),
            start: self.apply_at.timestamp(),
            end,
            summary: format!("palier {platform}: apply {}", self.what()),
            description,
            categories: vec![CATEGORY.into(), INTERVENTION.into()],
        }
    }

    fn notice(&self, at: Timestamp, end: Timestamp) -> Event {
        let platform = self.platform();
        let description = format!(
            "The agent posts the users' notice of the intervention on {platform} starting {}; no notice in time means no apply in that window.\nBundles:\n{}",
            local(self.apply_at),
            self.bundle_list(),
        );
        Event {
            uid: uid(NOTICE, platform, at, self.keys),
            start: at,
            end,
            summary: format!("palier {platform}: users' notice, {} at {}", self.what(), hhmm(self.apply_at)),
            description,
            categories: vec![CATEGORY.into(), NOTICE.into()],
        }
    }
}

/// SPEC 2.2's "procedure" row, in a sentence.
fn procedure(level: Level) -> &'static str {
    match level {
        Level::One => "stage, swap, check the bundle's own effect and the main functions (home page, login, course access); automatic rollback if a check fails.",
        Level::Two => "all bundles due in the window staged together and swapped in one operation, then verified in place; automatic rollback if a check fails.",
        Level::Three => "maintenance mode on, full backup, stage, swap, validation checks in maintenance, maintenance mode off, smoke checks; rollback restores the backup when a bundle changed data.",
    }
}

/// A stable UID: see [`from_plan`].
fn uid(kind: &str, platform: &str, start: Timestamp, keys: &[String]) -> String {
    let start = utc(start).unwrap_or_else(|| start.as_second().to_string());
    let mut hash = Sha256::new();
    for part in [platform, kind, &start].into_iter().chain(keys.iter().map(String::as_str)) {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    format!("{kind}-{start}-{}@{platform}.palier", hex::encode(&digest[..8]))
}

/// `2026-12-01 22:00 +01:00 (Europe/Paris)`: the platform's wall-clock time.
fn local(z: &Zoned) -> String {
    let Ok(text) = jiff::fmt::strtime::format("%Y-%m-%d %H:%M %:z", z) else { return rfc3339(z) };
    match z.time_zone().iana_name() {
        Some(name) => format!("{text} ({name})"),
        None => text,
    }
}

/// `22:00`, the platform's wall-clock time.
fn hhmm(z: &Zoned) -> String {
    format!("{:02}:{:02}", z.hour(), z.minute())
}

/// `20261201T210000Z`; `None` for a year before 0000, which iCalendar cannot write.
fn utc(t: Timestamp) -> Option<String> {
    let dt = Offset::UTC.to_datetime(t);
    (dt.year() >= 0).then(|| format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", dt.year(), dt.month(), dt.day(), dt.hour(), dt.minute(), dt.second()))
}

/// RFC 5545 3.3.11 TEXT: `\` `;` `,` escaped, CRLF, LF and CR as `\n`; other control
/// characters (not allowed in TEXT) dropped, tab kept.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\\n");
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Write `NAME:value` folded at 75 octets, never inside a character, with CRLF.
/// `value` must already be escaped (it holds no CR or LF).
fn content_line(out: &mut String, name: &str, value: &str) {
    let mut used = 0;
    for c in name.chars().chain([':']).chain(value.chars()) {
        let n = c.len_utf8();
        if used + n > MAX_LINE_OCTETS {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(c);
        used += n;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use icalendar::parser::{Component, read_components, unfold};
    use jiff::tz::TimeZone;
    use semver::Version;

    use super::*;
    use palier_bundle::names::{BundleId, PlatformId};
    use crate::schedule::{Calendar, next_slots};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn paris() -> TimeZone {
        crate::schedule::test_paris()
    }

    /// Tuesday 2026-12-01 10:00 in Paris.
    fn now() -> Timestamp {
        ts("2026-12-01T09:00:00Z")
    }

    const DAYS_90: SignedDuration = SignedDuration::from_hours(90 * 24);

    fn decision(id: &str, version: &str, kind: DecisionKind, apply_at: Option<&str>, notice_at: Option<&str>) -> Decision {
        let z = |s: &str| ts(s).to_zoned(paris());
        Decision {
            id: BundleId::new(id).unwrap(),
            version: Version::parse(version).unwrap(),
            decision: kind,
            reason: None,
            detail: None,
            apply_at: apply_at.map(z),
            notice_at: notice_at.map(z),
        }
    }

    fn plan(stability: Level, bundles: Vec<Decision>) -> Plan {
        Plan {
            platform: PlatformId::new("univ-a").unwrap(),
            now: now().to_zoned(paris()),
            improvement_level: Level::Two,
            stability_level: stability,
            bundles,
        }
    }

    /// Level 2: two bundles in the Tuesday 22:00 window (21:00Z, notice 2 h before), one
    /// with a different time (a plan read back from JSON could hold that), and bundles
    /// that must not show.
    fn level2_plan() -> Plan {
        let e = DecisionKind::Eligible;
        plan(
            Level::Two,
            vec![
                decision("mod_assign-grading", "2.0.0", e, Some("2026-12-01T21:00:00Z"), Some("2026-12-01T19:00:00Z")),
                decision("mod_quiz-timer-drift", "1.0.1", e, Some("2026-12-01T21:00:00Z"), Some("2026-12-01T19:00:00Z")),
                decision("theme_boost-nav", "1.2.0", e, Some("2026-12-03T21:00:00Z"), Some("2026-12-03T19:00:00Z")),
                decision("no-slot", "1.0.0", e, None, None),
                decision("installed", "1.0.0", DecisionKind::Installed, Some("2026-12-01T21:00:00Z"), None),
                decision("waiting", "1.0.0", DecisionKind::WaitingValidation, None, None),
                decision("far-away", "1.0.0", e, Some("2027-06-01T21:00:00Z"), Some("2027-06-01T19:00:00Z")),
            ],
        )
    }

    fn vevents<'a>(roots: &'a [Component<'a>]) -> Vec<&'a Component<'a>> {
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].name.as_str(), "VCALENDAR");
        roots[0].components.iter().filter(|c| c.name.as_str() == "VEVENT").collect()
    }

    fn value(c: &Component<'_>, name: &str) -> Option<String> {
        c.find_prop(name).map(|p| p.val.clone().unescape_text().as_str().to_owned())
    }

    fn raw(c: &Component<'_>, name: &str) -> Option<String> {
        c.find_prop(name).map(|p| p.val.as_str().to_owned())
    }

    /// Every line ends with CRLF, no bare CR or LF, and no physical line exceeds 75 octets.
    fn assert_well_formed(text: &str) {
        assert!(text.ends_with("\r\n"));
        let bytes = text.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i}");
            }
            if *b == b'\r' {
                assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
        }
        for line in text.split_terminator("\r\n") {
            assert!(line.len() <= MAX_LINE_OCTETS, "{} octets: {line:?}", line.len());
            assert!(!line.is_empty(), "empty line");
        }
    }

    #[test]
    fn header_and_event_fields() {
        let events = from_plan(&level2_plan(), "univ-a", now(), DAYS_90);
        let text = calendar("univ-a", now(), &events);
        assert_well_formed(&text);
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(
            lines[..10],
            [
                "BEGIN:VCALENDAR",
                "VERSION:2.0",
                "PRODID:-//palier//palier calendar//EN",
                "CALSCALE:GREGORIAN",
                "METHOD:PUBLISH",
                "X-WR-CALNAME:palier univ-a",
                "X-WR-CALDESC:Coming palier interventions and users' notices on univ-a",
                "REFRESH-INTERVAL;VALUE=DURATION:PT1H",
                "X-PUBLISHED-TTL:PT1H",
                "BEGIN:VEVENT",
            ]
        );
        assert_eq!(lines.last(), Some(&"END:VCALENDAR"));
        assert!(lines.contains(&"DTSTAMP:20261201T090000Z"));
        assert!(lines.contains(&"DTSTART:20261201T190000Z"));
        assert!(lines.contains(&"DTEND:20261201T191500Z"));
        assert!(lines.contains(&"DTSTART:20261201T210000Z"));
        assert!(lines.contains(&"DTEND:20261201T213000Z"));
        assert!(lines.contains(&"CATEGORIES:palier,intervention"));
        assert!(lines.contains(&"CATEGORIES:palier,notice"));
        assert_eq!(lines.iter().filter(|l| **l == "BEGIN:VEVENT").count(), 4);
        assert_eq!(lines.iter().filter(|l| l.starts_with("DTSTAMP:")).count(), 4);
    }

    #[test]
    fn from_plan_groups_by_apply_at_and_adds_notices() {
        let events = from_plan(&level2_plan(), "univ-a", now(), DAYS_90);
        let summary: Vec<(&str, String, String)> =
            events.iter().map(|e| (e.summary.as_str(), e.start.to_string(), e.end.to_string())).collect();
        assert_eq!(
            summary,
            [
                ("palier univ-a: users' notice, 2 bundles at 22:00", "2026-12-01T19:00:00Z".into(), "2026-12-01T19:15:00Z".into()),
                ("palier univ-a: apply 2 bundles", "2026-12-01T21:00:00Z".into(), "2026-12-01T21:30:00Z".into()),
                ("palier univ-a: users' notice, theme_boost-nav 1.2.0 at 22:00", "2026-12-03T19:00:00Z".into(), "2026-12-03T19:15:00Z".into()),
                ("palier univ-a: apply theme_boost-nav 1.2.0", "2026-12-03T21:00:00Z".into(), "2026-12-03T21:30:00Z".into()),
            ]
        );
        let grouped = &events[1];
        assert_eq!(grouped.categories, ["palier", "intervention"]);
        assert!(
            grouped.description.starts_with(
                "palier applies on univ-a, in one operation:\n- mod_assign-grading 2.0.0\n- mod_quiz-timer-drift 1.0.1\nStart: 2026-12-01 22:00 +01:00 (Europe/Paris).\n"
            ),
            "{}",
            grouped.description
        );
        assert!(grouped.description.contains("Users' notice: 2026-12-01 20:00 +01:00 (Europe/Paris)."), "{}", grouped.description);
        assert!(grouped.description.contains("estimate (30 minutes)"));
        assert!(grouped.description.contains("Procedure (stability level 2): all bundles due in the window staged together"));
        let notice = &events[0];
        assert_eq!(notice.categories, ["palier", "notice"]);
        assert!(notice.description.contains("starting 2026-12-01 22:00 +01:00 (Europe/Paris)"), "{}", notice.description);
        assert!(notice.description.ends_with("Bundles:\n- mod_assign-grading 2.0.0\n- mod_quiz-timer-drift 1.0.1"));
    }

    #[test]
    fn from_plan_keeps_events_overlapping_now_to_horizon() {
        let p = level2_plan();
        // Horizon shorter than the Thursday window.
        let events = from_plan(&p, p.platform.as_str(), now(), SignedDuration::from_hours(24));
        assert_eq!(events.len(), 2);
        // 90 days leaves out June 2027; a year includes it.
        assert_eq!(from_plan(&p, p.platform.as_str(), now(), DAYS_90).len(), 4);
        assert_eq!(from_plan(&p, p.platform.as_str(), now(), SignedDuration::from_hours(366 * 24)).len(), 6);
        // At 21:10Z the Tuesday notice is over, its intervention still running.
        let later = ts("2026-12-01T21:10:00Z");
        let starts: Vec<String> = from_plan(&p, p.platform.as_str(), later, DAYS_90).iter().map(|e| e.start.to_string()).collect();
        assert_eq!(starts, ["2026-12-01T21:00:00Z", "2026-12-03T19:00:00Z", "2026-12-03T21:00:00Z"]);
        // The edges: an event starting exactly at now + horizon is in, ending exactly at now is out.
        let edge = from_plan(&p, p.platform.as_str(), ts("2026-12-01T21:30:00Z"), SignedDuration::from_hours(45) + SignedDuration::from_mins(30));
        let starts: Vec<String> = edge.iter().map(|e| e.start.to_string()).collect();
        assert_eq!(starts, ["2026-12-03T19:00:00Z"]);
        // A negative horizon shows nothing coming; huge ones do not overflow.
        assert!(from_plan(&p, p.platform.as_str(), now(), SignedDuration::from_hours(-1)).is_empty());
        assert_eq!(from_plan(&p, p.platform.as_str(), now(), SignedDuration::MAX).len(), 6);
    }

    #[test]
    fn level_1_has_no_notice_and_a_single_bundle_summary() {
        let p = plan(Level::One, vec![decision("mod_quiz-fix", "1.0.0", DecisionKind::Eligible, Some("2026-12-01T09:00:00Z"), None)]);
        let events = from_plan(&p, p.platform.as_str(), now(), DAYS_90);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].summary, "palier univ-a: apply mod_quiz-fix 1.0.0");
        assert_eq!(events[0].start, now());
        assert!(!events[0].description.contains("notice"));
        assert!(events[0].description.contains("Procedure (stability level 1): stage, swap"));
        assert!(!events[0].description.contains("in one operation"));
    }

    #[test]
    fn uids_are_stable_and_distinct() {
        let p = level2_plan();
        let a = from_plan(&p, p.platform.as_str(), now(), DAYS_90);
        // A later refresh (another now, another DTSTAMP) keeps the UIDs.
        let b = from_plan(&p, p.platform.as_str(), ts("2026-12-01T12:00:00Z"), DAYS_90);
        assert_eq!(a.iter().map(|e| &e.uid).collect::<Vec<_>>(), b.iter().map(|e| &e.uid).collect::<Vec<_>>());
        let uids: BTreeSet<&str> = a.iter().map(|e| e.uid.as_str()).collect();
        assert_eq!(uids.len(), a.len());
        let grouped = &a[1].uid;
        assert!(grouped.starts_with("intervention-20261201T210000Z-") && grouped.ends_with("@univ-a.palier"), "{grouped}");
        assert!(a[0].uid.starts_with("notice-20261201T190000Z-"), "{}", a[0].uid);
        // The order of the plan's bundles does not matter.
        let mut reversed = p.clone();
        reversed.bundles.reverse();
        assert_eq!(from_plan(&reversed, reversed.platform.as_str(), now(), DAYS_90), a);
        // Another platform, another bundle version or another time: another UID.
        let mut other = p.clone();
        other.platform = PlatformId::new("univ-b").unwrap();
        assert_ne!(from_plan(&other, other.platform.as_str(), now(), DAYS_90)[1].uid, *grouped);
        let mut bumped = p.clone();
        bumped.bundles[1].version = Version::new(1, 0, 2);
        assert_ne!(from_plan(&bumped, bumped.platform.as_str(), now(), DAYS_90)[1].uid, *grouped);
        let mut moved = p;
        for d in &mut moved.bundles[..2] {
            d.apply_at = Some(ts("2026-12-01T21:30:00Z").to_zoned(paris()));
        }
        assert_ne!(from_plan(&moved, moved.platform.as_str(), now(), DAYS_90)[1].uid, *grouped);
    }

    #[test]
    fn folding_long_lines_at_75_octets() {
        let summary = "A very long summary that goes on and on, far beyond what a single content line may hold in RFC 5545; it must be folded. ".repeat(3);
        let event = Event {
            uid: "u1".into(),
            start: now(),
            end: now() + SignedDuration::from_hours(1),
            summary: summary.clone(),
            description: String::new(),
            categories: vec![],
        };
        let text = calendar("univ-a", now(), &[event]);
        assert_well_formed(&text);
        let folded: Vec<&str> = text.split_terminator("\r\n").skip_while(|l| !l.starts_with("SUMMARY:")).take_while(|l| !l.starts_with("END:")).collect();
        assert!(folded.len() > 3, "{folded:?}");
        assert_eq!(folded[0].len(), 75);
        assert!(folded[1..].iter().all(|l| l.starts_with(' ')));
        assert!(folded[1..folded.len() - 1].iter().all(|l| l.len() == 75));
        let unfolded = unfold(&text);
        let line = unfolded.split("\r\n").find(|l| l.starts_with("SUMMARY:")).unwrap();
        assert_eq!(line, format!("SUMMARY:{}", escape_text(&summary)));
    }

    #[test]
    fn folding_never_splits_a_multibyte_character() {
        // Two-, three- and four-byte characters, shifted by 0..8 octets so each lands on the 75th octet.
        for pad in 0..8 {
            let summary = format!("{}{}", "x".repeat(pad), "é€😀漢".repeat(40));
            let mut out = String::new();
            content_line(&mut out, "SUMMARY", &summary);
            let lines: Vec<&str> = out.split_terminator("\r\n").collect();
            assert!(lines.len() > 3);
            for (n, line) in lines.iter().enumerate() {
                assert!(line.len() <= MAX_LINE_OCTETS, "{pad}: {} octets", line.len());
                // Filled as far as the next character allows (the last line holds the rest).
                assert!(n == lines.len() - 1 || line.len() > MAX_LINE_OCTETS - 4, "{pad}: {} octets", line.len());
            }
            assert_eq!(unfold(&out), format!("SUMMARY:{summary}\r\n"));
        }
        // A line of exactly 75 octets is not folded; 76 is.
        for (len, lines) in [(75, 1), (76, 2)] {
            let mut out = String::new();
            content_line(&mut out, "X", &"a".repeat(len - 2));
            assert_eq!(out.split_terminator("\r\n").count(), lines, "{len}");
        }
    }

    #[test]
    fn text_escaping() {
        assert_eq!(escape_text(r"a\b;c,d"), r"a\\b\;c\,d");
        assert_eq!(escape_text("one\ntwo\r\nthree\rfour"), r"one\ntwo\nthree\nfour");
        assert_eq!(escape_text("tab\there\u{0}\u{7}\u{1b}[0m\u{7f}"), "tab\there[0m");
        assert_eq!(escape_text("déjà vu: 22:00"), "déjà vu: 22:00");
        // Through the parser and back.
        let tricky = "Fix; quiz, assign\\grade\nline two: «été» 😀";
        let event = Event {
            uid: "uid;with,odd\\chars".into(),
            start: now(),
            end: now() + SignedDuration::from_hours(1),
            summary: tricky.into(),
            description: format!("{tricky}\r\n{}", "long ".repeat(40)),
            categories: vec!["palier".into(), "a,b;c".into(), String::new()],
        };
        let text = calendar("univ-a; \"x\"", now(), std::slice::from_ref(&event));
        assert_well_formed(&text);
        assert!(text.contains("CATEGORIES:palier,a\\,b\\;c\r\n"));
        assert!(text.contains("X-WR-CALNAME:palier univ-a\\; \"x\"\r\n"));
        let unfolded = unfold(&text);
        let roots = read_components(&unfolded).unwrap();
        let vevent = vevents(&roots)[0];
        assert_eq!(value(vevent, "SUMMARY").unwrap(), tricky);
        assert_eq!(value(vevent, "DESCRIPTION").unwrap(), format!("{tricky}\n{}", "long ".repeat(40)));
        assert_eq!(value(vevent, "UID").unwrap(), event.uid);
    }

    #[test]
    fn round_trip_through_the_icalendar_parser() {
        let events = from_plan(&level2_plan(), "univ-a", now(), DAYS_90);
        let text = calendar("univ-a", now(), &events);
        let unfolded = unfold(&text);
        let roots = read_components(&unfolded).unwrap();
        let cal = &roots[0];
        for (name, want) in [("VERSION", "2.0"), ("CALSCALE", "GREGORIAN"), ("METHOD", "PUBLISH"), ("PRODID", PRODID), ("X-WR-CALNAME", "palier univ-a")] {
            assert_eq!(value(cal, name).as_deref(), Some(want), "{name}");
        }
        let parsed = vevents(&roots);
        assert_eq!(parsed.len(), events.len());
        for (vevent, event) in parsed.iter().zip(&events) {
            assert_eq!(value(vevent, "UID").unwrap(), event.uid);
            assert_eq!(raw(vevent, "DTSTAMP").unwrap(), "20261201T090000Z");
            assert_eq!(raw(vevent, "DTSTART").unwrap(), utc(event.start).unwrap());
            assert_eq!(raw(vevent, "DTEND").unwrap(), utc(event.end).unwrap());
            assert_eq!(value(vevent, "SUMMARY").unwrap(), event.summary);
            assert_eq!(value(vevent, "DESCRIPTION").unwrap(), event.description);
            // Times read back as instants.
            let start: Timestamp = jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", raw(vevent, "DTSTART").unwrap()).unwrap().to_datetime().unwrap().to_zoned(TimeZone::UTC).unwrap().timestamp();
            assert_eq!(start, event.start);
        }
        // Sorted by start.
        assert!(events.windows(2).all(|w| w[0].start <= w[1].start));
    }

    #[test]
    fn round_trip_through_the_level_3_calendar_reader() {
        // This crate's own reader of formal calendars sees the same slots.
        let events = from_plan(&level2_plan(), "univ-a", now(), DAYS_90);
        let text = calendar("univ-a", now(), &events);
        let cal = Calendar::parse_ics(&text, &paris(), jiff::tz::db()).unwrap();
        assert_eq!(cal.event_count(), events.len());
        let slots = next_slots(&cal, &paris(), now(), DAYS_90);
        let got: Vec<(Timestamp, Timestamp)> = slots.iter().map(|s| (s.start.timestamp(), s.end.timestamp())).collect();
        let want: Vec<(Timestamp, Timestamp)> = events.iter().map(|e| (e.start, e.end)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn from_the_policy_plan_at_stability_2() {
        use palier_bundle::manifest::{ChangeClass, DataImpact, Manifest, Origin};
        use palier_bundle::metadata::BundleMetadata;
        use palier_bundle::names::Component as MoodleComponent;
        use crate::{Contract, Improvement, Stability};
        use crate::schedule::Window;

        let meta = |id: &str| {
            let manifest = Manifest {
                id: BundleId::new(id).unwrap(),
                version: Version::new(1, 0, 0),
                component: MoodleComponent::new("mod_quiz").unwrap(),
                class: ChangeClass::Technical,
                data_impact: DataImpact::None,
                summary: format!("fix {id}"),
                fixes: Vec::new(),
                origin: Origin::Report,
                requires_moodle: None,
                after: Vec::new(),
                delete: Vec::new(),
                upgrade: false,
                checks: Vec::new(),
                files: Vec::new(),
            };
            let mut m = BundleMetadata::new(manifest, BTreeSet::from([PlatformId::new("univ-a").unwrap()]), "2026-11-01T00:00:00Z".into());
            m.validations.alpha = true;
            m.validations.datasets = BTreeSet::from(["ds-a".to_owned(), "ds-b".to_owned()]);
            m
        };
        let mut stability = Stability::new(Level::Two);
        stability.windows = vec![Window::parse("Tue 22:00-23:30").unwrap()];
        let contract = Contract {
            platform: PlatformId::new("univ-a").unwrap(),
            timezone: paris(),
            improvement: Improvement::new(Level::One),
            stability,
        };
        let p = crate::plan(&contract, &[meta("quiz-a"), meta("quiz-b"), meta("quiz-c")], &[], &Version::new(4, 5, 2), now());
        let events = from_plan(&p, p.platform.as_str(), now(), DAYS_90);
        assert_eq!(events.len(), 2, "{events:#?}");
        assert_eq!(events[0].start, ts("2026-12-01T19:00:00Z"));
        assert_eq!(events[1].start, ts("2026-12-01T21:00:00Z"));
        assert_eq!(events[1].summary, "palier univ-a: apply 3 bundles");
        assert!(events[1].description.contains("- quiz-a 1.0.0\n- quiz-b 1.0.0\n- quiz-c 1.0.0\n"));
        let text = calendar(p.platform.as_str(), now(), &events);
        assert_well_formed(&text);
        assert_eq!(vevents(&read_components(&unfold(&text)).unwrap()).len(), 2);
    }

    #[test]
    fn empty_and_degenerate_events() {
        let text = calendar("univ-a", now(), &[]);
        assert_well_formed(&text);
        assert!(!text.contains("VEVENT"));
        let unfolded = unfold(&text);
        let roots = read_components(&unfolded).unwrap();
        assert!(vevents(&roots).is_empty());

        let base = Event {
            uid: "x".into(),
            start: now(),
            end: now(),
            summary: "instant".into(),
            description: String::new(),
            categories: vec![],
        };
        // No length (or less than a second): no DTEND; no description or categories: not written.
        let short = Event { end: now() + SignedDuration::from_millis(500), ..base.clone() };
        for e in [base.clone(), short, Event { end: now() - SignedDuration::from_hours(1), ..base.clone() }] {
            let text = calendar("univ-a", now(), &[e]);
            assert!(text.contains("DTSTART:20261201T090000Z\r\n"));
            assert!(!text.contains("DTEND") && !text.contains("DESCRIPTION") && !text.contains("CATEGORIES"), "{text}");
        }
        // Sub-second times are written in whole seconds.
        let frac = Event { start: ts("2026-12-01T09:00:00.9Z"), end: ts("2026-12-01T10:00:00.9Z"), ..base.clone() };
        let text = calendar("univ-a", ts("2026-12-01T08:59:59.999Z"), &[frac]);
        assert!(text.contains("DTSTAMP:20261201T085959Z\r\n") && text.contains("DTSTART:20261201T090000Z\r\n") && text.contains("DTEND:20261201T100000Z\r\n"));
        // A start that iCalendar cannot write is left out, the rest is kept.
        let ancient = Event { uid: "ancient".into(), start: Timestamp::MIN, end: now(), ..base.clone() };
        let text = calendar("univ-a", now(), &[ancient, base]);
        assert_eq!(text.matches("BEGIN:VEVENT").count(), 1);
        assert!(!text.contains("UID:ancient"));
        assert_eq!(utc(ts("0000-01-01T00:00:00Z")).as_deref(), Some("00000101T000000Z"));
        assert_eq!(utc(Timestamp::MAX).as_deref(), Some("99991230T220000Z"));
    }

    #[test]
    fn events_are_sorted_whatever_the_input_order() {
        let mk = |uid: &str, start: &str| Event {
            uid: uid.into(),
            start: ts(start),
            end: ts(start) + SignedDuration::from_hours(1),
            summary: uid.into(),
            description: String::new(),
            categories: vec![],
        };
        let events = [mk("c", "2026-12-03T00:00:00Z"), mk("a", "2026-12-01T00:00:00Z"), mk("b", "2026-12-02T00:00:00Z")];
        let text = calendar("univ-a", now(), &events);
        let uids: Vec<&str> = text.split("\r\n").filter_map(|l| l.strip_prefix("UID:")).collect();
        assert_eq!(uids, ["a", "b", "c"]);
    }
}
