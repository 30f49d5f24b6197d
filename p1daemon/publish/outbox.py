"""The durable outbox: readings the broker has not acknowledged yet, in one SQLite file.

What is on disk, and when
-------------------------
The outbox is not written for every reading. A reading is kept in memory first; only if
the broker has not acknowledged it (PUBACK) within `buffer.commit_interval_s` is it
written here, in a batch with the others that are waiting. While the broker acknowledges
promptly nothing is written at all, which is what keeps an SD card alive for years. A
reading leaves this file only after its PUBACK; on a clean stop everything unacknowledged
is written first.

The durability trade-off
------------------------
- Process crash or SIGKILL: readings accepted in the last `commit_interval_s` that were
  not acknowledged yet are lost; everything older survives. `commit_interval_s = 0`
  writes each batch as soon as it is accepted (more writes, nothing lost to a crash).
- Power loss: with `synchronous = "normal"` (the default, WAL mode) committed rows survive
  a crash of the program but the last commits may roll back on power loss, because the
  write-ahead log is only flushed to the card at checkpoints. `"full"` flushes at every
  commit (one flush per batch, so at most one per `commit_interval_s`), which survives
  power loss if the card honours flushes - many SD cards do not. `"off"` never flushes:
  fastest, and a power cut may corrupt the file (which is then moved aside, see below).
- Bounded: the file holds at most `buffer.max_mb` of rows; when it is full the oldest
  rows that were never sent are dropped and counted.

A file that SQLite cannot read (not a database, malformed pages, a foreign schema) is
renamed to `<path>.corrupt-<time>` with one log line and a fresh outbox is started:
a damaged file must never put the daemon in a crash loop. The rows in it are lost to
publishing but kept on disk for whoever wants to look.

Only one thread may use an `Outbox` at a time (the publisher's worker thread).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from p1daemon.publish import codec

log = logging.getLogger("p1daemon.publish")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    meter TEXT NOT NULL,
    payload BLOB NOT NULL,
    accepted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_EXPECTED_COLUMNS = ["id", "meter", "payload", "accepted_at"]
_SCHEMA_VERSION = "1"

# SQLite result codes (the low byte of the extended code) that mean "this file is not an
# outbox we can read" rather than "the disk is busy, full or gone for now".
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
# ... and codes that mean "someone else is using it": never a reason to move a file aside.
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6

Synchronous = Literal["normal", "full", "off"]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class StoredReading:
    key: int
    meter: str
    payload: bytes  # the JSON document, as published
    accepted_at: float  # unix time the sink accepted it


class OutboxReset(Exception):
    """The file was unreadable and has been replaced by an empty one.

    Whoever holds readings in memory that it believed were on disk must write them again.
    """


class OutboxUnavailable(Exception):
    """The outbox cannot be written right now (disk full, read-only, I/O error, missing)."""


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


class Outbox:
    def __init__(self, path: Path, *, max_bytes: int, synchronous: Synchronous = "normal") -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.synchronous = synchronous
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self.rows = 0
        self.max_key = 0
        self.writes = 0  # write transactions committed (tests prove "no writes while acked")
        self.moved_aside: list[Path] = []

    @property
    def is_open(self) -> bool:
        return self._db is not None

    # -- opening -------------------------------------------------------------------------

    def open(self) -> None:
        """Open or create the file; moves an unreadable one aside. Raises OutboxUnavailable."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxUnavailable(f"cannot open outbox {self.path}: {exc}") from exc
        self._take_lock()
        try:
            self._open_checked()
        except _Unreadable as problem:
            self._replace(str(problem))
        except (sqlite3.Error, OSError) as exc:
            self._close_quietly()
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if not self.path.exists() or code in (_SQLITE_BUSY, _SQLITE_LOCKED):
                self._release_lock()
                raise OutboxUnavailable(f"cannot open outbox {self.path}: {exc}") from exc
            self._replace(str(exc))  # there, but SQLite cannot open it: unreadable

    def _replace(self, reason: str) -> None:
        self._close_quietly()
        try:
            self._move_aside(reason)
            self._open_checked()
        except (_Unreadable, sqlite3.Error, OSError, OutboxUnavailable) as exc:
            self._close_quietly()
            self._release_lock()
            if isinstance(exc, OutboxUnavailable):
                raise
            raise OutboxUnavailable(f"cannot start a fresh outbox at {self.path}: {exc}") from exc

    def _take_lock(self) -> None:
        """One process per outbox: two would hand out the same keys and overwrite each other."""
        if self._lock_fd is not None:
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutboxUnavailable(f"cannot open outbox {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise OutboxUnavailable(
                f"outbox {self.path} is in use by another process (is p1daemon already running?)"
            ) from exc
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def _open_checked(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db = db
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            db.execute("PRAGMA journal_size_limit=4194304")
            db.execute("PRAGMA busy_timeout=2000")
            check = db.execute("PRAGMA quick_check(1)").fetchone()
            if check is None or check[0] != "ok":
                raise _Unreadable(f"integrity check failed: {check[0] if check else 'no answer'}")
            db.executescript(_SCHEMA)
            columns = [row[1] for row in db.execute("PRAGMA table_info(outbox)")]
            if columns != _EXPECTED_COLUMNS:
                raise _Unreadable(f"not a p1daemon outbox (columns {columns})")
            version = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if version is None:
                db.execute("INSERT INTO meta(key, value) VALUES('schema', ?)", (_SCHEMA_VERSION,))
            elif version[0] != _SCHEMA_VERSION:
                raise _Unreadable(f"outbox schema version {version[0]}, expected {_SCHEMA_VERSION}")
            count, top = db.execute("SELECT count(*), coalesce(max(id), 0) FROM outbox").fetchone()
        except sqlite3.Error as exc:
            if _is_corruption(exc):
                raise _Unreadable(str(exc)) from exc
            raise
        self.rows = int(count)
        self.max_key = int(top)

    def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        serial = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{serial}")
            serial += 1
        try:
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                companion = self.path.with_name(self.path.name + suffix)
                if companion.exists():
                    companion.rename(aside.with_name(aside.name + suffix))
        except OSError as exc:
            raise OutboxUnavailable(
                f"outbox {self.path} is unreadable ({reason}) and cannot be moved aside: {exc}"
            ) from exc
        self.moved_aside.append(aside)
        self.rows = 0
        log.error(
            "outbox %s is unreadable (%s); moved it to %s and started a fresh one",
            self.path,
            reason,
            aside,
        )

    def close(self) -> None:
        try:
            self._close_db()
        finally:
            self._release_lock()

    def _close_db(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            finally:
                self._db = None

    def _close_quietly(self) -> None:
        try:
            self._close_db()
        except sqlite3.Error:
            self._db = None

    # -- the operations the publisher needs ------------------------------------------------

    def write(
        self, readings: Sequence[StoredReading], delete: Iterable[int], *, keep_after: int
    ) -> tuple[int, int]:
        """Insert `readings` and delete acknowledged keys in one transaction.

        Then enforces `max_bytes` by dropping the oldest rows with a key above
        `keep_after` (rows at or below it are with the broker already and will be
        acknowledged soon; dropping them would only make the count lie). Returns
        (rows dropped, highest dropped key or 0).
        """
        deleted = list(delete)
        if not readings and not deleted:
            return 0, 0
        rows = [(r.key, r.meter, codec.encode(r.payload), r.accepted_at) for r in readings]

        def run(db: sqlite3.Connection) -> tuple[int, int]:
            db.execute("BEGIN IMMEDIATE")
            try:
                removed = 0
                if deleted:
                    for start in range(0, len(deleted), 500):
                        chunk = deleted[start : start + 500]
                        marks = ",".join("?" * len(chunk))
                        removed += db.execute(
                            f"DELETE FROM outbox WHERE id IN ({marks})", chunk
                        ).rowcount
                if rows:
                    db.executemany(
                        "INSERT OR REPLACE INTO outbox(id, meter, payload, accepted_at) "
                        "VALUES (?, ?, ?, ?)",
                        rows,
                    )
                dropped, top_dropped = self._enforce_bound(db, keep_after)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self.writes += 1
            self.rows += len(rows) - removed - dropped
            if rows:
                self.max_key = max(self.max_key, rows[-1][0])
            return dropped, top_dropped

        return self._guarded(run)

    def _enforce_bound(self, db: sqlite3.Connection, keep_after: int) -> tuple[int, int]:
        dropped = 0
        top_dropped = 0
        while True:
            used = self._used_bytes(db)
            if used <= self.max_bytes:
                return dropped, top_dropped
            count = db.execute("SELECT count(*) FROM outbox WHERE id > ?", (keep_after,)).fetchone()
            if not count[0]:
                return dropped, top_dropped
            total = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
            per_row = max(1, used // max(1, total))
            batch = max(1, min(count[0], (used - self.max_bytes) // per_row + 1))
            top = db.execute(
                "SELECT max(id) FROM (SELECT id FROM outbox WHERE id > ? ORDER BY id LIMIT ?)",
                (keep_after, batch),
            ).fetchone()[0]
            removed = db.execute(
                "DELETE FROM outbox WHERE id > ? AND id <= ?", (keep_after, top)
            ).rowcount
            dropped += removed
            top_dropped = max(top_dropped, int(top))

    @staticmethod
    def _used_bytes(db: sqlite3.Connection) -> int:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def load_after(self, key: int, limit: int) -> list[StoredReading]:
        """The oldest rows with a key above `key`; an unreadable row is skipped and logged."""

        def run(db: sqlite3.Connection) -> list[StoredReading]:
            rows = db.execute(
                "SELECT id, meter, payload, accepted_at FROM outbox WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (key, limit),
            ).fetchall()
            out: list[StoredReading] = []
            damaged: list[int] = []
            for row_id, meter, stored, accepted_at in rows:
                try:
                    payload = codec.decode(bytes(stored))
                except codec.PayloadFormatError as exc:
                    log.error("outbox row %d cannot be read (%s); dropping it", row_id, exc)
                    damaged.append(int(row_id))
                    continue
                out.append(StoredReading(int(row_id), str(meter), payload, float(accepted_at)))
            if damaged:
                marks = ",".join("?" * len(damaged))
                self.rows -= db.execute(
                    f"DELETE FROM outbox WHERE id IN ({marks})", damaged
                ).rowcount
                self.writes += 1
            return out

        return self._guarded(run)

    def oldest_accepted_at(self) -> float | None:
        def run(db: sqlite3.Connection) -> float | None:
            row = db.execute("SELECT accepted_at FROM outbox ORDER BY id LIMIT 1").fetchone()
            return None if row is None else float(row[0])

        return self._guarded(run)

    def _guarded(self, run: Callable[[sqlite3.Connection], _T]) -> _T:
        """Runs one operation; turns SQLite's many errors into the two the caller handles."""
        if self._db is None:
            raise OutboxUnavailable(f"outbox {self.path} is not open")
        try:
            return run(self._db)
        except sqlite3.Error as exc:
            if not _is_corruption(exc):
                raise OutboxUnavailable(f"outbox {self.path}: {exc}") from exc
            self._replace(str(exc))
            raise OutboxReset(str(exc)) from exc


class _Unreadable(Exception):
    pass
