"""The cached telegram layout (p1daemon/parse/layout.py) gives the general parser's reading.

The layout decodes a telegram whose bytes differ from the last one only in the digits of
its values; everything else goes through `parse_telegram`. Each test feeds telegrams in
sequence, so the layout is made by one and used by the next, and holds every reading to
the general parser's: equal documents (`Doc.__eq__`, nested) and byte-identical JSON
(equality alone would pass a datetime with another offset for the same instant).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import SHARED_FIXTURES, capture_files, capture_frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped, Frame
from p1daemon.parse.layout import LayoutParser, build_layout
from p1daemon.parse.stream import ReadingStream
from p1daemon.parse.telegram import parse_telegram
from p1daemon.reading.encode import to_json

STREAM = SHARED_FIXTURES / "streams" / "iskra_am550_dsmr50_566_telegrams.txt"


CAPTURES = capture_files()
TELEGRAMS = [frame for path in CAPTURES for frame in capture_frames(path)]


def _outcome(parse: object, frame: Frame) -> tuple[object, str]:
    try:
        reading = parse(frame)  # type: ignore[operator]
    except Exception as exc:  # the general parser's failures must be the layout's too
        return ("raised", type(exc).__name__), ""
    return reading, to_json(reading)


def _assert_same(parser: LayoutParser, frame: Frame) -> None:
    fast, fast_json = _outcome(parser.parse, frame)
    general, general_json = _outcome(parse_telegram, frame)
    assert fast == general, frame.body
    assert fast_json == general_json, frame.body


def _with_digits(body: bytes, rng: random.Random, changes: int) -> bytes:
    """`body` with `changes` digits replaced anywhere (values, OBIS codes, header)."""
    out = bytearray(body)
    places = [i for i, byte in enumerate(body) if 48 <= byte <= 57]
    for _ in range(changes if places else 0):
        out[rng.choice(places)] = rng.randint(48, 57)
    return bytes(out)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_capture_in_sequence(path: Path) -> None:
    """Each capture as a stream, then each telegram again and with its digits changed."""
    parser = LayoutParser()
    frames = capture_frames(path)
    for frame in frames:
        _assert_same(parser, frame)
    rng = random.Random(path.name)
    for frame in frames[:3]:
        for crc in (frame.crc, None, 0x1234):
            _assert_same(parser, Frame(frame.body, crc, frame.crc_checked))
            for _ in range(40):
                changed = _with_digits(frame.body, rng, rng.randint(1, 3))
                _assert_same(parser, Frame(changed, crc, frame.crc_checked))


def test_the_stream_takes_the_layout() -> None:
    """Not a test that cannot fail: the real meter's stream must hit the layout every time."""
    if not STREAM.is_file():
        pytest.skip(f"no {STREAM}")
    parser = LayoutParser()
    frames = capture_frames(STREAM)
    for frame in frames:
        _assert_same(parser, frame)
    assert len(frames) == 566
    # The first two make the layout (a form is taken as a layout once seen twice).
    assert parser.hits == len(frames) - 2


def test_own_captures_hit_the_layout() -> None:
    """Telegrams in the common forms (NL, BE capacity, M-Bus, power-failure logs) use it."""
    hits = 0
    for frame in TELEGRAMS:
        parser = LayoutParser()
        parser.parse(frame)
        parser.parse(frame)
        body = bytearray(frame.body)
        # The last digit of the first value: a new telegram of the same meter.
        at = body.find(b"(", body.find(b"\n")) + 1
        while at and at < len(body) and not 48 <= body[at] <= 57:
            at += 1
        if at and at < len(body):
            body[at] = 48 + (body[at] - 47) % 10
        _assert_same(parser, Frame(bytes(body), frame.crc, frame.crc_checked))
        hits += parser.hits
    assert hits >= len(TELEGRAMS) // 2, (hits, len(TELEGRAMS))


_EDITS = st.lists(
    st.tuples(st.integers(min_value=0), st.sampled_from(b"0123456789")), min_size=1, max_size=6
)
_NOISE = st.sampled_from(
    [b"0", b"9", b".", b"*", b"(", b")", b"\r\n", b"\n", b"A", b"f", b"S", b"W", b" ", b"\x0b"]
)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    index=st.integers(min_value=0),
    edits=_EDITS,
    structure=st.sampled_from(["none", "insert", "delete", "drop_line", "repeat_line", "swap"]),
    where=st.integers(min_value=0),
    noise=_NOISE,
    crc=st.sampled_from([None, 0x1234]),
)
def test_changed_telegram_after_the_real_one(
    index: int,
    edits: list[tuple[int, int]],
    structure: str,
    where: int,
    noise: bytes,
    crc: int | None,
) -> None:
    """A real telegram, then a copy with digits, lengths or lines changed."""
    frame = TELEGRAMS[index % len(TELEGRAMS)]
    parser = LayoutParser()
    for _ in range(2):  # twice: the second makes the layout
        _assert_same(parser, Frame(frame.body, crc, True))
    body = bytearray(frame.body)
    digits = [i for i, byte in enumerate(body) if 48 <= byte <= 57]
    for place, digit in edits:
        if digits:
            body[digits[place % len(digits)]] = digit
    inner = 1 + where % max(1, len(body) - 2)  # after '/', before '!'
    lines = bytes(body[:-1]).split(b"\r\n")
    line = 1 + where % max(1, len(lines) - 1)
    if structure == "insert":
        body[inner:inner] = noise
    elif structure == "delete":
        del body[inner]
    elif structure in ("drop_line", "repeat_line", "swap") and len(lines) > 2:
        if structure == "drop_line":
            del lines[line]
        elif structure == "repeat_line":
            lines.insert(line, lines[line])
        else:
            other = 1 + (where // 7) % (len(lines) - 1)
            lines[line], lines[other] = lines[other], lines[line]
        body = bytearray(b"\r\n".join(lines) + b"!")
    _assert_same(parser, Frame(bytes(body), crc, True))
    # And the real one again: a layout made from the changed telegram must not stick.
    _assert_same(parser, Frame(frame.body, crc, True))


def test_a_changed_obis_code_is_not_the_same_layout() -> None:
    """Same skeleton after digits are zeroed, but 1.8.1 became 1.8.3: the general parser."""
    if not STREAM.is_file():
        pytest.skip(f"no {STREAM}")
    frame = capture_frames(STREAM)[0]
    parser = LayoutParser()
    parser.parse(frame)
    parser.parse(frame)
    assert parser.hits == 0
    moved = Frame(frame.body.replace(b"1-0:1.8.1(", b"1-0:1.8.3("), frame.crc, True)
    reading = parser.parse(moved)
    assert parser.hits == 0
    assert reading == parse_telegram(moved)
    assert reading.import_.t3_kwh is not None and reading.import_.t1_kwh is None


def test_non_ascii_telegrams_have_no_layout() -> None:
    """A replaced byte would make str offsets differ from byte offsets: never cached."""
    body = b"/XMX5XMXABCE000018914\r\n\r\n0-0:96.13.0(\xe9t\xe9)\r\n1-0:1.8.1(000001.000*kWh)\r\n!"
    frame = Frame(body, None, False)
    assert build_layout(body, False, parse_telegram(frame)).decode is None
    parser = LayoutParser()
    for _ in range(3):
        _assert_same(parser, frame)
    assert parser.hits == 0


def _stream_events(data: bytes) -> list[object]:
    """What the stream must give: the decoder's events, each frame parsed the general way."""
    out: list[object] = []
    for event in TelegramDecoder(check_crc=True).feed(data):
        out.append(event if isinstance(event, Dropped) else to_json(parse_telegram(event)))
    return out


def test_dropped_frames_stay_dropped() -> None:
    """A telegram that fails its CRC, or is cut off, between telegrams of one layout."""
    if not STREAM.is_file():
        pytest.skip(f"no {STREAM}")
    data = bytearray(STREAM.read_bytes())
    starts = [i for i in range(len(data)) if data[i] == ord("/")]
    # A digit of the 5th telegram's meter clock changed: the same layout, a wrong CRC.
    clock = data.find(b"0-0:1.0.0(", starts[5]) + 12
    data[clock] = 48 + (data[clock] - 47) % 10
    # The 9th telegram cut off before its end: it must not come out of the layout either.
    cut = data.find(b"!", starts[9])
    del data[cut - 40 : cut + 6]
    expected = _stream_events(bytes(data))
    stream = ReadingStream(TelegramDecoder(check_crc=True))
    events = [e for i in range(0, len(data), 4096) for e in stream.feed(data[i : i + 4096])]
    events += stream.flush()
    got = [e if isinstance(e, Dropped) else to_json(e) for e in events]
    assert got == expected
    assert sum(isinstance(e, Dropped) for e in got) >= 2
    assert stream._parser.hits > 500


def _counting_builds(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies layouts are made from, from now on."""
    import p1daemon.parse.layout as layout_module

    made: list[bytes] = []
    build = layout_module.build_layout

    def counting(body: bytes, has_crc: bool, reading: object) -> object:
        made.append(body)
        return build(body, has_crc, reading)  # type: ignore[arg-type]

    monkeypatch.setattr(layout_module, "build_layout", counting)
    return made


def test_single_telegram_streams_make_no_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Making a layout costs ~15 general parses: `p1daemon parse` of one telegram and
    `report verify` (a stream per stored telegram) must not pay it."""
    made = _counting_builds(monkeypatch)
    for frame in TELEGRAMS:
        stream = ReadingStream(TelegramDecoder(check_crc=False))
        assert stream.feed(frame.body + b"\r\n") != []
    assert made == []


def test_a_meter_that_changes_form_every_telegram_seldom_makes_layouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A form that never repeats makes no layout; one that repeats its non-digits but not its
    header's digits makes one ever more seldom; once the form settles, one is made and used."""
    if not STREAM.is_file():
        pytest.skip(f"no {STREAM}")
    made = _counting_builds(monkeypatch)
    frames = capture_frames(STREAM)
    parser = LayoutParser()
    for i, frame in enumerate(frames[:300]):
        # A text message one character longer each time: a new form in every telegram.
        body = frame.body.replace(b"0-0:96.13.0()", b"0-0:96.13.0(" + b"3" * (i + 1) * 2 + b")")
        _assert_same(parser, Frame(body, frame.crc, True))
    assert parser.hits == 0
    assert made == []
    for i, frame in enumerate(frames[:400]):
        body = frame.body.replace(b"M550T-1012", b"M550T-%04d" % i)  # same skeleton
        _assert_same(parser, Frame(body, frame.crc, True))
    assert parser.hits == 0
    assert 2 <= len(made) <= 12, len(made)
    for frame in frames:
        _assert_same(parser, frame)
    assert parser.hits >= len(frames) - 260, parser.hits


def test_documents_are_made_as_doc_of_makes_them() -> None:
    """The generated decoder makes documents with `object.__new__` (as `Doc.of` does)."""
    from p1daemon.reading import model
    from p1daemon.reading.doc import Doc

    classes = [c for c in vars(model).values() if isinstance(c, type) and issubclass(c, Doc)]
    assert model.EnergyDirection in classes and model.Reading in classes
    for cls in classes:
        assert cls.__new__ is object.__new__, cls


@pytest.mark.parametrize(
    "line",
    [
        b"1-0:1.7.0(%s.0*kW)",  # a power
        b"1-0:32.7.0(%s*V)",  # a voltage
        b"0-0:96.7.21(%s)",  # a count
        b"0-0:96.14.0(%s)",  # the tariff
    ],
)
def test_numbers_whose_digits_decide_more_than_their_value(line: bytes) -> None:
    """1 and 309 zeros is a float, 9 and 309 zeros infinity (None in the reading); more
    than 4,300 digits are no int at all: such numbers are never taken in place."""
    head = b"/ISK5\\2M550T-1012\r\n\r\n1-3:0.2.8(50)\r\n"
    for digits in (309, 5000):
        parser = LayoutParser()
        small = head + line % (b"1" + b"0" * (digits - 1)) + b"\r\n!"
        for _ in range(2):
            _assert_same(parser, Frame(small, 0x1234, True))
        _assert_same(parser, Frame(small.replace(b"(1", b"(9"), 0x1234, True))
        _assert_same(parser, Frame(small.replace(b"(1", b"(2"), 0x1234, True))


@pytest.mark.parametrize(
    "registers",
    [
        [b"1-0:1.8.1(000123.456*kWh)", b"1-0:1.8.2(0045.60*kWh)"],  # decimals differ
        [b"1-0:1.8.1(000123*kWh)", b"1-0:1.8.2(000045*kWh)"],  # no decimals
        [b"1-0:1.8.1(000123*kWh)", b"1-0:1.8.2(000045.5*kWh)"],
        [b"1-0:1.8.%d(0001%d.999*kWh)" % (t, t) for t in (1, 2, 3, 4)],
        [b"1-0:1.8.1(000001.100*kWh)", b"1-0:1.8.0(000002.200*kWh)"],  # a total register
        [b"1-0:1.8.1(12345678901234567.891*kWh)"],  # 21 characters: not plain
    ],
)
def test_tariff_totals(registers: list[bytes]) -> None:
    """Every way `_energy` sums or takes the total, with digits changed after the layout."""
    body = b"/ISK5\\2M550T-1012\r\n\r\n" + b"\r\n".join(registers) + b"\r\n!"
    parser = LayoutParser()
    rng = random.Random(body)
    for _ in range(2):
        _assert_same(parser, Frame(body, 0x1234, True))
    for _ in range(50):
        _assert_same(parser, Frame(_with_digits(body, rng, 3), 0x1234, True))
