"""The `[mqtt]` and `[buffer]` sections of the configuration file.

Owned by the publishing layer; the configuration loader composes them into the whole
file. Field names are public (users write them in TOML): never rename, only add.

Secrets: `password` may come from the file, from `password_file` (read by
`MqttSettings.resolved_password`, so the secret never has to sit in the main file) or
from the `P1DAEMON_MQTT_PASSWORD` environment variable, which the configuration loader
applies. `password` is a `SecretStr` so that printing or logging the settings never
shows it.
"""

import os
import socket
from pathlib import Path
from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from p1daemon.publish.topics import checked_topic_prefix

# Strict like the rest of the configuration (p1daemon.config.model): `port = "1883"`
# or `tls = "yes"` is an error naming the key, not a silent conversion. File paths
# are TOML strings, which strict mode would refuse for `Path`: those fields opt out.
# A shared ConfigDict rather than a common base model: each model class costs its own
# schema build at import time, an empty base included.
_SECTION = ConfigDict(extra="forbid", strict=True, defer_build=True)


def _default_client_id() -> str:
    # One client id per host: two daemons on one Pi would kick each other off the broker,
    # which is what we want to notice; two Pis must not, hence the hostname.
    return f"p1daemon-{socket.gethostname()}"


class MqttSettings(BaseModel):
    model_config = _SECTION

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = "p1"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = Field(default=None, strict=False)
    client_id: str = Field(default_factory=_default_client_id)
    keepalive: int = Field(default=60, ge=5, le=65535)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    qos: Literal[0, 1, 2] = 1
    tls: bool = False
    ca_file: Path | None = Field(default=None, strict=False)
    cert_file: Path | None = Field(default=None, strict=False)
    key_file: Path | None = Field(default=None, strict=False)
    tls_insecure: bool = False
    reconnect_max_delay_s: float = Field(default=60.0, ge=1.0, le=3600.0)
    # No PUBACK for this long while messages are in flight: warn and reconnect (0: never).
    ack_timeout_s: float = Field(default=30.0, ge=0.0, le=3600.0)
    health_interval_s: float = Field(default=60.0, ge=1.0, le=86400.0)

    @field_validator("host")
    @classmethod
    def _host_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic(cls, value: str) -> str:
        return checked_topic_prefix(value)

    @field_validator("password_file", "ca_file", "cert_file", "key_file")
    @classmethod
    def _files_beside_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _beside_config(value, info)

    @field_validator("ack_timeout_s")
    @classmethod
    def _ack_timeout_sane(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("must be 0 (never) or at least 1 s")
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty (leave it out for p1daemon-<hostname>)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
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

    def resolved_password(self) -> str | None:
        """The password to send; raises OSError if `password_file` cannot be read.

        Read at connect time rather than at load time so that a rotated password file is
        picked up on the next reconnect without restarting the daemon.
        """
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            text = self.password_file.read_text(encoding="utf-8")
            return text.rstrip("\r\n")
        return None


def _beside_config(path: Path, info: ValidationInfo) -> Path:
    """A relative path means "next to the configuration file", as replay sources do.

    Relative to the working directory would make the same file behave differently under
    systemd (cwd /) and in a terminal.
    """
    base_dir = (info.context or {}).get("base_dir")
    if path.is_absolute() or base_dir is None:
        return path
    return Path(os.path.normpath(Path(base_dir) / path))


class BufferSettings(BaseModel):
    model_config = _SECTION

    path: str = "/var/lib/p1daemon/outbox.db"
    max_mb: float = Field(default=64.0, gt=0, le=65536)
    commit_interval_s: float = Field(default=1.0, ge=0.0, le=3600.0)
    synchronous: Literal["normal", "full", "off"] = "normal"
    drain_rate_per_s: float = Field(default=10000.0, gt=0)

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return str(_beside_config(Path(value), info))

    @field_validator("synchronous", mode="before")
    @classmethod
    def _synchronous_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
