"""A reading reduced to what the energy views need: when, which meter, which registers.

Register values are kept as `Decimal` of their shortest decimal text, which is exactly
what the meter sent (`5123.456`), so that differences and sums over a day stay exact
instead of collecting binary floating-point noise.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from itertools import repeat
from typing import Literal, cast
from zoneinfo import ZoneInfo

from p1daemon.reading.meter import MeterReading
from p1daemon.views.energy.documents import Energy, RegisterState

Direction = Literal["import", "export"]
DIRECTIONS: tuple[Direction, ...] = ("import", "export")
REGISTERS = ("t1", "t2", "t3", "t4", "total")
Key = tuple[Direction, str]
ALL_KEYS: tuple[Key, ...] = tuple((d, r) for d in DIRECTIONS for r in REGISTERS)


@dataclass(frozen=True, slots=True)
class Sample:
    at: datetime
    equipment_id: str | None
    registers: Mapping[Key, Decimal]
    replaced: bool = False


def reading_time(reading: MeterReading) -> datetime | None:
    """The meter's own clock, else the time the daemon received the telegram.

    The meter's clock is the one grid operators settle by, and unlike the Pi's clock it
    does not jump when NTP corrects a Pi that booted without a real-time clock.
    """
    at = reading.timestamp or reading.received_at
    # UTC from here on: see clock.py for why local datetimes must not be compared.
    return at.astimezone(UTC) if at.tzinfo is not None else None


# The energy views and the history each feed every reading to an `EnergyView`: the one
# `Sample` of the last reading serves both (a Sample is immutable). One entry, replaced
# whole, so a concurrent caller at worst computes its own.
_last_sample: tuple[MeterReading, Sample | None] | None = None


def sample_of(reading: MeterReading) -> Sample | None:
    global _last_sample
    last = _last_sample
    if last is not None and last[0] is reading:
        return last[1]
    at = reading_time(reading)
    sample = (
        None
        if at is None
        else Sample(at, reading.equipment_id, _reading_registers(reading), reading.meter_replaced)
    )
    _last_sample = (reading, sample)
    return sample


_ATTRIBUTES = tuple((register, f"{register}_kwh") for register in REGISTERS)
# Register value -> its exact Decimal: a register changes by a few Wh between telegrams,
# so most values of a reading were seen in the one before. Bounded; zero is left out
# because 0.0 and -0.0 are one key but two Decimals.
_DECIMALS: dict[float, Decimal] = {}
_DECIMALS_MAX = 1024


def _decimal(value: float) -> Decimal:
    exact = _DECIMALS.get(value)
    if exact is None:
        exact = Decimal(repr(value))
        if value:
            if len(_DECIMALS) >= _DECIMALS_MAX:
                _DECIMALS.clear()
            _DECIMALS[value] = exact
    return exact


# The `<register>_kwh` values of a reading's energy block, straight from its `__dict__`
# (p1daemon/reading/doc.py: every field is there, under its JSON name), in one C call;
# import t1..total then export t1..total, the order of `ALL_KEYS`.
_KWH = operator.itemgetter(*(attribute for _, attribute in _ATTRIBUTES))
# Meter name -> the register values of its last reading and their exact registers. A
# register changes by a few Wh between telegrams, so most readings of a meter have the
# same values as the one before: the same (never mutated) mapping serves them all.
_LAST_REGISTERS: dict[str, tuple[tuple[float | None, ...], dict[Key, Decimal]]] = {}


_IS_NOT_NONE = partial(operator.is_not, None)


def _negative_zero(values: tuple[float | None, ...]) -> bool:
    """-0.0 equals 0.0 but is another Decimal ("-0.0"): never served from the cache.
    Called on every reading with a zero register (most meters have some), so all in C:
    the sign of each zero (the values that are falsy and not None)."""
    zeros = cast("Iterator[float]", filter(_IS_NOT_NONE, filter(operator.not_, values)))
    return min(map(math.copysign, repeat(1.0), zeros), default=1.0) < 0.0


def _reading_registers(reading: MeterReading) -> dict[Key, Decimal]:
    """`_registers(reading.import_, reading.export)` for a parsed reading's blocks: the
    same exact Decimals, and the very mapping of the meter's previous sample when the
    values are the same (a shared mapping: nobody may change a sample's registers)."""
    fields = reading.__dict__
    values = _KWH(fields["import"].__dict__) + _KWH(fields["export"].__dict__)
    meter = reading.meter
    last = _LAST_REGISTERS.get(meter)
    if last is not None:
        kept = last[0]
        # The very float objects of the last reading (the parser hands out one float per
        # register text it keeps: p1daemon/parse/layout.py): the same values and signs,
        # found without looking for a negative zero (a third of the cost; the first
        # register that moved ends the look).
        if all(map(operator.is_, kept, values)):
            return last[1]
        # Only entries without a negative zero are kept, so equal values here are equal
        # signs.
        if kept == values and (0.0 not in values or not _negative_zero(values)):
            return last[1]
    registers: dict[Key, Decimal] = {}
    isfinite = math.isfinite
    for key, value in zip(ALL_KEYS, values, strict=True):
        if value is not None and isfinite(value):
            registers[key] = _decimal(float(value))
    if 0.0 in values and _negative_zero(values):
        _LAST_REGISTERS.pop(meter, None)
    else:
        _LAST_REGISTERS[meter] = (values, registers)
    return registers


def _registers(imported: object, exported: object) -> dict[Key, Decimal]:
    """`<register>_kwh` attributes of an import and an export block, where not null."""
    registers: dict[Key, Decimal] = {}
    isfinite = math.isfinite
    blocks: tuple[tuple[Direction, object], ...] = (("import", imported), ("export", exported))
    for direction, block in blocks:
        for register, attribute in _ATTRIBUTES:
            value = getattr(block, attribute)
            if value is not None and isfinite(value):
                registers[(direction, register)] = _decimal(float(value))
    return registers


def energy_of(values: Mapping[Key, Decimal], direction: Direction) -> Energy:
    return Energy(
        **{
            f"{register}_kwh": float(values[(direction, register)])
            for register in REGISTERS
            if (direction, register) in values
        }
    )


def state_of(sample: Sample, zone: ZoneInfo) -> RegisterState:
    return RegisterState(
        at=sample.at.astimezone(zone),
        equipment_id=sample.equipment_id,
        import_=energy_of(sample.registers, "import"),
        export=energy_of(sample.registers, "export"),
    )


def sample_from_state(state: RegisterState) -> Sample:
    return Sample(
        state.at.astimezone(UTC), state.equipment_id, _registers(state.import_, state.export)
    )


def totals_of(imported: Energy, exported: Energy) -> dict[Key, Decimal]:
    """Energy blocks of a document back to exact decimals (a restored day's sums)."""
    return _registers(imported, exported)
