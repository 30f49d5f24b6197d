"""Issue 11's proof with real parts: `p1daemon run` as a child process, two meters on
pseudo-terminals, a real mosquitto; then `p1daemon report` (while the daemon runs and
after it stopped) shows every quarter-hour exactly as the published quarter documents,
and the retained month document equals the report's month. A meter swapped while the
daemon was stopped is flagged replaced by the next run, on MQTT and in the report.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from history_e2e_support import (
    ClockedMeter,
    config_text,
    report,
    report_json,
    start_daemon,
    stop_daemon,
    utc,
    wh,
)
from mosquitto_broker import Broker, Received, Subscriber
from test_daemon_support import PtyMeter

from p1daemon.views.history.store import HistoryStore

# 09:00 local. The meters' clocks run while the daemon starts (ten meter-seconds per
# try, see `warm_up`), so the first quarters may be partial: counts are relative.
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
QUARTER = timedelta(minutes=15)
EANS = {"house": "871685900012345674", "car": "871685900012345681"}
REGISTERS = [(d, t) for d in ("import", "export") for t in ("t1", "t2", "total")]


def docs_on(sub: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [m.json() for m in sub.on(topic)]


def warm_up(meter: ClockedMeter, sub: Subscriber, timeout: float = 15.0) -> None:
    """A meter sends on; the daemon's first read flushes the port, so keep sending
    (its clock running) until one of its readings reaches the broker."""

    def seen(messages: list[Received]) -> bool:
        return any(m.topic == f"p1/{meter.name}/reading" for m in messages)

    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while datetime.now(UTC) < deadline:
        meter.send()
        try:
            sub.wait_for(seen, 0.1, f"a reading of {meter.name}")
            return
        except AssertionError:
            continue
    raise AssertionError(f"no reading of {meter.name} reached the broker")


def run_until(meters: list[ClockedMeter], end: datetime) -> None:
    while any(m.at <= end for m in meters):
        for meter in meters:
            if meter.at <= end:
                meter.send()


def wait_for_quarter(sub: Subscriber, meter: str, start: datetime, timeout: float = 20) -> None:
    def there(messages: list[Received]) -> bool:
        return any(
            m.topic == f"p1/{meter}/quarter" and utc(m.json()["start"]) == start for m in messages
        )

    sub.wait_for(there, timeout, f"{meter}'s quarter document of {start}")


def wait_for_month(sub: Subscriber, meter: str, complete: int, timeout: float = 20) -> None:
    """Until the month document counts `complete` complete quarters of `meter`."""

    def counted(messages: list[Received]) -> bool:
        docs = [m.json() for m in messages if m.topic == f"p1/{meter}/month"]
        return bool(docs) and docs[-1]["complete_quarters"] >= complete

    sub.wait_for(counted, timeout, f"{meter}'s month document with {complete} quarters")


def csv_quarters(text: str) -> dict[tuple[str, datetime], dict[str, Any]]:
    """(meter, start UTC) -> {register: Wh or None, 'complete': int} from the report CSV."""
    assert text.startswith("meter,role,ean,")
    out: dict[tuple[str, datetime], dict[str, Any]] = {}
    for row in csv.DictReader(io.StringIO(text, newline="")):
        if not row["register"].startswith(("import_", "export_")):
            continue
        entry = out.setdefault((row["meter"], utc(row["start"])), {})
        entry[row["register"]] = None if row["value"] == "" else wh(float(row["value"]))
        entry["complete"] = int(row["complete_quarters"])
        entry["ean"] = row["ean"]
    return out


def json_quarters(docs: dict[str, dict[str, Any]]) -> dict[tuple[str, datetime], dict[str, Any]]:
    out: dict[tuple[str, datetime], dict[str, Any]] = {}
    for meter, doc in docs.items():
        for interval in doc["intervals"]:
            entry: dict[str, Any] = {"complete": interval["complete_quarters"], "ean": doc["ean"]}
            for direction, tariff in REGISTERS:
                values = interval.get(direction)
                entry[f"{direction}_{tariff}"] = None if values is None else wh(values.get(tariff))
            out[(meter, utc(interval["start"]))] = entry
    return out


def assert_report_equals_published(
    reported: dict[tuple[str, datetime], dict[str, Any]],
    published: dict[str, list[dict[str, Any]]],
) -> int:
    """Every published quarter equals the report's to the Wh, with its status; the
    report has no energy in a quarter that was not published. Returns quarters checked."""
    checked = 0
    for meter, docs in published.items():
        starts = set()
        for doc in docs:
            start = utc(doc["start"])
            starts.add(start)
            row = reported[(meter, start)]
            for direction, tariff in REGISTERS:
                assert row[f"{direction}_{tariff}"] == wh(doc[direction][f"{tariff}_kwh"]), (
                    meter,
                    start,
                    direction,
                    tariff,
                )
            assert row["complete"] == (1 if doc["status"] == "complete" else 0), (meter, start)
            assert row["ean"] == EANS[meter]
            checked += 1
        for (name, start), row in reported.items():
            if name == meter and start not in starts:
                assert all(row[f"{d}_{t}"] in (None, 0) for d, t in REGISTERS), (name, start)
    return checked


def assert_published_equals_truth(meter: ClockedMeter, docs: list[dict[str, Any]]) -> int:
    complete = 0
    for doc in docs:
        truth = meter.quarter_truth(utc(doc["start"]))
        if doc["status"] != "complete":
            continue
        assert truth is not None, doc["start"]
        assert wh(doc["import"]["t1_kwh"]) == truth["i1"]
        assert wh(doc["import"]["t2_kwh"]) == truth["i2"]
        assert wh(doc["export"]["t1_kwh"]) == truth["e1"]
        assert wh(doc["export"]["t2_kwh"]) == truth["e2"]
        complete += 1
    return complete


def make_meters(tmp_path: Path) -> list[ClockedMeter]:
    return [
        ClockedMeter("house", PtyMeter(tmp_path / "ttyP1-house").plug(), START, seed=0),
        ClockedMeter(
            "car",
            PtyMeter(tmp_path / "ttyP1-car").plug(),
            START,
            equipment_id="E0000000000000002",
            regs={"i1": 500_000, "i2": 600_000, "e1": 0, "e2": 7_000},
            seed=1,
        ),
    ]


def write_config(tmp_path: Path, broker: Broker, meters: list[ClockedMeter]) -> Path:
    config = tmp_path / "p1daemon.toml"
    roles = {"house": "primary", "car": "secondary"}
    config.write_text(
        config_text(
            tmp_path,
            broker.port,
            [(m.name, roles[m.name], EANS[m.name], m.pty.link) for m in meters],
            history=tmp_path / "state" / "history.db",
            outbox=tmp_path / "state" / "outbox.db",
        ),
        encoding="utf-8",
    )
    return config


def test_report_shows_the_published_quarters_to_the_wh(
    tmp_path: Path, broker: Broker, subscriber: Subscriber
) -> None:
    meters = make_meters(tmp_path)
    config = write_config(tmp_path, broker, meters)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    end = datetime(2026, 11, 2, 10, 16, tzinfo=UTC)  # five whole quarters after START
    try:
        for meter in meters:
            warm_up(meter, subscriber)
        run_until(meters, end)
        for meter in meters:
            wait_for_quarter(subscriber, meter.name, end.replace(minute=0))
        published = {m.name: docs_on(subscriber, f"p1/{m.name}/quarter") for m in meters}
        # The month document follows its quarter's commit on the history's writer thread
        # and goes out on the next tick: wait for the one that counts every complete
        # quarter published (one handed over at the stop waits in the outbox instead).
        for meter in meters:
            complete = sum(1 for d in published[meter.name] if d["status"] == "complete")
            wait_for_month(subscriber, meter.name, max(5, complete))
        # A second process reads the history while the daemon writes it (WAL).
        assert daemon.poll() is None
        while_running = report_json(config, "--period", "2026-11-02", "--by", "quarter")
        assert daemon.poll() is None
    finally:
        code = stop_daemon(daemon)
        for meter in meters:
            meter.pty.unplug()
    assert code == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()

    for meter in meters:
        docs = published[meter.name]
        assert len(docs) >= 6, [d["start"] for d in docs]
        assert len({d["start"] for d in docs}) == len(docs)  # each quarter published once
        assert assert_published_equals_truth(meter, docs) >= 5

    checked = assert_report_equals_published(json_quarters(while_running), published)
    assert checked == sum(len(d) for d in published.values())

    text = report(config, "--period", "2026-11-02", "--by", "quarter", "--format", "csv")
    after = csv_quarters(text)
    assert assert_report_equals_published(after, published) == checked
    assert len(after) == 2 * 96  # every quarter of the day, per meter
    after_json = report_json(config, "--period", "2026-11-02", "--by", "quarter")
    assert json_quarters(after_json) == json_quarters(while_running)

    # The retained month document is the report's month, to the Wh.
    month = report_json(config, "--period", "2026-11", "--by", "month")
    for meter in meters:
        retained = docs_on(subscriber, f"p1/{meter.name}/month")[-1]
        doc = month[meter.name]
        assert retained["month"] == "2026-11"
        (interval,) = doc["intervals"]
        for direction, tariff in REGISTERS:
            assert wh(retained[direction][f"{tariff}_kwh"]) == wh(
                doc["totals"][direction][tariff]
            ), (meter.name, direction, tariff)
            assert wh(interval[direction][tariff]) == wh(doc["totals"][direction][tariff])
        complete = sum(1 for d in published[meter.name] if d["status"] == "complete")
        assert retained["complete_quarters"] == doc["complete_quarters"] == complete >= 5
        assert retained["quarters"] == doc["quarters"] == 30 * 96
        published_sum = sum(wh(d["import"]["total_kwh"]) or 0 for d in published[meter.name])
        assert wh(retained["import"]["total_kwh"]) == published_sum


def test_a_meter_swapped_while_the_daemon_was_stopped_is_flagged_replaced(
    tmp_path: Path, broker: Broker, subscriber: Subscriber
) -> None:
    meters = make_meters(tmp_path)
    house = meters[0]
    config = write_config(tmp_path, broker, meters)
    log = tmp_path / "daemon.log"
    first_end = datetime(2026, 11, 2, 9, 31, tzinfo=UTC)
    daemon = start_daemon(config, log)
    try:
        for meter in meters:
            warm_up(meter, subscriber)
        run_until(meters, first_end)
        for meter in meters:
            wait_for_quarter(subscriber, meter.name, datetime(2026, 11, 2, 9, 15, tzinfo=UTC))
    finally:
        assert stop_daemon(daemon) == 0, log.read_text()[-3000:]
    old_last = max(house.sent)

    # While the daemon is stopped: the house meter is swapped (new equipment id, new
    # registers far below the old ones); the car's meter stays and its clock runs on.
    resume = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    house.equipment_id = "E0000000000000099"
    house.regs = {"i1": 10, "i2": 20, "e1": 0, "e2": 0}
    for meter in meters:
        meter.at = resume
    before = len(subscriber.messages)
    daemon = start_daemon(config, log)
    second_end = datetime(2026, 11, 2, 11, 1, tzinfo=UTC)
    try:
        for meter in meters:
            warm_up(meter, subscriber)
        run_until(meters, second_end)
        for meter in meters:
            wait_for_quarter(subscriber, meter.name, datetime(2026, 11, 2, 10, 45, tzinfo=UTC))
    finally:
        assert stop_daemon(daemon) == 0, log.read_text()[-3000:]
        for meter in meters:
            meter.pty.unplug()
    assert "Traceback" not in log.read_text()

    later = subscriber.messages[before:]
    house_docs = [m.json() for m in later if m.topic == "p1/house/quarter"]
    car_docs = [m.json() for m in later if m.topic == "p1/car/quarter"]
    # The quarter the daemon stopped in is closed by the new meter's first reading: it
    # holds the old meter's readings and says so; the new meter's first one is replaced.
    closing = house_docs[0]
    assert utc(closing["start"]) == datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    assert closing["equipment_id"] == "E0000000000000001", closing
    assert closing["status"] == "partial" and closing["end_missing"] is True
    first_new = house_docs[1]
    assert first_new["equipment_id"] == "E0000000000000099"
    assert first_new["status"] == "replaced", first_new
    assert first_new["meter_replaced"] is True
    assert first_new["gap_before"]["meter_replaced"] is True
    assert all(d["status"] != "replaced" for d in car_docs), car_docs

    docs = report_json(config, "--period", "2026-11-02", "--by", "quarter")
    (swap,) = docs["house"]["replacements"]
    assert swap["old"]["equipment_id"] == "E0000000000000001"
    assert swap["new"]["equipment_id"] == "E0000000000000099"
    assert utc(swap["old"]["at"]) == old_last  # the old meter's last reading, kept
    assert wh(swap["old"]["import"]["t1"]) == house.sent[old_last]["i1"]
    assert docs["house"]["equipment_ids"] == ["E0000000000000001", "E0000000000000099"]
    assert docs["car"]["replacements"] == []
    # The new meter's energy starts from its own baseline: its quarters are the truth.
    assert assert_published_equals_truth(house, house_docs) >= 1
    store = HistoryStore.open(tmp_path / "state" / "history.db", readonly=True)
    try:
        points = {(p.meter, p.equipment_id) for p in store.points()}
    finally:
        store.close()
    assert points == {
        ("house", "E0000000000000001"),
        ("house", "E0000000000000099"),
        ("car", "E0000000000000002"),
    }
    # No energy is invented across the swap: the gap while stopped is listed, unknown.
    assert all(g["energy"] is None for g in docs["house"]["gaps"])
