#!/usr/bin/env bash
# Dashboard benchmark: the overview, a bundle page and a platform page of a fleet of 300
# platforms and 50 bundles (server/examples/dashboard_gen.rs: plans, receipts with hook
# output, failures, holds, fix requests), each rendered from a fresh view of the store.
# Goal: under 100 ms server time per page.
#
#   bench/dashboard.sh          # PLATFORMS=300 BUNDLES=50 ROUNDS=10 PROFILE=release
#
# The server time is the one `palier-server serve` measures itself and sends in its
# `Server-Timing` header (`total`: from the handler's start to the answer, the store read
# and the render included; `render`: the page's rendering alone). Each round first posts a
# status as one of the platforms (through the API, with its token), waits 1.1 s (the
# dashboard re-reads the store at most once a second), then asks for the page: every
# measured answer is a full rebuild of the fleet view and a render, never a cached page.
# Then the same page again at once (served from memory), for information. Built with the
# release profile, as `serve` runs in production (PROFILE=dev for the debug build the tests
# use). Prints a table (median and slowest of the
# rounds beside the goal) and writes bench/out/dashboard.json.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
platforms=${PLATFORMS:-300}
bundles=${BUNDLES:-50}
rounds=${ROUNDS:-10}
goal_ms=100
say() { echo "== $*" >&2; }

for tool in curl python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is needed" >&2; exit 1; }
done

profile=${PROFILE:-release}
case $profile in
    release) dir=release ;;
    dev) dir=debug ;;
    *) echo "bench: PROFILE=$profile: expected release or dev" >&2; exit 2 ;;
esac
say "building palier-server and dashboard_gen ($profile profile)"
cargo build --quiet --profile "$profile" -p palier-server
cargo build --quiet --profile "$profile" -p palier-server --example dashboard_gen
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
server=$target/$dir/palier-server
gen=$target/$dir/examples/dashboard_gen

work=$(mktemp -d /tmp/palier-bench-dashboard.XXXXXX)
pid=
cleanup() {
    [[ -n $pid ]] && { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    if [[ ${KEEP:-0} == 1 ]]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

say "seeding $platforms platforms and $bundles bundles"
"$gen" "$work/fleet" "$platforms" "$bundles" >&2
token=$(openssl rand -hex 32 2>/dev/null || python3 -c 'import secrets; print(secrets.token_hex(32))')
(umask 077 && echo "$token" >"$work/operator.token")

"$server" serve --repo "$work/fleet/repo" --db "$work/fleet/palier.db" --listen 127.0.0.1:0 \
    --admin-token-file "$work/operator.token" --statuses-per-minute 100000 >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
addr=
for _ in $(seq 300); do
    addr=$(sed -n 's|^listening on http://||p' "$work/serve.out")
    [[ -n $addr ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
    sleep 0.1
done
[[ -n $addr ]] || { echo "bench: palier-server did not start" >&2; exit 1; }
auth=(-H "Authorization: Bearer $token")

# The pages: the overview, the bundle rolling out with the most platforms, the first platform
# needing attention.
curl -fsS "${auth[@]}" "http://$addr/api/v1/overview" >"$work/overview.json"
read -r bundle_path platform_path < <(python3 - "$work/overview.json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))
b = max(o["rolling_out"], key=lambda r: r["admitted"])["bundle"] if o["rolling_out"] else o["bundles"]["rows"][0]["bundle"]
i, v = b.split("@")
print(f"/bundles/{i}/{v}", "/platforms/" + o["attention"]["rows"][0]["name"])
PY
)

# One status as an agent would send it: the store changes, the next page rebuilds its view.
mapfile -t agents < <(cut -f1,2 "$work/fleet/tokens.tsv")
post_status() { # ROUND
    local name tok
    IFS=$'\t' read -r name tok <<<"${agents[$(($1 % ${#agents[@]}))]}"
    curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $tok" -H "X-Palier-Platform: $name" -H 'Content-Type: application/json' \
        --data '{"improvement_level":3,"stability_level":1,"installed":[],"next_intervention":null,"last_outcome":"applied"}' \
        "http://$addr/api/v1/status"
}
# The Server-Timing of one GET: "total render store" in ms (render "-" when served from
# memory, store "-" when the view of the store was not re-read for it).
timing() { # PATH
    curl -fsS -o /dev/null -D - "${auth[@]}" "http://$addr$1" | tr -d '\r' | python3 -c '
import re, sys
for line in sys.stdin:
    if line.lower().startswith("server-timing:"):
        t = re.search(r"total;dur=([0-9.]+)", line); r = re.search(r"render;dur=([0-9.]+)", line)
        s = re.search(r"store;dur=([0-9.]+)", line)
        print(t.group(1), r.group(1) if r else "-", s.group(1) if s else "-"); break
else:
    sys.exit("no Server-Timing header")'
}

say "each page $rounds times from a fresh view of the store, then once from memory"
results=()
round=0
for page in overview:/ "bundle:$bundle_path" "platform:$platform_path"; do
    name=${page%%:*} path=${page#*:}
    totals=() renders=() stores=() cached=()
    for _ in $(seq "$rounds"); do
        round=$((round + 1))
        post_status "$round"
        sleep 1.1
        read -r total render store < <(timing "$path")
        [[ $render != - && $store != - ]] || { echo "bench: $path was not rebuilt after a store change ($total $render $store)" >&2; exit 1; }
        totals+=("$total") renders+=("$render") stores+=("$store")
        read -r again _ < <(timing "$path")
        cached+=("$again")
    done
    results+=("$name|$path|${totals[*]}|${renders[*]}|${stores[*]}|${cached[*]}")
done
bytes_overview=$(curl -fsS "${auth[@]}" "http://$addr/" | wc -c)

mkdir -p "$root/bench/out"
python3 - "$goal_ms" "$platforms" "$bundles" "$rounds" "$bytes_overview" "$profile" "${results[@]}" >"$root/bench/out/dashboard.json" <<'PY'
import json, statistics, sys
goal, platforms, bundles, rounds, size, profile = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
pages = []
for arg in sys.argv[7:]:
    name, path, totals, renders, stores, cached = arg.split("|")
    f = lambda s: [float(x) for x in s.split()]
    t, r, st, c = f(totals), f(renders), f(stores), f(cached)
    pages.append({"page": name, "path": path, "total_ms": t, "render_ms": r, "store_ms": st, "cached_ms": c,
                  "median_ms": statistics.median(t), "max_ms": max(t), "median_render_ms": statistics.median(r),
                  "median_store_ms": statistics.median(st),
                  "median_cached_ms": statistics.median(c), "goal_ms": goal, "met": statistics.median(t) < goal})
json.dump({"platforms": platforms, "bundles": bundles, "rounds": rounds, "profile": profile, "overview_bytes": size, "pages": pages}, sys.stdout, indent=2)
PY
python3 - "$root/bench/out/dashboard.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"Dashboard at {d['platforms']} platforms and {d['bundles']} bundles, {d['rounds']} rounds a page, {d['profile']} build; server time from Server-Timing (ms)")
print(f"{'page':<9} {'median':>8} {'slowest':>8} {'store':>8} {'render':>8} {'cached':>8}  goal")
for p in d["pages"]:
    verdict = "PASS" if p["met"] else "MISS"
    print(f"{p['page']:<9} {p['median_ms']:>8.1f} {p['max_ms']:>8.1f} {p['median_store_ms']:>8.1f} {p['median_render_ms']:>8.1f} {p['median_cached_ms']:>8.2f}  median < {p['goal_ms']:.0f} {verdict}")
print(f"overview page: {d['overview_bytes']} bytes")
PY
