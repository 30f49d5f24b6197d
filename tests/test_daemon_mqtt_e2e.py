"""The whole daemon, as systemd runs it, killed during a broker outage: no reading lost.

Real parts only: `p1daemon run` as a child process, a meter behind a loopback TCP bridge
(what a Wi-Fi P1 dongle or ser2net looks like), a real mosquitto that is down when the
readings arrive, the SQLite outbox on disk and SIGKILL (no chance to clean up). The
readings accepted by the first process must reach a subscriber after the second process
starts, followed by the second process's own readings, each exactly in meter order.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import OWN_FIXTURES, REPO
from mosquitto_broker import Broker, Subscriber, first_occurrences, wait_until

CAPTURE = OWN_FIXTURES / "demo" / "house.txt"


def telegrams(capture: Path) -> list[bytes]:
    """The capture cut at every header line ('/' at the start of a line)."""
    data = capture.read_bytes()
    starts = [i for i in range(len(data)) if data[i] == ord("/") and (i == 0 or data[i - 1] == 10)]
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]


def meter_timestamp(telegram: bytes) -> str:
    line = next(x for x in telegram.split(b"\r\n") if x.startswith(b"0-0:1.0.0("))
    return line[10:22].decode()


class P1Bridge:
    """A loopback TCP server standing in for a network P1 bridge; one client at a time."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.client: socket.socket | None = None
        self._accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.client = conn
            self._accepted.set()

    def wait_for_client(self, timeout: float) -> None:
        if not self._accepted.wait(timeout):
            raise AssertionError("the daemon never connected to the P1 bridge")
        self._accepted.clear()

    def send(self, data: bytes) -> None:
        assert self.client is not None
        self.client.sendall(data)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.server.close()


def outbox_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5) as db:
            return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.fixture
def bridge() -> Iterator[P1Bridge]:
    server = P1Bridge()
    yield server
    server.close()


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "p1daemon", "run", "--config", str(config)],
            cwd=REPO,
            stdout=handle,
            stderr=handle,
        )


def test_readings_accepted_before_a_sigkill_during_an_outage_all_arrive(
    tmp_path: Path, bridge: P1Bridge
) -> None:
    sent = telegrams(CAPTURE)
    assert len(sent) >= 100
    first_batch, second_batch = sent[:60], sent[60:]
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

[[meters]]
name = "house"
role = "primary"
ean = "871685900012345674"
source = "socket://127.0.0.1:{bridge.port}"
reconnect_initial_s = 0.1
reconnect_max_s = 0.5
""",
        encoding="utf-8",
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        bridge.wait_for_client(10)
        bridge.send(b"".join(first_batch))
        wait_until(
            lambda: outbox_rows(outbox) >= len(first_batch),
            10,
            f"{len(first_batch)} readings on disk while the broker is down",
        )
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(5)

        broker.start()
        subscriber = Subscriber(broker, "p1/#").start()
        daemon = start_daemon(config, log)
        bridge.wait_for_client(10)
        bridge.send(b"".join(second_batch))

        def complete(_: object) -> bool:
            stamps = {m.json()["timestamp"] for m in subscriber.on("p1/house/reading")}
            return len(stamps) >= len(sent)

        subscriber.wait_for(complete, 20, "every reading of both processes")
        received = [m.json() for m in subscriber.on("p1/house/reading")]
        firsts, _duplicates = first_occurrences([r["timestamp"] for r in received])
        expected = [meter_timestamp(t) for t in sent]
        assert [stamp_digits(s) for s in firsts] == expected
        assert {r["meter"] for r in received} == {"house"}
        assert {r["ean"] for r in received} == {"871685900012345674"}

        daemon.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert daemon.wait(10) == 0
        assert time.monotonic() - started < 10
        subscriber.wait_for(
            lambda msgs: any(m.topic == "p1/status" and m.payload == b"offline" for m in msgs),
            5,
            "offline status after SIGTERM",
        )
        subscriber.stop()
        assert "Traceback" not in log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(5)
        broker.stop()


def stamp_digits(iso: str) -> str:
    """2024-06-21T12:29:00+02:00 -> 240621122900, the meter's own spelling."""
    return iso[2:4] + iso[5:7] + iso[8:10] + iso[11:13] + iso[14:16] + iso[17:19]


def test_ordering_helper_matches_the_capture() -> None:
    # Guards the test above against a capture edit that would make its check vacuous.
    stamps = [meter_timestamp(t) for t in telegrams(CAPTURE)]
    assert len(stamps) == len(set(stamps)) and stamps == sorted(stamps)
