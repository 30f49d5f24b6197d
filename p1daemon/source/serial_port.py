"""Serial P1 ports (a USB cable, the Pi's UART, an RFC 2217 server) through pyserial.

`serial.serial_for_url` opens `/dev/...` paths and `rfc2217://` alike, so one class
serves both. The port is opened with `exclusive=True` so that a second program (or a
second daemon) reading the same meter fails loudly instead of both getting half the
bytes. With `baudrate = "auto"` the settings are found by `LineSettingsDetector`;
bytes read while still guessing are not passed on, except the sample that proved the
winning setting, so the reader's counters are not polluted by mis-read noise and the
first telegram is not lost.
"""

from __future__ import annotations

import errno
import logging
import os
import termios
import time
from collections.abc import Callable
from typing import Any, Protocol

import serial

from p1daemon.source.autobaud import LineSettingsDetector, Verdict
from p1daemon.source.base import SourceUnavailable
from p1daemon.source.line import LineSettings

log = logging.getLogger(__name__)


class SerialPort(Protocol):
    """The part of pyserial's port objects this module uses."""

    timeout: float | None

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def apply_settings(self, d: dict[str, Any]) -> None: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


PortFactory = Callable[..., SerialPort]


# A tty whose device vanished reports one of these, or pyserial's "returned no data".
_GONE_ERRNOS = frozenset({errno.EIO, errno.ENXIO, errno.ENODEV})
_PORT_ERRORS = (serial.SerialException, OSError, ValueError, termios.error)
"""termios.error is no OSError: pyserial lets it through when a port vanishes mid-setup."""


def _reason(exc: BaseException) -> str:
    """pyserial nests errno texts ("could not open port X: [Errno 2] ..."); keep the gist."""
    code = getattr(exc, "errno", None)
    if code is None and isinstance(exc, termios.error) and exc.args:
        code = exc.args[0]
    if isinstance(code, int):
        return os.strerror(code)
    return str(exc) or type(exc).__name__


def _read_failure(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if code in _GONE_ERRNOS or "returned no data" in str(exc):
        return "device disconnected"
    return _reason(exc)


def _settings(line: LineSettings) -> dict[str, Any]:
    return {
        "baudrate": line.baudrate,
        "bytesize": line.bytesize,
        "parity": line.parity,
        "stopbits": line.stopbits,
    }


class SerialSource:
    """A `ByteSource` over pyserial; fixed `line` settings, or `detector` to find them."""

    def __init__(
        self,
        url: str,
        *,
        line: LineSettings | None = None,
        detector: LineSettingsDetector | None = None,
        port_factory: PortFactory = serial.serial_for_url,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (line is None) == (detector is None):
            raise ValueError("give fixed line settings or a detector, not both or neither")
        self._url = url
        self._line = line
        self._detector = detector
        self._port_factory = port_factory
        self._clock = clock
        self._port: SerialPort | None = None
        self._locked: LineSettings | None = line
        self._interrupted = False

    @property
    def description(self) -> str:
        return self._url

    @property
    def line_settings(self) -> str | None:
        return None if self._locked is None else str(self._locked)

    @property
    def tried(self) -> list[LineSettings]:
        """Settings tried so far (for "nothing valid with 115200 8N1, 9600 7E1")."""
        if self._detector is not None:
            return list(self._detector.tried)
        return [] if self._line is None else [self._line]

    @property
    def interruptible(self) -> bool:
        """A local tty (pyserial's POSIX port can cancel a read; an RFC 2217 port
        cannot) whose settings are known: finding them takes short reads (the
        detector's clock turns with them)."""
        return self._locked is not None and callable(getattr(self._port, "cancel_read", None))

    def interrupt(self) -> None:
        self._interrupted = True
        cancel = getattr(self._port, "cancel_read", None)
        if callable(cancel):
            try:
                cancel()  # ends a read waiting in another thread (and the next one)
            except Exception as exc:  # a port closing meanwhile: the flag still holds
                log.debug("%s: cannot cancel the read: %s", self._url, exc)

    def open(self) -> None:
        self.close()
        if self._detector is not None:
            self._locked = None
            line = self._detector.begin(self._clock())
        else:
            assert self._line is not None
            line = self._line
        try:
            self._port = self._port_factory(
                self._url, timeout=0.5, exclusive=True, **_settings(line)
            )
        except _PORT_ERRORS as exc:
            raise SourceUnavailable(f"cannot open: {_reason(exc)}") from None

    def read(self, timeout: float) -> bytes:
        port = self._port
        if port is None:
            raise SourceUnavailable("not open")
        if self._interrupted:
            return b""
        try:
            if port.timeout != timeout:
                port.timeout = timeout
            waiting = port.in_waiting
            data = port.read(waiting or 1)
            if data and not waiting:
                more = port.in_waiting  # the rest of the burst whose first byte we waited for
                if more:
                    data += port.read(more)
        except _PORT_ERRORS as exc:
            raise SourceUnavailable(f"read failed: {_read_failure(exc)}") from None
        if self._locked is not None:
            return data
        return self._detect(port, data)

    def _detect(self, port: SerialPort, data: bytes) -> bytes:
        detector = self._detector
        assert detector is not None
        now = self._clock()
        verdict = detector.observe(data, now)
        if verdict is Verdict.LOCKED:
            self._locked = detector.current
            log.debug("%s: valid telegram at %s", self._url, self._locked)
            return detector.take_sample()
        if verdict is Verdict.SWITCH:
            line = detector.advance(now)
            log.debug("%s: no valid telegram yet, trying %s", self._url, line)
            try:
                port.apply_settings(_settings(line))
                port.reset_input_buffer()
            except _PORT_ERRORS as exc:
                raise SourceUnavailable(f"cannot change settings: {_reason(exc)}") from None
        return b""

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:  # a half-dead USB adapter must not stop the reader
                log.debug("%s: error while closing: %s", self._url, exc)
