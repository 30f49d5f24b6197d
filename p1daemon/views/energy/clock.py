"""Quarter-hours and days in local time, computed on instants so DST cannot confuse them.

A quarter is the 15 minutes of *elapsed* time starting at a local :00, :15, :30 or :45.
Flooring the local wall time with the offset in force at that instant gives the right
quarter on both DST days: in October the hour 02:00-03:00 happens twice, once at +02:00
and once at +01:00, and those are eight different quarters (their instants differ). This
needs every UTC offset of the zone to be a multiple of 15 minutes, which holds for the
zones this daemon serves (and for every zone in use today).

Every datetime these functions return is in UTC. Python compares and subtracts two
datetimes that share a tzinfo by their wall-clock fields, ignoring `fold`, so in the
repeated October hour 02:00+02:00 would equal 02:00+01:00 and "02:10 minus 02:50" would
be negative. Internally the views therefore only ever handle UTC; local time is for the
documents.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

QUARTER_S = 900


def _offset_s(instant: datetime, zone: ZoneInfo) -> int:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def quarter_start(instant: datetime, zone: ZoneInfo) -> datetime:
    epoch = instant.timestamp()
    offset = _offset_s(instant, zone)
    start = math.floor((epoch + offset) / QUARTER_S) * QUARTER_S - offset
    return datetime.fromtimestamp(start, UTC)


def quarter_end(start: datetime) -> datetime:
    return start.astimezone(UTC) + timedelta(seconds=QUARTER_S)


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Local midnight to the next local midnight (23, 24 or 25 hours apart), in UTC."""
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def local(instant: datetime, zone: ZoneInfo) -> datetime:
    """For documents: the instant in local time, with the offset in force then.

    The tzinfo is that fixed offset, not the zone, so that code comparing or subtracting
    document times (the site view, tests, subscribers in Python) gets instants right.
    """
    in_zone = instant.astimezone(zone)
    offset = in_zone.utcoffset()
    assert offset is not None
    return in_zone.replace(tzinfo=timezone(offset))
