"""Alert when a meter's export power stays above its feed-in limit for the hold time.

Feed-in caps (say 50 % of the panels' peak power) are about sustained export, not a
one-second spike, so the alert needs every reading for `export_limit_hold_s` to be above
the limit; one reading at or below it restarts the wait, and clears a raised alert.

Only what was observed counts: a gap between readings longer than `max_gap_s` restarts
the wait (the export in between is unknown), and a reading without export power changes
nothing. Times are the meter's clock, like the energy views. A reading that is not later
than the one before is ignored, unless the clock went back by more than `max_gap_s` and
the next reading carries on from there (a replay starting over, a replaced meter): that
is a new timeline, treated like a gap instead of being ignored until the clock catches
up.

`feed` returns a document only when the alert is raised or cleared; publish it retained
on `<prefix>/<meter>/alert/export_limit`:

    {"meter": "house", "active": true, "limit_kw": 2.5, "hold_s": 60.0,
     "above_since": "...", "raised_at": "...", "cleared_at": null,
     "export_kw": 2.9, "peak_kw": 3.1}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from p1daemon.reading.meter import MeterReading
from p1daemon.views.document import ViewDoc
from p1daemon.views.energy.samples import reading_time


class ExportLimitAlert(ViewDoc):
    meter: str
    active: bool
    limit_kw: float
    hold_s: float
    above_since: datetime | None
    raised_at: datetime | None
    cleared_at: datetime | None
    export_kw: float | None
    peak_kw: float | None


@dataclass(frozen=True, slots=True)
class _Moment:
    utc: datetime  # for arithmetic (see clock.py on comparing local datetimes)
    shown: datetime  # as the meter stated it, for documents


class ExportLimitMonitor:
    def __init__(
        self, meter: str, limit_kw: float, hold_s: float, *, max_gap_s: float = 60.0
    ) -> None:
        if limit_kw <= 0 or hold_s < 0:
            raise ValueError("limit_kw must be > 0 and hold_s >= 0")
        self.meter = meter
        self.limit_kw = limit_kw
        self.hold_s = hold_s
        self.max_gap_s = max_gap_s
        self._last: _Moment | None = None
        self._candidate: _Moment | None = None  # went back: see `feed`
        self._above_since: _Moment | None = None
        self._raised_at: _Moment | None = None
        self._cleared_at: _Moment | None = None
        self._peak: float | None = None
        self._export: float | None = None

    @property
    def active(self) -> bool:
        return self._raised_at is not None

    def feed(self, reading: MeterReading) -> ExportLimitAlert | None:
        utc = reading_time(reading)
        export_kw = reading.export.power_kw
        if utc is None or export_kw is None:
            return None
        now = _Moment(utc, reading.timestamp or reading.received_at)
        last = self._last
        step = None if last is None else (now.utc - last.utc).total_seconds()
        if step is not None and step <= 0:
            candidate = self._candidate
            if candidate is None or now.utc <= candidate.utc:
                # Not later than what we saw: a duplicate, a clock step back, or the first
                # reading of a new timeline, which the next one confirms by following it.
                self._candidate = now if -step > self.max_gap_s else None
                return None
            gap = True  # confirmed: what happened in between is unknown
        else:
            gap = step is not None and step > self.max_gap_s
        self._candidate = None
        self._last = now
        self._export = export_kw
        if export_kw <= self.limit_kw:
            cleared = None
            if self._raised_at is not None:
                # The clearing document still describes the episode that just ended.
                self._cleared_at = now
                cleared = self._document(active=False)
            self._above_since = None
            self._raised_at = None
            self._peak = None
            return cleared
        if self._above_since is None or (gap and self._raised_at is None):
            self._above_since = now
            self._peak = export_kw
        else:
            self._peak = max(self._peak or export_kw, export_kw)
        held = (now.utc - self._above_since.utc).total_seconds()
        if self._raised_at is None and held >= self.hold_s:
            self._raised_at = now
            self._cleared_at = None
            return self._document(active=True)
        return None

    def state(self) -> ExportLimitAlert:
        """The current state, e.g. to publish at start-up (inactive) or on request."""
        return self._document(active=self.active)

    def _document(self, *, active: bool) -> ExportLimitAlert:
        def shown(moment: _Moment | None) -> datetime | None:
            return None if moment is None else moment.shown

        return ExportLimitAlert(
            meter=self.meter,
            active=active,
            limit_kw=self.limit_kw,
            hold_s=self.hold_s,
            above_since=shown(self._above_since),
            raised_at=shown(self._raised_at),
            cleared_at=shown(self._cleared_at),
            export_kw=self._export,
            peak_kw=self._peak,
        )
