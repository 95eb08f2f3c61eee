# shellcheck shell=bash
# common.sh: what the shell scripts share (sourced, never run): logging, bounded commands, root,
# and the one way anything is installed with apt (apt_install).
#
# The caller chooses its messages' prefix with `log_as ROLE` (e.g. `log_as setup`). Sourcing this
# file asks sudo, once and without a prompt, whether it may run commands as root.

# ---------------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------------

LOG_ROLE=pp

# log_as ROLE: prefixes every later message with "ROLE: ".
log_as() { LOG_ROLE=$1; }

log() { printf '%s: %s\n' "$LOG_ROLE" "$*"; }
err() { printf '%s: error: %s\n' "$LOG_ROLE" "$*" >&2; }

# die LINE...: each LINE as an error, then exit 1.
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

# Root: either we are root (1), or sudo works without a password (2): a script must never stop
# at a password prompt, so a sudo that would ask counts as none (0).
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

# run_start LABEL COMMAND...: runs a daemon's start command with its output in a file (never a
# pipe: a daemon that kept the pipe open would make `make setup | tee` hang); prints the output
# and fails when the command fails.
run_start() {
    local label=$1 out
    shift
    out=$(mktemp "${TMPDIR:-/tmp}/pp-start.XXXXXX")
    if "$@" </dev/null >"$out" 2>&1; then
        rm -f "$out"
        return 0
    fi
    err "could not start $label:"
    sed "s/^/$LOG_ROLE: error:   /" "$out" >&2
    rm -f "$out"
    return 1
}

# ---------------------------------------------------------------------------------------------
# Installing packages: apt only, as root or with passwordless sudo
# ---------------------------------------------------------------------------------------------

# can_apt: true on Debian/Ubuntu when we can be root.
can_apt() { [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1 && [ "$CAN_ROOT" -ne 0 ]; }

# why_no_apt: why can_apt is false, as a phrase.
why_no_apt() {
    if [ ! -f /etc/debian_version ] || ! command -v apt-get >/dev/null 2>&1; then
        printf 'this is not Debian or Ubuntu'
    else
        printf 'installing needs root or passwordless sudo'
    fi
}

# apt_install PKG...: installs the Debian packages PKG, never prompting, bounded in time. The
# package lists are refreshed once per process (the first install needs them; the next ones do
# not). Fails naming what to install when apt cannot be used here.
APT_UPDATED=0
apt_install() {
    can_apt || die "cannot install $* here ($(why_no_apt)); install it yourself:" \
        "  Debian/Ubuntu: sudo apt-get install -y --no-install-recommends $*"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root 600 env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -qq update </dev/null ||
            die "apt-get update failed or timed out (is the package mirror reachable?)"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    # A configuration file changed locally is kept rather than asked about.
    as_root 1200 env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -qq install -y \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        --no-install-recommends "$@" </dev/null >/dev/null ||
        die "apt-get install $* failed or timed out (output above)"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL's Debian layout
# ---------------------------------------------------------------------------------------------

# pg_server_version: the newest PostgreSQL server installed under the Debian layout (empty if none).
pg_server_version() {
    local dir
    for dir in /usr/lib/postgresql/*/bin/postgres; do
        [ -x "$dir" ] || continue
        dir=${dir%/bin/postgres}
        printf '%s\n' "${dir##*/}"
    done | sort -n | tail -n 1
}
