"""The daemon as a whole: hooks, finite replays, reload, health - in-process and fast."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon_support import CollectingSink, telegram, wait_until

import p1daemon.daemon.reader as reader_module
from p1daemon.config import Config, MeterConfig, load_config
from p1daemon.daemon.app import Daemon
from p1daemon.daemon.backoff import Backoff
from p1daemon.daemon.status import ReadingRate, status_line
from p1daemon.source.base import ByteSource
from p1daemon.source.factory import source_for


class RecordingHooks:
    def __init__(self, on_ready: Callable[[], None] | None = None) -> None:
        self.events: list[str] = []
        self.ticks: list[tuple[bool, str]] = []
        self._on_ready = on_ready

    def ready(self) -> None:
        self.events.append("ready")
        if self._on_ready:
            self._on_ready()

    def tick(self, *, healthy: bool, status: str) -> None:
        self.ticks.append((healthy, status))

    def reloading(self) -> None:
        self.events.append("reloading")

    def reloaded(self) -> None:
        self.events.append("reloaded")

    def stopping(self) -> None:
        self.events.append("stopping")


class CountingFactory:
    """Builds real sources, counting how often each meter's reader was (re)created."""

    def __init__(self) -> None:
        self.created: Counter[str] = Counter()

    def __call__(self, meter: MeterConfig) -> ByteSource:
        self.created[meter.name] += 1
        return source_for(meter)


def capture(tmp_path: Path, name: str, seqs: range, equipment: str = "E1") -> Path:
    path = tmp_path / f"{name}.txt"
    path.write_bytes(b"".join(telegram(seq, equipment) for seq in seqs))
    return path


def config(*meters: dict[str, Any]) -> Config:
    return Config.model_validate({"meters": list(meters)})


def replay(name: str, path: Path, **keys: Any) -> dict[str, Any]:
    role = keys.pop("role", "primary" if name == "house" else "secondary")
    return {"name": name, "role": role, "source": f"replay:{path}", **keys}


@pytest.fixture
def background() -> Iterator[Callable[[Daemon], threading.Thread]]:
    threads: list[tuple[Daemon, threading.Thread]] = []
    results: dict[int, int] = {}

    def run(daemon: Daemon) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: results.setdefault(id(daemon), daemon.run(handle_signals=False))
        )
        thread.start()
        threads.append((daemon, thread))
        return thread

    yield run
    for daemon, thread in threads:
        daemon.request_stop()
        thread.join(5)
        assert not thread.is_alive()


def test_finite_replays_end_the_daemon_with_everything_delivered(tmp_path: Path) -> None:
    cfg = config(
        replay("house", capture(tmp_path, "house", range(1, 31)), replay_interval_s=0),
        replay("carport", capture(tmp_path, "carport", range(101, 111)), replay_interval_s=0),
    )
    sink = CollectingSink()
    hooks = RecordingHooks()
    assert Daemon(cfg, sink, hooks).run(handle_signals=False) == 0
    assert sink.seqs("house") == list(range(1, 31))
    assert sink.seqs("carport") == list(range(101, 111))
    assert {r.role for r in sink.of("carport")} == {"secondary"}
    assert hooks.events == ["ready", "stopping"]
    assert sink.stopped and sink.submitted_after_stop == 0


def test_ready_after_readers_start_ticks_report_health_and_status(
    tmp_path: Path, background: Callable[[Daemon], threading.Thread]
) -> None:
    cfg = config(
        replay(
            "house", capture(tmp_path, "h", range(1, 3)), replay_interval_s=0.01, replay_loop=True
        ),
        replay(
            "carport", capture(tmp_path, "c", range(5, 7)), replay_interval_s=0.01, replay_loop=True
        ),
    )
    sink = CollectingSink()
    seen_at_ready: list[Any] = []
    daemon: Daemon
    hooks = RecordingHooks(
        lambda: seen_at_ready.append((sink.started, sorted(daemon.meter_stats())))
    )
    daemon = Daemon(cfg, sink, hooks, tick_s=0.05)
    thread = background(daemon)
    assert wait_until(lambda: len(hooks.ticks) >= 5)
    assert seen_at_ready == [(True, ["carport", "house"])]
    healthy, status = hooks.ticks[-1]
    assert healthy
    assert status.startswith("2 meters, ") and status.endswith(" readings/min")
    assert int(status.split(", ")[1].split()[0]) > 60  # ~100/s of replay
    daemon.request_stop()
    thread.join(5)
    assert hooks.events == ["ready", "stopping"]
    assert sink.stopped and sink.submitted_after_stop == 0


def test_a_live_meter_keeps_the_daemon_running_after_a_replay_ended(
    tmp_path: Path, background: Callable[[Daemon], threading.Thread]
) -> None:
    cfg = config(
        replay("house", capture(tmp_path, "h", range(1, 3)), replay_interval_s=0),
        {"name": "carport", "role": "secondary", "source": str(tmp_path / "no-port")},
    )
    daemon = Daemon(cfg, CollectingSink(), tick_s=0.02)
    thread = background(daemon)
    assert wait_until(lambda: daemon.meter_stats()["house"].state == "ended")
    assert not wait_until(lambda: not thread.is_alive(), timeout=0.3)
    assert daemon.meter_stats()["carport"].state == "waiting"
    assert daemon.healthy()  # waiting for a port is healthy: it is actively reconnecting
    assert "1 waiting for its port" in daemon.status()


def test_apply_config_restarts_only_changed_readers(
    tmp_path: Path,
    background: Callable[[Daemon], threading.Thread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="p1daemon")
    house = replay(
        "house", capture(tmp_path, "h", range(1, 3)), replay_interval_s=0.01, replay_loop=True
    )
    carport = replay(
        "carport", capture(tmp_path, "c", range(5, 7)), replay_interval_s=0.01, replay_loop=True
    )
    factory = CountingFactory()
    sink = CollectingSink()
    daemon = Daemon(config(house, carport), sink, source_factory=factory, tick_s=0.02)
    background(daemon)
    assert wait_until(lambda: len(sink.of("carport")) >= 5)
    carport_before = daemon.meter_stats()["carport"]
    accepted_before = carport_before.accepted

    garage = replay(
        "garage", capture(tmp_path, "g", range(9, 10)), replay_interval_s=0.01, replay_loop=True
    )
    daemon.apply_config(config(house, {**carport, "replay_interval_s": 0.02}, garage))
    assert wait_until(lambda: len(sink.of("garage")) >= 2)
    assert factory.created == Counter({"house": 1, "carport": 2, "garage": 1})
    stats = daemon.meter_stats()["carport"]
    assert stats is carport_before  # counters carry on across the restart
    assert wait_until(lambda: stats.accepted > accepted_before + 2)

    daemon.apply_config(config(house, garage))
    assert sorted(daemon.meter_stats()) == ["garage", "house"]
    settled = len(sink.of("carport"))
    assert not wait_until(lambda: len(sink.of("carport")) > settled, timeout=0.2)
    assert factory.created == Counter({"house": 1, "carport": 2, "garage": 1})
    logged = [r.getMessage() for r in caplog.records if r.name == "p1daemon.daemon.app"]
    assert "meter carport: settings changed, reader restarted" in logged
    assert "meter garage: added" in logged
    assert "meter carport: removed" in logged


def test_reload_refuses_a_broken_file_and_keeps_running(
    tmp_path: Path,
    background: Callable[[Daemon], threading.Thread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture(tmp_path, "house", range(1, 3))
    path = tmp_path / "p1daemon.toml"
    good = (
        '[[meters]]\nname = "house"\nsource = "replay:house.txt"\n'
        "replay_loop = true\nreplay_interval_s = 0.01\n"
    )
    path.write_text(good)
    sink = CollectingSink()
    hooks = RecordingHooks()
    daemon = Daemon(
        load_config(path, {}), sink, hooks, reload=lambda: load_config(path, {}), tick_s=0.02
    )
    background(daemon)
    assert wait_until(lambda: len(sink.of("house")) >= 2)

    path.write_text(good.replace('name = "house"', 'name = "House"'))
    daemon.request_reload()
    assert wait_until(lambda: hooks.events.count("reloaded") == 1)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"reload refused: {path}: meters[0].name: use lower-case letters, digits, '-' and '_' "
        "only (it becomes an MQTT topic level), got 'House'",
        "reload refused: the previous configuration keeps running",
    ]
    count = len(sink.of("house"))
    assert wait_until(lambda: len(sink.of("house")) > count + 2)  # still reading

    path.write_text(good.replace("replay_interval_s = 0.01", "replay_interval_s = 0.02"))
    daemon.request_reload()
    assert wait_until(lambda: hooks.events.count("reloaded") == 2)
    assert daemon.config.meters[0].replay_interval_s == 0.02
    assert hooks.events == ["ready", "reloading", "reloaded", "reloading", "reloaded"]


class HangingSource:
    """A port whose read never returns: a hung driver the watchdog must notice."""

    def __init__(self, release: threading.Event) -> None:
        self._release = release

    description = "hanging"
    line_settings = None

    def open(self) -> None:
        pass

    def read(self, timeout: float) -> bytes:
        self._release.wait()
        return b""

    def close(self) -> None:
        pass


def test_a_hung_reader_makes_the_daemon_unhealthy(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    background: Callable[[Daemon], threading.Thread],
) -> None:
    monkeypatch.setattr(reader_module, "STALL_LIMIT_S", 0.2)
    release = threading.Event()
    cfg = config({"name": "house", "source": "/dev/hung"})
    hooks = RecordingHooks()
    daemon = Daemon(
        cfg, CollectingSink(), hooks, source_factory=lambda m: HangingSource(release), tick_s=0.02
    )
    background(daemon)
    try:
        assert wait_until(lambda: any(not healthy for healthy, _ in hooks.ticks))
    finally:
        release.set()


class StatusSink(CollectingSink):
    def __init__(self) -> None:
        super().__init__()
        self.ok = True

    def status(self) -> str:
        return "outbox 3"

    def healthy(self) -> bool:
        return self.ok


def test_sink_status_and_health_are_part_of_the_daemon_s(tmp_path: Path) -> None:
    cfg = config(replay("house", capture(tmp_path, "h", range(1, 2)), replay_interval_s=0))
    sink = StatusSink()
    daemon = Daemon(cfg, sink)
    assert daemon.status() == "1 meter, 0 readings/min, outbox 3"
    assert daemon.healthy()
    sink.ok = False
    assert not daemon.healthy()


def test_reading_rate_over_the_last_minute() -> None:
    rate = ReadingRate()
    assert rate.sample(0.0, 0) == 0.0
    assert rate.sample(30.0, 60) == pytest.approx(120.0)
    assert rate.sample(60.0, 120) == pytest.approx(120.0)
    assert rate.sample(120.0, 120) == pytest.approx(0.0)  # nothing in the last minute


def test_status_line() -> None:
    assert status_line(2, 0, 0, 118.4, "") == "2 meters, 118 readings/min"
    assert status_line(3, 2, 1, 60, "broker down") == (
        "3 meters, 2 waiting for their ports, 1 silent, 60 readings/min, broker down"
    )


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 5.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    with pytest.raises(ValueError):
        Backoff(6.0, 5.0)


def test_a_reader_that_cannot_start_makes_the_daemon_unhealthy(tmp_path: Path) -> None:
    def broken_factory(meter: MeterConfig) -> ByteSource:
        raise ValueError("no such thing")

    daemon = Daemon(
        config({"name": "house", "source": "/dev/x"}),
        CollectingSink(),
        source_factory=broken_factory,
    )
    daemon.start()
    try:
        assert wait_until(lambda: daemon.meter_stats()["house"].state == "failed")
        assert not daemon.healthy()
    finally:
        daemon.shutdown()


def test_a_reload_that_blows_up_keeps_the_old_configuration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> Config:
        raise RuntimeError("disk on fire")

    cfg = config(replay("house", capture(tmp_path, "h", range(1, 2)), replay_interval_s=0))
    hooks = RecordingHooks()
    daemon = Daemon(cfg, CollectingSink(), hooks, reload=explode)
    assert daemon.reload() is False
    assert daemon.config is cfg
    assert hooks.events == ["reloading", "reloaded"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "reload refused: RuntimeError: disk on fire; the previous configuration keeps running"
    ]


def test_reload_says_when_publishing_settings_need_a_restart(
    tmp_path: Path,
    background: Callable[[Daemon], threading.Thread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="p1daemon")
    house = replay("house", capture(tmp_path, "h", range(1, 3)), replay_interval_s=0.01)
    daemon = Daemon(config(house), CollectingSink(), tick_s=0.02)
    background(daemon)

    def restart_warnings() -> int:
        return sum("take effect after a restart" in r.getMessage() for r in caplog.records)

    daemon.apply_config(config({**house, "replay_interval_s": 0.02}))
    assert restart_warnings() == 0  # a reader setting: applied by restarting the reader
    with_site = Config.model_validate({"meters": [house], "site": {"topology": "series"}})
    daemon.apply_config(with_site)
    assert restart_warnings() == 1
    daemon.apply_config(Config.model_validate({"meters": [{**house, "export_limit_kw": 3.0}]}))
    assert restart_warnings() == 2
