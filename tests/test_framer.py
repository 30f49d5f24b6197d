"""The framer's promises: chunking never matters, it resynchronises, its memory is bounded,
every drop has a reason, and the CRC rules of issue 2 hold.

The telegrams come from the project's own fixtures; where a test needs a variant, it is
built here with the bit-by-bit reference CRC, never with the framer's fast CRC.
"""

from __future__ import annotations

import random

import pytest
from conftest import OWN_FIXTURES

from p1daemon.frame.crc import crc16_arc, crc16_arc_reference
from p1daemon.frame.events import Dropped, DropReason, Frame
from p1daemon.frame.framer import DEFAULT_MAX_FRAME, Framer, requires_crc

Event = Frame | Dropped


def fixture(name: str) -> bytes:
    return (OWN_FIXTURES / name).read_bytes()


def run(data: bytes, sizes: list[int] | None = None, **options: object) -> list[Event]:
    """Feed `data` in chunks of the given sizes (the rest in one go), then flush."""
    framer = Framer(**options)  # type: ignore[arg-type]
    out: list[Event] = []
    pos = 0
    for size in sizes or []:
        out += framer.feed(data[pos : pos + size])
        pos += size
    out += framer.feed(data[pos:])
    out += framer.flush()
    return out


def frames(events: list[Event]) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


def reasons(events: list[Event]) -> list[str]:
    return [e.reason.value for e in events if isinstance(e, Dropped)]


def build(lines: list[str], crc: str | None = "upper", header: str = "TST5\\2TEST") -> bytes:
    """A telegram with CRLF endings; crc None leaves it out, "bad" writes a wrong one."""
    body = ("/" + header + "\r\n\r\n" + "".join(line + "\r\n" for line in lines) + "!").encode()
    value = crc16_arc_reference(body)
    tail = {
        None: "",
        "upper": f"{value:04X}",
        "lower": f"{value:04x}",
        "bad": f"{value ^ 0xFFFF:04X}",
    }[crc]
    return body + tail.encode() + b"\r\n"


DSMR5 = ["1-3:0.2.8(50)", "0-0:1.0.0(240101120000W)", "1-0:1.8.1(000001.000*kWh)"]

MIXED_STREAM_FILES = [
    # The CRC-less DSMR 2.2 telegram first: after CRC-carrying ones, a telegram without CRC
    # in the same stream is `missing_crc` (issue 9), and this stream mixes meters.
    "nl/dsmr22_gas_24_3_0.txt",
    "stream/line_noise.txt",
    "stream/cut_off_then_complete.txt",
    "stream/oversized.txt",
    "crc/bad_crc.txt",
    "crc/lowercase_crc.txt",
    "crc/unpadded_crc.txt",
    "crc/missing_crc_dsmr50.txt",
    "be/emucs_capacity.txt",
]


@pytest.fixture(scope="module")
def mixed_stream() -> bytes:
    return b"".join(fixture(name) for name in MIXED_STREAM_FILES)


# -- CRC -------------------------------------------------------------------------------


def test_crc_matches_the_published_check_value() -> None:
    # CRC-16/ARC of "123456789" is 0xBB3D in every CRC catalogue.
    assert crc16_arc(b"123456789") == 0xBB3D
    assert crc16_arc_reference(b"123456789") == 0xBB3D


def test_fast_crc_equals_the_reference_on_odd_and_even_lengths() -> None:
    rng = random.Random(7)
    for length in [0, 1, 2, 3, 255, 256, 1023, 4097]:
        data = bytes(rng.randrange(256) for _ in range(length))
        assert crc16_arc(data) == crc16_arc_reference(data), length
        assert crc16_arc(data[length // 2 :], crc16_arc(data[: length // 2])) == crc16_arc(data)


@pytest.mark.parametrize(
    ("name", "crc_text"),
    [
        ("nl/dsmr50_three_phase_export.txt", None),
        ("crc/lowercase_crc.txt", None),
        ("crc/unpadded_crc.txt", "17E"),
    ],
)
def test_crc_forms_are_accepted(name: str, crc_text: str | None) -> None:
    data = fixture(name)
    events = run(data)
    assert reasons(events) == []
    [frame] = frames(events)
    assert frame.crc_checked
    declared = data[data.index(b"!") + 1 :].strip().decode()
    if crc_text is not None:
        assert declared == crc_text
    assert frame.crc == int(declared, 16)
    assert frame.body == data[: data.index(b"!") + 1]


def test_lowercase_fixture_really_uses_lowercase_letters() -> None:
    declared = fixture("crc/lowercase_crc.txt").split(b"!")[1].strip()
    assert declared == declared.lower() and any(c in b"abcdef" for c in declared)


def test_wrong_crc_is_dropped_with_both_values_in_the_detail() -> None:
    events = run(fixture("crc/bad_crc.txt"))
    assert frames(events) == []
    [drop] = [e for e in events if isinstance(e, Dropped)]
    assert drop.reason is DropReason.CRC_MISMATCH
    assert "declared" in drop.detail and "computed" in drop.detail


def test_crc_check_off_accepts_a_wrong_crc_but_says_it_was_not_checked() -> None:
    [frame] = frames(run(fixture("crc/bad_crc.txt"), check_crc=False))
    assert not frame.crc_checked
    assert frame.body.startswith(b"/PDX5\\2P1D-1PH-42")


@pytest.mark.parametrize(
    ("lines", "accepted"),
    [
        (["1-3:0.2.8(40)", "1-0:1.8.1(000001.000*kWh)"], False),
        (["1-3:0.2.8(42)", "1-0:1.8.1(000001.000*kWh)"], False),
        (["1-3:0.2.8(50)", "1-0:1.8.1(000001.000*kWh)"], False),
        (["1-0:1.8.1(000001.000*kWh)", "0-0:96.1.4(50217)"], False),
        (["1-3:0.2.8(22)", "1-0:1.8.1(000001.000*kWh)"], True),
        (["0-0:96.1.1(4B384547)", "1-0:1.8.1(00001.000*kWh)"], True),
    ],
)
def test_only_pre_4_0_telegrams_may_omit_the_crc(lines: list[str], accepted: bool) -> None:
    data = build(lines, crc=None)
    events = run(data)
    if accepted:
        [frame] = frames(events)
        assert frame.crc is None and not frame.crc_checked
    else:
        assert frames(events) == []
        assert reasons(events) == ["missing_crc"]
    # With CRC checking off the rule is off too (meters with broken CRCs exist).
    assert len(frames(run(data, check_crc=False))) == 1


def test_requires_crc_reads_the_declared_version() -> None:
    assert requires_crc(b"/X\r\n1-3:0.2.8(40)\r\n!")
    assert not requires_crc(b"/X\r\n1-3:0.2.8(30)\r\n!")
    assert requires_crc(b"/X\r\n0-0:96.1.4(50217)\r\n!")
    assert not requires_crc(b"/X\r\n1-0:1.8.1(1)\r\n!")


@pytest.mark.parametrize("check_crc", [True, False])
def test_binary_junk_between_slash_and_bang_is_not_a_telegram(check_crc: bool) -> None:
    junk = b"/\x8a\x00\xfe\x13\r\n1-0:1.8.1(\xff)\r\n!"
    for data in [junk + b"\r\n", junk + b"1A2B\r\n", b"/\x01\x02\x03!\r\n"]:
        events = run(data, check_crc=check_crc)
        assert frames(events) == []
        assert reasons(events)  # and the reader is told


def test_crc_less_text_without_any_obis_object_is_not_a_telegram() -> None:
    # A console line ending in "/ ... \n!": text, but nothing a meter would send.
    events = run(b"login: see /motd\r\n!\r\n")
    assert frames(events) == []
    assert reasons(events) == ["garbage", "garbage"]  # the prompt, then the "frame"


# -- chunking --------------------------------------------------------------------------


def test_one_byte_chunks_give_the_same_events(mixed_stream: bytes) -> None:
    whole = run(mixed_stream)
    assert len(frames(whole)) == 9
    assert run(mixed_stream, [1] * len(mixed_stream)) == whole


def test_random_splits_give_the_same_events(mixed_stream: bytes) -> None:
    whole = run(mixed_stream)
    rng = random.Random(20240716)
    for _ in range(20):
        sizes = [rng.choice([1, 2, 3, 5, 64, 700, 5000]) for _ in range(400)]
        assert run(mixed_stream, sizes) == whole


@pytest.mark.parametrize("max_size", [64, 700, 1024, DEFAULT_MAX_FRAME])
def test_a_chunk_longer_than_max_size_is_the_same_as_its_slices(
    mixed_stream: bytes, max_size: int
) -> None:
    # A chunk of up to 128 KiB goes into the buffer whole, whatever max_size is: the same
    # events as feeding it max_size bytes at a time (the framer did so before), or a byte
    # at a time, with junk, floods of markers and mid-line headers among the telegrams.
    noise = b"NO CARRIER/KFM5 x\r\n" + b"/\r\n" * 300 + b"x" * 3000 + b"(http://a/b)\r\n!\r\n"
    data = noise + mixed_stream + b"1-0:1.7.0(00.193*kW)" + mixed_stream + noise
    assert max_size < len(data) <= 128 * 1024
    whole = run(data, max_size=max_size)
    assert run(data, [max_size] * (len(data) // max_size), max_size=max_size) == whole
    assert run(data, [1] * len(data), max_size=max_size) == whole
    if max_size >= 1024:
        assert len(frames(whole)) > 9


def test_every_boundary_inside_the_crc_and_line_end() -> None:
    data = fixture("crc/unpadded_crc.txt") + fixture("crc/lowercase_crc.txt")
    whole = run(data)
    bang = data.index(b"!")
    for cut in range(bang - 1, bang + 7):
        assert run(data, [cut]) == whole, cut


def test_many_telegrams_in_one_chunk() -> None:
    data = fixture("demo/house.txt")
    events = Framer().feed(data)
    assert len(events) == 120 and all(isinstance(e, Frame) for e in events)
    assert [f.body for f in frames(events)] == [
        b"/" + part[: part.index(b"!") + 1] for part in data.split(b"/")[1:]
    ]


def test_stream_ending_right_after_the_crc_without_line_end() -> None:
    data = fixture("crc/unpadded_crc.txt").rstrip(b"\r\n")
    framer = Framer()
    assert framer.feed(data) == []  # "!17E" might still become "!17E5"
    [frame] = frames(framer.flush())
    assert frame.crc == 0x17E


# -- resynchronisation -----------------------------------------------------------------


def test_resync_after_garbage_and_a_cut_off_telegram() -> None:
    good = build(DSMR5)
    data = b"\xff\xfeNO CARRIER\r\n" + good[:50] + b"~~" + good + b"junk" + good[:-30] + good
    events = run(data)
    assert [f.body for f in frames(events)] == [good[: good.index(b"!") + 1]] * 2
    assert reasons(events) == ["garbage", "truncated", "garbage", "truncated"]


def test_capture_starting_mid_telegram() -> None:
    good = build(DSMR5)
    events = run(good[20:] + good)
    assert len(frames(events)) == 1
    assert reasons(events) == ["garbage"]


def test_whitespace_between_telegrams_is_not_garbage() -> None:
    good = build(DSMR5)
    assert reasons(run(b"\r\n\r\n" + good + b"\r\n\x00\r\n" + good + b"\n")) == []


def test_stream_ending_inside_a_telegram_reports_truncated() -> None:
    good = build(DSMR5)
    events = run(good + good[:-10])
    assert len(frames(events)) == 1
    assert reasons(events) == ["truncated"]


def test_garbage_size_counts_every_byte_between_telegrams() -> None:
    good = build(DSMR5)
    events = run(good + b"noise!\r\n" + good)
    [drop] = [e for e in events if isinstance(e, Dropped)]
    assert drop.size == len(b"\r\n" + b"noise!\r\n")  # from the end of the CRC to the '/'


# -- bounded memory --------------------------------------------------------------------


def test_a_megabyte_without_bang_stays_bounded_and_is_reported_oversized() -> None:
    framer = Framer()
    events: list[Event] = framer.feed(b"/")
    flood = b"A" * 4096
    for _ in range(256):
        events += framer.feed(flood)
        assert framer.buffered <= DEFAULT_MAX_FRAME
    assert reasons(events) == ["oversized"]
    # The rest of that telegram is skipped, not reported again as garbage; the next one counts.
    events += framer.feed(build(DSMR5))
    events += framer.flush()
    assert reasons(events) == ["oversized"]
    assert len(frames(events)) == 1


def test_a_megabyte_in_one_chunk_stays_bounded() -> None:
    framer = Framer(max_size=1024)
    events = framer.feed(b"/" + b"B" * 1_000_000)
    assert framer.buffered <= 1024
    assert reasons(events) == ["oversized"]


def test_a_flood_without_slash_is_reported_while_it_lasts() -> None:
    framer = Framer(max_size=1024)
    events = framer.feed(b"x" * 10_000)
    assert framer.buffered == 0
    assert reasons(events) == ["garbage"] * 9
    assert reasons(framer.flush()) == ["garbage"]


def test_oversized_fixture_passes_with_a_larger_limit() -> None:
    data = fixture("stream/oversized.txt")
    assert len(data) > DEFAULT_MAX_FRAME
    assert reasons(run(data)) == ["oversized"]
    events = run(data, max_size=16 * 1024)
    assert reasons(events) == [] and len(frames(events)) == 2


def test_a_frame_of_exactly_max_size_is_accepted() -> None:
    good = build(DSMR5)
    body_length = good.index(b"!") + 1
    assert len(frames(run(good, max_size=body_length))) == 1
    assert reasons(run(good, max_size=body_length - 1)) == ["oversized"]


def test_belgian_telegram_over_3_kb_fits_the_default_limit() -> None:
    data = fixture("be/emucs_capacity.txt")
    assert len(data) > 3 * 1024
    assert len(frames(run(data))) == 1


def test_max_size_must_be_sensible() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Framer(max_size=0)


# -- every drop has a reason -----------------------------------------------------------


def test_every_drop_has_a_reason_a_detail_and_a_size(mixed_stream: bytes) -> None:
    events = run(mixed_stream + b"/\x00\x01!" + b"/unfinished")
    drops = [e for e in events if isinstance(e, Dropped)]
    assert {d.reason for d in drops} >= {
        DropReason.GARBAGE,
        DropReason.TRUNCATED,
        DropReason.OVERSIZED,
        DropReason.CRC_MISMATCH,
        DropReason.MISSING_CRC,
    }
    for drop in drops:
        assert isinstance(drop.reason, DropReason)
        assert drop.detail and drop.size > 0
        assert drop.describe().startswith(drop.reason.value + ": ")


# -- the end marker --------------------------------------------------------------------


def test_a_bang_inside_a_line_is_content_so_the_crc_catches_it() -> None:
    good = build(DSMR5)
    corrupted = good.replace(b"0.2.8(50)", b"0.2.8(5!)")
    # Were "(5!" taken as the end, "1-3:0.2.8(5" declares no version and the stub
    # would pass as a DSMR 2.2 telegram without CRC.
    assert reasons(run(corrupted)) == ["crc_mismatch"]


def test_crc_less_end_must_be_followed_by_a_line_end() -> None:
    lines = ["0-0:96.1.1(4B384547)", "1-0:1.8.1(00001.000*kWh)", "1-0:1.8.2(00002.000*kWh)"]
    good = build(lines, crc=None)
    assert len(frames(run(good))) == 1
    # Line noise turned the first character of the last line into '!'.
    cut = good.replace(b"\r\n1-0:1.8.2", b"\r\n!-0:1.8.2")
    events = run(cut)
    assert frames(events) == []
    assert reasons(events)[0] == "garbage"


def test_crc_less_telegram_at_the_very_end_of_a_capture() -> None:
    good = build(["1-0:1.8.1(00001.000*kWh)"], crc=None).rstrip(b"\r\n")
    framer = Framer()
    assert framer.feed(good) == []  # a CRC or line end may still follow
    [frame] = frames(framer.flush())
    assert frame.crc is None


# -- issue 9: a telegram starts only at the start of a line ----------------------------

DSMR22 = ["0-0:96.1.1(4B384547)", "1-0:1.8.1(00123.456*kWh)", "1-0:2.8.1(00001.000*kWh)"]


def with_message(text: str) -> list[str]:
    return [*DSMR22[:2], f"0-0:96.13.0({text})", DSMR22[2]]


@pytest.mark.parametrize("text", ["see http://meter.example/storing", "a/b", "/", "x/ISK5"])
def test_a_slash_in_a_crc_less_text_message_does_not_cut_the_telegram(text: str) -> None:
    data = build(with_message(text), crc=None)
    for sizes in (None, [1] * len(data)):
        events = run(data, sizes)
        assert reasons(events) == []
        [frame] = frames(events)
        assert frame.body == data[: data.index(b"\r\n!") + 3]


def test_a_slash_in_a_text_message_of_a_crc_telegram_is_content_too() -> None:
    data = build(["1-3:0.2.8(50)", "0-0:96.13.0(http://x/y)", "1-0:1.8.1(000001.000*kWh)"])
    events = run(data)
    assert reasons(events) == [] and len(frames(events)) == 1


def test_a_capture_starting_inside_a_text_message_yields_no_phantom_reading() -> None:
    good = build(with_message("see http://meter.example/storing"), crc=None)
    slash = good.index(b"example/") + 7
    for begin in (slash - 3, slash):  # mid-line, or exactly at the '/' inside the message
        events = run(good[begin:] + good)
        assert [f.body for f in frames(events)] == [good[: good.index(b"\r\n!") + 3]]
        assert reasons(events) == ["garbage"]


def test_a_telegram_cut_mid_line_is_still_resynchronised_on_its_successor_header() -> None:
    # The meter lost power mid-line: the new telegram's '/' follows the cut line directly.
    first = build(DSMR22, crc=None)
    second = build(with_message("x"), crc=None)
    events = run(first[:60] + second)
    assert [f.body for f in frames(events)] == [second[: second.index(b"\r\n!") + 3]]
    assert reasons(events) == ["truncated"]


def test_a_telegram_right_after_the_previous_crc_without_line_end() -> None:
    good = build(DSMR5).rstrip(b"\r\n")
    events = run(good + good + b"\r\n")
    assert reasons(events) == [] and len(frames(events)) == 2


# -- issue 9: a meter that has sent CRCs must keep sending them ------------------------


def crc_less(telegram: bytes) -> bytes:
    bang = telegram.index(b"\r\n!") + 3
    return telegram[:bang] + b"\r\n"


HU = ["0-0:96.1.0(4B384547)", "1-0:1.8.1(000001.000*kWh)"]  # no version object at all


def test_a_crc_less_telegram_after_crc_ones_is_missing_crc() -> None:
    good = build(HU)
    events = run(good + crc_less(good) + good)
    assert len(frames(events)) == 2
    assert reasons(events) == ["missing_crc"]
    # Before any CRC was seen, the same telegram is accepted (it may be a DSMR 2.2 meter).
    assert reasons(run(crc_less(good) + good)) == []


def test_the_crc_memory_survives_a_new_framer_sharing_it() -> None:
    from p1daemon.frame.framer import CrcMemory

    memory = CrcMemory()
    good = build(HU)
    assert reasons(run(good, crc_memory=memory)) == []
    assert memory.seen
    assert reasons(run(crc_less(good), crc_memory=memory)) == ["missing_crc"]
    assert reasons(run(crc_less(good), crc_memory=CrcMemory())) == []
    # With CRC checking off, nothing is required.
    assert reasons(run(crc_less(good), crc_memory=memory, check_crc=False)) == []


def test_a_wrong_crc_does_not_teach_the_memory() -> None:
    events = run(build(HU, crc="bad") + crc_less(build(HU)))
    assert reasons(events) == ["crc_mismatch"] and len(frames(events)) == 1


# -- issue 9: floods of frame markers stay a handful of events -------------------------


@pytest.mark.parametrize("unit", [b"/", b"/\r\n", b"/\n!\n", b"/\r\n!0000\r\n", b"x/"])
def test_a_flood_of_frame_markers_is_grouped(unit: bytes) -> None:
    framer = Framer(max_size=1024)
    events: list[Event] = []
    flood = unit * (200_000 // len(unit))
    for start in range(0, len(flood), 4096):
        events += framer.feed(flood[start : start + 4096])
        assert framer.buffered <= 1024 + 4
    events += framer.feed(build(DSMR5))
    events += framer.flush()
    drops = [e for e in events if isinstance(e, Dropped)]
    assert len(drops) <= len(flood) // 1024 + 2, [d.describe() for d in drops[:5]]
    assert len(frames(events)) == 1


def test_grouped_flood_is_the_same_however_it_is_split() -> None:
    data = b"/\r\n" * 3000 + build(DSMR5) + b"/\n!\n" * 500 + b"x" + build(DSMR5)
    whole = run(data)
    assert len(frames(whole)) == 2
    rng = random.Random(9)
    for _ in range(5):
        assert run(data, [rng.choice([1, 2, 3, 700]) for _ in range(3000)]) == whole
    # Every flooded byte is accounted for in some drop.
    dropped = sum(e.size for e in whole if isinstance(e, Dropped))
    assert dropped >= len(b"/\r\n" * 3000) + len(b"/\n!\n" * 500)
