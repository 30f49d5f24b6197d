"""`p1daemon report` and `p1daemon history import` (registered in p1daemon.cli)."""

from __future__ import annotations

import io
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import NoReturn
from zoneinfo import ZoneInfo

import click

from p1daemon.config.errors import ConfigError
from p1daemon.config.loader import load_config
from p1daemon.config.model import Config
from p1daemon.report.period import PeriodError, parse_period
from p1daemon.report.render import write_csv, write_json, write_table
from p1daemon.views.history.aggregate import (
    BY_CHOICES,
    By,
    PointSummary,
    connection_summary,
    point_groups,
    summarise,
)
from p1daemon.views.history.store import HistoryStore, HistoryUnavailable

DEFAULT_CONFIG = "/etc/p1daemon/p1daemon.toml"


def _fail(message: str) -> NoReturn:
    click.echo(f"p1daemon: {message}", err=True)
    sys.exit(1)


def _config(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.lines:
            click.echo(line, err=True)
        sys.exit(1)


def _history_path(config: Config, override: str | None) -> Path:
    return Path(override) if override is not None else config.history.file


@click.command("report")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, metavar="PATH")
@click.option(
    "--history", "history_path", metavar="PATH", help="History file (else [history] path)."
)
@click.option("--meter", help="Only this meter (its name in the configuration).")
@click.option("--ean", help="Only the metering point with this EAN.")
@click.option(
    "--period",
    help="2026-11, 2026, 2026-11-01..2026-11-15, yesterday, this-month or last-month "
    "(default: last-month; for --verify the whole history).",
)
@click.option("--by", type=click.Choice(BY_CHOICES), default="day", show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("table", "csv", "json")),
    help="Default: table on a terminal, csv otherwise.",
)
@click.option("--excel", is_flag=True, help="CSV for a Dutch-locale spreadsheet (; and , BOM).")
@click.option(
    "--verify",
    "do_verify",
    is_flag=True,
    help="Check every row, its hash chain and its telegrams; exit 1 on any mismatch.",
)
@click.option(
    "--pinned",
    multiple=True,
    metavar="HASH",
    help="With --verify: a chain head published earlier that must still be in the history.",
)
@click.option("--chain-head", is_flag=True, help="Print each meter's chain head and exit.")
@click.option(
    "--peaks",
    is_flag=True,
    help="Each month's highest quarter-hour of import per metering point (capacity tariff).",
)
@click.option(
    "--evidence",
    "evidence_dir",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Write one point's report, its telegrams and a manifest of hashes into DIR.",
)
@click.option(
    "--statement",
    type=click.Choice(("feed-in", "delivered", "production", "reconciliation")),
    help="A statement on top of the period report (see [statements]).",
)
@click.option(
    "--prices",
    "prices_path",
    metavar="CSV",
    type=click.Path(dir_okay=False),
    help="Hourly prices for --statement feed-in (hour start with offset, EUR/kWh).",
)
def report(
    config_path: str,
    history_path: str | None,
    meter: str | None,
    ean: str | None,
    period: str | None,
    by: By,
    fmt: str | None,
    excel: bool,
    do_verify: bool,
    pinned: tuple[str, ...],
    chain_head: bool,
    peaks: bool,
    evidence_dir: str | None,
    statement: str | None,
    prices_path: str | None,
) -> None:
    """Energy per metering point from the settlement history, with readings, coverage,
    gaps, replacements and the connection's shares. Works while the daemon runs."""
    if meter is not None and ean is not None:
        raise click.UsageError("give --meter or --ean, not both")
    if excel:
        if fmt not in (None, "csv"):
            raise click.UsageError("--excel writes CSV; it cannot be combined with --format")
        fmt = "csv"
    if fmt is None:
        fmt = "table" if sys.stdout.isatty() else "csv"
    config = _config(config_path)
    zone = config.site.zone
    try:
        span = parse_period("last-month" if period is None else period, zone)
    except PeriodError as exc:
        raise click.UsageError(str(exc)) from None
    path = _history_path(config, history_path)
    if do_verify or chain_head:
        from p1daemon.report import proof

        try:
            if chain_head:
                proof.print_heads(path, sys.stdout, meter=meter, ean=ean)
                return
            bounds = None if period is None else span.bounds(zone)
            code = proof.run_verify(
                path, zone, sys.stdout, meter=meter, ean=ean, bounds=bounds, pinned=pinned
            )
        except proof.ProofError as exc:
            _fail(str(exc))
        except Exception as exc:  # sqlite3.Error and friends: one line, no traceback
            _fail(f"cannot read history {path}: {exc}")
        sys.exit(code)
    if statement is not None:
        from p1daemon.report.statement_command import run_statement
        from p1daemon.report.statements import StatementError

        try:
            run_statement(
                statement, config, path, span.bounds(zone), fmt, excel=excel, meter=meter,
                ean=ean, prices_path=None if prices_path is None else Path(prices_path),
                evidence_dir=None if evidence_dir is None else Path(evidence_dir),
            )  # fmt: skip
        except StatementError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"cannot write: {exc.strerror or exc}")
        except Exception as exc:  # sqlite3.Error and friends: one line, no traceback
            _fail(f"cannot read history {path}: {exc}")
        return
    try:
        store = HistoryStore.open(path, readonly=True)
    except HistoryUnavailable as exc:
        _fail(str(exc))
    try:
        groups = point_groups(store)
        order = [m.name for m in config.meters if m.name in groups]
        order += sorted(name for name in groups if name not in order)
        if meter is not None:
            if meter not in groups:
                _fail(f"no history for meter {meter!r} (known: {', '.join(order) or 'none'})")
            order = [meter]
        if ean is not None:
            order = [n for n in order if any(p.ean == ean for p in groups[n])]
            if not order:
                _fail(f"no history for EAN {ean}")
        start, end = span.bounds(zone)
        summaries = [summarise(store, groups[name], start, end, by, zone) for name in order]
    except Exception as exc:  # sqlite3.Error and friends: one line, no traceback
        _fail(f"cannot read history {path}: {exc}")
    finally:
        store.close()
    conn = None
    if fmt != "csv" and meter is None and ean is None and len(summaries) > 1:
        tolerance = Decimal(repr(config.site.tolerance_kwh))
        conn = connection_summary(summaries, config.site.topology, tolerance)
    labels = {m.name: dict(m.tariff_labels) for m in config.meters}
    if peaks:
        from p1daemon.report.peaks import monthly_peaks, write_peaks

        found = [peak for summary in summaries for peak in monthly_peaks(summary, zone)]
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        write_peaks(out, found, fmt)
        out.flush()
        out.detach()
        return
    if evidence_dir is not None:
        _evidence(path, zone, span.bounds(zone), Path(evidence_dir), summaries, labels)
        return
    # UTF-8 whatever the locale (names, labels, the BOM), CRLF as RFC 4180 wants it.
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
    if fmt == "csv":
        write_csv(out, summaries, zone, labels, excel=excel)
    elif fmt == "json":
        write_json(out, summaries, conn, zone, labels)
    else:
        write_table(out, summaries, conn, zone, labels)
    out.flush()
    out.detach()


def _evidence(
    path: Path,
    zone: ZoneInfo,
    bounds: tuple[datetime, datetime],
    directory: Path,
    summaries: list[PointSummary],
    labels: dict[str, dict[str, str]],
) -> None:
    from p1daemon.report import proof

    if len(summaries) != 1:
        raise click.UsageError("--evidence is for one metering point: give --meter or --ean")
    summary = summaries[0]
    documents = {"report.json": lambda out: write_json(out, summaries, None, zone, labels)}
    try:
        manifest = proof.write_evidence(path, zone, summary.meter, bounds, directory, documents)
    except proof.ProofError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write {directory}: {exc.strerror or exc}")
    except Exception as exc:
        _fail(f"cannot read history {path}: {exc}")
    click.echo(
        f"{summary.meter}: {len(manifest['quarters'])} quarter rows, "
        f"{len(manifest['telegrams'])} telegrams into {directory}"
        + (f", {manifest['missing_telegrams']} missing" if manifest["missing_telegrams"] else "")
    )


@click.group("history")
def history() -> None:
    """The settlement history file."""


@history.command("import")
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--meter", required=True, help="The configured meter these captures are from.")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, metavar="PATH")
@click.option(
    "--history", "history_path", metavar="PATH", help="History file (else [history] path)."
)
def history_import(
    captures: tuple[str, ...], meter: str, config_path: str, history_path: str | None
) -> None:
    """Build history from raw P1 capture files of METER (importing twice changes nothing).

    Stop the daemon first or import into another file: only one process writes."""
    config = _config(config_path)
    try:
        config.meter(meter)
    except KeyError:
        raise click.UsageError(f"no meter {meter!r} in {config_path}") from None
    paths = [Path(c) for c in captures]
    for path in paths:
        if not path.is_file():
            raise click.UsageError(f"cannot read {path}: no such file")
    target = _history_path(config, history_path)
    try:
        store = HistoryStore.open(target)
    except HistoryUnavailable as exc:
        _fail(str(exc))
    # Here, not at the top: the importer brings the parser and the energy views, which
    # `report` does not need (issue 16: start-up of the hand-run commands).
    from p1daemon.views.history.importer import import_captures

    try:
        result = import_captures(store, config, meter, paths)
    except OSError as exc:
        _fail(f"cannot read a capture: {exc.strerror or exc}")
    except Exception as exc:
        _fail(f"cannot write history {target}: {exc}")
    finally:
        store.close()
    click.echo(
        f"{meter}: {result.readings} readings, {result.rows} rows into {target}"
        + (f", {result.dropped} frames dropped" if result.dropped else "")
        + (f", {result.untimed} without a timestamp skipped" if result.untimed else "")
    )
