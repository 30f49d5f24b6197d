"""The reading document's JSON: byte for byte what subscribers have always received.

The bytes are those the former pydantic models published (pydantic_core's serializer),
which is a public contract: field order and names (`import`), `null` for a missing
register, no spaces, non-ASCII text as UTF-8, and pydantic_core's way with floats and
datetimes, which differs from Python's in a few places:

- floats print as `repr(float)` except for a negative exponent: `1e-7` (not `1e-07`), and
  `0.00001` for anything `repr` writes as `...e-05`; NaN and infinities are `null`;
- a datetime is ISO 8601, with `Z` for a zero UTC offset and an offset cut to whole
  minutes (`+00:00` for an offset of one second; see `format_datetime`).

The fast path hands the document's `__dict__` (already in field order, under the JSON
names: see p1daemon/reading/doc.py) to the C JSON encoder of the standard library. Its
output equals pydantic_core's unless a float needed a negative exponent (the text then
holds "e-") or was not finite (the encoder raises); those rare documents go through the
exact pure-Python path. tests/test_reading_encode.py compares both paths with the former
models over every capture and over generated documents.
"""

from __future__ import annotations

import json.encoder
from collections.abc import Callable
from datetime import datetime, timezone, tzinfo
from math import isfinite
from typing import Any

from p1daemon.reading.doc import Doc

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


# Datetimes repeat from telegram to telegram (the parser caches them: power-failure logs,
# M-Bus capture times, capacity peaks), so their texts are kept. Only for fixed offsets,
# keyed by (datetime, tzinfo): two aware datetimes are equal when they are the same
# instant, and 02:30+01:00 and 03:30+02:00 are, but they are written differently.
_DATETIME_TEXTS: dict[tuple[datetime, tzinfo], str] = {}
_DATETIMES_KEPT = 1024


def _default(value: object) -> Any:
    if isinstance(value, Doc):
        return value.__dict__
    if type(value) is datetime:
        zone = value.tzinfo
        if type(zone) is not timezone:
            return format_datetime(value)
        key = (value, zone)
        text = _DATETIME_TEXTS.get(key)
        if text is None:
            if len(_DATETIME_TEXTS) >= _DATETIMES_KEPT:
                _DATETIME_TEXTS.clear()
            text = _DATETIME_TEXTS[key] = format_datetime(value)
        return text
    if isinstance(value, datetime):
        return format_datetime(value)
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


def to_json(document: Doc) -> str:
    """The public JSON of a reading document (or any of its parts)."""
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
    if isinstance(value, Doc):
        value = value.__dict__
    if isinstance(value, dict):
        return "{" + ",".join(f"{_escape(k)}:{_exact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(_exact, value)) + "]"
    raise TypeError(f"{type(value).__name__} is not part of the reading document")
