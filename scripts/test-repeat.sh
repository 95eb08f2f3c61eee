#!/usr/bin/env bash
# Runs the whole suite (scripts/test.sh) N times in a row and stops at the first failure, to
# catch a test that fails only now and then. Extra arguments go to every run (`cargo test`'s).
# Each run's output is kept in target/test-runs/run-<i>.log; the totals line of every run is
# printed at the end, and the log of a failed run is named.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

runs=${1:-5}
shift || true
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]] || [ "$runs" -gt 1000 ]; then
    echo "test-repeat: N must be a whole number from 1 to 1000, got '$runs'" >&2
    exit 2
fi

dir=target/test-runs
mkdir -p "$dir"
totals=()
for ((run = 1; run <= runs; run++)); do
    log="$dir/run-$run.log"
    echo "test-repeat: run $run of $runs (output in $log)"
    scripts/test.sh "$@" >"$log" 2>&1
    status=$?
    line=$(grep '^tests: ' "$log" | tail -n 1)
    totals+=("run $run: ${line:-no totals line}")
    echo "  ${line:-no totals line}"
    if [ "$status" -ne 0 ]; then
        echo "test-repeat: run $run of $runs failed; its output is in $log:"
        grep -E '^(test .* FAILED|---- .* stdout ----|failures:)' "$log" | head -n 20
        printf '%s\n' "${totals[@]}"
        exit "$status"
    fi
done
echo "test-repeat: $runs runs, all green:"
printf '%s\n' "${totals[@]}"
