"""Capped exponential backoff for reopening a port that is gone.

Fast at first (a USB adapter that re-enumerates is back within a second), then never
slower than the cap, so a replugged meter is picked up within a few seconds even after
hours away, without a tight loop hammering a missing device in between.
"""

from __future__ import annotations


class Backoff:
    def __init__(self, initial: float, maximum: float, factor: float = 2.0) -> None:
        if not 0 < initial <= maximum:
            raise ValueError("need 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial
