"""The published quarter documents and the history come from one computation: fed the
same readings (with a gap and a replacement), every quarter on MQTT has its history row
with the same values and the same status."""

from __future__ import annotations

import heapq
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from history_synth import SynthMeter, Truth, run_meter

from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import EnergyTracker, MeterSpec
from p1daemon.views.history.recorder import HistoryRecorder
from p1daemon.views.history.store import HistoryStore

SITE = SiteSettings()
START = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)  # across the 23-hour day
GAP = (START + timedelta(hours=2, minutes=5), START + timedelta(hours=3, minutes=10))
SWAP = START + timedelta(hours=5)


def test_quarter_documents_equal_history_rows(tmp_path: Path) -> None:
    house = SynthMeter("house")
    ev = SynthMeter("ev", "secondary", equipment_id="C0001")
    specs = [MeterSpec("house", "primary"), MeterSpec("ev", "secondary")]
    tracker = EnergyTracker(SITE, specs, "p1")
    recorder = HistoryRecorder(SITE, specs)

    def on_quarter(at: datetime) -> None:
        if at == SWAP:
            house.equipment_id = "E0002"
            house.regs = {"i1": 0, "i2": 0, "e1": 0, "e2": 0}

    def silent(at: datetime) -> bool:
        return GAP[0] < at < GAP[1] or SWAP - timedelta(minutes=5) < at < SWAP + timedelta(
            minutes=5
        )

    end = START + timedelta(hours=8)
    streams = [
        run_meter(house, START, end, Truth(), silent=silent, on_quarter=on_quarter),
        run_meter(ev, START, end, Truth()),
    ]
    published: list[dict] = []
    rows = []
    for reading in heapq.merge(*streams, key=lambda r: r.received_at):
        for message in tracker.on_reading(reading, now=reading.received_at):
            if message.topic.endswith("/quarter"):
                published.append(json.loads(message.payload))
        rows.extend(recorder.feed(reading))
    store = HistoryStore.open(tmp_path / "history.db")
    store.write(rows)
    points = {p.id: p.meter for p in store.points()}
    history = {
        (points[q.point], q.start): q
        for q in store.quarters(list(points), START, end + timedelta(hours=1))
    }
    assert len(published) == 2 * 8 * 4 - 3  # the three quarters without a reading
    statuses = set()
    for doc in published:
        start = datetime.fromisoformat(doc["start"]).astimezone(UTC)
        row = history[(doc["meter"], start)]
        assert row.status == doc["status"]
        statuses.add(doc["status"])
        for direction in ("import", "export"):
            for register in ("t1", "t2", "total"):
                value = doc[direction][f"{register}_kwh"]
                stored = row.deltas.get((direction, register))
                assert (None if stored is None else float(stored)) == value
                if stored is not None:
                    assert Decimal(repr(value)) == stored
    assert statuses == {"complete", "partial", "replaced"}
    # The history also has the quarters no document is published for.
    gaps = [key for key, q in history.items() if q.status == "gap"]
    assert len(gaps) == 3 and all(meter == "house" for meter, _ in gaps)
    store.close()


def test_a_restart_mid_quarter_keeps_mqtt_and_history_equal(tmp_path: Path) -> None:
    """Saved with its quarter opening, a restarted tracker publishes the quarter whole,
    as the history records it."""
    house = SynthMeter("house")
    specs = [MeterSpec("house", "primary")]
    truth = Truth()
    readings = list(run_meter(house, START, START + timedelta(minutes=30), truth))
    stop_at = START + timedelta(minutes=5)
    tracker = EnergyTracker(SITE, specs, "p1")
    published = []
    for reading in readings:
        for message in tracker.on_reading(reading, now=reading.received_at):
            if message.topic.endswith("/quarter"):
                published.append(json.loads(message.payload))
        if reading.timestamp == stop_at:
            day = tracker.running_days()["house"]
            opening = tracker.quarter_openings()["house"]
            tracker = EnergyTracker(SITE, specs, "p1")
            assert tracker.restore("house", day, opening)
    first = published[0]
    assert first["status"] == "complete" and first["start_missing"] is False
    want = truth.quarters[START]["i1"]  # Saturday night: the low tariff
    assert want > 0 and round(first["import"]["t1_kwh"] * 1000) == want
