#!/usr/bin/env bash
# Scale benchmark: the repository at 1, 100, 1,000 and 10,000 bundles (20 files each), in the
# hashed-bins layout of this tree and in the single-targets layout of `main`, measured in the
# same run. For each size: the time and peak memory of one `publish`, the bytes an agent
# downloads for the refresh after that publish, and the agent's refresh + plan (wall, CPU,
# peak memory), the median of RUNS publishes each followed by a refresh. Goals at 10,000 bundles: publish <= 100 ms and <= 64 MiB, refresh after one
# change <= 64 KB, plan <= 100 ms CPU and <= 64 MiB. See bench/README.md.
#
#   bench/scale.sh                 # SIZES="1 100 1000 10000" FILES=20 RUNS=3 MAIN_REF=e3444ec PROFILE=release
#
# Both layouts are built with the same profile, release by default (the product ships
# release; PROFILE=dev for the tests' warm build); MAIN_REF defaults to e3444ec, the last
# commit of the single-targets layout. Its binaries are built from a `git worktree` of
# MAIN_REF in bench/out/scale/main-src with the same target folder and copied aside. The N-1 bundles before the measured publish are generated in one signing pass by
# server/examples/scale_gen.rs (10,000 publishes of the single-targets layout would take
# hours); the measured publish is the real command on a real 20-file archive. Results:
# bench/out/scale/TABLE.md and bench/out/scale.json.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
SIZES=${SIZES:-"1 100 1000 10000"}
FILES=${FILES:-20}
RUNS=${RUNS:-3}
# Both by default; LAYOUTS=ours measures this tree alone (no table beside main then).
LAYOUTS=${LAYOUTS:-"main ours"}
# The last commit of the single-targets layout (every bundle in the top-level targets.json).
MAIN_REF=${MAIN_REF:-e3444ec}
PROFILE=${PROFILE:-release}
case "$PROFILE" in
    release) profile_flag=(--release); profile_dir=release ;;
    dev) profile_flag=(); profile_dir=debug ;;
    *) echo "bench: PROFILE is release or dev, not $PROFILE" >&2; exit 2 ;;
esac
out="$root/bench/out/scale"
mkdir -p "$out"

# --- binaries ------------------------------------------------------------------------------
mkdir -p "$out/main-bin" "$out/ours-bin"
with_main=false
[[ " $LAYOUTS " == *" main "* ]] && with_main=true
# Cargo gives the workspace crates of both checkouts the same artifact names, and its
# freshness check compares modification times: touch the sources of the side being built.
touch_sources() { find "$1/bundle" "$1/agent" "$1/server" "$1/fixture" "$1/src" -name '*.rs' -exec touch {} +; }
if $with_main; then
    if [ ! -d "$out/main-src" ]; then
        git worktree add --detach "$out/main-src" "$MAIN_REF" >/dev/null
    fi
    git -C "$out/main-src" checkout --quiet --detach "$MAIN_REF"
    touch_sources "$out/main-src"
    CARGO_INCREMENTAL=0 cargo build --quiet "${profile_flag[@]}" --manifest-path "$out/main-src/Cargo.toml" --target-dir "$root/target" -p palier-server -p palier-agent
    cp "target/$profile_dir/palier-server" "target/$profile_dir/palier-agent" "$out/main-bin/"
    rm -f "target/$profile_dir/palier-server" "target/$profile_dir/palier-agent"
    touch_sources "$root"
fi
cargo build --quiet "${profile_flag[@]}" -p palier-server -p palier-agent
cargo build --quiet -p palier-server --example scale_gen
cp "target/$profile_dir/palier-server" "target/$profile_dir/palier-agent" "$out/ours-bin/"
gen="$root/target/debug/examples/scale_gen"
if $with_main && cmp -s "$out/main-bin/palier-server" "$out/ours-bin/palier-server"; then
    echo "bench: main's and this tree's palier-server are the same file" >&2
    exit 1
fi

# --- a static server that counts the bytes it sends ------------------------------------------
cat > "$out/count_server.py" <<'PY'
import functools, http.server, json, sys, threading
sent = {"bytes": 0, "files": []}
lock = threading.Lock()
class Counting(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/__count":
            with lock:
                body = json.dumps(sent).encode()
                sent["bytes"], sent["files"] = 0, []
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()
    def copyfile(self, source, outputfile):
        data = source.read()
        outputfile.write(data)
        with lock:
            sent["bytes"] += len(data)
            sent["files"].append([self.path, len(data)])
    def log_message(self, *args):
        pass
handler = functools.partial(Counting, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
with open(sys.argv[2], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
PY

# --- one real 20-file bundle ----------------------------------------------------------------
src="$out/bundle-src"
# RUNS measured publishes (medians), each of its own bundle, and one before them: on a
# generated repository that one builds the ownership index (once, as the first publish after
# an upgrade or a lost index does); it is reported apart.
make_bundle() { # name
    local d="$src/$1"
    rm -rf "$d"; mkdir -p "$d/files/mod/quiz/classes/$1"
    for i in $(seq -w 1 "$FILES"); do
        head -c 2000 /dev/urandom | base64 > "$d/files/mod/quiz/classes/$1/file-$i.php"
    done
    printf 'id = "%s"\nversion = "1.0.0"\ncomponent = "mod_quiz"\nclass = "technical"\ndata_impact = "none"\nsummary = "a measured publish"\nfixes = []\norigin = "report"\n' "$1" > "$d/bundle.toml"
    "$out/ours-bin/palier-server" bundle build --manifest "$d/bundle.toml" --source "$d/files" --out "$out/$1.tar.gz" >/dev/null
}
rm -rf "$src"; mkdir -p "$src"
make_bundle first-fix
for r in $(seq 1 "$RUNS"); do make_bundle "measured-$r"; done

# Wall time, CPU time (user + system) and peak RSS of one command, to the microsecond (GNU
# time rounds to 10 ms): `timed FILE CMD...` writes "wall_s cpu_s maxrss_kib" to FILE.
cat > "$out/timed.py" <<'PY'
import os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
wall = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    f.write(f"{wall:.6f} {usage.ru_utime + usage.ru_stime:.6f} {usage.ru_maxrss}\n")
sys.exit(os.waitstatus_to_exitcode(status))
PY
timed() { python3 "$out/timed.py" "$@"; }

results="$out/results.jsonl"
: > "$results"
measure() { # layout size
    local layout=$1 n=$2 bin="$out/$1-bin" dir="$out/$1-$2"
    rm -rf "$dir"; mkdir -p "$dir/site/dirroot" "$dir/site/dataroot"
    "$bin/palier-server" init --repo "$dir/repo" --keys "$dir/keys" >/dev/null
    "$gen" "$dir/repo" "$dir/keys" "$((n - 1))" "$FILES" >/dev/null
    printf '<?php\n$version  = 2024100702.00;\n$release  = '"'"'4.5.2+ (Build: 20250101)'"'"';\n$branch   = '"'"'405'"'"';\n' > "$dir/site/dirroot/version.php"
    python3 "$out/count_server.py" "$dir/repo" "$dir/port" & local server=$!
    for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.05; done
    local port; port=$(cat "$dir/port")
    cat > "$dir/agent.toml" <<TOML
platform = "univ-a"
repository = "http://127.0.0.1:$port/"
trusted_root = "$dir/repo/metadata/1.root.json"
state_dir = "$dir/state"
timezone = "Europe/Paris"

[moodle]
dirroot = "$dir/site/dirroot"
dataroot = "$dir/site/dataroot"
wwwroot = "http://127.0.0.1:9"

[improvement]
level = 3

[stability]
level = 1
low_load = ["20:00-07:00"]
max_defer = "4h"
TOML
    # First refresh: everything is new to the agent.
    timed "$dir/plan0.time" "$bin/palier-agent" plan --config "$dir/agent.toml" --json > "$dir/plan0.json"
    local first; first=$(curl -s "http://127.0.0.1:$port/__count")
    timed "$dir/publish0.time" "$bin/palier-server" publish --repo "$dir/repo" --keys "$dir/keys" "$out/first-fix.tar.gz" >/dev/null
    "$bin/palier-agent" plan --config "$dir/agent.toml" --json > /dev/null
    curl -s "http://127.0.0.1:$port/__count" > /dev/null
    local r counts=()
    for r in $(seq 1 "$RUNS"); do
        timed "$dir/publish-$r.time" "$bin/palier-server" publish --repo "$dir/repo" --keys "$dir/keys" "$out/measured-$r.tar.gz" >/dev/null
        timed "$dir/plan-$r.time" "$bin/palier-agent" plan --config "$dir/agent.toml" --json > "$dir/plan-$r.json"
        curl -s "http://127.0.0.1:$port/__count" > "$dir/count-$r.json"
    done
    kill "$server"; wait "$server" 2>/dev/null || true
    python3 - "$layout" "$n" "$dir" "$first" "$RUNS" >> "$results" <<'PY'
import json, statistics, sys
layout, n, d, first, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5])
def t(name):
    wall, cpu, rss = open(f"{d}/{name}.time").read().split()
    return dict(wall_ms=float(wall) * 1000, cpu_ms=float(cpu) * 1000, rss_mib=int(rss) / 1024)
def median(names):
    rows = [t(x) for x in names]
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}
counts = [json.load(open(f"{d}/count-{r}.json")) for r in range(1, runs + 1)]
planned = json.load(open(f"{d}/plan-{runs}.json"))
count = len(planned) if isinstance(planned, list) else len(planned.get("bundles", planned.get("decisions", [])))
print(json.dumps(dict(layout=layout, bundles=n, runs=runs,
                      publish=median([f"publish-{r}" for r in range(1, runs + 1)]), first_publish=t("publish0"),
                      refresh_plan=median([f"plan-{r}" for r in range(1, runs + 1)]), first_plan=t("plan0"),
                      first_bytes=first["bytes"], refresh_bytes=statistics.median(c["bytes"] for c in counts),
                      refresh_files=counts[-1]["files"], planned=count)))
PY
    echo "measured $layout at $n bundles" >&2
}
for n in $SIZES; do
    for layout in $LAYOUTS; do
        measure "$layout" "$n"
    done
done

BENCH_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown) BENCH_MAIN=$MAIN_REF BENCH_PROFILE=$PROFILE python3 - "$results" "$out/TABLE.md" "$root/bench/out/scale.json" <<'PY'
import json, os, sys, time
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["layout"], r["bundles"]): r for r in rows}
sizes = sorted({r["bundles"] for r in rows})
lines = ["| bundles | measure | main (single targets) | ours (hashed bins) | ratio | goal at 10,000 |", "|---:|---|---:|---:|---:|---|"]
measures = [
    ("publish wall (ms)", lambda r: r["publish"]["wall_ms"], "<= 100 ms"),
    ("publish peak RSS (MiB)", lambda r: r["publish"]["rss_mib"], "<= 64 MiB"),
    ("publish before it, wall (ms): builds the ownership index on a generated repository", lambda r: r["first_publish"]["wall_ms"], ""),
    ("refresh after one publish (bytes downloaded)", lambda r: r["refresh_bytes"], "<= 65536"),
    ("refresh + plan CPU (ms)", lambda r: r["refresh_plan"]["cpu_ms"], "<= 100 ms (plan)"),
    ("refresh + plan wall (ms)", lambda r: r["refresh_plan"]["wall_ms"], ""),
    ("refresh + plan peak RSS (MiB)", lambda r: r["refresh_plan"]["rss_mib"], "<= 64 MiB"),
    ("first refresh (bytes downloaded)", lambda r: r["first_bytes"], ""),
]
for n in sizes:
    m, o = by.get(("main", n)), by.get(("ours", n))
    for name, f, goal in measures:
        a, b = (f(m) if m else None), (f(o) if o else None)
        ratio = f"{b / a:.3f}" if a and b is not None else "-"
        fmt = lambda v: "-" if v is None else (f"{v:,.0f}" if isinstance(v, int) or v >= 100 else f"{v:.1f}")
        lines.append(f"| {n:,} | {name} | {fmt(a)} | {fmt(b)} | {ratio} | {goal if n == max(sizes) else ''} |")
table = "\n".join(lines)
caption = f"bench/scale.sh, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {os.environ['BENCH_COMMIT']} (main = single targets at {os.environ['BENCH_MAIN']}), {os.environ['BENCH_PROFILE']} binaries of both layouts, median of {rows[0].get('runs', 1)} publishes each followed by a refresh, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n\n"
open(sys.argv[2], "w").write(caption + table + "\n")
json.dump(dict(date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), commit=os.environ["BENCH_COMMIT"], main=os.environ["BENCH_MAIN"], profile=os.environ["BENCH_PROFILE"], rows=rows), open(sys.argv[3], "w"), indent=1)
print(caption + table)
PY
