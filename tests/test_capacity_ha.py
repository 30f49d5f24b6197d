"""Home Assistant entities of the capacity watch: on the meter's device, valid configs,
templates that render the capacity document's values (and the warning's state)."""

from __future__ import annotations

from ha_rules import HaSensor, render, validate
from test_capacity import ZONE, stream

from p1daemon.publish.topics import Topics
from p1daemon.views.capacity.processor import CapacityProcessor, CapacitySpec
from p1daemon.views.homeassistant.discovery import discovery_messages, meter_device_id
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

TOPICS = Topics("p1")
SETTINGS = HomeAssistantSettings(discovery=True)


def test_capacity_entities_on_the_meter_device_render_the_capacity_document() -> None:
    items = stream()
    reading = next(
        r for r in items if r.timestamp and r.timestamp.strftime("%H:%M:%S") == "23:50:30"
    )
    messages = discovery_messages(reading, SETTINGS, TOPICS)
    validate(messages)
    device = meter_device_id(reading, "p1")
    capacity = {m.unique_id: m.payload for m in messages if "capacity" in m.payload["state_topic"]}
    assert set(capacity) == {
        f"{device}_capacity_projected",
        f"{device}_capacity_quarter_average",
        f"{device}_capacity_peak",
        f"{device}_capacity_rolling_average",
        f"{device}_capacity_warning",
    }
    own_device = next(m.payload["device"] for m in messages if m.unique_id.endswith("imp_power"))
    for config in capacity.values():
        assert config["device"] == own_device
    # feed the processor up to 23:50:30, then render what it published
    processor = CapacityProcessor([CapacitySpec("house", None)], ZONE, "p1")
    payloads: dict[str, bytes] = {}
    for r in items:
        for doc in processor.on_reading(r, r.received_at):
            payloads[doc.topic] = doc.payload
        if r is reading:
            break
    state = payloads["p1/house/capacity"].decode()
    # average so far, the meter's 1.4.0: (150 + 3 x 20) Wh over 330 s = 2.290 kW (whole W)
    expected = {"capacity_projected": 5.4, "capacity_peak": 3.1, "capacity_quarter_average": 2.29}
    for key, value in expected.items():
        sensor = HaSensor(capacity[f"{device}_{key}"])
        sensor.receive(state)
        assert sensor.state is not None and float(sensor.state) == value, key
    rolling = HaSensor(capacity[f"{device}_capacity_rolling_average"])
    rolling.receive(state)
    assert rolling.state is not None and abs(float(rolling.state) - 33.9 / 11) < 1e-3
    warning = capacity[f"{device}_capacity_warning"]
    assert warning["state_topic"] == "p1/house/alert/capacity"
    assert render(warning["value_template"], payloads["p1/house/alert/capacity"].decode()) == "ON"


def test_no_capacity_entities_for_a_meter_without_capacity_data() -> None:
    reading = stream()[0].model_copy(update={"capacity": None})
    messages = discovery_messages(reading, SETTINGS, TOPICS)
    assert messages and not any("capacity" in m.unique_id for m in messages)
