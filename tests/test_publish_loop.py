"""paho's network I/O on the publisher's worker thread (issue 16): what that could break.

The worker polls paho's socket itself and reconnects with our delays, from a short-lived
`mqtt-connect` thread per attempt (client.BrokerLink.wait). Real mosquitto throughout;
the loopback proxy of tests/stall_proxy.py where a misbehaving network is needed.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import make_sink as shared_sink
from mosquitto_broker import Broker, Subscriber, wait_until
from stall_proxy import StallProxy
from test_mqtt_publish import (  # noqa: F401 (readings is a fixture)
    as_meter,
    assert_complete_and_in_order,
    db_rows,
    has_all,
    readings,
    stamp,
)

from p1daemon.publish.sink import MqttSink
from p1daemon.reading.model import Reading


def make_sink(made: list[MqttSink], tmp_path: Path, port: int, **mqtt: Any) -> MqttSink:
    """The shared sink (conftest), retrying within a second of a lost broker."""
    return shared_sink(made, tmp_path, port, **{"reconnect_max_delay_s": 1.0, **mqtt})


def thread_names() -> list[str]:
    return [t.name for t in threading.enumerate()]


def test_paho_runs_no_thread_of_its_own(
    broker: Broker,
    subscriber: Subscriber,
    sinks: list[MqttSink],
    tmp_path: Path,
    readings: list[Reading],  # noqa: F811
) -> None:
    before = set(thread_names())
    sink = make_sink(sinks, tmp_path, broker.port)
    sink.start()
    wait_until(lambda: sink.connected, 5, "the connection")
    for reading in readings[:50]:
        sink.submit(as_meter(reading))
    subscriber.wait_for(has_all("p1/house/reading", 50), 5, "the readings")
    # The attempt's thread has ended once connected (it ends before the CONNACK is read).
    wait_until(lambda: "mqtt-connect" not in thread_names(), 5, "the attempt's thread")
    new = set(thread_names()) - before
    assert new == {"mqtt-publisher"}, new


def test_a_killed_and_restarted_broker_loses_nothing(
    broker: Broker,
    subscriber: Subscriber,
    sinks: list[MqttSink],
    tmp_path: Path,
    readings: list[Reading],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGKILL (no goodbye on the socket), readings accepted while it is away, restart:
    every reading arrives once the worker's own reconnect brings the link back."""
    caplog.set_level(logging.WARNING, logger="p1daemon.publish")
    sink = make_sink(sinks, tmp_path, broker.port)
    sink.start()
    link, pipeline = sink.link, sink.pipeline
    assert link is not None and pipeline is not None
    wait_until(lambda: sink.connected, 5, "the connection")
    for reading in readings[:100]:
        sink.submit(as_meter(reading))
    subscriber.wait_for(has_all("p1/house/reading", 100), 5, "the first 100")
    wait_until(lambda: pipeline.depth == 0, 5, "their acknowledgements")
    # The subscriber's session must survive the crash: SIGUSR1 makes mosquitto save it.
    store = broker.directory / "mosquitto.db"
    assert broker._process is not None
    broker._process.send_signal(signal.SIGUSR1)
    wait_until(lambda: store.exists() and store.stat().st_size > 0, 5, "the saved sessions")
    broker.stop(kill=True)
    for reading in readings[100:300]:
        sink.submit(as_meter(reading))
    wait_until(lambda: not link.connected, 5, "the loss to be noticed")
    wait_until(lambda: db_rows(tmp_path / "outbox.db") > 0, 5, "the backlog on disk")
    broker.start()
    for reading in readings[300:]:
        sink.submit(as_meter(reading))
    subscriber.wait_for(has_all("p1/house/reading", len(readings)), 15, "every reading")
    assert_complete_and_in_order(subscriber, "p1/house/reading", [stamp(r) for r in readings])
    wait_until(lambda: pipeline.depth == 0, 5, "every acknowledgement")
    assert link.connects == 2
    assert pipeline.counters.published == len(readings)


def test_keepalive_pings_hold_an_idle_connection(
    broker: Broker,
    sinks: list[MqttSink],
    tmp_path: Path,
) -> None:
    """Nothing to publish for longer than 1.5 x keepalive (when mosquitto drops a silent
    client): the worker's `loop_misc` pings, so it is still the first connection."""
    proxy = StallProxy(broker.host, broker.port)
    try:
        sink = make_sink(sinks, tmp_path, proxy.port, keepalive=5)
        sink.start()
        link = sink.link
        assert link is not None
        wait_until(lambda: link.connected, 5, "the connection")
        # Two answered pings, 5 s apart: 10 s idle, past mosquitto's 7.5 s.
        wait_until(lambda: proxy.pingresps >= 2, 20, "two keepalive pings answered")
        assert link.connected and link.connects == 1 and proxy.connections == 1
    finally:
        proxy.close()


def test_stop_with_messages_in_flight_persists_them_and_disconnects_cleanly(
    broker: Broker,
    subscriber: Subscriber,
    sinks: list[MqttSink],
    tmp_path: Path,
    readings: list[Reading],  # noqa: F811
) -> None:
    """Stopped while the broker has not acknowledged what it got: every reading is on disk,
    the broker saw a DISCONNECT (it logs a clean disconnection, so no will), and the next
    run delivers them all."""
    proxy = StallProxy(broker.host, broker.port)
    try:
        first = make_sink(sinks, tmp_path, proxy.port, client_id="p1-inflight")
        first.start()
        pipeline = first.pipeline
        assert pipeline is not None
        wait_until(lambda: first.connected, 5, "the connection")
        proxy.swallow_pubacks = True
        for reading in readings[:80]:
            first.submit(as_meter(reading))
        subscriber.wait_for(has_all("p1/house/reading", 80), 5, "the broker got them")
        assert pipeline.depth == 80  # all in flight, none acknowledged
        first.stop(timeout=5)
        assert db_rows(tmp_path / "outbox.db") == 80
    finally:
        proxy.close()
    wait_until(
        lambda: "Client p1-inflight disconnected." in broker.log_path.read_text(),
        5,
        "mosquitto's note of a clean disconnection",
    )

    second = make_sink(sinks, tmp_path, broker.port)
    second.start()
    second_pipeline = second.pipeline
    assert second_pipeline is not None
    wait_until(lambda: second_pipeline.depth == 0, 10, "the backlog acknowledged")
    # The broker acknowledges before it has passed everything on to the subscriber.
    subscriber.wait_for(
        lambda messages: sum(m.topic == "p1/house/reading" for m in messages) >= 160,
        5,
        "the backlog at the subscriber",
    )
    # At least once: the first 80 came twice (in flight at the stop), then nothing else.
    got = [stamp_of(m.payload) for m in subscriber.on("p1/house/reading")]
    assert got[80:] == got[:80] == [stamp(r) for r in readings[:80]]


def stamp_of(payload: bytes) -> str:
    import json

    value: str = json.loads(payload)["timestamp"]
    return value


def test_the_outbox_is_written_while_a_connection_attempt_hangs(
    sinks: list[MqttSink],
    tmp_path: Path,
    readings: list[Reading],  # noqa: F811
) -> None:
    """A TLS handshake that never ends (a port that takes the TCP connection and says
    nothing) blocks the attempt for paho's connect timeout; the worker meanwhile goes on
    writing readings to the outbox by their commit interval, and stop() is not held up."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # never accepted: the kernel completes the handshake, nobody speaks
    try:
        sink = make_sink(sinks, tmp_path, silent.getsockname()[1], tls=True)
        sink.start()
        link = sink.link
        assert link is not None
        for reading in readings[:20]:
            sink.submit(as_meter(reading))
        wait_until(lambda: db_rows(tmp_path / "outbox.db") == 20, 4, "the readings on disk")
        connector = link._connector
        assert connector is not None and connector.is_alive()  # still in the handshake
        sink.stop(timeout=0.5)
        assert db_rows(tmp_path / "outbox.db") == 20
    finally:
        silent.close()
