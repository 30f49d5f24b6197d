"""Replays every real field capture in ../shared/fixtures through the same path a serial port takes.

The expected counts come from index.tsv (written by people who read the captures, not by this
code) and the Smarty keys from the README beside it, so a new capture or a new key there is
picked up without touching this file. Values in the spot checks were read off the capture files
by hand; they are never copied from p1daemon's output.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections.abc import Iterable
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SHARED_FIXTURES, SharedFixture, require_shared_fixtures, shared_fixtures

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped, DropReason, Frame
from p1daemon.frame.framer import Framer
from p1daemon.parse.stream import ReadingStream
from p1daemon.parse.telegram import _split_lines, split_objects
from p1daemon.reading.model import Reading

FIXTURES = shared_fixtures()
BY_NAME = {fixture.name: fixture for fixture in FIXTURES}
CHUNKINGS = (0, 1, 7, 4096)  # 0: the whole file in one feed


def _ids(fixtures: Iterable[SharedFixture]) -> list[str]:
    return [fixture.name for fixture in fixtures]


# -- Smarty keys, read from the README's "Encrypted frames" table ----------------------------

_KEY_ROW = re.compile(
    r"^\|\s*`([^`]+\.bin)`\s*\|\s*`([0-9A-Fa-f]{32})`\s*\|(.*)\|\s*$", re.MULTILINE
)


@cache
def smarty_keys() -> dict[str, tuple[bytes, bytes | None]]:
    """`{fixture name: (key, AK or None for frames authenticated without AAD)}`."""
    readme = (SHARED_FIXTURES / "README.md").read_text(encoding="utf-8")
    keys: dict[str, tuple[bytes, bytes | None]] = {}
    for path, key, ak_column in _KEY_ROW.findall(readme):
        ak = re.search(r"`([0-9A-Fa-f]{32})`", ak_column)
        keys[path] = (bytes.fromhex(key), bytes.fromhex(ak.group(1)) if ak else None)
    return keys


def key_for(fixture: SharedFixture) -> tuple[bytes, bytes | None] | tuple[None, None]:
    if fixture.path.suffix != ".bin":
        return None, None
    keys = smarty_keys()
    assert fixture.name in keys, f"README.md gives no key for {fixture.name}"
    return keys[fixture.name]


# -- replay helpers ------------------------------------------------------------------------


def replay(
    data: bytes,
    *,
    chunk: int = 0,
    check_crc: bool = True,
    key: bytes | None = None,
    auth_key: bytes | None = None,
) -> list[Reading | Dropped]:
    stream = ReadingStream(TelegramDecoder(check_crc=check_crc, key=key, auth_key=auth_key))
    step = chunk or max(len(data), 1)
    events: list[Reading | Dropped] = []
    for start in range(0, len(data), step):
        events += stream.feed(data[start : start + step])
    return events + stream.flush()


def replay_fixture(fixture: SharedFixture, **options: Any) -> list[Reading | Dropped]:
    key, auth_key = key_for(fixture)
    return replay(fixture.path.read_bytes(), key=key, auth_key=auth_key, **options)


def readings(events: list[Reading | Dropped]) -> list[Reading]:
    return [event for event in events if isinstance(event, Reading)]


def drops(events: list[Reading | Dropped]) -> list[Dropped]:
    return [event for event in events if isinstance(event, Dropped)]


# A telegram starts with '/' and a header line; counting them independently of the framer tells
# how many telegrams a file offers, so every one that is not accepted must be accounted for.
# (No parentheses: "/-test)" is the tail of a text message holding '/', not a header; issue 9.)
_HEADER = re.compile(rb"/[^\r\n/!()]{3,}\r?\n")
# A complete telegram per the README: '/' ... '!' with no other '/' in between.
_COMPLETE = re.compile(rb"/[^/!]+!")


def test_shared_fixtures_present() -> None:
    require_shared_fixtures()


def test_index_lists_every_file() -> None:
    fixtures = require_shared_fixtures()
    on_disk = {
        str(path.relative_to(SHARED_FIXTURES))
        for path in SHARED_FIXTURES.rglob("*")
        if path.is_file() and path.name not in {"README.md", "index.tsv"}
    }
    assert on_disk == {fixture.name for fixture in fixtures}
    assert all(fixture.path.is_file() for fixture in fixtures)


@pytest.mark.parametrize("fixture", FIXTURES, ids=_ids(FIXTURES))
def test_replay_yields_exactly_the_valid_frames(fixture: SharedFixture) -> None:
    events = replay_fixture(fixture)
    assert len(readings(events)) == fixture.valid_frames, [d.describe() for d in drops(events)]
    for dropped in drops(events):
        assert isinstance(dropped.reason, DropReason)
        assert dropped.detail
    if fixture.path.suffix != ".bin":
        offered = len(_HEADER.findall(fixture.path.read_bytes()))
        assert len(drops(events)) >= offered - fixture.valid_frames
    if fixture.valid_frames == 0:
        assert drops(events), "a file without a valid telegram must say why"


@pytest.mark.parametrize("fixture", FIXTURES, ids=_ids(FIXTURES))
def test_any_chunking_gives_the_same_events(fixture: SharedFixture) -> None:
    """A serial port delivers a few bytes at a time, a file in one piece: the same bytes
    must give the same readings and the same drops (reason and size), however split."""
    outcomes = set()
    for chunk in CHUNKINGS:
        events = replay_fixture(fixture, chunk=chunk)
        outcomes.add(
            tuple(
                event.model_dump_json()
                if isinstance(event, Reading)
                else (event.reason, event.size)
                for event in events
            )
        )
    assert len(outcomes) == 1


BINS = [fixture for fixture in FIXTURES if fixture.path.suffix == ".bin"]


@pytest.mark.parametrize("fixture", BINS, ids=_ids(BINS))
def test_encrypted_frames_without_the_key_yield_nothing(fixture: SharedFixture) -> None:
    events = replay(fixture.path.read_bytes())
    assert readings(events) == []
    assert drops(events)


@pytest.mark.parametrize("fixture", BINS, ids=_ids(BINS))
def test_encrypted_frames_with_a_wrong_key_are_refused(fixture: SharedFixture) -> None:
    key, auth_key = key_for(fixture)
    assert key is not None
    wrong = bytes(byte ^ 0x01 for byte in key)
    events = replay(fixture.path.read_bytes(), key=wrong, auth_key=auth_key)
    assert readings(events) == []
    assert DropReason.DECRYPT_FAILED in {dropped.reason for dropped in drops(events)}


def _has_complete_telegram(fixture: SharedFixture) -> bool:
    if fixture.path.suffix == ".bin":
        return True  # the README says each decrypts to one whole telegram
    return _COMPLETE.search(fixture.path.read_bytes()) is not None


UNCHECKED = [f for f in FIXTURES if f.valid_frames == 0 and _has_complete_telegram(f)]


@pytest.mark.parametrize("fixture", UNCHECKED, ids=_ids(UNCHECKED))
def test_rejected_examples_parse_with_crc_checking_off(fixture: SharedFixture) -> None:
    events = replay_fixture(fixture, check_crc=False)
    parsed = readings(events)
    assert parsed, [d.describe() for d in drops(events)]
    assert all(reading.header for reading in parsed)
    assert not any(d.reason is DropReason.UNPARSABLE for d in drops(events))


def test_crc_checking_off_keeps_every_valid_reading() -> None:
    for fixture in require_shared_fixtures():
        checked = [r.model_dump_json() for r in readings(replay_fixture(fixture))]
        unchecked = iter(
            r.model_dump_json() for r in readings(replay_fixture(fixture, check_crc=False))
        )
        # `checked` must be a subsequence of `unchecked`: switching checks off only adds.
        assert all(doc in unchecked for doc in checked), fixture.name


# -- semantics, spot-checked against values read from the capture files ---------------------

_MBUS_FIELDS = (
    "channel",
    "device_type",
    "kind",
    "equipment_id",
    "value",
    "unit",
    "timestamp",
    "valve",
)

SPOT_CHECKS: dict[str, dict[str, Any]] = {
    # Belgian capacity tariff, incl. the history entry whose peak time is the 632525252525W
    # placeholder: no reading, so neither a time nor a 0 kW peak. Gas on 24.2.3, water type 7.
    "ndokter-dsmr_parser/be_fluvius_v171_alt_gas_water.txt": {
        "version_code": "50217",
        "equipment_id": "1SAG3100721326",
        "timestamp": "2023-11-02T12:15:48+01:00",
        "capacity/average_demand_kw": 0.052,
        "capacity/month_max_kw": 3.064,
        "capacity/month_max_at": "2023-11-02T11:45:00+01:00",
        "capacity/history/#": 4,
        "capacity/history/0": {"month": "2023-08-01T00:00:00+02:00", "at": None, "max_kw": None},
        "capacity/history/1": {
            "month": "2023-09-01T00:00:00+02:00",
            "at": "2023-08-31T18:15:00+02:00",
            "max_kw": 1.862,
        },
        "capacity/history/3/max_kw": 4.927,
        "export/t1_kwh": 0.005,
        "breaker_state": 1,
        "limiter": {"value": 999.9, "unit": "kW"},
        "fuse_threshold_a": 999.0,
        "mbus/0": dict(
            zip(
                _MBUS_FIELDS,
                (1, 3, "gas", "7FLO2123088027", 92.287, "m3", "2023-11-02T12:10:02+01:00", 1),
                strict=True,
            )
        ),
        "mbus/1": dict(
            zip(
                _MBUS_FIELDS,
                (2, 7, "water", "8SET0000961173", 8.579, "m3", "2023-11-02T12:15:32+01:00", None),
                strict=True,
            )
        ),
    },
    # DSMR 2.2: gas in the two-line 24.3.0 profile form on channel 2, time without DST flag.
    "nielsbasjes-dsmr-tools/nl_dsmr22_iskra_mt382_1003_gas_ch2_a.txt": {
        "dsmr_version": "2.2",
        "timestamp": None,
        "import/t2_kwh": 19403.22,
        "export/t1_kwh": 859.681,
        "import/power_kw": 0.89,
        "mbus": [
            dict(
                zip(
                    _MBUS_FIELDS,
                    (
                        2,
                        3,
                        "gas",
                        "28011008306429013",
                        13368.864,
                        "m3",
                        "2021-11-22T21:00:00+01:00",
                        1,
                    ),
                    strict=True,
                )
            )
        ],
    },
    # WarmteLink heat meter in GJ (the capture with the unpadded CRC "!B9F").
    "ndokter-dsmr_parser/v5_warmtelink_heat_unpadded_crc.txt": {
        "equipment_id": "ADC3100000158491",
        "mbus/0/kind": "heat",
        "mbus/0/value": 240.86,
        "mbus/0/unit": "GJ",
        "mbus/0/timestamp": "2026-02-15T20:05:23+01:00",
    },
    # Four M-Bus devices whose types no standard defines: kept, as "unknown". A power-failure
    # log whose 000101000001W slot is a placeholder (its duration is still data). Hex messages.
    "robthree-dsmrparser-net/v5_test_header_4_mbus_gas_heat.txt": {
        "mbus/*/device_type": [303, 909, 808, 101],
        "mbus/*/kind": ["unknown"] * 4,
        "mbus/*/unit": ["m3", "m3", "MJ", "kWh"],
        "mbus/*/value": [12321.232, 32123.212, 33221.122, 11223.322],
        "mbus/1/timestamp": "2020-12-11T10:09:07+02:00",
        "mbus/3/equipment_id": "0000ABCD123456789",
        "power_failures": {
            "short": 15,
            "long": 7,
            "log": [
                {"end": "2000-01-04T18:03:20+01:00", "duration_s": 237126},
                {"end": None, "duration_s": 2147583646},
                {"end": "2020-01-02T01:02:03+01:00", "duration_s": 2317482647},
            ],
        },
        "message_code": "I like big butts and I can not lie",
        "message": "0123456789:;<=>?" * 5,
        "voltage_sags": {"l1": 1, "l2": 10, "l3": 100},
        "voltage_swells": {"l1": 2, "l2": 20, "l3": 200},
        "export/l3_kw": 6.666,
    },
    "nielsbasjes-dsmr-tools/nl_dsmr50_sagemcom_cx2000_long_powerfail_log.txt": {
        "power_failures/short": 933,
        "power_failures/long": 108,
        "power_failures/log/#": 10,
        "power_failures/log/0": {"end": "2018-12-01T03:08:14+01:00", "duration_s": 758635},
        "power_failures/log/1": {"end": "2018-09-04T17:39:23+02:00", "duration_s": 1820},
        "power_failures/log/9": {"end": "2018-02-08T20:07:17+01:00", "duration_s": 266},
    },
    # Austria: Wh / W converted to kWh / kW exactly; reactive registers kept verbatim.
    "ndokter-dsmr_parser/at_sagemcom_t210_d_r.txt": {
        "import": {
            "t1_kwh": 5017.12,
            "t2_kwh": 1528.646,
            "t3_kwh": None,
            "t4_kwh": None,
            "total_kwh": 6545.766,
            "power_kw": 0.286,
            "l1_kw": None,
            "l2_kw": None,
            "l3_kw": None,
        },
        "export/total_kwh": 0.058,
        "export/t1_kwh": 0.0,
        "export/t2_kwh": 0.058,
        "other/1-0:4.8.0": "(003897726*varh)",
        "timestamp": "2022-10-06T15:50:14+02:00",
    },
    # The same Austrian telegram, decrypted from a Smarty-format frame.
    "esphome-libs-dsmr_parser/lu_smarty_format_encrypted_sagemcom_payload.bin": {
        "import/total_kwh": 6545.766,
        "other/1-0:4.7.0": "(000000166*var)",
    },
    # EasyMeter Q3D: W -> kW, the "*255" value group F dropped from the OBIS code.
    "ndokter-dsmr_parser/de_easymeter_q3d_b1024_com1_trailing_garbage.txt": {
        "import/total_kwh": 52185.7825309,
        "export/total_kwh": 19949.3221493,
        "import/l1_kw": 0.74785,
        "import/l3_kw": 0.63973,
        "import/power_kw": 2.12486,
        "other/0-0:96.1.255": "(1ESY1313002565)",
        "other/1-0:0.0.0": "(0272031312565)",
    },
    # A placeholder M-Bus reading (epoch time, 00000000 without unit) is no reading, not 0.
    "ndokter-dsmr_parser/v5_iskra_am550_two_mbus.txt": {
        "mbus/0": dict(zip(_MBUS_FIELDS, (1, 3, "gas", None, None, None, None, None), strict=True)),
        "mbus/1/value": 246.138,
        "mbus/1/timestamp": "2020-04-26T22:30:01+02:00",
        "timestamp": "2020-04-26T22:33:25+02:00",
        "voltage/l3_v": 222.9,
        "tariff": 1,
    },
    "ndokter-dsmr_parser/v5_iskra_mt382_gas_empty_ch2.txt": {
        "mbus/*/channel": [1, 2],
        "mbus/1/value": None,
        "current": {"l1_a": 0.48, "l2_a": 0.44, "l3_a": 0.86},
        "power_failures/log": [],
        "tariff": 2,
    },
    "wassasin-dsmr5/nl_mcs50_zeroed.txt": {"timestamp": None},
    # DSMR 3.0: hex text messages decoded, limiter in A, gas via 24.3.0.
    "ndokter-dsmr_parser/v3_iskra_mt382_text_msg.txt": {
        "message": "0123456789:;<=>?" * 5,
        "message_code": "012345678",
        "limiter": {"value": 16.0, "unit": "A"},
        "mbus/0/value": 1.001,
        "mbus/0/timestamp": "2009-02-12T16:00:00+01:00",
    },
    # Hungary: four tariffs each way; 98.1.0 in a non-Belgian layout is kept raw.
    "ndokter-dsmr_parser/hu_eon_sagemcom_sag5.txt": {
        "timestamp": "2023-07-24T15:07:30+02:00",
        "import/total_kwh": 173.64,
        "import/t4_kwh": 0.0,
        "export/t1_kwh": 401.829,
        "export/power_kw": 2.601,
        "capacity": None,
        "other/1-0:14.7.0": "(50.00*Hz)",
    },
    # Unknown COSEM objects are kept verbatim.
    "nielsbasjes-dsmr-tools/tiny_unknown_cosem_id.txt": {"other": {"0-0:0.0.0": "(101209113020W)"}},
}
SPOT_CHECK_CASES = [
    (name, path, expected)
    for name, checks in SPOT_CHECKS.items()
    for path, expected in checks.items()
]


def _pick(document: Any, path: str) -> Any:
    """Follow "a/b/0/c" through a JSON document; "#" is a length, "*" maps over a list."""
    head, _, rest = path.partition("/")
    if head == "#":
        return len(document)
    if head == "*":
        return [_pick(item, rest) for item in document]
    value = document[int(head)] if isinstance(document, list) else document[head]
    return _pick(value, rest) if rest else value


@cache
def _document(name: str) -> dict[str, Any]:
    fixture = BY_NAME[name]
    parsed = readings(replay_fixture(fixture))
    assert len(parsed) == 1, name
    document: dict[str, Any] = json.loads(parsed[0].model_dump_json())
    return document


@pytest.mark.parametrize(
    ("name", "path", "expected"), SPOT_CHECK_CASES, ids=[f"{n}:{p}" for n, p, _ in SPOT_CHECK_CASES]
)
def test_spot_check(name: str, path: str, expected: Any) -> None:
    if name not in BY_NAME:
        require_shared_fixtures()
        pytest.fail(f"{name} is no longer in index.tsv")
    assert _pick(_document(name), path) == expected


def test_stream_capture_is_a_consistent_time_series() -> None:
    """Ten minutes of one real meter at 1 telegram/s: time moves forward, registers never go
    back, and every telegram carries both directions (export registers present, at zero)."""
    fixture = BY_NAME.get("streams/iskra_am550_dsmr50_566_telegrams.txt") or pytest.skip(
        "stream capture not in index.tsv"
    )
    parsed = readings(replay_fixture(fixture))
    assert len(parsed) == fixture.valid_frames
    for earlier, later in pairwise(parsed):
        assert earlier.timestamp is not None and later.timestamp is not None
        assert later.timestamp > earlier.timestamp
        for direction in ("import_", "export"):
            before, after = getattr(earlier, direction), getattr(later, direction)
            for field in ("t1_kwh", "t2_kwh", "total_kwh"):
                assert getattr(after, field) >= getattr(before, field)
    assert all(r.import_.power_kw is not None and r.export.power_kw == 0.0 for r in parsed)
    first, last = parsed[0].import_.total_kwh, parsed[-1].import_.total_kwh
    assert first is not None and last is not None and last > first  # it was importing


# -- the `p1daemon parse` command over every capture ---------------------------------------


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m p1daemon parse ARGS`, with raw bytes in and UTF-8 text out."""
    result = subprocess.run(
        [sys.executable, "-m", "p1daemon", "parse", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode("utf-8"),
        result.stderr.decode("utf-8", "replace"),
    )


def _expected_output(
    fixtures: list[SharedFixture], **options: Any
) -> tuple[list[str], dict[str, int]]:
    lines: list[str] = []
    drop_counts: dict[str, int] = {}
    for fixture in fixtures:
        events = replay(fixture.path.read_bytes(), **options)
        lines += [reading.model_dump_json() for reading in readings(events)]
        drop_counts[str(fixture.path)] = len(drops(events))
    return lines, drop_counts


def _check_cli(fixtures: list[SharedFixture], *flags: str, check_crc: bool = True) -> list[str]:
    """Run the command over `fixtures`; its output must be what the library gives in-process."""
    result = run_cli(*flags, *(str(fixture.path) for fixture in fixtures))
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    expected_lines, drop_counts = _expected_output(fixtures, check_crc=check_crc)
    lines = result.stdout.splitlines()
    assert lines == expected_lines
    assert all("import" in json.loads(line) for line in lines)
    stderr_lines = result.stderr.splitlines()
    for path, count in drop_counts.items():
        assert sum(line.startswith(f"{path}: dropped ") for line in stderr_lines) == count, path
    assert len(stderr_lines) == sum(drop_counts.values())
    assert result.returncode == (1 if any(drop_counts.values()) else 0), result.stderr
    return lines


def test_cli_over_every_capture() -> None:
    fixtures = require_shared_fixtures()
    lines = _check_cli(fixtures)
    # .bin files without --key yield nothing; every other file its README count.
    assert len(lines) == sum(f.valid_frames for f in fixtures if f.path.suffix != ".bin")
    _check_cli(fixtures, "--no-crc", check_crc=False)


def test_cli_exit_status_is_zero_when_every_frame_was_valid() -> None:
    fixtures = require_shared_fixtures()
    clean = [f for f in fixtures if f.path.suffix != ".bin" and not drops(replay_fixture(f))]
    assert clean
    result = run_cli(*(str(fixture.path) for fixture in clean))
    assert (result.returncode, result.stderr) == (0, "")
    assert len(result.stdout.splitlines()) == sum(fixture.valid_frames for fixture in clean)


@pytest.mark.parametrize("fixture", BINS, ids=_ids(BINS))
def test_cli_decrypts_with_the_key(fixture: SharedFixture) -> None:
    key, auth_key = key_for(fixture)
    assert key is not None
    ak_flag = auth_key.hex() if auth_key is not None else "none"
    for check_crc in (True, False):
        flags = () if check_crc else ("--no-crc",)
        result = run_cli("--key", key.hex(), "--auth-key", ak_flag, *flags, str(fixture.path))
        assert "Traceback" not in result.stderr
        data = fixture.path.read_bytes()
        expected = replay(data, key=key, auth_key=auth_key, check_crc=check_crc)
        lines = result.stdout.splitlines()
        assert lines == [r.model_dump_json() for r in readings(expected)]
        assert result.returncode == (1 if drops(expected) else 0)
        if check_crc:
            assert len(lines) == fixture.valid_frames
        else:
            assert len(lines) == 1  # each decrypts to one whole telegram (README)


def test_cli_reads_a_stream_from_stdin() -> None:
    fixture = BY_NAME.get("streams/iskra_am550_dsmr50_566_telegrams.txt") or pytest.skip(
        "stream capture not in index.tsv"
    )
    result = run_cli("-", stdin=fixture.path.read_bytes())
    assert "Traceback" not in result.stderr
    assert len(result.stdout.splitlines()) == fixture.valid_frames
    assert result.returncode == (1 if result.stderr else 0)


def test_fixture_paths_are_outside_the_repository() -> None:
    """The captures are replayed from ../shared, never copied in (README of the captures)."""
    for fixture in require_shared_fixtures():
        assert REPO not in fixture.path.resolve().parents
        assert not (REPO / "fixtures" / Path(fixture.name).name).exists()


# -- the parser's fast path must change nothing ---------------------------------------------


def _mutations(body: str, rng: random.Random, count: int) -> list[str]:
    """Telegram bodies with lines dropped, doubled, swapped, cut or with odd bytes put in."""
    noise = "()*:.-/!\r\n\x0b\t 0123456789ABCDEFSWkWhm3"
    out = []
    for _ in range(count):
        lines = body.split("\r\n")
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(lines))
            line = lines[i]
            where = rng.randrange(len(line) + 1)
            lines[i] = rng.choice(
                (
                    "",
                    line + "\r\n" + line,
                    line[:where],
                    line[:where] + rng.choice(noise) + line[where:],
                    line[:where] + line[where + 1 :],
                    lines[rng.randrange(len(lines))],
                )
            )
        out.append("\r\n".join(lines))
    return out


def test_fast_split_agrees_with_the_line_by_line_split() -> None:
    """`split_objects` splits a well-formed telegram with one regex and falls back to a
    line-by-line loop otherwise; on every capture and on mangled variants of them, the
    result must be exactly what the loop alone gives."""
    rng = random.Random(2)
    checked = 0
    for fixture in require_shared_fixtures():
        if fixture.path.suffix == ".bin":
            continue
        for event in Framer(check_crc=False).feed(fixture.path.read_bytes())[:2]:
            if not isinstance(event, Frame):
                continue
            body = event.body[:-1].decode("ascii", "replace")
            for variant in [body, *_mutations(body, rng, 40)]:
                lines = variant.splitlines()
                slow = (lines[0][1:], *_split_lines(lines)) if lines else ("", {}, [])
                assert split_objects(variant) == slow, variant
                checked += 1
    assert checked > 1000
