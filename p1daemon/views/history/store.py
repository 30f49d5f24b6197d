"""The history file: SQLite in WAL mode, written by the daemon only, readable meanwhile.

One transaction per closed quarter-hour for all meters (`write`), nothing else written,
so an SD card sees about 96 small commits a day. The file says whose it is
(`application_id` 'P1DH' in its header): only a file that is recognisably p1daemon's
history is ever moved aside as corrupt; anything else at the path is left alone.

Rows: `points` (meter, role, EAN, equipment id: a new equipment id is a new point),
`quarters` (per point and closed quarter: start UTC + UTC offset, status, the register
readings at both ends with the meter's timestamps, the deltas), `gaps` (the energy that
passed while no reading came), `replacements` (the old meter's last reading and the new
one's first), `mbus_hours` and `meter_state` (where the next run carries on).

Evidence (schema 2): `telegrams` and `telegram_dicts` (evidence.py: the raw telegram of
every quarter edge), the `hash` column of `quarters` and `chain_anchors` (chain.py: a
SHA-256 chain per meter). A schema-1 file gets them on the first open for writing, and
its rows are chained then (without telegrams: they were never kept).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from p1daemon.views.energy.samples import Key, Sample
from p1daemon.views.history import chain, evidence
from p1daemon.views.history.registers import decode, encode
from p1daemon.views.history.rows import (
    GapRow,
    MbusHourRow,
    MeterState,
    Point,
    QuarterRow,
    ReplacementRow,
    Row,
    TelegramRow,
)

log = logging.getLogger("p1daemon.history")

APPLICATION_ID = 0x50314448  # "P1DH"
SCHEMA_VERSION = 2
# The writer's SQLite page cache, in KiB (SQLite's default: 2000). The daemon writes a
# few rows a quarter and reads back a month at most, which the OS's file cache serves as
# well; with the default, the pages it touched stay in the daemon's resident memory as
# the file grows: writing bench/bench_report.py's year of six meters took 20.4 s and
# peaked at 36.5 MB with the default, 20.6 s and 34.8 MB with 256 KiB.
# Readers (`p1daemon report`) keep the default.
WRITER_CACHE_KIB = 256
_SQLITE_MAGIC = b"SQLite format 3\x00"
_CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
# A better row of a quarter is never overwritten by a worse one (an import of a capture
# that overlaps what the daemon recorded live).
_RANK = {"gap": 0, "partial": 1, "replaced": 2, "complete": 3}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY, meter TEXT NOT NULL, role TEXT NOT NULL, ean TEXT,
    equipment_id TEXT, UNIQUE (meter, role, ean, equipment_id));
CREATE TABLE IF NOT EXISTS quarters (
    point INTEGER NOT NULL, start INTEGER NOT NULL, utc_offset INTEGER NOT NULL,
    status TEXT NOT NULL, rank INTEGER NOT NULL, first_at REAL, first_reg TEXT,
    last_at REAL, last_reg TEXT, delta TEXT, readings INTEGER NOT NULL, hash TEXT,
    PRIMARY KEY (point, start)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS quarters_start ON quarters (start);
CREATE TABLE IF NOT EXISTS gaps (
    point INTEGER NOT NULL, start REAL NOT NULL, end REAL NOT NULL, delta TEXT,
    PRIMARY KEY (point, start)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replacements (
    meter TEXT NOT NULL, at REAL NOT NULL, old_equipment TEXT, old_at REAL, old_reg TEXT,
    new_equipment TEXT, new_reg TEXT, PRIMARY KEY (meter, at)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mbus_hours (
    meter TEXT NOT NULL, channel INTEGER NOT NULL, hour INTEGER NOT NULL,
    utc_offset INTEGER NOT NULL, kind TEXT, unit TEXT, equipment_id TEXT,
    first_at REAL, first_value TEXT, last_at REAL, last_value TEXT, complete INTEGER,
    PRIMARY KEY (meter, channel, hour)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meter_state (meter TEXT PRIMARY KEY, state TEXT NOT NULL);
"""
_SCHEMA += evidence.SCHEMA + chain.SCHEMA


class HistoryUnavailable(Exception):
    """The history file cannot be opened or written (one line, for the log)."""


def is_corruption(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in _CORRUPT_CODES


def recognisably_ours(path: Path) -> bool:
    """The raw header says SQLite and our application id: readable even when the pages
    behind it are damaged, so a corrupt history can still be told from a stranger."""
    try:
        with path.open("rb") as handle:
            header = handle.read(100)
    except OSError:
        return False
    if len(header) < 72 or not header.startswith(_SQLITE_MAGIC):
        return False
    return int.from_bytes(header[68:72], "big") == APPLICATION_ID


def move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.rename(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    return target


def _epoch(at: datetime) -> float:
    return at.timestamp()


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _sample(at: float | None, reg: str | None, equipment_id: str | None) -> Sample | None:
    if at is None:
        return None
    return Sample(_utc(at), equipment_id, decode(reg))


def _state_json(state: MeterState) -> dict[str, object]:
    def one(sample: Sample | None) -> object:
        if sample is None:
            return None
        return {
            "at": _epoch(sample.at),
            "equipment_id": sample.equipment_id,
            "registers": encode(sample.registers),
        }

    return {"last": one(state.last), "opening": one(state.opening)}


def _sample_json(data: object) -> Sample | None:
    if not isinstance(data, dict):
        return None
    return Sample(_utc(float(data["at"])), data.get("equipment_id"), decode(data["registers"]))


RawQuarter = tuple[
    int, int, int, str, float | None, str | None, float | None, str | None, str | None, int,
    str | None,
]  # fmt: skip
RawQuarters = Iterator[RawQuarter]


def sample_of_row(at: float | None, reg: str | None, equipment_id: str | None) -> Sample | None:
    """An edge reading of a quarter row (`quarter_rows`), decoded."""
    return _sample(at, reg, equipment_id)


@dataclass(frozen=True, slots=True)
class StoredPoint:
    id: int
    meter: str
    role: str
    ean: str | None
    equipment_id: str | None


@dataclass(frozen=True, slots=True)
class StoredQuarter:
    """One quarter row; its edge readings are decoded only when asked for (a day or
    month report needs two per interval, not two per quarter)."""

    point: int
    start: datetime
    utc_offset_min: int
    status: str
    deltas: dict[Key, Decimal]
    readings: int
    equipment_id: str | None
    first_at: float | None
    first_reg: str | None
    last_at: float | None
    last_reg: str | None

    @property
    def first(self) -> Sample | None:
        return _sample(self.first_at, self.first_reg, self.equipment_id)

    @property
    def last(self) -> Sample | None:
        return _sample(self.last_at, self.last_reg, self.equipment_id)


@dataclass(frozen=True, slots=True)
class StoredGap:
    point: int
    start: datetime
    end: datetime
    deltas: dict[Key, Decimal] | None


@dataclass(frozen=True, slots=True)
class StoredReplacement:
    meter: str
    at: datetime
    old: Sample
    new: Sample


class HistoryStore:
    """One open history file. Not thread-safe: one writer thread, or one reader."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._points: dict[Point, int] = {}
        self._evidence = evidence.EvidenceWriter(connection)

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> HistoryStore:
        """Open (or, for writing, create) the history at `path`.

        A corrupt file that is recognisably ours is moved aside and started afresh
        (logged); anything else wrong is `HistoryUnavailable`.
        """
        if readonly:
            if not path.exists():
                raise HistoryUnavailable(f"no history at {path}")
            return cls._connect(path, readonly=True)
        if path.exists() and path.stat().st_size > 0 and not recognisably_ours(path):
            raise HistoryUnavailable(
                f"{path} exists but is not a p1daemon history; not touching it"
            )
        try:
            return cls._connect(path, readonly=False)
        except HistoryUnavailable as exc:
            if not isinstance(exc.__cause__, sqlite3.Error) or not is_corruption(exc.__cause__):
                raise
            if not recognisably_ours(path):
                raise
            target = move_aside(path)
            log.error("history %s is corrupt: moved aside to %s, starting afresh", path, target)
            return cls._connect(path, readonly=False)

    @classmethod
    def _connect(cls, path: Path, *, readonly: bool) -> HistoryStore:
        try:
            if readonly:
                uri = f"file:{path}?mode=ro"
                db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise HistoryUnavailable(f"cannot open history {path}: {exc}") from exc
        try:
            if not readonly:
                cls._prepare(db)
            else:
                app = db.execute("PRAGMA application_id").fetchone()[0]
                if app != APPLICATION_ID:
                    raise HistoryUnavailable(f"{path} is not a p1daemon history")
                db.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            db.close()
            raise HistoryUnavailable(f"cannot open history {path}: {exc}") from exc
        except HistoryUnavailable:
            db.close()
            raise
        return cls(db, path)

    @staticmethod
    def _prepare(db: sqlite3.Connection) -> None:
        fresh = db.execute("PRAGMA application_id").fetchone()[0] == 0
        if fresh:
            # Before the first table: lets retention give freed pages back to the disk.
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(quarters)")}
            if "hash" not in columns:  # a schema-1 file: chain what it has
                db.execute("ALTER TABLE quarters ADD COLUMN hash TEXT")
                for (meter,) in db.execute("SELECT DISTINCT meter FROM points").fetchall():
                    chain.relink(db, meter, -(2**62))
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if fresh:
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        # Quick sanity: reading the schema back touches the first pages.
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def close(self) -> None:
        self._db.close()

    # -- writing -----------------------------------------------------------------------

    def write(self, rows: Iterable[Row]) -> None:
        """All rows in one transaction: all of them are kept, or none."""
        db = self._db
        points = dict(self._points)
        touched: dict[str, int] = {}  # meter -> first quarter start written
        db.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                self._write_row(row, points)
                if isinstance(row, QuarterRow):
                    start = int(row.start.timestamp())
                    meter = row.point.meter
                    if start < touched.get(meter, 2**62):
                        touched[meter] = start
            for meter, start in touched.items():
                chain.relink(db, meter, start)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._points = points

    def _point_id(self, point: Point, points: dict[Point, int]) -> int:
        known = points.get(point)
        if known is not None:
            return known
        db = self._db
        found = db.execute(
            "SELECT id FROM points WHERE meter = ? AND role = ? AND ean IS ? AND equipment_id IS ?",
            (point.meter, point.role, point.ean, point.equipment_id),
        ).fetchone()
        if found is None:
            cursor = db.execute(
                "INSERT INTO points (meter, role, ean, equipment_id) VALUES (?, ?, ?, ?)",
                (point.meter, point.role, point.ean, point.equipment_id),
            )
            assert cursor.lastrowid is not None
            found = (cursor.lastrowid,)
        points[point] = int(found[0])
        return int(found[0])

    def _write_row(self, row: Row, points: dict[Point, int]) -> None:
        db = self._db
        if isinstance(row, QuarterRow):
            first, last = row.first, row.last
            db.execute(
                "INSERT INTO quarters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) "
                "ON CONFLICT (point, start) DO UPDATE SET utc_offset = excluded.utc_offset, "
                "status = excluded.status, rank = excluded.rank, first_at = excluded.first_at, "
                "first_reg = excluded.first_reg, last_at = excluded.last_at, "
                "last_reg = excluded.last_reg, delta = excluded.delta, "
                "readings = excluded.readings WHERE excluded.rank >= quarters.rank",
                (
                    self._point_id(row.point, points),
                    int(row.start.timestamp()),
                    row.utc_offset_min,
                    row.status,
                    _RANK[row.status],
                    None if first is None else _epoch(first.at),
                    None if first is None else encode(first.registers),
                    None if last is None else _epoch(last.at),
                    None if last is None else encode(last.registers),
                    encode(row.deltas) if row.deltas else None,
                    row.readings,
                ),
            )
        elif isinstance(row, GapRow):
            db.execute(
                "INSERT OR REPLACE INTO gaps VALUES (?, ?, ?, ?)",
                (
                    self._point_id(row.point, points),
                    _epoch(row.start),
                    _epoch(row.end),
                    None if row.deltas is None else encode(row.deltas),
                ),
            )
        elif isinstance(row, ReplacementRow):
            db.execute(
                "INSERT OR REPLACE INTO replacements VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    row.meter,
                    _epoch(row.at),
                    row.old.equipment_id,
                    _epoch(row.old.at),
                    encode(row.old.registers),
                    row.new.equipment_id,
                    encode(row.new.registers),
                ),
            )
        elif isinstance(row, MbusHourRow):
            db.execute(
                "INSERT OR REPLACE INTO mbus_hours VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.meter,
                    row.channel,
                    int(row.hour.timestamp()),
                    row.utc_offset_min,
                    row.kind,
                    row.unit,
                    row.equipment_id,
                    _epoch(row.first_at),
                    format(row.first_value, "f"),
                    _epoch(row.last_at),
                    format(row.last_value, "f"),
                    int(row.complete),
                ),
            )
        elif isinstance(row, TelegramRow):
            self._evidence.put(row.meter, _epoch(row.at), row.raw)
        else:
            db.execute(
                "INSERT OR REPLACE INTO meter_state VALUES (?, ?)",
                (row.meter, json.dumps(_state_json(row), separators=(",", ":"))),
            )

    # -- retention ---------------------------------------------------------------------

    def data_bytes(self) -> int:
        db = self._db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def prune(self, now: datetime, *, keep_years: int, max_mb: float) -> int:
        """Drop quarters older than `keep_years`, then oldest days while the data exceed
        `max_mb`. Returns the number of quarter rows dropped."""
        cutoff = now.astimezone(UTC).replace(year=now.year - keep_years, day=1)
        dropped = self._drop_before(int(cutoff.timestamp()))
        limit = max_mb * 1024 * 1024
        while self.data_bytes() > limit:
            oldest = self._db.execute("SELECT min(start) FROM quarters").fetchone()[0]
            if oldest is None:
                break
            removed = self._drop_before(int(oldest) + 86400)
            if removed == 0:
                break
            dropped += removed
        if dropped:
            self._db.execute("PRAGMA incremental_vacuum")
        return dropped

    def _drop_before(self, start: int) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            chain.keep_anchors(db, start)
            removed = db.execute("DELETE FROM quarters WHERE start < ?", (start,)).rowcount
            # A day's margin: the first kept quarter's opening reading may lie before it.
            db.execute("DELETE FROM telegrams WHERE at < ?", (start - 86400,))
            db.execute("DELETE FROM gaps WHERE end < ?", (start,))
            db.execute("DELETE FROM mbus_hours WHERE hour < ?", (start,))
            db.execute("DELETE FROM replacements WHERE at < ?", (start,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return int(removed)

    # -- reading -----------------------------------------------------------------------

    def states(self) -> dict[str, MeterState]:
        out = {}
        for meter, text in self._db.execute("SELECT meter, state FROM meter_state"):
            data = json.loads(text)
            last = _sample_json(data["last"])
            assert last is not None
            out[meter] = MeterState(meter, last, _sample_json(data.get("opening")))
        return out

    @property
    def connection(self) -> sqlite3.Connection:
        """For the evidence and chain readers (verify, evidence export)."""
        return self._db

    def chain_head(self, meter: str) -> str | None:
        return chain.head(self._db, meter)

    def points(self) -> list[StoredPoint]:
        rows = self._db.execute(
            "SELECT id, meter, role, ean, equipment_id FROM points ORDER BY meter, id"
        )
        return [StoredPoint(*row) for row in rows]

    def quarter_rows(self, points: Sequence[int], start: datetime, end: datetime) -> RawQuarters:
        """The quarter rows as SQLite returns them, streamed in start order: (point,
        start epoch, utc offset, status, first_at, first_reg, last_at, last_reg, delta,
        readings, equipment id). For the report, which needs two decoded readings per
        interval, not two per quarter (`quarters` makes objects of every row)."""
        marks = ",".join("?" * len(points))
        return self._db.execute(
            f"SELECT q.point, q.start, q.utc_offset, q.status, q.first_at, q.first_reg, "
            f"q.last_at, q.last_reg, q.delta, q.readings, p.equipment_id FROM quarters q "
            f"JOIN points p ON p.id = q.point WHERE q.point IN ({marks}) "
            f"AND q.start >= ? AND q.start < ? ORDER BY q.start",
            (*points, int(start.timestamp()), int(end.timestamp())),
        )

    def quarters(
        self, points: Sequence[int], start: datetime, end: datetime
    ) -> Iterator[StoredQuarter]:
        rows = self.quarter_rows(points, start, end)
        for point, begin, offset, status, fa, fr, la, lr, delta, readings, equipment in rows:
            yield StoredQuarter(
                point, _utc(begin), offset, status, decode(delta), readings, equipment,
                fa, fr, la, lr,
            )  # fmt: skip

    def gaps(self, points: Sequence[int], start: datetime, end: datetime) -> list[StoredGap]:
        marks = ",".join("?" * len(points))
        rows = self._db.execute(
            f"SELECT point, start, end, delta FROM gaps WHERE point IN ({marks}) "
            f"AND end > ? AND start < ? ORDER BY start",
            (*points, start.timestamp(), end.timestamp()),
        )
        return [
            StoredGap(p, _utc(s), _utc(e), None if d is None else decode(d)) for p, s, e, d in rows
        ]

    def replacements(self, meter: str, start: datetime, end: datetime) -> list[StoredReplacement]:
        rows = self._db.execute(
            "SELECT at, old_equipment, old_at, old_reg, new_equipment, new_reg FROM "
            "replacements WHERE meter = ? AND at >= ? AND at < ? ORDER BY at",
            (meter, start.timestamp(), end.timestamp()),
        )
        out = []
        for at, old_eq, old_at, old_reg, new_eq, new_reg in rows:
            old = Sample(_utc(old_at), old_eq, decode(old_reg))
            new = Sample(_utc(at), new_eq, decode(new_reg))
            out.append(StoredReplacement(meter, _utc(at), old, new))
        return out

    def mbus_hours(
        self, meter: str, start: datetime, end: datetime
    ) -> list[tuple[int, str, str | None, datetime, int, Decimal, bool]]:
        rows = self._db.execute(
            "SELECT channel, kind, unit, hour, utc_offset, first_value, last_value, complete "
            "FROM mbus_hours WHERE meter = ? AND hour >= ? AND hour < ? ORDER BY channel, hour",
            (meter, int(start.timestamp()), int(end.timestamp())),
        )
        return [
            (ch, kind, unit, _utc(hour), off, Decimal(lv) - Decimal(fv), bool(ok))
            for ch, kind, unit, hour, off, fv, lv, ok in rows
        ]
