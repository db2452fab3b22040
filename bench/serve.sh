#!/usr/bin/env bash
# Serving benchmark: `palier-server serve` against nginx serving the same repository
# directory, for GET /repo/metadata/timestamp.json with and without If-None-Match.
#
#   bench/serve.sh
#
# Both servers listen on loopback only, on free ports; load comes from wrk for a fixed
# duration per measurement. The four measurements (ours and nginx, with and without
# If-None-Match) are taken in turn, ROUNDS times; the table shows the median of each, and
# the ratio is the median of the rounds' ratios, so that other work on the machine weighs on
# both sides alike. Prints a table (ours, nginx, ratio;
# goal >= 0.7) and writes bench/out/serve.json.
#
# Environment: DURATION (seconds per measurement, default 10), ROUNDS (default 3),
# CONNECTIONS (default 32),
# THREADS (wrk threads, default 1), WORKERS (nginx worker processes, default: the number of
# CPUs, as many as palier-server's runtime threads), KEEP=1 keeps the work folder.
set -euo pipefail

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench")
duration=${DURATION:-10}
rounds=${ROUNDS:-3}
connections=${CONNECTIONS:-32}
threads=${THREADS:-1}
cpus=$(nproc)
workers=${WORKERS:-$cpus}
goal=0.7

say() { echo "== $*" >&2; }

# --- tools ----------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

say "building palier-server (release)"
(cd "$root" && cargo build --release -p palier-server)
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
server=$target/release/palier-server

# --- the repository -------------------------------------------------------------
work=$(mktemp -d /tmp/palier-bench-serve.XXXXXX)
# nginx's workers run as an unprivileged user: they must be able to read the repository.
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ ${KEEP:-0} == 1 ]]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

repo=$work/repo
"$server" init --repo "$repo" >/dev/null
file=$repo/metadata/timestamp.json
path=/repo/metadata/timestamp.json

# --- palier-server ----------------------------------------------------------------
"$server" serve --repo "$repo" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
ours=
for _ in $(seq 300); do
    ours=$(sed -n 's|^listening on http://||p' "$work/serve.out")
    [[ -n $ours ]] && break
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
    sleep 0.1
done
[[ -n $ours ]] || { echo "bench: palier-server did not start" >&2; exit 1; }

# --- nginx, in the foreground, with a configuration of its own -------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
theirs=127.0.0.1:$port
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes $workers;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    types { application/json json; application/gzip gz; }
    default_type application/octet-stream;
    server {
        listen $theirs;
        autoindex off;
        location /repo/metadata/ { alias $repo/metadata/; add_header Cache-Control no-cache; }
        location /repo/targets/ { alias $repo/targets/; }
    }
}
EOF
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx/stderr" &
pids+=($!)
for _ in $(seq 300); do
    curl -fsS -o /dev/null "http://$theirs$path" 2>/dev/null && break
    kill -0 "${pids[1]}" 2>/dev/null || { cat "$work/nginx/stderr" "$work/nginx/error.log" >&2; exit 1; }
    sleep 0.1
done

# Both must serve the same bytes, and answer 304 to their own tag.
etag_of() { curl -fsSI "http://$1$path" | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: //p'; }
for addr in "$ours" "$theirs"; do
    cmp -s <(curl -fsS "http://$addr$path") "$file" || { echo "bench: $addr serves other bytes" >&2; exit 1; }
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $(etag_of "$addr")" "http://$addr$path")
    [[ $code == 304 ]] || { echo "bench: $addr answered $code to its own ETag" >&2; exit 1; }
done
ours_tag=$(etag_of "$ours")
theirs_tag=$(etag_of "$theirs")

# --- measurements -------------------------------------------------------------------
# wrk prints "Requests/sec: N"; any socket error or non-2xx/3xx answer spoils the run.
measure() { # SECONDS ADDR [HEADER]
    local out seconds=$1 addr=$2
    shift 2
    out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" ${1:+-H "$1"} "http://$addr$path")
    if grep -qE 'Socket errors|Non-2xx' <<<"$out"; then
        echo "bench: errors while loading $addr:" >&2
        echo "$out" >&2
        exit 1
    fi
    awk '/^Requests\/sec:/ { print $2 }' <<<"$out"
}

say "warming up"
measure 2 "$ours" >/dev/null
measure 2 "$theirs" >/dev/null

say "GET $path: ${duration}s per measurement, $rounds rounds, $connections connections, $threads wrk thread(s), $cpus CPUs"
runs_plain_ours=() runs_plain_theirs=() runs_cond_ours=() runs_cond_theirs=()
for round in $(seq "$rounds"); do
    runs_plain_ours+=("$(measure "$duration" "$ours")")
    runs_plain_theirs+=("$(measure "$duration" "$theirs")")
    runs_cond_ours+=("$(measure "$duration" "$ours" "If-None-Match: $ours_tag")")
    runs_cond_theirs+=("$(measure "$duration" "$theirs" "If-None-Match: $theirs_tag")")
    say "round $round: ${runs_plain_ours[-1]} / ${runs_plain_theirs[-1]} plain, ${runs_cond_ours[-1]} / ${runs_cond_theirs[-1]} conditional"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
json_list() { local IFS=,; echo "[$*]"; }
plain_ours=$(median "${runs_plain_ours[@]}")
plain_theirs=$(median "${runs_plain_theirs[@]}")
cond_ours=$(median "${runs_cond_ours[@]}")
cond_theirs=$(median "${runs_cond_theirs[@]}")

# The ratio is the median of each round's ratio: ours and nginx measured back to back.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
paired() { # NAME_OURS NAME_THEIRS: median of the per-round ratios
    local -n a=$1 b=$2
    local r=() i
    for i in "${!a[@]}"; do r+=("$(ratio "${a[$i]}" "${b[$i]}")"); done
    printf '%.2f' "$(median "${r[@]}")"
}
plain_ratio=$(paired runs_plain_ours runs_plain_theirs)
cond_ratio=$(paired runs_cond_ours runs_cond_theirs)

printf '\n%-34s %14s %14s %7s\n' "GET $path (median)" "palier req/s" "nginx req/s" "ratio"
printf '%-34s %14.0f %14.0f %7s\n' "200 (no If-None-Match)" "$plain_ours" "$plain_theirs" "$plain_ratio"
printf '%-34s %14.0f %14.0f %7s\n' "304 (If-None-Match)" "$cond_ours" "$cond_theirs" "$cond_ratio"
printf 'goal: ratio >= %s\n' "$goal"

mkdir -p "$bench/out"
cat >"$bench/out/serve.json" <<EOF
{
  "path": "$path",
  "file_bytes": $(stat -c %s "$file"),
  "duration_s": $duration,
  "rounds": $rounds,
  "statistic": "median of the rounds; ratio: median of the per-round ratios",
  "connections": $connections,
  "wrk_threads": $threads,
  "cpus": $cpus,
  "nginx_workers": $workers,
  "nginx_version": "$("$nginx_bin" -v 2>&1 | sed 's|.*/||')",
  "goal_ratio": $goal,
  "load_average_at_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
  "plain": { "palier_rps": $plain_ours, "nginx_rps": $plain_theirs, "ratio": $plain_ratio,
             "palier_runs": $(json_list "${runs_plain_ours[@]}"), "nginx_runs": $(json_list "${runs_plain_theirs[@]}") },
  "if_none_match": { "palier_rps": $cond_ours, "nginx_rps": $cond_theirs, "ratio": $cond_ratio,
                     "palier_runs": $(json_list "${runs_cond_ours[@]}"), "nginx_runs": $(json_list "${runs_cond_theirs[@]}") }
}
EOF
say "wrote $bench/out/serve.json"
awk -v a="$plain_ratio" -v b="$cond_ratio" -v g="$goal" 'BEGIN { exit !(a >= g && b >= g) }' || say "below the goal"
