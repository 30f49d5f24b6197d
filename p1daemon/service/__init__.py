"""Running as a systemd service: sd_notify and watchdog, journald-aware logging.

Everything here degrades to a no-op (or plain stderr) outside systemd, so the daemon
behaves the same from a terminal, a test or the service manager.
"""

from p1daemon.service.hooks import SystemdHooks
from p1daemon.service.logsetup import LogSetup, setup_logging

__all__ = ["LogSetup", "SystemdHooks", "setup_logging"]
