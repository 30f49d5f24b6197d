"""Network P1 bridges (ser2net in raw mode, Wi-Fi P1 dongles): `socket://host:port`.

A plain stdlib socket rather than pyserial's `socket://` handler: that handler reports
"bytes waiting" as 0 or 1, so reading whole bursts from it means either a byte per call
or waiting out the full timeout on every read. A socket's `recv` returns whatever has
arrived, which is exactly what a reader wants. A bridge that closes the connection or
stops answering is reported as unavailable, and the reader reconnects with backoff.
"""

from __future__ import annotations

import contextlib
import os
import socket

from p1daemon.source.base import SourceUnavailable

CONNECT_TIMEOUT_S = 3.0
_RECV_SIZE = 64 * 1024


def _reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


class TcpSource:
    """A `ByteSource` reading a raw TCP stream."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = CONNECT_TIMEOUT_S):
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._sock: socket.socket | None = None
        self._interrupted = False

    @property
    def description(self) -> str:
        return f"socket://{self._host}:{self._port}"

    @property
    def line_settings(self) -> str | None:
        return None  # the bridge talks to the meter; its serial settings are its business

    @property
    def interruptible(self) -> bool:
        return True

    def interrupt(self) -> None:
        """Shuts the connection down: a `recv` waiting in another thread returns at once."""
        self._interrupted = True
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def open(self) -> None:
        self.close()
        try:
            sock = socket.create_connection((self._host, self._port), self._connect_timeout)
        except OSError as exc:
            raise SourceUnavailable(f"cannot connect: {_reason(exc)}") from None
        # A bridge that loses power never sends a FIN; keepalive (and the reader's silence
        # timeout) notice it instead of waiting for ever.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._sock = sock

    def read(self, timeout: float) -> bytes:
        sock = self._sock
        if sock is None:
            raise SourceUnavailable("not connected")
        if self._interrupted:
            return b""
        sock.settimeout(timeout)
        try:
            data = sock.recv(_RECV_SIZE)
        except TimeoutError:
            return b""
        except OSError as exc:
            if self._interrupted:
                return b""
            raise SourceUnavailable(f"connection lost: {_reason(exc)}") from None
        if not data:
            if self._interrupted:  # our own shutdown, not the bridge's
                return b""
            raise SourceUnavailable("connection closed by the bridge")
        return data

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
