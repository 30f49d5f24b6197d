"""A synthetic year of one or more meters with a known truth, for the history tests.

Registers in whole Wh (and gas in whole dm3), so the truth is integer arithmetic of
this file's own model, never the code under test. Readings: one on every quarter edge
(DSMR 5 meters send every second, so one falls on the boundary) and two inside.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from p1daemon.reading.meter import MeterReading, Role
from p1daemon.reading.model import EnergyDirection, MbusDevice

AMS = ZoneInfo("Europe/Amsterdam")
QUARTER = timedelta(minutes=15)
# Where inside a quarter the two inner readings sit, and the share of its energy each
# interval gets (the rest goes to the last interval).
INNER_S = (300, 600)


def is_low(local: datetime) -> bool:
    return local.hour < 7 or local.hour >= 23 or local.weekday() >= 5


def house_profile(index: int, local: datetime) -> tuple[int, int]:
    """(import Wh, export Wh) of quarter `index`: a load plus midday solar in summer."""
    load = 40 + (index * 37) % 211
    solar = 0
    if 4 <= local.month <= 9 and 10 <= local.hour < 16:
        solar = (index * 53) % 301
    return load, solar


def gas_profile(hour_index: int) -> int:
    """dm3 in hour `hour_index`."""
    return 20 + (hour_index * 13) % 400


@dataclass
class SynthMeter:
    name: str
    role: Role = "primary"
    ean: str | None = None
    equipment_id: str = "E0001"
    profile: Callable[[int, datetime], tuple[int, int]] = house_profile
    gas: bool = False
    regs: dict[str, int] = field(
        default_factory=lambda: {"i1": 1_000_000, "i2": 2_000_000, "e1": 5_000, "e2": 300_000}
    )
    gas_dm3: int = 4_000_000
    gas_capture: tuple[datetime, int] | None = None

    def reading(self, at: datetime, *, replaced: bool = False) -> MeterReading:
        # model_copy of templates: model_construct resolves every default on each call,
        # twenty times slower, and a synthetic year is a hundred thousand readings.
        regs = self.regs
        mbus = []
        if self.gas and self.gas_capture is not None:
            captured, value = self.gas_capture
            mbus.append(_GAS.model_copy(update={"value": value / 1000, "timestamp": captured}))
        return _READING.model_copy(
            update={
                "equipment_id": self.equipment_id,
                "timestamp": at,
                # The total as the parser makes it for a meter without one: the exact
                # sum of the tariffs.
                "import_": _ENERGY.model_copy(
                    update={
                        "t1_kwh": regs["i1"] / 1000,
                        "t2_kwh": regs["i2"] / 1000,
                        "total_kwh": (regs["i1"] + regs["i2"]) / 1000,
                    }
                ),
                "export": _ENERGY.model_copy(
                    update={
                        "t1_kwh": regs["e1"] / 1000,
                        "t2_kwh": regs["e2"] / 1000,
                        "total_kwh": (regs["e1"] + regs["e2"]) / 1000,
                    }
                ),
                "mbus": mbus,
                "meter": self.name,
                "role": self.role,
                "ean": self.ean,
                "meter_replaced": replaced,
                "received_at": at,
            }
        )


_ENERGY = EnergyDirection()
_GAS = MbusDevice(channel=1, device_type=3, kind="gas", equipment_id="G0001", unit="m3")
_READING = MeterReading(
    header="/SYN5", meter="x", role="primary", received_at=datetime(2026, 1, 1, tzinfo=UTC)
)


@dataclass
class Truth:
    """Energy per quarter (UTC start) and register: what flowed, whatever was read."""

    quarters: dict[datetime, dict[str, int]] = field(default_factory=dict)
    gas_hours: dict[datetime, int] = field(default_factory=dict)
    # (time, registers) of every reading sent: lets a test know the state at any reading.
    sent: dict[datetime, dict[str, int]] = field(default_factory=dict)
    _times: list[datetime] = field(default_factory=list)
    _prefix: list[dict[str, int]] = field(default_factory=list)
    _prefix_len: int = -1

    def between(self, start: datetime, end: datetime) -> dict[str, int]:
        """Energy of the quarters starting in [start, end), by prefix sums (the year
        tests ask this for every hour)."""
        if self._prefix_len != len(self.quarters):
            self._times = sorted(self.quarters)
            running = {"i1": 0, "i2": 0, "e1": 0, "e2": 0}
            self._prefix = [dict(running)]
            for at in self._times:
                for key, value in self.quarters[at].items():
                    running[key] += value
                self._prefix.append(dict(running))
            self._prefix_len = len(self.quarters)
        low = bisect.bisect_left(self._times, start)
        high = bisect.bisect_left(self._times, end)
        return {k: self._prefix[high][k] - self._prefix[low][k] for k in self._prefix[0]}


def year_start(year: int) -> datetime:
    return datetime(year, 1, 1, tzinfo=AMS).astimezone(UTC)


def run_meter(
    meter: SynthMeter,
    start: datetime,
    end: datetime,
    truth: Truth,
    *,
    silent: Callable[[datetime], bool] = lambda at: False,
    on_quarter: Callable[[datetime], None] | None = None,
) -> Iterator[MeterReading]:
    """Readings of `meter` from `start` to `end` (UTC); `silent(at)`: no reading sent
    then (a gap, the daemon stopped), energy flows on regardless."""
    at = start
    index = 0
    gas_next = at
    gas_hour = 0
    while at < end:
        if on_quarter is not None:
            on_quarter(at)
        local = at.astimezone(AMS)
        imported, exported = meter.profile(index, local)
        tariff = "1" if is_low(local) else "2"
        parts_i = [imported // 3, imported // 3, imported - 2 * (imported // 3)]
        parts_e = [exported // 3, exported // 3, exported - 2 * (exported // 3)]
        truth.quarters[at] = {
            "i1": imported if tariff == "1" else 0,
            "i2": imported if tariff == "2" else 0,
            "e1": exported if tariff == "1" else 0,
            "e2": exported if tariff == "2" else 0,
        }
        offsets = (0, *INNER_S)
        for step, offset in enumerate(offsets):
            instant = at + timedelta(seconds=offset)
            if meter.gas:
                while gas_next <= instant - timedelta(minutes=5):
                    # The hourly capture becomes visible five minutes after its time.
                    if meter.gas_capture is not None:
                        truth.gas_hours[meter.gas_capture[0]] = meter.gas_dm3 - meter.gas_capture[1]
                    meter.gas_capture = (gas_next, meter.gas_dm3)
                    meter.gas_dm3 += gas_profile(gas_hour)
                    gas_hour += 1
                    gas_next += timedelta(hours=1)
            if not silent(instant):
                truth.sent[instant] = dict(meter.regs)
                yield meter.reading(instant)
            meter.regs[f"i{tariff}"] += parts_i[step]
            meter.regs[f"e{tariff}"] += parts_e[step]
        at += QUARTER
        index += 1
    if not silent(end):
        truth.sent[end] = dict(meter.regs)
        yield meter.reading(end)


def telegram_of(reading: MeterReading) -> bytes:
    """The DSMR 5 telegram a meter would have sent for `reading` (CRC-16/ARC)."""
    from p1daemon.frame.crc import crc16_arc

    assert reading.timestamp is not None
    local = reading.timestamp.astimezone(AMS)
    flag = "S" if local.dst() else "W"
    assert reading.equipment_id is not None

    def kwh(value: float | None) -> str:
        assert value is not None
        return f"{value:010.3f}"

    lines = [
        "/SYN5\\2P1D-HISTORYTEST",
        "",
        "1-3:0.2.8(50)",
        f"0-0:1.0.0({local:%y%m%d%H%M%S}{flag})",
        f"0-0:96.1.1({reading.equipment_id.encode().hex().upper()})",
        f"1-0:1.8.1({kwh(reading.import_.t1_kwh)}*kWh)",
        f"1-0:1.8.2({kwh(reading.import_.t2_kwh)}*kWh)",
        f"1-0:2.8.1({kwh(reading.export.t1_kwh)}*kWh)",
        f"1-0:2.8.2({kwh(reading.export.t2_kwh)}*kWh)",
        "0-0:96.14.0(0001)",
        "1-0:1.7.0(00.500*kW)",
        "1-0:2.7.0(00.000*kW)",
    ]
    for device in reading.mbus:
        assert device.timestamp is not None and device.value is not None
        captured = device.timestamp.astimezone(AMS)
        gflag = "S" if captured.dst() else "W"
        lines += [
            f"0-{device.channel}:24.1.0(003)",
            f"0-{device.channel}:96.1.0({(device.equipment_id or '').encode().hex().upper()})",
            f"0-{device.channel}:24.2.1({captured:%y%m%d%H%M%S}{gflag})({device.value:09.3f}*m3)",
        ]
    body = "\r\n".join(lines) + "\r\n!"
    return (body + f"{crc16_arc(body.encode('ascii')):04X}\r\n").encode("ascii")
