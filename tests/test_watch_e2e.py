"""`p1daemon watch` against the real daemon: `p1daemon run` child processes replaying the
demo captures into a real mosquitto, watched by `p1daemon watch` child processes (on a
pipe, and on a pty at 80 columns, read through a terminal model)."""

from __future__ import annotations

import fcntl
import itertools
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import OWN_FIXTURES, REPO
from mosquitto_broker import Broker, Received, Subscriber, free_port, make_tls, wait_until
from watch_terminal import ScreenModel

HOUSE = ("house", "primary", "871685900012345674", OWN_FIXTURES / "demo" / "house.txt")
CARPORT = ("carport", "secondary", "871685900012345681", OWN_FIXTURES / "demo" / "carport.txt")


def write_config(
    path: Path,
    broker: Broker,
    prefix: str,
    meters: list[tuple[str, str, str, Path]],
    *,
    export_limit_kw: float | None = None,
) -> Path:
    text = f"""
[mqtt]
host = "127.0.0.1"
port = {broker.port}
topic_prefix = "{prefix}"
client_id = "watch-test-{prefix.replace("/", "-")}"
keepalive = 5
reconnect_max_delay_s = 1

[buffer]
path = "{path.parent / (prefix.replace("/", "-") + "-outbox.db")}"
"""
    for name, role, ean, capture in meters:
        text += f"""
[[meters]]
name = "{name}"
role = "{role}"
ean = "{ean}"
source = "replay:{capture}"
replay_interval_s = 0.04
replay_loop = true
"""
        if export_limit_kw is not None:
            text += f"export_limit_kw = {export_limit_kw}\nexport_limit_hold_s = 0\n"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_daemon(config: Path) -> Daemon:
    log = config.with_suffix(".log")
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "p1daemon", "run", "--config", str(config)],
            cwd=REPO,
            stdout=handle,
            stderr=handle,
        )
    return Daemon(process, log)


def watch(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p1daemon", "watch", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("watch-broker"))
    broker.start()
    yield broker
    broker.stop()


@dataclass
class Site:
    broker: Broker
    daemon: Daemon
    subscriber: Subscriber


@pytest.fixture(scope="module")
def two_meter_site(
    shared_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """One daemon, two metering points, running until every test here is done with it;
    ready once both meters have published a `day` (their first closed quarter-hour)."""
    folder = tmp_path_factory.mktemp("watch-site")
    subscriber = Subscriber(shared_broker, "p1/#", persistent=False).start()
    daemon = start_daemon(write_config(folder / "p1.toml", shared_broker, "p1", [HOUSE, CARPORT]))
    try:
        subscriber.wait_for(
            lambda messages: {m.topic for m in messages} >= {"p1/house/day", "p1/carport/day"},
            20,
            "a day document from both meters",
        )
        yield Site(shared_broker, daemon, subscriber)
    finally:
        daemon.stop()
        subscriber.stop()


def rows_of(output: str) -> dict[str, list[str]]:
    """The meter rows of a --once view: name -> [role, EAN, kW imp, exp, kWh imp, exp, age]."""
    rows = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 8 and fields[0] in ("house", "carport"):
            rows[fields[0]] = fields[1:]
    return rows


def shown(values: list[Received], *path: str) -> set[str]:
    out = set()
    for message in values:
        doc = message.json()
        for key in path:
            doc = doc[key]
        out.add(f"{doc:.3f}")
    return out


def test_once_shows_both_metering_points_with_the_published_values(two_meter_site: Site) -> None:
    site = two_meter_site
    result = watch("--port", str(site.broker.port), "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 site, 2 meters, 0 with problems" in result.stdout
    rows = rows_of(result.stdout)
    assert set(rows) == {"house", "carport"}, result.stdout
    for name, role, ean, _capture in (HOUSE, CARPORT):
        latest = site.subscriber.on(f"p1/{name}/latest")
        days = site.subscriber.on(f"p1/{name}/day")
        row = rows[name]
        assert row[0] == {"primary": "prim", "secondary": "sec"}[role]
        assert row[1] == ean
        assert row[2] in shown(latest, "import", "power_kw")
        assert row[3] in shown(latest, "export", "power_kw")
        assert row[4] in shown(days, "import", "total_kwh")
        assert row[5] in shown(days, "export", "total_kwh")
        assert row[6].endswith("s") and int(row[6][:-1]) < 10  # fresh: no "!" mark
    # the carport never exports: its column must not show the house's export
    assert rows["carport"][3] == "0.000"


def test_a_terminal_run_at_80_columns_redraws_in_place(two_meter_site: Site) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: `p1daemon watch` on a 80x24 terminal
        os.chdir(REPO)
        os.execv(
            sys.executable,
            [sys.executable, "-m", "p1daemon", "watch", "--port", str(two_meter_site.broker.port)],
        )
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    model = ScreenModel(80, 24)
    received = bytearray()

    def read_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                received.extend(chunk)

    try:

        def two_frames() -> bool:
            read_for(0.1)
            return received.count(b"\x1b[H") >= 2

        wait_until(two_frames, 10, "two frames")
        os.kill(pid, signal.SIGINT)
        read_for(1.0)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    text = received.decode("utf-8")
    assert "Traceback" not in text
    assert os.WEXITSTATUS(status) == 0
    model.feed(text)
    assert model.problems == []
    screen = model.lines()
    assert screen[0].startswith("p1daemon watch") and "1 site, 2 meters" in screen[0]
    assert any(line.startswith("  house ") and "871685900012345674" in line for line in screen)
    assert any(line.startswith("  carport ") for line in screen)
    assert text.endswith("\x1b[?25h\x1b[?1049l")  # the terminal is given back as it was


def test_after_a_sigkill_the_last_will_makes_the_site_offline(
    shared_broker: Broker, tmp_path: Path
) -> None:
    prefix = "killed"
    subscriber = Subscriber(shared_broker, f"{prefix}/#", persistent=False).start()
    daemon = start_daemon(
        write_config(tmp_path / "k.toml", shared_broker, prefix, [HOUSE, CARPORT])
    )
    try:
        subscriber.wait_for(
            lambda ms: (
                {m.topic for m in ms} >= {f"{prefix}/house/latest", f"{prefix}/carport/latest"}
                and any(m.topic == f"{prefix}/status" and m.payload == b"online" for m in ms)
                # Each meter's health says connected (the first report may still say the
                # reader was starting, and `watch` would count that as a problem).
                and all(
                    [m.json().get("connected") for m in ms if m.topic == f"{prefix}/{n}/health"][
                        -1:
                    ]
                    == [True]
                    for n in ("house", "carport")
                )
            ),
            15,
            "both meters online and connected",
        )
        before = watch("--port", str(shared_broker.port), "--prefix", prefix, "--once")
        assert before.returncode == 0, before.stdout + before.stderr
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(5)
        subscriber.wait_for(
            lambda ms: any(m.topic == f"{prefix}/status" and m.payload == b"offline" for m in ms),
            15,
            "the last will",
        )
        after = watch("--port", str(shared_broker.port), "--prefix", prefix, "--once")
    finally:
        daemon.stop()
        subscriber.stop()
    assert after.returncode == 1, after.stdout + after.stderr
    assert "1 site, 2 meters, 1 with problems" in after.stdout
    assert f"{prefix}  OFFLINE" in after.stdout
    assert "! daemon OFFLINE" in after.stdout
    assert set(rows_of(after.stdout)) == {"house", "carport"}  # the last values stay visible


def test_three_daemons_with_three_prefixes_are_three_sites(
    shared_broker: Broker, tmp_path: Path
) -> None:
    daemons = {}
    subscriber = Subscriber(shared_broker, "fleet/#", persistent=False).start()
    port = str(shared_broker.port)
    try:
        for name, limit in (("north", None), ("south", 1.0), ("west", None)):
            # south's house exports above its 1 kW feed-in limit most of the time: an alert
            config = write_config(
                tmp_path / f"{name}.toml",
                shared_broker,
                f"fleet/{name}",
                [HOUSE],
                export_limit_kw=limit,
            )
            daemons[name] = start_daemon(config)
        subscriber.wait_for(
            lambda ms: (
                {m.topic for m in ms}
                >= {f"fleet/{n}/house/latest" for n in ("north", "south", "west")}
                and any(
                    m.topic == "fleet/south/house/alert/export_limit" and m.json()["active"]
                    for m in ms
                )
                # Each meter's health says connected (the first report, made as the
                # broker connection came up, may still say the reader was waiting).
                and all(
                    [m.json().get("connected") for m in ms if m.topic == f"fleet/{n}/house/health"][
                        -1:
                    ]
                    == [True]
                    for n in ("north", "south", "west")
                )
            ),
            20,
            "three sites, connected meters and south's alert",
        )
        # Into a pipe: one line per change, for a few seconds.
        piped = subprocess.Popen(
            [sys.executable, "-m", "p1daemon", "watch", "--port", port, "--prefix", "fleet/+"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3.2)
        piped.send_signal(signal.SIGTERM)
        stream, errors = piped.communicate(timeout=10)
        # south stops cleanly: `offline` is a problem, and sorts south first.
        daemons.pop("south").stop()
        result = watch("--port", port, "--prefix", "fleet/+", "--once")
        listed = watch(
            "--port", port, "--prefix", "fleet/north", "--prefix", "fleet/west", "--once"
        )
    finally:
        for daemon in daemons.values():
            daemon.stop()
        subscriber.stop()
    assert piped.returncode == 0 and errors == "", errors
    lines = stream.splitlines()
    assert " summary sites=3 meters=3 " in lines[0], stream
    by_key: dict[str, list[str]] = {}
    for line in lines:
        stamp, what, text = line.split(" ", 2)
        assert stamp.endswith("Z")
        by_key.setdefault(what, []).append(text)
    assert {"fleet/north/house", "fleet/south/house", "fleet/west/house"} <= set(by_key)
    for texts in by_key.values():  # a line only when something changed
        assert all(a != b for a, b in itertools.pairwise(texts))
    assert any("problems=alert_export_limit" in t for t in by_key["fleet/south/house"]), stream
    assert not any("PROBLEM" in t for t in by_key["fleet/north/house"])

    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 sites, 3 meters, 1 with problems" in result.stdout
    heads = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("fleet/")]
    assert heads == ["fleet/south", "fleet/north", "fleet/west"]  # the problem first
    assert "fleet/south  OFFLINE" in result.stdout
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "2 sites, 2 meters, 0 with problems" in listed.stdout


def test_no_broker_is_one_line_and_exit_status_2() -> None:
    result = watch("--port", str(free_port()), "--once")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "cannot connect to MQTT broker" in result.stderr


def test_broker_settings_tls_and_credentials_come_from_the_config(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    broker = Broker(tmp_path / "broker", users={"watcher": "s3cret"}, tls=tls)
    broker.start()
    try:
        (tmp_path / "password").write_text("s3cret\n")
        config = tmp_path / "p1daemon.toml"
        config.write_text(
            f"""
[mqtt]
host = "localhost"
port = {broker.port}
topic_prefix = "tls-site"
username = "watcher"
password_file = "password"
tls = true
ca_file = "tls/ca.crt"

[[meters]]
name = "house"
role = "primary"
source = "replay:{HOUSE[3]}"
""",
            encoding="utf-8",
        )
        publisher = Subscriber(broker, "x", username="watcher", password="s3cret").start()
        publisher.client.publish("tls-site/status", b"online", qos=1, retain=True).wait_for_publish(
            5
        )
        publisher.stop()
        result = watch("--config", str(config), "--once")
        (tmp_path / "password").write_text("wrong\n")
        refused = watch("--config", str(config), "--once")
    finally:
        broker.stop()
    assert result.returncode == 1, result.stdout + result.stderr  # found, but no health yet
    assert "1 site, 0 meters, 1 with problems" in result.stdout
    assert "tls-site  online" in result.stdout and "no daemon health report" in result.stdout
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stdout == "" and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("watch: MQTT broker localhost:")
    assert "refused" in refused.stderr
