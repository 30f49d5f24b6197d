"""Per-meter `publish_interval_s`: fewer readings for those who want them, newest first.

A meter sending every second is more than some installations want to store. With an
interval set, at most one reading per interval is accepted into the outbox, and it is
always the newest one seen: a reading that arrives while the interval runs replaces the
one held, and the held one is released when the interval is over (or at stop). Taking
the newest, never an older one after a newer, is what keeps the published energy
registers from ever going backwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

_T = TypeVar("_T")


@dataclass(slots=True)
class _Slot(Generic[_T]):
    interval: float
    next_due: float = float("-inf")
    held: _T | None = None


class Throttle(Generic[_T]):
    """Not thread-safe: the sink calls it under its own lock."""

    def __init__(self, intervals: Mapping[str, float]) -> None:
        for meter, interval in intervals.items():
            if interval < 0:
                raise ValueError(f"publish_interval_s for {meter!r} must be >= 0, got {interval}")
        self._slots: dict[str, _Slot[_T]] = {
            meter: _Slot(interval) for meter, interval in intervals.items() if interval > 0
        }
        self.replaced = 0  # readings superseded by a newer one inside an interval

    @property
    def active(self) -> bool:
        """Whether any meter is throttled at all (most installations: none), so that the
        publisher's worker can skip asking on every round."""
        return bool(self._slots)

    def offer(self, meter: str, item: _T, now: float) -> _T | None:
        """The item to accept now, or None if it is held until its interval is over."""
        slot = self._slots.get(meter)
        if slot is None:
            return item
        if slot.held is None and now >= slot.next_due:
            slot.next_due = now + slot.interval
            return item
        if slot.held is not None:
            self.replaced += 1
        slot.held = item
        return None

    def due(self, now: float) -> list[_T]:
        """Held items whose interval is over, to be accepted now."""
        out: list[_T] = []
        for slot in self._slots.values():
            if slot.held is not None and now >= slot.next_due:
                out.append(slot.held)
                slot.held = None
                slot.next_due = now + slot.interval
        return out

    def next_due(self) -> float | None:
        dues = [slot.next_due for slot in self._slots.values() if slot.held is not None]
        return min(dues) if dues else None

    def set_intervals(self, intervals: Mapping[str, float]) -> list[_T]:
        """New intervals (a reload); returns what a meter no longer throttled was holding,
        to be accepted now. A meter whose interval is unchanged keeps its slot."""
        released: list[_T] = []
        slots: dict[str, _Slot[_T]] = {}
        for meter, interval in intervals.items():
            if interval < 0:
                raise ValueError(f"publish_interval_s for {meter!r} must be >= 0, got {interval}")
        for meter, slot in self._slots.items():
            interval = intervals.get(meter, 0.0)
            if interval == slot.interval:
                slots[meter] = slot
            elif interval > 0:
                slot.interval = interval
                slots[meter] = slot
            elif slot.held is not None:
                released.append(slot.held)
        for meter, interval in intervals.items():
            if interval > 0 and meter not in slots:
                slots[meter] = _Slot(interval)
        self._slots = slots
        return released

    def release_all(self) -> list[_T]:
        """Everything held, regardless of time: used at stop so nothing accepted is lost."""
        out = [slot.held for slot in self._slots.values() if slot.held is not None]
        for slot in self._slots.values():
            slot.held = None
        return out
