//! Time slots in the platform's IANA time zone.
//!
//! - [`Window`]: weekly wall-clock windows of the agent config (`Tue 22:00-23:30`,
//!   `Mon-Fri 12:00-14:00`, `Sat,Sun 08:00-10:00`, daily `12:00-14:00`, `20:00-07:00`
//!   across midnight); used by stability level 2 (`windows`) and level 1 (`low_load`).
//! - [`Calendar`]: the formal calendar of stability level 3, explicit dated slots
//!   ([`DatedSlot`], `2026-12-05T21:00/2026-12-06T01:00` in the platform's zone) and
//!   iCalendar text (VEVENTs with DTSTART and DTEND or DURATION, TZID, RRULE, RDATE,
//!   EXDATE, RECURRENCE-ID overrides, STATUS:CANCELLED).
//! - [`parse_duration`]: `2h`, `15m`, `90s`, `1h30m`.
//! - [`next_slots`]: the occurrences still usable at `now` (running or to come), up to a
//!   horizon, in order.
//!
//! Pure: `now` is passed in, iCalendar text is handed over by the caller, and time zones
//! (the platform's, and a database for TZIDs) are resolved by the caller too.
//!
//! Daylight saving: every wall-clock time goes through [`resolve`], the single place
//! that decides what a time inside a spring-forward gap or a fall-back fold means;
//! `DST.md` in this folder explains the choice.

mod calendar;
#[doc = include_str!("DST.md")]
pub mod dst {}
pub mod duration;
mod error;
mod ics;
mod local;
mod window;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

pub use calendar::{Calendar, DatedSlot};
pub use duration::{duration_serde, format_duration, parse_duration};
pub use error::{Result, ScheduleError};
pub use local::resolve;
pub use window::{Days, Window};

/// Europe/Paris from jiff's bundled database, for the tests of this crate.
#[cfg(test)]
pub(crate) use local::tests::paris as test_paris;

/// How far ahead the planner looks for a slot: 366 days, so a yearly slot is always seen.
pub const HORIZON: SignedDuration = SignedDuration::from_hours(366 * 24);

/// One occurrence of a window or calendar slot: `[start, end)`, both in the platform's zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub start: Zoned,
    pub end: Zoned,
}

impl Slot {
    pub(crate) fn new(start: Timestamp, end: Timestamp, zone: &TimeZone) -> Slot {
        Slot { start: start.to_zoned(zone.clone()), end: end.to_zoned(zone.clone()) }
    }
    /// Whether `t` is inside the slot: `start <= t < end`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start.timestamp() <= t && t < self.end.timestamp()
    }
    /// Real elapsed time from start to end.
    pub fn duration(&self) -> SignedDuration {
        self.end.timestamp().duration_since(self.start.timestamp())
    }
}

/// Something that yields slot occurrences.
pub trait SlotSource {
    /// Push every occurrence that is still usable at `from` (`end > from`) and starts no
    /// later than `until`, in any order. `zone` is the platform's time zone: wall-clock
    /// times without a zone of their own are read in it, and slots are expressed in it.
    fn occurrences(&self, zone: &TimeZone, from: Timestamp, until: Timestamp, out: &mut Vec<Slot>);
}

/// The occurrences still usable at `now` (running ones included) that start at the
/// latest at `now + horizon`, ordered by start then end; identical occurrences from two
/// sources are listed once.
pub fn next_slots<S: SlotSource + ?Sized>(source: &S, zone: &TimeZone, now: Timestamp, horizon: SignedDuration) -> Vec<Slot> {
    let until = now.checked_add(horizon).unwrap_or(Timestamp::MAX);
    let mut out = Vec::new();
    source.occurrences(zone, now, until, &mut out);
    out.retain(|s| s.end.timestamp() > now && s.start.timestamp() <= until && s.end.timestamp() > s.start.timestamp());
    out.sort_by_key(|s| (s.start.timestamp(), s.end.timestamp()));
    out.dedup_by(|a, b| a.start.timestamp() == b.start.timestamp() && a.end.timestamp() == b.end.timestamp());
    out
}

/// The earliest occurrence that starts at or after `at` and no later than `now + horizon`.
///
/// Searches ever wider spans (2 days, 5 weeks, then up to the horizon), so the common
/// case of a slot in the coming days does not expand a whole year of windows.
pub fn first_starting_at_or_after<S: SlotSource + ?Sized>(
    source: &S,
    zone: &TimeZone,
    at: Timestamp,
    now: Timestamp,
    horizon: SignedDuration,
) -> Option<Slot> {
    let until = now.checked_add(horizon).unwrap_or(Timestamp::MAX);
    if at > until {
        return None;
    }
    let mut out = Vec::new();
    for span in [SignedDuration::from_hours(48), SignedDuration::from_hours(24 * 35), SignedDuration::MAX] {
        let end = at.checked_add(span).unwrap_or(Timestamp::MAX).min(until);
        out.clear();
        // Every occurrence starting in [at, end] is pushed, so the earliest found is the earliest overall.
        source.occurrences(zone, at, end, &mut out);
        let first = out
            .drain(..)
            .filter(|s| s.start.timestamp() >= at && s.start.timestamp() <= end && s.end.timestamp() > s.start.timestamp())
            .min_by_key(|s| (s.start.timestamp(), s.end.timestamp()));
        if first.is_some() || end == until {
            return first;
        }
    }
    None
}

impl<S: SlotSource + ?Sized> SlotSource for &S {
    fn occurrences(&self, zone: &TimeZone, from: Timestamp, until: Timestamp, out: &mut Vec<Slot>) {
        (**self).occurrences(zone, from, until, out);
    }
}
