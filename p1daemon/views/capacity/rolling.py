"""The bill's rolling average of monthly peaks, each month counted as at least 2.5 kW.

Flanders (since 2023): the capacity charge is on the average of the last 12 monthly peaks;
a month below 2.5 kW counts as 2.5 kW, and while fewer than 12 months are known only the
known ones are averaged. A month the meter has no peak for (the `632525252525W`
placeholder in `0-0:98.1.0`) is not known: it is left out, not counted as zero or as the
floor.

Months are numbered `year * 12 + month - 1` so "the 11 months before this one" is plain
arithmetic. A `0-0:98.1.0` entry is stamped with the start of the month *after* the one
it covers (`(231101000000W)(231016130000S)(04.927*kW)` is October's peak).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

FLOOR_KW = 2.5
WINDOW_MONTHS = 12


def month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def covered_month(stamp: datetime) -> int:
    """The month a history entry covers: the one before its (local) stamp."""
    return month_index((stamp - timedelta(seconds=1)).date())


def floored(kw: float) -> float:
    return max(kw, FLOOR_KW)


@dataclass(frozen=True, slots=True)
class Rolling:
    average_kw: float  # this month (its peak so far) and the 11 known months before it
    months: int  # how many months that average is over (1..12)
    previous_average_kw: float | None  # the 12 months before this one, None if none known
    previous_months: int
    change_kw: float | None  # average_kw - previous_average_kw: what this month does


def closed_months(history: Mapping[int, float], current: int, count: int) -> list[float]:
    """The known peaks of the `count` months before `current`, newest first."""
    return [history[m] for m in range(current - 1, current - 1 - count, -1) if m in history]


def average_with(current_kw: float | None, history: Mapping[int, float], current: int) -> float:
    """The rolling average if this month's peak were `current_kw` (None: none yet)."""
    values = [floored(current_kw or 0.0)]
    values += [floored(kw) for kw in closed_months(history, current, WINDOW_MONTHS - 1)]
    return sum(values) / len(values)


def rolling(current_kw: float | None, history: Mapping[int, float], current: int) -> Rolling:
    others = closed_months(history, current, WINDOW_MONTHS - 1)
    average = average_with(current_kw, history, current)
    previous = [floored(kw) for kw in closed_months(history, current, WINDOW_MONTHS)]
    previous_average = sum(previous) / len(previous) if previous else None
    return Rolling(
        average_kw=average,
        months=len(others) + 1,
        previous_average_kw=previous_average,
        previous_months=len(previous),
        change_kw=None if previous_average is None else average - previous_average,
    )


def history_of(entries: Iterable[tuple[datetime | None, float | None]]) -> dict[int, float]:
    """(stamp, kW) pairs of `0-0:98.1.0` to {covered month: kW}; placeholders dropped."""
    out: dict[int, float] = {}
    for stamp, kw in entries:
        if stamp is None or kw is None:
            continue
        out[covered_month(stamp)] = kw
    return out
