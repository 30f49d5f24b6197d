"""The report's CSV formats stored register texts without making Decimals; it must give
exactly what `kwh` of the decoded Decimal gives (and of `0 + value` for a sum, which
turns a negative zero into zero), for any text `registers.encode` can write."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from p1daemon.report.render import _reading_text, _sum_text, kwh
from p1daemon.views.history.registers import encode

TRICKY = [
    "0", "-0", "0.0", "-0.0", "-0.000", "0.000", "5", "5.1", "5.12", "5.123", "5.1234",
    "5.1235", "5.1245", "-5.1", "-5.1235", "1234567.891", "1000.0", "0.0001", "0.0005",
    "1E+3", "1.000E+2", "0E-7", "12.30", "100", "-100.5", "-0.0005", "-0.0004", "-0E-7",
]  # fmt: skip


def check(text: str) -> None:
    assert _reading_text(text) == kwh(Decimal(text)), text
    assert _sum_text(text) == kwh(Decimal(0) + Decimal(text)), text


def test_tricky_texts() -> None:
    for text in TRICKY:
        check(text)
    assert _reading_text("") == "" and _sum_text("") == kwh(Decimal(0))


@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: abs(d) < Decimal("1e12") and d.as_tuple().exponent >= -8  # type: ignore[operator]
    )
)
def test_any_stored_value(value: Decimal) -> None:
    # What the store keeps: registers.encode's text of the value.
    text = encode({("import", "t1"): value}).split(",")[0]
    check(text)
