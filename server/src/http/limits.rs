//! Per-platform quotas (receipts, statuses and fix requests per minute, stored bytes) and the
//! count of failing tokens per claimed platform name.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use jiff::Timestamp;

/// The quotas of one platform.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub receipts_per_minute: u32,
    pub statuses_per_minute: u32,
    pub fix_requests_per_minute: u32,
    /// Receipts and fix requests a platform may have stored, in bytes of their bodies.
    pub stored_bytes_per_platform: u64,
}

impl Default for Limits {
    /// An agent sends one status and a few receipts per cycle (hourly by default), and a
    /// fix request now and then: these leave a wide margin and stop a flood within a minute.
    fn default() -> Self {
        Limits { receipts_per_minute: 60, statuses_per_minute: 30, fix_requests_per_minute: 10, stored_bytes_per_platform: 64 << 20 }
    }
}

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Receipt,
    Status,
    FixRequest,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Receipt => "receipts",
            Kind::Status => "status reports",
            Kind::FixRequest => "fix requests",
        }
    }
}

/// A token bucket per (platform, kind): `per_minute` tokens, refilled evenly over a minute.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limits: Limits,
    buckets: Mutex<HashMap<(String, Kind), Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

impl RateLimiter {
    pub(crate) fn new(limits: Limits) -> Self {
        RateLimiter { limits, buckets: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Take one token for `platform`; `Err((message, seconds to wait))` when there is none.
    pub(crate) fn take(&self, platform: &str, kind: Kind, now: Timestamp) -> Result<(), (String, u64)> {
        let per_minute = match kind {
            Kind::Receipt => self.limits.receipts_per_minute,
            Kind::Status => self.limits.statuses_per_minute,
            Kind::FixRequest => self.limits.fix_requests_per_minute,
        };
        let capacity = f64::from(per_minute.max(1));
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let b = buckets.entry((platform.to_owned(), kind)).or_insert(Bucket { tokens: capacity, at: now });
        let elapsed = now.duration_since(b.at).as_secs_f64().max(0.0);
        b.tokens = (b.tokens + elapsed * per_second).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) / per_second).ceil().max(1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let wait = wait as u64;
        Err((format!("platform {platform} sent more than {per_minute} {} in a minute; try again in {wait} s", kind.noun()), wait))
    }
}

/// Requests refused for a bad token, per platform name they claimed (`X-Palier-Platform`) or,
/// without one, per source address. Bounded: past [`FailedTokens::MAX_KEYS`] names, the rest
/// are counted together.
#[derive(Debug, Default)]
pub(crate) struct FailedTokens {
    counts: Mutex<BTreeMap<String, Failure>>,
}

/// How many refusals, and the last one's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub count: u64,
    pub last: Timestamp,
}

impl FailedTokens {
    pub(crate) const MAX_KEYS: usize = 1000;
    pub(crate) const OTHERS: &'static str = "(other names)";

    /// Count one refusal; whether it is the first for this key (to log it once).
    pub(crate) fn record(&self, key: &str, now: Timestamp) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let key = if counts.contains_key(key) || counts.len() < Self::MAX_KEYS { key } else { Self::OTHERS };
        let e = counts.entry(key.to_owned()).or_insert(Failure { count: 0, last: now });
        e.count += 1;
        e.last = now;
        e.count == 1
    }

    /// Every key with its count, by name.
    pub(crate) fn snapshot(&self) -> Vec<(String, Failure)> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_bucket_refuses_past_its_rate_and_refills() {
        let r = RateLimiter::new(Limits { receipts_per_minute: 3, ..Limits::default() });
        let t0: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        for _ in 0..3 {
            r.take("univ-a", Kind::Receipt, t0).unwrap();
        }
        let (msg, wait) = r.take("univ-a", Kind::Receipt, t0).unwrap_err();
        assert_eq!(wait, 20);
        assert!(msg.contains("more than 3 receipts in a minute"), "{msg}");
        // Another platform, another kind: their own buckets.
        r.take("univ-b", Kind::Receipt, t0).unwrap();
        r.take("univ-a", Kind::Status, t0).unwrap();
        // 20 s later one token is back.
        let later = t0.checked_add(jiff::SignedDuration::from_secs(20)).unwrap();
        r.take("univ-a", Kind::Receipt, later).unwrap();
        assert!(r.take("univ-a", Kind::Receipt, later).is_err());
    }

    #[test]
    fn failed_tokens_are_counted_per_name_within_a_bound() {
        let f = FailedTokens::default();
        let t: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        assert!(f.record("univ-x", t));
        assert!(!f.record("univ-x", t));
        for i in 0..2000 {
            f.record(&format!("n{i}"), t);
        }
        let snap = f.snapshot();
        assert!(snap.len() <= FailedTokens::MAX_KEYS + 1);
        assert_eq!(snap.iter().find(|(k, _)| k == "univ-x").unwrap().1.count, 2);
        assert!(snap.iter().any(|(k, _)| k == FailedTokens::OTHERS));
    }
}
