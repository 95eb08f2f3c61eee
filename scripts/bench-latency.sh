#!/usr/bin/env bash
# Time from a request until its work is done, as a user would meet it: the release API (with its
# outbox relay) and one consumer (with its sweeper), every setting at its default, a fresh
# database and a queue of the run's own. Per path, PP_BENCH_LATENCY_COUNT requests (default 100)
# at PP_BENCH_LATENCY_RATE a second (default 10, light load), then p50, p90, p99 and the longest
# from the database's own clocks:
#
#   POST /work          the insert's transaction start -> the sweep's (the sweeper woken by
#                       PostgreSQL's announcement; the tick is 5 s)
#   POST /work/demand   the outbox row's insert -> the consumer's insert of the done work
#                       (outbox -> relay -> RabbitMQ -> consumer)
#
# Both are transaction start times, so they leave out the HTTP round trip (a millisecond on
# loopback) and the last transaction's own few milliseconds. Needs curl and rabbitmqctl (the
# queue is deleted with it); PostgreSQL and RabbitMQ as `make setup` leaves them.
#
# Environment: DATABASE_URL (the server; the database used is pp_bench_latency, recreated and
# dropped), AMQP_URL, PP_BENCH_LATENCY_COUNT, PP_BENCH_LATENCY_RATE, PP_BENCH_PORT (default 3395).
set -euo pipefail
cd "$(dirname "$0")/.."

count=${PP_BENCH_LATENCY_COUNT:-100}
rate=${PP_BENCH_LATENCY_RATE:-10}
port=${PP_BENCH_PORT:-3395}
server_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/personalproject}
bench_url="${server_url%/*}/pp_bench_latency"
queue="pp_bench_latency_$$"

say() { printf 'bench-latency: %s\n' "$*"; }

command -v curl >/dev/null 2>&1 || { echo "bench-latency: error: curl is missing" >&2; exit 1; }
command -v rabbitmqctl >/dev/null 2>&1 || { echo "bench-latency: error: rabbitmqctl is missing: the bench deletes its queue with it" >&2; exit 1; }
case "$count" in ''|*[!0-9]*|0) echo "bench-latency: error: PP_BENCH_LATENCY_COUNT must be a positive whole number" >&2; exit 2 ;; esac
case "$rate" in ''|*[!0-9]*|0) echo "bench-latency: error: PP_BENCH_LATENCY_RATE must be a positive whole number" >&2; exit 2 ;; esac
[ "$count" -le 100000 ] || { echo "bench-latency: error: PP_BENCH_LATENCY_COUNT is at most 100000" >&2; exit 2; }
[ "$rate" -le 1000 ] || { echo "bench-latency: error: PP_BENCH_LATENCY_RATE is at most 1000" >&2; exit 2; }

say "building the release API, consumer and pp_storage"
cargo build --quiet --release -p pp_backend_api -p task_consumer -p pp_storage

api_pid=
consumer_pid=
cleanup() {
    for pid in $api_pid $consumer_pid; do
        kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    done
    psql "${server_url%/*}/postgres" -qAt -c "drop database if exists pp_bench_latency with (force)" >/dev/null 2>&1 || true
    rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true
    rabbitmqctl -q delete_queue "$queue.dlq" >/dev/null 2>&1 || true
}
trap cleanup EXIT

PGOPTIONS="--client-min-messages=warning" psql "${server_url%/*}/postgres" -qAt \
    -c "drop database if exists pp_bench_latency with (force)" -c "create database pp_bench_latency" >/dev/null
DATABASE_URL=$bench_url target/release/pp_storage migrate >/dev/null

RUST_LOG=warn DATABASE_URL=$bench_url PP_HTTP_ADDR=127.0.0.1:$port PP_QUEUE=$queue \
    target/release/pp_backend_api &
api_pid=$!
RUST_LOG=warn DATABASE_URL=$bench_url PP_QUEUE=$queue PP_CONSUMER_METRICS_ADDR=off \
    target/release/task_consumer run &
consumer_pid=$!
scripts/wait-for-api.sh "$port" bench-latency

# send PATH: COUNT bodyless POSTs at RATE a second, each on its own schedule (a slow answer
# does not delay the next one's start beyond its slot).
send() {
    local path=$1 i pause
    pause=$(awk -v r="$rate" 'BEGIN {printf "%.4f", 1 / r}')
    for ((i = 0; i < count; i++)); do
        curl -s -o /dev/null --max-time 10 -X POST "http://127.0.0.1:$port$path" &
        sleep "$pause"
    done
    wait_for_curls
}
wait_for_curls() {
    local pid
    for pid in $(jobs -p); do
        [ "$pid" = "$api_pid" ] || [ "$pid" = "$consumer_pid" ] || wait "$pid" 2>/dev/null || true
    done
}

# wait_done SQL: waits (60 s at most) until SQL, a count of the path's done works, reaches COUNT.
wait_done() {
    local sql=$1 waited=0 done=0
    while [ "$waited" -lt 600 ]; do
        done=$(psql "$bench_url" -Atc "$sql")
        [ "$done" -ge "$count" ] && return 0
        sleep 0.1
        waited=$((waited + 1))
    done
    say "warning: only $done of $count done after 60 s" >&2
}

# report NAME SQL: SQL yields one interval per work (seconds as a number).
printf '\n%-20s %8s %8s %8s %8s %8s\n' "path" "works" "p50" "p90" "p99" "max"
report() {
    local name=$1 sql=$2
    psql "$bench_url" -AtF ' ' -c "
        with t as ($sql)
        select count(*),
               round(1000 * percentile_cont(0.5) within group (order by s))::int,
               round(1000 * percentile_cont(0.9) within group (order by s))::int,
               round(1000 * percentile_cont(0.99) within group (order by s))::int,
               round(1000 * max(s))::int
        from t" | {
        read -r works p50 p90 p99 max
        printf '%-20s %8s %6sms %6sms %6sms %6sms\n' "$name" "$works" "$p50" "$p90" "$p99" "$max"
    }
}

send /work
wait_done "select count(*) from works where demand_id is null and done"
report "POST /work" "select extract(epoch from updated_on - created_on) as s from works where demand_id is null and done"

send /work/demand
wait_done "select count(*) from works where demand_id is not null and done"
report "POST /work/demand" "select extract(epoch from w.created_on - o.created_on) as s from works w join demand_outbox o on o.id = w.demand_id"

printf '\n(%s requests per path at %s a second; times from the database'"'"'s clocks)\n' "$count" "$rate"
