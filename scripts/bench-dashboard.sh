#!/usr/bin/env bash
# Benchmarks the dashboard on a large database (what `make bench-dashboard` runs).
#
#   1. Seeds pp_bench_dashboard (recreated) with SQL alone (generate_series): PP_BENCH_WORKS works
#      (default 1,000,000) created over the last 7 days, half over HTTP, half from demands; every
#      demand's work done, the API's done too except a backlog within the sweep window and some
#      older than it; three events per done work (about 3,000,000); an outbox of published
#      demands and a few unpublished; the per-second ring of the last hour filled from the works'
#      own finishing times. Then VACUUM ANALYZE, as autovacuum would have.
#      `make seed-big` stops here (PP_BENCH_SEED_ONLY=1) and leaves the database in place.
#   2. Times every query the dashboard makes (examples/dashboard_queries.rs: each the function
#      the API calls, 20 runs, p50 and max): each must answer in under 50 ms.
#   3. Runs make bench-api's GET /work/{id} (wrk, same script and settings) against a release API
#      on that database, alone and then with 5 dashboard tabs polling it (each a bounded loop
#      fetching the overview every 2 s, the page's own rate), PP_BENCH_ROUNDS times in turn, and
#      prints both figures side by side.
#
# Step 3 needs wrk: `make bench-dashboard` installs it (scripts/install.sh wrk).
#
# Environment: DATABASE_URL (the server), PP_BENCH_WORKS, PP_BENCH_SECONDS (each wrk run, default
# 10), PP_BENCH_ROUNDS (default 2), PP_BENCH_POOL (default 8), PP_BENCH_WRK_CONNECTIONS (32).
set -euo pipefail
cd "$(dirname "$0")/.."

works=${PP_BENCH_WORKS:-1000000}
seconds=${PP_BENCH_SECONDS:-10}
rounds=${PP_BENCH_ROUNDS:-2}
pool=${PP_BENCH_POOL:-8}
wrk_connections=${PP_BENCH_WRK_CONNECTIONS:-32}
port=${PP_BENCH_PORT:-3395}
tabs=5
server_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/personalproject}
bench_url="${server_url%/*}/pp_bench_dashboard"

say() { printf 'bench: %s\n' "$*"; }

cargo build --quiet --release -p pp_backend_api -p pp_storage
cargo build --quiet --release -p pp_backend_api --example dashboard_queries

say "recreating pp_bench_dashboard and seeding $works works"
PGOPTIONS="--client-min-messages=warning" psql "${server_url%/*}/postgres" -qAt \
    -c "drop database if exists pp_bench_dashboard with (force)" -c "create database pp_bench_dashboard" >/dev/null
DATABASE_URL=$bench_url target/release/pp_storage migrate >/dev/null
started=$(date +%s)
psql "$bench_url" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
-- Works over the last 7 days, in id order. Even ids came over HTTP (api-), odd ones from demands
-- (consumer-, done when inserted, with their demand id). The API's are done a few seconds after
-- their creation, except the last 5,000 of the sweep window (the sweeper's backlog) and one in
-- 200 of those older than it (never swept).
insert into works (work_code, add_up_to, created_on, updated_on, done, result, demand_id)
select case when i % 2 = 0 then 'api-' else 'consumer-' end
           || substr(md5(i::text), 1, 3) || lpad(i::text, 7, '0'),
       i % 100,
       created,
       created + case when pending then interval '0' else interval '3 seconds' end,
       not pending,
       case when pending then null else (i % 100) * (i % 100 + 1) / 2 end,
       case when i % 2 = 1 then gen_random_uuid() end
from (
    select i,
           now() - interval '7 days' + i * (interval '7 days' / $works) as created,
           i % 2 = 0 and (i > $works - 10000
                          or (i * (interval '7 days' / $works) < interval '7 days' - interval '6 hours'
                              and i % 400 = 0)) as pending
    from generate_series(1, $works) as i
) as seed;

insert into events (work_id, work_code, variable, value, created_on)
select w.id, w.work_code, v.variable,
       case when v.variable = 'compute/result' then w.result::text else '' end,
       w.updated_on
from works w
cross join (values ('compute/start'), ('compute/stop'), ('compute/result')) as v(variable)
where w.done;

insert into demand_outbox (id, body, created_on, published_on)
select gen_random_uuid(), jsonb_build_object('add_up_to', i % 100, 'done', false),
       now() - interval '1 day' + i * interval '400 ms',
       case when i <= 200000 then now() - interval '1 day' + i * interval '400 ms' + interval '50 ms' end
from generate_series(1, 200500) as i;

-- The ring: what the finishing commits would have written for the last hour.
update works_finished as ring
   set second = f.second, finished = f.finished
  from (select floor(extract(epoch from updated_on))::bigint as second, count(*) as finished
          from works
         where done and updated_on > now() - interval '1 hour'
         group by 1) as f
 where ring.second_of_hour = f.second % 3600 and ring.slot = 0;
SQL
psql "$bench_url" -qAt -c "vacuum analyze" >/dev/null
say "seeded in $(( $(date +%s) - started )) s: $(psql "$bench_url" -qAt -c "select format('%s works (%s pending), %s events, %s outbox rows', (select count(*) from works), (select count(*) from works where not done), (select count(*) from events), (select count(*) from demand_outbox))")"
if [ "${PP_BENCH_SEED_ONLY:-0}" = 1 ]; then
    say "left in place: $bench_url (drop it with: psql ${server_url%/*}/postgres -c 'drop database pp_bench_dashboard')"
    exit 0
fi

api_pid=
tab_pids=()
cleanup() {
    for pid in "${tab_pids[@]}" $api_pid; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    psql "${server_url%/*}/postgres" -qAt -c "drop database if exists pp_bench_dashboard with (force)" >/dev/null 2>&1 || true
    if command -v rabbitmqctl >/dev/null 2>&1; then
        rabbitmqctl -q delete_queue "pp_bench_dashboard_$$" >/dev/null 2>&1 || true
        rabbitmqctl -q delete_queue "pp_bench_dashboard_$$.dlq" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

printf '\n'
say "every query the dashboard makes, on this database:"
DATABASE_URL=$bench_url target/release/examples/dashboard_queries

printf '\n'
say "what the overview shows (estimates marked exact: false):"
RUST_LOG=warn DATABASE_URL=$bench_url PP_DB_POOL_SIZE=$pool PP_HTTP_ADDR=127.0.0.1:$port \
    PP_OUTBOX_RELAY=off PP_QUEUE="pp_bench_dashboard_$$" target/release/pp_backend_api &
api_pid=$!
scripts/wait-for-api.sh "$port" bench
curl -fsS "http://127.0.0.1:$port/dashboard/api/overview" \
    | python3 -c 'import json,sys; o=json.load(sys.stdin); print(json.dumps({k: o[k] for k in ("works","backlogs")}))'
psql "$bench_url" -qAt -c "select format('exact: %s pending, %s done, %s events, %s done in the last hour', count(*) filter (where not done), count(*) filter (where done), (select count(*) from events), count(*) filter (where done and updated_on >= now() - interval '1 hour')) from works"

command -v wrk >/dev/null 2>&1 || { echo "bench: error: wrk is missing: run scripts/install.sh wrk" >&2; exit 1; }
run_wrk() {
    local out line
    out=$(cd scripts/bench && cat report.lua get_work.lua > /tmp/pp_bench_dashboard_wrk.lua && \
        timeout $((seconds + 30)) wrk -t2 -c"$wrk_connections" -d"${seconds}s" --timeout 5s \
            -s /tmp/pp_bench_dashboard_wrk.lua "http://127.0.0.1:$port/work/1")
    line=$(grep '^RESULT' <<<"$out")
    sed -E 's/.*rps=([0-9.]+) p99_ms=([0-9.]+).*/\1 \2/' <<<"$line"
}
# One tab: the overview every 2 s (what the page fetches), for as long as a wrk run lasts.
poll_as_a_tab() {
    local until=$(( $(date +%s) + seconds + 2 ))
    while [ "$(date +%s)" -lt "$until" ]; do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/dashboard/api/overview" || true
        sleep 2
    done
}

printf '\n%-8s %22s %22s %8s\n' "round" "GET alone req/s (p99)" "with $tabs tabs req/s (p99)" "ratio"
for round in $(seq 1 "$rounds"); do
    read -r alone_rps alone_p99 <<<"$(run_wrk)"
    tab_pids=()
    for _ in $(seq 1 "$tabs"); do poll_as_a_tab & tab_pids+=($!); done
    read -r tabs_rps tabs_p99 <<<"$(run_wrk)"
    for pid in "${tab_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    tab_pids=()
    printf '%-8s %14.0f (%sms) %16.0f (%sms) %7s\n' "$round" "$alone_rps" "$alone_p99" "$tabs_rps" "$tabs_p99" \
        "$(awk -v a="$tabs_rps" -v b="$alone_rps" 'BEGIN {printf "%.0f%%", 100 * a / b}')"
done
