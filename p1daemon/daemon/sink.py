"""Where meter readers hand their readings: the `Dispatcher` (daemon/dispatcher.py),
which passes them on to the processors and the outputs (MQTT, stdout).

Lifecycle, driven by `Daemon`:

1. `start()` once, before any reader runs. It must not wait for a broker (the daemon
   reports READY right after it); it may raise with a one-line message when it cannot
   work at all (an unusable outbox path), which stops the daemon before it is ready.
2. `submit(reading)` from any reader thread, concurrently, until the readers are stopped.
3. `stop(timeout)` once, after every reader has been stopped (so no `submit` is in
   flight): persist or deliver everything accepted, then return within `timeout`.

A sink that publishes health gets the per-meter counters from
`Daemon.meter_snapshots()` (pass it as a callable when building the sink). Optional
extras are separate protocols, checked with `isinstance`, so a simple sink need not
implement them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from p1daemon.config.model import Config
from p1daemon.daemon.processor import Telegram
from p1daemon.reading.meter import MeterReading


class ReadingSink(Protocol):
    """Accepts readings from any reader thread; must never block a reader for long.

    Once `submit` returns, the sink owns the reading: losing it afterwards is the sink's
    fault, which is why the MQTT sink puts it in the durable outbox first.
    """

    def start(self) -> None: ...

    def submit(self, reading: MeterReading, raw: Telegram | None = None) -> None:
        """`raw` (the telegram) only comes for a meter with `serve` set (its bytes) or
        one the sink `WantsRaw` for (otherwise its frame: see `Telegram`)."""
        ...

    def stop(self, timeout: float) -> None: ...


@runtime_checkable
class WantsRaw(Protocol):
    """A sink that wants the telegram bytes of some meters besides the served ones (the
    dispatcher, for a processor keeping them as evidence)."""

    def wants_telegrams(self, meter: str) -> bool: ...


@runtime_checkable
class ReportsStatus(Protocol):
    def status(self) -> str:
        """A short part of the daemon's status line, e.g. "outbox 12, broker connected"."""
        ...

    def healthy(self) -> bool:
        """False only when the sink itself is stuck (not merely waiting for a broker)."""
        ...


@runtime_checkable
class Reconfigurable(Protocol):
    def apply_config(self, config: Config) -> None:
        """Called on reload when the publishing or views settings changed (`[mqtt]`,
        `[buffer]`, `[homeassistant]`, `[site]`, the meter set or their publishing and
        energy keys), before readers of new meters start; other readers keep running."""
        ...
