#!/usr/bin/env bash
# Benchmarks the API (release build) against the database's own limit for the same work.
#
# The table holds PP_BENCH_ROWS works created over the last two hours, half `api-`, half
# `consumer-`, with random alphanumeric codes like the real ones; searches look at the last hour.
# For GET /work/{id} and POST /work, and for searches of every selectivity (an exact code, a
# prefix matching under 1% of the window, one matching half of it; each with the default limit
# and with limit=1000), it runs wrk against the API, then pgbench on the same work with as many
# connections as the API's pool: prepared statements for the lookup and the insert, literal
# statements for the searches (planned with their values: the planner's best case). It prints
# req/s, p99 and the ratio API / pgbench, then the API's peak RSS. Everything runs on loopback,
# bounded in time (PP_BENCH_SECONDS each run).
#
# Then, with Redis (REDIS_URL, default the local one; keys under their own prefix, deleted at the
# end): GET by id on a warmed cache beside pgbench's select by primary key, and POST with a rate
# limit that is never reached beside POST without one (the limiter's cost). Last, identities'
# cost: GET by id and POST on an API with PP_AUTH=all, each request carrying an API key, beside
# the same on the API that asks nothing, in turn.
#
# Needs wrk and pgbench: `make bench-api` installs them (scripts/install.sh wrk pgbench).
#
# Environment: DATABASE_URL (the server; the database used is pp_bench, recreated),
# PP_BENCH_SECONDS (default 10), PP_BENCH_ROWS (seeded works, default 100000),
# PP_BENCH_POOL (connections, API pool and pgbench, default 8), PP_BENCH_WRK_CONNECTIONS (default 32).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${PP_BENCH_SECONDS:-10}
rows=${PP_BENCH_ROWS:-100000}
pool=${PP_BENCH_POOL:-8}
wrk_connections=${PP_BENCH_WRK_CONNECTIONS:-32}
port=${PP_BENCH_PORT:-3390}
server_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/personalproject}
bench_url="${server_url%/*}/pp_bench"
# pgbench and psql go over the same link as pp: pp reaches a server on this machine without TLS
# or Kerberos unless the URL asks (see pp_lib::db::pool), and these make libpq's tools do the same.
export PGSSLMODE=${PGSSLMODE:-disable} PGGSSENCMODE=${PGGSSENCMODE:-disable}
export PP_BENCH_ROWS=$rows

say() { printf 'bench: %s\n' "$*"; }

for tool in wrk pgbench; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench: error: $tool is missing: run scripts/install.sh $tool" >&2; exit 1; }
done

say "building the release API"
cargo build --quiet --release -p pp_backend_api -p pp_storage

say "recreating pp_bench and seeding $rows works"
PGOPTIONS="--client-min-messages=warning" psql "${server_url%/*}/postgres" -qAt -c "drop database if exists pp_bench with (force)" -c "create database pp_bench" >/dev/null
DATABASE_URL=$bench_url target/release/pp_storage migrate >/dev/null
psql "$bench_url" -qAt >/dev/null <<SQL
create function pg_temp.random_code(seed int) returns text language sql as \$\$
    select string_agg(substr('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789',
                             1 + floor(random() * 62)::int, 1), '')
    from generate_series(1, 10 + seed * 0)
\$\$;
insert into works (work_code, add_up_to, created_on, done, result)
select case when i % 2 = 0 then 'api-' else 'consumer-' end || pg_temp.random_code(i), i % 100,
       now() - interval '2 hours' + i * (interval '2 hours' / $rows),
       i % 10 <> 0, case when i % 10 <> 0 then (i % 100) * (i % 100 + 1) / 2 end
from generate_series(1, $rows) as i;
vacuum analyze works;
SQL

api_pid=
cached_pid=
limited_pid=
guarded_pid=
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
redis_prefix="pp_bench_$$"
cleanup() {
    for pid in $api_pid $cached_pid $limited_pid $guarded_pid; do
        kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    done
    psql "${server_url%/*}/postgres" -qAt -c "drop database if exists pp_bench with (force)" >/dev/null 2>&1 || true
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -u "$redis_url" --scan --pattern "$redis_prefix:*" 2>/dev/null \
            | xargs -r -n 500 redis-cli -u "$redis_url" del >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

RUST_LOG=warn DATABASE_URL=$bench_url PP_DB_POOL_SIZE=$pool PP_HTTP_ADDR=127.0.0.1:$port \
    target/release/pp_backend_api &
api_pid=$!
scripts/wait-for-api.sh "$port" bench

# run_wrk SCRIPT PATH [PORT [HEADER]]: prints "rps p99_ms"
run_wrk() {
    local script=$1 path=$2 at=${3:-$port} header=${4:-} out
    local headers=()
    [ -z "$header" ] || headers=(-H "$header")
    out=$(cd scripts/bench && cat report.lua "$script" > /tmp/pp_bench_wrk.lua && \
        timeout $((seconds + 30)) wrk -t2 -c"$wrk_connections" -d"${seconds}s" --timeout 5s \
            "${headers[@]}" -s /tmp/pp_bench_wrk.lua "http://127.0.0.1:$at$path")
    local line
    line=$(grep '^RESULT' <<<"$out")
    local errors=${line##*errors=}
    [ "$errors" = 0 ] || say "warning: wrk saw $errors errors on $path" >&2
    sed -E 's/.*rps=([0-9.]+) p99_ms=([0-9.]+).*/\1 \2/' <<<"$line"
}

# warm_cache PORT: reads every seeded work once through the API at PORT (each thread of wrk
# walks its share of the ids, then idles), until the cache has been asked for every work; 300 s
# at most. wrk runs for its whole -d even when its threads are done, so it is stopped here.
warm_cache() {
    local at=$1 started=$SECONDS wrk_pid counts="0 0 0" asked=0
    (cd scripts/bench && PP_BENCH_WRK_CONNECTIONS=$wrk_connections \
        exec wrk -t2 -c"$wrk_connections" -d300s --timeout 5s -s warm_works.lua "http://127.0.0.1:$at/work/1") >/dev/null &
    wrk_pid=$!
    while kill -0 "$wrk_pid" 2>/dev/null && [ "$asked" -lt "$rows" ]; do
        sleep 0.5
        # "asked read-from-postgres read-from-redis"
        counts=$(curl -fsS "http://127.0.0.1:$at/metrics" | awk '
            /^pp_api_cache_misses_total/ {missed = $2}
            /^pp_api_cache_hits_total\{tier="redis"\}/ {redis = $2}
            /^pp_api_cache_hits_total\{tier="memory"\}/ {memory = $2}
            END {printf "%d %d %d", missed + redis + memory, missed, redis}') || true # asked again
        read -r asked _ _ <<<"$counts"
    done
    sleep 1 # the last few answers in flight
    kill "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" 2>/dev/null || true
    read -r asked missed from_redis <<<"$counts"
    say "warmed the cache at :$at in $((SECONDS - started)) s: $asked works asked for, $missed read from PostgreSQL, $from_redis from Redis"
    [ "$asked" -ge "$rows" ] || say "warning: the warm-up asked for fewer works than were seeded" >&2
}

# run_pgbench FILE [-D VAR=VALUE]...: prints "tps p99_ms"
run_pgbench() {
    local file=$1 out
    shift
    out=$(timeout $((seconds + 30)) pgbench -n -c "$pool" -j 2 -T "$seconds" \
        -D rows="$rows" "$@" -l --log-prefix=/tmp/pp_bench_pgbench -f "scripts/bench/$file" "$bench_url" 2>&1)
    local tps p99
    tps=$(grep -E '^tps' <<<"$out" | sed -E 's/tps = ([0-9.]+).*/\1/')
    p99=$(cat /tmp/pp_bench_pgbench* | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.2f", v[i]/1000}')
    rm -f /tmp/pp_bench_pgbench*
    echo "$tps $p99"
}

printf '\n%-36s %12s %10s %14s %10s %8s %8s\n' "operation" "API req/s" "API p99" "pgbench tps" "pg p99" "ratio" "target"
report() {
    local name=$1 api=$2 pg=$3 target=$4
    read -r api_rps api_p99 <<<"$api"
    read -r pg_tps pg_p99 <<<"$pg"
    ratio=$(awk -v a="$api_rps" -v b="$pg_tps" 'BEGIN {printf "%.0f%%", 100 * a / b}')
    printf '%-36s %12.0f %8sms %14.0f %8sms %8s %8s\n' "$name" "$api_rps" "$api_p99" "$pg_tps" "$pg_p99" "$ratio" ">=$target%"
}

report "GET /work/{id}" "$(run_wrk get_work.lua /work/1)" "$(run_pgbench get_work.sql -M prepared)" 80

since=$(psql "$bench_url" -Atc "select (now() - interval '1 hour')::text")
window=$(psql "$bench_url" -Atc "select count(*) from works where created_on >= '$since'")
exact=$(psql "$bench_url" -Atc "select work_code from works where work_code like 'api-%' and created_on >= '$since' order by id desc limit 1")
for prefix in "$exact" api-a api-; do
    matches=$(psql "$bench_url" -Atc "select count(*) from works where work_code like '$prefix%' and created_on >= '$since'")
    share=$(awk -v m="$matches" -v w="$window" 'BEGIN {printf "%.1f%%", 100 * m / w}')
    label=$prefix
    [ "$prefix" = "$exact" ] && label="<exact code>"
    for limit in 100 1000; do
        report "search $label $share l=$limit" \
            "$(run_wrk report.lua "/work/search?work_code=$prefix&limit=$limit")" \
            "$(run_pgbench search_works.sql -M simple -D "pattern=$prefix%" -D "since=$since" -D limit=$limit)" 50
    done
done
# Last: the inserts add works to the window the searches measure.
report "POST /work" "$(run_wrk post_work.lua /work)" "$(run_pgbench post_work.sql -M prepared)" 60

rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$api_pid/status")

# With Redis: a second API over the same database caches works, the done ones in its memory too
# (PP_BENCH_CACHE_MEMORY of them, default every seeded work: the working set fits); its cache is
# warmed by reading every id once, then GET is measured beside pgbench's select by primary key,
# run again now. The third API (below) keeps nothing in memory: its GET shows Redis alone.
RUST_LOG=warn DATABASE_URL=$bench_url PP_DB_POOL_SIZE=$pool PP_HTTP_ADDR=127.0.0.1:$((port + 1)) \
    REDIS_URL=$redis_url PP_REDIS_PREFIX=$redis_prefix PP_OUTBOX_RELAY=off \
    PP_CACHE_MEMORY_WORKS=${PP_BENCH_CACHE_MEMORY:-$rows} \
    target/release/pp_backend_api &
cached_pid=$!
scripts/wait-for-api.sh "$((port + 1))" bench
warm_cache "$((port + 1))"
report "GET /work/{id}, cached (memory)" "$(run_wrk get_work.lua /work/1 "$((port + 1))")" "$(run_pgbench get_work.sql -M prepared)" 100

# The rate limiter's cost: POST on an API whose limit no client reaches (every request still
# runs the limiter's script in Redis), beside POST on the API without limits, in turn.
RUST_LOG=warn DATABASE_URL=$bench_url PP_DB_POOL_SIZE=$pool PP_HTTP_ADDR=127.0.0.1:$((port + 2)) \
    REDIS_URL=$redis_url PP_REDIS_PREFIX=$redis_prefix PP_OUTBOX_RELAY=off \
    PP_RATE_LIMIT=1000000/s PP_RATE_BURST=1000000 PP_CACHE_MEMORY_WORKS=0 \
    target/release/pp_backend_api &
limited_pid=$!
scripts/wait-for-api.sh "$((port + 2))" bench
warm_cache "$((port + 2))"
report "GET /work/{id}, cached (Redis only)" "$(run_wrk get_work.lua /work/1 "$((port + 2))")" "$(run_pgbench get_work.sql -M prepared)" 100
read -r plain_rps _ <<<"$(run_wrk post_work.lua /work)"
read -r limited_rps limited_p99 <<<"$(run_wrk post_work.lua /work "$((port + 2))")"
printf '%-36s %12.0f %8sms %14.0f %10s %8s %8s\n' "POST /work, rate limited" "$limited_rps" "$limited_p99" "$plain_rps" "(no limit)" \
    "$(awk -v a="$limited_rps" -v b="$plain_rps" 'BEGIN {printf "%.0f%%", 100 * a / b}')" ">=85%"

# Identities' cost: every request of the guarded API carries a key, found in the API's memory
# (no query), and must have its scope; the plain API asks nothing (PP_AUTH off on loopback).
key=$(DATABASE_URL=$bench_url target/release/pp_storage keys create --name bench \
    --scopes read,write | tail -n 1)
RUST_LOG=warn DATABASE_URL=$bench_url PP_DB_POOL_SIZE=$pool PP_HTTP_ADDR=127.0.0.1:$((port + 3)) \
    PP_OUTBOX_RELAY=off PP_AUTH=all target/release/pp_backend_api &
guarded_pid=$!
scripts/wait-for-api.sh "$((port + 3))" bench
for route in "GET /work/{id}:get_work.lua:/work/1" "POST /work:post_work.lua:/work"; do
    IFS=: read -r name script path <<<"$route"
    read -r plain_rps _ <<<"$(run_wrk "$script" "$path")"
    read -r guarded_rps guarded_p99 <<<"$(run_wrk "$script" "$path" "$((port + 3))" "Authorization: Bearer $key")"
    printf '%-36s %12.0f %8sms %14.0f %10s %8s %8s\n' "$name, key, PP_AUTH=all" "$guarded_rps" "$guarded_p99" "$plain_rps" "(off)" \
        "$(awk -v a="$guarded_rps" -v b="$plain_rps" 'BEGIN {printf "%.0f%%", 100 * a / b}')" ">=90%"
done

cached_rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$cached_pid/status")
printf '\nAPI peak RSS: %.1f MiB; with the cache: %.1f MiB (pool %s, wrk connections %s, %ss per run)\n' \
    "$(awk -v k="$rss_kib" 'BEGIN {print k / 1024}')" "$(awk -v k="$cached_rss_kib" 'BEGIN {print k / 1024}')" \
    "$pool" "$wrk_connections" "$seconds"
