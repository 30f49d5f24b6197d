"""The `[mqtt]` and `[buffer]` sections of the configuration file.

Owned by the publishing layer; the configuration loader composes them into the whole
file. Field names are public (users write them in TOML): never rename, only add.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "p1"


class BufferSettings(_Section):
    path: str = "/var/lib/p1daemon/outbox.db"
