"""The retained health reports: what a dashboard needs to see that nothing is being lost.

Reports go out every `health_interval_s` and as soon as something *significant* changes
(a connection lost or back, telegrams dropped, readings dropped from the outbox). Counts
that grow every second (accepted, published) are not "significant" on their own, or a
report would follow every telegram.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from p1daemon import __version__


@dataclass(frozen=True, slots=True)
class DaemonFigures:
    uptime_s: float
    broker_connected: bool
    broker_connects: int
    broker_failed_attempts: int
    broker_rejected: int
    depth: int
    in_memory: int
    on_disk: int
    oldest_age_s: float | None
    dropped_full: int
    dropped_memory: int
    lost_corrupt: int
    moved_aside: int
    outbox_writable: bool
    accepted: int
    published: int
    throttled: int
    meters: tuple[str, ...]
    # Documents (quarter, day, alerts) dropped from a full outbox; `dropped_full` is
    # readings only. Defaulted so that a caller that does not know documents still works.
    documents_dropped_full: int = 0
    # Connections dropped because the broker acknowledged nothing for ack_timeout_s.
    broker_ack_timeouts: int = 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def daemon_report(figures: DaemonFigures) -> dict[str, Any]:
    return {
        "version": __version__,
        "at": _now(),
        "uptime_s": round(figures.uptime_s, 1),
        "broker": {
            "connected": figures.broker_connected,
            "connects": figures.broker_connects,
            "reconnects": max(0, figures.broker_connects - 1),
            "failed_attempts": figures.broker_failed_attempts,
            "rejected_messages": figures.broker_rejected,
            "ack_timeouts": figures.broker_ack_timeouts,
        },
        "outbox": {
            "depth": figures.depth,
            "in_memory": figures.in_memory,
            "on_disk": figures.on_disk,
            "oldest_age_s": None
            if figures.oldest_age_s is None
            else round(figures.oldest_age_s, 1),
            "dropped_full": figures.dropped_full,
            "documents_dropped_full": figures.documents_dropped_full,
            "dropped_memory": figures.dropped_memory,
            "lost_corrupt": figures.lost_corrupt,
            "moved_aside": figures.moved_aside,
            "writable": figures.outbox_writable,
        },
        "readings": {
            "accepted": figures.accepted,
            "published": figures.published,
            "throttled": figures.throttled,
        },
        "meters": list(figures.meters),
    }


def meter_report(
    meter: str, stats: Mapping[str, Any] | None, *, submitted: int, published: int
) -> dict[str, Any]:
    """The meter reader's counters (accepted, dropped by reason, reconnects, last reading)
    plus what the publisher did with the readings it was handed."""
    report: dict[str, Any] = {"meter": meter, "version": __version__, "at": _now()}
    if stats is not None:
        report.update(stats)
    else:
        report["accepted"] = submitted
    report["submitted"] = submitted
    report["published"] = published
    return report


def daemon_signature(report: Mapping[str, Any]) -> tuple[Any, ...]:
    outbox = report["outbox"]
    return (
        report["broker"]["connects"],
        report["broker"]["rejected_messages"],
        report["broker"]["ack_timeouts"],
        outbox["dropped_full"],
        outbox["documents_dropped_full"],
        outbox["dropped_memory"],
        outbox["lost_corrupt"],
        outbox["moved_aside"],
        outbox["writable"],
        tuple(report["meters"]),
    )


def meter_signature(report: Mapping[str, Any]) -> tuple[Any, ...]:
    dropped = report.get("dropped")
    return (
        report.get("connected"),
        report.get("state"),  # reading | waiting | silent | ... (from the meter reader)
        report.get("reconnects"),
        tuple(sorted(dropped.items())) if isinstance(dropped, Mapping) else None,
    )
