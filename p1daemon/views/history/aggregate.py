"""The history summed per metering point and interval, in exact decimals.

Booking rules, the same as the live views': an interval's energy is the sum of its
quarters' deltas plus the energy of every gap that began and ended inside it; a gap that
crosses an interval boundary is listed, never spread, and counted only in the period
total when it lies inside the period. M-Bus hours are summed per interval on their own
capture time (a `--by quarter` report shows M-Bus per hour).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from p1daemon.views.energy.clock import QUARTER_S, day_bounds, local_date
from p1daemon.views.energy.samples import DIRECTIONS, Direction, Key, Sample
from p1daemon.views.energy.settings import Topology
from p1daemon.views.history.registers import decode
from p1daemon.views.history.store import (
    HistoryStore,
    StoredGap,
    StoredPoint,
    StoredReplacement,
    sample_of_row,
)

By = Literal["quarter", "hour", "day", "month"]
BY_CHOICES: tuple[By, ...] = ("quarter", "hour", "day", "month")


def bucket_bounds(start: datetime, end: datetime, by: By, zone: ZoneInfo) -> list[float]:
    """Epoch seconds of every interval boundary from `start` to `end` (both included)."""
    bounds: list[float] = []
    if by in ("quarter", "hour"):
        step = QUARTER_S if by == "quarter" else 3600
        at = start.timestamp()
        while at < end.timestamp():
            bounds.append(at)
            at += step
            if by == "hour":
                # Whole local hours: offsets are whole hours in the zones this serves;
                # elsewhere realign to the next local hour.
                local = datetime.fromtimestamp(at, UTC).astimezone(zone)
                at -= local.minute * 60 + local.second
        bounds.append(end.timestamp())
        return bounds
    day = local_date(start, zone)
    last = local_date(end - timedelta(seconds=1), zone)
    while day <= last:
        bounds.append(day_bounds(day, zone)[0].timestamp())
        if by == "day":
            day += timedelta(days=1)
        else:
            day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    bounds.append(end.timestamp())
    return bounds


Edge = tuple[float, str | None, str | None]  # a reading as stored: (at, registers, equipment)


_TIMES: dict[tuple[float, float, str, str], tuple[list[float], list[datetime], list[int]]] = {}


def _bucket_times(
    start: datetime, end: datetime, by: By, zone: ZoneInfo
) -> tuple[list[float], list[datetime], list[int]]:
    """`bucket_bounds`, those bounds as UTC instants and each interval's quarter-hours:
    the same for every metering point of a report, so made once (shared, read-only)."""
    key = (start.timestamp(), end.timestamp(), by, zone.key)
    found = _TIMES.get(key)
    if found is None:
        bounds = bucket_bounds(start, end, by, zone)
        instants = [datetime.fromtimestamp(a, UTC) for a in bounds]
        quarters = [
            round((b - a).total_seconds() / QUARTER_S) for a, b in itertools.pairwise(instants)
        ]
        if len(_TIMES) > 8:
            _TIMES.clear()
        found = _TIMES[key] = (bounds, instants, quarters)
    return found


@dataclass(slots=True)
class Interval:
    start: datetime
    end: datetime
    sums: dict[Key, Decimal] = field(default_factory=dict)
    quarters: int = 0  # quarter-hours in the interval
    complete: int = 0
    recorded: int = 0  # quarter rows of any status but gap
    gaps: int = 0
    # The readings its sums run between, as stored (decoded by `first` and `last`: a
    # CSV by quarter formats their text instead of decoding 70,000 a year per point).
    first_edge: Edge | None = None
    last_edge: Edge | None = None
    # The stored delta text when `sums` is exactly one quarter row's deltas (nothing else
    # added): lets the CSV format that text instead of every Decimal again.
    delta_text: str | None = None

    @property
    def first(self) -> Sample | None:
        edge = self.first_edge
        return None if edge is None else sample_of_row(*edge)

    @property
    def last(self) -> Sample | None:
        edge = self.last_edge
        return None if edge is None else sample_of_row(*edge)


@dataclass(frozen=True, slots=True)
class MbusInterval:
    channel: int
    kind: str
    unit: str | None
    start: datetime
    end: datetime
    delta: Decimal
    hours: int
    complete: int


@dataclass(slots=True)
class PointSummary:
    meter: str
    role: str
    ean: str | None
    equipment_ids: list[str]
    start: datetime
    end: datetime
    intervals: list[Interval]
    totals: dict[Key, Decimal]
    first: Sample | None
    last: Sample | None
    quarters: int
    complete: int
    gaps: list[StoredGap]
    replacements: list[StoredReplacement]
    mbus: list[MbusInterval]
    # Per quarter (epoch start): its deltas, for the connection shares; gap quarters absent.
    by_quarter: dict[int, dict[Key, Decimal]]

    @property
    def coverage(self) -> Decimal:
        if self.quarters == 0:
            return Decimal(0)
        return (Decimal(self.complete) / Decimal(self.quarters)).quantize(Decimal("0.0001"))


_ZERO = Decimal(0)


def _add(into: dict[Key, Decimal], values: dict[Key, Decimal]) -> None:
    for key, value in values.items():
        into[key] = into.get(key, _ZERO) + value


class _Decoded:
    """Stored delta texts decoded once each (quarters repeat their deltas often). The
    dicts are shared: never changed by their users."""

    _LIMIT = 20_000

    def __init__(self) -> None:
        self._plain: dict[str | None, dict[Key, Decimal]] = {}
        self._added: dict[str | None, dict[Key, Decimal]] = {}

    def get(self, text: str | None) -> dict[Key, Decimal]:
        found = self._plain.get(text)
        if found is None:
            if len(self._plain) >= self._LIMIT:
                self._plain.clear()
            found = self._plain[text] = decode(text)
        return found

    def added_to_zero(self, text: str | None) -> dict[Key, Decimal]:
        found = self._added.get(text)
        if found is None:
            if len(self._added) >= self._LIMIT:
                self._added.clear()
            found = self._added[text] = {k: _ZERO + v for k, v in self.get(text).items()}
        return found


def summarise(
    store: HistoryStore,
    points: Sequence[StoredPoint],
    start: datetime,
    end: datetime,
    by: By,
    zone: ZoneInfo,
) -> PointSummary:
    """One metering point (all the points, i.e. equipment ids, of one meter name)."""
    bounds, instants, quarters = _bucket_times(start, end, by, zone)
    intervals = [
        Interval(a, b, quarters=n)
        for a, b, n in zip(instants, itertools.islice(instants, 1, None), quarters, strict=False)
    ]
    ids = [point.id for point in points]
    by_quarter: dict[int, dict[Key, Decimal]] = {}
    complete = 0
    find = bisect.bisect_right
    last_edges: dict[int, Edge] = {}  # per interval, its last row's end reading
    rows_of: dict[str | None, int] = {}  # delta text -> quarter rows with it (the totals)
    decoded = _Decoded()
    decode_cached, count_of = decoded.get, rows_of.get
    for _p, begin, _o, status, fa, fr, la, lr, delta, _r, owner in store.quarter_rows(
        ids, start, end
    ):
        index = find(bounds, begin) - 1
        interval = intervals[index]
        if status == "gap":
            interval.gaps += 1
            continue
        interval.recorded += 1
        if status == "complete":
            interval.complete += 1
            complete += 1
        deltas = decode_cached(delta)
        rows_of[delta] = count_of(delta, 0) + 1
        if interval.recorded == 1:  # sums are empty until now (gaps come after)
            # What `_add` into an empty dict makes (0 + each delta), shared per text.
            interval.sums = dict(decoded.added_to_zero(delta))
            interval.delta_text = delta
        else:
            _add(interval.sums, deltas)
            interval.delta_text = None
        by_quarter[begin] = deltas
        if fa is not None and interval.first_edge is None:
            interval.first_edge = (fa, fr, owner)
        if la is not None:
            last_edges[index] = (la, lr, owner)
    # Exact: the same sums as adding row by row (integer multiples of exact decimals).
    totals: dict[Key, Decimal] = {}
    for delta, count in rows_of.items():
        for key, value in decoded.get(delta).items():
            totals[key] = totals.get(key, _ZERO) + (value if count == 1 else value * count)
    for index, edge in last_edges.items():
        intervals[index].last_edge = edge
    first = next((i.first for i in intervals if i.first_edge is not None), None)
    last = intervals[max(last_edges)].last if last_edges else None
    gaps = store.gaps(ids, start, end)
    for gap in gaps:
        if gap.deltas is None or gap.start < start or gap.end > end:
            continue
        _add(totals, gap.deltas)
        index = find(bounds, gap.start.timestamp()) - 1
        end_index = bisect.bisect_left(bounds, gap.end.timestamp()) - 1
        if index == end_index:
            _add(intervals[index].sums, gap.deltas)
            intervals[index].delta_text = None
    meter = points[0].meter
    replacements = store.replacements(meter, start, end)
    if by == "quarter":
        # M-Bus values are hourly at best: a quarter report shows them per hour.
        mbus = _mbus(store, meter, start, end, bucket_bounds(start, end, "hour", zone))
    else:
        mbus = _mbus(store, meter, start, end, bounds)
    equipment = [p.equipment_id for p in points if p.equipment_id is not None]
    return PointSummary(
        meter=meter,
        role=points[-1].role,
        ean=points[-1].ean,
        equipment_ids=equipment,
        start=start,
        end=end,
        intervals=intervals,
        totals=totals,
        first=first,
        last=last,
        quarters=round((end - start).total_seconds() / QUARTER_S),
        complete=complete,
        gaps=gaps,
        replacements=replacements,
        mbus=mbus,
        by_quarter=by_quarter,
    )


def _mbus(
    store: HistoryStore,
    meter: str,
    start: datetime,
    end: datetime,
    bounds: list[float],
) -> list[MbusInterval]:
    hours = store.mbus_hours(meter, start, end)
    if not hours:
        return []
    sums: dict[tuple[int, int], _MbusSum] = {}
    for channel, kind, unit, hour, _offset, delta, ok in hours:
        index = bisect.bisect_right(bounds, hour.timestamp()) - 1
        entry = sums.setdefault((channel, index), _MbusSum(kind, unit))
        entry.delta += delta
        entry.hours += 1
        entry.complete += int(ok)
    out = []
    for (channel, index), entry in sorted(sums.items()):
        out.append(
            MbusInterval(
                channel,
                entry.kind,
                entry.unit,
                datetime.fromtimestamp(bounds[index], UTC),
                datetime.fromtimestamp(bounds[index + 1], UTC),
                entry.delta,
                entry.hours,
                entry.complete,
            )
        )
    return out


@dataclass(slots=True)
class _MbusSum:
    kind: str
    unit: str | None
    delta: Decimal = Decimal(0)
    hours: int = 0
    complete: int = 0


def point_groups(store: HistoryStore) -> dict[str, list[StoredPoint]]:
    groups: dict[str, list[StoredPoint]] = {}
    for point in store.points():
        groups.setdefault(point.meter, []).append(point)
    return groups


# -- connection ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NegativeQuarter:
    start: datetime
    own: dict[Key, Decimal]


@dataclass(slots=True)
class ConnectionSummary:
    topology: Topology
    primary: str | None
    secondaries: list[str]
    connection: dict[Key, Decimal]
    own: dict[str, dict[Key, Decimal]]  # per meter, its allocation point's own share
    negative: list[NegativeQuarter]
    incomplete_quarters: int  # quarters some meter has no data for (left out of `negative`)


def direction_total(values: dict[Key, Decimal], direction: Direction) -> Decimal | None:
    """The total register's delta, else the sum of the tariffs (most meters in the
    Netherlands send no total register)."""
    total = values.get((direction, "total"))
    if total is not None:
        return total
    tariffs = [values[(direction, t)] for t in ("t1", "t2", "t3", "t4") if (direction, t) in values]
    return sum(tariffs, Decimal(0)) if tariffs else None


def connection_summary(
    summaries: Iterable[PointSummary], topology: Topology, tolerance_kwh: Decimal
) -> ConnectionSummary | None:
    points = list(summaries)
    primaries = [p for p in points if p.role == "primary"]
    secondaries = [p for p in points if p.role == "secondary"]
    if not points:
        return None
    primary = primaries[0] if primaries else None
    own: dict[str, dict[Key, Decimal]] = {}
    connection: dict[Key, Decimal] = {}
    negative: list[NegativeQuarter] = []
    incomplete = 0
    if topology == "parallel" or primary is None:
        for point in points:
            _add(connection, point.totals)
            own[point.meter] = dict(point.totals)
        return ConnectionSummary(
            topology,
            None if primary is None else primary.meter,
            [p.meter for p in secondaries],
            connection,
            own,
            negative,
            incomplete,
        )
    connection = dict(primary.totals)
    primary_own = dict(primary.totals)
    for point in secondaries:
        own[point.meter] = dict(point.totals)
        for key, value in point.totals.items():
            if key in primary_own:
                primary_own[key] -= value
    own[primary.meter] = primary_own
    for epoch, deltas in sorted(primary.by_quarter.items()):
        parts = [s.by_quarter.get(epoch) for s in secondaries]
        if any(part is None for part in parts):
            incomplete += 1
            continue
        share: dict[Key, Decimal] = {}
        for direction in DIRECTIONS:
            total = direction_total(deltas, direction)
            if total is None:
                continue
            behind = (direction_total(part, direction) for part in parts if part is not None)
            share[(direction, "total")] = total - sum((v for v in behind if v), Decimal(0))
        if any(value < -tolerance_kwh for value in share.values()):
            negative.append(NegativeQuarter(datetime.fromtimestamp(epoch, UTC), share))
    incomplete += sum(
        1 for s in secondaries for epoch in s.by_quarter if epoch not in primary.by_quarter
    )
    return ConnectionSummary(
        topology,
        primary.meter,
        [p.meter for p in secondaries],
        connection,
        own,
        negative,
        incomplete,
    )
