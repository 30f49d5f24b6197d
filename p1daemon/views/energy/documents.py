"""The JSON documents of the energy views: public contract, add fields, never rename.

`<prefix>/<meter>/quarter` (retained: the last closed quarter-hour):

    {"meter": "house", "role": "primary", "ean": "8716...", "equipment_id": "...",
     "start": "2024-10-27T02:45:00+01:00", "end": "2024-10-27T03:00:00+01:00",
     "import": {"t1_kwh": 0.0, "t2_kwh": 0.45, "t3_kwh": null, "t4_kwh": null,
                "total_kwh": 0.45},
     "export": {...same keys...},
     "complete": true, "start_missing": false, "end_missing": false,
     "meter_replaced": false, "registers_changed": false,
     "gap_before": null, "readings": 90, "status": "complete"}

`<prefix>/<meter>/day` (retained: the running day after every closed quarter, and the
final document once the day is over):

    {"meter": ..., "date": "2024-10-27", "start": "2024-10-27T00:00:00+02:00",
     "end": "2024-10-28T00:00:00+01:00", "hours": 25.0,
     "import": {...}, "export": {...}, "final": false, "complete": false,
     "start_missing": false, "end_missing": false, "meter_replaced": false,
     "registers_changed": false, "gaps": [...], "quarters": 37,
     "last_reading": {"at": ..., "equipment_id": ..., "import": {...registers...},
                      "export": {...}}}

Meaning of the values and flags:
- Energy values are kWh *deltas of the meter's cumulative registers* within the period,
  never integrated power; null for a register the meter does not send.
- A delta between two readings is booked to one period only; a reading interval that
  crosses a boundary is booked to the side whose reading is within the tolerance of the
  boundary, else it is a gap: left out of the quarters, reported in `gap_before` of the
  quarter where data resumes and in the day's `gaps` (with the energy that flowed during
  it, or nulls when a meter replacement makes it unknowable).
- A day's total is exact when its own two ends are covered, even if there were gaps
  inside it: day = sum of its quarters + the energy of the gaps inside it. A gap that
  began on an earlier day is listed on the day it ends in but counted in neither (that
  day has `start_missing`, the earlier one `end_missing`).
- A quarter in which no reading interval could be booked (data resumed and stopped again
  inside it) is not published.
- `complete` is true only when nothing is missing: both ends covered, no meter
  replacement, no register appearing or disappearing, and (for a day) `final`.
- `start_missing`: the period's first reading is not the one at its start (the daemon
  started, or data resumed after a gap). `end_missing`: data stopped before its end.
- `meter_replaced`: the meter was replaced, or a register went backwards or jumped
  implausibly; the energy across that point is unknown and a new baseline started.
- `status` (quarter only): `complete`, `partial` (something missing) or `replaced` (a
  new baseline inside it); the history also records `gap` quarters (no reading at all).
- `last_reading` (day only) is the register state the day's values run up to; it lets a
  restarted daemon continue the day exactly (`EnergyView.restore`).
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Literal

from p1daemon.reading.doc import doc_field
from p1daemon.reading.role import Role
from p1daemon.views.document import ViewDoc as _Doc


class Energy(_Doc):
    t1_kwh: float | None = None
    t2_kwh: float | None = None
    t3_kwh: float | None = None
    t4_kwh: float | None = None
    total_kwh: float | None = None


class Gap(_Doc):
    """Readings stopped at `start` and resumed at `end`; the energy in between, unplaced."""

    start: datetime
    end: datetime
    import_: Energy = doc_field(default_factory=Energy, json_name="import")
    export: Energy = doc_field(default_factory=Energy)
    meter_replaced: bool = False


class RegisterState(_Doc):
    at: datetime
    equipment_id: str | None = None
    import_: Energy = doc_field(default_factory=Energy, json_name="import")
    export: Energy = doc_field(default_factory=Energy)


class _Period(_Doc):
    meter: str
    role: Role
    ean: str | None = None
    equipment_id: str | None = None
    start: datetime
    end: datetime
    import_: Energy = doc_field(default_factory=Energy, json_name="import")
    export: Energy = doc_field(default_factory=Energy)
    complete: bool
    start_missing: bool
    end_missing: bool
    meter_replaced: bool
    registers_changed: bool


QuarterStatus = Literal["complete", "partial", "gap", "replaced"]


def quarter_status(complete: bool, meter_replaced: bool) -> QuarterStatus:
    """One word for a closed quarter (`gap` is for quarters without any reading, which
    only the history records: no quarter document is published for them)."""
    if meter_replaced:
        return "replaced"
    return "complete" if complete else "partial"


class QuarterDoc(_Period):
    gap_before: Gap | None = None
    readings: int
    status: QuarterStatus = "partial"


class DayDoc(_Period):
    date: dt.date
    hours: float
    final: bool
    gaps: list[Gap] = doc_field(default_factory=list)
    quarters: int
    last_reading: RegisterState | None = None
