#!/usr/bin/env bash
# Every benchmark in one command: bundle, plan, apply, serve and report (see bench/README.md),
# one after the other, and moodle (the real-site benchmark) when a Moodle source is there
# (PALIER_MOODLE_SRC, or ../shared/moodle/moodle-5.1.tar.gz beside the repository) and it
# runs as root, except in a quick run; then one table of all their measurements against their goals.
#
#   bench/run.sh [--quick]
#
# Each script runs as it is, with this environment (RUNS, FILES, BYTES, SMALL_FILES,
# SMALL_BYTES, BIG_FILES, BIG_BYTES, DURATION, ROUNDS, CONNECTIONS, THREADS, WORKERS,
# AGENTS, CONCURRENCY, DEADLINE, KEEP... are passed on; FILES, BYTES and RUNS reach both
# bundle.sh and apply.sh). Its output goes to the terminal and to bench/out/logs/NAME.log.
# A failed script does not stop the others.
#
# --quick: a smoke run of a few minutes: the settings below, each only where the
# environment does not set it already. The table then says it was a quick run.
#
# Then bench/summary.py prints the table (benchmark | measurement | ours | baseline | ratio
# | goal | result) and "N of M goals met", and writes bench/out/TABLE.md and
# bench/out/all.json.
#
# Exit status: 0 when every script succeeded (a MISS is not a failure), 1 when a script
# failed or its result could not be read, 2 on bad usage.
set -uo pipefail

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$bench/out
quick=0
for arg in "$@"; do
    case $arg in
        --quick) quick=1 ;;
        -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
    esac
done

if ((quick)); then
    : "${RUNS:=1}"                                   # bundle.sh, apply.sh
    : "${FILES:=3000}" "${BYTES:=30000000}"          # the trees of bundle.sh and apply.sh
    : "${BIG_FILES:=300}" "${BIG_BYTES:=30000000}"   # apply.sh's memory figure
    : "${DURATION:=2}" "${ROUNDS:=1}"                # serve.sh: seconds per measurement, rounds
    : "${AGENTS:=1000}" "${DEADLINE:=60}"            # report.sh
    export RUNS FILES BYTES BIG_FILES BIG_BYTES DURATION ROUNDS AGENTS DEADLINE
fi

trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

mkdir -p "$out/logs"
status=$(mktemp "$out/.run-status.XXXXXX")
trap 'rm -f "$status"' EXIT
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date +%s)

failed=0
names="bundle plan apply serve report"
moodle_src=${PALIER_MOODLE_SRC:-$(dirname "$bench")/../shared/moodle/moodle-5.1.tar.gz}
if ((quick)); then
    echo "bench: bench/moodle.sh skipped in a quick run (installing Moodle alone takes 5 minutes)" >&2
elif [[ -e $moodle_src && $(id -u) == 0 ]]; then
    names="$names moodle"
else
    echo "bench: bench/moodle.sh skipped: it needs a Moodle source ($moodle_src is not there; set PALIER_MOODLE_SRC) and root" >&2
fi

for name in $names; do
    log=$out/logs/$name.log
    echo
    echo "=================== bench/$name.sh ($(date -u +%H:%M:%S) UTC) ==================="
    t0=$(date +%s.%N)
    "$bench/$name.sh" </dev/null 2>&1 | tee "$log"
    code=${PIPESTATUS[0]}
    t1=$(date +%s.%N)
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$code" "$t0" "$t1" "$log" >>"$status"
    if ((code != 0)); then
        failed=1
        echo "bench: bench/$name.sh failed (exit $code); its log: $log" >&2
    fi
done

echo
echo "=================== summary ($(( $(date +%s) - t_start )) s) ==================="
python3 "$bench/summary.py" --out "$out" --status "$status" --started "$started" --load "$load" \
    $( ((quick)) && echo --quick ) || failed=1
exit "$failed"
