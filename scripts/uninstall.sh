#!/usr/bin/env bash
# Remove the p1daemon service installed by install.sh:
#
#   sudo ./scripts/uninstall.sh            # keeps /etc/p1daemon and the outbox in /var/lib
#   sudo ./scripts/uninstall.sh --purge    # removes those too (unsent readings are lost)
#
# Same environment overrides as install.sh (P1DAEMON_ROOT, SYSTEMCTL).
set -euo pipefail

say() { printf 'uninstall.sh: %s\n' "$*"; }
die() {
    printf 'uninstall.sh: %s\n' "$*" >&2
    exit 1
}

purge=no
case "${1:-}" in
    "") ;;
    --purge) purge=yes ;;
    *) die "usage: $0 [--purge]" ;;
esac
[ $# -le 1 ] || die "usage: $0 [--purge]"

root=${P1DAEMON_ROOT:-}
root=${root%/}
read -r -a systemctl <<<"${SYSTEMCTL:-systemctl}"
unit=p1daemon.service
unit_file=$root/etc/systemd/system/$unit
modules_conf=$root/etc/modules-load.d/p1daemon.conf

if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    die "must run as root: sudo $0${1:+ $1}"
fi

# Stopping flushes what it can; a unit that is not loaded is not an error here.
"${systemctl[@]}" disable --now "$unit" || say "($unit was not enabled or not running)"
rm -f "$unit_file"
say "removed $unit_file"
# The drivers stay loaded until the next boot: something else may be using them.
rm -f "$modules_conf"
say "removed $modules_conf"
rm -rf "$root/opt/p1daemon"
say "removed $root/opt/p1daemon"

if [ "$purge" = yes ]; then
    # The state directory of a DynamicUser= service lives under /var/lib/private.
    rm -rf "$root/etc/p1daemon" "$root/etc/systemd/system/$unit.d" \
        "$root/var/lib/p1daemon" "$root/var/lib/private/p1daemon"
    say "purged the configuration ($root/etc/p1daemon) and the outbox ($root/var/lib/p1daemon)"
else
    say "kept the configuration in $root/etc/p1daemon and the outbox in $root/var/lib/p1daemon"
    say "(remove them with: $0 --purge)"
fi
"${systemctl[@]}" daemon-reload
"${systemctl[@]}" reset-failed "$unit" 2>/dev/null || true
