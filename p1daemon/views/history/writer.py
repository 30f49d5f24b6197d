"""The history's own worker thread: the only place SQLite is touched while running.

`submit` is all the reader thread ever does (a deque append, never blocks). The worker
gathers the rows of a closed quarter for `commit_delay_s` and writes them in one
transaction. A history that cannot be written (disk full, read-only, corrupt, missing
directory) never reaches back to reading or publishing: the failure is logged once,
shown in `health()`, and retried every `retry_interval_s` with the rows kept in memory
(bounded: beyond `max_pending` the oldest are dropped, counted and logged).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from p1daemon.views.history.rows import MeterState, Row
from p1daemon.views.history.settings import HistorySettings
from p1daemon.views.history.store import (
    HistoryStore,
    HistoryUnavailable,
    is_corruption,
    move_aside,
    recognisably_ours,
)

log = logging.getLogger("p1daemon.history")

# About a week of six meters' quarters: far more than any outage worth retrying for.
MAX_PENDING = 100_000
_PRUNE_EVERY_S = 3600.0


class HistoryWriter:
    def __init__(
        self,
        settings: HistorySettings,
        path: Path,
        *,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_commit: Callable[[HistoryStore, list[Row]], None] | None = None,
    ) -> None:
        self._on_commit = on_commit
        self.settings = settings
        self.path = path
        self._max_pending = max_pending
        self._clock = clock
        self._pending: deque[Row] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._flush_requested = False
        self._thread: threading.Thread | None = None
        self._store: HistoryStore | None = None
        self._error: str | None = None
        self.dropped = 0
        self.written = 0
        self.commits = 0
        self.pruned = 0
        self._idle = threading.Event()
        self._idle.set()

    # -- called from other threads ----------------------------------------------------

    def open_states(self) -> dict[str, MeterState]:
        """Open the file and read where each meter left off (call before `start`).
        A history that cannot be opened yields no states, and is retried later."""
        self._try_open()
        if self._store is None:
            return {}
        try:
            return self._store.states()
        except (sqlite3.Error, ValueError) as exc:
            self._failed(f"cannot read the meter states: {exc}")
            return {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    def submit(self, rows: Iterable[Row]) -> None:
        with self._cond:
            for row in rows:
                if len(self._pending) >= self._max_pending:
                    self._pending.popleft()
                    self.dropped += 1
                    if self.dropped == 1 or self.dropped % 10_000 == 0:
                        log.error("%d rows dropped, the file is not writable", self.dropped)
                self._pending.append(row)
            self._idle.clear()
            self._cond.notify()

    def flush(self, timeout: float = 10.0) -> bool:
        """Write what is pending now (tests, and a stop). True when nothing is left."""
        with self._cond:
            self._flush_requested = True
            self._idle.clear()
            self._cond.notify()
        if not self._idle.wait(timeout):
            return False
        with self._cond:
            return not self._pending

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            left = len(self._pending)
        if left:
            log.error("%d rows could not be written before the stop", left)
        if self._store is not None:
            self._store.close()
            self._store = None

    def health(self) -> dict[str, object]:
        with self._cond:
            return {
                "ok": self._error is None,
                "error": self._error,
                "pending": len(self._pending),
                "dropped": self.dropped,
                "commits": self.commits,
                "pruned": self.pruned,
            }

    # -- the worker -------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.settings.commit_delay_s
        retry = self.settings.retry_interval_s
        last_prune = 0.0
        while True:
            with self._cond:
                while not self._pending and not self._stopping and not self._flush_requested:
                    self._idle.set()
                    self._cond.wait()
                # Gather the rest of this quarter's rows (the other meters').
                deadline = time.monotonic() + (delay if self._error is None else retry)
                while not self._stopping and not self._flush_requested:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                stopping = self._stopping
                self._flush_requested = False
                batch = list(self._pending)
            if batch and self._write(batch):
                with self._cond:
                    for _ in range(min(len(batch), len(self._pending))):
                        self._pending.popleft()
            now = self._clock()
            if self._store is not None and now.timestamp() - last_prune >= _PRUNE_EVERY_S:
                last_prune = now.timestamp()
                self._prune(now)
            with self._cond:
                if not self._pending or self._error is not None:
                    self._idle.set()
            if stopping:
                return

    def _write(self, batch: list[Row]) -> bool:
        if self._store is None:
            self._try_open()
            if self._store is None:
                return False
        try:
            self._store.write(batch)
        except sqlite3.Error as exc:
            if is_corruption(exc) and recognisably_ours(self.path):
                self._store.close()
                self._store = None
                target = move_aside(self.path)
                log.error("history %s is corrupt: moved aside to %s", self.path, target)
                self._try_open()
                if self._store is not None:
                    return self._write(batch)
            self._failed(f"cannot write {self.path}: {exc}")
            return False
        self.commits += 1
        self.written += len(batch)
        self._recovered()
        if self._on_commit is not None:
            try:
                self._on_commit(self._store, batch)
            except Exception:  # a bug in a follower must not stop the history
                log.exception("after-commit hook failed")
        return True

    def _prune(self, now: datetime) -> None:
        assert self._store is not None
        try:
            dropped = self._store.prune(
                now, keep_years=self.settings.keep_years, max_mb=self.settings.max_mb
            )
        except sqlite3.Error as exc:
            self._failed(f"cannot prune {self.path}: {exc}")
            return
        if dropped:
            self.pruned += dropped
            log.info("dropped %d old quarter-hour rows (keep_years/max_mb)", dropped)

    def _try_open(self) -> None:
        try:
            self._store = HistoryStore.open(self.path)
        except (HistoryUnavailable, OSError) as exc:
            self._failed(str(exc))
            return
        self._recovered()

    def _failed(self, message: str) -> None:
        with self._cond:
            first = self._error is None
            self._error = message
        if first:
            log.error("%s (reading and publishing go on; retrying)", message)

    def _recovered(self) -> None:
        with self._cond:
            was = self._error
            self._error = None
        if was is not None:
            log.info("writable again (%s)", self.path)
