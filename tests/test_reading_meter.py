"""`MeterReading.from_reading` copies a parsed reading without making it again.

Its fast path (one copy of the reading's `__dict__`) must make exactly what keyword
construction makes (fields, their order, equality, the public JSON), for every telegram the
project carries, and the copy must be a copy.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import EnergyDirection, Reading

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def readings() -> list[Reading]:
    found: list[Reading] = []
    for path in sorted(FIXTURES.rglob("*.txt")):
        stream = ReadingStream(TelegramDecoder(check_crc=False))
        events = [*stream.feed(path.read_bytes()), *stream.flush()]
        found.extend(e for e in events if not isinstance(e, Dropped))
    return found


READINGS = readings()


def test_there_are_readings_to_compare() -> None:
    assert len(READINGS) >= 20


def by_keywords(reading: Reading, **extra: object) -> MeterReading:
    """The slow way: every field by name, through the constructor."""
    fields = {spec.name: getattr(reading, spec.name) for spec in Reading._specs}
    return MeterReading(**fields, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("replaced", [False, True])
def test_from_reading_makes_what_keyword_construction_makes(replaced: bool) -> None:
    at = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    extra = {
        "meter": "house",
        "role": "secondary",
        "ean": "871685900012345674",
        "received_at": at,
        "meter_replaced": replaced,
    }
    for reading in READINGS:
        fast = MeterReading.from_reading(reading, **extra)  # type: ignore[arg-type]
        slow = by_keywords(reading, **extra)
        assert type(fast) is MeterReading
        assert list(fast.__dict__) == list(MeterReading.json_names)
        assert list(fast.__dict__.items()) == list(slow.__dict__.items())
        assert fast == slow
        assert fast.model_dump_json() == slow.model_dump_json()
        # A copy, not a view: changing the copy leaves the parsed reading alone.
        assert fast.__dict__ is not reading.__dict__
        assert fast.import_ is reading.import_
        # And from a meter reading (a re-labelled one), the same fields again.
        again = MeterReading.from_reading(fast, **extra)  # type: ignore[arg-type]
        assert again == fast and again.__dict__ is not fast.__dict__


def test_a_copy_of_a_meter_reading_still_works() -> None:
    reading = READINGS[0]
    made = MeterReading.from_reading(
        reading, meter="a", role="primary", ean=None, received_at=datetime.now(UTC)
    )
    again = made.model_copy(update={"meter": "b"})
    assert again.meter == "b" and made.meter == "a"
    assert again.model_dump_json().replace('"meter":"b"', '"meter":"a"') == made.model_dump_json()


def test_model_copy_takes_attribute_names_and_refuses_unknown_ones() -> None:
    reading = READINGS[0]
    other = EnergyDirection(t1_kwh=1.5)
    copied = reading.model_copy(update={"import_": other})
    assert copied.import_ is other and reading.import_ is not other
    assert list(copied.__dict__) == list(Reading.json_names)
    with pytest.raises(TypeError):
        reading.model_copy(update={"import": other})  # the JSON name is not an attribute


def test_keyword_construction_fills_defaults_and_refuses_what_is_no_field() -> None:
    made = Reading(header="XMX5", import_=EnergyDirection(t1_kwh=2))
    assert made.import_.t1_kwh == 2.0 and type(made.import_.t1_kwh) is float  # as pydantic
    assert made.mbus == [] and made.mbus is not Reading(header="x").mbus
    assert list(made.__dict__) == list(Reading.json_names)
    with pytest.raises(TypeError):
        Reading(header="x", imported=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Reading()  # type: ignore[call-arg]
