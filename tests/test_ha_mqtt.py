"""Home Assistant discovery through the real daemon (`p1daemon run`) and a real mosquitto.

The daemon replays the two demo captures in a loop, fast, so it keeps running until the
test stops it with SIGTERM. What the broker holds is checked against Home Assistant's
rules (`ha_rules.py`): configs retained, valid, one device per metering point, their
value templates reading real values out of the retained `latest`; announced again when
Home Assistant says `online`; and none at all with `discovery = false`. The shipped demo
configuration runs too, through several loops of its captures.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest
from conftest import OWN_FIXTURES, REPO
from ha_rules import HaSensor, validate
from mosquitto_broker import Broker, Received, Subscriber, wait_until

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.publish.topics import Topics
from p1daemon.reading.meter import MeterReading, Role
from p1daemon.reading.model import Reading
from p1daemon.views.homeassistant.discovery import DiscoveryMessage, discovery_messages
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

HOUSE_EAN = "871685900012345674"
CARPORT_EAN = "871685900012345681"
DEMO = REPO / "config" / "demo.toml"


@pytest.fixture(autouse=True)
def _demo_captures() -> None:
    if not (OWN_FIXTURES / "demo" / "house.txt").is_file():
        pytest.skip("fixtures/demo captures are not in this checkout")


class Daemon:
    """`p1daemon run --config PATH` in a subprocess; its log goes to a file."""

    def __init__(self, config: Path) -> None:
        self.log_path = config.with_suffix(".log")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "p1daemon", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError("the daemon did not stop within 10 s of SIGTERM") from None


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def two_meter_config(tmp_path: Path, port: int, *, discovery: bool) -> Path:
    path = tmp_path / "p1daemon.toml"
    path.write_text(
        f"""
[mqtt]
port = {port}
reconnect_max_delay_s = 1.0

[buffer]
path = "{tmp_path / "state" / "outbox.db"}"

[homeassistant]
discovery = {str(discovery).lower()}

[[meters]]
name = "house"
role = "primary"
ean = "{HOUSE_EAN}"
source = "replay:{OWN_FIXTURES / "demo" / "house.txt"}"
replay_interval_s = 0.02
replay_loop = true
tariff_labels = {{ t1 = "low", t2 = "normal" }}

[[meters]]
name = "carport"
role = "secondary"
ean = "{CARPORT_EAN}"
source = "replay:{OWN_FIXTURES / "demo" / "carport.txt"}"
replay_interval_s = 0.02
replay_loop = true
""",
        encoding="utf-8",
    )
    return path


def first_reading(name: str, role: Role, ean: str) -> MeterReading:
    events = ReadingStream(TelegramDecoder()).feed(
        (OWN_FIXTURES / "demo" / f"{name}.txt").read_bytes()
    )
    reading = next(e for e in events if isinstance(e, Reading))
    return MeterReading.from_reading(
        reading, meter=name, role=role, ean=ean, received_at=datetime.now(UTC)
    )


def announced_topics() -> set[str]:
    """The config topics the announcer makes for the two demo meters (their content is
    tested in test_homeassistant_discovery; here: do they all reach the broker)."""
    settings, topics = HomeAssistantSettings(discovery=True), Topics("p1")
    labels = {"t1": "low", "t2": "normal"}
    house = discovery_messages(
        first_reading("house", "primary", HOUSE_EAN), settings, topics, tariff_labels=labels
    )
    carport = discovery_messages(
        first_reading("carport", "secondary", CARPORT_EAN), settings, topics
    )
    return {m.topic for m in house + carport}


def as_messages(received: list[Received]) -> list[DiscoveryMessage]:
    out = []
    for message in received:
        payload: dict[str, Any] = message.json()
        out.append(DiscoveryMessage(message.topic, payload, payload["unique_id"]))
    return out


def newest_by_topic(received: list[Received]) -> dict[str, Received]:
    return {m.topic: m for m in received}


def test_discovery_configs_retained_valid_one_device_each_and_announced_again(
    tmp_path: Path, broker: Broker, daemons: list[Daemon]
) -> None:
    expected = announced_topics()
    assert len(expected) > 40  # the demo meters send a lot; a handful would mean a bug
    watcher = Subscriber(broker, "homeassistant/+/+/config").start()
    daemon = Daemon(two_meter_config(tmp_path, broker.port, discovery=True))
    daemons.append(daemon)

    def counts() -> dict[str, int]:
        out: dict[str, int] = {}
        for message in watcher.messages:
            out[message.topic] = out.get(message.topic, 0) + 1
        return out

    watcher.wait_for(lambda ms: {m.topic for m in ms} >= expected, 15, "every config")
    assert {m.topic for m in watcher.messages} == expected, "configs nobody asked for"

    # Retained: a subscriber that comes later (Home Assistant starting) gets every one.
    late = Subscriber(broker, "homeassistant/+/+/config", persistent=False).start()
    try:
        late.wait_for(lambda ms: {m.topic for m in ms} >= expected, 5, "retained configs")
        configs = newest_by_topic(late.messages)
        assert all(m.retain for m in configs.values())
    finally:
        late.stop()
    messages = as_messages(list(configs.values()))
    validate(messages)

    # One Home Assistant device per metering point; the gas meter hangs off the house.
    devices: dict[str, dict[str, Any]] = {}
    for message in messages:
        assert message.payload is not None
        device = message.payload["device"]
        devices[device["identifiers"][0]] = device
    points = {d["name"]: d for d in devices.values() if "via_device" not in d}
    assert set(points) == {"house (primary)", "carport (secondary)"}
    assert any(HOUSE_EAN in i for i in points["house (primary)"]["identifiers"])
    assert any(CARPORT_EAN in i for i in points["carport (secondary)"]["identifiers"])
    (gas,) = [d for d in devices.values() if "via_device" in d]
    assert gas["via_device"] in points["house (primary)"]["identifiers"]

    # Each entity reads its value out of what the daemon really publishes on `latest`.
    state = Subscriber(broker, "p1/+/latest", persistent=False).start()
    try:
        state.wait_for(
            lambda ms: {m.topic for m in ms} == {"p1/house/latest", "p1/carport/latest"},
            5,
            "latest",
        )
        latest = {m.topic: m.payload.decode() for m in state.messages}
    finally:
        state.stop()
    for message in messages:
        assert message.payload is not None
        sensor = HaSensor(message.payload)
        sensor.receive(latest[message.payload["state_topic"]])
        assert sensor.state is not None, message.unique_id
    house_t2 = next(
        m.payload
        for m in messages
        if m.payload is not None and m.payload["unique_id"].endswith(f"{HOUSE_EAN}_imp_t2")
    )
    sensor = HaSensor(house_t2)
    sensor.receive(latest["p1/house/latest"])
    assert sensor.state == str(json.loads(latest["p1/house/latest"])["import"]["t2_kwh"])

    # Home Assistant restarts and says `online`: every config is announced again.
    before = counts()
    mqtt_publish.single("homeassistant/status", "online", hostname=broker.host, port=broker.port)
    watcher.wait_for(
        lambda _: all(counts()[t] > before[t] for t in expected), 10, "every config again"
    )
    wait_until(lambda: "Home Assistant is online" in daemon.log, 5, "the log line")
    assert daemon.stop() == 0
    watcher.stop()
    assert "Traceback" not in daemon.log


def test_discovery_off_publishes_no_configs(
    tmp_path: Path, broker: Broker, daemons: list[Daemon]
) -> None:
    everything = Subscriber(broker, "#").start()
    daemon = Daemon(two_meter_config(tmp_path, broker.port, discovery=False))
    daemons.append(daemon)
    needed = {"p1/house/latest", "p1/carport/latest", "p1/site/connection"}
    everything.wait_for(lambda ms: {m.topic for m in ms} >= needed, 15, "the daemon publishing")
    # Even Home Assistant saying `online` must not make it announce anything.
    mqtt_publish.single("homeassistant/status", "online", hostname=broker.host, port=broker.port)
    seen = len(everything.on("p1/house/reading"))
    everything.wait_for(
        lambda _: len(everything.on("p1/house/reading")) >= seen + 50, 10, "50 more readings"
    )
    time.sleep(0.3)
    foreign = {m.topic for m in everything.messages if m.topic.startswith("homeassistant/")}
    assert foreign == {"homeassistant/status"}  # only the test's own message
    assert daemon.stop() == 0
    everything.stop()


def demo_config(tmp_path: Path, port: int) -> Path:
    """config/demo.toml as shipped, pointed at the test's broker and folder, 200 times
    faster (a two-minute capture loops every 0.6 s)."""
    text = DEMO.read_text(encoding="utf-8")
    changes = [
        (r"(?m)^port = 1883$", f"port = {port}"),
        (r'(?m)^path = "\.\./\.demo/outbox\.db"$', f'path = "{tmp_path / "demo" / "outbox.db"}"'),
        (r'"replay:\.\./fixtures/', f'"replay:{REPO}/fixtures/'),
        (r"(?m)^replay_interval_s = 1$", "replay_interval_s = 0.005"),
    ]
    for pattern, replacement in changes:
        text, count = re.subn(pattern, replacement, text)
        assert count, f"config/demo.toml no longer has {pattern!r}"
    path = tmp_path / "demo.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_demo_loops_through_its_captures_without_trouble(
    tmp_path: Path, broker: Broker, daemons: list[Daemon]
) -> None:
    """Every loop of the demo's captures sends the clock and the registers back: a new
    baseline each time (logged, not warned about), and the views keep working."""
    everything = Subscriber(broker, "#").start()
    daemon = Daemon(demo_config(tmp_path, broker.port))
    daemons.append(daemon)

    def quarters(meter: str) -> list[dict[str, Any]]:
        return [m.json() for m in everything.on(f"p1/{meter}/quarter")]

    def loops_seen(meter: str) -> int:
        return sum(1 for q in quarters(meter) if q["start"] == "2024-06-21T12:15:00+02:00")

    everything.wait_for(
        lambda _: min(loops_seen("house"), loops_seen("carport")) >= 3, 20, "three loops"
    )
    assert daemon.stop() == 0
    everything.stop()

    log = daemon.log
    assert not re.search(r"WARNING|ERROR|CRITICAL|Traceback", log), log[-3000:]
    for meter in ("house", "carport"):
        baselines = log.count(f"meter {meter}: the meter's clock went back")
        # One line per loop at most (identical lines within a minute are rate-limited).
        assert 1 <= baselines <= loops_seen(meter)
        twelve_fifteen = [q for q in quarters(meter) if q["start"].endswith("12:15:00+02:00")]
        first, *later = twelve_fifteen
        assert not first["meter_replaced"] and all(q["meter_replaced"] for q in later)
        for quarter in later:  # the same capture: the same energy, loop after loop
            assert quarter["import"] == first["import"] and quarter["export"] == first["export"]
    # The shipped demo shows discovery and the parallel connection.
    assert any(m.topic.startswith("homeassistant/sensor/") for m in everything.messages)
    connection = everything.on("p1/site/connection")[-1].json()
    assert connection["topology"] == "parallel"
    assert {p["meter"] for p in connection["points"]} == {"house", "carport"}
