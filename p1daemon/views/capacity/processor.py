"""`CapacityProcessor`: the capacity tariff watch as a processor of the dispatcher.

Per metering point with `capacity = "auto"` (the default: only once the meter sends
capacity data, i.e. a Belgian e-MUCS meter) or `"on"` (any meter, computed from its
import registers): every reading refreshes the retained `<prefix>/<meter>/capacity`
document (state, newest wins) and may raise or clear `<prefix>/<meter>/alert/capacity`
(a record: through the outbox, none lost). An inactive alert goes out once per meter at
start-up ("on") or with its first capacity reading ("auto"), so an alert retained from
before a restart does not stay up.

Nothing is saved: the meter's own peaks are the authority and arrive with the next
reading; a computed month peak (`"on"` on a meter without capacity data) starts over
with the daemon. (Monthly peaks in the history are the history view's job.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from p1daemon.daemon.processor import Document, InputEvent
from p1daemon.reading.meter import MeterReading
from p1daemon.views.capacity.alert import CapacityAlarm
from p1daemon.views.capacity.compute import CapacityWatch
from p1daemon.views.document import document_json as _json

if TYPE_CHECKING:
    from p1daemon.config.model import Config

Mode = Literal["auto", "on", "off"]


@dataclass(frozen=True, slots=True)
class CapacitySpec:
    name: str
    ean: str | None
    mode: Mode = "auto"
    target_kw: float | None = None
    margin_kw: float = 0.0
    hold_s: float = 30.0


def capacity_topic(prefix: str, meter: str) -> str:
    return f"{prefix}/{meter}/capacity"


def alert_topic(prefix: str, meter: str) -> str:
    return f"{prefix}/{meter}/alert/capacity"


def specs_of(config: Config) -> list[CapacitySpec]:
    return [
        CapacitySpec(
            m.name,
            m.ean,
            m.capacity,
            m.capacity_target_kw,
            m.capacity_margin_kw,
            m.capacity_hold_s,
        )
        for m in config.meters
    ]


def wanted(config: Config) -> bool:
    return any(m.capacity != "off" for m in config.meters)


class _Meter:
    def __init__(self, spec: CapacitySpec, zone: ZoneInfo) -> None:
        self.spec = spec
        self.watch = CapacityWatch(spec.name, spec.ean, zone)
        self.alarm = CapacityAlarm(
            spec.name, margin_kw=spec.margin_kw, hold_s=spec.hold_s, target_kw=spec.target_kw
        )
        self.announced = False


class CapacityProcessor:
    """See the module docstring."""

    name = "capacity"
    label = "the capacity tariff watch"

    def __init__(self, specs: Sequence[CapacitySpec], zone: ZoneInfo, prefix: str) -> None:
        self.zone = zone
        self.prefix = prefix
        self._meters = {s.name: _Meter(s, zone) for s in specs if s.mode != "off"}

    @classmethod
    def from_config(cls, config: Config) -> CapacityProcessor:
        return cls(specs_of(config), config.site.zone, config.mqtt.topic_prefix)

    def start(self) -> Sequence[Document]:
        return [self._announce(m) for m in self._meters.values() if m.spec.mode == "on"]

    def on_reading(self, reading: MeterReading, now: datetime) -> Sequence[Document]:
        meter = self._meters.get(reading.meter)
        if meter is None or (meter.spec.mode == "auto" and reading.capacity is None):
            return ()
        update = meter.watch.feed(reading)
        if update is None:
            return ()
        out: list[Document] = []
        if not meter.announced:
            out.append(self._announce(meter))
        state = update.state
        raises = None
        projected = state.quarter.projected_kw
        if projected is not None:
            average = meter.watch.average_if_peak(projected)
            if average is not None:
                raises = round(max(average - state.rolling.average_kw, 0.0), 4)
        alerts = meter.alarm.feed(state, update.closed, raises)
        out.append(Document(capacity_topic(self.prefix, reading.meter), _json(state), False))
        topic = alert_topic(self.prefix, reading.meter)
        out.extend(Document(topic, _json(alert), True) for alert in alerts)
        return out

    def on_tick(self, now: datetime) -> Sequence[Document]:
        out: list[Document] = []
        for name, meter in self._meters.items():
            state = meter.watch.last_state
            if not meter.alarm.active or state is None:
                continue
            offset = timedelta(seconds=state.clock_offset_s or 0.0)
            alert = meter.alarm.tick(now + offset)
            if alert is not None:
                out.append(Document(alert_topic(self.prefix, name), _json(alert), True))
        return out

    def tick_due(self, now: datetime) -> float | None:
        """`TicksWhenDue`: only a raised warning has tick work, when its quarter ends
        without a reading (see `on_tick`); None while no warning is up."""
        due: float | None = None
        for meter in self._meters.values():
            at = meter.alarm.clears_at()
            state = meter.watch.last_state
            if at is None or state is None:
                continue
            meter_now = now + timedelta(seconds=state.clock_offset_s or 0.0)
            left = (at - meter_now).total_seconds()
            due = left if due is None else min(due, left)
        return due

    def on_event(self, event: InputEvent) -> Sequence[Document]:
        return ()

    def on_reload(self, config: Config) -> Sequence[Document] | None:
        """Meters whose capacity settings are unchanged keep their quarter and alert;
        changed or added ones start over. A new prefix or time zone: rebuilt (None)."""
        if config.mqtt.topic_prefix != self.prefix or config.site.zone != self.zone:
            return None
        fresh: dict[str, _Meter] = {}
        out: list[Document] = []
        for spec in specs_of(config):
            if spec.mode == "off":
                continue
            kept = self._meters.get(spec.name)
            if kept is not None and kept.spec == spec:
                fresh[spec.name] = kept
                continue
            meter = _Meter(spec, self.zone)
            fresh[spec.name] = meter
            if spec.mode == "on":
                out.append(self._announce(meter))
        for name, old in self._meters.items():
            if fresh.get(name) is not old:  # removed or changed: no warning left up
                alert = old.alarm.withdraw()
                if alert is not None:
                    out.append(Document(alert_topic(self.prefix, name), _json(alert), True))
        self._meters = fresh
        return out

    def stop(self) -> Sequence[Document]:
        return ()

    def _announce(self, meter: _Meter) -> Document:
        meter.announced = True
        return Document(alert_topic(self.prefix, meter.spec.name), _json(meter.alarm.state()), True)


__all__ = ["CapacityProcessor", "CapacitySpec", "alert_topic", "capacity_topic", "wanted"]
