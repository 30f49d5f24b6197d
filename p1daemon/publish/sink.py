"""`MqttSink`: the `ReadingSink` that publishes to MQTT through the durable outbox.

Lifecycle (called by the daemon):

    sink = MqttSink.from_config(config, health_source=...)   # or MqttSink(mqtt, buffer, ...)
    sink.start()            # opens the outbox, schedules the connection; never waits for it
    sink.submit(reading)    # from any reader thread; cheap; the sink owns the reading after
    sink.state()            # one line for the systemd STATUS
    sink.stop(timeout=8.0)  # persist what is unacknowledged, publish `offline`, disconnect

One worker thread does all the publishing and all the disk work, so readers never wait
for the network or the SD card; paho's own thread does the network I/O. See
`pipeline.py` for the ordering and durability rules and `outbox.py` for the
durability trade-off and the `synchronous` option.

Home Assistant discovery and the energy views (`MqttSink.from_config` wires both):

- `submit` hands every reading, before `publish_interval_s` throttling, to the
  discovery announcer and the energy tracker (together some 25 us a reading, cheap
  enough for the reader threads, and it means the views see every reading even when
  publishing is throttled). Discovery configs and the site connection document are
  retained state, queued newest-wins; quarter and day documents and export alerts are
  records, accepted into the outbox right after the reading that produced them, so
  every one reaches subscribers, in order, across outages and restarts.
- Every broker connection re-announces every config (a broker without persistence
  forgets them); so does Home Assistant's `online` on `<ha prefix>/status`, to which the
  link subscribes when discovery is on.
- The running day of each meter is saved by the worker to
  `<outbox folder>/energy/<meter>-day.json` (atomically: after every closed quarter-hour,
  and at stop as booked up to the last reading) and restored at `start`, so a restart
  continues the day instead of starting it over. Nothing waits for the broker for that.
- A bug in discovery or the views is logged and counted, never a reason to refuse or
  lose a reading.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p1daemon.publish import health
from p1daemon.publish.client import BrokerLink
from p1daemon.publish.outbox import Outbox, OutboxUnavailable
from p1daemon.publish.payload import compact_json
from p1daemon.publish.pipeline import Pipeline
from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.publish.throttle import Throttle
from p1daemon.publish.topics import RESERVED_METER_NAMES, Topics
from p1daemon.reading.meter import MeterReading
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import EnergyTracker, MeterSpec, Outgoing
from p1daemon.views.homeassistant.announcer import DiscoveryAnnouncer
from p1daemon.views.homeassistant.discovery import DiscoveryMessage
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

if TYPE_CHECKING:  # the configuration layer imports this package's settings, not the reverse
    from p1daemon.config.model import Config

log = logging.getLogger("p1daemon.publish")

HealthSource = Callable[[], Mapping[str, Mapping[str, Any]]]

_HEALTH_CHECK_S = 1.0
_STUCK_AFTER_S = 30.0  # the worker goes round at least every second when all is well
_OFFLINE_ACK_WAIT_S = 1.5
_CONNECTION_CHECK_S = 1.0
_STATE_RETRY_S = 60.0
STATE_FOLDER = "energy"  # beside the outbox: the saved running day of each meter


class SinkClosed(RuntimeError):
    """`submit` after `stop`: the reader should have been stopped first."""


def _no_stats() -> Mapping[str, Mapping[str, Any]]:
    return {}


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class MqttSink:
    """The daemon's `ReadingSink` (and `ReportsStatus`) for MQTT; see the module docstring."""

    def __init__(
        self,
        mqtt: MqttSettings,
        buffer: BufferSettings,
        *,
        health_source: HealthSource | None = None,
        publish_intervals: Mapping[str, float] | None = None,
        homeassistant: HomeAssistantSettings | None = None,
        site: SiteSettings | None = None,
        meters: Sequence[MeterSpec] = (),
        tariff_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.mqtt = mqtt
        self.buffer = buffer
        self.topics = Topics(mqtt.topic_prefix)
        # Discovery only when asked for; the energy views whenever the meters are known.
        self.announcer: DiscoveryAnnouncer | None = None
        if homeassistant is not None and homeassistant.discovery:
            self.announcer = DiscoveryAnnouncer(
                homeassistant, self.topics, tariff_labels=tariff_labels
            )
        self.tracker: EnergyTracker | None = None
        if meters:
            self.tracker = EnergyTracker(site or SiteSettings(), meters, mqtt.topic_prefix)
        self.state_dir = Path(buffer.path).parent / STATE_FOLDER
        self._unsaved_days: dict[str, bytes] = {}  # under _accept_lock
        self._state_failed_at: dict[str, float] = {}
        self._last_connection_check = float("-inf")
        self.extras_failed = 0  # readings discovery or the energy views failed on (bugs)
        self._health_source = health_source or _no_stats
        self._throttle: Throttle[MeterReading] = Throttle(publish_intervals or {})
        self._wake = threading.Event()
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
        self._signatures: dict[str, tuple[Any, ...]] = {}
        self._oldest_age_s: float | None = None
        self._last_stats: Mapping[str, Mapping[str, Any]] = {}
        self._stop_deadline = 0.0
        self._last_round = time.monotonic()

    @classmethod
    def from_config(cls, config: Config, *, health_source: HealthSource | None = None) -> MqttSink:
        """The sink for a whole configuration: publishing, discovery and energy views."""
        return cls(
            config.mqtt,
            config.buffer,
            health_source=health_source,
            publish_intervals={m.name: m.publish_interval_s for m in config.meters},
            homeassistant=config.homeassistant,
            site=config.site,
            meters=[
                MeterSpec(m.name, m.role, m.ean, m.export_limit_kw, m.export_limit_hold_s)
                for m in config.meters
            ],
            tariff_labels={m.name: m.tariff_labels for m in config.meters},
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Open the outbox and schedule the broker connection; returns without waiting for it.

        Raises OutboxUnavailable (the outbox path cannot be used at all: permissions, a
        missing mount) or client.MqttSetupError (unreadable CA, key or password file); both
        carry one line meant for the user. A *corrupt* outbox does not raise: it is moved
        aside and a fresh one is started.
        """
        if self._worker is not None:
            raise RuntimeError("MqttSink.start() called twice")
        self._started_mono = time.monotonic()
        self.outbox.open()
        subscriptions = [self.announcer.ha_status_topic] if self.announcer is not None else []
        try:
            link = BrokerLink(self.mqtt, self.topics, self._wake.set, subscriptions=subscriptions)
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
        )
        if self.outbox.rows:
            log.info("outbox %s holds %d queued readings", self.outbox.path, self.outbox.rows)
        if self.tracker is not None:
            self._restore_days(self.tracker)
            with self._accept_lock:
                for message in self.tracker.initial():
                    self._route(message, None)
        self._worker = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._worker.start()
        link.start()

    def submit(self, reading: MeterReading) -> None:
        """Accept one reading (thread-safe). Once this returns the reading is the sink's."""
        pipeline = self.pipeline
        if pipeline is None:
            raise RuntimeError("MqttSink.submit() before start()")
        meter = reading.meter
        if meter in RESERVED_METER_NAMES:
            raise ValueError(f"meter name {meter!r} is reserved for the daemon's own topics")
        pipeline.wait_for_room()
        now = time.monotonic()
        with self._accept_lock:
            if self._closed:
                raise SinkClosed("the MQTT sink is stopped")
            admitted = self._throttle.offer(meter, reading, now)
            self._meters.add(meter)
            if admitted is not None:
                # Serialised under the lock so that readings of one meter keep their order.
                pipeline.accept(meter, admitted.model_dump_json().encode())
            # Under the same lock: a document goes into the outbox right after the reading
            # that closed its period, and newest-wins state is queued in the order made.
            self._extras(reading, pipeline)
        self._wake.set()

    def _extras(self, reading: MeterReading, pipeline: Pipeline) -> None:
        """Discovery configs and energy documents for one reading (caller holds the lock).

        The reading itself is accepted already: a bug in either must not cost it, nor
        stop the other one."""
        if self.announcer is not None:
            try:
                configs = self.announcer.on_reading(reading)
                # Recorded by the announcer first, then queued only while connected: a
                # connection made after this check announces everything recorded, so
                # queuing them now as well would send each config twice at start-up.
                link = self.link
                if configs and link is not None and link.connected:
                    self._announce(configs)
            except Exception:
                self._extras_failed(reading, "Home Assistant discovery")
        if self.tracker is not None:
            try:
                for message in self.tracker.on_reading(reading, now=datetime.now(UTC)):
                    self._route(message, reading.meter)
            except Exception:
                self._extras_failed(reading, "the energy views")

    def _extras_failed(self, reading: MeterReading, what: str) -> None:
        self.extras_failed += 1
        if self.extras_failed == 1 or self.extras_failed % 10_000 == 0:
            log.exception(
                "meter %s: %s failed on a reading (%d failures so far; logged again every 10,000)",
                reading.meter,
                what,
                self.extras_failed,
            )

    def _route(self, message: Outgoing, meter: str | None) -> None:
        """Records through the outbox, state newest-wins (caller holds the lock)."""
        pipeline, tracker = self.pipeline, self.tracker
        assert pipeline is not None and tracker is not None
        if message.durable:
            pipeline.accept_document(message.topic, message.payload)
            if meter is not None and message.topic == tracker.topics.day(meter):
                self._unsaved_days[meter] = message.payload
        else:
            pipeline.queue_side(message.topic, message.payload)

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
        return worker.is_alive() and time.monotonic() - self._last_round < _STUCK_AFTER_S

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
            dropped_memory=counters.dropped_memory,
            lost_corrupt=counters.lost_corrupt,
            moved_aside=len(self.outbox.moved_aside),
            outbox_writable=self.outbox.is_open,
            accepted=counters.accepted,
            published=counters.published,
            throttled=self._throttle.replaced,
            meters=tuple(sorted(self._meters_known())),
        )
        return health.daemon_report(figures)

    def _meters_known(self) -> set[str]:
        return self._meters | set(self._last_stats)

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        pipeline = self.pipeline
        assert pipeline is not None
        while not self._stopping.is_set():
            self._last_round = time.monotonic()
            try:
                self._release_throttled()
                sleep = pipeline.step()
                if pipeline.new_connection:
                    pipeline.new_connection = False
                    self._queue_health(force=True)
                    self._announce(self.announcer.on_connected() if self.announcer else [])
                    continue
                sleep = min(sleep, self._health_round())
                sleep = min(sleep, self._energy_round())
                due = self._throttle_due()
                if due is not None:
                    sleep = min(sleep, max(0.0, due - time.monotonic()))
            except Exception:
                # A bug here must not silently end publishing: log it and keep going.
                log.exception("MQTT publisher round failed; retrying")
                sleep = 1.0
            self._wake.wait(sleep)
            self._wake.clear()
        self._shutdown()

    def _release_throttled(self) -> None:
        pipeline = self.pipeline
        assert pipeline is not None
        now = time.monotonic()
        with self._accept_lock:
            for reading in self._throttle.due(now):
                pipeline.accept(reading.meter, reading.model_dump_json().encode())

    def _throttle_due(self) -> float | None:
        with self._accept_lock:
            return self._throttle.next_due()

    def _health_round(self) -> float:
        now = time.monotonic()
        if now - self._last_health_check >= _HEALTH_CHECK_S:
            self._last_health_check = now
            self._queue_health(force=now - self._last_health >= self.mqtt.health_interval_s)
        return max(0.0, self._last_health_check + _HEALTH_CHECK_S - now)

    def _queue_health(self, *, force: bool) -> None:
        """Build the reports; queue the ones that are due or changed significantly."""
        pipeline, link = self.pipeline, self.link
        assert pipeline is not None and link is not None
        self._oldest_age_s = self._oldest_age()
        try:
            self._last_stats = dict(self._health_source())
        except Exception:
            log.exception("the meter statistics callback failed")
        if not link.connected:
            return
        reports: dict[str, dict[str, Any]] = {self.topics.daemon_health: self.daemon_health()}
        counters = pipeline.counters
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
        if force:
            self._last_health = time.monotonic()

    # -- discovery and energy views (worker thread) -------------------------------------------

    def _announce(self, configs: Sequence[DiscoveryMessage]) -> None:
        pipeline = self.pipeline
        assert pipeline is not None
        for config in configs:
            pipeline.queue_side(config.topic, compact_json(config.payload))

    def _energy_round(self) -> float:
        """Home Assistant's status messages, the periodic connection document, and the
        saved day states; returns how long this may wait."""
        link = self.link
        assert link is not None
        while link.messages:
            topic, payload = link.messages.popleft()
            announcer = self.announcer
            if announcer is not None and topic == announcer.ha_status_topic:
                configs = announcer.on_ha_status(payload)
                if configs:
                    log.info(
                        "Home Assistant is online: announcing %d discovery configs again",
                        len(configs),
                    )
                self._announce(configs)
        tracker = self.tracker
        if tracker is None:
            return _CONNECTION_CHECK_S
        now = time.monotonic()
        if now - self._last_connection_check >= _CONNECTION_CHECK_S:
            self._last_connection_check = now
            pipeline = self.pipeline
            assert pipeline is not None
            with self._accept_lock:
                message = tracker.connection_due(datetime.now(UTC))
                if message is not None and not self._closed:
                    pipeline.queue_side(message.topic, message.payload)
        self._save_days()
        return max(0.0, self._last_connection_check + _CONNECTION_CHECK_S - now)

    def _day_state_path(self, meter: str) -> Path:
        return self.state_dir / f"{meter}-day.json"

    def _save_days(self, *, force: bool = False) -> None:
        """Write each meter's newest running-day document, atomically (temp + rename).

        About once a quarter-hour per meter, so the SD card hardly notices; a failure is
        logged once and retried a minute later (the document is also on the broker)."""
        with self._accept_lock:
            if not self._unsaved_days:
                return
            todo = dict(self._unsaved_days)
        now = time.monotonic()
        for meter, payload in todo.items():
            failed_at = self._state_failed_at.get(meter)
            if not force and failed_at is not None and now - failed_at < _STATE_RETRY_S:
                continue
            path = self._day_state_path(meter)
            temporary = path.with_name(path.name + ".tmp")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with temporary.open("wb") as handle:
                    handle.write(payload)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            except OSError as exc:
                if failed_at is None:
                    log.warning(
                        "meter %s: cannot save the running day to %s: %s (retrying; a "
                        "restart meanwhile starts the day view over)",
                        meter,
                        path,
                        exc,
                    )
                self._state_failed_at[meter] = now
                continue
            if failed_at is not None:
                log.info("meter %s: the running day is saved to %s again", meter, path)
                del self._state_failed_at[meter]
            with self._accept_lock:
                if self._unsaved_days.get(meter) is payload:
                    del self._unsaved_days[meter]

    def _save_running_days(self) -> None:
        """At stop: the days as booked up to the last reading, not the last quarter-hour."""
        try:
            if self.tracker is not None:
                running = self.tracker.running_days()
                with self._accept_lock:
                    self._unsaved_days.update(running)
            self._save_days(force=True)
        except Exception:  # never in the way of the outbox and the `offline` message
            log.exception("could not save the running days of the energy views")

    def _restore_days(self, tracker: EnergyTracker) -> None:
        """Continue each meter's day from its saved document (before any reading)."""
        for meter in tracker.meter_names:
            path = self._day_state_path(meter)
            try:
                saved = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("meter %s: cannot read the saved day %s: %s", meter, path, exc)
                continue
            if tracker.restore(meter, saved):
                log.info("meter %s: the day view continues from %s", meter, path)
            else:
                log.info("meter %s: the saved day in %s does not fit; not used", meter, path)

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
                    pipeline.accept(reading.meter, reading.model_dump_json().encode())
            unsaved = pipeline.persist_everything()
            self._save_running_days()
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
                    self._wake.wait(0.05)
                    self._wake.clear()
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
