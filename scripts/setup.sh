#!/usr/bin/env bash
# setup.sh: makes this machine ready to build, test and run pp (what `make setup` runs).
#
# Bash does here only what bash must: install packages (apt, as root or with passwordless sudo)
# and start services without systemd. What pp is configured with is asked of `pp_storage`, which
# reads it exactly as every pp binary does (flags, environment, ./.env, the defaults):
#
#   1. The build prerequisites: libpq (Diesel links it) and cargo; then pp_storage is built.
#   2. `pp_storage check` says where PostgreSQL, RabbitMQ and Redis are (URLs redacted) and which
#      answer. A local (loopback) one that does not is started: the installed server, without
#      systemd; else installed with apt (Debian/Ubuntu, as root or with passwordless sudo) and
#      started; else run with Docker Compose; else the script says what to install and fails.
#      A service on another host is only checked, never started.
#   3. `pp_storage migrate` creates the database if missing and applies the migrations, unless
#      PP_SETUP_SKIP_MIGRATE=1.
#   4. The tools of other targets: schemathesis in .venv-contract (`make contract`), and
#      docker-compose, which validates docker-compose.yml without an engine (`make compose-check`).
#
# Idempotent: a second run changes nothing. Never prompts and never waits without a bound.
# Passwords in URLs are never printed.
#
# Environment: DATABASE_URL, AMQP_URL, REDIS_URL (as for the binaries); PP_SETUP_SKIP_MIGRATE=1
# skips step 3; PP_SETUP_CARGO_TIMEOUT (seconds, default 1800) bounds building pp_storage.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*"; }
err() { printf 'setup: error: %s\n' "$*" >&2; }
die() {
    local line
    for line in "$@"; do err "$line"; done
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Running commands: bounded in time, as root where needed
# ---------------------------------------------------------------------------------------------

TIMEOUT_BIN=
if command -v timeout >/dev/null 2>&1; then
    TIMEOUT_BIN=timeout
elif command -v gtimeout >/dev/null 2>&1; then
    TIMEOUT_BIN=gtimeout
fi

# with_timeout SECONDS COMMAND...: runs COMMAND (an executable, not a function), killed after
# SECONDS. Uses timeout(1) when present (macOS has none by default), else a watcher process.
with_timeout() {
    local secs=$1
    shift
    if [ -n "$TIMEOUT_BIN" ]; then
        "$TIMEOUT_BIN" "$secs" "$@"
        return
    fi
    local pid watcher rc=0
    "$@" <&0 &
    pid=$!
    (
        sleep "$secs"
        kill -TERM "$pid" 2>/dev/null
    ) </dev/null >/dev/null 2>&1 &
    watcher=$!
    wait "$pid" || rc=$?
    kill "$watcher" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
    return "$rc"
}

# Root: either we are root, or sudo works without a password (never prompts).
CAN_ROOT=0
if [ "$(id -u)" -eq 0 ]; then
    CAN_ROOT=1
elif command -v sudo >/dev/null 2>&1 && with_timeout 5 sudo -n true </dev/null >/dev/null 2>&1; then
    CAN_ROOT=2
fi

# as_root SECONDS COMMAND...: runs COMMAND as root (directly or with sudo -n), bounded.
as_root() {
    local secs=$1
    shift
    if [ "$CAN_ROOT" -eq 1 ]; then
        with_timeout "$secs" "$@"
    else
        with_timeout "$secs" sudo -n "$@"
    fi
}

# privileged SECONDS COMMAND...: as root when we can be, else as ourselves.
privileged() {
    if [ "$CAN_ROOT" -ne 0 ]; then
        as_root "$@"
    else
        with_timeout "$@"
    fi
}

# can_apt: true on Debian/Ubuntu when we can be root.
can_apt() { [ -f /etc/debian_version ] && [ "$CAN_ROOT" -ne 0 ]; }

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root 600 env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -qq update </dev/null ||
            die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root 1200 env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -qq install -y \
        --no-install-recommends "$@" </dev/null || die "apt-get install $* failed"
}

# run_start LABEL COMMAND...: runs a daemon's start command with its output in a file (never a
# pipe: a daemon that kept the pipe open would make `make setup | tee` hang); prints the output
# and fails when the command fails.
START_LOG=$(mktemp "${TMPDIR:-/tmp}/pp-setup.XXXXXX")
trap 'rm -f "$START_LOG"' EXIT
run_start() {
    local label=$1
    shift
    if "$@" </dev/null >"$START_LOG" 2>&1; then
        return 0
    fi
    err "could not start $label:"
    sed 's/^/setup: error:   /' "$START_LOG" >&2
    return 1
}

# ---------------------------------------------------------------------------------------------
# Build prerequisites, and pp_storage: pp's configuration, the services' state, the migrations
# ---------------------------------------------------------------------------------------------

have_libpq() {
    if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libpq 2>/dev/null; then
        return 0
    fi
    local ldconfig
    ldconfig=$(command -v ldconfig 2>/dev/null || true)
    [ -n "$ldconfig" ] || [ ! -x /sbin/ldconfig ] || ldconfig=/sbin/ldconfig
    # The unversioned libpq.so (from libpq-dev) is what the linker needs; libpq.so.5 alone is not enough.
    if [ -n "$ldconfig" ] && "$ldconfig" -p 2>/dev/null | grep -q 'libpq\.so '; then
        return 0
    fi
    # pq-sys also asks pg_config for the library directory.
    if command -v pg_config >/dev/null 2>&1; then
        local libdir
        libdir=$(pg_config --libdir 2>/dev/null || true)
        [ -z "$libdir" ] || [ ! -e "$libdir/libpq.so" ] || return 0
        [ -z "$libdir" ] || [ ! -e "$libdir/libpq.dylib" ] || return 0
    fi
    return 1
}

ensure_libpq() {
    if have_libpq; then
        log "libpq (for diesel) found"
    elif can_apt; then
        apt_install libpq-dev pkg-config
        have_libpq || die "libpq still not found after installing libpq-dev"
        log "libpq installed (libpq-dev)"
    else
        die "libpq (needed to link diesel) is not installed:" \
            "  Debian/Ubuntu: sudo apt-get install -y libpq-dev pkg-config" \
            "  Fedora:        sudo dnf install libpq-devel pkgconf-pkg-config" \
            "  macOS:         brew install libpq pkg-config && export PKG_CONFIG_PATH=\"\$(brew --prefix libpq)/lib/pkgconfig\""
    fi
}

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
# One function per service: is it installed, and start it (installing it first when it is
# missing and apt can). Each takes the host and port pp_storage reported.
# ---------------------------------------------------------------------------------------------

# pg_server_version: the newest PostgreSQL server installed under the Debian layout.
pg_server_version() {
    local dir
    for dir in /usr/lib/postgresql/*/bin/postgres; do
        [ -x "$dir" ] || continue
        dir=${dir%/bin/postgres}
        printf '%s\n' "${dir##*/}"
    done | sort -n | tail -n 1
}

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

# pg_trust_loopback VERSION CLUSTER: lets user postgres connect over loopback TCP without a
# password (the default DATABASE_URL has none). Only for a cluster this script installed or started.
pg_trust_loopback() {
    local version=$1 cluster=$2 hba current missing="" line addr tmp
    hba=/etc/postgresql/$version/$cluster/pg_hba.conf
    if [ "$CAN_ROOT" -eq 0 ] && [ ! -w "$hba" ]; then
        log "warning: cannot edit $hba (not root); if migrations fail with an authentication error, add" \
            "'host all postgres 127.0.0.1/32 trust' and 'host all postgres ::1/128 trust' at its top"
        return 0
    fi
    current=$(privileged 10 cat "$hba") || die "cannot read $hba"
    for addr in 127.0.0.1/32 ::1/128; do
        line="host all postgres $addr trust"
        # Present already (for user postgres or all)?
        if printf '%s\n' "$current" | grep -Eq "^[[:space:]]*host[[:space:]]+all[[:space:]]+(postgres|all)[[:space:]]+${addr//./\\.}[[:space:]]+trust([[:space:]]|$)"; then
            continue
        fi
        missing="$missing$line"$'\n'
    done
    if [ -z "$missing" ]; then
        log "PostgreSQL $version/$cluster: pg_hba.conf already trusts user postgres on loopback; unchanged"
        return 0
    fi
    tmp=$(mktemp "${TMPDIR:-/tmp}/pp-setup-hba.XXXXXX")
    {
        printf '# Added by pp scripts/setup.sh: user postgres connects over loopback TCP without a password.\n'
        printf '%s' "$missing"
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
    printf '%s' "$missing" | sed 's/^/setup:   /'
}

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
# The tools of other targets
# ---------------------------------------------------------------------------------------------

SCHEMATHESIS_VERSION=4.32.5
CONTRACT_VENV=.venv-contract

# The contract fuzzer (`make contract`): schemathesis, pinned, in a project-local virtualenv;
# nothing is installed outside the project but, on Debian, python3-venv when it is missing.
ensure_contract_fuzzer() {
    local installed
    installed=$("$CONTRACT_VENV/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}' || true)
    if [ "$installed" = "$SCHEMATHESIS_VERSION" ]; then
        log "schemathesis $SCHEMATHESIS_VERSION found in $CONTRACT_VENV"
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || ! can_apt || apt_install python3 python3-venv
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        can_apt || die "python3 with its venv module is needed for make contract (Debian: apt-get install python3-venv)"
        apt_install python3-venv
    fi
    log "installing schemathesis $SCHEMATHESIS_VERSION into $CONTRACT_VENV"
    rm -rf "$CONTRACT_VENV"
    with_timeout 120 python3 -m venv "$CONTRACT_VENV" </dev/null || die "python3 -m venv $CONTRACT_VENV failed"
    with_timeout 900 "$CONTRACT_VENV/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" </dev/null ||
        die "pip install schemathesis==$SCHEMATHESIS_VERSION failed (is the package index reachable?)"
}

# The compose file's validator (`make compose-check`): Debian's docker-compose, which checks
# docker-compose.yml offline, without an engine. Elsewhere it is only suggested.
ensure_compose_validator() {
    if command -v docker-compose >/dev/null 2>&1; then
        log "docker-compose found (validates docker-compose.yml)"
    elif can_apt; then
        apt_install docker-compose
    else
        log "warning: docker-compose is not installed: make compose-check needs it (Debian: apt-get install docker-compose)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

# set_state SERVICE TEXT / state SERVICE: what happened to each service, for the summary.
set_state() { printf -v "STATE_$1" '%s' "$2"; }
state() { local name="STATE_$1"; printf '%s' "${!name:-}"; }

main() {
    local report rc service host port place reachable url missing="" remote_down=0
    local compose="" not_installed="" lines=()
    DB_STATE=
    ensure_libpq
    ensure_cargo
    build_storage
    report=$(storage check) && rc=0 || rc=$?
    [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || die "pp_storage check failed: fix the configuration it names"
    while read -r service host port place reachable url; do
        lines+=("$service $host:$port ($url)")
        case $place:$reachable in
            socket:*) set_state "$service" "Unix socket, not checked" ;;
            local:answers) log "$service answers on $host:$port" && set_state "$service" "already running" ;;
            remote:answers) log "$service answers on $host:$port" && set_state "$service" "remote, answering" ;;
            local:silent) log "$service does not answer on $host:$port" && missing="$missing $service:$host:$port" ;;
            *)
                err "$service does not answer on $host:$port ($url): it is not on this machine, so" \
                    "start it there or point the URL at a reachable server"
                remote_down=1
                ;;
        esac
    done <<<"$report"
    [ "$remote_down" -eq 0 ] || exit 1
    for service in $missing; do
        IFS=: read -r service host port <<<"$service"
        if "${service}_installed"; then
            "start_$service" "$host" "$port"
            set_state "$service" "started"
        elif can_apt; then
            "start_$service" "$host" "$port"
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
    migrate
    ensure_contract_fuzzer
    ensure_compose_validator
    # shellcheck source=scripts/setup-browser.sh
    source scripts/setup-browser.sh && setup_browser ||
        die "the dashboard's browser tests need Chromium and chromedriver"
    log "summary:"
    for url in "${lines[@]}"; do
        log "  $url: $(state "${url%% *}")"
    done
    log "  $DB_STATE"
}

main "$@"
