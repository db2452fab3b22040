#!/usr/bin/env bash
# Apply benchmark: palier-agent staging, swapping and rolling back a bundle on a
# Moodle-sized code tree, against `cp -al` + `tar xzf` (see bench/README.md).
#
#   bench/apply.sh
#
# Works in a fresh directory under /tmp, removed at the end unless KEEP=1.
#
# Environment: RUNS (runs per measurement, default 3); FILES and BYTES (the tree,
# default 30000 files, 300000000 bytes); SMALL_FILES and SMALL_BYTES (the bundle of
# the apply and rollback figures, default 50 files, 2000000 bytes); BIG_FILES and
# BIG_BYTES (the bundle of the memory figure, default 3000 files, 300000000 bytes);
# KEEP=1.
set -euo pipefail

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench")
runs=${RUNS:-3}
files=${FILES:-30000}
bytes=${BYTES:-300000000}
small_files=${SMALL_FILES:-50}
small_bytes=${SMALL_BYTES:-2000000}
big_files=${BIG_FILES:-3000}
big_bytes=${BIG_BYTES:-300000000}

if (($# > 0)); then
    echo "usage: $0   (settings come from the environment: RUNS FILES BYTES SMALL_FILES SMALL_BYTES BIG_FILES BIG_BYTES KEEP)" >&2
    exit 2
fi
for v in runs files bytes small_files small_bytes big_files big_bytes; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || { echo "bench: ${v^^}=${!v}: expected a positive whole number" >&2; exit 2; }
done

say() { echo "== $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

[[ $(tar --version) == *'GNU tar'* ]] || die "GNU tar is required"
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is required"
command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

work=$(mktemp -d /tmp/palier-apply.XXXXXX)
servers=()
cleanup() {
    local pid
    for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ ${KEEP:-0} == 1 ]]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- the binaries ---------------------------------------------------------------
say "building palier-agent, palier-server and the moodle-site fixture (release)"
(cd "$root" && cargo build --release -p palier-agent -p palier-server && cargo build --release -p palier-fixture --example moodle-site)
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
agent=$target/release/palier-agent
server=$target/release/palier-server
site=$target/release/examples/moodle-site

log=$work/bench.log
: >"$log"

# quiet CMD...: run CMD with its output in the log; on failure show the log's tail.
quiet() {
    if ! "$@" >>"$log" 2>&1; then
        echo "bench: failed: $*" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
}

# wall OUT CMD...: run CMD (stdout to OUT, stderr to the log) and print its wall time in seconds.
wall() {
    local out=$1 t0 t1
    shift
    t0=$(date +%s.%N)
    if ! "$@" >"$out" 2>>"$log"; then
        echo "bench: failed: $*" >&2
        cat "$out" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    t1=$(date +%s.%N)
    python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.3f}")' "$t0" "$t1"
}

join() { local IFS=,; echo "$*"; }

# --- the tree --------------------------------------------------------------------
pristine=$work/pristine
say "generating the tree ($files files, $bytes bytes)"
quiet "$site" generate "$pristine" --files "$files" --bytes "$bytes" --seed 1

# --- the bundles -------------------------------------------------------------------
# bundle_source DIR ID NFILES NBYTES SEED: a bundle source (DIR/bundle.toml, DIR/files/)
# of NFILES files and about NBYTES bytes: nine in ten replace existing filler PHP files
# of the tree (each the old file with a fixed function inserted, as a real fix would
# be), one in ten are new PHP classes made of the tree's own code. The sizes of the
# replaced files are near NBYTES / NFILES.
bundle_source() {
    python3 - "$pristine" "$@" <<'EOF'
import math, os, random, sys

tree, out, bundle_id, nfiles, nbytes, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rng = random.Random(seed)
# Filler files have a digit in their name; the core pages (home, login, course,
# version.php...) have none and are left alone, so the smoke checks keep passing.
php = []
for d, _, names in os.walk(tree):
    for n in names:
        if n.endswith(".php") and any(c.isdigit() for c in n):
            p = os.path.join(d, n)
            php.append((os.path.relpath(p, tree), os.path.getsize(p)))
php.sort()
n_new = max(1, nfiles // 10)
n_replace = nfiles - n_new
if n_replace > len(php):
    sys.exit(f"bundle {bundle_id}: the tree has {len(php)} filler PHP files, {n_replace} wanted")
avg = nbytes / nfiles
near = sorted(php, key=lambda f: abs(math.log(max(f[1], 1)) - math.log(avg)))[: max(n_replace, 3 * n_replace)]
replaced = sorted(rng.sample(near, n_replace))

def read(rel):
    with open(os.path.join(tree, rel), encoding="utf-8") as f:
        return f.read()

def fix(i):
    return (
        f"\n/**\n * Fix {bundle_id} #{i}: guard against a missing record before using it.\n *\n"
        f" * @param int $id the record id\n * @return \\stdClass|null\n */\n"
        f"function palier_bench_fix_{i}_get_record(int $id): ?\\stdClass {{\n    global $DB;\n"
        f"    if ($id <= 0) {{\n        return null;\n    }}\n"
        f"    $record = $DB->get_record('course_modules', ['id' => $id], '*', IGNORE_MISSING);\n"
        f"    return $record ?: null;\n}}\n"
    )

files = {}
for i, (rel, _) in enumerate(replaced):
    lines = read(rel).splitlines(keepends=True)
    at = rng.randrange(len(lines) // 2, len(lines)) if len(lines) > 2 else len(lines)
    files[rel] = "".join(lines[:at]) + fix(i) + "".join(lines[at:])
left = nbytes - sum(len(t.encode()) for t in files.values())
size = max(2048, left // n_new)
donors = [rel for rel, _ in php if rel not in files]
for i in range(n_new):
    dir_ = os.path.dirname(replaced[i % len(replaced)][0])
    rel = os.path.join(dir_, f"palier_bench_new_{i}.php")
    parts = [f"<?php\n// New class of bundle {bundle_id}.\n"]
    have = len(parts[0])
    while have < size:
        body = read(rng.choice(donors)).split("\n", 1)[-1]   # without its <?php line
        parts.append(body)
        have += len(body)
    text = "".join(parts)
    cut = text.rfind("\n", 0, size)
    files[rel] = text[: cut + 1 if cut > 0 else size]
for rel, text in files.items():
    if "PALIER_FIXTURE" in text:
        sys.exit(f"bundle {bundle_id}: {rel} would carry a fixture marker")
    p = os.path.join(out, "files", rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w", encoding="utf-8") as f:
        f.write(text)
with open(os.path.join(out, "bundle.toml"), "w") as f:
    f.write(f'id = "{bundle_id}"\nversion = "1.0.0"\ncomponent = "core"\nclass = "technical"\n'
            f'data_impact = "none"\nsummary = "Apply benchmark bundle: {nfiles} PHP files"\norigin = "roadmap"\n')
total = sum(len(t.encode()) for t in files.values())
print(f"{len(files)} {total} {n_replace} {n_new}")
EOF
}

# repository NAME ID: a repository of its own (NAME/repo, NAME/keys) holding the bundle
# built from NAME/source, validated by alpha (what stability level 1 needs).
repository() {
    local dir=$work/$1 id=$2
    quiet "$server" init --repo "$dir/repo" ${BINS:+--bins $BINS}
    quiet "$server" bundle build --manifest "$dir/source/bundle.toml" --source "$dir/source/files" --out "$dir/$id.tar.gz"
    quiet "$server" publish --repo "$dir/repo" "$dir/$id.tar.gz"
    quiet "$server" validate --repo "$dir/repo" "$id@1.0.0" --alpha
}

say "building the $small_files-file bundle and the $big_files-file bundle"
read -r small_n small_size small_replaced small_new < <(bundle_source "$work/small/source" bench-small "$small_files" "$small_bytes" 2)
read -r big_n big_size big_replaced big_new < <(bundle_source "$work/big/source" bench-big "$big_files" "$big_bytes" 3)
repository small bench-small
repository big bench-big
small_archive=$work/small/bench-small.tar.gz
# The archive holds bundle.toml then files/<path>: the baseline extracts files/ only.
listing=$(tar tzf "$small_archive")
[[ $(head -n 1 <<<"$listing") == bundle.toml ]] || die "$small_archive does not start with bundle.toml"
[[ $(grep -c '^files/.*[^/]$' <<<"$listing") == "$small_n" ]] || die "$small_archive does not hold the $small_n files"
sample=$(cd "$work/small/source/files" && find . -type f -name '*.php' ! -name 'palier_bench_new_*' | sort | head -n 1)
sample=${sample#./}

# --- sites -----------------------------------------------------------------------------
# new_site DIR REPO: a fresh copy of the pristine tree at DIR/dirroot, its dataroot, a
# fixture Moodle server answering from it, and a level-1 agent config DIR/agent.toml
# (improvement 3, stability 1: apply as soon as possible) with fresh state.
new_site() {
    local dir=$1 repo=$2 url pid i
    mkdir -p "$dir/dataroot"
    cp -a "$pristine" "$dir/dirroot"
    "$site" serve "$dir/dirroot" "$dir/dataroot" >"$dir/url" 2>>"$log" &
    pid=$!
    servers+=("$pid")
    echo "$pid" >"$dir/server.pid"
    for ((i = 0; i < 100; i++)); do
        [[ -s $dir/url ]] && break
        kill -0 "$pid" 2>/dev/null || die "the fixture server for $dir did not start (see $log)"
        sleep 0.05
    done
    url=$(<"$dir/url")
    [[ $url == http://* ]] || die "the fixture server for $dir printed no URL"
    cat >"$dir/agent.toml" <<EOF
platform = "bench"
repository = "file://$repo"
trusted_root = "$repo/metadata/1.root.json"
state_dir = "$dir/state"
timezone = "Europe/Paris"

[moodle]
dirroot = "$dir/dirroot"
dataroot = "$dir/dataroot"
wwwroot = "$url"

[improvement]
level = 3

[stability]
level = 1

# As on a production host, PHP is reloaded after each swap (here a no-op: the fixture
# server has no opcode cache). Without a reload hook the agent would wait for PHP's opcode
# cache to revalidate (opcache_revalidate + 1 s) before a second round of checks.
[hooks]
reload = ["true"]
EOF
    curl -fsS -o /dev/null "$url/login/index.php" || die "the fixture site $url does not answer"
}

stop_site() {
    local pid
    pid=$(<"$1/server.pid")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# receipt_ms STATE_DIR KIND STEP...: the durations (ms) of these steps in the one receipt
# of KIND (applied: an intervention that applied; rollback: a rollback by hand),
# comma-separated.
receipt_ms() {
    python3 - "$@" <<'EOF'
import glob, json, sys
state, kind, steps = sys.argv[1], sys.argv[2], sys.argv[3:]
receipts = [json.load(open(p)) for p in sorted(glob.glob(f"{state}/receipts/*.json"))]
if kind == "rollback":
    found = [r for r in receipts if r["outcome"] == "rolled-back" and r["id"].endswith("-rollback")]
else:
    found = [r for r in receipts if r["outcome"] == "applied"]
if len(found) != 1:
    sys.exit(f"bench: expected one {kind} receipt in {state}/receipts, found {[(r['id'], r['outcome']) for r in receipts]}")
durations = {s["name"]: s["duration_ms"] for s in found[0]["steps"]}
missing = [s for s in steps if s not in durations]
if missing:
    sys.exit(f"bench: receipt {found[0]['id']} has no step {missing}: {list(durations)}")
print(",".join(str(durations[s]) for s in steps))
EOF
}

# live_after STATE_DIR T0: seconds from T0 (epoch seconds) to the end of the rollback
# receipt's "rollback" step, the instant the previous tree was live again.
live_after() {
    python3 - "$@" <<'EOF'
import calendar, glob, json, sys, time
state, t0 = sys.argv[1], float(sys.argv[2])
def epoch(ts):   # RFC 3339 in UTC with up to 9 fraction digits, as the agent writes it
    whole, _, frac = ts.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))
for p in glob.glob(f"{state}/receipts/*-rollback.json"):
    for step in json.load(open(p))["steps"]:
        if step["name"] == "rollback":
            print(f"{epoch(step['started_at']) + step['duration_ms'] / 1000 - t0:.3f}")
            sys.exit(0)
sys.exit(f"bench: no rollback step in {state}/receipts")
EOF
}

# baseline TREE COPY: what the figure compares with: a hard-link copy, then the archive's files.
baseline() {
    cp -al "$1" "$2"
    tar xzf "$small_archive" --strip-components=1 -C "$2" files
}

# --- 1. apply, side by side ---------------------------------------------------------------
# Setup (fresh copies, a server, `sync` so neither side flushes the copies) is not measured.
# Each round runs ours, then the baseline, then the baseline followed by `sync -f` (one
# syncfs of the filesystem, as the agent's stage step does).
apply_wall=() apply_stage=() apply_swap=() apply_download=() apply_checks=() apply_preflight=() apply_carry=()
base=() base_sync=() base_sync_only=()
for ((i = 1; i <= runs; i++)); do
    say "round $i/$runs: setting up fresh trees"
    r=$work/round-$i
    new_site "$r/site" "$work/small/repo"
    mkdir -p "$r/base"
    cp -a "$pristine" "$r/base/tree"
    sync

    say "round $i/$runs: palier-agent run --once ($small_n files)"
    apply_wall+=("$(wall "$r/run.out" "$agent" run --once --config "$r/site/agent.toml")")
    grep -q '^applied bench-small@1.0.0' "$r/run.out" || die "round $i: the bundle was not applied: $(cat "$r/run.out")"
    cmp -s "$work/small/source/files/$sample" "$r/site/dirroot/$sample" || die "round $i: $sample is not the bundle's after the apply"
    IFS=, read -r ms_download ms_stage ms_swap ms_checks ms_preflight ms_carry < <(receipt_ms "$r/site/state" applied download stage swap checks "preflight checks" "carry new site-local files")
    apply_download+=("$ms_download") apply_stage+=("$ms_stage") apply_swap+=("$ms_swap") apply_checks+=("$ms_checks")
    apply_preflight+=("$ms_preflight") apply_carry+=("$ms_carry")
    # The site stays served (idle) until its rollback, which runs the smoke checks after it.

    say "round $i/$runs: cp -al + tar xzf"
    base+=("$(wall /dev/null baseline "$r/base/tree" "$r/base/copy")")
    cmp -s "$work/small/source/files/$sample" "$r/base/copy/$sample" || die "round $i: tar did not write $sample"
    cmp -s "$pristine/$sample" "$r/base/tree/$sample" || die "round $i: tar wrote through a hard link into the source tree"
    sync

    say "round $i/$runs: cp -al + tar xzf + sync -f"
    t_copy=$(wall /dev/null baseline "$r/base/tree" "$r/base/copy-sync")
    t_sync=$(wall /dev/null sync -f "$r/base/copy-sync")
    base_sync+=("$(python3 -c 'import sys; print(f"{float(sys.argv[1]) + float(sys.argv[2]):.3f}")' "$t_copy" "$t_sync")")
    base_sync_only+=("$t_sync")
done

# --- 2. rollback ---------------------------------------------------------------------------
# After all the applies, so that removing the rolled-back trees cannot slow a later apply
# down (see SPEC 5 on ext4 with discard).
rollback=() rollback_step=() rollback_live=() rollback_carry=() rollback_checks=()
for ((i = 1; i <= runs; i++)); do
    say "rollback $i/$runs: palier-agent rollback"
    r=$work/round-$i
    t0=$(date +%s.%N)
    rollback+=("$(wall "$r/rollback.out" "$agent" rollback --config "$r/site/agent.toml")")
    grep -q '^rolled back bench-small@1.0.0' "$r/rollback.out" || die "rollback $i: $(cat "$r/rollback.out")"
    cmp -s "$pristine/$sample" "$r/site/dirroot/$sample" || die "rollback $i: $sample is not the old one again"
    IFS=, read -r ms_step ms_carry ms_checks < <(receipt_ms "$r/site/state" rollback rollback "carry new site-local files" "checks after the rollback")
    rollback_step+=("$ms_step") rollback_carry+=("$ms_carry") rollback_checks+=("$ms_checks")
    rollback_live+=("$(live_after "$r/site/state" "$t0")")
    stop_site "$r/site"
done

# --- 3. peak memory applying a big bundle ---------------------------------------------------
rss=() big_wall=() big_stage=()
for ((i = 1; i <= runs; i++)); do
    say "memory $i/$runs: palier-agent run --once ($big_n files, $((big_size / 1000000)) MB)"
    r=$work/big-$i
    new_site "$r/site" "$work/big/repo"
    sync
    t=$(wall "$r/run.out" /usr/bin/time -f %M -o "$r/rss" "$agent" run --once --config "$r/site/agent.toml")
    grep -q '^applied bench-big@1.0.0' "$r/run.out" || die "memory $i: the bundle was not applied: $(cat "$r/run.out")"
    rss+=("$(tail -n 1 "$r/rss")") big_wall+=("$t") big_stage+=("$(receipt_ms "$r/site/state" applied stage)")
    stop_site "$r/site"
done

# --- for reference: removing a hard-link copy of the tree ------------------------------------
# Last, as removing trees slows later file creation down on ext4 with discard (SPEC 5).
rm_copy=()
for ((i = 1; i <= runs; i++)); do
    say "reference $i/$runs: rm -rf of a cp -al copy"
    sync
    rm_copy+=("$(wall /dev/null rm -rf "$work/round-$i/base/copy")")
done

# --- report -----------------------------------------------------------------------------------
mkdir -p "$bench/out"
BENCH_RUNS=$runs BENCH_FILES=$files BENCH_BYTES=$bytes \
BENCH_SMALL="$small_n,$small_size,$small_replaced,$small_new,$(stat -c %s "$small_archive")" \
BENCH_BIG="$big_n,$big_size,$big_replaced,$big_new,$(stat -c %s "$work/big/bench-big.tar.gz")" \
BENCH_APPLY_WALL=$(join "${apply_wall[@]}") BENCH_APPLY_DOWNLOAD=$(join "${apply_download[@]}") \
BENCH_APPLY_STAGE=$(join "${apply_stage[@]}") BENCH_APPLY_SWAP=$(join "${apply_swap[@]}") \
BENCH_APPLY_CHECKS=$(join "${apply_checks[@]}") BENCH_APPLY_PREFLIGHT=$(join "${apply_preflight[@]}") \
BENCH_APPLY_CARRY=$(join "${apply_carry[@]}") BENCH_ROLLBACK_CARRY=$(join "${rollback_carry[@]}") \
BENCH_ROLLBACK_CHECKS=$(join "${rollback_checks[@]}") \
BENCH_BASE=$(join "${base[@]}") BENCH_BASE_SYNC=$(join "${base_sync[@]}") BENCH_BASE_SYNC_ONLY=$(join "${base_sync_only[@]}") \
BENCH_ROLLBACK=$(join "${rollback[@]}") BENCH_ROLLBACK_STEP=$(join "${rollback_step[@]}") \
BENCH_ROLLBACK_LIVE=$(join "${rollback_live[@]}") BENCH_RM_COPY=$(join "${rm_copy[@]}") \
BENCH_RSS=$(join "${rss[@]}") BENCH_BIG_WALL=$(join "${big_wall[@]}") BENCH_BIG_STAGE=$(join "${big_stage[@]}") \
BENCH_COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown) \
python3 - "$bench/out/apply.json" <<'EOF'
import json, os, platform, statistics, sys, time

env = os.environ
def samples(name, scale=1.0):
    return [round(float(x) * scale, 3) for x in env[name].split(",")]

runs, files, size = int(env["BENCH_RUNS"]), int(env["BENCH_FILES"]), int(env["BENCH_BYTES"])
small = dict(zip(["files", "bytes", "replaced", "new", "archive_bytes"], map(int, env["BENCH_SMALL"].split(","))))
big = dict(zip(["files", "bytes", "replaced", "new", "archive_bytes"], map(int, env["BENCH_BIG"].split(","))))
ms = 1 / 1000
stage, swap = samples("BENCH_APPLY_STAGE", ms), samples("BENCH_APPLY_SWAP", ms)
ours = [round(a + b, 3) for a, b in zip(stage, swap)]
wall = samples("BENCH_APPLY_WALL")
base, base_sync, sync_only = samples("BENCH_BASE"), samples("BENCH_BASE_SYNC"), samples("BENCH_BASE_SYNC_ONLY")
rollback, rollback_step = samples("BENCH_ROLLBACK"), samples("BENCH_ROLLBACK_STEP", ms)
rollback_live, rm_copy = samples("BENCH_ROLLBACK_LIVE"), samples("BENCH_RM_COPY")
rss = samples("BENCH_RSS", 1 / 1024)
median = statistics.median_low

rows = [
    dict(name="apply: stage+swap vs cp -al + tar xzf", unit="s", ours=median(ours), baseline=median(base), goal=1.5,
         samples_ours=ours, samples_baseline=base, samples_stage=stage, samples_swap=swap),
    dict(name="same, baseline + sync -f (fair)", sub=True, unit="s", ours=median(ours), baseline=median(base_sync), goal=1.5,
         samples_ours=ours, samples_baseline=base_sync, samples_sync=sync_only),
    dict(name="info: whole run --once vs cp -al + tar xzf", sub=True, unit="s", ours=median(wall), baseline=median(base), goal=None,
         samples_ours=wall, samples_baseline=base, samples_download=samples("BENCH_APPLY_DOWNLOAD", ms),
         samples_checks=samples("BENCH_APPLY_CHECKS", ms), samples_preflight=samples("BENCH_APPLY_PREFLIGHT", ms),
         samples_carry=samples("BENCH_APPLY_CARRY", ms)),
    dict(name="rollback: palier-agent rollback (wall)", unit="s", ours=median(rollback), baseline=None, goal=1.0,
         strict=True, samples_ours=rollback, samples_rollback_step=rollback_step,
         samples_carry=samples("BENCH_ROLLBACK_CARRY", ms), samples_checks=samples("BENCH_ROLLBACK_CHECKS", ms)),
    dict(name="info: old tree live again (from the start)", sub=True, unit="s", ours=median(rollback_live), baseline=None,
         goal=None, samples_ours=rollback_live),
    dict(name="info: rm -rf of a cp -al copy of the tree", sub=True, unit="s", ours=None, baseline=median(rm_copy), goal=None,
         samples_baseline=rm_copy),
    dict(name=f"peak RSS: run --once, {big['bytes'] / 1e6:.0f} MB bundle", unit="MiB", ours=median(rss), baseline=None,
         goal=64, samples_ours=rss, samples_wall=samples("BENCH_BIG_WALL"), samples_stage=samples("BENCH_BIG_STAGE", ms)),
]
for r in rows:
    r["ratio"] = None if r["baseline"] is None or r["ours"] is None else round(r["ours"] / r["baseline"], 4)
    value = r["ours"] if r["ratio"] is None else r["ratio"]
    r["pass"] = None if r["goal"] is None else (value < r["goal"] if r.get("strict") else value <= r["goal"])

def cell(x, unit):
    return "-" if x is None else f"{x:.2f} {unit}"

def goal(r):
    if r["goal"] is None:
        return "-"
    op = "<" if r.get("strict") else "<="
    return f"{op} {r['goal']}" + (f" {r['unit']}" if r["ratio"] is None else "")

print()
print(f"tree: {files} files, {size / 1e6:.0f} MB; median of {runs} runs")
print(f"bundle: {small['files']} PHP files ({small['replaced']} replaced, {small['new']} new), "
      f"{small['bytes'] / 1e6:.2f} MB, archive {small['archive_bytes'] / 1e6:.2f} MB")
fmt = "{:<46} {:>10} {:>10} {:>6}  {:<10} {}"
print(fmt.format("measurement", "ours", "baseline", "ratio", "goal", "result"))
for r in rows:
    print(fmt.format(("  " if r.pop("sub", False) else "") + r["name"], cell(r["ours"], r["unit"]), cell(r["baseline"], r["unit"]),
                     "-" if r["ratio"] is None else f"{r['ratio']:.3f}", goal(r),
                     "info" if r["pass"] is None else "PASS" if r["pass"] else "MISS"))
print()
print(f"ours = the receipt's stage + swap steps; stage = hard-link clone + write and verify the files + syncfs.")
print(f"  stage {median(stage):.2f} s, swap {median(swap) * 1000:.0f} ms; the baseline's sync -f alone: {median(sync_only):.2f} s")
def ms_of(name):
    return f"{median(samples(name, ms)) * 1000:.0f} ms"
print(f"  whole run --once also refreshes the repository, runs the preflight checks ({ms_of('BENCH_APPLY_PREFLIGHT')}), "
      f"downloads ({ms_of('BENCH_APPLY_DOWNLOAD')}), carries site-local files created since the clone after the swap "
      f"({ms_of('BENCH_APPLY_CARRY')}) and runs the HTTP checks ({ms_of('BENCH_APPLY_CHECKS')})")
print(f"rollback: the exchange (the receipt's rollback step) takes {median(rollback_step) * 1000:.0f} ms and ends "
      f"{median(rollback_live):.2f} s after the command starts; the rest of the {median(rollback):.2f} s comes after it: "
      f"site-local files created since the apply carried ({ms_of('BENCH_ROLLBACK_CARRY')}), the reload hook, "
      f"the smoke checks ({ms_of('BENCH_ROLLBACK_CHECKS')}), the records")
print(f"memory: {big['files']} files ({big['replaced']} replaced, {big['new']} new), {big['bytes'] / 1e6:.0f} MB, "
      f"archive {big['archive_bytes'] / 1e6:.0f} MB; run --once {median(samples('BENCH_BIG_WALL')):.1f} s, "
      f"stage {median(samples('BENCH_BIG_STAGE', ms)):.1f} s")

result = dict(
    date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    commit=env["BENCH_COMMIT"],
    host=dict(cpus=os.cpu_count(), kernel=platform.release()),
    runs=runs,
    tree=dict(files=files, bytes=size),
    bundle=small,
    big_bundle=big,
    notes=[
        "ours is the receipt's stage + swap durations; stage includes one syncfs of the filesystem",
        "baseline is cp -al of the tree then tar xzf of the same bundle archive's files/ into the copy",
        "each run uses a fresh copy of the tree and fresh agent state; the copies are synced before measuring",
    ],
    results=rows,
)
with open(sys.argv[1], "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print(f"\nJSON: {sys.argv[1]}")
EOF
