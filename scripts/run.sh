#!/usr/bin/env bash
# One command from a fresh checkout to p1daemon at work: the two-meter demo (a house as
# primary metering point, a carport charger as secondary) replayed from fixtures/demo/
# into a local mosquitto, with every message shown as it arrives. Ctrl-C stops it all.
#
# A broker already listening on 127.0.0.1:1883 is used as it is; otherwise a private
# loopback-only mosquitto is started for the demo and stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
P1DAEMON_APT_EXTRA="mosquitto mosquitto-clients" bash scripts/bootstrap.sh

port=1883
mkdir -p .demo
pids=()
cleanup() {
    # Newest first: the daemon says goodbye to the broker before the broker goes.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

if ! listening; then
    cat > .demo/mosquitto.conf <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
CONF
    echo "run.sh: starting a private mosquitto on 127.0.0.1:$port" >&2
    # Its own session: Ctrl-C reaches the daemon only, which then says goodbye to the
    # broker before the exit trap stops the broker.
    setsid mosquitto -c .demo/mosquitto.conf >.demo/mosquitto.log 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do listening && break; sleep 0.1; done
    listening || { echo "run.sh: mosquitto did not start, see .demo/mosquitto.log" >&2; exit 1; }
fi

# What a subscriber sees: topic and the first part of each payload.
mosquitto_sub -h 127.0.0.1 -p "$port" -v -t 'p1/#' -F '%t %p' > >(cut -c1-180) &
pids+=($!)

.venv/bin/p1daemon run --config config/demo.toml "$@" &
pids+=($!)
wait "${pids[-1]}"
