"""sd_notify against a real AF_UNIX datagram socket standing in for systemd.

The socket is bound by the test (a filesystem path, or an abstract '@' name, the two forms
systemd uses) and every datagram the hooks send is read back and checked. Datagrams on a
Unix socket are queued by the time send() returns, so "nothing was sent" is checked with
a non-blocking read, not a sleep.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from p1daemon.daemon.hooks import ServiceHooks
from p1daemon.daemon.timing import TICK_S
from p1daemon.service.hooks import SystemdHooks
from p1daemon.service.notify import Notifier, monotonic_usec, read_environment


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address

    def receive(self, timeout: float = 2.0) -> list[str]:
        """The fields of the next datagram, waiting at most `timeout`."""
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode().split("\n")

    def pending(self) -> list[list[str]]:
        """Every datagram already queued, without waiting."""
        self.sock.setblocking(False)
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode().split("\n"))
            except BlockingIOError:
                return out


@contextlib.contextmanager
def fake_systemd(kind: str) -> Iterator[FakeSystemd]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    # A short directory of our own: AF_UNIX paths are limited to 108 bytes.
    directory = tempfile.mkdtemp(prefix="p1n-")
    try:
        if kind == "path":
            address = os.path.join(directory, "notify")
            sock.bind(address)
        else:
            name = f"p1daemon-test-{uuid.uuid4().hex}"
            sock.bind(b"\0" + name.encode())
            address = "@" + name
        yield FakeSystemd(sock, address)
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["path", "abstract"])
def systemd(request: pytest.FixtureRequest) -> Iterator[FakeSystemd]:
    with fake_systemd(request.param) as fake:
        yield fake


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hooks_for(systemd: FakeSystemd, watchdog_usec: int | None, clock: Clock) -> SystemdHooks:
    env = {"NOTIFY_SOCKET": systemd.address}
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
        env["WATCHDOG_PID"] = str(os.getpid())
    hooks = SystemdHooks.from_environment(env)
    # The same object, with the injected clock, so intervals need no real waiting.
    return SystemdHooks(
        hooks._notifier,
        watchdog_interval_s=hooks.watchdog_interval_s,
        clock=clock,
    )


def test_systemd_hooks_implement_every_hook_with_its_signature() -> None:
    for name, member in vars(ServiceHooks).items():
        if callable(member) and not name.startswith("_"):
            assert inspect.signature(getattr(SystemdHooks, name)) == inspect.signature(member)


def test_notifier_delivers_one_datagram_of_fields(systemd: FakeSystemd) -> None:
    assert Notifier(systemd.address).send("READY=1", "STATUS=2 meters")
    assert systemd.receive() == ["READY=1", "STATUS=2 meters"]


def test_lifecycle_messages(systemd: FakeSystemd) -> None:
    hooks = hooks_for(systemd, None, Clock())
    assert hooks.active
    hooks.ready()
    assert systemd.receive() == ["READY=1"]

    before = monotonic_usec()
    hooks.reloading()
    fields = systemd.receive()
    after = monotonic_usec()
    assert fields[0] == "RELOADING=1"
    key, _, value = fields[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after

    hooks.reloaded()
    assert systemd.receive() == ["READY=1"]
    hooks.stopping()
    assert systemd.receive() == ["STOPPING=1"]
    assert systemd.pending() == []


def test_watchdog_fed_at_half_the_timeout_only_while_healthy(systemd: FakeSystemd) -> None:
    clock = Clock()
    hooks = hooks_for(systemd, 30_000_000, clock)
    assert hooks.watchdog_interval_s == 15.0
    hooks.ready()
    assert systemd.receive() == ["READY=1"]

    pings = []
    for second in range(0, 61):  # one tick a second, healthy for a minute
        clock.now = 1000.0 + second
        hooks.tick(healthy=True, status="ok")
        for fields in systemd.pending():
            if "WATCHDOG=1" in fields:
                pings.append(second)
    assert pings == [0, 15, 30, 45, 60]

    for second in range(61, 200):  # hung readers: never a ping, however long
        clock.now = 1000.0 + second
        hooks.tick(healthy=False, status="ok")
    assert not any("WATCHDOG=1" in fields for fields in systemd.pending())

    clock.now = 1200.0
    hooks.tick(healthy=True, status="ok")  # recovered: fed at once, it is long overdue
    assert systemd.pending() == [["WATCHDOG=1"]]


def test_main_loop_wakes_every_five_seconds_under_the_shipped_watchdog() -> None:
    """WatchdogSec=30 needs a ping every 15 s and STATUS goes out at most every 5 s:
    waking the main loop every second only cost wake-ups."""
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000"}
    assert SystemdHooks.from_environment(env).tick_interval_s(TICK_S) == 5.0
    env["WATCHDOG_USEC"] = "3000000"  # a short watchdog still gets its third
    assert SystemdHooks.from_environment(env).tick_interval_s(TICK_S) == pytest.approx(1.0)


def test_main_loop_tick_follows_a_short_watchdog() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000"}
    assert SystemdHooks.from_environment(env).tick_interval_s(1.0) == pytest.approx(1 / 3)
    env["WATCHDOG_USEC"] = "30000000"  # the shipped WatchdogSec=30: once a second is plenty
    assert SystemdHooks.from_environment(env).tick_interval_s(1.0) == 1.0
    assert SystemdHooks.from_environment({}).tick_interval_s(1.0) == 1.0  # no watchdog


@pytest.mark.parametrize("watchdog_usec", [1_000_000, 2_000_000, 3_000_000, 7_000_000])
def test_pings_never_further_apart_than_half_the_watchdog(
    systemd: FakeSystemd, watchdog_usec: int
) -> None:
    """Ticks as the daemon's loop makes them (tick_interval_s apart, a little late at times)."""
    clock = Clock()
    hooks = hooks_for(systemd, watchdog_usec, clock)
    tick = hooks.tick_interval_s(1.0)
    half = watchdog_usec / 2_000_000
    pings = []
    for n in range(200):
        clock.now += tick + (0.002 if n % 3 else 0.0)
        hooks.tick(healthy=True, status="ok")
        pings += [clock.now for fields in systemd.pending() if "WATCHDOG=1" in fields]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) <= half + 0.002


def test_no_watchdog_pings_without_watchdog_usec(systemd: FakeSystemd) -> None:
    clock = Clock()
    hooks = hooks_for(systemd, None, clock)
    for _ in range(40):
        clock.now += 1
        hooks.tick(healthy=True, status="ok")
    sent = systemd.pending()
    assert sent == [["STATUS=ok"]]


def test_status_sent_on_change_at_most_every_few_seconds(systemd: FakeSystemd) -> None:
    clock = Clock()
    hooks = hooks_for(systemd, None, clock)
    hooks.tick(healthy=True, status="2 meters, 12 readings/min")
    assert systemd.pending() == [["STATUS=2 meters, 12 readings/min"]]

    clock.now += 1
    hooks.tick(healthy=True, status="2 meters, 13 readings/min")  # changed, but too soon
    clock.now += 1
    hooks.tick(healthy=True, status="2 meters, 14 readings/min")
    assert systemd.pending() == []

    clock.now += 3  # 5 s after the last one: the latest line goes out
    hooks.tick(healthy=True, status="2 meters, 14 readings/min")
    assert systemd.pending() == [["STATUS=2 meters, 14 readings/min"]]

    clock.now += 60  # unchanged: systemd still has it, nothing to send
    hooks.tick(healthy=True, status="2 meters, 14 readings/min")
    assert systemd.pending() == []

    hooks.tick(healthy=True, status="broker\ndown")  # a newline would forge a new field
    assert systemd.pending() == [["STATUS=broker down"]]


def test_watchdog_and_status_share_one_datagram(systemd: FakeSystemd) -> None:
    hooks = hooks_for(systemd, 10_000_000, Clock())
    hooks.tick(healthy=True, status="starting")
    assert systemd.pending() == [["WATCHDOG=1", "STATUS=starting"]]


def test_real_clock_short_watchdog(systemd: FakeSystemd) -> None:
    """WATCHDOG_USEC=0.2 s, the real clock, the main loop ticking every 10 ms."""
    env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "200000"}
    hooks = SystemdHooks.from_environment(env)
    assert hooks.watchdog_interval_s == pytest.approx(0.1)

    def run(seconds: float, healthy: bool) -> int:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            hooks.tick(healthy=healthy, status="ok")
            time.sleep(0.01)
        return sum("WATCHDOG=1" in fields for fields in systemd.pending())

    healthy_pings = run(0.55, healthy=True)
    assert 4 <= healthy_pings <= 7
    assert run(0.3, healthy=False) == 0
    assert run(0.15, healthy=True) >= 1


def test_health_transitions_are_logged_once(
    systemd: FakeSystemd, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    hooks = hooks_for(systemd, 30_000_000, clock)
    caplog.set_level(logging.INFO, logger="p1daemon.service")
    for healthy in [True, False, False, False, True, True]:
        clock.now += 1
        hooks.tick(healthy=healthy, status="ok")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("unhealthy: no longer feeding the systemd watchdog")
    assert messages[1].startswith("healthy again")
    assert caplog.records[0].levelno == logging.WARNING


def test_outside_systemd_everything_is_a_no_op() -> None:
    # WATCHDOG_USEC without a socket is meaningless: nobody to ping.
    hooks = SystemdHooks.from_environment({"WATCHDOG_USEC": "30000000"})
    assert not hooks.active
    assert hooks.watchdog_interval_s is None
    hooks.ready()
    hooks.tick(healthy=True, status="ok")
    hooks.reloading()
    hooks.reloaded()
    hooks.stopping()


def test_bad_notify_socket_is_refused_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    hooks = SystemdHooks.from_environment({"NOTIFY_SOCKET": "relative/path"})
    assert not hooks.active
    assert [r.getMessage() for r in caplog.records] == [
        "not notifying systemd: NOTIFY_SOCKET must be a path or start with '@', got 'relative/path'"
    ]


def test_unreachable_socket_never_raises_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.send("READY=1") is False
    assert notifier.send("WATCHDOG=1") is False
    assert len(caplog.records) == 1
    assert "cannot notify systemd" in caplog.records[0].getMessage()
    assert "No such file or directory" in caplog.records[0].getMessage()


def test_full_socket_queue_costs_at_most_half_a_second(systemd: FakeSystemd) -> None:
    """systemd not reading its socket must not hang the main loop (the watchdog's job)."""
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address: str | bytes = systemd.address
    if systemd.address.startswith("@"):
        address = b"\0" + systemd.address[1:].encode()
    filler.connect(address)
    filler.setblocking(False)
    with filler:
        with pytest.raises(BlockingIOError):
            for _ in range(100_000):
                filler.send(b"x" * 512)
        started = time.monotonic()
        assert Notifier(systemd.address).send("WATCHDOG=1") is False
        assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),  # meant for another
        ({"WATCHDOG_USEC": "thirty"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
    ],
)
def test_watchdog_environment(env: dict[str, str], expected: float | None) -> None:
    assert read_environment(env, pid=4242).watchdog_interval_s == expected


def test_read_environment_defaults_to_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "@x")
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    env = read_environment()
    assert env.notify_socket == "@x"
    assert env.watchdog_interval_s == 1.0


# --- the daemon end to end ---------------------------------------------------------------

SO_TIMESTAMPNS = 35  # Linux; the socket module does not name it

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "demo"


def demo_config(path: Path, meters: list[str], broken: bool = False) -> None:
    tables = [
        f"""
[[meters]]
name = "{"Bad Name!" if broken else name}"
role = "{"primary" if i == 0 else "secondary"}"
source = "replay:{DEMO / f"{name}.txt"}"
replay_interval_s = 0.05
replay_loop = true
"""
        for i, name in enumerate(meters)
    ]
    path.write_text(f'[buffer]\npath = "{path.parent / "outbox.db"}"\n' + "".join(tables))


def wait_for(
    systemd: FakeSystemd, wanted: str, deadline_s: float = 10.0
) -> tuple[list[str], list[list[str]]]:
    """Datagrams until one containing field `wanted`; returns it and everything before."""
    seen: list[list[str]] = []
    deadline = time.monotonic() + deadline_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            fields = systemd.receive(timeout=left)
        except TimeoutError:
            break
        if wanted in fields:
            return fields, seen
        seen.append(fields)
    raise AssertionError(f"no {wanted} within {deadline_s} s; got {seen}")


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def lines_for(stdout: Path, meter: str) -> int:
    return stdout.read_text().count(f'"meter":"{meter}"')


def test_daemon_feeds_a_one_second_watchdog_twice_a_second(
    abstract_systemd: FakeSystemd, tmp_path: Path
) -> None:
    """WatchdogSec=1: systemd wants a ping every 0.5 s; a 1 s main loop tick was too slow."""
    systemd = abstract_systemd
    config = tmp_path / "p1daemon.toml"
    demo_config(config, ["house"])
    env = {k: v for k, v in os.environ.items() if k not in {"JOURNAL_STREAM", "WATCHDOG_PID"}}
    env.update(NOTIFY_SOCKET=systemd.address, WATCHDOG_USEC="1000000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "p1daemon", "run", "--config", str(config), "--stdout"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for(systemd, "READY=1")
        # The kernel stamps each datagram as it is queued, so a test process that is
        # scheduled late does not make the daemon's pings look late.
        systemd.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        arrivals: list[float] = []
        deadline = time.monotonic() + 10
        while len(arrivals) < 8 and time.monotonic() < deadline:  # about 2.5 s of pings
            systemd.sock.settimeout(2.0)
            data, ancillary, _, _ = systemd.sock.recvmsg(4096, socket.CMSG_SPACE(16))
            if "WATCHDOG=1" in data.decode().split("\n"):
                [(_, _, stamp)] = ancillary
                seconds, nanoseconds = struct.unpack("qq", stamp[:16])
                arrivals.append(seconds + nanoseconds / 1e9)
        gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
        assert len(gaps) == 7
        # The daemon's own schedule is the typical gap: a tick every third of the timeout
        # (0.33 s), so well inside 0.5 s; a 0.5 s or 1 s tick puts the median at 0.5 or 1.
        # A gap the CPU scheduler stretched (the machine busy) may pass 0.5 s, but none may
        # reach the timeout itself, where systemd would kill the daemon.
        assert gaps[3] <= 0.45, gaps
        assert gaps[-1] < 1.0, gaps
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def abstract_systemd() -> Iterator[FakeSystemd]:
    with fake_systemd("abstract") as fake:
        yield fake


def test_daemon_under_a_fake_systemd(abstract_systemd: FakeSystemd, tmp_path: Path) -> None:
    """`p1daemon run` as systemd starts it: READY, fed watchdog, STATUS, reload, stop."""
    systemd = abstract_systemd
    config = tmp_path / "p1daemon.toml"
    demo_config(config, ["house"])
    stdout, stderr = tmp_path / "stdout.jsonl", tmp_path / "stderr.log"
    env = {k: v for k, v in os.environ.items() if k not in {"JOURNAL_STREAM", "WATCHDOG_PID"}}
    env.update(NOTIFY_SOCKET=systemd.address, WATCHDOG_USEC="1000000")
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "p1daemon", "run", "--config", str(config), "--stdout"],
            stdout=out,
            stderr=err,
            env=env,
        )
    try:
        wait_for(systemd, "READY=1")
        pings = 0
        statuses: list[str] = []
        while pings < 2 or not statuses:  # fed every tick (1 s) while healthy
            fields, _ = wait_for(systemd, "WATCHDOG=1", 5.0)
            pings += 1
            statuses += [f for f in fields if f.startswith("STATUS=")]
        assert statuses[0].startswith("STATUS=")
        wait_until(lambda: lines_for(stdout, "house") > 0, "house readings")

        demo_config(config, ["house", "carport"])  # a changed configuration applies
        proc.send_signal(signal.SIGHUP)
        fields, _ = wait_for(systemd, "RELOADING=1")
        assert fields[1].startswith("MONOTONIC_USEC=")
        wait_for(systemd, "READY=1")
        wait_until(lambda: lines_for(stdout, "carport") > 0, "carport readings after reload")

        demo_config(config, ["house", "carport"], broken=True)  # refused: old one runs on
        proc.send_signal(signal.SIGHUP)
        wait_for(systemd, "RELOADING=1")
        wait_for(systemd, "READY=1")
        assert "reload refused" in stderr.read_text()
        before = lines_for(stdout, "house"), lines_for(stdout, "carport")
        wait_until(
            lambda: (
                lines_for(stdout, "house") > before[0] and lines_for(stdout, "carport") > before[1]
            ),
            "both meters still read after the refused reload",
        )
        assert "meter house: settings changed" not in stderr.read_text()

        proc.send_signal(signal.SIGTERM)
        wait_for(systemd, "STOPPING=1")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in stderr.read_text()
