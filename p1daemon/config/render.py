"""The effective configuration as TOML, for `p1daemon check-config`.

Shows every key with the value the daemon will use (defaults included, replay paths
resolved), so "what is it actually doing?" has an answer; secrets are masked because
this output ends up in bug reports and forum posts.
"""

from __future__ import annotations

import json
from typing import Any

from p1daemon.config.model import Config
from p1daemon.config.secrets import SECRET_FIELDS

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


def render_config(config: Config, source_label: str) -> str:
    """TOML text that loads back into the same configuration, except for masked secrets."""
    data = config.model_dump(mode="json")
    out = [f"# Effective configuration from {source_label} (secrets masked)", ""]
    for section in ("mqtt", "buffer", "homeassistant", "site", "history", "statements"):
        out += [f"[{section}]", *_table_lines(section, data[section]), ""]
    for meter in data["meters"]:
        out += ["[[meters]]", *_table_lines("meters", meter), ""]
    return "\n".join(out).rstrip() + "\n"
