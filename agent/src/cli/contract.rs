//! A platform's contract in plain words, from its agent config: what `check-config` prints
//! and what the demo shows for each platform. The one place that says what the levels mean.

use jiff::Timestamp;
use palier_policy::Level;
use palier_policy::schedule::{self, Slot, format_duration};

use crate::config::Config;

/// Alpha validation plus this many test datasets, from stability level 2 (SPEC 2.2).
const DATASETS_NEEDED: usize = 2;

/// The improvement level: WHICH bundles the platform receives.
pub fn improvement(c: &Config) -> String {
    let imp = &c.contract.improvement;
    match imp.level {
        Level::One => "level 1, \"on defect report\": it receives only the fixes for defects it reported itself".to_owned(),
        Level::Two => {
            let components: Vec<&str> = imp.components.iter().map(|c| c.as_str()).collect();
            let classes: Vec<String> = imp.level2_classes.iter().map(|c| c.to_string()).collect();
            let what = if classes.len() == 1 && classes[0] == "technical" {
                "purely technical fixes (bug, performance)".to_owned()
            } else {
                format!("fixes of the classes {}", classes.join(", "))
            };
            format!(
                "level 2, \"selective systematic\": its own reports, plus {what} for the components in its contract ({}), whoever asked for them",
                components.join(", ")
            )
        }
        Level::Three => "level 3, \"global continuous\": every validated bundle, for every component".to_owned(),
    }
}

/// The stability level: WHEN and HOW they are applied.
pub fn stability(c: &Config) -> String {
    let s = &c.contract.stability;
    let zone = &c.timezone_name;
    let budget = minutes(s.recovery_budget);
    match s.level {
        Level::One => {
            let low_load = if s.low_load.is_empty() {
                String::new()
            } else {
                format!(
                    " (in a low-load slot, {} {zone} time, when one starts within {})",
                    s.low_load.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or "),
                    format_duration(s.max_defer)
                )
            };
            format!(
                "level 1, \"as soon as possible\": a bundle is applied once the alpha team has validated it, at any hour{low_load}; \
                 then its own checks and the smoke checks run, and a failure puts the previous code back within the {budget} \
                 recovery budget. A major or global data impact is never applied automatically."
            )
        }
        Level::Two => format!(
            "level 2, \"negotiated windows\": only in its windows ({}, {zone} time), after a notice shown to users at least {} \
             before; everything due in a window goes live in one swap, then is checked, and rolled back on failure. Bundles need \
             alpha validation plus qualification on {DATASETS_NEEDED} test datasets; a global data impact is never applied automatically.",
            s.windows.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and "),
            format_duration(s.notice.get())
        ),
        Level::Three => {
            let mut slots: Vec<String> = s.calendar.slots().iter().map(|d| dated(&d.to_string())).collect();
            if s.calendar.event_count() > 0 {
                let n = s.calendar.event_count();
                slots.push(format!("{n} iCalendar event{}", if n == 1 { "" } else { "s" }));
            }
            format!(
                "level 3, \"maintenance calendar\": only in the slots of its calendar ({}), announced {} before: maintenance \
                 mode on, full backup (it must succeed), swap, validation while still in maintenance, maintenance off, checks; \
                 a failure puts the previous code back and restores the backup if data changed. Bundles need alpha validation \
                 plus {DATASETS_NEEDED} test datasets.",
                slots.join(", "),
                format_duration(s.notice.get())
            )
        }
    }
}

/// `5m` as `5-minute`, `1h30m` as `1h30m`.
fn minutes(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs();
    if secs % 60 == 0 && secs < 3600 { format!("{}-minute", secs / 60) } else { format_duration(d) }
}

/// `2026-12-05T21:00/2026-12-06T01:00` as `Sat 5 Dec 21:00 to Sun 6 Dec 01:00`.
pub fn dated(s: &str) -> String {
    let fmt = |t: &str| t.parse::<jiff::civil::DateTime>().map(|d| d.strftime("%a %-d %b %H:%M").to_string()).unwrap_or_else(|_| t.to_owned());
    match s.split_once('/') {
        Some((a, b)) => format!("{} to {}", fmt(a), fmt(b)),
        None => s.to_owned(),
    }
}

/// A local time to the minute, in the platform's zone, for an operator: `Tue 1 Dec 2026 22:00 CET`.
pub fn local(t: Timestamp, c: &Config) -> String {
    t.to_zoned(c.contract.timezone.clone()).strftime("%a %-d %b %Y %H:%M %Z").to_string()
}

/// The next slot in which an intervention could happen, and when its notice would go out
/// (levels 2 and 3 with a notice), seen from `now`; `None` when no slot comes within a year.
pub fn next_slot(c: &Config, now: Timestamp) -> Option<(Slot, Option<Timestamp>)> {
    let s = &c.contract.stability;
    let zone = &c.contract.timezone;
    match s.level {
        Level::One => schedule::next_slots(&s.low_load, zone, now, schedule::HORIZON).into_iter().next().map(|slot| (slot, None)),
        Level::Two | Level::Three => {
            let notice = s.notice.get();
            let at = now.checked_add(notice).ok()?;
            let slot = if s.level == Level::Two {
                schedule::first_starting_at_or_after(&s.windows, zone, at, now, schedule::HORIZON)
            } else {
                schedule::first_starting_at_or_after(&s.calendar, zone, at, now, schedule::HORIZON)
            }?;
            let announce = (s.level == Level::Two || c.hooks.notice.is_some()).then(|| slot.start.timestamp().checked_sub(notice).ok()).flatten();
            Some((slot, announce))
        }
    }
}
