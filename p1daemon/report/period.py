"""Report periods: `2026-11`, `2026`, `2026-11-01..2026-11-15`, `yesterday`, `this-month`,
`last-month` (local calendar days; the end date of a range is included)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from p1daemon.views.energy.clock import day_bounds

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class PeriodError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Period:
    first_day: date
    last_day: date  # included
    text: str

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """Local midnight before the first day to local midnight after the last, UTC."""
        return day_bounds(self.first_day, zone)[0], day_bounds(self.last_day, zone)[1]


def _month_end(year: int, month: int) -> date:
    following = date(year + month // 12, month % 12 + 1, 1)
    return following - timedelta(days=1)


def parse_period(text: str, zone: ZoneInfo, now: datetime | None = None) -> Period:
    today = (now or datetime.now(UTC)).astimezone(zone).date()
    value = text.strip()
    try:
        if value == "yesterday":
            day = today - timedelta(days=1)
            return Period(day, day, value)
        if value == "today":
            return Period(today, today, value)
        if value == "this-month":
            return Period(today.replace(day=1), _month_end(today.year, today.month), value)
        if value == "last-month":
            last = today.replace(day=1) - timedelta(days=1)
            return Period(last.replace(day=1), last, value)
        if match := _MONTH.match(value):
            year, month = int(match[1]), int(match[2])
            return Period(date(year, month, 1), _month_end(year, month), value)
        if match := _YEAR.match(value):
            year = int(match[1])
            return Period(date(year, 1, 1), date(year, 12, 31), value)
        if match := _RANGE.match(value):
            first, last = date.fromisoformat(match[1]), date.fromisoformat(match[2])
            if last < first:
                raise PeriodError(f"period {text!r} ends before it starts")
            return Period(first, last, value)
        if _DAY.match(value):
            day = date.fromisoformat(value)
            return Period(day, day, value)
    except ValueError as exc:
        if isinstance(exc, PeriodError):
            raise
        raise PeriodError(f"period {text!r}: {exc}") from None
    raise PeriodError(
        f"period {text!r}: use 2026-11, 2026, 2026-11-01..2026-11-15, 2026-11-03, "
        "yesterday, this-month or last-month"
    )
