"""Where meter readers hand their readings: stdout today, the MQTT outbox tomorrow."""

from __future__ import annotations

from typing import Protocol

from p1daemon.reading.meter import MeterReading


class ReadingSink(Protocol):
    """Accepts readings from any reader thread; must never block a reader for long.

    Once `submit` returns, the sink owns the reading: losing it afterwards is the sink's
    fault, which is why the MQTT sink puts it in the durable outbox first.
    """

    def submit(self, reading: MeterReading) -> None: ...
