//! Counters for `/metrics`: plain atomics, no registry, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use jiff::Timestamp;

use crate::fleet::State;

/// The kind of path a request was for; the label `route` of the request counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    Metadata,
    Targets,
    Health,
    Metrics,
    /// `/`, the dashboard.
    Dashboard,
    /// `/api/v1/fix-requests`.
    ApiFixRequests,
    /// `/api/v1/receipts`.
    ApiReceipts,
    /// `/api/v1/status`.
    ApiStatus,
    /// Any other path under `/api/`.
    ApiOther,
    /// `/calendar/...`, the platforms' iCalendar feeds.
    Calendar,
    Other,
}

impl RouteClass {
    const ALL: [RouteClass; 11] = [
        RouteClass::Metadata,
        RouteClass::Targets,
        RouteClass::Health,
        RouteClass::Metrics,
        RouteClass::Dashboard,
        RouteClass::ApiFixRequests,
        RouteClass::ApiReceipts,
        RouteClass::ApiStatus,
        RouteClass::ApiOther,
        RouteClass::Calendar,
        RouteClass::Other,
    ];

    pub fn of(path: &str) -> Self {
        if path.starts_with("/repo/metadata/") {
            RouteClass::Metadata
        } else if path.starts_with("/repo/targets/") {
            RouteClass::Targets
        } else if path == "/healthz" {
            RouteClass::Health
        } else if path == "/metrics" {
            RouteClass::Metrics
        } else if path == "/" {
            RouteClass::Dashboard
        } else if path == "/api/v1/fix-requests" {
            RouteClass::ApiFixRequests
        } else if path == "/api/v1/receipts" {
            RouteClass::ApiReceipts
        } else if path == "/api/v1/status" {
            RouteClass::ApiStatus
        } else if path.starts_with("/api/") {
            RouteClass::ApiOther
        } else if path.starts_with("/calendar/") {
            RouteClass::Calendar
        } else {
            RouteClass::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Metadata => "metadata",
            RouteClass::Targets => "targets",
            RouteClass::Health => "healthz",
            RouteClass::Metrics => "metrics",
            RouteClass::Dashboard => "dashboard",
            RouteClass::ApiFixRequests => "api_fix_requests",
            RouteClass::ApiReceipts => "api_receipts",
            RouteClass::ApiStatus => "api_status",
            RouteClass::ApiOther => "api_other",
            RouteClass::Calendar => "calendar",
            RouteClass::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const ROUTES: usize = RouteClass::ALL.len();
/// Status codes 100 to 599, one counter each.
const STATUSES: usize = 500;

pub struct Metrics {
    requests: Box<[[AtomicU64; STATUSES]; ROUTES]>,
    bytes: [AtomicU64; ROUTES],
    resigned: AtomicU64,
    refresh_failures: AtomicU64,
    connections_refused: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Box::new(std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0)))),
            bytes: std::array::from_fn(|_| AtomicU64::new(0)),
            resigned: AtomicU64::new(0),
            refresh_failures: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// One answered request; `bytes` is its body length (0 for HEAD).
    pub fn record(&self, route: RouteClass, status: u16, bytes: u64) {
        let slot = usize::from(status).saturating_sub(100).min(STATUSES - 1);
        self.requests[route.index()][slot].fetch_add(1, Relaxed);
        self.bytes[route.index()].fetch_add(bytes, Relaxed);
    }
    /// A refresh that re-signed metadata.
    pub fn resigned(&self) {
        self.resigned.fetch_add(1, Relaxed);
    }
    /// A refresh that failed (it is retried at the next interval).
    pub fn refresh_failed(&self) {
        self.refresh_failures.fetch_add(1, Relaxed);
    }
    /// A connection refused because too many were open.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }
    pub fn resign_count(&self) -> u64 {
        self.resigned.load(Relaxed)
    }

    /// The text exposition; `timestamp` is the expiry and version of `timestamp.json` when it
    /// could be read (the gauges are left out otherwise).
    pub fn render(&self, timestamp: Option<(Timestamp, u64)>, now: Timestamp) -> String {
        let mut out = String::with_capacity(2048);
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(&mut out, "palier_http_requests_total", "counter", "HTTP requests answered, by route class and status code.");
        for route in RouteClass::ALL {
            for (slot, count) in self.requests[route.index()].iter().enumerate() {
                let n = count.load(Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "palier_http_requests_total{{route=\"{}\",status=\"{}\"}} {n}", route.as_str(), slot + 100);
                }
            }
        }
        family(&mut out, "palier_http_response_bytes_total", "counter", "Response body bytes sent (as announced), by route class; HEAD and 304 count 0.");
        for route in RouteClass::ALL {
            let _ = writeln!(out, "palier_http_response_bytes_total{{route=\"{}\"}} {}", route.as_str(), self.bytes[route.index()].load(Relaxed));
        }
        if let Some((expires, version)) = timestamp {
            family(&mut out, "palier_timestamp_expiry_timestamp_seconds", "gauge", "When the served timestamp.json expires, in Unix time.");
            let _ = writeln!(out, "palier_timestamp_expiry_timestamp_seconds {}", expires.as_second());
            family(&mut out, "palier_timestamp_expires_in_seconds", "gauge", "Seconds until the served timestamp.json expires, by the server's clock; negative once expired.");
            let _ = writeln!(out, "palier_timestamp_expires_in_seconds {}", expires.as_second() - now.as_second());
            family(&mut out, "palier_timestamp_version", "gauge", "Version of the served timestamp.json.");
            let _ = writeln!(out, "palier_timestamp_version {version}");
        }
        family(&mut out, "palier_metadata_resign_total", "counter", "Refreshes that re-signed metadata (timestamp, and snapshot or targets when due).");
        let _ = writeln!(out, "palier_metadata_resign_total {}", self.resigned.load(Relaxed));
        family(&mut out, "palier_metadata_refresh_failures_total", "counter", "Refreshes that failed; each is retried at the next interval.");
        let _ = writeln!(out, "palier_metadata_refresh_failures_total {}", self.refresh_failures.load(Relaxed));
        family(&mut out, "palier_connections_refused_total", "counter", "Connections answered 503 and closed because too many were open.");
        let _ = writeln!(out, "palier_connections_refused_total {}", self.connections_refused.load(Relaxed));
        out
    }
}

/// The fleet gauges: per active bundle (`id@version`) the platforms in each state, every
/// state written (zeros too, so a series drops to 0 rather than vanishing). Only active
/// bundles are given, which bounds the label set.
pub fn render_bundle_platforms(out: &mut String, bundles: &[(String, BTreeMap<State, usize>)]) {
    let _ = writeln!(
        out,
        "# HELP palier_bundle_platforms Platforms per state for each active bundle version, from their agents' latest plans and receipts.\n# TYPE palier_bundle_platforms gauge"
    );
    for (bundle, counts) in bundles {
        // Bundle ids and versions hold no quote, backslash or newline (checked names).
        for state in State::ALL {
            let _ = writeln!(out, "palier_bundle_platforms{{bundle=\"{bundle}\",state=\"{state}\"}} {}", counts.get(&state).copied().unwrap_or(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bundle_gauges_for_every_state() {
        let mut out = String::new();
        let counts = BTreeMap::from([(State::Installed, 3), (State::WaitingNotice, 1)]);
        render_bundle_platforms(&mut out, &[("mod_quiz-fix@1.0.0".into(), counts)]);
        assert!(out.lines().any(|l| l == "palier_bundle_platforms{bundle=\"mod_quiz-fix@1.0.0\",state=\"installed\"} 3"), "{out}");
        assert!(out.lines().any(|l| l == "palier_bundle_platforms{bundle=\"mod_quiz-fix@1.0.0\",state=\"waiting-notice\"} 1"), "{out}");
        assert!(out.lines().any(|l| l == "palier_bundle_platforms{bundle=\"mod_quiz-fix@1.0.0\",state=\"failed\"} 0"), "{out}");
        assert_eq!(out.lines().filter(|l| l.starts_with("palier_bundle_platforms{")).count(), State::ALL.len());
    }

    #[test]
    fn renders_counters_and_gauges() {
        let m = Metrics::default();
        m.record(RouteClass::Metadata, 200, 10);
        m.record(RouteClass::Metadata, 200, 5);
        m.record(RouteClass::Metadata, 304, 0);
        m.record(RouteClass::Other, 404, 30);
        m.resigned();
        let now = Timestamp::from_second(1_000).unwrap();
        let text = m.render(Some((Timestamp::from_second(1_600).unwrap(), 7)), now);
        for line in [
            "palier_http_requests_total{route=\"metadata\",status=\"200\"} 2",
            "palier_http_requests_total{route=\"metadata\",status=\"304\"} 1",
            "palier_http_requests_total{route=\"other\",status=\"404\"} 1",
            "palier_http_response_bytes_total{route=\"metadata\"} 15",
            "palier_timestamp_expiry_timestamp_seconds 1600",
            "palier_timestamp_expires_in_seconds 600",
            "palier_timestamp_version 7",
            "palier_metadata_resign_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert_eq!(RouteClass::of("/repo/targets/x"), RouteClass::Targets);
        assert_eq!(RouteClass::of("/"), RouteClass::Dashboard);
        assert_eq!(RouteClass::of("/api/v1/receipts"), RouteClass::ApiReceipts);
        assert_eq!(RouteClass::of("/api/v2/x"), RouteClass::ApiOther);
        assert_eq!(RouteClass::of("/nope"), RouteClass::Other);
        assert_eq!(RouteClass::of("/calendar/univ-a/x.ics"), RouteClass::Calendar);
    }
}
