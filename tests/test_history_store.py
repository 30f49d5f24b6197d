"""The history file: one transaction per closed quarter for all meters, readable while
written, and a file that cannot be written never holds up the reader thread."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from history_synth import SynthMeter, Truth, run_meter

from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import MeterSpec
from p1daemon.views.history.recorder import HistoryRecorder
from p1daemon.views.history.rows import Row
from p1daemon.views.history.settings import HistorySettings
from p1daemon.views.history.store import (
    APPLICATION_ID,
    HistoryStore,
    HistoryUnavailable,
    recognisably_ours,
)
from p1daemon.views.history.writer import HistoryWriter

SITE = SiteSettings()
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def quarters_of_rows(meters: int, quarters: int) -> Iterator[list[Row]]:
    """Per closed quarter, the rows all `meters` produce for it."""
    synth = [SynthMeter(f"m{i}", "primary" if i == 0 else "secondary") for i in range(meters)]
    recorder = HistoryRecorder(SITE, [MeterSpec(m.name, m.role) for m in synth])
    end = START + timedelta(minutes=15 * quarters)
    streams = [run_meter(m, START, end, Truth()) for m in synth]
    batch: list[Row] = []
    for group in zip(*streams, strict=True):
        for reading in group:
            batch.extend(recorder.feed(reading))
        at = group[0].timestamp
        if batch and at is not None and at.minute % 15 == 0 and at > START:
            yield batch
            batch = []
    if batch:
        yield batch


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_one_transaction_per_closed_quarter_for_all_meters(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    writer = HistoryWriter(HistorySettings(path=str(path), commit_delay_s=0.3), path)
    writer.open_states()
    writer.start()
    try:
        for batch in quarters_of_rows(meters=3, quarters=4):
            # The three meters' rows arrive one by one, as their readers feed them.
            for row in batch:
                writer.submit([row])
            assert writer.flush()
        assert writer.commits == 4
    finally:
        writer.stop()
    store = HistoryStore.open(path, readonly=True)
    assert {p.meter for p in store.points()} == {"m0", "m1", "m2"}
    ids = [p.id for p in store.points()]
    assert len(list(store.quarters(ids, START, START + timedelta(hours=2)))) == 12
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_readable_by_another_process_while_the_writer_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    writer = HistoryStore.open(path)
    batches = list(quarters_of_rows(meters=1, quarters=3))
    writer.write(batches[0])
    reader = HistoryStore.open(path, readonly=True)
    ids = [p.id for p in reader.points()]
    assert len(list(reader.quarters(ids, START, START + timedelta(hours=1)))) == 1
    writer.write(batches[1])
    assert len(list(reader.quarters(ids, START, START + timedelta(hours=1)))) == 2
    reader.close()
    writer.close()


def test_unwritable_history_is_logged_once_never_blocks_and_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the history's folder should be")
    path = blocker / "history.db"
    settings = HistorySettings(path=str(path), commit_delay_s=0.0, retry_interval_s=0.1)
    writer = HistoryWriter(settings, path)
    caplog.set_level(logging.ERROR, "p1daemon.history")
    assert writer.open_states() == {}
    writer.start()
    try:
        batches = list(quarters_of_rows(meters=2, quarters=3))
        began = time.monotonic()
        for batch in batches:
            writer.submit(batch)
        assert time.monotonic() - began < 0.05  # the reader thread never waits
        wait_for(lambda: not writer.health()["ok"])
        time.sleep(0.5)  # several retries
        assert len([r for r in caplog.records if "history" in r.getMessage()]) == 1
        assert writer.health()["pending"] == sum(len(b) for b in batches)
        blocker.unlink()  # the operator fixes it: the next retry writes everything
        wait_for(lambda: writer.health()["ok"] and writer.health()["pending"] == 0)
    finally:
        writer.stop()
    store = HistoryStore.open(path, readonly=True)
    ids = [p.id for p in store.points()]
    assert len(list(store.quarters(ids, START, START + timedelta(hours=1)))) == 6
    store.close()


def test_full_filesystem_keeps_rows_in_memory_and_catches_up(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount(8) to make a small filesystem")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        path = mount / "history.db"
        settings = HistorySettings(path=str(path), commit_delay_s=0.0, retry_interval_s=0.1)
        writer = HistoryWriter(settings, path)
        writer.open_states()
        writer.start()
        filler = mount / "filler"
        handle = filler.open("wb", buffering=0)  # fill the rest of the filesystem
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
        handle.close()
        batches = list(quarters_of_rows(meters=2, quarters=60))
        began = time.monotonic()
        for batch in batches:
            writer.submit(batch)
        assert time.monotonic() - began < 0.2
        wait_for(lambda: not writer.health()["ok"])
        filler.unlink()
        wait_for(lambda: writer.health()["ok"] and writer.health()["pending"] == 0)
        writer.stop()
        store = HistoryStore.open(path, readonly=True)
        ids = [p.id for p in store.points()]
        assert len(list(store.quarters(ids, START, START + timedelta(days=1)))) == 120
        store.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_corrupt_history_of_ours_is_moved_aside_and_restarted(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    store = HistoryStore.open(path)
    store.write(next(quarters_of_rows(meters=1, quarters=2)))
    store.close()
    data = bytearray(path.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)  # the pages behind the header destroyed
    path.write_bytes(bytes(data))
    assert recognisably_ours(path)
    reopened = HistoryStore.open(path)
    reopened.write(next(quarters_of_rows(meters=1, quarters=2)))
    reopened.close()
    aside = list(tmp_path.glob("history.db.corrupt-*"))
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))]


def test_a_file_that_is_not_ours_is_never_touched(tmp_path: Path) -> None:
    foreign = tmp_path / "history.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE mine (x)")
    db.commit()
    db.close()
    before = foreign.read_bytes()
    with pytest.raises(HistoryUnavailable, match="not a p1daemon history"):
        HistoryStore.open(foreign)
    text = tmp_path / "notes.db"
    text.write_text("shopping list")
    with pytest.raises(HistoryUnavailable, match="not a p1daemon history"):
        HistoryStore.open(text)
    assert foreign.read_bytes() == before and text.read_text() == "shopping list"
    assert list(tmp_path.glob("*.corrupt-*")) == []


def test_retention_keeps_years_and_bounds_the_size(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    store = HistoryStore.open(path)
    rows = [r for batch in quarters_of_rows(meters=1, quarters=96 * 3) for r in batch]
    store.write(rows)
    ids = [p.id for p in store.points()]
    now = START + timedelta(days=365 * 2)
    assert store.prune(now, keep_years=7, max_mb=100) == 0
    dropped = store.prune(now, keep_years=1, max_mb=100)
    assert dropped == 96 * 3
    assert list(store.quarters(ids, START, now)) == []
    store.write(rows)
    size = store.data_bytes()
    empty = HistoryStore.open(tmp_path / "empty.db")
    base = empty.data_bytes()
    empty.close()
    limit = base + (size - base) * 0.6
    dropped = store.prune(START + timedelta(days=4), keep_years=7, max_mb=limit / 2**20)
    assert 0 < dropped < 96 * 3  # oldest days first, until it fits
    remaining = list(store.quarters(ids, START, START + timedelta(days=4)))
    assert remaining and remaining[0].start > START
    assert store.data_bytes() <= limit
    store.close()
