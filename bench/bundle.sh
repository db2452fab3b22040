#!/usr/bin/env bash
# Bundle benchmark: palier-server against GNU tar, gzip and openssl on a
# Moodle-sized code tree (see bench/README.md).
#
#   bench/bundle.sh [WORKDIR]
#
# WORKDIR holds the generated tree, the archives and the test repositories.
# Without it a fresh directory under /tmp is used and removed at the end
# unless KEEP=1; a WORKDIR given on the command line is kept, and its tree is
# reused by later runs.
#
# Environment: RUNS (runs per measurement, default 3), FILES and BYTES (tree
# shape, default 30000 files, 300000000 bytes), KEEP=1.
set -euo pipefail

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench")
runs=${RUNS:-3}
files=${FILES:-30000}
bytes=${BYTES:-300000000}
seed=1

if (($# > 1)); then
    echo "usage: $0 [WORKDIR]" >&2
    exit 2
fi
if (($# == 1)); then
    mkdir -p "$1"
    work=$(cd "$1" && pwd)
    remove_work=0
else
    work=$(mktemp -d /tmp/palier-bench.XXXXXX)
    remove_work=1
    [[ ${KEEP:-0} == 1 ]] && remove_work=0
fi
cleanup() {
    if ((remove_work)); then rm -rf "$work"; else echo "bench: kept $work" >&2; fi
}
trap cleanup EXIT

say() { echo "== $*" >&2; }

tar --version | head -n 1 | grep -q 'GNU tar' || { echo "bench: GNU tar is required" >&2; exit 1; }
# The baseline is gzip at its default level (6): no GZIP options from the caller.
unset GZIP

# --- the binary ---------------------------------------------------------------
say "building palier-server (release)"
(cd "$root" && cargo build --release -p palier-server)
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
server=$target/release/palier-server

# --- the tree -------------------------------------------------------------------
tree=$work/tree
marker=$work/tree.done
want="files=$files bytes=$bytes seed=$seed gen-tree=$(sha256sum "$bench/gen-tree.py" | cut -d' ' -f1)"
if [[ -d $tree && -f $marker && $(<"$marker") == "$want" ]]; then
    say "reusing $tree"
else
    say "generating $tree ($files files, $bytes bytes)"
    rm -rf "$tree" "$marker"
    python3 "$bench/gen-tree.py" "$tree" --files "$files" --bytes "$bytes" --seed "$seed"
    echo "$want" >"$marker"
fi

manifest=$work/bundle-source.toml
cat >"$manifest" <<'EOF'
id = "bench-tree"
version = "1.0.0"
component = "core"
class = "technical"
data_impact = "none"
summary = "Benchmark bundle: a synthetic Moodle code tree"
origin = "roadmap"
EOF

# Warm the page cache so both sides read the tree from memory. (GNU tar skips
# reading file contents when its archive is /dev/null itself, hence the pipe.)
say "warming the page cache"
tar cf - -C "$work" tree | cat >/dev/null

# --- helpers ----------------------------------------------------------------------
log=$work/bench.log
: >"$log"

# wall CMD...: run CMD (output to the log) and print its wall time in seconds.
wall() {
    local t0 t1
    t0=$(date +%s.%N)
    if ! "$@" >>"$log" 2>&1; then
        echo "bench: failed: $*" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    t1=$(date +%s.%N)
    python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.3f}")' "$t0" "$t1"
}

# peak_rss CMD...: run CMD (output to the log) and print its peak resident set size in KiB.
peak_rss() {
    if ! /usr/bin/time -f %M -o "$work/rss" "$@" >>"$log" 2>&1; then
        echo "bench: failed: $*" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    tail -n 1 "$work/rss"
}

join() { local IFS=,; echo "$*"; }

ours=$work/A.tar.gz
base=$work/B.tar.gz
verify_baseline() { gzip -dc "$ours" | openssl dgst -sha256; }

# --- measurements -----------------------------------------------------------------
# Each round runs ours then the baseline, so drift over the run hits both alike.
build_ours=() build_base=() verify_ours=() verify_base=() rss_init=() rss_publish=()
for ((i = 1; i <= runs; i++)); do
    say "round $i/$runs: build"
    rm -f "$ours" "$base"
    build_ours+=("$(wall "$server" bundle build --manifest "$manifest" --source "$tree" --out "$ours")")
    build_base+=("$(wall tar czf "$base" -C "$tree" .)")

    say "round $i/$runs: verify"
    verify_ours+=("$(wall "$server" bundle verify "$ours")")
    verify_base+=("$(wall verify_baseline)")

    say "round $i/$runs: init + publish"
    # keys/ beside repo/ is where publish looks for them by default.
    rm -rf "$work/repo" "$work/keys"
    rss_init+=("$(peak_rss "$server" init --repo "$work/repo" --keys "$work/keys")")
    rss_publish+=("$(peak_rss "$server" publish --repo "$work/repo" "$ours")")
done

# --- report -----------------------------------------------------------------------
mkdir -p "$bench/out"
BENCH_RUNS=$runs BENCH_FILES=$files BENCH_BYTES=$bytes \
BENCH_SIZE_OURS=$(stat -c %s "$ours") BENCH_SIZE_BASE=$(stat -c %s "$base") \
BENCH_BUILD_OURS=$(join "${build_ours[@]}") BENCH_BUILD_BASE=$(join "${build_base[@]}") \
BENCH_VERIFY_OURS=$(join "${verify_ours[@]}") BENCH_VERIFY_BASE=$(join "${verify_base[@]}") \
BENCH_RSS_INIT=$(join "${rss_init[@]}") BENCH_RSS_PUBLISH=$(join "${rss_publish[@]}") \
BENCH_COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown) \
python3 - "$bench/out/bundle.json" <<'EOF'
import json, os, platform, statistics, sys, time

env = os.environ
def samples(name):
    return [float(x) for x in env[name].split(",")]

runs, files, size = int(env["BENCH_RUNS"]), int(env["BENCH_FILES"]), int(env["BENCH_BYTES"])
size_ours, size_base = int(env["BENCH_SIZE_OURS"]), int(env["BENCH_SIZE_BASE"])
build_ours, build_base = samples("BENCH_BUILD_OURS"), samples("BENCH_BUILD_BASE")
verify_ours, verify_base = samples("BENCH_VERIFY_OURS"), samples("BENCH_VERIFY_BASE")
# init then publish: the peak of the two, in MiB
rss_init = [x / 1024 for x in samples("BENCH_RSS_INIT")]
rss_publish = [x / 1024 for x in samples("BENCH_RSS_PUBLISH")]
rss = [max(a, b) for a, b in zip(rss_init, rss_publish)]
median = statistics.median_low

rows = [
    dict(name="build: bundle build vs tar czf", unit="s", ours=median(build_ours), baseline=median(build_base),
         goal=0.6, samples_ours=build_ours, samples_baseline=build_base),
    dict(name="archive size: bundle vs tar czf", unit="MB", ours=size_ours / 1e6, baseline=size_base / 1e6,
         goal=1.02),
    dict(name="verify: bundle verify vs gzip -dc | openssl", unit="s", ours=median(verify_ours),
         baseline=median(verify_base), goal=0.6, samples_ours=verify_ours, samples_baseline=verify_base),
    dict(name="peak RSS: init + publish", unit="MiB", ours=median(rss), baseline=None, goal=64, samples_ours=rss,
         samples_init=rss_init, samples_publish=rss_publish),
]
for r in rows:
    r["ratio"] = None if r["baseline"] is None else round(r["ours"] / r["baseline"], 4)
    r["pass"] = (r["ours"] if r["ratio"] is None else r["ratio"]) <= r["goal"]

def cell(x, unit):
    return "-" if x is None else f"{x:.2f} {unit}"

print()
print(f"tree: {files} files, {size / 1e6:.0f} MB (tar czf ratio {size / size_base:.2f}x); median of {runs} runs")
fmt = "{:<44} {:>11} {:>11} {:>6}  {:<10} {}"
print(fmt.format("measurement", "ours", "baseline", "ratio", "goal", "result"))
for r in rows:
    print(fmt.format(r["name"], cell(r["ours"], r["unit"]), cell(r["baseline"], r["unit"]),
                     "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
                     f"<= {r['goal']}" + (f" {r['unit']}" if r["ratio"] is None else ""),
                     "PASS" if r["pass"] else "MISS"))

result = dict(
    date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    commit=env["BENCH_COMMIT"],
    host=dict(cpus=os.cpu_count(), kernel=platform.release()),
    runs=runs,
    tree=dict(files=files, bytes=size),
    results=rows,
)
with open(sys.argv[1], "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print(f"\nJSON: {sys.argv[1]}")
EOF
