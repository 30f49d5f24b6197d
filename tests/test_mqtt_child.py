"""SIGKILL during an outage, twice, then a clean SIGTERM: every reading still arrives.

The publisher runs as a real child process (tests/publisher_child.py) replaying the
capture through ReadingStream into MqttSink for two meters. The broker is stopped in
the middle of the stream; the child is killed with SIGKILL (no chance to clean up) once
it says nothing is left only in memory; a second child adds more readings to the same
outbox during the outage and is killed too; a third starts, the broker comes back,
and the backlog of both dead processes plus the third one's live readings must arrive,
each meter's readings complete and in order. Then SIGTERM must end the third child
with exit status 0 within 10 s and leave `offline` retained.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SHARED_FIXTURES, require_shared_fixtures
from mosquitto_broker import Broker, Subscriber, first_occurrences, wait_until
from publisher_child import readings_of

CAPTURE = SHARED_FIXTURES / "streams" / "iskra_am550_dsmr50_566_telegrams.txt"
CHILD = Path(__file__).with_name("publisher_child.py")
METERS = ("house", "carport")


class Child:
    def __init__(self, port: int, outbox: Path, start: int, count: int, rate: float) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                f"--port={port}",
                f"--outbox={outbox}",
                f"--capture={CAPTURE}",
                f"--meters={','.join(METERS)}",
                f"--start={start}",
                f"--count={count}",
                f"--rate={rate}",
                "--commit-interval=0.2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.last: dict[str, Any] = {}
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.last = json.loads(line)

    def safe_to_kill(self) -> bool:
        """Fed everything and nothing left only in memory."""
        return bool(self.last.get("done")) and self.last.get("in_memory") == 0

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(5)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(10)
        self._reader.join(2)
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()
        return code


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for child in made:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait(5)


def test_sigkill_during_an_outage_loses_no_reading(tmp_path: Path, children: list[Child]) -> None:
    require_shared_fixtures()
    if not CAPTURE.is_file():
        pytest.skip(f"capture {CAPTURE} not found")
    sent = [r.timestamp.isoformat() for r in readings_of(CAPTURE) if r.timestamp is not None]
    assert len(sent) == 566
    broker = Broker(tmp_path / "broker")
    broker.start()
    subscriber = Subscriber(broker, "p1/+/reading").start()
    outbox = tmp_path / "outbox.db"

    def delivered(meter: str) -> list[str]:
        stamps = [json.loads(m.payload)["timestamp"] for m in subscriber.on(f"p1/{meter}/reading")]
        return first_occurrences(stamps)[0]

    try:
        # 1. Publishing normally; the broker goes away in the middle of the stream.
        first = Child(broker.port, outbox, 0, 250, rate=250)
        children.append(first)
        wait_until(lambda: len(delivered("house")) >= 60, 10, "first readings delivered")
        broker.stop()
        before_outage = len(delivered("house"))
        assert before_outage < 250, "the outage must hit the middle of the stream"
        wait_until(first.safe_to_kill, 10, "first child fed everything to disk")
        assert first.last["depth"] > 0 and not first.last["connected"]
        first.kill()

        # 2. Restarted during the outage: more readings pile up; killed again.
        second = Child(broker.port, outbox, 250, 150, rate=0)
        children.append(second)
        wait_until(second.safe_to_kill, 10, "second child fed everything to disk")
        second.kill()

        # 3. Restarted once more; the broker comes back while it feeds the rest.
        third = Child(broker.port, outbox, 400, 166, rate=400)
        children.append(third)
        wait_until(lambda: bool(third.last), 10, "third child running")
        broker.start()
        for meter in METERS:
            wait_until(
                lambda m=meter: len(delivered(m)) >= len(sent),  # type: ignore[misc]
                20,
                f"all {meter} readings",
            )
        for meter in METERS:
            assert delivered(meter) == sent, f"{meter}: missing or out of order"
        wait_until(lambda: third.last.get("depth") == 0, 5, "outbox drained")

        started = time.monotonic()
        assert third.terminate() == 0, third.stderr.decode()
        assert time.monotonic() - started < 10
        assert b"Traceback" not in third.stderr
    finally:
        subscriber.stop()
    status = Subscriber(broker, "p1/status", persistent=False).start()
    wait_until(lambda: len(status.messages) == 1, 5, "retained status")
    assert status.messages[0].payload == b"offline" and status.messages[0].retain
    status.stop()
    broker.stop()
