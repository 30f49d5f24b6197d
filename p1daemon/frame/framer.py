"""Streaming framer: arbitrary byte chunks in, complete and checked telegrams out.

A P1 port is a one-way stream with no handshake: a reader may start mid-telegram, a
loose cable injects noise, a modem prints "NO CARRIER". The framer therefore never
trusts chunk boundaries, resynchronises on every '/', and keeps at most `max_size`
bytes so a flood of junk can never exhaust the Pi's memory.

Every decision is made on byte positions, never on where a chunk happened to end, so
the same bytes give the same telegrams and the same drops (reason and size) however
they are split. That is what lets a test replay a capture in one piece and promise the
serial port, reading a few bytes at a time, behaves the same.
"""

from __future__ import annotations

import re

from p1daemon.frame.crc import crc16_arc
from p1daemon.frame.events import Dropped, DropReason, Frame

DEFAULT_MAX_FRAME = 8 * 1024
_MIN_FRAME = 16

_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_WHITESPACE = b" \t\r\n\x00"
_LINE_END = frozenset(b"\r\n")
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
    """A frame no CRC vouches for must at least look like P1 text.

    Without this, any binary stream (an encrypted Smarty frame read without its key)
    that happens to contain '/' ... '!' would pass as a DSMR 2.2 telegram.
    """
    return _NOT_TEXT.search(body) is None and _OBIS_LINE.search(body) is not None


class Framer:
    """Cuts a byte stream into telegrams; see the module docstring for the rules.

    Outside a telegram, bytes up to the next '/' form a "run": reported as `garbage`
    when it holds anything but whitespace, and in pieces of `max_size` so a flood is
    visible while it lasts. A telegram whose first `max_size` bytes hold no end marker
    (a '!' at the start of a line) is reported `oversized` at once, and the rest of it,
    up to the next '/', is skipped silently (it is the same telegram, not new garbage).
    """

    def __init__(self, *, check_crc: bool = True, max_size: int = DEFAULT_MAX_FRAME) -> None:
        if max_size < _MIN_FRAME:
            raise ValueError(f"max_size must be at least {_MIN_FRAME} bytes")
        self.check_crc = check_crc
        self.max_size = max_size
        self._buf = bytearray()
        self._in_frame = False
        self._scan_from = 0
        self._skipping_oversized = False
        self._run = 0
        self._run_has_content = False

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished telegram: never more than max_size (+4 CRC digits)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | Dropped]:
        """Add bytes; return every telegram or drop they complete, in stream order."""
        out: list[Frame | Dropped] = []
        step = self.max_size
        if len(data) <= step:  # the usual case: a serial read or a file block
            self._buf += data
            self._drain(out, at_end=False)
            return out
        # Taking a huge chunk in max_size slices keeps the buffer bounded even then.
        for start in range(0, len(data), step):
            self._buf += data[start : start + step]
            self._drain(out, at_end=False)
        return out

    def flush(self) -> list[Frame | Dropped]:
        """End of stream: whatever is still buffered is reported, never silently lost."""
        out: list[Frame | Dropped] = []
        self._drain(out, at_end=True)
        if self._in_frame and self._buf:
            out.append(
                Dropped(DropReason.TRUNCATED, "stream ended inside a telegram", len(self._buf))
            )
        self._buf.clear()
        self._in_frame = False
        self._scan_from = 0
        self._skipping_oversized = False
        self._end_run(out)
        return out

    # -- internals -------------------------------------------------------------------

    def _end_run(self, out: list[Frame | Dropped]) -> None:
        if self._run_has_content:
            out.append(Dropped(DropReason.GARBAGE, "bytes outside a telegram", self._run))
        self._run = 0
        self._run_has_content = False

    def _outside(self, segment: bytes | bytearray, out: list[Frame | Dropped]) -> None:
        """Account bytes between telegrams, cutting runs at exact multiples of max_size."""
        pos = 0
        while pos < len(segment):
            take = min(len(segment) - pos, self.max_size - self._run)
            if not self._run_has_content and segment[pos : pos + take].strip(_WHITESPACE):
                self._run_has_content = True
            self._run += take
            pos += take
            if self._run >= self.max_size:
                self._end_run(out)

    def _drain(self, out: list[Frame | Dropped], *, at_end: bool) -> None:
        buf = self._buf
        while buf:
            if not self._in_frame:
                start = buf.find(b"/")
                stop = start if start >= 0 else len(buf)
                if stop:
                    if not self._skipping_oversized:
                        self._outside(buf[:stop], out)
                    del buf[:stop]
                if start < 0:
                    return
                self._skipping_oversized = False
                self._end_run(out)
                self._in_frame = True
                self._scan_from = 1
            if not self._cut_frame(out, at_end=at_end):
                return

    def _cut_frame(self, out: list[Frame | Dropped], *, at_end: bool) -> bool:
        """Try to complete the frame at the head of the buffer; False when more bytes are needed.

        The end marker is a '!' at the start of a line, as every P1 standard writes it. A
        '!' inside a line is content: line noise that turns a digit into '!' then ends in a
        CRC mismatch at the real end, instead of cutting the telegram short where, for a
        telegram without CRC, nothing would notice.
        """
        buf = self._buf
        window = min(len(buf), self.max_size)
        found = buf.find(b"\n!", self._scan_from, window)
        bang = found + 1 if found >= 0 else -1
        restart = buf.find(b"/", self._scan_from, bang if bang >= 0 else window)
        if restart >= 0:
            out.append(Dropped(DropReason.TRUNCATED, "a new telegram began before '!'", restart))
            del buf[:restart]
            self._scan_from = 1
            return True
        if bang < 0:
            if len(buf) >= self.max_size:
                out.append(
                    Dropped(
                        DropReason.OVERSIZED, f"no '!' within {self.max_size} bytes", self.max_size
                    )
                )
                del buf[: self.max_size]
                self._in_frame = False
                self._scan_from = 0
                self._skipping_oversized = True  # the rest of it, up to the next '/'
                return True
            self._scan_from = max(1, window - 1)  # a "\n" at the end may precede the '!'
            return False
        end = bang + 1
        limit = min(len(buf), bang + 5)
        while end < limit and buf[end] in _HEX_DIGITS:
            end += 1
        if end - bang - 1 < 4 and end == len(buf) and not at_end:
            self._scan_from = bang - 1  # the CRC may still be arriving
            return False
        body = bytes(buf[: bang + 1])
        crc_text = bytes(buf[bang + 1 : end])
        line_ends = end == len(buf) or buf[end] in _LINE_END
        del buf[:end]
        self._in_frame = False
        self._scan_from = 0
        out.append(self._check(body, crc_text, line_ends=line_ends))
        return True

    def _check(self, body: bytes, crc_text: bytes, *, line_ends: bool) -> Frame | Dropped:
        if not crc_text:
            if self.check_crc and requires_crc(body):
                return Dropped(
                    DropReason.MISSING_CRC, "P1 version 4.0+ telegram without CRC", len(body)
                )
            if not line_ends:
                # "!" then neither CRC nor line end: a line starting with a corrupted '!'.
                return Dropped(
                    DropReason.GARBAGE, "'!' followed by neither CRC nor CR/LF", len(body)
                )
            if not _looks_like_text_telegram(body):
                return Dropped(
                    DropReason.GARBAGE, "no CRC, and no P1 text between '/' and '!'", len(body)
                )
            return Frame(body, None, False)
        declared = int(crc_text, 16)
        if not self.check_crc:
            # Nothing vouches for these bytes, so apply the CRC-less plausibility test.
            if not _looks_like_text_telegram(body):
                return Dropped(
                    DropReason.GARBAGE,
                    "CRC not checked, and no P1 text between '/' and '!'",
                    len(body) + len(crc_text),
                )
            return Frame(body, declared, False)
        actual = crc16_arc(body)
        if actual != declared:
            return Dropped(
                DropReason.CRC_MISMATCH,
                f"declared {crc_text.decode()}, computed {actual:04X}",
                len(body) + len(crc_text),
            )
        return Frame(body, declared, True)
