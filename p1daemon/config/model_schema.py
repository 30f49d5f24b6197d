"""What a valid file is: the checks of `[[meters]]` and of the whole file.

The keys, types and defaults are in `p1daemon.config.model`; the sections' own checks
beside their dataclasses (`p1daemon.publish.settings_schema`...).

Start-up (issue 16): every command that validates a file pays for building these
models. Each one is `defer_build`: its validator is made when it is first used, so
loading a file builds one validator (Config's, the sections inline) instead of one
per model, and a command that needs only `[mqtt]` (watch) builds that one alone.
"""

import re
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from p1daemon.config.ean import ean_problem
from p1daemon.config.model import MAX_RECONNECT_INTERVAL_S, TARIFFS
from p1daemon.config.schema import Checks
from p1daemon.frame.smarty import InvalidKeyError, parse_key
from p1daemon.publish.topics import RESERVED_METER_NAMES
from p1daemon.source.spec import SourceSpecError, parse_source
from p1daemon.views.history.settings import HISTORY_FILE

NAME_PATTERN = re.compile(r"^[a-z0-9_-]+$")
MAX_NAME_LENGTH = 64

_TABLE = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


@field_validator("name")
def _name_shape(cls: type, value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise ValueError(
            f"use lower-case letters, digits, '-' and '_' only (it becomes an MQTT "
            f"topic level), got {value!r}"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"at most {MAX_NAME_LENGTH} characters, got {len(value)}")
    if value in RESERVED_METER_NAMES:
        raise ValueError(f"{value!r} is reserved: <topic_prefix>/{value}/... is not a meter")
    return value


@field_validator("ean", mode="before")
def _ean_valid(cls: type, value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("must be a quoted string of 18 digits (TOML numbers lose leading zeros)")
    if isinstance(value, str):
        problem = ean_problem(value)
        if problem is not None:
            raise ValueError(problem)
    return value


@field_validator("source", mode="before")
def _source_form(cls: type, value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str):
        return value
    base_dir = (info.context or {}).get("base_dir")
    try:
        spec = parse_source(value, base_dir=base_dir)
    except SourceSpecError as exc:
        raise ValueError(str(exc)) from None
    if spec.path is not None and not spec.path.is_file():
        raise ValueError(f"replay file not found: {spec.path}")
    return spec.text


@field_validator("serve")
def _serve_address(cls: type, value: str | None) -> str | None:
    if value is None:
        return None
    from p1daemon.serve.address import parse_listen_address  # only meters that serve

    return parse_listen_address(value).text


@field_validator("baudrate", mode="before")
def _baudrate_value(cls: type, value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 50 <= value <= 4_000_000:
        return value
    raise ValueError(f'must be "auto" or a baud rate such as 115200 or 9600, got {value!r}')


@field_validator("key", "auth_key", mode="before")
def _key_hex(cls: type, value: Any, info: ValidationInfo) -> Any:
    if info.field_name == "auth_key" and isinstance(value, str) and value.lower() == "none":
        return value
    if isinstance(value, str):
        try:
            parse_key(value, "the key")
        except InvalidKeyError as exc:
            raise ValueError(str(exc).removeprefix("the key ")) from None
    return value


@field_validator("tariff_labels", mode="before")
def _tariff_names(cls: type, value: Any) -> Any:
    if isinstance(value, dict):
        unknown = [k for k in value if k not in TARIFFS]
        if unknown:
            raise ValueError(f"unknown tariff {unknown[0]!r}; use t1, t2, t3 or t4")
    return value


@model_validator(mode="after")
def _history_beside_the_outbox(self: Any) -> Any:
    """Without `[history] path`, the history lives beside the outbox (the one folder
    the service may write, and a test's or the demo's own folder)."""
    if "path" not in self.history.model_fields_set:
        beside = str(Path(self.buffer.path).parent / HISTORY_FILE)
        # The models are frozen; this runs once, while the object is being built.
        object.__setattr__(self, "history", self.history.model_copy(update={"path": beside}))
    return self


_POSITIVE_SECONDS = Field(gt=0)
_NON_NEGATIVE_SECONDS = Field(ge=0)

CHECKS = {
    "MeterConfig": Checks(
        config=_TABLE,
        fields={
            "max_frame_bytes": Field(ge=256, le=1024 * 1024),
            "silence_timeout_s": _POSITIVE_SECONDS,
            "replay_interval_s": _NON_NEGATIVE_SECONDS,
            "publish_interval_s": _NON_NEGATIVE_SECONDS,
            "export_limit_kw": Field(gt=0),
            "export_limit_hold_s": Field(ge=0, le=86400),
            "capacity_target_kw": Field(gt=0, le=10000),
            "capacity_margin_kw": Field(ge=0, le=10000),
            "capacity_hold_s": Field(ge=0, le=600),
            "reconnect_initial_s": _POSITIVE_SECONDS,
            "reconnect_max_s": Field(gt=0, le=MAX_RECONNECT_INTERVAL_S),
            "serve_max_clients": Field(ge=1, le=64),
        },
        validators=(
            _name_shape,
            _ean_valid,
            _source_form,
            _serve_address,
            _baudrate_value,
            _key_hex,
            _tariff_names,
        ),
    ),
    "Config": Checks(
        config=_TABLE,
        fields={"meters": Field(min_length=1)},
        validators=(_history_beside_the_outbox,),
    ),
}
