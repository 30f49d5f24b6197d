"""Turns pydantic's validation errors into `<file>: <key path>: <reason>` lines.

Users edit TOML, not Python: a reason must read like advice about their file ("unknown
key (did you mean 'baudrate'?)", "should be true or false, got 'yes'"), and a key path
like `meters[1].ean` must point at the exact spot.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from p1daemon.config.model import Config, MeterConfig
from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

Loc = tuple[str | int, ...]

_SECTIONS: dict[str, type[BaseModel]] = {
    "mqtt": MqttSettings,
    "buffer": BufferSettings,
    "homeassistant": HomeAssistantSettings,
    "site": SiteSettings,
    "meters": MeterConfig,
}

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


def _shown(value: Any) -> str:
    prefix = _TOML_TYPES.get(type(value), "")
    if isinstance(value, dict | list):
        return prefix
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return f"{prefix} {text}".strip()


def _known_keys(loc: Loc) -> list[str]:
    model: type[BaseModel] = Config
    if len(loc) > 1 and isinstance(loc[0], str) and loc[0] in _SECTIONS:
        model = _SECTIONS[loc[0]]
    return list(model.model_fields)


def reason(error: ErrorDetails) -> str:
    kind = error["type"]
    loc: Loc = tuple(error["loc"])
    value = error.get("input")
    if kind == "extra_forbidden":
        guess = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
        return f"unknown key (did you mean {guess[0]!r}?)" if guess else "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "too_short" and loc == ("meters",):
        return "at least one [[meters]] table is needed"
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    if kind in _KINDS:
        return f"should be {_KINDS[kind]}, got {_shown(value)}"
    message = error["msg"].removeprefix("Input ")
    if message.startswith("should be"):
        return f"{message}, got {_shown(value)}"
    return message[:1].lower() + message[1:]


def format_problem(file_label: str, loc: Loc, text: str, origins: Mapping[Loc, str]) -> str:
    path = key_path(loc)
    for origin_loc, variable in origins.items():
        if loc[: len(origin_loc)] == origin_loc:
            path += f" (from {variable})"
            break
    return f"{file_label}: {path}: {text}"
