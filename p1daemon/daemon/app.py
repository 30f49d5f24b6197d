"""The daemon: one reader per meter, a sink, and a main loop that reports how it goes.

The main thread only supervises. Readers run on their own threads; the main loop wakes
every few seconds (`timing.TICK_S`) to tell the service manager whether all is well (`hooks.tick`),
and reacts to signals: SIGTERM/SIGINT stop everything in order (readers first, so no
reading is in flight, then the sink, which persists what it accepted), SIGHUP re-reads
the configuration, restarts only the readers whose settings changed and hands the rest
to the sink (the dispatcher, whose builder applies it to the views and outputs).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from p1daemon.config.errors import ConfigError
from p1daemon.config.model import Config, MeterConfig
from p1daemon.daemon.hooks import NoHooks, ServiceHooks
from p1daemon.daemon.processor import Drains
from p1daemon.daemon.reader import MeterReader, SourceFactory
from p1daemon.daemon.sink import ReadingSink, Reconfigurable, ReportsStatus
from p1daemon.daemon.stats import MeterStats
from p1daemon.daemon.status import ReadingRate, status_line
from p1daemon.daemon.timing import DRAIN_TIMEOUT_S, TICK_S
from p1daemon.service.ratelimit import ALWAYS_LOG
from p1daemon.source.factory import source_for

log = logging.getLogger(__name__)

READER_STOP_TIMEOUT_S = 2.0
SINK_STOP_TIMEOUT_S = 6.0
DRAIN_POLL_S = 0.05
# Exit status of a finite run whose readings could not all be delivered before
# `drain_timeout_s` without progress: they are safe in the outbox for the next start.
EXIT_UNDELIVERED = 3


class Daemon:
    """See the module docstring. `reload` re-reads the configuration file on SIGHUP."""

    def __init__(
        self,
        config: Config,
        sink: ReadingSink,
        hooks: ServiceHooks | None = None,
        *,
        reload: Callable[[], Config] | None = None,
        source_factory: SourceFactory = source_for,
        tick_s: float = TICK_S,
        reader_stop_timeout_s: float = READER_STOP_TIMEOUT_S,
        sink_stop_timeout_s: float = SINK_STOP_TIMEOUT_S,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
        on_meter_change: Callable[[], None] | None = None,
    ) -> None:
        self._config = config
        self._sink = sink
        self._hooks: ServiceHooks = hooks if hooks is not None else NoHooks()
        self._reload = reload
        self._source_factory = source_factory
        self._tick_s = tick_s
        self._reader_stop_timeout = reader_stop_timeout_s
        self._sink_stop_timeout = sink_stop_timeout_s
        self._drain_timeout = drain_timeout_s
        self._on_meter_change = on_meter_change  # every MeterStats' `on_change`
        self._lock = threading.RLock()
        self._readers: dict[str, MeterReader] = {}
        self._stats: dict[str, MeterStats] = {}
        self._wake = threading.Event()
        self._stop_requested = False
        self._stop_signal = ""
        self._reload_requested = False
        self._started = False
        self._shut_down = False
        self._rate = ReadingRate()
        self._next_tick = 0.0

    # -- what sinks and the service layer may look at --------------------------------

    @property
    def config(self) -> Config:
        return self._config

    def meter_stats(self) -> Mapping[str, MeterStats]:
        with self._lock:
            return dict(self._stats)

    def stats_for(self, name: str) -> MeterStats:
        """The counters of meter `name`, made now if its reader has not started yet (an
        output counting for a meter from its own start, like the TCP fan-out)."""
        with self._lock:
            return self._meter_stats(name)

    def _meter_stats(self, name: str) -> MeterStats:
        """Meter `name`'s counters, made on first use (caller holds the lock)."""
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats[name] = MeterStats(on_change=self._on_meter_change)
        return stats

    def meter_snapshots(self) -> dict[str, dict[str, Any]]:
        """Counters of every meter as plain data (the MQTT sink's health source)."""
        return {name: stats.snapshot() for name, stats in self.meter_stats().items()}

    def healthy(self) -> bool:
        """Every reader alive (or ended) and the sink not stuck."""
        with self._lock:
            readers = list(self._readers.values())
        if not all(reader.healthy() for reader in readers):
            return False
        return not isinstance(self._sink, ReportsStatus) or self._sink.healthy()

    def status(self) -> str:
        stats = [s.snapshot() for s in self.meter_stats().values()]
        total = sum(s["accepted"] for s in stats)
        per_minute = self._rate.sample(time.monotonic(), total)
        extra = self._sink.status() if isinstance(self._sink, ReportsStatus) else ""
        return status_line(
            len(self._config.meters),
            sum(1 for s in stats if s["state"] == "waiting"),
            sum(1 for s in stats if s["state"] == "silent"),
            per_minute,
            extra,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the sink and the readers, then report ready (meters and broker may be away)."""
        if self._started:
            return
        self._started = True
        self._sink.start()
        with self._lock:
            for meter in self._config.meters:
                self._start_reader(meter)
        log.info("started %d meter reader(s)", len(self._config.meters))
        self._hooks.ready()

    def request_stop(self) -> None:
        """Thread- and signal-safe: the main loop shuts down at its next wake-up."""
        self._stop_requested = True
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    def run(self, *, handle_signals: bool = True) -> int:
        """Start, supervise until stopped (or every finite replay ended), shut down; exit status."""
        previous = self._install_signals() if handle_signals else {}
        status = 0
        try:
            self.start()
            self._next_tick = time.monotonic()
            while not self._stop_requested:
                if self._reload_requested:
                    self._reload_requested = False
                    self.reload()
                if self._all_ended():
                    log.info("every replay has ended")
                    status = self._drain()
                    break
                self._supervise(self._tick_s)
        finally:
            if self._stop_signal:
                log.info("%s received, stopping", self._stop_signal)
            self.shutdown()
            for signum, handler in previous.items():
                if handler is not None:
                    signal.signal(signum, handler)
        return status

    def _supervise(self, longest_wait_s: float) -> None:
        """Tick the service manager when due, then sleep until the next wake-up."""
        now = time.monotonic()
        if now >= self._next_tick:
            self._hooks.tick(healthy=self.healthy(), status=self.status())
            self._next_tick = now + self._tick_s
        self._wake.wait(max(0.0, min(self._next_tick - now, longest_wait_s)))
        self._wake.clear()

    def _drain(self) -> int:
        """After the last replay: keep publishing until every reading and record is
        delivered, so a backfill is done when the command returns. Gives up after
        `drain_timeout_s` without progress (broker away, or not acknowledging); what is
        left then stays in the outbox for the next start. A stop signal ends it at once."""
        sink = self._sink
        if not isinstance(sink, Drains):
            return 0
        sink.begin_drain()
        left = sink.undelivered()
        if left:
            log.info("delivering the last %d queued message(s) before exiting", left)
        fewest = left
        last_progress = time.monotonic()
        while left and not self._stop_requested:
            if left < fewest:
                fewest, last_progress = left, time.monotonic()
            elif time.monotonic() - last_progress >= self._drain_timeout:
                log.error(
                    "%d reading(s) and record(s) not delivered after %.0f s without progress; "
                    "they stay queued in the outbox for the next start",
                    left,
                    self._drain_timeout,
                    extra=ALWAYS_LOG,
                )
                return EXIT_UNDELIVERED
            self._supervise(DRAIN_POLL_S)
            left = sink.undelivered()
        if not left:
            log.info("every reading is delivered")
        return 0

    def shutdown(self) -> None:
        """Stop readers first (nothing in flight), then the sink (which persists the rest)."""
        if self._shut_down:
            return
        self._shut_down = True
        self._hooks.stopping()
        with self._lock:
            readers = list(self._readers.values())
            self._readers.clear()
        self._stop_readers(readers)
        try:
            self._sink.stop(self._sink_stop_timeout)
        except Exception as exc:
            log.error("stopping the sink failed: %s: %s", type(exc).__name__, exc)
        log.info("stopped")

    # -- reload ------------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the configuration; keep the old one running when the new one is invalid."""
        self._hooks.reloading()
        try:
            if self._reload is None:
                log.warning(
                    "reload requested, but there is no configuration file to re-read",
                    extra=ALWAYS_LOG,
                )
                return False
            try:
                new = self._reload()
            except ConfigError as exc:
                for line in exc.lines:
                    log.error("reload refused: %s", line, extra=ALWAYS_LOG)
                log.error(
                    "reload refused: the previous configuration keeps running", extra=ALWAYS_LOG
                )
                return False
            except Exception as exc:  # a bug while loading must not take the daemon down
                log.error(
                    "reload refused: %s: %s; the previous configuration keeps running",
                    type(exc).__name__,
                    exc,
                    extra=ALWAYS_LOG,
                )
                return False
            self.apply_config(new)
            return True
        finally:
            self._hooks.reloaded()

    def apply_config(self, new: Config) -> None:
        """Switch to `new`, restarting only readers whose meter settings changed.

        In three steps, so that no reading meets a half-applied configuration: readers of
        removed or changed meters stop; the sink (the dispatcher: processors and outputs)
        takes the new configuration; then readers of new or changed meters start."""
        with self._lock:
            old = self._config
            old_meters = {m.name: m for m in old.meters}
            new_meters = {m.name: m for m in new.meters}
            to_stop = [
                self._readers[name]
                for name, meter in old_meters.items()
                if name in self._readers and new_meters.get(name) != meter
            ]
            for reader in to_stop:
                del self._readers[reader.name]
            self._stop_readers(to_stop)
            for name in old_meters.keys() - new_meters.keys():
                self._stats.pop(name, None)
                log.info("meter %s: removed", name, extra=ALWAYS_LOG)
            if _sink_settings(new) != _sink_settings(old):
                if isinstance(self._sink, Reconfigurable):
                    self._sink.apply_config(new)
                else:
                    log.warning(
                        "changes to [mqtt], [buffer], [homeassistant], [site], the set of "
                        "meters or their publishing/energy keys take effect after a restart",
                        extra=ALWAYS_LOG,
                    )
            self._config = new
            for meter in new.meters:
                if meter.name in self._readers:
                    continue
                if meter.name in old_meters:
                    log.info(
                        "meter %s: settings changed, reader restarted", meter.name, extra=ALWAYS_LOG
                    )
                else:
                    log.info("meter %s: added", meter.name, extra=ALWAYS_LOG)
                if self._started and not self._shut_down:
                    self._start_reader(meter)
        log.info("configuration reloaded: %d meter(s)", len(new.meters), extra=ALWAYS_LOG)

    # -- internals ---------------------------------------------------------------------

    def _start_reader(self, meter: MeterConfig) -> None:
        stats = self._meter_stats(meter.name)
        reader = MeterReader(
            meter,
            self._sink,
            stats=stats,
            source_factory=self._source_factory,
            on_end=self._wake.set,
        )
        self._readers[meter.name] = reader
        reader.start()

    def _stop_readers(self, readers: list[MeterReader]) -> None:
        for reader in readers:
            reader.request_stop()
        deadline = time.monotonic() + self._reader_stop_timeout
        for reader in readers:
            if not reader.join(max(0.0, deadline - time.monotonic())):
                log.warning("meter %s: reader did not stop in time", reader.name)

    def _all_ended(self) -> bool:
        with self._lock:
            readers = list(self._readers.values())
        return bool(readers) and all(reader.ended for reader in readers)

    def _install_signals(self) -> dict[int, Callable[[int, FrameType | None], object] | int | None]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_stop(signum: int, frame: FrameType | None) -> None:
            # No logging here: the handler may interrupt the main thread inside a log call.
            self._stop_signal = signal.Signals(signum).name
            self.request_stop()

        def on_reload(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
        for signum, handler in (
            (signal.SIGTERM, on_stop),
            (signal.SIGINT, on_stop),
            (signal.SIGHUP, on_reload),
        ):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)
        return previous


def _sink_settings(config: Config) -> tuple[object, ...]:
    """What the publishing side was built from: the reader restarts cannot apply these."""
    meters = tuple(
        (
            m.name,
            m.role,
            m.ean,
            m.publish_interval_s,
            m.export_limit_kw,
            m.export_limit_hold_s,
            tuple(sorted(m.tariff_labels.items())),
            m.serve,
            m.serve_max_clients,
        )
        for m in config.meters
    )
    return (config.mqtt, config.buffer, config.homeassistant, config.site, meters)
