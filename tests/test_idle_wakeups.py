"""An idle MQTT publisher sleeps until its next real deadline, and still meets it.

The publisher's worker used to go round at least once a second (a 1 s floor in the
pipeline's sleep, a health check every second, paho's `loop_misc` every second): three
reasons to wake an idle daemon on a Pi for nothing. Counted here the way the kernel
counts them, as voluntary context switches of the worker's own thread, against a real
mosquitto; and the deadline that matters most while idle, the keepalive ping, is shown
met by the broker keeping the connection (it drops a client silent for 1.5 keepalives).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mosquitto_broker import Broker, wait_until

from p1daemon.daemon.stats import MeterStats
from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.publish.sink import MqttSink


def wake_ups(thread: threading.Thread) -> int:
    """The thread's voluntary context switches so far: each is a sleep that ended."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    for line in status.splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc")


def test_an_idle_publisher_sleeps_until_the_keepalive_and_keeps_its_connection(
    broker: Broker, tmp_path: Path
) -> None:
    stats = MeterStats()
    sink = MqttSink(
        MqttSettings(port=broker.port, keepalive=5, health_interval_s=3600.0),
        BufferSettings(path=str(tmp_path / "outbox.db")),
        health_source=lambda: {"house": stats.snapshot()},
    )
    stats.on_change = sink.meters_changed
    sink.start()
    try:
        link, worker = sink.link, sink._worker
        assert link is not None and worker is not None
        wait_until(lambda: link.connected, 5, "the connection")
        connected_at = time.monotonic()
        # The first round's reports go out and are acknowledged; the check a second
        # after that activity finds nothing new. Then nothing is due before the ping.
        time.sleep(1.5)
        before = wake_ups(worker)
        time.sleep(max(0.0, connected_at + 4.5 - time.monotonic()))
        quiet = wake_ups(worker) - before
        # A 1 s tick woke it three times or more in these three seconds.
        assert quiet <= 1, f"{quiet} wake-ups of an idle publisher with nothing due"

        # The keepalive ping is sent on time all the same: past 1.5 keepalives without a
        # packet, mosquitto would have dropped the connection and paho reconnected.
        time.sleep(max(0.0, connected_at + 9.0 - time.monotonic()))
        assert link.connected and link.connects == 1
    finally:
        sink.stop(5.0)
