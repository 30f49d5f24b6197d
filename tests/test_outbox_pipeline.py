"""The pipeline's rules, step by step, with a scripted broker link and a fake clock.

The broker tests show the whole thing works; these pin down the rules that a real
broker only exercises by chance of timing: nothing overtakes messages paho re-sends
after a reconnect, `latest` only ever moves forward, the rate cap, the broker's
receive maximum, and what happens when the outbox file breaks mid-run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections import deque
from pathlib import Path

import pytest

from p1daemon.publish.outbox import Outbox, OutboxUnavailable, StoredReading
from p1daemon.publish.pipeline import Pipeline
from p1daemon.publish.topics import Topics


class ScriptedLink:
    """Records what would go to the broker; the test decides when acks and reconnects come."""

    def __init__(self) -> None:
        self.connected = False
        self.generation = 0
        self.receive_maximum: int | None = None
        self.acks: deque[int] = deque()
        self.sent: list[tuple[int, str, bytes, bool]] = []
        self.drops: list[str] = []
        self._mid = 0

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        self._mid += 1
        self.sent.append((self._mid, topic, payload, retain))
        return self._mid

    def connect(self) -> None:
        self.generation += 1
        self.connected = True

    def drop_connection(self, reason: str) -> None:
        self.drops.append(reason)

    def ack_all(self, topic_part: str = "") -> None:
        for mid, topic, _, _ in self.sent:
            if topic_part in topic:
                self.acks.append(mid)

    def readings(self, meter: str = "house") -> list[int]:
        return [json.loads(p)["n"] for _, t, p, _ in self.sent if t == f"p1/{meter}/reading"]

    def latest(self, meter: str = "house") -> list[int]:
        return [json.loads(p)["n"] for _, t, p, _ in self.sent if t == f"p1/{meter}/latest"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def doc(n: int) -> bytes:
    return json.dumps({"n": n, "timestamp": f"t{n:05d}"}).encode()


def make(
    tmp_path: Path, link: ScriptedLink, clock: Clock, **options: float
) -> tuple[Pipeline, Outbox]:
    outbox = Outbox(tmp_path / "outbox.db", max_bytes=int(options.pop("max_bytes", 10**8)))
    outbox.open()
    settings: dict[str, float] = {"commit_interval_s": 1.0, "rate_per_s": 1e6, **options}
    pipeline = Pipeline(
        outbox,
        link,
        Topics("p1"),
        qos=1,
        commit_interval_s=settings["commit_interval_s"],
        rate_per_s=settings["rate_per_s"],
        window=int(settings.get("window", 100)),
        clock=clock,
    )
    return pipeline, outbox


def connect(pipeline: Pipeline, link: ScriptedLink) -> None:
    """A new connection: the first round publishes `online` only, the next one the rest."""
    link.connect()
    pipeline.step()
    assert pipeline.new_connection
    pipeline.new_connection = False


def test_nothing_overtakes_what_paho_resends_after_a_reconnect(tmp_path: Path) -> None:
    link, clock = ScriptedLink(), Clock()
    pipeline, _ = make(tmp_path, link, clock)
    connect(pipeline, link)
    for n in range(3):
        pipeline.accept("house", doc(n))
    pipeline.step()
    assert link.readings() == [0, 1, 2]  # in flight, unacknowledged

    link.connected = False  # the connection drops; paho keeps 0..2 to re-send
    for n in range(3, 6):
        pipeline.accept("house", doc(n))
    pipeline.step()
    connect(pipeline, link)
    pipeline.step()
    pipeline.step()
    assert link.readings() == [0, 1, 2], "new readings overtook the re-sent ones"
    assert (link.sent[-1][1], link.sent[-1][2]) != ("p1/house/reading", doc(3))

    link.ack_all()  # paho's re-sends (readings, `online`, `latest`) are acknowledged
    pipeline.step()
    assert link.readings() == [0, 1, 2, 3, 4, 5]


def test_latest_follows_live_readings_only_one_in_flight_newest_wins(tmp_path: Path) -> None:
    link, clock = ScriptedLink(), Clock()
    outbox = Outbox(tmp_path / "outbox.db", max_bytes=10**8)
    outbox.open()
    # A backlog from an earlier run: it must never reach `latest`.
    outbox.write([StoredReading(k, "house", doc(k), 1.0) for k in range(1, 11)], [], keep_after=0)
    pipeline = Pipeline(
        outbox, link, Topics("p1"), qos=1, commit_interval_s=1.0, rate_per_s=1e6, clock=clock
    )
    pipeline.accept("house", doc(100))
    connect(pipeline, link)
    pipeline.step()
    assert link.latest() == [100]
    for n in (101, 102, 103):
        pipeline.accept("house", doc(n))
        pipeline.step()
    assert link.latest() == [100], "a second latest while the first is unacknowledged"
    link.ack_all("latest")
    pipeline.step()
    assert link.latest() == [100, 103]  # the newest, not 101
    link.ack_all()
    pipeline.step()
    link.ack_all()
    pipeline.step()
    assert link.readings() == [*range(1, 11), 100, 101, 102, 103]  # backlog first, in order
    assert all(retain for _, t, _, retain in link.sent if t.endswith("/latest"))
    assert not any(retain for _, t, _, retain in link.sent if t.endswith("/reading"))


def test_send_rate_is_capped(tmp_path: Path) -> None:
    link, clock = ScriptedLink(), Clock()
    pipeline, _ = make(tmp_path, link, clock, rate_per_s=200.0)
    connect(pipeline, link)
    for n in range(100):
        pipeline.accept("house", doc(n))
    sleep = pipeline.step()
    assert len(link.readings()) == 10  # a burst of 50 ms worth at 200/s
    assert sleep == pytest.approx(0.05)  # and back when the next 10 may go
    for _ in range(5):  # a quarter of a second, in the worker's rhythm
        link.ack_all()
        clock.now += sleep
        sleep = pipeline.step()
    assert len(link.readings()) == 10 + 5 * 10
    assert link.readings() == list(range(60))


def test_never_more_in_flight_than_the_broker_allows(tmp_path: Path) -> None:
    link, clock = ScriptedLink(), Clock()
    pipeline, _ = make(tmp_path, link, clock)
    link.receive_maximum = 20  # MQTT 5 CONNACK "Receive Maximum"
    connect(pipeline, link)
    for n in range(100):
        pipeline.accept("house", doc(n))
    acked: set[int] = set()
    for _ in range(10):
        pipeline.step()
        in_flight = [mid for mid, *_ in link.sent if mid not in acked]
        assert len(in_flight) <= 20
        assert len(link.readings()) > 0
        acked.update(in_flight)
        link.acks.extend(in_flight)
    # Readings never take the last few slots: status, latest and health still get through.
    assert len(link.readings()) == 100


def test_a_reading_is_written_by_the_time_it_waited_commit_interval(tmp_path: Path) -> None:
    link, clock = ScriptedLink(), Clock()
    pipeline, outbox = make(tmp_path, link, clock, commit_interval_s=2.0)
    accepted_at = clock.now
    pipeline.accept("house", doc(1))
    while outbox.rows == 0:
        assert clock.now - accepted_at < 2.0, "not written by the commit deadline"
        clock.now += pipeline.step()  # the worker sleeps exactly as long as it is told
    assert clock.now - accepted_at >= 1.8  # and not long before it: it might have been acked
    assert pipeline.in_memory == 0


def test_acknowledged_rows_are_deleted_in_batches(tmp_path: Path) -> None:
    link, clock = ScriptedLink(), Clock()
    pipeline, outbox = make(tmp_path, link, clock, commit_interval_s=1.0)
    for n in range(50):
        pipeline.accept("house", doc(n))
    clock.now += 1.0
    pipeline.step()  # not connected: all 50 written
    assert outbox.rows == 50
    connect(pipeline, link)
    pipeline.step()
    link.ack_all()
    writes = outbox.writes
    pipeline.step()
    assert outbox.writes == writes and pipeline.depth == 0  # acknowledged, delete pending
    clock.now += 1.0
    pipeline.step()
    assert outbox.rows == 0 and outbox.writes == writes + 1  # one batch of deletes


class _FailingOnce:
    """The outbox's SQLite connection, except that the next statement reports damage."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real

    def execute(self, *args: object) -> object:
        raise sqlite3.DatabaseError("database disk image is malformed")

    def close(self) -> None:
        self.real.close()


def test_outbox_damaged_mid_run_is_replaced_and_refilled_from_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="p1daemon.publish")
    link, clock = ScriptedLink(), Clock()
    pipeline, outbox = make(tmp_path, link, clock, commit_interval_s=0.5)
    for n in range(20):
        pipeline.accept("house", doc(n))
    clock.now += 1.0
    pipeline.step()
    assert outbox.rows == 20
    assert outbox._db is not None
    outbox._db = _FailingOnce(outbox._db)  # type: ignore[assignment]
    for n in range(20, 25):
        pipeline.accept("house", doc(n))
    clock.now += 1.0
    pipeline.step()  # the write finds the damage: file moved aside, fresh one started
    assert len(outbox.moved_aside) == 1
    assert any("moved it to" in r.getMessage() for r in caplog.records)
    pipeline.step()  # what the pipeline held in memory is written to the fresh file
    assert outbox.rows == 25 and pipeline.in_memory == 0
    connect(pipeline, link)
    for _ in range(3):
        pipeline.step()
        link.ack_all()
    assert link.readings() == list(range(25))
    assert pipeline.counters.lost_corrupt == 0


def test_unwritable_outbox_keeps_readings_in_memory_up_to_a_cap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="p1daemon.publish")
    link, clock = ScriptedLink(), Clock()
    pipeline, outbox = make(tmp_path, link, clock, commit_interval_s=0.5)
    pipeline.memory_cap = 30
    outbox.close()
    blocked = tmp_path / "gone"
    blocked.write_text("a file where the outbox directory should be")
    outbox.path = blocked / "outbox.db"
    for n in range(50):
        pipeline.accept("house", doc(n))
    clock.now += 1.0
    pipeline.step()
    assert pipeline.in_memory == 30 and pipeline.counters.dropped_memory == 20
    assert sum("cannot write the outbox" in r.getMessage() for r in caplog.records) == 1

    blocked.unlink()  # the disk is back
    clock.now += 10.0
    pipeline.step()
    assert outbox.is_open and outbox.rows == 30 and pipeline.in_memory == 0
    assert any("writable again" in r.getMessage() for r in caplog.records)
    connect(pipeline, link)
    pipeline.step()
    assert link.readings() == list(range(20, 50))


def test_documents_keep_their_place_survive_a_restart_and_go_out_retained(
    tmp_path: Path,
) -> None:
    """Quarter/day documents and alerts: the same ordered, durable path as readings, on
    their own topic, retained; never on `latest`, never counted as readings."""
    link, clock = ScriptedLink(), Clock()
    pipeline, outbox = make(tmp_path, link, clock)
    pipeline.accept("house", doc(1))
    pipeline.accept_document("p1/house/quarter", b'{"q":1}')
    pipeline.accept("house", doc(2))
    pipeline.accept_document("p1/house/day", b'{"d":1}')
    assert pipeline.counters.accepted == 2 and pipeline.counters.documents_accepted == 2
    assert pipeline.depth == 4
    with pytest.raises(ValueError):
        pipeline.accept_document("elsewhere/house/quarter", b"{}")
    with pytest.raises(ValueError):
        pipeline.accept_document("p1/status", b"{}")  # not below a meter: not a document
    clock.now += 1.0  # no broker for a commit interval: everything goes to disk
    pipeline.step()
    assert outbox.rows == 4
    outbox.close()

    again = ScriptedLink()  # the daemon restarts
    pipeline, outbox = make(tmp_path, again, clock)
    connect(pipeline, again)
    pipeline.step()
    sent = [(t, p, retain) for _, t, p, retain in again.sent if t != "p1/status"]
    assert sent == [
        ("p1/house/reading", doc(1), False),
        ("p1/house/quarter", b'{"q":1}', True),
        ("p1/house/reading", doc(2), False),
        ("p1/house/day", b'{"d":1}', True),
    ]
    again.ack_all()
    pipeline.step()
    assert pipeline.counters.published == 2 and pipeline.counters.documents_published == 2
    assert pipeline.counters.published_by_meter == {"house": 2}
    assert pipeline.depth == 0


def test_a_full_outbox_counts_dropped_documents_apart_from_readings(tmp_path: Path) -> None:
    """Issue 9 item 22: `dropped_full` counts readings only; documents have their own count."""
    link, clock = ScriptedLink(), Clock()
    pipeline, _ = make(tmp_path, link, clock, max_bytes=40_000)
    for n in range(600):  # the broker is away; a quarter document after every 3rd reading
        pipeline.accept("house", doc(n))
        if n % 3 == 2:
            pipeline.accept_document("p1/house/quarter", json.dumps({"q": n, "pad": n}).encode())
        if n % 100 == 99:
            clock.now += 1.0
            pipeline.step()
    clock.now += 1.0
    pipeline.step()
    counters = pipeline.counters
    assert counters.dropped_full > 0 and counters.documents_dropped_full > 0

    connect(pipeline, link)
    for _ in range(20):
        pipeline.step()
        link.ack_all()
    pipeline.step()
    assert pipeline.depth == 0
    readings_sent = len(set(link.readings()))
    documents_sent = len({p for _, t, p, _ in link.sent if t == "p1/house/quarter"})
    assert counters.dropped_full == 600 - readings_sent
    assert counters.documents_dropped_full == 200 - documents_sent


def test_the_daemon_health_document_has_the_document_drop_count() -> None:
    from p1daemon.publish import health

    figures = health.DaemonFigures(
        uptime_s=1.0,
        broker_connected=True,
        broker_connects=1,
        broker_failed_attempts=0,
        broker_rejected=0,
        depth=0,
        in_memory=0,
        on_disk=0,
        oldest_age_s=None,
        dropped_full=5,
        dropped_memory=0,
        lost_corrupt=0,
        moved_aside=0,
        outbox_writable=True,
        accepted=10,
        published=5,
        throttled=0,
        meters=("house",),
        documents_dropped_full=3,
    )
    report = health.daemon_report(figures)
    assert report["outbox"]["dropped_full"] == 5
    assert report["outbox"]["documents_dropped_full"] == 3
    changed = health.daemon_report(dataclasses.replace(figures, documents_dropped_full=4))
    assert health.daemon_signature(changed) != health.daemon_signature(report)


def test_an_unreadable_outbox_with_the_broker_there_is_retried_not_spun_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backlog is on disk, the broker is there, and reading the disk fails (I/O
    error): the worker must wait for the retry, not go round at once re-reading."""
    link, clock = ScriptedLink(), Clock()
    pipeline, outbox = make(tmp_path, link, clock, commit_interval_s=0.5)
    calls = 0

    def failing(key: int, limit: int) -> list[StoredReading]:
        nonlocal calls
        calls += 1
        raise OutboxUnavailable(f"outbox {outbox.path}: disk I/O error")

    real = outbox.load_after
    monkeypatch.setattr(outbox, "load_after", failing)
    for n in range(20):
        pipeline.accept("house", doc(n))
    clock.now += 1.0
    pipeline.step()  # no broker: written, dropped from RAM, and reading back fails
    assert outbox.rows == 20 and pipeline.in_memory == 0 and calls == 1
    connect(pipeline, link)
    link.ack_all()
    sleeps = [pipeline.step() for _ in range(5)]
    assert calls == 1, "re-read the failing outbox on every round"
    assert min(sleeps) >= 0.99, f"the worker would spin: sleeps {sleeps}"
    monkeypatch.setattr(outbox, "load_after", real)
    clock.now += 5.0
    pipeline.step()
    pipeline.step()
    assert link.readings() == list(range(20))


def test_the_worker_is_woken_only_when_a_reading_needs_it(tmp_path: Path) -> None:
    """`accept` says when the worker must wake: not for every reading (a notify and a
    context switch each), but never so rarely that one waits: an idle connection, the
    first reading only in RAM (its commit deadline), too much in RAM."""
    link, clock = ScriptedLink(), Clock()
    pipeline, _ = make(tmp_path, link, clock, commit_interval_s=10.0)
    pipeline.memory_budget_bytes = 2_000
    assert pipeline.accept("house", doc(1))  # disconnected, but the first in RAM only
    assert not pipeline.accept("house", doc(2))  # disconnected: the connection wakes it
    connect(pipeline, link)
    pipeline.step()
    assert link.readings() == [1, 2]
    # In flight: their acknowledgements wake the worker, whose round sends what came since.
    assert not pipeline.accept("house", doc(3))
    assert not pipeline.queue_side("p1/site/connection", b"{}")
    assert not pipeline.accept_document("p1/house/quarter", b"{}")
    link.ack_all()
    pipeline.step()
    assert link.readings() == [1, 2, 3]
    link.ack_all()
    pipeline.step()
    assert not pipeline._inflight
    # Nothing in flight on a live connection: nothing else would wake it.
    assert pipeline.queue_side("p1/site/connection", b"{}")
    pipeline.step()
    assert pipeline._inflight
    # Over twice the budget while connected: to disk now, whatever is in flight.
    assert pipeline.accept("house", doc(4))  # the first only in RAM again
    woken = [pipeline.accept("house", doc(n)) for n in range(5, 200)]
    assert not woken[0] and woken[-1]
    assert pipeline._volatile_bytes > 2 * pipeline.memory_budget_bytes
