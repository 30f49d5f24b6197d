"""The project's own fixtures, read as a meter's stream, against the reading contract.

Expected values are the ones written into fixtures/generate.py, restated here by hand:
they are never taken from the parser's output. Documents are checked as JSON (what an
MQTT subscriber receives), so field names such as "import" are checked too.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from datetime import datetime, timedelta
from itertools import pairwise
from types import ModuleType
from typing import Any

import pytest
import reading_oracle
from conftest import OWN_FIXTURES

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.model import Reading

Doc = dict[str, Any]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "p1_fixture_generator", OWN_FIXTURES / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


def index_rows() -> list[dict[str, str]]:
    with (OWN_FIXTURES / "index.tsv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def decoder_options(text: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in text.split():
        name, _, value = item.partition("=")
        options[name] = None if value == "none" else bytes.fromhex(value)
    return options


def read(name: str, **options: Any) -> tuple[list[Reading], list[Dropped]]:
    stream = ReadingStream(TelegramDecoder(**options))
    events = stream.feed((OWN_FIXTURES / name).read_bytes()) + stream.flush()
    return (
        [e for e in events if isinstance(e, Reading)],
        [e for e in events if isinstance(e, Dropped)],
    )


def docs(name: str, **options: Any) -> list[Doc]:
    found, drops = read(name, **options)
    assert drops == [], [d.describe() for d in drops]
    return [json.loads(r.model_dump_json()) for r in found]


def only(name: str, **options: Any) -> Doc:
    [doc] = docs(name, **options)
    return doc


def assert_matches(actual: Any, expected: Any, path: str = "") -> None:
    """Every key in `expected` has exactly that value (dicts recurse, lists match in full)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        for key, value in expected.items():
            assert key in actual, f"{path}/{key} missing"
            assert_matches(actual[key], value, f"{path}/{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_matches(a, e, f"{path}[{i}]")
    else:
        assert type(actual) is type(expected) and actual == expected, (path, actual, expected)


# -- the fixture files themselves ------------------------------------------------------


def test_committed_fixtures_are_exactly_what_the_generator_writes() -> None:
    generated = load_generator().build()
    for name, content in generated.items():
        path = OWN_FIXTURES / name
        assert path.is_file(), f"{name} not committed: run fixtures/generate.py"
        assert path.read_bytes() == content, f"{name} differs: run fixtures/generate.py"
    on_disk = {
        str(p.relative_to(OWN_FIXTURES))
        for p in OWN_FIXTURES.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert on_disk - set(generated) == {"README.md", "generate.py"}


def test_every_text_fixture_uses_crlf_only() -> None:
    for row in index_rows():
        if row["path"].endswith(".txt"):
            data = (OWN_FIXTURES / row["path"]).read_bytes()
            if row["path"] == "stream/line_noise.txt":
                continue  # the noise itself has stray line feeds
            assert data.count(b"\n") == data.count(b"\r\n") > 0, row["path"]


@pytest.mark.parametrize("row", index_rows(), ids=lambda row: row["path"])
def test_each_fixture_gives_its_valid_frames_and_drop_reasons(row: dict[str, str]) -> None:
    found, drops = read(row["path"], **decoder_options(row["decoder"]))
    assert len(found) == int(row["valid_frames"])
    expected_drops = row["drops"].split(",") if row["drops"] else []
    assert [d.reason.value for d in drops] == expected_drops


# -- readings: the Netherlands ---------------------------------------------------------

DSMR50: Doc = {
    "equipment_id": "P1D0000000000001",
    "header": "PDX5\\2P1D-T3-EXPORT",
    "dsmr_version": "5.0",
    "timestamp": "2024-07-16T12:34:56+02:00",
    "tariff": 2,
    "import": {
        "t1_kwh": 4321.007,
        "t2_kwh": 3210.096,
        "total_kwh": 7531.103,  # 4321.007 + 3210.096 is 7531.102999999999 in binary floats
        "power_kw": 0.0,
        "l1_kw": 0.0,
        "l2_kw": 0.412,
        "l3_kw": 0.196,
    },
    "export": {
        "t1_kwh": 812.3,
        "t2_kwh": 2101.104,
        "total_kwh": 2913.404,
        "power_kw": 2.318,
        "l1_kw": 2.926,
        "l2_kw": 0.0,
        "l3_kw": 0.0,
    },
    "voltage": {"l1_v": 231.4, "l2_v": 229.8, "l3_v": 232.1},
    "current": {"l1_a": 14.0, "l2_a": 2.0, "l3_a": 1.0},
    "voltage_sags": {"l1": 3, "l2": 1, "l3": 0},
    "voltage_swells": {"l1": 0, "l2": 2, "l3": 0},
    "power_failures": {"short": 7, "long": 2, "log": []},
    "message": None,
    "mbus": [
        {
            "channel": 1,
            "device_type": 3,
            "kind": "gas",
            "equipment_id": "G000000000000001",
            "value": 1234.567,
            "unit": "m3",
            "timestamp": "2024-07-16T12:30:00+02:00",
        }
    ],
    "capacity": None,
    "other": {},
}

CONTRACT_KEYS = {
    "equipment_id",
    "header",
    "dsmr_version",
    "timestamp",
    "tariff",
    "import",
    "export",
    "voltage",
    "current",
    "power_failures",
    "message",
    "mbus",
    "capacity",
    "other",
}
DIRECTION_KEYS = {"t1_kwh", "t2_kwh", "total_kwh", "power_kw", "l1_kw", "l2_kw", "l3_kw"}


def test_dsmr50_three_phase_with_export() -> None:
    assert_matches(only("nl/dsmr50_three_phase_export.txt"), DSMR50)


def test_contract_field_names() -> None:
    doc = only("nl/dsmr50_three_phase_export.txt")
    assert set(doc) >= CONTRACT_KEYS
    assert "import_" not in doc
    assert set(doc["import"]) >= DIRECTION_KEYS
    assert set(doc["export"]) >= DIRECTION_KEYS
    assert {"l1_v", "l2_v", "l3_v"} <= set(doc["voltage"])
    assert {"l1_a", "l2_a", "l3_a"} <= set(doc["current"])
    assert {"short", "long", "log"} <= set(doc["power_failures"])
    mbus_keys = {"channel", "device_type", "kind", "equipment_id", "value", "unit", "timestamp"}
    assert mbus_keys <= set(doc["mbus"][0])
    capacity = only("be/emucs_capacity.txt")["capacity"]
    assert {"average_demand_kw", "month_max_kw", "month_max_at", "history"} <= set(capacity)
    assert {"month", "at", "max_kw"} <= set(capacity["history"][0])
    log = only("nl/dsmr50_power_failure_log.txt")["power_failures"]["log"]
    assert {"end", "duration_s"} <= set(log[0])


def test_reading_round_trips_through_its_json() -> None:
    """Read back by the former pydantic models (tests/reading_oracle.py), the JSON is the same."""
    [reading], _ = read("nl/dsmr50_three_phase_export.txt")
    text = reading.model_dump_json()
    assert reading_oracle.Reading.model_validate_json(text).model_dump_json() == text


def test_objects_in_any_order_give_the_same_reading() -> None:
    [ordered], _ = read("nl/dsmr50_three_phase_export.txt")
    [reversed_], _ = read("misc/unusual_order.txt")
    assert reversed_ == ordered
    assert_matches(json.loads(reversed_.model_dump_json()), DSMR50)


DSMR42: Doc = {
    "equipment_id": "P1D0000000000042",
    "dsmr_version": "4.2",
    "timestamp": "2024-01-15T08:30:12+01:00",
    "tariff": 1,
    "import": {
        "t1_kwh": 1523.25,
        "t2_kwh": 1830.775,
        "total_kwh": 3354.025,
        "power_kw": 0.734,
        "l1_kw": 0.734,
        "l2_kw": None,
        "l3_kw": None,
    },
    "export": {
        "t1_kwh": 0.0,
        "t2_kwh": 0.0,
        "total_kwh": 0.0,
        "power_kw": 0.0,
        "l1_kw": 0.0,
        "l2_kw": None,
        "l3_kw": None,
    },
    "voltage": {"l1_v": None, "l2_v": None, "l3_v": None},  # DSMR 4.2 sends no voltage
    "current": {"l1_a": 3.0, "l2_a": None, "l3_a": None},
    "power_failures": {"short": 1, "long": 0, "log": []},
    "message": None,
    "mbus": [
        {
            "channel": 1,
            "device_type": 3,
            "kind": "gas",
            "equipment_id": "G000000000000042",
            "value": 842.31,
            "unit": "m3",
            "timestamp": "2024-01-15T08:00:00+01:00",
        }
    ],
    "capacity": None,
    "other": {},
}


def test_dsmr42_single_phase() -> None:
    assert_matches(only("nl/dsmr42_single_phase.txt"), DSMR42)


def test_text_message_and_message_code_are_decoded() -> None:
    doc = only("nl/dsmr42_text_message.txt")
    assert doc["message"] == (
        "Onderhoud gepland 15-08 09:00-11:00 (P1D test), excuses voor het ongemak!"
    )
    assert doc["message_code"] == "20240815"
    assert_matches(doc, {k: v for k, v in DSMR42.items() if k != "message"})


def test_dsmr22_without_crc_and_two_line_gas() -> None:
    expected: Doc = {
        "equipment_id": "P1D0000000000022",
        "dsmr_version": "2.2",
        "timestamp": None,
        "tariff": 1,
        "import": {"t1_kwh": 185.0, "t2_kwh": 84.0, "total_kwh": 269.0, "power_kw": 0.98},
        "export": {"t1_kwh": 13.5, "t2_kwh": 19.0, "total_kwh": 32.5, "power_kw": 0.0},
        "voltage": {"l1_v": None, "l2_v": None, "l3_v": None},
        "breaker_state": 1,
        "mbus": [
            {
                "channel": 1,
                "device_type": 3,
                "kind": "gas",
                "equipment_id": "G000000000000022",
                "value": 512.103,
                "unit": "m3",
                # No S/W flag: Europe/Amsterdam local time, 15 November is winter time.
                "timestamp": "2023-11-15T14:00:00+01:00",
            }
        ],
        "other": {},
    }
    assert_matches(only("nl/dsmr22_gas_24_3_0.txt"), expected)


def test_dsmr30_without_crc() -> None:
    doc = only("nl/dsmr30_no_crc.txt")
    # A DSMR 3.0 telegram declares no version and looks like 2.2; either label is honest.
    assert doc["dsmr_version"] in ("2.2", "3.0")
    expected: Doc = {
        "equipment_id": "P1D0000000000030",
        "tariff": 2,
        "import": {"t1_kwh": 1234.56, "t2_kwh": 987.65, "total_kwh": 2222.21, "power_kw": 1.23},
        "export": {"t1_kwh": 0.0, "t2_kwh": 0.0, "total_kwh": 0.0, "power_kw": 0.0},
        "message": "P1D says: meter test 3.0",
        "limiter": {"value": 16.0, "unit": "A"},
        "mbus": [
            {
                "channel": 1,
                "device_type": 3,
                "kind": "gas",
                "equipment_id": "G000000000000030",
                "value": 1024.772,
                "unit": "m3",
                "timestamp": "2023-07-12T15:00:00+02:00",  # no flag, summer time
            }
        ],
        "other": {},
    }
    assert_matches(doc, expected)


def test_power_failure_log() -> None:
    doc = only("nl/dsmr50_power_failure_log.txt")
    failures = doc["power_failures"]
    assert failures["short"] == 11 and failures["long"] == 3
    assert failures["log"][:2] == [
        {"end": "2024-03-02T09:15:12+01:00", "duration_s": 240},
        {"end": "2023-08-15T17:30:01+02:00", "duration_s": 3725},
    ]
    # The unused slot (000101000001W) is no event time: left out, or kept with end null.
    assert all(event["end"] is None for event in failures["log"][2:])


# -- CRC variants ----------------------------------------------------------------------

SMALL_DSMR5: Doc = {
    "dsmr_version": "5.0",
    "tariff": 1,
    "import": {"t1_kwh": 100.001, "t2_kwh": 200.002, "total_kwh": 300.003},
    "export": {"t1_kwh": 0.0, "t2_kwh": 0.0, "total_kwh": 0.0, "power_kw": 0.0},
}


def test_lowercase_crc_telegram() -> None:
    doc = only("crc/lowercase_crc.txt")
    assert_matches(doc, SMALL_DSMR5)
    assert doc["timestamp"] == "2024-05-23T10:15:01+02:00"
    assert doc["equipment_id"] == "P1D0000000000LC1"


def test_unpadded_crc_telegram() -> None:
    doc = only("crc/unpadded_crc.txt")
    assert_matches(doc, SMALL_DSMR5)
    assert doc["import"]["power_kw"] == 0.203
    assert doc["timestamp"] == "2024-05-23T10:15:00+02:00"


def test_rejected_telegrams_parse_with_crc_checking_off() -> None:
    assert_matches(only("crc/bad_crc.txt", check_crc=False), DSMR42)
    assert_matches(only("crc/missing_crc_dsmr50.txt", check_crc=False), DSMR50)
    belgian = only("crc/missing_crc_belgian.txt", check_crc=False)
    assert belgian["equipment_id"] == "P1DBE00000000001"
    assert belgian["import"]["t2_kwh"] == 1107.058


# -- Belgium, Luxembourg, Sweden, Austria ----------------------------------------------

EMUCS_MESSAGE = ("P1DAEMON TEST MESSAGE 0123456789 abcdefghijklmnopqrstuvwxyz. " * 17)[:1024]


def test_belgian_emucs() -> None:
    assert (OWN_FIXTURES / "be/emucs_capacity.txt").stat().st_size > 3 * 1024
    doc = only("be/emucs_capacity.txt")
    expected: Doc = {
        "equipment_id": "P1DBE00000000001",
        "dsmr_version": "5.0",
        "timestamp": "2024-02-05T19:30:12+01:00",
        "tariff": 1,
        "import": {
            "t1_kwh": 823.412,
            "t2_kwh": 1107.058,
            "total_kwh": 1930.47,
            "power_kw": 0.0,
            "l1_kw": 0.0,
            "l2_kw": 0.0,
            "l3_kw": 0.0,
        },
        "export": {
            "t1_kwh": 312.225,
            "t2_kwh": 98.88,
            "total_kwh": 411.105,
            "power_kw": 0.412,
            "l1_kw": 0.212,
            "l2_kw": 0.1,
            "l3_kw": 0.1,
        },
        "voltage": {"l1_v": 232.9, "l2_v": 233.4, "l3_v": 231.8},
        "current": {"l1_a": 1.02, "l2_a": 0.48, "l3_a": 0.51},
        "breaker_state": 1,
        "limiter": {"value": 999.9, "unit": "kW"},
        "fuse_threshold_a": 999.0,
        "message": EMUCS_MESSAGE,
        "mbus": [
            {
                "channel": 1,
                "device_type": 3,
                "kind": "gas",
                "equipment_id": "G00000000000BE01",
                "value": 1873.421,
                "unit": "m3",
                "timestamp": "2024-02-05T19:00:00+01:00",
                "valve": 1,
            },
            {
                "channel": 2,
                "device_type": 7,
                "kind": "water",
                "equipment_id": "W00000000000BE02",
                "value": 321.654,
                "unit": "m3",
                "timestamp": "2024-02-05T19:00:00+01:00",
            },
        ],
        "other": {},
    }
    assert_matches(doc, expected)
    capacity = doc["capacity"]
    assert capacity["average_demand_kw"] == 1.873
    assert capacity["month_max_kw"] == 4.317
    assert capacity["month_max_at"] == "2024-02-03T18:15:00+01:00"
    history = capacity["history"]
    assert len(history) == 13
    assert history[0] == {
        "month": "2024-02-01T00:00:00+01:00",
        "at": "2024-01-17T18:45:00+01:00",
        "max_kw": 5.102,
    }
    assert history[4] == {
        "month": "2023-10-01T00:00:00+02:00",
        "at": "2023-09-30T20:15:00+02:00",
        "max_kw": 3.455,
    }
    # 632525252525W: no peak was recorded that month; its 00.000 kW is no reading either.
    assert history[10] == {"month": "2023-04-01T00:00:00+02:00", "at": None, "max_kw": None}
    assert history[12] == {
        "month": "2023-02-01T00:00:00+01:00",
        "at": "2023-01-25T18:30:00+01:00",
        "max_kw": 5.871,
    }


LUX_PLAIN: Doc = {
    "dsmr_version": "4.2",
    "timestamp": "2024-08-12T14:30:05+02:00",
    "import": {
        "t1_kwh": None,
        "t2_kwh": None,
        "total_kwh": 12345.678,
        "power_kw": 1.234,
        "l1_kw": 0.712,
        "l2_kw": 0.201,
        "l3_kw": 0.321,
    },
    "export": {"t1_kwh": None, "t2_kwh": None, "total_kwh": 987.654, "power_kw": 0.0},
    "voltage": {"l1_v": 231.0, "l2_v": 229.5, "l3_v": 230.2},
    "limiter": {"value": 69.0, "unit": "kVA"},
    "breaker_state": 1,
    "power_failures": {"short": 12, "long": None, "log": []},
    "mbus": [
        {
            "channel": 1,
            "device_type": 3,
            "kind": "gas",
            "equipment_id": "G00000000000LU01",
            "value": 456.789,
            "unit": "m3",
            "timestamp": "2024-08-12T14:00:00+02:00",
        }
    ],
}


def test_luxembourg_totals() -> None:
    doc = only("lu/smarty_plaintext.txt")
    assert_matches(doc, LUX_PLAIN)
    other = doc["other"]
    assert other["1-0:3.8.0"] == "(000123.456*kvarh)"
    assert other["1-1:31.4.0"] == "(100*A)(-063*A)"
    # The logical device name identifies a Smarty meter: kept, as id or verbatim.
    assert doc["equipment_id"] == "P1DLU00000000001" or (
        other["0-0:42.0.0"] == "(5031444C553030303030303030303031)"
    )


def test_luxembourg_encrypted_frames() -> None:
    first, second = docs(
        "lu/smarty_encrypted.bin", key=bytes.fromhex("70316461656D6F6E2D746573746B6579")
    )
    assert_matches(first, LUX_PLAIN)
    assert second["timestamp"] == "2024-08-12T14:30:15+02:00"
    assert second["import"]["total_kwh"] == 12345.681


def test_swedish_totals_and_signed_current() -> None:
    expected: Doc = {
        "equipment_id": None,
        "dsmr_version": None,
        "timestamp": "2024-01-10T07:15:00+01:00",
        "tariff": None,
        "import": {
            "t1_kwh": None,
            "t2_kwh": None,
            "total_kwh": 17234.512,
            "power_kw": 1.389,
            "l1_kw": 1.402,
            "l2_kw": 0.0,
            "l3_kw": 0.9,
        },
        "export": {
            "t1_kwh": None,
            "t2_kwh": None,
            "total_kwh": 123.004,
            "power_kw": 0.0,
            "l1_kw": 0.0,
            "l2_kw": 0.913,
            "l3_kw": 0.0,
        },
        "voltage": {"l1_v": 229.8, "l2_v": 231.1, "l3_v": 230.4},
        "current": {"l1_a": 6.1, "l2_a": -4.0, "l3_a": 3.9},
        "mbus": [],
        "capacity": None,
    }
    doc = only("se/han_totals.txt")
    assert_matches(doc, expected)
    assert doc["other"]["1-0:3.8.0"] == "(00001234.432*kVArh)"


def test_wh_units_become_kwh_exactly() -> None:
    expected: Doc = {
        "dsmr_version": "5.0",
        "timestamp": "2024-09-20T06:30:15+02:00",
        "import": {
            "t1_kwh": 4000.123,
            "t2_kwh": 3123.333,
            "total_kwh": 7123.456,
            "power_kw": 0.512,
        },
        "export": {"t1_kwh": 0.0, "t2_kwh": 0.789, "total_kwh": 0.789, "power_kw": 0.0},
    }
    assert_matches(only("at/wh_units.txt"), expected)


# -- M-Bus -----------------------------------------------------------------------------


def test_mbus_devices_are_known_by_type_not_channel() -> None:
    doc = only("mbus/heat1_gas2_water3_slave4.txt")
    assert [d["channel"] for d in doc["mbus"]] == [1, 2, 3, 4]
    by_kind = {d["kind"]: d for d in doc["mbus"]}
    assert set(by_kind) == {"heat", "gas", "water", "electricity"}
    assert_matches(
        by_kind,
        {
            "heat": {
                "channel": 1,
                "device_type": 4,
                "equipment_id": "H000000000000001",
                "value": 45.12,
                "unit": "GJ",
                "timestamp": "2024-03-05T12:00:00+01:00",
            },
            "gas": {
                "channel": 2,
                "device_type": 3,
                "equipment_id": "G000000000000002",
                "value": 2345.678,
                "unit": "m3",
                "timestamp": "2024-03-05T12:00:00+01:00",
            },
            "water": {
                "channel": 3,
                "device_type": 7,
                "equipment_id": "W000000000000003",
                "value": 123.456,
                "unit": "m3",
                "timestamp": "2024-03-05T12:05:00+01:00",
            },
            "electricity": {
                "channel": 4,
                "device_type": 2,
                "equipment_id": "E000000000000004",
                "value": 3456.789,
                "unit": "kWh",
                "timestamp": "2024-03-05T12:10:00+01:00",
            },
        },
    )
    # A slave meter's kWh is its own device, never added to the main meter's registers.
    assert doc["import"]["total_kwh"] == 300.003


def test_mbus_placeholders_are_no_reading_but_a_real_zero_is_zero() -> None:
    doc = only("mbus/placeholders.txt")
    assert_matches(
        doc["mbus"],
        [
            {
                "channel": 1,
                "device_type": 3,
                "kind": "gas",
                "equipment_id": None,
                "value": None,
                "unit": None,
                "timestamp": None,
            },
            {
                "channel": 2,
                "device_type": 7,
                "kind": "water",
                "equipment_id": "W000000000000PH2",
                "value": None,
                "unit": None,
                "timestamp": None,
            },
            {
                "channel": 3,
                "device_type": 7,
                "kind": "water",
                "equipment_id": "W000000000000PH3",
                "value": 0.0,
                "unit": "m3",
                "timestamp": "2024-04-12T10:15:00+02:00",
            },
            {
                "channel": 4,
                "device_type": 15,
                "kind": "unknown",
                "equipment_id": "X000000000000PH4",
                "value": 17.0,
                "unit": "m3",
                "timestamp": "2024-04-12T10:00:00+02:00",
            },
        ],
    )


# -- misc ------------------------------------------------------------------------------


def test_unknown_obis_objects_are_kept_verbatim() -> None:
    doc = only("misc/unknown_obis.txt")
    assert doc["other"] == {
        "1-0:14.7.0": "(49.98*Hz)",
        "1-0:13.7.0": "(0.987)",
        "0-0:96.50.68": "(ON)",
        "1-0:99.1.0": "(2)(1-0:1.5.0)(240404160000S)(00.312*kW)(240404161500S)(00.275*kW)",
        "0-0:96.99.8": "()",
    }
    assert_matches(doc, SMALL_DSMR5)


def test_the_hour_that_happens_twice_is_told_apart_by_the_flag() -> None:
    first, second = docs("time/dst_end_ambiguous_hour.txt")
    assert first["timestamp"] == "2023-10-29T02:30:00+02:00"
    assert second["timestamp"] == "2023-10-29T02:30:00+01:00"
    gap = datetime.fromisoformat(second["timestamp"]) - datetime.fromisoformat(first["timestamp"])
    assert gap == timedelta(hours=1)
    assert (first["import"]["t1_kwh"], second["import"]["t1_kwh"]) == (100.001, 100.251)


def test_streams_keep_the_good_telegrams() -> None:
    noisy = docs_allowing_drops("stream/line_noise.txt")
    assert [d["import"]["t1_kwh"] for d in noisy] == [100.001, 100.002, 100.003]
    assert [d["timestamp"][11:19] for d in noisy] == ["09:10:00", "09:11:00", "09:12:00"]
    [complete] = docs_allowing_drops("stream/cut_off_then_complete.txt")
    assert complete["timestamp"] == "2024-07-16T12:34:57+02:00"
    [after_oversized] = docs_allowing_drops("stream/oversized.txt")
    assert_matches(after_oversized, DSMR42)
    big, normal = docs("stream/oversized.txt", max_size=16 * 1024)
    assert_matches(big, {k: DSMR50[k] for k in ("import", "export", "timestamp")})
    assert len(big["other"]) == 300
    assert_matches(normal, DSMR42)


def docs_allowing_drops(name: str) -> list[Doc]:
    found, _ = read(name)
    return [json.loads(r.model_dump_json()) for r in found]


def test_every_timestamp_is_timezone_aware() -> None:
    for row in index_rows():
        found, _ = read(row["path"], **decoder_options(row["decoder"]))
        for reading in found:
            stamps = [reading.timestamp, *(d.timestamp for d in reading.mbus)]
            stamps += [e.end for e in reading.power_failures.log]
            if reading.capacity is not None:
                stamps += [reading.capacity.month_max_at]
                stamps += [t for p in reading.capacity.history for t in (p.month, p.at)]
            for stamp in stamps:
                assert stamp is None or stamp.utcoffset() is not None, row["path"]


def test_tariff_is_an_integer() -> None:
    assert only("nl/dsmr50_three_phase_export.txt")["tariff"] == 2
    assert only("nl/dsmr42_single_phase.txt")["tariff"] == 1


# -- demo captures ---------------------------------------------------------------------


def _check_registers_follow_power(series: list[Doc], direction: str) -> None:
    """Registers count whole Wh of the energy the reported power delivered each second."""
    start = series[0][direction]["total_kwh"]
    energy_wh = 0.0
    for earlier, later in pairwise(series):
        for tariff in ("t1_kwh", "t2_kwh"):
            assert later[direction][tariff] >= earlier[direction][tariff]
        energy_wh += later[direction]["power_kw"] * 1000 / 3600
        advanced_wh = (later[direction]["total_kwh"] - start) * 1000
        assert abs(advanced_wh - energy_wh) < 1.0 + 1e-6, (later["timestamp"], direction)


@pytest.mark.parametrize("name", ["demo/house.txt", "demo/carport.txt"])
def test_demo_capture_is_a_consistent_two_minutes(name: str) -> None:
    series = docs(name)
    assert len(series) == 120
    start = datetime.fromisoformat("2024-06-21T12:29:00+02:00")
    assert [datetime.fromisoformat(d["timestamp"]) for d in series] == [
        start + timedelta(seconds=i) for i in range(120)
    ]
    assert len({d["equipment_id"] for d in series}) == 1
    assert all(d["dsmr_version"] == "5.0" and d["tariff"] == 2 for d in series)
    for direction in ("import", "export"):
        _check_registers_follow_power(series, direction)
    for doc in series:
        assert doc["import"]["power_kw"] == 0.0 or doc["export"]["power_kw"] == 0.0


def test_demo_house_is_three_phase_with_gas_and_midday_export() -> None:
    series = docs("demo/house.txt")
    assert {d["equipment_id"] for d in series} == {"P1DHOUSE00000001"}
    assert all(None not in d["voltage"].values() for d in series)
    exporting = [d for d in series if d["export"]["power_kw"] > 0]
    assert len(exporting) >= 60
    assert series[-1]["export"]["total_kwh"] > series[0]["export"]["total_kwh"]
    gas = [d["mbus"] for d in series]
    assert all(len(m) == 1 and m[0]["kind"] == "gas" and m[0]["channel"] == 1 for m in gas)
    values = [m[0]["value"] for m in gas]
    assert values == sorted(values) and values[0] == 3271.114 and values[-1] == 3271.126


def test_demo_carport_imports_only_while_charging() -> None:
    series = docs("demo/carport.txt")
    assert {d["equipment_id"] for d in series} == {"P1DCARPORT000002"}
    assert all(d["voltage"]["l2_v"] is None and d["voltage"]["l1_v"] for d in series)
    assert all(d["export"]["total_kwh"] == 0.0 and d["export"]["power_kw"] == 0.0 for d in series)
    charging = [d["import"]["power_kw"] > 0 for d in series]
    assert charging == [25 <= i < 105 for i in range(120)]
    for earlier, later in pairwise(series):
        if later["import"]["power_kw"] == 0:
            assert later["import"]["total_kwh"] == earlier["import"]["total_kwh"]
    assert series[-1]["import"]["total_kwh"] - series[0]["import"]["total_kwh"] > 0.15


def test_demo_meters_are_distinct() -> None:
    house = docs("demo/house.txt")[0]
    carport = docs("demo/carport.txt")[0]
    assert house["equipment_id"] != carport["equipment_id"]
    assert house["header"] != carport["header"]
