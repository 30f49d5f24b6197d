"""Warn while the running quarter-hour is on its way to a new (costly) monthly peak.

Raised when the projected quarter average stays above the threshold for `hold_s`; the
threshold is `capacity_target_kw` when configured, else this month's peak, but never
below the 2.5 kW a month counts as anyway (a new peak under it costs nothing), plus
`margin_kw`. Early in a quarter the projection is mostly the current power, so one kettle
second must not raise it: every reading for `hold_s` must be above. Cleared when the
projection has stayed at or below the threshold for `hold_s` (so it does not flap), or
when the quarter ends (`cleared_by` says which; "reconfigured" when a reload changed
the meter's settings); the clearing document says how the
quarter really ended (`quarter_average_kw`), the raised one what a quarter ending as
projected would add to the rolling 12-month average (`raises_average_by_kw`).

Like the export-limit alert, a document comes out only on a transition; publish it
retained on `<prefix>/<meter>/alert/capacity`, as a record (through the outbox):

    {"meter": "house", "active": true, "quarter_start": "...", "quarter_end": "...",
     "threshold_kw": 3.1, "reference": "month_peak", "reference_kw": 3.1, "margin_kw": 0.0,
     "hold_s": 30.0, "above_since": "...", "raised_at": "...", "cleared_at": null,
     "cleared_by": null, "projected_kw": 5.4, "max_projected_kw": 5.4,
     "quarter_average_kw": null, "raises_average_by_kw": 0.2091}

A gap between readings longer than `max_gap_s` restarts a wait (what happened in between
is unknown). Times are the meter's clock; `tick` only ends a raised alert whose quarter
is over while no reading came to end it (the meter went silent).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from p1daemon.views.capacity.documents import (
    CapacityAlert,
    CapacityState,
    ClearedBy,
    QuarterClosed,
    Reference,
)
from p1daemon.views.capacity.rolling import FLOOR_KW


class CapacityAlarm:
    def __init__(
        self,
        meter: str,
        *,
        margin_kw: float = 0.0,
        hold_s: float = 30.0,
        target_kw: float | None = None,
        max_gap_s: float = 60.0,
    ) -> None:
        if hold_s < 0 or margin_kw < 0 or (target_kw is not None and target_kw <= 0):
            raise ValueError("hold_s and margin_kw must be >= 0, target_kw > 0")
        self.meter = meter
        self.margin_kw = margin_kw
        self.hold_s = hold_s
        self.target_kw = target_kw
        self.max_gap_s = max_gap_s
        self._quarter: tuple[datetime, datetime] | None = None  # shown start, end
        self._last: datetime | None = None
        self._above_since: datetime | None = None
        self._below_since: datetime | None = None
        self._raised_at: datetime | None = None
        self._cleared_at: datetime | None = None
        self._cleared_by: ClearedBy | None = None
        self._projected: float | None = None
        self._max_projected: float | None = None
        self._average: float | None = None
        self._raises: float | None = None
        self._reference: tuple[Reference, float] = ("floor", FLOOR_KW)

    @property
    def active(self) -> bool:
        return self._raised_at is not None

    def reference(self, month_peak_kw: float | None) -> tuple[Reference, float]:
        if self.target_kw is not None:
            return "target", self.target_kw
        if month_peak_kw is not None and month_peak_kw > FLOOR_KW:
            return "month_peak", month_peak_kw
        return "floor", FLOOR_KW

    def feed(
        self,
        state: CapacityState,
        closed: QuarterClosed | None,
        raises_average_by_kw: float | None = None,
    ) -> list[CapacityAlert]:
        out: list[CapacityAlert] = []
        now = state.at
        quarter = (state.quarter.start, state.quarter.end)
        if self._quarter is not None and quarter[0] != self._quarter[0]:
            if self._raised_at is not None:
                self._average = closed.average_kw if closed is not None else None
                out.append(self._clear(self._quarter[1], "quarter_end"))
            self._reset_wait()
        gap = self._last is not None and (now - self._last).total_seconds() > self.max_gap_s
        self._quarter = quarter
        self._last = now
        projected = state.quarter.projected_kw
        if projected is None:
            return out
        self._reference = self.reference(state.month.peak_kw)
        threshold = self._reference[1] + self.margin_kw
        self._projected = projected
        if projected > threshold:
            self._below_since = None
            if self._above_since is None or (gap and self._raised_at is None):
                self._above_since = now
                self._max_projected = projected
            else:
                self._max_projected = max(self._max_projected or projected, projected)
            if raises_average_by_kw is not None:
                self._raises = raises_average_by_kw
            if self._raised_at is None and _held(self._above_since, now) >= self.hold_s:
                self._raised_at = now
                self._cleared_at = self._cleared_by = self._average = None
                out.append(self._document(active=True))
            return out
        if self._raised_at is None:
            self._above_since = None
            return out
        if self._below_since is None or gap:
            self._below_since = now
        if _held(self._below_since, now) >= self.hold_s:
            out.append(self._clear(now, "dropped"))
            self._reset_wait()
        return out

    def clears_at(self) -> datetime | None:
        """When `tick` clears a raised warning whose quarter's end was not seen (meter
        time); None while none is raised."""
        quarter = self._quarter
        if self._raised_at is None or quarter is None:
            return None
        return quarter[1] + timedelta(seconds=self.max_gap_s)

    def tick(self, meter_now: datetime) -> CapacityAlert | None:
        """`meter_now`: the Pi's clock corrected by the meter's last known offset."""
        quarter = self._quarter
        if self._raised_at is None or quarter is None:
            return None
        if meter_now < quarter[1] + timedelta(seconds=self.max_gap_s):
            return None
        self._average = None  # the quarter's end was not seen
        alert = self._clear(quarter[1], "quarter_end")
        self._reset_wait()
        return alert

    def withdraw(self) -> CapacityAlert | None:
        """A raised warning whose settings are gone (reload): cleared now, or None."""
        if self._raised_at is None or self._last is None:
            return None
        alert = self._clear(self._last, "reconfigured")
        self._reset_wait()
        return alert

    def state(self) -> CapacityAlert:
        """The current state (published inactive at start-up, like the export alert)."""
        return self._document(active=self.active)

    def _clear(self, at: datetime, by: ClearedBy) -> CapacityAlert:
        self._cleared_at = at
        self._cleared_by = by
        alert = self._document(active=False)
        self._raised_at = None
        return alert

    def _reset_wait(self) -> None:
        self._above_since = self._below_since = None
        self._max_projected = self._raises = None

    def _document(self, *, active: bool) -> CapacityAlert:
        reference, reference_kw = self._reference
        quarter = self._quarter
        return CapacityAlert(
            meter=self.meter,
            active=active,
            quarter_start=None if quarter is None else quarter[0],
            quarter_end=None if quarter is None else quarter[1],
            threshold_kw=round(reference_kw + self.margin_kw, 4),
            reference=reference,
            reference_kw=reference_kw,
            margin_kw=self.margin_kw,
            hold_s=self.hold_s,
            above_since=self._above_since,
            raised_at=self._raised_at,
            cleared_at=self._cleared_at,
            cleared_by=self._cleared_by,
            projected_kw=self._projected,
            max_projected_kw=self._max_projected,
            quarter_average_kw=self._average,
            raises_average_by_kw=self._raises,
        )


def _held(since: datetime, now: datetime) -> float:
    return (now - since).total_seconds()
