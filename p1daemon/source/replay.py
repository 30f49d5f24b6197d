"""`replay:PATH`: a capture file played as if a meter were sending it.

It powers the demo and the tests, and it lets the whole daemon run without hardware.
The file is read incrementally and cut into telegram-sized pieces (before every '/'
that starts a line, or by the declared length of an encrypted Smarty frame), each
delivered `interval_s` after the previous one - the pace of a real meter - or all as fast
as the reader takes them when the interval is 0. Bytes are passed on exactly as stored,
garbage and broken telegrams included, so a replay exercises the same paths as a port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from p1daemon.source.base import EndOfData, SourceUnavailable

_BLOCK = 64 * 1024
_SMARTY_START = b"\xdb\x08"
_SMARTY_HEADER = 13  # DB 08 title(8) 82 len(2); the length counts what follows


def _unit_end(buf: bytes, start: int) -> int:
    """End of the piece beginning at `start`, or -1 when more bytes are needed to know."""
    if buf.startswith(_SMARTY_START, start):
        if len(buf) - start < _SMARTY_HEADER:
            return -1
        if buf[start + 10] == 0x82:
            end = start + _SMARTY_HEADER + int.from_bytes(buf[start + 11 : start + 13], "big")
            return end if end <= len(buf) else -1
    text = buf.find(b"\n/", start + 1)
    # Only a frame starting before the next telegram matters: searching no further keeps
    # a plain capture from being scanned to the end of the block for every telegram.
    binary = buf.find(_SMARTY_START, start + 1, text + 1 if text >= 0 else len(buf))
    ends = [i for i in (text + 1 if text >= 0 else -1, binary) if i > start]
    return min(ends) if ends else -1


def iter_units(handle: BinaryIO, block: int = _BLOCK) -> Iterator[bytes]:
    """Telegram-sized pieces of a capture, read `block` bytes at a time."""
    buf = b""
    while True:
        chunk = handle.read(block)
        if not chunk:
            break
        buf += chunk
        start = 0
        while (end := _unit_end(buf, start)) >= 0:
            yield buf[start:end]
            start = end
        buf = buf[start:]
    if buf:
        yield buf


class ReplaySource:
    """A `ByteSource` playing a capture file, optionally for ever."""

    def __init__(
        self,
        path: Path,
        *,
        interval_s: float = 1.0,
        loop: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self._path = path
        self._interval = interval_s
        self._loop = loop
        self._clock = clock
        self._interrupted = threading.Event()
        # Waiting on the event: `interrupt` ends a wait for the next telegram at once.
        # A sleep that returns True was interrupted (the event's wait does).
        self._sleep = self._interrupted.wait if sleep is None else sleep
        self._handle: BinaryIO | None = None
        self._units: Iterator[bytes] = iter(())
        self._ahead: bytes | None = None
        self._next_due = 0.0
        self._delivered_this_pass = False

    @property
    def description(self) -> str:
        pace = f"every {self._interval:g} s" if self._interval else "as fast as possible"
        return f"replay:{self._path} ({pace}{', looping' if self._loop else ''})"

    @property
    def line_settings(self) -> str | None:
        return None

    @property
    def interruptible(self) -> bool:
        """With its own sleep (not a test's, which `interrupt` cannot cut short)."""
        return self._sleep == self._interrupted.wait

    def interrupt(self) -> None:
        self._interrupted.set()

    def open(self) -> None:
        self.close()
        try:
            self._handle = self._path.open("rb")
        except OSError as exc:
            raise SourceUnavailable(f"cannot read: {exc.strerror or exc}") from None
        self._units = iter_units(self._handle)
        self._ahead = None
        self._next_due = self._clock()
        self._delivered_this_pass = False

    def _next_unit(self) -> bytes | None:
        """The next piece, rewinding at the end when looping; None at the true end."""
        handle = self._handle
        if handle is None:
            raise SourceUnavailable("not open")
        try:
            unit = next(self._units, None)
            if unit is None and self._loop and self._delivered_this_pass:
                handle.seek(0)
                self._units = iter_units(handle)
                self._delivered_this_pass = False
                unit = next(self._units, None)
        except OSError as exc:
            raise SourceUnavailable(f"read failed: {exc.strerror or exc}") from None
        if unit is not None:
            self._delivered_this_pass = True
        return unit

    def read(self, timeout: float) -> bytes:
        if self._interrupted.is_set():
            return b""
        if self._interval == 0:
            return self._read_fast(timeout)
        if self._ahead is None:
            self._ahead = self._next_unit()  # known before waiting, so the end is not delayed
        if self._ahead is None:
            if self._loop:  # an empty file: nothing will ever come
                self._sleep(timeout)
                return b""
            raise EndOfData
        wait = self._next_due - self._clock()
        # A sleep returning True was interrupted (stopping): nothing goes out early.
        if wait > 0 and (self._sleep(min(wait, timeout)) is True or wait > timeout):
            return b""  # interrupted, or not due yet
        unit, self._ahead = self._ahead, None
        self._next_due = max(self._next_due + self._interval, self._clock())
        return unit

    def _read_fast(self, timeout: float) -> bytes:
        pieces: list[bytes] = []
        size = 0
        while size < _BLOCK:
            unit = self._next_unit()
            if unit is None:
                break
            pieces.append(unit)
            size += len(unit)
        if pieces:
            return b"".join(pieces)
        if self._loop:
            self._sleep(timeout)
            return b""
        raise EndOfData

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()
