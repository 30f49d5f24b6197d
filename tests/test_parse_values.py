"""Focused checks of value decoding rules that the fixtures do not reach on their own."""

from __future__ import annotations

from p1daemon.frame.events import Frame
from p1daemon.parse.telegram import parse_telegram
from p1daemon.parse.values import to_float


def _frame(*lines: str) -> Frame:
    body = "/TST5\\test\r\n\r\n" + "".join(line + "\r\n" for line in lines) + "!"
    return Frame(body.encode("ascii"), None, False)


def test_python_only_float_spellings_are_no_value() -> None:
    assert to_float("nan") is None
    assert to_float("inf") is None
    assert to_float("-Infinity") is None
    assert to_float("000123.456") == 123.456


def test_nan_register_in_an_unchecked_telegram_is_null_not_nan() -> None:
    reading = parse_telegram(_frame("1-0:1.8.1(nan*kWh)", "1-0:1.8.2(000010.500*kWh)"))
    assert reading.import_.t1_kwh is None
    assert reading.import_.t2_kwh == 10.5
    assert "NaN" not in reading.model_dump_json()


def test_luxembourg_logical_device_name_is_the_equipment_id() -> None:
    name = b"SAG1030700025741".hex().upper()
    reading = parse_telegram(_frame(f"0-0:42.0.0({name})", "1-0:1.8.0(000025.653*kWh)"))
    assert reading.equipment_id == "SAG1030700025741"
    assert "0-0:42.0.0" not in reading.other


def test_equipment_id_prefers_96_1_1_over_the_logical_device_name() -> None:
    ident = b"E0000000000000001".hex()
    name = b"SAG1".hex()
    reading = parse_telegram(_frame(f"0-0:42.0.0({name})", f"0-0:96.1.1({ident})"))
    assert reading.equipment_id == "E0000000000000001"


def test_an_unreadable_tariff_makes_the_total_unknown_not_smaller() -> None:
    reading = parse_telegram(_frame("1-0:2.8.1(nan*kWh)", "1-0:2.8.2(000010.500*kWh)"))
    assert reading.export.t1_kwh is None
    assert reading.export.total_kwh is None


def test_no_register_of_any_kind_can_be_nan() -> None:
    reading = parse_telegram(
        _frame(
            "1-0:1.8.0(nan*kWh)",
            "1-0:2.8.0(inf*Wh)",
            "1-0:1.7.0(nan*kW)",
            "1-0:21.7.0(nan*W)",
            "1-0:32.7.0(nan*V)",
            "1-0:31.7.0(inf*A)",
            "1-0:1.4.0(nan*kW)",
        )
    )
    assert reading.import_.total_kwh is None
    assert reading.export.total_kwh is None
    assert reading.import_.power_kw is None
    assert reading.import_.l1_kw is None
    assert reading.voltage.l1_v is None
    assert reading.current.l1_a is None
    assert reading.capacity is None  # an unreadable demand is no capacity data at all


# -- issue 9: units are compared case-insensitively and scaled, unknown ones kept ----------

import pytest  # noqa: E402


@pytest.mark.parametrize(
    ("value", "kwh"),
    [
        ("004321007*wh", 4321.007),
        ("004321007*WH", 4321.007),
        ("004321007*Wh", 4321.007),
        ("004321.007*kwh", 4321.007),
        ("004321.007*KWH", 4321.007),
        ("004321.007*kWh", 4321.007),
        ("0004.321007*MWh", 4321.007),
        # A milliwatt-hour register does not exist: a lower-case m, once case is ignored, is mega.
        ("0004.321007*mWh", 4321.007),
        ("0004.321007*mwh", 4321.007),
        ("0.004321007*GWh", 4321.007),
        ("0.004321007*gwh", 4321.007),
        ("004321.007", 4321.007),  # no unit: the register's own unit, kWh
    ],
)
def test_energy_units_are_scaled_to_kwh(value: str, kwh: float) -> None:
    reading = parse_telegram(_frame(f"1-0:1.8.1({value})", f"1-0:2.8.2({value})"))
    assert reading.import_.t1_kwh == kwh
    assert reading.import_.total_kwh == kwh
    assert reading.export.t2_kwh == kwh
    assert reading.other == {}


@pytest.mark.parametrize(
    ("value", "kw"),
    [
        ("01234*w", 1.234),
        ("01234*W", 1.234),
        ("01.234*kw", 1.234),
        ("01.234*KW", 1.234),
        ("0.001234*MW", 1.234),
        ("0.001234*mw", 1.234),
        ("0.000001234*GW", 1.234),
    ],
)
def test_power_units_are_scaled_to_kw(value: str, kw: float) -> None:
    reading = parse_telegram(
        _frame(f"1-0:1.7.0({value})", f"1-0:22.7.0({value})", f"1-0:1.4.0({value})")
    )
    assert reading.import_.power_kw == kw
    assert reading.export.l1_kw == kw
    assert reading.capacity is not None and reading.capacity.average_demand_kw == kw


@pytest.mark.parametrize("unit", ["kvarh", "m3", "GJ", "kW", "Wx", "", "k Wh"])
def test_an_energy_register_in_an_unknown_unit_is_kept_in_other_not_counted(unit: str) -> None:
    reading = parse_telegram(_frame(f"1-0:1.8.1(004321.007*{unit})", "1-0:1.8.2(000001.000*kWh)"))
    assert reading.import_.t1_kwh is None
    assert reading.import_.t2_kwh == 1.0
    # One tariff in an unknown unit makes the total unknown, not smaller.
    assert reading.import_.total_kwh is None
    assert reading.other == {"1-0:1.8.1": f"(004321.007*{unit})"}


@pytest.mark.parametrize("unit", ["kWh", "V", "m3", "foo"])
def test_a_power_register_in_an_unknown_unit_is_kept_in_other(unit: str) -> None:
    peak = "1-0:1.6.0(240101120000W)(01.5*kw)"
    reading = parse_telegram(_frame(f"1-0:2.7.0(01.234*{unit})", peak))
    assert reading.export.power_kw is None
    assert reading.other == {"1-0:2.7.0": f"(01.234*{unit})"}
    assert reading.capacity is not None and reading.capacity.month_max_kw == 1.5


def test_a_total_register_in_an_unknown_unit_is_kept_in_other() -> None:
    reading = parse_telegram(_frame("1-0:1.8.0(000123*m3)", "1-0:1.8.1(000001.000*kWh)"))
    assert reading.import_.total_kwh is None
    assert reading.import_.t1_kwh == 1.0
    assert reading.other == {"1-0:1.8.0": "(000123*m3)"}
