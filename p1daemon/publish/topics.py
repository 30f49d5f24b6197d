"""The MQTT topic names: a public contract, so they are spelled out in one place only."""

from __future__ import annotations

from dataclasses import dataclass

# `<prefix>/daemon/health` and `<prefix>/site/connection` share their level with meter
# names, so no meter may be called either.
RESERVED_METER_NAMES = frozenset({"daemon", "site"})


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def daemon_health(self) -> str:
        return f"{self.prefix}/daemon/health"

    def reading(self, meter: str) -> str:
        return f"{self.prefix}/{meter}/reading"

    def latest(self, meter: str) -> str:
        return f"{self.prefix}/{meter}/latest"

    def health(self, meter: str) -> str:
        return f"{self.prefix}/{meter}/health"
