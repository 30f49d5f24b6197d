"""`ServiceHooks` for systemd: the daemon's life events turned into sd_notify datagrams.

The watchdog is fed only from `tick()` and only while the main loop reports itself
healthy, never from a timer of its own: a timer thread would keep a hung daemon alive,
which is the one thing the watchdog exists to prevent. So the main loop must tick often
enough: `tick_interval_s` says how often, and `tick()` pings when waiting for the next
tick would leave more than half the watchdog timeout between two pings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from p1daemon.service.notify import Notifier, monotonic_usec, read_environment

log = logging.getLogger(__name__)

# STATUS= lines change with every reading; systemd only needs the latest one now and then.
DEFAULT_STATUS_INTERVAL_S = 5.0


class SystemdHooks:
    """Implements `p1daemon.daemon.hooks.ServiceHooks`; every method is a no-op without a socket.

    Not thread-safe by design: the contract is that only the main loop calls it.
    """

    def __init__(
        self,
        notifier: Notifier | None,
        *,
        watchdog_interval_s: float | None = None,
        status_interval_s: float = DEFAULT_STATUS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notifier = notifier
        self._watchdog_interval = watchdog_interval_s if notifier is not None else None
        self._status_interval = status_interval_s
        self._clock = clock
        self._last_ping: float | None = None
        self._last_tick: float | None = None
        self._last_status: str | None = None
        self._last_status_at: float | None = None
        self._healthy = True

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdHooks:
        """Hooks for whatever systemd passed this process (nothing: all no-ops)."""
        env = read_environment(environ)
        notifier = None
        if env.notify_socket is not None:
            try:
                notifier = Notifier(env.notify_socket)
            except ValueError as exc:
                log.warning("not notifying systemd: %s", exc)
        hooks = cls(notifier, watchdog_interval_s=env.watchdog_interval_s)
        if hooks.watchdog_interval_s is not None:
            log.debug("feeding the systemd watchdog every %.1f s", hooks.watchdog_interval_s)
        return hooks

    @property
    def active(self) -> bool:
        """True when running under a service manager that listens."""
        return self._notifier is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        return self._watchdog_interval

    def tick_interval_s(self, longest: float) -> float:
        """How often the main loop must call `tick()`: `longest`, or a third of the timeout.

        A third, so that every tick of a short watchdog (WatchdogSec=1: one every 0.33 s)
        lands before the half-timeout and a late one still has room.
        """
        if self._watchdog_interval is None:
            return longest
        return min(longest, self._watchdog_interval * 2 / 3)

    def ready(self) -> None:
        self._send("READY=1")

    def tick(self, *, healthy: bool, status: str) -> None:
        if self._notifier is None:
            return
        now = self._clock()
        gap = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        fields: list[str] = []
        if self._watchdog_interval is not None:
            self._note_health(healthy)
            if healthy and self._ping_due(now, gap):
                fields.append("WATCHDOG=1")
                self._last_ping = now
        if status != self._last_status and (
            self._last_status_at is None or now - self._last_status_at >= self._status_interval
        ):
            fields.append("STATUS=" + _one_line(status))
            self._last_status = status
            self._last_status_at = now
        if fields:
            self._send(*fields)

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd (>= 253, Type=notify-reload) match this RELOADING=1
        # to the reload it asked for; older versions ignore it.
        self._send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")

    def reloaded(self) -> None:
        self._send("READY=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def _ping_due(self, now: float, gap: float) -> bool:
        """Due at half the timeout, or earlier if the next tick, as far off as the last
        one was, would come after it: with 1 s ticks and WatchdogSec=30 that is every 15 s,
        with ticks of a third of the timeout every tick."""
        if self._last_ping is None or self._watchdog_interval is None:
            return True
        elapsed = now - self._last_ping
        return elapsed >= self._watchdog_interval or elapsed + gap > self._watchdog_interval

    def _note_health(self, healthy: bool) -> None:
        """Say once why the watchdog may soon restart the service, and once when it won't."""
        if healthy == self._healthy:
            return
        self._healthy = healthy
        if healthy:
            log.info("healthy again: feeding the systemd watchdog")
        else:
            log.warning(
                "unhealthy: no longer feeding the systemd watchdog "
                "(systemd restarts the service unless this recovers)"
            )

    def _send(self, *fields: str) -> None:
        if self._notifier is not None:
            self._notifier.send(*fields)


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE field in the datagram.
    return " ".join(text.splitlines())
