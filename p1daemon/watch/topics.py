"""The subscriptions for a list of topic prefixes, and what an arriving topic means.

A prefix may be a plain topic (`p1`, `coop/site-7`) or contain `+` levels (`+` alone
watches every single-level prefix on the broker, `coop/+` every site under `coop`).
Each prefix gets a handful of exact filters rather than `<prefix>/#`, so the broker
never sends us a `reading` (one a second per meter) that the view does not need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["status", "latest", "health", "day", "daemon", "connection", "alert"]

# Below the prefix: (levels after the prefix, kind). "*" is a meter (or alert) name.
_SUFFIXES: tuple[tuple[tuple[str, ...], Kind], ...] = (
    (("status",), "status"),
    (("daemon", "health"), "daemon"),
    (("site", "connection"), "connection"),
    (("*", "latest"), "latest"),
    (("*", "health"), "health"),
    (("*", "day"), "day"),
    (("*", "alert", "*"), "alert"),
)
_NOT_METERS = frozenset({"daemon", "site"})


class PrefixError(ValueError):
    """A `--prefix` that cannot be watched; the message is one line for the user."""


def checked_prefix(value: str) -> str:
    """A topic prefix as the daemon allows it, or one with whole `+` levels."""
    if not value or value.startswith("/") or value.endswith("/"):
        raise PrefixError(f"prefix {value!r}: must be non-empty and not start or end with '/'")
    if "#" in value or "\0" in value:
        raise PrefixError(f"prefix {value!r}: '#' is not allowed (use '+' for one level)")
    for level in value.split("/"):
        if "+" in level and level != "+":
            raise PrefixError(f"prefix {value!r}: '+' must be a whole level, like 'coop/+'")
        if not level:
            raise PrefixError(f"prefix {value!r}: has an empty level ('//')")
    return value


def subscriptions(prefixes: tuple[str, ...]) -> list[str]:
    """The topic filters for every prefix (duplicates removed, order kept)."""
    filters: list[str] = []
    for prefix in prefixes:
        for levels, _kind in _SUFFIXES:
            suffix = "/".join("+" if level == "*" else level for level in levels)
            topic_filter = f"{prefix}/{suffix}"
            if topic_filter not in filters:
                filters.append(topic_filter)
    return filters


@dataclass(frozen=True, slots=True)
class Topic:
    prefix: str
    kind: Kind
    meter: str | None = None  # latest, health, day, alert
    name: str | None = None  # the alert's kind (export_limit, capacity, ...)


class TopicParser:
    """Tells which site and document a topic is, for the prefixes being watched."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self._patterns = [tuple(prefix.split("/")) for prefix in prefixes]

    def parse(self, topic: str) -> Topic | None:
        levels = tuple(topic.split("/"))
        for pattern in self._patterns:
            n = len(pattern)
            if len(levels) <= n or not _matches(pattern, levels[:n]):
                continue
            prefix = "/".join(levels[:n])
            rest = levels[n:]
            for suffix, kind in _SUFFIXES:
                if len(rest) != len(suffix):
                    continue
                if all(want == "*" or want == got for want, got in zip(suffix, rest, strict=True)):
                    if suffix[0] == "*":
                        if rest[0] in _NOT_METERS or not rest[0]:
                            continue
                        return Topic(prefix, kind, rest[0], rest[2] if kind == "alert" else None)
                    return Topic(prefix, kind)
        return None


def _matches(pattern: tuple[str, ...], levels: tuple[str, ...]) -> bool:
    return all(want in ("+", got) for want, got in zip(pattern, levels, strict=True))
