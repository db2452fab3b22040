//! The one place where a wall-clock time becomes an instant (see `DST.md`).

use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, civil};

/// Resolve a wall-clock time of `zone` to one instant, by the house rule for daylight saving:
///
/// - a time that exists once is that instant;
/// - a time that does not exist (it falls in the gap of a spring-forward night, such as
///   02:30 in Europe/Paris on 2026-03-29) resolves to **the first instant after the gap**:
///   the transition itself, 03:00 CEST. This is NOT jiff's `compatible` disambiguation,
///   which shifts by the length of the gap (02:30 would become 03:30 and a window
///   02:30-03:30 would shrink to nothing); the first instant after the gap keeps the part
///   of the window that the clock on the wall actually shows;
/// - a time that exists twice (it falls in the fold of a fall-back night, such as 02:30 in
///   Europe/Paris on 2026-10-25) resolves to **the earlier occurrence** (02:30 CEST, +02:00).
///
/// Both ends of a window go through this function, so a window is used at most once per
/// night: its second pass through the fold is never generated.
///
/// Returns `None` only when the time is outside jiff's supported range.
pub fn resolve(zone: &TimeZone, dt: civil::DateTime) -> Option<Timestamp> {
    let ambiguous = zone.to_ambiguous_timestamp(dt);
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { offset } | AmbiguousOffset::Fold { before: offset, .. } => {
            // In a fold, `before` is the offset in force before the transition: the earlier instant.
            offset.to_timestamp(dt).ok()
        }
        AmbiguousOffset::Gap { before, .. } => {
            // Read with the offset before the gap, the time lands at or after the transition;
            // the transition is the latest one at or before that instant.
            let past_gap = before.to_timestamp(dt).ok()?;
            let probe = past_gap.checked_add(SignedDuration::from_nanos(1)).unwrap_or(past_gap);
            match zone.preceding(probe).next() {
                Some(transition) if transition.timestamp() <= past_gap => Some(transition.timestamp()),
                _ => ambiguous.compatible().ok(),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use jiff::civil::date;

    /// Europe/Paris from jiff's bundled database: tests never read the machine's zoneinfo.
    pub(crate) fn paris() -> TimeZone {
        jiff::tz::TimeZoneDatabase::bundled().get("Europe/Paris").expect("bundled tzdb has Europe/Paris")
    }

    fn at(zone: &TimeZone, dt: civil::DateTime) -> String {
        resolve(zone, dt).unwrap().to_zoned(zone.clone()).to_string()
    }

    #[test]
    fn spring_forward_gap_goes_to_the_first_instant_after_it() {
        let tz = paris();
        assert_eq!(at(&tz, date(2026, 3, 29).at(2, 30, 0, 0)), "2026-03-29T03:00:00+02:00[Europe/Paris]");
        assert_eq!(at(&tz, date(2026, 3, 29).at(2, 0, 0, 0)), "2026-03-29T03:00:00+02:00[Europe/Paris]");
        assert_eq!(at(&tz, date(2026, 3, 29).at(2, 59, 59, 0)), "2026-03-29T03:00:00+02:00[Europe/Paris]");
        assert_eq!(at(&tz, date(2026, 3, 29).at(1, 59, 0, 0)), "2026-03-29T01:59:00+01:00[Europe/Paris]");
        assert_eq!(at(&tz, date(2026, 3, 29).at(3, 0, 0, 0)), "2026-03-29T03:00:00+02:00[Europe/Paris]");
    }

    #[test]
    fn fall_back_fold_takes_the_earlier_occurrence() {
        let tz = paris();
        assert_eq!(at(&tz, date(2026, 10, 25).at(2, 30, 0, 0)), "2026-10-25T02:30:00+02:00[Europe/Paris]");
        assert_eq!(at(&tz, date(2026, 10, 25).at(2, 0, 0, 0)), "2026-10-25T02:00:00+02:00[Europe/Paris]");
        assert_eq!(at(&tz, date(2026, 10, 25).at(3, 0, 0, 0)), "2026-10-25T03:00:00+01:00[Europe/Paris]");
    }

    #[test]
    fn utc_is_plain() {
        assert_eq!(at(&TimeZone::UTC, date(2026, 3, 29).at(2, 30, 0, 0)), "2026-03-29T02:30:00+00:00[UTC]");
    }
}
