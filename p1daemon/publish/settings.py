"""The `[mqtt]` and `[buffer]` sections of the configuration file.

Owned by the publishing layer; the configuration loader composes them into the whole
file. Field names are public (users write them in TOML): never rename, only add. What
makes a value valid (bounds, strictness, the rules between keys) is in
`p1daemon.publish.settings_schema`; these dataclasses are what the daemon holds (see
`p1daemon.config.section`).

Secrets: `password` may come from the file, from `password_file` (read by
`MqttSettings.resolved_password`, so the secret never has to sit in the main file) or
from the `P1DAEMON_MQTT_PASSWORD` environment variable, which the configuration loader
applies. `password` is a `Secret` so that printing or logging the settings never
shows it.
"""

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from p1daemon.config.secret import Secret
from p1daemon.config.section import Section

_CHECKS = "p1daemon.publish.settings_schema"


def _default_client_id() -> str:
    # One client id per host: two daemons on one Pi would kick each other off the broker,
    # which is what we want to notice; two Pis must not, hence the hostname.
    return f"p1daemon-{socket.gethostname()}"


@dataclass(kw_only=True, slots=True)
class MqttSettings(Section, checks=_CHECKS):
    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "p1"
    username: str | None = None
    password: Secret | None = None
    password_file: Path | None = None
    client_id: str = field(default_factory=_default_client_id)
    keepalive: int = 60
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    qos: Literal[0, 1, 2] = 1
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    reconnect_max_delay_s: float = 60.0
    # No PUBACK for this long while messages are in flight: warn and reconnect (0: never).
    ack_timeout_s: float = 30.0
    health_interval_s: float = 60.0

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


@dataclass(kw_only=True, slots=True)
class BufferSettings(Section, checks=_CHECKS):
    path: str = "/var/lib/p1daemon/outbox.db"
    max_mb: float = 64.0
    commit_interval_s: float = 1.0
    synchronous: Literal["normal", "full", "off"] = "normal"
    drain_rate_per_s: float = 10000.0
