"""The history as a daemon processor: readings in, rows to the writer thread, month
documents out. `on_reading` only computes (the recorder) and hands rows over (a deque
append); every SQLite statement runs on the writer's own thread.

A processor of the daemon (`p1daemon/daemon/processor.py`), built by the builder when
`[history] enabled` and the daemon persists (not `run --stdout`); its `health()` is part
of `<prefix>/daemon/health` under `views.history`. Without `on_reload` a reload rebuilds
it: `stop` saves every meter's state, the new one resumes from it.

It is `WantsTelegrams` (p1daemon/daemon/processor.py): the reader keeps every telegram's
bytes of the meters it records, the dispatcher hands them over right before the
reading, and the recorder keeps those that become quarter edges as evidence.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from p1daemon.daemon.processor import Document, Telegram
from p1daemon.reading.meter import MeterReading
from p1daemon.views.document import document_json
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import MeterSpec
from p1daemon.views.history.aggregate import point_groups
from p1daemon.views.history.month import month_document
from p1daemon.views.history.recorder import HistoryRecorder
from p1daemon.views.history.rows import QuarterRow, Row
from p1daemon.views.history.settings import HistorySettings
from p1daemon.views.history.store import HistoryStore
from p1daemon.views.history.writer import HistoryWriter

if TYPE_CHECKING:
    from p1daemon.config.model import Config

log = logging.getLogger("p1daemon.history")


class HistoryProcessor:
    name = "history"
    label = "the settlement history"

    def __init__(
        self,
        settings: HistorySettings,
        site: SiteSettings,
        meters: Sequence[MeterSpec],
        topic_prefix: str,
    ) -> None:
        self.settings = settings
        self._zone = site.zone
        self._prefix = topic_prefix
        self._meters = {spec.name: spec for spec in meters}
        self.recorder = HistoryRecorder(site, meters)
        self.writer = HistoryWriter(settings, settings.file, on_commit=self._committed)
        self._lock = threading.Lock()
        self._outgoing: dict[str, bytes] = {}
        self._raw: dict[str, Telegram] = {}  # meter -> its newest telegram (a reference)
        self._request_tick: Callable[[], None] | None = None

    @classmethod
    def from_config(cls, config: Config) -> HistoryProcessor:
        specs = [MeterSpec(m.name, m.role, m.ean) for m in config.meters]
        return cls(config.history, config.site, specs, config.mqtt.topic_prefix)

    @staticmethod
    def wanted(config: Config, persist: bool) -> bool:
        """For the daemon's builder: only a daemon that persists (not `run --stdout`)
        writes the history, and only when `[history] enabled`."""
        return persist and config.history.enabled and bool(config.meters)

    def month_topic(self, meter: str) -> str:
        return f"{self._prefix}/{meter}/month"

    def start(self) -> Sequence[Document]:
        states = self.writer.open_states()
        self.recorder.resume(states)
        self.writer.start()
        return []

    def wants_telegrams(self, meter: str) -> bool:
        return meter in self._meters

    def on_telegram(self, meter: str, raw: Telegram) -> None:
        self._raw[meter] = raw

    def on_reading(self, reading: MeterReading, now: datetime) -> Sequence[Document]:
        rows = self.recorder.feed(reading, self._raw.pop(reading.meter, None))
        if rows:
            self.writer.submit(rows)
        return self._drain() if self._outgoing else ()

    def set_tick_request(self, request: Callable[[], None]) -> None:
        """`RequestsTicks`: the writer asks for a tick right after a commit made month
        documents, so they go out at once (not at the next reading or tick, which
        may be after a stop)."""
        self._request_tick = request

    def tick_due(self, now: datetime) -> float | None:
        """`TicksWhenDue`: the tick's only work is sending the month documents."""
        return 0.0 if self._outgoing else None

    def on_tick(self, now: datetime) -> Sequence[Document]:
        return self._drain()

    def on_event(self, event: object) -> Sequence[Document]:
        return []

    def stop(self) -> Sequence[Document]:
        self.writer.submit([*self.recorder.last_telegrams(), *self.recorder.states()])
        self.writer.stop()
        return self._drain()

    def health(self) -> dict[str, object]:
        """For `daemon/health`: whether the history is being written, and what waits."""
        return self.writer.health()

    # -- writer thread ------------------------------------------------------------------

    def _committed(self, store: HistoryStore, batch: list[Row]) -> None:
        meters = {row.point.meter for row in batch if isinstance(row, QuarterRow)}
        if not meters:
            return
        groups = point_groups(store)
        latest = max(row.start for row in batch if isinstance(row, QuarterRow))
        docs = {}
        for meter in meters:
            points = groups.get(meter)
            if points:
                doc = month_document(store, points, latest.astimezone(UTC), self._zone)
                docs[meter] = document_json(doc)
        with self._lock:
            self._outgoing.update(docs)
        request = self._request_tick
        if docs and request is not None:
            request()

    def _drain(self) -> list[Document]:
        if not self._outgoing:
            return []
        with self._lock:
            outgoing, self._outgoing = self._outgoing, {}
        return [
            Document(self.month_topic(meter), payload, True) for meter, payload in outgoing.items()
        ]
