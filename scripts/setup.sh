#!/usr/bin/env bash
# setup.sh: starts PostgreSQL, RabbitMQ and Redis, and migrates the database (`make setup`).
#
# Bash does here only what bash must: install packages and start services without systemd. What
# pp is configured with is asked of `pp_storage`, which reads it exactly as every pp binary does
# (flags, environment, ./.env, the defaults):
#
#   1. The build prerequisites: libpq (scripts/install.sh libpq) and cargo; then pp_storage is built.
#   2. `pp_storage check` says where PostgreSQL, RabbitMQ and Redis are (URLs redacted) and which
#      answer. A local (loopback) one that does not is started: the installed server, without
#      systemd; else installed with apt (Debian/Ubuntu, as root or with passwordless sudo) and
#      started; else run with Docker Compose; else the script says what to install and fails.
#      A service on another host is only checked, never started.
#   3. `pp_storage migrate` creates the database if missing and applies the migrations, unless
#      PP_SETUP_SKIP_MIGRATE=1.
#
# The tools other targets need (Chromium, schemathesis, wrk...) are not set up here: each target
# installs its own with scripts/install.sh.
#
# Idempotent: a second run changes nothing. Never prompts and never waits without a bound.
# Passwords in URLs are never printed.
#
# Environment: DATABASE_URL, AMQP_URL, REDIS_URL (as for the binaries); PP_SETUP_SKIP_MIGRATE=1
# skips step 3; PP_SETUP_CARGO_TIMEOUT (seconds, default 1800) bounds building pp_storage.
set -euo pipefail

cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/common.sh
. scripts/lib/common.sh
log_as setup

# ---------------------------------------------------------------------------------------------
# Build prerequisites, and pp_storage: pp's configuration, the services' state, the migrations
# ---------------------------------------------------------------------------------------------

ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            die "cargo is installed in ~/.cargo/bin but not on PATH: run \`. \"\$HOME/.cargo/env\"\` (or open a new shell)"
        fi
        die "cargo not found: install Rust with rustup (https://rustup.rs):" \
            "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
    fi
    log "$(cargo --version 2>/dev/null || echo 'cargo found')"
}

build_storage() {
    local limit=${PP_SETUP_CARGO_TIMEOUT:-1800}
    log "building pp_storage (the first build takes a few minutes)"
    with_timeout "$limit" cargo build --quiet -p pp_storage </dev/null || {
        [ $? -ne 124 ] || die "building pp_storage did not finish within ${limit}s (PP_SETUP_CARGO_TIMEOUT)"
        die "cargo build -p pp_storage failed (output above)"
    }
}

# storage ARGS...: the pp_storage binary, built above.
storage() { cargo run --quiet -p pp_storage -- "$@" </dev/null; }

# wait_for SERVICE LABEL SECONDS: until pp_storage sees it answer; false after SECONDS.
wait_for() {
    log "waiting for $2 (at most $3s)"
    storage check --wait "$3s" "$1" >/dev/null
}

migrate() {
    if [ "${PP_SETUP_SKIP_MIGRATE:-0}" = 1 ]; then
        log "PP_SETUP_SKIP_MIGRATE=1: skipping database creation and migrations"
        DB_STATE="database not migrated (PP_SETUP_SKIP_MIGRATE=1)"
        return 0
    fi
    log "migrating: pp_storage migrate"
    if ! storage migrate 2>&1 | sed 's/^/setup:   /'; then
        die "pp_storage migrate failed (output above): check DATABASE_URL and that its user may log in" \
            "and create databases"
    fi
    DB_STATE="database ready"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: its clusters (Debian layout), and loopback access without a password
# ---------------------------------------------------------------------------------------------

# pg_clusters: one line "VERSION CLUSTER PORT" per PostgreSQL cluster (Debian layout).
pg_clusters() {
    local dir cluster version port
    for dir in /etc/postgresql/*/*/; do
        [ -f "$dir/postgresql.conf" ] || continue
        dir=${dir%/}
        cluster=${dir##*/}
        version=${dir%/*}
        version=${version##*/}
        port=$(sed -nE 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*([0-9]+).*/\1/p' "$dir/postgresql.conf" 2>/dev/null | tail -n 1)
        printf '%s %s %s\n' "$version" "$cluster" "${port:-5432}"
    done
}

# pg_pick_cluster PORT: "VERSION CLUSTER PORT" of the cluster to start: the one on PORT, else the
# newest version's "main", else the first one.
pg_pick_cluster() {
    local want=$1 clusters
    clusters=$(pg_clusters)
    [ -n "$clusters" ] || die "no PostgreSQL cluster found under /etc/postgresql"
    printf '%s\n' "$clusters" | awk -v p="$want" '$3 == p { print; found = 1; exit } END { if (!found) exit 1 }' && return
    printf '%s\n' "$clusters" | awk '$2 == "main"' | sort -n | tail -n 1 | grep . && return
    printf '%s\n' "$clusters" | head -n 1
}

# pg_hba_missing HBA_TEXT: the trust lines for user postgres on loopback that HBA_TEXT lacks
# (one already there for user postgres or all counts).
pg_hba_missing() {
    local addr
    for addr in 127.0.0.1/32 ::1/128; do
        if ! printf '%s\n' "$1" | grep -Eq "^[[:space:]]*host[[:space:]]+all[[:space:]]+(postgres|all)[[:space:]]+${addr//./\\.}[[:space:]]+trust([[:space:]]|$)"; then
            printf 'host all postgres %s trust\n' "$addr"
        fi
    done
}

# pg_trust_loopback VERSION CLUSTER: lets user postgres connect over loopback TCP without a
# password (the default DATABASE_URL has none). Only for a cluster this script installed or started.
pg_trust_loopback() {
    local version=$1 cluster=$2 hba current missing tmp
    hba=/etc/postgresql/$version/$cluster/pg_hba.conf
    if [ "$CAN_ROOT" -eq 0 ] && [ ! -w "$hba" ]; then
        log "warning: cannot edit $hba (not root); if migrations fail with an authentication error, add" \
            "'host all postgres 127.0.0.1/32 trust' and 'host all postgres ::1/128 trust' at its top"
        return 0
    fi
    current=$(privileged 10 cat "$hba") || die "cannot read $hba"
    missing=$(pg_hba_missing "$current")
    if [ -z "$missing" ]; then
        log "PostgreSQL $version/$cluster: pg_hba.conf already trusts user postgres on loopback; unchanged"
        return 0
    fi
    tmp=$(mktemp "${TMPDIR:-/tmp}/pp-setup-hba.XXXXXX")
    {
        printf '# Added by pp scripts/setup.sh: user postgres connects over loopback TCP without a password.\n'
        printf '%s\n' "$missing"
        printf '%s\n' "$current"
    } >"$tmp"
    chmod 644 "$tmp"
    # cp onto the existing file keeps its owner and mode.
    if ! privileged 10 cp "$tmp" "$hba"; then
        rm -f "$tmp"
        die "cannot write $hba"
    fi
    rm -f "$tmp"
    run_start "PostgreSQL (reload)" privileged 60 pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" reload ||
        die "pg_ctlcluster $version $cluster reload failed"
    log "PostgreSQL $version/$cluster: this script added to the top of $hba (and reloaded):"
    printf '%s\n' "$missing" | sed 's/^/setup:   /'
}

# ---------------------------------------------------------------------------------------------
# One function per service: is it installed, and start it (installing it first when it is
# missing and apt can). Each start takes the host and port pp_storage reported.
# ---------------------------------------------------------------------------------------------

postgresql_installed() { command -v pg_ctlcluster >/dev/null 2>&1 && [ -n "$(pg_server_version)" ]; }

# start_postgresql HOST PORT: the cluster serving PORT (created when none exists), trusted for
# user postgres on loopback.
start_postgresql() {
    local port=$2 version cluster cport
    if ! postgresql_installed; then
        apt_install postgresql postgresql-contrib
        postgresql_installed || die "PostgreSQL is still not installed after apt-get install"
    fi
    if [ -z "$(pg_clusters)" ]; then
        version=$(pg_server_version)
        log "PostgreSQL $version is installed but has no cluster: pg_createcluster $version main"
        run_start "PostgreSQL (pg_createcluster)" privileged 120 pg_createcluster "$version" main ||
            die "pg_createcluster $version main failed"
    fi
    read -r version cluster cport <<<"$(pg_pick_cluster "$port")"
    # The package's postinst may have started it already.
    if ! storage check postgresql >/dev/null; then
        [ "$cport" = "$port" ] ||
            log "warning: PostgreSQL cluster $version/$cluster listens on port $cport, DATABASE_URL says $port"
        log "starting PostgreSQL cluster $version/$cluster: pg_ctlcluster --skip-systemctl-redirect $version $cluster start"
        run_start PostgreSQL privileged 120 pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start ||
            die "pg_ctlcluster $version $cluster start failed (log: /var/log/postgresql/postgresql-$version-$cluster.log)"
        wait_for postgresql PostgreSQL 60 ||
            die "PostgreSQL did not answer on port $port within 60s after being started" \
                "see /var/log/postgresql/ and \`pg_lsclusters\`"
    fi
    pg_trust_loopback "$version" "$cluster"
}

rabbitmq_installed() { command -v rabbitmq-server >/dev/null 2>&1; }

# start_rabbitmq HOST PORT: rabbitmq-server, detached.
start_rabbitmq() {
    if ! rabbitmq_installed; then
        apt_install rabbitmq-server
        rabbitmq_installed || die "RabbitMQ is still not installed after apt-get install"
        ! storage check rabbitmq >/dev/null || return 0
    fi
    log "starting RabbitMQ: rabbitmq-server -detached"
    run_start RabbitMQ privileged 60 rabbitmq-server -detached ||
        die "rabbitmq-server -detached failed (logs: /var/log/rabbitmq/)"
    wait_for rabbitmq RabbitMQ 90 ||
        die "RabbitMQ did not answer on port $2 within 90s after being started" \
            "see /var/log/rabbitmq/ and \`rabbitmqctl status\`"
}

redis_installed() { command -v redis-server >/dev/null 2>&1; }

# start_redis HOST PORT: a redis-server of our own on that loopback address and port, no
# snapshots on disk.
start_redis() {
    local bind=127.0.0.1 port=$2
    [ "$1" != "::1" ] || bind=::1
    if ! redis_installed; then
        apt_install redis-server
        redis_installed || die "Redis is still not installed after apt-get install"
        ! storage check redis >/dev/null || return 0
    fi
    log "starting Redis: redis-server --daemonize yes --bind $bind --port $port --save \"\""
    run_start Redis with_timeout 30 redis-server --daemonize yes --bind "$bind" --port "$port" --save "" ||
        die "redis-server failed to start"
    wait_for redis Redis 60 ||
        die "Redis did not answer on port $port within 60s after being started" \
            "run \`redis-server --port $port\` in a terminal to see why it stops"
}

# service_installed SERVICE: whether the service's server is installed on this machine.
service_installed() {
    case $1 in
        postgresql) postgresql_installed ;;
        rabbitmq) rabbitmq_installed ;;
        redis) redis_installed ;;
        *) die "unknown service from pp_storage check: $1" ;;
    esac
}

# start_service SERVICE HOST PORT: installs it first when it is missing (and apt can), starts it.
start_service() {
    case $1 in
        postgresql) start_postgresql "$2" "$3" ;;
        rabbitmq) start_rabbitmq "$2" "$3" ;;
        redis) start_redis "$2" "$3" ;;
        *) die "unknown service from pp_storage check: $1" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Where nothing is installed and apt cannot help: Docker Compose, or what to install
# ---------------------------------------------------------------------------------------------

compose_service() {
    case $1 in
        postgresql) printf postgres ;;
        *) printf '%s' "$1" ;;
    esac
}

docker_engine_ok() {
    command -v docker >/dev/null 2>&1 && with_timeout 10 docker info </dev/null >/dev/null 2>&1
}

# start_with_compose SERVICE...: the services of docker-compose.yml (ports on 127.0.0.1, at the
# default ports).
start_with_compose() {
    local composes="" service
    for service in "$@"; do composes="$composes $(compose_service "$service")"; done
    # shellcheck disable=SC2086 # word splitting of the service list is intended
    if docker compose version >/dev/null 2>&1; then
        log "docker compose up -d --wait$composes"
        with_timeout 180 docker compose up -d --wait $composes </dev/null ||
            die "docker compose up failed or timed out (180s); see \`docker compose logs$composes\`"
    elif command -v docker-compose >/dev/null 2>&1; then
        log "docker-compose up -d$composes"
        with_timeout 180 docker-compose up -d $composes </dev/null ||
            die "docker-compose up failed or timed out (180s); see \`docker-compose logs$composes\`"
    else
        die "docker is installed but neither \`docker compose\` nor \`docker-compose\` is:" \
            "install the Docker Compose plugin (https://docs.docker.com/compose/install/)"
    fi
    for service in "$@"; do
        wait_for "$service" "$service" 90 ||
            die "$service did not answer within 90s (docker compose logs $(compose_service "$service"))"
        set_state "$service" "via docker"
    done
}

# install_instructions SERVICE...: what to install, three ways; then fails.
install_instructions() {
    local pkgs="" brew="" starts="" composes="" service
    for service in "$@"; do
        composes="$composes $(compose_service "$service")"
        case $service in
            postgresql) pkgs="$pkgs postgresql postgresql-contrib" brew="$brew postgresql@16" starts="$starts && brew services start postgresql@16" ;;
            rabbitmq) pkgs="$pkgs rabbitmq-server" brew="$brew rabbitmq" starts="$starts && brew services start rabbitmq" ;;
            redis) pkgs="$pkgs redis-server" brew="$brew redis" starts="$starts && brew services start redis" ;;
        esac
    done
    err "not running and not installed: $*"
    err "install and start them one of these ways, then run \`make setup\` again:"
    err "  Debian/Ubuntu: sudo apt-get install -y --no-install-recommends$pkgs"
    err "                 (this script does that itself when run as root or with passwordless sudo)"
    err "  macOS:         brew install$brew$starts"
    case " $* " in
        *" postgresql "*) err "                 (then: createuser -s postgres   so that the default DATABASE_URL works)" ;;
    esac
    err "  Docker:        docker compose up -d --wait$composes   (from $(pwd))"
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Main: what pp_storage check reports, what is started, the summary
# ---------------------------------------------------------------------------------------------

# What happened to each service, for the summary.
POSTGRESQL_STATE=
RABBITMQ_STATE=
REDIS_STATE=
DB_STATE=

# set_state SERVICE TEXT
set_state() {
    case $1 in
        postgresql) POSTGRESQL_STATE=$2 ;;
        rabbitmq) RABBITMQ_STATE=$2 ;;
        redis) REDIS_STATE=$2 ;;
        *) die "unknown service from pp_storage check: $1" ;;
    esac
}

# state SERVICE: the text set_state recorded.
state() {
    case $1 in
        postgresql) printf '%s' "$POSTGRESQL_STATE" ;;
        rabbitmq) printf '%s' "$RABBITMQ_STATE" ;;
        redis) printf '%s' "$REDIS_STATE" ;;
    esac
}

# check_services: reads `pp_storage check` ("SERVICE HOST PORT PLACE REACHABLE URL" per line):
# fills SUMMARY (one "SERVICE HOST:PORT (URL)" each) and MISSING (the local ones that do not
# answer, as SERVICE/HOST/PORT words: a host may be ::1); fails when a remote one does not answer.
SUMMARY=()
MISSING=""
check_services() {
    local report rc service host port place reachable url remote_down=0
    report=$(storage check) && rc=0 || rc=$?
    [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || die "pp_storage check failed: fix the configuration it names"
    while read -r service host port place reachable url; do
        SUMMARY+=("$service $host:$port ($url)")
        case $place:$reachable in
            socket:*) set_state "$service" "Unix socket, not checked" ;;
            local:answers) log "$service answers on $host:$port" && set_state "$service" "already running" ;;
            remote:answers) log "$service answers on $host:$port" && set_state "$service" "remote, answering" ;;
            local:silent) log "$service does not answer on $host:$port" && MISSING="$MISSING $service/$host/$port" ;;
            *)
                err "$service does not answer on $host:$port ($url): it is not on this machine, so" \
                    "start it there or point the URL at a reachable server"
                remote_down=1
                ;;
        esac
    done <<<"$report"
    [ "$remote_down" -eq 0 ] || exit 1
}

# start_missing: starts each service in MISSING: the installed server, else installed with apt,
# else all those left with Docker Compose, else says what to install and fails.
start_missing() {
    local word service host port compose="" not_installed=""
    for word in $MISSING; do
        IFS=/ read -r service host port <<<"$word"
        if service_installed "$service"; then
            start_service "$service" "$host" "$port"
            set_state "$service" "started"
        elif can_apt; then
            start_service "$service" "$host" "$port"
            set_state "$service" "installed and started"
        elif docker_engine_ok; then
            compose="$compose $service"
        else
            not_installed="$not_installed $service"
        fi
    done
    # shellcheck disable=SC2086 # word splitting of the service lists is intended
    [ -z "$not_installed" ] || install_instructions $not_installed
    # shellcheck disable=SC2086
    [ -z "$compose" ] || start_with_compose $compose
}

print_summary() {
    local line
    log "summary:"
    for line in "${SUMMARY[@]}"; do
        log "  $line: $(state "${line%% *}")"
    done
    log "  $DB_STATE"
}

main() {
    scripts/install.sh libpq
    ensure_cargo
    build_storage
    check_services
    start_missing
    migrate
    print_summary
}

main "$@"
