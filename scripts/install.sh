#!/usr/bin/env bash
# install.sh TOOL...: installs the tools a make target needs, each defined here once. A tool that
# is present is left alone (one line says so); a missing one is installed with apt (Debian/Ubuntu,
# as root or with passwordless sudo); where that is not possible the script says exactly what to
# install and exits non-zero. Idempotent, bounded in time, never prompts.
#
# Tools:
#   libpq           what Diesel links (libpq-dev, pkg-config)
#   chromium        Debian's chromium and chromium-driver at /usr/bin/chromium and
#                   /usr/bin/chromedriver: the dashboard's browser tests and screenshots
#   schemathesis    the contract fuzzer, pinned, in the project's .venv-contract
#   docker-compose  Debian's docker-compose, which validates docker-compose.yml without an engine
#   wrk             the HTTP load generator of the benchmarks
#   pgbench         PostgreSQL's benchmark (postgresql-contrib, for this machine's PostgreSQL)
#   nginx           Debian's nginx at /usr/sbin/nginx, for the tests behind a reverse proxy (they
#                   start their own on free ports; the package's own service is not started)
set -euo pipefail

cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/common.sh
. scripts/lib/common.sh
log_as install

SCHEMATHESIS_VERSION=4.32.5
CONTRACT_VENV=.venv-contract

# present TOOL DETAIL: the one line a tool that is already installed prints.
present() { log "$1 already present${2:+ ($2)}"; }

# cannot_install WHAT LINE...: WHAT is missing and apt cannot install it here: how to install it.
cannot_install() {
    local what=$1
    shift
    die "$what is missing and cannot be installed here ($(why_no_apt)); install it:" "${@/#/  }"
}

# ---------------------------------------------------------------------------------------------
# libpq
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

install_libpq() {
    if have_libpq; then
        present libpq "for diesel"
        return 0
    fi
    can_apt || cannot_install "libpq (needed to link diesel)" \
        "Debian/Ubuntu: sudo apt-get install -y libpq-dev pkg-config" \
        "Fedora:        sudo dnf install libpq-devel pkgconf-pkg-config" \
        "macOS:         brew install libpq pkg-config && export PKG_CONFIG_PATH=\"\$(brew --prefix libpq)/lib/pkgconfig\""
    apt_install libpq-dev pkg-config
    have_libpq || die "libpq still not found after installing libpq-dev"
    log "libpq installed (libpq-dev)"
}

# ---------------------------------------------------------------------------------------------
# chromium: the browser tests start /usr/bin/chromedriver and /usr/bin/chromium themselves and
# never download a browser, so Debian's packages are the only source.
# ---------------------------------------------------------------------------------------------

install_chromium() {
    local missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
    if [ "${#missing[@]}" -eq 0 ]; then
        present chromium "$(with_timeout 10 /usr/bin/chromedriver --version 2>/dev/null | awk '{print $1, $2}' || true)"
        return 0
    fi
    can_apt || cannot_install "Chromium and its chromedriver at /usr/bin/chromium and /usr/bin/chromedriver" \
        "Debian/Ubuntu: sudo apt-get install -y --no-install-recommends chromium chromium-driver" \
        "elsewhere:     your package manager's Chromium and chromedriver, linked at those two paths"
    apt_install "${missing[@]}"
    if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
        die "chromium or chromedriver is still missing after apt-get install ${missing[*]}"
    fi
    log "chromium installed (${missing[*]})"
}

# ---------------------------------------------------------------------------------------------
# schemathesis: pinned, in a project-local virtualenv; nothing is installed outside the project
# but, on Debian, python3-venv when it is missing.
# ---------------------------------------------------------------------------------------------

schemathesis_version() {
    "$CONTRACT_VENV/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}' || true
}

python_venv_ok() {
    command -v python3 >/dev/null 2>&1 &&
        with_timeout 30 python3 -m venv --help >/dev/null 2>&1 &&
        with_timeout 30 python3 -c 'import ensurepip' >/dev/null 2>&1
}

ensure_python_venv() {
    python_venv_ok && return 0
    can_apt || cannot_install "python3 with its venv module (for schemathesis)" \
        "Debian/Ubuntu: sudo apt-get install -y python3 python3-venv" \
        "macOS:         brew install python"
    apt_install python3 python3-venv
    python_venv_ok || die "python3 -m venv still does not work after apt-get install python3 python3-venv"
}

install_schemathesis() {
    if [ "$(schemathesis_version)" = "$SCHEMATHESIS_VERSION" ]; then
        present schemathesis "$SCHEMATHESIS_VERSION in $CONTRACT_VENV"
        return 0
    fi
    ensure_python_venv
    log "installing schemathesis $SCHEMATHESIS_VERSION into $CONTRACT_VENV"
    rm -rf "$CONTRACT_VENV"
    with_timeout 120 python3 -m venv "$CONTRACT_VENV" </dev/null || die "python3 -m venv $CONTRACT_VENV failed"
    with_timeout 900 "$CONTRACT_VENV/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" </dev/null ||
        die "pip install schemathesis==$SCHEMATHESIS_VERSION failed (is the package index reachable?)"
    [ "$(schemathesis_version)" = "$SCHEMATHESIS_VERSION" ] ||
        die "$CONTRACT_VENV/bin/schemathesis does not report version $SCHEMATHESIS_VERSION after pip install"
}

# ---------------------------------------------------------------------------------------------
# docker-compose, wrk, pgbench
# ---------------------------------------------------------------------------------------------

install_docker_compose() {
    if command -v docker-compose >/dev/null 2>&1; then
        present docker-compose "$(with_timeout 30 docker-compose --version 2>/dev/null || true)"
        return 0
    fi
    can_apt || cannot_install "docker-compose (validates docker-compose.yml without an engine)" \
        "Debian/Ubuntu: sudo apt-get install -y docker-compose" \
        "elsewhere:     the standalone docker-compose, https://docs.docker.com/compose/install/"
    apt_install docker-compose
    command -v docker-compose >/dev/null 2>&1 || die "docker-compose is still missing after apt-get install"
    log "docker-compose installed"
}

install_wrk() {
    if command -v wrk >/dev/null 2>&1; then
        present wrk "$(command -v wrk)"
        return 0
    fi
    can_apt || cannot_install wrk \
        "Debian/Ubuntu: sudo apt-get install -y wrk" \
        "macOS:         brew install wrk"
    apt_install wrk
    command -v wrk >/dev/null 2>&1 || die "wrk is still missing after apt-get install wrk"
    log "wrk installed"
}

# ---------------------------------------------------------------------------------------------
# nginx: the program only. Installing Debian's package would start its service on port 80; a
# policy-rc.d that forbids starting services is in place while it installs (unless one is there
# already), so nothing but the tests' own nginx ever runs.
# ---------------------------------------------------------------------------------------------

install_nginx() {
    if [ -x /usr/sbin/nginx ]; then
        present nginx "$(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //')"
        return 0
    fi
    can_apt || cannot_install "nginx at /usr/sbin/nginx" \
        "Debian/Ubuntu: sudo apt-get install -y --no-install-recommends nginx" \
        "elsewhere:     your package manager's nginx, linked at /usr/sbin/nginx"
    local policy=/usr/sbin/policy-rc.d placed=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# Placed by pp'"'"'s scripts/install.sh while nginx installs.\nexit 101\n' \
            | as_root 10 tee "$policy" >/dev/null
        as_root 10 chmod 755 "$policy"
        placed=1
    fi
    local status=0
    ( apt_install nginx ) || status=$?
    [ "$placed" -eq 0 ] || as_root 10 rm -f "$policy"
    [ "$status" -eq 0 ] || exit "$status"
    [ -x /usr/sbin/nginx ] || die "nginx is still missing after apt-get install nginx"
    log "nginx installed"
}

# Debian's /usr/bin/pgbench is a wrapper that exists with any PostgreSQL client and fails when no
# installed version has the real program: pgbench is there when it runs.
pgbench_works() {
    command -v pgbench >/dev/null 2>&1 && with_timeout 10 pgbench --version >/dev/null 2>&1
}

# pgbench_package: the Debian package with pgbench for this machine's PostgreSQL (the server's
# version, else the client's), so that no second major version is installed beside it.
pgbench_package() {
    local version
    version=$(pg_server_version)
    if [ -z "$version" ] && command -v psql >/dev/null 2>&1; then
        version=$(with_timeout 10 psql --version 2>/dev/null | awk '{print $3}' || true)
        version=${version%%.*}
    fi
    printf 'postgresql-contrib%s' "${version:+-$version}"
}

install_pgbench() {
    local package
    if pgbench_works; then
        present pgbench "$(pgbench --version 2>/dev/null)"
        return 0
    fi
    package=$(pgbench_package)
    can_apt || cannot_install pgbench \
        "Debian/Ubuntu: sudo apt-get install -y --no-install-recommends $package" \
        "macOS:         brew install postgresql@16 (pgbench comes with it)"
    apt_install "$package"
    pgbench_works || die "pgbench still does not run after apt-get install $package"
    log "pgbench installed ($package)"
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

TOOLS="libpq chromium schemathesis docker-compose wrk pgbench nginx"

install_tool() {
    case $1 in
        libpq) install_libpq ;;
        chromium) install_chromium ;;
        schemathesis) install_schemathesis ;;
        docker-compose) install_docker_compose ;;
        wrk) install_wrk ;;
        pgbench) install_pgbench ;;
        nginx) install_nginx ;;
        *) die "unknown tool: $1 (known: $TOOLS)" ;;
    esac
}

main() {
    local tool
    [ "$#" -gt 0 ] || die "usage: scripts/install.sh TOOL... (tools: $TOOLS)"
    for tool in "$@"; do
        install_tool "$tool"
    done
}

main "$@"
