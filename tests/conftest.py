"""Shared test plumbing: where the field captures live.

The real telegrams in ../shared/fixtures are replayed by every run but never copied
into this repository. Outside CI a checkout without them skips those tests (with the
reason printed); in CI (CI=true) their absence is a failure, because CI must replay them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mosquitto_broker import Broker, Subscriber

from p1daemon.daemon.reader import MeterReader

REPO = Path(__file__).resolve().parents[1]
OWN_FIXTURES = REPO / "fixtures"
SHARED_FIXTURES = Path(
    os.environ.get("P1DAEMON_SHARED_FIXTURES", REPO.parent / "shared" / "fixtures")
)


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


@pytest.fixture
def readers() -> Iterator[list[MeterReader]]:
    """Meter readers a test started; each is stopped (and must stop) afterwards."""
    started: list[MeterReader] = []
    yield started
    for reader in started:
        reader.request_stop()
    for reader in started:
        assert reader.join(2.0), f"reader {reader.name} did not stop"
