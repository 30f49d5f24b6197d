"""Every accepted reading from `accept()` to its PUBACK: ordered, windowed, durable.

Where a reading can be, oldest first (the send order is the key order, which is the
order readings were accepted, across restarts too):

    outbox rows not in memory   -> loaded in pages into `_prefetch` -> sent
    `_unsent` (accepted, in RAM) ----------------------------------> sent
    sent, waiting for PUBACK: `_inflight` (by message id)

`_volatile` holds the readings that are in RAM only (unsent or in flight, never
written); once one has waited `commit_interval_s` it is written to the outbox, and an
unsent one is then dropped from RAM (it is read back when its turn comes), which is what
keeps memory flat through a day-long outage. A written reading is deleted from the
outbox after its PUBACK, in batches.

Ordering across reconnects: paho re-sends the messages that were in flight when the
connection dropped, right after the new CONNACK. Sending anything newer before those
are acknowledged could overtake them, so new readings wait (`_gate`) until every
message from an older connection has been acknowledged.

A broker that keeps the connection but stops acknowledging would hold everything in
flight for ever: after `ack_timeout_s` without a single PUBACK while messages are in
flight, the pipeline logs it and asks the link to drop the connection; paho reconnects
and re-sends them (`_check_acks`).

`retained latest` is fed only by live readings (`accept`), never by the backlog, and at
most one is in flight per meter; so it can never be overwritten by an older reading.

Documents (`accept_document`: the energy views' quarter and day documents and export
alerts) travel the same ordered, durable path as readings, so a subscriber gets every
one of them, in order, across outages and restarts; they are published retained, QoS 1,
on their own topic, and since they go out in the order they were made, the retained
one left on the broker is the newest. A document's outbox row carries its topic below
the prefix ("house/quarter") where a reading's carries the meter name ("house"): meter
names cannot contain '/', so the two never mix, and the outbox schema stays as it was.
They are not counted as readings (`Counters.documents_*`), but they do count in `depth`.

Threads: `accept()`, `accept_document()`, `queue_side()` and the read-only properties
may be called from any thread; every other method belongs to the publisher's single
worker thread, which is also the only thread that calls paho's `publish()`. That is why
an acknowledgement can never be processed before its message id was recorded.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from p1daemon.publish.outbox import Outbox, OutboxReset, OutboxUnavailable, StoredReading
from p1daemon.publish.topics import Topics

log = logging.getLogger("p1daemon.publish")

_PREFETCH_LOW = 512
_PREFETCH_PAGE = 1024
_DELETE_BATCH = 512
_WRITE_BATCH = 5000
_ROOM_WAIT_S = 1.0
_SLACK_S = 0.001  # a deadline this close counts as reached: no spinning on float crumbs
_FULL_LOG_EVERY_S = 60.0
_RETRY_OUTBOX_S = 5.0
_STALL_LOG_EVERY_S = 600.0
# Payload bytes held only in RAM before a fast producer waits (`wait_for_room`): about
# 500 readings, five times the send window, which keeps the window full while the
# acknowledgements free the rest. 2 MB did not go faster flat out and cost 2.3 MB of
# peak RSS (bench/bench_daemon.py). A meter at one telegram a second never gets near.
MEMORY_BUDGET_BYTES = 512_000


class Link(Protocol):
    """What the pipeline needs from the broker connection (see `client.BrokerLink`)."""

    connected: bool
    generation: int
    receive_maximum: int | None

    @property
    def acks(self) -> deque[int]: ...

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None: ...

    def drop_connection(self, reason: str) -> None: ...


def is_document(channel: str) -> bool:
    """An outbox row's `meter` column: a meter name, or a document's topic below the prefix."""
    return "/" in channel


@dataclass(slots=True, eq=False)
class Pending:
    key: int
    meter: str  # the meter of a reading, or a document's topic below the prefix
    payload: bytes
    accepted_at: float  # unix time, for ages in health reports
    accepted_mono: float  # monotonic, for the commit deadline
    persisted: bool = False
    gen: int = 0


@dataclass(slots=True, frozen=True)
class _Side:
    """A message that is not a reading: `latest`, `health`, `status`."""

    topic: str
    meter: str | None = None


@dataclass
class Counters:
    accepted: int = 0
    published: int = 0
    dropped_full: int = 0  # oldest readings dropped because the outbox reached max_mb
    documents_dropped_full: int = 0  # ... and documents (quarter, day, alerts), apart
    dropped_memory: int = 0  # oldest dropped from RAM while the outbox could not be written
    lost_corrupt: int = 0  # rows in an outbox file that had to be moved aside
    published_by_meter: dict[str, int] = field(default_factory=dict)
    accepted_by_meter: dict[str, int] = field(default_factory=dict)
    documents_accepted: int = 0
    documents_published: int = 0
    ack_timeouts: int = 0  # connections dropped because the broker stopped acknowledging


class Pipeline:
    def __init__(
        self,
        outbox: Outbox,
        link: Link,
        topics: Topics,
        *,
        qos: int,
        commit_interval_s: float,
        rate_per_s: float,
        window: int = 100,
        memory_cap: int = 10_000,
        memory_budget_bytes: int = MEMORY_BUDGET_BYTES,
        ack_timeout_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.link = link
        self.topics = topics
        self.qos = qos
        self.commit_interval_s = commit_interval_s
        self.rate_per_s = rate_per_s
        self.window = window
        self.memory_cap = memory_cap
        self.memory_budget_bytes = memory_budget_bytes
        self.ack_timeout_s = ack_timeout_s  # 0: never give up on a silent broker
        self._clock = clock
        self._wall = wall
        self.lock = threading.Lock()
        self._room = threading.Condition(self.lock)
        self._room_waiters = 0
        self.counters = Counters()

        self._next_key = outbox.max_key + 1
        self._unsent: deque[Pending] = deque()
        self._prefetch: deque[Pending] = deque()
        self._volatile: OrderedDict[int, Pending] = OrderedDict()
        self._volatile_bytes = 0
        self._inflight: dict[int, Pending | _Side] = {}
        self._gate: set[int] = set()
        self._seen_gen = 0
        self._cursor = 0  # highest key loaded from the outbox or handed to paho
        self._sent_high = 0  # highest key handed to paho
        self._disk_tail = outbox.max_key  # highest key on disk and not in RAM
        self._to_delete: list[int] = []
        self._delete_since: float | None = None
        self._newest: dict[str, bytes] = {}
        self._reading_topics: dict[str, str] = {}  # meter -> its reading topic, made once
        self._latest_busy: set[str] = set()
        self._side_pending: dict[str, bytes] = {}
        self._side_busy: set[str] = set()
        # Token bucket for the send rate (`drain_rate_per_s`): bursts of at most 50 ms worth.
        self._burst = max(1.0, rate_per_s * 0.05)
        self._tokens = self._burst
        self._tokens_at = clock()
        self._outbox_failed_at: float | None = None
        self._load_failed_at: float | None = None  # reading back failed (see _load_resting)
        self._last_full_log = float("-inf")
        self._last_memory_log = float("-inf")
        # Last sign of life for what is in flight: an ack, a new connection, or the first
        # message into an empty window. Worker thread only.
        self._ack_progress_at = clock()
        self._stalls = 0  # ack timeouts since the last acknowledgement
        self._last_stall_log = float("-inf")
        self.new_connection = False  # set when a new connection was seen; the sink clears it

    # -- any thread ------------------------------------------------------------------------

    def accept(self, meter: str, payload: bytes) -> bool:
        """Take ownership of one reading. Only bookkeeping under the lock: never blocks long.

        Returns whether the worker must be woken for it (see `_wake_needed`)."""
        now_mono = self._clock()
        now_wall = self._wall()
        with self.lock:
            key = self._next_key
            self._next_key += 1
            pending = Pending(key, meter, payload, now_wall, now_mono)
            first = not self._volatile
            self._unsent.append(pending)
            self._volatile[key] = pending
            self._volatile_bytes += len(payload)
            self._newest[meter] = payload
            counters = self.counters
            counters.accepted += 1
            by_meter = counters.accepted_by_meter
            by_meter[meter] = by_meter.get(meter, 0) + 1
            return first or self._wake_needed()

    def _wake_needed(self) -> bool:
        """Whether something just queued needs the worker now (caller holds the lock).

        Waking the worker for every reading cost a notify and a context switch per
        telegram, and a round that sent one message. It is not needed while messages are
        in flight on a live connection: each acknowledgement wakes the worker, whose
        round then sends everything queued since (or the ack timeout does, which the
        worker's sleep already counts). Nor while disconnected: the connection wakes it.
        What remains: an idle connection, a first reading only in RAM (its commit deadline
        is not in the worker's sleep yet), and too much in RAM (to be written now).
        """
        return (not self._inflight and self.link.connected) or self._over_budget()

    def accept_document(self, topic: str, payload: bytes) -> bool:
        """Take ownership of one document for `topic` (below the prefix); see the module
        docstring. Same ordering and durability as a reading accepted at the same moment.
        Returns whether the worker must be woken for it (as `accept`)."""
        head = f"{self.topics.prefix}/"
        channel = topic.removeprefix(head)
        if not topic.startswith(head) or not is_document(channel):
            raise ValueError(f"a document topic must be <prefix>/<meter>/..., got {topic!r}")
        now_mono = self._clock()
        now_wall = self._wall()
        with self.lock:
            key = self._next_key
            self._next_key += 1
            pending = Pending(key, channel, payload, now_wall, now_mono)
            first = not self._volatile
            self._unsent.append(pending)
            self._volatile[key] = pending
            self._volatile_bytes += len(payload)
            self.counters.documents_accepted += 1
            return first or self._wake_needed()

    def wait_for_room(self) -> None:
        """Backpressure for a producer faster than the broker (a replay running flat out).

        Waits, at most `_ROOM_WAIT_S`, while the broker is connected and more than the
        memory budget is waiting for it. A meter sending one telegram a second never
        gets here: readings older than `commit_interval_s` go to disk and stop counting.
        """
        if self._volatile_bytes <= self.memory_budget_bytes:
            return  # the common case, without the lock: a stale figure only delays a wait
        with self._room:
            if self._volatile_bytes <= self.memory_budget_bytes or not self.link.connected:
                return
            self._room_waiters += 1
            try:
                self._room.wait_for(
                    lambda: (
                        self._volatile_bytes <= self.memory_budget_bytes // 2
                        or not self.link.connected
                    ),
                    _ROOM_WAIT_S,
                )
            finally:
                self._room_waiters -= 1

    @property
    def depth(self) -> int:
        """Readings accepted and not acknowledged yet (on disk or in RAM)."""
        with self.lock:
            return len(self._volatile) + max(0, self.outbox.rows - len(self._to_delete))

    @property
    def in_memory(self) -> int:
        """Readings accepted and not yet written (what a SIGKILL now would lose)."""
        with self.lock:
            return len(self._volatile)

    def oldest_volatile_at(self) -> float | None:
        with self.lock:
            for pending in self._volatile.values():
                return pending.accepted_at
            return None

    # -- worker thread ---------------------------------------------------------------------

    def queue_side(self, topic: str, payload: bytes) -> bool:
        """A retained state message (status, health, discovery config, site connection):
        the newest one per topic wins. Safe from any thread (only bookkeeping under the
        lock), so readers may queue what a reading changed. Returns whether the worker
        must be woken for it (as `accept`)."""
        with self.lock:
            self._side_pending[topic] = payload
            return self._wake_needed()

    def step(self) -> float:
        """One round of work; returns how long the worker may sleep if nothing wakes it."""
        now = self._clock()
        self.take_acks()
        self._check_acks(now)
        self._persist(now, force=False)
        self._load()
        self._pump(now)
        return self._sleep_for(self._clock())

    def take_acks(self) -> None:
        """Book every acknowledgement queued by the link. Always empties `link.acks`: the
        link wakes the worker only for the first one after that (`BrokerLink._on_publish`)."""
        acks = self.link.acks
        now = self._clock()
        if acks:
            self._ack_progress_at = now
            if self._stalls:
                log.warning(
                    "MQTT broker %s acknowledges again (after %d reconnect(s) for want of it)",
                    getattr(self.link, "where", "?"),
                    self._stalls,
                )
                self._stalls = 0
        with self.lock:
            # Once per acknowledgement, flat out thousands a second: what the loop needs
            # is looked up once, and producers waiting for room are told once at the end.
            inflight, gate, counters = self._inflight, self._gate, self.counters
            by_meter = counters.published_by_meter
            volatile = self._volatile
            freed = 0
            while acks:
                mid = acks.popleft()
                item = inflight.pop(mid, None)
                if gate:
                    gate.discard(mid)
                if item is None:
                    continue
                if type(item) is Pending:
                    meter = item.meter
                    if is_document(meter):
                        counters.documents_published += 1
                    else:
                        counters.published += 1
                        by_meter[meter] = by_meter.get(meter, 0) + 1
                    if item.persisted:
                        self._to_delete.append(item.key)
                        if self._delete_since is None:
                            self._delete_since = now
                    elif volatile.pop(item.key, None) is not None:  # `_forget`, batched
                        freed += len(item.payload)
                elif item.meter is not None:
                    self._latest_busy.discard(item.meter)
                else:
                    self._side_busy.discard(item.topic)
            if freed:
                self._volatile_bytes -= freed
                self._room_check()

    def _check_acks(self, now: float) -> None:
        """No PUBACK for `ack_timeout_s` while messages are in flight: say so, reconnect."""
        if self.ack_timeout_s <= 0:
            return
        with self.lock:
            if not self._inflight or not self.link.connected:
                return
            waited = now - self._ack_progress_at
            if waited < self.ack_timeout_s - _SLACK_S:
                return
            count = len(self._inflight)
            self._ack_progress_at = now  # at most one drop per timeout while paho reconnects
            self.counters.ack_timeouts += 1
        self._stalls += 1
        if self._stalls == 1 or now - self._last_stall_log >= _STALL_LOG_EVERY_S:
            self._last_stall_log = now
            log.warning(
                "MQTT broker %s has acknowledged none of the %d messages in flight for %.0f s "
                "(ack_timeout_s); reconnecting so that they are sent again%s",
                getattr(self.link, "where", "?"),
                count,
                waited,
                "" if self._stalls == 1 else f" ({self._stalls} times in a row)",
            )
        self.link.drop_connection(f"no acknowledgement from the broker for {waited:.0f} s")

    def _track(self, mid: int, item: Pending | _Side) -> None:
        """Record a message handed to paho (caller holds the lock)."""
        if not self._inflight:
            self._ack_progress_at = self._clock()  # the wait for an ack starts now
        self._inflight[mid] = item

    def side_in_flight(self, topic: str) -> bool:
        with self.lock:
            return topic in self._side_busy

    # -- writing ---------------------------------------------------------------------------

    def _persist(self, now: float, *, force: bool) -> None:
        ci = self.commit_interval_s
        margin = min(0.1, ci / 4)
        if (
            not force
            and self._outbox_failed_at is not None
            and now - self._outbox_failed_at < _RETRY_OUTBOX_S
        ):
            return
        with self.lock:
            batch: list[Pending] = []
            if self._volatile:
                oldest = next(iter(self._volatile.values()))
                # Readings arriving faster than the broker acknowledges them would pile up
                # in RAM for a whole commit interval: past the budget they go to disk now.
                over_budget = self._over_budget()
                if force or over_budget or now - oldest.accepted_mono >= ci - margin - _SLACK_S:
                    # Batch: with the broker away write everything waiting; with the broker
                    # merely slow, only what has waited long enough that a PUBACK is late.
                    take_all = force or over_budget or not self.link.connected
                    threshold = ci / 2
                    for pending in self._volatile.values():
                        if not take_all and now - pending.accepted_mono < threshold:
                            break
                        batch.append(pending)
                        if len(batch) >= _WRITE_BATCH and not force:
                            break  # the rest next round: keep acknowledgements flowing
            flush_deletes = bool(self._to_delete) and (
                force
                or bool(batch)
                or len(self._to_delete) >= _DELETE_BATCH
                or (self._delete_since is not None and now - self._delete_since >= ci - _SLACK_S)
            )
            deletes = list(self._to_delete) if flush_deletes else []
            keep_after = self._sent_high
        if not batch and not deletes:
            return
        rows = [StoredReading(p.key, p.meter, p.payload, p.accepted_at) for p in batch]
        rows_before = self.outbox.rows
        try:
            if not self.outbox.is_open:
                self.outbox.open()
            dropped, top_dropped = self.outbox.write(rows, deletes, keep_after=keep_after)
        except OutboxReset:
            self._after_reset(rows_before)
            return
        except OutboxUnavailable as exc:
            self._outbox_failed(now, str(exc))
            return
        if self._outbox_failed_at is not None:
            self._outbox_failed_at = None
            log.warning("outbox %s is writable again", self.outbox.path)
        with self.lock:
            for pending in batch:
                self._forget(pending)
                pending.persisted = True
            if deletes:
                done = set(deletes)
                self._to_delete = [key for key in self._to_delete if key not in done]
                self._delete_since = now if self._to_delete else None
            while self._unsent and self._unsent[0].persisted:
                evicted = self._unsent.popleft()
                self._disk_tail = max(self._disk_tail, evicted.key)
            if dropped:
                documents = min(dropped, self.outbox.last_dropped_documents)
                self.counters.dropped_full += dropped - documents
                self.counters.documents_dropped_full += documents
                while self._prefetch and self._prefetch[0].key <= top_dropped:
                    self._prefetch.popleft()
        if dropped and now - self._last_full_log >= _FULL_LOG_EVERY_S:
            self._last_full_log = now
            log.warning(
                "outbox %s is full (max_mb %g): dropped the %d oldest unsent messages "
                "(%d readings and %d documents in total so far; logged at most once a minute)",
                self.outbox.path,
                self.outbox.max_bytes / 1_000_000,
                dropped,
                self.counters.dropped_full,
                self.counters.documents_dropped_full,
            )

    def _forget(self, pending: Pending) -> None:
        """No longer only in RAM (written, acknowledged or dropped). Caller holds the lock."""
        if self._volatile.pop(pending.key, None) is not None:
            self._volatile_bytes -= len(pending.payload)
            self._room_check()

    def _room_check(self) -> None:
        """Wake producers waiting in `wait_for_room` if there is room now (lock held)."""
        if self._room_waiters and self._volatile_bytes <= self.memory_budget_bytes // 2:
            self._room.notify_all()

    def _over_budget(self) -> bool:
        """Too much only in RAM: write it now rather than at the commit deadline.

        While connected the acknowledgements will free it (and producers wait in
        `wait_for_room`), so only twice the budget forces a write; while disconnected
        nothing will free it but the disk.
        """
        limit = self.memory_budget_bytes * (2 if self.link.connected else 1)
        return self._volatile_bytes > limit

    def _outbox_failed(self, now: float, reason: str) -> None:
        first = self._outbox_failed_at is None
        self._outbox_failed_at = now
        if first:
            log.error(
                "cannot write the outbox: %s; keeping up to %d readings in memory and retrying",
                reason,
                self.memory_cap,
            )
        dropped = 0
        with self.lock:
            while len(self._volatile) > self.memory_cap and self._unsent:
                victim = self._unsent.popleft()
                self._forget(victim)
                dropped += 1
            self.counters.dropped_memory += dropped
        if dropped and now - self._last_memory_log >= _FULL_LOG_EVERY_S:
            self._last_memory_log = now
            log.error(
                "outbox unavailable and %d readings in memory: dropped the %d oldest "
                "(%d in total so far)",
                self.memory_cap,
                dropped,
                self.counters.dropped_memory,
            )

    def _after_reset(self, rows_before: int) -> None:
        """The file was replaced: what we hold in RAM must be written again; the rest is gone."""
        with self.lock:
            rewrite: list[Pending] = list(self._volatile.values())
            on_disk_known = 0
            for item in [*self._prefetch, *self._inflight.values()]:
                if isinstance(item, Pending) and item.persisted:
                    item.persisted = False
                    rewrite.append(item)
                    on_disk_known += 1
            rewrite.sort(key=lambda p: p.key)
            self._volatile = OrderedDict((p.key, p) for p in rewrite)
            self._volatile_bytes = sum(len(p.payload) for p in rewrite)
            lost = max(0, rows_before - on_disk_known - len(self._to_delete))
            self._disk_tail = self._cursor
            self._to_delete.clear()
            self._delete_since = None
            self.counters.lost_corrupt += lost
        if lost:
            log.error("%d queued readings were only in the unreadable outbox file", lost)

    # -- reading back ----------------------------------------------------------------------

    def _load_resting(self, now: float) -> bool:
        """Reading back failed recently: not again until the retry is due. (Apart from
        writing: a full disk stops writes, but the backlog can still be read and sent.)"""
        failed = self._load_failed_at
        return failed is not None and now - failed < _RETRY_OUTBOX_S

    def _load_failed(self, now: float, reason: str) -> None:
        self._load_failed_at = now
        self._outbox_failed(now, reason)

    def _load(self) -> None:
        if self._load_resting(self._clock()):
            return
        with self.lock:
            if self._disk_tail <= self._cursor or len(self._prefetch) >= _PREFETCH_LOW:
                return
            after = self._cursor
            tail = self._disk_tail
        if not self.outbox.is_open:
            try:  # closed after a failure: the backlog on disk needs it back
                self.outbox.open()
            except OutboxUnavailable as exc:
                self._load_failed(self._clock(), str(exc))
                return
        rows_before = self.outbox.rows
        try:
            rows = self.outbox.load_after(after, _PREFETCH_PAGE)
        except OutboxReset:
            self._after_reset(rows_before)
            return
        except OutboxUnavailable as exc:
            self._load_failed(self._clock(), str(exc))
            return
        self._load_failed_at = None
        with self.lock:
            for row in rows:
                if row.key > self._cursor:
                    self._prefetch.append(
                        Pending(row.key, row.meter, row.payload, row.accepted_at, 0.0, True)
                    )
                    self._cursor = row.key
            if len(rows) < _PREFETCH_PAGE:
                # Everything up to the tail is loaded; keys missing in between were dropped.
                self._cursor = max(self._cursor, tail)

    # -- sending ---------------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        link = self.link
        with self.lock:
            if not link.connected:
                return
            gen = link.generation
            if gen != self._seen_gen:
                # Everything still in flight belongs to an older connection: paho is
                # re-sending it now, and nothing newer may overtake it.
                self._seen_gen = gen
                self._ack_progress_at = now  # paho re-sends what is in flight: a fresh wait
                self._gate = set(self._inflight)
                self.new_connection = True
                self._side_pending[self.topics.status] = b"online"
                self._pump_side(gen, self._caps()[0])
                return
            total_cap, readings_cap = self._caps()
            self._pump_side(gen, total_cap)
            if self._gate:
                return
            self._refill(now)
            self._pump_readings(gen, readings_cap)

    def _pump_readings(self, gen: int, cap: int) -> None:
        """Send readings and documents, oldest first, while the window and the rate allow
        (lock held). Once per message: what the loop needs is looked up once."""
        link, inflight = self.link, self._inflight
        prefetch, unsent = self._prefetch, self._unsent
        reading_topics, qos = self._reading_topics, self.qos
        while len(inflight) < cap and self._tokens >= 1.0:
            if prefetch:
                pending = prefetch[0]
                source = prefetch
            elif self._disk_tail > self._cursor:
                break  # older readings are still on disk: load them first
            elif unsent:
                pending = unsent[0]
                source = unsent
            else:
                break
            if not link.connected or link.generation != gen:
                break
            meter = pending.meter
            if is_document(meter):
                mid = link.publish(f"{self.topics.prefix}/{meter}", pending.payload, 1, True)
            else:
                topic = reading_topics.get(meter)
                if topic is None:
                    topic = reading_topics[meter] = self.topics.reading(meter)
                mid = link.publish(topic, pending.payload, qos, False)
            if mid is None:
                break
            source.popleft()
            pending.gen = gen
            if not inflight:  # as `_track`: the wait for an ack starts now
                self._ack_progress_at = self._clock()
            inflight[mid] = pending
            key = pending.key
            if key > self._sent_high:
                self._sent_high = key
            if key > self._cursor:
                self._cursor = key
            self._tokens -= 1.0

    def _caps(self) -> tuple[int, int]:
        """(all messages, readings) allowed in flight; MQTT 5 brokers may announce a limit."""
        total = self.window + 8
        if self.link.receive_maximum:
            total = min(total, int(self.link.receive_maximum))
        return total, max(1, total - min(8, total // 4))

    def _pump_side(self, gen: int, cap: int) -> None:
        link = self.link
        for topic in list(self._side_pending):
            if topic in self._side_busy or len(self._inflight) >= cap:
                continue
            if not link.connected or link.generation != gen:
                return
            mid = link.publish(topic, self._side_pending[topic], 1, True)
            if mid is None:
                return
            del self._side_pending[topic]
            self._side_busy.add(topic)
            self._track(mid, _Side(topic))
        for meter in list(self._newest):
            if meter in self._latest_busy or len(self._inflight) >= cap:
                continue
            if not link.connected or link.generation != gen:
                return
            mid = link.publish(self.topics.latest(meter), self._newest[meter], self.qos, True)
            if mid is None:
                return
            del self._newest[meter]
            self._latest_busy.add(meter)
            self._track(mid, _Side(self.topics.latest(meter), meter))

    def _refill(self, now: float) -> None:
        earned = (now - self._tokens_at) * self.rate_per_s + 1e-9  # no 9.999... tokens
        self._tokens = min(self._burst, self._tokens + earned)
        self._tokens_at = now

    def _sleep_for(self, now: float) -> float:
        """Until the pipeline's next deadline (a commit, a batch of deletes, the send rate,
        an outbox retry, the ack timeout); `math.inf` when it has none. Everything else
        that gives it work wakes the worker (`accept`, acknowledgements, a connection),
        so there is no floor: a fixed tick only woke an idle daemon for nothing."""
        waits = [math.inf]
        with self.lock:
            # While the outbox cannot be written, `_persist` does nothing until the retry:
            # its deadlines (long past by then) must not wake the worker, or it spins.
            disk_ok = self._outbox_failed_at is None
            if self._over_budget() and disk_ok:
                waits.append(0.0)
            if self._volatile and disk_ok:
                oldest = next(iter(self._volatile.values()))
                margin = min(0.1, self.commit_interval_s / 4)
                waits.append(oldest.accepted_mono + self.commit_interval_s - margin - now)
            if self._to_delete and self._delete_since is not None and disk_ok:
                waits.append(self._delete_since + self.commit_interval_s - now)
            if self._prefetch:
                work_waiting = True
            elif self._disk_tail > self._cursor:
                # Older readings must be read back first: only possible if the disk lets us.
                work_waiting = not self._load_resting(now)
                if not work_waiting and self._load_failed_at is not None:
                    waits.append(self._load_failed_at + _RETRY_OUTBOX_S - now)  # the retry
            else:
                work_waiting = bool(self._unsent)
            can_send = (
                work_waiting
                and self.link.connected
                and not self._gate
                and len(self._inflight) < self._caps()[1]
            )
            if can_send and self._tokens >= 1.0:
                waits.append(0.0)
            elif can_send:
                want = min(self._burst, max(1.0, self.window / 2)) - self._tokens
                waits.append(want / self.rate_per_s)
            if self._outbox_failed_at is not None:
                waits.append(self._outbox_failed_at + _RETRY_OUTBOX_S - now)
            if self.ack_timeout_s > 0 and self._inflight and self.link.connected:
                waits.append(self._ack_progress_at + self.ack_timeout_s - now)
        return max(0.0, min(waits))

    # -- stop ------------------------------------------------------------------------------

    def persist_everything(self) -> int:
        """Write every unacknowledged reading held in RAM; returns how many could not be."""
        for _ in range(3):  # a second round if the file had to be replaced on the way
            self.take_acks()
            self._persist(self._clock(), force=True)
            with self.lock:
                if not self._volatile:
                    return 0
        with self.lock:
            return len(self._volatile)

    def flush_deletes(self) -> None:
        self.take_acks()
        with self.lock:
            pending = bool(self._to_delete)
        if pending:
            self._persist(self._clock(), force=True)

    def publish_side_now(self, topic: str, payload: bytes) -> bool:
        """Publish one retained message outside the normal round (the `offline` at stop)."""
        with self.lock:
            if not self.link.connected:
                return False
            mid = self.link.publish(topic, payload, 1, True)
            if mid is None:
                return False
            self._side_busy.add(topic)
            self._track(mid, _Side(topic))
            return True
