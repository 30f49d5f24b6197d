"""The shortcuts of the parse path (issue 16) give what the plain decoding gives.

- `parse_timestamp` makes the meter's clock from a cached minute plus the seconds;
  `_parse_timestamp` is the plain decoding it must equal, offset and all.
- Tariff totals of plain numbers are summed as integers of their digits; the Decimal sum
  is the reference (same float, bit for bit).
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from p1daemon.parse.telegram import _exact_sum, _fixed_sum, _is_plain
from p1daemon.parse.values import _parse_timestamp, parse_timestamp

_FLAGS = st.sampled_from(["S", "W", "s", "w", "", "X", "SS", " "])


@settings(max_examples=2000, deadline=None)
@given(st.text("0123456789", min_size=10, max_size=13), _FLAGS)
def test_timestamps_through_the_minute_cache_equal_the_plain_decoding(
    digits: str, flag: str
) -> None:
    text = digits + flag
    fast, plain = parse_timestamp(text), _parse_timestamp(text)
    assert fast == plain, text
    if plain is not None:
        assert fast is not None
        assert fast.tzinfo is plain.tzinfo and fast.isoformat() == plain.isoformat()


def test_timestamp_edge_cases() -> None:
    for text in [
        "190324150559S",
        "190324150560W",  # second 60: no time
        "190230150520W",  # 30 February
        "000000000000W",  # placeholders
        "632525252525S",
        "190331023000",  # local time (the DST gap): the plain way
        "190324150520X",
    ]:
        assert parse_timestamp(text) == _parse_timestamp(text), text
    assert parse_timestamp("190324150559S").isoformat() == "2019-03-24T15:05:59+02:00"  # type: ignore[union-attr]


_PLAIN = st.builds(
    lambda whole, fraction: whole + ("." + fraction if fraction is not None else ""),
    st.text("0123456789", min_size=1, max_size=10),
    st.one_of(st.none(), st.text("0123456789", min_size=0, max_size=6)),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(_PLAIN, min_size=1, max_size=4))
def test_tariff_sums_equal_the_decimal_sums(numbers: list[str]) -> None:
    assert all(map(_is_plain, numbers))
    reference = float(sum((Decimal(n) for n in numbers), Decimal(0)))
    assert _exact_sum(list(numbers)) == reference
    fixed = _fixed_sum(numbers)
    assert fixed is None or fixed == reference


def test_the_sum_that_binary_floats_get_wrong() -> None:
    assert _exact_sum(["003432.827", "003224.632"]) == float("6657.459")
    assert _exact_sum(["0.1", "0.2"]) == 0.3 != 0.1 + 0.2
    assert _fixed_sum(["1.5", "2.25"]) is None  # other decimals: Decimal decides
    assert _exact_sum(["1.5", "2.25"]) == 3.75


def test_what_is_not_plain() -> None:
    for number in ["", ".", "1.2.3", "+1", "-1", "1e3", "inf", " 1", "1_0", "9" * 21]:
        assert not _is_plain(number), number
