"""Properties that must hold for every input, not just the fixtures we thought of.

- Any byte soup, cut into any chunks, never raises in the framer, the Smarty decoder or
  the reading stream, and the chunking never changes what comes out.
- A telegram with a CRC that has one byte changed is never accepted with other values:
  it is dropped, or the change was one that cannot alter the telegram (the case of a CRC
  hex digit, the line end after the CRC, or a CRC digit turned into a line end, which
  leaves the body intact and is then read as a telegram without CRC).

The soup is built from pieces of real telegrams and frame markers as well as random
bytes, so it reaches the framer's interesting states ('/', "\\n!", CRC digits, 0xDB
headers) far more often than uniform random bytes would.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from conftest import OWN_FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p1daemon.frame.crc import _plan, crc16_arc, crc16_arc_bytes, crc16_arc_reference
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped, DropReason, Frame
from p1daemon.frame.framer import Framer
from p1daemon.frame.smarty import encrypt_frame
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.model import Reading

TEST_KEY = bytes.fromhex("70316461656D6F6E2D746573746B6579")

FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def own(name: str) -> bytes:
    return (OWN_FIXTURES / name).read_bytes()


# Single telegrams that carry a CRC: the ones the "one byte changed" property is about.
CRC_TELEGRAMS = [
    "nl/dsmr50_three_phase_export.txt",
    "nl/dsmr42_text_message.txt",
    "crc/lowercase_crc.txt",
    "crc/unpadded_crc.txt",
    "be/emucs_capacity.txt",
    "se/han_totals.txt",
    "at/wh_units.txt",
    "mbus/placeholders.txt",
]
TELEGRAM_BYTES = [own(name) for name in CRC_TELEGRAMS]
SMALL_TELEGRAMS = [t for t in TELEGRAM_BYTES if len(t) < 1000]
CRC_LESS = own("nl/dsmr22_gas_24_3_0.txt")
SMARTY_FRAME = own("lu/smarty_encrypted.bin")

MARKERS = [
    b"/",
    b"!",
    b"\r\n",
    b"\r\n!",
    b"\r\n!\r\n",
    b"!1A2B\r\n",
    b"!17e",
    b"\r\n1-3:0.2.8(50)",
    b"\r\n0-0:96.1.4(50217)",
    b"\r\n1-0:1.8.1(000123.456*kWh)",
    b"\r\n0-1:24.3.0(231115140000)(00)(60)(1)(0-1:24.2.1)(m3)\r\n(0001",
    b"\r\n0-0:98.1.0(2)(1-0:1.6.0)(1-0:1.6.0)(24",
    b"\xdb\x08P1DLUX01\x82\x00\x20\x30",
    b"\x00",
    b"\xff",
]


def _pieces() -> st.SearchStrategy[bytes]:
    telegram = st.sampled_from([*SMALL_TELEGRAMS, CRC_LESS])
    cut = st.tuples(telegram, st.integers(0, 2000), st.integers(0, 2000)).map(
        lambda t: t[0][min(t[1], t[2]) : max(t[1], t[2])]
    )
    smarty = st.sampled_from([SMARTY_FRAME[:700], SMARTY_FRAME[700:], SMARTY_FRAME])
    return st.one_of(
        st.binary(max_size=24),
        st.sampled_from(MARKERS),
        telegram,
        cut,
        smarty,
    )


SOUP = st.lists(_pieces(), max_size=12).map(b"".join)
CUTS = st.lists(st.integers(min_value=0, max_value=20_000), max_size=25)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(edges)]


def through_framer(pieces: list[bytes], **options: Any) -> list[Frame | Dropped]:
    framer = Framer(**options)
    out = [e for piece in pieces for e in framer.feed(piece)]
    out += framer.flush()
    assert framer.buffered == 0
    return out


def through_decoder(pieces: list[bytes], **options: object) -> list[Frame | Dropped]:
    decoder = TelegramDecoder(**options)  # type: ignore[arg-type]
    out = [e for piece in pieces for e in decoder.feed(piece)]
    return out + decoder.flush()


def through_stream(pieces: list[bytes], **options: object) -> list[Reading | Dropped]:
    stream = ReadingStream(TelegramDecoder(**options))  # type: ignore[arg-type]
    out = [e for piece in pieces for e in stream.feed(piece)]
    return out + stream.flush()


def well_formed(events: list[Frame | Dropped] | list[Reading | Dropped]) -> None:
    for event in events:
        if isinstance(event, Dropped):
            assert isinstance(event.reason, DropReason) and event.size > 0 and event.detail
        else:
            assert isinstance(event, Frame | Reading)


# -- byte soup and chunking ------------------------------------------------------------


LIMITS = st.sampled_from([16, 100, 700, 8192])  # small limits reach the oversized paths


@FAST
@given(SOUP, CUTS, st.booleans(), LIMITS)
def test_framer_takes_any_soup_in_any_chunks(
    data: bytes, cuts: list[int], check: bool, limit: int
) -> None:
    whole = through_framer([data], check_crc=check, max_size=limit)
    well_formed(whole)
    assert through_framer(chunks(data, cuts), check_crc=check, max_size=limit) == whole


@FAST
@given(st.binary(max_size=3000), CUTS)
def test_framer_takes_uniform_random_bytes(data: bytes, cuts: list[int]) -> None:
    whole = through_framer([data])
    well_formed(whole)
    assert not any(isinstance(e, Frame) for e in whole) or b"/" in data
    assert through_framer(chunks(data, cuts)) == whole


@FAST
@given(SOUP, CUTS, LIMITS)
def test_smarty_decoder_takes_any_soup_in_any_chunks(
    data: bytes, cuts: list[int], limit: int
) -> None:
    whole = through_decoder([data], key=TEST_KEY, max_size=limit)
    well_formed(whole)
    assert through_decoder(chunks(data, cuts), key=TEST_KEY, max_size=limit) == whole


@FAST
@given(SOUP, CUTS, st.booleans())
def test_reading_stream_takes_any_soup_in_any_chunks(
    data: bytes, cuts: list[int], check: bool
) -> None:
    whole = through_stream([data], check_crc=check)
    well_formed(whole)
    assert through_stream(chunks(data, cuts), check_crc=check) == whole


@FAST
@given(SOUP)
def test_parser_copes_with_whatever_text_gets_past_an_unchecked_crc(data: bytes) -> None:
    # With CRC checking off the parser sees arbitrary P1-looking text: it must read it,
    # not fall over (a parser exception would cost the telegram as "unparsable").
    events = through_stream([data], check_crc=False)
    assert not any(isinstance(e, Dropped) and e.reason is DropReason.UNPARSABLE for e in events)


def test_a_valid_smarty_frame_survives_any_surrounding_soup() -> None:
    frame = encrypt_frame(own("crc/lowercase_crc.txt"), TEST_KEY, frame_counter=77)
    for junk in [b"", b"\xdb", b"\xdb\x08", b"\xdb" * 40, bytes(range(256))]:
        events = through_stream([junk + frame + junk], key=TEST_KEY)
        assert sum(isinstance(e, Reading) for e in events) == 1, junk[:4]


# -- one byte changed ------------------------------------------------------------------


def readings_of(data: bytes) -> list[Reading]:
    return [e for e in through_stream([data]) if isinstance(e, Reading)]


ORIGINALS = {name: readings_of(own(name)) for name in CRC_TELEGRAMS}


def _assert_no_changed_reading(name: str, position: int, replacement: int) -> None:
    original = own(name)
    mutated = original[:position] + bytes([replacement]) + original[position + 1 :]
    [expected] = ORIGINALS[name]
    for reading in readings_of(mutated):
        assert reading == expected, (name, position, bytes([original[position], replacement]))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CRC_TELEGRAMS), st.data())
def test_one_changed_byte_never_gives_a_different_reading(name: str, data: st.DataObject) -> None:
    original = own(name)
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    replacement = data.draw(
        st.integers(0, 255).filter(lambda b: b != original[position]), label="byte"
    )
    _assert_no_changed_reading(name, position, replacement)


def test_every_position_turned_into_a_frame_marker_or_line_end() -> None:
    # Exhaustive over the replacements that can move a frame boundary, for two layouts.
    for name in ["crc/unpadded_crc.txt", "se/han_totals.txt"]:
        original = own(name)
        for position in range(len(original)):
            for replacement in b"!/\r\n":
                if replacement != original[position]:
                    _assert_no_changed_reading(name, position, replacement)


def test_crc_digit_case_is_the_only_crc_change_that_keeps_a_telegram() -> None:
    original = own("crc/lowercase_crc.txt")
    bang = original.index(b"\r\n!") + 2
    [expected] = ORIGINALS["crc/lowercase_crc.txt"]
    for position in range(bang + 1, bang + 5):
        digit = original[position : position + 1]
        flipped = original[:position] + digit.swapcase() + original[position + 1 :]
        if digit.isalpha():
            assert readings_of(flipped) == [expected]
        wrong = b"0" if digit != b"0" else b"1"
        assert readings_of(original[:position] + wrong + original[position + 1 :]) == []


def test_a_telegram_without_crc_has_no_such_protection() -> None:
    # Documented limit, not a wish: DSMR 2.2/3.0 bodies are accepted as they come.
    original = CRC_LESS
    position = original.index(b"00185.000") + 2
    mutated = original[:position] + b"9" + original[position + 1 :]
    [reading] = readings_of(mutated)
    assert reading.import_.t1_kwh == 985.0  # the meter sent 185.0; nothing can tell


# -- the folding CRC is the CRC (issue 16) -----------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=5000), st.integers(0, 0xFFFF), st.integers(0, 5000))
def test_folding_crc_equals_the_byte_table_and_the_bit_by_bit_definition(
    data: bytes, start: int, cut: int
) -> None:
    expected = crc16_arc_bytes(data, start)
    assert crc16_arc(data, start) == expected
    assert crc16_arc(bytearray(data), start) == expected
    assert crc16_arc(memoryview(data), start) == expected
    # Continuing from a CRC is the same as one pass (how a split message is checked).
    cut = min(cut, len(data))
    assert crc16_arc(data[cut:], crc16_arc(data[:cut], start)) == expected
    if start == 0 and len(data) <= 1500:
        assert expected == crc16_arc_reference(data)


# Every length up to 3 kB whose plan of folds differs from the one before it: where a
# fold is added or its place moves, an off-by-one in the plan would show.
_PLAN_CHANGES = [n for n in range(1, 3000) if _plan(n) != _plan(n - 1)]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(_PLAN_CHANGES),
    st.integers(-1, 1),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
)
def test_folding_crc_where_its_plan_changes(length: int, delta: int, fill: int, start: int) -> None:
    # Long runs of one value (0xFF: every bit of every fold set) next to each change.
    data = bytes([fill]) * max(0, length + delta - 1) + b"\x01"
    assert crc16_arc(data, start) == crc16_arc_bytes(data, start)


def test_every_plan_ends_in_15_bits_in_few_folds() -> None:
    for length in (2, 3, 100, 772, 2048, 8192, 100_000):
        bits = 8 * length
        for split, below, t in _plan(length):
            assert split == 15 * t and below == (1 << split) - 1 and split < bits
            bits = max(split, bits - 14 * t)
        assert bits <= 15
    assert len(_plan(772)) == 12  # a real DSMR 5 telegram


def test_folding_crc_sees_every_bit_of_a_long_message() -> None:
    # One flipped bit anywhere changes the CRC by that bit's own contribution, the same
    # as the byte table says (a fold that lost or misplaced a bit cannot hide).
    base = bytes(range(256)) * 9  # 2304 bytes: longer than any real telegram
    assert crc16_arc(base) == crc16_arc_bytes(base)
    for position in range(0, 8 * len(base), 97):
        flipped = bytearray(base)
        flipped[position >> 3] ^= 1 << (position & 7)
        assert crc16_arc(flipped) == crc16_arc_bytes(flipped), position
