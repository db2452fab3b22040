#!/usr/bin/env bash
# Report benchmark: AGENTS simulated agents (default 10,000), each sending one receipt to
# `POST /api/v1/receipts` of `palier-server serve --db` over loopback, at most CONCURRENCY at
# a time (default 64), one connection each, new requests stopped after DEADLINE seconds
# (default 120). The platforms are created in the store beforehand. Prints requests/s and
# p50/p99 latency, checks every receipt is stored, writes bench/out/report.json; exits 1 when
# a receipt is missing or an answer was not 201.
#
#   bench/report.sh
#
# Environment: AGENTS, CONCURRENCY, DEADLINE, KEEP=1 keeps the work folder.
set -euo pipefail

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench")
agents=${AGENTS:-10000}
concurrency=${CONCURRENCY:-64}
deadline=${DEADLINE:-120}

say() { echo "== $*" >&2; }

say "building palier-server and the load example (release)"
(cd "$root" && cargo build --release -p palier-server --bin palier-server --example report_load)
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
server=$target/release/palier-server
load=$target/release/examples/report_load

work=$(mktemp -d /tmp/palier-bench-report.XXXXXX)
pid=
cleanup() {
    if [[ -n $pid ]]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    if [[ ${KEEP:-0} == 1 ]]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

say "repository with the bundle the receipts name, and $agents platforms"
"$server" init --repo "$work/repo" >/dev/null
# The server stores a receipt only when every bundle it names is published in its repository.
mkdir -p "$work/source/files/mod/quiz"
printf '<?php\n// The fix that the simulated receipts name.\n' >"$work/source/files/mod/quiz/lib.php"
printf '%s\n' 'id = "mod_quiz-fix"' 'version = "1.0.1"' 'component = "mod_quiz"' 'class = "technical"' \
    'data_impact = "none"' 'summary = "Report benchmark bundle"' 'origin = "roadmap"' >"$work/source/bundle.toml"
"$server" bundle build --manifest "$work/source/bundle.toml" --source "$work/source/files" --out "$work/fix.tar.gz" >/dev/null
"$server" publish --repo "$work/repo" "$work/fix.tar.gz" >/dev/null
t0=$EPOCHREALTIME
"$load" setup --db "$work/palier.db" --platforms "$agents" --tokens "$work/tokens.txt"
setup_s=$(python3 -c "print(${EPOCHREALTIME} - ${t0})")

"$server" serve --repo "$work/repo" --db "$work/palier.db" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
for _ in $(seq 1 100); do
    grep -q '^listening on ' "$work/serve.out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
    sleep 0.1
done
addr=$(sed -n 's|^listening on http://||p' "$work/serve.out" | head -1)
[[ -n $addr ]] || { echo "bench: the server did not start" >&2; cat "$work/serve.err" >&2; exit 1; }

say "$agents agents, concurrency $concurrency, against http://$addr"
run=$("$load" run --addr "$addr" --tokens "$work/tokens.txt" --concurrency "$concurrency" --deadline-secs "$deadline")
stored=$("$load" count --db "$work/palier.db")

mkdir -p "$bench/out"
python3 - "$run" "$stored" "$agents" "$setup_s" "$(nproc)" >"$bench/out/report.json" <<'PY'
import json, sys
run, stored, agents, setup_s, cpus = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
ok = stored == agents and run["statuses"].get("201", 0) == agents
print(json.dumps({"agents": agents, "stored": stored, "all_stored": ok, "cpus": cpus,
                  "setup_platforms_s": round(setup_s, 2), **run}, indent=2))
PY
python3 - "$bench/out/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"agents {r['agents']}  stored {r['stored']}  statuses {r['statuses']}  errors {r['errors']}")
print(f"{r['requests_per_s']} requests/s over {r['elapsed_s']} s (concurrency {r['concurrency']}, {r['cpus']} CPUs)")
print(f"latency p50 {r['latency_ms']['p50']} ms  p99 {r['latency_ms']['p99']} ms  max {r['latency_ms']['max']} ms")
print("all stored" if r["all_stored"] else "NOT ALL STORED")
sys.exit(0 if r["all_stored"] else 1)
PY
