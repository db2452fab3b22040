#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 60, as CI does), starting from the committed
# corpus. New interesting inputs go to a scratch folder, not into the repository; a crash is
# saved under fuzz/artifacts/<target>/ and fails the run.
#   fuzz/run.sh [SECONDS] [TARGET...]
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). The machine's toolchain is stable:
# RUSTC_BOOTSTRAP lets it take the -Z flags that coverage instrumentation needs.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(manifest archive agent_config)
export RUSTC_BOOTSTRAP=1
cargo fuzz build --release
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    echo "fuzz: $target for ${seconds}s"
    # The archive reader inflates on a scoped thread: LeakSanitizer sees that thread's handle
    # and TLS, still being torn down after the join, as leaked. Leaks stay checked elsewhere.
    leaks=1
    [ "$target" = archive ] && leaks=0
    status=0
    cargo fuzz run --release "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 -detect_leaks="$leaks" \
        >"$scratch/$target.log" 2>&1 || status=$?
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$scratch/$target.log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$scratch/$target.log"
        echo "fuzz: $target failed (exit $status); the input is under fuzz/artifacts/$target/"
        exit 1
    fi
done
