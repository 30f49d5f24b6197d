"""The views' shortcuts give the very numbers of the plain computation: registers taken
straight from a reading's blocks (and shared while they stay equal), zero deltas booked
once per period, one deltas result for both views of a meter, and discovery's shape.

The reference here is the plain rule written out: Decimal of the shortest text of each
register, differences of consecutive readings summed per quarter, compared as text (the
history stores `format(value, "f")`, so an exponent must not change either)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from p1daemon.publish.topics import Topics
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import EnergyDirection, Voltage
from p1daemon.views.energy import samples
from p1daemon.views.energy.samples import ALL_KEYS, Key, sample_of
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.view import EnergyView
from p1daemon.views.homeassistant.announcer import DiscoveryAnnouncer
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_ATTRS = ("t1_kwh", "t2_kwh", "t3_kwh", "t4_kwh", "total_kwh")


def reading(
    at: datetime,
    imported: tuple[float | None, ...],
    exported: tuple[float | None, ...] = (0.0, 0.0, None, None, 0.0),
    *,
    meter: str = "house",
    voltage: Voltage | None = None,
) -> MeterReading:
    return MeterReading(
        header="ISK5\\2M550T-1012",
        equipment_id="E0001",
        timestamp=at,
        import_=EnergyDirection(**dict(zip(_ATTRS, imported, strict=True))),
        export=EnergyDirection(**dict(zip(_ATTRS, exported, strict=True))),
        voltage=voltage or Voltage(),
        meter=meter,
        role="primary",
        received_at=at,
    )


def plain(readings: list[MeterReading]) -> dict[Key, Decimal]:
    """The registers of the plain rule, for one reading at a time."""
    return samples._registers(readings[0].import_, readings[0].export)


def test_registers_from_the_blocks_are_the_plain_ones_and_shared_only_while_equal() -> None:
    a = reading(START, (1.5, 2.25, None, None, 3.75))
    b = reading(START + timedelta(seconds=1), (1.5, 2.25, None, None, 3.75))
    c = reading(
        START + timedelta(seconds=2), (1.5, 2.25, None, None, 3.75), (-0.0, 0.0, None, None, 0.0)
    )
    d = reading(START + timedelta(seconds=3), (1.5, 2.25, None, None, 3.75))
    e = reading(START + timedelta(seconds=4), (1.5, 2.251, float("nan"), None, 3.75))
    made = []
    for r in (a, b, c, d, e):
        sample = sample_of(r)
        assert sample is not None
        expected = plain([r])
        assert sample.registers == expected
        assert [str(v) for v in sample.registers.values()] == [str(v) for v in expected.values()]
        assert list(sample.registers) == list(expected)
        made.append(sample.registers)
    assert made[1] is made[0]  # equal values: the same mapping
    assert made[2] is not made[1] and str(made[2][("export", "t1")]) == "-0.0"
    assert made[3] is not made[2] and str(made[3][("export", "t1")]) == "0.0"
    assert ("import", "t3") not in made[4]  # NaN is no value


def test_two_meters_with_equal_values_each_keep_their_own() -> None:
    one = sample_of(reading(START, (1.0, 2.0, None, None, 3.0), meter="one"))
    two = sample_of(reading(START, (1.0, 2.0, None, None, 3.0), meter="two"))
    assert one is not None and two is not None
    assert one.registers == two.registers


def _walk(seed: int) -> list[MeterReading]:
    """Registers that often stay put and change with 0 to 3 decimals, every 7 s (never
    more than the 1 kWh a jump may be without looking like a replaced meter)."""
    rng = random.Random(seed)
    t1, t2, export = Decimal("100"), Decimal("200.5"), Decimal("0")
    out = []
    for i in range(700):  # 80 minutes: several quarters, both branches of the booking
        if rng.random() < 0.3:
            t1 += Decimal(rng.choice(["0.001", "0.01", "0.1", "0.5", "0.25"]))
        if rng.random() < 0.1:
            t2 += Decimal(rng.choice(["0.004", "0.25", "0.125"]))
        if rng.random() < 0.05:
            export += Decimal("0.125")
        imp = (float(t1), float(t2), None, None, float(t1 + t2))
        exp = (float(export), 0.0, None, None, float(export))
        out.append(reading(START + timedelta(seconds=7 * i), imp, exp))
    return out


def _reference_quarters(readings: list[MeterReading]) -> list[dict[Key, str]]:
    """Each quarter's sums by the plain rule (readings 7 s apart, none on a boundary:
    each interval is booked to the quarter of its later reading unless that one is
    within the 15 s tolerance after the boundary, then to the earlier quarter)."""
    quarters: dict[datetime, dict[Key, Decimal]] = {}
    for before, after in pairwise(readings):
        assert before.timestamp is not None and after.timestamp is not None
        at = after.timestamp
        start = at.replace(minute=at.minute - at.minute % 15, second=0)
        if (at - start).total_seconds() <= 15 and before.timestamp < start:
            start -= timedelta(minutes=15)
        sums = quarters.setdefault(start, {})
        regs_b, regs_a = plain([before]), plain([after])
        for key in ALL_KEYS:
            if key in regs_a and key in regs_b:
                sums[key] = sums.get(key, Decimal(0)) + (regs_a[key] - regs_b[key])
    return [{k: format(v, "f") for k, v in quarters[q].items()} for q in sorted(quarters)]


def test_quarter_sums_of_both_views_are_the_plain_sums_exponents_included() -> None:
    site = SiteSettings(timezone="UTC")
    for seed in range(5):
        readings = _walk(seed)
        live = EnergyView("house", "primary", None, site)
        history = EnergyView("house", "primary", None, site, day_documents=False)
        live_q, history_q = [], []
        for r in readings:
            live_q.extend(live.feed(r).closed)
            history_q.extend(history.feed(r).closed)
        expected = _reference_quarters(readings)
        got_live = [{k: format(v, "f") for k, v in q.sums.items()} for q in live_q]
        got_history = [{k: format(v, "f") for k, v in q.sums.items()} for q in history_q]
        # The first quarter's start was not seen; the last is still running.
        assert got_live == got_history == expected[: len(got_live)]
        assert len(got_live) >= 4
        day = live.current_day()
        assert day is not None
        totals: dict[Key, Decimal] = {}
        for q in live_q:
            for k, v in q.sums.items():
                totals[k] = totals.get(k, Decimal(0)) + v
        assert day.import_.t1_kwh is not None and day.import_.t1_kwh >= float(
            totals[("import", "t1")]
        )


def test_a_sum_takes_the_exponent_of_zeros_booked_into_it_once() -> None:
    """A register standing at one decimal books zeros "0.0", one moving to three decimals
    makes the sum "0.625"; the zeros booked again after it change nothing, as the plain
    rule says (every reading's difference added)."""
    site = SiteSettings(timezone="UTC")
    view = EnergyView("house", "primary", None, site)
    values = [100.0, 100.5, 100.5, 100.625, 100.625, 100.625, 100.625]
    at = START + timedelta(minutes=1)
    readings = [
        reading(at + timedelta(seconds=i), (v, 0.0, None, None, v)) for i, v in enumerate(values)
    ]
    readings.append(
        reading(START + timedelta(minutes=15, seconds=5), (100.625, 0.0, None, None, 100.625))
    )
    closed = []
    for r in readings:
        closed.extend(view.feed(r).closed)
    assert len(closed) == 1
    assert format(closed[0].sums[("import", "t1")], "f") == "0.625"
    assert format(closed[0].sums[("import", "t2")], "f") == "0.0"
    reference = _reference_quarters(readings)
    assert {k: format(v, "f") for k, v in closed[0].sums.items()} == reference[0]


def test_discovery_announces_again_exactly_when_a_field_appears() -> None:
    announcer = DiscoveryAnnouncer(
        HomeAssistantSettings(discovery=True), Topics("p1"), tariff_labels={}
    )
    imp = (1.0, 2.0, None, None, 3.0)
    first = announcer.on_reading(reading(START, imp, voltage=Voltage(l1_v=230.0)))
    assert first
    same = reading(
        START + timedelta(seconds=1), (1.5, 2.0, None, None, 3.5), voltage=Voltage(l1_v=231.0)
    )
    assert announcer.on_reading(same) == []
    more = reading(START + timedelta(seconds=2), imp, voltage=Voltage(l1_v=230.0, l2_v=229.0))
    fresh = announcer.on_reading(more)
    assert fresh and all("l2" in m.unique_id or "voltage" in m.topic for m in fresh)
    assert (
        announcer.on_reading(
            reading(START + timedelta(seconds=3), imp, voltage=Voltage(l1_v=230.0, l2_v=228.0))
        )
        == []
    )
