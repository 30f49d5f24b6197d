"""Statements on the synthetic histories equal the generator's truth, to the cent.

The year of tests/test_history_year.py (two tariffs, export in summer, a gap, a meter
replacement, a restart) for feed-in in every netting mode and production per month; a
series site (a primary and two secondaries, one exporting, one with a gap) for delivered
and reconciliation; three days around the 25-hour day with export in every quarter for
an hourly price file across the DST change. Truth: the generator's integer Wh, priced
here with Decimal, never by the code under test."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from history_synth import AMS, SynthMeter, Truth, run_meter, year_start
from test_history_year import KEYS, Year, shared_year

from p1daemon.cli import main
from p1daemon.config.loader import load_config
from p1daemon.report.statement_command import build_statement
from p1daemon.report.statements import StatementError, read_prices
from p1daemon.views.energy.clock import day_bounds
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import MeterSpec
from p1daemon.views.history.recorder import HistoryRecorder
from p1daemon.views.history.store import HistoryStore

EAN = "871234567890123456"
CENT = Decimal("0.01")


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def kwh(wh: int) -> Decimal:
    return Decimal(wh) / 1000


def config_file(directory: Path, statements: str = "", meters: str = "", site: str = "") -> Path:
    path = directory / "p1daemon.toml"
    path.write_text(
        f'[history]\npath = "history.db"\n\n[site]\n{site}\n\n[statements]\n{statements}\n\n'
        + (meters or '[[meters]]\nname = "house"\nsource = "/dev/ttyUSB0"\n'),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> Year:
    return shared_year(tmp_path_factory)


def _year_totals(year: Year) -> dict[str, int]:
    whole = year.truth.between(year_start(2026), year_start(2027))
    return {k: whole[k] - year.lost[k] for k in KEYS}


def _statement(year: Year, statements: str, kind: str = "feed-in", **kw: object) -> list[dict]:
    config = load_config(config_file(year.path.parent, statements))
    store = HistoryStore.open(year.path, readonly=True)
    try:
        statement = build_statement(
            kind,
            config,
            store,
            (year_start(2026), year_start(2027)),
            **kw,  # type: ignore[arg-type]
        )
    finally:
        store.close()
    return statement.rows


@pytest.mark.parametrize("netting", ["none", "per_register", "total"])
def test_feed_in_equals_the_truth_in_every_netting_mode(year: Year, netting: str) -> None:
    price, factor = Decimal("0.0873"), Decimal("0.7")
    rows = _statement(
        year, f'feed_in_price_eur_per_kwh = 0.0873\nfeed_in_factor = 0.7\nnetting = "{netting}"'
    )
    truth = _year_totals(year)
    assert truth["e1"] > 0 and truth["e2"] > 0
    by_register = {row["register"]: row for row in rows}
    assert set(by_register) == {"t1", "t2", "total"}
    paid: dict[str, Decimal] = {}
    for tariff, e, i in (("t1", "e1", "i1"), ("t2", "e2", "i2")):
        row = by_register[tariff]
        assert row["meter"] == "house" and row["role"] == "primary" and row["ean"] == EAN
        assert row["equipment_id"] == "E0001 E0002"
        assert Decimal(row["export_kwh"]) == kwh(truth[e])
        assert Decimal(row["import_kwh"]) == kwh(truth[i])
        if netting == "none":
            paid[tariff] = kwh(truth[e])
        elif netting == "per_register":
            paid[tariff] = max(kwh(truth[e] - truth[i]), Decimal(0))
    total = by_register["total"]
    assert Decimal(total["export_kwh"]) == kwh(truth["e1"] + truth["e2"])
    if netting == "total":
        want_paid = max(kwh(truth["e1"] + truth["e2"] - truth["i1"] - truth["i2"]), Decimal(0))
        want = cents(want_paid * price * factor)
        assert by_register["t1"]["amount_eur"] == ""
    else:
        for tariff, value in paid.items():
            assert Decimal(by_register[tariff]["amount_eur"]) == cents(value * price * factor)
        want_paid = sum(paid.values(), Decimal(0))
        want = sum((cents(v * price * factor) for v in paid.values()), Decimal(0))
    assert Decimal(total["paid_kwh"]) == want_paid
    assert total["amount_eur"] == format(want, "f")
    if netting == "none":
        assert want > 0


def test_feed_in_per_meter_override(year: Year) -> None:
    rows = _statement(
        year,
        "feed_in_price_eur_per_kwh = 0.10\nfeed_in_factor = 0.8\n\n"
        "[statements.meter.house]\nfeed_in_price_eur_per_kwh = 0.05\n",
    )
    truth = _year_totals(year)
    total = next(r for r in rows if r["register"] == "total")
    assert total["price_eur_per_kwh"] == "0.05" and total["factor"] == "0.8"
    want = cents(kwh(truth["e1"]) * Decimal("0.04")) + cents(kwh(truth["e2"]) * Decimal("0.04"))
    assert Decimal(total["amount_eur"]) == want


def test_production_per_month_equals_the_truth(year: Year) -> None:
    rows = _statement(year, "", kind="production")
    assert len(rows) == 12
    for month, row in enumerate(rows, start=1):
        start = datetime(2026, month, 1, tzinfo=AMS).astimezone(UTC)
        end = datetime(2026 + month // 12, month % 12 + 1, 1, tzinfo=AMS).astimezone(UTC)
        truth = year.truth.between(start, end)
        if month == 7:
            truth = {k: truth[k] - year.lost[k] for k in KEYS}
        assert row["month"] == f"2026-{month:02d}"
        assert Decimal(row["export_kwh"]) == kwh(truth["e1"] + truth["e2"]), month
        assert Decimal(row["import_kwh"]) == kwh(truth["i1"] + truth["i2"]), month
        assert len(row["chain_hash"]) == 64
    may, july = rows[4], rows[6]
    assert may["gaps"] == "1" and Decimal(may["gap_import_kwh"]) > 0
    assert july["replacements"] == "1"
    assert Decimal(may["coverage"]) < 1 and rows[0]["coverage"] == "1.0000"


# -- hourly prices across the DST change -------------------------------------------------

DST_DAY = date(2026, 10, 25)


def _export_profile(index: int, local: datetime) -> tuple[int, int]:
    return 50, 1 + (index * 7) % 97


def _hour_price(hour_utc: datetime) -> Decimal:
    return Decimal(5 + hour_utc.hour * 3 + hour_utc.day) / 100


def test_hourly_prices_across_the_dst_change(tmp_path: Path) -> None:
    start, end = day_bounds(DST_DAY, AMS)
    meter = SynthMeter("house", ean=EAN, profile=_export_profile)
    truth = Truth()
    store = HistoryStore.open(tmp_path / "history.db")
    recorder = HistoryRecorder(SiteSettings(), [MeterSpec("house", "primary", EAN)])
    store.write([row for r in run_meter(meter, start, end, truth) for row in recorder.feed(r)])
    store.close()
    hours = [start + timedelta(hours=h) for h in range(25)]
    assert hours[-1] + timedelta(hours=1) == end  # the 25-hour day
    lines = ["hour_start,eur_per_kwh"] + [
        f"{h.astimezone(AMS).isoformat()},{_hour_price(h)}" for h in hours
    ]
    assert sum("T02:00:00" in line for line in lines) == 2  # both 02:00 hours, two prices
    prices = tmp_path / "prices.csv"
    prices.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = config_file(tmp_path, "feed_in_factor = 0.7")
    result = CliRunner().invoke(
        main,
        ["report", "--config", str(config), "--period", "2026-10-25", "--statement",
         "feed-in", "--prices", str(prices), "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["statement"] == "feed-in" and document["points"][0]["ean"] == EAN
    assert any("hourly" in line for line in document["formula"])
    row = next(r for r in document["rows"] if r["register"] == "hourly")
    raw = Decimal(0)
    exported = 0
    for at, flows in truth.quarters.items():
        hour = at.replace(minute=0)
        raw += kwh(flows["e1"] + flows["e2"]) * _hour_price(hour)
        exported += flows["e1"] + flows["e2"]
    assert Decimal(row["export_kwh"]) == kwh(exported)
    assert Decimal(row["amount_eur"]) == cents(raw * Decimal("0.7"))
    # The same file read as local times without the offset would not be the truth: the
    # two 02:00 hours have different prices and both carry export.
    assert _hour_price(hours[2]) != _hour_price(hours[3])


def test_price_file_without_offsets_is_refused_in_one_line(tmp_path: Path) -> None:
    prices = tmp_path / "prices.csv"
    prices.write_text("2026-10-25T02:00:00,0.10\n", encoding="utf-8")
    with pytest.raises(StatementError, match="no UTC offset"):
        read_prices(prices)
    prices.write_text("hour,price\n2026-10-25T02:00:00+02:00,abc\n", encoding="utf-8")
    with pytest.raises(StatementError, match=r"prices\.csv:2: not a price"):
        read_prices(prices)


# -- a series site: delivered and reconciliation -----------------------------------------

FIRST, LAST = date(2026, 6, 1), date(2026, 6, 3)
EV_SILENT = (datetime(2026, 6, 2, 10, 0, tzinfo=UTC), datetime(2026, 6, 2, 12, 0, tzinfo=UTC))


def house(index: int) -> int:
    return 60 + (index * 29) % 150


def charger(index: int) -> int:
    return 500 if 72 <= index % 96 < 84 or 40 <= index % 96 < 50 else 0


def solar(index: int, local: datetime) -> int:
    return (index * 41) % 400 if 9 <= local.hour < 17 else 0


def flows(index: int, local: datetime) -> tuple[int, int]:
    net = house(index) + charger(index) - solar(index, local)
    return (net, 0) if net >= 0 else (0, -net)


SERIES_METERS = """
[[meters]]
name = "grid"
source = "/dev/ttyUSB0"

[[meters]]
name = "ev"
role = "secondary"
source = "/dev/ttyUSB1"

[[meters]]
name = "pv"
role = "secondary"
source = "/dev/ttyUSB2"
"""


def build_series(directory: Path) -> tuple[Path, dict[str, Truth]]:
    start, end = day_bounds(FIRST, AMS)[0], day_bounds(LAST, AMS)[1]
    meters = [
        SynthMeter("grid", "primary", EAN, "P0001", lambda i, at: flows(i, at)),
        SynthMeter("ev", "secondary", "871234567890000028", "C0001", lambda i, at: (charger(i), 0)),
        SynthMeter(
            "pv", "secondary", "871234567890000035", "S0001", lambda i, at: (0, solar(i, at))
        ),
    ]
    specs = [MeterSpec(m.name, m.role, m.ean) for m in meters]
    recorder = HistoryRecorder(SiteSettings(topology="series"), specs)
    store = HistoryStore.open(directory / "history.db")
    truths = {m.name: Truth() for m in meters}
    silent: dict[str, Callable[[datetime], bool]] = {
        "ev": lambda at: EV_SILENT[0] < at < EV_SILENT[1]
    }
    streams = [
        run_meter(m, start, end, truths[m.name], silent=silent.get(m.name, lambda at: False))
        for m in meters
    ]
    rows = []
    for stream in streams:
        for reading in stream:
            rows.extend(recorder.feed(reading))
    store.write(rows)
    store.close()
    return config_file(directory, meters=SERIES_METERS, site='topology = "series"'), truths


def run_cli(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["report", "--config", str(config), "--period", "2026-06-01..2026-06-03", *args]
    )
    return result.exit_code, result.stdout_bytes.decode("utf-8") + result.stderr


def test_delivered_through_a_secondary_point_equals_the_truth(tmp_path: Path) -> None:
    config, truths = build_series(tmp_path)
    code, out = run_cli(config, "--statement", "delivered", "--meter", "ev", "--format", "csv")
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert len(rows) == 1
    (row,) = rows
    truth = truths["ev"].between(*(day_bounds(FIRST, AMS)[0], day_bounds(LAST, AMS)[1]))
    assert row["meter"] == "ev" and row["role"] == "secondary"
    assert row["ean"] == "871234567890000028" and row["equipment_id"] == "C0001"
    assert row["month"] == "2026-06"
    # The gap's energy is part of the month (it lies inside it) and listed on its own.
    assert Decimal(row["import_kwh"]) == kwh(truth["i1"] + truth["i2"])
    quarters = truths["ev"].quarters.items()
    gap_truth = sum(v["i1"] + v["i2"] for at, v in quarters if EV_SILENT[0] <= at < EV_SILENT[1])
    assert gap_truth > 0 and Decimal(row["gap_import_kwh"]) == kwh(gap_truth)
    assert row["gaps"] == "1"
    assert row["quarters"] == str(3 * 96)  # the month's quarter-hours within the period
    assert int(row["complete_quarters"]) < 3 * 96
    code, table = run_cli(config, "--statement", "delivered", "--meter", "ev", "--format", "table")
    assert code == 0 and "ev: secondary, EAN 871234567890000028, equipment C0001" in table
    assert "formula: " in table


def test_reconciliation_of_a_series_site_per_day(tmp_path: Path) -> None:
    config, truths = build_series(tmp_path)
    code, out = run_cli(config, "--statement", "reconciliation", "--format", "json")
    assert code == 0, out
    document = json.loads(out)
    assert [p["role"] for p in document["points"]] == ["primary", "secondary", "secondary"]
    rows = {(r["day"], r["direction"]): r for r in document["rows"]}
    for day in (FIRST, date(2026, 6, 2), LAST):
        start, end = day_bounds(day, AMS)
        grid = truths["grid"].between(start, end)
        ev = truths["ev"].between(start, end)
        pv = truths["pv"].between(start, end)
        imp = rows[(day.isoformat(), "import")]
        assert Decimal(imp["primary_kwh"]) == kwh(grid["i1"] + grid["i2"])
        if day != date(2026, 6, 2):  # the ev's gap day: its gap spans quarters, not the day
            assert Decimal(imp["secondaries_kwh"]) == kwh(ev["i1"] + ev["i2"])
        diff = Decimal(imp["primary_kwh"]) - Decimal(imp["secondaries_kwh"])
        assert Decimal(imp["difference_kwh"]) == diff
        exp = rows[(day.isoformat(), "export")]
        assert Decimal(exp["secondaries_kwh"]) == kwh(pv["e1"] + pv["e2"])
    total = rows[("total", "import")]
    assert Decimal(total["difference_pct"]) == (
        Decimal(total["difference_kwh"]) * 100 / Decimal(total["primary_kwh"])
    ).quantize(CENT, rounding=ROUND_HALF_UP)
    notes = document["notes"]
    assert any(n.startswith("negative own share (export)") for n in notes)
    assert any(n.startswith("ev has no data at 2026-06-02T12:") for n in notes)


def test_reconciliation_needs_a_primary_and_secondaries(year: Year) -> None:
    with pytest.raises(StatementError, match="one primary and at least one secondary"):
        _statement(year, "", kind="reconciliation")
