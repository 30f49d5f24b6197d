"""What every table of the configuration file is at run time: a plain dataclass.

The daemon runs for months on a 512 MB board; pydantic and the validators it builds
cost about 9 MB of resident memory that would serve no purpose after the first
second (issue 16). So the shape of each table (its keys, types, defaults and the
properties the daemon uses) is a dataclass that imports nothing heavy, and what makes
a file *valid* (bounds, strictness, the one-line reasons) is declared beside it in a
`*_schema` module, named by `checks=` on the class. `p1daemon.config.schema` builds a
pydantic model from both for the processes that validate (`check-config`, the tools,
the daemon's short-lived validating child in `p1daemon.config.apart`) and turns what
it accepted back into these dataclasses. One definition of each key, no second copy
to keep in step.

`model_validate` and `model_copy` keep pydantic's names so tests and tools written
against the former models read the same; `model_validate` imports pydantic on use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Self


class Section:
    """Base of the configuration dataclasses (slotted, keyword-only)."""

    __slots__ = ()
    # The module whose CHECKS[<class name>] says what is valid for this class.
    checks_module: ClassVar[str]

    def __init_subclass__(cls, *, checks: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if checks is not None:
            cls.checks_module = checks

    @classmethod
    def model_validate(cls, data: Any, *, context: Mapping[str, Any] | None = None) -> Self:
        """Validate `data` (a table as TOML gives it); raises pydantic's ValidationError."""
        from p1daemon.config.schema import validate  # pydantic, only where one validates

        return validate(cls, data, context=context)

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Self:
        """A copy with some keys replaced, unvalidated (as pydantic's `model_copy`)."""
        return dataclasses.replace(self, **(update or {}))  # type: ignore[type-var]


def field_default(cls: type[Section], name: str) -> Any:
    """The default of key `name` (a factory's product where the default is a factory)."""
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        if item.name == name:
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
            return item.default
    raise KeyError(name)


def field_names(cls: type[Section]) -> list[str]:
    """The keys of the table, in declaration order (the order check-config shows)."""
    return [item.name for item in dataclasses.fields(cls)]  # type: ignore[arg-type]
