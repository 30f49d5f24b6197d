"""A screenshot of `p1daemon watch` in a real terminal (tmux, 80x24): the redraw in place
leaves no stale line behind when the view shrinks, never writes past the width, and no
screenshot ever catches a blank or half-drawn screen."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import REPO
from mosquitto_broker import Broker, wait_until
from paho.mqtt.enums import CallbackAPIVersion

TMUX = shutil.which("tmux")
LONG_WARNING = "the secondaries export more than the primary meter measures " * 3


class Tmux:
    def __init__(self, command: list[str]) -> None:
        assert TMUX is not None
        self.socket = f"p1watch-{os.getpid()}-{time.monotonic_ns()}"
        self.base = [TMUX, "-L", self.socket, "-f", "/dev/null"]
        shell = " ".join(shlex.quote(part) for part in command) + "; sleep 60"
        subprocess.run(
            [*self.base, "new-session", "-d", "-x", "80", "-y", "24", shell],
            check=True,
            cwd=REPO,
        )

    def screen(self) -> list[str]:
        # -J joins wrapped lines: a line written past the width shows up longer than 80.
        shot = subprocess.run(
            [*self.base, "capture-pane", "-p", "-J"], check=True, capture_output=True, text=True
        )
        lines = shot.stdout.split("\n")
        return lines[:-1] if lines and lines[-1] == "" else lines

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


@pytest.fixture
def publish(broker: Broker) -> Iterator[Any]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-tmux-{os.getpid()}")
    client.connect(broker.host, broker.port)
    client.loop_start()

    def send(topic: str, payload: Any) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        client.publish(topic, raw, qos=1, retain=True).wait_for_publish(5)

    yield send
    client.disconnect()
    client.loop_stop()


def latest(meter: str, role: str, exp: float) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "meter": meter,
        "role": role,
        "ean": "871685900012345674",
        "import": {"power_kw": 0.25},
        "export": {"power_kw": exp},
        "received_at": now,
        "timestamp": now,
    }


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_the_view_shrinks_without_stale_lines_and_stays_inside_80_columns(
    broker: Broker, publish: Any
) -> None:
    long_name = "charger-in-the-far-corner-of-the-car-park"
    now = datetime.now(UTC).isoformat()
    publish("p1/status", b"online")
    publish("p1/daemon/health", {"at": now, "outbox": {"depth": 0}, "meters": []})
    publish("p1/house/latest", latest("house", "primary", 3.5))
    publish(f"p1/{long_name}/latest", latest(long_name, "secondary", 0.0))
    publish("p1/house/alert/export_limit", {"active": True, "export_kw": 3.5, "limit_kw": 2.5})
    publish(
        "p1/site/connection",
        {
            "topology": "series",
            "connection": {"power": {"import_kw": 0.5}},
            "points": [],
            "warnings": [{"code": "series_negative_export", "message": LONG_WARNING}],
        },
    )
    tmux = Tmux([sys.executable, "-m", "p1daemon", "watch", "--port", str(broker.port)])
    try:
        wait_until(lambda: any("ALERT" in line for line in tmux.screen()), 10, "the first frame")
        before = tmux.screen()
        # The alert clears, the long-named meter goes away, the warning with it.
        publish("p1/house/alert/export_limit", {"active": False})
        publish(f"p1/{long_name}/latest", b"")
        publish("p1/site/connection", {"topology": "series", "points": [], "warnings": []})
        shots = []

        def settled() -> bool:
            shots.append(tmux.screen())
            return not any("ALERT" in line or "charger" in line for line in shots[-1])

        wait_until(settled, 10, "the smaller frame", step=0.05)
        after = tmux.screen()
    finally:
        tmux.close()

    assert any(line.startswith("  charger-in-the") for line in before)
    assert any(line.startswith("  ! house: ALERT export_limit: 3.500 kW") for line in before)
    assert any(line.startswith("  ! the secondaries export") for line in before)
    for shot in [before, *shots, after]:
        assert len(shot) == 24
        assert max(len(line) for line in shot) <= 79, shot  # never past (or at) the edge
        header = [i for i, line in enumerate(shot) if line.startswith("p1daemon watch")]
        assert header == [0], shot  # drawn in place: never blank, never scrolled or doubled
    used = [line for line in after if line.strip()]
    assert used[1].startswith("p1  online")
    assert any(line.startswith("  house ") for line in after)
    assert not any("the secondaries" in line or "charger" in line for line in after)
    assert len(used) < len([line for line in before if line.strip()])
    # Everything below the footer is blank: no leftovers of the taller frame.
    footer = max(i for i, line in enumerate(after) if line.startswith("raw messages:"))
    assert all(line == "" for line in after[footer + 1 :])
