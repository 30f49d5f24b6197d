"""MqttSink against a real mosquitto: nothing lost, order kept, disks spared.

Each test compares the exact sequence of readings submitted with the sequence received
(keyed by the meter's own timestamp, unique per telegram in the capture). QoS 1 may
deliver a reading twice; the first occurrences must be every reading, in order.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED_FIXTURES, require_shared_fixtures
from mosquitto_broker import Broker, Subscriber, first_occurrences, wait_until
from publisher_child import readings_of

from p1daemon import __version__
from p1daemon.daemon.stats import MeterStats
from p1daemon.publish.outbox import Outbox
from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.publish.sink import MqttSink, SinkClosed
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading

CAPTURE = SHARED_FIXTURES / "streams" / "iskra_am550_dsmr50_566_telegrams.txt"


@pytest.fixture(scope="module")
def readings() -> list[Reading]:
    require_shared_fixtures()
    if not CAPTURE.is_file():
        pytest.skip(f"capture {CAPTURE} not found")
    parsed = readings_of(CAPTURE)
    assert len(parsed) == 566
    assert len({r.timestamp for r in parsed}) == 566  # the key the tests compare by
    return parsed


def as_meter(reading: Reading, meter: str = "house") -> MeterReading:
    return MeterReading.from_reading(
        reading,
        meter=meter,
        role="primary" if meter == "house" else "secondary",
        ean=None,
        received_at=datetime.now(UTC),
    )


def stamp(reading: Reading) -> str:
    assert reading.timestamp is not None
    return reading.timestamp.isoformat()


def received_stamps(subscriber: Subscriber, topic: str) -> list[str]:
    return [json.loads(m.payload)["timestamp"] for m in subscriber.on(topic)]


def assert_complete_and_in_order(subscriber: Subscriber, topic: str, sent: list[str]) -> None:
    firsts, repeats = first_occurrences(received_stamps(subscriber, topic))
    assert firsts == sent, f"{topic}: {len(firsts)} distinct received, {len(sent)} sent"
    assert set(repeats) <= set(sent)


def has_all(topic: str, count: int) -> Callable[[list[Any]], bool]:
    def check(messages: list[Any]) -> bool:
        return len({m.payload for m in messages if m.topic == topic}) >= count

    return check


def db_rows(path: Path) -> int:
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


SinkFactory = Callable[..., MqttSink]


@pytest.fixture
def make_sink(tmp_path: Path) -> Iterator[SinkFactory]:
    made: list[MqttSink] = []

    def make(
        port: int,
        *,
        outbox: Path | None = None,
        mqtt: dict[str, Any] | None = None,
        buffer: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> MqttSink:
        sink = MqttSink(
            MqttSettings(port=port, reconnect_max_delay_s=1.0, **(mqtt or {})),
            BufferSettings(
                path=str(outbox or tmp_path / "outbox.db"),
                **{"commit_interval_s": 0.2, **(buffer or {})},
            ),
            **kwargs,
        )
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.stop(timeout=5)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_every_reading_arrives_in_order_and_nothing_touches_the_disk(
    protocol: str,
    broker: Broker,
    subscriber: Subscriber,
    make_sink: SinkFactory,
    readings: list[Reading],
    tmp_path: Path,
) -> None:
    # What is unacknowledged after commit_interval_s is written; 5 s rather than 1 s so that
    # a loaded machine (the suite on four workers) still counts as a prompt broker.
    sink = make_sink(broker.port, mqtt={"protocol": protocol}, buffer={"commit_interval_s": 5.0})
    started = time.monotonic()
    sink.start()
    assert time.monotonic() - started < 0.5
    files = {p: p.stat() for p in tmp_path.glob("outbox.db*")}
    wait_until(lambda: sink.connected, 5, "connection")
    for index, reading in enumerate(readings):
        sink.submit(as_meter(reading, "house"))
        sink.submit(as_meter(reading, "carport"))
        if index % 20 == 19:
            time.sleep(0.01)  # a fast meter, not a flood: the broker keeps up
    subscriber.wait_for(has_all("p1/house/reading", 566), 10, "house readings")
    subscriber.wait_for(has_all("p1/carport/reading", 566), 10, "carport readings")
    sent = [stamp(r) for r in readings]
    assert_complete_and_in_order(subscriber, "p1/house/reading", sent)
    assert_complete_and_in_order(subscriber, "p1/carport/reading", sent)
    assert all(not m.retain for m in subscriber.on("p1/house/reading"))

    # The broker acknowledged promptly: not one write, the files untouched.
    wait_until(lambda: sink.pipeline is not None and sink.pipeline.depth == 0, 5, "acks")
    assert sink.outbox.writes == 0
    after = {p: p.stat() for p in tmp_path.glob("outbox.db*")}
    assert {p: (s.st_size, s.st_mtime_ns) for p, s in after.items()} == {
        p: (s.st_size, s.st_mtime_ns) for p, s in files.items()
    }

    # Late subscribers get the newest reading per meter, retained, and the status.
    late = Subscriber(broker, "p1/+/latest", persistent=False).start()
    wait_until(lambda: len(late.messages) >= 2, 5, "retained latest")
    for message in late.messages:
        assert message.retain and message.json()["timestamp"] == sent[-1]
    late.stop()
    assert subscriber.on("p1/status")[-1].payload == b"online"
    assert sink.state() == f"mqtt connected to 127.0.0.1:{broker.port}, outbox empty"


def test_an_unacknowledged_reading_is_on_disk_by_commit_interval_in_batches(
    broker: Broker, make_sink: SinkFactory, readings: list[Reading], tmp_path: Path
) -> None:
    broker.stop()  # the broker is away: no PUBACK will come
    sink = make_sink(broker.port, buffer={"commit_interval_s": 0.5})
    sink.start()
    path = tmp_path / "outbox.db"
    submitted = time.monotonic()
    sink.submit(as_meter(readings[0]))
    assert db_rows(path) == 0  # not written at once: it may yet be acknowledged
    wait_until(lambda: db_rows(path) == 1, 2, "the row on disk")
    assert time.monotonic() - submitted <= 0.5 + 0.1

    writes_before = sink.outbox.writes
    for reading in readings[1:41]:
        sink.submit(as_meter(reading))
    wait_until(lambda: db_rows(path) == 41, 2, "40 more rows on disk")
    assert sink.outbox.writes - writes_before <= 2  # one batch, not forty commits


def test_broker_restart_mid_stream_loses_nothing(
    broker: Broker,
    subscriber: Subscriber,
    make_sink: SinkFactory,
    readings: list[Reading],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="p1daemon.publish")
    sink = make_sink(broker.port)
    sink.start()
    wait_until(lambda: sink.connected, 5, "connection")
    fed = threading.Event()

    def feed() -> None:
        for reading in readings:
            sink.submit(as_meter(reading, "house"))
            sink.submit(as_meter(reading, "carport"))
            time.sleep(0.003)
        fed.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    subscriber.wait_for(has_all("p1/house/reading", 100), 5, "first 100")
    broker.stop()
    pipeline = sink.pipeline
    assert pipeline is not None
    wait_until(lambda: not sink.connected and pipeline.depth > 100, 5, "a backlog")
    assert "NOT connected" in sink.state()
    broker.start()
    feeder.join(10)
    assert fed.is_set()
    subscriber.wait_for(has_all("p1/house/reading", 566), 15, "all house readings")
    subscriber.wait_for(has_all("p1/carport/reading", 566), 15, "all carport readings")
    sent = [stamp(r) for r in readings]
    assert_complete_and_in_order(subscriber, "p1/house/reading", sent)
    assert_complete_and_in_order(subscriber, "p1/carport/reading", sent)
    lost = [r for r in caplog.records if "lost the connection" in r.getMessage()]
    assert len(lost) == 1
    assert sink.link is not None and sink.link.connects == 2


def test_stop_persists_the_unacknowledged_and_the_next_run_delivers_them(
    broker: Broker,
    subscriber: Subscriber,
    make_sink: SinkFactory,
    readings: list[Reading],
    tmp_path: Path,
) -> None:
    broker.stop()
    first = make_sink(broker.port, buffer={"commit_interval_s": 60.0})
    first.start()
    for reading in readings[:100]:
        first.submit(as_meter(reading))
    assert first.pipeline is not None and first.pipeline.in_memory == 100
    assert db_rows(tmp_path / "outbox.db") == 0
    started = time.monotonic()
    first.stop(timeout=5)
    assert time.monotonic() - started < 3
    assert db_rows(tmp_path / "outbox.db") == 100
    with pytest.raises(SinkClosed):
        first.submit(as_meter(readings[100]))

    broker.start()
    second = make_sink(broker.port)
    second.start()
    for reading in readings[100:150]:
        second.submit(as_meter(reading))
    subscriber.wait_for(has_all("p1/house/reading", 150), 10, "backlog and new readings")
    assert_complete_and_in_order(subscriber, "p1/house/reading", [stamp(r) for r in readings[:150]])
    second.stop(timeout=5)
    assert db_rows(tmp_path / "outbox.db") == 0
    # stop() returns at the broker's PUBACK; its delivery to the subscriber is a moment later.
    subscriber.wait_for(
        lambda _: subscriber.on("p1/status")[-1].payload == b"offline", 3, "the offline status"
    )
    assert subscriber.on("p1/status")[-1].payload == b"offline"


def test_latest_is_never_overwritten_by_an_older_backlog_reading(
    broker: Broker,
    subscriber: Subscriber,
    make_sink: SinkFactory,
    readings: list[Reading],
) -> None:
    # A slow drain, so that live readings arrive while the backlog is still going out.
    sink = make_sink(broker.port, buffer={"drain_rate_per_s": 400.0})
    sink.start()
    for reading in readings[:100]:
        sink.submit(as_meter(reading))
    subscriber.wait_for(has_all("p1/house/reading", 100), 5, "first 100")
    broker.stop()
    for reading in readings[100:400]:
        sink.submit(as_meter(reading))
    pipeline = sink.pipeline
    assert pipeline is not None
    wait_until(lambda: pipeline.in_memory == 0, 3, "backlog on disk")
    broker.start()
    wait_until(lambda: sink.connected, 5, "reconnection")
    overlapped = 0
    for reading in readings[400:]:
        overlapped += pipeline.depth > 0
        sink.submit(as_meter(reading))
        time.sleep(0.002)
    assert overlapped > 50  # live readings really were accepted during the drain
    subscriber.wait_for(has_all("p1/house/reading", 566), 10, "everything")
    assert_complete_and_in_order(subscriber, "p1/house/reading", [stamp(r) for r in readings])

    latest = received_stamps(subscriber, "p1/house/latest")
    assert latest == sorted(latest), "latest went backwards"
    late = Subscriber(broker, "p1/house/latest", persistent=False).start()
    wait_until(lambda: len(late.messages) == 1, 5, "retained latest")
    assert late.messages[0].json()["timestamp"] == stamp(readings[-1])
    late.stop()


def test_health_reports_are_retained_with_the_right_numbers(
    broker: Broker,
    subscriber: Subscriber,
    make_sink: SinkFactory,
    readings: list[Reading],
) -> None:
    stats = MeterStats()
    for _ in readings[:30]:
        stats.count_accepted(datetime(2026, 1, 1, tzinfo=UTC))
    stats.count_dropped("crc")
    stats.count_dropped("crc")
    stats.count_dropped("unparsable")
    stats.count_reconnect()
    sink = make_sink(
        broker.port,
        mqtt={"health_interval_s": 60.0},
        buffer={"drain_rate_per_s": 5.0},
        health_source=lambda: {"house": stats.snapshot()},
    )
    stats.on_change = sink.meters_changed  # as the daemon wires it (`Daemon(on_meter_change=)`)
    sink.start()

    def last_json(topic: str) -> dict[str, Any]:
        messages = subscriber.on(topic)
        assert messages, f"nothing on {topic}"
        document: dict[str, Any] = messages[-1].json()
        return document

    subscriber.wait_for(lambda ms: any(m.topic == "p1/house/health" for m in ms), 5, "health")
    house = last_json("p1/house/health")
    assert house["accepted"] == 30 and house["reconnects"] == 1
    assert house["dropped"] == {"crc": 2, "unparsable": 1} and house["dropped_total"] == 3
    assert house["last_reading_at"] == "2026-01-01T00:00:00+00:00"

    # On change (not only every 60 s): one more dropped telegram is reported at once.
    stats.count_dropped("crc")
    subscriber.wait_for(
        lambda ms: any(
            m.topic == "p1/house/health" and json.loads(m.payload)["dropped"].get("crc") == 3
            for m in ms
        ),
        3,
        "health after a change",
    )

    # The daemon report after an outage: the backlog as it stands when the broker returns.
    broker.stop()
    for reading in readings[:50]:
        sink.submit(as_meter(reading))
    pipeline = sink.pipeline
    assert pipeline is not None
    wait_until(lambda: pipeline.in_memory == 0, 3, "backlog on disk")
    outage_started = time.time()
    time.sleep(0.3)
    broker.start()
    subscriber.wait_for(
        lambda ms: any(
            m.topic == "p1/daemon/health" and json.loads(m.payload)["broker"]["connects"] == 2
            for m in ms
        ),
        5,
        "daemon health after reconnecting",
    )
    daemon = next(
        m.json() for m in subscriber.on("p1/daemon/health") if m.json()["broker"]["connects"] == 2
    )
    assert daemon["version"] == __version__
    assert daemon["broker"]["reconnects"] == 1
    assert daemon["outbox"]["depth"] == 50 and daemon["outbox"]["on_disk"] == 50
    assert daemon["outbox"]["oldest_age_s"] >= 0.3
    assert daemon["outbox"]["oldest_age_s"] <= time.time() - outage_started + 1.0
    assert daemon["outbox"]["dropped_full"] == 0
    assert daemon["readings"]["accepted"] == 50
    assert daemon["meters"] == ["house"]
    assert daemon["uptime_s"] > 0
    retained = Subscriber(broker, "p1/+/health", persistent=False).start()
    wait_until(lambda: len(retained.messages) >= 2, 5, "retained health")
    assert all(m.retain for m in retained.messages)
    retained.stop()


def test_throttled_meter_publishes_the_newest_reading_and_never_goes_backwards(
    broker: Broker,
    subscriber: Subscriber,
    make_sink: SinkFactory,
    readings: list[Reading],
) -> None:
    sink = make_sink(broker.port, publish_intervals={"house": 0.25})
    sink.start()
    wait_until(lambda: sink.connected, 5, "connection")
    started = time.monotonic()
    for reading in readings:
        sink.submit(as_meter(reading, "house"))
        sink.submit(as_meter(reading, "carport"))
        time.sleep(0.002)
    took = time.monotonic() - started
    last = stamp(readings[-1])
    subscriber.wait_for(
        lambda ms: any(
            m.topic == "p1/house/reading" and json.loads(m.payload)["timestamp"] == last for m in ms
        ),
        3,
        "the newest reading released at the end of its interval",
    )
    subscriber.wait_for(has_all("p1/carport/reading", 566), 5, "the unthrottled meter")
    house = [json.loads(m.payload) for m in subscriber.on("p1/house/reading")]
    stamps = [d["timestamp"] for d in house]
    sent = [stamp(r) for r in readings]
    assert stamps == sorted(set(stamps)) and set(stamps) <= set(sent)
    assert 2 <= len(stamps) <= took / 0.25 + 3
    totals = [d["import"]["total_kwh"] for d in house]
    assert totals == sorted(totals)
    assert_complete_and_in_order(subscriber, "p1/carport/reading", sent)


def test_full_outbox_drops_the_oldest_counts_them_and_logs_once(
    broker: Broker,
    subscriber: Subscriber,
    make_sink: SinkFactory,
    readings: list[Reading],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="p1daemon.publish")
    broker.stop()
    sink = make_sink(broker.port, buffer={"max_mb": 0.05, "commit_interval_s": 0.05})
    sink.start()
    pipeline = sink.pipeline
    assert pipeline is not None
    for start in range(0, 566, 50):  # several batches: the bound is hit more than once
        for reading in readings[start : start + 50]:
            sink.submit(as_meter(reading))
        wait_until(lambda: pipeline.in_memory == 0, 3, "batch on disk")
    dropped = pipeline.counters.dropped_full
    assert 0 < dropped < 566
    full = [r for r in caplog.records if "is full" in r.getMessage()]
    assert len(full) == 1
    broker.start()
    kept = [stamp(r) for r in readings[dropped:]]
    subscriber.wait_for(has_all("p1/house/reading", len(kept)), 10, "what was kept")
    assert_complete_and_in_order(subscriber, "p1/house/reading", kept)
    subscriber.wait_for(
        lambda ms: any(
            m.topic == "p1/daemon/health"
            and json.loads(m.payload)["outbox"]["dropped_full"] == dropped
            for m in ms
        ),
        5,
        "the drop count in the health report",
    )


def test_corrupt_outbox_is_moved_aside_and_publishing_goes_on(
    broker: Broker,
    subscriber: Subscriber,
    make_sink: SinkFactory,
    readings: list[Reading],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="p1daemon.publish")
    path = tmp_path / "outbox.db"
    # A p1daemon outbox (its header says so) with garbage after: the only kind ever moved.
    scratch = Outbox(tmp_path / "scratch" / "outbox.db", max_bytes=1_000_000)
    scratch.open()
    scratch.close()
    header = scratch.path.read_bytes()[:100]
    path.write_bytes(header + os.urandom(64 * 1024))
    sink = make_sink(broker.port)
    sink.start()
    moved = [r.getMessage() for r in caplog.records if "moved it to" in r.getMessage()]
    assert len(moved) == 1 and "unreadable" in moved[0]
    assert len(sink.outbox.moved_aside) == 1 and sink.outbox.moved_aside[0].exists()
    for reading in readings[:50]:
        sink.submit(as_meter(reading))
    subscriber.wait_for(has_all("p1/house/reading", 50), 5, "readings via the fresh outbox")
    broker.stop()
    for reading in readings[50:80]:
        sink.submit(as_meter(reading))
    wait_until(lambda: db_rows(path) == 30, 3, "the fresh outbox in use")
    broker.start()
    subscriber.wait_for(has_all("p1/house/reading", 80), 10, "the backlog")
    assert_complete_and_in_order(subscriber, "p1/house/reading", [stamp(r) for r in readings[:80]])


def test_start_and_stop_never_wait_for_an_absent_broker(
    make_sink: SinkFactory, readings: list[Reading], tmp_path: Path
) -> None:
    from mosquitto_broker import free_port

    sink = make_sink(free_port())  # nobody listens there
    started = time.monotonic()
    sink.start()
    assert time.monotonic() - started < 0.5
    for reading in readings[:10]:
        sink.submit(as_meter(reading))
    # An absent broker is a normal condition: reported, but the sink is not "unhealthy"
    # (the daemon feeds the systemd watchdog on this).
    assert sink.healthy()
    assert sink.status().startswith("mqtt NOT connected to 127.0.0.1:")
    assert "10 queued" in sink.status()
    stopping = time.monotonic()
    sink.stop(timeout=8)
    assert time.monotonic() - stopping < 3
    assert db_rows(tmp_path / "outbox.db") == 10


def test_a_reserved_meter_name_is_refused(
    broker: Broker, make_sink: SinkFactory, readings: list[Reading]
) -> None:
    sink = make_sink(broker.port)
    sink.start()
    with pytest.raises(ValueError, match="reserved"):
        sink.submit(as_meter(readings[0], "daemon"))
