"""The hash chain over the history's quarter rows, per meter (metering point).

Each quarter row stores `hash` = SHA-256(previous row's hash (32 bytes) || content),
in the order (start, point) of that meter's rows; the first row links to the meter's
anchor (32 zero bytes, or the hash of the last row retention dropped, table
`chain_anchors`). The newest hash is the chain head: published in the retained `month`
document and printed by `p1daemon report --chain-head`, so a copy kept elsewhere pins
every row before it.

Content, the canonical encoding (version 1): the UTF-8 bytes of the compact JSON array
(`json.dumps(..., separators=(",", ":"), ensure_ascii=False)`)

    ["p1daemon-quarter/1", meter, role, ean, equipment_id, start, utc_offset_min,
     status, first_at, first_reg, last_at, last_reg, delta, readings,
     first_telegram_sha256, last_telegram_sha256]

with the values exactly as stored (start: integer epoch seconds UTC; *_at: the
meter-time epoch as a float in its shortest repr; *_reg/delta: the register text of
registers.py; null where absent), the two telegram hashes being those of the evidence
at the row's edges (null when none was kept). So a stored telegram cannot be swapped
without breaking the chain either.

The writer re-links from the first row a write touched to the meter's newest row (an
import of older captures lands in the middle); live, that is one row per quarter.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

CONTENT_VERSION = "p1daemon-quarter/1"
GENESIS = bytes(32)

SCHEMA = """
CREATE TABLE IF NOT EXISTS chain_anchors (meter TEXT PRIMARY KEY, start INTEGER, hash TEXT);
"""

_ROWS = """
SELECT q.point, q.start, q.utc_offset, q.status, q.first_at, q.first_reg, q.last_at,
       q.last_reg, q.delta, q.readings, q.hash, p.role, p.ean, p.equipment_id,
       tf.sha256, tl.sha256
FROM quarters q JOIN points p ON p.id = q.point
LEFT JOIN telegrams tf ON tf.meter = p.meter AND tf.at = q.first_at
LEFT JOIN telegrams tl ON tl.meter = p.meter AND tl.at = q.last_at
WHERE p.meter = ? AND q.start >= ? AND q.start < ? ORDER BY q.start, q.point
"""


@dataclass(frozen=True, slots=True)
class ChainRow:
    meter: str
    point: int
    start: int
    utc_offset: int
    status: str
    first_at: float | None
    first_reg: str | None
    last_at: float | None
    last_reg: str | None
    delta: str | None
    readings: int
    hash: str | None  # as stored
    role: str
    ean: str | None
    equipment_id: str | None
    first_sha: str | None  # the evidence telegrams' hashes as stored
    last_sha: str | None

    def content(self) -> bytes:
        values = [
            CONTENT_VERSION, self.meter, self.role, self.ean, self.equipment_id, self.start,
            self.utc_offset, self.status, self.first_at, self.first_reg, self.last_at,
            self.last_reg, self.delta, self.readings, self.first_sha, self.last_sha,
        ]  # fmt: skip
        return json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()


def link(previous: str | None, content: bytes) -> str:
    prev = GENESIS if previous is None else bytes.fromhex(previous)
    return hashlib.sha256(prev + content).hexdigest()


def rows(
    db: sqlite3.Connection, meter: str, start: int = -(2**62), end: int = 2**62
) -> Iterator[ChainRow]:
    for values in db.execute(_ROWS, (meter, start, end)):
        yield ChainRow(meter, *values)


def anchor(db: sqlite3.Connection, meter: str) -> str | None:
    found = db.execute("SELECT hash FROM chain_anchors WHERE meter = ?", (meter,)).fetchone()
    return None if found is None else found[0]


def previous_hash(db: sqlite3.Connection, meter: str, start: int) -> str | None:
    """The stored hash the row at `start` links to (the anchor before the first row)."""
    found = db.execute(
        "SELECT q.hash FROM quarters q JOIN points p ON p.id = q.point "
        "WHERE p.meter = ? AND q.start < ? ORDER BY q.start DESC, q.point DESC LIMIT 1",
        (meter, start),
    ).fetchone()
    return anchor(db, meter) if found is None else found[0]


def relink(db: sqlite3.Connection, meter: str, start: int) -> None:
    """Recompute the hashes of `meter`'s rows from `start` on (inside a transaction)."""
    previous = previous_hash(db, meter, start)
    updates = []
    for row in rows(db, meter, start):
        value = link(previous, row.content())
        if value != row.hash:
            updates.append((value, row.point, row.start))
        previous = value
    db.executemany("UPDATE quarters SET hash = ? WHERE point = ? AND start = ?", updates)


def head(db: sqlite3.Connection, meter: str) -> str | None:
    """The newest row's hash: the chain head."""
    found = db.execute(
        "SELECT q.hash FROM quarters q JOIN points p ON p.id = q.point "
        "WHERE p.meter = ? ORDER BY q.start DESC, q.point DESC LIMIT 1",
        (meter,),
    ).fetchone()
    return anchor(db, meter) if found is None else found[0]


def keep_anchors(db: sqlite3.Connection, before: int) -> None:
    """Before retention drops the rows starting before `before`: each meter's chain
    goes on from the last dropped row's hash (inside the caller's transaction)."""
    meters = [m for (m,) in db.execute("SELECT DISTINCT meter FROM points")]
    for meter in meters:
        found = db.execute(
            "SELECT q.start, q.hash FROM quarters q JOIN points p ON p.id = q.point "
            "WHERE p.meter = ? AND q.start < ? ORDER BY q.start DESC, q.point DESC LIMIT 1",
            (meter, before),
        ).fetchone()
        if found is not None:
            db.execute("INSERT OR REPLACE INTO chain_anchors VALUES (?, ?, ?)", (meter, *found))
