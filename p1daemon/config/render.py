"""The effective configuration as TOML, for `p1daemon check-config`.

Shows every key with the value the daemon will use (defaults included, replay paths
resolved), so "what is it actually doing?" has an answer; secrets are masked because
this output ends up in bug reports and forum posts.
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from p1daemon.config.model import Config
from p1daemon.config.secret import Secret
from p1daemon.config.secrets import SECRET_FIELDS
from p1daemon.config.section import Section

MASK = "********"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{_bare_key(k)} = {_value(v)}" for k, v in value.items())
        return f"{{ {inner} }}" if inner else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string is JSON-compatible


def _bare_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _table_lines(section: str, data: dict[str, Any]) -> list[str]:
    secret = SECRET_FIELDS.get(section, frozenset())
    lines = []
    for key, value in data.items():
        if value is None:
            lines.append(f"# {key} is not set")
        elif key in secret:
            lines.append(f'{key} = "{MASK}"')
        else:
            lines.append(f"{key} = {_value(value)}")
    return lines


def _plain(value: Any) -> Any:
    """Tables as dicts and every value as TOML can write it (paths and decimals as text)."""
    if isinstance(value, Section):
        return {item.name: _plain(getattr(value, item.name)) for item in dataclasses.fields(value)}  # type: ignore[arg-type]
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Secret | Path | Decimal):
        return str(value)
    return value


def render_config(config: Config, source_label: str) -> str:
    """TOML text that loads back into the same configuration, except for masked secrets."""
    data = _plain(config)
    out = [f"# Effective configuration from {source_label} (secrets masked)", ""]
    for section in ("mqtt", "buffer", "homeassistant", "site", "history", "statements"):
        out += [f"[{section}]", *_table_lines(section, data[section]), ""]
    for meter in data["meters"]:
        out += ["[[meters]]", *_table_lines("meters", meter), ""]
    return "\n".join(out).rstrip() + "\n"
