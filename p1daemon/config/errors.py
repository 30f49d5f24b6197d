"""Turns pydantic's validation errors into `<file>: <key path>: <reason>` lines.

Users edit TOML, not Python: a reason must read like advice about their file ("unknown
key (did you mean 'baudrate'?)", "should be true or false, got 'yes'"), and a key path
like `meters[1].ean` must point at the exact spot. The value of a secret key is never
part of a line (only its kind: "got a number"), because these lines end up in the
journal and in forum posts.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from p1daemon.config.model import SECTIONS, Config
from p1daemon.config.secrets import NOT_SHOWN, is_secret
from p1daemon.config.section import Section, field_names

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

Loc = tuple[str | int, ...]

_KINDS = {
    "string_type": "a string in quotes",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "list_type": "a list",
    "path_type": "a file path in quotes",
}

_TOML_TYPES = {
    str: "the string",
    bool: "",
    int: "the number",
    float: "the number",
    dict: "a table",
    list: "a list",
}


class ConfigError(Exception):
    """The configuration cannot be used; `lines` are the problems, one line each."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


def key_path(loc: Loc) -> str:
    """("meters", 1, "ean") -> "meters[1].ean"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _shape(value: Any) -> str:
    """What kind of TOML value this is, without the value itself."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, datetime.datetime):
        return "a date and time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
    return _TOML_TYPES.get(type(value)) or "a value"


def _shown(value: Any) -> str:
    if isinstance(value, datetime.date | datetime.time):
        return f"{_shape(value)} {value.isoformat()}"
    prefix = _TOML_TYPES.get(type(value), "")
    if isinstance(value, dict | list):
        return prefix
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return f"{prefix} {text}".strip()


def _known_keys(loc: Loc) -> list[str]:
    table: type[Section] = Config
    if len(loc) > 1 and isinstance(loc[0], str) and loc[0] in SECTIONS:
        table = SECTIONS[loc[0]]
    return field_names(table)


def reason(error: ErrorDetails) -> str:
    """The advice for one pydantic error; never the value of a secret key."""
    loc: Loc = tuple(error["loc"])
    if not is_secret(loc):
        return _reason(error, _shown)
    text = _reason(error, lambda value: f"{_shape(value)} ({NOT_SHOWN})")
    value = error.get("input")
    if isinstance(value, str) and value:  # a validator's own "got {value!r}", as a net
        text = text.replace(repr(value), "(not shown)")
    return text


def _reason(error: ErrorDetails, shown: Callable[[Any], str]) -> str:
    kind = error["type"]
    loc: Loc = tuple(error["loc"])
    value = error.get("input")
    if kind == "extra_forbidden":
        import difflib  # only a file with a misspelt key pays for it

        guess = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
        return f"unknown key (did you mean {guess[0]!r}?)" if guess else "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "too_short" and loc == ("meters",):
        return "at least one [[meters]] table is needed"
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    if kind in _KINDS:
        return f"should be {_KINDS[kind]}, got {shown(value)}"
    message = error["msg"].removeprefix("Input ")
    if message.startswith("should be"):
        return f"{message}, got {shown(value)}"
    return message[:1].lower() + message[1:]


def format_problem(file_label: str, loc: Loc, text: str, origins: Mapping[Loc, str]) -> str:
    path = key_path(loc)
    for origin_loc, variable in origins.items():
        if loc[: len(origin_loc)] == origin_loc:
            path += f" (from {variable})"
            break
    return f"{file_label}: {path}: {text}"
