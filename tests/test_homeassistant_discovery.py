"""Home Assistant discovery configs, checked against Home Assistant's own rules.

The rules live in `ha_rules.py` (shared with the tests that read the configs off a real
broker): `HA_RULES` restates, independently of p1daemon.views.homeassistant.units, what Home
Assistant core checks, and value templates are rendered in Jinja2's immutable sandbox
against the JSON the daemon publishes on `latest`, read the way Home Assistant's MQTT
sensor reads it.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import OWN_FIXTURES, SHARED_FIXTURES, require_shared_fixtures
from ha_rules import HaSensor, validate

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.publish.payload import compact_json as encode
from p1daemon.publish.topics import Topics
from p1daemon.reading.meter import MeterReading, Role
from p1daemon.reading.model import Reading
from p1daemon.views.homeassistant.announcer import DiscoveryAnnouncer
from p1daemon.views.homeassistant.discovery import DiscoveryMessage, discovery_messages
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

SETTINGS = HomeAssistantSettings(discovery=True)
TOPICS = Topics("p1")

# -- readings ---------------------------------------------------------------------------------


def parse_first(path: Path) -> Reading:
    events = ReadingStream(TelegramDecoder()).feed(path.read_bytes())
    events += ReadingStream(TelegramDecoder(check_crc=False)).feed(path.read_bytes())
    readings = [e for e in events if isinstance(e, Reading)]
    assert readings, path
    return readings[0]


def as_meter(
    reading: Reading, meter: str, role: Role = "primary", ean: str | None = None
) -> MeterReading:
    return MeterReading.from_reading(
        reading, meter=meter, role=role, ean=ean, received_at=datetime.now(UTC)
    )


def latest_json(reading: MeterReading) -> str:
    """The `latest` payload exactly as the MQTT sink serialises it."""
    return reading.model_dump_json()


def configs_by_name(messages: list[DiscoveryMessage]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for message in messages:
        assert message.payload is not None
        out[(message.payload["device"]["name"], message.payload["name"])] = message.payload
    return out


def check_states(reading: MeterReading, messages: list[DiscoveryMessage]) -> None:
    """Each entity's template yields the reading's own value (or nothing for a null)."""
    payload = latest_json(reading)
    doc = json.loads(payload)
    for message in messages:
        assert message.payload is not None
        if not message.payload["state_topic"].endswith("/latest"):
            continue  # the capacity entities: tests/test_capacity_ha.py
        sensor = HaSensor(message.payload)
        sensor.receive(payload)
        assert sensor.state is not None, (message.unique_id, "renders nothing for a sent value")
    assert doc  # the payload parsed


# -- the demo meters --------------------------------------------------------------------------


def demo() -> tuple[MeterReading, MeterReading]:
    house = parse_first(OWN_FIXTURES / "demo" / "house.txt")
    carport = parse_first(OWN_FIXTURES / "demo" / "carport.txt")
    return (
        as_meter(house, "house", "primary", "871687400000000001"),
        as_meter(carport, "carport", "secondary", "871687400000000002"),
    )


def test_demo_meters_are_valid_and_one_device_each() -> None:
    house, carport = demo()
    house_msgs = discovery_messages(house, SETTINGS, TOPICS)
    carport_msgs = discovery_messages(carport, SETTINGS, TOPICS)
    validate(house_msgs + carport_msgs)
    check_states(house, house_msgs)
    check_states(carport, carport_msgs)

    devices = {
        tuple(m.payload["device"]["identifiers"]): m.payload["device"]
        for m in house_msgs + carport_msgs
        if m.payload is not None
    }
    meters = [d for d in devices.values() if "via_device" not in d]
    assert sorted(d["name"] for d in meters) == ["carport (secondary)", "house (primary)"]
    house_device = next(d for d in meters if d["name"] == "house (primary)")
    assert house_device["manufacturer"] == "PDX"
    assert house_device["sw_version"] == "DSMR 5.0"
    assert "p1d_eq_P1DHOUSE00000001_p1d_ean_871687400000000001" in house_device["identifiers"]
    assert any("871687400000000001" in i for i in house_device["identifiers"])
    gas = [d for d in devices.values() if "via_device" in d]
    assert len(gas) == 1 and gas[0]["via_device"] in house_device["identifiers"]

    house_by = configs_by_name(house_msgs)
    energy = house_by[("house (primary)", "Energy import T1")]
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
        "energy",
        "total_increasing",
        "kWh",
    )
    export_power = house_by[("house (primary)", "Power export L2")]
    assert (export_power["device_class"], export_power["state_class"]) == ("power", "measurement")
    gas_value = next(
        c
        for (dev, _), c in house_by.items()
        if "gas" in dev and "device_class" in c and c["device_class"] == "gas"
    )
    assert gas_value["unit_of_measurement"] == "m\u00b3"
    assert gas_value["state_class"] == "total_increasing"

    carport_by = configs_by_name(carport_msgs)
    names = {name for _, name in carport_by}
    # Single phase: L1 only; export registers are sent (as zeros) and so are announced.
    assert "Power import L1" in names and "Power import L2" not in names
    assert "Voltage L2" not in names and "Energy export T1" in names


def test_entities_follow_what_the_meter_sends() -> None:
    house, _ = demo()
    names = {name for _, name in configs_by_name(discovery_messages(house, SETTINGS, TOPICS))}
    assert {"Energy import T1", "Energy import T2", "Energy import total"} <= names
    assert {"Energy export T1", "Energy export T2", "Energy export total"} <= names
    assert not {"Energy import T3", "Energy import T4"} & names  # never sent, never announced
    assert {"Tariff", "Power failures", "Long power failures", "Voltage L3", "Current L1"} <= names


def test_values_and_nulls_as_home_assistant_would_store_them() -> None:
    house, _ = demo()
    messages = discovery_messages(house, SETTINGS, TOPICS)
    by = configs_by_name(messages)
    t2 = HaSensor(by[("house (primary)", "Energy import T2")])
    t2.receive(latest_json(house))
    assert float(t2.state or "nan") == house.import_.t2_kwh

    # The next telegram lacks the register: the state stays, it never becomes 0 or unknown.
    gone = house.model_copy(update={"import_": house.import_.model_copy(update={"t2_kwh": None})})
    t2.receive(latest_json(gone))
    assert t2.history == [t2.history[0]] and float(t2.state or "nan") == house.import_.t2_kwh

    gas = HaSensor(next(c for c in by.values() if c.get("device_class") == "gas"))
    gas.receive(latest_json(house))
    assert float(gas.state or "nan") == house.mbus[0].value
    no_gas = house.model_copy(update={"mbus": []})
    gas.receive(latest_json(no_gas))
    assert float(gas.state or "nan") == house.mbus[0].value

    captured = HaSensor(next(c for c in by.values() if c.get("device_class") == "timestamp"))
    captured.receive(latest_json(house))
    captured_at = house.mbus[0].timestamp
    assert captured_at is not None and captured.state == captured_at.isoformat()
    captured.receive(latest_json(no_gas))
    assert captured.state is None  # unknown, not a bogus time


def test_tariff_labels_name_the_entities_not_the_ids() -> None:
    house, _ = demo()
    plain = discovery_messages(house, SETTINGS, TOPICS)
    labelled = discovery_messages(
        house, SETTINGS, TOPICS, tariff_labels={"t1": "low", "t2": "normal"}
    )
    assert [m.unique_id for m in plain] == [m.unique_id for m in labelled]
    names = {m.payload["name"] for m in labelled if m.payload is not None}
    assert "Energy import T1 (low)" in names and "Energy export T2 (normal)" in names


def test_unique_ids_survive_restart_and_meter_replacement() -> None:
    house, _ = demo()
    first = {m.unique_id for m in discovery_messages(house, SETTINGS, TOPICS)}
    again = {m.unique_id for m in discovery_messages(house.model_copy(), SETTINGS, TOPICS)}
    assert first == again
    replaced = house.model_copy(update={"equipment_id": "P1DNEWMETER00009", "meter_replaced": True})
    after = discovery_messages(replaced, SETTINGS, TOPICS)
    meter_ids = {
        m.unique_id for m in after if m.payload and "via_device" not in m.payload["device"]
    }
    assert meter_ids <= first  # the metering point keeps its entities
    device = next(
        m.payload["device"] for m in after if m.payload and "via_device" not in m.payload["device"]
    )
    assert "p1d_eq_P1DNEWMETER00009_p1d_ean_871687400000000001" in device["identifiers"]


def test_without_ean_the_ids_come_from_prefix_and_name() -> None:
    house, _ = demo()
    no_ean = house.model_copy(update={"ean": None})
    ids = {m.unique_id for m in discovery_messages(no_ean, SETTINGS, TOPICS)}
    other_prefix = {m.unique_id for m in discovery_messages(no_ean, SETTINGS, Topics("p1/site2"))}
    # M-Bus ids are scoped to the metering point too.
    assert any(i.startswith("p1d_p1_house_") for i in ids)
    assert ids.isdisjoint(other_prefix)  # two daemons on one broker never collide
    site2 = Topics("p1/site2")
    validate(discovery_messages(no_ean, SETTINGS, site2), topics=site2)


def test_options_reach_the_configs() -> None:
    house, _ = demo()
    settings = HomeAssistantSettings(discovery=True, prefix="ha-test", expire_after_s=120)
    messages = discovery_messages(house, settings, TOPICS)
    validate(messages, ha_prefix="ha-test")
    assert all(m.payload and m.payload["expire_after"] == 120 for m in messages)
    assert "expire_after" not in (discovery_messages(house, SETTINGS, TOPICS)[0].payload or {})


def test_settings_reject_bad_prefixes() -> None:
    for bad in ("", "/ha", "ha/", "ha/#", "ha/+/x"):
        with pytest.raises(ValueError):
            HomeAssistantSettings.model_validate({"prefix": bad})
    with pytest.raises(ValueError):
        HomeAssistantSettings.model_validate({"discovery": True, "prefx": "x"})


# -- richer meters ----------------------------------------------------------------------------


def mbus_devices(messages: list[DiscoveryMessage]) -> dict[str, dict[str, Any]]:
    return {
        m.payload["device"]["identifiers"][0]: m.payload
        for m in messages
        if m.payload is not None
        and "via_device" in m.payload["device"]
        and m.payload.get("device_class") != "timestamp"
    }


def test_own_mbus_fixture_heat_gas_water_slave() -> None:
    reading = as_meter(parse_first(OWN_FIXTURES / "mbus" / "heat1_gas2_water3_slave4.txt"), "house")
    messages = discovery_messages(reading, SETTINGS, TOPICS)
    validate(messages)
    check_states(reading, messages)
    values = {c["name"]: c for c in mbus_devices(messages).values()}
    assert (values["Heat"]["device_class"], values["Heat"]["unit_of_measurement"]) == (
        "energy",
        "GJ",
    )
    assert (values["Gas"]["device_class"], values["Gas"]["unit_of_measurement"]) == (
        "gas",
        "m\u00b3",
    )
    assert (values["Water"]["device_class"], values["Water"]["unit_of_measurement"]) == (
        "water",
        "m\u00b3",
    )
    assert (values["Energy"]["device_class"], values["Energy"]["unit_of_measurement"]) == (
        "energy",
        "kWh",
    )
    assert all(c["state_class"] == "total_increasing" for c in values.values())


def test_own_belgian_fixture_with_capacity() -> None:
    reading = as_meter(
        parse_first(OWN_FIXTURES / "be" / "emucs_capacity.txt"), "home", ean="541448800000000001"
    )
    messages = discovery_messages(reading, SETTINGS, TOPICS)
    validate(messages)
    check_states(reading, messages)
    by = {c["name"]: c for _, c in configs_by_name(messages).items()}
    assert by["Average demand (quarter-hour)"]["device_class"] == "power"
    assert by["Peak demand this month"]["unit_of_measurement"] == "kW"
    assert by["Peak demand this month at"]["device_class"] == "timestamp"
    device = next(c["device"] for c in by.values() if "via_device" not in c["device"])
    assert device["sw_version"] == "DSMR 5.0 (50217)"


SHARED_CASES = {
    "ndokter-dsmr_parser/be_fluvius_v171_gas_water.txt": {"gas", "water", "capacity"},
    "robthree-dsmrparser-net/v5_test_header_4_mbus_gas_heat.txt": {"4-mbus"},
    "nielsbasjes-dsmr-tools/nl_dsmr22_iskra_mt382_1003_gas_ch2_a.txt": {"gas", "dsmr22"},
    "robthree-dsmrparser-net/v2_2_test_header.txt": {"gas", "dsmr22"},
    "ndokter-dsmr_parser/v5_warmtelink_heat_unpadded_crc.txt": {"heat"},
}


@pytest.mark.parametrize("name", sorted(SHARED_CASES))
def test_real_captures(name: str) -> None:
    require_shared_fixtures()
    reading = as_meter(parse_first(SHARED_FIXTURES / name), "meter")
    messages = discovery_messages(reading, SETTINGS, TOPICS)
    validate(messages)
    check_states(reading, messages)
    tags = SHARED_CASES[name]
    classes = Counter(m.payload.get("device_class") for m in messages if m.payload)
    mbus = mbus_devices(messages)
    if "gas" in tags:
        assert classes["gas"] == 1
    if "water" in tags:
        assert classes["water"] == 1
    if "capacity" in tags:
        assert any(m.unique_id.endswith("_capacity_average") for m in messages)
    if "heat" in tags:
        # No electricity registers: no meter device, so the heat meter stands alone.
        heat = [
            m.payload for m in messages if m.payload and m.payload.get("device_class") == "energy"
        ]
        assert [c["unit_of_measurement"] for c in heat] == ["GJ"]
        assert all("via_device" not in c["device"] for c in heat)
    if "dsmr22" in tags:
        assert classes["voltage"] == 0  # DSMR 2.2 sends no voltages: none announced
    if "4-mbus" in tags:
        # Device types 303/909/808/101 are no known medium: no device class, own unit.
        assert len(mbus) == 4
        assert all("device_class" not in c for c in mbus.values())
        assert sorted(c["unit_of_measurement"] for c in mbus.values()) == [
            "MJ", "kWh", "m\u00b3", "m\u00b3"
        ]  # fmt: skip
        assert len({c["device"]["via_device"] for c in mbus.values()}) == 1


# -- announcing ---------------------------------------------------------------------------------


def test_announcer_first_reading_changes_and_ha_restart() -> None:
    house, carport = demo()
    announcer = DiscoveryAnnouncer(SETTINGS, TOPICS)
    first = announcer.on_reading(house)
    assert {m.unique_id for m in first} == {
        m.unique_id for m in discovery_messages(house, SETTINGS, TOPICS)
    }
    assert announcer.on_reading(house) == []  # nothing changed: nothing to publish
    assert announcer.on_reading(house.model_copy(update={"received_at": datetime.now(UTC)})) == []
    second = announcer.on_reading(carport)
    assert second and all("carport" in m.payload["device"]["name"] for m in second if m.payload)

    # A register appears: only its configs go out.
    with_t3 = house.model_copy(
        update={"import_": house.import_.model_copy(update={"t3_kwh": 12.5})}
    )
    added = announcer.on_reading(with_t3)
    assert [m.payload["name"] for m in added if m.payload] == ["Energy import T3"]
    # It disappears again: its entity is kept (no deletion, nothing to publish).
    assert announcer.on_reading(house) == []

    everything = announcer.all_messages()
    assert len(everything) == len(first) + len(second) + 1
    assert announcer.on_ha_status(b"online") == everything
    assert announcer.on_ha_status(b"offline") == []
    assert announcer.on_connected() == everything
    assert announcer.ha_status_topic == "homeassistant/status"
    validate(everything)


def test_announcer_meter_replacement_updates_every_device_block() -> None:
    house, _ = demo()
    announcer = DiscoveryAnnouncer(SETTINGS, TOPICS)
    with_t3 = house.model_copy(update={"import_": house.import_.model_copy(update={"t3_kwh": 1.0})})
    announcer.on_reading(with_t3)
    replaced = house.model_copy(
        update={"equipment_id": "P1DNEWMETER00009", "dsmr_version": "5.5", "version_code": "55"}
    )
    updated = announcer.on_reading(replaced)
    meter_configs = [m for m in updated if m.payload and "via_device" not in m.payload["device"]]
    # Every meter entity, including T3 which this reading lacks, carries the new device block.
    assert any(m.payload and m.payload["name"] == "Energy import T3" for m in meter_configs)
    assert all(m.payload and m.payload["device"]["sw_version"] == "DSMR 5.5" for m in meter_configs)
    kept = [
        m for m in announcer.all_messages() if m.payload and "via_device" not in m.payload["device"]
    ]
    assert all(
        m.payload
        and "p1d_eq_P1DNEWMETER00009_p1d_ean_871687400000000001"
        in m.payload["device"]["identifiers"]
        for m in kept
    )


def test_announcer_is_silent_when_discovery_is_off() -> None:
    house, _ = demo()
    announcer = DiscoveryAnnouncer(HomeAssistantSettings(), TOPICS)
    assert announcer.on_reading(house) == []
    assert announcer.on_ha_status("online") == []
    assert announcer.on_connected() == []


def test_encode_keeps_the_cubic_metre() -> None:
    assert "m³".encode() in encode({"unit_of_measurement": "m\u00b3"})


def test_odd_equipment_ids_stay_safe() -> None:
    house, _ = demo()
    odd_gas = house.mbus[0].model_copy(update={"equipment_id": 'G\'1 "x"{% raw %}/+#'})
    odd = house.model_copy(update={"equipment_id": "ABC 123/+#", "mbus": [odd_gas]})
    messages = discovery_messages(odd, SETTINGS, TOPICS)
    validate(messages)
    check_states(odd, messages)
    again = discovery_messages(
        odd.model_copy(update={"equipment_id": "ABC_123___"}), SETTINGS, TOPICS
    )
    device_ids = {
        i for m in messages + again if m.payload for i in m.payload["device"]["identifiers"]
    }
    assert len([i for i in device_ids if i.startswith("p1d_eq_ABC")]) == 2  # no collision


@pytest.mark.parametrize(
    "change",
    [
        {"state_class": "measurement"},  # energy must be total / total_increasing
        {"unit_of_measurement": "m3"},  # not Home Assistant's cubic metre
        {"device_class": "gas"},  # gas in kWh
        {"device_class": "energy_meter"},  # no such class
        {"entity_category": "config"},  # sensors cannot be config entities
        {"unique_id": "p1d bad id"},
        {"default_entity_id": "sensor.P1_House"},
        {"frobnicate": True},  # unknown key: a typo Home Assistant would silently drop
        {"device": {"identifiers": ["x"], "name": "x", "via_device": "nobody"}},
    ],
)
def test_the_validator_rejects_what_home_assistant_rejects(change: dict[str, Any]) -> None:
    """The rules above have teeth: each bad edit of a good config fails validation."""
    house, _ = demo()
    good = discovery_messages(house, SETTINGS, TOPICS)[0]
    assert good.payload is not None
    bad = DiscoveryMessage(good.topic, {**good.payload, **change}, good.unique_id)
    with pytest.raises(AssertionError):
        validate([bad])


# -- one device per metering point, whatever the meters report (issue 9 item 15) --------------


def meter_device_blocks(messages: list[DiscoveryMessage]) -> list[dict[str, Any]]:
    return [
        m.payload["device"]
        for m in messages
        if m.payload and "via_device" not in m.payload["device"]
    ]


def test_two_metering_points_with_the_same_equipment_id_stay_two_devices() -> None:
    house, carport = demo()
    twin = carport.model_copy(update={"equipment_id": house.equipment_id})
    house_msgs = discovery_messages(house, SETTINGS, TOPICS)
    twin_msgs = discovery_messages(twin, SETTINGS, TOPICS)
    validate(house_msgs + twin_msgs)
    house_ids = {i for d in meter_device_blocks(house_msgs) for i in d["identifiers"]}
    twin_ids = {i for d in meter_device_blocks(twin_msgs) for i in d["identifiers"]}
    # Home Assistant merges configs that share any identifier into one device.
    assert not house_ids & twin_ids
    gas_ids = {
        i
        for m in house_msgs
        if m.payload and "via_device" in m.payload["device"]
        for i in m.payload["device"]["identifiers"]
    }
    assert not gas_ids & twin_ids


def test_scoping_keeps_the_unique_ids_of_existing_users() -> None:
    """unique_ids never contained the equipment id, so they do not move; only the second
    device identifier does (the first, the EAN one, keeps the device in Home Assistant)."""
    house, _ = demo()
    messages = discovery_messages(house, SETTINGS, TOPICS)
    ids = {m.unique_id for m in messages}
    assert "p1d_ean_871687400000000001_imp_t1" in ids
    (device,) = {tuple(d["identifiers"]) for d in meter_device_blocks(messages)}
    assert device[0] == "p1d_ean_871687400000000001"
    assert device[1] == "p1d_eq_P1DHOUSE00000001_p1d_ean_871687400000000001"


# -- manufacturer and model (issue 9 item 17) --------------------------------------------------


@pytest.mark.parametrize(
    ("header", "manufacturer", "model"),
    [
        ("ISk5\\2MT382-1000", "Iskraemeco", "MT382-1000"),
        ("ISK5\\2M550T-1012", "Iskraemeco", "M550T-1012"),
        ("KFM5KAIFA-METER", "Kaifa", "KAIFA-METER"),
        ("XMX5LGBBFG1009325446", "Landis+Gyr", "LGBBFG1009325446"),
        ("XMX5XMXABCE100103855", "Xemex", "XMXABCE100103855"),
        ("KMP5 ZABF001587315111", "Kamstrup", "ZABF001587315111"),
        ("KAM5", "Kamstrup", "KAM5"),
        ("SAG5SAG-METER", "Sagemcom", "SAG-METER"),
        ("Ene5\\T210-D ESMR5.0", "Sagemcom", "T210-D ESMR5.0"),
        ("Ene5\\T211 ESMR 5.0", "Sagemcom", "T211 ESMR 5.0"),
        ("Ene5\\XS210 ESMR 5.0", "Landis+Gyr", "XS210 ESMR 5.0"),
        ("Ene5\\X999", "Ene", "X999"),  # a grid operator's flag, maker unknown: as sent
        ("FLU5\\253769484_A", "FLU", "253769484_A"),
        ("ESY5Q3DB1024 V3.04", "EasyMeter", "Q3DB1024 V3.04"),
        ("GRE5\\12341234_A", "GRE", "12341234_A"),
        ("PDX5\\253P1DHOUSE01", "PDX", "253P1DHOUSE01"),
    ],
)
def test_device_shows_the_makers_name_and_a_readable_model(
    header: str, manufacturer: str, model: str
) -> None:
    house, _ = demo()
    reading = house.model_copy(update={"header": header, "manufacturer": header[:3]})
    (device,) = {
        json.dumps(d, sort_keys=True)
        for d in meter_device_blocks(discovery_messages(reading, SETTINGS, TOPICS))
    }
    block = json.loads(device)
    assert (block["manufacturer"], block["model"]) == (manufacturer, model)


def test_device_of_a_header_without_a_flag() -> None:
    house, _ = demo()
    reading = house.model_copy(update={"header": "NWA-WARMTELINK", "manufacturer": "NWA"})
    (block,) = meter_device_blocks(discovery_messages(reading, SETTINGS, TOPICS))[:1]
    assert block["manufacturer"] == "NWA" and block["model"] == "NWA-WARMTELINK"
