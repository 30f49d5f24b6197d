"""The retained `<prefix>/<meter>/capacity` document and the `alert/capacity` record.

Field names are public. `*_source` says where a value comes from: "meter" (the meter's
own `1-0:1.4.0`, `1-0:1.6.0`, `0-0:98.1.0`, the authority the bill is made from) or
"computed" (by the daemon from the import registers, an estimate). Where both exist the
other one is shown beside it with the difference, so clock drift between meter and Pi
shows up instead of being hidden.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from p1daemon.views.document import ViewDoc as _Doc

Source = Literal["meter", "computed"]


class QuarterState(_Doc):
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


class MonthState(_Doc):
    start: datetime
    peak_kw: float | None
    peak_at: datetime | None
    peak_source: Source
    computed_peak_kw: float | None
    computed_peak_at: datetime | None
    meter_peak_kw: float | None
    meter_peak_at: datetime | None
    difference_kw: float | None  # meter - computed (computed: complete quarters seen)


class RollingState(_Doc):
    average_kw: float  # this month and the 11 known before it, each at least floor_kw
    months: int
    floor_kw: float
    previous_average_kw: float | None  # the 12 months before this one
    change_kw: float | None  # what this month's peak does to the average (+ raises)
    history_source: Source


class CapacityState(_Doc):
    frequent = True  # every reading
    meter: str
    ean: str | None
    at: datetime
    clock_offset_s: float | None  # meter clock - Pi clock at reception
    quarter: QuarterState
    month: MonthState
    rolling: RollingState


class QuarterClosed(_Doc):
    """Not published on its own: what the state machine learns when a quarter ends."""

    start: datetime
    average_kw: float | None
    complete: bool


ClearedBy = Literal["dropped", "quarter_end", "reconfigured"]
Reference = Literal["month_peak", "floor", "target"]


class CapacityAlert(_Doc):
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
