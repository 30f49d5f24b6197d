"""Rules that involve more than one key or the world outside the file (do the certificate
and password files exist?), checked on the raw file next to field validation.

Working on the raw TOML data (rather than on validated models) means a duplicate name is
reported even when the same file also has a bad EAN elsewhere: the user fixes every
problem in one round instead of discovering them one start-up at a time.
"""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path
from typing import Any

from p1daemon.config.model import MAX_SECONDARY, MeterConfig
from p1daemon.config.section import field_default
from p1daemon.source.spec import SourceSpecError, parse_source

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]

_LINE_KEYS = ("bytesize", "parity", "stopbits")
# Files the MQTT client opens when it connects; a missing one must be named now, not
# surface later as an anonymous TLS or login failure of `run`.
_MQTT_FILES = ("ca_file", "cert_file", "key_file", "password_file")
_EXPORT_HOLD_DEFAULT = field_default(MeterConfig, "export_limit_hold_s")


def _label(index: int, meter: dict[str, Any]) -> str:
    name = meter.get("name")
    return f"meters[{index}] ({name})" if isinstance(name, str) else f"meters[{index}]"


def _meter_tables(raw: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    meters = raw.get("meters")
    if not isinstance(meters, list):
        return []
    return [(i, m) for i, m in enumerate(meters) if isinstance(m, dict)]


def _unique(
    tables: list[tuple[int, dict[str, Any]]], key: str, what: str, identity: Any = None
) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[Any, tuple[int, dict[str, Any]]] = {}
    for index, meter in tables:
        value = meter.get(key)
        if not isinstance(value, str):
            continue
        ident = identity(value) if identity else value
        if ident is None:
            continue
        if ident in seen:
            first, first_meter = seen[ident]
            problems.append(((("meters", index, key)), f"{what} as {_label(first, first_meter)}"))
        else:
            seen[ident] = (index, meter)
    return problems


def _roles(tables: list[tuple[int, dict[str, Any]]]) -> list[Problem]:
    problems: list[Problem] = []
    primary: tuple[int, dict[str, Any]] | None = None
    secondaries = 0
    for index, meter in tables:
        role = meter.get("role", "primary")
        if role == "primary":
            if primary is None:
                primary = (index, meter)
                continue
            hint = "" if "role" in meter else ' (role defaults to "primary")'
            problems.append(
                (
                    ("meters", index, "role"),
                    f"at most one meter can be primary, {_label(*primary)} already is{hint}",
                )
            )
        elif role == "secondary":
            secondaries += 1
            if secondaries == MAX_SECONDARY + 1:
                problems.append(
                    (
                        ("meters", index, "role"),
                        f"at most {MAX_SECONDARY} secondary metering points per connection",
                    )
                )
    return problems


def _meter_settings(index: int, meter: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    if meter.get("baudrate", "auto") == "auto":
        for key in _LINE_KEYS:
            if key in meter:
                problems.append(
                    (
                        ("meters", index, key),
                        'needs a fixed baudrate (baudrate = "auto" detects 115200 8N1 '
                        "or 9600 7E1 by itself)",
                    )
                )
    initial, ceiling = meter.get("reconnect_initial_s"), meter.get("reconnect_max_s", 5.0)
    if isinstance(initial, int | float) and isinstance(ceiling, int | float) and initial > ceiling:
        problems.append(
            (
                ("meters", index, "reconnect_initial_s"),
                f"must not exceed reconnect_max_s ({ceiling})",
            )
        )
    # A hold time that differs from the default shows someone expects an alert; the
    # default itself is tolerated because `check-config` prints every key, and its
    # output must load back.
    hold = meter.get("export_limit_hold_s", _EXPORT_HOLD_DEFAULT)
    hold_is_number = isinstance(hold, int | float) and not isinstance(hold, bool)
    if hold_is_number and hold != _EXPORT_HOLD_DEFAULT and meter.get("export_limit_kw") is None:
        problems.append(
            (
                ("meters", index, "export_limit_hold_s"),
                "only applies together with export_limit_kw (the export power limit)",
            )
        )
    if isinstance(meter.get("key"), str) and importlib.util.find_spec("cryptography") is None:
        problems.append(
            (
                ("meters", index, "key"),
                "decrypting Smarty telegrams needs the 'cryptography' package: "
                "pip install 'p1daemon[smarty]'",
            )
        )
    return problems


def _prefixes(raw: dict[str, Any]) -> list[Problem]:
    """Home Assistant's birth and will messages live on `<ha prefix>/status`, ours on
    `<topic_prefix>/status`: one topic for both would let Home Assistant's `offline` mark
    every entity unavailable, and our own `online` look like Home Assistant restarting."""
    mqtt, ha = raw.get("mqtt", {}), raw.get("homeassistant", {})
    if not isinstance(mqtt, dict) or not isinstance(ha, dict) or ha.get("discovery") is not True:
        return []
    topic_prefix, ha_prefix = mqtt.get("topic_prefix", "p1"), ha.get("prefix", "homeassistant")
    if isinstance(ha_prefix, str) and ha_prefix == topic_prefix:
        where = ("homeassistant", "prefix") if "prefix" in ha else ("mqtt", "topic_prefix")
        return [
            (
                where,
                f"[homeassistant] prefix and [mqtt] topic_prefix must differ, both {ha_prefix!r}",
            )
        ]
    return []


def file_problem(path: Path) -> str | None:
    """Why the daemon could not read `path` as a file, or None when it can.

    Opened without blocking, so a FIFO or a device given by mistake cannot hang the check.
    Readability is that of the user running the check: `check-config` as root can read
    what the `p1daemon` service user cannot, which only the service's own start shows.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"no such file: {path}"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if not stat.S_ISREG(info.st_mode):
        return f"not a file: {path}"
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return None


def _mqtt_files(raw: dict[str, Any], base_dir: Path) -> list[Problem]:
    """Relative paths are beside the configuration file, as `MqttSettings` resolves them.

    A `password_file` replaced by P1DAEMON_MQTT_PASSWORD is gone from `raw` already.
    """
    mqtt = raw.get("mqtt")
    if not isinstance(mqtt, dict):
        return []
    problems: list[Problem] = []
    for key in _MQTT_FILES:
        value = mqtt.get(key)
        if not isinstance(value, str):
            continue  # absent, or the wrong type (reported by field validation)
        path = Path(value)
        if not path.is_absolute():
            path = Path(os.path.normpath(base_dir / path))
        problem = file_problem(path)
        if problem is not None:
            problems.append((("mqtt", key), problem))
    return problems


def cross_check(raw: dict[str, Any], base_dir: Path) -> list[Problem]:
    """Problems spanning several keys or meters, in file order."""
    tables = _meter_tables(raw)

    def source_identity(text: str) -> str | None:
        try:
            return parse_source(text, base_dir=base_dir).identity
        except SourceSpecError:
            return None  # reported by field validation

    problems = _prefixes(raw)
    problems += _mqtt_files(raw, base_dir)
    problems += _unique(tables, "name", "same name")
    problems += _roles(tables)
    problems += _unique(tables, "source", "same source", source_identity)
    problems += _unique(tables, "ean", "same EAN")
    for index, meter in tables:
        problems += _meter_settings(index, meter)
    return problems
