"""`DiscoveryProcessor`: Home Assistant MQTT discovery as a processor of the dispatcher.

Discovery configs are retained state (newest wins). What the announcer returns for a
reading is sent only while a broker connection is known: a connection announces every
config recorded so far (a broker without persistence forgets them), so sending them
before it as well would send each config twice at start-up. Home Assistant's `online`
on `<ha prefix>/status` (its birth message after a restart) announces them all again;
the processor declares that topic in `subscriptions`, and the MQTT output subscribes to
it without knowing why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from p1daemon.daemon.processor import (
    BrokerConnected,
    BrokerDisconnected,
    BrokerMessage,
    Document,
    InputEvent,
)
from p1daemon.publish.payload import compact_json
from p1daemon.publish.topics import Topics
from p1daemon.reading.meter import MeterReading
from p1daemon.views.homeassistant.announcer import DiscoveryAnnouncer
from p1daemon.views.homeassistant.discovery import DiscoveryMessage

if TYPE_CHECKING:
    from p1daemon.config.model import Config

log = logging.getLogger("p1daemon.publish")


def _documents(configs: Sequence[DiscoveryMessage]) -> list[Document]:
    return [Document(c.topic, compact_json(c.payload), False) for c in configs]


class DiscoveryProcessor:
    name = "homeassistant"
    label = "Home Assistant discovery"

    def __init__(self, announcer: DiscoveryAnnouncer) -> None:
        self.announcer = announcer
        self._connected = False

    @classmethod
    def from_config(cls, config: Config) -> DiscoveryProcessor:
        announcer = DiscoveryAnnouncer(
            config.homeassistant,
            Topics(config.mqtt.topic_prefix),
            tariff_labels={m.name: m.tariff_labels for m in config.meters},
        )
        return cls(announcer)

    def subscriptions(self) -> Sequence[str]:
        return [self.announcer.ha_status_topic]

    def start(self) -> Sequence[Document]:
        return ()

    def on_reading(self, reading: MeterReading, now: datetime) -> Sequence[Document]:
        # Recorded by the announcer first, then sent only while connected (see above).
        configs = self.announcer.on_reading(reading)
        return _documents(configs) if configs and self._connected else ()

    def tick_due(self, now: datetime) -> float | None:
        """`TicksWhenDue`: discovery never has tick work (readings and events drive it)."""
        return None

    def on_tick(self, now: datetime) -> Sequence[Document]:
        return ()

    def on_event(self, event: InputEvent) -> Sequence[Document]:
        if isinstance(event, BrokerConnected):
            self._connected = True
            return _documents(self.announcer.on_connected())
        if isinstance(event, BrokerDisconnected):
            self._connected = False
            return ()
        if isinstance(event, BrokerMessage) and event.topic == self.announcer.ha_status_topic:
            configs = self.announcer.on_ha_status(event.payload)
            if configs:
                log.info(
                    "Home Assistant is online: announcing %d discovery configs again", len(configs)
                )
            return _documents(configs)
        return ()

    def on_reload(self, config: Config) -> Sequence[Document] | None:
        """A new meter set or new tariff labels in place; other `[homeassistant]` or
        topic changes need a new announcer (None: the builder rebuilds this processor)."""
        if (
            config.homeassistant != self.announcer.settings
            or config.mqtt.topic_prefix != self.announcer.topics.prefix
        ):
            return None
        removed = self.announcer.reconfigure(
            {m.name for m in config.meters}, {m.name: m.tariff_labels for m in config.meters}
        )
        if removed:
            log.info(
                "Home Assistant: removing %d entities of meters no longer configured", len(removed)
            )
        return [Document(topic, b"", False) for topic in removed]

    def stop(self) -> Sequence[Document]:
        return ()
