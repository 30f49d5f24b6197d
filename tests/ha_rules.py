"""Home Assistant's rules for MQTT discovery configs, restated for the tests.

`HA_RULES` restates, independently of p1daemon.views.homeassistant.units, what Home Assistant
core checks (homeassistant/components/sensor/const.py DEVICE_CLASS_STATE_CLASSES and
DEVICE_CLASS_UNITS; mqtt/discovery.py topic ids; entity id syntax; the MQTT sensor
schema's keys). Value templates are rendered with Jinja2's immutable sandbox, the
environment Home Assistant renders them in, and the result is read the way Home
Assistant's MQTT sensor reads it. Shared by the unit tests of the discovery configs and
the tests that take them off a real broker.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from p1daemon.publish.payload import compact_json as encode
from p1daemon.publish.topics import Topics
from p1daemon.views.homeassistant.discovery import DiscoveryMessage

jinja_sandbox = pytest.importorskip(
    "jinja2.sandbox", reason="jinja2 (a dev dependency) renders the value templates"
)

TOPICS = Topics("p1")

# device class -> (state classes it allows, units it allows); from HA core sensor/const.py.
HA_RULES: dict[str, tuple[set[str | None], set[str | None]]] = {
    "energy": (
        {None, "total", "total_increasing"},
        {
            "J",
            "kJ",
            "MJ",
            "GJ",
            "mWh",
            "Wh",
            "kWh",
            "MWh",
            "GWh",
            "TWh",
            "cal",
            "kcal",
            "Mcal",
            "Gcal",
        },
    ),
    "power": ({None, "measurement"}, {"mW", "W", "kW", "MW", "GW", "TW", "BTU/h"}),
    "voltage": ({None, "measurement"}, {"\u00b5V", "\u03bcV", "mV", "V", "kV", "MV"}),
    "current": ({None, "measurement"}, {"mA", "A"}),
    "gas": ({None, "total", "total_increasing"}, {"m\u00b3", "ft\u00b3", "CCF", "L"}),
    "water": ({None, "total", "total_increasing"}, {"m\u00b3", "ft\u00b3", "CCF", "gal", "L"}),
    "timestamp": ({None}, {None}),
}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
NON_NUMERIC = {"timestamp", "date", "enum"}
ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")
TOPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
SENSOR_KEYS = {
    "name", "unique_id", "default_entity_id", "state_topic", "value_template",
    "availability", "availability_mode", "availability_topic", "device", "origin",
    "device_class", "state_class", "unit_of_measurement", "suggested_display_precision",
    "entity_category", "expire_after", "force_update", "icon", "qos", "enabled_by_default",
    "json_attributes_topic", "json_attributes_template", "payload_available",
    "payload_not_available", "encoding", "entity_picture", "options",
}  # fmt: skip
DEVICE_KEYS = {
    "identifiers", "connections", "name", "manufacturer", "model", "model_id",
    "sw_version", "hw_version", "suggested_area", "via_device", "configuration_url",
}  # fmt: skip
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}


def numeric_expected(config: dict[str, Any]) -> bool:
    """Home Assistant's SensorEntity._numeric_state_expected, restated."""
    if config.get("device_class") in NON_NUMERIC:
        return False
    if any(
        k in config for k in ("state_class", "unit_of_measurement", "suggested_display_precision")
    ):
        return True
    return config.get("device_class") is not None


def render(template: str, payload: str) -> str:
    env = jinja_sandbox.ImmutableSandboxedEnvironment()
    return str(env.from_string(template).render(value_json=json.loads(payload), value=payload))


class HaSensor:
    """What Home Assistant's MQTT sensor does with a message on its state topic."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.state: str | None = None  # None: unknown
        self.history: list[str | None] = []

    def receive(self, payload: str) -> None:
        rendered = render(self.config["value_template"], payload)
        if rendered == "None":
            self.state = None
        elif numeric_expected(self.config):
            if rendered == "":
                return  # "Ignore empty state": the previous state stays
            float(rendered)  # Home Assistant rejects a non-numeric state here
            self.state = rendered
        else:
            if self.config.get("device_class") == "timestamp":
                datetime.fromisoformat(rendered)
            self.state = rendered
        self.history.append(self.state)


def validate(
    messages: list[DiscoveryMessage], ha_prefix: str = "homeassistant", topics: Topics = TOPICS
) -> None:
    """Every rule above, for a set of configs published together."""
    unique_ids: Counter[str] = Counter()
    entity_ids: Counter[str] = Counter()
    identifiers: set[str] = set()
    owners: dict[str, set[str]] = {}  # identifier -> names of the devices that carry it
    via: set[str] = set()
    for message in messages:
        config = message.payload
        assert config is not None
        where = message.topic
        binary = re.fullmatch(rf"{re.escape(ha_prefix)}/binary_sensor/([^/]+)/config", where)
        if binary:  # the capacity warning (issue 13): a binary sensor on the alert record
            assert TOPIC_ID.match(binary.group(1)) and binary.group(1) == config["unique_id"]
            assert config["default_entity_id"].startswith("binary_sensor."), where
            assert config["device_class"] == "problem", where
            assert config["state_topic"].endswith("/alert/capacity"), where
            assert config["availability"][0]["topic"] == topics.status, where
            unique_ids[config["unique_id"]] += 1
            identifiers.update(config["device"]["identifiers"])
            continue
        match = re.fullmatch(rf"{re.escape(ha_prefix)}/sensor/([^/]+)/config", message.topic)
        assert match and TOPIC_ID.match(match.group(1)), where
        assert match.group(1) == config["unique_id"], where
        assert set(config) <= SENSOR_KEYS, (where, set(config) - SENSOR_KEYS)
        for key in ("name", "unique_id", "state_topic", "value_template", "device", "origin"):
            assert config.get(key), (where, key)
        assert config["origin"]["name"]
        unique_ids[config["unique_id"]] += 1
        entity_id = config["default_entity_id"]
        assert ENTITY_ID.match(entity_id) and entity_id.startswith("sensor."), entity_id
        entity_ids[entity_id] += 1

        device_class = config.get("device_class")
        state_class = config.get("state_class")
        unit = config.get("unit_of_measurement")
        assert state_class is None or state_class in STATE_CLASSES, where
        if device_class is not None:
            assert device_class in HA_RULES, (where, device_class)
            allowed_states, allowed_units = HA_RULES[device_class]
            assert state_class in allowed_states, (where, device_class, state_class)
            assert unit in allowed_units, (where, device_class, unit)
        assert unit != "m3", "Home Assistant's cubic metre is the U+00B3 string"
        assert config.get("entity_category") in (None, "diagnostic"), where
        precision = config.get("suggested_display_precision")
        assert precision is None or (isinstance(precision, int) and precision >= 0)

        device = config["device"]
        assert set(device) <= DEVICE_KEYS, (where, set(device) - DEVICE_KEYS)
        assert device["identifiers"] and all(isinstance(i, str) for i in device["identifiers"])
        assert device.get("name")
        identifiers.update(device["identifiers"])
        for identifier in device["identifiers"]:
            owners.setdefault(identifier, set()).add(device["name"])
        if "via_device" in device:
            via.add(device["via_device"])

        availability = config["availability"]
        assert availability and all(set(a) <= AVAILABILITY_KEYS for a in availability)
        assert availability[0]["topic"] == topics.status
        assert availability[0].get("payload_available", "online") == "online"
        assert availability[0].get("payload_not_available", "offline") == "offline"
        assert config["state_topic"].startswith(f"{topics.prefix}/")
        # `latest`; the capacity watch's entities (issue 13) read its own two documents
        assert config["state_topic"].endswith(("/latest", "/capacity", "/alert/capacity"))
        json.loads(encode(config))  # publishable as JSON
    assert max(unique_ids.values()) == 1, [u for u, n in unique_ids.items() if n > 1]
    assert max(entity_ids.values()) == 1, [e for e, n in entity_ids.items() if n > 1]
    assert via <= identifiers, "via_device must name a device that is announced"
    # Home Assistant merges every config sharing any identifier into one device: two
    # devices sharing one would become one, their entities mixed, its name flipping.
    shared = {i: names for i, names in owners.items() if len(names) > 1}
    assert not shared, f"devices share identifiers: {shared}"
