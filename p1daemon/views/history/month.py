"""The retained `<prefix>/<meter>/month` document: the running month per tariff, read
back from the history itself (so it survives restarts and equals `p1daemon report`).

Same shape as the day document where it applies:

    {"meter": "house", "role": "primary", "ean": "...", "equipment_id": "...",
     "month": "2026-11", "start": "2026-11-01T00:00:00+01:00",
     "end": "2026-12-01T00:00:00+01:00", "hours": 720.0,
     "import": {"t1_kwh": ..., "t2_kwh": ..., "t3_kwh": null, "t4_kwh": null,
                "total_kwh": ...}, "export": {...},
     "final": false, "complete": false, "quarters": 2880, "complete_quarters": 1234,
     "gaps": 1, "replacements": 0, "chain_head": "5f1c...e2"}

`chain_head`: the hash of the meter's newest history row (views/history/chain.py), so a
copy of this document kept elsewhere pins the history up to it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from p1daemon.reading.doc import doc_field
from p1daemon.views.document import ViewDoc
from p1daemon.views.energy.clock import QUARTER_S, day_bounds, local
from p1daemon.views.energy.documents import Energy
from p1daemon.views.energy.samples import energy_of
from p1daemon.views.history.aggregate import summarise
from p1daemon.views.history.store import HistoryStore, StoredPoint


class MonthDoc(ViewDoc):
    meter: str
    role: str
    ean: str | None = None
    equipment_id: str | None = None
    month: str
    start: datetime
    end: datetime
    hours: float
    import_: Energy = doc_field(default_factory=Energy, json_name="import")
    export: Energy = doc_field(default_factory=Energy)
    final: bool
    complete: bool
    quarters: int
    complete_quarters: int
    gaps: int
    replacements: int
    chain_head: str | None = None


def month_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    first = day.replace(day=1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return day_bounds(first, zone)[0], day_bounds(following, zone)[0]


def month_document(
    store: HistoryStore, points: list[StoredPoint], quarter: datetime, zone: ZoneInfo
) -> MonthDoc:
    """The month of the closed quarter starting at `quarter`; final once that quarter is
    the month's last."""
    start, end = month_bounds(quarter.astimezone(zone).date(), zone)
    summary = summarise(store, points, start, end, "month", zone)
    final = quarter.astimezone(UTC) + timedelta(seconds=QUARTER_S) >= end
    return MonthDoc(
        meter=summary.meter,
        role=summary.role,
        ean=summary.ean,
        equipment_id=summary.equipment_ids[-1] if summary.equipment_ids else None,
        month=f"{start.astimezone(zone):%Y-%m}",
        start=local(start, zone),
        end=local(end, zone),
        hours=(end - start).total_seconds() / 3600,
        import_=energy_of(summary.totals, "import"),
        export=energy_of(summary.totals, "export"),
        final=final,
        complete=final and summary.complete == summary.quarters,
        quarters=summary.quarters,
        complete_quarters=summary.complete,
        gaps=len(summary.gaps),
        replacements=len(summary.replacements),
        chain_head=store.chain_head(summary.meter),
    )
