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


def idle_sink(broker: Broker, tmp_path: Path, *, keepalive: int) -> MqttSink:
    """A connected sink with one meter's health source, nothing to publish."""
    stats = MeterStats()
    sink = MqttSink(
        MqttSettings(port=broker.port, keepalive=keepalive, health_interval_s=3600.0),
        BufferSettings(path=str(tmp_path / "outbox.db")),
        health_source=lambda: {"house": stats.snapshot()},
    )
    stats.on_change = sink.meters_changed
    sink.start()
    link = sink.link
    assert link is not None
    wait_until(lambda: link.connected, 5, "the connection")
    return sink


def test_an_idle_publisher_does_not_wake_with_nothing_due(broker: Broker, tmp_path: Path) -> None:
    sink = idle_sink(broker, tmp_path, keepalive=60)
    try:
        worker = sink._worker
        assert worker is not None
        # The first round's reports go out and are acknowledged, and the check a second
        # after that activity finds nothing new: wait for a second without a wake-up
        # (longer on a busy machine). Then nothing is due for a minute (the keepalive).
        settled_by = time.monotonic() + 10.0
        before = wake_ups(worker)
        while True:
            time.sleep(1.2)
            now = wake_ups(worker)
            if now == before or time.monotonic() > settled_by:
                break
            before = now
        time.sleep(3.0)
        quiet = wake_ups(worker) - now
        # A 1 s tick woke it three times or more in these three seconds.
        assert quiet <= 1, f"{quiet} wake-ups of an idle publisher with nothing due"
    finally:
        sink.stop(5.0)


def test_an_idle_publisher_still_sends_its_keepalive_pings(broker: Broker, tmp_path: Path) -> None:
    sink = idle_sink(broker, tmp_path, keepalive=5)
    try:
        link = sink.link
        assert link is not None
        # Past 1.5 keepalives without a packet from the client, mosquitto drops the
        # connection (and paho would reconnect): a worker sleeping through its ping
        # deadline would have lost it by now.
        time.sleep(9.0)
        assert link.connected and link.connects == 1
    finally:
        sink.stop(5.0)
