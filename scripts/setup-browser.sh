#!/usr/bin/env bash
# setup-browser.sh: the browser the dashboard's tests drive (what `make setup` calls last).
#
# setup_browser: makes sure Debian's headless-capable Chromium and its WebDriver are installed at
# /usr/bin/chromium and /usr/bin/chromedriver (packages chromium and chromium-driver). Installs
# them with apt-get when they are missing and this is Debian or Ubuntu as root (or with
# passwordless sudo); else says what to install and fails. Idempotent, bounded in time, never
# prompts. Sourced by setup.sh, or run on its own: scripts/setup-browser.sh
setup_browser() {
    local missing=() sudo=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
    if [ "${#missing[@]}" -eq 0 ]; then
        printf 'setup: browser: %s\n' "$(/usr/bin/chromedriver --version 2>/dev/null | awk '{print $1, $2}')"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && timeout 5 sudo -n true </dev/null >/dev/null 2>&1; then
            sudo=(sudo -n)
        else
            printf 'setup: error: the dashboard browser tests need %s: install them (apt-get install chromium chromium-driver) or run make setup as root\n' "${missing[*]}" >&2
            return 1
        fi
    fi
    if [ ! -f /etc/debian_version ] || ! command -v apt-get >/dev/null 2>&1; then
        printf 'setup: error: the dashboard browser tests need Chromium and its chromedriver at /usr/bin/chromium and /usr/bin/chromedriver: install them with your package manager\n' >&2
        return 1
    fi
    printf 'setup: installing %s (apt) for the dashboard browser tests\n' "${missing[*]}"
    "${sudo[@]}" timeout 600 env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -qq update </dev/null ||
        { printf 'setup: error: apt-get update failed\n' >&2; return 1; }
    "${sudo[@]}" timeout 1200 env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -qq install -y \
        --no-install-recommends chromium chromium-driver </dev/null >/dev/null ||
        { printf 'setup: error: apt-get install chromium chromium-driver failed\n' >&2; return 1; }
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] ||
        { printf 'setup: error: chromium or chromedriver is still missing after apt-get install\n' >&2; return 1; }
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    setup_browser
fi
