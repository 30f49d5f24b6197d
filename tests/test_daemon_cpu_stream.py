"""`ReadingStream.iter_readings` / `iter_framed` (what the daemon's readers take): the same
events as `feed` / `feed_framed`, each telegram parsed only when the caller takes it.

Why it matters: a reader handed dozens of telegrams by one read (a replay, a TCP burst)
used to hold all their readings at once; parsed one at a time, each reading is garbage
once handled, and the collector's full collections all but stop (bench_startup.py).
"""

from __future__ import annotations

import pytest
from conftest import SHARED_FIXTURES, capture_files

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped, Frame
from p1daemon.parse.layout import LayoutParser
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.encode import general_json
from p1daemon.reading.model import Reading

STREAM = SHARED_FIXTURES / "streams" / "iskra_am550_dsmr50_566_telegrams.txt"


def _stream() -> ReadingStream:
    return ReadingStream(TelegramDecoder(check_crc=True))


def _comparable(event: object) -> object:
    """Events as values: readings by their JSON (documents compare too, but the JSON
    also tells datetimes with other offsets apart)."""
    if isinstance(event, tuple):
        reading, frame = event
        return (general_json(reading), reading, frame)
    if isinstance(event, Reading):
        return (general_json(event), event)
    return event


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("framed", [False, True], ids=["readings", "framed"])
def test_lazy_events_are_the_listed_ones_for_every_capture(framed: bool) -> None:
    seen = 0
    for path in capture_files():
        data = path.read_bytes()
        eager, lazy = _stream(), _stream()
        for chunk in _chunks(data, 4096):
            if framed:
                listed: list[object] = list(eager.feed_framed(chunk))
                taken: list[object] = list(lazy.iter_framed(chunk))
            else:
                listed = list(eager.feed(chunk))
                taken = list(lazy.iter_readings(chunk))
            assert [_comparable(e) for e in taken] == [_comparable(e) for e in listed], path
            seen += len(taken)
        tail = eager.flush_framed() if framed else eager.flush()
        assert (lazy.flush_framed() if framed else lazy.flush()) == tail
    assert seen > 566


class _Counting:
    """The stream's parser, counting the telegrams it is given."""

    def __init__(self, parser: LayoutParser) -> None:
        self.parser = parser
        self.calls = 0

    def parse(self, frame: Frame) -> Reading:
        self.calls += 1
        return self.parser.parse(frame)


def test_telegrams_are_parsed_as_they_are_taken() -> None:
    data = STREAM.read_bytes()[:20_000]  # some 25 telegrams
    stream = _stream()
    counting = _Counting(stream._parser)
    stream._parser = counting  # type: ignore[assignment]
    events = stream.iter_framed(data)
    assert counting.calls == 0
    first = next(e for e in events if not isinstance(e, Dropped))
    assert isinstance(first, tuple) and counting.calls == 1
    rest = list(events)
    assert counting.calls == 1 + sum(not isinstance(e, Dropped) for e in rest) > 10
