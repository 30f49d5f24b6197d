"""The one-line status the main loop reports (systemd's STATUS=, `systemctl status`)."""

from __future__ import annotations

from collections import deque

WINDOW_S = 60.0


class ReadingRate:
    """Readings per minute over the last minute, from the running total of accepted ones.

    Sampled by the main loop once a tick, so no reader thread pays for it.
    """

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, total: int) -> float:
        samples = self._samples
        samples.append((now, total))
        while len(samples) > 2 and now - samples[1][0] >= self._window:
            samples.popleft()
        start, first = samples[0]
        span = now - start
        if span <= 0:
            return 0.0
        return (total - first) * 60.0 / span


def status_line(meters: int, waiting: int, silent: int, per_minute: float, extra: str) -> str:
    parts = [f"{meters} meter{'s' if meters != 1 else ''}"]
    if waiting:
        parts.append(
            f"{waiting} waiting for its port"
            if waiting == 1
            else f"{waiting} waiting for their ports"
        )
    if silent:
        parts.append(f"{silent} silent")
    parts.append(f"{per_minute:.0f} readings/min")
    if extra:
        parts.append(extra)
    return ", ".join(parts)
