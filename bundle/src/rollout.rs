//! Staged rollouts: named canary platforms first, then waves that each open a bundle to a
//! larger share of the fleet at a delay after its publication. Pure: the clock is passed in.
//!
//! # The text form (`publish --rollout`, `rollout set`, `rollout default`)
//!
//! `canary=univ-x,univ-y; 24h=10%; 48h=50%; 72h=100%`: items separated by `;`, in any
//! order, each either `canary=` and a comma-separated list of platforms (at most once), or
//! a wave `DELAY=SHARE%`, DELAY a duration as in the agent config (`24h`, `1d12h`, `90m`,
//! `0s`), SHARE a whole percentage 1 to 100 of the fleet. Shares are cumulative: `48h=50%`
//! means half of the fleet has it from 48 h on, the 10% of the first wave included. Waves
//! must grow with their delay (later waves take strictly more of the fleet), and at least
//! a canary or a wave is needed; `none` (handled by the callers) means no rollout.
//!
//! # The signed form (the bundle's `custom.rollout`)
//!
//! `{"canary": ["univ-x", "univ-y"], "waves": [{"after": "24h", "share": 10}, ...],
//! "paused_at": "2026-12-02T09:00:00Z"}`, `paused_at` absent unless paused. Read with the
//! same checks as the text form.
//!
//! # A platform's place
//!
//! Each platform has a place in `[0, 100)` for each bundle id: the first 8 bytes of
//! `sha256("<bundle id>/<platform>")`, read as a big-endian integer `n`, give
//! `floor(n * 100 / 2^64)`. A wave of cumulative share `s` covers the places below `s`.
//! Hashing the bundle id with the name spreads the risk: the platforms in the first 10% of
//! one bundle are a different tenth of the fleet for the next bundle, and every version of
//! one bundle id reaches a platform in the same wave.
//!
//! # When a platform's wave opens
//!
//! A canary at the publication; otherwise at the publication plus the delay of the first
//! wave whose share covers its place; never when its place is above the last wave's share
//! (a rollout that stops below 100% until it is widened).
//!
//! # Pause and resume
//!
//! While `paused_at` is set, no wave opens after `paused_at`: what was open at the pause
//! stays open, nothing else opens. [`Rollout::resume`] shifts every wave that had not
//! opened at the pause by the length of the pause, so the waves keep their spacing and
//! the release manager who paused to look at a failure does not find three waves opening
//! at once when resuming. The shifted delays are what is signed (`rollout show` prints
//! them).

use std::collections::BTreeSet;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::names::{BundleId, PlatformId};
use crate::duration::{format_duration, parse_duration};

/// An example of the text form, quoted in every parse error.
pub const EXAMPLE: &str = "canary=univ-x,univ-y; 24h=10%; 48h=50%; 72h=100%";

/// A refused rollout, in one line with an example.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rollout {text:?}: {why}; for example {EXAMPLE}")]
pub struct RolloutError {
    pub text: String,
    pub why: String,
}

/// One wave: from `after` the publication, `share` percent of the fleet (cumulative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wave {
    pub after: SignedDuration,
    /// 1 to 100.
    pub share: u8,
}

/// A bundle's staged rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Platforms that take the bundle at its publication.
    pub canary: BTreeSet<PlatformId>,
    /// Growing delays and growing shares.
    pub waves: Vec<Wave>,
    /// Set by `rollout pause`: no wave opens after this instant.
    pub paused_at: Option<Timestamp>,
}

/// Where a platform stands in a rollout of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Named a canary: opens at the publication.
    Canary,
    /// In the wave of this index (0-based) of [`Rollout::waves`].
    Wave(usize),
    /// Its place is above the last wave's share: it never opens.
    Outside,
}

/// Whether a platform's wave is open at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Open since this instant.
    Open(Timestamp),
    /// Opens at this instant.
    At(Timestamp),
    /// Would open at this instant, after `paused_at`: not until the rollout is resumed.
    Paused { would_open: Timestamp, paused_at: Timestamp },
    /// Never: the platform is outside the rollout's last share.
    Never,
}

/// The platform's place in the fleet for `bundle`, in `[0, 100)`: see the module's doc.
pub fn place(bundle: &BundleId, platform: &PlatformId) -> u8 {
    let digest = Sha256::digest(format!("{bundle}/{platform}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let n = u128::from(u64::from_be_bytes(first));
    // n < 2^64, so the result is below 100.
    u8::try_from((n * 100) >> 64).unwrap_or(99)
}

impl Rollout {
    /// Parse the text form. `none` is not a rollout: callers that accept it check first.
    pub fn parse(text: &str) -> Result<Rollout, RolloutError> {
        let err = |why: String| RolloutError { text: text.to_owned(), why };
        let mut canary: Option<BTreeSet<PlatformId>> = None;
        let mut waves = Vec::new();
        for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(err(format!("{item:?} is neither canary=PLATFORMS nor DELAY=SHARE%")));
            };
            let (key, value) = (key.trim(), value.trim());
            if key == "canary" {
                if canary.is_some() {
                    return Err(err("canary= appears twice; list every canary platform once".into()));
                }
                let mut names = BTreeSet::new();
                for name in value.split(',').map(str::trim) {
                    if name.is_empty() {
                        return Err(err(format!("canary={value}: an empty platform name")));
                    }
                    let id = PlatformId::new(name).map_err(|e| err(format!("canary {name:?}: {e}")))?;
                    if !names.insert(id) {
                        return Err(err(format!("canary {name} is listed twice")));
                    }
                }
                canary = Some(names);
                continue;
            }
            let after = parse_duration(key).map_err(|e| err(format!("wave {item:?}: {e}")))?;
            let share = value
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<u8>().ok())
                .ok_or_else(|| err(format!("wave {item:?}: the share is a whole percentage such as 10%")))?;
            waves.push(Wave { after, share });
        }
        let rollout = Rollout { canary: canary.unwrap_or_default(), waves, paused_at: None };
        rollout.check().map_err(err)?;
        Ok(rollout)
    }

    /// The rules both forms obey.
    fn check(&self) -> Result<(), String> {
        if self.canary.is_empty() && self.waves.is_empty() {
            return Err("no canary and no wave; say `none` for no rollout".into());
        }
        for w in &self.waves {
            if !(1..=100).contains(&w.share) {
                return Err(format!("wave {}={}%: a share is 1% to 100%", format_duration(w.after), w.share));
            }
            if w.after.is_negative() {
                return Err(format!("wave {}: a delay is not negative", format_duration(w.after)));
            }
        }
        for pair in self.waves.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.after <= a.after {
                return Err(format!(
                    "wave {}={}% comes after {}={}%: list the waves by growing delay, each delay once",
                    format_duration(b.after),
                    b.share,
                    format_duration(a.after),
                    a.share
                ));
            }
            if b.share <= a.share {
                return Err(format!(
                    "wave {}={}% does not grow from {}={}%: shares are cumulative (the whole fleet covered so far), so each wave takes more than the one before",
                    format_duration(b.after),
                    b.share,
                    format_duration(a.after),
                    a.share
                ));
            }
        }
        Ok(())
    }

    /// The largest share the rollout reaches: 100 when the last wave covers the whole fleet,
    /// 0 with canaries alone.
    pub fn reach(&self) -> u8 {
        self.waves.last().map_or(0, |w| w.share)
    }

    /// Where `platform` stands for `bundle`.
    pub fn position(&self, bundle: &BundleId, platform: &PlatformId) -> Position {
        if self.canary.contains(platform) {
            return Position::Canary;
        }
        let p = place(bundle, platform);
        match self.waves.iter().position(|w| p < w.share) {
            Some(i) => Position::Wave(i),
            None => Position::Outside,
        }
    }

    /// The instant `platform`'s wave opens if the rollout is not paused; `None`: never.
    pub fn scheduled(&self, published_at: Timestamp, bundle: &BundleId, platform: &PlatformId) -> Option<Timestamp> {
        match self.position(bundle, platform) {
            Position::Canary => Some(published_at),
            Position::Wave(i) => Some(self.wave_opens(published_at, i)),
            Position::Outside => None,
        }
    }

    /// The instant wave `i` opens, pause aside.
    pub fn wave_opens(&self, published_at: Timestamp, i: usize) -> Timestamp {
        let after = self.waves.get(i).map_or(SignedDuration::ZERO, |w| w.after);
        published_at.checked_add(after).unwrap_or(Timestamp::MAX)
    }

    /// Whether `platform`'s wave is open at `now`, the pause included.
    pub fn opening(&self, published_at: Timestamp, bundle: &BundleId, platform: &PlatformId, now: Timestamp) -> Opening {
        let Some(at) = self.scheduled(published_at, bundle, platform) else { return Opening::Never };
        match self.paused_at {
            Some(paused_at) if at > paused_at => Opening::Paused { would_open: at, paused_at },
            _ if at <= now => Opening::Open(at),
            _ => Opening::At(at),
        }
    }

    /// Pause at `now`; `false` when already paused (nothing changes).
    pub fn pause(&mut self, now: Timestamp) -> bool {
        if self.paused_at.is_some() {
            return false;
        }
        self.paused_at = Some(now);
        true
    }

    /// Resume at `now`; `false` when not paused. Every wave that had not opened at the pause
    /// is delayed by the length of the pause (see the module's doc).
    pub fn resume(&mut self, published_at: Timestamp, now: Timestamp) -> bool {
        let Some(paused_at) = self.paused_at.take() else { return false };
        let pause = now.duration_since(paused_at).max(SignedDuration::ZERO);
        for i in 0..self.waves.len() {
            if self.wave_opens(published_at, i) > paused_at {
                self.waves[i].after = self.waves[i].after.checked_add(pause).unwrap_or(SignedDuration::MAX);
            }
        }
        true
    }
}

/// The text form (without the pause, which is state, not part of the spec).
impl fmt::Display for Rollout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = Vec::new();
        if !self.canary.is_empty() {
            items.push(format!("canary={}", self.canary.iter().map(PlatformId::as_str).collect::<Vec<_>>().join(",")));
        }
        items.extend(self.waves.iter().map(|w| format!("{}={}%", format_duration(w.after), w.share)));
        f.write_str(&items.join("; "))
    }
}

impl std::str::FromStr for Rollout {
    type Err = RolloutError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rollout::parse(s)
    }
}

/// The signed form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    canary: Vec<PlatformId>,
    waves: Vec<WireWave>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused_at: Option<Timestamp>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireWave {
    #[serde(with = "crate::duration::duration_serde")]
    after: SignedDuration,
    share: u8,
}

impl Serialize for Rollout {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            canary: self.canary.iter().cloned().collect(),
            waves: self.waves.iter().map(|w| WireWave { after: w.after, share: w.share }).collect(),
            paused_at: self.paused_at,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Rollout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let canary: BTreeSet<PlatformId> = w.canary.iter().cloned().collect();
        if canary.len() != w.canary.len() {
            return Err(serde::de::Error::custom("rollout: a canary platform is listed twice"));
        }
        let rollout = Rollout { canary, waves: w.waves.into_iter().map(|w| Wave { after: w.after, share: w.share }).collect(), paused_at: w.paused_at };
        rollout.check().map_err(|why| serde::de::Error::custom(format!("rollout: {why}")))?;
        Ok(rollout)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn bundle() -> BundleId {
        BundleId::new("mod_quiz-fix").unwrap()
    }

    fn platform(name: &str) -> PlatformId {
        PlatformId::new(name).unwrap()
    }

    #[test]
    fn the_text_form_parses_and_prints_back() {
        let r = Rollout::parse(" canary=univ-y, univ-x ;24h=10%; 48h=50%;72h=100%; ").unwrap();
        assert_eq!(r.canary, BTreeSet::from([platform("univ-x"), platform("univ-y")]));
        assert_eq!(
            r.waves,
            [
                Wave { after: SignedDuration::from_hours(24), share: 10 },
                Wave { after: SignedDuration::from_hours(48), share: 50 },
                Wave { after: SignedDuration::from_hours(72), share: 100 }
            ]
        );
        assert_eq!(r.to_string(), "canary=univ-x,univ-y; 24h=10%; 48h=50%; 72h=100%");
        assert_eq!(Rollout::parse(&r.to_string()).unwrap(), r);
        // Days, minutes, a first wave at the publication, canaries alone, waves alone.
        assert_eq!(Rollout::parse("0s=5%; 1d12h=100%").unwrap().to_string(), "0s=5%; 36h=100%");
        assert_eq!(Rollout::parse("canary=univ-a").unwrap().reach(), 0);
        assert_eq!(Rollout::parse("90m=20%").unwrap().to_string(), "1h30m=20%");
    }

    #[test]
    fn bad_text_is_refused_in_one_line_with_an_example() {
        for (text, why) in [
            ("", "no canary and no wave; say `none` for no rollout"),
            ("none", "\"none\" is neither canary=PLATFORMS nor DELAY=SHARE%"),
            ("24h=0%", "a share is 1% to 100%"),
            ("24h=101%", "a share is 1% to 100%"),
            ("24h=300%", "the share is a whole percentage"),
            ("24h=10", "the share is a whole percentage"),
            ("24h=1.5%", "the share is a whole percentage"),
            ("24h=-5%", "the share is a whole percentage"),
            ("24 hours=10%", "wave \"24 hours=10%\""),
            ("-1h=10%", "wave \"-1h=10%\""),
            ("24h=50%; 48h=10%", "does not grow from 24h=50%: shares are cumulative"),
            ("24h=50%; 48h=50%", "does not grow"),
            ("48h=10%; 24h=50%", "list the waves by growing delay"),
            ("24h=10%; 24h=50%", "each delay once"),
            ("canary=a; canary=b", "canary= appears twice"),
            ("canary=", "an empty platform name"),
            ("canary=a,,b", "an empty platform name"),
            ("canary=Univ-A", "canary \"Univ-A\""),
            ("canary=a,a", "canary a is listed twice"),
        ] {
            let e = Rollout::parse(text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid rollout {text:?}: ")), "{e}");
            assert!(e.contains(why), "{text:?}: {e}");
            assert!(e.ends_with(&format!("; for example {EXAMPLE}")), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn the_signed_form_round_trips_and_is_checked() {
        let mut r = Rollout::parse("canary=univ-x,univ-y; 24h=10%; 48h=100%").unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json, serde_json::json!({"canary": ["univ-x", "univ-y"], "waves": [{"after": "24h", "share": 10}, {"after": "48h", "share": 100}]}));
        assert_eq!(serde_json::from_value::<Rollout>(json).unwrap(), r);
        r.paused_at = Some(ts("2026-12-02T09:00:00Z"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["paused_at"], "2026-12-02T09:00:00Z");
        assert_eq!(serde_json::from_value::<Rollout>(json).unwrap(), r);
        for bad in [
            serde_json::json!({"canary": [], "waves": []}),
            serde_json::json!({"canary": [], "waves": [{"after": "24h", "share": 50}, {"after": "48h", "share": 10}]}),
            serde_json::json!({"canary": [], "waves": [{"after": "24h", "share": 0}]}),
            serde_json::json!({"canary": ["a", "a"], "waves": []}),
            serde_json::json!({"canary": ["a"], "waves": [], "surprise": 1}),
            serde_json::json!({"canary": ["a"], "waves": [{"after": "24h", "share": 10, "x": 1}]}),
        ] {
            assert!(serde_json::from_value::<Rollout>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn place_is_the_documented_sha256() {
        // sha256("mod_quiz-fix/univ-a"), first 8 bytes big-endian, times 100, over 2^64;
        // computed independently with `printf %s mod_quiz-fix/univ-a | sha256sum`.
        let digest = Sha256::digest(b"mod_quiz-fix/univ-a");
        let n = u64::from_be_bytes(digest[..8].try_into().unwrap());
        assert_eq!(u128::from(place(&bundle(), &platform("univ-a"))), (u128::from(n) * 100) >> 64);
        // The same platform has different places for different bundles.
        let places: BTreeSet<u8> = (0..20).map(|i| place(&BundleId::new(format!("b{i}")).unwrap(), &platform("univ-a"))).collect();
        assert!(places.len() > 10, "{places:?}");
    }

    #[test]
    fn shares_cover_about_their_share_of_a_large_fleet() {
        let r = Rollout::parse("24h=10%; 48h=50%").unwrap();
        let fleet: Vec<PlatformId> = (0..2000).map(|i| platform(&format!("univ-{i}"))).collect();
        let count = |p: Position| fleet.iter().filter(|f| r.position(&bundle(), f) == p).count();
        let (w0, w1, out) = (count(Position::Wave(0)), count(Position::Wave(1)), count(Position::Outside));
        assert_eq!(w0 + w1 + out, 2000);
        assert!((150..=250).contains(&w0), "{w0}");
        assert!((700..=900).contains(&w1), "{w1}");
        assert!((900..=1100).contains(&out), "{out}");
    }

    #[test]
    fn canaries_open_at_publication_waves_at_their_delay_outside_never() {
        let published = ts("2026-12-01T09:00:00Z");
        let fleet: Vec<PlatformId> = (0..200).map(|i| platform(&format!("univ-{i}"))).collect();
        let first = fleet.iter().find(|p| place(&bundle(), p) < 10).unwrap().clone();
        let second = fleet.iter().find(|p| (10..50).contains(&place(&bundle(), p))).unwrap().clone();
        let outside = fleet.iter().find(|p| place(&bundle(), p) >= 50).unwrap().clone();
        let r = Rollout::parse(&format!("canary={outside}; 24h=10%; 48h=50%")).unwrap();
        assert_eq!(r.position(&bundle(), &outside), Position::Canary, "a canary is one whatever its place");
        assert_eq!(r.scheduled(published, &bundle(), &outside), Some(published));
        assert_eq!(r.scheduled(published, &bundle(), &first), Some(ts("2026-12-02T09:00:00Z")));
        assert_eq!(r.scheduled(published, &bundle(), &second), Some(ts("2026-12-03T09:00:00Z")));
        let r = Rollout::parse("24h=10%; 48h=50%").unwrap();
        assert_eq!(r.position(&bundle(), &outside), Position::Outside);
        assert_eq!(r.opening(published, &bundle(), &outside, ts("2030-01-01T00:00:00Z")), Opening::Never);
        // Open at the instant, not a second before.
        let at = ts("2026-12-02T09:00:00Z");
        assert_eq!(r.opening(published, &bundle(), &first, at), Opening::Open(at));
        assert_eq!(r.opening(published, &bundle(), &first, at - SignedDuration::from_secs(1)), Opening::At(at));
    }

    #[test]
    fn pause_stops_later_waves_and_resume_keeps_their_spacing() {
        let published = ts("2026-12-01T09:00:00Z");
        let fleet: Vec<PlatformId> = (0..200).map(|i| platform(&format!("univ-{i}"))).collect();
        let first = fleet.iter().find(|p| place(&bundle(), p) < 10).unwrap().clone();
        let second = fleet.iter().find(|p| (10..50).contains(&place(&bundle(), p))).unwrap().clone();
        let mut r = Rollout::parse("24h=10%; 48h=50%; 72h=100%").unwrap();
        // Paused 30 h after publication: the first wave stays open, the second does not open.
        let paused = ts("2026-12-02T15:00:00Z");
        assert!(r.pause(paused));
        assert!(!r.pause(ts("2026-12-02T16:00:00Z")), "already paused");
        assert_eq!(r.paused_at, Some(paused));
        let later = ts("2026-12-10T00:00:00Z");
        assert_eq!(r.opening(published, &bundle(), &first, later), Opening::Open(ts("2026-12-02T09:00:00Z")));
        assert_eq!(r.opening(published, &bundle(), &second, later), Opening::Paused { would_open: ts("2026-12-03T09:00:00Z"), paused_at: paused });
        // Resumed 3 days later (past both later waves' times): they move by 3 days.
        let resumed = ts("2026-12-05T15:00:00Z");
        assert!(r.resume(published, resumed));
        assert!(!r.resume(published, resumed), "not paused");
        assert_eq!(r.to_string(), "24h=10%; 120h=50%; 144h=100%");
        assert_eq!(r.opening(published, &bundle(), &second, resumed), Opening::At(ts("2026-12-06T09:00:00Z")));
        assert_eq!(r.opening(published, &bundle(), &first, resumed), Opening::Open(ts("2026-12-02T09:00:00Z")));
    }

    proptest! {
        #[test]
        fn parse_print_round_trips(
            canary in prop::collection::btree_set("[a-z][a-z0-9-]{0,10}", 0..4),
            steps in prop::collection::vec((1i64..100_000, 1u8..30), 0..5),
        ) {
            let mut waves = Vec::new();
            let (mut after, mut share) = (0i64, 0u8);
            for (d, s) in steps {
                after += d;
                share = share.saturating_add(s).min(100);
                if waves.last().is_some_and(|w: &Wave| w.share >= share) {
                    break;
                }
                waves.push(Wave { after: SignedDuration::from_secs(after), share });
            }
            let r = Rollout { canary: canary.iter().map(|c| platform(c)).collect(), waves, paused_at: None };
            prop_assume!(r.check().is_ok());
            prop_assert_eq!(Rollout::parse(&r.to_string()).unwrap(), r.clone());
            prop_assert_eq!(serde_json::from_value::<Rollout>(serde_json::to_value(&r).unwrap()).unwrap(), r);
        }

        #[test]
        fn a_wave_opens_no_earlier_than_its_delay_and_larger_shares_never_open_later(name in "[a-z][a-z0-9-]{0,20}", id in "[a-z][a-z0-9_-]{0,20}") {
            let (bundle, platform) = (BundleId::new(&id).unwrap(), platform(&name));
            let published = ts("2026-12-01T09:00:00Z");
            let small = Rollout::parse("24h=10%; 48h=60%").unwrap();
            let large = Rollout::parse("24h=30%; 48h=100%").unwrap();
            let (s, l) = (small.scheduled(published, &bundle, &platform), large.scheduled(published, &bundle, &platform));
            prop_assert!(l.is_some());
            if let Some(s) = s {
                prop_assert!(s >= published + SignedDuration::from_hours(24));
                prop_assert!(l.unwrap() <= s);
            }
        }
    }
}
