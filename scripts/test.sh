#!/usr/bin/env bash
# Runs the whole test suite (`cargo test --workspace`, extra arguments passed on) and ends with
# one line that totals every test binary's result: "N passed, N failed, N skipped".
set -uo pipefail
# No -e: the totals line is printed even when tests fail; a failed cd must still stop it.
cd "$(dirname "$0")/.." || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed/)  passed  += $(i - 1)
            if ($(i) ~ /^failed/)  failed  += $(i - 1)
            if ($(i) ~ /^ignored/) ignored += $(i - 1)
        }
     }
     END { printf "\ntests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
exit "$status"
