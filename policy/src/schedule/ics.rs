//! iCalendar (RFC 5545) text to level-3 slots.
//!
//! Content lines are read with the `icalendar` crate's parser; recurrences are expanded by
//! the `rrule` crate. `rrule` only ever sees *floating* wall-clock times labelled UTC:
//! each occurrence it yields is a wall-clock time of the event's own zone, which this
//! module turns into an instant with [`resolve`] — so jiff's database is the only time
//! zone database consulted, and the daylight-saving rule is the same as for windows.
//!
//! Understood: VEVENT with DTSTART (date-time with TZID, UTC `Z` or floating; or a DATE
//! for an all-day slot), DTEND or DURATION, RRULE (one or more), RDATE (date-time or date
//! values), EXDATE (date-time or date values), STATUS:CANCELLED, and RECURRENCE-ID
//! overrides (a VEVENT with the same UID that moves or cancels one instance). Refused with
//! a one-line error: a date-time DTSTART without DTEND or DURATION (a slot needs an end),
//! DTEND and DURATION together, an end not after the start, FREQ=SECONDLY/MINUTELY,
//! RDATE periods, RANGE=THISANDFUTURE, and unknown TZIDs.

use std::collections::BTreeMap;

use chrono::{Datelike, TimeZone as _, Timelike};
use icalendar::parser::{Component, Property};
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Span, Timestamp, ToSpan, civil};
use rrule::{Frequency, RRule, RRuleSet, Unvalidated};

use super::error::{Result, ScheduleError, one_line};
use super::local::resolve;
use super::{Slot, SlotSource};

/// At most this many recurrence instances are walked per event and per search; beyond it
/// the search stops (fewer slots is the safe side: nothing is applied outside a slot).
const MAX_INSTANCES_WALKED: usize = 1_000_000;

/// How long each instance lasts.
#[derive(Debug, Clone)]
enum Length {
    /// From DTEND - DTSTART: the same elapsed time for every instance (RFC 5545 3.8.5.3).
    Exact(SignedDuration),
    /// From DURATION or all-day dates: days are calendar days in the event's zone.
    Nominal(Span),
}

/// One VEVENT.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    zone: TimeZone,
    start: civil::DateTime,
    length: Length,
    /// Built on `start` read as UTC (floating): yields wall-clock times of `zone`.
    rules: Option<RRuleSet>,
    /// Extra instances, as wall-clock times of `zone`.
    rdates: Vec<civil::DateTime>,
    /// Instances removed by EXDATE date-times or replaced by RECURRENCE-ID overrides.
    excluded: Vec<Timestamp>,
    /// Days removed by EXDATE;VALUE=DATE (every instance starting that day in `zone`).
    excluded_days: Vec<civil::Date>,
}

/// A DATE or DATE-TIME value.
#[derive(Debug, Clone)]
enum Value {
    Date(civil::Date),
    DateTime(civil::DateTime, TimeZone),
}

impl Value {
    fn at(&self, zone: &TimeZone) -> (civil::DateTime, TimeZone) {
        match self {
            Value::Date(d) => (d.to_datetime(civil::Time::midnight()), zone.clone()),
            Value::DateTime(dt, tz) => (*dt, tz.clone()),
        }
    }
    fn instant(&self, zone: &TimeZone) -> Option<Timestamp> {
        let (dt, tz) = self.at(zone);
        resolve(&tz, dt)
    }
}

struct Ctx<'a> {
    zone: &'a TimeZone,
    tzdb: &'a TimeZoneDatabase,
}

pub(crate) fn parse(text: &str, zone: &TimeZone, tzdb: &TimeZoneDatabase) -> Result<Vec<Event>> {
    let unfolded = icalendar::parser::unfold(text);
    let roots = icalendar::parser::read_components(&unfolded).map_err(|e| ScheduleError::IcsSyntax(syntax_error(&unfolded, &e)))?;
    if !roots.iter().any(|c| c.name.as_str().eq_ignore_ascii_case("VCALENDAR")) {
        return Err(ScheduleError::IcsSyntax("no BEGIN:VCALENDAR block".into()));
    }
    let mut vevents = Vec::new();
    collect_vevents(&roots, &mut vevents);
    let ctx = Ctx { zone, tzdb };
    let mut events = Vec::new();
    // UID -> instants replaced by RECURRENCE-ID overrides.
    let mut overridden: BTreeMap<String, Vec<Timestamp>> = BTreeMap::new();
    for (n, vevent) in vevents.iter().enumerate() {
        let label = label(vevent, n);
        let err = |why: String| ScheduleError::IcsEvent { event: label.clone(), why };
        let cancelled = prop(vevent, "STATUS").is_some_and(|p| p.val.as_str().trim().eq_ignore_ascii_case("CANCELLED"));
        if let Some(rid) = prop(vevent, "RECURRENCE-ID") {
            if param(rid, "RANGE").is_some_and(|r| r.eq_ignore_ascii_case("THISANDFUTURE")) {
                return Err(err("RECURRENCE-ID;RANGE=THISANDFUTURE is not supported; split the series instead".into()));
            }
            let value = ctx.value(rid, "RECURRENCE-ID").map_err(&err)?;
            let instant = value.instant(zone).ok_or_else(|| err("RECURRENCE-ID is out of range".into()))?;
            let uid = prop(vevent, "UID").map(|p| p.val.as_str().to_owned()).unwrap_or_default();
            overridden.entry(uid).or_default().push(instant);
        }
        if cancelled {
            continue;
        }
        let mut event = ctx.event(vevent).map_err(err)?;
        if prop(vevent, "RECURRENCE-ID").is_some() {
            // An override is one instance, whatever rules it repeats.
            event.rules = None;
            event.rdates.clear();
        }
        let uid = prop(vevent, "UID").map(|p| p.val.as_str().to_owned());
        events.push((uid, prop(vevent, "RECURRENCE-ID").is_some(), event));
    }
    Ok(events
        .into_iter()
        .map(|(uid, is_override, mut event)| {
            if !is_override && let Some(instants) = uid.and_then(|u| overridden.get(&u)) {
                event.excluded.extend(instants);
            }
            event
        })
        .collect())
}

/// The parser's report names a line of the unfolded text; quote that line rather than the
/// parser's internals.
fn syntax_error(unfolded: &str, report: &str) -> String {
    let line = report
        .split("at line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok());
    match line {
        Some(n) => {
            let text: String = unfolded.lines().nth(n.saturating_sub(1)).unwrap_or("").trim().chars().take(80).collect();
            format!("malformed or unterminated component at line {n} (lines unfolded) `{text}`")
        }
        None if unfolded.trim().is_empty() => "empty; expected BEGIN:VCALENDAR ... END:VCALENDAR".into(),
        None => format!("not iCalendar text: {}", one_line(report)),
    }
}

fn collect_vevents<'a>(components: &'a [Component<'a>], out: &mut Vec<&'a Component<'a>>) {
    for c in components {
        if c.name.as_str().eq_ignore_ascii_case("VEVENT") {
            out.push(c);
        } else if c.name.as_str().eq_ignore_ascii_case("VCALENDAR") {
            collect_vevents(&c.components, out);
        }
    }
}

fn label(vevent: &Component<'_>, n: usize) -> String {
    let pick = |name| prop(vevent, name).map(|p| p.val.as_str().trim().to_owned()).filter(|s| !s.is_empty());
    match (pick("UID"), pick("SUMMARY")) {
        (Some(uid), _) => format!("{uid:?}"),
        (None, Some(summary)) => format!("{summary:?}"),
        (None, None) => format!("#{}", n + 1),
    }
}

fn prop<'a>(c: &'a Component<'a>, name: &str) -> Option<&'a Property<'a>> {
    c.properties.iter().find(|p| p.name.as_str().eq_ignore_ascii_case(name))
}

fn props<'a, 'n>(c: &'a Component<'a>, name: &'n str) -> impl Iterator<Item = &'a Property<'a>> + use<'a, 'n> {
    c.properties.iter().filter(move |p| p.name.as_str().eq_ignore_ascii_case(name))
}

fn param<'a>(p: &'a Property<'a>, key: &str) -> Option<&'a str> {
    p.params
        .iter()
        .find(|x| x.key.as_str().eq_ignore_ascii_case(key))
        .and_then(|x| x.val.as_ref())
        .map(|v| v.as_str().trim_matches('"'))
}

impl Ctx<'_> {
    fn event(&self, vevent: &Component<'_>) -> std::result::Result<Event, String> {
        let single = |name: &'static str| {
            let mut found = props(vevent, name);
            let first = found.next();
            match found.next() {
                Some(_) => Err(format!("{name} appears more than once")),
                None => Ok(first),
            }
        };
        let dtstart = single("DTSTART")?.ok_or("has no DTSTART")?;
        let start_value = self.value(dtstart, "DTSTART")?;
        let (start, zone) = start_value.at(self.zone);
        let start_instant = resolve(&zone, start).ok_or("DTSTART is out of range")?;

        let length = match (single("DTEND")?, single("DURATION")?) {
            (Some(_), Some(_)) => return Err("has both DTEND and DURATION".into()),
            (Some(dtend), None) => match (&start_value, self.value(dtend, "DTEND")?) {
                (Value::Date(s), Value::Date(e)) => {
                    let days = e.since(*s).map_err(|e| format!("DTEND: {e}"))?.get_days();
                    if days <= 0 {
                        return Err("DTEND is not after DTSTART".into());
                    }
                    Length::Nominal(days.days())
                }
                (Value::DateTime(..), end @ Value::DateTime(..)) => {
                    let end = end.instant(self.zone).ok_or("DTEND is out of range")?;
                    let d = end.duration_since(start_instant);
                    if d <= SignedDuration::ZERO {
                        return Err("DTEND is not after DTSTART".into());
                    }
                    Length::Exact(d)
                }
                _ => return Err("DTSTART and DTEND must both be dates or both be date-times".into()),
            },
            (None, Some(duration)) => Length::Nominal(parse_ics_duration(duration.val.as_str())?),
            (None, None) => match start_value {
                Value::Date(_) => Length::Nominal(1.day()),
                Value::DateTime(..) => return Err("has no DTEND or DURATION: a maintenance slot needs an end".into()),
            },
        };

        let mut rrules = Vec::new();
        for p in props(vevent, "RRULE") {
            rrules.push(self.rrule(p.val.as_str(), &zone)?);
        }
        let rules = if rrules.is_empty() {
            None
        } else {
            let dtstart = floating(start).ok_or("DTSTART is out of range for recurrence")?;
            let mut set = RRuleSet::new(dtstart).limit();
            for rule in rrules {
                let rule = rule.validate(dtstart).map_err(|e| format!("RRULE: {}", one_line(&e.to_string())))?;
                set = set.rrule(rule);
            }
            Some(set)
        };

        let mut rdates = Vec::new();
        for p in props(vevent, "RDATE") {
            if param(p, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("PERIOD")) || p.val.as_str().contains('/') {
                return Err("RDATE periods are not supported; use a VEVENT per slot".into());
            }
            for v in self.values(p, "RDATE")? {
                let (dt, tz) = v.at(&zone);
                let instant = resolve(&tz, dt).ok_or("RDATE is out of range")?;
                rdates.push(instant.to_zoned(zone.clone()).datetime());
            }
        }

        let (mut excluded, mut excluded_days) = (Vec::new(), Vec::new());
        for p in props(vevent, "EXDATE") {
            for v in self.values(p, "EXDATE")? {
                match v {
                    Value::Date(d) if matches!(start_value, Value::DateTime(..)) => excluded_days.push(d),
                    v => excluded.push(v.instant(&zone).ok_or("EXDATE is out of range")?),
                }
            }
        }
        Ok(Event { zone, start, length, rules, rdates, excluded, excluded_days })
    }

    fn value(&self, p: &Property<'_>, name: &str) -> std::result::Result<Value, String> {
        let mut values = self.values(p, name)?;
        match (values.pop(), values.is_empty()) {
            (Some(v), true) => Ok(v),
            _ => Err(format!("{name} {:?}: expected one value", p.val.as_str())),
        }
    }

    fn values(&self, p: &Property<'_>, name: &str) -> std::result::Result<Vec<Value>, String> {
        let is_date = param(p, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
        let tz = match param(p, "TZID") {
            Some(id) => Some(self.tzid(id).map_err(|why| format!("{name} TZID {id:?}: {why}"))?),
            None => None,
        };
        p.val
            .as_str()
            .split(',')
            .map(|raw| {
                let raw = raw.trim();
                let bad = |why: &str| format!("{name} {raw:?}: {why}");
                if is_date || raw.len() == 8 {
                    return parse_date(raw).map(Value::Date).ok_or_else(|| bad("not a date YYYYMMDD"));
                }
                let (text, utc) = match raw.strip_suffix(['Z', 'z']) {
                    Some(t) => (t, true),
                    None => (raw, false),
                };
                let dt = parse_date_time(text).ok_or_else(|| bad("not a date-time YYYYMMDDTHHMMSS[Z]"))?;
                let zone = match (utc, &tz) {
                    (true, _) => TimeZone::UTC,
                    (false, Some(tz)) => tz.clone(),
                    (false, None) => self.zone.clone(),
                };
                Ok(Value::DateTime(dt, zone))
            })
            .collect()
    }

    /// An IANA name, possibly quoted or written as a globally unique `/vendor/.../Area/City`.
    fn tzid(&self, id: &str) -> std::result::Result<TimeZone, String> {
        if self.zone.iana_name() == Some(id) {
            return Ok(self.zone.clone());
        }
        if let Ok(tz) = self.tzdb.get(id) {
            return Ok(tz);
        }
        if id.starts_with('/') {
            let segments: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
            for take in [2, 3, 1] {
                if segments.len() >= take
                    && let Ok(tz) = self.tzdb.get(&segments[segments.len() - take..].join("/"))
                {
                    return Ok(tz);
                }
            }
        }
        Err("not an IANA time zone name known to the time zone database (VTIMEZONE definitions are not read)".into())
    }

    /// Parse an RRULE value, rewriting UNTIL as a floating wall-clock time of `zone`.
    fn rrule(&self, text: &str, zone: &TimeZone) -> std::result::Result<RRule<Unvalidated>, String> {
        let mut parts = Vec::new();
        for part in text.trim().trim_start_matches("RRULE:").split(';') {
            match part.split_once('=') {
                Some((key, until)) if key.eq_ignore_ascii_case("UNTIL") => {
                    let bad = || format!("RRULE UNTIL {until:?} is not a date or date-time");
                    let wall = if let Some(date) = parse_date(until) {
                        date.to_datetime(civil::time(23, 59, 59, 0))
                    } else if let Some(utc) = until.strip_suffix(['Z', 'z']) {
                        let dt = parse_date_time(utc).ok_or_else(bad)?;
                        let instant = TimeZone::UTC.to_timestamp(dt).map_err(|_| bad())?;
                        instant.to_zoned(zone.clone()).datetime()
                    } else {
                        parse_date_time(until).ok_or_else(bad)?
                    };
                    parts.push(format!("UNTIL={}Z", wall.strftime("%Y%m%dT%H%M%S")));
                }
                _ => parts.push(part.to_owned()),
            }
        }
        let rule: RRule<Unvalidated> = parts.join(";").parse().map_err(|e: rrule::RRuleError| format!("RRULE {text:?}: {}", one_line(&e.to_string())))?;
        if matches!(rule.get_freq(), Frequency::Secondly | Frequency::Minutely) {
            return Err(format!("RRULE {text:?}: FREQ=SECONDLY and FREQ=MINUTELY are not maintenance slots"));
        }
        Ok(rule)
    }
}

fn parse_date(s: &str) -> Option<civil::Date> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    civil::Date::new(s[0..4].parse().ok()?, s[4..6].parse().ok()?, s[6..8].parse().ok()?).ok()
}

fn parse_date_time(s: &str) -> Option<civil::DateTime> {
    let (date, time) = s.split_once(['T', 't'])?;
    if time.len() != 6 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let time = civil::Time::new(time[0..2].parse().ok()?, time[2..4].parse().ok()?, time[4..6].parse().ok()?, 0).ok()?;
    Some(parse_date(date)?.to_datetime(time))
}

/// `P1W`, `P1D`, `PT4H30M`, `P1DT2H`: positive ISO 8601 durations only.
fn parse_ics_duration(s: &str) -> std::result::Result<Span, String> {
    let s = s.trim();
    let body = s.strip_prefix('+').unwrap_or(s);
    let bad = |why: &str| format!("DURATION {s:?}: {why}");
    if !body.starts_with(['P', 'p']) {
        return Err(bad("expected an ISO 8601 duration such as PT4H"));
    }
    let span: Span = body.parse().map_err(|e: jiff::Error| bad(&one_line(&e.to_string())))?;
    if span.is_negative() || span.is_zero() {
        return Err(bad("a slot needs a positive length"));
    }
    Ok(span)
}

/// A wall-clock time labelled UTC: what `rrule` iterates over.
fn floating(dt: civil::DateTime) -> Option<chrono::DateTime<rrule::Tz>> {
    let date = chrono::NaiveDate::from_ymd_opt(i32::from(dt.year()), u32::try_from(dt.month()).ok()?, u32::try_from(dt.day()).ok()?)?;
    let naive = date.and_hms_opt(u32::try_from(dt.hour()).ok()?, u32::try_from(dt.minute()).ok()?, u32::try_from(dt.second()).ok()?)?;
    Some(rrule::Tz::UTC.from_utc_datetime(&naive))
}

fn unfloat(dt: &chrono::DateTime<rrule::Tz>) -> Option<civil::DateTime> {
    let n = dt.naive_utc();
    civil::DateTime::new(
        i16::try_from(n.year()).ok()?,
        i8::try_from(n.month()).ok()?,
        i8::try_from(n.day()).ok()?,
        i8::try_from(n.hour()).ok()?,
        i8::try_from(n.minute()).ok()?,
        i8::try_from(n.second()).ok()?,
        0,
    )
    .ok()
}

impl Event {
    fn end_of(&self, start: Timestamp) -> Option<Timestamp> {
        match &self.length {
            Length::Exact(d) => start.checked_add(*d).ok(),
            Length::Nominal(span) => start.to_zoned(self.zone.clone()).checked_add(*span).ok().map(|z| z.timestamp()),
        }
    }

    fn longest(&self) -> SignedDuration {
        match &self.length {
            Length::Exact(d) => *d,
            // A nominal day can last 25 hours.
            Length::Nominal(span) => span
                .to_duration(civil::date(2000, 1, 1))
                .map(|d| d + SignedDuration::from_hours(2))
                .unwrap_or(SignedDuration::from_hours(24 * 366)),
        }
    }
}

impl SlotSource for Event {
    fn occurrences(&self, zone: &TimeZone, from: Timestamp, until: Timestamp, out: &mut Vec<Slot>) {
        // Wall-clock bounds in the event's zone, a day wider than needed on each side;
        // the exact test is done on instants below.
        let lo_instant = from.checked_sub(self.longest()).unwrap_or(Timestamp::MIN);
        let wall = |t: Timestamp| t.to_zoned(self.zone.clone()).datetime();
        let lo = wall(lo_instant).checked_sub(1.day()).unwrap_or(civil::DateTime::MIN);
        let hi = wall(until).checked_add(1.day()).unwrap_or(civil::DateTime::MAX);

        let mut starts: Vec<civil::DateTime> = Vec::new();
        let mut consider = |dt: civil::DateTime| {
            if dt >= lo && dt <= hi {
                starts.push(dt);
            }
        };
        consider(self.start);
        self.rdates.iter().copied().for_each(&mut consider);
        if let Some(rules) = &self.rules {
            for dt in rules.into_iter().take(MAX_INSTANCES_WALKED) {
                let Some(dt) = unfloat(&dt) else { break };
                if dt > hi {
                    break;
                }
                consider(dt);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        for dt in starts {
            if self.excluded_days.contains(&dt.date()) {
                continue;
            }
            let Some(start) = resolve(&self.zone, dt) else { continue };
            if self.excluded.contains(&start) {
                continue;
            }
            let Some(end) = self.end_of(start) else { continue };
            if end > start && end > from && start <= until {
                out.push(Slot::new(start, end, zone));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::schedule::local::tests::paris;
    use crate::schedule::{Calendar, HORIZON, next_slots};

    fn db() -> TimeZoneDatabase {
        TimeZoneDatabase::bundled()
    }

    fn ics(events: &str) -> String {
        format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//palier//test//EN\r\n{}END:VCALENDAR\r\n", events.replace('\n', "\r\n"))
    }

    fn slots(text: &str, now: &str, horizon: SignedDuration) -> Vec<String> {
        let tz = paris();
        let cal = Calendar::parse_ics(text, &tz, &db()).unwrap();
        next_slots(&cal, &tz, now.parse().unwrap(), horizon)
            .iter()
            .map(|s| format!("{} {}", s.start.strftime("%F %T%:z"), s.end.strftime("%F %T%:z")))
            .collect()
    }

    fn refused(text: &str) -> String {
        let e = Calendar::parse_ics(text, &paris(), &db()).unwrap_err().to_string();
        assert!(!e.contains('\n'), "not one line: {e}");
        e
    }

    #[test]
    fn single_event_with_tzid_and_dtend() {
        let text = ics("BEGIN:VEVENT\nUID:m1\nSUMMARY:Maintenance\nDTSTART;TZID=Europe/Paris:20261205T210000\nDTEND;TZID=Europe/Paris:20261206T010000\nEND:VEVENT\n");
        assert_eq!(slots(&text, "2026-12-01T00:00:00Z", HORIZON), ["2026-12-05 21:00:00+01:00 2026-12-06 01:00:00+01:00"]);
    }

    #[test]
    fn utc_and_floating_times_and_duration() {
        let text = ics(concat!(
            "BEGIN:VEVENT\nUID:utc\nDTSTART:20261205T200000Z\nDURATION:PT4H\nEND:VEVENT\n",
            "BEGIN:VEVENT\nUID:floating\nDTSTART:20261212T210000\nDURATION:PT2H30M\nEND:VEVENT\n",
            "BEGIN:VEVENT\nUID:allday\nDTSTART;VALUE=DATE:20261224\nEND:VEVENT\n",
        ));
        assert_eq!(
            slots(&text, "2026-12-01T00:00:00Z", HORIZON),
            [
                "2026-12-05 21:00:00+01:00 2026-12-06 01:00:00+01:00",
                "2026-12-12 21:00:00+01:00 2026-12-12 23:30:00+01:00",
                "2026-12-24 00:00:00+01:00 2026-12-25 00:00:00+01:00",
            ]
        );
    }

    #[test]
    fn other_tzid_is_converted_to_the_platform_zone() {
        let text = ics("BEGIN:VEVENT\nUID:ny\nDTSTART;TZID=\"America/New_York\":20261205T150000\nDURATION:PT1H\nEND:VEVENT\n");
        assert_eq!(slots(&text, "2026-12-01T00:00:00Z", HORIZON), ["2026-12-05 21:00:00+01:00 2026-12-05 22:00:00+01:00"]);
        let text = ics("BEGIN:VEVENT\nUID:moz\nDTSTART;TZID=/mozilla.org/20050126_1/Europe/Paris:20261205T150000\nDURATION:PT1H\nEND:VEVENT\n");
        assert_eq!(slots(&text, "2026-12-01T00:00:00Z", HORIZON), ["2026-12-05 15:00:00+01:00 2026-12-05 16:00:00+01:00"]);
    }

    #[test]
    fn rrule_with_exdate_and_until() {
        // Every Saturday 21:00-01:00 in December, except the 19th.
        let text = ics(concat!(
            "BEGIN:VEVENT\nUID:weekly\nDTSTART;TZID=Europe/Paris:20261205T210000\nDTEND;TZID=Europe/Paris:20261206T010000\n",
            "RRULE:FREQ=WEEKLY;BYDAY=SA;UNTIL=20261231T225959Z\n",
            "EXDATE;TZID=Europe/Paris:20261219T210000\nEND:VEVENT\n",
        ));
        assert_eq!(
            slots(&text, "2026-12-01T00:00:00Z", HORIZON),
            [
                "2026-12-05 21:00:00+01:00 2026-12-06 01:00:00+01:00",
                "2026-12-12 21:00:00+01:00 2026-12-13 01:00:00+01:00",
                "2026-12-26 21:00:00+01:00 2026-12-27 01:00:00+01:00",
            ]
        );
        // UNTIL given in UTC is compared as an instant: 20:00Z is 21:00 Paris, so the 26th is included
        // by 20261226T200000Z and excluded by 20261226T195959Z.
        for (until, count) in [("20261226T200000Z", 3), ("20261226T195959Z", 2)] {
            let text = ics(&format!(
                "BEGIN:VEVENT\nUID:w\nDTSTART;TZID=Europe/Paris:20261205T210000\nDURATION:PT4H\nRRULE:FREQ=WEEKLY;UNTIL={until}\nEXDATE;TZID=Europe/Paris:20261219T210000\nEND:VEVENT\n"
            ));
            assert_eq!(slots(&text, "2026-12-01T00:00:00Z", HORIZON).len(), count, "{until}");
        }
    }

    #[test]
    fn rrule_count_monthly_and_utc_exdate() {
        // First Sunday of each month, 6 times; the March one removed by a UTC EXDATE.
        let text = ics(concat!(
            "BEGIN:VEVENT\nUID:monthly\nDTSTART;TZID=Europe/Paris:20270103T060000\nDURATION:PT2H\n",
            "RRULE:FREQ=MONTHLY;BYDAY=1SU;COUNT=6\nEXDATE:20270307T050000Z\nEND:VEVENT\n",
        ));
        let got = slots(&text, "2026-12-01T00:00:00Z", HORIZON);
        assert_eq!(
            got,
            [
                "2027-01-03 06:00:00+01:00 2027-01-03 08:00:00+01:00",
                "2027-02-07 06:00:00+01:00 2027-02-07 08:00:00+01:00",
                "2027-04-04 06:00:00+02:00 2027-04-04 08:00:00+02:00",
                "2027-05-02 06:00:00+02:00 2027-05-02 08:00:00+02:00",
                "2027-06-06 06:00:00+02:00 2027-06-06 08:00:00+02:00",
            ]
        );
    }

    #[test]
    fn recurrence_keeps_wall_clock_time_across_dst_and_follows_the_house_rule() {
        // Daily 02:30 for a week around the spring-forward night: 03:00 on the 29th (first
        // instant after the gap), 02:30 on the other days.
        let text = ics("BEGIN:VEVENT\nUID:d\nDTSTART;TZID=Europe/Paris:20260327T023000\nDURATION:PT1H\nRRULE:FREQ=DAILY;COUNT=4\nEND:VEVENT\n");
        assert_eq!(
            slots(&text, "2026-03-01T00:00:00Z", HORIZON),
            [
                "2026-03-27 02:30:00+01:00 2026-03-27 03:30:00+01:00",
                "2026-03-28 02:30:00+01:00 2026-03-28 03:30:00+01:00",
                "2026-03-29 03:00:00+02:00 2026-03-29 04:00:00+02:00",
                "2026-03-30 02:30:00+02:00 2026-03-30 03:30:00+02:00",
            ]
        );
        // Fall-back night: 02:30 occurs twice; the slot is used once, on the earlier pass
        // (02:30 CEST), and lasts its 30 minutes: it ends at 02:00 CET, the second 02:00.
        let text = ics("BEGIN:VEVENT\nUID:f\nDTSTART;TZID=Europe/Paris:20261024T023000\nDURATION:PT30M\nRRULE:FREQ=DAILY;COUNT=2\nEND:VEVENT\n");
        assert_eq!(
            slots(&text, "2026-10-01T00:00:00Z", HORIZON),
            ["2026-10-24 02:30:00+02:00 2026-10-24 03:00:00+02:00", "2026-10-25 02:30:00+02:00 2026-10-25 02:00:00+01:00"]
        );
    }

    #[test]
    fn exact_length_from_dtend_nominal_from_duration() {
        // 22:00 -> 04:00 is 6 hours; on the fall-back night an exact length ends at 03:00
        // on the wall, a nominal P1D all-day slot lasts 25 hours.
        let text = ics(concat!(
            "BEGIN:VEVENT\nUID:x\nDTSTART;TZID=Europe/Paris:20261023T220000\nDTEND;TZID=Europe/Paris:20261024T040000\nRRULE:FREQ=DAILY;COUNT=3\nEND:VEVENT\n",
            "BEGIN:VEVENT\nUID:y\nDTSTART;VALUE=DATE:20261025\nDTEND;VALUE=DATE:20261026\nEND:VEVENT\n",
        ));
        assert_eq!(
            slots(&text, "2026-10-01T00:00:00Z", HORIZON),
            [
                "2026-10-23 22:00:00+02:00 2026-10-24 04:00:00+02:00",
                "2026-10-24 22:00:00+02:00 2026-10-25 03:00:00+01:00",
                "2026-10-25 00:00:00+02:00 2026-10-26 00:00:00+01:00",
                "2026-10-25 22:00:00+01:00 2026-10-26 04:00:00+01:00",
            ]
        );
    }

    #[test]
    fn rdate_exdate_date_cancelled_and_overrides() {
        let text = ics(concat!(
            "BEGIN:VEVENT\nUID:series\nDTSTART;TZID=Europe/Paris:20261201T220000\nDURATION:PT1H\n",
            "RRULE:FREQ=DAILY;COUNT=5\nEXDATE;VALUE=DATE:20261202,20261203\n",
            "RDATE;TZID=Europe/Paris:20261210T050000\nEND:VEVENT\n",
            // The instance of the 4th moved to 23:00-23:30.
            "BEGIN:VEVENT\nUID:series\nRECURRENCE-ID;TZID=Europe/Paris:20261204T220000\nDTSTART;TZID=Europe/Paris:20261204T230000\nDURATION:PT30M\nEND:VEVENT\n",
            // The instance of the 5th cancelled.
            "BEGIN:VEVENT\nUID:series\nRECURRENCE-ID;TZID=Europe/Paris:20261205T220000\nSTATUS:CANCELLED\nDTSTART;TZID=Europe/Paris:20261205T220000\nDURATION:PT1H\nEND:VEVENT\n",
            "BEGIN:VEVENT\nUID:gone\nSTATUS:CANCELLED\nDTSTART;TZID=Europe/Paris:20261206T220000\nDURATION:PT1H\nEND:VEVENT\n",
        ));
        assert_eq!(
            slots(&text, "2026-11-30T00:00:00Z", HORIZON),
            [
                "2026-12-01 22:00:00+01:00 2026-12-01 23:00:00+01:00",
                "2026-12-04 23:00:00+01:00 2026-12-04 23:30:00+01:00",
                "2026-12-10 05:00:00+01:00 2026-12-10 06:00:00+01:00",
            ]
        );
    }

    #[test]
    fn an_old_infinite_series_is_expanded_up_to_the_horizon_only() {
        let text = ics("BEGIN:VEVENT\nUID:old\nDTSTART:20100105T210000Z\nDURATION:PT1H\nRRULE:FREQ=WEEKLY\nEND:VEVENT\n");
        let got = slots(&text, "2026-12-01T00:00:00Z", SignedDuration::from_hours(24 * 14));
        assert_eq!(got, ["2026-12-01 22:00:00+01:00 2026-12-01 23:00:00+01:00", "2026-12-08 22:00:00+01:00 2026-12-08 23:00:00+01:00"]);
        // A running instance is returned first.
        let got = slots(&text, "2026-12-01T21:30:00Z", SignedDuration::from_hours(24));
        assert_eq!(got, ["2026-12-01 22:00:00+01:00 2026-12-01 23:00:00+01:00"]);
    }

    #[test]
    fn folded_lines_and_lowercase_names() {
        let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:fold\r\nSUMMARY:a long\r\n  summary\r\nDTSTART;TZID=Europe/Pa\r\n ris:20261205T210000\r\nDURATION:PT1H\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(slots(text, "2026-12-01T00:00:00Z", HORIZON), ["2026-12-05 21:00:00+01:00 2026-12-05 22:00:00+01:00"]);
    }

    #[test]
    fn refusals_are_one_line_and_say_what() {
        let ev = |body: &str| ics(&format!("BEGIN:VEVENT\nUID:bad\n{body}END:VEVENT\n"));
        for (text, needle) in [
            ("not a calendar".to_owned(), "invalid iCalendar text"),
            (String::new(), "invalid iCalendar text: empty"),
            ("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:20261205T210000\r\n".to_owned(), "at line 2 (lines unfolded) `BEGIN:VEVENT`"),
            ("BEGIN:VEVENT\r\nEND:VEVENT\r\n".to_owned(), "no BEGIN:VCALENDAR"),
            (ev("DURATION:PT1H\n"), "\"bad\": has no DTSTART"),
            (ev("DTSTART:20261205T210000\n"), "has no DTEND or DURATION"),
            (ev("DTSTART:20261205T210000\nDTEND:20261205T200000\n"), "DTEND is not after DTSTART"),
            (ev("DTSTART:20261205T210000\nDTEND:20261205T220000\nDURATION:PT1H\n"), "both DTEND and DURATION"),
            (ev("DTSTART:2026120T210000\nDURATION:PT1H\n"), "DTSTART \"2026120T210000\": not a date-time"),
            (ev("DTSTART:20261305T210000\nDURATION:PT1H\n"), "DTSTART \"20261305T210000\""),
            (ev("DTSTART;TZID=Romance Standard Time:20261205T210000\nDURATION:PT1H\n"), "TZID \"Romance Standard Time\""),
            (ev("DTSTART:20261205T210000\nDURATION:-PT1H\n"), "DURATION \"-PT1H\""),
            (ev("DTSTART:20261205T210000\nDURATION:PT0S\n"), "positive length"),
            (ev("DTSTART:20261205T210000\nDURATION:4h\n"), "ISO 8601"),
            (ev("DTSTART:20261205T210000\nDURATION:PT1H\nRRULE:FREQ=FORTNIGHTLY\n"), "RRULE \"FREQ=FORTNIGHTLY\""),
            (ev("DTSTART:20261205T210000\nDURATION:PT1H\nRRULE:FREQ=MINUTELY\n"), "not maintenance slots"),
            (ev("DTSTART:20261205T210000\nDURATION:PT1H\nRRULE:FREQ=DAILY;UNTIL=soon\n"), "UNTIL \"soon\""),
            (ev("DTSTART:20261205T210000\nDURATION:PT1H\nRDATE;VALUE=PERIOD:20261206T210000/PT1H\n"), "RDATE periods"),
            (ev("DTSTART;VALUE=DATE:20261205\nDTEND:20261206T010000\n"), "both be dates or both be date-times"),
        ] {
            let e = refused(&text);
            assert!(e.contains(needle), "{needle:?} not in: {e}");
        }
    }
}
