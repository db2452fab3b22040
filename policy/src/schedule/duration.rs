//! Human durations of the agent config: `2h`, `15m`, `90s`, `1h30m`, `1d`.

use std::fmt::Write as _;

use jiff::SignedDuration;

use super::error::{Result, ScheduleError};

const UNITS: [(char, u32); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parse a duration written as whole numbers with units, largest unit first, each unit
/// at most once: `2h`, `15m`, `90s`, `1h30m`, `1d12h`. A day is exactly 24 hours.
/// No sign, no space, no fraction: a config value is either exact or refused.
pub fn parse_duration(text: &str) -> Result<SignedDuration> {
    let why = |w: &str| ScheduleError::Duration { value: text.to_owned(), why: w.to_owned() };
    if text.is_empty() {
        return Err(why("empty; expected for example 2h, 15m, 90s or 1h30m"));
    }
    let mut total: i64 = 0;
    let mut next_unit = 0; // index into UNITS: units must come in decreasing order
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(why("expected a number followed by d, h, m or s, for example 1h30m"));
        }
        let number: i64 = rest[..digits].parse().map_err(|_| why("number too large"))?;
        let Some(unit) = rest[digits..].chars().next() else {
            return Err(why("number without a unit; add d, h, m or s"));
        };
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(why(&format!("unknown unit {unit:?}; units are d, h, m and s")));
        };
        if pos < next_unit {
            return Err(why("units must appear once each, largest first (d, h, m, s)"));
        }
        next_unit = pos + 1;
        total = number
            .checked_mul(i64::from(UNITS[pos].1))
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| why("too large"))?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Ok(SignedDuration::from_secs(total))
}

/// Write a duration the way [`parse_duration`] reads it (`1h30m`, `0s`, `24h`); sub-second
/// parts are dropped, a negative duration gets a leading `-`. Days are written as hours
/// (`24h`, `48h`), as notices and watches are negotiated and written in configs.
pub fn format_duration(d: SignedDuration) -> String {
    let mut out = String::new();
    if d.is_negative() {
        out.push('-');
    }
    let mut secs = d.as_secs().unsigned_abs();
    if secs == 0 {
        out.push_str("0s");
        return out;
    }
    for (unit, size) in UNITS.into_iter().filter(|(u, _)| *u != 'd') {
        let size = u64::from(size);
        if secs >= size {
            let _ = write!(out, "{}{unit}", secs / size);
            secs %= size;
        }
    }
    out
}

/// `#[serde(with = "palier_policy::schedule::duration_serde")]` for a `SignedDuration`
/// written as `"1h30m"`.
pub mod duration_serde {
    use jiff::SignedDuration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &SignedDuration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SignedDuration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_config_forms() {
        for (text, secs) in [("2h", 7200), ("15m", 900), ("90s", 90), ("1h30m", 5400), ("1d", 86_400), ("1d2h3m4s", 93_784), ("0s", 0)] {
            assert_eq!(parse_duration(text).unwrap(), SignedDuration::from_secs(secs), "{text}");
        }
    }

    #[test]
    fn refuses_with_one_line_naming_the_value() {
        for bad in ["", "2", "h", "2x", "-2h", "2 h", "1.5h", "30m1h", "1h1h", "PT2H", "99999999999999999999s", "2h "] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")) && !e.contains('\n'), "{bad:?}: {e}");
        }
    }

    #[test]
    fn formats_back() {
        for text in ["2h", "15m", "1m30s", "1h30m", "24h", "26h3m4s", "0s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
        // A notice of `24h` is said as `24h`, not `1d`; a day written as `1d` reads back the same.
        assert_eq!(format_duration(parse_duration("1d").unwrap()), "24h");
        assert_eq!(format_duration(parse_duration("1d2h3m4s").unwrap()), "26h3m4s");
        assert_eq!(format_duration(SignedDuration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(SignedDuration::from_secs(-90)), "-1m30s");
    }
}
