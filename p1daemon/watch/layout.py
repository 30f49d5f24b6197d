"""The view as lines of styled spans, and the one-line records for pipes.

The same lines serve a terminal (styled, cut to its width by `screen.py`) and `--once`
(plain). Text that came from the broker (meter names, warning messages) is reduced to
printable ASCII first: an escape sequence or a double-width character in a topic name
must not be able to move the cursor or push a line past the terminal's edge.

Sites with problems come first, then by prefix; meters in the daemon's own order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from p1daemon.watch.rules import Finding, Limits, age_s, assess, format_age, has_problem
from p1daemon.watch.state import Figures, Fleet, SiteView

Span = tuple[str, str]  # (text, style): style is "", "bold", "dim", "red", "yellow", "green"
Line = list[Span]


def clean(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def _kw(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _role(role: str | None) -> str:
    return {"primary": "prim", "secondary": "sec"}.get(role or "", clean(role or "-")[:4])


def today(site: SiteView, meter: str) -> tuple[float | None, float | None]:
    """A meter's import and export kWh today: from its `day` document, published after
    every closed quarter-hour; before the first one (a restarted daemon continuing its
    saved day) from its point in the connection document, which carries the same day."""
    view = site.meters.get(meter)
    if view is not None and view.day is not None:
        return view.day.import_kwh, view.day.export_kwh
    connection = site.connection
    point = connection.points.get(meter) if connection is not None else None
    if connection is None or point is None or meter in connection.derived:
        return None, None
    return point.today_import_kwh, point.today_export_kwh


@dataclass(frozen=True, slots=True)
class Assessed:
    site: SiteView
    findings: list[Finding]

    @property
    def problem(self) -> bool:
        return has_problem(self.findings)


def assess_fleet(fleet: Fleet, now: datetime, limits: Limits) -> list[Assessed]:
    """Every site with its findings, problems first."""
    rows = [Assessed(site, assess(site, now, limits)) for site in fleet.sites.values()]
    rows.sort(key=lambda row: (not row.problem, row.site.prefix))
    return rows


@dataclass(frozen=True, slots=True)
class Summary:
    sites: int
    meters: int
    problems: int  # sites with at least one problem

    @property
    def text(self) -> str:
        site_word = "site" if self.sites == 1 else "sites"
        meter_word = "meter" if self.meters == 1 else "meters"
        return (
            f"{self.sites} {site_word}, {self.meters} {meter_word}, {self.problems} with problems"
        )


def summarize(rows: list[Assessed]) -> Summary:
    return Summary(
        len(rows),
        sum(len(row.site.meter_names()) for row in rows),
        sum(1 for row in rows if row.problem),
    )


def frame(
    rows: list[Assessed],
    now: datetime,
    limits: Limits,
    *,
    where: str,
    broker_problem: str | None = None,
    clock: datetime | None = None,
    footer: str | None = None,
) -> list[Line]:
    """The whole view: a summary line, then one block per site."""
    summary = summarize(rows)
    shown = (clock or now).astimezone().strftime("%H:%M:%S")
    head: Line = [("p1daemon watch", "bold"), (f"  {clean(where)}  ", "")]
    head.append((summary.text, "red" if summary.problems else "green"))
    head.append((f"  {shown}", "dim"))
    lines: list[Line] = [head]
    if broker_problem is not None:
        lines.append([(f"broker: {clean(broker_problem)}; retrying", "red")])
    if not rows:
        lines.append([("no site has published anything yet under the watched prefixes", "yellow")])
    for row in rows:
        lines.append([])
        lines += _site_block(row, now, limits)
    if footer is not None:
        lines += [[], [(clean(footer), "dim")]]
    return lines


def _site_block(row: Assessed, now: datetime, limits: Limits) -> list[Line]:
    site = row.site
    head: Line = [(clean(site.prefix), "bold"), ("  ", "")]
    if site.status == "online":
        head.append(("online", "green"))
    elif site.status == "offline":
        head.append(("OFFLINE", "red"))
    else:
        head.append((clean(site.status or "no status"), "red"))
    if site.connection is not None and site.connection.topology:
        head.append((f"  {clean(site.connection.topology)}", ""))
    daemon = site.daemon
    if daemon is not None:
        queued = "-" if daemon.depth is None else str(daemon.depth)
        if daemon.depth and daemon.oldest_age_s is not None:
            queued += f" (oldest {format_age(daemon.oldest_age_s)})"
        head.append((f"  outbox {queued}", ""))
        health_age = age_s(daemon.at, now)
        late = health_age is None or health_age > limits.health_timeout_s
        head.append((f"  health {format_age(health_age)} ago", "red" if late else ""))
        if daemon.version:
            head.append((f"  v{clean(daemon.version)}", "dim"))
    lines: list[Line] = [head]

    names = site.meter_names()
    width = max([5, *(len(clean(n)) for n in names)])
    width = min(width, 14)
    eans = any(site.meters.get(n) is not None and site.meters[n].ean for n in names)
    label_width = max(width + 6 + (19 if eans else 0), 26)  # room for "= connection  net ..."

    def label(text: str) -> str:
        return f"  {text[:label_width]:<{label_width}}"

    header = f"{'meter':<{width}} role" + ("  EAN               " if eans else "")
    lines.append([(f"  {header:<{label_width}}  imp kW  exp kW today imp today exp    age", "dim")])
    for name in names:
        view = site.meters.get(name)
        shown = clean(name)[:width]
        ean = clean(view.ean or "-") if view is not None else "-"
        role = _role(view.role if view is not None else None)
        text = f"{shown:<{width}} {role:<4}" + (f" {ean[:18]:<18}" if eans else "")
        latest = view.latest if view is not None else None
        imp_kwh, exp_kwh = today(site, name)
        age = age_s(latest.received_at, now) if latest is not None else None
        stale = age is None or age > limits.stale_after_s
        trouble = any(f.problem and f.meter == name for f in row.findings)
        lines.append(
            [
                (label(text), "red" if trouble else ""),
                _values(
                    latest.import_kw if latest else None,
                    latest.export_kw if latest else None,
                    imp_kwh,
                    exp_kwh,
                ),
                # Marked as well as red: --once and a log have no colours.
                (
                    f"{format_age(age) + ('!' if stale and age is not None else ''):>7}",
                    "red" if stale else "",
                ),
            ]
        )
    connection = site.connection
    if connection is not None:
        for meter in connection.derived:
            share = connection.points[meter]
            text = f"= {clean(meter)[:10]} own  net {_kw(share.net_kw)}"
            lines.append([(label(text), "dim"), _figures(share)])
        text = f"= connection  net {_kw(connection.total.net_kw)}"
        lines.append([(label(text), "bold"), _figures(connection.total)])
    for finding in row.findings:
        who = f"{clean(finding.meter)}: " if finding.meter else ""
        mark, style = ("!", "red") if finding.problem else ("-", "yellow")
        lines.append([(f"  {mark} {who}{clean(finding.text)}", style)])
    return lines


def _values(
    imp_kw: float | None, exp_kw: float | None, imp_kwh: float | None, exp_kwh: float | None
) -> Span:
    return (f"{_kw(imp_kw):>8}{_kw(exp_kw):>8}{_kw(imp_kwh):>10}{_kw(exp_kwh):>10}", "")


def _figures(figures: Figures) -> Span:
    return _values(
        figures.import_kw, figures.export_kw, figures.today_import_kwh, figures.today_export_kwh
    )


def plain(line: Line) -> str:
    return "".join(text for text, _style in line)


# -- one line per change (pipes, logs, scripts) --------------------------------------------


def records(rows: list[Assessed]) -> dict[str, str]:
    """key=value lines, one per site and per meter, keyed by what they describe.

    Only values that change when the state changes (no ages ticking up), so a caller
    that prints the lines whose text differs from last time prints one line per change.
    """
    out: dict[str, str] = {}
    summary = summarize(rows)
    out[""] = f"summary sites={summary.sites} meters={summary.meters} problems={summary.problems}"
    for row in rows:
        site = row.site
        prefix = clean(site.prefix)
        daemon = site.daemon
        codes = _codes(row.findings, None)
        fields = {
            "status": clean(site.status or "none"),
            "outbox": "-" if daemon is None or daemon.depth is None else str(daemon.depth),
            "problems": codes,
        }
        connection = site.connection
        if connection is not None:
            fields["import_kw"] = _kw(connection.total.import_kw)
            fields["export_kw"] = _kw(connection.total.export_kw)
            fields["today_import_kwh"] = _kw(connection.total.today_import_kwh)
            fields["today_export_kwh"] = _kw(connection.total.today_export_kwh)
        out[f"site {prefix}"] = f"{prefix} site " + _pairs(fields, row.problem)
        for name in site.meter_names():
            view = site.meters.get(name)
            latest = view.latest if view is not None else None
            imp_kwh, exp_kwh = today(site, name)
            health = view.health if view is not None else None
            meter_fields = {
                "role": clean((view.role if view else None) or "-"),
                "ean": clean((view.ean if view else None) or "-"),
                "import_kw": _kw(latest.import_kw if latest else None),
                "export_kw": _kw(latest.export_kw if latest else None),
                "today_import_kwh": _kw(imp_kwh),
                "today_export_kwh": _kw(exp_kwh),
                "dropped": str(health.dropped_total) if health else "-",
                "reading_at": latest.received_at.isoformat(timespec="seconds")
                if latest is not None and latest.received_at is not None
                else "-",
                "problems": _codes(row.findings, name),
                "notes": _codes(row.findings, name, problems=False),
            }
            trouble = any(f.problem and f.meter == name for f in row.findings)
            key = f"meter {prefix}/{clean(name)}"
            out[key] = f"{prefix}/{clean(name)} meter " + _pairs(meter_fields, trouble)
    return out


def _codes(findings: list[Finding], meter: str | None, *, problems: bool = True) -> str:
    codes = [f.code for f in findings if f.meter == meter and f.problem == problems]
    return ",".join(dict.fromkeys(codes)) or "-"


def _pairs(fields: Mapping[str, str], problem: bool) -> str:
    state = "PROBLEM" if problem else "ok"
    return state + " " + " ".join(f"{key}={value}" for key, value in fields.items())
