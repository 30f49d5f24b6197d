"""The shipped unit file: systemd accepts it, it is hardened, and it keeps its promises.

`systemd-analyze verify` also checks that ExecStart's binary exists, and
/opt/p1daemon/venv/bin/p1daemon exists only on an installed machine; the verify test
therefore checks a temporary copy whose ExecStart points at /bin/true, everything else
byte for byte the same.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_service_notify import FakeSystemd, demo_config, fake_systemd, wait_for, wait_until

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "p1daemon.service"
BINARY = "/opt/p1daemon/venv/bin/p1daemon"
CONFIG = "/etc/p1daemon/p1daemon.toml"
EXEC_START = f"{BINARY} run --config {CONFIG}"
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
    copy.write_text(text.replace(f"={BINARY} ", f"={true} "))
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
    assert service["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
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


MODULES = REPO / "systemd" / "p1daemon-modules.conf"
# The driver that registers each class the unit allows, or None where it is built into
# the Raspberry Pi kernel (ttyAMA, the PL011 UART) and so always registered.
CLASS_DRIVER = {"ttyUSB": "usbserial", "ttyACM": "cdc_acm", "ttyAMA": None}


def modules_to_load() -> list[str]:
    """modules-load.d(5): one module per line, '#' and ';' start comments."""
    lines = [line.strip() for line in MODULES.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith(("#", ";"))]


def test_every_allowed_serial_class_exists_before_the_service_starts(
    service: dict[str, list[str]],
) -> None:
    """char-<class> is resolved when the service starts; its driver must be loaded by then."""
    classes = [
        value.split()[0].removeprefix("char-")
        for value in service["DeviceAllow"]
        if value.startswith("char-")
    ]
    assert set(classes) == set(CLASS_DRIVER)  # a new class needs a thought about its driver
    wanted = [CLASS_DRIVER[c] for c in classes if CLASS_DRIVER[c] is not None]
    assert sorted(modules_to_load()) == sorted(wanted)
    for module in modules_to_load():
        assert re.fullmatch(r"[a-z0-9_]+", module)  # a name modprobe knows, not a path


def test_modules_load_before_the_service(service: dict[str, list[str]]) -> None:
    """systemd-modules-load.service is part of sysinit.target; a service with default
    dependencies starts after sysinit.target, so the drivers are there first."""
    unit = parse_unit(UNIT.read_text())["Unit"]
    assert unit.get("DefaultDependencies", ["yes"]) == ["yes"]
    assert "sysinit.target" not in " ".join(unit.get("Before", []))


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


# --- reload: refused where systemctl sees it -------------------------------------------


def test_reload_checks_the_file_before_signalling(service: dict[str, list[str]]) -> None:
    """systemd runs ExecReload= lines in order and stops at the first that fails."""
    assert service["ExecReload"] == [
        f"{BINARY} check-config --quiet {CONFIG}",
        "/bin/kill -HUP $MAINPID",
    ]
    # Type=notify-reload (systemd >= 253) would make systemd send the signal itself and
    # skip ExecReload=; Debian bookworm has 252, which refuses the whole unit for it.
    assert service["Type"] == ["notify"]


def systemctl_reload(
    service: dict[str, list[str]], main_pid: int, config: Path
) -> tuple[int, list[str], str, str]:
    """What `systemctl reload` does with ExecReload=: each line in turn, until one fails.

    Returns the exit status systemctl would report (0 or 1), the commands that ran and
    their stdout and stderr. The installed paths are mapped onto this checkout.
    """
    ran: list[str] = []
    out = err = ""
    for line in service["ExecReload"]:
        argv = shlex.split(line.replace("$MAINPID", str(main_pid)))
        if argv[0] == BINARY:
            argv = [sys.executable, "-m", "p1daemon", *argv[1:]]
        argv = [str(config) if arg == CONFIG else arg for arg in argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        ran.append(Path(argv[0]).name if argv[0] != sys.executable else argv[3])
        out, err = out + result.stdout, err + result.stderr
        if result.returncode != 0:
            return 1, ran, out, err
    return 0, ran, out, err


@pytest.fixture
def notify_socket() -> Iterator[FakeSystemd]:
    with fake_systemd("abstract") as fake:
        yield fake


def test_systemctl_reload_fails_on_a_broken_file_and_succeeds_on_a_good_one(
    service: dict[str, list[str]], notify_socket: FakeSystemd, tmp_path: Path
) -> None:
    config = tmp_path / "p1daemon.toml"
    demo_config(config, ["house"])
    stderr = tmp_path / "stderr.log"
    env = {k: v for k, v in os.environ.items() if k not in {"JOURNAL_STREAM", "WATCHDOG_USEC"}}
    env["NOTIFY_SOCKET"] = notify_socket.address
    with stderr.open("w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "p1daemon", "run", "--config", str(config), "--stdout"],
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            env=env,
        )
    try:
        wait_for(notify_socket, "READY=1")

        demo_config(config, ["house"], broken=True)
        status, ran, out, err = systemctl_reload(service, proc.pid, config)
        assert status == 1  # systemctl: "Job for p1daemon.service failed"
        assert ran == ["check-config"]  # the daemon was never signalled
        assert out == ""
        assert err.startswith(f"{config}: meters[0].name: use lower-case letters")
        assert proc.poll() is None  # still running on the old configuration

        demo_config(config, ["house", "carport"])
        status, ran, out, err = systemctl_reload(service, proc.pid, config)
        assert (status, ran, out, err) == (0, ["check-config", "kill"], "", "")
        wait_for(notify_socket, "RELOADING=1")
        wait_for(notify_socket, "READY=1")
        wait_until(lambda: "configuration reloaded: 2 meter(s)" in stderr.read_text(), "reload")
        assert "reload refused" not in stderr.read_text()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- the journal: what `journalctl -p` sees ---------------------------------------------

SYSLOG_LEVELS = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]


def journal_priorities(text: str, service: dict[str, list[str]]) -> list[tuple[int, str]]:
    """Each stderr line as journald files it for this unit (systemd.exec(5), SyslogLevel=).

    A line starting with <N> gets priority N (SyslogLevelPrefix=, on by default); any
    other line gets SyslogLevel=, which is info unless the unit says otherwise.
    """
    default = SYSLOG_LEVELS.index(service.get("SyslogLevel", ["info"])[-1])
    prefixed = service.get("SyslogLevelPrefix", ["yes"])[-1] == "yes"
    entries = []
    for line in text.splitlines():
        match = re.match(r"<([0-7])>(.*)", line)
        if match and prefixed:
            entries.append((int(match.group(1)), match.group(2)))
        else:
            entries.append((default, line))
    return entries


def test_watchdog_stack_dump_is_logged_at_err(
    service: dict[str, list[str]], tmp_path: Path
) -> None:
    """The dump is written by faulthandler, line by line, without a <N> prefix: the unit's
    SyslogLevel= decides its priority, and `journalctl -p warning` must show it."""
    code = textwrap.dedent(
        """
        import logging, time
        from p1daemon.service.logsetup import setup_logging
        setup_logging("info")
        logging.getLogger("p1daemon.daemon").info("started 1 meter reader(s)")
        def stuck_main_loop():
            print("ready", flush=True)
            time.sleep(60)
        stuck_main_loop()
        """
    )
    stderr = tmp_path / "journal-stream"
    with stderr.open("w") as err_file:
        st = os.fstat(err_file.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
            env=env,
        )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGABRT)  # what WatchdogSec= does to a hung service
    proc.communicate(timeout=10)
    entries = journal_priorities(stderr.read_text(), service)

    assert entries[0] == (6, "daemon: started 1 meter reader(s)")  # ordinary lines keep theirs
    dump = entries[1:]
    assert any(text == "Fatal Python error: Aborted" for _, text in dump)
    assert any("stuck_main_loop" in text for _, text in dump)
    assert all(priority <= 3 for priority, _ in dump), dump  # err: `journalctl -p err` too


def test_two_malloc_arenas(service: dict[str, list[str]]) -> None:
    """glibc's arena per allocating thread keeps freed memory in one heap per thread;
    two arenas keep the peak RSS down (measured in bench/bench_daemon.py)."""
    variables = " ".join(service["Environment"]).split()
    assert "MALLOC_ARENA_MAX=2" in variables
