"""Running as a systemd service: sd_notify and watchdog, journald-aware logging.

Everything here degrades to a no-op (or plain stderr) outside systemd, so the daemon
behaves the same from a terminal, a test or the service manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p1daemon.service.hooks import SystemdHooks
    from p1daemon.service.logsetup import LogSetup, setup_logging

__all__ = ["LogSetup", "SystemdHooks", "setup_logging"]


def __getattr__(name: str) -> Any:
    # Lazily: `check-config` imports service.redact and needs neither systemd nor logging.
    if name == "SystemdHooks":
        from p1daemon.service.hooks import SystemdHooks

        return SystemdHooks
    if name in ("LogSetup", "setup_logging"):
        from p1daemon.service import logsetup

        return getattr(logsetup, name)
    raise AttributeError(name)
