"""The running quarter-hour, its projection, the month's peak and the rolling average.

Pure: readings in, documents out; no I/O and no clock of its own. Time is the meter's
clock (`reading_time`, as in the energy views), so the quarters are the meter's quarters,
the ones the bill is made of. The Pi's clock enters only through `received_at`, to show
how far the two have drifted apart (`clock_offset_s`).

The quarter: fixed local windows starting :00, :15, :30, :45 (`energy.clock`). Energy so
far is the import registers' advance since the quarter started; the register value at
the boundary is interpolated between the readings either side of it when they are at
most `max_gap_s` apart. Otherwise (the first reading after start-up, a gap) the quarter
is *incomplete*: the unseen part is assumed at the average of the part seen, and only
complete quarters count towards the computed month peak.

    projected_kw = (energy so far + import power x time left) / 15 min

The meter's own values are the authority: `1-0:1.4.0` for the average so far,
`1-0:1.6.0` for the month's peak, `0-0:98.1.0` for the closed months. The computed ones
stand in for a meter that sends none (a Dutch meter with `capacity = "on"`) and are shown
beside the meter's so a difference is visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from p1daemon.reading.meter import MeterReading
from p1daemon.views.capacity import rolling
from p1daemon.views.capacity.documents import (
    CapacityState,
    MonthState,
    QuarterClosed,
    QuarterState,
    RollingState,
)
from p1daemon.views.energy.clock import QUARTER_S, local, quarter_end, quarter_start
from p1daemon.views.energy.samples import reading_time

_HOURS = Decimal(3600)
_QUARTER_H = Decimal(QUARTER_S) / _HOURS


def import_energy(reading: MeterReading) -> Decimal | None:
    """Total import in kWh, exact: 1.8.0 where sent, else the sum of the tariffs."""
    block = reading.import_
    if block.total_kwh is not None:
        return Decimal(repr(block.total_kwh))
    tariffs = [block.t1_kwh, block.t2_kwh, block.t3_kwh, block.t4_kwh]
    known = [Decimal(repr(v)) for v in tariffs if v is not None]
    return sum(known, Decimal(0)) if known else None


def _round(value: float | Decimal | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass(slots=True)
class _Quarter:
    start: datetime  # UTC
    base_at: datetime  # UTC: from when `base` is the register value (start if complete)
    base: Decimal
    complete: bool


@dataclass(frozen=True, slots=True)
class Update:
    state: CapacityState
    closed: QuarterClosed | None  # the quarter this reading closed, if any


class CapacityWatch:
    """One metering point. `feed` every accepted reading; None: nothing to say."""

    def __init__(
        self, meter: str, ean: str | None, zone: ZoneInfo, *, max_gap_s: float = 60.0
    ) -> None:
        self.meter = meter
        self.ean = ean
        self.zone = zone
        self.max_gap_s = max_gap_s
        self._last: tuple[datetime, Decimal] | None = None
        self._quarter: _Quarter | None = None
        self._month: int | None = None  # month index of the computed peak below
        self._peak: tuple[float, datetime] | None = None  # computed: (kW, quarter start UTC)
        self._history: dict[int, float] = {}  # computed closed months: the last WINDOW_MONTHS
        self.last_state: CapacityState | None = None
        self._rolled: tuple[dict[int, float], int] = ({}, 0)  # for `average_if_peak`

    def feed(self, reading: MeterReading) -> Update | None:
        at = reading_time(reading)
        energy = import_energy(reading)
        if at is None or energy is None:
            return None
        last = self._last
        closed: QuarterClosed | None = None
        if last is not None and (at <= last[0] or energy < last[1] or reading.meter_replaced):
            if at > last[0] - timedelta(seconds=self.max_gap_s) and not (
                energy < last[1] or reading.meter_replaced
            ):
                return None  # a duplicate or a small step back: nothing new
            last = None  # a new timeline or a new meter: start over
            self._quarter = None
        start = quarter_start(at, self.zone)
        quarter = self._quarter
        if quarter is None or last is None:
            quarter = _Quarter(start, at, energy, at == start)
        elif start != quarter.start:
            closed = self._close(quarter, last, (at, energy))
            gap = (at - last[0]).total_seconds()
            if gap <= self.max_gap_s:
                quarter = _Quarter(start, start, _at(start, last, (at, energy)), True)
            else:
                quarter = _Quarter(start, at, energy, at == start)
        self._quarter = quarter
        self._last = (at, energy)
        self._roll_month(start)
        state = self._state(reading, at, energy, quarter)
        self.last_state = state
        return Update(state, closed)

    # -- quarters and months -------------------------------------------------------------

    def _close(
        self, quarter: _Quarter, last: tuple[datetime, Decimal], now: tuple[datetime, Decimal]
    ) -> QuarterClosed:
        end = quarter_end(quarter.start)
        complete = quarter.complete and (now[0] - last[0]).total_seconds() <= self.max_gap_s
        average: Decimal | None = None
        if complete:
            average = (_at(end, last, now) - quarter.base) / _QUARTER_H
            self._book(quarter.start, float(average))
        return QuarterClosed(
            start=local(quarter.start, self.zone),
            average_kw=_round(average),
            complete=complete,
        )

    def _book(self, start: datetime, kw: float) -> None:
        month = rolling.month_index(start.astimezone(self.zone).date())
        self._roll_month(start)
        if self._month == month and (self._peak is None or kw > self._peak[0]):
            self._peak = (kw, start)

    def _roll_month(self, start: datetime) -> None:
        month = rolling.month_index(start.astimezone(self.zone).date())
        if self._month is None or month > self._month:
            history = self._history
            if self._month is not None and self._peak is not None:
                history[self._month] = self._peak[0]
            self._month = month
            self._peak = None
            # Only the WINDOW_MONTHS before the current one are ever read (rolling.py):
            # older months go, so a daemon running for years keeps a year, not all of them.
            for old in [m for m in history if m < month - rolling.WINDOW_MONTHS]:
                del history[old]

    # -- the document ----------------------------------------------------------------

    def _state(
        self, reading: MeterReading, at: datetime, energy: Decimal, quarter: _Quarter
    ) -> CapacityState:
        zone = self.zone
        elapsed = Decimal(repr((at - quarter.start).total_seconds()))
        covered = Decimal(repr((at - quarter.base_at).total_seconds()))
        seen = energy - quarter.base
        so_far = seen
        power = reading.import_.power_kw
        if covered < elapsed:  # the quarter's start was not seen
            if covered > 0:
                so_far = seen * elapsed / covered  # the unseen start at the seen average
            elif power is not None:
                so_far = Decimal(repr(power)) * elapsed / _HOURS  # nothing seen yet
        computed_average = so_far / (elapsed / _HOURS) if elapsed > 0 else None
        projected = None
        if power is not None:
            left = Decimal(QUARTER_S) - elapsed
            projected = (so_far + Decimal(repr(power)) * left / _HOURS) / _QUARTER_H
        capacity = reading.capacity
        meter_average = capacity.average_demand_kw if capacity is not None else None
        quarter_doc = QuarterState(
            start=local(quarter.start, zone),
            end=local(quarter_end(quarter.start), zone),
            elapsed_s=float(elapsed),
            complete=quarter.complete,
            energy_kwh=float(round(so_far, 6)),
            power_kw=power,
            average_kw=meter_average if meter_average is not None else _round(computed_average),
            average_source="meter" if meter_average is not None else "computed",
            computed_average_kw=_round(computed_average),
            meter_average_kw=meter_average,
            difference_kw=(
                None
                if meter_average is None or computed_average is None
                else _round(Decimal(repr(meter_average)) - computed_average)
            ),
            projected_kw=_round(projected),
        )
        month_index = rolling.month_index(at.astimezone(zone).date())
        meter_peak, meter_peak_at = self._meter_peak(reading, month_index)
        computed_kw = self._peak[0] if self._peak is not None else None
        computed_at = local(self._peak[1], zone) if self._peak is not None else None
        use_meter = meter_peak is not None
        peak_kw = meter_peak if use_meter else computed_kw
        month_doc = MonthState(
            start=local(
                datetime.combine(rolling.month_start(month_index), datetime.min.time(), zone),
                zone,
            ),
            peak_kw=peak_kw,
            peak_at=meter_peak_at if use_meter else computed_at,
            peak_source="meter" if use_meter else "computed",
            computed_peak_kw=_round(computed_kw),
            computed_peak_at=computed_at,
            meter_peak_kw=meter_peak,
            meter_peak_at=meter_peak_at,
            difference_kw=(
                None
                if meter_peak is None or computed_kw is None
                else _round(meter_peak - computed_kw)
            ),
        )
        meter_history = capacity.history if capacity is not None else []
        if meter_history:
            history = rolling.history_of((e.month, e.max_kw) for e in meter_history)
        else:
            history = self._history
        rolled = rolling.rolling(peak_kw, history, month_index)
        rolling_doc = RollingState(
            average_kw=_round(rolled.average_kw) or 0.0,
            months=rolled.months,
            floor_kw=rolling.FLOOR_KW,
            previous_average_kw=_round(rolled.previous_average_kw),
            change_kw=_round(rolled.change_kw),
            history_source="meter" if meter_history else "computed",
        )
        self._rolled = (history, month_index)
        offset = None
        if reading.timestamp is not None and reading.received_at.tzinfo is not None:
            offset = round((reading.timestamp - reading.received_at).total_seconds(), 3)
        return CapacityState(
            meter=self.meter,
            ean=self.ean,
            at=local(at, zone),
            clock_offset_s=offset,
            quarter=quarter_doc,
            month=month_doc,
            rolling=rolling_doc,
        )

    def _meter_peak(
        self, reading: MeterReading, month: int
    ) -> tuple[float | None, datetime | None]:
        """1.6.0, unless its time says it is another month's (just after midnight)."""
        capacity = reading.capacity
        if capacity is None or capacity.month_max_kw is None:
            return None, None
        at = capacity.month_max_at
        if at is not None and rolling.month_index(at.astimezone(self.zone).date()) != month:
            return None, None
        return capacity.month_max_kw, at

    def average_if_peak(self, kw: float) -> float | None:
        """The rolling average if this month's peak became `kw` (for the warning)."""
        state = self.last_state
        if state is None:
            return None
        history, month = self._rolled
        current = max(kw, state.month.peak_kw or 0.0)
        return rolling.average_with(current, history, month)


def _at(
    moment: datetime, before: tuple[datetime, Decimal], after: tuple[datetime, Decimal]
) -> Decimal:
    """The register at `moment`, between two readings (linear: the power in between is unknown)."""
    span = Decimal(repr((after[0] - before[0]).total_seconds()))
    if span <= 0:
        return after[1]
    part = Decimal(repr((moment - before[0]).total_seconds()))
    return before[1] + (after[1] - before[1]) * part / span


__all__ = ["CapacityWatch", "Update", "import_energy"]
