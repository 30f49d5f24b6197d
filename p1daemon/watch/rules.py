"""What makes a site or a metering point a problem, and what is only worth a note.

A problem is something someone should act on: the daemon is offline or has stopped
reporting, a meter's data is stale or its reader disconnected, an alert is active,
readings were lost or are piling up in the outbox, the connection document warns.
A note is context that explains odd numbers without needing action: telegrams dropped
on a noisy line (counted, never silently), a meter replaced today.

Ages come from the timestamps in the documents (the daemon's clock), so a retained
document from yesterday is stale the moment it arrives, not 60 s later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from p1daemon.watch.state import SiteView

# The connection document's warnings about a meter without a (fresh) reading: the
# document is refreshed every few seconds only, the meter's own `latest` is fresher, so
# those are judged from `latest` here instead (`no_reading`, `stale`).
_JUDGED_HERE = frozenset({"missing", "stale"})


@dataclass(frozen=True, slots=True)
class Limits:
    stale_after_s: float = 60.0  # a meter's last reading older than this is stale
    health_timeout_s: float = 180.0  # the daemon's health report older than this: silent
    backlog_after_s: float = 60.0  # the oldest queued reading older than this: a backlog


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    text: str
    meter: str | None = None
    problem: bool = True  # False: a note (shown, not counted as a problem)


def age_s(then: datetime | None, now: datetime) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"


def assess(site: SiteView, now: datetime, limits: Limits) -> list[Finding]:
    """Every finding for one site, site-wide ones first, then per meter in view order."""
    found = _site(site, now, limits)
    for name in site.meter_names():
        found += _meter(site, name, now, limits)
    if site.connection is not None:
        found += [
            Finding("connection", text)
            for code, text in site.connection.warnings
            if code not in _JUDGED_HERE
        ]
    return found


def has_problem(findings: list[Finding]) -> bool:
    return any(f.problem for f in findings)


def _site(site: SiteView, now: datetime, limits: Limits) -> list[Finding]:
    found: list[Finding] = []
    if site.status == "offline":
        found.append(Finding("offline", "daemon OFFLINE (stopped, or its last will)"))
    elif site.status is None:
        found.append(Finding("no_status", "no status published (is the daemon running?)"))
    elif site.status != "online":
        found.append(Finding("status", f"unknown status {site.status[:40]!r}"))
    daemon = site.daemon
    if daemon is None:
        if site.status != "offline":
            found.append(Finding("no_health", "no daemon health report"))
        return found
    if site.status == "online":
        silent = age_s(daemon.at, now)
        if silent is None or silent > limits.health_timeout_s:
            found.append(
                Finding(
                    "health_silent",
                    f"no health report for {format_age(silent)} "
                    f"(limit {format_age(limits.health_timeout_s)})",
                )
            )
    if daemon.lost:
        found.append(Finding("readings_lost", f"{daemon.lost} readings lost from the outbox"))
    if daemon.writable is False:
        found.append(Finding("outbox_unwritable", "the outbox cannot be written"))
    oldest = daemon.oldest_age_s
    if oldest is not None and oldest > limits.backlog_after_s:
        found.append(
            Finding(
                "backlog",
                f"outbox backlog: {daemon.depth} queued, oldest {format_age(oldest)}",
            )
        )
    return found


def _meter(site: SiteView, name: str, now: datetime, limits: Limits) -> list[Finding]:
    view = site.meters.get(name)
    latest = view.latest if view is not None else None
    if view is None or latest is None:
        found = [Finding("no_reading", "no reading yet", name)]
        if view is None:
            return found
    else:
        found = []
        age = age_s(latest.received_at, now)
        if age is None or age > limits.stale_after_s:
            found.append(
                Finding(
                    "stale",
                    f"stale: last reading {format_age(age)} ago "
                    f"(limit {format_age(limits.stale_after_s)})",
                    name,
                )
            )
    health = view.health
    if health is not None and health.connected is False:
        found.append(Finding("disconnected", f"meter not connected ({health.state})", name))
    for kind, alert in sorted(view.alerts.items()):
        if alert.active:
            detail = f": {alert.detail}" if alert.detail else ""
            found.append(Finding(f"alert_{kind}", f"ALERT {kind}{detail}", name))
    if (latest is not None and latest.meter_replaced) or (
        view.day is not None and view.day.meter_replaced
    ):
        found.append(Finding("meter_replaced", "meter_replaced (new baseline today)", name, False))
    if health is not None and health.dropped_total:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(health.dropped.items()))
        text = f"{health.dropped_total} telegrams dropped" + (f" ({reasons})" if reasons else "")
        found.append(Finding("dropped", text, name, False))
    return found
