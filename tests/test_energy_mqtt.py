"""Energy views over a real mosquitto: quarter and day documents, the site connection,
the export alert, restart continuity, a broker outage, both DST days and a replaced meter.

The captures are written here: DSMR 5 telegrams (every 10 s from 12:10:00 to 12:50:00
local time for a primary and two secondary metering points; every 30 s for whole days),
parsed by the daemon's own `ReadingStream` and handed to the dispatcher that
`daemon.builder.build` makes from a configuration file (the energy views as a processor,
the MQTT sink as the output), as the reader threads would hand them.
Registers count whole Wh and this file advances them itself; every expected value below
is a difference of registers written into the captures (or a power written into them),
never a number taken from the code under test.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from mosquitto_broker import Broker, Received, Subscriber

from p1daemon.config import load_config
from p1daemon.daemon.builder import build
from p1daemon.daemon.dispatcher import Dispatcher
from p1daemon.frame.crc import crc16_arc
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.publish.sink import MqttSink
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading
from p1daemon.views.energy.processor import EnergyProcessor

AMS = ZoneInfo("Europe/Amsterdam")
START = datetime(2024, 6, 21, 12, 10, tzinfo=AMS)
END = datetime(2024, 6, 21, 12, 50, tzinfo=AMS)
STEP = timedelta(seconds=10)
EXPORT_LIMIT_KW, EXPORT_HOLD_S = 3.0, 60.0


def at(hh_mm_ss: str) -> datetime:
    hour, minute, second = (int(part) for part in hh_mm_ss.split(":"))
    return START.replace(hour=hour, minute=minute, second=second)


# (import W, export W) during the 10 s interval that starts at `when`. Multiples of 360 W,
# so that every interval adds a whole number of Wh (P * 10 s / 3600).
def house_power(when: datetime) -> tuple[int, int]:
    if 20 <= when.minute < 40:
        return 0, 3600  # solar, above the 3 kW feed-in limit
    return (720, 0) if when.minute >= 40 else (2880, 0)


def carport_power(when: datetime) -> tuple[int, int]:
    return (7200, 0) if 25 <= when.minute < 45 else (0, 0)


def shed_power(when: datetime) -> tuple[int, int]:
    return 360, 0


def low_tariff(local: datetime) -> bool:
    return local.hour < 7 or local.hour >= 23


REGISTERS = ("imp_t1", "imp_t2", "exp_t1", "exp_t2")


@dataclass(frozen=True)
class Written:
    """One telegram as this file wrote it."""

    equipment_id: str
    registers: dict[str, int]  # Wh
    power: tuple[int, int]  # W, import and export


@dataclass
class Meter:
    name: str
    role: str
    ean: str
    equipment_id: str
    power: Callable[[datetime], tuple[int, int]]  # of the interval starting at local time
    first_wh: tuple[int, int]
    replaced_at: datetime | None = None  # a new meter (new id, registers near 0) from here
    written: dict[datetime, Written] = field(default_factory=dict)  # by UTC time

    def capture(
        self, start: datetime = START, end: datetime = END, step: timedelta = STEP
    ) -> bytes:
        seconds = int(step.total_seconds())
        registers = {"imp_t1": 100_000, "imp_t2": self.first_wh[0], "exp_t1": 500}
        registers["exp_t2"] = self.first_wh[1]
        equipment = self.equipment_id
        out = bytearray()
        first = when = start.astimezone(UTC)
        while when <= end.astimezone(UTC):
            local = when.astimezone(AMS)
            if self.replaced_at is not None and when == self.replaced_at.astimezone(UTC):
                equipment = f"{self.equipment_id}-NEW"
                registers = dict.fromkeys(REGISTERS, 7)
                power = self.power(local)
            elif when > first:
                # The interval that just ended: its power, its tariff, its energy.
                before = (when - step).astimezone(AMS)
                power = self.power(before)
                tariff = "t1" if low_tariff(before) else "t2"
                for direction, watts in zip(("imp", "exp"), power, strict=True):
                    assert watts * seconds % 3600 == 0, "whole Wh per interval"
                    registers[f"{direction}_{tariff}"] += watts * seconds // 3600
            else:
                power = self.power(local)
            self.written[when] = Written(equipment, dict(registers), power)
            out += self._telegram(local, equipment, registers, power)
            when += step
        return bytes(out)

    @staticmethod
    def _telegram(
        local: datetime, equipment: str, registers: dict[str, int], power: tuple[int, int]
    ) -> bytes:
        def kwh(register: str) -> str:
            wh = registers[register]
            return f"{wh // 1000:06d}.{wh % 1000:03d}"

        lines = [
            "/TST5\\2P1D-SITETEST",
            "",
            "1-3:0.2.8(50)",
            f"0-0:1.0.0({local:%y%m%d%H%M%S}{'S' if local.dst() else 'W'})",
            f"0-0:96.1.1({equipment.encode().hex().upper()})",
            f"1-0:1.8.1({kwh('imp_t1')}*kWh)",
            f"1-0:1.8.2({kwh('imp_t2')}*kWh)",
            f"1-0:2.8.1({kwh('exp_t1')}*kWh)",
            f"1-0:2.8.2({kwh('exp_t2')}*kWh)",
            f"0-0:96.14.0({'0001' if low_tariff(local) else '0002'})",
            f"1-0:1.7.0({power[0] / 1000:06.3f}*kW)",
            f"1-0:2.7.0({power[1] / 1000:06.3f}*kW)",
        ]
        body = "\r\n".join(lines) + "\r\n!"
        return (body + f"{crc16_arc(body.encode('ascii')):04X}\r\n").encode("ascii")

    def delta_wh(self, start: datetime, end: datetime) -> dict[str, int]:
        """Wh per register from `start` to `end`: the register differences of consecutive
        telegrams of the same meter (the interval across a replacement is unknown)."""
        times = [
            t for t in sorted(self.written) if start.astimezone(UTC) <= t <= end.astimezone(UTC)
        ]
        out = dict.fromkeys(REGISTERS, 0)
        for a, b in pairwise(times):
            before, after = self.written[a], self.written[b]
            if before.equipment_id == after.equipment_id:
                for register in REGISTERS:
                    out[register] += after.registers[register] - before.registers[register]
        return out

    def kwh_between(self, start: datetime, end: datetime) -> tuple[float, float]:
        """(import, export) kWh from `start` to `end`, all tariffs."""
        wh = self.delta_wh(start, end)
        return (
            float(Decimal(wh["imp_t1"] + wh["imp_t2"]) / 1000),
            float(Decimal(wh["exp_t1"] + wh["exp_t2"]) / 1000),
        )

    def power_at(self, reading_at: datetime) -> tuple[float, float]:
        watts = self.written[reading_at.astimezone(UTC)].power
        return watts[0] / 1000, watts[1] / 1000


def check_period(doc: dict[str, Any], meter: Meter, start: datetime, end: datetime) -> None:
    """A quarter or day document against the registers written into the capture."""
    wh = meter.delta_wh(start, end)
    where = (meter.name, doc["start"])
    for direction, short in (("import", "imp"), ("export", "exp")):
        for tariff in ("t1", "t2"):
            expected = float(Decimal(wh[f"{short}_{tariff}"]) / 1000)
            assert doc[direction][f"{tariff}_kwh"] == pytest.approx(expected), (where, tariff)
        both = float(Decimal(wh[f"{short}_t1"] + wh[f"{short}_t2"]) / 1000)
        assert doc[direction]["total_kwh"] == pytest.approx(both), where


def site() -> dict[str, Meter]:
    house = Meter(
        "house",
        "primary",
        "871685900012345674",
        "P1DSITE-HOUSE",
        house_power,
        (5_000_000, 3_000_000),
    )
    carport = Meter(
        "carport", "secondary", "871685900012345681", "P1DSITE-CAR", carport_power, (700_000, 0)
    )
    shed = Meter("shed", "secondary", "871685900012345698", "P1DSITE-SHED", shed_power, (12_345, 0))
    meters = [house, carport, shed]
    return {m.name: m for m in meters}


def readings(meter: Meter, capture: bytes | None = None) -> list[MeterReading]:
    """The capture through the daemon's own framer and parser, flagged as the reader
    flags a changed equipment id: what `MqttSink.submit` gets from a reader thread."""
    events = ReadingStream(TelegramDecoder()).feed(meter.capture() if capture is None else capture)
    parsed = [e for e in events if isinstance(e, Reading)]
    assert len(parsed) == len(events) == len(meter.written), "every telegram must parse"
    out = []
    for before, reading in zip([None, *parsed], parsed, strict=False):
        replaced = before is not None and before.equipment_id != reading.equipment_id
        out.append(
            MeterReading.from_reading(
                reading,
                meter=meter.name,
                role="primary" if meter.role == "primary" else "secondary",
                ean=meter.ean,
                received_at=datetime.now(UTC),
                meter_replaced=replaced,
            )
        )
    return out


def interleaved(meters: dict[str, Meter]) -> list[MeterReading]:
    """All meters' readings in meter time, the way they arrive at a real site."""
    order = list(meters)
    both = [r for m in meters.values() for r in readings(m)]
    return sorted(both, key=lambda r: (r.timestamp or START, order.index(r.meter)))


def mqtt_of(sink: Dispatcher) -> MqttSink:
    output = sink.output("mqtt")
    assert isinstance(output, MqttSink)
    return output


def energy_of(sink: Dispatcher) -> EnergyProcessor:
    processor = sink.processor("energy")
    assert isinstance(processor, EnergyProcessor)
    return processor


def write_config(tmp: Path, port: int, meters: dict[str, Meter], topology: str) -> Dispatcher:
    text = f"""
        [mqtt]
        port = {port}
        reconnect_max_delay_s = 1.0
        [buffer]
        path = "state/outbox.db"
        commit_interval_s = 0.2
        [site]
        topology = "{topology}"
    """
    for index, meter in enumerate(meters.values()):
        # Never opened: the test hands the readings to the sink itself.
        text += f"""
        [[meters]]
        name = "{meter.name}"
        role = "{meter.role}"
        ean = "{meter.ean}"
        source = "socket://127.0.0.1:{9001 + index}"
        """
        if meter.name == "house":
            text += f"export_limit_kw = {EXPORT_LIMIT_KW}\nexport_limit_hold_s = {EXPORT_HOLD_S}\n"
    path = tmp / "p1daemon.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    config = load_config(path, {})
    return build(config, [MqttSink.from_config(config)])


def docs(subscriber: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [m.json() for m in subscriber.on(topic)]


def distinct(messages: list[Received]) -> list[dict[str, Any]]:
    """In order, without QoS 1 repeats (a document may arrive twice, none may be missing)."""
    seen: set[bytes] = set()
    out = []
    for message in messages:
        if message.payload not in seen:
            seen.add(message.payload)
            out.append(json.loads(message.payload))
    return out


def quarters_received(subscriber: Subscriber, meter: str, count: int) -> Callable[[Any], bool]:
    def check(_: Any) -> bool:
        return len(distinct(subscriber.on(f"p1/{meter}/quarter"))) >= count

    return check


def day_after_quarters(subscriber: Subscriber, meter: str, count: int) -> Callable[[Any], bool]:
    """The running day that follows a meter's `count`th closed quarter. It is the next
    record after that quarter in the outbox, a separate message: a subscriber that has the
    quarter may not have it yet (a loaded machine can hold the broker or the sink's worker
    between the two for longer than the checks that follow take)."""

    def check(_: Any) -> bool:
        return any(d["quarters"] >= count for d in distinct(subscriber.on(f"p1/{meter}/day")))

    return check


def check_quarters(subscriber: Subscriber, meter: Meter) -> None:
    got = distinct(subscriber.on(f"p1/{meter.name}/quarter"))
    edges = [START, at("12:15:00"), at("12:30:00"), at("12:45:00")]
    bounds = list(pairwise(edges))
    assert [q["start"] for q in got] == [
        "2024-06-21T12:00:00+02:00",
        "2024-06-21T12:15:00+02:00",
        "2024-06-21T12:30:00+02:00",
    ]
    for quarter, (start, end) in zip(got, bounds, strict=True):
        check_period(quarter, meter, start, end)
        assert quarter["ean"] == meter.ean
        # 12:00 began at 12:10 (the capture's start); the others are whole quarter-hours.
        assert quarter["complete"] is (start != START)
        assert quarter["start_missing"] is (start == START)


def check_day(subscriber: Subscriber, meter: Meter) -> None:
    running = distinct(subscriber.on(f"p1/{meter.name}/day"))[-1]
    check_period(running, meter, START, at("12:45:00"))  # to the last closed quarter's end
    assert running["date"] == "2024-06-21" and running["final"] is False
    assert running["quarters"] == 3 and running["start_missing"] is True


def check_connection(doc: dict[str, Any], meters: dict[str, Meter], topology: str) -> None:
    """The document against the captures: each point's power as written in the telegram
    it was last computed from, energy as register differences over the document's span."""
    points = {p["meter"]: p for p in doc["points"]}
    assert set(points) == set(meters) and doc["topology"] == topology
    power: dict[str, tuple[float, float]] = {}
    quarter: dict[str, tuple[float, float]] = {}
    span = doc["connection"]["quarter"]
    assert span is not None, "every meter closed 12:30: the connection has that quarter"
    start, end = (datetime.fromisoformat(span[k]) for k in ("start", "end"))
    assert (start, end) == (at("12:30:00"), at("12:45:00"))
    for name, meter in meters.items():
        reading_at = datetime.fromisoformat(points[name]["reading_at"])
        power[name] = meter.power_at(reading_at)
        quarter[name] = meter.kwh_between(start, end)
        assert points[name]["stale"] is False
    secondaries = [n for n in meters if meters[n].role == "secondary"]

    def expect(block: dict[str, Any], keys: tuple[str, str], values: tuple[float, float]) -> None:
        assert block[keys[0]] == pytest.approx(values[0]), (block, values)
        assert block[keys[1]] == pytest.approx(values[1]), (block, values)
        net = "net_kw" if keys[0].endswith("_kw") else "net_kwh"
        assert block[net] == pytest.approx(values[0] - values[1])

    def total(figures: dict[str, tuple[float, float]], names: list[str]) -> tuple[float, float]:
        return sum(figures[n][0] for n in names), sum(figures[n][1] for n in names)

    kw, kwh = ("import_kw", "export_kw"), ("import_kwh", "export_kwh")
    if topology == "parallel":
        expect(doc["connection"]["power"], kw, total(power, list(meters)))
        expect(doc["connection"]["quarter"], kwh, total(quarter, list(meters)))
        for name in meters:
            assert points[name]["derived"] is False
            expect(points[name]["power"], kw, power[name])
            expect(points[name]["quarter"], kwh, quarter[name])
        assert doc["warnings"] == [] and doc["complete"] is True
        return
    # Series: the primary meter is the connection; its own share is what is left of it.
    expect(doc["connection"]["power"], kw, power["house"])
    expect(doc["connection"]["quarter"], kwh, quarter["house"])
    rest_power, rest_quarter = total(power, secondaries), total(quarter, secondaries)
    own_power = (power["house"][0] - rest_power[0], power["house"][1] - rest_power[1])
    own_quarter = (quarter["house"][0] - rest_quarter[0], quarter["house"][1] - rest_quarter[1])
    assert points["house"]["derived"] is True
    expect(points["house"]["power"], kw, own_power)
    expect(points["house"]["quarter"], kwh, own_quarter)
    for name in secondaries:
        expect(points[name]["power"], kw, power[name])
    # 12:30-12:45 the carport alone imports more than the primary meter measures: the
    # numbers cannot be reconciled, and the document says so.
    assert own_quarter[0] < 0
    codes = {(w["code"], w["meter"]) for w in doc["warnings"]}
    assert ("series_negative_import", "house") in codes
    assert doc["complete"] is False


def expected_alerts(meter: Meter) -> list[tuple[datetime, bool]]:
    """Oracle from the written powers: raised once export stayed above the limit for the
    hold time, cleared at the first reading at or below it."""
    out: list[tuple[datetime, bool]] = []
    since: datetime | None = None
    raised = False
    for when in sorted(meter.written):
        export_kw = meter.power_at(when)[1]
        if export_kw > EXPORT_LIMIT_KW:
            since = since or when
            if not raised and (when - since).total_seconds() >= EXPORT_HOLD_S:
                out.append((when, True))
                raised = True
        else:
            if raised:
                out.append((when, False))
            since, raised = None, False
    return out


@pytest.mark.parametrize("topology", ["parallel", "series"])
def test_quarters_days_connection_and_export_alert(
    topology: str, tmp_path: Path, broker: Broker, subscriber: Subscriber, sinks: list[Dispatcher]
) -> None:
    meters = site()
    all_readings = interleaved(meters)
    sink = write_config(tmp_path, broker.port, meters, topology)
    sinks.append(sink)
    sink.start()
    for reading in all_readings:
        sink.submit(reading)
    for name in meters:
        subscriber.wait_for(quarters_received(subscriber, name, 3), 10, f"{name} quarters")
        subscriber.wait_for(day_after_quarters(subscriber, name, 3), 10, f"{name}'s day")
    subscriber.wait_for(
        lambda _: len(distinct(subscriber.on("p1/house/alert/export_limit"))) >= 3, 10, "alerts"
    )

    def closed_1230(messages: list[Received]) -> bool:
        return any(
            m.topic == "p1/site/connection"
            and (m.json()["connection"]["quarter"] or {})
            .get("start", "")
            .startswith("2024-06-21T12:30")
            for m in messages
        )

    # Once every meter closed 12:30 (the last closes of the capture) the connection has it.
    subscriber.wait_for(closed_1230, 10, "the connection with the 12:30 quarter")

    for meter in meters.values():
        check_quarters(subscriber, meter)
        check_day(subscriber, meter)
    # Records come in order and are retained; the connection is newest-wins state.
    assert all(m.retain is False for m in subscriber.on("p1/house/quarter"))
    check_connection(docs(subscriber, "p1/site/connection")[-1], meters, topology)

    alerts = distinct(subscriber.on("p1/house/alert/export_limit"))
    expected = expected_alerts(meters["house"])
    assert [a["active"] for a in alerts] == [False, True, False]  # start-up, raised, cleared
    assert alerts[0]["above_since"] is None  # the start-up document clears an old alert
    assert [datetime.fromisoformat(alerts[1]["raised_at"]), True] == list(expected[0])
    assert [datetime.fromisoformat(alerts[2]["cleared_at"]), False] == list(expected[1])
    assert alerts[1]["limit_kw"] == EXPORT_LIMIT_KW and alerts[1]["peak_kw"] == 3.6

    # A late subscriber gets the newest of each: the 12:30 quarter, the running day.
    late = Subscriber(broker, "p1/+/quarter", persistent=False).start()
    try:
        late.wait_for(lambda ms: len(ms) >= 3, 5, "retained quarters")
        assert all(m.retain for m in late.messages)
        assert {m.json()["start"] for m in late.messages} == {"2024-06-21T12:30:00+02:00"}
    finally:
        late.stop()


def test_every_quarter_reaches_a_subscriber_across_a_broker_outage(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, sinks: list[Dispatcher]
) -> None:
    """Quarter and day documents go through the outbox: a subscriber that was away with
    the broker still gets every one, in order (a newest-wins topic would keep only one)."""
    meters = {"house": site()["house"]}
    house_readings = interleaved(meters)
    broker.stop()
    sink = write_config(tmp_path, broker.port, meters, "parallel")
    sinks.append(sink)
    sink.start()
    for reading in house_readings:
        sink.submit(reading)
    assert not mqtt_of(sink).connected
    broker.start()
    subscriber.wait_for(quarters_received(subscriber, "house", 3), 15, "quarters after outage")
    subscriber.wait_for(day_after_quarters(subscriber, "house", 3), 10, "the day after them")
    check_quarters(subscriber, meters["house"])
    days = distinct(subscriber.on("p1/house/day"))
    assert len(days) == 3  # one running day after each closed quarter, none replaced
    assert [d["quarters"] for d in days] == [1, 2, 3]
    check_day(subscriber, meters["house"])


def test_a_restart_continues_the_day_from_the_saved_state(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, sinks: list[Dispatcher]
) -> None:
    meters = {"house": site()["house"]}
    house = meters["house"]
    all_readings = interleaved(meters)
    cut = next(i for i, r in enumerate(all_readings) if r.timestamp == at("12:32:10"))

    first = write_config(tmp_path, broker.port, meters, "parallel")
    first.start()
    for reading in all_readings[:cut]:  # to 12:32:00
        first.submit(reading)
    subscriber.wait_for(quarters_received(subscriber, "house", 2), 10, "first run's quarters")
    first.stop(timeout=5)
    saved = json.loads((tmp_path / "state" / "energy" / "house-day.json").read_bytes())
    assert saved["last_reading"]["at"] == "2024-06-21T12:32:00+02:00"

    second = write_config(tmp_path, broker.port, meters, "parallel")
    sinks.append(second)
    second.start()
    for reading in all_readings[cut:]:
        second.submit(reading)
    subscriber.wait_for(quarters_received(subscriber, "house", 3), 10, "second run's quarter")
    # The day document follows its quarter through the outbox: wait for it too.
    subscriber.wait_for(
        day_after_quarters(subscriber, "house", 3), 10, "the day after the third quarter"
    )

    day = distinct(subscriber.on("p1/house/day"))[-1]
    imp, exp = house.kwh_between(START, at("12:45:00"))
    assert day["import"]["total_kwh"] == pytest.approx(imp)  # as if nothing had happened
    assert day["export"]["total_kwh"] == pytest.approx(exp)
    assert day["gaps"] == [] and day["quarters"] == 3
    resumed = distinct(subscriber.on("p1/house/quarter"))[-1]
    # The quarter that was running at the restart continues whole: its opening reading
    # was saved at the clean stop, so MQTT shows what the history books (issue 11).
    assert resumed["start"] == "2024-06-21T12:30:00+02:00" and resumed["start_missing"] is False
    assert resumed["status"] == "complete"
    imp, exp = house.kwh_between(at("12:30:00"), at("12:45:00"))
    assert resumed["import"]["total_kwh"] == pytest.approx(imp)
    assert resumed["export"]["total_kwh"] == pytest.approx(exp)


def test_a_bug_in_the_views_costs_no_reading(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sinks: list[Dispatcher]
) -> None:
    """The energy views and discovery ride along with the readings, never in their way."""
    meters = {"house": site()["house"]}
    house_readings = interleaved(meters)[:20]
    sink = write_config(tmp_path, 9, meters, "parallel")  # no broker: nothing is sent
    sinks.append(sink)
    sink.start()
    tracker, pipeline = energy_of(sink).tracker, mqtt_of(sink).pipeline
    assert tracker is not None and pipeline is not None

    def broken(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("a bug in the energy views")

    tracker.on_reading = broken  # type: ignore[method-assign,assignment]
    with caplog.at_level("ERROR", logger="p1daemon.publish"):
        for reading in house_readings:
            sink.submit(reading)
    assert pipeline.counters.accepted == len(house_readings)
    assert sink.processor_failures == len(house_readings)
    logged = [r for r in caplog.records if "the energy views failed" in r.getMessage()]
    assert len(logged) == 1  # not one per reading


def day_power(local: datetime) -> tuple[int, int]:
    """Multiples of 120 W: whole Wh per 30 s interval. Export 10:00-14:00, import else."""
    return (0, 2400) if 10 <= local.hour < 14 else (1200, 0)


def test_both_dst_days_and_a_meter_replacement_through_the_broker(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, sinks: list[Dispatcher]
) -> None:
    """Whole days at one telegram per 30 s: the 23-hour day in March, the 25-hour day in
    October (its repeated hour gives eight quarters that start at 02:xx), and a day on
    which the meter is replaced at 12:07:30 (new equipment id, registers from 0)."""
    days = {
        "spring": date(2024, 3, 31),
        "autumn": date(2024, 10, 27),
        "swap": date(2024, 6, 21),
    }
    swapped_at = datetime(2024, 6, 21, 12, 7, 30, tzinfo=AMS)
    eans = {"spring": "871685900012345674", "autumn": "871685900012345681"}
    eans["swap"] = "871685900012345698"
    meters = {
        name: Meter(
            name,
            "primary" if name == "spring" else "secondary",
            eans[name],
            f"P1DDST-{name.upper()}",
            day_power,
            (2_000_000 + 1000 * index, 60_000 * index),
            swapped_at if name == "swap" else None,
        )
        for index, name in enumerate(days)
    }
    sink = write_config(tmp_path, broker.port, meters, "parallel")
    sinks.append(sink)
    sink.start()
    midnights: dict[str, tuple[datetime, datetime]] = {}
    for name, meter in meters.items():
        day = days[name]
        first = datetime(day.year, day.month, day.day, tzinfo=AMS)
        following = day + timedelta(days=1)
        last = datetime(following.year, following.month, following.day, tzinfo=AMS)
        midnights[name] = (first, last)
        for reading in readings(meter, meter.capture(first, last, timedelta(seconds=30))):
            sink.submit(reading)

    hours = {"spring": 23, "autumn": 25, "swap": 24}

    def finished(_: Any) -> bool:
        return all(
            len(distinct(subscriber.on(f"p1/{name}/quarter"))) >= hours[name] * 4
            and any(d["final"] for d in distinct(subscriber.on(f"p1/{name}/day")))
            for name in meters
        )

    subscriber.wait_for(finished, 20, "every quarter and the final day of each meter")
    for name, meter in meters.items():
        first, last = midnights[name]
        # This file's own quarter-hours: 15 minutes of elapsed time from local midnight.
        starts = []
        at_utc = first.astimezone(UTC)
        while at_utc < last.astimezone(UTC):
            starts.append(at_utc)
            at_utc += timedelta(minutes=15)
        assert len(starts) == hours[name] * 4
        quarters = distinct(subscriber.on(f"p1/{name}/quarter"))
        assert [datetime.fromisoformat(q["start"]) for q in quarters] == starts, name
        for quarter, start in zip(quarters, starts, strict=True):
            check_period(quarter, meter, start, start + timedelta(minutes=15))
            replaced = name == "swap" and start <= swapped_at < start + timedelta(minutes=15)
            assert quarter["meter_replaced"] is replaced, (name, quarter["start"])
            assert quarter["complete"] is not replaced, (name, quarter["start"])
        (final,) = [d for d in distinct(subscriber.on(f"p1/{name}/day")) if d["final"]]
        assert final["date"] == days[name].isoformat() and final["hours"] == hours[name]
        assert final["quarters"] == hours[name] * 4
        check_period(final, meter, first, last)
        assert final["complete"] is (name != "swap") and final["meter_replaced"] is (name == "swap")

    repeated = [
        q["start"][11:]
        for q in distinct(subscriber.on("p1/autumn/quarter"))
        if "T02:" in q["start"]
    ]
    assert repeated == [f"02:{m}:00+0{o}:00" for o in (2, 1) for m in ("00", "15", "30", "45")]
    assert not any("T02:" in q["start"] for q in distinct(subscriber.on("p1/spring/quarter")))
    # Across the swap: nothing negative, and the one unknown interval is left out.
    swap_quarter = next(
        q for q in distinct(subscriber.on("p1/swap/quarter")) if q["meter_replaced"]
    )
    assert swap_quarter["equipment_id"] == "P1DDST-SWAP-NEW"
    # By hand: 30 intervals of 20 Wh (2.4 kW for 30 s), one of them across the swap.
    assert swap_quarter["export"]["total_kwh"] == pytest.approx(29 * 0.020)
