"""Bytes to readings for one meter: framing, decryption, CRC and parsing in one place.

Both `p1daemon parse` and the daemon's meter readers go through this class, so a
capture file replayed in a test takes exactly the path a live serial port takes.

`iter_readings` / `iter_framed` parse one telegram at a time, as the caller takes them:
a daemon reading a backlog (a replay, a TCP source delivering a burst) gets dozens of
telegrams per read, and parsed all at once their readings (some 25 objects each) would
all be alive until the last was handled; they then outlive young garbage collections
and end up in full ones (issue 16: most of the daemon's collector work, flat out).
`feed` / `feed_framed` give the same events as a list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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
        return list(self._parse_all(self._decoder.feed(data)))

    def flush(self) -> list[Reading | Dropped]:
        return list(self._parse_all(self._decoder.flush()))

    def feed_framed(self, data: bytes) -> list[tuple[Reading, Frame] | Dropped]:
        """As `feed`, each reading with the frame it came from (to serve it on as is)."""
        return list(self._with_frames(self._decoder.feed(data)))

    def flush_framed(self) -> list[tuple[Reading, Frame] | Dropped]:
        return list(self._with_frames(self._decoder.flush()))

    def iter_readings(self, data: bytes) -> Iterator[Reading | Dropped]:
        """As `feed`, each telegram parsed only when the caller takes it (framing is done
        at once: a framing error shows here, before the first event)."""
        return self._parse_all(self._decoder.feed(data))

    def iter_framed(self, data: bytes) -> Iterator[tuple[Reading, Frame] | Dropped]:
        """As `feed_framed`, each telegram parsed only when the caller takes it."""
        return self._with_frames(self._decoder.feed(data))

    def _with_frames(
        self, events: Iterable[Frame | Dropped]
    ) -> Iterator[tuple[Reading, Frame] | Dropped]:
        parse = self._parser.parse
        for event in events:
            if isinstance(event, Dropped):
                yield event
                continue
            try:
                parsed: tuple[Reading, Frame] | Dropped = (parse(event), event)
            except Exception as exc:  # a parser bug must cost one telegram, not the daemon
                parsed = _unparsable(exc, event)
            yield parsed

    def _parse_all(self, events: Iterable[Frame | Dropped]) -> Iterator[Reading | Dropped]:
        parse = self._parser.parse
        for event in events:
            if isinstance(event, Dropped):
                yield event
                continue
            try:
                parsed: Reading | Dropped = parse(event)
            except Exception as exc:  # a parser bug must cost one telegram, not the daemon
                parsed = _unparsable(exc, event)
            yield parsed


def _unparsable(exc: Exception, frame: Frame) -> Dropped:
    return Dropped(DropReason.UNPARSABLE, f"{type(exc).__name__}: {exc}", len(frame.body))
