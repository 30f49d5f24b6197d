"""`p1daemon report --statement KIND`: the numbers people hand to someone else.

- `feed-in`: exported kWh per tariff and in total, times a price and a factor, with
  netting `none` (export paid as is; the Dutch default from 2027), `per_register`
  (export minus import per tariff, positive part paid) or `total` (over the total
  registers); or, with an hourly price file, export per local hour times that hour's
  price (no netting: dynamic contracts settle per hour). Energy that passed in a gap
  cannot be given an hour and is listed unpriced.
- `delivered` (a charge-point operator's secondary point: import per month) and
  `production` (a co-operative's installation: export, and import for own use, per
  month): with coverage, gaps and the energy in them, replacements, and the chain hash
  of the month's last row (what the evidence export and `--verify` pin).
- `reconciliation`: the purchase (primary) meter against the sum of the sales
  (secondary) meters, per day and in total, difference in kWh and per cent, and the
  quarter-hours that explain most of it.

All arithmetic is `Decimal` on the meters' own three decimals; an amount is rounded to
the cent (half up) per line, the total is the sum of the rounded lines, and the formula
is part of the output. Amounts exclude VAT. Each statement names every point by role,
EAN and equipment id.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from p1daemon.report.statement_settings import StatementSettings
from p1daemon.views.energy.samples import REGISTERS, Key
from p1daemon.views.history import chain
from p1daemon.views.history.aggregate import PointSummary, direction_total
from p1daemon.views.history.recorder import hour_start
from p1daemon.views.history.store import HistoryStore

KINDS = ("feed-in", "delivered", "production", "reconciliation")
CENT = Decimal("0.01")
MILLI = Decimal("0.001")
ZERO = Decimal(0)


class StatementError(Exception):
    """One line for the user (a bad price file, a statement this site cannot make)."""


@dataclass(slots=True)
class Statement:
    kind: str
    formula: list[str]
    columns: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def kwh(value: Decimal | None) -> str:
    return "" if value is None else format(value.quantize(MILLI), "f")


def eur(value: Decimal | None) -> str:
    return "" if value is None else format(value.quantize(CENT), "f")


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _point(summary: PointSummary) -> dict[str, Any]:
    return {
        "meter": summary.meter,
        "role": summary.role,
        "ean": summary.ean,
        "equipment_ids": list(summary.equipment_ids),
    }


def _ident(summary: PointSummary) -> dict[str, str]:
    return {
        "meter": summary.meter,
        "role": summary.role,
        "ean": summary.ean or "",
        "equipment_id": " ".join(summary.equipment_ids),
    }


_IDENT = ["meter", "role", "ean", "equipment_id"]


# -- hourly prices ------------------------------------------------------------------------


def read_prices(path: Path) -> dict[int, Decimal]:
    """CSV `hour start,EUR/kWh` (a header line is allowed): the hour start in ISO 8601
    with its UTC offset (2026-10-25T02:00:00+02:00 and ...+01:00 are two hours), so the
    file is unambiguous across a DST change. Returns UTC epoch -> price."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise StatementError(f"cannot read the price file {path}: {exc.strerror}") from None
    prices: dict[int, Decimal] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise StatementError(f"{path}:{number}: expected 'hour start,EUR/kWh'")
        first, price = row[0].strip(), row[1].strip().replace(",", ".")
        try:
            start = datetime.fromisoformat(first)
        except ValueError:
            if number == 1:
                continue  # a header
            raise StatementError(f"{path}:{number}: not an ISO 8601 time: {first!r}") from None
        if start.tzinfo is None:
            raise StatementError(
                f"{path}:{number}: {first} has no UTC offset (ambiguous across DST)"
            )
        if start.minute or start.second or start.microsecond:
            raise StatementError(f"{path}:{number}: {first} is not the start of an hour")
        try:
            value = Decimal(price)
        except ArithmeticError:
            raise StatementError(f"{path}:{number}: not a price: {row[1]!r}") from None
        if not value.is_finite():
            raise StatementError(f"{path}:{number}: not a price: {row[1]!r}")
        prices[int(start.timestamp())] = value
    if not prices:
        raise StatementError(f"{path}: no prices")
    return prices


# -- feed-in ------------------------------------------------------------------------------


def _tariffs(values: Mapping[Key, Decimal]) -> list[str]:
    return [r for r in REGISTERS if r != "total" and ("export", r) in values]


FEED_IN_COLUMNS = [
    *_IDENT,
    "register",
    "export_kwh",
    "import_kwh",
    "paid_kwh",
    "price_eur_per_kwh",
    "factor",
    "amount_eur",
]


def feed_in(
    summaries: Sequence[PointSummary],
    settings: StatementSettings,
    zone: ZoneInfo,
    prices: dict[int, Decimal] | None = None,
) -> Statement:
    formula = [
        "amount = round(paid kWh x price EUR/kWh x factor, 0.01 EUR, half up) per line; "
        "total = sum of the lines; excluding VAT",
        "netting none: paid = export; per_register: paid = max(export - import, 0) per "
        "tariff; total: paid = max(export total - import total, 0)",
    ]
    if prices is not None:
        formula.append(
            "hourly prices: amount = round(sum over local hours of (export kWh in the hour "
            "x that hour's price) x factor, 0.01 EUR, half up); energy in a gap has no "
            "hour and is not priced"
        )
    statement = Statement("feed-in", formula, FEED_IN_COLUMNS)
    for summary in summaries:
        statement.points.append(_point(summary))
        price, factor, netting = settings.terms(summary.meter)
        if prices is not None:
            _feed_in_hourly(statement, summary, factor, zone, prices)
            continue
        ident = _ident(summary)
        totals = summary.totals
        total_paid = ZERO
        total_amount = ZERO
        for tariff in _tariffs(totals):
            exported = totals[("export", tariff)]
            imported = totals.get(("import", tariff), ZERO)
            paid: Decimal | None = exported
            if netting == "per_register":
                paid = max(exported - imported, ZERO)
            elif netting == "total":
                paid = None
            amount = None if paid is None else cents(paid * price * factor)
            if paid is not None and amount is not None:
                total_paid += paid
                total_amount += amount
            statement.rows.append(
                {
                    **ident,
                    "register": tariff,
                    "export_kwh": kwh(exported),
                    "import_kwh": kwh(imported),
                    "paid_kwh": kwh(paid),
                    "price_eur_per_kwh": str(price),
                    "factor": str(factor),
                    "amount_eur": eur(amount),
                }
            )
        exported_total = direction_total(totals, "export") or ZERO
        imported_total = direction_total(totals, "import") or ZERO
        if netting == "total":
            total_paid = max(exported_total - imported_total, ZERO)
            total_amount = cents(total_paid * price * factor)
        statement.rows.append(
            {
                **ident,
                "register": "total",
                "export_kwh": kwh(exported_total),
                "import_kwh": kwh(imported_total),
                "paid_kwh": kwh(total_paid),
                "price_eur_per_kwh": str(price),
                "factor": str(factor),
                "amount_eur": eur(total_amount),
            }
        )
        statement.notes.append(f"{summary.meter}: netting {netting}")
    return statement


def _feed_in_hourly(
    statement: Statement,
    summary: PointSummary,
    factor: Decimal,
    zone: ZoneInfo,
    prices: dict[int, Decimal],
) -> None:
    by_hour: dict[int, Decimal] = {}
    for epoch, deltas in summary.by_quarter.items():
        exported = direction_total(deltas, "export")
        if exported:
            hour = int(hour_start(datetime.fromtimestamp(epoch, UTC), zone).timestamp())
            by_hour[hour] = by_hour.get(hour, ZERO) + exported
    missing = sorted(h for h, v in by_hour.items() if v and h not in prices)
    if missing:
        first = datetime.fromtimestamp(missing[0], UTC).astimezone(zone).isoformat()
        raise StatementError(
            f"{summary.meter}: no price for {len(missing)} hour(s) with export, "
            f"the first at {first}"
        )
    raw = sum((v * prices[h] for h, v in by_hour.items()), ZERO)
    priced = sum(by_hour.values(), ZERO)
    amount = cents(raw * factor)
    total = direction_total(summary.totals, "export") or ZERO
    ident = _ident(summary)
    statement.rows.append(
        {
            **ident,
            "register": "hourly",
            "export_kwh": kwh(priced),
            "import_kwh": "",
            "paid_kwh": kwh(priced),
            "price_eur_per_kwh": "hourly",
            "factor": str(factor),
            "amount_eur": eur(amount),
        }
    )
    statement.rows.append(
        {
            **ident,
            "register": "in gaps (unpriced)",
            "export_kwh": kwh(total - priced),
            "import_kwh": "",
            "paid_kwh": "",
            "price_eur_per_kwh": "",
            "factor": "",
            "amount_eur": "",
        }
    )


# -- delivered / production ---------------------------------------------------------------

MONTHLY_COLUMNS = [
    *_IDENT,
    "month",
    "import_kwh",
    "export_kwh",
    "quarters",
    "complete_quarters",
    "coverage",
    "gaps",
    "gap_import_kwh",
    "gap_export_kwh",
    "replacements",
    "chain_hash",
]


def monthly(
    kind: str, summaries: Sequence[PointSummary], store: HistoryStore, zone: ZoneInfo
) -> Statement:
    """`summaries` by month (`summarise(..., "month", ...)`)."""
    headline = (
        "import: kWh delivered through the point"
        if kind == "delivered"
        else ("export: kWh produced and fed in; import: own use")
    )
    formula = [
        f"{headline}; per month, from the registers; the energy of a gap inside the month "
        "is included and also listed (a gap across a month's end is in neither month)",
        "coverage = complete quarter-hours / quarter-hours of the month; chain_hash = the "
        "hash of the month's last history row (p1daemon report --verify)",
    ]
    statement = Statement(kind, formula, MONTHLY_COLUMNS)
    db = store.connection
    for summary in summaries:
        if kind == "delivered" and summary.role != "secondary":
            statement.notes.append(f"{summary.meter} is a {summary.role} point, not a secondary")
        statement.points.append(_point(summary))
        ident = _ident(summary)
        for interval in summary.intervals:
            gaps = [g for g in summary.gaps if interval.start <= g.start < interval.end]
            gap_in = sum(
                (direction_total(g.deltas, "import") or ZERO for g in gaps if g.deltas), ZERO
            )
            gap_out = sum(
                (direction_total(g.deltas, "export") or ZERO for g in gaps if g.deltas), ZERO
            )
            sums = dict(interval.sums)
            replaced = [r for r in summary.replacements if interval.start <= r.at < interval.end]
            coverage = (
                Decimal(interval.complete) / Decimal(interval.quarters)
                if interval.quarters
                else ZERO
            )
            statement.rows.append(
                {
                    **ident,
                    "month": f"{interval.start.astimezone(zone):%Y-%m}",
                    "import_kwh": kwh(direction_total(sums, "import") or ZERO),
                    "export_kwh": kwh(direction_total(sums, "export") or ZERO),
                    "quarters": str(interval.quarters),
                    "complete_quarters": str(interval.complete),
                    "coverage": format(coverage.quantize(Decimal("0.0001")), "f"),
                    "gaps": str(len(gaps)),
                    "gap_import_kwh": kwh(gap_in),
                    "gap_export_kwh": kwh(gap_out),
                    "replacements": str(len(replaced)),
                    "chain_hash": chain.previous_hash(
                        db, summary.meter, int(interval.end.timestamp())
                    )
                    or "",
                }
            )
    return statement


# -- reconciliation -----------------------------------------------------------------------

RECON_COLUMNS = [
    "day",
    "direction",
    "primary_kwh",
    "secondaries_kwh",
    "difference_kwh",
    "difference_pct",
]


def _pct(diff: Decimal, base: Decimal) -> str:
    if not base:
        return ""
    return format((diff * 100 / base).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), "f")


def reconciliation(days: Sequence[PointSummary], zone: ZoneInfo, *, explain: int = 10) -> Statement:
    """`days`: every point's summary by day. The primary against the secondaries'
    sum per day and in total; the quarter-hours that explain most of the difference."""
    primaries = [s for s in days if s.role == "primary"]
    secondaries = [s for s in days if s.role == "secondary"]
    if len(primaries) != 1 or not secondaries:
        raise StatementError(
            "a reconciliation needs one primary and at least one secondary metering point"
        )
    primary = primaries[0]
    formula = [
        "difference = primary (purchase meter) - sum of the secondaries (sales meters), "
        "from the total registers (else the sum of the tariffs); per cent of the primary",
        "in series the difference is the primary point's own share; a negative own share, "
        "a secondary's gap or a replaced meter explains what it cannot be",
    ]
    statement = Statement("reconciliation", formula, RECON_COLUMNS)
    statement.points = [_point(s) for s in (primary, *secondaries)]
    totals = {d: [ZERO, ZERO] for d in ("import", "export")}
    for index, interval in enumerate(primary.intervals):
        for direction in ("import", "export"):
            ours = direction_total(dict(interval.sums), direction) or ZERO
            theirs = (
                sum(
                    (direction_total(dict(s.intervals[index].sums), direction) or ZERO)
                    for s in secondaries
                )
                + ZERO
            )
            totals[direction][0] += ours
            totals[direction][1] += theirs
            statement.rows.append(
                {
                    "day": f"{interval.start.astimezone(zone):%Y-%m-%d}",
                    "direction": direction,
                    "primary_kwh": kwh(ours),
                    "secondaries_kwh": kwh(theirs),
                    "difference_kwh": kwh(ours - theirs),
                    "difference_pct": _pct(ours - theirs, ours),
                }
            )
    for direction, (ours, theirs) in totals.items():
        statement.rows.append(
            {
                "day": "total",
                "direction": direction,
                "primary_kwh": kwh(ours),
                "secondaries_kwh": kwh(theirs),
                "difference_kwh": kwh(ours - theirs),
                "difference_pct": _pct(ours - theirs, ours),
            }
        )
    statement.notes.extend(_explanations(primary, secondaries, zone, explain))
    return statement


def _explanations(
    primary: PointSummary, secondaries: Sequence[PointSummary], zone: ZoneInfo, limit: int
) -> list[str]:
    negative: list[tuple[Decimal, int, str]] = []
    missing: list[tuple[Decimal, int, str]] = []
    for epoch, deltas in primary.by_quarter.items():
        ours = direction_total(deltas, "import") or ZERO
        parts = {s.meter: s.by_quarter.get(epoch) for s in secondaries}
        for name, part in parts.items():
            if part is None:
                missing.append((ours, epoch, name))
        if any(part is None for part in parts.values()):
            continue
        for direction in ("import", "export"):
            own = (direction_total(deltas, direction) or ZERO) - sum(
                ((direction_total(p, direction) or ZERO) for p in parts.values() if p), ZERO
            )
            if own < 0:
                negative.append((own, epoch, direction))

    def when(epoch: int) -> str:
        return datetime.fromtimestamp(epoch, UTC).astimezone(zone).isoformat(timespec="minutes")

    out = [
        f"negative own share ({d}) at {when(e)}: {kwh(v)} kWh"
        for v, e, d in sorted(negative)[:limit]
    ]
    missing.sort(key=lambda item: (-item[0], item[1]))
    out += [
        f"{name} has no data at {when(e)} (primary imported {kwh(v)} kWh)"
        for v, e, name in missing[:limit]
    ]
    for point in (primary, *secondaries):
        out += [
            f"{point.meter}: meter replaced at {r.at.astimezone(zone).isoformat()} "
            f"({r.old.equipment_id} -> {r.new.equipment_id})"
            for r in point.replacements
        ]
    return out


# -- output -------------------------------------------------------------------------------


def write_statement(out: IO[str], statement: Statement, fmt: str, *, excel: bool = False) -> None:
    if fmt == "json":
        document = {
            "statement": statement.kind,
            "points": statement.points,
            "formula": statement.formula,
            "rows": statement.rows,
            "notes": statement.notes,
        }
        out.write(json.dumps(document, ensure_ascii=False) + "\n")
        return
    if fmt == "csv":
        delimiter = ";" if excel else ","
        if excel:
            out.write("\ufeff")
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow(statement.columns)
        for row in statement.rows:
            values = [row.get(c, "") for c in statement.columns]
            if excel:
                values = [_comma(v) for v in values]
            writer.writerow(values)
        return
    out.write(f"statement: {statement.kind}\n")
    for point in statement.points:
        ids = ", ".join(point["equipment_ids"]) or "-"
        out.write(
            f"  {point['meter']}: {point['role']}, EAN {point['ean'] or '-'}, equipment {ids}\n"
        )
    widths = {
        c: max(len(c), *(len(r.get(c, "")) for r in statement.rows)) if statement.rows else len(c)
        for c in statement.columns
    }
    out.write("  ".join(c.ljust(widths[c]) for c in statement.columns).rstrip() + "\n")
    for row in statement.rows:
        out.write("  ".join(row.get(c, "").ljust(widths[c]) for c in statement.columns).rstrip())
        out.write("\n")
    for line in statement.formula:
        out.write(f"formula: {line}\n")
    for line in statement.notes:
        out.write(f"note: {line}\n")


def _comma(value: str) -> str:
    try:
        Decimal(value)
    except ArithmeticError:
        return value
    return value.replace(".", ",")
