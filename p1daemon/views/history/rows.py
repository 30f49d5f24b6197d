"""What the recorder hands the store: plain rows, computed on the reader thread."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from p1daemon.reading.meter import Role
from p1daemon.views.energy.documents import QuarterStatus
from p1daemon.views.energy.samples import Key, Sample


@dataclass(frozen=True, slots=True)
class Point:
    """A metering point as the history knows it: a new equipment id is a new point."""

    meter: str
    role: Role
    ean: str | None
    equipment_id: str | None


@dataclass(frozen=True, slots=True)
class QuarterRow:
    point: Point
    start: datetime  # UTC
    utc_offset_min: int  # local time = start + offset
    status: QuarterStatus
    first: Sample | None  # the register readings it runs between (meter timestamps)
    last: Sample | None
    deltas: Mapping[Key, Decimal]
    readings: int


@dataclass(frozen=True, slots=True)
class GapRow:
    """Readings stopped at `start` and resumed at `end`: the energy in between belongs
    to the gap (None when a replacement makes it unknowable)."""

    point: Point
    start: datetime
    end: datetime
    deltas: Mapping[Key, Decimal] | None


@dataclass(frozen=True, slots=True)
class ReplacementRow:
    meter: str
    at: datetime  # the new meter's first reading
    old: Sample  # the old meter's last reading, kept
    new: Sample


@dataclass(frozen=True, slots=True)
class MbusHourRow:
    """An M-Bus sub-meter's hour, booked on its own capture timestamps."""

    meter: str
    channel: int
    kind: str
    unit: str | None
    equipment_id: str | None
    hour: datetime  # UTC start of the local hour
    utc_offset_min: int
    first_at: datetime
    first_value: Decimal
    last_at: datetime
    last_value: Decimal
    complete: bool

    @property
    def delta(self) -> Decimal:
        return self.last_value - self.first_value


@dataclass(frozen=True, slots=True)
class MeterState:
    """Persisted after every closed quarter and at a stop: where the next run carries on,
    and how a meter swapped meanwhile is recognised."""

    meter: str
    last: Sample
    opening: Sample | None


@dataclass(frozen=True, slots=True)
class TelegramRow:
    """Evidence: the telegram (as accepted, CRC included; a Smarty meter's plaintext)
    whose reading at `at` (the meter's own time) is a quarter edge of `meter`."""

    meter: str
    at: datetime
    raw: bytes


Row = QuarterRow | GapRow | ReplacementRow | MbusHourRow | MeterState | TelegramRow
