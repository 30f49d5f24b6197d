"""The reading document's JSON: byte for byte what subscribers have always received.

The bytes are those the former pydantic models published (pydantic_core's serializer),
which is a public contract: field order and names (`import`), `null` for a missing
register, no spaces, non-ASCII text as UTF-8, and pydantic_core's way with floats and
datetimes, which differs from Python's in a few places:

- floats print as `repr(float)` except for a negative exponent: `1e-7` (not `1e-07`), and
  `0.00001` for anything `repr` writes as `...e-05`; NaN and infinities are `null`;
- a datetime is ISO 8601, with `Z` for a zero UTC offset and an offset cut to whole
  minutes (`+00:00` for an offset of one second; see `format_datetime`); a date (the
  views' day document has one) is ISO 8601 too.

The general path (`general_json`) hands the document's `__dict__` (already in field
order, under the JSON names: see p1daemon/reading/doc.py) to the C JSON encoder of the
standard library. Its output equals pydantic_core's unless a float needed a negative
exponent (the text then holds "e-") or was not finite (the encoder raises); those rare
documents go through the exact pure-Python path. tests/test_reading_encode.py compares
both paths with the former models over every capture and over generated documents.

Before that general path, `to_json` tries the writers of the document's shape
(p1daemon/reading/shape.py): a meter's readings keep their shape, and a writer that only
formats the values (from kept float texts, most of the C encoder's work being `repr` of
floats) costs ~0.6 of walking the shape anew (bench/bench_json.py). Writers are kept per
(document class, meter, header), a few each, and only made for a kind of document seen
before: a one-off document (`p1daemon parse` of one telegram) never pays for one. A
writer refuses any document it would not write exactly as the general path does, and is
itself checked against the general path on the document it was made from;
tests/test_reading_shape.py holds every kept writer's answers to the general path's.
"""

from __future__ import annotations

import json.encoder
from collections.abc import Callable
from datetime import UTC, date, datetime, timezone, tzinfo
from math import isfinite
from typing import Any

from p1daemon.reading.doc import Doc
from p1daemon.reading.shape import Unsupported, Writer, compile_writer

_escape: Callable[[str], str] = json.encoder.encode_basestring  # ensure_ascii=False's escaping


class _EscapedTexts(dict[str, str]):
    """Each short string's JSON text (`_escape`), kept: the C encoder's own escaping was
    the biggest part of its work (every key of every nested document, every telegram: a
    scan, a new string, and freeing it again), while a lookup of the same key is a hash
    the string already carries. Keys and most values (meter, header, equipment id,
    units) are short and repeat from reading to reading; longer strings (the datetimes,
    new in every telegram) are escaped as before and not kept, so memory stays small."""

    __slots__ = ()

    def __missing__(self, text: str) -> str:
        escaped = _escape(text)
        if len(text) <= _LONGEST_KEPT:
            if len(self) >= _TEXTS_KEPT:
                self.clear()
            self[text] = escaped
        return escaped


_TEXTS_KEPT = 1024
_LONGEST_KEPT = 24  # every key; a datetime's text is longer
_escaped_texts = _EscapedTexts()


def format_datetime(value: datetime) -> str:
    """A datetime as pydantic_core writes it (see the module docstring)."""
    offset = value.utcoffset()
    if offset is None:
        return value.isoformat()
    if not offset.seconds % 60 and not offset.microseconds:  # whole minutes (or none)
        return value.isoformat() if offset else value.replace(tzinfo=None).isoformat() + "Z"
    # pydantic_core rounds the offset to whole seconds (half away from zero), writes "Z" if
    # that is 0, else cuts it to minutes towards zero: 00:00:00.5 is "+00:00", -00:00:01
    # "-00:00", -23:56:59.999999 "-23:57".
    micros = (offset.days * 86400 + offset.seconds) * 1_000_000 + offset.microseconds
    seconds = (abs(micros) + 500_000) // 1_000_000
    local = value.replace(tzinfo=None).isoformat()
    if not seconds:
        return local + "Z"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{local}{'-' if micros < 0 else '+'}{hours:02d}:{minutes:02d}"


class _FloatTexts(dict[float, str]):
    """Each float's text (`format_float`), kept: `repr` is most of a float's cost (~200
    ns here), and most of a meter's values repeat from telegram to telegram (energy
    totals, voltages). For the shape writers, which never look up a zero: 0.0 and -0.0
    are one key, but two texts."""

    __slots__ = ()

    def __missing__(self, value: float) -> str:
        text = float.__repr__(value)
        if "e-" in text or "n" in text:  # 1e-05, nan, inf: not kept, so no NaN piles up
            return format_float(value)
        if len(self) >= _FLOATS_KEPT:
            self.clear()
        self[value] = text
        return text


_FLOATS_KEPT = 4096
_float_texts = _FloatTexts()


class _IntTexts(dict[int, str]):
    """Each int's text, kept: counters, tariffs and durations repeat, and a lookup costs
    a third of `repr`. For the shape writers, which look up exact ints only (1 == True)."""

    __slots__ = ()

    def __missing__(self, value: int) -> str:
        text = int.__repr__(value)  # beyond 4,300 digits it raises, as the general path does
        if len(self) >= _INTS_KEPT:
            self.clear()
        if len(text) <= 20:
            self[value] = text
        return text


_INTS_KEPT = 1024
_int_texts = _IntTexts()


def format_float(value: float) -> str:
    """A float as pydantic_core writes it (see the module docstring)."""
    if not isfinite(value):
        return "null"
    text = float.__repr__(value)
    mantissa, negative, exponent = text.partition("e-")
    if not negative:
        return text
    if exponent == "05":  # 1.5e-05 -> 0.000015
        sign = "-" if mantissa[0] == "-" else ""
        return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e-{exponent.lstrip('0')}"


def _default(value: object) -> Any:
    if isinstance(value, Doc):
        return value.__dict__
    if type(value) is datetime:
        return datetime_text(value)
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not part of the reading document")


# The C accelerator of the json module (absent on interpreters without it).
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_fast: Callable[[object, int], Any] | None = (
    None
    if _c_make_encoder is None
    else _c_make_encoder(
        None, _default, _escaped_texts.__getitem__, None, ":", ",", False, False, False
    )
)


def datetime_text(value: datetime) -> str:
    """`format_datetime` of a datetime (not of a subclass), faster: for the general path
    and the shape writers alike.

    For a fixed offset of whole minutes `isoformat()` is pydantic_core's text, but for
    "+00:00", which it writes "Z"; any other zone takes `format_datetime`.

    Nothing is kept here: the datetimes that repeat (those the parser hands out again,
    telegram after telegram) have their texts kept by the shape writers, one per place in
    the shape (p1daemon/reading/shape.py), where the meter's clock, new in every reading,
    only replaces its own place's text. A cache here would fill with clocks that are never
    asked for again, for the general path's sake, which writes a meter's first readings.
    """
    if value.tzinfo is UTC:  # whole minutes, no offset: "Z", as `_datetime_text` has it
        return value.isoformat()[:-6] + "Z"
    return _datetime_text(value)


def _datetime_text(value: datetime) -> str:
    zone = value.tzinfo
    if type(zone) is timezone:
        way = _ZONE_WAYS.get(zone)
        if way is None:
            offset = zone.utcoffset(None)
            whole = not offset.seconds % 60 and not offset.microseconds
            way = (_AS_ISO if offset else _AS_Z) if whole else _GENERAL
            if len(_ZONE_WAYS) >= _ZONES_KEPT:
                _ZONE_WAYS.clear()
            _ZONE_WAYS[zone] = way
        if way == _AS_ISO:
            return value.isoformat()
        if way == _AS_Z:
            return value.isoformat()[:-6] + "Z"
    return format_datetime(value)


# Per fixed zone (equal zones have equal offsets, which is all `isoformat` writes).
_AS_ISO, _AS_Z, _GENERAL = 1, 2, 3
_ZONE_WAYS: dict[tzinfo, int] = {}
_ZONES_KEPT = 256


class _Shapes:
    """The writers of one (class, meter, header), most recently used first.

    A writer is made from a document none of them took, when `misses` reaches `wait`:
    the first document of a key never makes one, and while the last writer made has not
    been used (`unproven`: shapes that change every time, or one no writer takes), the
    wait doubles at each attempt, so such documents do not pay for a writer each.
    """

    __slots__ = ("misses", "unproven", "wait", "writers")

    def __init__(self) -> None:
        self.writers: tuple[Writer, ...] = ()  # replaced whole: other threads may be reading it
        self.unproven: Writer | None = None
        self.misses = 0
        self.wait = _FIRST_WAIT

    def miss(self, document: Doc) -> str:
        text = general_json(document)
        self.misses += 1
        if self.misses < self.wait:
            return text
        self.misses = 0
        self.wait = min(2 * self.wait, _MOST_WAIT)  # back to the first wait once it is used
        writer = self.unproven = _verified_writer(document, text)
        if writer is not None:
            self.writers = (writer, *self.writers[: _WRITERS_KEPT - 1])
        return text

    def used(self, writer: Writer) -> None:
        if writer is self.unproven:
            self.unproven = None
            self.wait = _FIRST_WAIT
        if writer is not self.writers[0]:
            self.writers = (writer, *(kept for kept in self.writers if kept is not writer))


_FIRST_WAIT = 2
_MOST_WAIT = 256
_WRITERS_KEPT = 4  # a meter whose form comes and goes (a text message) has a few shapes
_KEYS_KEPT = 64
_SHAPES: dict[tuple[object, ...], _Shapes] = {}


def _verified_writer(document: Doc, text: str) -> Writer | None:
    """A writer of `document`'s shape, if it writes `text` (the general path's) for it."""
    try:
        writer = compile_writer(document, _escaped_texts, _float_texts, _int_texts, datetime_text)
        written = writer(document)
    except Unsupported:
        return None
    except Exception:  # a failure to make a writer must never cost the document
        return None
    return writer if written == text else None


def to_json(document: Doc) -> str:
    """The public JSON of a reading document (or any of its parts)."""
    try:
        fields = document.__dict__
        key = (type(document), fields.get("meter"), fields.get("header"))
        shapes = _SHAPES.get(key)
        if shapes is None:
            if len(_SHAPES) >= _KEYS_KEPT:
                _SHAPES.clear()
            shapes = _SHAPES[key] = _Shapes()
    except (AttributeError, TypeError):  # not a document, or an unhashable meter or header
        return general_json(document)
    for writer in shapes.writers:
        try:
            text = writer(document)
        except Exception:  # another shape (or a float `repr` does not write): not this one
            continue
        if text is not None:
            if writer is not shapes.writers[0] or writer is shapes.unproven:
                shapes.used(writer)
            return text
    return shapes.miss(document)


def writers_for(document: Doc) -> tuple[Writer, ...]:
    """The writers kept for the document's (class, meter, header), for tests and tools."""
    fields = document.__dict__
    shapes = _SHAPES.get((type(document), fields.get("meter"), fields.get("header")))
    return () if shapes is None else shapes.writers


def general_json(document: Doc) -> str:
    """The JSON of any document, by the C encoder or the exact path (see the docstring)."""
    if _fast is not None:
        try:
            text = "".join(_fast(document, 0))
        except ValueError:  # a NaN or an infinity: pydantic wrote null
            pass
        else:
            if "e-" not in text:
                return text
    return _exact(document)


def to_json_bytes(document: Doc) -> bytes:
    """`to_json` as the UTF-8 bytes an MQTT payload or a file takes."""
    return to_json(document).encode()


def _exact(value: object) -> str:
    """The pure-Python encoder: every value formatted as pydantic_core formats it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, datetime):
        return f'"{format_datetime(value)}"'
    if isinstance(value, date):
        return f'"{value.isoformat()}"'
    if isinstance(value, Doc):
        value = value.__dict__
    if isinstance(value, dict):
        return "{" + ",".join(f"{_escape(k)}:{_exact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(_exact, value)) + "]"
    raise TypeError(f"{type(value).__name__} is not part of the reading document")
