"""What a valid `[mqtt]` or `[buffer]` table is (the keys are in `p1daemon.publish.settings`).

Strict like the rest of the configuration (p1daemon.config.model): `port = "1883"`
or `tls = "yes"` is an error naming the key, not a silent conversion. File paths
are TOML strings, which strict mode would refuse for `Path`: those fields opt out.
"""

import os
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from p1daemon.config.schema import Checks
from p1daemon.publish.topics import checked_topic_prefix

_SECTION = ConfigDict(extra="forbid", strict=True, defer_build=True)


@field_validator("host")
def _host_not_empty(cls: type, value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


@field_validator("topic_prefix")
def _prefix_is_a_topic(cls: type, value: str) -> str:
    return checked_topic_prefix(value)


@field_validator("password_file", "ca_file", "cert_file", "key_file")
def _files_beside_config(cls: type, value: Path | None, info: ValidationInfo) -> Path | None:
    return None if value is None else _beside_config(value, info)


@field_validator("ack_timeout_s")
def _ack_timeout_sane(cls: type, value: float) -> float:
    if 0 < value < 1:
        raise ValueError("must be 0 (never) or at least 1 s")
    return value


@field_validator("client_id")
def _client_id_not_empty(cls: type, value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty (leave it out for p1daemon-<hostname>)")
    return value


@model_validator(mode="after")
def _consistent(self: Any) -> Any:
    if self.password is not None and self.password_file is not None:
        raise ValueError("give either password or password_file, not both")
    if (self.password is not None or self.password_file is not None) and not self.username:
        raise ValueError("a password needs a username")
    if (self.cert_file is None) != (self.key_file is None):
        raise ValueError("cert_file and key_file go together (client certificate)")
    tls_only = {
        "ca_file": self.ca_file,
        "cert_file": self.cert_file,
        "key_file": self.key_file,
    }
    if not self.tls:
        given = [name for name, value in tls_only.items() if value is not None]
        if self.tls_insecure:
            given.append("tls_insecure")
        if given:
            raise ValueError(f"{', '.join(given)} only make(s) sense with tls = true")
    return self


def _beside_config(path: Path, info: ValidationInfo) -> Path:
    """A relative path means "next to the configuration file", as replay sources do.

    Relative to the working directory would make the same file behave differently under
    systemd (cwd /) and in a terminal.
    """
    base_dir = (info.context or {}).get("base_dir")
    if path.is_absolute() or base_dir is None:
        return path
    return Path(os.path.normpath(Path(base_dir) / path))


@field_validator("path")
def _path_not_empty(cls: type, value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return str(_beside_config(Path(value), info))


@field_validator("synchronous", mode="before")
def _synchronous_case(cls: type, value: object) -> object:
    return value.lower() if isinstance(value, str) else value


_LAX_PATH = Field(strict=False)

CHECKS = {
    "MqttSettings": Checks(
        config=_SECTION,
        fields={
            "port": Field(ge=1, le=65535),
            "password_file": _LAX_PATH,
            "keepalive": Field(ge=5, le=65535),
            "ca_file": _LAX_PATH,
            "cert_file": _LAX_PATH,
            "key_file": _LAX_PATH,
            "reconnect_max_delay_s": Field(ge=1.0, le=3600.0),
            "ack_timeout_s": Field(ge=0.0, le=3600.0),
            "health_interval_s": Field(ge=1.0, le=86400.0),
        },
        validators=(
            _host_not_empty,
            _prefix_is_a_topic,
            _files_beside_config,
            _ack_timeout_sane,
            _client_id_not_empty,
            _consistent,
        ),
    ),
    "BufferSettings": Checks(
        config=_SECTION,
        fields={
            "max_mb": Field(gt=0, le=65536),
            "commit_interval_s": Field(ge=0.0, le=3600.0),
            "drain_rate_per_s": Field(gt=0),
        },
        validators=(_path_not_empty, _synchronous_case),
    ),
}
