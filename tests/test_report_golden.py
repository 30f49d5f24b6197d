"""`p1daemon report` output, byte for byte, against digests taken before the report was
made faster (tests/golden/report.json): every format, every `--by`, `--excel`, one meter,
over a history with what makes output differ: the 25-hour day, a three-hour gap, a meter
replaced mid-day, gas hours, registers with and without the meter's three decimals,
tariff labels that need CSV quoting, a secondary metering point (connection shares).

An intended change of the output regenerates the digests (and says so in its commit):

    P1DAEMON_GOLDEN_UPDATE=1 .venv/bin/pytest tests/test_report_golden.py
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from history_synth import AMS, SynthMeter, Truth, run_meter

from p1daemon.cli import main
from p1daemon.views.energy.clock import day_bounds
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import MeterSpec
from p1daemon.views.history.recorder import HistoryRecorder
from p1daemon.views.history.store import HistoryStore

GOLDEN = Path(__file__).parent / "golden" / "report.json"
FIRST, LAST = date(2026, 10, 24), date(2026, 10, 26)

CASES: dict[str, list[str]] = {
    f"{fmt}-{by}": ["--period", "2026-10-24..2026-10-26", "--by", by, "--format", fmt]
    for fmt in ("csv", "json", "table")
    for by in ("quarter", "hour", "day", "month")
}
CASES |= {
    "excel-quarter": ["--period", "2026-10-24..2026-10-26", "--by", "quarter", "--excel"],
    "excel-day": ["--period", "2026-10", "--by", "day", "--excel"],
    "csv-month-period": ["--period", "2026-10", "--by", "day", "--format", "csv"],
    "json-car": ["--period", "2026-10-25", "--by", "quarter", "--format", "json", "--meter", "car"],
    "csv-ean": ["--period", "2026-10-25", "--by", "hour", "--format", "csv", "--ean",
                "871685900012345681"],
    "table-empty": ["--period", "2026-09", "--by", "day", "--format", "table"],
}  # fmt: skip


def build(folder: Path) -> Path:
    config = folder / "p1daemon.toml"
    config.write_text(
        """
[site]
topology = "series"

[history]
path = "history.db"

[[meters]]
name = "house"
ean = "871685900012345674"
source = "/dev/ttyUSB0"
tariff_labels = { t1 = "laag", t2 = 'normaal, "dag"' }

[[meters]]
name = "car"
role = "secondary"
ean = "871685900012345681"
source = "/dev/ttyUSB1"
""",
        encoding="utf-8",
    )
    start, end = day_bounds(FIRST, AMS)[0], day_bounds(LAST, AMS)[1]
    gap = (start + timedelta(hours=36), start + timedelta(hours=39))
    house = SynthMeter("house", ean="871685900012345674", gas=True)
    house.regs = {"i1": 1_000_000, "i2": 2_000_123, "e1": 5_000, "e2": 300_010}
    car = SynthMeter(
        "car",
        "secondary",
        ean="871685900012345681",
        equipment_id="C0001",
        profile=lambda i, local: (10 + (i * 17) % 90, (i * 7) % 13),
        regs={"i1": 40_000, "i2": 50_500, "e1": 0, "e2": 1_234},
    )
    swap = start + timedelta(hours=42)  # the new meter's first reading five minutes on
    readings = list(run_meter(house, start, end, Truth(), silent=lambda at: gap[0] < at < gap[1]))
    readings += list(run_meter(car, start, swap, Truth()))
    car.equipment_id = "C0002"
    car.regs = {"i1": 7, "i2": 0, "e1": 0, "e2": 0}
    readings += list(
        run_meter(car, swap, end, Truth(), silent=lambda at: at < swap + timedelta(minutes=5))
    )
    recorder = HistoryRecorder(
        SiteSettings(topology="series"),
        [MeterSpec("house", "primary", house.ean), MeterSpec("car", "secondary", car.ean)],
    )
    rows = []
    for reading in sorted(readings, key=lambda r: (r.timestamp, r.meter)):
        rows.extend(recorder.feed(reading))
    store = HistoryStore.open(folder / "history.db")
    store.write(rows)
    store.close()
    return config


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("golden"))


def output(config: Path, args: list[str]) -> bytes:
    result = CliRunner().invoke(main, ["report", "--config", str(config), *args])
    assert result.exit_code == 0, result.stderr
    return result.stdout_bytes


def digest(data: bytes) -> dict[str, object]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def test_the_history_has_what_the_outputs_must_show(config: Path) -> None:
    doc = {
        d["meter"]: d
        for d in map(json.loads, output(config, CASES["json-day"]).splitlines())
        if "meter" in d
    }
    assert len(doc["house"]["gaps"]) == 1 and doc["house"]["gaps"][0]["energy"] is not None
    (swap,) = doc["car"]["replacements"]
    assert swap["old"]["equipment_id"] == "C0001"
    assert doc["house"]["mbus"] and doc["house"]["quarters"] == 96 + 100 + 96


def test_report_output_is_byte_identical_to_the_golden_digests(config: Path) -> None:
    got = {name: digest(output(config, args)) for name, args in CASES.items()}
    if os.environ.get("P1DAEMON_GOLDEN_UPDATE"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert want.keys() == got.keys()
    differ = [name for name in CASES if got[name] != want[name]]
    assert not differ, differ


def test_the_golden_cases_are_not_trivial(config: Path) -> None:
    # Guards the digests: each case must produce real output (not an error, not empty).
    sizes = {name: len(output(config, args)) for name, args in CASES.items()}
    assert all(size > 200 for name, size in sizes.items() if name != "table-empty"), sizes
    assert sizes["csv-quarter"] > sizes["csv-hour"] > sizes["csv-day"] > sizes["csv-month"]
