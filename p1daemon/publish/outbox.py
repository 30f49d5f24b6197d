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

Whose file it is
----------------
Only a file recognisably written by p1daemon is ever opened, let alone moved aside
(`outbox_path_problem`): one whose SQLite header carries p1daemon's application id
(set whenever p1daemon opens its outbox), or, for outboxes of earlier versions, which
have none, whose schema is exactly the outbox's (found on the first page of the file, or
through SQLite). A missing or empty file is started fresh. Anything else - a folder,
the configuration file, another program's database - is refused with one line
(`OutboxForeign`), and `check-config` says the same: p1daemon never renames or rewrites
what it did not write.

A p1daemon outbox that SQLite cannot read (malformed pages, a damaged schema) is renamed
to `<path>.corrupt-<time>` with one log line and a fresh outbox is started: a damaged
file must never put the daemon in a crash loop. The rows in it are lost to publishing but
kept on disk for whoever wants to look.

Only one thread may use an `Outbox` at a time (the publisher's worker thread).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import stat
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
# In the SQLite header of every outbox p1daemon creates ("P1OB"): how a file says "mine".
APPLICATION_ID = 0x50314F42
# SQLite's page cache for the outbox, in KiB (its default is 2000, per connection). The
# outbox is written once and read once, in key order, so a big cache saves nothing, but
# it fills up in exactly the case the outbox is for: through a 24-hour backlog (86,400
# rows written, then read back and deleted in pages) resident memory grew 2.0 MB with
# the default and 0.2 MB with 256 KiB, at the same drain speed (the rest is the OS's
# file cache, which the kernel can take back).
CACHE_KIB = 256
_SQLITE_MAGIC = b"SQLite format 3\x00"
# How SQLite stores the outbox table's definition (`_SCHEMA` without "IF NOT EXISTS"):
# outboxes made before the application id are recognised by it.
_TABLE_MARK = (
    b"CREATE TABLE outbox (\n    id INTEGER PRIMARY KEY,\n    meter TEXT NOT NULL,\n"
    b"    payload BLOB NOT NULL,\n    accepted_at REAL NOT NULL\n)"
)
_REFUSE_HINT = "p1daemon only ever replaces its own outbox: choose another [buffer] path"

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


class OutboxForeign(OutboxUnavailable):
    """`[buffer] path` names something that is not a p1daemon outbox: left as it is."""


def outbox_path_problem(path: Path) -> str | None:
    """Why `path` cannot be used as the outbox, in one line; None when it can.

    Read-only: it never creates, locks or changes anything, so `check-config` can ask.
    A missing or empty file is fine (a fresh outbox starts there); an existing file must
    be recognisably p1daemon's (see the module docstring).
    """
    verdict = _classify(path)
    return None if verdict in _USABLE else verdict


# "unknown": we may not look (another user's folder, e.g. `check-config` run without
# sudo); not a reason to refuse here - opening it reports its own error - and never a
# licence to move anything.
_USABLE = ("absent", "empty", "ours", "unknown")


def _classify(path: Path) -> str:
    """One of `_USABLE`, or the one-line reason the file is not ours to use."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return "absent"  # opening says why, if the folder cannot be made either
    except PermissionError:
        return "unknown"
    except OSError as exc:
        return f"cannot open outbox {path}: {exc.strerror or exc}"
    if stat.S_ISDIR(info.st_mode):
        return f"{path} is a folder, not an outbox file (name a file in it, e.g. {path}/outbox.db)"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file; {_REFUSE_HINT}"
    if info.st_size == 0:
        return "empty"
    try:
        with path.open("rb") as handle:
            head = handle.read(65536)
    except PermissionError:
        return "unknown"
    except OSError as exc:
        return f"cannot open outbox {path}: {exc.strerror or exc}"
    if not head.startswith(_SQLITE_MAGIC) or len(head) < 100:
        return f"{path} is not a p1daemon outbox (not an SQLite database); {_REFUSE_HINT}"
    application_id = int.from_bytes(head[68:72], "big")
    if application_id == APPLICATION_ID:
        return "ours"
    if application_id != 0:
        return (
            f"{path} is another program's SQLite database (application id "
            f"{application_id:#010x}); {_REFUSE_HINT}"
        )
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if _TABLE_MARK in head[: max(512, page_size)]:
        return "ours"  # made before the application id, schema on the first page
    return _classify_by_schema(path)


def _classify_by_schema(path: Path) -> str:
    """An SQLite file without our id or table on page 1: ask SQLite what it holds (the
    write-ahead log may have the schema). Ours if it holds our tables or none at all."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"{path} cannot be read ({exc}) and is not recognisably a p1daemon outbox"
    try:
        rows = db.execute("SELECT type, name FROM sqlite_master").fetchall()
        tables = sorted(str(name) for kind, name in rows if kind == "table")
        columns = [row[1] for row in db.execute("PRAGMA table_info(outbox)")]
    except sqlite3.Error as exc:
        return f"{path} cannot be read ({exc}) and is not recognisably a p1daemon outbox"
    finally:
        db.close()
    if not rows or (tables == ["meta", "outbox"] and columns == _EXPECTED_COLUMNS):
        return "ours"
    shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
    return (
        f"{path} is an SQLite database p1daemon did not write (tables: {shown or 'none'}); "
        f"{_REFUSE_HINT}"
    )


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
        # Of the rows the last `write` dropped to stay within max_bytes, how many were
        # documents (their `meter` column holds a topic, see pipeline.is_document).
        self.last_dropped_documents = 0
        self.moved_aside: list[Path] = []

    @property
    def is_open(self) -> bool:
        return self._db is not None

    # -- opening -------------------------------------------------------------------------

    def open(self) -> None:
        """Open or create the file; moves an unreadable outbox of ours aside.

        Raises OutboxForeign when the path is not ours to use (see `outbox_path_problem`)
        and OutboxUnavailable when it cannot be used now."""
        problem = outbox_path_problem(self.path)
        if problem is not None:
            raise OutboxForeign(f"[buffer] path: {problem}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxUnavailable(f"cannot open outbox {self.path}: {exc}") from exc
        self._take_lock()
        try:
            self._open_checked()
        except _Unreadable as problem_:
            self._replace(str(problem_))
        except (sqlite3.Error, OSError) as exc:
            self._close_quietly()
            if isinstance(exc, sqlite3.Error) and _is_corruption(exc):
                self._replace(str(exc))  # ours (checked above), but SQLite cannot read it
                return
            self._release_lock()
            raise OutboxUnavailable(f"cannot open outbox {self.path}: {exc}") from exc
        except OutboxUnavailable:
            self._close_quietly()
            self._release_lock()
            raise

    def _replace(self, reason: str) -> None:
        self._close_quietly()
        verdict = _classify(self.path)
        if verdict not in ("ours", "absent", "empty"):
            # Not recognisably ours (or not readable to tell): never ours to move.
            self._release_lock()
            raise OutboxForeign(f"[buffer] path: {verdict}")
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
        fresh = _classify(self.path) in ("absent", "empty")
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db = db
        try:
            if fresh:  # before the switch to WAL: the header (our mark) is on disk at once
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            db.execute("PRAGMA journal_size_limit=4194304")
            db.execute("PRAGMA busy_timeout=2000")
            db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
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
                raise OutboxUnavailable(
                    f"outbox {self.path} has schema version {version[0]} (a newer p1daemon?); "
                    f"this one reads version {_SCHEMA_VERSION}"
                )
            if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")  # an earlier version's
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
        self.last_dropped_documents = 0
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
                dropped, top_dropped, documents = self._enforce_bound(db, keep_after)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self.writes += 1
            self.last_dropped_documents = documents
            self.rows += len(rows) - removed - dropped
            if rows:
                self.max_key = max(self.max_key, rows[-1][0])
            return dropped, top_dropped

        return self._guarded(run)

    def _enforce_bound(self, db: sqlite3.Connection, keep_after: int) -> tuple[int, int, int]:
        """(rows dropped, highest key dropped, how many of the rows were documents)."""
        dropped = 0
        top_dropped = 0
        documents = 0
        while True:
            used = self._used_bytes(db)
            if used <= self.max_bytes:
                return dropped, top_dropped, documents
            count = db.execute("SELECT count(*) FROM outbox WHERE id > ?", (keep_after,)).fetchone()
            if not count[0]:
                return dropped, top_dropped, documents
            total = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
            per_row = max(1, used // max(1, total))
            batch = max(1, min(count[0], (used - self.max_bytes) // per_row + 1))
            top = db.execute(
                "SELECT max(id) FROM (SELECT id FROM outbox WHERE id > ? ORDER BY id LIMIT ?)",
                (keep_after, batch),
            ).fetchone()[0]
            documents += db.execute(
                "SELECT count(*) FROM outbox WHERE id > ? AND id <= ? AND instr(meter, '/') > 0",
                (keep_after, top),
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
