"""The layout decoder's kept numbers and integer sums (p1daemon/parse/layout.py) give the
general parser's reading: the same floats and ints, whatever the caches hold.

test_parse_layout.py holds the layout to the general parser telegram by telegram; here
the two new steps are held to what they replace: a kept number to `float()` / `int()` of
its text (cold, warm, and after the cache was cleared for being full), and the sum of
tariffs as an integer division to `float()` of the sum's decimal text.
"""

from __future__ import annotations

import random

import pytest
from conftest import capture_files, capture_frames
from hypothesis import given
from hypothesis import strategies as st

from p1daemon.parse import layout
from p1daemon.parse.layout import LayoutParser
from p1daemon.parse.telegram import parse_telegram
from p1daemon.reading.encode import general_json


@given(st.integers(min_value=0, max_value=4 * 10**21), st.integers(min_value=0, max_value=12))
def test_integer_division_is_the_decimal_texts_float(digits: int, decimals: int) -> None:
    """What `_sum_source` now computes (its kept quotients' conversion) equals what it
    computed before, as `_fixed_sum` does: the same float, sign of zero included."""
    quotient = (10**decimals).__rtruediv__(digits)
    assert repr(quotient) == repr(float(f"{digits}e-{decimals}"))


@given(st.from_regex(r"[0-9]{1,12}(\.[0-9]{1,8})?", fullmatch=True))
def test_kept_numbers_are_the_conversions(text: str) -> None:
    for kept in (layout._FLOATS, layout._INTS, layout._SCALED):
        kept.clear()
    for _ in range(2):  # a miss, then a hit
        assert repr(layout._FLOATS[text]) == repr(float(text))
        assert layout._SCALED[text] == int(text.replace(".", ""))
        if "." not in text:
            assert layout._INTS[text] == int(text)


def test_kept_numbers_stay_bounded() -> None:
    kept = layout._FLOATS
    for n in range(3 * layout._NUMBERS_KEPT):
        text = f"{n:06d}.5"
        assert kept[text] == float(text)
        assert len(kept) <= layout._NUMBERS_KEPT


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_every_capture_with_cold_and_warm_numbers(warm: bool) -> None:
    """Every capture in sequence: a layout's reading equals the general parser's (documents
    and JSON), with the kept numbers emptied before each telegram or kept throughout."""
    rng = random.Random(1)
    used = 0
    for path in capture_files():
        parser = LayoutParser()
        frames = capture_frames(path)
        for frame in frames + rng.sample(frames, min(5, len(frames))):
            if not warm:
                for kept in (layout._FLOATS, layout._INTS, layout._SCALED):
                    kept.clear()
            try:
                general = parse_telegram(frame)
            except Exception:
                continue
            fast = parser.parse(frame)
            assert fast == general, frame.body
            assert general_json(fast) == general_json(general), frame.body
        used += parser.hits
    assert used > 500  # the layouts were taken (the 566-telegram capture alone)
