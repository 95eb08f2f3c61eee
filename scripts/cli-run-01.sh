#!/usr/bin/env bash
# Shows cli_01 driving pp over the API and straight from the database (what `make cli-run-01`
# runs): a work created, read back both ways, searched, its events listed, demands enqueued both
# ways, the counts, and a miss. Needs a running API (`make api` in another shell).
#
# Environment: PP_API_URL and DATABASE_URL, as for cli_01.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p cli_01
cli=target/debug/cli_01

if ! "$cli" --timeout 2s stats >/dev/null 2>&1; then
    echo "cli-run-01: no API answers on ${PP_API_URL:-http://127.0.0.1:3000}: start it with 'make api'" >&2
    exit 1
fi

# show ARGS...: the command as typed, then its answer.
show() {
    printf '\n$ cli_01 %s\n' "$*"
    "$cli" "$@"
}

work=$("$cli" --output json create --add-up-to 4)
printf '$ cli_01 --output json create --add-up-to 4\n%s\n' "$work"
id=$(printf '%s' "$work" | sed -E 's/^\{"id":([0-9]+),.*/\1/')

show get "$id"
show --via db --output json get "$id"
show search api- --limit 3
show --via db search api- --limit 3
show events "$id"
show demand --add-up-to 2
show --via db demand --add-up-to 2
show stats
show --via db stats
show get 999999999 || echo "exit $?"
