#!/usr/bin/env bash
# What requests waiting for a work cost the API: PP_BENCH_WAITERS (default 10000) connections
# each ask `GET /work/{id}` with `Prefer: wait=60` on one pending work and wait; once all of
# them wait (the API's own gauge says so), the API's resident memory is read, the work is
# finished and announced as the sweeper does, and the time until every request has its answer,
# done, is taken. The release API at its defaults, over a fresh database.
#
# Needs python3 and a limit on open files above PP_BENCH_WAITERS (raised here when the hard
# limit allows). Environment: DATABASE_URL (the server; the database used is pp_bench_waiters,
# recreated and dropped), PP_BENCH_WAITERS, PP_BENCH_PORT (default 3397).
set -euo pipefail
cd "$(dirname "$0")/.."

count=${PP_BENCH_WAITERS:-10000}
port=${PP_BENCH_PORT:-3397}
server_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/personalproject}
bench_url="${server_url%/*}/pp_bench_waiters"

say() { printf 'bench-waiters: %s\n' "$*"; }
case "$count" in ''|*[!0-9]*|0) echo "bench-waiters: error: PP_BENCH_WAITERS must be a positive whole number" >&2; exit 2 ;; esac
[ "$count" -le 50000 ] || { echo "bench-waiters: error: PP_BENCH_WAITERS is at most 50000" >&2; exit 2; }
command -v python3 >/dev/null 2>&1 || { echo "bench-waiters: error: python3 is missing" >&2; exit 1; }
needed=$((count * 2 + 1000))
ulimit -n "$needed" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge "$((count + 500))" ] || { echo "bench-waiters: error: open files are limited to $(ulimit -n): raise the hard limit (ulimit -Hn) above $((count + 500))" >&2; exit 1; }

say "building the release API and pp_storage"
cargo build --quiet --release -p pp_backend_api -p pp_storage

api_pid=
cleanup() {
    if [ -n "$api_pid" ]; then kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; fi
    psql "${server_url%/*}/postgres" -qAt -c "drop database if exists pp_bench_waiters with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

PGOPTIONS="--client-min-messages=warning" psql "${server_url%/*}/postgres" -qAt \
    -c "drop database if exists pp_bench_waiters with (force)" -c "create database pp_bench_waiters" >/dev/null
DATABASE_URL=$bench_url target/release/pp_storage migrate >/dev/null

RUST_LOG=warn DATABASE_URL=$bench_url PP_HTTP_ADDR=127.0.0.1:$port PP_OUTBOX_RELAY=off \
    PP_WAITERS_MAX=$((count + 100)) target/release/pp_backend_api &
api_pid=$!
scripts/wait-for-api.sh "$port" bench-waiters
rss() { awk '/^VmRSS/ {print $2}' "/proc/$api_pid/status"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$api_pid/status"; }
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v name="$1" '$1 == name {print $2}'; }

id=$(curl -s -X POST "http://127.0.0.1:$port/work" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
say "idle: RSS $(( $(rss) / 1024 )) MiB; $count requests waiting for work $id"
fifo=$(mktemp -u)
mkfifo "$fifo"
python3 scripts/bench/waiters.py "$port" "$id" "$count" 60 > "$fifo" &
client_pid=$!
exec 3< "$fifo"
rm -f "$fifo"
read -r line <&3
for _ in $(seq 1 600); do
    [ "$(metric pp_api_waiting_requests)" = "$count" ] && break
    sleep 0.1
done
say "waiting: $(metric pp_api_waiting_requests) requests; RSS $(( $(rss) / 1024 )) MiB"
started=$(date +%s%N)
psql "$bench_url" -qAt -c "update works set done = true, result = add_up_to::bigint * (add_up_to + 1) / 2, updated_on = now() where id = $id" \
    -c "select pg_notify('pp_works_done', '$id')" >/dev/null
read -r answered <&3
finished=$(date +%s%N)
wait "$client_pid"
say "$answered, all within $(( (finished - started) / 1000000 )) ms of the announcement"
say "peak RSS $(( $(hwm) / 1024 )) MiB; waiting now: $(metric pp_api_waiting_requests)"
