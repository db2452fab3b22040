#!/usr/bin/env bash
# Plan benchmark: CPU time of planning 10,000 bundles for one platform once the metadata
# is loaded (goal: at most 100 ms). See bench/README.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
mkdir -p bench/out
cargo run --quiet --release -p palier-bundle --example plan_bench | tee bench/out/plan.txt
