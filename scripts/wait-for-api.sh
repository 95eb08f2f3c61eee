#!/usr/bin/env bash
# Waits (at most 10 s) until the API on 127.0.0.1:PORT answers /readyz; exits 1 if it never does.
# Usage: scripts/wait-for-api.sh PORT WHO   (WHO prefixes the error line, e.g. "bench")
set -uo pipefail
port=$1
who=${2:-wait-for-api}
for _ in $(seq 1 50); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && exit 0
    sleep 0.2
done
echo "$who: error: the API on 127.0.0.1:$port did not become ready" >&2
exit 1
