"""A finite replay exits only once its readings are delivered (issue 17).

Real `p1daemon run` processes, a real mosquitto and a QoS 1 subscriber: what the command
has published when it returns is what a backfill into a central system expects.
"""

from __future__ import annotations

import time
from pathlib import Path

from mosquitto_broker import Broker, Subscriber, wait_until
from test_cli_run import HOUSE_EAN, finish, p1daemon
from test_daemon_support import telegram

EXIT_UNDELIVERED = 3  # p1daemon.daemon.app.EXIT_UNDELIVERED, stated independently


def replay_config(tmp_path: Path, port: int, count: int) -> Path:
    (tmp_path / "house.txt").write_bytes(b"".join(telegram(i) for i in range(1, count + 1)))
    path = tmp_path / "p1daemon.toml"
    path.write_text(
        f"""
[mqtt]
host = "127.0.0.1"
port = {port}
topic_prefix = "p1"

[buffer]
path = "{tmp_path / "outbox.db"}"

[[meters]]
name = "house"
role = "primary"
ean = "{HOUSE_EAN}"
source = "replay:house.txt"
replay_interval_s = 0
""",
        encoding="utf-8",
    )
    return path


def sequence_numbers(subscriber: Subscriber) -> list[int]:
    """The import t1 register of each reading is its telegram's number in Wh."""
    return [
        round(message.json()["import"]["t1_kwh"] * 1000)
        for message in subscriber.on("p1/house/reading")
    ]


def test_ten_thousand_telegrams_are_all_delivered_before_the_command_returns(
    tmp_path: Path, broker: Broker
) -> None:
    count = 10_000
    subscriber = Subscriber(broker, "p1/house/reading").start()
    try:
        proc = p1daemon("run", "--config", str(replay_config(tmp_path, broker.port, count)))
        status, _, err = finish(proc, timeout=150)
        assert status == 0, err
        # Every reading was acknowledged by the broker before the exit; the broker's
        # delivery to this subscriber trails that by a moment at most.
        wait_until(lambda: len(subscriber.on("p1/house/reading")) >= count, 10, "every reading")
        assert sequence_numbers(subscriber) == list(range(1, count + 1))
        assert "stay queued" not in err
    finally:
        subscriber.stop()


def test_an_absent_broker_ends_the_run_after_the_timeout_and_the_next_run_delivers(
    tmp_path: Path,
) -> None:
    count = 50
    broker = Broker(tmp_path / "broker")
    config = replay_config(tmp_path, broker.port, count)
    started = time.monotonic()
    status, _, err = finish(
        p1daemon("run", "--config", str(config), "--drain-timeout", "1"), timeout=30
    )
    assert status == EXIT_UNDELIVERED, err
    assert time.monotonic() - started < 15
    lines = [line for line in err.splitlines() if "stay queued" in line]
    assert len(lines) == 1, err
    assert f"{count} reading(s)" in lines[0]

    # The broker is back: a run with nothing new to replay delivers the backlog, then exits 0.
    broker.start()
    subscriber = Subscriber(broker, "p1/house/reading").start()
    try:
        (tmp_path / "house.txt").write_bytes(b"")
        status, _, err = finish(p1daemon("run", "--config", str(config)), timeout=60)
        assert status == 0, err
        wait_until(lambda: len(subscriber.on("p1/house/reading")) >= count, 10, "every reading")
        assert sequence_numbers(subscriber) == list(range(1, count + 1))
    finally:
        subscriber.stop()
        broker.stop()


def test_a_signal_still_stops_a_draining_run_promptly(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")  # never started: nothing drains
    config = replay_config(tmp_path, broker.port, 5)
    proc = p1daemon("run", "--config", str(config), "--drain-timeout", "60")
    # Wait until it is draining (the replay has ended), then interrupt it.
    deadline = time.monotonic() + 20
    log = ""
    assert proc.stderr is not None
    while time.monotonic() < deadline and "before exiting" not in log:
        log += proc.stderr.readline()
    assert "before exiting" in log, log
    sent = time.monotonic()
    proc.send_signal(2)
    status, _, err = finish(proc, timeout=15)
    assert time.monotonic() - sent < 8
    assert status == 0, log + err
