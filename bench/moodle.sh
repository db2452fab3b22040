#!/usr/bin/env bash
# Real-site benchmark: palier-agent applying a 2-file fix to a real Moodle 5.1+ site (its
# whole ~30,000-file code root, dirroot = the code root) and rolling it back by hand, each
# beside `cp -al` of the same tree (see bench/README.md).
#
#   bench/moodle.sh
#
# Installs Moodle from PALIER_MOODLE_SRC (a tarball or a code folder; default the shared
# tarball beside the repository, ../shared/moodle/moodle-5.1.tar.gz) with the real-Moodle
# test's own scripts (tests/real_moodle/install.sh, serve.sh), which take about 5 minutes
# here. Needs root (PostgreSQL, files owned by www-data), Debian's PHP 8.2 and PostgreSQL 15
# (what .ci/run installs), curl, GNU tar, python3. Works in a fresh folder under /tmp,
# removed at the end with the database unless KEEP=1.
#
# Environment: RUNS (rounds, default 3), PALIER_MOODLE_SRC, KEEP=1; PROFILE=debug measures
# the debug binaries instead (no release build); SITE=DIR reuses a site that
# tests/real_moodle/install.sh installed in DIR and tests/real_moodle/serve.sh serves (its
# web/serve.pid), instead of installing one: the bench then works in a new DIR/bench.* folder
# and leaves the site as it found it (its code tree put back by each rollback).
# Exit status: 0 measured (whatever the goals), 1 failed, 2 bad usage or no Moodle source.
set -euo pipefail

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench")
runs=${RUNS:-3}
src=${PALIER_MOODLE_SRC:-$root/../shared/moodle/moodle-5.1.tar.gz}

if (($# > 0)); then
    echo "usage: $0   (settings come from the environment: RUNS PALIER_MOODLE_SRC KEEP)" >&2
    exit 2
fi
[[ $runs =~ ^[0-9]+$ && $runs -gt 0 ]] || { echo "bench: RUNS=$runs: expected a positive whole number" >&2; exit 2; }

say() { echo "== $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

if [[ -z ${SITE:-} ]]; then
    [[ -e $src ]] || { echo "bench: no Moodle source at $src: set PALIER_MOODLE_SRC to a Moodle 5.1+ tarball or code folder" >&2; exit 2; }
    src=$(realpath "$src")
fi
[[ $(id -u) == 0 ]] || die "run it as root: it starts PostgreSQL and runs Moodle and the agent as www-data"
for p in php pg_ctlcluster psql curl setpriv python3; do
    command -v "$p" >/dev/null || die "$p is not installed (.ci/run installs what the real-Moodle test needs)"
done
[[ $(tar --version) == *'GNU tar'* ]] || die "GNU tar is required"

# --- the binaries ---------------------------------------------------------------------------
profile=${PROFILE:-release}
[[ $profile == release || $profile == debug ]] || { echo "bench: PROFILE=$profile: expected release or debug" >&2; exit 2; }
say "building palier-agent and palier-server ($profile)"
(cd "$root" && cargo build $([[ $profile == release ]] && echo --release) --locked -p palier-agent -p palier-server)
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target

reuse=${SITE:-}
if [[ -n $reuse ]]; then
    work=$(realpath "$reuse")
    [[ -f $work/web/serve.pid && -f $work/db.env && -f $work/moodle/config.php ]] || die "SITE=$reuse: not a site installed by tests/real_moodle/install.sh and served by serve.sh"
    bw=$(mktemp -d "$work/bench.XXXXXX")
else
    work=$(mktemp -d /tmp/palier-moodle-bench.XXXXXX)
    bw=$work
fi
chmod 755 "$work" "$bw"
db=palier_bench_$$
log=$bw/bench.log
: >"$log"
cleanup() {
    if [[ -n $reuse ]]; then
        [[ ${KEEP:-0} == 1 ]] || rm -rf "$bw"
        return
    fi
    [[ -f $work/web/serve.pid ]] && kill -TERM "$(cat "$work/web/serve.pid")" 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "bench: kept $work and database $db" >&2
    else
        runuser -u postgres -- psql -q -c "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS $db" >/dev/null 2>&1 || true
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# as_www CMD...: run CMD as the site's owner.
as_www() { setpriv --reuid=www-data --regid=www-data --init-groups -- "$@"; }

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

# --- the site -----------------------------------------------------------------------------------
mkdir -p "$bw/bin"
cp "$target/$profile/palier-agent" "$bw/bin/"
agent=$bw/bin/palier-agent
server=$target/$profile/palier-server
if [[ -n $reuse ]]; then
    addr=$(sed -n 's|^\$CFG->wwwroot *= *.http://\([^/'"'"']*\).*|\1|p' "$work/moodle/config.php")
    [[ -n $addr ]] || die "no http:// wwwroot in $work/moodle/config.php"
else
    mkdir -p "$work/moodle/public" "$work/web" "$work/hooks"
    cp "$root"/tests/real_moodle/{serve,reload}.sh "$work/hooks/"
    # A production PHP: the opcode cache on, checking files' timestamps (PHP's defaults).
    printf 'opcache.enable=1\n' >"$work/web/serve.ini"
    chown -R www-data:www-data "$work/web" "$work/hooks"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    addr=127.0.0.1:$port
    setsid setpriv --reuid=www-data --regid=www-data --init-groups -- "$work/hooks/serve.sh" "$addr" "$work/moodle/public" "$work/web" \
        >/dev/null 2>>"$log" </dev/null &
    for ((i = 0; i < 600; i++)); do [[ -f $work/web/serve.generation ]] && break; sleep 0.05; done
    [[ -f $work/web/serve.generation ]] || die "the web server did not start on $addr (see $log)"

    say "installing Moodle from $src (about 2 minutes on a quiet machine)"
    bash "$root/tests/real_moodle/install.sh" "$src" "$work" "$port" "$db" 2>>"$log" || die "the Moodle install failed (see $log)"
fi
chown -R www-data:www-data "$bw"
code=$work/moodle
tree_files=$(find "$code" -type f | wc -l)
tree_dirs=$(find "$code" -type d | wc -l)
tree_bytes=$(du -sb "$code" | cut -f1)
release=$(sed -n "s/^\$release *= *'\([^']*\)'.*/\1/p" "$code/public/version.php")
curl -fsS -o /dev/null "http://$addr/login/index.php" || die "the installed site does not answer on $addr"
say "Moodle $release: $tree_files files, $tree_dirs folders, $((tree_bytes / 1000000)) MB"

# --- the bundle: a 2-file fix of mod_quiz ------------------------------------------------------
say "building and publishing a 2-file fix"
b=$bw/bundle
mkdir -p "$b/files/public/mod/quiz"
{ cat "$code/public/mod/quiz/lib.php"; printf '\n// palier real-site bench: quiz-fix 1.0.1\n'; } >"$b/files/public/mod/quiz/lib.php"
printf '<?php\necho "palier-quiz-fix-1.0.1";\n' >"$b/files/public/mod/quiz/palier_probe.php"
cat >"$b/bundle.toml" <<'EOF'
id = "quiz-fix"
version = "1.0.1"
component = "mod_quiz"
class = "technical"
summary = "real-site bench: a 2-file fix of mod_quiz"
origin = "roadmap"
data_impact = "none"

[[checks]]
path = "/mod/quiz/palier_probe.php"
expect_status = 200
expect_body = "palier-quiz-fix-1.0.1"
EOF
(
    cd "$bw"
    "$server" init --repo repo >>"$log" 2>&1
    "$server" bundle build --manifest "$b/bundle.toml" --source "$b/files" --out "$b.tar.gz" >>"$log" 2>&1
    "$server" publish --repo repo "$b.tar.gz" >>"$log" 2>&1
    "$server" validate --repo repo quiz-fix@1.0.1 --alpha >>"$log" 2>&1
) || die "publishing the bundle failed (see $log)"
chmod -R a+rX "$bw/repo"
archive=$b.tar.gz
sample=public/mod/quiz/lib.php

# config DIR: a level-1 agent config DIR/agent.toml (improvement 3, stability 1: apply as soon
# as possible), with fresh state, Moodle's purge_caches and a reload of PHP (serve.sh restarts
# php -S) as a host would have them.
config() {
    local dir=$1
    mkdir -p "$dir/state"
    cat >"$dir/agent.toml" <<EOF
platform = "bench-real-moodle"
repository = "file://$bw/repo"
trusted_root = "$bw/repo/metadata/1.root.json"
state_dir = "$dir/state"
timezone = "Europe/Paris"

[moodle]
dirroot = "$code"
dataroot = "$work/moodledata"
wwwroot = "http://$addr"

[improvement]
level = 3

[stability]
level = 1

[checks]
smoke = [
  { path = "/", expect_status = 200, expect_body = "page-site-index" },
  { path = "/login/index.php", expect_status = 200, expect_body = "logintoken" },
]

[hooks]
purge_caches = ["php", "{dirroot}/admin/cli/purge_caches.php"]
reload = ["$work/hooks/reload.sh", "$work/web"]
EOF
    chown -R www-data:www-data "$dir"
}

# receipt_ms STATE_DIR KIND STEP...: the durations (ms) of these steps in the one receipt of
# KIND (applied, or rollback: the hand rollback), comma-separated.
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

# baseline_apply COPY: a hard-link copy of the code root, then the bundle's files into it.
baseline_apply() {
    cp -al "$code" "$1"
    tar xzf "$archive" --strip-components=1 -C "$1" files
}

# tidy: between rounds (not measured), the trees the agent and the baselines left beside the
# code root go, then everything is flushed, so that no round pays for the one before.
tidy() {
    rm -rf "$work"/.palier-* "$bw"/round-*/copy*
    sync
}

# --- the rounds ------------------------------------------------------------------------------------
# Each round: ours then the baseline, for the apply, then for the hand rollback.
pristine=$(sha256sum "$code/$sample" | cut -d' ' -f1)
apply_wall=() apply_stage=() apply_swap=() apply_checks=() base_apply=()
rollback_wall=() rollback_step=() rollback_live=() base_copy=()
for ((i = 1; i <= runs; i++)); do
    r=$bw/round-$i
    config "$r"
    tidy

    say "round $i/$runs: palier-agent run --once (2 files)"
    apply_wall+=("$(wall "$r/run.out" as_www "$agent" run --once --config "$r/agent.toml")")
    grep -q '^applied quiz-fix@1.0.1' "$r/run.out" || die "round $i: the fix was not applied: $(cat "$r/run.out")"
    cmp -s "$b/files/$sample" "$code/$sample" || die "round $i: $sample is not the bundle's after the apply"
    [[ $(curl -fsS "http://$addr/mod/quiz/palier_probe.php") == palier-quiz-fix-1.0.1 ]] || die "round $i: the fix is not served"
    IFS=, read -r ms_stage ms_swap ms_checks < <(receipt_ms "$r/state" applied stage swap checks)
    apply_stage+=("$ms_stage") apply_swap+=("$ms_swap") apply_checks+=("$ms_checks")

    say "round $i/$runs: cp -al + tar xzf"
    sync
    base_apply+=("$(wall /dev/null baseline_apply "$r/copy-apply")")
    cmp -s "$b/files/$sample" "$r/copy-apply/$sample" || die "round $i: tar did not write $sample"

    say "round $i/$runs: palier-agent rollback"
    sync
    t0=$(date +%s.%N)
    rollback_wall+=("$(wall "$r/rollback.out" as_www "$agent" rollback --config "$r/agent.toml")")
    grep -q '^rolled back quiz-fix@1.0.1' "$r/rollback.out" || die "round $i: $(cat "$r/rollback.out")"
    [[ $(sha256sum "$code/$sample" | cut -d' ' -f1) == "$pristine" ]] || die "round $i: $sample is not the old one after the rollback"
    [[ $(curl -s "http://$addr/mod/quiz/palier_probe.php") != *palier-quiz-fix* ]] || die "round $i: the fix is still served"
    rollback_step+=("$(receipt_ms "$r/state" rollback rollback)")
    rollback_live+=("$(live_after "$r/state" "$t0")")

    say "round $i/$runs: cp -al"
    sync
    base_copy+=("$(wall /dev/null cp -al "$code" "$r/copy-rollback")")
done
tidy
[[ $(curl -fsS "http://$addr/login/index.php") == *logintoken* ]] || die "the site's login page does not answer after the rounds"

# --- report ------------------------------------------------------------------------------------------
mkdir -p "$bench/out"
BENCH_RUNS=$runs BENCH_RELEASE=$release BENCH_FILES=$tree_files BENCH_DIRS=$tree_dirs BENCH_BYTES=$tree_bytes \
BENCH_ARCHIVE=$(stat -c %s "$archive") \
BENCH_APPLY_WALL=$(join "${apply_wall[@]}") BENCH_APPLY_STAGE=$(join "${apply_stage[@]}") \
BENCH_APPLY_SWAP=$(join "${apply_swap[@]}") BENCH_APPLY_CHECKS=$(join "${apply_checks[@]}") \
BENCH_BASE_APPLY=$(join "${base_apply[@]}") BENCH_ROLLBACK_WALL=$(join "${rollback_wall[@]}") \
BENCH_ROLLBACK_STEP=$(join "${rollback_step[@]}") BENCH_ROLLBACK_LIVE=$(join "${rollback_live[@]}") \
BENCH_BASE_COPY=$(join "${base_copy[@]}") \
BENCH_PROFILE=$profile BENCH_COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown) \
python3 - "$bench/out/moodle.json" <<'EOF'
import json, os, platform, statistics, sys, time

env = os.environ
def samples(name, scale=1.0):
    return [round(float(x) * scale, 3) for x in env[name].split(",")]

ms = 1 / 1000
median = statistics.median_low
stage, swap = samples("BENCH_APPLY_STAGE", ms), samples("BENCH_APPLY_SWAP", ms)
ours = [round(a + b, 3) for a, b in zip(stage, swap)]
apply_wall, base_apply = samples("BENCH_APPLY_WALL"), samples("BENCH_BASE_APPLY")
rollback_wall, rollback_live = samples("BENCH_ROLLBACK_WALL"), samples("BENCH_ROLLBACK_LIVE")
base_copy = samples("BENCH_BASE_COPY")
rows = [
    dict(name="apply, 2 files: stage+swap vs cp -al + tar xzf", unit="s", ours=median(ours), baseline=median(base_apply),
         goal=1.5, samples_ours=ours, samples_baseline=base_apply, samples_stage=stage, samples_swap=swap),
    dict(name="info: whole run --once (checks, purge_caches) vs the same", sub=True, unit="s", ours=median(apply_wall),
         baseline=median(base_apply), goal=None, samples_ours=apply_wall, samples_checks=samples("BENCH_APPLY_CHECKS", ms)),
    dict(name="hand rollback: old tree live again vs cp -al", unit="s", ours=median(rollback_live), baseline=median(base_copy),
         goal=1.0, strict=True, samples_ours=rollback_live, samples_baseline=base_copy,
         samples_rollback_step=samples("BENCH_ROLLBACK_STEP", ms)),
    dict(name="info: whole palier-agent rollback vs cp -al", sub=True, unit="s", ours=median(rollback_wall),
         baseline=median(base_copy), goal=None, samples_ours=rollback_wall, samples_baseline=base_copy),
]
for r in rows:
    r["ratio"] = None if r["baseline"] is None or r["ours"] is None else round(r["ours"] / r["baseline"], 4)
    r["pass"] = None if r["goal"] is None else (r["ratio"] < r["goal"] if r.get("strict") else r["ratio"] <= r["goal"])

runs, files, dirs, size = int(env["BENCH_RUNS"]), int(env["BENCH_FILES"]), int(env["BENCH_DIRS"]), int(env["BENCH_BYTES"])
print()
print(f"{env['BENCH_PROFILE']} binaries; real Moodle {env['BENCH_RELEASE']}: code root of {files:,} files, {dirs:,} folders, {size / 1e6:.0f} MB; median of {runs} runs")
fmt = "{:<58} {:>9} {:>9} {:>7}  {:<6} {}"
print(fmt.format("measurement", "ours", "baseline", "ratio", "goal", "result"))
for r in rows:
    print(fmt.format(("  " if r.pop("sub", False) else "") + r["name"], f"{r['ours']:.2f} s", f"{r['baseline']:.2f} s",
                     f"{r['ratio']:.3f}", "-" if r["goal"] is None else ("< " if r.get("strict") else "<= ") + f"{r['goal']:g}",
                     "info" if r["pass"] is None else "PASS" if r["pass"] else "MISS"))
print()
print(f"apply: stage {median(stage):.2f} s (hard-link clone of the code root, the 2 files written and verified, syncfs), "
      f"swap {median(swap) * 1000:.0f} ms; the whole run --once also runs the checks "
      f"({median(samples('BENCH_APPLY_CHECKS', ms)):.2f} s) and purge_caches")
print(f"hand rollback: the exchange (receipt step) {median(samples('BENCH_ROLLBACK_STEP', ms)) * 1000:.0f} ms; "
      f"the old tree is live {median(rollback_live):.2f} s after the command starts, which ends after {median(rollback_wall):.2f} s")

result = dict(
    date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    commit=env["BENCH_COMMIT"],
    profile=env["BENCH_PROFILE"],
    host=dict(cpus=os.cpu_count(), kernel=platform.release()),
    runs=runs,
    moodle=dict(release=env["BENCH_RELEASE"], files=files, dirs=dirs, bytes=size),
    bundle=dict(files=2, archive_bytes=int(env["BENCH_ARCHIVE"])),
    notes=[
        "the agent runs as www-data with dirroot = the code root (config.php, admin/, public/ ...)",
        "apply ours = the receipt's stage + swap; baseline = cp -al of the code root then tar xzf of the bundle's files",
        "rollback ours = from the command's start to the end of the receipt's rollback step (the old tree live); baseline = cp -al of the code root",
        "between rounds the trees left beside the code root are removed and the filesystem synced (not measured)",
    ],
    results=rows,
)
with open(sys.argv[1], "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print(f"\nJSON: {sys.argv[1]}")
EOF
