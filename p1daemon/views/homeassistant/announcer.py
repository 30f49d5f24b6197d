"""When to publish discovery configs: first reading, changes, and Home Assistant restarts.

The MQTT layer drives this object and publishes what it returns (retained, QoS 1):

- `on_reading(reading)` for every accepted reading: returns the configs that are new or
  different from what was last announced for that meter (first reading: all of them;
  later only when a register appears or the meter's identity changes, e.g. a new DSMR
  version after a meter replacement). Cheap when nothing changed: no JSON is built.
- `on_ha_status(payload)` for messages on `<ha prefix>/status`: on "online" (Home
  Assistant's birth message after it restarts) returns every config announced so far.
- `on_connected()` after each broker (re)connection: every config again, because a
  broker without persistence forgets retained messages when it restarts.

A register that stops appearing keeps its entity (and its config in re-announcements):
deleting it would throw away the entity's history because of one short telegram or an
M-Bus device that missed a reading. The entities of a meter removed from the
configuration by a reload are removed (`reconfigure`: empty retained configs).
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Collection, Mapping
from itertools import chain
from typing import Any

from p1daemon.publish.topics import Topics
from p1daemon.reading.doc import Doc
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import MbusDevice
from p1daemon.views.homeassistant.discovery import DiscoveryMessage, discovery_messages
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

HA_ONLINE = "online"


# What of a reading's top level names its device and its configs, straight from its
# `__dict__` (p1daemon/reading/doc.py: every field is there, under its JSON name).
_IDENTITY = operator.itemgetter(
    "meter", "role", "ean", "equipment_id", "header", "manufacturer", "dsmr_version",
    "version_code",
)  # fmt: skip
# The blocks whose every field may become a sensor. Each holds every one of its fields,
# in field order, so the null-ness of their values one after the other is their shape.
_BLOCKS = operator.itemgetter(
    "import", "export", "voltage", "current", "voltage_sags", "voltage_swells"
)
_FIELDS = operator.attrgetter("__dict__")


def _nulls(*blocks: Doc) -> tuple[type, ...]:
    """Which fields of `blocks` are null, one after the other, all in C: as the type of
    each (NoneType where null), which says at least that and costs a third less than
    asking `is None` of each (a type that changes, never seen from the parser, only
    costs configs made anew and found unchanged)."""
    return tuple(map(type, chain.from_iterable(map(dict.values, map(_FIELDS, blocks)))))


def _mbus_shape(device: MbusDevice) -> tuple[Any, ...]:
    return (
        device.channel,
        device.device_type,
        device.kind,
        device.equipment_id,
        device.unit,
        device.value is None,
        device.timestamp is None,
    )


def _shape(reading: MeterReading) -> tuple[Any, ...]:
    """What decides the set of configs, without building them: which fields are non-null.
    Compared with the meter's previous shape on every reading, so it is built cheaply."""
    values = reading.__dict__
    capacity = values["capacity"]
    failures = values["power_failures"]
    return (
        _IDENTITY(values),
        _nulls(*_BLOCKS(values)),
        values["tariff"] is None,
        failures.short is None,
        failures.long is None,
        None
        if capacity is None
        else (
            capacity.average_demand_kw is None,
            capacity.month_max_kw is None,
            capacity.month_max_at is None,
        ),
        tuple(map(_mbus_shape, values["mbus"])),
    )


class DiscoveryAnnouncer:
    def __init__(
        self,
        settings: HomeAssistantSettings,
        topics: Topics,
        *,
        tariff_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self._labels = tariff_labels or {}
        self._lock = threading.Lock()  # readers of several meters may call concurrently
        self._shapes: dict[str, tuple[Any, ...]] = {}
        # unique_id -> the message last announced, in first-announced order
        self._announced: dict[str, DiscoveryMessage] = {}

    @property
    def ha_status_topic(self) -> str:
        """Subscribe to this (QoS 1) and pass its messages to `on_ha_status`."""
        return f"{self.settings.prefix}/status"

    def on_reading(self, reading: MeterReading) -> list[DiscoveryMessage]:
        if not self.settings.discovery:
            return []
        shape = _shape(reading)
        with self._lock:
            if self._shapes.get(reading.meter) == shape:
                return []
            self._shapes[reading.meter] = shape
            fresh = discovery_messages(
                reading,
                self.settings,
                self.topics,
                tariff_labels=self._labels.get(reading.meter),
            )
            changed = []
            for message in fresh:
                known = self._announced.get(message.unique_id)
                if known is None or known.payload != message.payload:
                    self._announced[message.unique_id] = message
                    changed.append(message)
            changed.extend(self._refresh_kept(reading, fresh))
            return changed

    def _refresh_kept(
        self, reading: MeterReading, fresh: list[DiscoveryMessage]
    ) -> list[DiscoveryMessage]:
        """Entities this reading no longer carries keep their config, with the new device
        block, so that re-announcing them cannot roll back the device's name or version."""
        if not fresh:
            return []
        devices = {m.payload["device"]["identifiers"][0]: m.payload["device"] for m in fresh}
        current = {m.unique_id for m in fresh}
        out = []
        state_topic = self.topics.latest(reading.meter)
        for unique_id, message in list(self._announced.items()):
            payload = message.payload
            if unique_id in current or payload["state_topic"] != state_topic:
                continue
            device = devices.get(payload["device"]["identifiers"][0])
            if device is not None and device != payload["device"]:
                updated = DiscoveryMessage(message.topic, {**payload, "device": device}, unique_id)
                self._announced[unique_id] = updated
                out.append(updated)
        return out

    def reconfigure(
        self, meters: Collection[str], tariff_labels: Mapping[str, Mapping[str, str]]
    ) -> list[str]:
        """A reload: the configured meters are now `meters`. Returns the config topics of
        the entities of meters no longer configured (publish an empty retained payload on
        each to remove them from Home Assistant); they are no longer announced. A meter
        whose tariff labels changed is announced afresh at its next reading."""
        with self._lock:
            gone = [m for m in self._shapes if m not in meters]
            for meter, labels in tariff_labels.items():
                if self._labels.get(meter, {}) != labels:
                    self._shapes.pop(meter, None)
            self._labels = dict(tariff_labels)
            removed = []
            state_topics = {self.topics.latest(meter) for meter in gone}
            for unique_id, message in list(self._announced.items()):
                if message.payload["state_topic"] in state_topics:
                    del self._announced[unique_id]
                    removed.append(message.topic)
            for meter in gone:
                del self._shapes[meter]
            return removed

    def on_ha_status(self, payload: bytes | str) -> list[DiscoveryMessage]:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        if not self.settings.discovery or text.strip() != HA_ONLINE:
            return []
        return self.all_messages()

    def on_connected(self) -> list[DiscoveryMessage]:
        return self.all_messages() if self.settings.discovery else []

    def all_messages(self) -> list[DiscoveryMessage]:
        with self._lock:
            return list(self._announced.values())
