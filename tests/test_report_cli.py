"""`p1daemon report` and `p1daemon history import` as a user runs them: a real config
file, a real history file, the real command in a subprocess-free CliRunner."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from history_synth import AMS, SynthMeter, Truth, run_meter, telegram_of

from p1daemon.cli import main
from p1daemon.report.period import PeriodError, parse_period
from p1daemon.views.energy.clock import day_bounds
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import MeterSpec
from p1daemon.views.history.recorder import HistoryRecorder
from p1daemon.views.history.rows import MeterState
from p1daemon.views.history.store import HistoryStore

EAN = "871685900012345674"
FIRST, LAST = date(2026, 10, 24), date(2026, 10, 26)  # the 25-hour day in the middle


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "p1daemon.toml"
    config.write_text(
        f"""
[history]
path = "history.db"

[[meters]]
name = "house"
ean = "{EAN}"
source = "/dev/ttyUSB0"
tariff_labels = {{ t1 = "laag", t2 = "normaal" }}
""",
        encoding="utf-8",
    )
    return config


def synth(truth: Truth) -> list:
    house = SynthMeter("house", ean=EAN, gas=True)
    start, end = day_bounds(FIRST, AMS)[0], day_bounds(LAST, AMS)[1]
    return list(run_meter(house, start, end, truth))


def build(tmp_path: Path) -> tuple[Path, Truth]:
    config = write_config(tmp_path)
    truth = Truth()
    store = HistoryStore.open(tmp_path / "history.db")
    recorder = HistoryRecorder(SiteSettings(), [MeterSpec("house", "primary", EAN)])
    # As the daemon records it: each reading with its telegram (kept at quarter edges).
    rows = [row for r in synth(truth) for row in recorder.feed(r, telegram_of(r))]
    store.write(rows)
    store.close()
    return config, truth


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    # stdout_bytes: click's `stdout` turns CRLF into LF.
    return result.exit_code, result.stdout_bytes.decode("utf-8"), result.stderr


def test_csv_by_day_equals_the_truth_with_meter_readings(tmp_path: Path) -> None:
    config, truth = build(tmp_path)
    code, out, err = run(
        "report", "--config", str(config), "--period", "2026-10-24..2026-10-26", "--format", "csv"
    )
    assert code == 0, err
    assert out.startswith("meter,role,ean,equipment_id,start,end,register,")
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert "\r\n" in out  # RFC 4180 line ends
    energy = [r for r in rows if r["unit"] == "kWh"]
    registers = {r["register"] for r in energy}
    assert registers == {f"{d}_{t}" for d in ("import", "export") for t in ("t1", "t2", "total")}
    assert {r["label"] for r in energy if r["register"].endswith("t1")} == {"laag"}
    for day in (FIRST, FIRST + timedelta(days=1), LAST):
        start, end = day_bounds(day, AMS)
        want = truth.between(start, end)
        got = {r["register"]: r for r in energy if r["start"] == start.astimezone(AMS).isoformat()}
        assert got["import_t1"]["value"] == f"{want['i1'] / 1000:.3f}"
        assert got["export_t2"]["value"] == f"{want['e2'] / 1000:.3f}"
        # The meter readings the day runs between, with the meter's timestamps.
        assert got["import_t2"]["first_reading_at"] == start.astimezone(AMS).isoformat()
        assert got["import_t2"]["last_reading_at"] == end.astimezone(AMS).isoformat()
        assert got["import_t2"]["first_reading"] == f"{truth.sent[start]['i2'] / 1000:.3f}"
    long_day = [r for r in energy if r["start"].startswith("2026-10-25")]
    assert long_day[0]["quarters"] == "100" and long_day[0]["complete_quarters"] == "100"
    gas = [r for r in rows if r["register"] == "gas_1"]
    assert len(gas) == 3 and gas[0]["unit"] == "m3"


def test_excel_is_what_a_dutch_spreadsheet_opens(tmp_path: Path) -> None:
    config, _truth = build(tmp_path)
    result = CliRunner().invoke(
        main, ["report", "--config", str(config), "--period", "2026-10-25", "--excel"]
    )
    assert result.exit_code == 0, result.stderr
    raw = result.stdout_bytes
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    assert rows[0][:3] == ["meter", "role", "ean"]
    value = rows[1][8]
    assert "," in value and "." not in value


def test_json_one_document_per_metering_point(tmp_path: Path) -> None:
    config, truth = build(tmp_path)
    code, out, err = run(
        "report",
        "--config",
        str(config),
        "--period",
        "2026-10-24..2026-10-26",
        "--by",
        "month",
        "--format",
        "json",
    )
    assert code == 0, err
    (doc,) = [json.loads(line) for line in out.splitlines()]
    start, end = day_bounds(FIRST, AMS)[0], day_bounds(LAST, AMS)[1]
    want = truth.between(start, end)
    assert doc["meter"] == "house" and doc["ean"] == EAN and doc["equipment_ids"] == ["E0001"]
    assert round(doc["totals"]["import"]["t1"] * 1000) == want["i1"]
    assert doc["coverage"] == 1.0 and doc["gaps"] == [] and doc["replacements"] == []
    assert doc["first_reading"]["at"] == start.astimezone(AMS).isoformat()
    assert doc["tariff_labels"] == {"t1": "laag", "t2": "normaal"}
    assert doc["mbus"][0]["kind"] == "gas"


def test_table_on_a_terminal_names_everything(tmp_path: Path) -> None:
    config, _truth = build(tmp_path)
    code, out, err = run(
        "report", "--config", str(config), "--period", "2026-10-25", "--format", "table"
    )
    assert code == 0, err
    assert f"house (primary, EAN {EAN}, equipment E0001)" in out
    assert "coverage 100.00% (100 of 100 quarter-hours complete)" in out
    assert "import_t1 (laag)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "2026-13"], "period '2026-13'"),
        (["--period", "soon"], "use 2026-11"),
        (["--meter", "garage"], "no history for meter 'garage'"),
        (["--meter", "house", "--ean", EAN], "not both"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    config, _truth = build(tmp_path)
    code, _out, err = run("report", "--config", str(config), *args)
    assert code in (1, 2) and message in err
    assert "Traceback" not in err


def test_missing_history_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    code, _out, err = run("report", "--config", str(config))
    assert code == 1 and err.strip().count("\n") == 0 and "no history at" in err


def test_periods() -> None:
    now = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    assert parse_period("2026-11", AMS, now).last_day == date(2026, 11, 30)
    assert parse_period("2026", AMS, now).first_day == date(2026, 1, 1)
    assert parse_period("last-month", AMS, now).first_day == date(2026, 11, 1)
    assert parse_period("this-month", AMS, now).last_day == date(2026, 12, 31)
    assert parse_period("yesterday", AMS, now).first_day == date(2026, 12, 1)
    start, end = parse_period("2026-03-29", AMS, now).bounds(AMS)
    assert (end - start) == timedelta(hours=23)
    with pytest.raises(PeriodError):
        parse_period("2026-11-15..2026-11-01", AMS, now)


def _dump(path: Path) -> list[tuple]:
    db = sqlite3.connect(path)
    out = []
    for table in ("points", "quarters", "gaps", "replacements", "mbus_hours"):
        out += [(table, *row) for row in db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
    db.close()
    return out


def test_import_from_captures_is_idempotent_and_equals_the_live_history(tmp_path: Path) -> None:
    config, _truth = build(tmp_path)  # the history the daemon recorded live
    capture = tmp_path / "ttyUSB0.log"
    capture.write_bytes(b"".join(telegram_of(r) for r in synth(Truth())))
    imported = tmp_path / "imported.db"
    args = ["history", "import", str(capture), "--meter", "house", "--config", str(config)]
    code, out, err = run(*args, "--history", str(imported))
    assert code == 0, err
    assert "house: " in out and " readings" in out
    first = _dump(imported)
    code, _out, err = run(*args, "--history", str(imported))
    assert code == 0, err
    assert _dump(imported) == first  # twice changes nothing
    live = [row for row in _dump(tmp_path / "history.db")]
    assert first == live
    store = HistoryStore.open(imported, readonly=True)
    assert store.states() == {}  # an import never touches the live meter state
    store.close()
    assert MeterState  # (the type the live state rows have)


def test_gas_in_a_quarter_report_is_per_hour(tmp_path: Path) -> None:
    config, truth = build(tmp_path)
    code, out, err = run(
        "report", "--config", str(config), "--period", "2026-10-24", "--by", "quarter",
        "--format", "csv",
    )  # fmt: skip
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    gas = [r for r in rows if r["register"] == "gas_1"]
    assert len(gas) == 24
    for row in gas:
        start = datetime.fromisoformat(row["start"])
        assert datetime.fromisoformat(row["end"]) - start == timedelta(hours=1)
        want = truth.gas_hours[start.astimezone(UTC)]
        assert row["value"] == f"{want / 1000:.3f}"


def test_peaks_are_each_months_highest_quarter_hour_of_import(tmp_path: Path) -> None:
    """The capacity tariff's month peak from the history: the quarter-hour with the most
    imported energy, as average kW (issue 13), equal to the generator's truth."""
    config, truth = build(tmp_path)
    imported = {at: q["i1"] + q["i2"] for at, q in truth.quarters.items()}
    top = max(imported.values())
    at = min(start for start, wh in imported.items() if wh == top)  # ties: the earliest
    code, out, err = run("report", "--config", str(config), "--period", "2026-10", "--peaks",
                         "--format", "csv")  # fmt: skip
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["meter"], r["month"]) for r in rows] == [("house", "2026-10")]
    assert rows[0]["peak_kw"] == f"{top * 4 / 1000:.3f}"
    assert rows[0]["peak_start"] == at.astimezone(AMS).isoformat()
    assert int(rows[0]["quarters"]) == len(imported)

    code, out, err = run("report", "--config", str(config), "--period", "2026-10", "--peaks",
                         "--format", "json")  # fmt: skip
    assert code == 0, err
    (document,) = [json.loads(line) for line in out.splitlines()]
    assert document["peak_kw"] == pytest.approx(top * 4 / 1000)
    code, out, _ = run("report", "--config", str(config), "--period", "2026-10", "--peaks",
                       "--format", "table")  # fmt: skip
    assert "2026-10" in out and f"{top * 4 / 1000:.3f} kW" in out
