"""Differential test: every register that both p1daemon and dsmr-parser read must agree exactly.

dsmr-parser (ndokter/dsmr_parser, a dev dependency only) is the most used Python P1 parser, and
it shares no code with ours. For every valid shared capture we let it parse the same telegram
and compare each object it reports, by the OBIS code of the line it came from, with the field
of our reading that holds it; objects we do not interpret must sit verbatim in `other`.

dsmr-parser's `Telegram` keeps only one object per name (an M-Bus line can shadow a main-meter
one), so we walk its specification exactly as `TelegramParser.parse` does, after checking that
`parse` itself accepts the telegram (CRC included).

Where the two legitimately differ, we compare only what both report; each rule is marked RULE
below and accepts a difference only in the exact situation it describes:

- RULE placeholder-time: 000000000000, 632525252525 (the "invalid" time), 700101... (the Unix
  epoch of an unconfigured M-Bus channel) and 000101... (2000-01-01 in an empty failure-log slot)
  are "no reading" for us (null) and a date for dsmr-parser.
- RULE placeholder-mbus: an M-Bus value `00000000` without unit is null for us, 0 for them.
- RULE placeholder-peak: a 98.1.0 history entry whose peak time is a placeholder has no peak
  for us (null), dsmr-parser reports its 0 kW.
- RULE dst-flag: a timestamp's S/W flag gives its offset for us (the issue: S is +02:00, W is
  +01:00); dsmr-parser takes the offset from the Europe/Amsterdam calendar. Where the flag
  contradicts the calendar the instants differ, so there we compare the wall-clock time.
- RULE hex-text: we decode hex octet strings (equipment ids, messages) to text, dsmr-parser
  keeps the hex: ours must be the text that hex spells (or the same string, if not hex text).
- RULE units: dsmr-parser keeps the meter's unit (Wh, W); we report kWh / kW. Theirs is scaled
  exactly (Decimal.scaleb) before comparing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import SharedFixture, require_shared_fixtures, shared_fixtures
from test_shared_fixtures import key_for

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Frame
from p1daemon.parse.telegram import parse_telegram
from p1daemon.reading.model import Reading

dsmr_specs = pytest.importorskip("dsmr_parser.telegram_specifications", reason="dev dependency")
dsmr_parsers = pytest.importorskip("dsmr_parser.parsers", reason="dev dependency")
dsmr_exceptions = pytest.importorskip("dsmr_parser.exceptions", reason="dev dependency")

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
VALID = [fixture for fixture in shared_fixtures() if fixture.valid_frames > 0]


# -- choosing dsmr-parser's specification by what the telegram contains ----------------------

_SAGEMCOM_PLAIN = {**dsmr_specs.SAGEMCOM_T210_D_R, "general_global_cipher": False}
_SPEC_RULES: list[tuple[str, Callable[[str, Frame], bool], list[tuple[str, dict[str, Any]]]]] = [
    (
        "Belgian version object 0-0:96.1.4",
        lambda text, _: "\n0-0:96.1.4(" in text,
        [("BELGIUM_FLUVIUS", dsmr_specs.BELGIUM_FLUVIUS)],
    ),
    ("EasyMeter Q3D header", lambda text, _: text[1:4] == "ESY", [("Q3D", dsmr_specs.Q3D)]),
    (
        "0-0:42.0.0 logical device name without P1 version (E.ON Hungary)",
        lambda text, _: "\n0-0:42.0.0(" in text and "\n1-3:0.2.8(" not in text,
        [("EON_HUNGARY", dsmr_specs.EON_HUNGARY)],
    ),
    (
        "totals in Wh (Austrian Sagemcom T210-D-r)",
        lambda text, _: re.search(r"\n1-0:1\.8\.0\(\d+\*Wh\)", text) is not None,
        [("SAGEMCOM_T210_D_R (plaintext)", _SAGEMCOM_PLAIN)],
    ),
    (
        "Luxembourg logical device name",
        lambda text, _: "\n0-0:42.0.0(" in text,
        [("LUXEMBOURG_SMARTY", dsmr_specs.LUXEMBOURG_SMARTY)],
    ),
    ("P1 version 5.x", lambda text, _: "\n1-3:0.2.8(5" in text, [("V5", dsmr_specs.V5)]),
    # dsmr-parser's V4 reads 96.13.1 as a decimal int and raises on hex messages; its V5
    # specification reads the same DSMR 4 objects, so it is the fallback.
    (
        "P1 version 4.x",
        lambda text, _: "\n1-3:0.2.8(4" in text,
        [("V4", dsmr_specs.V4), ("V5", dsmr_specs.V5)],
    ),
    ("no CRC: DSMR 2.2/3.0", lambda _, frame: frame.crc is None, [("V2_2", dsmr_specs.V2_2)]),
]


@cache
def _parser(spec_name: str) -> Any:
    spec = next(s for _, _, cands in _SPEC_RULES for name, s in cands if name == spec_name)
    return dsmr_parsers.TelegramParser(spec)


def wire_text(frame: Frame) -> str:
    """The telegram as dsmr-parser expects it: '/' ... '!' + CRC + CRLF."""
    crc = f"{frame.crc:04X}" if frame.crc is not None else ""
    return frame.body.decode("ascii") + crc + "\r\n"


def choose_parser(text: str, frame: Frame) -> tuple[str, Any] | str:
    """The first fitting specification dsmr-parser accepts, or why there is none."""
    for description, fits, candidates in _SPEC_RULES:
        if not fits(text, frame):
            continue
        failures = []
        for name, _ in candidates:
            parser = _parser(name)
            try:
                parser.parse(text, throw_ex=False)
            except Exception as exc:  # dsmr-parser's own verdict: skip, with the reason
                failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:80]}")
                continue
            return name, parser
        return f"dsmr-parser raises on this telegram ({description}): " + "; ".join(failures)
    return "no dsmr-parser specification fits this telegram"


_OBIS = re.compile(r"(\d+-\d+:\d+\.\d+\.\d+)")
_GROUP = re.compile(r"\(([^()]*)\)")


def dsmr_objects(parser: Any, text: str) -> Iterator[tuple[str, str, list[str], Any]]:
    """(OBIS, dsmr-parser name, raw value groups, parsed object) for every object it reads."""
    for entry in parser.telegram_specification["objects"]:
        pattern = parser.telegram_specification_regexes[entry["obis_reference"]]
        for line in pattern.findall(text):
            try:
                parsed = entry["value_parser"].parse(line)
            except dsmr_exceptions.ParseError:
                continue  # dsmr-parser logs and drops such a line: it reports nothing
            match = _OBIS.match(line)
            assert match is not None, line
            yield match.group(1), entry["value_name"], _GROUP.findall(line), parsed


# -- which OBIS codes we interpret (everything else must be verbatim in `other`) ------------

_INTERPRETED = {
    "1-0": re.compile(
        r"[12]\.8\.[0-4]|[12]\.7\.0|(21|41|61|22|42|62|31|51|71|32|52|72)\.7\.0"
        r"|(32|52|72)\.3[26]\.0|1\.4\.0|1\.6\.0|31\.4\.0|99\.97\.0"
    ),
    "1-3": re.compile(r"0\.2\.8"),
    "0-0": re.compile(
        r"96\.1\.[014]|1\.0\.0|96\.14\.0|96\.7\.(21|9)|96\.13\.[01]|96\.3\.10|17\.0\.0|98\.1\.0"
    ),
    "0-n": re.compile(r"24\.1\.0|96\.1\.[01]|24\.2\.[1-4]|24\.3\.0|24\.4\.0"),
}


def interpreted(ab: str, code: str) -> bool:
    pattern = _INTERPRETED.get("0-n" if ab in ("0-1", "0-2", "0-3", "0-4") else ab)
    return pattern is not None and pattern.fullmatch(code) is not None


def may_be_other(obis: str, text: str) -> bool:
    """Interpreted codes that still belong in `other` in one situation each."""
    if obis == "0-0:96.1.0":  # the main meter's id is 96.1.1 when it sends both
        return "\n0-0:96.1.1(" in text
    if obis == "0-0:98.1.0":  # only the Belgian layout is a capacity history
        return "(1-0:1.6.0)" not in text
    return False


# -- comparison helpers -------------------------------------------------------------------

_PLACEHOLDER_TST = re.compile(r"^(000000|632525|700101|000101)")
_TO_KILO = {None: 0, "kWh": 0, "kW": 0, "Wh": -3, "W": -3}


def kilo(entry: dict[str, Any]) -> Decimal:
    """RULE units: dsmr-parser's {'value': Decimal, 'unit': 'Wh'} in kWh / kW, exactly."""
    assert entry["unit"] in _TO_KILO, f"unexpected unit {entry['unit']}"
    value: Decimal = entry["value"]
    return value.scaleb(_TO_KILO[entry["unit"]])


def same_time(ours: datetime | None, theirs: datetime | None, raw: str) -> bool:
    if ours is None and theirs is not None and _PLACEHOLDER_TST.match(raw):
        return True  # RULE placeholder-time
    if ours is None or theirs is None:
        return ours is theirs
    if ours == theirs:
        return True
    # RULE dst-flag: only where the flag contradicts the Amsterdam calendar.
    local = theirs.astimezone(AMSTERDAM)
    flag = raw[12:13]
    if flag in ("S", "W") and (flag == "S") != bool(local.dst()):
        return ours.replace(tzinfo=None) == local.replace(tzinfo=None)
    return False


def as_int(theirs: object) -> int | None:
    """dsmr-parser gives some integers as strings ("0002"), and an empty group as None."""
    return None if theirs is None else int(str(theirs))


def same_text(ours: str | None, theirs: object) -> bool:
    """RULE hex-text: ours is the text the hex spells, or the very same string."""
    if theirs is None or theirs == "":
        return ours is None
    if ours is None:
        return False
    text = str(theirs)
    if ours == text:
        return True
    try:
        return ours.encode("latin-1").hex().upper() == text.upper()
    except UnicodeEncodeError:
        return False


class Comparison:
    """Every (what, ours, theirs) pair of one telegram, and the ones that disagree."""

    def __init__(self, reading: Reading, text: str) -> None:
        self.reading = reading
        self.text = text
        self.compared = 0
        self.mismatches: list[str] = []

    def check(self, label: str, agree: bool, ours: object, theirs: object) -> None:
        self.compared += 1
        if not agree:
            self.mismatches.append(f"{label}: ours={ours!r} dsmr-parser={theirs!r}")

    def equal(self, label: str, ours: object, theirs: object) -> None:
        self.check(label, ours == theirs, ours, theirs)

    def decimal(self, label: str, ours: float | None, theirs: Decimal | None) -> None:
        exact = None if ours is None else Decimal(repr(ours))
        self.check(label, exact == theirs, ours, theirs)

    def time(self, label: str, ours: datetime | None, theirs: datetime | None, raw: str) -> None:
        self.check(label, same_time(ours, theirs, raw), ours, theirs)

    def text_value(self, label: str, ours: str | None, theirs: object) -> None:
        self.check(label, same_text(ours, theirs), ours, theirs)


_DIRECTION = {"1": "import_", "2": "export"}
# C of the per-phase objects X.7.0: (block of our reading, field)
_PHASE_OBJECTS = {
    "21": ("import_", "l1_kw"), "41": ("import_", "l2_kw"), "61": ("import_", "l3_kw"),
    "22": ("export", "l1_kw"), "42": ("export", "l2_kw"), "62": ("export", "l3_kw"),
    "32": ("voltage", "l1_v"), "52": ("voltage", "l2_v"), "72": ("voltage", "l3_v"),
    "31": ("current", "l1_a"), "51": ("current", "l2_a"), "71": ("current", "l3_a"),
}  # fmt: skip
_PHASE = {"32": "l1", "52": "l2", "72": "l3"}


def compare_main_meter(c: Comparison, obis: str, code: str, obj: Any, groups: list[str]) -> None:
    """A-B = 1-0: energy, power, voltage, current, Belgian capacity, power-failure log."""
    r = c.reading
    head = code.split(".")[0]
    if code[1:4] == ".8.":  # 1.8.t import, 2.8.t export; t = 0 is the total
        field = "total_kwh" if code[-1] == "0" else f"t{code[-1]}_kwh"
        c.decimal(obis, getattr(getattr(r, _DIRECTION[code[0]]), field), kilo(obj.values[0]))
    elif code in ("1.7.0", "2.7.0"):
        c.decimal(obis, getattr(r, _DIRECTION[code[0]]).power_kw, kilo(obj.values[0]))
    elif code.endswith(".7.0"):  # per phase: 21/41/61 import, 22/42/62 export, 32.. V, 31.. A
        block, field = _PHASE_OBJECTS[head]
        theirs = kilo(obj.values[0]) if field.endswith("_kw") else obj.values[0]["value"]
        c.decimal(obis, getattr(getattr(r, block), field), theirs)
    elif code.endswith((".32.0", ".36.0")):
        counts = r.voltage_sags if code.endswith(".32.0") else r.voltage_swells
        c.equal(obis, getattr(counts, _PHASE[head]), obj.values[0]["value"])
    elif code == "1.4.0":
        c.decimal(obis, r.capacity.average_demand_kw if r.capacity else None, kilo(obj.values[0]))
    elif code == "1.6.0":
        at, peak = (
            (r.capacity.month_max_at, r.capacity.month_max_kw) if r.capacity else (None, None)
        )
        c.time(obis, at, obj.values[0]["value"], groups[0])
        c.decimal(obis, peak, kilo(obj.values[1]))
    elif code == "31.4.0":
        c.decimal(obis, r.fuse_threshold_a, obj.values[0]["value"])
    elif code == "99.97.0":
        log = r.power_failures.log
        c.equal(obis + " entries", len(log), len(obj.buffer))
        for i, (ours, theirs) in enumerate(zip(log, obj.buffer, strict=False)):
            c.time(f"{obis}[{i}] end", ours.end, theirs.datetime, groups[2 + 2 * i])
            c.equal(f"{obis}[{i}] duration", ours.duration_s, theirs.value)
            # duration_s assumes seconds: the meter must say so, or say nothing
            c.check(f"{obis}[{i}] unit", theirs.unit in ("s", None), "s", theirs.unit)


def compare_abstract(c: Comparison, obis: str, code: str, obj: Any, groups: list[str]) -> None:
    """A-B = 0-0 (and 1-3:0.2.8): identity, time, tariff, counters, messages, Belgian extras."""
    r = c.reading
    if code in ("96.1.1", "96.1.0"):
        c.text_value(obis, r.equipment_id, obj.value)
    elif code in ("0.2.8", "96.1.4"):
        c.equal(obis, r.version_code, obj.value)
    elif code == "1.0.0":
        c.time(obis, r.timestamp, obj.value, groups[0])
    elif code == "96.14.0":
        c.equal(obis, r.tariff, as_int(obj.value))
    elif code in ("96.7.21", "96.7.9"):
        ours = r.power_failures.short if code == "96.7.21" else r.power_failures.long
        c.equal(obis, ours, obj.value)
    elif code in ("96.13.0", "96.13.1"):
        c.text_value(obis, r.message if code == "96.13.0" else r.message_code, obj.value)
    elif code == "96.3.10":
        c.equal(obis, r.breaker_state, as_int(obj.value))
    elif code == "17.0.0":
        c.decimal(obis, r.limiter.value if r.limiter else None, obj.value)
        c.equal(obis + " unit", r.limiter.unit if r.limiter else None, obj.unit)
    elif code == "98.1.0":  # Belgian 13-month peak history: (N)(id)(id) then N x (month)(at)(kW)
        history = r.capacity.history if r.capacity else []
        c.equal(obis + " entries", len(history), len(obj))
        for i, (peak, theirs) in enumerate(zip(history, obj, strict=False)):
            raw_month, raw_at = groups[3 + 3 * i], groups[4 + 3 * i]
            c.time(f"{obis}[{i}] month", peak.month, theirs.datetime, raw_month)
            c.time(f"{obis}[{i}] at", peak.at, theirs.occurred, raw_at)
            if peak.max_kw is None and _PLACEHOLDER_TST.match(raw_at):
                continue  # RULE placeholder-peak
            c.decimal(f"{obis}[{i}] kW", peak.max_kw, kilo(theirs.values[2]))


def compare_mbus(c: Comparison, obis: str, code: str, obj: Any, groups: list[str]) -> None:
    """A-B = 0-n: the device on M-Bus channel n, whatever it is."""
    channel = int(obis[2])
    device = next((d for d in c.reading.mbus if d.channel == channel), None)
    if device is None:
        c.check(f"{obis}: no device on channel {channel}", False, None, obj.values)
    elif code == "24.1.0":
        c.equal(obis, device.device_type, as_int(obj.value))
    elif code in ("96.1.0", "96.1.1"):
        c.text_value(obis, device.equipment_id, obj.value)
    elif code == "24.4.0":
        c.equal(obis, device.valve, as_int(obj.value))
    else:  # 24.2.x (time)(value*unit), or the DSMR 2.2/3.0 two-line 24.3.0 profile
        c.time(obis + " time", device.timestamp, obj.datetime, groups[0])
        if device.value is None and obj.unit is None and obj.value == 0:
            return  # RULE placeholder-mbus
        c.decimal(obis, device.value, obj.value)
        c.equal(obis + " unit", device.unit, obj.unit)


def compare(reading: Reading, text: str, parser: Any) -> Comparison:
    c = Comparison(reading, text)
    for obis, name, groups, obj in dsmr_objects(parser, text):
        ab, _, code = obis.partition(":")
        if obis in reading.other:
            # Kept verbatim: dsmr-parser must read our raw text exactly as it read the telegram.
            raw = reading.other[obis]
            c.equal(f"{obis} (other)", _reparse(parser, name, obis + raw), _values(obj))
            if interpreted(ab, code) and not may_be_other(obis, text):
                c.check(f"{obis} is ours to interpret, not `other`", False, raw, name)
        elif not interpreted(ab, code):
            c.check(f"{obis} ({name}) neither interpreted nor in `other`", False, None, groups)
        elif ab == "1-0":
            compare_main_meter(c, obis, code, obj, groups)
        elif ab in ("0-0", "1-3"):
            compare_abstract(c, obis, code, obj, groups)
        else:
            compare_mbus(c, obis, code, obj, groups)
    return c


def _reparse(parser: Any, name: str, line: str) -> Any:
    entry = next(e for e in parser.telegram_specification["objects"] if e["value_name"] == name)
    try:
        return _values(entry["value_parser"].parse(line + "\r\n"))
    except dsmr_exceptions.ParseError:
        return None


def _values(obj: Any) -> Any:
    return [_values(item) for item in obj] if isinstance(obj, list) else obj.values


# -- the tests -----------------------------------------------------------------------------


def frames_of(fixture: SharedFixture) -> list[Frame]:
    key, auth_key = key_for(fixture)
    decoder = TelegramDecoder(key=key, auth_key=auth_key)
    events = decoder.feed(fixture.path.read_bytes()) + decoder.flush()
    return [event for event in events if isinstance(event, Frame)]


@pytest.mark.parametrize("fixture", VALID, ids=[fixture.name for fixture in VALID])
def test_every_register_agrees_with_dsmr_parser(
    fixture: SharedFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="dsmr_parser")
    frames = frames_of(fixture)
    assert len(frames) == fixture.valid_frames
    skipped: set[str] = set()
    compared = 0
    for frame in frames:
        text = wire_text(frame)
        chosen = choose_parser(text, frame)
        if isinstance(chosen, str):
            skipped.add(chosen)
            continue
        result = compare(parse_telegram(frame), text, chosen[1])
        assert not result.mismatches, "\n".join(result.mismatches)
        compared += result.compared
    if skipped and not compared:
        pytest.skip("; ".join(sorted(skipped)))
    assert not skipped, skipped
    assert compared >= 2 * len(frames), "too little was compared"


def test_the_comparison_spans_every_specification(caplog: pytest.LogCaptureFixture) -> None:
    """Guard against the differential quietly shrinking (a rule that no longer fits, files
    skipped): the valid captures must exercise dsmr-parser's specifications for DSMR 2.2,
    4 and 5, Belgium, Hungary, Austria and the German EasyMeter."""
    require_shared_fixtures()
    caplog.set_level(logging.CRITICAL, logger="dsmr_parser")
    used = set()
    for fixture in VALID:
        frame = frames_of(fixture)[0]
        chosen = choose_parser(wire_text(frame), frame)
        if not isinstance(chosen, str):
            used.add(chosen[0])
    expected = {"V2_2", "V4", "V5", "BELGIUM_FLUVIUS", "EON_HUNGARY", "Q3D"}
    assert expected | {"SAGEMCOM_T210_D_R (plaintext)"} <= used


def test_smarty_decryption_agrees_with_dlms_cosem() -> None:
    """dsmr-parser decrypts Smarty frames with dlms_cosem; our plaintext must be identical."""
    fixtures = [f for f in require_shared_fixtures() if f.path.suffix == ".bin" and f.valid_frames]
    if not fixtures:
        pytest.skip("no valid encrypted capture in index.tsv")
    buffers = pytest.importorskip("dsmr_parser.clients.telegram_buffer")
    apdus = pytest.importorskip("dlms_cosem.connection")
    parser = dsmr_parsers.TelegramParser(dsmr_specs.SAGEMCOM_T210_D_R)
    for fixture in fixtures:
        key, auth_key = key_for(fixture)
        assert key is not None and auth_key is not None
        buffer = buffers.EncryptedTelegramBuffer()
        buffer.append(fixture.path.read_bytes())
        hex_frames = list(buffer.get_all())
        ours = frames_of(fixture)
        assert len(hex_frames) == len(ours) == fixture.valid_frames
        for hex_frame, frame in zip(hex_frames, ours, strict=True):
            apdu = apdus.XDlmsApduFactory.apdu_from_bytes(apdu_bytes=bytes.fromhex(hex_frame))
            assert apdu.to_plain_apdu(key, auth_key) == wire_text(frame).encode("ascii")
            # and dsmr-parser reads its own decryption, CRC checked, into the same registers
            telegram = parser.parse(hex_frame, key.hex(), auth_key.hex())
            plain_parser = _parser("SAGEMCOM_T210_D_R (plaintext)")
            result = compare(parse_telegram(frame), wire_text(frame), plain_parser)
            assert not result.mismatches
            assert len(list(telegram)) == len(list(dsmr_objects(plain_parser, wire_text(frame))))


# -- bugs this comparison found in p1daemon, pinned down -------------------------------------


def _fixture_frame(name: str) -> Frame:
    fixture = next((f for f in VALID if f.name == name), None)
    if fixture is None:
        require_shared_fixtures()
        pytest.fail(f"{name} is no longer a valid capture in index.tsv")
    return frames_of(fixture)[0]


def test_value_group_f_written_with_a_dot_is_the_current_value() -> None:
    """`1-0:21.7.0.255(01.111*kW)` is L1 import power (F = 255 is "current"), like `*255`."""
    frame = _fixture_frame("robthree-dsmrparser-net/v4_2_test_header_powerfail_textmsg.txt")
    reading = parse_telegram(frame)
    assert (reading.import_.l1_kw, reading.export.l3_kw) == (1.111, 6.666)
    assert not any(obis.startswith("1-0:21.7.0") for obis in reading.other)


def test_another_value_group_f_is_not_taken_for_the_current_value() -> None:
    """`*01` is a billing-period value: publishing it as the current register would be wrong."""
    frame = _fixture_frame("robthree-dsmrparser-net/v4_2_test_header_powerfail_textmsg.txt")
    body = frame.body.replace(b"1-0:21.7.0.255(", b"1-0:21.7.0*01(")
    reading = parse_telegram(Frame(body, None, False))
    assert reading.import_.l1_kw is None
    assert reading.other["1-0:21.7.0*01"] == "(01.111*kW)"


def test_a_real_zero_gas_reading_is_not_a_placeholder() -> None:
    """DSMR 3.0 `24.3.0(090212160000)...(m3)` + `(00000.000)`: a real time and unit, so 0 m3."""
    frame = _fixture_frame("athombv-node-dsmr-parser/dsmr-3_0-spec-example.txt")
    gas = parse_telegram(frame).mbus[0]
    assert (gas.value, gas.unit, gas.kind) == (0.0, "m3", "gas")
    # the same zero under a placeholder time is no reading
    body = frame.body.replace(b"(090212160000)", b"(000000000000)")
    gas = parse_telegram(Frame(body, None, False)).mbus[0]
    assert (gas.value, gas.unit, gas.timestamp) == (None, None, None)
