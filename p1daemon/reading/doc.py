"""The plain-Python base of the reading document's classes.

Why not pydantic: `p1daemon parse` and the daemon make one reading per telegram, and the
values have already been checked by the parser (numbers, units, times); importing
pydantic's model machinery and building the schemas cost `parse` ~45 ms of start-up and
validating every reading again ~10 µs per telegram. Why not dataclasses: a document keeps
its values in `__dict__`, in field order and under their JSON names (`import` for the
attribute `import_`), so that copying one (`MeterReading.from_reading`, `model_copy`) is
one C-level dict copy, and the encoder (p1daemon/reading/encode.py) can hand `__dict__`
to the C JSON encoder as it is.

Every document therefore holds every field, always (the constructor fills defaults). The
parser builds documents with `Doc.of`, from dicts it already made in field order; tests
and tools use keyword construction, as with the former pydantic models, and `model_copy`
and `model_dump_json` keep those names so code written against the models still works.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, Self, TypeVar, cast, dataclass_transform

_T = TypeVar("_T")
_REQUIRED: Any = object()


class _Field(Generic[_T]):
    __slots__ = ("default_factory", "json_name")

    def __init__(self, default_factory: Callable[[], _T], json_name: str | None) -> None:
        self.default_factory = default_factory
        self.json_name = json_name


def doc_field(*, default_factory: Callable[[], _T], json_name: str | None = None) -> _T:
    """A field whose default is made per document; `json_name` when the name is a keyword."""
    return cast(_T, _Field(default_factory, json_name))


class _Spec:
    """One field: attribute name, JSON name, default or factory, whether an int becomes float."""

    __slots__ = ("default", "factory", "key", "name", "to_float")

    def __init__(self, name: str, key: str, default: Any, factory: Any, to_float: bool) -> None:
        self.name = name
        self.key = key
        self.default = default
        self.factory = factory
        self.to_float = to_float


def _aliased(key: str) -> property:
    def get(self: Doc) -> Any:
        return self.__dict__[key]

    return property(get, doc=f"The field published as {key!r}.")


@dataclass_transform(kw_only_default=True, field_specifiers=(doc_field,))
class Doc:
    """Base of the document classes: fields are the class's annotations, in order."""

    _specs: ClassVar[tuple[_Spec, ...]] = ()
    _names: ClassVar[dict[str, str]] = {}  # attribute name -> JSON name
    json_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        specs = list(cls._specs)
        for name, annotation in inspect.get_annotations(cls).items():
            if str(annotation).startswith("ClassVar"):
                continue
            value = cls.__dict__.get(name, _REQUIRED)
            key, factory = name, None
            if isinstance(value, _Field):
                key = value.json_name or name
                factory, value = value.default_factory, _REQUIRED
            if name in cls.__dict__:
                delattr(cls, name)
            if key != name:
                setattr(cls, name, _aliased(key))
            # pydantic made an int given for a float field a float (5 -> 5.0 in the JSON);
            # keyword construction keeps that, so hand-made documents publish the same.
            to_float = str(annotation).startswith("float")
            specs.append(_Spec(name, key, value, factory, to_float))
        cls._specs = tuple(specs)
        cls._names = {spec.name: spec.key for spec in specs}
        cls.json_names = tuple(spec.key for spec in specs)

    def __init__(self, **values: Any) -> None:
        fields: dict[str, Any] = {}
        for spec in self._specs:
            if spec.name in values:
                value = values.pop(spec.name)
                if spec.to_float and type(value) is int:
                    value = float(value)
            elif spec.factory is not None:
                value = spec.factory()
            elif spec.default is _REQUIRED:
                raise TypeError(f"{type(self).__name__}() needs the field {spec.name!r}")
            else:
                value = spec.default
            fields[spec.key] = value
        if values:
            raise TypeError(f"{type(self).__name__}() has no field(s) {sorted(values)}")
        self.__dict__ = fields

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Self:
        """A document whose `__dict__` IS `fields`: every JSON name, in field order.

        For the parser, whose values are already checked: nothing is copied or converted.
        """
        made = cls.__new__(cls)
        made.__dict__ = fields
        return made

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Self:
        """A shallow copy with some fields (by attribute name) replaced, as pydantic's."""
        fields = self.__dict__.copy()
        if update:
            names = self._names
            for name, value in update.items():
                key = names.get(name)
                if key is None:
                    raise TypeError(f"{type(self).__name__} has no field {name!r}")
                fields[key] = value
        return self.of(fields)

    def model_dump_json(self) -> str:
        """The public JSON of this document (see p1daemon/reading/encode.py)."""
        from p1daemon.reading.encode import to_json

        return to_json(self)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable, like the pydantic models were

    def __repr__(self) -> str:
        values = self.__dict__
        shown = ", ".join(f"{spec.name}={values.get(spec.key)!r}" for spec in self._specs)
        return f"{type(self).__name__}({shown})"
