"""install.sh and uninstall.sh against a temporary root, never the machine.

P1DAEMON_ROOT prefixes every installed path and SYSTEMCTL is a script in tmp_path that
records its arguments, so the real scripts run end to end: a real virtualenv is created
and p1daemon with its dependencies is pip-installed into it from this checkout, through
the package index the machine's pip is configured for (the same default path as on a Pi;
a few seconds with a warm pip cache).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "scripts" / "install.sh"
UNINSTALL = REPO / "scripts" / "uninstall.sh"
EXAMPLE = REPO / "config" / "p1daemon.example.toml"

RECORDER = """#!/bin/sh
echo "$*" >> "{log}"
echo "systemctl $*" >> "{log}.order"
case " $* " in *" $SYSTEMCTL_FAIL "*) echo "systemctl: $SYSTEMCTL_FAIL failed" >&2; exit 1;; esac
exit 0
"""
MODPROBE = """#!/bin/sh
echo "$*" >> "{log}"
echo "modprobe $*" >> "{order}"
[ -z "$MODPROBE_FAIL" ] || {{ echo "modprobe: FATAL: Module usbserial not found" >&2; exit 1; }}
exit 0
"""
MODULES_CONF = REPO / "systemd" / "p1daemon-modules.conf"


@dataclass
class Machine:
    """A temporary root with a recording systemctl."""

    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def log(self) -> Path:
        return self.base / "systemctl.log"

    @property
    def venv(self) -> Path:
        return self.root / "opt/p1daemon/venv"

    @property
    def config(self) -> Path:
        return self.root / "etc/p1daemon/p1daemon.toml"

    @property
    def env_file(self) -> Path:
        return self.root / "etc/p1daemon/p1daemon.env"

    @property
    def unit(self) -> Path:
        return self.root / "etc/systemd/system/p1daemon.service"

    @property
    def modules_conf(self) -> Path:
        return self.root / "etc/modules-load.d/p1daemon.conf"

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def modprobe_calls(self) -> list[str]:
        log = self.base / "modprobe.log"
        return log.read_text().splitlines() if log.exists() else []

    def run(self, script: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        recorder = self.base / "systemctl"
        if not recorder.exists():
            recorder.write_text(RECORDER.format(log=self.log))
            recorder.chmod(0o755)
        modprobe = self.base / "modprobe"
        if not modprobe.exists():
            modprobe.write_text(
                MODPROBE.format(log=self.base / "modprobe.log", order=f"{self.log}.order")
            )
            modprobe.chmod(0o755)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("P1DAEMON_", "NOTIFY_SOCKET", "WATCHDOG_", "PYTHON"))
        }
        env.update(
            P1DAEMON_ROOT=str(self.root),
            P1DAEMON_PYTHON=sys.executable,
            SYSTEMCTL=str(recorder),
            SYSTEMCTL_FAIL="",
            MODPROBE=str(modprobe),
            MODPROBE_FAIL="",
        )
        env.update(extra_env)
        return subprocess.run(
            ["bash", str(script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )


INSTALL_CALLS = ["daemon-reload", "enable p1daemon.service", "restart p1daemon.service"]


def build_leftovers() -> dict[Path, int]:
    """What an in-tree pip build would leave in the checkout, with modification times."""
    paths = [*REPO.glob("*.egg-info"), REPO / "build"]
    return {p: p.stat().st_mtime_ns for p in paths if p.exists()}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Machine, str]:
    machine = Machine(tmp_path_factory.mktemp("install"))
    leftovers = build_leftovers()
    result = machine.run(INSTALL)
    assert result.returncode == 0, result.stdout + result.stderr
    # The package is built from a copy: the checkout gets no build/ or *.egg-info.
    assert build_leftovers() == leftovers
    return machine, result.stdout


def test_first_install_places_everything(installed: tuple[Machine, str]) -> None:
    machine, output = installed
    assert (machine.venv / "bin" / "p1daemon").is_file()
    assert machine.unit.read_bytes() == (REPO / "systemd/p1daemon.service").read_bytes()
    assert machine.config.read_bytes() == EXAMPLE.read_bytes()
    assert stat.S_IMODE(machine.env_file.stat().st_mode) == 0o600  # secrets: root only
    assert "P1DAEMON_MQTT_PASSWORD" in machine.env_file.read_text()
    assert f"checking {machine.config}" in output
    assert machine.calls() == INSTALL_CALLS


def test_serial_drivers_load_at_boot_and_now(installed: tuple[Machine, str]) -> None:
    """So that DeviceAllow=char-ttyUSB/char-ttyACM always resolve (see the conf file)."""
    machine, output = installed
    assert machine.modules_conf.read_bytes() == MODULES_CONF.read_bytes()
    assert stat.S_IMODE(machine.modules_conf.stat().st_mode) == 0o644
    assert machine.modprobe_calls() == ["-a usbserial cdc_acm"]
    order = (machine.base / "systemctl.log.order").read_text().splitlines()
    assert order.index("modprobe -a usbserial cdc_acm") < order.index(
        "systemctl restart p1daemon.service"
    )  # so that this very start resolves the classes
    assert f"placed {machine.modules_conf}" in output


def test_drivers_that_cannot_load_now_do_not_stop_the_install(
    installed: tuple[Machine, str],
) -> None:
    machine, _ = installed
    before = machine.calls()
    result = machine.run(INSTALL, MODPROBE_FAIL="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "they load at the next boot" in result.stdout
    assert machine.calls() == before + INSTALL_CALLS


def test_install_prints_a_summary_not_the_whole_configuration(
    installed: tuple[Machine, str],
) -> None:
    machine, output = installed
    assert f"{machine.config}: valid, 1 meter(s)" in output
    assert "  meter house (primary): /dev/serial/by-id/" in output
    assert "  broker: 127.0.0.1:1883" in output
    assert "  outbox: /var/lib/p1daemon/outbox.db" in output
    assert "[homeassistant]" not in output and "silence_timeout_s" not in output
    assert len(output.splitlines()) <= 25, output


def test_installed_package_is_this_checkout(installed: tuple[Machine, str]) -> None:
    machine, _ = installed
    python = machine.venv / "bin" / "python"
    # cwd elsewhere: `python -c` would otherwise import from the checkout in the cwd.
    where = subprocess.run(
        [str(python), "-c", "import p1daemon.service.notify as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
        cwd=machine.base,
    ).stdout.strip()
    assert Path(where).is_relative_to(machine.venv)
    assert Path(where).read_bytes() == (REPO / "p1daemon/service/notify.py").read_bytes()
    # Dependencies came with it: the runtime imports work inside the virtualenv alone.
    subprocess.run(
        [str(python), "-c", "import serial, paho.mqtt.client, pydantic, click"],
        check=True,
        env={"PATH": os.environ["PATH"]},
        cwd=machine.base,
    )


def test_rerun_keeps_config_and_virtualenv(installed: tuple[Machine, str]) -> None:
    machine, _ = installed
    edited = machine.config.read_text() + "\n# edited by the owner\n"
    machine.config.write_text(edited)
    machine.env_file.write_text("P1DAEMON_MQTT_PASSWORD=mine\n")
    marker = machine.venv / "marker"
    marker.touch()
    before = machine.calls()

    result = machine.run(INSTALL)

    assert result.returncode == 0, result.stdout + result.stderr
    assert machine.config.read_text() == edited
    assert machine.env_file.read_text() == "P1DAEMON_MQTT_PASSWORD=mine\n"
    assert marker.exists()  # the virtualenv was reused, not recreated
    assert "keeping existing configuration" in result.stdout
    assert machine.calls() == before + INSTALL_CALLS


def test_broken_config_is_refused_before_enabling(installed: tuple[Machine, str]) -> None:
    machine, _ = installed
    good = machine.config.read_text()
    machine.config.write_text("[[meters]]\nname = 'House!'\n")
    before = machine.calls()
    try:
        result = machine.run(INSTALL)
    finally:
        machine.config.write_text(good)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("install.sh: the configuration has errors (above)")
    )
    assert "meters[0]" in result.stderr + result.stdout  # check-config said what is wrong
    assert machine.calls() == before  # neither enabled nor started


def test_failed_start_points_at_the_journal(installed: tuple[Machine, str]) -> None:
    machine, _ = installed
    result = machine.run(INSTALL, SYSTEMCTL_FAIL="restart")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "install.sh: p1daemon did not start; see: journalctl -u p1daemon -n 50"
    )


def test_uninstall_keeps_config_and_outbox(installed: tuple[Machine, str]) -> None:
    machine, _ = installed  # the last test to use this root
    outbox = machine.root / "var/lib/private/p1daemon/outbox.db"
    outbox.parent.mkdir(parents=True)
    outbox.write_bytes(b"unsent readings")
    before = machine.calls()

    result = machine.run(UNINSTALL)

    assert result.returncode == 0, result.stderr
    assert not (machine.root / "opt/p1daemon").exists()
    assert not machine.unit.exists()
    assert not machine.modules_conf.exists()
    assert machine.config.exists() and machine.env_file.exists()
    assert outbox.read_bytes() == b"unsent readings"
    assert machine.calls() == [
        *before,
        "disable --now p1daemon.service",
        "daemon-reload",
        "reset-failed p1daemon.service",
    ]


def test_purge_removes_config_and_outbox(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    for path in [
        machine.venv / "bin/python",
        machine.unit,
        machine.config,
        machine.env_file,
        machine.root / "etc/systemd/system/p1daemon.service.d/override.conf",
        machine.root / "var/lib/private/p1daemon/outbox.db",
    ]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (machine.root / "var/lib/p1daemon").symlink_to("private/p1daemon")
    (machine.root / "etc/other.conf").write_text("not ours")

    result = machine.run(UNINSTALL, "--purge")

    assert result.returncode == 0, result.stderr
    left = sorted(str(p.relative_to(machine.root)) for p in machine.root.rglob("*"))
    assert left == [
        "etc",
        "etc/other.conf",
        "etc/systemd",
        "etc/systemd/system",
        "opt",
        "var",
        "var/lib",
        "var/lib/private",
    ]


def test_uninstall_twice_is_harmless(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    assert machine.run(UNINSTALL).returncode == 0
    assert machine.run(UNINSTALL, "--purge").returncode == 0


def test_uninstall_rejects_unknown_arguments(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    result = machine.run(UNINSTALL, "--prune")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("[--purge]")
    assert machine.calls() == []


def test_missing_python_is_one_line(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    result = machine.run(INSTALL, P1DAEMON_PYTHON=str(tmp_path / "no-python3"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"install.sh: {tmp_path / 'no-python3'} not found: sudo apt install python3 python3-venv"
    ]
    assert not machine.root.exists()


def test_refuses_the_real_system_without_root(tmp_path: Path) -> None:
    """Without P1DAEMON_ROOT the scripts write to /opt and /etc, so they need root."""
    command = ["bash", str(INSTALL)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv (util-linux) is not available to drop it")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = {"PATH": os.environ["PATH"], "SYSTEMCTL": "false"}
    for script in (INSTALL, UNINSTALL):
        command[-1] = str(script)
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 1
        assert "must run as root" in result.stderr
