"""Stops a repeating message (a meter with a loose cable) from filling the SD card.

The first occurrence of a message goes through; identical ones from the same logger are
then dropped for a window, and the next one after the window carries how many were
dropped. Identical means the same rendered text and level: a template like "meter %s
lost" must not let one meter's trouble hide another's. Code whose repeated message varies
(a counter, a byte offset) can pass `extra={"rate_key": "..."}` to group the variants.

Some records answer a question somebody is waiting on, above all the outcome of a
`systemctl reload`: holding back the second identical "reload refused" would leave the
user believing the reload went through. Those pass `extra=ALWAYS_LOG` and are never held
back (nor counted against the message they resemble).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

# Attribute set on a record that went through after suppressions; the formatter shows it.
SUPPRESSED_ATTR = "p1_suppressed"

# Record attribute (set through `extra=ALWAYS_LOG`) exempting a record from the limit.
ALWAYS_ATTR = "p1_always"
ALWAYS_LOG: Final = MappingProxyType({ALWAYS_ATTR: True})

DEFAULT_WINDOW_S = 60.0
# Distinct messages remembered at most; beyond it the stalest are forgotten, so a stream
# of ever-different messages cannot grow memory without bound.
_MAX_KEYS = 2048


@dataclass
class _Entry:
    window_start: float
    suppressed: int = 0


class RateLimitFilter(logging.Filter):
    """A handler filter; thread-safe because readers log from their own threads.

    DEBUG records pass untouched: whoever asked for debug output wants all of it; so do
    records logged with `extra=ALWAYS_LOG`.
    """

    def __init__(
        self,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._window = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int, str], _Entry] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or getattr(record, ALWAYS_ATTR, False):
            return True
        custom = getattr(record, "rate_key", None)
        text = str(custom) if custom is not None else _render(record)
        key = (record.name, record.levelno, text)
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry.window_start < self._window:
                entry.suppressed += 1
                return False
            if entry is not None and entry.suppressed:
                setattr(record, SUPPRESSED_ATTR, entry.suppressed)
            self._entries.pop(key, None)  # re-insert: dict order is then staleness order
            self._entries[key] = _Entry(now)
            if len(self._entries) > _MAX_KEYS:
                self._forget(now)
        return True

    def _forget(self, now: float) -> None:
        """Drop the stalest entries: insertion order is window-start order, so they lead."""
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if len(self._entries) <= _MAX_KEYS and now - entry.window_start < self._window:
                return
            del self._entries[key]


def _render(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a bad format string is the formatter's problem to report
        return str(record.msg)
