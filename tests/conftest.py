"""Shared test plumbing: where the field captures live, and how workers share the suite.

The real telegrams in ../shared/fixtures are replayed by every run but never copied
into this repository. Outside CI a checkout without them skips those tests (with the
reason printed); in CI (CI=true) their absence is a failure, because CI must replay them.

The suite runs on pytest-xdist workers (pyproject's addopts). Tests go to workers one at a
time, except the modules in `SHARED_SETUP`: their tests share an expensive module fixture,
so each of those groups runs on one worker, and first, since they are the longest.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from hypothesis import settings
from mosquitto_broker import Broker, Subscriber

from p1daemon.daemon.reader import MeterReader
from p1daemon.frame.events import Frame
from p1daemon.frame.framer import Framer
from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.publish.sink import MqttSink

REPO = Path(__file__).resolve().parents[1]
OWN_FIXTURES = REPO / "fixtures"
SHARED_FIXTURES = Path(
    os.environ.get("P1DAEMON_SHARED_FIXTURES", REPO.parent / "shared" / "fixtures")
)


# Property tests: the same examples on every run and no time limit per example, so that
# neither chance nor a loaded machine decides a run ("deterministic"); a search with new
# random examples, ten times as many, when asked for (P1DAEMON_HYPOTHESIS=explore): a
# case it finds goes into the test as an explicit one.
settings.register_profile("deterministic", derandomize=True, deadline=None, database=None)
settings.register_profile("explore", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("P1DAEMON_HYPOTHESIS", "deterministic"))


# Modules whose tests share one expensive set-up, by group, longest first. A group runs on
# one worker, so the set-up is made once per run rather than once per worker.
SHARED_SETUP: dict[str, str] = {
    "tests/test_install.py": "install",  # one real install (pip) for all its tests
    "tests/test_history_year.py": "synthetic-year",  # the year takes about 8 s to build,
    "tests/test_statements.py": "synthetic-year",  # once per process (shared_year)
    "tests/test_reading_encode.py": "reading-encode",  # every capture replayed once
    "tests/test_watch_e2e.py": "watch-e2e",  # one broker and one running site
    "tests/test_history_evidence.py": "history-evidence",  # one built history
    "tests/test_report_golden.py": "report-golden",  # one built history
}
_GROUP_RANK = {group: rank for rank, group in enumerate(dict.fromkeys(SHARED_SETUP.values()))}


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The shared set-up groups first (in `SHARED_SETUP` order), so that the workers start
    on them; the order inside a module is kept (test_install's last test is the last to
    use its root)."""

    def rank(item: pytest.Item) -> int:
        group = SHARED_SETUP.get(_module(item.nodeid))
        return _GROUP_RANK[group] if group is not None else len(_GROUP_RANK)

    items.sort(key=rank)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """For `--dist load`: single tests to whichever worker is free, but each group of
    `SHARED_SETUP` as one unit. (pytest-xdist's own `loadgroup` would do this through
    `xdist_group` marks, but it renames node ids in a way pytest 9.2 ignores.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedSetupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return SHARED_SETUP.get(_module(nodeid), nodeid)

    config.option.loadscopereorder = False  # keep the collection order made above
    return SharedSetupScheduling(config, log)


@dataclass(frozen=True)
class SharedFixture:
    path: Path
    valid_frames: int
    what: str

    @property
    def name(self) -> str:
        return str(self.path.relative_to(SHARED_FIXTURES))


def shared_fixtures() -> list[SharedFixture]:
    """Rows of ../shared/fixtures/index.tsv; empty when the folder is not there."""
    index = SHARED_FIXTURES / "index.tsv"
    if not index.is_file():
        return []
    with index.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [
        SharedFixture(SHARED_FIXTURES / row["path"], int(row["valid_frames"]), row["what"])
        for row in rows
    ]


def capture_files() -> list[Path]:
    """Every capture a parser test runs over: this repository's own, then the field's."""
    files = sorted(OWN_FIXTURES.rglob("*.txt"))
    if SHARED_FIXTURES.is_dir():
        files += sorted(SHARED_FIXTURES.rglob("*.txt"))
    return files


def capture_frames(path: Path) -> list[Frame]:
    """Every telegram of a capture, CRC or not: a fast path must hold for all of them."""
    return [e for e in Framer(check_crc=False).feed(path.read_bytes()) if isinstance(e, Frame)]


def require_shared_fixtures() -> list[SharedFixture]:
    fixtures = shared_fixtures()
    if not fixtures:
        message = f"shared field captures not found at {SHARED_FIXTURES}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must replay them)")
        pytest.skip(message)
    return fixtures


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto on a free loopback port for one test (skips if not installed)."""
    instance = Broker(tmp_path / "broker")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    """Everything the test's broker sees, collected from before the code under test starts."""
    sub = Subscriber(broker).start()
    yield sub
    sub.stop()


class Output(Protocol):
    """An output a test started (an `MqttSink`, or a `Dispatcher` in front of one)."""

    def stop(self, timeout: float = ...) -> None: ...


@pytest.fixture
def sinks() -> Iterator[list[Output]]:
    """Outputs a test made (`make_sink`, or a built dispatcher); each is stopped afterwards."""
    made: list[Output] = []
    yield made
    for sink in made:
        sink.stop(timeout=5)


def make_sink(
    made: list[Output], tmp_path: Path, port: int, *, outbox: str = "outbox.db", **mqtt: Any
) -> MqttSink:
    """A real sink for a broker test, its outbox in the test's directory (a second sink on
    the same `outbox` is the next run of the first), recorded in `made` to be stopped."""
    sink = MqttSink(
        MqttSettings.model_validate({"port": port, **mqtt}),
        BufferSettings(path=str(tmp_path / outbox), commit_interval_s=0.2),
    )
    made.append(sink)
    return sink


@pytest.fixture
def readers() -> Iterator[list[MeterReader]]:
    """Meter readers a test started; each is stopped (and must stop) afterwards."""
    started: list[MeterReader] = []
    yield started
    for reader in started:
        reader.request_stop()
    for reader in started:
        assert reader.join(2.0), f"reader {reader.name} did not stop"
