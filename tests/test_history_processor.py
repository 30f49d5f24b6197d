"""The history as a daemon processor: real file, real writer thread; the month document
equals the truth; a meter swapped while the daemon was stopped is flagged replaced; a
restart mid-quarter loses nothing."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from history_synth import SynthMeter, Truth, run_meter

from p1daemon.daemon.processor import Document
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import MeterSpec
from p1daemon.views.history.processor import HistoryProcessor
from p1daemon.views.history.settings import HistorySettings
from p1daemon.views.history.store import HistoryStore

SITE = SiteSettings()
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def processor(path: Path, meters: list[SynthMeter]) -> HistoryProcessor:
    settings = HistorySettings(path=str(path), commit_delay_s=0.05)
    specs = [MeterSpec(m.name, m.role, m.ean) for m in meters]
    return HistoryProcessor(settings, SITE, specs, "p1")


def month_docs(proc: HistoryProcessor, meters: int, timeout: float = 10.0) -> dict[str, dict]:
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(found) < meters and time.monotonic() < deadline:
        for doc in proc.on_tick(datetime.now(UTC)):
            assert isinstance(doc, Document) and doc.record
            found[doc.topic] = json.loads(doc.payload)
        time.sleep(0.02)
    return found


def test_month_document_is_the_running_month_per_tariff(tmp_path: Path) -> None:
    house = SynthMeter("house", ean="871234567890123456")
    ev = SynthMeter("ev", "secondary", equipment_id="C0001")
    proc = processor(tmp_path / "history.db", [house, ev])
    assert proc.start() == []
    truths = {"house": Truth(), "ev": Truth()}
    end = START + timedelta(hours=2)
    streams = [run_meter(m, START, end, truths[m.name]) for m in (house, ev)]
    for pair in zip(*streams, strict=True):
        for reading in pair:
            proc.on_reading(reading, datetime.now(UTC))
    docs = month_docs(proc, 2)
    proc.stop()
    doc = docs["p1/house/month"]
    assert doc["month"] == "2026-11" and doc["start"] == "2026-11-01T00:00:00+01:00"
    assert doc["end"] == "2026-12-01T00:00:00+01:00" and doc["hours"] == 720.0
    truth = truths["house"].between(START, end)
    assert round(doc["import"]["t2_kwh"] * 1000) == truth["i2"]
    assert round(doc["export"]["t2_kwh"] * 1000) == truth["e2"]
    assert doc["import"]["t3_kwh"] is None
    assert doc["complete_quarters"] == 8 and doc["final"] is False
    assert "p1/ev/month" in docs


def test_meter_swapped_while_stopped_is_flagged_replaced(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    house = SynthMeter("house")
    proc = processor(path, [house])
    proc.start()
    for reading in run_meter(house, START, START + timedelta(hours=1), Truth()):
        proc.on_reading(reading, datetime.now(UTC))
    proc.stop()
    # Days later, another meter on the same port; the old one's last reading is kept.
    house.equipment_id = "E0099"
    house.regs = {"i1": 10, "i2": 20, "e1": 0, "e2": 0}
    later = START + timedelta(days=3)
    proc = processor(path, [house])
    proc.start()
    for reading in run_meter(house, later, later + timedelta(hours=1), Truth()):
        proc.on_reading(reading, datetime.now(UTC))
    proc.stop()
    store = HistoryStore.open(path, readonly=True)
    (swap,) = store.replacements("house", START, later + timedelta(days=1))
    assert swap.old.equipment_id == "E0001" and swap.new.equipment_id == "E0099"
    assert swap.old.at == START + timedelta(hours=1)
    ids = [p.id for p in store.points()]
    statuses = {q.start: q.status for q in store.quarters(ids, later, later + timedelta(hours=1))}
    assert statuses[later] == "replaced"
    assert list(statuses.values()).count("complete") == 3
    store.close()


def test_restart_mid_quarter_continues_the_quarter_whole(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    house = SynthMeter("house")
    truth = Truth()
    readings = list(run_meter(house, START, START + timedelta(minutes=45), truth))
    stop_at = START + timedelta(minutes=20)  # inside the second quarter
    proc = processor(path, [house])
    proc.start()
    for reading in readings:
        if reading.timestamp == stop_at:
            proc.on_reading(reading, datetime.now(UTC))
            proc.stop()
            proc = processor(path, [house])
            proc.start()
        elif reading.timestamp != stop_at + timedelta(minutes=5):  # lost while down
            proc.on_reading(reading, datetime.now(UTC))
    proc.stop()
    store = HistoryStore.open(path, readonly=True)
    ids = [p.id for p in store.points()]
    rows = list(store.quarters(ids, START, START + timedelta(hours=1)))
    assert [r.status for r in rows] == ["complete"] * 3
    second = rows[1]
    assert second.deltas[("import", "t2")] * 1000 == truth.quarters[second.start]["i2"]
    store.close()


def test_the_last_quarter_of_a_month_makes_its_month_final(tmp_path: Path) -> None:
    house = SynthMeter("house")
    proc = processor(tmp_path / "history.db", [house])
    proc.start()
    begin = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)  # 23:30 local, to 00:30 on 1 Dec
    seen: list[dict] = []
    for reading in run_meter(house, begin, begin + timedelta(hours=1), Truth()):
        proc.on_reading(reading, datetime.now(UTC))
        if reading.timestamp == begin + timedelta(minutes=30):
            seen.append(month_docs(proc, 1)["p1/house/month"])  # after 23:45 closed
    seen.append(month_docs(proc, 1)["p1/house/month"])
    proc.stop()
    assert (seen[0]["month"], seen[0]["final"]) == ("2026-11", True)
    assert seen[0]["complete_quarters"] == 2
    assert (seen[-1]["month"], seen[-1]["final"]) == ("2026-12", False)
