"""The shipped demo, run by the real daemon into a real mosquitto (issue 9 item 16).

`p1daemon run --config <config/demo.toml with the test broker's port>` for a few real
seconds: live meter timestamps, registers and gas that never go back, both metering points
as separate Home Assistant devices, and the connection view. The half hour of demo time
through the same framer, parser and views is in test_source_demo.py (an injected clock).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from mosquitto_broker import Broker, Received, Subscriber

REPO = Path(__file__).resolve().parent.parent


def demo_config(tmp_path: Path, port: int) -> Path:
    text = (REPO / "config" / "demo.toml").read_text()
    text = re.sub(r"(?m)^port = 1883$", f"port = {port}", text)
    text = re.sub(r'(?m)^path = "\.\./\.demo/outbox\.db"$', 'path = "outbox.db"', text)
    assert f"port = {port}" in text and 'path = "outbox.db"' in text
    path = tmp_path / "demo.toml"
    path.write_text(text)
    return path


def latest(messages: list[Received], meter: str) -> list[dict[str, Any]]:
    docs = [m.json() for m in messages if m.topic == f"p1/{meter}/latest"]
    unique = {d["timestamp"]: d for d in docs}  # QoS 1 may deliver one twice
    return [unique[k] for k in sorted(unique)]


def test_the_demo_publishes_a_live_connection_whose_registers_only_rise(
    tmp_path: Path, broker: Broker, subscriber: Subscriber
) -> None:
    config = demo_config(tmp_path, broker.port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "p1daemon", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ},
    )
    try:
        subscriber.wait_for(
            lambda got: all(len(latest(got, m)) >= 4 for m in ("house", "carport")),
            20,
            "four readings of each demo meter",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err

    messages = list(subscriber.messages)
    for meter in ("house", "carport"):
        docs = latest(messages, meter)
        for before, after in itertools.pairwise(docs):
            for direction in ("import", "export"):
                for register in ("t1_kwh", "t2_kwh", "total_kwh"):
                    assert after[direction][register] >= before[direction][register]
            if before["mbus"]:
                assert after["mbus"][0]["value"] >= before["mbus"][0]["value"]
        stamp = datetime.fromisoformat(docs[-1]["timestamp"])
        assert abs(stamp.timestamp() - time.time()) < 30  # the meter's time is now
    house = latest(messages, "house")
    assert house[-1]["import"]["total_kwh"] + house[-1]["export"]["total_kwh"] > (
        house[0]["import"]["total_kwh"] + house[0]["export"]["total_kwh"]
    )  # something flows in three seconds of a day walked in an hour
    assert house[0]["mbus"][0]["kind"] == "gas"

    devices: dict[str, dict[str, Any]] = {}
    for m in messages:
        if m.topic.startswith("homeassistant/sensor/") and m.payload:
            device = json.loads(m.payload)["device"]
            if "via_device" not in device:
                devices[device["name"]] = device
    assert set(devices) == {"house (primary)", "carport (secondary)"}
    house_ids = set(devices["house (primary)"]["identifiers"])
    assert not house_ids & set(devices["carport (secondary)"]["identifiers"])
    assert devices["house (primary)"]["model"] == "P1D-DEMO-HOUSE"

    connection = [m.json() for m in messages if m.topic == "p1/site/connection"]
    assert connection and {p["meter"] for p in connection[-1]["points"]} == {"house", "carport"}
