"""The whole grid connection and each allocation point on it: `<prefix>/site/connection`.

Topology (`[site] topology`):
- parallel: each meter measures its own branch. Every allocation point is its own
  meter; the connection is their sum (import, export and net separately).
- series: the primary meter measures the whole connection and the secondaries sit
  behind it. The connection is the primary meter; the primary allocation point's own
  share is the primary meter minus the secondaries, quantity by quantity.

Net values are exact either way. Per-direction own shares in series are not always
physical: when a secondary exports (solar behind a sub-meter) while the rest of the house
consumes that power, the primary meter sees less export than the secondary, and
"primary export minus secondary export" goes negative. That is the issue's "cannot be
reconciled" case; it is reported as a warning with the numbers left as computed (so
connection = own share + secondaries still holds), never silently clipped.

Nothing is summed from incomplete inputs: when a meter has no reading yet or its last
reading is older than `stale_after_s`, the connection's power is null (not a partial sum)
and a warning names the meter. Energy comes from the meters' energy views: the last
closed quarter (only when every meter has closed the same quarter) and today so far.

Pure: call `connection_document` with the latest state of every configured meter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from p1daemon.reading.doc import doc_field
from p1daemon.reading.meter import MeterReading, Role
from p1daemon.views.document import ViewDoc as _Doc
from p1daemon.views.energy.documents import DayDoc, QuarterDoc

if TYPE_CHECKING:  # only read here: the settings are pydantic's (issue 16)
    from p1daemon.views.energy.settings import SiteSettings, Topology


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
    power: Power = doc_field(default_factory=Power)
    quarter: PeriodEnergy | None = None
    today: PeriodEnergy | None = None


class Totals(_Doc):
    power: Power = doc_field(default_factory=Power)
    quarter: PeriodEnergy | None = None
    today: PeriodEnergy | None = None


class SiteWarning(_Doc):
    code: str
    meter: str | None = None
    message: str


class ConnectionDoc(_Doc):
    frequent = True  # every few seconds
    topology: Topology
    at: datetime
    complete: bool
    connection: Totals
    points: list[Point]
    warnings: list[SiteWarning] = doc_field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MeterState:
    """What the daemon knows of one configured meter right now."""

    meter: str
    role: Role
    ean: str | None
    latest: MeterReading | None = None
    quarter: QuarterDoc | None = None  # the last closed quarter
    day: DayDoc | None = None  # today so far (or the final document of the last day)


# -- exact arithmetic on optional values --------------------------------------------------


def _dec(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(repr(float(value)))


def _out(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _total(values: Iterable[Decimal | None]) -> Decimal | None:
    total = Decimal(0)
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _minus(minuend: Decimal | None, subtrahend: Decimal | None) -> Decimal | None:
    if minuend is None or subtrahend is None:
        return None
    return minuend - subtrahend


@dataclass(slots=True)
class _Figures:
    """Import/export of one thing, as exact decimals; net is derived."""

    imp: Decimal | None
    exp: Decimal | None

    @property
    def net(self) -> Decimal | None:
        return _minus(self.imp, self.exp)


def _sum_figures(items: Sequence[_Figures]) -> _Figures:
    return _Figures(_total(f.imp for f in items), _total(f.exp for f in items))


def _sub_figures(whole: _Figures, parts: Sequence[_Figures]) -> _Figures:
    rest = _sum_figures(parts)
    return _Figures(_minus(whole.imp, rest.imp), _minus(whole.exp, rest.exp))


def _power(figures: _Figures) -> Power:
    return Power(import_kw=_out(figures.imp), export_kw=_out(figures.exp), net_kw=_out(figures.net))


# -- per meter -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Measured:
    state: MeterState
    fresh: bool
    age_s: float | None
    power: _Figures
    quarter: _Figures | None
    today: _Figures | None


def _measure(state: MeterState, now: datetime, settings: SiteSettings) -> _Measured:
    latest = state.latest
    if latest is None:
        return _Measured(state, False, None, _Figures(None, None), None, None)
    age = (now - latest.received_at).total_seconds()
    power = _Figures(_dec(latest.import_.power_kw), _dec(latest.export.power_kw))
    quarter = None
    if state.quarter is not None:
        quarter = _Figures(
            _dec(state.quarter.import_.total_kwh), _dec(state.quarter.export.total_kwh)
        )
    today = None
    if state.day is not None:
        today = _Figures(_dec(state.day.import_.total_kwh), _dec(state.day.export.total_kwh))
    return _Measured(state, age <= settings.stale_after_s, max(0.0, age), power, quarter, today)


def _period(
    figures: _Figures | None, start: datetime, end: datetime, complete: bool
) -> PeriodEnergy | None:
    if figures is None:
        return None
    return PeriodEnergy(
        start=start,
        end=end,
        import_kwh=_out(figures.imp),
        export_kwh=_out(figures.exp),
        net_kwh=_out(figures.net),
        complete=complete,
    )


def connection_document(
    states: Sequence[MeterState], settings: SiteSettings, now: datetime
) -> ConnectionDoc:
    measured = [_measure(state, now, settings) for state in states]
    warnings: list[SiteWarning] = []
    for m in measured:
        if m.state.latest is None:
            warnings.append(
                SiteWarning(code="missing", meter=m.state.meter, message="no reading yet")
            )
        elif not m.fresh:
            warnings.append(
                SiteWarning(
                    code="stale",
                    meter=m.state.meter,
                    message=(
                        f"last reading {m.age_s:.0f} s ago (limit {settings.stale_after_s:g} s)"
                    ),
                )
            )
        elif m.power.imp is None or m.power.exp is None:
            warnings.append(
                SiteWarning(
                    code="no_power",
                    meter=m.state.meter,
                    message="the meter sends no import or no export power",
                )
            )
    all_fresh = bool(measured) and all(m.fresh for m in measured)

    quarters = [m.state.quarter for m in measured]
    quarter_span = _common_span(quarters)
    days = [m.state.day for m in measured]
    day_span = _common_span(days)

    def fig_power(m: _Measured) -> _Figures:
        return m.power if m.fresh else _Figures(None, None)

    def fig_quarter(m: _Measured) -> _Figures | None:
        return m.quarter if quarter_span is not None else None

    def fig_today(m: _Measured) -> _Figures | None:
        return m.today if day_span is not None else None

    primaries = [m for m in measured if m.state.role == "primary"]
    secondaries = [m for m in measured if m.state.role != "primary"]
    series = settings.topology == "series"
    if series and len(primaries) != 1:
        warnings.append(
            SiteWarning(
                code="no_primary",
                message=f"series topology needs exactly one primary meter, found {len(primaries)}",
            )
        )

    # What each point is (measured, or derived in series) and what the connection is.
    point_power: dict[str, _Figures] = {m.state.meter: fig_power(m) for m in measured}
    point_quarter: dict[str, _Figures | None] = {m.state.meter: fig_quarter(m) for m in measured}
    point_today: dict[str, _Figures | None] = {m.state.meter: fig_today(m) for m in measured}
    derived: set[str] = set()
    if series and len(primaries) == 1:
        primary = primaries[0]
        name = primary.state.meter
        conn_power = fig_power(primary) if all_fresh else _Figures(None, None)
        conn_quarter = fig_quarter(primary)
        conn_today = fig_today(primary)
        point_power[name] = _sub_figures(conn_power, [fig_power(m) for m in secondaries])
        point_quarter[name] = _sub_optional(conn_quarter, [fig_quarter(m) for m in secondaries])
        point_today[name] = _sub_optional(conn_today, [fig_today(m) for m in secondaries])
        derived.add(name)
        warnings.extend(
            _negative_share(name, point_power[name], settings.tolerance_kw, "kW", "now")
        )
        for label, figures in (("last quarter", point_quarter[name]), ("today", point_today[name])):
            if figures is not None:
                warnings.extend(
                    _negative_share(name, figures, settings.tolerance_kwh, "kWh", label)
                )
    elif series:
        conn_power, conn_quarter, conn_today = _Figures(None, None), None, None
    else:
        conn_power = (
            _sum_figures([fig_power(m) for m in measured]) if all_fresh else _Figures(None, None)
        )
        conn_quarter = _sum_optional([fig_quarter(m) for m in measured])
        conn_today = _sum_optional([fig_today(m) for m in measured])

    quarter_complete = all(q is not None and q.complete for q in quarters)
    day_complete = all(d is not None and d.complete for d in days)
    points = []
    for m in measured:
        name = m.state.meter
        latest = m.state.latest
        points.append(
            Point(
                meter=name,
                role=m.state.role,
                ean=m.state.ean,
                derived=name in derived,
                reading_at=None if latest is None else (latest.timestamp or latest.received_at),
                age_s=None if m.age_s is None else round(m.age_s, 1),
                stale=not m.fresh,
                power=_power(point_power[name]),
                quarter=_span_period(point_quarter[name], quarter_span, quarter_complete),
                today=_span_period(point_today[name], day_span, day_complete),
            )
        )
    return ConnectionDoc(
        topology=settings.topology,
        at=now,
        complete=all_fresh and not warnings,
        connection=Totals(
            power=_power(conn_power),
            quarter=_span_period(conn_quarter, quarter_span, quarter_complete),
            today=_span_period(conn_today, day_span, day_complete),
        ),
        points=points,
        warnings=warnings,
    )


def _common_span(
    docs: Sequence[QuarterDoc | DayDoc | None],
) -> tuple[datetime, datetime] | None:
    """The period every meter's document covers, or None when they differ (for a moment
    after a boundary, until every meter has closed the same quarter)."""
    if not docs or any(doc is None for doc in docs):
        return None
    # Compared as instants: see clock.py on local datetimes in the repeated hour.
    spans = {(doc.start.timestamp(), doc.end.timestamp()) for doc in docs if doc is not None}
    if len(spans) != 1:
        return None
    first = docs[0]
    assert first is not None
    return first.start, first.end


def _span_period(
    figures: _Figures | None, span: tuple[datetime, datetime] | None, complete: bool
) -> PeriodEnergy | None:
    if span is None:
        return None
    return _period(figures, span[0], span[1], complete)


def _sum_optional(items: Sequence[_Figures | None]) -> _Figures | None:
    if any(item is None for item in items):
        return None
    return _sum_figures([item for item in items if item is not None])


def _sub_optional(whole: _Figures | None, parts: Sequence[_Figures | None]) -> _Figures | None:
    if whole is None or any(part is None for part in parts):
        return None
    return _sub_figures(whole, [part for part in parts if part is not None])


def _negative_share(
    meter: str, own: _Figures, tolerance: float, unit: str, when: str
) -> list[SiteWarning]:
    out = []
    for direction, value in (("import", own.imp), ("export", own.exp)):
        if value is not None and value < -Decimal(repr(tolerance)):
            out.append(
                SiteWarning(
                    code=f"series_negative_{direction}",
                    meter=meter,
                    message=(
                        f"{when}: the secondaries {direction} {-value} {unit} more than the "
                        f"primary meter measures; in series that energy flowed between "
                        f"allocation points behind the primary meter (or the topology is "
                        f"not series)"
                    ),
                )
            )
    return out
