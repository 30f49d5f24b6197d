"""Everything energy-related the daemon publishes for a reading, as (topic, payload) pairs.

One object for the whole site, so the MQTT layer needs a single call per reading:

    tracker = EnergyTracker(config.site, meters, topic_prefix)
    for message in tracker.on_reading(reading, now=datetime.now(UTC)):
        publish(message)   # retained, QoS 1; `durable` ones in order through the outbox

and `tracker.connection_due(now)` now and then (the sink: every second), so a meter that
goes silent shows up as stale on `<prefix>/site/connection` within
`connection_interval_s`.

`Outgoing.durable` marks the documents that are records (quarters, days, export alerts):
a subscriber that stores them needs every one, in order, across broker outages, so the
MQTT layer sends them through its outbox. The connection document is a state that is
refreshed every few seconds: newest wins.

Feed it every accepted reading, before any `publish_interval_s` throttling: the views
need the readings around each quarter boundary, and an export alert needs to see every
dip. Thread-safe (readers of several meters call it concurrently). Pure otherwise: no
I/O and no clock of its own; it only logs (once per event) when a meter's timeline
starts over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from p1daemon.reading.meter import MeterReading, Role
from p1daemon.views.document import document_json as _json
from p1daemon.views.energy.documents import DayDoc, QuarterDoc, RegisterState
from p1daemon.views.energy.export_cap import ExportLimitMonitor
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.site import MeterState, connection_document
from p1daemon.views.energy.view import EnergyView

log = logging.getLogger("p1daemon.energy")

# `site` shares its topic level with meter names (like `daemon`): no meter may be called so.
SITE_LEVEL = "site"


@dataclass(frozen=True, slots=True)
class EnergyTopics:
    prefix: str

    def quarter(self, meter: str) -> str:
        return f"{self.prefix}/{meter}/quarter"

    def day(self, meter: str) -> str:
        return f"{self.prefix}/{meter}/day"

    def export_alert(self, meter: str) -> str:
        return f"{self.prefix}/{meter}/alert/export_limit"

    @property
    def connection(self) -> str:
        return f"{self.prefix}/{SITE_LEVEL}/connection"


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """The parts of a `[[meters]]` entry the energy side needs."""

    name: str
    role: Role
    ean: str | None = None
    export_limit_kw: float | None = None
    export_limit_hold_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish retained with QoS 1; `durable`: through the outbox, in order."""

    topic: str
    payload: bytes
    durable: bool = False


@dataclass(slots=True)
class _Meter:
    spec: MeterSpec
    view: EnergyView
    cap: ExportLimitMonitor | None
    latest: MeterReading | None = None
    quarter: QuarterDoc | None = None
    day: DayDoc | None = None


class EnergyTracker:
    def __init__(
        self,
        site: SiteSettings,
        meters: Sequence[MeterSpec],
        topic_prefix: str,
        *,
        connection_interval_s: float = 10.0,
    ) -> None:
        if any(spec.name == SITE_LEVEL for spec in meters):
            raise ValueError(f"a meter may not be called {SITE_LEVEL!r} (topic {SITE_LEVEL}/...)")
        self.site = site
        self.topics = EnergyTopics(topic_prefix)
        self.connection_interval_s = connection_interval_s
        self._lock = threading.Lock()
        self._meters: dict[str, _Meter] = {spec.name: self._new_meter(spec) for spec in meters}
        self._last_connection: datetime | None = None

    def _new_meter(self, spec: MeterSpec) -> _Meter:
        cap = None
        if spec.export_limit_kw is not None:
            cap = ExportLimitMonitor(spec.name, spec.export_limit_kw, spec.export_limit_hold_s)
        return _Meter(spec, EnergyView(spec.name, spec.role, spec.ean, self.site), cap)

    def reconfigure(self, site: SiteSettings, meters: Sequence[MeterSpec]) -> list[str]:
        """A reload: meters whose spec (and the site) are unchanged keep their running
        quarter and day; the others start over (their `restore` may follow). Returns the
        names of the meters that start over, new ones included."""
        if any(spec.name == SITE_LEVEL for spec in meters):
            raise ValueError(f"a meter may not be called {SITE_LEVEL!r} (topic {SITE_LEVEL}/...)")
        with self._lock:
            site_changed = site != self.site
            self.site = site
            kept: dict[str, _Meter] = {}
            fresh = []
            for spec in meters:
                known = self._meters.get(spec.name)
                if known is not None and known.spec == spec and not site_changed:
                    kept[spec.name] = known
                else:
                    kept[spec.name] = self._new_meter(spec)
                    fresh.append(spec.name)
            self._meters = kept
            return fresh

    @property
    def meter_names(self) -> list[str]:
        return list(self._meters)

    def restore(self, meter: str, day_document: bytes, opening: bytes | None = None) -> bool:
        """Continue `meter`'s day from its last published day document (see
        `EnergyView.restore`); call before its first reading. False if it does not fit.
        With `opening` (saved from `quarter_openings()` at the same time) the running
        quarter continues whole, as the history does."""
        with self._lock:
            state = self._meters.get(meter)
            if state is None:
                return False
            try:
                doc = DayDoc.model_validate_json(day_document)
                saved = None if opening is None else RegisterState.model_validate_json(opening)
            except ValueError:
                return False
            if not state.view.restore(doc, opening=saved):
                return False
            state.day = doc
            return True

    def on_reading(self, reading: MeterReading, *, now: datetime) -> list[Outgoing]:
        with self._lock:
            state = self._meters.get(reading.meter)
            if state is None:
                return []
            out: list[Outgoing] = []
            state.latest = reading
            views = state.view.feed(reading)
            if views.restarted is not None:
                log.info(
                    "meter %s: the meter's clock went back (from %s to %s) and its registers "
                    "went down: the energy views start a new baseline (a replay starting "
                    "over, or a replaced meter)",
                    reading.meter,
                    views.restarted[0].isoformat(),
                    views.restarted[1].isoformat(),
                )
            for quarter in views.quarters:
                state.quarter = quarter
                out.append(Outgoing(self.topics.quarter(reading.meter), _json(quarter), True))
            for day in views.days:
                state.day = day
                out.append(Outgoing(self.topics.day(reading.meter), _json(day), True))
            if state.cap is not None:
                alert = state.cap.feed(reading)
                if alert is not None:
                    topic = self.topics.export_alert(reading.meter)
                    out.append(Outgoing(topic, _json(alert), True))
            due = (
                self._last_connection is None
                or (now - self._last_connection).total_seconds() >= self.connection_interval_s
            )
            if views.quarters or due:
                out.append(self._connection(now))
            return out

    def running_days(self) -> dict[str, bytes]:
        """Each meter's day so far, booked up to its last reading (not only up to the last
        closed quarter, as the published document is): what to save at a clean stop, so
        that a restart within the same quarter-hour continues without a gap."""
        with self._lock:
            out = {}
            for name, state in self._meters.items():
                doc = state.view.current_day()
                if doc is not None:
                    out[name] = _json(doc)
            return out

    def quarter_openings(self) -> dict[str, bytes]:
        """Each meter's running quarter's opening reading while nothing is missing in it:
        save it beside `running_days()` and pass it to `restore`, and a restart inside
        the quarter continues it whole (the quarter document then equals the history's
        row instead of being flagged `start_missing`)."""
        with self._lock:
            out = {}
            for name, state in self._meters.items():
                opening = state.view.quarter_opening()
                if opening is not None:
                    out[name] = _json(opening)
            return out

    def connection(self, now: datetime) -> Outgoing:
        """The connection document now (call periodically so silence shows as stale)."""
        with self._lock:
            return self._connection(now)

    def connection_due(self, now: datetime) -> Outgoing | None:
        """The connection document if none went out for `connection_interval_s`: readings
        refresh it while they come, this keeps it going (and going stale) when they stop."""
        with self._lock:
            last = self._last_connection
            if last is not None and (now - last).total_seconds() < self.connection_interval_s:
                return None
            return self._connection(now)

    def connection_wait(self, now: datetime) -> float:
        """Seconds until `connection_due(now)` has a document (0 or less: it has now)."""
        with self._lock:
            last = self._last_connection
            if last is None:
                return 0.0
            return self.connection_interval_s - (now - last).total_seconds()

    def initial(self, meters: Sequence[str] | None = None) -> list[Outgoing]:
        """Inactive export-limit documents, to publish once at start-up so a retained
        alert from before a restart does not stay up forever (`meters`: only these)."""
        with self._lock:
            return [
                Outgoing(self.topics.export_alert(name), _json(state.cap.state()), True)
                for name, state in self._meters.items()
                if state.cap is not None and (meters is None or name in meters)
            ]

    def _connection(self, now: datetime) -> Outgoing:
        self._last_connection = now
        states = [
            MeterState(m.spec.name, m.spec.role, m.spec.ean, m.latest, m.quarter, m.day)
            for m in self._meters.values()
        ]
        doc = connection_document(states, self.site, now)
        return Outgoing(self.topics.connection, _json(doc))
