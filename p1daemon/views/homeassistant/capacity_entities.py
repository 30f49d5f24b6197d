"""Home Assistant entities of the capacity tariff watch, on the meter's own device.

They read the retained `<prefix>/<meter>/capacity` document and the warning
`<prefix>/<meter>/alert/capacity` (not `latest`), so they exist only for a meter that
sends capacity data (`capacity = "auto"`, the default). Same value templates as the
other sensors: a null renders nothing and the previous state stays.
"""

from __future__ import annotations

from typing import Any

from p1daemon.publish.topics import Topics
from p1daemon.reading.meter import MeterReading
from p1daemon.views.homeassistant import templates
from p1daemon.views.homeassistant.ids import entity_slug

# (key, name, path in the capacity document)
_POWER = (
    ("capacity_projected", "Quarter-hour projected", ("quarter", "projected_kw")),
    ("capacity_quarter_average", "Quarter-hour average so far", ("quarter", "average_kw")),
    ("capacity_peak", "Capacity peak this month", ("month", "peak_kw")),
    ("capacity_rolling_average", "Capacity 12-month average", ("rolling", "average_kw")),
)


def capacity_configs(
    reading: MeterReading,
    ha_prefix: str,
    topics: Topics,
    device_id: str,
    device: dict[str, Any],
    base: dict[str, Any],
) -> list[tuple[str, dict[str, Any], str]]:
    """(discovery topic, config, unique id) for a meter sending capacity data, else []."""
    if reading.capacity is None:
        return []
    out: list[tuple[str, dict[str, Any], str]] = []
    state_topic = f"{topics.prefix}/{reading.meter}/capacity"
    for key, name, path in _POWER:
        unique_id = f"{device_id}_{key}"
        config = {
            **base,
            "name": name,
            "unique_id": unique_id,
            "default_entity_id": f"sensor.{entity_slug('p1', reading.meter, key)}",
            "state_topic": state_topic,
            "value_template": templates.number(path),
            "device_class": "power",
            "state_class": "measurement",
            "unit_of_measurement": "kW",
            "suggested_display_precision": 3,
            "device": device,
        }
        out.append((f"{ha_prefix}/sensor/{unique_id}/config", config, unique_id))
    unique_id = f"{device_id}_capacity_warning"
    slug = entity_slug("p1", reading.meter, "capacity_warning")
    config = {
        **base,
        "name": "Capacity peak warning",
        "unique_id": unique_id,
        "default_entity_id": f"binary_sensor.{slug}",
        "state_topic": f"{topics.prefix}/{reading.meter}/alert/capacity",
        "value_template": "{{ 'ON' if value_json['active'] else 'OFF' }}",
        "device_class": "problem",
        "device": device,
    }
    out.append((f"{ha_prefix}/binary_sensor/{unique_id}/config", config, unique_id))
    return out
