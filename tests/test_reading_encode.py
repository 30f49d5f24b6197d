"""The reading document's JSON is byte for byte what the former pydantic models published.

The oracle is tests/reading_oracle.py: the pydantic models p1daemon used until issue 16.
Every document is validated by them in strict mode (so a value of the wrong type, an
unknown field or a missing one fails here, as pydantic would have failed the parser) and
their `model_dump_json()` is compared with p1daemon's encoder, byte for byte, over every
telegram of every capture the project carries and the shared ones, and over generated
documents with the values real telegrams rarely hold: extreme and non-finite floats,
odd UTC offsets, control characters and non-ASCII text, None everywhere.
"""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import reading_oracle
from conftest import OWN_FIXTURES, shared_fixtures
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading import encode, meter, model
from p1daemon.reading.doc import Doc
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading

AT = datetime(2026, 12, 2, 6, 0, 0, 123456, tzinfo=UTC)


def as_python(value: Any) -> Any:
    """A document as plain dicts and lists under its JSON names, for the oracle."""
    if isinstance(value, Doc):
        return {key: as_python(item) for key, item in value.__dict__.items()}
    if isinstance(value, list):
        return [as_python(item) for item in value]
    if isinstance(value, dict):
        return {key: as_python(item) for key, item in value.items()}
    return value


def oracle_json(document: Doc) -> str:
    oracle: type[BaseModel] = getattr(reading_oracle, type(document).__name__)
    return oracle.model_validate(as_python(document), strict=True).model_dump_json()


def assert_same_json(document: Doc) -> None:
    expected = oracle_json(document)
    assert encode.to_json(document) == expected
    assert encode._exact(document) == expected  # the pure-Python path on its own, too
    assert document.model_dump_json() == expected
    assert encode.to_json_bytes(document) == expected.encode()


def _replay(data: bytes, **options: Any) -> list[Reading]:
    stream = ReadingStream(TelegramDecoder(**options))
    return [e for e in [*stream.feed(data), *stream.flush()] if not isinstance(e, Dropped)]


@cache
def captured() -> list[Reading]:
    """Every reading of every capture: the repo's and the shared ones, CRC checked or not."""
    from test_shared_fixtures import key_for

    found: list[Reading] = []
    for path in sorted(OWN_FIXTURES.rglob("*.txt")):
        for check_crc in (True, False):
            found += _replay(path.read_bytes(), check_crc=check_crc)
    for fixture in shared_fixtures():
        key, auth_key = key_for(fixture)
        for check_crc in (True, False):
            found += _replay(
                fixture.path.read_bytes(), check_crc=check_crc, key=key, auth_key=auth_key
            )
    return found


def test_there_are_captures_to_compare() -> None:
    assert len(captured()) >= 1000


def test_every_captured_telegram_encodes_as_the_models_did() -> None:
    for reading in captured():
        assert type(reading) is Reading
        assert_same_json(reading)
        assert_same_json(
            MeterReading.from_reading(
                reading, meter="house", role="primary", ean="871685900012345674", received_at=AT
            )
        )


# -- generated documents -----------------------------------------------------------------

_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1.0, 1e-5, 1.5e-5, -2e-5, 1e-4, 9.99e-6, 1e-7, 5e-324, 1e15, 1e16, 1e21, 1e22]
)
_offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
)
_zones = (
    st.none()
    | st.just(UTC)
    | st.just(ZoneInfo("Europe/Amsterdam"))
    | _offsets.map(timezone)
    | st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
)
_datetimes = st.builds(
    lambda naive, zone: naive.replace(tzinfo=zone),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31)),
    _zones,
)
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12) | st.sampled_from(
    ["", "e-05", '"\\', "\x00\x1f\x7f\u2028", "é€😀"]
)
_ints = st.integers(-(2**70), 2**70)


def _strategy(hint: Any) -> st.SearchStrategy[Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*map(_strategy, args))
    if origin is list:
        return st.lists(_strategy(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(_text, _text, max_size=3)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if isinstance(hint, type) and issubclass(hint, Doc):
        return documents(hint)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(),
        float: _floats,
        int: _ints,
        bool: st.booleans(),
        str: _text,
        datetime: _datetimes,
    }
    return simple[hint]


def documents(cls: type[Doc]) -> st.SearchStrategy[Doc]:
    """Any document of `cls`, made by keyword construction, every field drawn."""
    names = vars(model) | vars(meter)
    annotations: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[: cls.__mro__.index(Doc)]):
        annotations |= vars(klass).get("__annotations__", {})
    fields = {spec.name: _strategy(eval(annotations[spec.name], names)) for spec in cls._specs}
    return st.fixed_dictionaries(fields).map(lambda values: cls(**values))


@given(documents(Reading))
@settings(max_examples=300, deadline=None)
def test_generated_readings_encode_as_the_models_did(reading: Doc) -> None:
    assert_same_json(reading)


@given(documents(MeterReading))
@settings(max_examples=100, deadline=None)
def test_generated_meter_readings_encode_as_the_models_did(reading: Doc) -> None:
    assert_same_json(reading)


@given(_floats)
def test_floats_as_pydantic_writes_them(value: float) -> None:
    assert_same_json(model.Limiter(value=value, unit=None))


@given(_datetimes)
def test_datetimes_as_pydantic_writes_them(value: datetime) -> None:
    assert_same_json(model.CapacityPeak(month=value, at=None, max_kw=None))


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e-7, "1e-7"), (1.5e-5, "0.000015"), (-1e-5, "-0.00001"), (1e16, "1e+16"), (1.0, "1.0")],
)
def test_known_float_spellings(value: float, text: str) -> None:
    """Spellings read off pydantic_core's output by hand (and checked by the oracle)."""
    assert encode.format_float(value) == text
    assert oracle_json(model.Limiter(value=value, unit=None)) == f'{{"value":{text},"unit":null}}'


def test_what_is_not_part_of_a_document_is_refused() -> None:
    broken = model.Limiter(value=None, unit=None)
    broken.__dict__["unit"] = Path("/")
    with pytest.raises(TypeError):
        encode.to_json(broken)
    with pytest.raises(TypeError):
        encode._exact(broken)


def test_the_same_instant_at_another_offset_is_written_with_its_own_offset() -> None:
    """Equal datetimes (one instant) at different offsets: the encoder's cache keeps them apart."""
    winter = datetime(2024, 10, 27, 2, 30, tzinfo=timezone(timedelta(hours=1)))
    summer = datetime(2024, 10, 27, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    assert winter == summer
    for first, second in ((winter, summer), (summer, winter)):
        peak = model.CapacityPeak(month=first, at=second, max_kw=None)
        assert_same_json(peak)
        assert encode.to_json(peak).count("2024-10-27T") == 2
        assert '"at":"' + second.isoformat() + '"' in encode.to_json(peak)


def test_kept_string_texts_stay_bounded_and_exact() -> None:
    """The encoder keeps each string's escaped text (keys and values repeat); strings seen
    once must neither pile up nor come out wrong, escapes and non-ASCII included."""
    for n in range(2 * encode._TEXTS_KEPT + 10):
        text = f'{n}"\\\x01é' if n % 2 else f"e{n}"
        document = model.Limiter(value=float(n), unit=text)
        if n % 97 == 0:
            assert_same_json(document)
        else:
            escaped = encode._escape(text)
            assert encode.to_json(document) == f'{{"value":{float(n)!r},"unit":{escaped}}}'
        assert len(encode._escaped_texts) <= encode._TEXTS_KEPT
    assert all(len(text) <= encode._LONGEST_KEPT for text in encode._escaped_texts)
    for reading in captured()[:20]:  # and what was kept before is still right
        assert_same_json(reading)
