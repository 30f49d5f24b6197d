"""The base of the views' JSON documents: plain classes, as the reading document's.

Why not pydantic: the views' documents (quarter, day, connection, export and capacity
alerts, capacity state, month) are only ever made to be turned into JSON, and the day
document and a quarter's opening read back once at a restart; for that the daemon
carried pydantic, ~8 MB of its idle RSS (issue 16, whose goal is 33 MB in all).

They are `p1daemon.reading.doc.Doc`s (its docstring says why a document keeps its values
in `__dict__`, in field order and under their JSON names), so the bytes are what the
former pydantic models published, which is a public contract: every field always, in
declaration order (a subclass's after its base's), `null` for None (no field is ever
left out), `import` for `import_`, an int given for a float field written as a float
(`5.0`), floats and datetimes as pydantic_core wrote them and a date as ISO 8601
(p1daemon/reading/encode.py). tests/test_view_documents.py pins those rules.

`document_json` is the reading document's encoder. The documents made every reading
(capacity state) or every few seconds (connection) are `frequent`: they get shape writers,
as a meter's readings do, which halve their cost (~10 KiB each, a few per meter); the
others, made once a quarter-hour or on an alert, take the general path, so no writer is
kept for them.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, ClassVar, Literal, Self

from p1daemon.reading.doc import Doc
from p1daemon.reading.encode import general_json, to_json

_Convert = Callable[[Any, str], Any]


def document_json(document: ViewDoc) -> bytes:
    """The published bytes of a view's document."""
    return document.model_dump_json().encode()


class ViewDoc(Doc):
    """A view's document, which `model_validate_json` reads back as the models did."""

    frequent: ClassVar[bool] = False  # made every reading or every few seconds
    _converters: ClassVar[tuple[tuple[str, str, _Convert], ...] | None] = None

    def model_dump_json(self) -> str:
        return to_json(self) if self.frequent else general_json(self)

    def model_dump(self, *, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """The document as dicts under the JSON names, as the models' `model_dump` (for
        tests and tools: the daemon only publishes `document_json`)."""
        dumped: dict[str, Any] = json.loads(general_json(self)) if mode == "json" else _plain(self)
        return dumped

    @classmethod
    def model_validate_json(cls, data: str | bytes) -> Self:
        """The document `data` holds, checked as the models checked their own JSON:
        every required field there, no unknown one, each value of its field's type (an
        int is a float's too). Anything else raises ValueError."""
        try:
            value = json.loads(data)
        except RecursionError as exc:
            raise ValueError("nested too deeply") from exc
        return cls._validate(value, cls.__name__)

    @classmethod
    def _validate(cls, value: Any, where: str) -> Self:
        if type(value) is not dict:
            raise ValueError(f"{where}: an object expected")
        converters = cls.__dict__.get("_converters")  # the class's own, never a base's
        if converters is None:
            converters = cls._converters = _converters_of(cls)
        fields: dict[str, Any] = {}
        for name, key, convert in converters:
            if key in value:
                fields[name] = convert(value[key], f"{where}.{key}")
        unknown = value.keys() - set(cls.json_names)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
        try:
            return cls(**fields)
        except TypeError as exc:  # a required field is missing
            raise ValueError(f"{where}: {exc}") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, Doc):
        return {key: _plain(item) for key, item in value.__dict__.items()}
    if type(value) is list:
        return [_plain(item) for item in value]
    return value


def _converters_of(cls: type[ViewDoc]) -> tuple[tuple[str, str, _Convert], ...]:
    """Per field (attribute, JSON name, converter), from the class's annotations: these
    are only resolved when a document is first read back, never at import."""
    hints = typing.get_type_hints(cls)
    return tuple((spec.name, spec.key, _converter(hints[spec.name])) for spec in cls._specs)


def _converter(kind: Any) -> _Convert:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        options = [_converter(arg) for arg in args if arg is not type(None)]
        nullable = type(None) in args
        if len(options) != 1:
            raise TypeError(f"no converter for {kind}")
        (inner,) = options

        def optional(value: Any, where: str) -> Any:
            return None if value is None and nullable else inner(value, where)

        return optional
    if origin is Literal:
        allowed = frozenset(args)

        def literal(value: Any, where: str) -> Any:
            if type(value) is not str or value not in allowed:
                raise ValueError(f"{where}: one of {sorted(allowed)} expected")
            return value

        return literal
    if origin is list:
        (item,) = (_converter(arg) for arg in args)

        def items(value: Any, where: str) -> list[Any]:
            if type(value) is not list:
                raise ValueError(f"{where}: a list expected")
            return [item(element, f"{where}[{i}]") for i, element in enumerate(value)]

        return items
    if isinstance(kind, type) and issubclass(kind, ViewDoc):
        return kind._validate
    simple = _SIMPLE.get(kind)
    if simple is None:
        raise TypeError(f"no converter for {kind}")
    return simple


def _float(value: Any, where: str) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise ValueError(f"{where}: a number expected")


def _exact(kind: type) -> _Convert:
    def convert(value: Any, where: str) -> Any:
        if type(value) is not kind:
            raise ValueError(f"{where}: {kind.__name__} expected")
        return value

    return convert


def _datetime(value: Any, where: str) -> datetime:
    if type(value) is not str:
        raise ValueError(f"{where}: a datetime text expected")
    return datetime.fromisoformat(value)  # ValueError for anything else


def _date(value: Any, where: str) -> date:
    if type(value) is not str:
        raise ValueError(f"{where}: a date text expected")
    return date.fromisoformat(value)


_SIMPLE: dict[Any, _Convert] = {
    float: _float,
    int: _exact(int),
    bool: _exact(bool),
    str: _exact(str),
    datetime: _datetime,
    date: _date,
}
