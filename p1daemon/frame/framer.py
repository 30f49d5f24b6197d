"""Streaming framer: arbitrary byte chunks in, complete and checked telegrams out.

A P1 port is a one-way stream with no handshake: a reader may start mid-telegram, a
loose cable injects noise, a modem prints "NO CARRIER". The framer therefore never
trusts chunk boundaries, resynchronises on every '/', and keeps at most `max_size`
bytes so a flood of junk can never exhaust the Pi's memory.
"""

from __future__ import annotations

import re

from p1daemon.frame.crc import crc16_arc
from p1daemon.frame.events import DropReason, Dropped, Frame

DEFAULT_MAX_FRAME = 8 * 1024

_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_WHITESPACE = b" \t\r\n\x00"
_P1_VERSION = re.compile(rb"1-3:0\.2\.8\((\d+)\)")
_BELGIAN_VERSION = b"0-0:96.1.4("


def requires_crc(body: bytes) -> bool:
    """True when the telegram declares a P1 version that mandates a CRC (4.0+ or Belgian).

    Only DSMR 2.2/3.0 meters may omit the CRC; a modern telegram without one is a
    corrupted or cut telegram whose '!' happened to survive.
    """
    if _BELGIAN_VERSION in body:
        return True
    match = _P1_VERSION.search(body)
    return match is not None and int(match.group(1)) >= 40


_OBIS_LINE = re.compile(rb"\n\d+-\d+:\d+\.\d+\.\d+")
_NOT_TEXT = re.compile(rb"[^\t\n\r\x20-\x7e]")


def _looks_like_text_telegram(body: bytes) -> bool:
    """A CRC-less frame has no checksum to vouch for it, so it must at least look like P1.

    Without this, any binary stream (an encrypted Smarty frame read without its key)
    that happens to contain '/' ... '!' would pass as a DSMR 2.2 telegram.
    """
    return _NOT_TEXT.search(body) is None and _OBIS_LINE.search(body) is not None


class Framer:
    """Cuts a byte stream into telegrams; see the module docstring for the rules."""

    def __init__(self, *, check_crc: bool = True, max_size: int = DEFAULT_MAX_FRAME) -> None:
        self.check_crc = check_crc
        self.max_size = max_size
        self._buf = bytearray()
        self._in_frame = False
        self._scan_from = 0
        self._skipping_oversized = False
        self._garbage = 0

    def feed(self, data: bytes) -> list[Frame | Dropped]:
        """Add bytes; return every telegram or drop they complete, in stream order."""
        out: list[Frame | Dropped] = []
        if data:
            self._buf += data
            self._drain(out, at_end=False)
        return out

    def flush(self) -> list[Frame | Dropped]:
        """End of stream: whatever is still buffered is reported, never silently lost."""
        out: list[Frame | Dropped] = []
        self._drain(out, at_end=True)
        if self._in_frame and self._buf:
            out.append(Dropped(DropReason.TRUNCATED, "stream ended inside a telegram", len(self._buf)))
        self._buf.clear()
        self._in_frame = False
        self._scan_from = 0
        self._skipping_oversized = False
        self._report_garbage(out)
        return out

    # -- internals -------------------------------------------------------------------

    def _report_garbage(self, out: list[Frame | Dropped]) -> None:
        if self._garbage:
            out.append(Dropped(DropReason.GARBAGE, "bytes outside a telegram", self._garbage))
            self._garbage = 0

    def _count_garbage(self, chunk: bytes | bytearray) -> None:
        if not self._skipping_oversized and chunk.strip(_WHITESPACE):
            self._garbage += len(chunk)

    def _drain(self, out: list[Frame | Dropped], *, at_end: bool) -> None:
        buf = self._buf
        while buf:
            if not self._in_frame:
                start = buf.find(b"/")
                if start < 0:
                    self._count_garbage(buf)
                    buf.clear()
                    if self._garbage > self.max_size:
                        self._report_garbage(out)
                    return
                if start:
                    self._count_garbage(buf[:start])
                    del buf[:start]
                self._skipping_oversized = False
                self._report_garbage(out)
                self._in_frame = True
                self._scan_from = 1
            if not self._cut_frame(out, at_end=at_end):
                return

    def _cut_frame(self, out: list[Frame | Dropped], *, at_end: bool) -> bool:
        """Try to complete the frame at the head of the buffer; False when more bytes are needed."""
        buf = self._buf
        bang = buf.find(b"!", self._scan_from)
        restart = buf.find(b"/", self._scan_from, bang if bang >= 0 else len(buf))
        if restart >= 0:
            out.append(Dropped(DropReason.TRUNCATED, "a new telegram began before '!'", restart))
            del buf[:restart]
            self._scan_from = 1
            return True
        if bang < 0 or bang >= self.max_size:
            if len(buf) > self.max_size:
                cut = len(buf) if bang < 0 else bang + 1
                out.append(
                    Dropped(DropReason.OVERSIZED, f"no '!' within {self.max_size} bytes", cut)
                )
                del buf[:cut]
                self._in_frame = False
                self._skipping_oversized = True  # the rest of it, up to the next '/'
                return True
            self._scan_from = len(buf)
            return False
        end = bang + 1
        limit = min(len(buf), bang + 5)
        while end < limit and buf[end] in _HEX_DIGITS:
            end += 1
        if end - bang - 1 < 4 and end == len(buf) and not at_end:
            self._scan_from = bang  # the CRC may still be arriving
            return False
        body = bytes(buf[: bang + 1])
        crc_text = bytes(buf[bang + 1 : end])
        del buf[:end]
        self._in_frame = False
        self._scan_from = 0
        out.append(self._check(body, crc_text))
        return True

    def _check(self, body: bytes, crc_text: bytes) -> Frame | Dropped:
        if not crc_text:
            if self.check_crc and requires_crc(body):
                return Dropped(
                    DropReason.MISSING_CRC, "P1 version 4.0+ telegram without CRC", len(body)
                )
            if not _looks_like_text_telegram(body):
                return Dropped(DropReason.GARBAGE, "binary data between '/' and '!'", len(body))
            return Frame(body, None, False)
        declared = int(crc_text, 16)
        if self.check_crc:
            actual = crc16_arc(body)
            if actual != declared:
                return Dropped(
                    DropReason.CRC_MISMATCH,
                    f"declared {crc_text.decode()}, computed {actual:04X}",
                    len(body) + len(crc_text),
                )
        return Frame(body, declared, self.check_crc)
