//! Plan 10,000 generated bundles for one platform and print the CPU time of `policy::plan`.
//!
//! `cargo run --release -p palier-policy --example plan_bench` (goal: under 100 ms a plan).
//! Not a test: timings depend on the machine; run it by hand.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZoneDatabase;
use palier_policy::{Contract, DecisionKind, Improvement, Level, Stability, plan};
use palier_policy::schedule::{Calendar, DatedSlot, Window};
use palier_bundle::{BundleId, BundleMetadata, BundleRef, BundleState, ChangeClass, Component, DataImpact, Dependency, Manifest, Origin, PlatformId};
use semver::{Version, VersionReq};

const BUNDLES: usize = 10_000;
const RUNS: usize = 15;

/// A small deterministic generator (no dependency, same bundles every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn generate() -> (Vec<BundleMetadata>, Vec<BundleRef>) {
    let components = ["core", "mod_quiz", "mod_assign", "mod_forum", "theme_boost", "tool_task", "block_myoverview", "local_custom"];
    let platforms = ["univ-a", "univ-b", "univ-c", "school-d"];
    let mut rng = Lcg(42);
    let mut bundles = Vec::with_capacity(BUNDLES);
    let mut installed = Vec::new();
    // About 2,500 ids, four versions each: supersession and dependencies between them.
    for i in 0..BUNDLES {
        let id_n = i / 4;
        let id = BundleId::new(format!("{}-fix-{id_n}", components[id_n % components.len()].replace('_', "-"))).expect("id");
        let version = Version::new(1, 0, (i % 4) as u64);
        let component = Component::new(components[id_n % components.len()]).expect("component");
        let class = ChangeClass::ALL[rng.next(3) as usize];
        let impact = DataImpact::ALL[rng.next(4) as usize];
        let after = if id_n > 0 && rng.next(5) == 0 {
            let dep = format!("{}-fix-{} >=1.0.0", components[(id_n - 1) % components.len()].replace('_', "-"), id_n - 1);
            vec![Dependency::parse(&dep).expect("dependency")]
        } else {
            Vec::new()
        };
        let manifest = Manifest {
            id: id.clone(),
            version: version.clone(),
            component,
            class,
            data_impact: impact,
            summary: format!("generated fix {i}"),
            fixes: vec![format!("FR-{i}")],
            origin: Origin::Report,
            requires_moodle: (rng.next(10) == 0).then(|| VersionReq::parse(">=4.4.0, <4.5.0").expect("req")),
            after,
            delete: Vec::new(),
            upgrade: false,
            checks: Vec::new(),
            files: Vec::new(),
        };
        let reported_by: BTreeSet<PlatformId> = (0..rng.next(3)).map(|_| PlatformId::new(platforms[rng.next(4) as usize]).expect("platform")).collect();
        let mut meta = BundleMetadata::new(manifest, reported_by, "2026-11-01T00:00:00Z".into());
        meta.validations.alpha = rng.next(10) != 0;
        meta.validations.datasets = (0..rng.next(4)).map(|d| format!("dataset-{d}")).collect();
        meta.state = match rng.next(50) {
            0 => BundleState::Yanked,
            1 => BundleState::Halted,
            _ => BundleState::Active,
        };
        if rng.next(20) == 0 {
            installed.push(BundleRef { id, version });
        }
        bundles.push(meta);
    }
    (bundles, installed)
}

fn main() {
    let tz = TimeZoneDatabase::bundled().get("Europe/Paris").expect("bundled Europe/Paris");
    let (bundles, installed) = generate();
    let now: Timestamp = "2026-12-01T09:00:00Z".parse().expect("now");
    let moodle = Version::new(4, 5, 2);

    for stability_level in Level::ALL {
        let mut stability = Stability::new(stability_level);
        stability.windows = ["Tue 22:00-23:30", "Thu 22:00-23:30"].iter().map(|w| Window::parse(w).expect("window")).collect();
        stability.low_load = ["12:00-14:00", "20:00-07:00"].iter().map(|w| Window::parse(w).expect("window")).collect();
        stability.calendar = Calendar::from_slots(vec![DatedSlot::parse("2026-12-05T21:00/2026-12-06T01:00").expect("slot")]);
        let contract = Contract {
            platform: PlatformId::new("univ-a").expect("platform"),
            timezone: tz.clone(),
            improvement: Improvement::new(Level::Two)
                .with_components(["mod_quiz", "mod_assign", "core"].map(|c| Component::new(c).expect("component"))),
            stability,
        };
        let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
        let mut eligible = 0;
        for _ in 0..RUNS {
            let start = Instant::now();
            let p = plan(&contract, &bundles, &installed, &moodle, now);
            times.push(start.elapsed());
            eligible = p.bundles.iter().filter(|d| d.decision == DecisionKind::Eligible).count();
            std::hint::black_box(&p);
        }
        times.sort();
        println!(
            "plan of {BUNDLES} bundles, improvement 2, stability {stability_level}: min {:.1} ms, median {:.1} ms, max {:.1} ms over {RUNS} runs ({eligible} eligible)",
            ms(times[0]),
            ms(times[RUNS / 2]),
            ms(times[RUNS - 1])
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
