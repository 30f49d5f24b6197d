"""Report output: a table for people, CSV for spreadsheets (RFC 4180, or `--excel` for a
Dutch-locale spreadsheet: semicolons, decimal commas, UTF-8 BOM), JSON lines (one
document per metering point, then one for the connection)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import IO, Any
from zoneinfo import ZoneInfo

from p1daemon.views.energy.clock import local
from p1daemon.views.energy.samples import ALL_KEYS, Key, Sample
from p1daemon.views.history.aggregate import ConnectionSummary, Edge, PointSummary

_MILLI = Decimal("0.001")
CSV_HEADER = (
    "meter",
    "role",
    "ean",
    "equipment_id",
    "start",
    "end",
    "register",
    "label",
    "value",
    "unit",
    "quarters",
    "complete_quarters",
    "first_reading_at",
    "first_reading",
    "last_reading_at",
    "last_reading",
)

Labels = Mapping[str, Mapping[str, str]]  # meter -> tariff -> label


def kwh(value: Decimal | None) -> str:
    if value is None:
        return ""
    text = str(value)
    # Most values already carry the meter's three decimals: no quantize needed.
    point = text.find(".")
    if point >= 0 and len(text) - point == 4 and "E" not in text:
        return text
    return str(value.quantize(_MILLI))


def register_name(key: Key) -> str:
    return f"{key[0]}_{key[1]}"


def _label(labels: Labels, meter: str, key: Key) -> str:
    tariff = labels.get(meter, {}).get(key[1])
    return tariff or ""


def registers_of(summary: PointSummary) -> list[Key]:
    seen: set[Key] = set(summary.totals)
    for sample in (summary.first, summary.last):
        if sample is not None:
            seen.update(sample.registers)
    return [key for key in ALL_KEYS if key in seen]


_ISO_CACHE: dict[tuple[float, str], str] = {}


def _iso(instant: datetime | None, zone: ZoneInfo) -> str:
    """Local ISO 8601 with offset; cached, as every meter's intervals share their bounds
    (a year by quarter asks for the same 35,000 instants six times over)."""
    if instant is None:
        return ""
    key = (instant.timestamp(), zone.key)
    text = _ISO_CACHE.get(key)
    if text is None:
        if len(_ISO_CACHE) > 500_000:
            _ISO_CACHE.clear()
        text = _ISO_CACHE[key] = local(instant, zone).isoformat()
    return text


# A stored decimal in plain notation with at most three decimals (registers.py writes
# `format(value, "f")`): `kwh(Decimal(text))` is the text with its decimals padded to
# three, so it is made without a Decimal (the sign and digits stay as they are).
_PLAIN = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.([0-9]{0,3}))?").fullmatch


def _reading_text(part: str) -> str:
    """`kwh(Decimal(part))` of a stored value; empty (no reading) stays empty."""
    if not part:
        return ""
    match = _PLAIN(part)
    if match is None:
        return kwh(Decimal(part))
    decimals = match.group(1)
    if decimals is None:
        return part + ".000"
    return part if len(decimals) == 3 else part + "000"[len(decimals) :]


def _sum_text(part: str) -> str:
    """`kwh(Decimal(0) + Decimal(part))`: the same but for a negative zero (0 + -0 is 0).
    Only a zero becomes "0.000": a small negative value such as -0.0005 rounds to
    "-0.000" after the sum as before it, since 0 + -0.0005 is not zero."""
    if not part:
        return _ZERO_KWH
    text = _reading_text(part)
    return _ZERO_KWH if text == "-0.000" and not Decimal(part) else text


_ZERO_KWH = "0.000"  # kwh(Decimal(0))


class _EdgeTexts:
    """Per register of the report (`slots`: where each sits in the stored text), `kwh`
    of an edge reading's value, from its stored text. An interval's last reading is
    mostly the next one's first, and most registers do not move from one reading to
    the next: only what changed is formatted."""

    def __init__(self, slots: tuple[int, ...]) -> None:
        self._slots = slots
        self._pad = [""] * len(ALL_KEYS)
        self.blank = [""] * len(slots)
        self._texts: dict[str | None, list[str]] = {}
        self._parts: list[str | None] = [None] * len(slots)
        self._found = self.blank

    def __call__(self, edge: Edge | None) -> list[str]:
        if edge is None:
            return self.blank
        text = edge[1]
        found = self._texts.get(text)
        if found is not None:
            return found
        parts = text.split(",") if text else []
        parts += self._pad[len(parts) :]
        chosen = [parts[i] for i in self._slots]
        found = [
            before if part == seen else _reading_text(part)
            for part, seen, before in zip(chosen, self._parts, self._found, strict=True)
        ]
        self._parts, self._found = list(chosen), found
        if len(self._texts) > 4:
            self._texts.clear()
        self._texts[text] = found
        return found


_SUM_CACHE: dict[tuple[str, tuple[int, ...]], list[str]] = {}


def _sum_texts(delta: str, slots: tuple[int, ...]) -> list[str]:
    """Per register of the report, `kwh` of an interval's sums when they are one stored
    delta text: 0 + each value (`aggregate._add` into an empty dict), a missing one 0."""
    key = (delta, slots)
    found = _SUM_CACHE.get(key)
    if found is None:
        if len(_SUM_CACHE) > 20_000:
            _SUM_CACHE.clear()
        parts = delta.split(",")
        parts += [""] * (len(ALL_KEYS) - len(parts))
        found = [_sum_text(parts[i]) for i in slots]
        _SUM_CACHE[key] = found
    return found


_ISO_EPOCH: dict[tuple[float, str], str] = {}


def _iso_epoch(epoch: float, zone: ZoneInfo) -> str:
    """`_iso` of a stored epoch (`datetime.fromtimestamp(epoch, UTC)`), cached."""
    key = (epoch, zone.key)
    text = _ISO_EPOCH.get(key)
    if text is None:
        if len(_ISO_EPOCH) > 500_000:
            _ISO_EPOCH.clear()
        text = _ISO_EPOCH[key] = _iso(datetime.fromtimestamp(epoch, UTC), zone)
    return text


def _reading(sample: Sample | None, key: Key) -> Decimal | None:
    return None if sample is None else sample.registers.get(key)


def _quoted(text: str, delimiter: str) -> str:
    """RFC 4180: a field with the delimiter, a quote or a line break is quoted."""
    if delimiter in text or '"' in text or "\r" in text or "\n" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def write_csv(
    out: IO[str],
    summaries: Sequence[PointSummary],
    zone: ZoneInfo,
    labels: Labels,
    *,
    excel: bool = False,
) -> None:
    """One row per metering point, interval and register. Written line by line rather
    than through `csv.writer`: a year by quarter is close to a million rows, and only
    the names and labels can need quoting (quoted once per metering point here)."""
    sep = ";" if excel else ","
    if excel:
        out.write("\ufeff")
    write = out.write
    write(sep.join(CSV_HEADER) + "\r\n")

    def number(text: str) -> str:
        return text.replace(".", ",") if excel else text

    for summary in summaries:
        keys = registers_of(summary)
        head = sep.join(
            _quoted(text, sep)
            for text in (
                summary.meter,
                summary.role,
                summary.ean or "",
                ",".join(summary.equipment_ids),
            )
        )
        names = [
            sep.join((register_name(k), _quoted(_label(labels, summary.meter, k), sep)))
            for k in keys
        ]
        zero = Decimal(0)
        # Where each register sits in the stored text (registers.py: ALL_KEYS order).
        slots = tuple(ALL_KEYS.index(k) for k in keys)
        blank = [""] * len(keys)
        edge_texts = _EdgeTexts(slots)
        end_at: datetime | None = None
        end_text = last_at = ""
        last_epoch: float | None = None
        last_text: str | None = None
        lasts = blank
        for interval in summary.intervals:
            # Intervals follow each other: one's end is mostly the next one's start.
            start_text = end_text if interval.start == end_at else _iso(interval.start, zone)
            end_at, end_text = interval.end, _iso(interval.end, zone)
            first, last = interval.first_edge, interval.last_edge
            if first is None:
                first_at = ""
            elif first[0] == last_epoch:  # the reading the previous interval ended on
                first_at = last_at
            else:
                first_at = _iso_epoch(first[0], zone)
            if last is None:
                last_at, last_epoch = "", None
            else:
                last_at, last_epoch = _iso_epoch(last[0], zone), last[0]
            if first is not None and last_text is not None and first[1] == last_text:
                firsts = lasts  # the previous interval's last reading, formatted
            else:
                firsts = edge_texts(first)
            lasts = edge_texts(last)
            last_text = None if last is None else last[1]
            if not (interval.recorded > 0 or interval.sums):
                values = blank
            elif interval.delta_text is not None:
                values = _sum_texts(interval.delta_text, slots)
            else:
                sums = interval.sums
                values = [kwh(sums.get(key, zero)) for key in keys]
            if excel:
                values = [number(v) for v in values]
                firsts = [number(v) for v in firsts]
                lasts = [number(v) for v in lasts]
            lead = f"{head}{sep}{start_text}{sep}{end_text}{sep}"
            mid = f"{sep}kWh{sep}{interval.quarters}{sep}{interval.complete}{sep}{first_at}{sep}"
            tail = f"{sep}{last_at}{sep}"
            write(
                "".join(
                    [
                        f"{lead}{name}{sep}{value}{mid}{opening}{tail}{closing}\r\n"
                        for name, value, opening, closing in zip(
                            names, values, firsts, lasts, strict=True
                        )
                    ]
                )
            )
        for m in summary.mbus:
            cells = (
                head,
                _iso(m.start, zone),
                _iso(m.end, zone),
                f"{m.kind}_{m.channel}",
                "",
                number(kwh(m.delta)),
                _quoted(m.unit or "", sep),
                "",
                "",
                "",
                "",
                "",
                "",
            )
            write(sep.join(cells) + "\r\n")


def _energy(values: Mapping[Key, Decimal], keys: Sequence[Key]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        if key in values:
            out.setdefault(key[0], {})[key[1]] = float(values[key].quantize(_MILLI))
    return out


def _sample_doc(sample: Sample | None, zone: ZoneInfo) -> dict[str, Any] | None:
    if sample is None:
        return None
    keys = [k for k in ALL_KEYS if k in sample.registers]
    return {
        "at": _iso(sample.at, zone),
        "equipment_id": sample.equipment_id,
        **_energy(sample.registers, keys),
    }


def point_document(summary: PointSummary, zone: ZoneInfo, labels: Labels) -> dict[str, Any]:
    keys = registers_of(summary)
    return {
        "meter": summary.meter,
        "role": summary.role,
        "ean": summary.ean,
        "equipment_ids": summary.equipment_ids,
        "start": _iso(summary.start, zone),
        "end": _iso(summary.end, zone),
        "tariff_labels": dict(labels.get(summary.meter, {})),
        "first_reading": _sample_doc(summary.first, zone),
        "last_reading": _sample_doc(summary.last, zone),
        "totals": _energy(summary.totals, keys),
        "quarters": summary.quarters,
        "complete_quarters": summary.complete,
        "coverage": float(summary.coverage),
        "gaps": [
            {
                "start": _iso(gap.start, zone),
                "end": _iso(gap.end, zone),
                "energy": None if gap.deltas is None else _energy(gap.deltas, keys),
            }
            for gap in summary.gaps
        ],
        "replacements": [
            {
                "at": _iso(r.at, zone),
                "old": _sample_doc(r.old, zone),
                "new": _sample_doc(r.new, zone),
            }
            for r in summary.replacements
        ],
        "intervals": [
            {
                "start": _iso(i.start, zone),
                "end": _iso(i.end, zone),
                "quarters": i.quarters,
                "complete_quarters": i.complete,
                **(_energy(i.sums, keys) if i.recorded or i.sums else {}),
            }
            for i in summary.intervals
        ],
        "mbus": [
            {
                "channel": m.channel,
                "kind": m.kind,
                "unit": m.unit,
                "start": _iso(m.start, zone),
                "end": _iso(m.end, zone),
                "value": float(m.delta.quantize(_MILLI)),
                "hours": m.hours,
                "complete_hours": m.complete,
            }
            for m in summary.mbus
        ],
    }


def connection_document(conn: ConnectionSummary, zone: ZoneInfo) -> dict[str, Any]:
    keys = list(ALL_KEYS)
    return {
        "connection": {
            "topology": conn.topology,
            "primary": conn.primary,
            "secondaries": conn.secondaries,
            "total": _energy(conn.connection, keys),
            "own_share": {meter: _energy(values, keys) for meter, values in conn.own.items()},
            "negative_own_share_quarters": [
                {"start": _iso(q.start, zone), **_energy(q.own, keys)} for q in conn.negative
            ],
            "incomplete_quarters": conn.incomplete_quarters,
        }
    }


def write_json(
    out: IO[str],
    summaries: Sequence[PointSummary],
    conn: ConnectionSummary | None,
    zone: ZoneInfo,
    labels: Labels,
) -> None:
    for summary in summaries:
        out.write(json.dumps(point_document(summary, zone, labels), ensure_ascii=False))
        out.write("\n")
    if conn is not None:
        out.write(json.dumps(connection_document(conn, zone), ensure_ascii=False))
        out.write("\n")


def write_table(
    out: IO[str],
    summaries: Sequence[PointSummary],
    conn: ConnectionSummary | None,
    zone: ZoneInfo,
    labels: Labels,
) -> None:
    for summary in summaries:
        keys = registers_of(summary)
        out.write(
            f"{summary.meter} ({summary.role}, EAN {summary.ean or '-'}, equipment "
            f"{', '.join(summary.equipment_ids) or '-'})\n"
        )
        out.write(f"  period {_iso(summary.start, zone)} .. {_iso(summary.end, zone)}\n")
        out.write(
            f"  coverage {summary.coverage * 100:.2f}% "
            f"({summary.complete} of {summary.quarters} quarter-hours complete)\n"
        )
        for name, sample in (("first", summary.first), ("last", summary.last)):
            if sample is not None:
                regs = "  ".join(
                    f"{register_name(k)}={kwh(sample.registers.get(k))}"
                    for k in keys
                    if k in sample.registers
                )
                out.write(f"  {name} reading {_iso(sample.at, zone)}: {regs}\n")
        names = [
            register_name(k) + (f" ({lab})" if (lab := _label(labels, summary.meter, k)) else "")
            for k in keys
        ]
        out.write(
            "  total: "
            + "  ".join(
                f"{n}={kwh(summary.totals.get(k, Decimal(0)))}"
                for n, k in zip(names, keys, strict=True)
            )
            + " kWh\n"
        )
        widths = [max(len(n), 12) for n in names]
        out.write(
            "  "
            + f"{'start':<26}"
            + " ".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True))
            + "  complete\n"
        )
        for interval in summary.intervals:
            known = interval.recorded > 0 or bool(interval.sums)
            cells = " ".join(
                f"{(kwh(interval.sums.get(k, Decimal(0))) if known else '-'):>{w}}"
                for k, w in zip(keys, widths, strict=True)
            )
            out.write(
                f"  {_iso(interval.start, zone):<26}{cells}  "
                f"{interval.complete}/{interval.quarters}\n"
            )
        for gap in summary.gaps:
            energy = (
                "unknown (meter replaced)"
                if gap.deltas is None
                else " ".join(f"{register_name(k)}={kwh(v)}" for k, v in sorted(gap.deltas.items()))
            )
            out.write(f"  gap {_iso(gap.start, zone)} .. {_iso(gap.end, zone)}: {energy}\n")
        for r in summary.replacements:
            out.write(
                f"  replaced at {_iso(r.at, zone)}: {r.old.equipment_id} -> {r.new.equipment_id}\n"
            )
        for m in summary.mbus:
            out.write(
                f"  {m.kind} (channel {m.channel}) {_iso(m.start, zone)}: "
                f"{kwh(m.delta)} {m.unit or ''}\n"
            )
        out.write("\n")
    if conn is not None:
        out.write(f"connection ({conn.topology})\n")
        out.write("  total: " + _pairs(conn.connection) + "\n")
        for meter, values in conn.own.items():
            out.write(f"  own share {meter}: {_pairs(values)}\n")
        for q in conn.negative:
            out.write(f"  negative own share {_iso(q.start, zone)}: {_pairs(q.own)}\n")


def _pairs(values: Mapping[Key, Decimal]) -> str:
    return "  ".join(f"{register_name(k)}={kwh(values[k])}" for k in ALL_KEYS if k in values)
