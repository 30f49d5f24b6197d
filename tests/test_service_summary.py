"""`check-config --summary` and `--quiet`: what the installer and `systemctl reload` print."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_daemon_support import telegram

from p1daemon.config import load_config
from p1daemon.service.summary import config_summary

REPO = Path(__file__).resolve().parents[1]
KEY = "0123456789ABCDEF0123456789ABCDEF"


def check_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p1daemon", "check-config", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        timeout=30,
    )


def two_meters(tmp_path: Path) -> Path:
    (tmp_path / "house.txt").write_bytes(telegram(1))
    path = tmp_path / "p1daemon.toml"
    path.write_text(
        f"""
[mqtt]
host = "broker.lan"
port = 8883
tls = true
username = "meter"
topic_prefix = "home/p1"

[buffer]
path = "{tmp_path / "outbox.db"}"
max_mb = 16

[homeassistant]
discovery = true

[[meters]]
name = "house"
role = "primary"
ean = "871685900012345674"
source = "replay:house.txt"

[[meters]]
name = "carport"
role = "secondary"
source = "socket://192.0.2.7:2001"
"""
    )
    return path


def test_summary_names_meters_broker_and_outbox_without_secrets(tmp_path: Path) -> None:
    path = two_meters(tmp_path)
    env = {"P1DAEMON_MQTT_PASSWORD": "hunter2", "P1DAEMON_METER_CARPORT_KEY": KEY}
    text = config_summary(load_config(path, env), "p1daemon.toml")
    assert text.splitlines() == [
        "p1daemon.toml: valid, 2 meter(s)",
        f"  meter house (primary, EAN 871685900012345674): replay:{tmp_path / 'house.txt'}",
        "  meter carport (secondary, encrypted (Smarty)): socket://192.0.2.7:2001",
        "  broker: broker.lan:8883 (TLS, user meter), topics under home/p1/",
        f"  outbox: {tmp_path / 'outbox.db'} (at most 16 MB)",
        f"  settlement history: {tmp_path / 'history.db'}",
        "  Home Assistant discovery: on (prefix homeassistant)",
    ]
    assert "hunter2" not in text and KEY not in text and "***" not in text


def test_check_config_summary_is_short(tmp_path: Path) -> None:
    result = check_config("--summary", "config/p1daemon.example.toml")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "config/p1daemon.example.toml: valid, 1 meter(s)"
    assert len(lines) <= 8  # the full rendering is ~60 lines
    assert "outbox: /var/lib/p1daemon/outbox.db" in result.stdout
    full = check_config("config/p1daemon.example.toml")
    assert len(full.stdout.splitlines()) > 4 * len(lines)  # the default is unchanged


def test_check_config_quiet_prints_nothing_when_valid(tmp_path: Path) -> None:
    result = check_config("--quiet", str(two_meters(tmp_path)))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_problems_are_reported_whatever_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "p1daemon.toml"
    path.write_text("[[meters]]\nname = 'House!'\nsource = '/dev/ttyUSB0'\n")
    for flags in ([], ["--summary"], ["--quiet"]):
        result = check_config(*flags, str(path))
        assert result.returncode == 1
        assert result.stdout == ""
        [line] = result.stderr.splitlines()
        assert line.startswith(f"{path}: meters[0].name: use lower-case letters")
