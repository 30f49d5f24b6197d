"""How the daemon's main loop tells its supervisor (systemd, or nobody) how it is doing.

The daemon core knows nothing about systemd; it calls these hooks at the right moments
and the service layer turns them into sd_notify datagrams. Outside systemd the no-op
implementation is used, so the same code runs from a terminal or a test.
"""

from __future__ import annotations

from typing import Protocol


class ServiceHooks(Protocol):
    def ready(self) -> None:
        """Config loaded, outbox open, readers started (broker and meters may still be away)."""

    def tick(self, *, healthy: bool, status: str) -> None:
        """Called by the main loop every few seconds (more often for a short watchdog).

        `healthy` is True only when the loop turns and every reader is alive or actively
        reconnecting; the watchdog must be fed only then. `status` is one human line.
        """

    def reloading(self) -> None:
        """SIGHUP received; the configuration is being re-read."""

    def reloaded(self) -> None:
        """The reload finished (applied, or refused with the old config kept running)."""

    def stopping(self) -> None:
        """SIGTERM received; shutting down."""


class NoHooks:
    """Outside a service manager there is nobody to tell."""

    def ready(self) -> None:
        pass

    def tick(self, *, healthy: bool, status: str) -> None:
        pass

    def reloading(self) -> None:
        pass

    def reloaded(self) -> None:
        pass

    def stopping(self) -> None:
        pass
