"""Pydantic models built from the configuration dataclasses, and the way back.

See `p1daemon.config.section` for why the two are apart. For each dataclass this makes
one pydantic model with the same keys, types and defaults (read from the dataclass)
plus what its `*_schema` module declares in `CHECKS[<class name>]`: the model config
(strict, unknown keys forbidden), per-key constraints (`Field(ge=1)`) and the
validators. Error locations and messages are therefore pydantic's own, exactly as
when the models were written out by hand, and `p1daemon.config.errors` reads them as
before.

Only processes that validate import this module (it imports pydantic).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import operator
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, create_model
from pydantic.fields import FieldInfo

from p1daemon.config.secret import Secret
from p1daemon.config.section import Section

S = TypeVar("S", bound=Section)


@dataclass(frozen=True)
class Checks:
    """What a valid table of one dataclass is, beyond its types."""

    config: ConfigDict
    fields: Mapping[str, FieldInfo] = field(default_factory=dict)
    # pydantic's decorated validators (field_validator / model_validator), any order.
    validators: tuple[Any, ...] = ()


_RUNTIME: dict[type[BaseModel], type[Section]] = {}
_MODELS: dict[type[Section], type[BaseModel]] = {}


def model_of(cls: type[Section]) -> type[BaseModel]:
    """The pydantic model that validates tables of `cls` (built once per process)."""
    model = _MODELS.get(cls)
    if model is None:
        model = _MODELS[cls] = _make_model(cls)
        _RUNTIME[model] = cls
    return model


def _make_model(cls: type[Section]) -> type[BaseModel]:
    checks: Checks = importlib.import_module(cls.checks_module).CHECKS[cls.__name__]
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        annotation = _schema_type(hints[item.name])
        declared = checks.fields.get(item.name)
        if declared is not None:
            annotation = Annotated[annotation, declared]
        fields[item.name] = (annotation, _schema_default(item))
    unknown = set(checks.fields) - set(fields)
    if unknown:
        raise TypeError(f"{cls.__name__} checks name keys it does not have: {sorted(unknown)}")
    validators = {f"_check_{index}": check for index, check in enumerate(checks.validators)}
    return create_model(
        cls.__name__,
        __config__=checks.config,
        __validators__=validators,
        __module__=cls.checks_module,
        **fields,
    )


def _schema_type(annotation: Any) -> Any:
    """`annotation` with each configuration dataclass replaced by its model and
    `Secret` by pydantic's `SecretStr` (same validation: a string)."""
    if annotation is Secret:
        return SecretStr
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return model_of(annotation)
    origin = typing.get_origin(annotation)
    if origin is None or origin is typing.Literal:
        return annotation
    args = typing.get_args(annotation)
    if origin is Annotated:
        return Annotated[(_schema_type(args[0]), *annotation.__metadata__)]
    mapped = tuple(arg if arg is Ellipsis else _schema_type(arg) for arg in args)
    if origin in (types.UnionType, typing.Union):
        return functools.reduce(operator.or_, mapped)
    return origin[mapped]


def _schema_default(item: dataclasses.Field[Any]) -> Any:
    if item.default_factory is not dataclasses.MISSING:
        factory = item.default_factory
        if isinstance(factory, type) and issubclass(factory, Section):
            return Field(default_factory=model_of(factory))
        return Field(default_factory=factory)
    if item.default is dataclasses.MISSING:
        return ...
    default = item.default
    return SecretStr(default.get_secret_value()) if isinstance(default, Secret) else default


def to_runtime(value: Any) -> Any:
    """A validated model (and everything in it) as the configuration dataclasses."""
    if isinstance(value, BaseModel):
        cls = _RUNTIME[type(value)]
        return cls(**{name: to_runtime(getattr(value, name)) for name in type(value).model_fields})
    if isinstance(value, SecretStr):
        return Secret(value.get_secret_value())
    if isinstance(value, list):
        return [to_runtime(item) for item in value]
    if isinstance(value, tuple):
        return tuple(to_runtime(item) for item in value)
    if isinstance(value, dict):
        return {key: to_runtime(item) for key, item in value.items()}
    return value


def validate(cls: type[S], data: Any, *, context: Mapping[str, Any] | None = None) -> S:
    """`data` validated by `cls`'s model, as a `cls`; raises pydantic's ValidationError."""
    model = model_of(cls).model_validate(data, context=None if context is None else dict(context))
    return to_runtime(model)  # type: ignore[no-any-return]
