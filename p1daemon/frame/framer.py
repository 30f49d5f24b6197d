"""Streaming framer: arbitrary byte chunks in, complete and checked telegrams out.

A P1 port is a one-way stream with no handshake: a reader may start mid-telegram, a
loose cable injects noise, a modem prints "NO CARRIER". The framer therefore never
trusts chunk boundaries, resynchronises on every '/' that starts a line (a '/' inside a
line is content: DSMR 2.2/3.0 text messages hold URLs, and with no CRC to vouch for the
telegram, cutting there would turn its tail into a phantom reading), and keeps at most
`max_size` bytes so a flood of junk can never exhaust the Pi's memory or the log.

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
# A chunk longer than this is taken in slices of it (or of max_size, if larger), so the
# buffer stays bounded even then. A replay's reads (64 KiB and a bit) go in whole: a slice
# boundary costs the telegram across it a second look.
_FEED_SLICE = 128 * 1024

_CRC_DIGITS = re.compile(rb"[0-9a-fA-F]*")  # matched on the (up to) 4 bytes after '!'
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


class CrcMemory:
    """Whether a meter has delivered CRC-checked telegrams; once it has, it must keep doing so.

    A DSMR 2.2/3.0 meter never sends a CRC, so "no CRC" is only trusted from a meter that
    has never sent one. Hungarian and Swedish meters declare no version object, and the
    version rule alone would let a telegram whose CRC digits were lost pass unchecked. The
    memory belongs to the meter, not to one connection: a meter reader passes the same
    object to the decoder of every connection it opens, so a reconnect does not reset it.
    """

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = False


# A '/' in the middle of a line starts a telegram only when the rest of its line reads as a
# P1 header "/XXXZ Ident": 4 to 96 printable bytes without parentheses (so never the '/' of
# a COSEM value, whose closing parenthesis is on the same line), without a second '/' or a
# '!', then the line end. That is how a meter that lost power mid-line
# ("1-0:1.7.0(00.193*kW)/ISK5\\2M550E...") or a modem prompt ("NO CARRIER/KFM5...") is
# resynchronised on. Everywhere else a telegram starts only at the start of a line.
_HEADER_MAX = 96
_HEADER_CLASS = rb"[\x20\x22-\x27\x2a-\x2e\x30-\x7e]"
_HEADER_CHARS = frozenset(b" \"#$%&'*+,-." + bytes(range(0x30, 0x7F)))
_START = re.compile(rb"(?<=[\r\n])/|/" + _HEADER_CLASS + rb"{4,%d}\r?\n" % _HEADER_MAX)
# Bytes a header candidate may need to be decided: '/', the header, CR LF.
_HEADER_LOOKAHEAD = _HEADER_MAX + 3


class Framer:
    """Cuts a byte stream into telegrams; see the module docstring for the rules.

    A telegram starts at a '/' at the start of a line: the start of the stream, right
    after CR or LF, or right after the end of the previous telegram (meters that omit
    the CR LF after the CRC exist). A '/' inside a line is content (a text message may
    hold a URL), unless the rest of the line is a P1 header (see `_START`).

    Outside a telegram, bytes up to the next telegram start form a "run": reported as
    `garbage` when it holds anything but whitespace, and in pieces of `max_size` so a flood
    is visible while it lasts. A would-be telegram that holds no COSEM object line at all
    ("/\\r\\n" over and over, "/\\n!\\n") is no telegram either: its bytes
    join the run, and such a run goes on through the next ones, so a flood of frame markers
    costs one event per `max_size` bytes, not one per marker. A telegram whose first
    `max_size` bytes hold no end marker (a '!' at the start of a line) is reported
    `oversized` at once, and the rest of it, up to the next telegram start, is skipped
    silently (it is the same telegram, not new garbage): a flood of '/' without line ends
    is one such telegram.
    """

    def __init__(
        self,
        *,
        check_crc: bool = True,
        max_size: int = DEFAULT_MAX_FRAME,
        crc_memory: CrcMemory | None = None,
    ) -> None:
        if max_size < _MIN_FRAME:
            raise ValueError(f"max_size must be at least {_MIN_FRAME} bytes")
        self.check_crc = check_crc
        self.max_size = max_size
        self.crc_memory = crc_memory if crc_memory is not None else CrcMemory()
        self._buf = bytearray()
        self._in_frame = False
        self._scan_from = 0
        self._skipping_oversized = False
        self._at_line_start = True  # what preceded buf[0]: stream start, CR/LF or a telegram
        self._run = 0
        self._run_has_content = False
        self._run_sticky = False  # the run holds would-be telegrams: it goes on through more

    @property
    def buffered(self) -> int:
        """Bytes held: an unfinished telegram of at most max_size (+4 CRC digits), or the
        last < 100 bytes of junk while they may still begin a header line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | Dropped]:
        """Add bytes; return every telegram or drop they complete, in stream order."""
        out: list[Frame | Dropped] = []
        step = max(self.max_size, _FEED_SLICE)
        if len(data) <= step:  # the usual case: a serial read or a file block
            self._buf += data
            self._drain(out, at_end=False)
            return out
        # Taking a huge chunk in slices keeps the buffer bounded even then.
        for start in range(0, len(data), step):
            self._buf += data[start : start + step]
            self._drain(out, at_end=False)
        return out

    def flush(self) -> list[Frame | Dropped]:
        """End of stream: whatever is still buffered is reported, never silently lost."""
        out: list[Frame | Dropped] = []
        self._drain(out, at_end=True)
        if self._in_frame and self._buf:
            body = bytes(self._buf)
            if _OBIS_LINE.search(body) is None:
                self._junk(len(body), out)
            else:
                self._emit(
                    Dropped(DropReason.TRUNCATED, "stream ended inside a telegram", len(body)), out
                )
        self._buf.clear()
        self._in_frame = False
        self._scan_from = 0
        self._skipping_oversized = False
        self._at_line_start = True
        self._end_run(out)
        return out

    # -- internals -------------------------------------------------------------------

    def _end_run(self, out: list[Frame | Dropped]) -> None:
        if self._run_has_content:
            detail = (
                "bytes without any P1 object, '/' markers among them"
                if self._run_sticky
                else "bytes outside a telegram"
            )
            out.append(Dropped(DropReason.GARBAGE, detail, self._run))
        self._run = 0
        self._run_has_content = False
        self._run_sticky = False

    def _emit(self, event: Frame | Dropped, out: list[Frame | Dropped]) -> None:
        """Hand on a telegram or a real drop, after the garbage that preceded it."""
        self._end_run(out)
        out.append(event)

    def _outside(
        self, length: int, out: list[Frame | Dropped], segment: bytearray | None = None
    ) -> None:
        """Account `length` bytes that are no telegram, cutting runs at multiples of max_size.

        `segment` holds those bytes at its start, to tell whitespace from garbage piece by
        piece; without it (a would-be telegram) they are garbage.
        """
        pos = 0
        while pos < length:
            take = min(length - pos, self.max_size - self._run)
            if not self._run_has_content and (
                segment is None or segment[pos : pos + take].strip(_WHITESPACE)
            ):
                self._run_has_content = True
            self._run += take
            pos += take
            if self._run >= self.max_size:
                sticky = self._run_sticky
                self._end_run(out)
                self._run_sticky = sticky

    def _junk(self, length: int, out: list[Frame | Dropped]) -> None:
        """A would-be telegram with no COSEM object: garbage that later junk may join."""
        self._run_sticky = True
        self._outside(length, out)

    def _find_start(self, begin: int, end: int, *, final: bool) -> tuple[int, int]:
        """The first telegram start in buf[begin:end], and the first position not yet decided.

        Returns (position or -1, resume). A mid-line '/' close to the end of the bytes
        buffered so far may still turn out to begin a header line: it is decided only once
        its line is complete or cannot be a header any more, so every answer depends on
        byte positions alone, never on where a chunk ended. `final`: no byte that arrives
        later can change the answer (end of stream, or `end` is a hard limit). One regex
        search does the work, so a flood of '/' costs C time, not a Python step per byte.
        """
        buf = self._buf
        if begin == 0 and end and buf[0] == 0x2F and self._at_line_start:
            return 0, 0
        first = buf.find(b"/", begin, end)  # memchr: most telegrams hold no other '/'
        if first < 0:
            return -1, end
        if first and buf[first - 1] in _LINE_END:
            return first, first  # the first '/' starts a line: what the search would say
        match = _START.search(buf, first, end)
        if match is not None:
            return match.start(), match.start()
        if final:
            return -1, end
        pos = max(begin, end - _HEADER_LOOKAHEAD)
        while (slash := buf.find(b"/", pos, end)) >= 0:
            line = slash + 1
            while line < end and buf[line] in _HEADER_CHARS:
                line += 1
            if line == end or (buf[line] == 0x0D and line + 1 == end):
                return -1, slash  # its line may still become a header line
            pos = slash + 1
        return -1, end

    def _drain(self, out: list[Frame | Dropped], *, at_end: bool) -> None:
        buf = self._buf
        while buf:
            if not self._in_frame:
                start, resume = self._find_start(0, len(buf), final=at_end)
                if start < 0:
                    self._consume_outside(resume, out)
                    return
                self._consume_outside(start, out)
                self._skipping_oversized = False
                if not self._run_sticky:
                    self._end_run(out)
                self._in_frame = True
                self._scan_from = 1
            if not self._cut_frame(out, at_end=at_end):
                return

    def _consume_outside(self, stop: int, out: list[Frame | Dropped]) -> None:
        """Bytes buf[:stop] are no telegram: account them (or skip them) and let them go."""
        if not stop:
            return
        buf = self._buf
        if not self._skipping_oversized:
            self._outside(stop, out, buf)
        self._at_line_start = buf[stop - 1] in _LINE_END
        del buf[:stop]

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
        if bang >= 0 and buf.find(b"/", self._scan_from, bang) < 0:
            restart = undecided = -1  # the usual telegram: no '/' before its '!'
        else:
            # Bytes up to the '!' are all here; the window of max_size bytes is a hard limit.
            restart, undecided = self._find_start(
                self._scan_from,
                bang if bang >= 0 else window,
                final=at_end or bang >= 0 or window >= self.max_size,
            )
        if restart >= 0:
            if _OBIS_LINE.search(buf, 0, restart) is None:
                # Junk. The would-be telegrams after it that start at line starts and hold
                # no COSEM object either ("/\r\n" over and over) join it in one step: the
                # same bytes, the same run, without a Python round per marker.
                limit = bang if bang >= 0 else window
                obis = _OBIS_LINE.search(buf, restart, limit)
                last = buf.rfind(b"\n/", restart, obis.start() if obis else limit)
                if last >= 0:
                    restart = last + 1
                self._junk(restart, out)
            else:
                self._emit(
                    Dropped(DropReason.TRUNCATED, "a new telegram began before '!'", restart), out
                )
            del buf[:restart]
            self._scan_from = 1
            return True
        if bang < 0:
            if len(buf) >= self.max_size:
                self._emit(
                    Dropped(
                        DropReason.OVERSIZED, f"no '!' within {self.max_size} bytes", self.max_size
                    ),
                    out,
                )
                self._at_line_start = buf[self.max_size - 1] in _LINE_END
                del buf[: self.max_size]
                self._in_frame = False
                self._scan_from = 0
                self._skipping_oversized = True  # the rest of it, up to the next telegram
                return True
            # A "\n" at the end may precede the '!'; an undecided '/' is looked at again.
            self._scan_from = max(1, min(window - 1, undecided))
            return False
        end = _CRC_DIGITS.match(buf, bang + 1, bang + 5).end()  # type: ignore[union-attr]
        if end - bang - 1 < 4 and end == len(buf) and not at_end:
            self._scan_from = bang - 1  # the CRC may still be arriving
            return False
        body = bytes(buf[: bang + 1])
        crc_text = bytes(buf[bang + 1 : end])
        line_ends = end == len(buf) or buf[end] in _LINE_END
        del buf[:end]
        self._in_frame = False
        self._scan_from = 0
        self._at_line_start = True  # the next telegram may follow the CRC directly
        event = self._check(body, crc_text, line_ends=line_ends)
        if isinstance(event, Dropped) and _OBIS_LINE.search(body) is None:
            self._junk(event.size, out)
        else:
            self._emit(event, out)
            if buf.startswith(b"\r\n"):
                # The line end after the CRC, taken as the next round would take it: two
                # bytes of whitespace opening the run that follows the telegram.
                self._run = 2
                del buf[:2]
        return True

    def _check(self, body: bytes, crc_text: bytes, *, line_ends: bool) -> Frame | Dropped:
        line_end = body.find(b"\n")  # the header line (the '!' line's LF, at the latest)
        if body.find(b"(", 0, line_end) >= 0 or body.find(b")", 0, line_end) >= 0:
            # A reader that started on the '/' of a value ("(http://x/y)"): a tail, no header.
            return Dropped(
                DropReason.GARBAGE,
                "the line after '/' is part of a value, not a P1 header",
                len(body) + len(crc_text),
            )
        if not crc_text:
            if self.check_crc and requires_crc(body):
                return Dropped(
                    DropReason.MISSING_CRC, "P1 version 4.0+ telegram without CRC", len(body)
                )
            if self.check_crc and self.crc_memory.seen:
                return Dropped(
                    DropReason.MISSING_CRC,
                    "telegram without CRC from a meter that has sent CRCs",
                    len(body),
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
        self.crc_memory.seen = True
        return Frame(body, declared, True)
