"""The MQTT topic names: a public contract, so they are spelled out in one place only."""

from __future__ import annotations

from dataclasses import dataclass

# `<prefix>/daemon/health` and `<prefix>/site/connection` share their level with meter
# names, so no meter may be called either.
RESERVED_METER_NAMES = frozenset({"daemon", "site"})


def checked_topic_prefix(value: str) -> str:
    """A prefix every topic hangs under: must be a plain topic, usable in filters too.

    Shared by the `[mqtt]` and `[homeassistant]` settings so both reject the same things.
    """
    if not value or value.startswith("/") or value.endswith("/"):
        raise ValueError("must be non-empty and must not start or end with '/'")
    if any(char in value for char in "+#\0"):
        raise ValueError("must not contain the MQTT wildcards '+' or '#'")
    if value.startswith("$"):
        # MQTT keeps topics starting with '$' for the broker ($SYS): a subscription to
        # '#' never matches them and brokers may refuse or drop what clients publish there.
        raise ValueError(
            f"must not start with '$' (topics starting with '$' belong to the broker, "
            f"e.g. $SYS; nothing published there reaches subscribers), got {value!r}"
        )
    return value


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
