"""The connection document: a primary and two secondaries, in parallel and in series.

Scenario: a house (primary) with its own load of 1.8 kW, an EV charger (secondary
"carport") drawing 3.6 kW, and solar panels (secondary "solar") feeding in 1.8 kW. In
parallel each meter measures its own branch; in series the primary meter sees the whole
connection, 1.8 + 3.6 - 1.8 = 3.6 kW of import. Expected numbers are that arithmetic.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from p1daemon.reading.meter import MeterReading, Role
from p1daemon.reading.model import EnergyDirection
from p1daemon.views.energy.documents import DayDoc, QuarterDoc
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.site import ConnectionDoc, MeterState, connection_document
from p1daemon.views.energy.view import EnergyView

AMS = ZoneInfo("Europe/Amsterdam")
START = datetime(2024, 6, 21, 12, 0, tzinfo=AMS)

# name -> (role, import kW, export kW) as each meter measures it in parallel
BRANCHES: dict[str, tuple[Role, float, float]] = {
    "house": ("primary", 1.8, 0.0),
    "carport": ("secondary", 3.6, 0.0),
    "solar": ("secondary", 0.0, 1.8),
}


def reading(
    meter: str, role: Role, at: datetime, imp_kw: float, exp_kw: float, imp_wh: int, exp_wh: int
) -> MeterReading:
    return MeterReading(
        header="TST5\\2SITE",
        equipment_id=f"EQ-{meter}",
        timestamp=at,
        import_=EnergyDirection(t1_kwh=imp_wh / 1000, total_kwh=imp_wh / 1000, power_kw=imp_kw),
        export=EnergyDirection(t1_kwh=exp_wh / 1000, total_kwh=exp_wh / 1000, power_kw=exp_kw),
        meter=meter,
        role=role,
        received_at=at,
    )


def run_meter(
    meter: str, role: Role, imp_kw: float, exp_kw: float, minutes: int = 16
) -> tuple[MeterReading, QuarterDoc, DayDoc]:
    """A reading every 10 s from 12:00; registers advance by power x 10 s."""
    view = EnergyView(meter, role, None, SiteSettings())
    imp_wh, exp_wh = 1_000_000, 2_000_000
    quarter: QuarterDoc | None = None
    day: DayDoc | None = None
    last: MeterReading | None = None
    for step in range(minutes * 6 + 1):
        last = reading(
            meter, role, START + timedelta(seconds=10 * step), imp_kw, exp_kw, imp_wh, exp_wh
        )
        out = view.feed(last)
        quarter = out.quarters[-1] if out.quarters else quarter
        day = out.days[-1] if out.days else day
        imp_wh += round(imp_kw * 10_000 / 3600)
        exp_wh += round(exp_kw * 10_000 / 3600)
    assert last is not None and quarter is not None and day is not None
    return last, quarter, day


def states(series: bool) -> list[MeterState]:
    out: list[MeterState] = []
    for name, (role, imp, exp) in BRANCHES.items():
        if series and role == "primary":
            # The primary meter measures the whole connection.
            net = sum(i - e for _, i, e in BRANCHES.values())
            imp, exp = max(net, 0.0), max(-net, 0.0)
        latest, quarter, day = run_meter(name, role, imp, exp)
        out.append(MeterState(name, role, f"87168740000000000{len(out)}", latest, quarter, day))
    return out


def at_end(states_: list[MeterState]) -> datetime:
    assert states_[0].latest is not None
    return states_[0].latest.received_at + timedelta(seconds=1)


def point(doc: ConnectionDoc, meter: str) -> dict[str, object]:
    found = next(p for p in json.loads(doc.model_dump_json())["points"] if p["meter"] == meter)
    assert isinstance(found, dict)
    return found


def test_parallel_connection_is_the_sum() -> None:
    meters = states(series=False)
    doc = connection_document(meters, SiteSettings(topology="parallel"), at_end(meters))
    assert doc.warnings == [] and doc.complete
    power = doc.connection.power
    assert (power.import_kw, power.export_kw, power.net_kw) == pytest.approx((5.4, 1.8, 3.6))
    quarter = doc.connection.quarter
    assert quarter is not None and quarter.complete
    assert quarter.start == START
    # 15 minutes at those powers: 0.45 + 0.9 import, 0.45 export.
    assert (quarter.import_kwh, quarter.export_kwh, quarter.net_kwh) == pytest.approx(
        (1.35, 0.45, 0.9)
    )
    today = doc.connection.today
    assert today is not None and not today.complete  # the day is not over
    assert today.net_kwh == pytest.approx(0.9)  # 12:00-12:15 so far (last closed quarter)
    assert all(not p.derived for p in doc.points)
    solar = point(doc, "solar")
    assert solar["power"] == {"import_kw": 0.0, "export_kw": 1.8, "net_kw": -1.8}


def test_series_primary_share_is_primary_minus_secondaries() -> None:
    meters = states(series=True)
    doc = connection_document(meters, SiteSettings(topology="series"), at_end(meters))
    power = doc.connection.power
    assert (power.import_kw, power.export_kw, power.net_kw) == pytest.approx((3.6, 0.0, 3.6))
    house = next(p for p in doc.points if p.meter == "house")
    assert house.derived
    # The house's own use is exact as a net value...
    assert house.power.net_kw == pytest.approx(1.8)
    assert house.quarter is not None and house.quarter.net_kwh == pytest.approx(0.45)
    # ...but per direction the solar export never reached the primary meter: the house
    # used it. "Primary export minus secondary export" is negative, and that is reported.
    assert house.power.export_kw == pytest.approx(-1.8)
    codes = {(w.code, w.meter) for w in doc.warnings}
    assert ("series_negative_export", "house") in codes
    assert not doc.complete
    assert any("last quarter" in w.message for w in doc.warnings)
    # The identity the document keeps: connection = own share + secondaries.
    secondaries = [p for p in doc.points if p.role == "secondary"]
    assert power.net_kw == pytest.approx(
        (house.power.net_kw or 0) + sum(p.power.net_kw or 0 for p in secondaries)
    )


def test_series_without_flow_between_points_reconciles() -> None:
    """Same series site without the solar panels: nothing to warn about."""
    meters = [m for m in states(series=True) if m.meter != "solar"]
    house_imp = 1.8 + 3.6
    latest, quarter, day = run_meter("house", "primary", house_imp, 0.0)
    meters[0] = MeterState("house", "primary", None, latest, quarter, day)
    doc = connection_document(meters, SiteSettings(topology="series"), at_end(meters))
    assert doc.warnings == [] and doc.complete
    house = doc.points[0]
    assert (house.power.import_kw, house.power.export_kw) == pytest.approx((1.8, 0.0))
    assert house.quarter is not None
    assert (house.quarter.import_kwh, house.quarter.export_kwh) == pytest.approx((0.45, 0.0))


def test_a_stale_meter_voids_the_sum_and_says_so() -> None:
    meters = states(series=False)
    now = at_end(meters) + timedelta(seconds=30)
    old = meters[1]
    assert old.latest is not None
    stale_latest = old.latest.model_copy(update={"received_at": now - timedelta(minutes=5)})
    meters[1] = MeterState(old.meter, old.role, old.ean, stale_latest, old.quarter, old.day)
    doc = connection_document(meters, SiteSettings(topology="parallel"), now)
    assert [(w.code, w.meter) for w in doc.warnings] == [("stale", "carport")]
    assert doc.connection.power.import_kw is None  # not a partial sum
    carport = next(p for p in doc.points if p.meter == "carport")
    assert carport.stale and carport.age_s == pytest.approx(300.0)
    assert not doc.complete


def test_a_missing_meter_and_a_missing_primary() -> None:
    meters = states(series=False)
    meters.append(MeterState("shed", "secondary", None))
    doc = connection_document(meters, SiteSettings(topology="parallel"), at_end(meters))
    assert ("missing", "shed") in {(w.code, w.meter) for w in doc.warnings}
    assert doc.connection.power.net_kw is None and doc.connection.quarter is None

    two_primaries = [*states(series=False)]
    first = two_primaries[1]
    two_primaries[1] = MeterState(
        first.meter, "primary", first.ean, first.latest, first.quarter, first.day
    )
    doc = connection_document(two_primaries, SiteSettings(topology="series"), at_end(two_primaries))
    assert "no_primary" in {w.code for w in doc.warnings}
    assert doc.connection.power.net_kw is None


def test_quarters_are_only_combined_when_every_meter_closed_the_same_one() -> None:
    meters = states(series=False)
    lagging = meters[2]
    assert lagging.quarter is not None
    earlier = lagging.quarter.model_copy(
        update={"start": START - timedelta(minutes=15), "end": START}
    )
    meters[2] = MeterState(
        lagging.meter, lagging.role, lagging.ean, lagging.latest, earlier, lagging.day
    )
    doc = connection_document(meters, SiteSettings(topology="parallel"), at_end(meters))
    assert doc.connection.quarter is None
    assert all(p.quarter is None for p in doc.points)
    assert doc.warnings == []  # normal for a moment after every boundary
