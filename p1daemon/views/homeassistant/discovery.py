"""Discovery configs for one metering point: (topic, payload) pairs to publish retained.

Identity, and why it is built this way:
- One Home Assistant device per metering point, named "<meter> (<role>)". Its stable
  identifier comes from the EAN when one is configured, else from the topic prefix and
  the meter's name. It deliberately does not come from the equipment id: a replaced
  meter must stay the same entities, so the Energy dashboard keeps working and Home
  Assistant treats the new meter's lower counters as a reset (which total_increasing
  handles), instead of growing a second set of entities fed by the same topic. The
  equipment id is added as a second identifier, scoped to the metering point: Home
  Assistant merges every config sharing any identifier into one device, so two metering
  points whose meters report the same equipment id (a copied capture, a demo, a meter
  moved between connections, a vendor that fills it with zeros) must not share one.
- `manufacturer` is the maker's name where the FLAG id is known, `model` the header
  without its framing (see `makers.py`).
- Each M-Bus sub-meter is its own device (identified by its own equipment id; by the
  metering point, channel and medium when it sends none) with `via_device` the meter.
- unique_id = "<device id>_<register key>": the same on every restart, and the
  discovery topic's object id too (Home Assistant's recommended layout, no node id).

Configs use per-entity discovery (`<prefix>/sensor/<id>/config`), which every Home
Assistant release accepts; device-based discovery needs 2024.11 or later. The deprecated
`object_id` is not sent; `default_entity_id` (2025.10+) suggests an entity id and is
dropped silently by older releases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from p1daemon import __version__
from p1daemon.publish.topics import Topics
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import MbusDevice
from p1daemon.views.homeassistant.capacity_entities import capacity_configs
from p1daemon.views.homeassistant.entities import Entity, mbus_entities, mbus_label, meter_entities
from p1daemon.views.homeassistant.ids import entity_slug, topic_safe
from p1daemon.views.homeassistant.makers import manufacturer_name, model_name
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

ORIGIN = {
    "name": "p1daemon",
    "sw_version": __version__,
}


@dataclass(frozen=True, slots=True)
class DiscoveryMessage:
    """One retained discovery config."""

    topic: str
    payload: dict[str, Any]
    unique_id: str


def meter_device_id(reading: MeterReading, topic_prefix: str) -> str:
    if reading.ean:
        return f"p1d_ean_{topic_safe(reading.ean)}"
    return f"p1d_{topic_safe(topic_prefix)}_{topic_safe(reading.meter)}"


def _sw_version(reading: MeterReading) -> str | None:
    version = reading.dsmr_version
    if version is None:
        return None
    code = reading.version_code
    if code and code != version.replace(".", ""):
        return f"DSMR {version} ({code})"  # Belgian e-MUCS: "DSMR 5.0 (50217)"
    return f"DSMR {version}"


def equipment_identifier(equipment_id: str, meter_device: str) -> str:
    """The equipment id as a device identifier, within its metering point only."""
    return f"p1d_eq_{topic_safe(equipment_id)}_{meter_device}"


def _meter_device(reading: MeterReading, device_id: str) -> dict[str, Any]:
    identifiers = [device_id]
    if reading.equipment_id:
        identifiers.append(equipment_identifier(reading.equipment_id, device_id))
    device: dict[str, Any] = {
        "identifiers": identifiers,
        "name": f"{reading.meter} ({reading.role})",
    }
    model = model_name(reading.header)
    if model:
        device["model"] = model
    manufacturer = manufacturer_name(reading.header, reading.manufacturer)
    if manufacturer:
        device["manufacturer"] = manufacturer
    sw_version = _sw_version(reading)
    if sw_version:
        device["sw_version"] = sw_version
    return device


def mbus_device_id(device: MbusDevice, meter_device: str) -> str:
    """Scoped to the metering point, so two daemons replaying the same capture on one
    broker (demos, tests) cannot claim the same entity."""
    if device.equipment_id:
        return f"{meter_device}_mbus_{topic_safe(device.equipment_id)}"
    medium = device.device_type if device.device_type is not None else "x"
    return f"{meter_device}_mbus{device.channel}_{medium}"


def _mbus_device(
    reading: MeterReading, device: MbusDevice, device_id: str, via: str | None
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "identifiers": [device_id],
        "name": f"{reading.meter} {mbus_label(device).lower()} meter (M-Bus {device.channel})",
    }
    if via is not None:
        block["via_device"] = via
    if device.device_type is not None:
        block["model"] = f"M-Bus device type {device.device_type:03d}"
    return block


def _config(
    entity: Entity,
    *,
    unique_id: str,
    entity_id: str,
    device: dict[str, Any],
    state_topic: str,
    status_topic: str,
    settings: HomeAssistantSettings,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": entity.name,
        "unique_id": unique_id,
        "default_entity_id": f"sensor.{entity_id}",
        "state_topic": state_topic,
        "value_template": entity.template,
        "availability": [
            {
                "topic": status_topic,
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
        "device": device,
        "origin": ORIGIN,
    }
    if entity.device_class is not None:
        config["device_class"] = entity.device_class
    if entity.state_class is not None:
        config["state_class"] = entity.state_class
    if entity.unit is not None:
        config["unit_of_measurement"] = entity.unit
    if entity.precision is not None:
        config["suggested_display_precision"] = entity.precision
    if entity.category is not None:
        config["entity_category"] = entity.category
    if settings.expire_after_s > 0:
        config["expire_after"] = settings.expire_after_s
    return config


def discovery_messages(
    reading: MeterReading,
    settings: HomeAssistantSettings,
    topics: Topics,
    *,
    tariff_labels: Mapping[str, str] | None = None,
) -> list[DiscoveryMessage]:
    """Configs for every register this reading carries, on the meter and its M-Bus devices."""
    meter_id = meter_device_id(reading, topics.prefix)
    meter_block = _meter_device(reading, meter_id)
    out: list[DiscoveryMessage] = []

    def add(entity: Entity, device_id: str, slug: str, device: dict[str, Any]) -> None:
        unique_id = f"{device_id}_{entity.key}"
        config = _config(
            entity,
            unique_id=unique_id,
            entity_id=entity_slug("p1", slug, entity.key),
            device=device,
            state_topic=topics.latest(reading.meter),
            status_topic=topics.status,
            settings=settings,
        )
        topic = f"{settings.prefix}/sensor/{unique_id}/config"
        out.append(DiscoveryMessage(topic, config, unique_id))

    own = meter_entities(reading, tariff_labels or {})
    for entity in own:
        add(entity, meter_id, reading.meter, meter_block)
    # `via_device` must name a device Home Assistant knows; a meter that sends nothing of
    # its own (a heat-only WarmteLink) has no device to hang its sub-meters on.
    via = meter_id if own else None
    for topic, config, unique_id in capacity_configs(  # issue 13: capacity tariff entities
        reading,
        settings.prefix,
        topics,
        meter_id,
        meter_block,
        {
            "availability": [
                {
                    "topic": topics.status,
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            ],
            "origin": ORIGIN,
        },
    ):
        out.append(DiscoveryMessage(topic, config, unique_id))
    for device in reading.mbus:
        entities = mbus_entities(device)
        if not entities:
            continue
        device_id = mbus_device_id(device, meter_id)
        block = _mbus_device(reading, device, device_id, via)
        slug = f"{reading.meter}_{mbus_label(device)}_{device.channel}"
        for entity in entities:
            add(entity, device_id, slug, block)
    return out
