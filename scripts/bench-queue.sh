#!/usr/bin/env bash
# Benchmarks the queue pipeline (release builds), in one run:
#   (a) publishing: task_producer burst of PP_BENCH_DEMANDS demands, every one confirmed by the
#       broker, with no consumer attached;
#   (b) consuming: task_consumer started on that backlog, timed until every demand is a done
#       work with its events in the database;
#   (c) the limit: pgbench running the consumer's transaction for ONE demand (same statements,
#       as many connections as the consumer's workers) for PP_BENCH_SECONDS.
# and prints consumer / limit. Batching several demands per transaction is how the consumer
# passes 1.0. Then
#   (d) scaling, on a three-node RabbitMQ cluster of the run's own: the broker's own ceiling
#       (publish with confirms, consume with acks, no database) beside pp's publish and consume
#       rates, for a classic and a quorum queue and 1, 2 and 4 consumer processes
#       (task_consumer's `scaling` example; PP_BENCH_SCALING=off skips it).
# Everything is on loopback, bounded in count and time; the database (pp_bench_queue), the
# queues and the cluster are removed afterwards.
#
# Needs pgbench: `make bench-queue` installs it (scripts/install.sh pgbench).
#
# Environment: DATABASE_URL (the server), AMQP_URL, PP_BENCH_DEMANDS (default 20000),
# PP_BENCH_SECONDS (pgbench, default 10), PP_BENCH_WORKERS (consumer workers and pgbench
# connections, default 4), PP_BENCH_BATCH (demands per transaction, default 128).
set -euo pipefail
cd "$(dirname "$0")/.."

demands=${PP_BENCH_DEMANDS:-20000}
seconds=${PP_BENCH_SECONDS:-10}
workers=${PP_BENCH_WORKERS:-4}
batch=${PP_BENCH_BATCH:-128}
server_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/personalproject}
bench_url="${server_url%/*}/pp_bench_queue"
# pgbench and psql go over the same link as pp: pp reaches a server on this machine without TLS
# or Kerberos unless the URL asks (see pp_lib::db::pool), and these make libpq's tools do the same.
export PGSSLMODE=${PGSSLMODE:-disable} PGGSSENCMODE=${PGGSSENCMODE:-disable}
queue="pp_bench_queue_$$"

say() { printf 'bench: %s\n' "$*"; }
command -v pgbench >/dev/null 2>&1 || { echo "bench: error: pgbench is missing: run scripts/install.sh pgbench" >&2; exit 1; }
command -v rabbitmqctl >/dev/null 2>&1 || { echo "bench: error: rabbitmqctl is missing: the bench deletes its queue with it" >&2; exit 1; }

say "building the release producer and consumer"
cargo build --quiet --release -p task_producer -p task_consumer -p pp_storage
cargo build --quiet --release -p task_consumer --example scaling

say "recreating pp_bench_queue"
PGOPTIONS="--client-min-messages=warning" psql "${server_url%/*}/postgres" -qAt \
    -c "drop database if exists pp_bench_queue with (force)" -c "create database pp_bench_queue" >/dev/null
DATABASE_URL=$bench_url target/release/pp_storage migrate >/dev/null

consumer_pid=
cleanup() {
    if [ -n "$consumer_pid" ]; then kill "$consumer_pid" 2>/dev/null || true; wait "$consumer_pid" 2>/dev/null || true; fi
    rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true
    rabbitmqctl -q delete_queue "$queue.dlq" >/dev/null 2>&1 || true
    psql "${server_url%/*}/postgres" -qAt -c "drop database if exists pp_bench_queue with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
export PP_QUEUE=$queue DATABASE_URL=$bench_url RUST_LOG=warn

say "(a) publishing $demands demands with confirms"
publish=$(timeout 300 target/release/task_producer burst --count "$demands" 2>/dev/null)
echo "    $publish"
publish_rate=$(sed -E 's/.*\(([0-9]+) msg\/s.*/\1/' <<<"$publish")

say "(b) consuming them: $workers workers, up to $batch demands per transaction"
count() { psql "$bench_url" -qAt -c "select count(*) from works where done"; }
started=$(date +%s.%N)
target/release/task_consumer run --workers "$workers" --batch-size "$batch" --prefetch 1024 \
    --sweep-every 0 --metrics-addr off &
consumer_pid=$!
deadline=$(( $(date +%s) + 300 ))
while [ "$(count)" -lt "$demands" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "bench: error: the consumer did not finish in 300 s ($(count) done)" >&2; exit 1; }
    sleep 0.05
done
finished=$(date +%s.%N)
kill -TERM "$consumer_pid"; wait "$consumer_pid" || true; consumer_pid=
consumer_rate=$(awk -v n="$demands" -v a="$started" -v b="$finished" 'BEGIN {printf "%.0f", n / (b - a)}')
echo "    $demands done in $(awk -v a="$started" -v b="$finished" 'BEGIN {printf "%.2f", b - a}')s: $consumer_rate demands/s"
# Every work checked by pp's one integrity check (its sum, its three events): the benchmark
# counts only work recorded right.
verified=$(target/release/pp_storage verify) || { printf 'bench: error: works recorded wrong:\n%s\n' "$verified" >&2; exit 1; }
echo "    $verified"

say "(c) pgbench: the consumer's transaction for one demand, $workers connections, ${seconds}s"
pg=$(timeout $((seconds + 30)) pgbench -n -M prepared -c "$workers" -j 2 -T "$seconds" \
    -f scripts/bench/record_demand.sql "$bench_url" 2>&1)
pg_tps=$(grep -E '^tps' <<<"$pg" | sed -E 's/tps = ([0-9.]+).*/\1/')
echo "    $pg_tps transactions/s (one demand each)"

printf '\n%-44s %12s %8s\n' "measure" "rate" "target"
printf '%-44s %10s/s %8s\n' "publish, confirmed (task_producer burst)" "$publish_rate" ">=10000"
printf '%-44s %10s/s\n' "consumer, end to end (demands done in DB)" "$consumer_rate"
printf '%-44s %10.0f/s\n' "limit: pgbench, one demand per transaction" "$pg_tps"
printf '%-44s %12s %8s\n' "consumer / limit" "$(awk -v a="$consumer_rate" -v b="$pg_tps" 'BEGIN {printf "%.2f", a / b}')" ">=1.00"

if [ "${PP_BENCH_SCALING:-on}" != off ]; then
    say "(d) scaling on a three-node cluster: $demands demands a step"
    timeout 1800 target/release/examples/scaling --demands "$demands"
fi
