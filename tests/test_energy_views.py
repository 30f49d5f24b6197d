"""Quarter-hour and day views from cumulative registers: DST, replacement, gaps, restart.

The DST tests go the whole way a capture goes: telegrams written here (DSMR 5 layout,
S/W time flags, CRC-16/ARC), parsed by the daemon's own `ReadingStream`, then booked.
Expected values come from this file's own meter model (a fixed power per wall-clock
hour), never from the code under test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from conftest import OWN_FIXTURES

from p1daemon.frame.crc import crc16_arc
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import EnergyDirection, Reading
from p1daemon.views.energy.documents import DayDoc, QuarterDoc
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.view import EnergyView, ViewOutput

AMS = ZoneInfo("Europe/Amsterdam")
SETTINGS = SiteSettings()
STEP_S = 10
WH_PER_STEP = 5  # 1.8 kW for 10 s


def is_low_tariff(local: datetime) -> bool:
    return local.hour < 7 or local.hour >= 23


def exports_now(local: datetime) -> bool:
    return 10 <= local.hour < 14


@dataclass
class FakeMeter:
    """Registers in whole Wh; each 10 s interval adds 5 Wh to one register chosen by the
    wall-clock hour at the start of the interval (export 10:00-14:00, else import; T1 at
    night)."""

    equipment_id: str = "P1DTEST000000001"
    registers: dict[str, int] = field(
        default_factory=lambda: {
            "imp_t1": 1_234_567,
            "imp_t2": 2_345_678,
            "exp_t1": 11,
            "exp_t2": 3_000_001,
        }
    )

    @staticmethod
    def register_for(interval_start: datetime) -> str:
        local = interval_start.astimezone(AMS)
        direction = "exp" if exports_now(local) else "imp"
        tariff = "t1" if is_low_tariff(local) else "t2"
        return f"{direction}_{tariff}"

    def advance(self, interval_start: datetime) -> None:
        self.registers[self.register_for(interval_start)] += WH_PER_STEP


def kwh(wh: int) -> str:
    return f"{wh // 1000:06d}.{wh % 1000:03d}"


def telegram(meter: FakeMeter, at: datetime, *, exporting: bool) -> bytes:
    local = at.astimezone(AMS)
    flag = "S" if local.dst() else "W"
    regs = meter.registers
    lines = [
        "/TST5\\2P1D-ENERGYTEST",
        "",
        "1-3:0.2.8(50)",
        f"0-0:1.0.0({local:%y%m%d%H%M%S}{flag})",
        f"0-0:96.1.1({meter.equipment_id.encode().hex().upper()})",
        f"1-0:1.8.1({kwh(regs['imp_t1'])}*kWh)",
        f"1-0:1.8.2({kwh(regs['imp_t2'])}*kWh)",
        f"1-0:2.8.1({kwh(regs['exp_t1'])}*kWh)",
        f"1-0:2.8.2({kwh(regs['exp_t2'])}*kWh)",
        f"0-0:96.14.0({'0001' if is_low_tariff(local) else '0002'})",
        f"1-0:1.7.0({'00.000' if exporting else '01.800'}*kW)",
        f"1-0:2.7.0({'01.800' if exporting else '00.000'}*kW)",
    ]
    body = "\r\n".join(lines) + "\r\n!"
    return (body + f"{crc16_arc(body.encode('ascii')):04X}\r\n").encode("ascii")


def instants(start: datetime, end: datetime, step_s: int = STEP_S) -> Iterator[datetime]:
    """Every step from start to end inclusive, stepping elapsed time (UTC), not wall time."""
    at = start.astimezone(UTC)
    while at <= end:
        yield at
        at += timedelta(seconds=step_s)


def capture(meter: FakeMeter, times: list[datetime]) -> bytes:
    """The byte stream the meter sends at `times`; registers advance between telegrams."""
    out = bytearray()
    for i, at in enumerate(times):
        if i:
            meter.advance(times[i - 1])
        out += telegram(meter, at, exporting=exports_now(at.astimezone(AMS)))
    return bytes(out)


def replay(stream: bytes, meter: str = "house") -> list[MeterReading]:
    events = ReadingStream(TelegramDecoder()).feed(stream)
    readings = [e for e in events if isinstance(e, Reading)]
    assert len(readings) == len(events), "every synthesised telegram must be accepted"
    return [
        MeterReading.from_reading(
            r, meter=meter, role="primary", ean=None, received_at=r.timestamp or datetime.now(UTC)
        )
        for r in readings
    ]


def run(view: EnergyView, readings: list[MeterReading]) -> ViewOutput:
    total = ViewOutput()
    for reading in readings:
        out = view.feed(reading)
        total.quarters.extend(out.quarters)
        total.days.extend(out.days)
    return total


def local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=AMS)


def expected_quarters(day: date) -> list[tuple[datetime, dict[str, Decimal]]]:
    """This file's model, quarter by quarter: 90 intervals of 5 Wh on one register."""
    out = []
    at = local_midnight(day).astimezone(UTC)
    end = local_midnight(day + timedelta(days=1)).astimezone(UTC)
    while at < end:
        register = FakeMeter.register_for(at)
        out.append((at, {register: Decimal(90 * WH_PER_STEP) / 1000}))
        at += timedelta(minutes=15)
    return out


def value(doc: QuarterDoc | DayDoc, register: str) -> float | None:
    direction, tariff = register.split("_")
    block = doc.import_ if direction == "imp" else doc.export
    result: float | None = getattr(block, f"{tariff}_kwh")
    return result


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2024, 3, 31), 23), (date(2024, 10, 27), 25)],
    ids=["spring-23h", "autumn-25h"],
)
def test_quarters_and_day_across_dst(day: date, hours: int) -> None:
    times = list(instants(local_midnight(day), local_midnight(day + timedelta(days=1))))
    assert len(times) == hours * 360 + 1
    readings = replay(capture(FakeMeter(), times))
    out = run(EnergyView("house", "primary", None, SETTINGS), readings)

    expected = expected_quarters(day)
    assert len(expected) == hours * 4
    # Instants, not datetimes: Python calls 02:00+02:00 and 02:00+01:00 equal in one zone.
    assert [q.start.timestamp() for q in out.quarters] == [s.timestamp() for s, _ in expected]
    for quarter, (_, values) in zip(out.quarters, expected, strict=True):
        assert quarter.complete, quarter
        assert (quarter.end - quarter.start).total_seconds() == 900
        for register in ("imp_t1", "imp_t2", "exp_t1", "exp_t2"):
            assert value(quarter, register) == pytest.approx(float(values.get(register, 0)))
        imported = sum(v for k, v in values.items() if k.startswith("imp"))
        assert quarter.import_.total_kwh == pytest.approx(float(imported))

    finals = [d for d in out.days if d.final]
    assert len(finals) == 1
    final = finals[0]
    assert final.date == day and final.hours == hours and final.complete
    assert final.quarters == hours * 4
    # Export 10:00-14:00 at 1.8 kW (tariff 2); import the rest, T1 before 07:00 and after 23:00.
    low_hours = 7 if hours == 23 else 9  # 02:00-03:00 is missing in March, doubled in October
    assert value(final, "exp_t2") == pytest.approx(4 * 1.8)
    assert value(final, "exp_t1") == 0.0
    assert value(final, "imp_t1") == pytest.approx(low_hours * 1.8)
    assert value(final, "imp_t2") == pytest.approx((hours - 4 - low_hours) * 1.8)
    assert final.import_.total_kwh == pytest.approx((hours - 4) * 1.8)


def test_the_repeated_october_hour_has_two_sets_of_quarters() -> None:
    day = date(2024, 10, 27)
    times = list(instants(local_midnight(day), local_midnight(day) + timedelta(hours=4)))
    out = run(EnergyView("house", "primary", None, SETTINGS), replay(capture(FakeMeter(), times)))
    as_text = [json.loads(q.model_dump_json())["start"] for q in out.quarters]
    two_am = [s for s in as_text if "T02:" in s]
    assert two_am == [
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T02:15:00+02:00",
        "2024-10-27T02:30:00+02:00",
        "2024-10-27T02:45:00+02:00",
        "2024-10-27T02:00:00+01:00",
        "2024-10-27T02:15:00+01:00",
        "2024-10-27T02:30:00+01:00",
        "2024-10-27T02:45:00+01:00",
    ]
    assert all(q.import_.t1_kwh == pytest.approx(0.45) for q in out.quarters if q.start.hour == 2)


def test_readings_off_the_boundary_still_give_exact_constant_quarters() -> None:
    """DSMR 4 meters send every 10 s at arbitrary seconds: each quarter still gets the 90
    intervals that start in it."""
    day = date(2024, 6, 21)
    start = local_midnight(day) + timedelta(hours=8, seconds=3)
    times = list(instants(start, start + timedelta(hours=1, seconds=20)))
    out = run(EnergyView("house", "primary", None, SETTINGS), replay(capture(FakeMeter(), times)))
    # 08:00 starts at 08:00:03 (start missing); 08:15, 08:30, 08:45 are whole.
    assert [q.start.strftime("%H:%M") for q in out.quarters] == ["08:00", "08:15", "08:30", "08:45"]
    assert out.quarters[0].start_missing and not out.quarters[0].complete
    # 08:00:03-08:15:03: the reading 3 s after 08:15 stands in for the boundary.
    assert out.quarters[0].import_.t2_kwh == pytest.approx(0.45)
    for quarter in out.quarters[1:]:
        assert quarter.complete
        assert quarter.import_.t2_kwh == pytest.approx(0.45)


# -- readings built directly: replacement, gaps, restart -----------------------------------


def make(
    at: datetime,
    imp_wh: int,
    *,
    exp_wh: int = 0,
    equipment_id: str | None = "E1",
    replaced: bool = False,
    t2: bool = True,
) -> MeterReading:
    def direction(wh: int) -> EnergyDirection:
        return EnergyDirection(
            t1_kwh=0.0 if t2 else wh / 1000,
            t2_kwh=wh / 1000 if t2 else 0.0,
            total_kwh=wh / 1000,
        )

    return MeterReading(
        header="TST5\\2P1D",
        equipment_id=equipment_id,
        timestamp=at,
        import_=direction(imp_wh),
        export=direction(exp_wh),
        meter="house",
        role="primary",
        received_at=at,
        meter_replaced=replaced,
    )


def steady(
    start: datetime,
    end: datetime,
    first_wh: int,
    *,
    skip: Callable[[datetime], bool] = lambda at: False,
    equipment_id: str = "E1",
) -> list[MeterReading]:
    """A reading every 10 s, 5 Wh per interval (1.8 kW), leaving out what `skip` says."""
    out = []
    for i, at in enumerate(instants(start, end)):
        if not skip(at):
            wh = first_wh + WH_PER_STEP * i
            out.append(make(at.astimezone(AMS), wh, equipment_id=equipment_id))
    return out


NOON = datetime(2024, 6, 21, 12, 0, tzinfo=AMS)
DAY = date(2024, 6, 21)


def whole_day(skip: Callable[[datetime], bool] = lambda at: False) -> list[MeterReading]:
    end = local_midnight(DAY + timedelta(days=1))
    return steady(local_midnight(DAY), end, 5_000_000, skip=skip)


def test_meter_replacement_starts_a_new_baseline_and_flags_it() -> None:
    old = steady(local_midnight(DAY), NOON + timedelta(minutes=7, seconds=20), 5_000_000)
    swap = NOON + timedelta(minutes=7, seconds=30)
    # The new meter starts near zero, with its own equipment id; the reader flags the
    # first reading it sees from it.
    new = steady(swap, local_midnight(DAY + timedelta(days=1)), 100, equipment_id="E2")
    new[0] = new[0].model_copy(update={"meter_replaced": True})
    out = run(EnergyView("house", "primary", None, SETTINGS), old + new)

    assert all(
        (v is None or v >= 0) for q in out.quarters for v in q.import_.model_dump().values()
    ), "no negative delta, ever"
    by_start = {q.start: q for q in out.quarters}
    swapped = by_start[NOON]
    assert swapped.meter_replaced and not swapped.complete
    # 12:00:00-12:07:20 on the old meter (44 intervals) + 12:07:30-12:15:00 on the new (45).
    assert swapped.import_.total_kwh == pytest.approx((44 + 45) * 0.005)
    assert swapped.equipment_id == "E2"
    after = by_start[NOON + timedelta(minutes=15)]
    assert after.complete and after.import_.total_kwh == pytest.approx(0.45)
    final = next(d for d in out.days if d.final)
    assert final.meter_replaced and not final.complete
    assert final.import_.total_kwh == pytest.approx(24 * 1.8 - 0.005)  # one interval unknown


@pytest.mark.parametrize(
    "jump",
    [
        pytest.param(-3_000_000, id="register-backwards-without-flag"),
        pytest.param(+900_000, id="implausible-jump-forward"),
    ],
)
def test_a_register_that_cannot_be_true_is_a_new_baseline(jump: int) -> None:
    """Same equipment id, no flag (e.g. after a daemon restart): the registers alone show it."""
    before = steady(NOON, NOON + timedelta(minutes=5), 5_000_000)
    last_wh = 5_000_000 + WH_PER_STEP * (len(before) - 1)
    after = [
        make(r.received_at + timedelta(seconds=10), last_wh + jump + WH_PER_STEP * i)
        for i, r in enumerate(steady(NOON + timedelta(minutes=5), NOON + timedelta(minutes=20), 0))
    ]
    out = run(EnergyView("house", "primary", None, SETTINGS), before + after)
    first = out.quarters[0]
    assert first.meter_replaced and not first.complete
    # 12:00:00-12:05:00 (30 intervals), 12:05:00-12:05:10 unknown, 12:05:10-12:15:00 (59).
    assert first.import_.total_kwh == pytest.approx((30 + 59) * 0.005)
    assert all(
        q.import_.total_kwh is None or 0 <= q.import_.total_kwh <= 0.45 for q in out.quarters
    )


def test_a_gap_spanning_quarters_is_reported_not_spread() -> None:
    stop = NOON + timedelta(minutes=7)
    resume = NOON + timedelta(minutes=52, seconds=10)
    readings = whole_day(skip=lambda at: stop < at < resume)
    out = run(EnergyView("house", "primary", None, SETTINGS), readings)

    starts = [q.start for q in out.quarters]
    assert NOON + timedelta(minutes=15) not in starts
    assert NOON + timedelta(minutes=30) not in starts
    before = out.quarters[starts.index(NOON)]
    assert before.end_missing and not before.complete
    assert before.import_.total_kwh == pytest.approx(42 * 0.005)  # 12:00:00-12:07:00
    resumed = out.quarters[starts.index(NOON + timedelta(minutes=45))]
    assert resumed.start_missing and not resumed.complete
    assert resumed.import_.total_kwh == pytest.approx(47 * 0.005)  # 12:52:10-13:00:00
    gap = resumed.gap_before
    assert gap is not None and (gap.start, gap.end) == (stop, resume)
    assert gap.import_.total_kwh == pytest.approx((45 * 60 + 10) / 10 * 0.005)

    # Both ends of the day are covered: its total is exact, the gap is listed.
    final = next(d for d in out.days if d.final)
    assert final.complete and final.gaps == [gap]
    assert final.import_.total_kwh == pytest.approx(24 * 1.8)
    quarter_sum = sum(q.import_.total_kwh or 0 for q in out.quarters)
    assert quarter_sum + (gap.import_.total_kwh or 0) == pytest.approx(24 * 1.8)


def test_a_short_loss_across_a_boundary_is_booked_within_the_tolerance() -> None:
    lost = {NOON + timedelta(minutes=14, seconds=50), NOON + timedelta(minutes=15)}
    readings = steady(NOON, NOON + timedelta(minutes=31), 5_000_000, skip=lambda at: at in lost)
    out = run(EnergyView("house", "primary", None, SETTINGS), readings)
    # 12:14:40 -> 12:15:10 crosses 12:15 with the later reading 10 s after it (<= 30 s):
    # booked to 12:00, so 12:00 runs to 12:15:10 and 12:15 starts there.
    first, second = out.quarters[:2]
    assert first.complete and second.complete
    assert first.import_.total_kwh == pytest.approx(0.455)
    assert second.import_.total_kwh == pytest.approx(0.445)


def test_a_gap_across_midnight_closes_the_day_incomplete() -> None:
    # Silent from 23:00 until the reading at midnight.
    readings = whole_day(skip=lambda at: at.astimezone(AMS).hour == 23)
    out = run(EnergyView("house", "primary", None, SETTINGS), readings)
    final = next(d for d in out.days if d.final)
    assert final.date == DAY and final.end_missing and not final.complete
    assert final.import_.total_kwh == pytest.approx(23 * 1.8 - 0.005)  # to 22:59:50 only
    running = out.days[-1]
    assert running.date == DAY + timedelta(days=1) and running.start_missing
    assert not running.final and not running.complete


def test_restart_continues_the_day_from_its_last_document() -> None:
    readings = whole_day()
    cut = next(i for i, r in enumerate(readings) if r.received_at >= NOON + timedelta(minutes=5))
    first = EnergyView("house", "primary", None, SETTINGS)
    out = run(first, readings[:cut])
    snapshot = DayDoc.model_validate_json(out.days[-1].model_dump_json())  # as retained
    assert not snapshot.final

    # The daemon was down from 12:05 to 12:09:00; readings of that time never arrive.
    resume = next(i for i, r in enumerate(readings) if r.received_at >= NOON + timedelta(minutes=9))
    second = EnergyView("house", "primary", None, SETTINGS)
    assert second.restore(snapshot)
    rest = run(second, readings[resume:])
    final = next(d for d in rest.days if d.final)
    assert final.complete
    assert final.import_.total_kwh == pytest.approx(24 * 1.8)
    noon = next(q for q in rest.quarters if q.start == NOON)
    assert noon.start_missing  # what it held before the restart is not in the document
    assert all(q.complete for q in rest.quarters if q.start > NOON)


def test_restore_refuses_documents_that_do_not_fit() -> None:
    out = run(EnergyView("house", "primary", None, SETTINGS), whole_day())
    final = next(d for d in out.days if d.final)
    running = out.days[-1]
    assert not EnergyView("house", "primary", None, SETTINGS).restore(final)
    assert not EnergyView("carport", "secondary", None, SETTINGS).restore(running)
    used = EnergyView("house", "primary", None, SETTINGS)
    used.feed(whole_day()[0])
    assert not used.restore(running)


def test_duplicate_and_backward_readings_are_ignored() -> None:
    readings = steady(NOON, NOON + timedelta(minutes=16), 5_000_000)
    noisy = []
    for r in readings:
        noisy.append(r)
        noisy.append(r)  # duplicate
    noisy.insert(50, readings[10])  # the clock stepping back
    view = EnergyView("house", "primary", None, SETTINGS)
    out = run(view, noisy)
    assert view.ignored == len(readings) + 1
    assert out.quarters[0].import_.total_kwh == pytest.approx(0.45)


def test_a_register_that_appears_or_vanishes_flags_the_period() -> None:
    readings = steady(NOON, NOON + timedelta(minutes=16), 5_000_000)
    for i in range(30, 40):
        readings[i] = readings[i].model_copy(
            update={"import_": readings[i].import_.model_copy(update={"t1_kwh": None})}
        )
    out = run(EnergyView("house", "primary", None, SETTINGS), readings)
    first = out.quarters[0]
    assert first.registers_changed and not first.complete
    assert first.import_.total_kwh == pytest.approx(0.45)  # the total kept coming


def test_quarter_document_json_shape() -> None:
    out = run(
        EnergyView("house", "primary", "871687400000000001", SETTINGS),
        steady(NOON, NOON + timedelta(minutes=15), 5_000_000),
    )
    doc = json.loads(out.quarters[0].model_dump_json())
    assert doc["start"] == "2024-06-21T12:00:00+02:00"
    assert doc["end"] == "2024-06-21T12:15:00+02:00"
    assert doc["import"] == {
        "t1_kwh": 0.0,
        "t2_kwh": 0.45,
        "t3_kwh": None,
        "t4_kwh": None,
        "total_kwh": 0.45,
    }
    assert doc["export"]["total_kwh"] == 0.0
    assert doc["complete"] is True and doc["gap_before"] is None
    assert doc["ean"] == "871687400000000001" and doc["readings"] == 90
    day = json.loads(out.days[-1].model_dump_json())
    assert day["final"] is False and day["complete"] is False
    assert day["last_reading"]["at"] == "2024-06-21T12:15:00+02:00"


def test_demo_capture_replayed() -> None:
    """The demo house capture: 12:29:00-12:30:59, one telegram a second."""
    readings = replay((OWN_FIXTURES / "demo" / "house.txt").read_bytes())
    out = run(EnergyView("house", "primary", None, SETTINGS), readings)
    assert len(out.quarters) == 1
    quarter = out.quarters[0]
    assert quarter.start == datetime(2024, 6, 21, 12, 15, tzinfo=AMS)
    assert quarter.start_missing and not quarter.end_missing
    at_start = readings[0]
    at_end = next(r for r in readings if r.timestamp == datetime(2024, 6, 21, 12, 30, tzinfo=AMS))
    for direction in ("import_", "export"):
        for tariff in ("t1_kwh", "t2_kwh", "total_kwh"):
            begin = getattr(getattr(at_start, direction), tariff)
            end = getattr(getattr(at_end, direction), tariff)
            got = getattr(getattr(quarter, direction), tariff)
            assert got == pytest.approx(end - begin, abs=1e-9)
            assert got >= 0


def test_a_replay_starting_over_is_a_new_baseline_not_a_stall() -> None:
    """The demo loops its two-minute captures: the clock and the registers go back. One
    telegram confirms the new timeline; from there on the views work as before."""
    once = replay((OWN_FIXTURES / "demo" / "house.txt").read_bytes())
    view = EnergyView("house", "primary", None, SETTINGS)
    first = run(view, once)
    second = run(view, once)
    assert view.restarts == 1 and view.ignored == 0

    # Pass 1: 12:15 closes at 12:30:00. The loop closes 12:30 (data stopped at 12:30:59),
    # then pass 2 closes 12:15 again, flagged, with the same energy as pass 1.
    assert [q.start.strftime("%H:%M") for q in first.quarters] == ["12:15"]
    assert [q.start.strftime("%H:%M") for q in second.quarters] == ["12:30", "12:15"]
    cut_short, again = second.quarters
    assert cut_short.end_missing and not cut_short.meter_replaced
    assert again.meter_replaced and not again.complete
    original = first.quarters[0]
    assert again.export.total_kwh == pytest.approx(original.export.total_kwh)
    assert again.import_.total_kwh == pytest.approx(original.import_.total_kwh)

    # The same day goes on: it keeps pass 1 and adds pass 2, from its first telegram.
    def total(reading: MeterReading) -> float:
        assert reading.export.total_kwh is not None
        return reading.export.total_kwh

    per_pass = total(once[-1]) - total(once[0])
    published = second.days[-1]  # after pass 2 closed 12:15: pass 1 + 12:29:00-12:30:00
    at_1230 = next(r for r in once if r.timestamp == datetime(2024, 6, 21, 12, 30, tzinfo=AMS))
    assert published.meter_replaced and not published.final
    assert published.export.total_kwh == pytest.approx(per_pass + total(at_1230) - total(once[0]))
    day = view.current_day()
    assert day is not None and day.export.total_kwh == pytest.approx(2 * per_pass)
