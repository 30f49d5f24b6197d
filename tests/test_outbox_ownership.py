"""Issue 9 item 1: `[buffer] path` may only ever take over a file p1daemon wrote.

A folder, the configuration file, another program's SQLite database: refused with one
line, by `check-config` and by `run`, and left exactly as it was. An outbox of an
earlier version (no application id) is still recognised by its schema, and a full disk
is never mistaken for a damaged outbox.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from small_disk import fill, small_tmpfs

from p1daemon.publish.outbox import (
    APPLICATION_ID,
    Outbox,
    OutboxForeign,
    OutboxUnavailable,
    StoredReading,
    outbox_path_problem,
)

REPO = Path(__file__).resolve().parents[1]

# What the previous version created: the same tables, no application id.
_OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    meter TEXT NOT NULL,
    payload BLOB NOT NULL,
    accepted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _rows(start: int, count: int) -> list[StoredReading]:
    return [
        StoredReading(k, "house", b'{"n": %d, "pad": "%s"}' % (k, b"x" * 200), 1.7e9 + k)
        for k in range(start, start + count)
    ]


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "."))


def _old_outbox(path: Path, rows: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(_OLD_SCHEMA)
    db.execute("INSERT INTO meta(key, value) VALUES('schema', '1')")
    from p1daemon.publish import codec

    for key in range(1, rows + 1):
        db.execute(
            "INSERT INTO outbox VALUES (?, 'house', ?, ?)",
            (key, codec.encode(b'{"n": %d}' % key), 1.7e9 + key),
        )
    db.commit()
    db.close()  # the last connection checkpoints: everything in the main file


def test_a_folder_is_refused_and_left_where_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "photos.txt").write_text("mine")
    problem = outbox_path_problem(folder)
    assert problem is not None and "is a folder" in problem and "\n" not in problem
    with pytest.raises(OutboxForeign, match="is a folder"):
        Outbox(folder, max_bytes=1_000_000).open()
    assert (folder / "photos.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing moved or made


def test_the_configuration_file_is_refused_byte_for_byte_untouched(tmp_path: Path) -> None:
    config = tmp_path / "p1daemon.toml"
    config.write_text('[buffer]\npath = "p1daemon.toml"\n')
    before = config.read_bytes()
    with pytest.raises(OutboxForeign, match="not a p1daemon outbox"):
        Outbox(config, max_bytes=1_000_000).open()
    assert config.read_bytes() == before and _siblings(config) == []


def test_another_programs_database_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "home-assistant_v2.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE states (id INTEGER PRIMARY KEY, state TEXT)")
    db.execute("INSERT INTO states(state) VALUES ('on')")
    db.commit()
    db.close()
    before = path.read_bytes()
    problem = outbox_path_problem(path)
    assert problem is not None and "did not write (tables: states)" in problem
    with pytest.raises(OutboxForeign):
        Outbox(path, max_bytes=1_000_000).open()
    assert path.read_bytes() == before and _siblings(path) == []

    other = tmp_path / "other.db"  # a database that says whose it is
    db = sqlite3.connect(other)
    db.execute("PRAGMA application_id=1234")
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY)")
    db.close()
    assert "another program's SQLite database" in (outbox_path_problem(other) or "")


def test_an_outbox_of_the_previous_version_is_recognised_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    _old_outbox(path, rows=7)
    assert outbox_path_problem(path) is None
    outbox = Outbox(path, max_bytes=10_000_000)
    outbox.open()
    assert outbox.rows == 7 and outbox.moved_aside == []
    assert [r.key for r in outbox.load_after(0, 100)] == list(range(1, 8))
    outbox.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


def test_a_damaged_outbox_of_the_previous_version_is_still_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    _old_outbox(path, rows=400)
    data = bytearray(path.read_bytes())
    assert len(data) > 6 * 4096
    data[2 * 4096 : 5 * 4096] = b"\xa5" * (3 * 4096)  # page 1 (header, schema) intact
    path.write_bytes(bytes(data))
    outbox = Outbox(path, max_bytes=10_000_000)
    outbox.open()
    assert len(outbox.moved_aside) == 1 and outbox.rows == 0
    assert outbox.moved_aside[0].read_bytes() == bytes(data)


def test_an_empty_file_becomes_an_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.touch()
    outbox = Outbox(path, max_bytes=1_000_000)
    outbox.open()
    outbox.write(_rows(1, 2), [], keep_after=0)
    assert outbox.rows == 2 and outbox.moved_aside == []
    outbox.close()
    assert path.read_bytes()[68:72] == APPLICATION_ID.to_bytes(4, "big")


def test_a_full_disk_is_not_taken_for_a_damaged_outbox(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", 512) as disk:
        path = disk / "outbox.db"
        outbox = Outbox(path, max_bytes=10_000_000)
        outbox.open()
        outbox.write(_rows(1, 40), [], keep_after=0)
        outbox.close()  # the last connection removes the write-ahead log: room needed again
        filler = fill(disk)
        again = Outbox(path, max_bytes=10_000_000)
        try:
            again.open()
        except OutboxUnavailable as exc:
            assert not isinstance(exc, OutboxForeign)
        assert again.moved_aside == [] and _siblings(path) in ([], ["outbox.db.lock"])
        again.close()
        filler.unlink()
        third = Outbox(path, max_bytes=10_000_000)
        third.open()
        assert third.rows == 40
        third.close()


def _p1daemon(*args: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "p1daemon", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    return done.returncode, done.stdout, done.stderr


def _config(tmp_path: Path, buffer_path: str) -> Path:
    (tmp_path / "house.txt").write_bytes(b"")
    config = tmp_path / "p1daemon.toml"
    config.write_text(
        f'[buffer]\npath = "{buffer_path}"\n\n[mqtt]\nport = 1\n\n'
        '[[meters]]\nname = "house"\nsource = "replay:house.txt"\n',
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize("target", ["folder", "config"])
def test_check_config_and_run_refuse_it_in_one_line(tmp_path: Path, target: str) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "keep.txt").write_text("kept")
    config = _config(tmp_path, str(folder) if target == "folder" else "p1daemon.toml")
    before = config.read_bytes()

    code, out, err = _p1daemon("check-config", str(config))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{config}: buffer.path: ")
    assert ("is a folder" if target == "folder" else "not a p1daemon outbox") in lines[0]

    code, out, err = _p1daemon("run", "--config", str(config))
    assert code != 0
    assert "Traceback" not in err
    refusals = [line for line in err.splitlines() if "buffer" in line or "outbox" in line]
    assert len(refusals) == 1, err
    assert config.read_bytes() == before
    assert (folder / "keep.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["house.txt", "p1daemon.toml", "state"]
