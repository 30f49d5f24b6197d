"""`p1daemon report --peaks`: each month's highest quarter-hour of import per metering point.

This is the Belgian capacity tariff's month peak, computed the way the grid operator
computes it: from the fixed quarter-hours' energy (the history's register deltas, so
no integrated power and no clock of the Pi), times four for the average kW. A gap
quarter has no energy of its own and never counts; a partial quarter (a reading
missing at an edge) can only be lower than the truth, so it never invents a peak. The
meter's own `1-0:1.6.0` stays the authority on the bill; this is the history's
independent series to check it against (the live `<prefix>/<meter>/capacity` document
shows both side by side).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import IO
from zoneinfo import ZoneInfo

from p1daemon.views.history.aggregate import PointSummary, direction_total

_QUARTERS_PER_HOUR = Decimal(4)
CSV_HEADER = ("meter", "role", "ean", "month", "peak_start", "peak_kw", "quarters")


@dataclass(frozen=True, slots=True)
class MonthPeak:
    meter: str
    role: str
    ean: str | None
    month: date  # the first day of the local calendar month
    start: datetime  # the peak quarter-hour's start, local time
    kw: Decimal  # its average import power: the quarter's kWh times four (exact)
    quarters: int  # quarter-hours with energy that month (the peak's basis)


def monthly_peaks(summary: PointSummary, zone: ZoneInfo) -> list[MonthPeak]:
    """One `MonthPeak` per local month of the summary's period that has any energy."""
    best: dict[date, tuple[Decimal, int, int]] = {}  # month -> (kWh, quarter epoch, count)
    for begin, deltas in summary.by_quarter.items():
        energy = direction_total(deltas, "import")
        if energy is None:
            continue
        local = datetime.fromtimestamp(begin, UTC).astimezone(zone)
        month = date(local.year, local.month, 1)
        found = best.get(month)
        if found is None:
            best[month] = (energy, begin, 1)
        else:
            top, at, count = found
            # Ties go to the earliest quarter-hour, as a meter's register would keep it.
            if energy > top or (energy == top and begin < at):
                top, at = energy, begin
            best[month] = (top, at, count + 1)
    return [
        MonthPeak(
            summary.meter,
            summary.role,
            summary.ean,
            month,
            datetime.fromtimestamp(at, UTC).astimezone(zone),
            energy * _QUARTERS_PER_HOUR,
            count,
        )
        for month, (energy, at, count) in sorted(best.items())
    ]


def _kw(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.001')):f}"


def write_peaks(out: IO[str], peaks: Sequence[MonthPeak], fmt: str) -> None:
    """Table (one line a month), CSV (RFC 4180, CRLF) or JSON Lines (one per month)."""
    if fmt == "json":
        import json

        for peak in peaks:
            document = {
                "meter": peak.meter,
                "role": peak.role,
                "ean": peak.ean,
                "month": peak.month.strftime("%Y-%m"),
                "peak_start": peak.start.isoformat(),
                "peak_kw": float(peak.kw),
                "quarters": peak.quarters,
                "source": "computed from the history's quarter-hour register deltas",
            }
            out.write(json.dumps(document) + "\n")
        return
    if fmt == "csv":
        out.write(",".join(CSV_HEADER) + "\r\n")
        for peak in peaks:
            fields = (
                peak.meter,
                peak.role,
                peak.ean or "",
                peak.month.strftime("%Y-%m"),
                peak.start.isoformat(),
                _kw(peak.kw),
                str(peak.quarters),
            )
            out.write(",".join(fields) + "\r\n")
        return
    out.write("monthly import peaks (highest quarter-hour, computed from the history)\n")
    if not peaks:
        out.write("  no quarter-hours with energy in this period\n")
    for peak in peaks:
        out.write(
            f"  {peak.meter:<12} {peak.role:<9} {peak.ean or '-':<18} "
            f"{peak.month:%Y-%m}  {_kw(peak.kw):>9} kW  at {peak.start:%Y-%m-%d %H:%M}  "
            f"({peak.quarters} quarter-hours)\n"
        )
