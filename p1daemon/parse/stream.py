"""Bytes to readings for one meter: framing, decryption, CRC and parsing in one place.

Both `p1daemon parse` and the daemon's meter readers go through this class, so a
capture file replayed in a test takes exactly the path a live serial port takes.
"""

from __future__ import annotations

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped, DropReason, Frame
from p1daemon.parse.layout import LayoutParser
from p1daemon.reading.model import Reading


class ReadingStream:
    """Feed raw bytes, get `Reading`s and `Dropped`s in stream order."""

    def __init__(self, decoder: TelegramDecoder) -> None:
        self._decoder = decoder
        # One meter per stream: its telegrams share a layout (p1daemon/parse/layout.py).
        # Only frames the decoder accepted (CRC checked, framed) ever reach it.
        self._parser = LayoutParser()

    def feed(self, data: bytes) -> list[Reading | Dropped]:
        return self._parse_all(self._decoder.feed(data))

    def flush(self) -> list[Reading | Dropped]:
        return self._parse_all(self._decoder.flush())

    def feed_framed(self, data: bytes) -> list[tuple[Reading, Frame] | Dropped]:
        """As `feed`, each reading with the frame it came from (to serve it on as is)."""
        return self._with_frames(self._decoder.feed(data))

    def flush_framed(self) -> list[tuple[Reading, Frame] | Dropped]:
        return self._with_frames(self._decoder.flush())

    def _with_frames(self, events: list[Frame | Dropped]) -> list[tuple[Reading, Frame] | Dropped]:
        out: list[tuple[Reading, Frame] | Dropped] = []
        parse = self._parser.parse
        for event in events:
            if isinstance(event, Dropped):
                out.append(event)
                continue
            try:
                out.append((parse(event), event))
            except Exception as exc:  # a parser bug must cost one telegram, not the daemon
                out.append(_unparsable(exc, event))
        return out

    def _parse_all(self, events: list[Frame | Dropped]) -> list[Reading | Dropped]:
        out: list[Reading | Dropped] = []
        parse = self._parser.parse
        for event in events:
            if isinstance(event, Dropped):
                out.append(event)
                continue
            try:
                out.append(parse(event))
            except Exception as exc:  # a parser bug must cost one telegram, not the daemon
                out.append(_unparsable(exc, event))
        return out


def _unparsable(exc: Exception, frame: Frame) -> Dropped:
    return Dropped(DropReason.UNPARSABLE, f"{type(exc).__name__}: {exc}", len(frame.body))
