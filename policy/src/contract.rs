//! The service contract of one platform (SPEC 2): the policy's input, as plain structs.
//!
//! The agent reads its TOML config into these (windows, slots and durations parse from the
//! strings the config holds; the time zone and an iCalendar file are resolved and read by
//! the caller). Defaults live here, in one place.

use std::collections::BTreeSet;
use std::fmt;

use jiff::SignedDuration;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use palier_bundle::manifest::ChangeClass;
use palier_bundle::names::{Component, PlatformId};
use crate::schedule::{Calendar, Window, format_duration, parse_duration};

/// Notice posted before a level-2 window when the config says nothing (SPEC 2.2).
pub const DEFAULT_NOTICE: SignedDuration = SignedDuration::from_hours(2);
/// The shortest notice a contract may set (SPEC 2.2: "never less than 1 h").
pub const MIN_NOTICE: SignedDuration = SignedDuration::from_hours(1);
/// Longest side effect of a failed bundle before automatic rollback, when unset (SPEC 2.2).
pub const DEFAULT_RECOVERY_BUDGET: SignedDuration = SignedDuration::from_mins(5);
/// Watch period after an apply, when unset (the SPEC's example config).
pub const DEFAULT_WATCH: SignedDuration = SignedDuration::from_mins(15);
/// How long level 1 may wait for a low-load slot, when unset (the SPEC's example config).
pub const DEFAULT_MAX_DEFER: SignedDuration = SignedDuration::from_hours(4);

/// A refused contract value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("invalid contract level {0}: levels are 1, 2 and 3")]
    Level(i64),
    #[error("invalid notice {value:?}: {why}")]
    Notice { value: String, why: String },
    #[error("invalid level2_classes: {0}")]
    Level2Classes(String),
}

/// A contract level on either axis: 1, 2 or 3. Higher is more (improvement) or stricter (stability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    One = 1,
    Two = 2,
    Three = 3,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::One, Level::Two, Level::Three];

    pub fn new(n: i64) -> Result<Level, ContractError> {
        match n {
            1 => Ok(Level::One),
            2 => Ok(Level::Two),
            3 => Ok(Level::Three),
            _ => Err(ContractError::Level(n)),
        }
    }
    pub fn get(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.get())
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Level::new(i64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// How long before a level-2 window (or level-3 slot) the users' notice goes out; at least
/// [`MIN_NOTICE`]: a shorter one is refused, never raised silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Notice(SignedDuration);

impl Notice {
    pub fn new(d: SignedDuration) -> Result<Notice, ContractError> {
        if d < MIN_NOTICE {
            return Err(ContractError::Notice {
                value: format_duration(d),
                why: format!("less than the minimum of {}: users must be told at least an hour ahead", format_duration(MIN_NOTICE)),
            });
        }
        Ok(Notice(d))
    }
    /// Parse `2h`, `90m`, ... (see [`parse_duration`]).
    pub fn parse(text: &str) -> Result<Notice, ContractError> {
        let d = parse_duration(text).map_err(|e| ContractError::Notice { value: text.to_owned(), why: e.to_string() })?;
        Notice::new(d).map_err(|e| match e {
            ContractError::Notice { why, .. } => ContractError::Notice { value: text.to_owned(), why },
            other => other,
        })
    }
    pub fn get(self) -> SignedDuration {
        self.0
    }
}

impl Default for Notice {
    fn default() -> Self {
        Notice(DEFAULT_NOTICE)
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for Notice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Notice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Notice::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The improvement axis: WHICH bundles the platform receives (SPEC 2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Improvement {
    pub level: Level,
    /// The components listed in the contract (level 2).
    pub components: BTreeSet<Component>,
    /// The classes level 2 admits on those components; default `{technical}`, may be
    /// widened to `non-layout`. `global` is refused by [`Improvement::with_level2_classes`]
    /// and never admitted at level 2 by the policy even if present.
    pub level2_classes: BTreeSet<ChangeClass>,
}

impl Improvement {
    /// Level `level`, no component, the default level-2 classes.
    pub fn new(level: Level) -> Improvement {
        Improvement { level, components: BTreeSet::new(), level2_classes: default_level2_classes() }
    }
    pub fn with_components(mut self, components: impl IntoIterator<Item = Component>) -> Improvement {
        self.components = components.into_iter().collect();
        self
    }
    /// Widen (or narrow) level 2. Refuses `global`: SPEC 2.1 lets only `non-layout` be widened to.
    pub fn with_level2_classes(mut self, classes: impl IntoIterator<Item = ChangeClass>) -> Result<Improvement, ContractError> {
        let classes: BTreeSet<ChangeClass> = classes.into_iter().collect();
        if classes.contains(&ChangeClass::Global) {
            return Err(ContractError::Level2Classes(
                "\"global\" bundles reach level 2 only through the platform's own reports; level 2 may be widened to \"non-layout\"".into(),
            ));
        }
        self.level2_classes = classes;
        Ok(self)
    }
}

/// `{technical}`: what level 2 admits unless the contract widens it.
pub fn default_level2_classes() -> BTreeSet<ChangeClass> {
    BTreeSet::from([ChangeClass::Technical])
}

/// The stability axis: WHEN and HOW a bundle is applied (SPEC 2.2).
#[derive(Debug, Clone)]
pub struct Stability {
    pub level: Level,
    /// Level 2: the windows negotiated with the platform owner.
    pub windows: Vec<Window>,
    /// Levels 2 and 3: how long before the window the users' notice goes out.
    pub notice: Notice,
    /// Level 1: preferred low-load slots.
    pub low_load: Vec<Window>,
    /// Level 1: how long an apply may wait for a low-load slot (negative reads as zero).
    pub max_defer: SignedDuration,
    /// Level 3: the formal calendar (dated slots and iCalendar events).
    pub calendar: Calendar,
    /// Watch period after an apply.
    pub watch: SignedDuration,
    /// Longest side effect before an automatic rollback.
    pub recovery_budget: SignedDuration,
    /// The site takes a backup (and can restore it) before a change of its database: the
    /// agent's config has a `backup` hook. Without one, a bundle that changes the database
    /// is never applied automatically (reason `backup-missing`). [`Stability::new`] assumes
    /// a backup (a plan made without the site's hooks); the agent sets it from its config.
    pub backup: bool,
}

impl Stability {
    /// Level `level` with every default and no window, slot or calendar.
    pub fn new(level: Level) -> Stability {
        Stability {
            level,
            windows: Vec::new(),
            notice: Notice::default(),
            low_load: Vec::new(),
            max_defer: DEFAULT_MAX_DEFER,
            calendar: Calendar::default(),
            watch: DEFAULT_WATCH,
            recovery_budget: DEFAULT_RECOVERY_BUDGET,
            backup: true,
        }
    }
}

/// One platform's contract.
#[derive(Debug, Clone)]
pub struct Contract {
    pub platform: PlatformId,
    /// The platform's IANA time zone (`timezone` in the config), resolved by the caller.
    pub timezone: TimeZone,
    pub improvement: Improvement,
    pub stability: Stability,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn notice_defaults_to_2h_and_refuses_less_than_1h() {
        assert_eq!(Notice::default().get(), SignedDuration::from_hours(2));
        assert_eq!(Notice::parse("1h").unwrap().get(), SignedDuration::from_hours(1));
        assert_eq!(Notice::parse("90m").unwrap().to_string(), "1h30m");
        for bad in ["59m", "30m", "0s", "3599s"] {
            let e = Notice::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")) && e.contains("less than the minimum of 1h"), "{e}");
        }
        let e = Notice::parse("two hours").unwrap_err().to_string();
        assert!(e.starts_with("invalid notice \"two hours\""), "{e}");
        assert!(Notice::new(SignedDuration::from_mins(59)).is_err());
    }

    #[test]
    fn levels_are_1_to_3() {
        assert_eq!(Level::new(2).unwrap(), Level::Two);
        assert!(Level::One < Level::Two && Level::Two < Level::Three);
        for bad in [0, 4, -1] {
            assert_eq!(Level::new(bad).unwrap_err().to_string(), format!("invalid contract level {bad}: levels are 1, 2 and 3"));
        }
        assert_eq!(serde_json::to_string(&Level::Three).unwrap(), "3");
        assert!(serde_json::from_str::<Level>("4").is_err());
    }

    #[test]
    fn level2_classes_default_and_widening() {
        let imp = Improvement::new(Level::Two);
        assert_eq!(imp.level2_classes, BTreeSet::from([ChangeClass::Technical]));
        let wide = imp.clone().with_level2_classes([ChangeClass::Technical, ChangeClass::NonLayout]).unwrap();
        assert!(wide.level2_classes.contains(&ChangeClass::NonLayout));
        assert!(imp.with_level2_classes([ChangeClass::Global]).unwrap_err().to_string().contains("non-layout"));
    }
}
