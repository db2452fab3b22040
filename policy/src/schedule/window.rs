//! Weekly wall-clock windows: `Tue 22:00-23:30`, `Mon-Fri 12:00-14:00`, `Sat,Sun 08:00-10:00`,
//! `20:00-07:00` (every day, ends the next morning).

use std::fmt;
use std::str::FromStr;

use jiff::civil::{self, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{Result, ScheduleError};
use super::local::resolve;
use super::{Slot, SlotSource};

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A set of weekdays, Monday first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Days(u8);

impl Days {
    pub const EVERY_DAY: Days = Days(0b111_1111);

    pub fn contains(self, day: Weekday) -> bool {
        self.0 & Self::bit(day) != 0
    }
    fn bit(day: Weekday) -> u8 {
        1 << day.to_monday_zero_offset()
    }
    fn index(name: &str) -> Option<i8> {
        DAY_NAMES.iter().position(|d| d.eq_ignore_ascii_case(name)).and_then(|i| i8::try_from(i).ok())
    }

    /// `Tue`, `Mon-Fri`, `Fri-Mon` (wraps over the weekend), `Sat,Sun`, `Mon,Wed-Fri`.
    fn parse(text: &str) -> std::result::Result<Days, String> {
        let mut bits = 0u8;
        for part in text.split(',') {
            let day = |name: &str| {
                Days::index(name).ok_or_else(|| format!("unknown day {name:?}; days are Mon Tue Wed Thu Fri Sat Sun"))
            };
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None => {
                    let d = day(part)?;
                    (d, d)
                }
            };
            let mut i = first;
            loop {
                bits |= 1 << i;
                if i == last {
                    break;
                }
                i = (i + 1) % 7;
            }
        }
        Ok(Days(bits))
    }
}

impl fmt::Display for Days {
    /// Runs of three days or more as ranges (`Mon-Fri`), others listed (`Sat,Sun`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut i = 0;
        while i < 7 {
            if self.0 & (1 << i) == 0 {
                i += 1;
                continue;
            }
            let start = i;
            while i + 1 < 7 && self.0 & (1 << (i + 1)) != 0 {
                i += 1;
            }
            match i - start {
                0 => parts.push(DAY_NAMES[start].to_owned()),
                1 => parts.push(format!("{},{}", DAY_NAMES[start], DAY_NAMES[i])),
                _ => parts.push(format!("{}-{}", DAY_NAMES[start], DAY_NAMES[i])),
            }
            i += 1;
        }
        f.write_str(&parts.join(","))
    }
}

/// A weekly window in the platform's wall-clock time.
///
/// `days` are the days on which the window **starts**; when `end <= start` the window
/// crosses midnight and ends on the following day (`Sun 23:00-01:00` ends Monday 01:00).
/// Both ends are resolved to instants by [`super::resolve`]: on a spring-forward night a
/// start inside the gap moves to the first instant after it, on a fall-back night an end
/// or start inside the fold takes its earlier occurrence, and a window whose two ends
/// resolve to the same instant (both inside the gap) does not occur that night.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub days: Days,
    pub start: civil::Time,
    pub end: civil::Time,
}

impl Window {
    /// Parse `[DAYS ]HH:MM-HH:MM`; `24:00` is accepted as an end and means midnight.
    pub fn parse(text: &str) -> Result<Window> {
        let why = |w: String| ScheduleError::Window { value: text.to_owned(), why: w };
        let mut tokens = text.split_whitespace();
        let (days, times) = match (tokens.next(), tokens.next(), tokens.next()) {
            (Some(times), None, None) => (Days::EVERY_DAY, times),
            (Some(days), Some(times), None) => (Days::parse(days).map_err(why)?, times),
            _ => return Err(why("expected [DAYS ]HH:MM-HH:MM, for example \"Tue 22:00-23:30\" or \"Mon-Fri 12:00-14:00\"".into())),
        };
        let (start, end) = times
            .split_once('-')
            .ok_or_else(|| why(format!("{times:?} is not HH:MM-HH:MM")))?;
        let start = parse_hhmm(start, false).map_err(why)?;
        let end = parse_hhmm(end, true).map_err(why)?;
        if start == end {
            return Err(why("start and end are equal: a window needs a length (it cannot be empty or 24 hours)".into()));
        }
        Ok(Window { days, start, end })
    }

    /// Whether the window ends on the day after it starts.
    pub fn crosses_midnight(&self) -> bool {
        self.end <= self.start
    }

    /// The occurrence that starts on `date`, if the window runs that day and that night's
    /// clock changes leave it any length.
    pub fn on(&self, zone: &TimeZone, date: civil::Date) -> Option<Slot> {
        if !self.days.contains(date.weekday()) {
            return None;
        }
        let end_date = if self.crosses_midnight() { date.tomorrow().ok()? } else { date };
        let start = resolve(zone, date.to_datetime(self.start))?;
        let end = resolve(zone, end_date.to_datetime(self.end))?;
        (end > start).then(|| Slot::new(start, end, zone))
    }
}

fn parse_hhmm(text: &str, is_end: bool) -> std::result::Result<civil::Time, String> {
    let bad = || format!("{text:?} is not a time HH:MM");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if is_end && h == 24 && m == 0 {
        return Ok(civil::Time::midnight());
    }
    if h > 23 {
        return Err(format!("hour {h} in {text:?} is out of range 00-23"));
    }
    if m > 59 {
        return Err(format!("minute {m} in {text:?} is out of range 00-59"));
    }
    civil::Time::new(h, m, 0, 0).map_err(|e| e.to_string())
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days != Days::EVERY_DAY {
            write!(f, "{} ", self.days)?;
        }
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start.hour(),
            self.start.minute(),
            self.end.hour(),
            self.end.minute()
        )
    }
}

impl FromStr for Window {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self> {
        Window::parse(s)
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Window::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl SlotSource for Window {
    fn occurrences(&self, zone: &TimeZone, from: Timestamp, until: Timestamp, out: &mut Vec<Slot>) {
        std::slice::from_ref(self).occurrences(zone, from, until, out);
    }
}

impl SlotSource for [Window] {
    /// One pass over the days: an occurrence that started up to two days before `from`
    /// (a window crossing midnight, lengthened by a clock change) is still seen.
    fn occurrences(&self, zone: &TimeZone, from: Timestamp, until: Timestamp, out: &mut Vec<Slot>) {
        if self.is_empty() || until < from {
            return;
        }
        let first = from.to_zoned(zone.clone()).date().checked_sub(2.days()).unwrap_or(civil::Date::MIN);
        let last = until.to_zoned(zone.clone()).date();
        let mut day = first;
        while day <= last {
            for window in self {
                if let Some(slot) = window.on(zone, day)
                    && slot.end.timestamp() > from
                    && slot.start.timestamp() <= until
                {
                    out.push(slot);
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
    }
}

impl SlotSource for Vec<Window> {
    fn occurrences(&self, zone: &TimeZone, from: Timestamp, until: Timestamp, out: &mut Vec<Slot>) {
        self.as_slice().occurrences(zone, from, until, out);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::schedule::local::tests::paris;
    use crate::schedule::next_slots;
    use jiff::SignedDuration;
    use jiff::civil::date;

    fn w(text: &str) -> Window {
        Window::parse(text).unwrap()
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn show(slots: &[Slot]) -> Vec<String> {
        slots.iter().map(|s| format!("{} / {}", s.start.strftime("%a %F %T%:z"), s.end.strftime("%a %F %T%:z"))).collect()
    }

    #[test]
    fn parses_each_form_and_prints_it_back() {
        for (text, canonical) in [
            ("Tue 22:00-23:30", "Tue 22:00-23:30"),
            ("Mon-Fri 12:00-14:00", "Mon-Fri 12:00-14:00"),
            ("Sat,Sun 08:00-10:00", "Sat,Sun 08:00-10:00"),
            ("12:00-14:00", "12:00-14:00"),
            ("20:00-07:00", "20:00-07:00"),
            ("Sun 23:00-01:00", "Sun 23:00-01:00"),
            ("mon-sun 9:00-10:00", "09:00-10:00"),
            ("Fri-Mon 22:00-24:00", "Mon,Fri-Sun 22:00-00:00"),
            ("Mon,Wed-Fri 06:00-07:00", "Mon,Wed-Fri 06:00-07:00"),
            ("  Tue   22:00-23:30 ", "Tue 22:00-23:30"),
        ] {
            let window = w(text);
            assert_eq!(window.to_string(), canonical, "{text}");
            assert_eq!(w(canonical), window, "{canonical} does not read back");
        }
        let wd = w("Mon-Fri 12:00-14:00");
        assert!(wd.days.contains(Weekday::Monday) && wd.days.contains(Weekday::Friday) && !wd.days.contains(Weekday::Saturday));
        let wrap = w("Fri-Mon 22:00-23:00");
        assert!(wrap.days.contains(Weekday::Sunday) && wrap.days.contains(Weekday::Monday) && !wrap.days.contains(Weekday::Tuesday));
        assert!(w("20:00-07:00").crosses_midnight() && !w("Tue 22:00-23:30").crosses_midnight());
    }

    #[test]
    fn refusals_name_the_bad_value_on_one_line() {
        for (bad, needle) in [
            ("", "expected [DAYS ]HH:MM-HH:MM"),
            ("Tue", "is not HH:MM-HH:MM"),
            ("Tue 22:00", "is not HH:MM-HH:MM"),
            ("Tue 25:00-23:30", "hour 25"),
            ("Tue 22:60-23:30", "minute 60"),
            ("Tue 22-23", "\"22\" is not a time"),
            ("Tue 22:00-23:30 extra", "expected"),
            ("Tues 22:00-23:30", "unknown day \"Tues\""),
            ("Mon-Fry 12:00-14:00", "unknown day \"Fry\""),
            ("Mon,,Tue 12:00-14:00", "unknown day \"\""),
            ("12:00-12:00", "start and end are equal"),
            ("24:00-02:00", "hour 24"),
            ("Tue 2200-2330", "is not a time"),
            ("Tue 22:0-23:30", "is not a time"),
        ] {
            let e = Window::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad:?} not named: {e}");
            assert!(e.contains(needle), "{bad:?}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn weekly_occurrences_in_the_platform_zone() {
        let tz = paris();
        // Tuesday 2026-12-01 10:00 Paris.
        let now = ts("2026-12-01T09:00:00Z");
        let slots = next_slots(&[w("Tue 22:00-23:30"), w("Thu 22:00-23:30")][..], &tz, now, SignedDuration::from_hours(24 * 8));
        assert_eq!(
            show(&slots),
            [
                "Tue 2026-12-01 22:00:00+01:00 / Tue 2026-12-01 23:30:00+01:00",
                "Thu 2026-12-03 22:00:00+01:00 / Thu 2026-12-03 23:30:00+01:00",
                "Tue 2026-12-08 22:00:00+01:00 / Tue 2026-12-08 23:30:00+01:00",
            ]
        );
    }

    #[test]
    fn crossing_midnight_ends_the_next_day_and_is_seen_while_running() {
        let tz = paris();
        let sunday = w("Sun 23:00-01:00").on(&tz, date(2026, 12, 6)).unwrap();
        assert_eq!(show(&[sunday]), ["Sun 2026-12-06 23:00:00+01:00 / Mon 2026-12-07 01:00:00+01:00"]);
        // Monday 00:30: the Sunday window is still running and is returned first.
        let now = ts("2026-12-06T23:30:00Z");
        let slots = next_slots(&[w("Sun 23:00-01:00")][..], &tz, now, SignedDuration::from_hours(24 * 6));
        assert_eq!(slots.len(), 1);
        assert!(slots[0].contains(now));
        // Daily 20:00-07:00: at 06:00 we are inside the previous evening's window.
        let daily = w("20:00-07:00");
        let now = ts("2026-12-02T05:00:00Z");
        let slots = next_slots(&[daily][..], &tz, now, SignedDuration::from_hours(24));
        assert_eq!(
            show(&slots[..2]),
            ["Tue 2026-12-01 20:00:00+01:00 / Wed 2026-12-02 07:00:00+01:00", "Wed 2026-12-02 20:00:00+01:00 / Thu 2026-12-03 07:00:00+01:00"]
        );
    }

    #[test]
    fn day_ranges_and_lists() {
        let tz = paris();
        let now = ts("2026-11-30T00:00:00Z"); // Monday
        let week = SignedDuration::from_hours(24 * 7) - SignedDuration::from_secs(1);
        let starts = |text: &str| -> Vec<String> {
            next_slots(&[w(text)][..], &tz, now, week).iter().map(|s| s.start.strftime("%a").to_string()).collect()
        };
        assert_eq!(starts("Mon-Fri 12:00-14:00"), ["Mon", "Tue", "Wed", "Thu", "Fri"]);
        assert_eq!(starts("Sat,Sun 08:00-10:00"), ["Sat", "Sun"]);
        assert_eq!(starts("Fri-Mon 08:00-10:00"), ["Mon", "Fri", "Sat", "Sun"]);
        assert_eq!(starts("12:00-14:00").len(), 7);
    }

    #[test]
    fn spring_forward_night_europe_paris() {
        let tz = paris();
        let sunday = date(2026, 3, 29);
        // 02:30 does not exist: the window opens at the first instant after the gap, 03:00 CEST.
        let slot = w("Sun 02:30-04:00").on(&tz, sunday).unwrap();
        assert_eq!(show(&[slot]), ["Sun 2026-03-29 03:00:00+02:00 / Sun 2026-03-29 04:00:00+02:00"]);
        let slot = w("Sun 02:30-03:30").on(&tz, sunday).unwrap();
        assert_eq!(show(std::slice::from_ref(&slot)), ["Sun 2026-03-29 03:00:00+02:00 / Sun 2026-03-29 03:30:00+02:00"]);
        assert_eq!(slot.duration(), SignedDuration::from_mins(30));
        // An end inside the gap closes the window at the same first instant after it.
        let slot = w("Sun 01:00-02:30").on(&tz, sunday).unwrap();
        assert_eq!(show(&[slot]), ["Sun 2026-03-29 01:00:00+01:00 / Sun 2026-03-29 03:00:00+02:00"]);
        // Entirely inside the gap: that night there is no such window.
        assert_eq!(w("Sun 02:10-02:50").on(&tz, sunday), None);
        // The week after, the same window is back to normal.
        let slot = w("Sun 02:30-03:30").on(&tz, date(2026, 4, 5)).unwrap();
        assert_eq!(show(&[slot]), ["Sun 2026-04-05 02:30:00+02:00 / Sun 2026-04-05 03:30:00+02:00"]);
        // A daily window through the gap, seen by the search: one occurrence per night.
        let slots = next_slots(&[w("02:30-03:30")][..], &tz, ts("2026-03-27T12:00:00Z"), SignedDuration::from_hours(72));
        assert_eq!(
            show(&slots),
            [
                "Sat 2026-03-28 02:30:00+01:00 / Sat 2026-03-28 03:30:00+01:00",
                "Sun 2026-03-29 03:00:00+02:00 / Sun 2026-03-29 03:30:00+02:00",
                "Mon 2026-03-30 02:30:00+02:00 / Mon 2026-03-30 03:30:00+02:00",
            ]
        );
    }

    #[test]
    fn fall_back_night_europe_paris() {
        let tz = paris();
        let sunday = date(2026, 10, 25);
        // 01:30 exists once (CEST); 02:30 exists twice: the earlier, CEST, ends the window.
        let slot = w("Sun 01:30-02:30").on(&tz, sunday).unwrap();
        assert_eq!(show(std::slice::from_ref(&slot)), ["Sun 2026-10-25 01:30:00+02:00 / Sun 2026-10-25 02:30:00+02:00"]);
        assert_eq!(slot.duration(), SignedDuration::from_hours(1));
        // Entirely inside the fold: used once, on its first pass.
        let slots = next_slots(&[w("Sun 02:15-02:45")][..], &tz, ts("2026-10-24T12:00:00Z"), SignedDuration::from_hours(30));
        assert_eq!(show(&slots), ["Sun 2026-10-25 02:15:00+02:00 / Sun 2026-10-25 02:45:00+02:00"]);
        // Starting in the fold, ending after it: starts on the first pass and lasts the extra hour.
        let slot = w("Sun 02:30-03:30").on(&tz, sunday).unwrap();
        assert_eq!(show(std::slice::from_ref(&slot)), ["Sun 2026-10-25 02:30:00+02:00 / Sun 2026-10-25 03:30:00+01:00"]);
        assert_eq!(slot.duration(), SignedDuration::from_hours(2));
        // A window across midnight into the fold night.
        let slot = w("Sat 23:00-02:30").on(&tz, date(2026, 10, 24)).unwrap();
        assert_eq!(show(&[slot]), ["Sat 2026-10-24 23:00:00+02:00 / Sun 2026-10-25 02:30:00+02:00"]);
    }
}
