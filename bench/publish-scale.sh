#!/usr/bin/env bash
# Repository changes at scale, release binaries: at 1, 100, 1,000 and 10,000 bundles (20 files
# each), the wall time, CPU time and peak memory of
#   - the first publish after the ownership index is deleted (it is built again from the
#     archives' manifests: what an upgrade from a release without the index, or a lost
#     index, costs once);
#   - a publish with the index current (the median of RUNS publishes of real 20-file
#     archives; goal at 10,000 bundles: <= 100 ms and <= 64 MiB);
#   - validate, halt, resume, link and yank of the last published bundle.
#
#   bench/publish-scale.sh            # SIZES="1 100 1000 10000" FILES=20 RUNS=3
#
# The N-1 bundles before the measured ones, and their archives in targets/, are generated in
# one signing pass by server/examples/scale_gen.rs.
# Results: bench/out/publish-scale/TABLE.md and results.jsonl.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
SIZES=${SIZES:-"1 100 1000 10000"}
FILES=${FILES:-20}
RUNS=${RUNS:-3}
out="$root/bench/out/publish-scale"
rm -rf "$out"; mkdir -p "$out"

cargo build --quiet --release --locked -p palier-server --bin palier-server --example scale_gen
server="$root/target/release/palier-server"
gen="$root/target/release/examples/scale_gen"

# Real archives of FILES files each, one per measured publish.
bundle() { # name
    local src="$out/src/$1"
    mkdir -p "$src/files/mod/quiz/classes/$1"
    for i in $(seq -w 1 "$FILES"); do
        head -c 2000 /dev/urandom | base64 > "$src/files/mod/quiz/classes/$1/file-$i.php"
    done
    printf 'id = "%s"\nversion = "1.0.0"\ncomponent = "mod_quiz"\nclass = "technical"\ndata_impact = "none"\nsummary = "measured"\nfixes = []\norigin = "report"\n' "$1" > "$src/bundle.toml"
    "$server" bundle build --manifest "$src/bundle.toml" --source "$src/files" --out "$out/$1.tar.gz" >/dev/null
}
bundle first
for r in $(seq 1 "$RUNS"); do bundle "measured-$r"; done

# One command: prints "wall_ms cpu_ms peak_kib".
timed() {
    /usr/bin/time -f '%e %U %S %M' -o "$out/time" "$@" >/dev/null
    awk '{ printf "%d %d %d\n", $1 * 1000, ($2 + $3) * 1000, $4 }' "$out/time"
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

results="$out/results.jsonl"
table="$out/TABLE.md"
{
    echo "| bundles | command | wall ms | CPU ms | peak MiB |"
    echo "|---:|---|---:|---:|---:|"
} > "$table"
row() { # n command wall cpu kib
    awk -v n="$1" -v c="$2" -v w="$3" -v u="$4" -v k="$5" 'BEGIN { printf "| %s | %s | %s | %s | %.1f |\n", n, c, w, u, k / 1024 }' >> "$table"
    printf '{"bundles": %s, "command": "%s", "wall_ms": %s, "cpu_ms": %s, "peak_kib": %s}\n' "$1" "$2" "$3" "$4" "$5" >> "$results"
}

for n in $SIZES; do
    dir="$out/n$n"
    "$server" init --repo "$dir/repo" --keys "$dir/keys" >/dev/null
    if [ "$n" -gt 1 ]; then
        "$gen" "$dir/repo" "$dir/keys" "$((n - 1))" "$FILES" >/dev/null
    fi
    rm -f "$dir/keys/ownership-index.sqlite"
    read -r w c k < <(timed "$server" publish --repo "$dir/repo" --keys "$dir/keys" "$out/first.tar.gz")
    row "$n" "publish, index built again" "$w" "$c" "$k"
    : > "$out/runs"
    for r in $(seq 1 "$RUNS"); do
        timed "$server" publish --repo "$dir/repo" --keys "$dir/keys" "$out/measured-$r.tar.gz" >> "$out/runs"
    done
    row "$n" "publish (median of $RUNS)" "$(cut -d' ' -f1 "$out/runs" | median)" "$(cut -d' ' -f2 "$out/runs" | median)" "$(cut -d' ' -f3 "$out/runs" | median)"
    b="measured-$RUNS@1.0.0"
    for cmd in "validate --alpha" "halt --reason bench" "resume" "link --platform univ-a" "yank --reason bench"; do
        verb=${cmd%% *}
        rest=""
        if [ "$verb" != "$cmd" ]; then rest=${cmd#* }; fi
        # shellcheck disable=SC2086 # $rest is the command's options, split on purpose
        read -r w c k < <(timed "$server" "$verb" --repo "$dir/repo" --keys "$dir/keys" "$b" $rest)
        row "$n" "$verb" "$w" "$c" "$k"
    done
    rm -rf "$dir"
done
cat "$table"
