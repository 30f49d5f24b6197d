"""The capacity watch's computed monthly peaks stay at a year, however long it runs.

The watch books each closed month's computed peak for the rolling average. It once kept
every month since start-up: a daemon that runs for years without restart (the Pi's
case) grew it by one entry a month, for ever. Only the WINDOW_MONTHS months before the
current one are read, so that is what is kept; these tests feed many distinct months and
check both the bound and that the rolling average is still that of all the months seen.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import EnergyDirection, Reading
from p1daemon.views.capacity import rolling
from p1daemon.views.capacity.compute import CapacityWatch

ZONE = ZoneInfo("Europe/Brussels")
MONTHS = 40  # over three years: far more than the window


def reading(at: datetime, total_kwh: float) -> MeterReading:
    """A meter without its own capacity data: the watch computes the peaks itself."""
    plain = Reading(
        header="/TEST5\\2TEST", timestamp=at, import_=EnergyDirection(total_kwh=total_kwh)
    )
    return MeterReading.from_reading(plain, meter="house", role="primary", ean=None, received_at=at)


def peak_kw(month: int) -> float:
    """A different peak each month (some below the 2.5 kW floor), in whole Wh a minute."""
    return 1.2 + (month * 7 % 11) * 0.6


def feed_months(watch: CapacityWatch) -> tuple[dict[int, float], list[tuple[int, object]]]:
    """One complete quarter-hour at the start of each month, at that month's peak.

    Returns the peaks booked (month index -> kW, as an unbounded watch would hold them)
    and each month's first state after its quarter closed, with the month it is in.
    """
    booked: dict[int, float] = {}
    states: list[tuple[int, object]] = []
    energy_wh = 1_000_000  # integer Wh: the totals are exact, as a meter's are
    for n in range(MONTHS):
        year, month = divmod(n, 12)
        start = datetime(2026 + year, month + 1, 1, 0, 0, tzinfo=ZONE).astimezone(UTC)
        index = rolling.month_index(start.astimezone(ZONE).date())
        step_wh = round(peak_kw(n) * 1000 / 60)  # per minute
        for minute in range(17):  # 00:00 .. 00:16: the quarter 00:00-00:15 closes at 00:15
            update = watch.feed(reading(start + timedelta(minutes=minute), energy_wh / 1000))
            energy_wh += step_wh
            assert update is not None
            if minute == 16:
                states.append((index, update.state))
        booked[index] = step_wh * 60 / 1000
        energy_wh += 500_000  # the rest of the month, read by nobody: a gap
    return booked, states


def test_the_computed_history_never_holds_more_than_the_window() -> None:
    watch = CapacityWatch("house", None, ZONE)
    sizes = []
    for n in range(MONTHS):
        year, month = divmod(n, 12)
        start = datetime(2026 + year, month + 1, 1, tzinfo=ZONE).astimezone(UTC)
        for minute in range(17):
            total = 1000 + n * 10 + minute * peak_kw(n) / 60
            watch.feed(reading(start + timedelta(minutes=minute), round(total, 3)))
        sizes.append(len(watch._history))
    assert max(sizes) == rolling.WINDOW_MONTHS  # reached, and never passed
    assert sizes[-1] == rolling.WINDOW_MONTHS


def test_the_rolling_average_is_still_that_of_every_month_seen() -> None:
    watch = CapacityWatch("house", None, ZONE)
    booked, states = feed_months(watch)
    assert len(states) == MONTHS
    for index, state in states:
        # What an unbounded history would give: every month booked before this one.
        before = {m: kw for m, kw in booked.items() if m < index}
        expected = rolling.rolling(booked[index], before, index)
        got = state.rolling  # type: ignore[attr-defined]
        assert got.average_kw == pytest.approx(expected.average_kw, abs=1e-4)
        assert got.months == expected.months
        if expected.previous_average_kw is None:
            assert got.previous_average_kw is None
        else:
            assert got.previous_average_kw == pytest.approx(expected.previous_average_kw, abs=1e-4)
    assert states[-1][1].rolling.months == rolling.WINDOW_MONTHS  # type: ignore[attr-defined]
    assert len(watch._history) <= rolling.WINDOW_MONTHS
