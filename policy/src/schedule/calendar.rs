//! The formal calendar of stability level 3: explicit dated slots and iCalendar events.

use std::fmt;
use std::str::FromStr;

use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{Timestamp, civil};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{Result, ScheduleError};
use super::ics::{self, Event};
use super::local::resolve;
use super::{Slot, SlotSource};

/// An explicit slot, `2026-12-05T21:00/2026-12-06T01:00`, in the platform's wall-clock time.
///
/// Both ends go through [`super::resolve`] (see `DST.md`). Offsets, `Z` and zone
/// annotations are refused: the slot is local to the platform by definition, and a second
/// zone in the config would be a second source of truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatedSlot {
    pub start: civil::DateTime,
    pub end: civil::DateTime,
}

impl DatedSlot {
    pub fn parse(text: &str) -> Result<DatedSlot> {
        let why = |w: String| ScheduleError::Slot { value: text.to_owned(), why: w };
        let (start, end) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| why("expected START/END, for example 2026-12-05T21:00/2026-12-06T01:00".into()))?;
        let start = parse_local(start).map_err(why)?;
        let end = parse_local(end).map_err(why)?;
        if end <= start {
            return Err(why("the end is not after the start".into()));
        }
        Ok(DatedSlot { start, end })
    }
}

fn parse_local(text: &str) -> std::result::Result<civil::DateTime, String> {
    let Some((date, time)) = text.split_once('T') else {
        return Err(format!("{text:?} is not a local date and time such as 2026-12-05T21:00"));
    };
    if time.contains(['Z', 'z', '+', '-', '[']) || date.len() != 10 {
        return Err(format!("{text:?}: write the platform's local time, without offset or zone (YYYY-MM-DDTHH:MM)"));
    }
    text.parse::<civil::DateTime>().map_err(|e| format!("{text:?}: {e}"))
}

impl fmt::Display for DatedSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |dt: civil::DateTime| {
            if dt.second() == 0 && dt.subsec_nanosecond() == 0 {
                dt.strftime("%Y-%m-%dT%H:%M").to_string()
            } else {
                dt.to_string()
            }
        };
        write!(f, "{}/{}", part(self.start), part(self.end))
    }
}

impl FromStr for DatedSlot {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self> {
        DatedSlot::parse(s)
    }
}

impl Serialize for DatedSlot {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DatedSlot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        DatedSlot::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl SlotSource for DatedSlot {
    fn occurrences(&self, zone: &TimeZone, from: Timestamp, until: Timestamp, out: &mut Vec<Slot>) {
        let (Some(start), Some(end)) = (resolve(zone, self.start), resolve(zone, self.end)) else {
            return;
        };
        if end > start && end > from && start <= until {
            out.push(Slot::new(start, end, zone));
        }
    }
}

/// A level-3 calendar: dated slots from the config and events from an iCalendar file.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    slots: Vec<DatedSlot>,
    events: Vec<Event>,
}

impl Calendar {
    /// A calendar of explicit dated slots (the config's `calendar = [...]`).
    pub fn from_slots(slots: Vec<DatedSlot>) -> Calendar {
        Calendar { slots, events: Vec::new() }
    }

    /// Read iCalendar text (the content of the config's `calendar_file`, read by the caller).
    ///
    /// Times without TZID or `Z` are read in `zone`, the platform's zone. A TZID is looked
    /// up in `tzdb` (callers pass `jiff::tz::db()`); only IANA names are understood, and a
    /// TZID that only a VTIMEZONE block defines is refused rather than guessed.
    pub fn parse_ics(text: &str, zone: &TimeZone, tzdb: &TimeZoneDatabase) -> Result<Calendar> {
        Ok(Calendar { slots: Vec::new(), events: ics::parse(text, zone, tzdb)? })
    }

    /// Add dated slots to this calendar.
    pub fn with_slots(mut self, slots: impl IntoIterator<Item = DatedSlot>) -> Calendar {
        self.slots.extend(slots);
        self
    }

    pub fn slots(&self) -> &[DatedSlot] {
        &self.slots
    }

    /// How many VEVENTs (recurring or not) the calendar holds, overrides included.
    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.events.is_empty()
    }
}

impl SlotSource for Calendar {
    fn occurrences(&self, zone: &TimeZone, from: Timestamp, until: Timestamp, out: &mut Vec<Slot>) {
        for slot in &self.slots {
            slot.occurrences(zone, from, until, out);
        }
        for event in &self.events {
            event.occurrences(zone, from, until, out);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::schedule::local::tests::paris;
    use crate::schedule::next_slots;
    use jiff::SignedDuration;

    #[test]
    fn dated_slots_parse_and_print_back() {
        let slot = DatedSlot::parse("2026-12-05T21:00/2026-12-06T01:00").unwrap();
        assert_eq!(slot.start, civil::date(2026, 12, 5).at(21, 0, 0, 0));
        assert_eq!(slot.end, civil::date(2026, 12, 6).at(1, 0, 0, 0));
        assert_eq!(slot.to_string(), "2026-12-05T21:00/2026-12-06T01:00");
        let precise = DatedSlot::parse("2026-12-05T21:00:30/2026-12-05T22:00").unwrap();
        assert_eq!(DatedSlot::parse(&precise.to_string()).unwrap(), precise);
    }

    #[test]
    fn dated_slot_refusals() {
        for (bad, needle) in [
            ("2026-12-05T21:00", "expected START/END"),
            ("2026-12-05T21:00/2026-12-05T20:00", "not after the start"),
            ("2026-12-05T21:00/2026-12-05T21:00", "not after the start"),
            ("2026-12-05/2026-12-06", "is not a local date and time"),
            ("2026-12-05T21:00+01:00/2026-12-06T01:00", "without offset or zone"),
            ("2026-12-05T21:00Z/2026-12-06T01:00", "without offset or zone"),
            ("2026-12-05T21:00/2026-12-06T01:00[Europe/Paris]", "without offset or zone"),
            ("2026-13-05T21:00/2026-12-06T01:00", "2026-13-05T21:00"),
            ("2026-12-05T25:00/2026-12-06T01:00", "2026-12-05T25:00"),
        ] {
            let e = DatedSlot::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")) && e.contains(needle) && !e.contains('\n'), "{bad:?}: {e}");
        }
    }

    #[test]
    fn dated_slots_are_local_to_the_platform() {
        let tz = paris();
        let cal = Calendar::from_slots(vec![
            DatedSlot::parse("2026-12-05T21:00/2026-12-06T01:00").unwrap(),
            DatedSlot::parse("2026-11-05T21:00/2026-11-06T01:00").unwrap(), // past
        ]);
        let now: Timestamp = "2026-12-01T09:00:00Z".parse().unwrap();
        let slots = next_slots(&cal, &tz, now, SignedDuration::from_hours(24 * 30));
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0].start.to_string(), "2026-12-05T21:00:00+01:00[Europe/Paris]");
        assert_eq!(slots[0].end.to_string(), "2026-12-06T01:00:00+01:00[Europe/Paris]");
        // Beyond the horizon: not seen.
        assert!(next_slots(&cal, &tz, now, SignedDuration::from_hours(24)).is_empty());
    }

    #[test]
    fn dated_slots_across_the_clock_changes() {
        let tz = paris();
        let now: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let cal = Calendar::from_slots(vec![
            DatedSlot::parse("2026-03-29T02:30/2026-03-29T05:00").unwrap(),
            DatedSlot::parse("2026-03-29T02:05/2026-03-29T02:55").unwrap(), // inside the gap: never happens
            DatedSlot::parse("2026-10-25T01:30/2026-10-25T02:30").unwrap(),
        ]);
        let slots = next_slots(&cal, &tz, now, crate::schedule::HORIZON);
        let shown: Vec<String> = slots.iter().map(|s| format!("{} {}", s.start, s.end)).collect();
        assert_eq!(
            shown,
            [
                "2026-03-29T03:00:00+02:00[Europe/Paris] 2026-03-29T05:00:00+02:00[Europe/Paris]",
                "2026-10-25T01:30:00+02:00[Europe/Paris] 2026-10-25T02:30:00+02:00[Europe/Paris]",
            ]
        );
    }
}
