"""`p1daemon parse` as a user runs it: a real process, real files, stdin, exit codes.

Every run also checks the one promise that holds for any input: no Python traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import OWN_FIXTURES, REPO

TEST_KEY = "70316461656D6F6E2D746573746B6579"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def docs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines()]

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.splitlines()


def p1(*args: str | Path, stdin: bytes = b"") -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "p1daemon", "parse", *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    result = Result(
        done.returncode,
        done.stdout.decode("utf-8"),
        done.stderr.decode("utf-8", "replace"),
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout
    return result


def fixture(name: str) -> Path:
    return OWN_FIXTURES / name


def test_single_telegram_file() -> None:
    result = p1(fixture("nl/dsmr50_three_phase_export.txt"))
    assert result.code == 0
    assert result.stderr == ""
    [doc] = result.docs
    assert doc["equipment_id"] == "P1D0000000000001"
    assert doc["import"]["total_kwh"] == 7531.103
    assert doc["export"]["power_kw"] == 2.318


def test_one_json_line_per_telegram_in_file_order() -> None:
    result = p1(fixture("demo/carport.txt"), fixture("nl/dsmr42_single_phase.txt"))
    assert result.code == 0
    docs = result.docs
    assert len(docs) == 121
    assert docs[0]["timestamp"] == "2024-06-21T12:29:00+02:00"
    assert docs[119]["timestamp"] == "2024-06-21T12:30:59+02:00"
    assert docs[120]["equipment_id"] == "P1D0000000000042"
    assert all("\n" not in line for line in result.stdout.splitlines())


def test_stream_with_drops_exits_1_with_one_stderr_line_per_drop() -> None:
    path = fixture("stream/line_noise.txt")
    result = p1(path)
    assert result.code == 1
    assert [d["import"]["t1_kwh"] for d in result.docs] == [100.001, 100.002, 100.003]
    lines = result.error_lines
    assert len(lines) == 4
    for line, reason in zip(lines, ["garbage", "garbage", "truncated", "garbage"], strict=True):
        assert reason in line and str(path) in line


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("crc/bad_crc.txt", "crc_mismatch"),
        ("crc/missing_crc_dsmr50.txt", "missing_crc"),
        ("stream/oversized.txt", "oversized"),
        ("stream/cut_off_then_complete.txt", "truncated"),
    ],
)
def test_each_drop_reason_reaches_stderr(name: str, reason: str) -> None:
    result = p1(fixture(name))
    assert result.code == 1
    [line] = result.error_lines
    assert reason in line


def test_stdin_dash_reads_the_same_as_the_file() -> None:
    path = fixture("stream/line_noise.txt")
    from_file = p1(path)
    from_stdin = p1("-", stdin=path.read_bytes())
    assert from_stdin.code == from_file.code == 1
    assert from_stdin.stdout == from_file.stdout
    assert len(from_stdin.error_lines) == 4


def test_no_crc_accepts_wrong_and_missing_crcs() -> None:
    result = p1("--no-crc", fixture("crc/bad_crc.txt"), fixture("crc/missing_crc_dsmr50.txt"))
    assert result.code == 0 and result.stderr == ""
    assert [d["equipment_id"] for d in result.docs] == ["P1D0000000000042", "P1D0000000000001"]


def test_smarty_key() -> None:
    result = p1("--key", TEST_KEY, fixture("lu/smarty_encrypted.bin"))
    assert result.code == 0 and result.stderr == ""
    assert [d["import"]["total_kwh"] for d in result.docs] == [12345.678, 12345.681]


def test_smarty_key_is_case_insensitive() -> None:
    result = p1("--key", TEST_KEY.lower(), fixture("lu/smarty_encrypted.bin"))
    assert result.code == 0 and len(result.docs) == 2


def test_smarty_wrong_key_is_a_drop_not_garbage_output() -> None:
    result = p1("--key", TEST_KEY, fixture("lu/smarty_wrong_key.bin"))
    assert result.code == 1
    assert result.stdout == ""
    [line] = result.error_lines
    assert "decrypt_failed" in line


def test_smarty_auth_key_none() -> None:
    path = fixture("lu/smarty_no_aad.bin")
    assert p1("--key", TEST_KEY, path).code == 1
    result = p1("--key", TEST_KEY, "--auth-key", "none", path)
    assert result.code == 0 and len(result.docs) == 1


def test_explicit_standard_auth_key() -> None:
    path = fixture("lu/smarty_encrypted.bin")
    result = p1("--key", TEST_KEY, "--auth-key", "00112233445566778899AABBCCDDEEFF", path)
    assert result.code == 0 and len(result.docs) == 2


# -- usage errors and hostile input: exit 2 or 1, never a traceback ----------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--key", "xyz"],
        ["--key", "0123"],
        ["--key", ""],
        ["--key", TEST_KEY, "--auth-key", "not-hex"],
    ],
)
def test_bad_key_is_a_usage_error(args: list[str]) -> None:
    result = p1(*args, fixture("lu/smarty_encrypted.bin"))
    assert result.code == 2
    assert result.stdout == ""
    assert "32 hexadecimal digits" in result.stderr


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    result = p1(missing)
    assert result.code == 2
    assert str(missing) in result.stderr


def test_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = p1(tmp_path)
    assert result.code == 2
    assert str(tmp_path) in result.stderr


def test_no_path_is_a_usage_error() -> None:
    assert p1().code == 2


def test_empty_input_is_no_telegram_and_no_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    for result in (p1(empty), p1("-", stdin=b"")):
        assert result.code == 0
        assert result.stdout == "" and result.stderr == ""


def test_binary_junk(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    # Deterministic bytes of every value, with frame markers of both kinds among them.
    data = bytes((i * 167 + 13) % 256 for i in range(20_000)) + b"/\xff\xfe!12AB\xdb\x08"
    junk.write_bytes(data)
    result = p1(junk)
    assert result.code == 1
    assert result.stdout == ""
    assert result.error_lines and all("dropped" in line for line in result.error_lines)
    keyed = p1("--key", TEST_KEY, junk)
    assert keyed.code == 1 and keyed.stdout == ""


def test_stdout_is_only_json_even_when_frames_are_dropped() -> None:
    result = p1(fixture("stream/line_noise.txt"), fixture("crc/bad_crc.txt"))
    assert len(result.docs) == 3  # every stdout line parses as JSON


@pytest.mark.parametrize("value", ["0", "-5", "abc"])
def test_nonsense_frame_limit_is_a_usage_error(value: str) -> None:
    result = p1("--max-frame", value, fixture("crc/lowercase_crc.txt"))
    assert result.code == 2
    assert "--max-frame" in result.stderr


def test_larger_frame_limit_admits_the_oversized_fixture() -> None:
    result = p1("--max-frame", "16384", fixture("stream/oversized.txt"))
    assert result.code == 0 and len(result.docs) == 2


# -- issue 9: a flood of frame markers is a few grouped lines, not one per byte ------------


@pytest.mark.parametrize("unit", [b"/", b"/\r\n", b"/\n!\n", b"x/"])
def test_a_flood_of_slashes_is_reported_in_grouped_lines(tmp_path: Path, unit: bytes) -> None:
    flood = tmp_path / "flood.bin"
    good = fixture("nl/dsmr50_three_phase_export.txt").read_bytes()
    junk = unit * (200_000 // len(unit))
    flood.write_bytes(junk + good)
    result = p1("--max-frame", "1024", flood)
    assert result.code == 1
    assert [d["equipment_id"] for d in result.docs] == ["P1D0000000000001"]
    lines = result.error_lines
    # One line per --max-frame bytes of junk at most, as for any other flood.
    assert 1 <= len(lines) <= len(junk) // 1024 + 1, lines[:5]
    assert all(line.startswith(f"{flood}: dropped ") for line in lines)
    sizes = [int(line.rsplit("(", 1)[1].split()[0]) for line in lines]
    assert sum(sizes) >= len(junk) if unit != b"/" else sizes == [1024]
