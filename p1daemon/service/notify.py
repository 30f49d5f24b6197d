"""The sd_notify datagram protocol, without python-systemd.

systemd passes a socket address in NOTIFY_SOCKET; a service reports its state by sending
newline-separated KEY=VALUE datagrams there. It is a few lines of socket code, so the
project does not take on a C-extension dependency for it (which would also need a
compiler on the Pi).

Sending must never hurt the daemon: a failure is logged once per kind of error and
otherwise ignored, and a send can block for at most a fraction of a second, because a
main loop stuck on its supervisor is exactly what the watchdog is there to catch.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

# systemd reads its notification socket promptly; if it does not within this time the
# datagram is dropped rather than stalling the main loop.
_SEND_TIMEOUT_S = 0.5


class Notifier:
    """Sends state datagrams to one NOTIFY_SOCKET address.

    A fresh socket per message: systemd re-creates its socket on daemon-reexec, and a
    long-lived connected socket would then point at a closed one.
    """

    def __init__(self, address: str) -> None:
        if address.startswith("@"):
            # Abstract namespace: the leading '@' stands for a NUL byte.
            self._address: str | bytes = b"\0" + address[1:].encode()
        elif address.startswith("/"):
            self._address = address
        else:
            raise ValueError(f"NOTIFY_SOCKET must be a path or start with '@', got {address!r}")
        self.address = address
        self._failed: set[str] = set()

    def send(self, *fields: str) -> bool:
        """Send KEY=VALUE fields as one datagram; False (and one log line) when it fails."""
        payload = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # A timeout on a connected datagram socket bounds the wait for room in
                # systemd's receive queue instead of blocking forever.
                sock.settimeout(_SEND_TIMEOUT_S)
                sock.connect(self._address)
                sock.send(payload)
        except OSError as exc:
            kind = type(exc).__name__ if exc.errno is None else str(exc.errno)
            if kind not in self._failed:
                self._failed.add(kind)
                log.warning("cannot notify systemd at %s: %s", self.address, _reason(exc))
            return False
        return True


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


@dataclass(frozen=True)
class SystemdEnvironment:
    """What systemd told this process through its environment."""

    notify_socket: str | None
    watchdog_interval_s: float | None
    """How often to feed the watchdog: half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
    recommends, so one late tick does not get the service killed."""


def read_environment(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> SystemdEnvironment:
    """Parse NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID; bad values are logged and ignored.

    WATCHDOG_PID names the process the watchdog is meant for: a child that inherited the
    variables must not think it is being watched.
    """
    env = os.environ if environ is None else environ
    own_pid = os.getpid() if pid is None else pid
    notify_socket = env.get("NOTIFY_SOCKET") or None
    return SystemdEnvironment(notify_socket, _watchdog_interval(env, own_pid))


def _watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    usec_text = env.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = env.get("WATCHDOG_PID")
    try:
        usec = int(usec_text)
        watched_pid = int(pid_text) if pid_text else None
    except ValueError:
        log.warning(
            "ignoring watchdog: WATCHDOG_USEC=%r / WATCHDOG_PID=%r are not numbers",
            usec_text,
            pid_text,
        )
        return None
    if watched_pid is not None and watched_pid != pid:
        return None
    if usec <= 0:
        log.warning("ignoring watchdog: WATCHDOG_USEC=%d is not positive", usec)
        return None
    return usec / 1_000_000 / 2


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
