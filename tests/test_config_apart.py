"""The daemon validates its configuration in a child process (issue 16, memory).

`p1daemon.config.apart` must hand back exactly what `load_config` gives in-process
(the same dataclasses, secrets from the environment included) and the same one-line
problems, and the running daemon must then hold no pydantic at all: that is the ~9 MB
the move is for, checked here in the memory map of a real `p1daemon run`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p1daemon.config.apart import load_config_apart
from p1daemon.config.errors import ConfigError
from p1daemon.config.loader import load_config
from p1daemon.config.secret import Secret

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures/demo"


@pytest.mark.parametrize("name", ["p1daemon.example.toml", "demo.toml"])
def test_the_child_hands_back_what_load_config_gives(name: str) -> None:
    path = REPO / "config" / name
    assert load_config_apart(path) == load_config(path)


def test_secrets_from_the_environment_cross_over_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "p1daemon.toml"
    config.write_text(
        f'[buffer]\npath = "{tmp_path / "outbox.db"}"\n\n'
        f'[[meters]]\nname = "house"\nsource = "replay:{DEMO / "house.txt"}"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("P1DAEMON_MQTT_USERNAME", "p1")
    monkeypatch.setenv("P1DAEMON_MQTT_PASSWORD", "from-the-environment")
    monkeypatch.setenv("P1DAEMON_METER_HOUSE_KEY", "00112233445566778899AABBCCDDEEFF")
    loaded = load_config_apart(config)
    assert loaded.mqtt.password == Secret("from-the-environment")
    assert loaded.meters[0].key_bytes == bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    assert loaded == load_config(config)
    assert "from-the-environment" not in repr(loaded)


def test_problems_are_the_lines_load_config_raises(tmp_path: Path) -> None:
    config = tmp_path / "p1daemon.toml"
    config.write_text(
        '[mqtt]\nport = "1883"\n\n[[meters]]\nname = "Bad Name"\nsource = "/dev/ttyUSB0"\n'
        "baudrat = 9600\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as in_process:
        load_config(config)
    with pytest.raises(ConfigError) as apart:
        load_config_apart(config)
    assert apart.value.lines == in_process.value.lines
    assert len(apart.value.lines) == 3, apart.value.lines


def test_a_child_that_dies_is_one_line_naming_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dying = tmp_path / "python"
    dying.write_text(
        "#!/bin/sh\necho 'Traceback (most recent call last):' >&2\n"
        "echo 'MemoryError: out of memory' >&2\nexit 1\n"
    )
    dying.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(dying))
    with pytest.raises(ConfigError) as caught:
        load_config_apart(REPO / "config/demo.toml")
    assert caught.value.lines == [
        f"{REPO / 'config/demo.toml'}: validation failed: MemoryError: out of memory"
    ]


def test_the_running_daemon_holds_no_pydantic(tmp_path: Path) -> None:
    """Discovery, the energy views, capacity and history on: everything the daemon can
    build from a configuration, and still no pydantic mapped into the process."""
    config = tmp_path / "p1daemon.toml"
    config.write_text(
        f"""
[buffer]
path = "{tmp_path / "outbox.db"}"

[homeassistant]
discovery = true

[[meters]]
name = "house"
role = "primary"
ean = "871685900012345674"
source = "replay:{DEMO / "house.txt"}"
replay_interval_s = 0.05
replay_loop = true
capacity = "on"
export_limit_kw = 3.0

[[meters]]
name = "carport"
role = "secondary"
source = "replay:{DEMO / "carport.txt"}"
replay_interval_s = 0.05
replay_loop = true
""",
        encoding="utf-8",
    )
    stdout = tmp_path / "stdout.jsonl"
    with stdout.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "p1daemon", "run", "--config", str(config), "--stdout"],
            stdout=out,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    try:
        deadline = time.monotonic() + 30
        # A document of the views, not only readings: the processors have run.
        while b'"p1/site/connection"' not in stdout.read_bytes():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
            assert time.monotonic() < deadline, "no view documents within 30 s"
            time.sleep(0.1)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "libpython" in maps or "/python" in maps  # the map read is the daemon's
    mapped = sorted({line.split()[-1] for line in maps.splitlines() if "pydantic" in line})
    assert mapped == []
    assert proc.returncode == 0, err.decode()
