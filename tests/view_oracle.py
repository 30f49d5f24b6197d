"""The views' documents as pydantic models: the oracle of their JSON, for tests only.

These are the models p1daemon published the views' documents with until issue 16
(p1daemon/views/energy/documents.py, site.py, export_cap.py, capacity/documents.py and
history/month.py at fb5f614, unchanged below but for the imports): the plain classes
that replaced them must produce their bytes exactly, and read the day document and a
quarter's opening back as they did. tests/test_view_documents.py compares the two. Do not
"fix" these models to match the plain classes: they are the contract.
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from p1daemon.reading.role import Role

Topology = Literal["parallel", "series"]

# -- p1daemon/views/energy/documents.py ---------------------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True, extra="forbid")


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
    import_: Energy = Field(default_factory=Energy, alias="import")
    export: Energy = Field(default_factory=Energy)
    meter_replaced: bool = False


class RegisterState(_Doc):
    at: datetime
    equipment_id: str | None = None
    import_: Energy = Field(default_factory=Energy, alias="import")
    export: Energy = Field(default_factory=Energy)


class _Period(_Doc):
    meter: str
    role: Role
    ean: str | None = None
    equipment_id: str | None = None
    start: datetime
    end: datetime
    import_: Energy = Field(default_factory=Energy, alias="import")
    export: Energy = Field(default_factory=Energy)
    complete: bool
    start_missing: bool
    end_missing: bool
    meter_replaced: bool
    registers_changed: bool


QuarterStatus = Literal["complete", "partial", "gap", "replaced"]


class QuarterDoc(_Period):
    gap_before: Gap | None = None
    readings: int
    status: QuarterStatus = "partial"


class DayDoc(_Period):
    date: dt.date
    hours: float
    final: bool
    gaps: list[Gap] = Field(default_factory=list)
    quarters: int
    last_reading: RegisterState | None = None


# -- p1daemon/views/energy/site.py ---------------------------------------------------------


class Power(_Doc):
    import_kw: float | None = None
    export_kw: float | None = None
    net_kw: float | None = None  # import minus export: negative when feeding in


class PeriodEnergy(_Doc):
    start: datetime
    end: datetime
    import_kwh: float | None = None
    export_kwh: float | None = None
    net_kwh: float | None = None
    complete: bool


class Point(_Doc):
    meter: str
    role: Role
    ean: str | None = None
    derived: bool  # true for the primary point in series: computed, not measured
    reading_at: datetime | None = None
    age_s: float | None = None
    stale: bool
    power: Power = Field(default_factory=Power)
    quarter: PeriodEnergy | None = None
    today: PeriodEnergy | None = None


class Totals(_Doc):
    power: Power = Field(default_factory=Power)
    quarter: PeriodEnergy | None = None
    today: PeriodEnergy | None = None


class SiteWarning(_Doc):
    code: str
    meter: str | None = None
    message: str


class ConnectionDoc(_Doc):
    topology: Topology
    at: datetime
    complete: bool
    connection: Totals
    points: list[Point]
    warnings: list[SiteWarning] = Field(default_factory=list)


# -- p1daemon/views/energy/export_cap.py -------------------------------------------------


class ExportLimitAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    meter: str
    active: bool
    limit_kw: float
    hold_s: float
    above_since: datetime | None
    raised_at: datetime | None
    cleared_at: datetime | None
    export_kw: float | None
    peak_kw: float | None


# -- p1daemon/views/capacity/documents.py ------------------------------------------------

Source = Literal["meter", "computed"]


class _CapacityDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuarterState(_CapacityDoc):
    start: datetime
    end: datetime
    elapsed_s: float
    # False when the daemon did not see the quarter start (it started mid-quarter or
    # readings stopped): the unseen stretch is assumed at the seen average.
    complete: bool
    energy_kwh: float  # import energy so far (computed, registers)
    power_kw: float | None  # import power of this reading
    average_kw: float | None  # the quarter's average so far: the meter's 1.4.0 if sent
    average_source: Source
    computed_average_kw: float | None
    meter_average_kw: float | None
    difference_kw: float | None  # meter - computed
    projected_kw: float | None  # computed: (energy so far + power x time left) / 15 min


class MonthState(_CapacityDoc):
    start: datetime
    peak_kw: float | None
    peak_at: datetime | None
    peak_source: Source
    computed_peak_kw: float | None
    computed_peak_at: datetime | None
    meter_peak_kw: float | None
    meter_peak_at: datetime | None
    difference_kw: float | None  # meter - computed (computed: complete quarters seen)


class RollingState(_CapacityDoc):
    average_kw: float  # this month and the 11 known before it, each at least floor_kw
    months: int
    floor_kw: float
    previous_average_kw: float | None  # the 12 months before this one
    change_kw: float | None  # what this month's peak does to the average (+ raises)
    history_source: Source


class CapacityState(_CapacityDoc):
    meter: str
    ean: str | None
    at: datetime
    clock_offset_s: float | None  # meter clock - Pi clock at reception
    quarter: QuarterState
    month: MonthState
    rolling: RollingState


class QuarterClosed(_CapacityDoc):
    """Not published on its own: what the state machine learns when a quarter ends."""

    start: datetime
    average_kw: float | None
    complete: bool


ClearedBy = Literal["dropped", "quarter_end", "reconfigured"]
Reference = Literal["month_peak", "floor", "target"]


class CapacityAlert(_CapacityDoc):
    meter: str
    active: bool
    quarter_start: datetime | None
    quarter_end: datetime | None
    threshold_kw: float  # reference_kw + margin_kw
    reference: Reference
    reference_kw: float
    margin_kw: float
    hold_s: float
    above_since: datetime | None
    raised_at: datetime | None
    cleared_at: datetime | None
    cleared_by: ClearedBy | None
    projected_kw: float | None
    max_projected_kw: float | None
    quarter_average_kw: float | None  # at quarter_end: how the quarter really ended
    raises_average_by_kw: float | None  # if the quarter ends as projected


# -- p1daemon/views/history/month.py -----------------------------------------------------


class MonthDoc(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True, extra="forbid")

    meter: str
    role: str
    ean: str | None = None
    equipment_id: str | None = None
    month: str
    start: datetime
    end: datetime
    hours: float
    import_: Energy = Field(default_factory=Energy, alias="import")
    export: Energy = Field(default_factory=Energy)
    final: bool
    complete: bool
    quarters: int
    complete_quarters: int
    gaps: int
    replacements: int
    chain_head: str | None = None
