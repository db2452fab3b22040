#!/usr/bin/env bash
# Plan benchmark: CPU time of planning 10,000 bundles for one platform once the metadata
# is loaded (goal: at most 100 ms). See bench/README.md.
#
# Writes the example's output to bench/out/plan.txt and, parsed, to bench/out/plan.json
# (one result per stability level, in the shape of the other benchmarks' JSON).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
mkdir -p bench/out
cargo run --quiet --release -p palier-policy --example plan_bench | tee bench/out/plan.txt

BENCH_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown) \
python3 - bench/out/plan.txt bench/out/plan.json <<'EOF'
import json, os, platform, re, sys, time

goal = 100.0   # ms per plan
line = re.compile(r"^plan of (\d+) bundles, improvement (\d+), stability (\d+): min ([\d.]+) ms, "
                  r"median ([\d.]+) ms, max ([\d.]+) ms over (\d+) runs \((\d+) eligible\)$")
rows = []
bundles = runs = None
for text in open(sys.argv[1]).read().splitlines():
    m = line.match(text.strip())
    if not m:
        continue
    bundles, improvement, stability = int(m[1]), int(m[2]), int(m[3])
    low, median, high, runs, eligible = float(m[4]), float(m[5]), float(m[6]), int(m[7]), int(m[8])
    rows.append(dict(name=f"policy::plan, improvement {improvement}, stability {stability} (median)", unit="ms",
                     ours=median, baseline=None, ratio=None, goal=goal, pass_=median <= goal,
                     min=low, max=high, eligible=eligible, improvement=improvement, stability=stability))
if not rows:
    sys.exit(f"bench: no plan line in {sys.argv[1]}: has the output of plan_bench changed?")
for r in rows:
    r["pass"] = r.pop("pass_")
result = dict(
    date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    commit=os.environ["BENCH_COMMIT"],
    host=dict(cpus=os.cpu_count(), kernel=platform.release()),
    runs=runs,
    bundles=bundles,
    statistic="median CPU time of one policy::plan call over the runs",
    results=rows,
)
with open(sys.argv[2], "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
worst = max(r["ours"] for r in rows)
print(f"goal: <= {goal:.0f} ms a plan; slowest median {worst:.1f} ms: {'PASS' if worst <= goal else 'MISS'}")
print(f"JSON: {sys.argv[2]}")
EOF
