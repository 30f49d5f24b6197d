"""`p1daemon report --verify` and `--chain-head`: the parts of the report command that
prove the history rather than sum it (command.py only dispatches here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TextIO
from zoneinfo import ZoneInfo

from p1daemon.report.verify import meters_of, verify
from p1daemon.views.history import chain
from p1daemon.views.history.store import HistoryStore, HistoryUnavailable


class ProofError(Exception):
    """One line for the user (no history, unknown meter)."""


def _open(path: Path) -> HistoryStore:
    try:
        return HistoryStore.open(path, readonly=True)
    except HistoryUnavailable as exc:
        raise ProofError(str(exc)) from None


def select_meters(store: HistoryStore, meter: str | None, ean: str | None) -> list[str]:
    known = meters_of(store)
    if meter is not None:
        if meter not in known:
            raise ProofError(
                f"no history for meter {meter!r} (known: {', '.join(known) or 'none'})"
            )
        return [meter]
    if ean is not None:
        found = sorted({p.meter for p in store.points() if p.ean == ean})
        if not found:
            raise ProofError(f"no history for EAN {ean}")
        return found
    return known


def run_verify(
    path: Path,
    zone: ZoneInfo,
    out: TextIO,
    *,
    meter: str | None,
    ean: str | None,
    bounds: tuple[datetime, datetime] | None,
    pinned: Sequence[str] = (),
) -> int:
    """Print one line per mismatch and a summary; 1 on any mismatch, else 0."""
    store = _open(path)
    try:
        meters = select_meters(store, meter, ean)
        start, end = bounds if bounds is not None else (None, None)
        result = verify(store, zone, meters, start, end, pinned)
    finally:
        store.close()
    for finding in result.findings:
        out.write(finding.line(zone) + "\n")
    rows_with = {(f.meter, f.start) for f in result.findings if f.start is not None}
    verdict = "OK" if not result.findings else f"{len(result.findings)} mismatch(es)"
    out.write(
        f"verified {result.rows} rows and {result.telegrams} telegrams of "
        f"{len(meters)} meter(s): {verdict}"
        + (f" in {len(rows_with)} row(s)" if rows_with else "")
        + "\n"
    )
    for name in meters:
        out.write(f"chain head {name}: {result.heads.get(name) or 'none'}\n")
    return 1 if result.findings else 0


def write_evidence(
    path: Path,
    zone: ZoneInfo,
    meter: str,
    bounds: tuple[datetime, datetime],
    directory: Path,
    documents: dict[str, Callable[[IO[str]], None]],
) -> dict[str, Any]:
    from p1daemon.report.evidence_export import export_evidence

    store = _open(path)
    try:
        return export_evidence(store, zone, meter, *bounds, directory, documents)
    finally:
        store.close()


def print_heads(path: Path, out: TextIO, *, meter: str | None, ean: str | None) -> None:
    store = _open(path)
    try:
        meters: Sequence[str] = select_meters(store, meter, ean)
        for name in meters:
            out.write(f"{name} {chain.head(store.connection, name) or 'none'}\n")
    finally:
        store.close()
