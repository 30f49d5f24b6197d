"""`datetime_text` writes a UTC datetime (the daemon's receive time) by its own shortcut:
the same text as the general rule (`format_datetime`, pydantic_core's) and as the way of
every other zone (`_datetime_text`), for any instant, with and without microseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from p1daemon.reading import encode
from p1daemon.reading.encode import datetime_text, format_datetime


@given(st.datetimes(timezones=st.just(UTC)))
def test_utc_datetimes_are_written_as_the_general_rule(value: datetime) -> None:
    assert value.tzinfo is UTC
    text = datetime_text(value)
    assert text == format_datetime(value) == encode._datetime_text(value)
    assert text.endswith("Z")


@given(st.datetimes(), st.integers(min_value=-23 * 60, max_value=23 * 60), st.booleans())
def test_other_zones_are_written_as_the_general_rule(
    local: datetime, minutes: int, named: bool
) -> None:
    """Every other fixed offset, and a zero one that is not UTC itself (a named one;
    an unnamed zero offset is UTC, the same object), the first time and again."""
    offset = timedelta(minutes=minutes)
    zone = timezone(offset, "meter") if named else timezone(offset)
    value = local.replace(tzinfo=zone)
    for _ in range(2):
        assert datetime_text(value) == format_datetime(value)
