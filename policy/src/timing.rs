//! WHEN an eligible bundle is applied and when its notice goes out (SPEC 2.2 "when" and
//! "notice to users"). Every eligible bundle of a plan gets the same timing: at level 2
//! all bundles due in a window are applied together, in one operation.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

use super::contract::{Level, Stability};
use crate::schedule::{HORIZON, SlotSource, first_starting_at_or_after, format_duration, next_slots};

/// `apply_at`, `notice_at` and, when no slot was found, a sentence saying so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timing {
    pub apply_at: Option<Zoned>,
    pub notice_at: Option<Zoned>,
    pub detail: Option<String>,
}

/// The timing for stability `s` at `now`, in the platform's `zone`.
///
/// - Level 1, "as soon as possible; working hours allowed, a configured low-load slot
///   preferred if one starts within `max_defer`": `apply_at` is `now`, or `now` again if
///   a low-load slot is running, or the start of the first low-load slot that starts
///   within `max_defer`; no notice.
/// - Level 2, "only inside the windows negotiated with the platform owner", with "a visible
///   notice posted at least `notice` before the window; no notice in time means no apply in
///   that window": `apply_at` is the start of the first window that starts at or after
///   `now + notice`, `notice_at = apply_at - notice` (so never before `now`). A window
///   opening sooner than `notice` is skipped whole; a window already open is the answer
///   (see below).
/// - Level 3, "only inside the slots of a formal calendar", notice "as for level 2": the
///   same with the calendar's slots.
///
/// **Inside an open window or slot** (levels 2 and 3), the plan says what `run --once` does
/// at the same `now`: the bundles whose notice went out at least `notice` before the
/// window or slot started are applied in it, now. So `apply_at` is `now`, `notice_at` is
/// the open one's start minus `notice` (the latest time the notice could have gone out),
/// and the detail says which window or slot it is and that a bundle whose notice did not
/// go out by then waits for the next one (the plan does not read the notices posted).
///
/// No slot within [`HORIZON`] (366 days): `apply_at` and `notice_at` are `None` and the
/// detail says so; the bundle stays `eligible` (nothing forbids it, there is just no
/// time to do it yet) and nothing is applied until a window or slot is configured.
pub(crate) fn timing(s: &Stability, zone: &TimeZone, now: Timestamp) -> Timing {
    match s.level {
        Level::One => {
            let max_defer = s.max_defer.max(SignedDuration::ZERO);
            let slots = next_slots(&s.low_load, zone, now, max_defer);
            let at = match slots.first() {
                Some(slot) if !slots.iter().any(|x| x.contains(now)) => slot.start.timestamp(),
                _ => now,
            };
            Timing { apply_at: Some(at.to_zoned(zone.clone())), notice_at: None, detail: None }
        }
        Level::Two => noticed(&s.windows, s.windows.is_empty(), "window", s.notice.get(), zone, now),
        Level::Three => noticed(&s.calendar, s.calendar.is_empty(), "calendar slot", s.notice.get(), zone, now),
    }
}

fn noticed<S: SlotSource + ?Sized>(source: &S, empty: bool, what: &str, notice: SignedDuration, zone: &TimeZone, now: Timestamp) -> Timing {
    // The same search as the agent's run for the slot containing `now`.
    if let Some(open) = next_slots(source, zone, now, SignedDuration::from_hours(24)).into_iter().find(|slot| slot.contains(now)) {
        let notice_at = open.start.timestamp().checked_sub(notice).unwrap_or(Timestamp::MIN);
        let fmt = |t: Timestamp| super::decision::rfc3339(&t.to_zoned(zone.clone()));
        return Timing {
            apply_at: Some(now.to_zoned(zone.clone())),
            notice_at: Some(notice_at.to_zoned(zone.clone())),
            detail: Some(format!(
                "inside the {what} {} to {} open now: applied now if its notice went out by {}, else in the next {what}",
                fmt(open.start.timestamp()),
                fmt(open.end.timestamp()),
                fmt(notice_at)
            )),
        };
    }
    let earliest = now.checked_add(notice).unwrap_or(Timestamp::MAX);
    match first_starting_at_or_after(source, zone, earliest, now, HORIZON) {
        Some(slot) => {
            let notice_at = slot.start.timestamp().checked_sub(notice).unwrap_or(now).max(now);
            Timing { notice_at: Some(notice_at.to_zoned(zone.clone())), apply_at: Some(slot.start), detail: None }
        }
        None => {
            let detail = if empty {
                format!("no {what} configured: not applied until one is")
            } else {
                format!(
                    "no {what} starts between {} (now + notice {}) and {} days from now: not applied until one does",
                    super::decision::rfc3339(&earliest.to_zoned(zone.clone())),
                    format_duration(notice),
                    HORIZON.as_hours() / 24
                )
            };
            Timing { apply_at: None, notice_at: None, detail: Some(detail) }
        }
    }
}
