"""The `[mqtt]` and `[buffer]` sections: defaults, and one clear reason per bad value."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from p1daemon.publish.settings import BufferSettings, MqttSettings


def test_defaults_are_the_documented_ones() -> None:
    mqtt = MqttSettings()
    assert (mqtt.host, mqtt.port, mqtt.topic_prefix) == ("127.0.0.1", 1883, "p1")
    assert mqtt.client_id == f"p1daemon-{socket.gethostname()}"
    assert (mqtt.qos, mqtt.protocol, mqtt.keepalive, mqtt.health_interval_s) == (1, "3.1.1", 60, 60)
    assert not mqtt.tls and not mqtt.tls_insecure
    buffer = BufferSettings()
    assert buffer.path == "/var/lib/p1daemon/outbox.db"
    assert (buffer.max_mb, buffer.commit_interval_s, buffer.synchronous) == (64, 1.0, "normal")


def reason(model: type[Any], **values: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(values)
    errors = caught.value.errors()
    assert len(errors) == 1
    return f"{'.'.join(str(p) for p in errors[0]['loc'])}: {errors[0]['msg']}"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"port": 0}, "port: Input should be greater than or equal to 1"),
        (
            {"topic_prefix": "p1/#"},
            "topic_prefix: Value error, must not contain the MQTT wildcards",
        ),
        (
            {"topic_prefix": "/p1"},
            "topic_prefix: Value error, must be non-empty and must not start",
        ),
        ({"protocol": "3.1"}, "protocol: Input should be '3.1.1' or '5'"),
        ({"qos": 3}, "qos: Input should be 0, 1 or 2"),
        ({"password": "x"}, "Value error, a password needs a username"),
        (
            {"username": "u", "password": "x", "password_file": "/f"},
            "either password or password_file",
        ),
        ({"tls_insecure": True}, "tls_insecure only make(s) sense with tls = true"),
        ({"tls": True, "cert_file": "/c"}, "cert_file and key_file go together"),
        ({"hostname": "x"}, "hostname: Extra inputs are not permitted"),
        ({"client_id": " "}, "client_id: Value error, must not be empty"),
    ],
)
def test_bad_mqtt_settings_name_the_key_and_the_reason(
    values: dict[str, Any], expected: str
) -> None:
    assert expected in reason(MqttSettings, **values)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"max_mb": 0}, "max_mb: Input should be greater than 0"),
        ({"synchronous": "sometimes"}, "synchronous: Input should be 'normal', 'full' or 'off'"),
        (
            {"commit_interval_s": -1},
            "commit_interval_s: Input should be greater than or equal to 0",
        ),
        ({"drain_rate_per_s": 0}, "drain_rate_per_s: Input should be greater than 0"),
        ({"path": ""}, "path: Value error, must not be empty"),
    ],
)
def test_bad_buffer_settings_name_the_key_and_the_reason(
    values: dict[str, Any], expected: str
) -> None:
    assert expected in reason(BufferSettings, **values)


def test_synchronous_is_case_insensitive() -> None:
    assert BufferSettings.model_validate({"synchronous": "FULL"}).synchronous == "full"


def test_password_is_masked_and_resolved_from_a_file(tmp_path: Path) -> None:
    settings = MqttSettings.model_validate({"username": "p1", "password": "s3cret"})
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
    assert settings.resolved_password() == "s3cret"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert MqttSettings(username="p1", password_file=secret).resolved_password() == "from-file"
    assert MqttSettings().resolved_password() is None


@pytest.mark.parametrize("prefix", ["$SYS/p1", "$p1", "$share/x"])
def test_a_prefix_starting_with_dollar_is_refused_in_one_line(prefix: str) -> None:
    # Brokers keep '$' topics for themselves: nothing published there reaches a subscriber.
    line = reason(MqttSettings, topic_prefix=prefix)
    assert line.startswith("topic_prefix: Value error, must not start with '$'")
    assert "\n" not in line


def test_the_config_file_names_the_dollar_prefix_in_one_line(tmp_path: Path) -> None:
    from p1daemon.config.errors import ConfigError
    from p1daemon.config.loader import load_config

    (tmp_path / "house.txt").write_bytes(b"")
    config = tmp_path / "p1daemon.toml"
    config.write_text(
        '[mqtt]\ntopic_prefix = "$SYS/p1"\n\n[[meters]]\nname = "house"\n'
        'source = "replay:house.txt"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert len(caught.value.lines) == 1
    assert "mqtt.topic_prefix: must not start with '$'" in caught.value.lines[0]
