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
