"""Finding a P1 port's serial settings by listening: 115200 8N1 or 9600 7E1.

The meter never answers questions, so the only test is whether what arrives under a
setting makes sense. Two kinds of evidence, both computed from the bytes alone so the
decision can be tested without hardware:

- proof of the right setting: a complete telegram with a valid CRC (or, for DSMR 2.2,
  a CRC-less frame that looks like P1 text) -> keep it;
- proof of a wrong setting: P1 telegrams are printable 7-bit ASCII plus CR/LF, so a
  stream with many other bytes is being mis-read (7E1 read as 8N1 puts the parity bit
  into bit 7; a wrong baud rate turns characters into framing-error noise) -> switch
  at once instead of waiting.

Without either, a setting gets `window_s` (long enough for two telegrams of a meter that
sends every 10 s) before the next is tried; candidates are cycled for ever, because a
meter may be connected at any time.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from p1daemon.frame.events import Frame
from p1daemon.frame.framer import DEFAULT_MAX_FRAME, Framer
from p1daemon.source.line import AUTO_CANDIDATES, LineSettings

_P1_TEXT = bytes(range(0x20, 0x7F)) + b"\r\n\t"

DEFAULT_WINDOW_S = 25.0
DEFAULT_EVIDENCE_BYTES = 256
DEFAULT_MAX_BAD_FRACTION = 0.1


class Verdict(Enum):
    LISTEN = "listen"
    """Not enough evidence yet: keep reading under the current setting."""
    SWITCH = "switch"
    """The current setting is wrong or gave nothing in time: call `advance`."""
    LOCKED = "locked"
    """A valid telegram arrived: keep the setting; `take_sample` has the bytes."""


def non_text_bytes(data: bytes) -> int:
    """How many bytes of `data` can never occur in a plaintext P1 telegram."""
    return len(data.translate(None, _P1_TEXT))


class LineSettingsDetector:
    """Pure decision logic; the caller reads the port and applies `current`."""

    def __init__(
        self,
        candidates: Sequence[LineSettings] = AUTO_CANDIDATES,
        *,
        check_crc: bool = True,
        max_frame: int = DEFAULT_MAX_FRAME,
        window_s: float = DEFAULT_WINDOW_S,
        evidence_bytes: int = DEFAULT_EVIDENCE_BYTES,
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    ) -> None:
        if not candidates:
            raise ValueError("at least one candidate setting is needed")
        self.candidates = tuple(candidates)
        self._check_crc = check_crc
        self._max_frame = max_frame
        self._window_s = window_s
        self._evidence_bytes = evidence_bytes
        self._max_bad_fraction = max_bad_fraction
        self._index = 0
        self._started = 0.0
        self._seen = 0
        self._bad = 0
        self._sample = bytearray()
        self._framer = Framer(check_crc=check_crc, max_size=max_frame)
        self.tried: list[LineSettings] = []

    @property
    def current(self) -> LineSettings:
        return self.candidates[self._index]

    def begin(self, now: float) -> LineSettings:
        """Start (or restart, after a reopen) listening under the current setting."""
        self._started = now
        self._seen = self._bad = 0
        self._sample.clear()
        self._framer = Framer(check_crc=self._check_crc, max_size=self._max_frame)
        if self.current not in self.tried:
            self.tried.append(self.current)
        return self.current

    def advance(self, now: float) -> LineSettings:
        """Move on to the next candidate (cycling) and start listening under it."""
        self._index = (self._index + 1) % len(self.candidates)
        return self.begin(now)

    def observe(self, data: bytes, now: float) -> Verdict:
        if data:
            self._seen += len(data)
            self._bad += non_text_bytes(data)
            self._sample += data
            excess = len(self._sample) - self._max_frame - max(len(data), self._max_frame)
            if excess > 0:
                # A telegram is at most max_frame long and completes within this chunk,
                # so what is kept always holds it whole.
                del self._sample[:excess]
            if any(isinstance(event, Frame) for event in self._framer.feed(data)):
                return Verdict.LOCKED
            if (
                self._seen >= self._evidence_bytes
                and self._bad > self._max_bad_fraction * self._seen
            ):
                return Verdict.SWITCH
        if now - self._started >= self._window_s:
            return Verdict.SWITCH
        return Verdict.LISTEN

    def take_sample(self) -> bytes:
        """The bytes read under the winning setting, so the first telegram is not lost."""
        sample = bytes(self._sample)
        self._sample.clear()
        return sample
