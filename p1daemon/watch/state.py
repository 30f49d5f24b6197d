"""The fleet as its retained documents describe it, fed one MQTT message at a time.

Only the few fields the view shows are kept, each read defensively: a payload from an
older or newer daemon, or from something else entirely on the same topic, leaves the
field unknown (shown as "-") instead of breaking the view. An empty retained payload
is the broker's "deleted": the document is forgotten, and a site or meter with nothing
left disappears.

Times in documents are the publishing daemon's clock (ages assume NTP on both ends);
`seen` times are this process's own clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from p1daemon.watch.topics import Topic


def _num(doc: Any, *path: str) -> float | None:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    if isinstance(doc, bool) or not isinstance(doc, int | float):
        return None
    return float(doc)


def _str(doc: Any, key: str) -> str | None:
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def _bool(doc: Any, key: str) -> bool | None:
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, bool) else None


def _time(doc: Any, key: str) -> datetime | None:
    text = _str(doc, key)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(slots=True)
class Latest:
    """`<prefix>/<meter>/latest`: the newest reading."""

    role: str | None
    ean: str | None
    import_kw: float | None
    export_kw: float | None
    received_at: datetime | None  # when the daemon accepted it
    meter_time: datetime | None  # the meter's own timestamp
    meter_replaced: bool

    @classmethod
    def parse(cls, doc: Any) -> Latest:
        return cls(
            role=_str(doc, "role"),
            ean=_str(doc, "ean"),
            import_kw=_num(doc, "import", "power_kw"),
            export_kw=_num(doc, "export", "power_kw"),
            received_at=_time(doc, "received_at"),
            meter_time=_time(doc, "timestamp"),
            meter_replaced=_bool(doc, "meter_replaced") is True,
        )


@dataclass(slots=True)
class MeterHealth:
    """`<prefix>/<meter>/health`: the meter reader's counters."""

    connected: bool | None
    state: str | None
    dropped_total: int
    dropped: dict[str, int]
    at: datetime | None

    @classmethod
    def parse(cls, doc: Any) -> MeterHealth:
        raw = doc.get("dropped") if isinstance(doc, dict) else None
        dropped = {
            str(reason): int(count)
            for reason, count in (raw.items() if isinstance(raw, dict) else ())
            if isinstance(count, int) and not isinstance(count, bool)
        }
        total = _num(doc, "dropped_total")
        return cls(
            connected=_bool(doc, "connected"),
            state=_str(doc, "state"),
            dropped_total=int(total) if total is not None else sum(dropped.values()),
            dropped=dropped,
            at=_time(doc, "at"),
        )


@dataclass(slots=True)
class Day:
    """`<prefix>/<meter>/day`: the running day (or the final document of the last one)."""

    date: str | None
    import_kwh: float | None
    export_kwh: float | None
    meter_replaced: bool
    role: str | None
    ean: str | None

    @classmethod
    def parse(cls, doc: Any) -> Day:
        return cls(
            date=_str(doc, "date"),
            import_kwh=_num(doc, "import", "total_kwh"),
            export_kwh=_num(doc, "export", "total_kwh"),
            meter_replaced=_bool(doc, "meter_replaced") is True,
            role=_str(doc, "role"),
            ean=_str(doc, "ean"),
        )


@dataclass(slots=True)
class Alert:
    """`<prefix>/<meter>/alert/<kind>`: shown when its payload says `active: true`."""

    active: bool
    detail: str | None

    @classmethod
    def parse(cls, doc: Any) -> Alert:
        detail = None
        value, limit = _num(doc, "export_kw"), _num(doc, "limit_kw")
        if value is not None and limit is not None:
            detail = f"{value:.3f} kW, limit {limit:g} kW"
        else:
            message = _str(doc, "message")
            detail = message
        return cls(active=_bool(doc, "active") is True, detail=detail)


@dataclass(slots=True)
class DaemonHealth:
    """`<prefix>/daemon/health`: the outbox and the daemon itself."""

    at: datetime | None
    version: str | None
    uptime_s: float | None
    depth: int | None
    oldest_age_s: float | None
    lost: int  # readings dropped from a full outbox, or lost to a corrupt file
    writable: bool | None
    meters: tuple[str, ...]

    @classmethod
    def parse(cls, doc: Any) -> DaemonHealth:
        depth = _num(doc, "outbox", "depth")
        lost = sum(
            int(_num(doc, "outbox", key) or 0)
            for key in ("dropped_full", "dropped_memory", "lost_corrupt")
        )
        meters = doc.get("meters") if isinstance(doc, dict) else None
        outbox = doc.get("outbox") if isinstance(doc, dict) else None
        return cls(
            at=_time(doc, "at"),
            version=_str(doc, "version"),
            uptime_s=_num(doc, "uptime_s"),
            depth=None if depth is None else int(depth),
            oldest_age_s=_num(doc, "outbox", "oldest_age_s"),
            lost=lost,
            writable=_bool(outbox, "writable"),
            meters=tuple(m for m in meters if isinstance(m, str))
            if isinstance(meters, list)
            else (),
        )


@dataclass(slots=True)
class Figures:
    import_kw: float | None = None
    export_kw: float | None = None
    net_kw: float | None = None
    today_import_kwh: float | None = None
    today_export_kwh: float | None = None

    @classmethod
    def parse(cls, doc: Any) -> Figures:
        return cls(
            import_kw=_num(doc, "power", "import_kw"),
            export_kw=_num(doc, "power", "export_kw"),
            net_kw=_num(doc, "power", "net_kw"),
            today_import_kwh=_num(doc, "today", "import_kwh"),
            today_export_kwh=_num(doc, "today", "export_kwh"),
        )


@dataclass(slots=True)
class Connection:
    """`<prefix>/site/connection`: the grid connection and each allocation point."""

    topology: str | None
    at: datetime | None
    total: Figures
    points: dict[str, Figures]  # each allocation point, by meter name
    derived: tuple[str, ...]  # series: the primary point, whose figures are its own share
    warnings: list[tuple[str, str]]  # (code, text)

    @classmethod
    def parse(cls, doc: Any) -> Connection:
        points = doc.get("points") if isinstance(doc, dict) else None
        valid = [p for p in (points if isinstance(points, list) else ()) if isinstance(p, dict)]
        figures = {str(point.get("meter")): Figures.parse(point) for point in valid}
        derived = tuple(str(point.get("meter")) for point in valid if point.get("derived") is True)
        raw = doc.get("warnings") if isinstance(doc, dict) else None
        warnings = []
        for item in raw if isinstance(raw, list) else ():
            text = _str(item, "message") or _str(item, "code") or "warning"
            meter = _str(item, "meter")
            code = _str(item, "code") or "warning"
            warnings.append((code, f"{meter}: {text}" if meter else text))
        return cls(
            topology=_str(doc, "topology"),
            at=_time(doc, "at"),
            total=Figures.parse(doc.get("connection") if isinstance(doc, dict) else None),
            points=figures,
            derived=derived,
            warnings=warnings,
        )


@dataclass(slots=True)
class MeterView:
    name: str
    latest: Latest | None = None
    health: MeterHealth | None = None
    day: Day | None = None
    alerts: dict[str, Alert] = field(default_factory=dict)

    @property
    def role(self) -> str | None:
        for doc in (self.latest, self.day):
            if doc is not None and doc.role:
                return doc.role
        return None

    @property
    def ean(self) -> str | None:
        for doc in (self.latest, self.day):
            if doc is not None and doc.ean:
                return doc.ean
        return None

    def empty(self) -> bool:
        return self.latest is None and self.health is None and self.day is None and not self.alerts


@dataclass(slots=True)
class SiteView:
    prefix: str
    status: str | None = None  # "online" / "offline" as published, None before any
    status_seen: datetime | None = None
    daemon: DaemonHealth | None = None
    connection: Connection | None = None
    meters: dict[str, MeterView] = field(default_factory=dict)

    def meter(self, name: str) -> MeterView:
        view = self.meters.get(name)
        if view is None:
            view = self.meters[name] = MeterView(name)
        return view

    def meter_names(self) -> list[str]:
        """Every meter any document names: the daemon's list first, in its order."""
        names = list(self.daemon.meters) if self.daemon is not None else []
        names += sorted(name for name in self.meters if name not in names)
        return names

    def empty(self) -> bool:
        return (
            self.status is None
            and self.daemon is None
            and self.connection is None
            and not self.meters
        )


class Fleet:
    """Every site seen so far; `feed` is the only way in."""

    def __init__(self) -> None:
        self.sites: dict[str, SiteView] = {}
        self.messages = 0
        self.ignored = 0  # payloads that were not the JSON object their topic promises

    def feed(self, topic: Topic, payload: bytes, seen: datetime) -> None:
        self.messages += 1
        site = self.sites.get(topic.prefix)
        if site is None:
            if not payload:
                return
            site = self.sites[topic.prefix] = SiteView(topic.prefix)
        if topic.kind == "status":
            site.status = payload.decode("utf-8", "replace").strip() or None
            site.status_seen = seen
        else:
            doc: Any = None
            if payload:
                try:
                    doc = json.loads(payload)
                except ValueError:
                    doc = None
                if not isinstance(doc, dict):
                    self.ignored += 1
                    return
            self._apply(site, topic, doc)
        if site.empty():
            del self.sites[topic.prefix]

    @staticmethod
    def _apply(site: SiteView, topic: Topic, doc: dict[str, Any] | None) -> None:
        if topic.kind == "daemon":
            site.daemon = None if doc is None else DaemonHealth.parse(doc)
            return
        if topic.kind == "connection":
            site.connection = None if doc is None else Connection.parse(doc)
            return
        assert topic.meter is not None
        meter = site.meter(topic.meter)
        if topic.kind == "latest":
            meter.latest = None if doc is None else Latest.parse(doc)
        elif topic.kind == "health":
            meter.health = None if doc is None else MeterHealth.parse(doc)
        elif topic.kind == "day":
            meter.day = None if doc is None else Day.parse(doc)
        elif topic.kind == "alert" and topic.name is not None:
            if doc is None:
                meter.alerts.pop(topic.name, None)
            else:
                meter.alerts[topic.name] = Alert.parse(doc)
        if meter.empty():
            del site.meters[topic.meter]
