#!/usr/bin/env bash
# setup.sh: makes this machine ready to build, test and run pp (what `make setup` runs).
#
#   1. Checks that PostgreSQL, RabbitMQ and Redis answer on TCP, at the host and port taken from
#      DATABASE_URL, AMQP_URL and REDIS_URL (environment first, then ./.env, then the defaults
#      127.0.0.1:5432, 127.0.0.1:5672, 127.0.0.1:6379).
#   2. Starts a local (loopback) service that does not answer, without systemd: the installed
#      server if there is one; else installs it with apt (Debian/Ubuntu, as root or with
#      passwordless sudo); else runs it with Docker Compose; else says what to install and fails.
#      A service on another host is only checked, never started.
#   3. Checks the build prerequisites (libpq for diesel, cargo) and installs libpq with apt when
#      it can.
#   4. Creates the database if missing and applies the migrations (`cargo run -p pp_storage --
#      migrate`), unless PP_SETUP_SKIP_MIGRATE=1.
#
# Idempotent: a second run changes nothing. Never prompts and never waits without a bound: every
# network probe and every wait has a timeout. Passwords in URLs are never printed.
#
# Environment: DATABASE_URL, AMQP_URL, REDIS_URL (as for the binaries); PP_SETUP_SKIP_MIGRATE=1
# skips step 4; PP_SETUP_CARGO_TIMEOUT (seconds, default 1800) bounds the build + migrate step.
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
# Helpers
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

# tcp_open HOST PORT: true when a TCP connection succeeds within 2 seconds.
tcp_open() {
    # shellcheck disable=SC2016 # $1 and $2 are expanded by the inner bash, on purpose
    with_timeout 2 "$BASH" -c 'exec 3<>"/dev/tcp/$1/$2"' tcp_open "$1" "$2" </dev/null >/dev/null 2>&1
}

# wait_for_port LABEL HOST PORT SECONDS: polls every second until the port answers; false on timeout.
wait_for_port() {
    local label=$1 host=$2 port=$3 limit=$4
    local deadline=$((SECONDS + limit))
    log "waiting for $label on $host:$port (at most ${limit}s)"
    while [ "$SECONDS" -lt "$deadline" ]; do
        if tcp_open "$host" "$port"; then
            return 0
        fi
        sleep 1
    done
    tcp_open "$host" "$port"
}

# redact_url URL: the URL with any password replaced by *** (user:pass@ -> user:***@).
redact_url() {
    local url=$1 scheme rest authority tail userinfo
    case $url in
        *://*) ;;
        *)
            printf '%s' "$url"
            return
            ;;
    esac
    scheme=${url%%://*}
    rest=${url#*://}
    authority=${rest%%[/?#]*}
    tail=${rest#"$authority"}
    case $authority in
        *@*)
            userinfo=${authority%@*}
            case $userinfo in
                *:*) authority="${userinfo%%:*}:***@${authority##*@}" ;;
            esac
            ;;
    esac
    # libpq also accepts ?password=... in the query string.
    tail=$(printf '%s' "$tail" | sed -E 's/([?&]password=)[^&#]*/\1***/g')
    printf '%s://%s%s' "$scheme" "$authority" "$tail"
}

# dotenv_value KEY: the value of KEY in ./.env (first occurrence, like dotenvy), or nothing.
dotenv_value() {
    local want=$1 line key value
    [ -f .env ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        line=${line#"${line%%[![:space:]]*}"}
        case $line in
            export[[:space:]]*) line=${line#export} && line=${line#"${line%%[![:space:]]*}"} ;;
        esac
        case $line in
            \#* | '' | [!A-Za-z_]*) continue ;;
            *=*) ;;
            *) continue ;;
        esac
        key=${line%%=*}
        key=${key%"${key##*[![:space:]]}"}
        [ "$key" = "$want" ] || continue
        value=${line#*=}
        value=${value#"${value%%[![:space:]]*}"}
        case $value in
            \"*\") value=${value#\"} && value=${value%\"} ;;
            \'*\') value=${value#\'} && value=${value%\'} ;;
            *) value=${value%"${value##*[![:space:]]}"} ;;
        esac
        printf '%s' "$value"
        return 0
    done <.env
}

# parse_url URL DEFAULT_PORT: sets URL_HOST and URL_PORT. An empty host means the local default.
parse_url() {
    local url=$1 rest authority hostport after
    rest=${url#*://}
    authority=${rest%%[/?#]*}
    hostport=${authority##*@}
    case $hostport in
        \[*\]*)
            URL_HOST=${hostport#\[}
            URL_HOST=${URL_HOST%%\]*}
            after=${hostport#*\]}
            URL_PORT=${after#:}
            ;;
        *:*)
            URL_HOST=${hostport%%:*}
            URL_PORT=${hostport#*:}
            ;;
        *)
            URL_HOST=$hostport
            URL_PORT=
            ;;
    esac
    [ -n "$URL_HOST" ] || URL_HOST=127.0.0.1
    [ -n "$URL_PORT" ] || URL_PORT=$2
    case $URL_PORT in
        '' | *[!0-9]*) return 1 ;;
    esac
    [ "$URL_PORT" -ge 1 ] && [ "$URL_PORT" -le 65535 ]
}

is_loopback() {
    case $1 in
        127.0.0.1 | localhost | ::1) return 0 ;;
        *) return 1 ;;
    esac
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

IS_DEBIAN=0
[ -f /etc/debian_version ] && IS_DEBIAN=1

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

# Runs a daemon start command with its output in a file (never a pipe: a daemon that kept the pipe
# open would make `make setup | tee` hang). Prints the output and fails when the command fails.
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
# Services
# ---------------------------------------------------------------------------------------------

SERVICES="pg amqp redis"

# Per service: LABEL, URL (redacted for display), HOST, PORT, LOCAL (1 = ours to start),
# WAIT (seconds), COMPOSE (service in docker-compose.yml), PKGS (apt), STATE (for the summary).
# shellcheck disable=SC2034 # read through get() with indirect expansion
{
    pg_LABEL=PostgreSQL
    pg_WAIT=60
    pg_COMPOSE=postgres
    pg_PKGS="postgresql postgresql-contrib"
    pg_DEFAULT_PORT=5432
    amqp_LABEL=RabbitMQ
    amqp_WAIT=90
    amqp_COMPOSE=rabbitmq
    amqp_PKGS="rabbitmq-server"
    amqp_DEFAULT_PORT=5672
    redis_LABEL=Redis
    redis_WAIT=60
    redis_COMPOSE=redis
    redis_PKGS="redis-server"
    redis_DEFAULT_PORT=6379
}

get() { local name="$1_$2"; printf '%s' "${!name}"; }
set_var() { printf -v "$1_$2" '%s' "$3"; }

# The URL a service is configured with: environment, else .env, else the default.
configured_url() {
    local var=$1 default=$2 value
    value=${!var:-}
    [ -n "$value" ] || value=$(dotenv_value "$var")
    [ -n "$value" ] || value=$default
    printf '%s' "$value"
}

configure() {
    local svc=$1 var=$2 default=$3 url scheme default_port
    url=$(configured_url "$var" "$default")
    scheme=${url%%://*}
    [ "$scheme" != "$url" ] || die "$var is not a URL: $(redact_url "$url")"
    default_port=$(get "$svc" DEFAULT_PORT)
    case $svc:$scheme in
        pg:postgres | pg:postgresql) ;;
        amqp:amqp) ;;
        amqp:amqps) default_port=5671 ;;
        redis:redis | redis:rediss) ;;
        redis:unix | redis:redis+unix)
            set_var "$svc" URL "$(redact_url "$url")"
            set_var "$svc" STATE "Unix socket, not checked"
            set_var "$svc" LOCAL 0
            set_var "$svc" SKIP 1
            return 0
            ;;
        *) die "$var has an unsupported scheme '$scheme': $(redact_url "$url")" ;;
    esac
    parse_url "$url" "$default_port" || die "cannot read a host and port from $var=$(redact_url "$url")"
    set_var "$svc" URL "$(redact_url "$url")"
    set_var "$svc" HOST "$URL_HOST"
    set_var "$svc" PORT "$URL_PORT"
    set_var "$svc" SKIP 0
    if is_loopback "$URL_HOST"; then
        set_var "$svc" LOCAL 1
    else
        set_var "$svc" LOCAL 0
    fi
    set_var "$svc" STATE ""
}

configure pg DATABASE_URL "postgres://postgres@127.0.0.1:5432/personalproject"
configure amqp AMQP_URL "amqp://guest:guest@127.0.0.1:5672/%2f"
configure redis REDIS_URL "redis://127.0.0.1:6379"

# server_installed SVC: true when the service's server can be started from this machine.
pg_server_version() {
    # The newest PostgreSQL server installed under the Debian layout.
    local dir
    for dir in /usr/lib/postgresql/*/bin/postgres; do
        [ -x "$dir" ] || continue
        dir=${dir%/bin/postgres}
        printf '%s\n' "${dir##*/}"
    done | sort -n | tail -n 1
}

server_installed() {
    case $1 in
        pg) command -v pg_ctlcluster >/dev/null 2>&1 && [ -n "$(pg_server_version)" ] ;;
        amqp) command -v rabbitmq-server >/dev/null 2>&1 ;;
        redis) command -v redis-server >/dev/null 2>&1 ;;
    esac
}

PG_STARTED_CLUSTER=

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

# pg_ensure_cluster: creates cluster VERSION/main when a server is installed but has no cluster.
pg_ensure_cluster() {
    local version
    [ -z "$(pg_clusters)" ] || return 0
    version=$(pg_server_version)
    log "PostgreSQL $version is installed but has no cluster: pg_createcluster $version main"
    run_start "PostgreSQL (pg_createcluster)" privileged 120 pg_createcluster "$version" main ||
        die "pg_createcluster $version main failed"
}

# pg_pick_cluster PORT: prints "VERSION CLUSTER PORT" of the cluster to start: the one on PORT,
# else the newest version's "main", else the first one.
pg_pick_cluster() {
    local want=$1 clusters
    clusters=$(pg_clusters)
    [ -n "$clusters" ] || die "no PostgreSQL cluster found under /etc/postgresql"
    printf '%s\n' "$clusters" | awk -v p="$want" '$3 == p { print; found = 1; exit } END { if (!found) exit 1 }' && return
    printf '%s\n' "$clusters" | awk '$2 == "main"' | sort -n | tail -n 1 | grep . && return
    printf '%s\n' "$clusters" | head -n 1
}

# start_installed SVC: starts the installed server (no systemd), then waits for its port.
start_installed() {
    local svc=$1 label host port
    label=$(get "$svc" LABEL)
    host=$(get "$svc" HOST)
    port=$(get "$svc" PORT)
    case $svc in
        pg)
            local picked version cluster cport
            pg_ensure_cluster
            picked=$(pg_pick_cluster "$port")
            read -r version cluster cport <<<"$picked"
            [ "$cport" = "$port" ] ||
                log "warning: PostgreSQL cluster $version/$cluster listens on port $cport, DATABASE_URL says $port"
            log "starting PostgreSQL cluster $version/$cluster: pg_ctlcluster --skip-systemctl-redirect $version $cluster start"
            run_start "$label" privileged 120 pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start ||
                die "pg_ctlcluster $version $cluster start failed (log: /var/log/postgresql/postgresql-$version-$cluster.log)"
            PG_STARTED_CLUSTER="$version $cluster"
            ;;
        amqp)
            log "starting RabbitMQ: rabbitmq-server -detached"
            run_start "$label" privileged 60 rabbitmq-server -detached ||
                die "rabbitmq-server -detached failed (logs: /var/log/rabbitmq/)"
            ;;
        redis)
            local bind=127.0.0.1
            [ "$host" != "::1" ] || bind=::1
            log "starting Redis: redis-server --daemonize yes --bind $bind --port $port --save \"\""
            run_start "$label" with_timeout 30 redis-server --daemonize yes --bind "$bind" --port "$port" --save "" ||
                die "redis-server failed to start"
            ;;
    esac
    wait_for_port "$label" "$host" "$port" "$(get "$svc" WAIT)" ||
        die "$label did not answer on $host:$port within $(get "$svc" WAIT)s after being started" \
            "$(start_hint "$svc")"
}

start_hint() {
    case $1 in
        pg) printf '%s' "see /var/log/postgresql/ and \`pg_lsclusters\`" ;;
        amqp) printf '%s' "see /var/log/rabbitmq/ and \`rabbitmqctl status\`" ;;
        redis) printf "run \`redis-server --port %s\` in a terminal to see why it stops" "$(get redis PORT)" ;;
    esac
}

# pg_trust_loopback "VERSION CLUSTER": lets user postgres connect over loopback TCP without a
# password (the default DATABASE_URL has none). Only for a cluster this script installed or started.
pg_trust_loopback() {
    local version cluster hba current missing="" line addr tmp
    read -r version cluster <<<"$1"
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

# ---------------------------------------------------------------------------------------------
# a. Probe
# ---------------------------------------------------------------------------------------------

MISSING=""
REMOTE_DOWN=0
for svc in $SERVICES; do
    [ "$(get "$svc" SKIP)" = 0 ] || continue
    label=$(get "$svc" LABEL)
    host=$(get "$svc" HOST)
    port=$(get "$svc" PORT)
    if tcp_open "$host" "$port"; then
        log "$label answers on $host:$port"
        if [ "$(get "$svc" LOCAL)" = 1 ]; then
            set_var "$svc" STATE "already running"
        else
            set_var "$svc" STATE "remote, answering"
        fi
    elif [ "$(get "$svc" LOCAL)" = 1 ]; then
        log "$label does not answer on $host:$port"
        MISSING="$MISSING $svc"
    else
        err "$label does not answer on $host:$port ($(get "$svc" URL)): it is not on this machine, so" \
            "start it there or point the URL at a reachable server"
        REMOTE_DOWN=1
    fi
done
[ "$REMOTE_DOWN" -eq 0 ] || exit 1

# ---------------------------------------------------------------------------------------------
# b. Start what is missing
# ---------------------------------------------------------------------------------------------

# 1) Installed servers: start them.
NOT_INSTALLED=""
for svc in $MISSING; do
    if server_installed "$svc"; then
        start_installed "$svc"
        set_var "$svc" STATE "started"
        if [ "$svc" = pg ] && [ -n "$PG_STARTED_CLUSTER" ]; then
            pg_trust_loopback "$PG_STARTED_CLUSTER"
        fi
    else
        NOT_INSTALLED="$NOT_INSTALLED $svc"
    fi
done

docker_engine_ok() {
    command -v docker >/dev/null 2>&1 && with_timeout 10 docker info </dev/null >/dev/null 2>&1
}

install_instructions() {
    local pkgs="" brew="" starts="" composes="" svc
    for svc in $NOT_INSTALLED; do
        pkgs="$pkgs $(get "$svc" PKGS)"
        composes="$composes $(get "$svc" COMPOSE)"
        case $svc in
            pg) brew="$brew postgresql@16" && starts="$starts && brew services start postgresql@16" ;;
            amqp) brew="$brew rabbitmq" && starts="$starts && brew services start rabbitmq" ;;
            redis) brew="$brew redis" && starts="$starts && brew services start redis" ;;
        esac
    done
    err "not running and not installed:$(for svc in $NOT_INSTALLED; do printf ' %s' "$(get "$svc" LABEL)"; done)"
    err "install and start them one of these ways, then run \`make setup\` again:"
    err "  Debian/Ubuntu: sudo apt-get install -y --no-install-recommends$pkgs"
    err "                 (this script does that itself when run as root or with passwordless sudo)"
    err "  macOS:         brew install$brew$starts"
    case " $NOT_INSTALLED " in
        *" pg "*) err "                 (then: createuser -s postgres   so that the default DATABASE_URL works)" ;;
    esac
    err "  Docker:        docker compose up -d --wait$composes   (from $(pwd))"
    exit 1
}

if [ -n "$NOT_INSTALLED" ]; then
    if [ "$IS_DEBIAN" -eq 1 ] && [ "$CAN_ROOT" -ne 0 ]; then
        # 2) Debian/Ubuntu with root: install with apt, then start.
        pkgs=""
        for svc in $NOT_INSTALLED; do pkgs="$pkgs $(get "$svc" PKGS)"; done
        # shellcheck disable=SC2086 # word splitting of the package list is intended
        apt_install $pkgs
        for svc in $NOT_INSTALLED; do
            server_installed "$svc" || die "$(get "$svc" LABEL) is still not installed after apt-get install"
            # The package's postinst may have started it already.
            if tcp_open "$(get "$svc" HOST)" "$(get "$svc" PORT)"; then
                log "$(get "$svc" LABEL) answers after installation"
                if [ "$svc" = pg ]; then
                    picked=$(pg_pick_cluster "$(get pg PORT)")
                    read -r version cluster _ <<<"$picked"
                    PG_STARTED_CLUSTER="$version $cluster"
                fi
            else
                start_installed "$svc"
            fi
            set_var "$svc" STATE "installed and started"
            if [ "$svc" = pg ] && [ -n "$PG_STARTED_CLUSTER" ]; then
                pg_trust_loopback "$PG_STARTED_CLUSTER"
            fi
        done
    elif docker_engine_ok; then
        # 3) Docker: the services of docker-compose.yml (ports on 127.0.0.1, default ports).
        composes=""
        for svc in $NOT_INSTALLED; do
            composes="$composes $(get "$svc" COMPOSE)"
            [ "$(get "$svc" PORT)" = "$(get "$svc" DEFAULT_PORT)" ] ||
                log "warning: docker-compose.yml publishes $(get "$svc" LABEL) on port $(get "$svc" DEFAULT_PORT), the URL says $(get "$svc" PORT)"
        done
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
        for svc in $NOT_INSTALLED; do
            wait_for_port "$(get "$svc" LABEL)" "$(get "$svc" HOST)" "$(get "$svc" PORT)" "$(get "$svc" WAIT)" ||
                die "$(get "$svc" LABEL) did not answer on $(get "$svc" HOST):$(get "$svc" PORT) within $(get "$svc" WAIT)s (docker compose logs $(get "$svc" COMPOSE))"
            set_var "$svc" STATE "via docker"
        done
    else
        # 4) Nothing we can do here.
        install_instructions
    fi
fi

# ---------------------------------------------------------------------------------------------
# c. Build prerequisites
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

if have_libpq; then
    log "libpq (for diesel) found"
elif [ "$IS_DEBIAN" -eq 1 ] && [ "$CAN_ROOT" -ne 0 ]; then
    apt_install libpq-dev pkg-config
    have_libpq || die "libpq still not found after installing libpq-dev"
    log "libpq installed (libpq-dev)"
else
    die "libpq (needed to link diesel) is not installed:" \
        "  Debian/Ubuntu: sudo apt-get install -y libpq-dev pkg-config" \
        "  Fedora:        sudo dnf install libpq-devel pkgconf-pkg-config" \
        "  macOS:         brew install libpq pkg-config && export PKG_CONFIG_PATH=\"\$(brew --prefix libpq)/lib/pkgconfig\""
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        die "cargo is installed in ~/.cargo/bin but not on PATH: run \`. \"\$HOME/.cargo/env\"\` (or open a new shell)"
    fi
    die "cargo not found: install Rust with rustup (https://rustup.rs):" \
        "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
fi
log "$(cargo --version 2>/dev/null || echo 'cargo found')"

# ---------------------------------------------------------------------------------------------
# d. Database and migrations
# ---------------------------------------------------------------------------------------------

DB_STATE=
if [ "${PP_SETUP_SKIP_MIGRATE:-0}" = 1 ]; then
    log "PP_SETUP_SKIP_MIGRATE=1: skipping database creation and migrations"
    DB_STATE="database not migrated (PP_SETUP_SKIP_MIGRATE=1)"
else
    cargo_timeout=${PP_SETUP_CARGO_TIMEOUT:-1800}
    log "migrating $(get pg URL): cargo run --quiet -p pp_storage -- migrate (the first build takes a few minutes)"
    out=$(mktemp "${TMPDIR:-/tmp}/pp-setup-out.XXXXXX")
    errout=$(mktemp "${TMPDIR:-/tmp}/pp-setup-err.XXXXXX")
    trap 'rm -f "$START_LOG" "$out" "$errout"' EXIT
    if with_timeout "$cargo_timeout" cargo run --quiet -p pp_storage -- migrate </dev/null >"$out" 2>"$errout"; then
        sed 's/^/setup:   /' "$out"
    else
        rc=$?
        sed 's/^/setup:   /' "$out"
        tail -n 40 "$errout" | sed 's/^/setup: error:   /' >&2
        if [ "$rc" -eq 124 ]; then
            die "build + migrate did not finish within ${cargo_timeout}s (PP_SETUP_CARGO_TIMEOUT)"
        fi
        die "cargo run -p pp_storage -- migrate failed (exit $rc), output above: either the build failed, or" \
            "the database server (answering on $(get pg HOST):$(get pg PORT)) refused; then check DATABASE_URL" \
            "($(get pg URL)) and that its user may log in and create databases"
    fi
    DB_STATE="database ready"
fi

# ---------------------------------------------------------------------------------------------
# d2. The contract fuzzer (`make contract`): schemathesis, pinned, in .venv-contract
# ---------------------------------------------------------------------------------------------

SCHEMATHESIS_VERSION=4.32.5
CONTRACT_VENV=.venv-contract

# Creates the project-local virtualenv if needed and installs the pinned schemathesis in it;
# nothing is installed outside the project but, on Debian, python3-venv when it is missing.
install_contract_fuzzer() {
    local installed
    installed=$("$CONTRACT_VENV/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}' || true)
    if [ "$installed" = "$SCHEMATHESIS_VERSION" ]; then
        log "schemathesis $SCHEMATHESIS_VERSION found in $CONTRACT_VENV"
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || {
        [ "$IS_DEBIAN" -eq 1 ] && [ "$CAN_ROOT" -ne 0 ] && apt_install python3 python3-venv
    }
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        if [ "$IS_DEBIAN" -eq 1 ] && [ "$CAN_ROOT" -ne 0 ]; then
            apt_install python3-venv
        else
            die "python3 with its venv module is needed for make contract (Debian: apt-get install python3-venv)"
        fi
    fi
    log "installing schemathesis $SCHEMATHESIS_VERSION into $CONTRACT_VENV"
    rm -rf "$CONTRACT_VENV"
    with_timeout 120 python3 -m venv "$CONTRACT_VENV" </dev/null || die "python3 -m venv $CONTRACT_VENV failed"
    with_timeout 900 "$CONTRACT_VENV/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" </dev/null ||
        die "pip install schemathesis==$SCHEMATHESIS_VERSION failed (is the package index reachable?)"
}

install_contract_fuzzer

source scripts/setup-browser.sh && setup_browser || die "the dashboard's browser tests need Chromium and chromedriver"

# ---------------------------------------------------------------------------------------------
# e. Summary
# ---------------------------------------------------------------------------------------------

log "summary:"
for svc in $SERVICES; do
    if [ "$(get "$svc" SKIP)" = 1 ]; then
        log "  $(get "$svc" LABEL): $(get "$svc" STATE) ($(get "$svc" URL))"
    else
        log "  $(get "$svc" LABEL) $(get "$svc" HOST):$(get "$svc" PORT): $(get "$svc" STATE)"
    fi
done
log "  $DB_STATE"
