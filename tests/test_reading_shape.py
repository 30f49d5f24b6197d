"""The shape writers (p1daemon/reading/shape.py) write what the general encoder writes.

`to_json` answers from a writer made for the document's shape once it has one; every test
here holds each kept writer's own answer to the general path's text (`general_json`,
itself held to the former pydantic models by tests/test_reading_encode.py), so a writer
that wrote one byte differently fails them, and holds the writers to being used at all
(a path that is never taken proves nothing). The writers and their fallbacks are tested
with documents of a known shape whose values then change: floats `repr` does not write as
pydantic did (which a writer writes by the general rules), values of another type, lists
and dicts of another length or order (which go the general way), and a meter whose
layout changes in the middle of its stream.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import OWN_FIXTURES, SHARED_FIXTURES, shared_fixtures
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reading_encode import (
    _datetimes,
    _floats,
    _ints,
    _text,
    documents,
    oracle_json,
)

from p1daemon.frame.crc import crc16_arc_bytes
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading import encode, shape
from p1daemon.reading.doc import Doc
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading

STREAM = SHARED_FIXTURES / "streams" / "iskra_am550_dsmr50_566_telegrams.txt"
WITH_LOG = OWN_FIXTURES / "nl" / "dsmr50_power_failure_log.txt"
AT = datetime(2026, 12, 2, 6, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_writers() -> Iterator[None]:
    """Each test starts with no writers kept (what one test learnt must not help another)."""
    encode._SHAPES.clear()
    yield
    encode._SHAPES.clear()


def checked(document: Doc) -> bool:
    """`to_json` of `document` is the general path's text, and so is every kept writer's
    answer; True if a writer answered (before `to_json` could make one)."""
    general = encode.general_json(document)
    answered = False
    for writer in encode.writers_for(document):
        try:
            text = writer(document)
        except Exception:  # a mismatch may raise: the caller then takes the general path
            continue
        if text is not None:
            assert text == general, document
            answered = True
    assert encode.to_json(document) == general
    assert encode.to_json_bytes(document) == general.encode()
    return answered


def _meter_reading(reading: Reading, n: int) -> MeterReading:
    """As the daemon makes them: a new receive time for every telegram."""
    return MeterReading.from_reading(
        reading,
        meter="house",
        role="primary",
        ean="871685900012345674",
        received_at=AT + timedelta(seconds=n, microseconds=7 * n),
    )


def _replay(data: bytes, **options: Any) -> list[Reading]:
    stream = ReadingStream(TelegramDecoder(**options))
    return [e for e in [*stream.feed(data), *stream.flush()] if not isinstance(e, Dropped)]


def _captures() -> list[tuple[str, bytes, dict[str, Any]]]:
    from test_shared_fixtures import key_for

    found = [(path.name, path.read_bytes(), {}) for path in sorted(OWN_FIXTURES.rglob("*.txt"))]
    for fixture in shared_fixtures():
        key, auth_key = key_for(fixture)
        found.append((fixture.name, fixture.path.read_bytes(), {"key": key, "auth_key": auth_key}))
    return found


def test_every_capture_through_the_stream_path() -> None:
    """Every capture, each replayed as a meter's stream (twice over, as a meter repeats
    itself): each reading and its MeterReading, in stream order, as the daemon and
    `p1daemon parse` encode them."""
    captures = _captures()
    assert len(captures) >= 50
    documents_seen = answered = 0
    for _name, data, options in captures:
        for check_crc in (True, False):
            readings = _replay(data * 2, check_crc=check_crc, **options)
            for n, reading in enumerate(readings):
                for document in (reading, _meter_reading(reading, n)):
                    documents_seen += 1
                    answered += checked(document)
    # Each capture's second pass finds its shapes' writers (made on the first pass).
    assert documents_seen > 2000
    assert answered > documents_seen // 2


def test_the_real_stream_is_written_by_its_writer() -> None:
    """Not a test that cannot fail: a real meter's stream is nearly all answered by a writer."""
    if not STREAM.is_file():
        pytest.skip(f"no {STREAM}")
    readings = _replay(STREAM.read_bytes())
    answers = [checked(_meter_reading(reading, n)) for n, reading in enumerate(readings)]
    assert len(answers) == 566
    assert sum(answers) >= len(answers) - 4  # the first two make it; a change of shape or two


def _with_crc(body: bytes) -> bytes:
    """A telegram body ('/' ... '!') with its CRC line."""
    return body + f"{crc16_arc_bytes(body):04X}\r\n".encode()


def _telegrams(data: bytes) -> list[bytes]:
    """The bodies of a capture's telegrams ('/' ... '!')."""
    return [b"/" + part.split(b"!")[0] + b"!" for part in data.split(b"/")[1:]]


def test_a_meter_whose_layout_changes_mid_stream() -> None:
    """The meter starts sending a text message, then an M-Bus-less register more, then
    stops: each new layout is a new shape, written exactly, and gets a writer of its own."""
    if not STREAM.is_file():
        pytest.skip(f"no {STREAM}")
    bodies = _telegrams(STREAM.read_bytes())[:300]
    message = b"0-0:96.13.0(48656C6C6F2C20776F726C64)\r\n"
    limit = b"0-0:17.0.0(999.9*kW)\r\n"
    changed = []
    for n, body in enumerate(bodies):
        if 100 <= n < 200:
            body = body[:-1] + message + b"!"
        if 150 <= n < 250:
            body = body[:-1] + limit + b"!"
        changed.append(_with_crc(body))
    readings = _replay(b"".join(changed))
    assert len(readings) == 300
    assert readings[120].message == "Hello, world" and readings[120].limiter is None
    assert readings[160].limiter is not None and readings[260].message is None
    answers = [checked(_meter_reading(reading, n)) for n, reading in enumerate(readings)]
    for start, end in ((0, 100), (100, 150), (150, 200), (200, 250), (250, 300)):
        assert sum(answers[start:end]) >= end - start - 4, (start, end)


# -- documents of a known shape, then other values ------------------------------------------


def _base() -> MeterReading:
    """A real reading of a meter with a power-failure log, its writer made."""
    readings = _replay(STREAM.read_bytes()[:20000]) if STREAM.is_file() else []
    reading = next((r for r in readings if r.power_failures.log), None)
    if reading is None:
        reading = _replay(WITH_LOG.read_bytes())[0]
    base = _meter_reading(reading, 0)
    for _ in range(2):
        encode.to_json(base)
    assert encode.writers_for(base), "no writer for a real reading"
    assert checked(base)
    return base


def _replaced(document: Doc, path: tuple[str, ...], value: object) -> Doc:
    """A copy of `document` with the field at `path` (JSON names) replaced, copies all the
    way down (the kept writer's own document is never changed)."""
    fields = dict(document.__dict__)
    key, *rest = path
    fields[key] = _replaced(fields[key], tuple(rest), value) if rest else value
    return type(document).of(fields)


_FLOAT_FIELD = ("import", "t1_kwh")
_INT_FIELD = ("tariff",)


@pytest.mark.parametrize(
    ("path", "value", "valid"),
    [
        (_FLOAT_FIELD, 1e-5, True),  # pydantic: 0.00001
        (_FLOAT_FIELD, 1.5e-7, True),  # 1.5e-7
        (_FLOAT_FIELD, -2.5e-5, True),
        (_FLOAT_FIELD, float("nan"), True),  # null
        (_FLOAT_FIELD, float("inf"), True),
        (_FLOAT_FIELD, float("-inf"), True),
        (_FLOAT_FIELD, -0.0, True),  # "-0.0", not the "0.0" of an equal key
        (_FLOAT_FIELD, 0.0, True),
        (_FLOAT_FIELD, 1e16, True),  # 1e+16, as repr
        (_FLOAT_FIELD, 1e300, True),
        (_FLOAT_FIELD, 5, False),  # an int where a float was: "5", not a kept "5.0"
        (_FLOAT_FIELD, True, False),
        (_FLOAT_FIELD, None, True),
        (_FLOAT_FIELD, "5.0", False),
        (_INT_FIELD, True, False),  # a bool where an int was: "true"
        (_INT_FIELD, 2.0, False),
        (_INT_FIELD, 2**70, True),
        (_INT_FIELD, None, True),
        (("meter_replaced",), 1, False),  # 1 == True, but "1"
        (("meter_replaced",), 0.0, False),
        (("meter_replaced",), True, True),
        (("ean",), None, True),
        (("ean",), 'a"\\\x01é😀' * 5, True),
        (("equipment_id",), 17, False),
        (("timestamp",), None, True),
        (("timestamp",), datetime(2024, 3, 31, 2, 30), True),  # naive
        (("timestamp",), datetime(2024, 3, 31, 3, 30, tzinfo=ZoneInfo("Europe/Amsterdam")), True),
        (("timestamp",), datetime(2024, 3, 31, 1, 0, tzinfo=timezone(timedelta(seconds=30))), True),
        (("timestamp",), datetime(2024, 3, 31, 1, 0, tzinfo=timezone(timedelta(0))), True),
        (("received_at",), "2026-12-02T06:00:00Z", False),
        (("power_failures", "log"), [], True),  # a list of another length
        (("power_failures", "log"), (), False),  # a tuple: written as a list, by the general path
        (("mbus",), ["a"], False),
        (("other",), {"0-0:96.99.9": "(1)"}, True),
        (("import",), None, False),
        (("limiter",), {"value": 1.0, "unit": "kW"}, False),  # a dict, not a document
        (("unparsed",), "", False),
    ],
)
def test_values_a_writer_does_not_take_go_the_general_way(
    path: tuple[str, ...], value: object, valid: bool
) -> None:
    base = _base()
    changed = _replaced(base, path, value)
    checked(changed)
    if valid:  # the models took it: their JSON too
        assert encode.to_json(changed) == oracle_json(changed)
    assert checked(base)  # and the writer still answers for its own shape


def test_a_float_seen_before_as_another_type_is_not_taken_for_it() -> None:
    base = _base()
    t1 = base.import_.t1_kwh
    assert t1 is not None
    as_int = _replaced(base, _FLOAT_FIELD, 5)
    for value in (5.0, 5, 5.0, True, 1.0, 1, -0.0, 0.0, 0, False):
        changed = _replaced(base, _FLOAT_FIELD, value)
        checked(changed)
    assert encode.to_json(as_int) == encode.general_json(as_int)
    assert '"t1_kwh":5,' in encode.to_json(as_int)


def test_keys_out_of_order_or_added_go_the_general_way() -> None:
    base = _base()
    moved = type(base).of(dict(base.__dict__))
    tariff = moved.__dict__.pop("tariff")
    moved.__dict__["tariff"] = tariff  # the same keys and values, "tariff" last
    assert checked(moved) is False
    assert encode.to_json(moved).endswith(f',"tariff":{tariff}}}')
    extra = _replaced(base, ("voltage",), type(base.voltage).of({**base.voltage.__dict__, "x": 1}))
    checked(extra)
    swapped_other = _replaced(base, ("other",), {"b": "1", "a": "2"})
    for _ in range(3):
        checked(swapped_other)
    other_order = _replaced(base, ("other",), {"a": "2", "b": "1"})
    checked(other_order)
    assert encode.to_json(other_order).endswith(
        ',"other":{"a":"2","b":"1"},' + encode.to_json(base).split(',"other":{},')[1]
    )


def test_what_is_not_part_of_a_document_is_refused_as_before() -> None:
    base = _base()
    broken = _replaced(base, ("ean",), Path("/"))
    with pytest.raises(TypeError):
        encode.general_json(broken)
    with pytest.raises(TypeError):
        encode.to_json(broken)


def test_a_writer_that_would_write_otherwise_is_never_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check of a new writer against the general path: a writer one byte off is not kept."""
    real = encode.compile_writer

    def off_by_one_byte(*args: Any) -> shape.Writer:
        writer = real(*args)
        return lambda document: (writer(document) or "").replace(":", ": ", 1)

    monkeypatch.setattr(encode, "compile_writer", off_by_one_byte)
    readings = _replay(WITH_LOG.read_bytes()) * 5
    for n, reading in enumerate(readings):
        document = _meter_reading(reading, n)
        assert checked(document) is False
        assert not encode.writers_for(document)


def _counting_compiles(monkeypatch: pytest.MonkeyPatch) -> list[Doc]:
    made: list[Doc] = []
    real = encode.compile_writer

    def counting(document: Doc, *args: Any) -> shape.Writer:
        made.append(document)
        return real(document, *args)

    monkeypatch.setattr(encode, "compile_writer", counting)
    return made


def test_a_one_off_document_makes_no_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """`p1daemon parse` of one telegram: the first document of a kind is written the general way."""
    made = _counting_compiles(monkeypatch)
    reading = _replay(WITH_LOG.read_bytes())[0]
    encode.to_json(reading)
    assert made == []
    encode.to_json(reading)
    assert len(made) == 1


def test_shapes_that_change_every_time_seldom_make_writers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A log one event longer in every reading: a new shape each time, never used twice."""
    made = _counting_compiles(monkeypatch)
    base = _base()
    made.clear()
    event = base.power_failures.log[0]
    for n in range(1, 400):
        checked(_replaced(base, ("power_failures", "log"), [event] * n))
    assert len(made) <= 10
    assert len(encode.writers_for(base)) <= encode._WRITERS_KEPT


def test_alternating_shapes_keep_a_writer_each() -> None:
    base = _base()
    shapes = [
        base,
        _replaced(base, ("message",), "hello"),
        _replaced(base, ("ean",), None),
        _replaced(base, ("import", "t3_kwh"), 1.5),
    ]
    answers = [checked(shapes[n % 4]) for n in range(40)]
    assert all(answers[20:])
    assert len(encode.writers_for(base)) == 4


def test_kept_float_texts_stay_bounded() -> None:
    base = _base()
    for n in range(encode._FLOATS_KEPT + 10):
        changed = _replaced(base, _FLOAT_FIELD, n + 0.5)
        changed = _replaced(changed, ("received_at",), AT + timedelta(microseconds=n))
        assert encode.to_json(changed) == encode.general_json(changed)
        assert len(encode._float_texts) <= encode._FLOATS_KEPT
    assert checked(base)


def _with_clock(base: MeterReading, n: int) -> Doc:
    """The next telegram of `base`'s meter: a new clock and receive time (new objects, as
    the parser and the reader make them), the power-failure log's datetimes the same."""
    assert base.timestamp is not None
    changed = _replaced(base, ("timestamp",), base.timestamp + timedelta(seconds=n))
    return _replaced(changed, ("received_at",), AT + timedelta(seconds=n))


def test_what_is_kept_does_not_grow_with_the_telegrams_written() -> None:
    """A meter's clock is new in every telegram: after the first hundred telegrams, the
    memory the encoder holds stays where it was however many more it writes (a cache of
    every datetime written, cleared when full, held 220 KiB more at its fullest)."""
    base = _base()
    assert base.power_failures.log  # datetimes that do repeat, beside the clock
    gc.collect()
    tracemalloc.start()
    try:
        for n in range(1, 3001):
            encode.to_json(_with_clock(base, n))
            if n == 100:
                settled = tracemalloc.get_traced_memory()[0]
                highest = settled
            elif n > 100 and n % 25 == 0:
                highest = max(highest, tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert highest - settled < 32 * 1024
    assert checked(_with_clock(base, 3001))


def test_a_datetime_that_repeats_is_formatted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The power-failure log's datetimes come back as the same objects telegram after
    telegram: once the meter's writer is made, only the clock, new in every telegram, is
    formatted (an aware datetime's `isoformat` is most of a datetime's cost)."""
    written: list[datetime] = []
    format_text = encode._datetime_text

    def counted(value: datetime) -> str:
        written.append(value)
        return format_text(value)

    monkeypatch.setattr(encode, "_datetime_text", counted)
    base = _base()  # its writer made (with `counted`), from the general path's texts
    log = [event.end for event in base.power_failures.log if event.end is not None]
    assert log and all(type(when) is datetime and when.tzinfo is not UTC for when in log)
    for n in range(1, 51):
        assert checked(_with_clock(base, n))
    written.clear()
    for n in range(51, 101):
        encode.to_json(_with_clock(base, n))
    clock = base.timestamp
    assert clock is not None
    assert written == [clock + timedelta(seconds=n) for n in range(51, 101)]


def test_datetimes_that_change_places_are_written_as_themselves() -> None:
    """The kept texts go by place and object: the log's two events (one W, one S) in each
    other's places, back and forth, are each written with their own text."""
    reading = _replay(WITH_LOG.read_bytes())[0]
    events = [event for event in reading.power_failures.log if event.end is not None]
    assert len(events) == 2 and events[0].end != events[1].end
    orders = (events, events[::-1])
    documents = [
        _replaced(_meter_reading(reading, 0), ("power_failures", "log"), order) for order in orders
    ]
    answered = [checked(documents[n % 2]) for n in range(8)]
    assert all(answered[3:])  # the writer of the shape wrote them, from its kept texts
    assert encode.to_json(documents[0]) != encode.to_json(documents[1])


# -- generated documents ----------------------------------------------------------------


def _vary(data: st.DataObject, value: object) -> object:
    """Another value of the same shape: every number, text and time drawn again."""
    kind = type(value)
    if isinstance(value, Doc):
        fields = value.__dict__
        kept = ("meter", "header", "role")  # the writers' key, and a Literal: vary the rest
        return kind.of({k: v if k in kept else _vary(data, v) for k, v in fields.items()})
    if kind is list:
        assert isinstance(value, list)
        return [_vary(data, item) for item in value]
    if kind is dict:
        assert isinstance(value, dict)
        return {key: _vary(data, item) for key, item in value.items()}
    strategies: dict[type, st.SearchStrategy[Any]] = {
        float: _floats,
        int: _ints,
        str: _text,
        bool: st.booleans(),
        datetime: _datetimes,
    }
    return value if value is None else data.draw(strategies[kind])


@given(data=st.data(), first=documents(MeterReading))
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_generated_documents_of_one_shape_with_other_values(
    data: st.DataObject, first: Doc
) -> None:
    encode._SHAPES.clear()
    for _ in range(2):
        checked(first)
    assert encode.writers_for(first)
    for _ in range(4):
        document = _vary(data, first)
        checked(document)
        assert encode.to_json(document) == oracle_json(document)


@given(data=st.data(), first=documents(Reading))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_generated_readings_of_one_shape_with_other_values(data: st.DataObject, first: Doc) -> None:
    encode._SHAPES.clear()
    for _ in range(2):
        checked(first)
    for _ in range(3):
        document = _vary(data, first)
        checked(document)
        assert encode.to_json(document) == oracle_json(document)


@given(_datetimes)
def test_datetime_texts_as_the_general_path_writes_them(value: datetime) -> None:
    for _ in range(2):  # the second time from what was kept
        assert encode.datetime_text(value) == encode.format_datetime(value)
