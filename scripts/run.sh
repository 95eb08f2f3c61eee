#!/usr/bin/env bash
# Runs the whole system in the foreground: the API (with its outbox relay), the consumer (with
# the sweeper) and the producer (one random demand every 4 s), from release builds, after the
# database is migrated. Ctrl-C (or SIGTERM) stops all three gracefully: each finishes its
# in-flight work. If one of them exits on its own, the others are stopped too.
#
# Each process runs in its own session, so the terminal's Ctrl-C reaches only this script, which
# sends each process exactly one SIGTERM (a second signal would make them stop at once).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p pp_backend_api -p pp_storage -p task_consumer -p task_producer
target/release/pp_storage migrate

pids=()
stopping=
stop_all() {
    [ -n "$stopping" ] && return
    stopping=1
    echo "run: stopping the API, the consumer and the producer" >&2
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

setsid target/release/pp_backend_api & pids+=($!)
setsid target/release/task_consumer run & pids+=($!)
setsid target/release/task_producer run & pids+=($!)
echo "run: API on http://${PP_HTTP_ADDR:-127.0.0.1:3000} (docs at /docs), consumer metrics on http://${PP_CONSUMER_METRICS_ADDR:-127.0.0.1:9187}/metrics; Ctrl-C stops everything" >&2

status=0
wait -n "${pids[@]}" || status=$?
echo "run: a process exited (status $status)" >&2
stop_all
exit "$status"
