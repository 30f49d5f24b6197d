"""The demo's metering points: a plausible day of power flows, and the registers it fills.

A real meter's registers are the integral of its power. The demo makes them a pure
function of the wall clock, so they can only rise - across restarts too, which a capture
played in a loop could not do (every loop stepped them back, and Home Assistant's Energy
statistics booked the drop as negative energy):

    simulated instant  s(t) = EPOCH + speed * (t - EPOCH)
    register           R(t) = R0 + (energy of the profile from EPOCH to s(t))

The profile is the same every simulated day (time of day in CET, without daylight
saving, so a day is always 24 h), constant within each simulated minute. The energy up
to any instant is whole days times the day's energy plus a table lookup: no state, no
drift, next to no CPU. With `speed` > 1 the day is walked in compressed time while the
meter's own timestamps stay the real clock: the power shown is the profile's (kW a house
really draws), the registers rise `speed` times faster than that power would fill them.

House: base load, a morning and a cooking peak, an evening plateau, and rooftop solar
around midday that drives the connection into export; a gas meter heating in the morning
and evening. Carport: an electric car charging from the solar surplus at noon and again
in the evening. Tariff 1 (low) from 23:00 to 07:00, tariff 2 (normal) otherwise, as Dutch
meters do on weekdays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

EPOCH = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DAY_S = 86400
MINUTES = 1440
_CET_S = 3600
REGISTER_WRAP_KWH = 1_000_000.0  # F9(3,3) registers roll over like a real meter's
GAS_WRAP_M3 = 100_000.0  # F8(2,3)...F8(5,3): five digits before the point


def _bump(minute: float, start: float, end: float) -> float:
    """0 outside [start, end) hours, a smooth 0..1..0 arch inside."""
    hour = minute / 60
    if not start <= hour < end:
        return 0.0
    return math.sin(math.pi * (hour - start) / (end - start))


def _flicker(minute: int, salt: int) -> float:
    """A fixed pseudo-random 0..1 per minute of the day (clouds, a kettle): the same
    every day, so a day's energy stays a constant."""
    x = (minute * 2654435761 + salt * 40503) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 1274126177) & 0xFFFFFFFF
    return ((x ^ (x >> 16)) & 0xFFFF) / 0xFFFF


def low_tariff(minute: float) -> bool:
    return minute < 7 * 60 or minute >= 23 * 60


def house_load_kw(minute: int) -> float:
    m = minute + 0.5
    load = 0.22 + 0.08 * _flicker(minute, 1)  # fridge, standby, router
    load += 1.4 * _bump(m, 6.75, 8.5)  # showers, kettle, coffee
    load += 2.6 * _bump(m, 17.25, 19.5)  # cooking
    load += 0.7 * _bump(m, 19.0, 23.5)  # evening: lights, TV, dishwasher
    if _flicker(minute, 2) > 0.93:
        load += 1.8  # a kettle or a hob
    return load


def house_solar_kw(minute: int) -> float:
    clouds = 0.65 + 0.35 * _flicker(minute // 5, 3)
    sun = _bump(minute + 0.5, 6.0, 20.5)
    return 4.6 * sun * math.sqrt(sun) * clouds


def carport_load_kw(minute: int) -> float:
    m = minute + 0.5
    hour = m / 60
    if 11.5 <= hour < 14.0:
        return 3.5 + 0.2 * _flicker(minute, 4)  # charging from the solar surplus
    if 18.5 <= hour < 22.5:
        return 7.2 if hour < 22.0 else 2.4  # evening session, tapering when nearly full
    return 0.004  # the charger's standby


def gas_m3_per_h(minute: int) -> float:
    m = minute + 0.5
    flow = 0.02  # pilot, hot water now and then
    flow += 1.1 * _bump(m, 5.5, 8.5)  # heating up in the morning
    flow += 0.8 * _bump(m, 16.5, 22.5)  # evening heating
    if _flicker(minute, 5) > 0.95:
        flow += 1.5  # a shower
    return flow


@dataclass(frozen=True, slots=True)
class Flows:
    """Power per direction (kW) at one simulated minute."""

    import_kw: float
    export_kw: float


class DayTable:
    """One quantity (kW or m3/h) per minute of the day, split by tariff, integrated."""

    def __init__(self, per_minute: list[float]) -> None:
        self.rate = per_minute
        # cumulative energy (kWh or m3) at the start of each minute, per tariff
        self._cum: tuple[list[float], list[float]] = ([0.0], [0.0])
        for minute, rate in enumerate(per_minute):
            low = low_tariff(minute)
            for tariff, cum in enumerate(self._cum):
                step = rate / 60 if (tariff == 0) == low else 0.0
                cum.append(cum[-1] + step)

    def energy(self, sim_s: float, tariff: int) -> float:
        """Energy of `tariff` (0: T1, 1: T2) from EPOCH to the simulated instant."""
        days, rest = divmod(sim_s - EPOCH + _CET_S, DAY_S)
        minute, within = divmod(rest, 60)
        m = int(minute)
        cum = self._cum[tariff]
        partial = cum[m]
        if (tariff == 0) == low_tariff(m):
            partial += self.rate[m] * within / 3600
        return days * cum[-1] + partial


def minute_of_day(sim_s: float) -> int:
    return int(((sim_s - EPOCH + _CET_S) % DAY_S) // 60)


@dataclass(frozen=True, slots=True)
class Profile:
    """A demo metering point: identity, starting registers and its day of flows."""

    name: str
    header: str
    equipment_id: str
    phases: tuple[float, ...]  # share of the power on L1, L2, L3
    import_start: tuple[float, float]  # T1, T2 kWh at EPOCH
    export_start: tuple[float, float]
    imports: DayTable
    exports: DayTable
    gas: DayTable | None = None
    gas_equipment_id: str = ""
    gas_start: float = 0.0

    def flows(self, sim_s: float) -> Flows:
        m = minute_of_day(sim_s)
        return Flows(self.imports.rate[m], self.exports.rate[m])

    def registers(self, sim_s: float) -> tuple[tuple[float, float], tuple[float, float]]:
        """((import T1, T2), (export T1, T2)) in kWh at the simulated instant."""

        def at(table: DayTable, start: tuple[float, float]) -> tuple[float, float]:
            return (
                (start[0] + table.energy(sim_s, 0)) % REGISTER_WRAP_KWH,
                (start[1] + table.energy(sim_s, 1)) % REGISTER_WRAP_KWH,
            )

        return at(self.imports, self.import_start), at(self.exports, self.export_start)

    def gas_m3(self, sim_s: float) -> float:
        assert self.gas is not None
        return (self.gas_start + self.gas.energy(sim_s, 0) + self.gas.energy(sim_s, 1)) % (
            GAS_WRAP_M3
        )


def _house() -> Profile:
    net = [house_load_kw(m) - house_solar_kw(m) for m in range(MINUTES)]
    return Profile(
        name="house",
        header="PDX5\\2P1D-DEMO-HOUSE",
        equipment_id="P1DDEMOHOUSE0001",
        phases=(0.38, 0.30, 0.32),
        import_start=(5123.456, 4077.912),
        export_start=(1320.004, 3911.777),
        imports=DayTable([max(n, 0.0) for n in net]),
        exports=DayTable([max(-n, 0.0) for n in net]),
        gas=DayTable([gas_m3_per_h(m) for m in range(MINUTES)]),
        gas_equipment_id="P1DDEMOGAS000001",
        gas_start=3271.114,
    )


def _carport() -> Profile:
    return Profile(
        name="carport",
        header="PDX5\\2P1D-DEMO-CARPORT",
        equipment_id="P1DDEMOCARPORT01",
        phases=(1.0,),
        import_start=(812.340, 1456.071),
        export_start=(0.0, 0.0),
        imports=DayTable([carport_load_kw(m) for m in range(MINUTES)]),
        exports=DayTable([0.0] * MINUTES),
    )


_BUILDERS = {"house": _house, "carport": _carport}
PROFILES = tuple(_BUILDERS)
_BUILT: dict[str, Profile] = {}


def profile(name: str) -> Profile:
    """The named profile (built once: two 1440-entry tables)."""
    if name not in _BUILT:
        _BUILT[name] = _BUILDERS[name]()
    return _BUILT[name]
