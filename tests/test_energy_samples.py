"""`sample_of`: one reading's registers as exact decimals, shared by the energy views and
the history (issue 16: the two used to convert every reading each)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import EnergyDirection
from p1daemon.views.energy import samples
from p1daemon.views.energy.samples import sample_of


def reading(
    t1: float | None, t2: float | None = 2.5, export_t1: float | None = 0.0
) -> MeterReading:
    return MeterReading(
        header="/ISK5\\2M550E-1012",
        timestamp=datetime(2026, 12, 2, 6, 0, tzinfo=UTC),
        import_=EnergyDirection(t1_kwh=t1, t2_kwh=t2),
        export=EnergyDirection(t1_kwh=export_t1),
        meter="house",
        role="primary",
        received_at=datetime(2026, 12, 2, 6, 0, 1, tzinfo=UTC),
    )


def test_the_same_reading_gets_the_same_sample_and_another_one_its_own() -> None:
    first = reading(5123.456)
    sample = sample_of(first)
    assert sample is not None
    assert sample_of(first) is sample
    second = reading(5123.457)
    other = sample_of(second)
    assert other is not None and other is not sample
    assert other.registers[("import", "t1")] == Decimal("5123.457")
    assert sample_of(first) == sample  # computed again, the same value
    assert sample.registers[("import", "t1")] == Decimal("5123.456")


def test_registers_are_the_shortest_decimal_text_of_the_value() -> None:
    for value in (5123.456, 0.001, 1e-7, 123456789.123, 2.5):
        sample = sample_of(reading(value))
        assert sample is not None
        assert sample.registers[("import", "t1")] == Decimal(repr(value))
        assert str(sample.registers[("import", "t1")]) == str(Decimal(repr(value)))


def test_zero_keeps_its_sign_and_null_stays_out() -> None:
    negative = sample_of(reading(-0.0, None, 0.0))
    assert negative is not None
    assert str(negative.registers[("import", "t1")]) == "-0.0"
    assert str(negative.registers[("export", "t1")]) == "0.0"
    assert ("import", "t2") not in negative.registers
    positive = sample_of(reading(0.0))
    assert positive is not None
    assert str(positive.registers[("import", "t1")]) == "0.0"


def test_the_decimal_memo_stays_bounded() -> None:
    for step in range(samples._DECIMALS_MAX * 3):
        sample_of(reading(1000 + step / 1000))
    assert len(samples._DECIMALS) <= samples._DECIMALS_MAX
