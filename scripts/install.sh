#!/usr/bin/env bash
# Install (or update) p1daemon as a systemd service from the checkout this script is in:
#
#   sudo ./scripts/install.sh
#
# Safe to run again: the virtualenv is reused, the package and the unit are refreshed, an
# existing configuration is never touched, and the service is restarted on the new code.
# Needs no compiler: every dependency is pure Python or ships prebuilt wheels for 32- and
# 64-bit Arm (pydantic-core), which pip picks up from PyPI (or piwheels on Raspberry Pi OS).
#
# Environment overrides (the tests install into a temporary root with these):
#   P1DAEMON_ROOT       prefix for every installed path, like DESTDIR (default: none)
#   P1DAEMON_PYTHON     interpreter for the virtualenv (default: python3, must be >= 3.11)
#   P1DAEMON_EXTRAS     optional extras, e.g. "smarty" for Luxembourg meters (default: none)
#   P1DAEMON_VENV_ARGS  extra arguments for `python -m venv`
#   P1DAEMON_PIP_ARGS   extra arguments for `pip install`
#   SYSTEMCTL           the systemctl command (default: systemctl)
#   MODPROBE            the modprobe command (default: modprobe)
set -euo pipefail

say() { printf 'install.sh: %s\n' "$*"; }
die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=${P1DAEMON_ROOT:-}
root=${root%/}
python=${P1DAEMON_PYTHON:-python3}
extras=${P1DAEMON_EXTRAS:-}
read -r -a venv_args <<<"${P1DAEMON_VENV_ARGS:-}"
read -r -a pip_args <<<"${P1DAEMON_PIP_ARGS:-}"
read -r -a systemctl <<<"${SYSTEMCTL:-systemctl}"
read -r -a modprobe <<<"${MODPROBE:-modprobe}"

venv=$root/opt/p1daemon/venv
conf_dir=$root/etc/p1daemon
config=$conf_dir/p1daemon.toml
env_file=$conf_dir/p1daemon.env
unit_dir=$root/etc/systemd/system
unit=p1daemon.service
modules_conf=$root/etc/modules-load.d/p1daemon.conf
example=$src/config/p1daemon.example.toml

if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    die "must run as root to install into /opt and /etc: sudo $0"
fi
if [ ! -f "$src/pyproject.toml" ] || [ ! -f "$src/systemd/$unit" ] ||
    [ ! -f "$src/systemd/p1daemon-modules.conf" ]; then
    die "$src is not a p1daemon checkout (no pyproject.toml or files in systemd/)"
fi
command -v "$python" >/dev/null 2>&1 ||
    die "$python not found: sudo apt install python3 python3-venv"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "needs Python >= 3.11; $python is $("$python" -V 2>&1)"
[ -f "$example" ] || die "missing $example in the checkout"

# --- virtualenv: reused while it runs the same Python version as $python -----------------
version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
wanted=$(version "$python")
if [ -x "$venv/bin/python" ] && [ "$(version "$venv/bin/python")" = "$wanted" ]; then
    say "reusing virtualenv $venv (Python $wanted)"
else
    [ -e "$venv" ] && say "replacing virtualenv $venv (not Python $wanted)"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    say "creating virtualenv $venv (Python $wanted)"
    if ! "$python" -m venv "${venv_args[@]}" "$venv"; then
        rm -rf "$venv"
        die "cannot create a virtualenv: sudo apt install python3-venv"
    fi
fi

# --- the package: built from a clean copy, so the checkout gets no build/ or egg-info ----
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
tar -C "$src" --exclude=./.git --exclude=./.venv --exclude=./build --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude='./.*_cache' -cf - . | tar -C "$build" -xf -
spec=$build
if [ -n "$extras" ]; then spec="${build}[$extras]"; fi
say "installing p1daemon from $src${extras:+ with extras [$extras]}"
PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$venv/bin/python" -m pip install --quiet --no-input "${pip_args[@]}" "$spec" ||
    die "pip could not install p1daemon (see above)"
installed=$("$venv/bin/p1daemon" --version) || die "the installed p1daemon does not run"
say "installed: $installed"

# --- configuration: an example on first install, never overwritten --------------------
mkdir -p "$conf_dir"
if [ -e "$config" ]; then
    say "keeping existing configuration $config"
else
    install -m 0644 "$example" "$config"
    say "placed an example configuration in $config: edit it for your meters"
fi
if [ ! -e "$env_file" ]; then
    # Secrets go here, not in the world-readable TOML file: systemd reads this file as
    # root before starting the service under its own unprivileged user.
    (
        umask 077
        cat >"$env_file" <<'EOF'
# Secrets for p1daemon, read by systemd (EnvironmentFile=) and kept root-only (0600).
# Uncomment what you need, then: sudo systemctl restart p1daemon
#P1DAEMON_MQTT_USERNAME=p1daemon
#P1DAEMON_MQTT_PASSWORD=change-me
# Smarty decryption key of the meter named "house" (32 hex digits), Luxembourg only:
#P1DAEMON_METER_HOUSE_KEY=00112233445566778899AABBCCDDEEFF
EOF
    )
    say "placed $env_file for secrets (root-only)"
fi

# --- unit ------------------------------------------------------------------------------
mkdir -p "$unit_dir"
install -m 0644 "$src/systemd/$unit" "$unit_dir/$unit"
say "placed $unit_dir/$unit"

# --- USB serial drivers: loaded at boot, before the service, and now --------------------
# The unit allows serial ports by driver class, which systemd resolves only for drivers
# loaded when the service starts; see systemd/p1daemon-modules.conf. Loading them now
# makes the restart below resolve them; failing to is not fatal (a kernel without them
# as modules, a container): the file still loads them at every boot.
mkdir -p "$(dirname "$modules_conf")"
install -m 0644 "$src/systemd/p1daemon-modules.conf" "$modules_conf"
say "placed $modules_conf (USB serial drivers, loaded at boot)"
mapfile -t modules < <(sed -e 's/[#;].*//' -e '/^[[:space:]]*$/d' "$modules_conf")
if ! "${modprobe[@]}" -a "${modules[@]}"; then
    say "(could not load ${modules[*]} now; they load at the next boot)"
fi

# --- check, then start -----------------------------------------------------------------
# A summary, not every key: the problems (on stderr) or what will run is what matters
# here; `p1daemon check-config PATH` without --summary shows every setting.
say "checking $config"
if ! "$venv/bin/p1daemon" check-config --summary "$config"; then
    die "the configuration has errors (above); fix $config, then run $0 again"
fi
"${systemctl[@]}" daemon-reload
"${systemctl[@]}" enable "$unit"
# restart, not start: after an update the running daemon must pick up the new code.
if ! "${systemctl[@]}" restart "$unit"; then
    die "p1daemon did not start; see: journalctl -u p1daemon -n 50"
fi
say "p1daemon is running. Watch it with:"
say "  systemctl status p1daemon"
say "  journalctl -u p1daemon -f"
