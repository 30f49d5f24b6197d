"""`p1daemon report --verify`: does the history still say what the meters said?

For each meter, in the chain's order (start, point):

- every quarter-hour from the meter's first row to its last has a row (the recorder
  writes one for every quarter, `gap` rows included), else `missing row`;
- each row's stored hash is SHA-256(the previous row's stored hash || its content)
  (views/history/chain.py), else `edited row` (or `broken chain` right after a missing
  row); a row without a hash is `not chained`;
- each edge reading (`first`, `last`) has its telegram (`missing telegram`), the
  telegram is the one recorded (its SHA-256), passes its CRC and parses with today's
  parser (`bad telegram`), and gives exactly the row's meter time, equipment id and
  register readings (`row differs from its telegram`);
- the row's deltas are its end readings' difference for `complete` and `partial` rows
  (`edited row`); a `replaced` row's sums run across a new baseline and are not
  recomputed;
- every gap's energy is the difference of the telegrams on both sides of it (`edited
  gap`), and every run of `gap` quarters has its gap row (`missing gap`): gap rows are
  not chained, their numbers are checked against the telegrams instead;
- with `pinned` hashes (a chain head published earlier, e.g. a `month` document kept
  on the broker), each must be the recomputed hash of some row (`pinned head not
  found`): whatever came before it has been changed or removed otherwise;
- every other stored telegram of the period passes its CRC.

One finding per line; the caller prints a summary and exits 1 on any. With a period,
the row before it is trusted as the chain's anchor (its own hash is not checked).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading
from p1daemon.views.energy.clock import QUARTER_S
from p1daemon.views.energy.samples import Sample, sample_of
from p1daemon.views.history import chain
from p1daemon.views.history.evidence import EvidenceReader, StoredTelegram
from p1daemon.views.history.registers import decode, encode
from p1daemon.views.history.store import HistoryStore

_FAR = 2**62


@dataclass(frozen=True, slots=True)
class Finding:
    meter: str
    start: int | None  # the row's quarter start (epoch s UTC), None for a stray telegram
    kind: str  # missing row, edited row, broken chain, not chained, missing telegram, ...
    detail: str

    def line(self, zone: ZoneInfo) -> str:
        where = "" if self.start is None else " " + _local(self.start, zone)
        return f"{self.meter}{where}: {self.kind}: {self.detail}"


@dataclass(slots=True)
class VerifyResult:
    findings: list[Finding] = field(default_factory=list)
    rows: int = 0
    telegrams: int = 0
    heads: dict[str, str | None] = field(default_factory=dict)


def _local(epoch: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch, UTC).astimezone(zone).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Parsed:
    """A stored telegram parsed again: None fields when it does not parse."""

    reading: Reading | None
    problem: str | None


def parse_telegram(raw: bytes) -> Parsed:
    """Today's parser on one stored telegram, CRC checked."""
    stream = ReadingStream(TelegramDecoder(check_crc=True, max_size=max(8192, len(raw) + 16)))
    events = [*stream.feed(raw), *stream.flush()]
    readings = [e for e in events if not isinstance(e, Dropped)]
    dropped = [e for e in events if isinstance(e, Dropped)]
    if dropped:
        return Parsed(None, dropped[0].describe())
    if len(readings) != 1:
        return Parsed(None, f"{len(readings)} telegrams where one was stored")
    return Parsed(readings[0], None)


class _Checker:
    def __init__(self, store: HistoryStore, zone: ZoneInfo, result: VerifyResult) -> None:
        self._db = store.connection
        self._evidence = EvidenceReader(self._db)
        self._zone = zone
        self._result = result
        self._cache: dict[tuple[str, float], tuple[StoredTelegram | None, Parsed | None]] = {}
        self.seen: set[tuple[str, float]] = set()

    def find(self, meter: str, start: int | None, kind: str, detail: str) -> None:
        self._result.findings.append(Finding(meter, start, kind, detail))

    def telegram(self, meter: str, at: float) -> tuple[StoredTelegram | None, Parsed | None]:
        key = (meter, at)
        known = self._cache.get(key)
        if known is not None:
            return known
        if len(self._cache) > 64:
            self._cache.clear()
        stored = self._evidence.get(meter, at)
        parsed = None
        if stored is not None:
            if key not in self.seen:
                self._result.telegrams += 1
                self.seen.add(key)
            if stored.raw is not None:
                parsed = parse_telegram(stored.raw)
        self._cache[key] = (stored, parsed)
        return stored, parsed

    def sample_at(self, meter: str, at: float) -> Sample | None:
        """The reading of the stored telegram at `at`, if it is intact and parses."""
        stored, parsed = self.telegram(meter, at)
        if stored is None or not stored.intact or parsed is None or parsed.reading is None:
            return None
        return _sample(meter, parsed.reading)

    def gaps(self, meter: str, low: int, high: int, gap_quarters: list[int]) -> None:
        rows = self._db.execute(
            "SELECT g.start, g.end, g.delta FROM gaps g JOIN points p ON p.id = g.point "
            "WHERE p.meter = ? AND g.start >= ? AND g.start < ? ORDER BY g.start",
            (meter, low, high),
        ).fetchall()
        spans = [(float(a), float(b)) for a, b, _ in rows]
        uncovered = [
            q for q in gap_quarters if not any(a < q + QUARTER_S and b > q for a, b in spans)
        ]
        for index, quarter in enumerate(uncovered):
            if index == 0 or uncovered[index - 1] != quarter - QUARTER_S:
                self.find(meter, quarter, "missing gap", "gap quarter-hours without a gap row")
        for start, end, delta in rows:
            if delta is None:
                continue  # across a replacement: unknowable, nothing to recompute
            before, after = self.sample_at(meter, start), self.sample_at(meter, end)
            where = int(start)
            if before is None or after is None:
                self.find(meter, where, "missing telegram", "no usable telegram at a gap's edge")
                continue
            for key, value in decode(delta).items():
                if key not in before.registers or key not in after.registers:
                    continue
                if after.registers[key] - before.registers[key] != value:
                    self.find(
                        meter,
                        where,
                        "edited gap",
                        f"{key[0]} {key[1]} {value} in the gap row, "
                        f"{after.registers[key] - before.registers[key]} by its telegrams",
                    )

    def edge(self, row: chain.ChainRow, which: str, at: float | None, reg: str | None) -> None:
        if at is None:
            return
        meter = row.meter
        stored, parsed = self.telegram(meter, at)
        recorded = row.first_sha if which == "first" else row.last_sha
        when = _local(at, self._zone)
        if stored is None or recorded is None:
            self.find(
                meter,
                row.start,
                "missing telegram",
                f"no telegram for the {which} reading ({when})",
            )
            return
        if stored.raw is None or not stored.intact:
            self.find(
                meter,
                row.start,
                "bad telegram",
                f"the {which} reading's telegram ({when}) is not the one recorded "
                "(SHA-256 differs)",
            )
            return
        assert parsed is not None
        if parsed.reading is None:
            self.find(
                meter,
                row.start,
                "bad telegram",
                f"the {which} reading's telegram ({when}) does not parse: {parsed.problem}",
            )
            return
        sample = _sample(meter, parsed.reading)
        if sample is None:
            self.find(
                meter,
                row.start,
                "bad telegram",
                f"the {which} reading's telegram ({when}) has no time",
            )
            return
        problems = []
        if sample.at.timestamp() != at:
            theirs = _local(sample.at.timestamp(), self._zone)
            problems.append(f"time {when} in the row, {theirs} in the telegram")
        if sample.equipment_id != row.equipment_id:
            problems.append(
                f"equipment id {row.equipment_id} in the row, {sample.equipment_id} in the telegram"
            )
        registers = decode(reg)
        if encode(sample.registers) != encode(registers):
            for key in sorted(set(registers) | set(sample.registers)):
                ours, told = registers.get(key), sample.registers.get(key)
                if ours != told:
                    problems.append(f"{key[0]} {key[1]} {ours} in the row, {told} in the telegram")
        if problems:
            self.find(
                meter,
                row.start,
                "row differs from its telegram",
                f"{which} reading: " + "; ".join(problems),
            )


def _sample(meter: str, reading: Reading) -> Sample | None:
    return sample_of(
        MeterReading.from_reading(
            reading, meter=meter, role="primary", ean=None, received_at=datetime.now(UTC)
        )
    )


def _deltas_ok(row: chain.ChainRow) -> bool:
    if row.status not in ("complete", "partial") or not row.delta:
        return True
    if row.first_reg is None or row.last_reg is None:
        return False
    first, last = decode(row.first_reg), decode(row.last_reg)
    for key, value in decode(row.delta).items():
        if key not in first or key not in last or last[key] - first[key] != value:
            return False
    return True


def meters_of(store: HistoryStore) -> list[str]:
    return sorted({p.meter for p in store.points()})


def verify(
    store: HistoryStore,
    zone: ZoneInfo,
    meters: Iterable[str],
    start: datetime | None = None,
    end: datetime | None = None,
    pinned: Iterable[str] = (),
) -> VerifyResult:
    result = VerifyResult()
    recomputed: set[str] = set()
    checker = _Checker(store, zone, result)
    db = store.connection
    low = -_FAR if start is None else int(start.timestamp())
    high = _FAR if end is None else int(end.timestamp())
    for meter in meters:
        result.heads[meter] = chain.head(db, meter)
        stored_prev = (
            chain.anchor(db, meter) if start is None else chain.previous_hash(db, meter, low)
        )
        true_prev = stored_prev
        prev_start: int | None = None
        gap_quarters: list[int] = []
        for row in chain.rows(db, meter, low, high):
            result.rows += 1
            true_prev = chain.link(true_prev, row.content())
            recomputed.add(true_prev)
            if row.status == "gap":
                gap_quarters.append(row.start)
            gap = prev_start is not None and row.start > prev_start + QUARTER_S
            if gap:
                assert prev_start is not None
                missing = (row.start - prev_start) // QUARTER_S - 1
                checker.find(
                    meter,
                    row.start,
                    "missing row",
                    f"{missing} quarter-hour row(s) before this one are absent "
                    f"(from {_local(prev_start + QUARTER_S, zone)})",
                )
            if row.hash is None:
                checker.find(meter, row.start, "not chained", "the row has no hash")
            elif row.hash != chain.link(stored_prev, row.content()):
                if gap:
                    checker.find(
                        meter,
                        row.start,
                        "broken chain",
                        "the row does not link to the row before it",
                    )
                else:
                    checker.find(
                        meter,
                        row.start,
                        "edited row",
                        "its content or the row before it no longer match its hash",
                    )
            if not _deltas_ok(row):
                checker.find(
                    meter,
                    row.start,
                    "edited row",
                    "its deltas are not the difference of its readings",
                )
            checker.edge(row, "first", row.first_at, row.first_reg)
            checker.edge(row, "last", row.last_at, row.last_reg)
            stored_prev = row.hash
            prev_start = row.start
        checker.gaps(meter, low, high, gap_quarters)
        # Every other stored telegram of the span: intact and CRC-valid.
        reader = EvidenceReader(db)
        for stored in reader.between(meter, float(low), float(high)):
            if (meter, stored.at) in checker.seen:
                continue
            result.telegrams += 1
            if stored.raw is None or not stored.intact:
                checker.find(
                    meter,
                    None,
                    "bad telegram",
                    f"the telegram of {_local(stored.at, zone)} is not the one recorded",
                )
                continue
            parsed = parse_telegram(stored.raw)
            if parsed.reading is None:
                checker.find(
                    meter,
                    None,
                    "bad telegram",
                    f"the telegram of {_local(stored.at, zone)} does not parse: {parsed.problem}",
                )
    for head in pinned:
        if head.lower() not in recomputed:
            checker.find(
                "chain",
                None,
                "pinned head not found",
                f"{head} is no row's recomputed hash: rows up to it were changed or removed",
            )
    return result
