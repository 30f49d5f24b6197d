"""`MqttSink`: the output that publishes readings and documents through the durable outbox.

Lifecycle (called by the dispatcher, or directly as a `ReadingSink`):

    sink = MqttSink(mqtt, buffer, health_source=..., publish_intervals=...)
    sink.start(subscriptions, events)  # opens the outbox, schedules the connection; never waits
    sink.submit(reading)    # from any reader thread; cheap; the sink owns the reading after
    sink.on_documents(docs) # records through the outbox, retained state newest-wins
    sink.state()            # one line for the systemd STATUS
    sink.stop(timeout=8.0)  # persist what is unacknowledged, publish `offline`, disconnect

One worker thread does all the publishing, the network I/O (paho runs no thread of its
own: `client.BrokerLink.wait`) and all the disk work, so readers never wait for the
network or the SD card. See
`pipeline.py` for the ordering and durability rules and `outbox.py` for the
durability trade-off and the `synchronous` option.

The sink knows nothing of what produced a document (the energy views, Home Assistant
discovery: processors in `p1daemon/views/`, driven by `p1daemon/daemon/dispatcher.py`):

- A document with `record=True` is accepted into the outbox, in the order given, right
  after the reading that produced it (the dispatcher calls `on_documents` under the same
  lock as `on_reading`), so every one reaches subscribers across outages and restarts.
  One with `record=False` is retained state, queued newest-wins per topic.
- Each new broker connection, each lost one, and each message on a subscribed topic is
  reported to `events` (from the worker) as an `InputEvent`; what to re-announce is the
  processors' business.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p1daemon.daemon.processor import (
    BrokerConnected,
    BrokerDisconnected,
    BrokerMessage,
    Document,
    EventSink,
    InputEvent,
)
from p1daemon.publish import health
from p1daemon.publish.client import BrokerLink
from p1daemon.publish.outbox import Outbox, OutboxUnavailable
from p1daemon.publish.payload import compact_json
from p1daemon.publish.pipeline import Pipeline
from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.publish.throttle import Throttle
from p1daemon.publish.topics import RESERVED_METER_NAMES, Topics
from p1daemon.publish.wakeup import Wakeup
from p1daemon.reading.encode import to_json_bytes
from p1daemon.reading.meter import MeterReading

if TYPE_CHECKING:  # the configuration layer imports this package's settings, not the reverse
    from p1daemon.config.model import Config

log = logging.getLogger("p1daemon.publish")

HealthSource = Callable[[], Mapping[str, Mapping[str, Any]]]
# What the processors report about themselves (the history's writer), by processor name.
ViewsHealth = Callable[[], Mapping[str, Mapping[str, Any]]]

# At most this often the reports are built to see whether something significant changed
# (and the STATUS line's oldest age refreshed); only after the worker was woken by
# something, or while anything is queued or the broker is away: an idle worker sleeps
# until the next report is due (`health_interval_s`) or its other deadlines.
_HEALTH_CHECK_S = 1.0
# The worker is stuck when a round takes this long, or a sleep overran its deadline by
# as much (it sleeps as long as nothing is due: minutes, when idle).
_STUCK_AFTER_S = 30.0
_OFFLINE_ACK_WAIT_S = 1.5


class SinkClosed(RuntimeError):
    """`submit` after `stop`: the reader should have been stopped first."""


def _no_stats() -> Mapping[str, Mapping[str, Any]]:
    return {}


def _no_events(event: InputEvent) -> None:
    pass


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class MqttSink:
    """The daemon's MQTT output (and `ReportsStatus`); see the module docstring."""

    name = "mqtt"

    def __init__(
        self,
        mqtt: MqttSettings,
        buffer: BufferSettings,
        *,
        health_source: HealthSource | None = None,
        publish_intervals: Mapping[str, float] | None = None,
        views_health: ViewsHealth | None = None,
    ) -> None:
        self.mqtt = mqtt
        self.buffer = buffer
        self.topics = Topics(mqtt.topic_prefix)
        self._events: EventSink = _no_events
        self._was_connected = False
        self._health_source = health_source or _no_stats
        self._views_health = views_health or _no_stats
        self._throttle: Throttle[MeterReading] = Throttle(publish_intervals or {})
        self._wake = Wakeup()  # ends the worker's wait (a poll on the broker's socket too)
        self._accept_lock = threading.Lock()
        self._closed = False
        self._stopping = threading.Event()
        self._started_mono = time.monotonic()
        self.outbox = Outbox(
            Path(buffer.path),
            max_bytes=int(buffer.max_mb * 1_000_000),
            synchronous=buffer.synchronous,
        )
        self.link: BrokerLink | None = None
        self.pipeline: Pipeline | None = None
        self._worker: threading.Thread | None = None
        self._meters: set[str] = set()
        self._last_health = float("-inf")
        self._last_health_check = float("-inf")
        self._health_dirty = True  # woken since the last check: something may have changed
        self._signatures: dict[str, tuple[Any, ...]] = {}
        self._oldest_age_s: float | None = None
        self._last_stats: Mapping[str, Mapping[str, Any]] = {}
        self._stop_deadline = 0.0
        self._last_round = time.monotonic()
        self._awake_by = self._last_round  # when the worker's sleep ends at the latest

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        health_source: HealthSource | None = None,
        views_health: ViewsHealth | None = None,
    ) -> MqttSink:
        """The MQTT output for a whole configuration (readings and documents; the views
        that make documents are built by `p1daemon.daemon.builder`)."""
        return cls(
            config.mqtt,
            config.buffer,
            health_source=health_source,
            publish_intervals={m.name: m.publish_interval_s for m in config.meters},
            views_health=views_health,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, subscriptions: Sequence[str] = (), events: EventSink | None = None) -> None:
        """Open the outbox and schedule the broker connection; returns without waiting for it.

        `subscriptions`: topics to subscribe to on every connection (their messages go to
        `events` as `BrokerMessage`s, as do connections made and lost).

        Raises OutboxUnavailable (the outbox path cannot be used at all: permissions, a
        missing mount) or client.MqttSetupError (unreadable CA, key or password file); both
        carry one line meant for the user. A *corrupt* outbox does not raise: it is moved
        aside and a fresh one is started.
        """
        if self._worker is not None:
            raise RuntimeError("MqttSink.start() called twice")
        if events is not None:
            self._events = events
        self._started_mono = time.monotonic()
        self.outbox.open()
        try:
            link = BrokerLink(
                self.mqtt, self.topics, self._wake.set, subscriptions=list(subscriptions)
            )
        except Exception:
            self.outbox.close()
            raise
        self.link = link
        self.pipeline = Pipeline(
            self.outbox,
            link,
            self.topics,
            qos=self.mqtt.qos,
            commit_interval_s=self.buffer.commit_interval_s,
            rate_per_s=self.buffer.drain_rate_per_s,
            ack_timeout_s=self.mqtt.ack_timeout_s,
        )
        if self.outbox.rows:
            log.info("outbox %s holds %d queued readings", self.outbox.path, self.outbox.rows)
        self._worker = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._worker.start()
        link.start()

    def make_room(self) -> None:
        """Back-pressure for a producer faster than the broker; call before `on_reading`
        (and outside any lock that the publisher's worker could need)."""
        pipeline = self.pipeline
        if pipeline is None:
            raise RuntimeError("MqttSink.submit() before start()")
        pipeline.wait_for_room()

    def submit(self, reading: MeterReading) -> None:
        """Accept one reading (thread-safe). Once this returns the reading is the sink's."""
        self.make_room()
        self.on_reading(reading)

    def on_reading(self, reading: MeterReading) -> None:
        """`submit` without the back-pressure wait (the dispatcher calls `make_room`)."""
        pipeline = self.pipeline
        if pipeline is None:
            raise RuntimeError("MqttSink.submit() before start()")
        meter = reading.meter
        if meter in RESERVED_METER_NAMES:
            raise ValueError(f"meter name {meter!r} is reserved for the daemon's own topics")
        with self._accept_lock:
            if self._closed:
                raise SinkClosed("the MQTT sink is stopped")
            throttle = self._throttle
            admitted = (
                throttle.offer(meter, reading, time.monotonic()) if throttle.active else reading
            )
            self._meters.add(meter)
            # Serialised under the lock so that readings of one meter keep their order.
            # Held back by the throttle: the worker must see its new due time.
            wake = admitted is None or pipeline.accept(meter, to_json_bytes(admitted))
        # Already set (the worker has not lowered it yet, so its next round sees this
        # reading), `Wakeup.set` returns at once: no system call.
        if wake:
            self._wake.set()

    def on_documents(self, documents: Sequence[Document]) -> None:
        """Records into the outbox in this order; retained state newest-wins."""
        pipeline = self.pipeline
        if pipeline is None:
            raise RuntimeError("MqttSink.on_documents() before start()")
        wake = False
        with self._accept_lock:
            if self._closed:
                log.warning("%d document(s) after the MQTT sink stopped: not sent", len(documents))
                return
            for document in documents:
                if document.record:
                    wake = pipeline.accept_document(document.topic, document.payload) or wake
                else:
                    wake = pipeline.queue_side(document.topic, document.payload) or wake
        if wake:
            self._wake.set()

    def apply_config(self, config: Config) -> None:
        """On reload: new publishing intervals apply at once; `[mqtt]` and `[buffer]`
        (and a changed set of subscriptions) only after a restart."""
        intervals = {m.name: m.publish_interval_s for m in config.meters}
        pipeline = self.pipeline
        with self._accept_lock:
            for reading in self._throttle.set_intervals(intervals):
                if pipeline is not None and not self._closed:
                    pipeline.accept(reading.meter, to_json_bytes(reading))
        if config.mqtt != self.mqtt or config.buffer != self.buffer:
            log.warning("changes to [mqtt] and [buffer] take effect after a restart")

    def begin_drain(self) -> None:
        """`Drains`: the readers have ended, so readings held back by `publish_interval_s`
        go into the outbox now instead of at stop (where they would only be persisted)."""
        pipeline = self.pipeline
        if pipeline is None:
            return
        with self._accept_lock:
            if self._closed:
                return
            for reading in self._throttle.release_all():
                pipeline.accept(reading.meter, to_json_bytes(reading))
        self._wake.set()

    def undelivered(self) -> int:
        """`Drains`: readings and records not yet acknowledged by the broker."""
        pipeline = self.pipeline
        return 0 if pipeline is None else pipeline.depth

    def stop(self, timeout: float = 8.0) -> None:
        """Persist everything unacknowledged, publish `offline`, disconnect; within `timeout`."""
        worker = self._worker
        if worker is None:
            return
        self._stop_deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        worker.join(timeout)
        if worker.is_alive():
            log.error("the MQTT publisher did not stop within %.1f s", timeout)

    # -- status ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.link is not None and self.link.connected

    def state(self) -> str:
        """One short line for the systemd STATUS: is the broker there, how much is queued."""
        link, pipeline = self.link, self.pipeline
        if link is None or pipeline is None:
            return "mqtt not started"
        depth = pipeline.depth
        queued = "outbox empty" if depth == 0 else f"{depth} queued"
        if depth and self._oldest_age_s is not None:
            queued += f", oldest {_age(self._oldest_age_s)}"
        if link.connected:
            return f"mqtt connected to {link.where}, {queued}"
        why = f" ({link.problem})" if link.problem else ""
        return f"mqtt NOT connected to {link.where}{why}, {queued}"

    def status(self) -> str:
        """`ReportsStatus` for the daemon's STATUS line: the same as `state()`."""
        return self.state()

    def healthy(self) -> bool:
        """False only if the publisher itself is stuck or dead - never for an absent broker,
        which is a normal condition the daemon rides out (and the watchdog must not punish)."""
        worker = self._worker
        if worker is None or self._stopping.is_set():
            return True
        busy_since = max(self._last_round, self._awake_by)
        return worker.is_alive() and time.monotonic() - busy_since < _STUCK_AFTER_S

    def meters_changed(self) -> None:
        """A meter's state, connection, reconnects or drops changed (any thread): the
        worker checks the health reports at once instead of on a fixed tick."""
        self._wake.set()

    def daemon_health(self) -> dict[str, Any]:
        """The `<prefix>/daemon/health` document (call from any thread; no disk access)."""
        link, pipeline = self.link, self.pipeline
        assert link is not None and pipeline is not None
        counters = pipeline.counters
        figures = health.DaemonFigures(
            uptime_s=time.monotonic() - self._started_mono,
            broker_connected=link.connected,
            broker_connects=link.connects,
            broker_failed_attempts=link.attempt_failures,
            broker_rejected=link.rejected,
            depth=pipeline.depth,
            in_memory=pipeline.in_memory,
            on_disk=self.outbox.rows,
            oldest_age_s=self._oldest_age_s,
            dropped_full=counters.dropped_full,
            documents_dropped_full=counters.documents_dropped_full,
            broker_ack_timeouts=counters.ack_timeouts,
            dropped_memory=counters.dropped_memory,
            lost_corrupt=counters.lost_corrupt,
            moved_aside=len(self.outbox.moved_aside),
            outbox_writable=self.outbox.is_open,
            accepted=counters.accepted,
            published=counters.published,
            throttled=self._throttle.replaced,
            meters=tuple(sorted(self._meters_known())),
        )
        report = health.daemon_report(figures)
        try:
            views = dict(self._views_health())
        except Exception:
            log.exception("the views' health callback failed")
            views = {}
        if views:
            report["views"] = views
        return report

    def _meters_known(self) -> set[str]:
        return self._meters | set(self._last_stats)

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        pipeline, link = self.pipeline, self.link
        assert pipeline is not None and link is not None
        woken = True
        while not self._stopping.is_set():
            self._last_round = self._awake_by = time.monotonic()
            try:
                self._release_throttled()
                sleep = pipeline.step()
                if pipeline.new_connection:
                    pipeline.new_connection = False
                    self._was_connected = True
                    self._queue_health(force=True)
                    self._events(BrokerConnected())
                    continue
                sleep = min(sleep, self._health_round(woken))
                self._report_inputs()
                due = self._throttle_due()
                if due is not None:
                    sleep = min(sleep, max(0.0, due - time.monotonic()))
            except Exception:
                # A bug here must not silently end publishing: log it and keep going.
                log.exception("MQTT publisher round failed; retrying")
                sleep = 1.0
            self._awake_by = time.monotonic() + sleep
            woken = link.wait(sleep, self._wake)
        self._shutdown()

    def _release_throttled(self) -> None:
        if not self._throttle.active:  # read without the lock: a reload is seen next round
            return
        pipeline = self.pipeline
        assert pipeline is not None
        now = time.monotonic()
        with self._accept_lock:
            for reading in self._throttle.due(now):
                pipeline.accept(reading.meter, to_json_bytes(reading))

    def _throttle_due(self) -> float | None:
        if not self._throttle.active:
            return None
        with self._accept_lock:
            return self._throttle.next_due()

    def _health_round(self, woken: bool) -> float:
        """Queue the reports that are due or changed; returns the time until the next check.

        What can change a report significantly wakes the worker first (a reading, an
        acknowledgement, a connection, `meters_changed`), or is ongoing (a backlog, the
        broker away); a worker that went round only because a deadline came has nothing
        to look at before the next periodic report."""
        pipeline, link = self.pipeline, self.link
        assert pipeline is not None and link is not None
        now = time.monotonic()
        if woken or not link.connected or pipeline.depth:
            self._health_dirty = True
        interval = self.mqtt.health_interval_s
        due = now - self._last_health >= interval
        if now - self._last_health_check >= _HEALTH_CHECK_S and (self._health_dirty or due):
            self._last_health_check = now
            self._health_dirty = False
            if self._queue_health(force=due):
                return 0.0  # a round now sends what was queued
        deadline = self._last_health + interval
        if self._health_dirty:
            deadline = min(deadline, self._last_health_check + _HEALTH_CHECK_S)
        return max(0.0, max(deadline, self._last_health_check + _HEALTH_CHECK_S) - now)

    def _queue_health(self, *, force: bool) -> bool:
        """Build the reports; queue the ones that are due or changed significantly (and
        say whether any was)."""
        pipeline, link = self.pipeline, self.link
        assert pipeline is not None and link is not None
        self._oldest_age_s = self._oldest_age()
        try:
            self._last_stats = dict(self._health_source())
        except Exception:
            log.exception("the meter statistics callback failed")
        if not link.connected:
            return False
        reports: dict[str, dict[str, Any]] = {self.topics.daemon_health: self.daemon_health()}
        counters = pipeline.counters
        queued = False
        for meter in sorted(self._meters_known()):
            reports[self.topics.health(meter)] = health.meter_report(
                meter,
                self._last_stats.get(meter),
                submitted=counters.accepted_by_meter.get(meter, 0),
                published=counters.published_by_meter.get(meter, 0),
            )
        for topic, report in reports.items():
            signature = (
                health.daemon_signature(report)
                if topic == self.topics.daemon_health
                else health.meter_signature(report)
            )
            if force or self._signatures.get(topic) != signature:
                self._signatures[topic] = signature
                pipeline.queue_side(topic, compact_json(report))
                queued = True
        if force:
            self._last_health = time.monotonic()
        return queued

    # -- what the processors hear of (worker thread) ---------------------------------------

    def _report_inputs(self) -> None:
        """A lost connection and the messages on subscribed topics, as input events."""
        link = self.link
        assert link is not None
        if self._was_connected and not link.connected:
            self._was_connected = False
            self._events(BrokerDisconnected())
        while link.messages:
            topic, payload = link.messages.popleft()
            self._events(BrokerMessage(topic, payload))

    def _oldest_age(self) -> float | None:
        pipeline = self.pipeline
        assert pipeline is not None
        candidates = []
        if self.outbox.is_open and self.outbox.rows:
            try:
                oldest = self.outbox.oldest_accepted_at()
            except Exception:  # the next write handles a damaged file; this is only a report
                oldest = None
            if oldest is not None:
                candidates.append(oldest)
        volatile = pipeline.oldest_volatile_at()
        if volatile is not None:
            candidates.append(volatile)
        return max(0.0, time.time() - min(candidates)) if candidates else None

    def _shutdown(self) -> None:
        pipeline, link = self.pipeline, self.link
        assert pipeline is not None and link is not None
        deadline = self._stop_deadline or time.monotonic() + 8.0
        try:
            with self._accept_lock:
                self._closed = True
                held = self._throttle.release_all()
                for reading in held:
                    pipeline.accept(reading.meter, to_json_bytes(reading))
            unsaved = pipeline.persist_everything()
            if unsaved:
                log.error(
                    "could not write %d unacknowledged readings to the outbox %s; they are lost",
                    unsaved,
                    self.outbox.path,
                )
            if pipeline.publish_side_now(self.topics.status, b"offline"):
                wait_until = min(deadline - 1.0, time.monotonic() + _OFFLINE_ACK_WAIT_S)
                while time.monotonic() < wait_until:
                    pipeline.take_acks()
                    if not pipeline.side_in_flight(self.topics.status):
                        break
                    link.wait(0.05, self._wake)
            pipeline.flush_deletes()
        except Exception:
            log.exception("error while stopping the MQTT publisher")
        finally:
            link.stop(max(0.5, deadline - time.monotonic() - 0.2))
            try:
                pipeline.flush_deletes()
            except Exception:
                log.exception("error while writing the last acknowledgements")
            self.outbox.close()


__all__ = ["MqttSink", "OutboxUnavailable", "SinkClosed"]
