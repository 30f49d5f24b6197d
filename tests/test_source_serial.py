"""Serial sources: real pseudo-terminals, pyserial errors, auto-detection on a simulated line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from test_daemon_support import PtyMeter, dsmr22_telegram, telegram
from test_source_autobaud import as_8n1, readings

from p1daemon.source.autobaud import LineSettingsDetector
from p1daemon.source.base import SourceUnavailable
from p1daemon.source.line import DSMR2, DSMR4, LineSettings
from p1daemon.source.serial_port import SerialSource


def read_until(source: SerialSource, want: bytes, timeout: float = 3.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got and time.monotonic() < deadline:
        got += source.read(0.05)
    return got


@pytest.fixture
def pty_meter(tmp_path: Path) -> Any:
    meter = PtyMeter(tmp_path / "ttyP1").plug()
    yield meter
    if meter.plugged:
        meter.unplug()


def test_reads_a_pty_behind_a_symlink_then_notices_the_unplug(pty_meter: PtyMeter) -> None:
    source = SerialSource(str(pty_meter.link), line=DSMR4)
    source.open()
    try:
        pty_meter.write_all(telegram(1))
        assert telegram(1) in read_until(source, telegram(1))
        pty_meter.unplug()
        with pytest.raises(SourceUnavailable, match=r"^read failed: device disconnected$"):
            read_until(source, b"never")
    finally:
        source.close()
    with pytest.raises(SourceUnavailable, match="cannot open: No such file or directory"):
        source.open()


def test_auto_detection_on_a_pty_passes_the_first_telegram_on(pty_meter: PtyMeter) -> None:
    source = SerialSource(str(pty_meter.link), detector=LineSettingsDetector())
    source.open()
    try:
        assert source.line_settings is None
        got = b""
        deadline = time.monotonic() + 3
        while telegram(2) not in got and time.monotonic() < deadline:
            pty_meter.write(telegram(2))
            got += source.read(0.05)
        assert telegram(2) in got
        assert source.line_settings == "115200 8N1"
    finally:
        source.close()


def test_second_reader_of_the_same_port_is_refused(pty_meter: PtyMeter) -> None:
    first = SerialSource(str(pty_meter.link), line=DSMR4)
    second = SerialSource(str(pty_meter.link), line=DSMR4)
    first.open()
    try:
        with pytest.raises(SourceUnavailable, match="cannot open"):
            second.open()
    finally:
        first.close()
    second.open()  # free again once the first let go
    second.close()


def test_missing_device() -> None:
    source = SerialSource("/dev/p1daemon-test-no-such-port", line=DSMR4)
    with pytest.raises(SourceUnavailable, match=r"^cannot open: No such file or directory$"):
        source.open()


class SimulatedLine:
    """A port on a line carrying `meter_line` traffic: mis-read unless settings match.

    Stands in for a USB serial adapter because only real hardware applies baud and parity.
    """

    def __init__(self, meter_line: LineSettings, stream: bytes) -> None:
        self.meter_line = meter_line
        self.stream = stream
        self.settings: dict[str, Any] = {}
        self.applied: list[LineSettings] = []
        self.flushes = 0
        self.timeout: float | None = None

    def factory(self, url: str, **kwargs: Any) -> SimulatedLine:
        assert kwargs.pop("exclusive") is True
        kwargs.pop("timeout")
        self.settings = kwargs
        return self

    @property
    def current(self) -> LineSettings:
        return LineSettings(**self.settings)

    @property
    def in_waiting(self) -> int:
        return 0

    def read(self, size: int = 1) -> bytes:
        chunk, self.stream = self.stream[:64], self.stream[64:]
        if self.current == self.meter_line:
            return chunk
        return as_8n1(chunk)  # the 7E1 line read as 8N1

    def apply_settings(self, d: dict[str, Any]) -> None:
        self.settings = dict(d)
        self.applied.append(self.current)

    def reset_input_buffer(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        pass


def test_auto_detection_switches_the_port_to_7e1_and_locks() -> None:
    line = SimulatedLine(DSMR2, b"".join(dsmr22_telegram(i) for i in range(20)))
    source = SerialSource("/dev/fake", detector=LineSettingsDetector(), port_factory=line.factory)
    source.open()
    assert line.current == DSMR4  # first guess
    chunks = [source.read(0.01) for _ in range(100)]
    assert line.applied == [DSMR2]
    assert line.flushes == 1  # bytes mis-read under the old setting are thrown away
    assert source.line_settings == "9600 7E1"
    passed_on = [chunk for chunk in chunks if chunk]
    # The first bytes passed on are the sample that proved 7E1: it holds a whole telegram.
    assert len(readings(passed_on[0])) == 1
    seqs = [round((r.import_.t1_kwh or 0) * 1000) for r in readings(b"".join(passed_on))]
    assert seqs == list(range(seqs[0], 20))  # nothing lost after the lock
    assert seqs[0] <= 5
