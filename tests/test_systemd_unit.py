"""The shipped unit file: systemd accepts it, it is hardened, and it keeps its promises.

`systemd-analyze verify` also checks that ExecStart's binary exists, and
/opt/p1daemon/venv/bin/p1daemon exists only on an installed machine; the verify test
therefore checks a temporary copy whose ExecStart points at /bin/true, everything else
byte for byte the same.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "p1daemon.service"
EXEC_START = "/opt/p1daemon/venv/bin/p1daemon run --config /etc/p1daemon/p1daemon.toml"
MAX_EXPOSURE = 2.0


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value in order (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        sections[section][key.strip()].append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (apt install systemd)")
    return path


def verifiable_copy(tmp_path: Path) -> Path:
    text = UNIT.read_text()
    assert text.count(f"ExecStart={EXEC_START}\n") == 1
    true = shutil.which("true") or "/bin/true"
    copy = tmp_path / "p1daemon.service"  # verify wants the real unit name
    copy.write_text(text.replace(f"ExecStart={EXEC_START}", f"ExecStart={true} run"))
    return copy


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = systemd_analyze()
    result = subprocess.run(
        [tool, "verify", str(verifiable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    own = [line for line in (result.stdout + result.stderr).splitlines() if "p1daemon" in line]
    assert result.returncode == 0, result.stderr
    assert own == []  # no unknown keys, bad values or missing paths


def test_security_exposure_is_at_most_2(tmp_path: Path) -> None:
    tool = systemd_analyze()
    help_text = subprocess.run([tool, "--help"], capture_output=True, text=True).stdout
    if "--offline" not in help_text:
        pytest.skip("this systemd-analyze has no --offline (needs systemd >= 250)")
    result = subprocess.run(
        [
            tool,
            "security",
            "--offline=true",
            f"--threshold={int(MAX_EXPOSURE * 10)}",
            "--no-pager",
            str(verifiable_copy(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for p1daemon\.service: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stderr


def test_notify_watchdog_and_lifecycle(service: dict[str, list[str]]) -> None:
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["WatchdogSec"] == ["30"]
    assert service["Restart"][0] in {"always", "on-failure"}
    assert int(service["RestartSec"][0]) >= 1
    assert service["ExecStart"] == [EXEC_START]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # The daemon stops within 10 s; systemd must wait longer than that before SIGKILL.
    assert 10 < int(service["TimeoutStopSec"][0]) <= 30


def test_serial_ports_stay_reachable(service: dict[str, list[str]]) -> None:
    assert "yes" not in service.get("PrivateDevices", [])  # it would hide /dev/tty*
    assert service["DevicePolicy"] == ["closed"]
    allowed = set(service["DeviceAllow"])
    # By driver class, so a replugged USB cable with a new minor number still works.
    assert {"char-ttyUSB rw", "char-ttyACM rw", "char-ttyAMA rw"} <= allowed
    assert "/dev/ttyS0 rw" in allowed  # the Pi's mini UART behind /dev/serial0
    assert service["SupplementaryGroups"] == ["dialout"]


def test_privileges_and_places(service: dict[str, list[str]]) -> None:
    assert service["DynamicUser"] == ["yes"]
    assert service["StateDirectory"] == ["p1daemon"]
    assert service["ConfigurationDirectory"] == ["p1daemon"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["AmbientCapabilities"] == [""]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "@system-service" in service["SystemCallFilter"]
    assert service["EnvironmentFile"] == ["-/etc/p1daemon/p1daemon.env"]


def test_installer_puts_things_where_the_unit_looks() -> None:
    script = (REPO / "scripts" / "install.sh").read_text()
    assert "venv=$root/opt/p1daemon/venv" in script
    assert "conf_dir=$root/etc/p1daemon" in script
    assert "config=$conf_dir/p1daemon.toml" in script
    assert "env_file=$conf_dir/p1daemon.env" in script
