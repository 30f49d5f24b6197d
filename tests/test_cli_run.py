"""The commands as a user runs them: `run`, `check-config` and `probe` in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_daemon_support import PtyMeter, telegram, wait_until

from p1daemon.frame.crc import crc16_arc

REPO = Path(__file__).resolve().parents[1]
HOUSE_EAN = "871685900012345674"
CARPORT_EAN = "871685900012345681"


def p1daemon(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "p1daemon", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=kw.get("cwd", REPO),  # type: ignore[arg-type]
    )


def finish(proc: subprocess.Popen[str], timeout: float = 10) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def two_meter_config(tmp_path: Path, *, loop: bool, interval: float) -> Path:
    (tmp_path / "house.txt").write_bytes(b"".join(telegram(i, "E-HOUSE") for i in range(1, 41)))
    (tmp_path / "carport.txt").write_bytes(b"".join(telegram(i, "E-CAR") for i in range(1, 21)))
    path = tmp_path / "p1daemon.toml"
    path.write_text(
        f"""
[[meters]]
name = "house"
role = "primary"
ean = "{HOUSE_EAN}"
source = "replay:house.txt"
replay_interval_s = {interval}
replay_loop = {str(loop).lower()}

[[meters]]
name = "carport"
role = "secondary"
ean = "{CARPORT_EAN}"
source = "replay:carport.txt"
replay_interval_s = {interval}
replay_loop = {str(loop).lower()}
""",
        encoding="utf-8",
    )
    return path


def test_run_prints_json_lines_and_exits_when_the_replays_end(tmp_path: Path) -> None:
    config = two_meter_config(tmp_path, loop=False, interval=0)
    code, out, err = finish(p1daemon("run", "--config", str(config), "--stdout"))
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    rows = [row for row in lines if "topic" not in row]  # the views' documents have a topic
    by_meter = {
        name: [row for row in rows if row["meter"] == name] for name in ("house", "carport")
    }
    assert len(by_meter["house"]) == 40 and len(by_meter["carport"]) == 20
    assert {(r["role"], r["ean"]) for r in by_meter["house"]} == {("primary", HOUSE_EAN)}
    assert {(r["role"], r["ean"]) for r in by_meter["carport"]} == {("secondary", CARPORT_EAN)}
    assert [r["import"]["t1_kwh"] for r in by_meter["house"]] == [i / 1000 for i in range(1, 41)]
    assert all(r["meter_replaced"] is False and r["received_at"] for r in rows)
    assert "Traceback" not in err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_quickly_and_cleanly_on_a_signal(tmp_path: Path, signum: int) -> None:
    config = two_meter_config(tmp_path, loop=True, interval=0.01)
    proc = p1daemon("run", "--config", str(config), "--stdout")
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    # Drain stdout all along: a full pipe would stall the daemon, and mixing readline()
    # with communicate() loses what the text wrapper had buffered.
    drain = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    drain.start()
    assert wait_until(lambda: len(lines) > 0, timeout=10)  # the daemon is up and reading
    began = time.monotonic()
    proc.send_signal(signum)
    code = proc.wait(timeout=5)
    stopped_after = time.monotonic() - began
    drain.join(5)
    err = proc.stderr.read()
    assert code == 0, err
    assert stopped_after < 3
    for line in lines:  # every line complete: nothing cut off by the stop
        row = json.loads(line)
        if "topic" not in row:  # a reading, not one of the views' documents
            assert row["meter"] in {"house", "carport"}
    assert f"{signal.Signals(signum).name} received, stopping" in err
    assert "Traceback" not in err


def test_run_refuses_a_bad_config_with_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[meters]]\nname = "House"\nsource = "/dev/x"\nean = "871685900012345677"\n')
    code, out, err = finish(p1daemon("run", "--config", str(path), "--stdout"))
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"{path}: meters[0].name: use lower-case letters, digits, '-' and '_' only "
        "(it becomes an MQTT topic level), got 'House'",
        f"{path}: meters[0].ean: check digit should be 4, got 7",
    ]


def test_run_with_a_missing_config_file(tmp_path: Path) -> None:
    code, _, err = finish(p1daemon("run", "--config", str(tmp_path / "nope.toml")))
    assert code == 1
    assert err.splitlines() == [f"{tmp_path / 'nope.toml'}: cannot read: No such file or directory"]


def test_check_config_prints_the_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    config = two_meter_config(tmp_path, loop=False, interval=1)
    key = "0123456789ABCDEF0123456789ABCDEF"
    config.write_text(
        '[mqtt]\nusername = "meter"\n' + config.read_text(encoding="utf-8"), encoding="utf-8"
    )
    env = {"P1DAEMON_MQTT_PASSWORD": "hunter2", "P1DAEMON_METER_CARPORT_KEY": key}
    code, out, err = finish(p1daemon("check-config", str(config), env=env))
    assert code == 0, err
    assert "hunter2" not in out and key not in out and key.lower() not in out
    assert 'password = "********"' in out
    assert out.splitlines().count('key = "********"') == 1  # carport's key; house has none
    assert "# key is not set" in out
    assert f'source = "replay:{tmp_path / "house.txt"}"' in out
    assert "silence_timeout_s = 30.0" in out  # defaults shown too


def test_check_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "p1daemon.toml"
    path.write_text("[[meters]\n")
    code, out, err = finish(p1daemon("check-config", "p1daemon.toml", cwd=tmp_path))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "p1daemon.toml: TOML syntax error: expected ']]' at the end of an array declaration "
        "(at line 1, column 9)"
    ]


def test_check_config_accepts_the_shipped_files() -> None:
    code, out, err = finish(p1daemon("check-config", "config/p1daemon.example.toml"))
    assert code == 0, err
    assert out.startswith("# Effective configuration from config/p1daemon.example.toml")


def rich_telegram() -> bytes:
    body = (
        b"/ISK5\\2M550E-1012\r\n\r\n"
        b"1-3:0.2.8(50)\r\n"
        b"0-0:1.0.0(240101120000W)\r\n"
        b"0-0:96.1.1(4530303434303037313331363530363138)\r\n"
        b"1-0:1.8.1(003432.827*kWh)\r\n"
        b"1-0:1.8.2(003224.632*kWh)\r\n"
        b"1-0:2.8.1(000012.000*kWh)\r\n"
        b"1-0:2.8.2(000034.000*kWh)\r\n"
        b"0-0:96.14.0(0001)\r\n"
        b"1-0:1.7.0(00.378*kW)\r\n"
        b"1-0:2.7.0(00.000*kW)\r\n"
        b"1-0:32.7.0(237.1*V)\r\n"
        b"1-0:21.7.0(00.378*kW)\r\n"
        b"1-0:22.7.0(00.000*kW)\r\n"
        b"0-1:24.1.0(003)\r\n"
        b"0-1:96.1.0(4730303339303031373030343630313137)\r\n"
        b"0-1:24.2.1(240101115500W)(01234.567*m3)\r\n"
        b"!"
    )
    return body + f"{crc16_arc(body):04X}\r\n".encode()


def test_probe_describes_what_the_meter_sends(tmp_path: Path) -> None:
    meter = PtyMeter(tmp_path / "ttyUSB-p1").plug()
    try:
        proc = p1daemon("probe", str(meter.link), "--timeout", "10")
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            meter.write(rich_telegram())
            time.sleep(0.05)
        code, out, err = finish(proc)
    finally:
        meter.unplug()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:5] == [
        f"port:            {meter.link}",
        "serial settings: 115200 8N1",
        "header:          ISK5\\2M550E-1012",
        "DSMR version:    5.0",
        "equipment id:    E0044007131650618",
    ]
    assert "  import:         t1, t2, total, power, power l1" in lines
    assert "  export:         t1, t2, total, power, power l1" in lines
    assert "  voltage:        l1" in lines
    assert "  channel 1: gas, equipment id G0039001700460117, 1234.57 m3" in lines


def test_probe_a_missing_port() -> None:
    code, out, err = finish(p1daemon("probe", "/dev/p1daemon-no-such-port", "--timeout", "1"))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "probe: /dev/p1daemon-no-such-port: cannot open: No such file or directory"
    ]


def test_probe_a_silent_port_gives_up_in_time(tmp_path: Path) -> None:
    meter = PtyMeter(tmp_path / "silent").plug()
    try:
        began = time.monotonic()
        code, out, err = finish(p1daemon("probe", str(meter.link), "--timeout", "0.5"))
    finally:
        meter.unplug()
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"probe: {meter.link}: no valid telegram within 0.5 s (0 bytes accepted; tried 115200 8N1)"
    ]
    assert time.monotonic() - began < 5


def test_probe_rejects_a_bad_port_form() -> None:
    code, _, err = finish(p1daemon("probe", "ttyUSB0"))
    assert code == 2
    assert "expected a device path (/dev/...)" in err and "Traceback" not in err


def test_demo_runs(tmp_path: Path) -> None:
    if not (REPO / "fixtures" / "demo" / "house.txt").is_file():
        pytest.skip("fixtures/demo captures are not in this checkout yet")
    proc = p1daemon("run", "--config", "config/demo.toml", "--stdout")
    assert proc.stdout is not None
    rows = (json.loads(line) for line in proc.stdout)
    readings = (row for row in rows if "topic" not in row)  # not the views' documents
    meters = {next(readings)["meter"] for _ in range(2)}
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, timeout=5)
    assert code == 0, err
    assert meters == {"house", "carport"}
