"""Per-meter counters that health reports, status lines and logs are built from."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class MeterStats:
    """Updated by one reader thread, read by the health publisher: hence the lock.

    The object outlives its reader: when a reload restarts a meter's reader with new
    settings, the counters carry on instead of dropping back to zero.
    """

    accepted: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    last_reading_at: datetime | None = None
    connected: bool = False
    state: str = "starting"
    """starting | reading | waiting (port gone, retrying) | silent | ended | stopped | failed"""
    silences: int = 0
    equipment_id: str | None = None
    line_settings: str | None = None
    # The TCP fan-out of this meter's telegrams (p1daemon.serve), when it has one.
    serving: str | None = None
    serve_clients: int = 0
    serve_connections: int = 0
    serve_refused: int = 0
    serve_dropped: int = 0
    serve_lost: int = 0
    # Told (outside the lock, from the reader's thread) when what the health reports count
    # as significant changed: state, connection, reconnects, drops. The MQTT publisher
    # then looks at once, where it used to poll every second (`Daemon(on_meter_change=)`).
    on_change: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_accepted(self, at: datetime) -> None:
        with self._lock:
            self.accepted += 1
            self.last_reading_at = at

    def count_dropped(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1
        self._changed()

    def count_reconnect(self) -> None:
        with self._lock:
            self.reconnects += 1
        self._changed()

    def count_silence(self) -> None:
        with self._lock:
            self.silences += 1

    def set_state(self, state: str, *, connected: bool) -> None:
        with self._lock:
            changed = state != self.state or connected != self.connected
            self.state = state
            self.connected = connected
        if changed:
            self._changed()

    def _changed(self) -> None:
        on_change = self.on_change
        if on_change is not None:
            on_change()

    def set_identity(self, *, equipment_id: str | None, line_settings: str | None) -> None:
        with self._lock:
            if equipment_id is not None:
                self.equipment_id = equipment_id
            if line_settings is not None:
                self.line_settings = line_settings

    def set_serving(self, address: str | None) -> None:
        with self._lock:
            self.serving = address
            self.serve_clients = 0

    def count_serve(
        self,
        *,
        connected: int = 0,
        gone: int = 0,
        refused: int = 0,
        dropped: int = 0,
        lost: int = 0,
    ) -> None:
        """A served client came (`connected`), left or was dropped (`gone`, `dropped` too
        when it was dropped for falling behind), was refused (too many), or lost telegrams."""
        with self._lock:
            self.serve_clients += connected - gone
            self.serve_connections += connected
            self.serve_refused += refused
            self.serve_dropped += dropped
            self.serve_lost += lost

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            serve = (
                None
                if self.serving is None
                else {
                    "address": self.serving,
                    "clients": self.serve_clients,
                    "connections": self.serve_connections,
                    "refused": self.serve_refused,
                    "dropped": self.serve_dropped,
                    "lost_telegrams": self.serve_lost,
                }
            )
            return {
                "accepted": self.accepted,
                "dropped": dict(self.dropped),
                "dropped_total": sum(self.dropped.values()),
                "reconnects": self.reconnects,
                "connected": self.connected,
                "state": self.state,
                "silences": self.silences,
                "equipment_id": self.equipment_id,
                "line_settings": self.line_settings,
                "last_reading_at": (
                    self.last_reading_at.isoformat() if self.last_reading_at else None
                ),
            } | ({} if serve is None else {"serve": serve})
