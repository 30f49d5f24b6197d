"""From a meter's configuration (or a `probe` command line) to the right `ByteSource`.

Each kind of source is imported when a meter uses it: a daemon replaying captures or
running demo meters does not load the serial port, its line-settings detection or the
TCP client, and a meter cupboard's daemon on serial ports loads neither the replay nor
the demo profiles (the largest of them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from p1daemon.config.model import MeterConfig
from p1daemon.source.base import ByteSource
from p1daemon.source.line import LineSettings
from p1daemon.source.spec import SourceKind, SourceSpec


class Clock(Protocol):
    """Wall time in seconds and a sleep that lets it pass."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class SourceOptions:
    line: LineSettings | None = None
    """Fixed serial settings; None detects them."""
    encrypted: bool = False
    check_crc: bool = True
    max_frame: int = 8192
    replay_interval_s: float = 1.0
    replay_loop: bool = False


def options_for(meter: MeterConfig) -> SourceOptions:
    line = None
    if meter.baudrate != "auto":
        line = LineSettings(
            meter.baudrate, meter.bytesize or 8, meter.parity or "N", meter.stopbits or 1
        )
    return SourceOptions(
        line=line,
        encrypted=meter.key is not None,
        check_crc=meter.check_crc,
        max_frame=meter.max_frame_bytes,
        replay_interval_s=meter.replay_interval_s,
        replay_loop=meter.replay_loop,
    )


def build_source(
    spec: SourceSpec, options: SourceOptions, *, clock: Clock | None = None
) -> ByteSource:
    """`clock` (time and sleep) replaces the real one in the sources that pace themselves:
    replays and demo meters; a test walks them through hours in a moment."""
    sleep = None if clock is None else clock.sleep  # None: their own, interruptible one
    if spec.kind is SourceKind.REPLAY:
        from p1daemon.source.replay import ReplaySource

        assert spec.path is not None
        return ReplaySource(
            spec.path,
            interval_s=options.replay_interval_s,
            loop=options.replay_loop,
            clock=time.monotonic if clock is None else clock.now,
            sleep=sleep,
        )
    if spec.kind is SourceKind.DEMO:
        from p1daemon.source.demo import DemoSource

        return DemoSource(
            spec.profile,
            speed=spec.speed,
            interval_s=options.replay_interval_s,
            clock=time.time if clock is None else clock.now,
            sleep=sleep,
        )
    if spec.kind is SourceKind.SOCKET:
        from p1daemon.source.tcp import TcpSource

        return TcpSource(spec.host, spec.port)
    from p1daemon.source.serial_port import SerialSource

    if options.line is not None:
        return SerialSource(spec.text, line=options.line)
    if options.encrypted:
        # Encrypted frames are binary, so "printable text" evidence cannot judge them; and
        # Smarty mandates 115200 8N1 anyway.
        from p1daemon.source.line import DSMR4

        return SerialSource(spec.text, line=DSMR4)
    from p1daemon.source.autobaud import LineSettingsDetector

    detector = LineSettingsDetector(check_crc=options.check_crc, max_frame=options.max_frame)
    return SerialSource(spec.text, detector=detector)


def source_for(meter: MeterConfig) -> ByteSource:
    return build_source(meter.source_spec, options_for(meter))
