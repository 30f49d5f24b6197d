"""The outbox file on its own: order, bound, damaged files and rows, unusable paths."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from p1daemon.publish import codec
from p1daemon.publish.outbox import Outbox, OutboxForeign, OutboxUnavailable, StoredReading


def _payload(i: int) -> bytes:
    minute, second = i // 60 % 60, i % 60
    return (
        f'{{"equipment_id":"E0044007131650618","timestamp":"2019-03-24T15:{minute:02d}:'
        f'{second:02d}+01:00","import":{{"t1_kwh":{3000 + i}.125,"power_kw":0.{i % 1000:03d}}},'
        f'"meter":"house","role":"primary"}}'
    ).encode()


def _rows(start: int, count: int, meter: str = "house") -> list[StoredReading]:
    return [
        StoredReading(k, meter, _payload(k), 1_700_000_000.0 + k)
        for k in range(start, start + count)
    ]


def _open(path: Path, max_bytes: int = 64_000_000) -> Outbox:
    outbox = Outbox(path, max_bytes=max_bytes)
    outbox.open()
    return outbox


def test_codec_round_trip_and_compresses_a_real_reading_document() -> None:
    document = _payload(7)
    assert codec.decode(codec.encode(document)) == document
    incompressible = bytes(range(256))
    assert codec.decode(codec.encode(incompressible)) == incompressible
    with pytest.raises(codec.PayloadFormatError):
        codec.decode(b"\x09whatever")


def test_rows_come_back_in_key_order_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = _open(path)
    outbox.write(_rows(1, 50), [], keep_after=0)
    outbox.write(_rows(51, 50), [3, 4, 5], keep_after=0)
    assert outbox.rows == 97
    outbox.close()

    again = _open(path)
    assert again.rows == 97 and again.max_key == 100
    loaded = again.load_after(0, 1000)
    assert [r.key for r in loaded] == [k for k in range(1, 101) if k not in (3, 4, 5)]
    assert loaded[0].payload == _payload(1) and loaded[0].meter == "house"
    assert [r.key for r in again.load_after(60, 5)] == [61, 62, 63, 64, 65]
    assert again.oldest_accepted_at() == 1_700_000_001.0


def test_full_outbox_drops_the_oldest_unsent_rows_and_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = _open(path, max_bytes=40_000)
    total_dropped = 0
    top = 0
    for start in range(1, 2001, 100):
        dropped, top_dropped = outbox.write(_rows(start, 100), [], keep_after=10)
        total_dropped += dropped
        top = max(top, top_dropped)
    keys = [r.key for r in outbox.load_after(0, 10_000)]
    # Rows 1..10 are "with the broker" (keep_after): never dropped, the count stays honest.
    assert keys[:10] == list(range(1, 11))
    # What is left after them is the newest contiguous run, up to the last row written.
    assert keys[10:] == list(range(keys[10], 2001))
    assert total_dropped == 2000 - len(keys)
    assert top == keys[10] - 1
    assert outbox.rows == len(keys)
    used = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0] * 4096
    assert used <= 40_000 + 3 * 4096  # bounded (a few pages of slack for the free list)


def _outbox_header(tmp_path: Path) -> bytes:
    """The first 100 bytes of a real outbox: what makes a file recognisably p1daemon's."""
    scratch = tmp_path / "scratch" / "outbox.db"
    outbox = _open(scratch)
    outbox.close()
    return scratch.read_bytes()[:100]


def test_garbage_file_is_moved_aside_and_a_fresh_outbox_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Only a file p1daemon wrote may be moved aside (issue 9): an outbox header, garbage after.
    path = tmp_path / "outbox.db"
    header = _outbox_header(tmp_path)
    path.write_bytes(header + b"this is not a database, just a damaged file " * 200)
    caplog.set_level(logging.ERROR, logger="p1daemon.publish")
    outbox = _open(path)
    assert outbox.rows == 0 and len(outbox.moved_aside) == 1
    aside = outbox.moved_aside[0]
    assert aside.read_bytes()[100:].startswith(b"this is not a database")
    lines = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(lines) == 1 and str(aside) in lines[0] and "started a fresh one" in lines[0]
    outbox.write(_rows(1, 3), [], keep_after=0)
    assert [r.key for r in outbox.load_after(0, 10)] == [1, 2, 3]


def test_a_garbage_file_p1daemon_did_not_write_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is not a database, just a damaged file " * 200)
    with pytest.raises(OutboxForeign, match="not a p1daemon outbox"):
        _open(path)
    assert path.read_bytes().startswith(b"this is not a database")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.db"]


def test_damaged_pages_inside_a_real_outbox_are_detected_at_open(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = _open(path)
    outbox.write(_rows(1, 400), [], keep_after=0)
    outbox.close()
    # Fold the WAL into the main file, then scribble over pages in the middle of it.
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 5 * 4096
    data[2 * 4096 : 4 * 4096] = b"\xa5" * (2 * 4096)
    path.write_bytes(bytes(data))

    again = _open(path)
    assert len(again.moved_aside) == 1 and again.rows == 0
    again.write(_rows(401, 2), [], keep_after=0)
    assert again.rows == 2


def test_a_foreign_table_is_not_mistaken_for_an_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, topic TEXT, body BLOB)")
    db.commit()
    db.close()
    # Not an outbox, and not p1daemon's to move either (issue 9): refused, left as it is.
    with pytest.raises(OutboxForeign, match="did not write"):
        _open(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.db"]


def test_a_row_that_cannot_be_decoded_is_dropped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.db"
    outbox = _open(path)
    outbox.write(_rows(1, 3), [], keep_after=0)
    db = sqlite3.connect(path)
    db.execute("UPDATE outbox SET payload = x'7700' WHERE id = 2")
    db.commit()
    db.close()
    caplog.set_level(logging.ERROR, logger="p1daemon.publish")
    assert [r.key for r in outbox.load_after(0, 10)] == [1, 3]
    assert outbox.rows == 2
    assert any("row 2 cannot be read" in r.getMessage() for r in caplog.records)


def test_an_unusable_path_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    outbox = Outbox(blocker / "outbox.db", max_bytes=1_000_000)
    with pytest.raises(OutboxUnavailable, match=r"cannot open outbox .*not-a-directory"):
        outbox.open()
    assert not outbox.is_open


def test_synchronous_setting_reaches_sqlite(tmp_path: Path) -> None:
    for name, value in (("normal", 1), ("full", 2), ("off", 0)):
        outbox = Outbox(tmp_path / f"{name}.db", max_bytes=1_000_000, synchronous=name)  # type: ignore[arg-type]
        outbox.open()
        assert outbox._db is not None
        assert outbox._db.execute("PRAGMA synchronous").fetchone()[0] == value
        assert outbox._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        outbox.close()


def test_a_folder_at_the_path_is_refused_and_not_moved(tmp_path: Path) -> None:
    # Until issue 9 a folder was renamed aside as "corrupt": the user's folder, moved.
    path = tmp_path / "outbox.db"
    path.mkdir()
    (path / "stray").write_text("kept")
    with pytest.raises(OutboxForeign, match="is a folder"):
        _open(path)
    assert (path / "stray").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.db"]


def test_only_one_process_may_use_an_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    first = _open(path)
    first.write(_rows(1, 5), [], keep_after=0)
    second = Outbox(path, max_bytes=1_000_000)
    with pytest.raises(OutboxUnavailable, match="in use by another process"):
        second.open()
    assert not second.is_open and first.rows == 5  # and nothing was moved aside
    first.close()
    second.open()
    assert second.rows == 5
