"""Reading the configuration file: TOML, environment overrides for secrets, validation.

`load_config` is the only way the daemon gets a `Config`: it is what makes a bad file
fail before any port is opened, with every problem on its own line, and it is used
again on SIGHUP so that a broken edit is refused while the old configuration runs on.
"""

from __future__ import annotations

import codecs
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from p1daemon.config.errors import ConfigError, Loc, format_problem, reason
from p1daemon.config.model import Config, base_dir_context
from p1daemon.config.rules import cross_check
from p1daemon.config.schema import validate

ENV_MQTT_PASSWORD = "P1DAEMON_MQTT_PASSWORD"
ENV_MQTT_USERNAME = "P1DAEMON_MQTT_USERNAME"


def meter_key_variable(name: str) -> str:
    """P1DAEMON_METER_<NAME>_KEY, the Smarty key of meter `name`."""
    return f"P1DAEMON_METER_{name.upper().replace('-', '_')}_KEY"


NESTED_TOO_DEEPLY = (
    "TOML nested too deeply: arrays or inline tables inside each other hundreds of levels deep"
)


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    """The parsed file, or one line saying why not.

    A UTF-8 byte-order mark (Windows editors write one) is skipped: it carries no
    meaning in a UTF-8 file, and TOML would call it an invalid statement at line 1.
    Python's TOML parser recurses once per nesting level, so an absurdly nested file
    ends in RecursionError, which is a property of the file like any syntax error.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{label}: cannot read: {exc.strerror or exc}"]) from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError([f"{label}: saved as UTF-16 text; save it as UTF-8"])
    skipped = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[skipped:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{label}: not UTF-8 text (byte {exc.start + skipped})"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        raise ConfigError(
            [f"{label}: TOML syntax error: {message[:1].lower()}{message[1:]}"]
        ) from None
    except RecursionError:
        raise ConfigError([f"{label}: {NESTED_TOO_DEEPLY}"]) from None


def apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[Loc, str]:
    """Put secrets from the environment into `raw`; return which key came from which variable.

    A password from the environment replaces any `password_file` too: the variable is
    how an operator overrides the file, so both at once must not be an error.
    """
    origins: dict[Loc, str] = {}
    mqtt = raw.get("mqtt")
    for variable, key in ((ENV_MQTT_USERNAME, "username"), (ENV_MQTT_PASSWORD, "password")):
        value = environ.get(variable)
        if not value:
            continue
        if mqtt is None:
            mqtt = raw["mqtt"] = {}
        if isinstance(mqtt, dict):
            mqtt[key] = value
            if key == "password":
                mqtt.pop("password_file", None)
            origins[("mqtt", key)] = variable
    meters = raw.get("meters")
    if isinstance(meters, list):
        for index, meter in enumerate(meters):
            if not isinstance(meter, dict) or not isinstance(meter.get("name"), str):
                continue
            variable = meter_key_variable(meter["name"])
            value = environ.get(variable)
            if value:
                meter["key"] = value
                origins[("meters", index, "key")] = variable
    return origins


def _file_order(problem: tuple[Loc, str]) -> tuple[int, int]:
    """Sections first, then meter by meter, so the lines follow the file."""
    loc = problem[0]
    if loc[:1] == ("meters",) and len(loc) > 1 and isinstance(loc[1], int):
        return (1, loc[1])
    return (0, 0)


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate `path`; raises `ConfigError` with one line per problem."""
    label = os.fspath(path)
    file = Path(path)
    raw = _read_toml(file, label)
    origins = apply_environment(raw, os.environ if environ is None else environ)
    base_dir = file.resolve().parent
    problems: list[tuple[Loc, str]] = []
    config: Config | None = None
    try:
        config = validate(Config, raw, context=base_dir_context(file))
    except ValidationError as exc:
        problems += [(tuple(error["loc"]), reason(error)) for error in exc.errors()]
    problems += cross_check(raw, base_dir)
    if problems:
        problems.sort(key=_file_order)
        raise ConfigError(format_problem(label, loc, text, origins) for loc, text in problems)
    assert config is not None
    return config
