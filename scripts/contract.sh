#!/usr/bin/env bash
# Checks that the API does exactly what its OpenAPI document says: a release API on a database of
# its own with every route behind an identity (PP_AUTH=all), and schemathesis (pinned, in the
# project's .venv-contract, which `make contract` installs with scripts/install.sh schemathesis)
# running every check against /api-docs/openapi.json with an API key of every scope — among
# them ignored_auth, which asks each operation without the key and with a wrong one and expects
# it refused. Exits non-zero on any failure.
#
# Environment: DATABASE_URL (the server; the database used is pp_contract_<pid>, dropped after),
# PP_CONTRACT_PORT (default 3394), PP_CONTRACT_SECONDS (bound on the fuzzer's run, default 900).
set -euo pipefail
cd "$(dirname "$0")/.."

port=${PP_CONTRACT_PORT:-3394}
limit=${PP_CONTRACT_SECONDS:-900}
server_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/personalproject}
database=pp_contract_$$
contract_url="${server_url%/*}/$database"
schemathesis=.venv-contract/bin/schemathesis

say() { printf 'contract: %s\n' "$*"; }

[ -x "$schemathesis" ] || { echo "contract: error: $schemathesis is missing: run scripts/install.sh schemathesis" >&2; exit 1; }

say "building the release API"
cargo build --quiet --release -p pp_backend_api -p pp_storage

api_pid=
cleanup() {
    if [ -n "$api_pid" ]; then kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; fi
    psql "${server_url%/*}/postgres" -qAt -c "drop database if exists $database with (force)" >/dev/null 2>&1 || true
    if command -v rabbitmqctl >/dev/null 2>&1; then
        rabbitmqctl -q delete_queue "$database" >/dev/null 2>&1 || true
        rabbitmqctl -q delete_queue "$database.dlq" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

say "creating $database"
psql "${server_url%/*}/postgres" -qAt -c "create database $database" >/dev/null
DATABASE_URL=$contract_url target/release/pp_storage migrate >/dev/null
key=$(DATABASE_URL=$contract_url target/release/pp_storage keys create --name contract \
    --scopes read,write,operate | tail -n 1)

# No relay for this run: the outbox keeps the demands, which is all the contract is about. The
# dashboard's dead-letter actions get a queue of their own: the fuzzer retries and discards.
# Failed authentications are let through unthrottled: the fuzzer fails them on purpose, by the
# thousand, and must see 401s (the throttle has tests of its own). Nothing finishes a work in
# this run, so a request that prefers to wait waits 1 s at most (PP_WAIT_MAX), not a minute.
RUST_LOG=warn DATABASE_URL=$contract_url PP_HTTP_ADDR=127.0.0.1:$port PP_OUTBOX_RELAY=off PP_QUEUE=$database \
    PP_AUTH=all PP_AUTH_FAILURES=1000000/s PP_WAIT_MAX=1s target/release/pp_backend_api &
api_pid=$!
scripts/wait-for-api.sh "$port" contract

# The document too is behind the key: it is read once, with it, and given to the fuzzer as a file.
document=$(mktemp --suffix=.json)
trap 'cleanup; rm -f "$document"' EXIT
curl -fsS -H "Authorization: Bearer $key" "http://127.0.0.1:$port/api-docs/openapi.json" -o "$document"

say "schemathesis $("$schemathesis" --version | awk '{print $NF}') against http://127.0.0.1:$port, by its /api-docs/openapi.json"
timeout "$limit" "$schemathesis" --config-file scripts/contract/schemathesis.toml run \
    "$document" --url "http://127.0.0.1:$port" --checks all --no-color \
    --header "Authorization: Bearer $key" "$@"
