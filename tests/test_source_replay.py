"""`replay:` sources: cutting captures into telegrams, pacing, looping, end of data."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_daemon_support import telegram

from p1daemon.frame.smarty import encrypt_frame
from p1daemon.source.base import EndOfData, SourceUnavailable
from p1daemon.source.replay import ReplaySource, iter_units


class FakeTime:
    """A clock that only moves when the source sleeps: pacing checked without waiting."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def capture(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "capture.txt"
    path.write_bytes(data)
    return path


def test_text_capture_is_cut_before_each_telegram() -> None:
    data = b"ld telegram!1234\r\n" + telegram(1) + telegram(2) + telegram(3)
    units = list(iter_units(io.BytesIO(data), block=7))
    assert units == [b"ld telegram!1234\r\n", telegram(1), telegram(2), telegram(3)]


def test_smarty_capture_is_cut_at_declared_frame_lengths() -> None:
    key = bytes(range(16))
    frames = [encrypt_frame(telegram(i), key, frame_counter=i) for i in range(3)]
    assert list(iter_units(io.BytesIO(b"".join(frames)), block=100)) == frames


@given(st.binary(max_size=3000), st.integers(1, 200))
def test_cutting_never_loses_or_reorders_bytes(data: bytes, block: int) -> None:
    assert b"".join(iter_units(io.BytesIO(data), block=block)) == data


def test_paced_at_the_interval(tmp_path: Path) -> None:
    fake = FakeTime()
    source = ReplaySource(
        capture(tmp_path, telegram(1) + telegram(2)),
        interval_s=1.0,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    source.open()
    assert source.read(0.25) == telegram(1)  # the first one at once
    reads = [source.read(0.25) for _ in range(4)]
    assert reads == [b"", b"", b"", telegram(2)]
    assert fake.now == pytest.approx(101.0)
    assert max(fake.sleeps) <= 0.25  # never sleeps past the read timeout (stop stays fast)
    with pytest.raises(EndOfData):
        source.read(0.25)


def test_zero_interval_delivers_everything_at_once(tmp_path: Path) -> None:
    data = b"".join(telegram(i) for i in range(50))
    fake = FakeTime()
    source = ReplaySource(capture(tmp_path, data), interval_s=0, clock=fake.clock, sleep=fake.sleep)
    source.open()
    assert source.read(0.25) == data
    with pytest.raises(EndOfData):
        source.read(0.25)
    assert fake.sleeps == []


def test_looping_starts_over(tmp_path: Path) -> None:
    fake = FakeTime()
    source = ReplaySource(
        capture(tmp_path, telegram(1) + telegram(2)),
        interval_s=0.5,
        loop=True,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    source.open()
    got = [chunk for chunk in (source.read(1.0) for _ in range(5)) if chunk]
    assert got == [telegram(1), telegram(2), telegram(1), telegram(2), telegram(1)]


def test_empty_file_ends_or_idles(tmp_path: Path) -> None:
    path = capture(tmp_path, b"")
    fake = FakeTime()
    finite = ReplaySource(path, interval_s=0, clock=fake.clock, sleep=fake.sleep)
    finite.open()
    with pytest.raises(EndOfData):
        finite.read(0.25)
    looping = ReplaySource(path, interval_s=1, loop=True, clock=fake.clock, sleep=fake.sleep)
    looping.open()
    assert looping.read(0.25) == b""
    assert fake.sleeps == [0.25]  # waits instead of spinning on a file with nothing in it


def test_missing_file_is_unavailable(tmp_path: Path) -> None:
    source = ReplaySource(tmp_path / "gone.txt")
    with pytest.raises(SourceUnavailable, match="cannot read: No such file or directory"):
        source.open()


def test_reopen_starts_from_the_beginning(tmp_path: Path) -> None:
    source = ReplaySource(capture(tmp_path, telegram(1) + telegram(2)), interval_s=0)
    source.open()
    assert source.read(0.1) == telegram(1) + telegram(2)
    source.close()
    source.close()  # twice is fine
    source.open()
    assert source.read(0.1) == telegram(1) + telegram(2)
    source.close()


def test_description_says_how_it_plays(tmp_path: Path) -> None:
    path = capture(tmp_path, b"")
    assert ReplaySource(path, interval_s=1, loop=True).description == (
        f"replay:{path} (every 1 s, looping)"
    )
    assert ReplaySource(path, interval_s=0).description == f"replay:{path} (as fast as possible)"
