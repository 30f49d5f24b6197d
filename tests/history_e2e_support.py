"""The real daemon with the history on: meters on pseudo-terminals whose telegrams carry
their own (fast-running) clock, `p1daemon run` and `p1daemon report` as child processes.

The meters here keep their registers in whole Wh, so the energy of every quarter-hour
is this file's own integer arithmetic (the truth), never the code under test. Telegrams
are written as fast as the daemon takes them, ten meter-seconds apart, so a run crosses
several quarter boundaries in a few seconds of wall time: the energy views and the
history go by the meter's timestamps, not by the clock on the wall.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from conftest import REPO
from test_daemon_support import PtyMeter

from p1daemon.frame.crc import crc16_arc

AMS = ZoneInfo("Europe/Amsterdam")
STEP_S = 10  # a DSMR 4 meter's pace, on the meter's clock
KEYS = ("i1", "i2", "e1", "e2")


def meter_stamp(at: datetime) -> str:
    """YYMMDDhhmmss + W/S: the meter's local time with its DST flag."""
    local = at.astimezone(AMS)
    dst = local.dst()
    return local.strftime("%y%m%d%H%M%S") + ("S" if dst else "W")


def dsmr_telegram(at: datetime, equipment_id: str, regs: dict[str, int]) -> bytes:
    """A DSMR 5 telegram with a valid CRC; registers in Wh."""

    def kwh(wh: int) -> str:
        return f"{wh // 1000:06d}.{wh % 1000:03d}"

    body = (
        "/ISK5\\2M550T-1012\r\n\r\n"
        "1-3:0.2.8(50)\r\n"
        f"0-0:1.0.0({meter_stamp(at)})\r\n"
        f"0-0:96.1.1({equipment_id.encode().hex().upper()})\r\n"
        f"1-0:1.8.1({kwh(regs['i1'])}*kWh)\r\n"
        f"1-0:1.8.2({kwh(regs['i2'])}*kWh)\r\n"
        f"1-0:2.8.1({kwh(regs['e1'])}*kWh)\r\n"
        f"1-0:2.8.2({kwh(regs['e2'])}*kWh)\r\n"
        "0-0:96.14.0(0002)\r\n"
        "1-0:1.7.0(00.378*kW)\r\n"
        "1-0:2.7.0(00.000*kW)\r\n"
        "!"
    ).encode()
    return body + f"{crc16_arc(body):04X}\r\n".encode()


@dataclass
class ClockedMeter:
    """A meter on a pty whose clock runs at `STEP_S` per telegram; `sent` keeps the
    registers of every telegram by meter time (the truth)."""

    name: str
    pty: PtyMeter
    at: datetime
    equipment_id: str = "E0000000000000001"
    regs: dict[str, int] = field(
        default_factory=lambda: {"i1": 1_234_567, "i2": 2_345_678, "e1": 11_000, "e2": 22_000}
    )
    seed: int = 0
    sent: dict[datetime, dict[str, int]] = field(default_factory=dict)

    def send(self, timeout: float = 5.0) -> datetime:
        """Write the telegram of now, then let STEP_S of energy flow."""
        at = self.at
        self.sent[at] = dict(self.regs)
        self.pty.write_all(dsmr_telegram(at, self.equipment_id, self.regs), timeout)
        n = int(at.timestamp()) // STEP_S + self.seed
        quarter = int(at.timestamp()) // 900
        # Import on t1 and t2 in turn by quarter; export in every third quarter.
        self.regs["i1" if quarter % 2 else "i2"] += 2 + (n * 7) % 11
        if quarter % 3 == self.seed % 3:
            self.regs["e1" if quarter % 2 else "e2"] += (n * 5) % 7
        self.at = at + timedelta(seconds=STEP_S)
        return at

    def quarter_truth(self, start: datetime) -> dict[str, int] | None:
        """Wh of the quarter starting at `start`, when both edges were sent."""
        end = start + timedelta(minutes=15)
        if start not in self.sent or end not in self.sent:
            return None
        return {k: self.sent[end][k] - self.sent[start][k] for k in KEYS}


def config_text(
    tmp: Path,
    broker_port: int,
    meters: list[tuple[str, str, str, Path]],
    *,
    history: Path,
    outbox: Path,
    retry_s: float = 60.0,
) -> str:
    """meters: (name, role, ean, pty link)."""
    text = f"""
[mqtt]
host = "127.0.0.1"
port = {broker_port}
health_interval_s = 1
reconnect_max_delay_s = 1

[buffer]
path = "{outbox}"
commit_interval_s = 0.05

[history]
path = "{history}"
commit_delay_s = 0.2
retry_interval_s = {retry_s}
"""
    for name, role, ean, link in meters:
        text += f"""
[[meters]]
name = "{name}"
role = "{role}"
ean = "{ean}"
source = "{link}"
reconnect_initial_s = 0.05
reconnect_max_s = 0.5
tariff_labels = {{ t1 = "low", t2 = "normal" }}
"""
    return text


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "p1daemon", "run", "--config", str(config)],
            cwd=REPO,
            stdout=handle,
            stderr=handle,
        )


def stop_daemon(daemon: subprocess.Popen[bytes], timeout: float = 15) -> int:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    try:
        return daemon.wait(timeout)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(5)
        raise AssertionError("the daemon did not stop on SIGTERM in time") from None


def report(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "p1daemon", "report", "--config", str(config), *args],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode("utf-8")


def report_json(config: Path, *args: str) -> dict[str, dict[str, Any]]:
    """Per meter name, its JSON document (the connection document left out)."""
    docs = [json.loads(line) for line in report(config, "--format", "json", *args).splitlines()]
    return {doc["meter"]: doc for doc in docs if "meter" in doc}


def wh(kwh_value: float | None) -> int | None:
    return None if kwh_value is None else round(kwh_value * 1000)


def utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(UTC)
