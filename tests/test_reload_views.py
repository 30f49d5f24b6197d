"""A reload applies the whole new meter set, against a real mosquitto, without a restart.

Before the views were processors rebuilt by the builder, a reload that added a meter
started its reader (its readings flowed) while `site/connection` and Home Assistant
discovery kept the old meter set until a restart. Here the running daemon gets a new
configuration twice: the carport is added (it appears in `site/connection` and gets
discovery configs), then removed (it leaves `site/connection`, and its discovery configs
are cleared with empty retained payloads, which is how Home Assistant removes entities).
The house reads on throughout, and none of its readings is lost or reordered.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mosquitto_broker import Broker, Received, Subscriber
from test_daemon_support import telegram, wait_until

from p1daemon.config import Config
from p1daemon.daemon.app import Daemon
from p1daemon.daemon.builder import build
from p1daemon.publish.sink import MqttSink

EANS = {"house": "871685900012345674", "carport": "871685900012345681"}


def make_config(tmp_path: Path, port: int, meters: list[str]) -> Config:
    entries = []
    for name in meters:
        capture = tmp_path / f"{name}.txt"
        if not capture.exists():
            capture.write_bytes(
                b"".join(telegram(seq, f"E-{name.upper()}") for seq in range(1, 51))
            )
        entries.append(
            {
                "name": name,
                "role": "primary" if name == "house" else "secondary",
                "ean": EANS[name],
                "source": f"replay:{capture}",
                "replay_interval_s": 0.02,
                "replay_loop": True,
            }
        )
    return Config.model_validate(
        {
            "mqtt": {"port": port, "reconnect_max_delay_s": 1.0},
            "buffer": {"path": str(tmp_path / "state" / "outbox.db"), "commit_interval_s": 0.2},
            "homeassistant": {"discovery": True},
            "meters": entries,
        }
    )


Running = list[tuple[Daemon, threading.Thread]]


@pytest.fixture
def running() -> Iterator[Running]:
    daemons: Running = []
    yield daemons
    for daemon, thread in daemons:
        daemon.request_stop()
        thread.join(10)


def start(daemons: Running, config: Config) -> Daemon:
    sink = MqttSink.from_config(config)
    daemon = Daemon(config, build(config, [sink]), tick_s=0.05)
    thread = threading.Thread(target=lambda: daemon.run(handle_signals=False), daemon=True)
    thread.start()
    daemons.append((daemon, thread))
    return daemon


def last_points(subscriber: Subscriber) -> set[str]:
    messages = subscriber.on("p1/site/connection")
    return {p["meter"] for p in messages[-1].json()["points"]} if messages else set()


def configs_of(messages: list[Received], meter: str) -> dict[str, Any]:
    """Discovery config topic -> the newest payload (None: cleared) for `meter`'s entities."""
    out: dict[str, Any] = {}
    for message in messages:
        if not message.topic.startswith("homeassistant/"):
            continue
        if not message.payload:
            if message.topic in out:  # one of this meter's, cleared
                out[message.topic] = None
        elif json.loads(message.payload)["state_topic"] == f"p1/{meter}/latest":
            out[message.topic] = json.loads(message.payload)
    return out


def test_a_reload_adds_and_removes_a_meter_in_the_connection_and_in_discovery(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, running: Running
) -> None:
    daemon = start(running, make_config(tmp_path, broker.port, ["house"]))
    subscriber.wait_for(lambda _: last_points(subscriber) == {"house"}, 10, "the house alone")
    subscriber.wait_for(
        lambda messages: bool(configs_of(messages, "house")), 10, "the house's discovery"
    )
    assert configs_of(subscriber.messages, "carport") == {}

    daemon.apply_config(make_config(tmp_path, broker.port, ["house", "carport"]))
    subscriber.wait_for(
        lambda _: last_points(subscriber) == {"house", "carport"}, 5, "the carport added"
    )
    # Both meters send telegrams of one shape, so the carport gets as many configs as the
    # house: all of them, not the first few, before they are counted below.
    subscriber.wait_for(
        lambda messages: len(configs_of(messages, "carport")) == len(configs_of(messages, "house")),
        5,
        "the carport's discovery",
    )
    carport_topics = set(configs_of(subscriber.messages, "carport"))
    assert all(value is not None for value in configs_of(subscriber.messages, "carport").values())

    daemon.apply_config(make_config(tmp_path, broker.port, ["house"]))
    subscriber.wait_for(lambda _: last_points(subscriber) == {"house"}, 5, "the carport removed")
    subscriber.wait_for(
        lambda messages: all(v is None for v in configs_of(messages, "carport").values()),
        5,
        "the carport's discovery configs cleared",
    )
    assert set(configs_of(subscriber.messages, "carport")) == carport_topics
    house = configs_of(subscriber.messages, "house")
    assert house and all(value is not None for value in house.values())

    # The house read on throughout: its readings keep arriving, none missing or reordered.
    def house_seqs() -> list[float]:
        return [m.json()["import"]["t1_kwh"] for m in subscriber.on("p1/house/reading")]

    count = len(house_seqs())
    assert wait_until(lambda: len(house_seqs()) > count + 5, 5)
    seqs = house_seqs()
    # The replay loops over 1..50 Wh: each step is +1 Wh or the start of the next loop.
    steps = [round((b - a) * 1000) for a, b in itertools.pairwise(seqs)]
    assert all(step == 1 or (step == -49) for step in steps), steps
