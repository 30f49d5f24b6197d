"""`p1daemon report --statement KIND`: which summaries each statement needs, and where
its output goes (command.py only dispatches here)."""

from __future__ import annotations

import io
import sys
from datetime import datetime
from pathlib import Path
from typing import IO

from p1daemon.config.model import Config
from p1daemon.report.statements import (
    Statement,
    StatementError,
    feed_in,
    monthly,
    read_prices,
    reconciliation,
    write_statement,
)
from p1daemon.views.history.aggregate import By, point_groups, summarise
from p1daemon.views.history.store import HistoryStore, HistoryUnavailable


def _names(config: Config, store: HistoryStore, meter: str | None, ean: str | None) -> list[str]:
    groups = point_groups(store)
    order = [m.name for m in config.meters if m.name in groups]
    order += sorted(name for name in groups if name not in order)
    if meter is not None:
        if meter not in groups:
            raise StatementError(f"no history for meter {meter!r}")
        return [meter]
    if ean is not None:
        order = [n for n in order if any(p.ean == ean for p in groups[n])]
        if not order:
            raise StatementError(f"no history for EAN {ean}")
    return order


def build_statement(
    kind: str,
    config: Config,
    store: HistoryStore,
    bounds: tuple[datetime, datetime],
    *,
    meter: str | None = None,
    ean: str | None = None,
    prices_path: Path | None = None,
) -> Statement:
    zone = config.site.zone
    start, end = bounds
    names = _names(config, store, meter, ean)
    groups = point_groups(store)
    by: By = {"feed-in": "month", "delivered": "month", "production": "month"}.get(kind, "day")  # type: ignore[assignment]
    summaries = [summarise(store, groups[n], start, end, by, zone) for n in names]
    if kind == "feed-in":
        path = prices_path
        if path is None and config.statements.hourly_price_file is not None:
            path = Path(config.statements.hourly_price_file)
        prices = None if path is None else read_prices(path)
        return feed_in(summaries, config.statements, zone, prices)
    if kind in ("delivered", "production"):
        return monthly(kind, summaries, store, zone)
    return reconciliation(summaries, zone)


def run_statement(
    kind: str,
    config: Config,
    path: Path,
    bounds: tuple[datetime, datetime],
    fmt: str,
    *,
    excel: bool,
    meter: str | None,
    ean: str | None,
    prices_path: Path | None,
    evidence_dir: Path | None,
) -> None:
    """Raises StatementError (one line) for the command to print."""
    try:
        store = HistoryStore.open(path, readonly=True)
    except HistoryUnavailable as exc:
        raise StatementError(str(exc)) from None
    try:
        statement = build_statement(
            kind, config, store, bounds, meter=meter, ean=ean, prices_path=prices_path
        )
    finally:
        store.close()
    if evidence_dir is not None:
        from p1daemon.report import proof

        if len(statement.points) != 1:
            raise StatementError("--evidence is for one metering point: give --meter or --ean")

        def write(out: IO[str]) -> None:
            write_statement(out, statement, "json")

        name = statement.points[0]["meter"]
        manifest = proof.write_evidence(
            path, config.site.zone, name, bounds, evidence_dir, {"statement.json": write}
        )
        print(
            f"{name}: {kind} statement, {len(manifest['telegrams'])} telegrams into {evidence_dir}"
        )
        return
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
    write_statement(out, statement, fmt, excel=excel)
    out.flush()
    out.detach()
