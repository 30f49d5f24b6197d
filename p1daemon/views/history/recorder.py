"""Readings in, history rows out: the energy views' closed quarters, made into rows.

Pure and cheap (the reader thread calls it): no I/O. Each meter has its own
`EnergyView`, the same computation as the live quarter and day documents, so the
numbers in the history are the numbers on MQTT. What the view leaves out of its
documents the recorder adds: one `gap` row for every quarter-hour without any reading
(the energy that passed is one `GapRow`, never spread), the replaced meter's last
reading, and M-Bus hours on the sub-meter's own capture time.

Evidence: given each reading's raw telegram, the recorder holds a reference to the
last two (no copy), and emits a `TelegramRow` only when one becomes a quarter edge: the
reading a quarter's sums run from or up to (evidence.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from p1daemon.daemon.processor import Telegram, telegram_bytes
from p1daemon.reading.meter import MeterReading
from p1daemon.views.energy.clock import QUARTER_S, quarter_start
from p1daemon.views.energy.samples import Sample, totals_of
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import MeterSpec
from p1daemon.views.energy.view import ClosedQuarter, EnergyView, ViewOutput
from p1daemon.views.history.rows import (
    GapRow,
    MbusHourRow,
    MeterState,
    Point,
    QuarterRow,
    ReplacementRow,
    Row,
    TelegramRow,
)

_HOUR_S = 3600


def _offset_min(instant: datetime, zone: ZoneInfo) -> int:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() // 60)


def hour_start(instant: datetime, zone: ZoneInfo) -> datetime:
    """The local hour an instant lies in, as a UTC instant (DST-safe like quarters)."""
    offset = _offset_min(instant, zone) * 60
    start = math.floor((instant.timestamp() + offset) / _HOUR_S) * _HOUR_S - offset
    return datetime.fromtimestamp(start, UTC)


@dataclass(slots=True)
class _MbusHour:
    hour: datetime
    first_at: datetime
    first_value: Decimal
    last_at: datetime
    last_value: Decimal
    start_exact: bool
    kind: str
    unit: str | None
    equipment_id: str | None


@dataclass(slots=True)
class _Meter:
    spec: MeterSpec
    view: EnergyView
    last_closed: Sample | None = None  # end reading of the last closed quarter
    last_quarter: datetime | None = None
    mbus: dict[int, _MbusHour] = field(default_factory=dict)
    mbus_last: dict[int, tuple[datetime, Decimal]] = field(default_factory=dict)
    # Evidence: the last two accepted readings' samples and telegrams, and the samples
    # whose telegrams were emitted lately, by identity (the view keeps these objects;
    # holding them here keeps their ids unique), oldest first.
    cur: Sample | None = None
    cur_raw: Telegram | None = None
    prev: Sample | None = None
    prev_raw: Telegram | None = None
    kept: dict[int, Sample] = field(default_factory=dict)


class HistoryRecorder:
    def __init__(self, site: SiteSettings, meters: Sequence[MeterSpec]) -> None:
        self._zone = site.zone
        self._meters = {
            spec.name: _Meter(
                spec, EnergyView(spec.name, spec.role, spec.ean, site, day_documents=False)
            )
            for spec in meters
        }

    def resume(self, states: Mapping[str, MeterState]) -> None:
        """Carry on from the states the store kept (before the first reading)."""
        for name, state in states.items():
            meter = self._meters.get(name)
            if meter is not None and meter.view.resume(state.last, opening=state.opening):
                meter.last_closed = state.last

    def feed(self, reading: MeterReading, raw: Telegram | None = None) -> list[Row]:
        """Rows for one reading; `raw`: its telegram, kept when it becomes an edge."""
        meter = self._meters.get(reading.meter)
        if meter is None:
            return []
        out = meter.view.feed(reading)
        rows: list[Row] = []
        if raw is not None:
            self._evidence(meter, raw, out, rows)
        if out.closed:
            self._quarters(meter, out, rows)
        if out.replacement is not None:
            old, new = out.replacement
            rows.append(ReplacementRow(reading.meter, new.at, old, new))
        if reading.mbus:
            self._mbus(meter, reading, rows)
        if out.closed:
            rows.append(self._state(meter))
        return rows

    def _evidence(self, meter: _Meter, raw: Telegram, out: ViewOutput, rows: list[Row]) -> None:
        view = meter.view
        last = view.last_sample()
        if last is not meter.cur:  # accepted (not ignored as a duplicate)
            meter.prev, meter.prev_raw = meter.cur, meter.cur_raw
            meter.cur, meter.cur_raw = last, raw
        kept = meter.kept
        first = view.quarter_first()
        if first is not None and id(first) not in kept:
            self._keep(meter, first, rows)
        for closed in out.closed:
            for edge in (closed.first, closed.last):
                if edge is not None and id(edge) not in kept:
                    self._keep(meter, edge, rows)

    def _keep(self, meter: _Meter, sample: Sample, rows: list[Row]) -> None:
        if sample is meter.cur:
            raw = meter.cur_raw
        elif sample is meter.prev:
            raw = meter.prev_raw
        else:
            return  # from before this run (resumed): kept by the run that read it
        if raw is None:
            return
        # The telegram's bytes are made here, for the few that become edges (a frame
        # otherwise: see `Telegram`), exactly as the reader would have made them.
        rows.append(TelegramRow(meter.spec.name, sample.at, telegram_bytes(raw)))
        kept = meter.kept
        kept[id(sample)] = sample
        if len(kept) > 4:
            del kept[next(iter(kept))]

    def last_telegrams(self) -> list[TelegramRow]:
        """At a stop: the newest reading of each meter is where the next run resumes
        (its next quarter's first edge), so its telegram is kept too."""
        out = []
        for meter in self._meters.values():
            cur = meter.cur
            if cur is not None and meter.cur_raw is not None and id(cur) not in meter.kept:
                out.append(TelegramRow(meter.spec.name, cur.at, telegram_bytes(meter.cur_raw)))
        return out

    def states(self) -> list[MeterState]:
        """Every meter's state now: what to persist at a stop."""
        return [
            self._state(meter)
            for meter in self._meters.values()
            if meter.view.last_sample() is not None
        ]

    def _state(self, meter: _Meter) -> MeterState:
        last = meter.view.last_sample()
        assert last is not None
        return MeterState(meter.spec.name, last, meter.view.opening_sample())

    def _point(self, meter: _Meter, equipment_id: str | None) -> Point:
        spec = meter.spec
        return Point(spec.name, spec.role, spec.ean, equipment_id)

    def _quarters(self, meter: _Meter, out: ViewOutput, rows: list[Row]) -> None:
        for closed in out.closed:
            doc = closed.doc
            start = doc.start.astimezone(UTC)
            point = self._point(meter, doc.equipment_id)
            if doc.gap_before is not None:
                self._gap(meter, closed, start, rows)
            rows.append(
                QuarterRow(
                    point,
                    start,
                    _offset_min(start, self._zone),
                    doc.status,
                    closed.first,
                    closed.last,
                    dict(closed.sums),
                    doc.readings,
                )
            )
            meter.last_closed = closed.last
            meter.last_quarter = start

    def _gap(self, meter: _Meter, closed: ClosedQuarter, start: datetime, rows: list[Row]) -> None:
        gap = closed.doc.gap_before
        assert gap is not None
        before, after = meter.last_closed, closed.first
        gap_start = gap.start.astimezone(UTC)
        # The view's own numbers (exact: shortest decimal text of a float made from the
        # meter's decimals), so the gap is the same on MQTT and in a report.
        deltas = None if gap.meter_replaced else totals_of(gap.import_, gap.export)
        owner = closed.doc.equipment_id if after is None else after.equipment_id
        point = self._point(meter, before.equipment_id if before is not None else owner)
        rows.append(GapRow(point, gap_start, gap.end.astimezone(UTC), deltas))
        # Every quarter without a reading, from the one the gap began in (unless it was
        # closed with what it had) to the one data resumed in.
        quarter = quarter_start(gap_start, self._zone)
        if meter.last_quarter is not None and quarter <= meter.last_quarter:
            quarter = meter.last_quarter + timedelta(seconds=QUARTER_S)
        while quarter < start:
            rows.append(
                QuarterRow(
                    point, quarter, _offset_min(quarter, self._zone), "gap", None, None, {}, 0
                )
            )
            quarter += timedelta(seconds=QUARTER_S)

    def _mbus(self, meter: _Meter, reading: MeterReading, rows: list[Row]) -> None:
        for device in reading.mbus:
            if device.value is None or device.timestamp is None:
                continue
            if device.timestamp.tzinfo is None or not math.isfinite(device.value):
                continue
            at = device.timestamp.astimezone(UTC)
            value = Decimal(repr(float(device.value)))
            last = meter.mbus_last.get(device.channel)
            if last is not None and at <= last[0]:
                continue  # the same capture again (DSMR 5 repeats it for five minutes)
            meter.mbus_last[device.channel] = (at, value)
            running = meter.mbus.get(device.channel)
            hour = hour_start(at, self._zone)
            if running is not None and value < running.last_value:
                running = None  # a replaced sub-meter: new baseline
                meter.mbus.pop(device.channel, None)
            if running is not None:
                hour_end = running.hour + timedelta(seconds=_HOUR_S)
                if at < hour_end:  # within the running hour
                    running.last_at, running.last_value = at, value
                    continue
                if at == hour_end:  # the capture at its end: the interval belongs to it
                    running.last_at, running.last_value = at, value
                    rows.append(self._mbus_row(meter, device.channel, running, complete=True))
                else:
                    # Beyond the running hour: close it with what it had; the interval
                    # across the hours is unknown per hour (an M-Bus gap).
                    rows.append(self._mbus_row(meter, device.channel, running, complete=False))
            # A new hour starts at this capture (complete from its start only when the
            # capture lies on the hour itself).
            meter.mbus[device.channel] = _MbusHour(
                hour,
                at,
                value,
                at,
                value,
                at == hour,
                device.kind,
                device.unit,
                device.equipment_id,
            )

    def _mbus_row(
        self, meter: _Meter, channel: int, hour: _MbusHour, *, complete: bool
    ) -> MbusHourRow:
        end = hour.hour + timedelta(seconds=_HOUR_S)
        return MbusHourRow(
            meter.spec.name,
            channel,
            hour.kind,
            hour.unit,
            hour.equipment_id,
            hour.hour,
            _offset_min(hour.hour, self._zone),
            hour.first_at,
            hour.first_value,
            hour.last_at,
            hour.last_value,
            complete and hour.start_exact and hour.last_at == end,
        )
