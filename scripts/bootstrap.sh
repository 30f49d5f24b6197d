#!/usr/bin/env bash
# Shared set-up for run.sh and test.sh: system packages (Debian / Raspberry Pi OS) and
# the project's virtualenv in .venv. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "bootstrap: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

if command -v dpkg >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    apt_install python3 python3-venv ${P1DAEMON_APT_EXTRA:-}
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
extras=${P1DAEMON_EXTRAS:-smarty}
version=$(sha1sum pyproject.toml | cut -c1-12)
stamp=".venv/.installed-$extras-$version"
# The dev extras include everything the smarty extra brings.
if [ ! -f "$stamp" ] && [ ! -f ".venv/.installed-dev-$version" ]; then
    echo "bootstrap: installing p1daemon[$extras] into .venv (log: .venv/pip.log)" >&2
    # Build-backend chatter goes to the log; it is shown only when the install fails.
    if ! { .venv/bin/python -m pip install -q --upgrade pip \
        && .venv/bin/python -m pip install -q -e ".[$extras]"; } >.venv/pip.log 2>&1; then
        cat .venv/pip.log >&2
        echo "bootstrap: pip install failed (above)" >&2
        exit 1
    fi
    touch "$stamp"
fi
