"""`MeterReading.from_reading` copies a parsed reading without validating it again.

Its fast path must make exactly what `model_construct` made before it (the public JSON,
equality, the fields set), for every telegram the project carries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading

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


@pytest.mark.parametrize("replaced", [False, True])
def test_from_reading_makes_what_model_construct_made(replaced: bool) -> None:
    at = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    for reading in READINGS:
        fast = MeterReading.from_reading(
            reading,
            meter="house",
            role="secondary",
            ean="871685900012345674",
            received_at=at,
            meter_replaced=replaced,
        )
        slow = MeterReading.model_construct(
            **reading.__dict__,
            meter="house",
            role="secondary",
            ean="871685900012345674",
            received_at=at,
            meter_replaced=replaced,
        )
        assert type(fast) is MeterReading
        assert list(fast.__dict__.items()) == list(slow.__dict__.items())
        assert fast.model_fields_set == slow.model_fields_set
        assert fast.__pydantic_extra__ is None and fast.__pydantic_private__ is None
        assert fast == slow
        assert fast.model_dump_json() == slow.model_dump_json()
        assert fast.model_dump() == slow.model_dump()
        # A copy, not a view: changing the copy leaves the parsed reading alone.
        assert fast.__dict__ is not reading.__dict__
        assert fast.import_ is reading.import_


def test_a_copy_of_a_meter_reading_still_works() -> None:
    reading = READINGS[0]
    made = MeterReading.from_reading(
        reading, meter="a", role="primary", ean=None, received_at=datetime.now(UTC)
    )
    again = made.model_copy(update={"meter": "b"})
    assert again.meter == "b" and made.meter == "a"
    assert again.model_dump_json().replace('"meter":"b"', '"meter":"a"') == made.model_dump_json()


def test_the_mqtt_payload_is_the_documents_json() -> None:
    """The MQTT sink serialises with the model's serializer directly: the same bytes."""
    at = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    for reading in READINGS:
        made = MeterReading.from_reading(
            reading, meter="house", role="primary", ean=None, received_at=at
        )
        payload = type(made).__pydantic_serializer__.to_json(made)
        assert payload == made.model_dump_json().encode()
