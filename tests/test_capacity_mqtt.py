"""The capacity alert through the real dispatcher, MQTT sink, outbox and mosquitto:
retained, once per transition, and none lost while the broker is down."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import OWN_FIXTURES
from mosquitto_broker import Broker, Subscriber
from mosquitto_broker import wait_until as mqtt_wait
from test_capacity import stream
from test_daemon_mqtt_e2e import P1Bridge, bridge, outbox_rows, start_daemon, telegrams
from test_daemon_support import wait_until

from p1daemon.config import Config
from p1daemon.daemon.builder import build
from p1daemon.daemon.dispatcher import Dispatcher
from p1daemon.publish.sink import MqttSink

ALERT = "p1/house/alert/capacity"
CAPTURE = OWN_FIXTURES / "be" / "capacity_month_end.txt"
__all__ = ["bridge"]  # the P1 bridge fixture, shared with the daemon end-to-end test


def config(tmp_path: Path, port: int, **meter: object) -> Config:
    return Config.model_validate(
        {
            "mqtt": {"port": port, "reconnect_max_delay_s": 1.0},
            "buffer": {"path": str(tmp_path / "state" / "outbox.db"), "commit_interval_s": 0.2},
            "site": {"timezone": "Europe/Brussels"},
            "meters": [{"name": "house", "source": "socket://127.0.0.1:9001", **meter}],
        }
    )


@pytest.fixture
def dispatchers() -> Iterator[list[Dispatcher]]:
    made: list[Dispatcher] = []
    yield made
    for dispatcher in made:
        dispatcher.stop(5)


def transitions(subscriber: Subscriber) -> list[tuple[bool, str | None, str | None]]:
    """(active, raised_at, cleared_at) in arrival order, QoS 1 repeats removed."""
    out: list[tuple[bool, str | None, str | None]] = []
    for message in subscriber.on(ALERT):
        doc = message.json()
        key = (doc["active"], doc["raised_at"], doc["cleared_at"])
        if key not in out:
            out.append(key)
    return out


def test_capacity_alert_retained_once_per_transition_across_an_outage(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, dispatchers: list[Dispatcher]
) -> None:
    cfg = config(tmp_path, broker.port, capacity_hold_s=30)
    dispatcher = build(cfg, [MqttSink.from_config(cfg)])
    dispatchers.append(dispatcher)
    assert "capacity" in [p.name for p in dispatcher.processors]
    dispatcher.start()
    sink = dispatcher.output("mqtt")
    assert isinstance(sink, MqttSink)
    assert wait_until(lambda: sink.connected, 5)

    items = stream()
    cut = next(i for i, r in enumerate(items) if r.timestamp and r.timestamp.minute == 50)
    for reading in items[:cut]:  # up to 23:49:50: only the inactive announcement
        dispatcher.submit(reading)
    broker.stop()
    assert wait_until(lambda: not sink.connected, 5)
    for reading in items[cut:]:  # raised at 23:50:30, cleared at 00:00:00, all offline
        dispatcher.submit(reading)
    broker.start()
    subscriber.wait_for(lambda _: len(transitions(subscriber)) >= 3, 20, "three transitions")

    assert transitions(subscriber) == [
        (False, None, None),
        (True, "2026-11-30T23:50:30+01:00", None),
        (False, "2026-11-30T23:50:30+01:00", "2026-12-01T00:00:00+01:00"),  # the episode
    ]
    # the newest capacity state arrived too (state, newest wins), as did the alert records
    state = subscriber.on("p1/house/capacity")[-1].json()
    assert state["at"] == "2026-12-01T00:01:00+01:00"
    assert dispatcher.processor_failures == 0

    # retained: a subscriber arriving later gets the last transition
    late = Subscriber(broker, ALERT, client_id="capacity-late", persistent=False).start()
    try:
        assert wait_until(lambda: bool(late.on(ALERT)), 5)
        (message,) = late.on(ALERT)
        assert message.retain
        assert message.json()["cleared_by"] == "quarter_end"
    finally:
        late.stop()


def test_the_real_daemon_killed_in_an_outage_delivers_every_capacity_transition(
    tmp_path: Path, bridge: P1Bridge
) -> None:
    """`p1daemon run`, a TCP P1 bridge, mosquitto down while the whole month end is read,
    SIGKILL, then a second process with the broker back: the three records arrive."""
    sent = telegrams(CAPTURE)
    assert len(sent) == 103
    broker = Broker(tmp_path / "broker")  # not started: the outage is there from the start
    outbox = tmp_path / "state" / "outbox.db"
    config = tmp_path / "p1daemon.toml"
    config.write_text(
        f"""
[mqtt]
host = "127.0.0.1"
port = {broker.port}
reconnect_max_delay_s = 1

[buffer]
path = "{outbox}"
commit_interval_s = 0.1

[site]
timezone = "Europe/Brussels"

[[meters]]
name = "house"
source = "socket://127.0.0.1:{bridge.port}"
reconnect_initial_s = 0.1
reconnect_max_s = 0.5
capacity_hold_s = 30
""",
        encoding="utf-8",
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        bridge.wait_for_client(10)
        bridge.send(b"".join(sent))
        # 103 readings + the announcement, the raise and the clear, all on disk
        mqtt_wait(lambda: outbox_rows(outbox) >= len(sent) + 3, 15, "records on disk")
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(5)

        broker.start()
        subscriber = Subscriber(broker, ALERT).start()
        daemon = start_daemon(config, log)
        subscriber.wait_for(lambda _: len(transitions(subscriber)) >= 3, 20, "3 transitions")
        assert transitions(subscriber) == [
            (False, None, None),
            (True, "2026-11-30T23:50:30+01:00", None),
            (False, "2026-11-30T23:50:30+01:00", "2026-12-01T00:00:00+01:00"),
        ]
        late = Subscriber(broker, ALERT, client_id="capacity-late-2", persistent=False).start()
        try:
            assert wait_until(lambda: bool(late.on(ALERT)), 5)
            (message,) = late.on(ALERT)
            assert message.retain and message.json()["cleared_by"] == "quarter_end"
        finally:
            late.stop()
        subscriber.stop()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
        assert "Traceback" not in log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(5)
        broker.stop()
