#!/usr/bin/env bash
# One command from a fresh checkout to p1daemon at work: the two-meter demo (a house as
# primary metering point, a carport charger as secondary) as live synthetic meters (config/demo.toml)
# into a local mosquitto, shown by `p1daemon watch` (the meters, today's energy, health,
# problems first; the daemon's log goes to .demo/daemon.log). Ctrl-C stops it all.
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

.venv/bin/p1daemon run --config config/demo.toml "$@" 2>>.demo/daemon.log &
daemon=$!
pids+=("$daemon")
sleep 1
if ! kill -0 "$daemon" 2>/dev/null; then
    echo "run.sh: the daemon stopped at once; its log (.demo/daemon.log) ends with:" >&2
    tail -n 5 .demo/daemon.log >&2
    exit 1
fi

echo "run.sh: the raw messages: mosquitto_sub -h 127.0.0.1 -p $port -v -t 'p1/#'" >&2
echo "run.sh: the daemon's log: tail -f .demo/daemon.log" >&2
# On a terminal the view redraws in place; piped, it prints one line per change. Either
# way it ends on Ctrl-C, and the exit trap then stops the daemon (and a private broker).
.venv/bin/p1daemon watch --host 127.0.0.1 --port "$port" --prefix p1 || true
