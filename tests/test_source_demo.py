"""`demo:` sources: a live synthetic connection whose registers never go back.

The proof the issue asks for: half an hour of the demo's own time, walked with an
injected clock through the real framer, parser and energy views, with every import and
export register (per tariff and total) and the gas meter never decreasing, and quarter
documents closing. The daemon's own run of `config/demo.toml` into a real mosquitto is
in test_demo_mqtt.py.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from p1daemon.config.loader import load_config
from p1daemon.frame.crc import crc16_arc_reference
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.meter import MeterReading, Role
from p1daemon.reading.model import Reading
from p1daemon.source.demo import DemoMeter, DemoSource
from p1daemon.source.demo_profile import EPOCH, GAS_WRAP_M3, REGISTER_WRAP_KWH, profile
from p1daemon.source.factory import SourceOptions, build_source, options_for
from p1daemon.source.spec import SourceKind, SourceSpecError, parse_source
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import EnergyTracker, MeterSpec, Outgoing

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "config" / "demo.toml"
SPEED = 24
METERS: dict[str, Role] = {"house": "primary", "carport": "secondary"}


class FakeTime:
    """A wall clock that moves only when the source sleeps."""

    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.at += seconds


def sim_ten_oclock(day: int) -> float:
    """A real instant at which the sped-up demo day stands at 10:00 (CET): the next half
    hour then walks 10:00-22:00, solar export, noon and evening charging included."""
    # time of day = (speed * (t - EPOCH) + 3600) mod 86400 = 36000
    return EPOCH + (36000 - 3600) / SPEED + 3600 * day


def run(start: float, seconds: int, config: Path = DEMO) -> dict[str, list[Reading]]:
    """Every reading the meters of `config` (the shipped demo) send in `seconds` of
    injected time, each source built the way the daemon builds it."""
    clock = FakeTime(start)
    meters = load_config(config, {}).meters
    assert {m.name: m.role for m in meters} == METERS
    sources = {m.name: build_source(m.source_spec, options_for(m), clock=clock) for m in meters}
    streams = {name: ReadingStream(TelegramDecoder()) for name in METERS}
    out: dict[str, list[Reading]] = {name: [] for name in METERS}
    for source in sources.values():
        source.open()
    while any(len(got) < seconds for got in out.values()):
        for name, source in sources.items():
            data = source.read(0.25) if len(out[name]) < seconds else b""
            for event in streams[name].feed(data):
                assert isinstance(event, Reading), event  # no drop, no CRC error, no junk
                out[name].append(event)
    return out


REGISTERS = ("t1_kwh", "t2_kwh", "total_kwh")


def assert_never_back(readings: list[Reading]) -> None:
    previous = readings[0]
    for reading in readings[1:]:
        assert reading.timestamp and previous.timestamp
        assert reading.timestamp > previous.timestamp
        for direction in ("import_", "export"):
            for register in REGISTERS:
                now = getattr(getattr(reading, direction), register)
                before = getattr(getattr(previous, direction), register)
                assert now is not None and now >= before, (direction, register, reading.timestamp)
        if previous.mbus:
            gas, gas_before = reading.mbus[0], previous.mbus[0]
            assert gas.value is not None and gas_before.value is not None
            assert gas.value >= gas_before.value
            assert gas.timestamp is not None and gas_before.timestamp is not None
            assert gas.timestamp >= gas_before.timestamp
        previous = reading


def test_thirty_minutes_of_demo_time_never_step_a_register_back() -> None:
    start = sim_ten_oclock(day=31)
    readings = run(start, 30 * 60)
    house, carport = readings["house"], readings["carport"]
    assert len(house) == len(carport) == 1800  # one a second, no garbage, no CRC error
    for meter in (house, carport):
        assert_never_back(meter)
        assert meter[0].timestamp is not None
        assert meter[0].timestamp.timestamp() == pytest.approx(start, abs=1)
    # The day actually happens: import and export move, the car charges, gas flows.
    assert house[-1].export.total_kwh > house[0].export.total_kwh + 5  # type: ignore[operator]
    assert house[-1].import_.total_kwh > house[0].import_.total_kwh + 1  # type: ignore[operator]
    assert max(r.export.power_kw or 0 for r in house) > 2
    assert carport[-1].import_.total_kwh > carport[0].import_.total_kwh + 20  # type: ignore[operator]
    assert max(r.import_.power_kw or 0 for r in carport) == pytest.approx(7.2)
    gas = [r.mbus[0] for r in house]
    assert gas[-1].value > gas[0].value  # type: ignore[operator]
    assert all(g.timestamp and g.timestamp.minute % 5 == 0 and g.timestamp.second == 0 for g in gas)
    assert len({g.timestamp for g in gas}) == 7  # every five minutes: :20 (before :22:30) to :50
    assert house[0].equipment_id != carport[0].equipment_id


def tracked(readings: dict[str, list[Reading]]) -> list[Outgoing]:
    tracker = EnergyTracker(
        SiteSettings(),
        [MeterSpec(name, role, None) for name, role in METERS.items()],
        "p1",
    )
    merged = [
        MeterReading.from_reading(
            r, meter=name, role=METERS[name], ean=None, received_at=r.timestamp or datetime.now(UTC)
        )
        for name, meter in readings.items()
        for r in meter
    ]
    out: list[Outgoing] = []
    for reading in sorted(merged, key=lambda r: (r.received_at, r.meter)):
        out += tracker.on_reading(reading, now=reading.received_at)
    return out


def test_quarters_close_and_the_connection_view_changes() -> None:
    start = sim_ten_oclock(day=40)  # :22:30 past a real hour
    readings = run(start, 30 * 60)
    messages = tracked(readings)
    for name in METERS:
        quarters = [json.loads(m.payload) for m in messages if m.topic == f"p1/{name}/quarter"]
        assert len(quarters) == 2, name  # :15-:30 (started late) and :30-:45
        full = quarters[1]
        assert full["complete"] and not full["meter_replaced"]
        assert full["end"][14:16] == "45" and full["readings"] >= 900
        # The quarter is the register delta, not a reset: positive, and what the meter counted.
        first, last = (
            next(r for r in readings[name] if r.timestamp and r.timestamp.strftime("%M:%S") == t)
            for t in ("30:00", "45:00")
        )
        delta = last.import_.total_kwh - first.import_.total_kwh  # type: ignore[operator]
        assert full["import"]["total_kwh"] == pytest.approx(delta, abs=0.002)
        assert full["import"]["total_kwh"] > 0
        days = [json.loads(m.payload) for m in messages if m.topic == f"p1/{name}/day"]
        assert days and not any(d["meter_replaced"] for d in days)
    connection = [json.loads(m.payload) for m in messages if m.topic == "p1/site/connection"]
    powers = {c["connection"]["power"]["net_kw"] for c in connection} - {None}
    assert len(powers) > 10 and min(powers) < 0 < max(powers)  # feeding in, then drawing
    assert any(
        c["connection"]["quarter"] and c["connection"]["quarter"]["complete"] for c in connection
    )


def test_registers_keep_rising_across_a_restart_and_the_end_of_summer_time() -> None:
    """State lives in the clock, not in the process: a restarted demo continues where the
    last one stopped, and the hour that repeats at the end of DST (S, then W) still moves
    forward."""
    dst_end = datetime(2027, 10, 31, 1, 0, tzinfo=UTC).timestamp()
    before = run(dst_end - 600, 300)
    after = run(dst_end - 299, 600)  # a new process, a second later
    for name in METERS:
        joined = before[name] + after[name]
        assert_never_back(joined)
    stamps = [r.timestamp for r in after["house"]]
    assert {s.utcoffset().total_seconds() for s in stamps if s} == {7200, 3600}  # type: ignore[union-attr]


def _never_back(old: float, new: float, wrap: float) -> bool:
    """Up, or a rollover: from the register's last percent to its first, as a meter's."""
    return new >= old - 1e-9 or (old > wrap * 0.99 and new < wrap * 0.01)


@given(
    name=st.sampled_from(sorted(METERS)),
    start=st.floats(EPOCH - 86400 * 5, EPOCH + 86400 * 300),
    steps=st.lists(st.floats(0, 7200), min_size=1, max_size=20),
    speed=st.sampled_from([1, 24, 60]),
)
@example(name="carport", start=1793328693.0, steps=[7200.0, 7200.0], speed=24)  # a rollover
def test_the_profiles_registers_are_monotone_functions_of_time(
    name: str, start: float, steps: list[float], speed: int
) -> None:
    """Without any state: registers and gas at a later simulated instant are never lower,
    except across the rollover (999999.999 kWh, 99999.999 m3): 300 days walked 60 times
    faster are decades of simulated time, in which the carport's export does roll over."""
    p = profile(name)
    instants = [start]
    for step in steps:
        instants.append(instants[-1] + step)
    sims = [EPOCH + speed * (t - EPOCH) for t in instants]
    for before, after in itertools.pairwise(sims):
        (bi, be), (ai, ae) = p.registers(before), p.registers(after)
        for old, new in zip(bi + be, ai + ae, strict=True):
            assert _never_back(old, new, REGISTER_WRAP_KWH), (old, new)
        if p.gas is not None:
            assert _never_back(p.gas_m3(before), p.gas_m3(after), GAS_WRAP_M3)


def test_telegrams_are_real_dsmr5_with_a_correct_crc() -> None:
    raw = DemoMeter("house", speed=SPEED).telegram(sim_ten_oclock(3))
    body, _, tail = raw.rpartition(b"!")
    assert tail == f"{crc16_arc_reference(body + b'!'):04X}\r\n".encode()
    assert raw.startswith(b"/PDX5\\2P1D-DEMO-HOUSE\r\n\r\n1-3:0.2.8(50)\r\n")
    assert raw.count(b"\r\n") == raw.count(b"\n")


def test_low_tariff_at_night_normal_by_day() -> None:
    meter = DemoMeter("house", speed=SPEED)
    night, day = (sim_ten_oclock(7) + 3600 * hours / SPEED for hours in (16, 26))  # 02:00, 12:00
    for instant, tariff in ((night, 1), (day, 2)):
        reading = ReadingStream(TelegramDecoder()).feed(meter.telegram(instant))[0]
        assert isinstance(reading, Reading) and reading.tariff == tariff


def test_a_clock_stepped_back_repeats_rather_than_going_back() -> None:
    meter = DemoMeter("carport", speed=SPEED)
    start = sim_ten_oclock(5) + 3600 * 8.5 / SPEED  # 18:30 simulated: charging at 7.2 kW
    first = ReadingStream(TelegramDecoder()).feed(meter.telegram(start))[0]
    again = ReadingStream(TelegramDecoder()).feed(meter.telegram(start - 3600))[0]
    assert isinstance(first, Reading) and isinstance(again, Reading)
    assert again.timestamp == first.timestamp
    assert again.import_.total_kwh == first.import_.total_kwh


def test_a_late_read_skips_missed_seconds_instead_of_bursting() -> None:
    clock = FakeTime(sim_ten_oclock(2))
    source = DemoSource("house", speed=SPEED, clock=clock.now, sleep=clock.sleep)
    source.open()
    assert source.read(2.0)
    clock.at += 10.4  # the reader was held up
    late = source.read(0.5)
    assert late and source.read(0.0) == b""  # one telegram for now, not eleven
    stamp = ReadingStream(TelegramDecoder()).feed(late)[0]
    assert isinstance(stamp, Reading) and stamp.timestamp is not None
    assert stamp.timestamp.timestamp() == int(clock.at)


def test_a_stop_is_prompt_with_the_real_clock() -> None:
    """read() never blocks longer than its timeout, so a reader stops within it."""
    source = DemoSource("house", speed=SPEED)
    source.open()
    stop = threading.Event()
    reads: list[float] = []

    def loop() -> None:
        while not stop.is_set():
            began = time.monotonic()
            source.read(0.1)
            reads.append(time.monotonic() - began)

    thread = threading.Thread(target=loop)
    thread.start()
    time.sleep(1.2)
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
    assert reads and max(reads) < 0.5


@pytest.mark.parametrize(
    ("text", "profile", "speed", "canonical"),
    [
        ("demo:house", "house", 1.0, "demo:house"),
        ("demo:carport?speed=24", "carport", 24.0, "demo:carport?speed=24"),
        (" demo:house?speed=60.0 ", "house", 60.0, "demo:house?speed=60"),
    ],
)
def test_demo_source_strings(text: str, profile: str, speed: float, canonical: str) -> None:
    spec = parse_source(text)
    assert (spec.kind, spec.profile, spec.speed, spec.text) == (
        SourceKind.DEMO,
        profile,
        speed,
        canonical,
    )
    assert not spec.finite_capable  # a demo runs for ever
    assert isinstance(build_source(spec, SourceOptions()), DemoSource)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("demo:garage", "demo: needs one of house, carport (e.g. demo:house), got 'demo:garage'"),
        ("demo:", "demo: needs one of house, carport"),
        ("demo:house?speed=0", "demo: takes ?speed=N with N from 1 to 86400"),
        ("demo:house?speed=fast", "demo: takes ?speed=N"),
        ("demo:house?pace=2", "demo: takes ?speed=N"),
        ("demo:house?speed=nan", "demo: takes ?speed=N"),
    ],
)
def test_bad_demo_source_strings(text: str, message: str) -> None:
    with pytest.raises(SourceSpecError) as info:
        parse_source(text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_the_demo_config_is_two_live_synthetic_meters() -> None:
    config = load_config(REPO / "config" / "demo.toml", {})
    assert [(m.name, m.role, m.source) for m in config.meters] == [
        ("house", "primary", "demo:house?speed=24"),
        ("carport", "secondary", "demo:carport?speed=24"),
    ]
    assert not config.all_finite and not any(m.finite for m in config.meters)
    assert config.homeassistant.discovery
