"""Per-meter counters that health reports and logs are built from."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class MeterStats:
    """Updated by one reader thread, read by the health publisher: hence the lock."""

    accepted: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    last_reading_at: datetime | None = None
    connected: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_accepted(self, at: datetime) -> None:
        with self._lock:
            self.accepted += 1
            self.last_reading_at = at

    def count_dropped(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1

    def count_reconnect(self) -> None:
        with self._lock:
            self.reconnects += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "accepted": self.accepted,
                "dropped": dict(self.dropped),
                "dropped_total": sum(self.dropped.values()),
                "reconnects": self.reconnects,
                "connected": self.connected,
                "last_reading_at": self.last_reading_at.isoformat() if self.last_reading_at else None,
            }
