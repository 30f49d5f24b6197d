"""`Dispatcher`: the one place a reading goes after its reader accepted it.

    dispatcher = Dispatcher(processors, outputs)   # usually built by daemon/builder.py
    dispatcher.start()            # outputs, then processors (restored state, first documents)
    dispatcher.submit(reading)    # from any reader thread (it is the daemon's ReadingSink)
    dispatcher.stop(timeout)      # processors persist, outputs deliver the rest

For each reading, on the reader's thread and under one lock (so readings of one meter
keep their order and a record follows the reading that produced it): every output gets
the reading, then every processor, and every output gets what each processor made of it.
A worker of the dispatcher's own gives the processors their tick and the outputs' input
events (a broker connection, Home Assistant's `online`), so none of that runs on an
output's thread or waits for a reader. A processor is ticked about once a second, or,
when it says when its tick has work (`TicksWhenDue`), only on those beats when it has:
an idle daemon's worker sleeps until the earliest such time (at most `IDLE_WAIT_S`),
and asks again at least once a second while readings come, since they change what is
due. One whose thread made work for its tick (`RequestsTicks`) is ticked at once.

A processor that raises is logged (once, then every 10,000th time) and counted in
`failures`; the reading is already with the outputs and the other processors still get
it. An output that raises on a reading refuses it: the reader sees the error, as before.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from p1daemon.daemon.processor import (
    BrokerConnected,
    BrokerDisconnected,
    Document,
    Drains,
    HasBackPressure,
    InputEvent,
    Output,
    Processor,
    ReportsHealth,
    RequestsTicks,
    ServesTelegrams,
    Subscribes,
    Telegram,
    TicksWhenDue,
    WantsTelegrams,
)
from p1daemon.daemon.sink import ReportsStatus
from p1daemon.reading.meter import MeterReading

if TYPE_CHECKING:
    from p1daemon.config.model import Config

log = logging.getLogger("p1daemon.dispatch")

TICK_S = 1.0
IDLE_WAIT_S = 10.0
"""The longest the worker sleeps: `healthy` expects a round at least every 30 s."""
_LOG_EVERY = 10_000


class DispatcherClosed(RuntimeError):
    """`submit` after `stop`: the reader should have been stopped first."""


def _keepers(processors: Sequence[Processor]) -> list[WantsTelegrams]:
    """The processors that keep telegrams (looked up once, not per reading)."""
    return [p for p in processors if isinstance(p, WantsTelegrams)]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    """See the module docstring. Also the daemon's `ReportsStatus` and `Reconfigurable`."""

    def __init__(
        self,
        processors: Sequence[Processor],
        outputs: Sequence[Output],
        *,
        tick_s: float = TICK_S,
        clock: Callable[[], datetime] = _utc_now,
        reconfigure: Callable[[Dispatcher, Config], None] | None = None,
    ) -> None:
        self._processors: list[Processor] = list(processors)
        self._telegram_processors = _keepers(self._processors)
        self.outputs: tuple[Output, ...] = tuple(outputs)
        # Outputs with back-pressure (the MQTT sink's memory budget) wait outside the lock.
        self._room: list[Callable[[], None]] = [
            o.make_room for o in self.outputs if isinstance(o, HasBackPressure)
        ]
        self._telegram_outputs = [o for o in self.outputs if isinstance(o, ServesTelegrams)]
        self._tick_s = tick_s
        self._clock = clock
        self._reconfigure = reconfigure
        self.lock = threading.RLock()  # every processor call, every delivery
        self._events: queue.SimpleQueue[InputEvent] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._last_round = time.monotonic()
        # Set by `submit`: readings came since the worker's last round (it asks every
        # `TicksWhenDue` again within a second). `_sleeping_long`: the worker sleeps
        # longer than a tick, so a reading wakes it (what is due may have changed).
        self._fed = False
        self._sleeping_long = False
        self._next_tick = 0.0  # of the processors without `tick_due` (monotonic)
        self._kinds: list[tuple[Processor, bool, bool]] = []  # see `_tick_kinds`
        self._kinds_of: list[Processor] | None = None
        self._closed = False
        self.broker_connected = False  # as the outputs last reported it
        self.failures: dict[str, int] = {}  # processor name -> calls that raised

    # -- what the builder and tests may look at ----------------------------------------------

    @property
    def processors(self) -> tuple[Processor, ...]:
        with self.lock:
            return tuple(self._processors)

    def processor(self, name: str) -> Processor:
        for processor in self.processors:
            if processor.name == name:
                return processor
        raise KeyError(name)

    def output(self, name: str) -> Output:
        for output in self.outputs:
            if output.name == name:
                return output
        raise KeyError(name)

    @property
    def processor_failures(self) -> int:
        return sum(self.failures.values())

    def subscriptions(self) -> list[str]:
        topics: list[str] = []
        for processor in self.processors:
            if isinstance(processor, Subscribes):
                topics.extend(t for t in processor.subscriptions() if t not in topics)
        return topics

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Outputs first (so the processors' first documents have somewhere to go)."""
        if self._worker is not None:
            raise RuntimeError("Dispatcher.start() called twice")
        subscriptions = self.subscriptions()
        started: list[Output] = []
        try:
            for output in self.outputs:
                output.start(subscriptions, self.post)
                started.append(output)
        except Exception:
            for output in reversed(started):
                output.stop(1.0)
            raise
        with self.lock:
            for processor in self._processors:
                self._deliver(self._call(processor, "start", processor.start))
                self._give_tick_request(processor)
        self._worker = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self._worker.start()

    def submit(self, reading: MeterReading, raw: Telegram | None = None) -> None:
        """One accepted reading, from any reader thread; once this returns it is delivered
        to every output (which owns it from then on) and seen by every processor. `raw`:
        the telegram, for the outputs that serve its bytes (`ServesTelegrams`) when it
        comes as bytes, and for the processors keeping telegrams (`WantsTelegrams`)."""
        for make_room in self._room:  # back-pressure, outside the lock
            make_room()
        now = self._clock()
        with self.lock:
            if self._closed:
                raise DispatcherClosed("the daemon's outputs are stopped")
            for output in self.outputs:
                output.on_reading(reading)
            if raw is not None:
                if type(raw) is bytes:  # a served meter's (a frame is only to be kept)
                    for served in self._telegram_outputs:
                        served.on_telegram(reading.meter, raw)
                for keeper in self._telegram_processors:
                    try:
                        keeper.on_telegram(reading.meter, raw)
                    except Exception:
                        self._failed(
                            cast(Processor, keeper), f"meter {reading.meter}", "on a telegram"
                        )
            for processor in self._processors:
                try:
                    documents = processor.on_reading(reading, now)
                except Exception:
                    self._failed(processor, f"meter {reading.meter}", "on a reading")
                    continue
                if documents:
                    self._deliver(documents)
            self._fed = True
            if self._sleeping_long:
                self._sleeping_long = False
                self._wake.set()

    def wants_telegrams(self, meter: str) -> bool:
        """Does any processor keep `meter`'s telegrams (`WantsTelegrams`)? Asked by its
        reader whenever it opens the port, so a reload that changes it is followed."""
        return any(
            isinstance(p, WantsTelegrams) and p.wants_telegrams(meter) for p in self.processors
        )

    def post(self, event: InputEvent) -> None:
        """An output's input event (thread-safe, never blocks); handled by the worker."""
        self._events.put(event)
        self._wake.set()

    def processor_health(self) -> dict[str, dict[str, object]]:
        """Each `ReportsHealth` processor's figures by name (from any thread; a failing
        one is left out rather than costing the health report)."""
        figures: dict[str, dict[str, object]] = {}
        for processor in tuple(self._processors):
            if isinstance(processor, ReportsHealth):
                try:
                    figures[processor.name] = processor.health()
                except Exception:
                    log.exception("processor %s: health() failed", processor.name)
        return figures

    def begin_drain(self) -> None:
        """Every reader has ended: outputs release what they held back (`Drains`)."""
        for output in self.outputs:
            if isinstance(output, Drains):
                output.begin_drain()

    def undelivered(self) -> int:
        """What the outputs still wait to have confirmed; 0 when every one is delivered."""
        return sum(o.undelivered() for o in self.outputs if isinstance(o, Drains))

    def stop(self, timeout: float = 8.0) -> None:
        """After the readers: processors persist and send their last documents, then the
        outputs deliver or persist everything, within `timeout` altogether."""
        deadline = time.monotonic() + timeout
        worker = self._worker
        if worker is None:
            return
        self._stopping.set()
        self._wake.set()
        worker.join(min(1.0, timeout / 4))
        with self.lock:
            if self._closed:
                return
            self._closed = True
            for processor in self._processors:
                self._deliver(self._call(processor, "stop", processor.stop))
        for output in self.outputs:
            try:
                output.stop(max(0.5, deadline - time.monotonic()))
            except Exception as exc:
                log.error("stopping output %s failed: %s: %s", output.name, type(exc).__name__, exc)

    # -- reload (driven by the builder) ------------------------------------------------------

    def apply_config(self, config: Config) -> None:
        """`Reconfigurable` for the daemon: the builder decides what to rebuild."""
        if self._reconfigure is None:
            log.warning("this daemon cannot apply a new configuration to its views; restart it")
            return
        self._reconfigure(self, config)

    def replace_processors(self, processors: Sequence[Processor]) -> None:
        """Install the builder's new processor list (caller holds `lock`). A processor new
        to the list hears of a broker connection that already exists."""
        known = {id(p) for p in self._processors}
        self._processors = list(processors)
        self._telegram_processors = _keepers(self._processors)
        for processor in self._processors:
            if id(processor) in known:
                continue
            self._deliver(self._call(processor, "start", processor.start))
            self._give_tick_request(processor)
            if self.broker_connected:
                self._event_to(processor, BrokerConnected())

    def deliver(self, documents: Sequence[Document]) -> None:
        with self.lock:
            self._deliver(documents)

    def call(
        self,
        processor: Processor,
        what: str,
        method: Callable[..., Sequence[Document]],
        *args: Any,
    ) -> Sequence[Document]:
        """Call a processor method the failure-safe way (caller holds `lock`)."""
        return self._call(processor, what, method, *args)

    # -- status ------------------------------------------------------------------------------

    def status(self) -> str:
        parts = [o.status() for o in self.outputs if isinstance(o, ReportsStatus)]
        return ", ".join(p for p in parts if p)

    def healthy(self) -> bool:
        worker = self._worker
        if (
            worker is not None
            and not self._stopping.is_set()
            and (not worker.is_alive() or time.monotonic() - self._last_round > 30.0)
        ):
            return False
        return all(o.healthy() for o in self.outputs if isinstance(o, ReportsStatus))

    # -- internals ---------------------------------------------------------------------------

    def _run(self) -> None:
        self._next_tick = time.monotonic() + self._tick_s
        while not self._stopping.is_set():
            self._last_round = time.monotonic()
            wait = self._tick_s
            # Cleared before the round, not after the wait: a wake-up (an event, a tick
            # request) that comes during the round makes another round, never is lost.
            self._wake.clear()
            fed = self._fed
            try:
                self._handle_events()
                wait = self._tick_round()
            except Exception:  # a bug here must not end the ticks
                log.exception("dispatcher round failed; retrying")
            if fed:
                # Readings came since the last round, so more are likely: ask again within
                # a tick, and let them not wake the worker meanwhile (flat out, each one
                # did: a round, a wake-up and a switch of threads per few readings).
                wait = min(wait, self._tick_s)
            self._sleeping_long = wait > self._tick_s
            if self._fed:  # a reading came meanwhile: ask again soon
                wait = min(wait, self._tick_s)
            self._wake.wait(max(0.0, wait))

    def _tick_round(self) -> float:
        """Tick the processors that are due; seconds until the next one is."""
        mono = time.monotonic()
        every_second = mono >= self._next_tick  # processors without `tick_due`
        if every_second:
            self._next_tick = mono + self._tick_s
        wait = IDLE_WAIT_S
        now = self._clock()
        with self.lock:
            if self._closed:
                return wait
            self._fed = False
            for processor, when_due, asked in self._tick_kinds():
                if not when_due:
                    if every_second:
                        self._deliver(self._call(processor, "tick", processor.on_tick, now))
                    wait = min(wait, self._next_tick - mono)
                    continue
                # Ticked on the once-a-second beat when due (as often as before, never
                # more); one that asked for a tick (`RequestsTicks`) as soon as it is due.
                due = self._due(cast(TicksWhenDue, processor), now)
                if due is not None and due <= 0 and (every_second or asked):
                    self._deliver(self._call(processor, "tick", processor.on_tick, now))
                    due = self._due(cast(TicksWhenDue, processor), now)
                    if due is not None and due <= 0:  # not moved on: once a second then
                        due = self._tick_s
                if due is not None:
                    wait = min(wait, due if asked else max(due, self._next_tick - mono))
        return wait

    def _tick_kinds(self) -> list[tuple[Processor, bool, bool]]:
        """Each processor with whether it is `TicksWhenDue` and `RequestsTicks`: asked of
        every processor once per list (a runtime protocol check costs microseconds, and
        the worker asks every round), again whenever the list is replaced."""
        processors = self._processors
        if self._kinds_of is not processors:
            self._kinds = [
                (p, isinstance(p, TicksWhenDue), isinstance(p, RequestsTicks)) for p in processors
            ]
            self._kinds_of = processors
        return self._kinds

    def _due(self, processor: TicksWhenDue, now: datetime) -> float | None:
        try:
            return processor.tick_due(now)
        except Exception:
            self._failed(cast(Processor, processor), "", "in tick_due")
            return self._tick_s

    def _give_tick_request(self, processor: Processor) -> None:
        if isinstance(processor, RequestsTicks):
            try:
                processor.set_tick_request(self._wake.set)
            except Exception:
                self._failed(processor, "", "in set_tick_request")

    def _handle_events(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            with self.lock:
                if self._closed:
                    return
                if isinstance(event, BrokerConnected):
                    self.broker_connected = True
                elif isinstance(event, BrokerDisconnected):
                    self.broker_connected = False
                for processor in self._processors:
                    self._event_to(processor, event)

    def _event_to(self, processor: Processor, event: InputEvent) -> None:
        self._deliver(self._call(processor, "event", processor.on_event, event))

    def _call(
        self,
        processor: Processor,
        what: str,
        method: Callable[..., Sequence[Document]],
        *args: Any,
    ) -> Sequence[Document]:
        try:
            return method(*args)
        except Exception:
            self._failed(processor, "", f"in {what}")
            return ()

    def _deliver(self, documents: Sequence[Document]) -> None:
        if not documents:
            return
        for output in self.outputs:
            try:
                output.on_documents(documents)
            except Exception:
                log.exception("output %s failed on %d document(s)", output.name, len(documents))

    def _failed(self, processor: Processor, where: str, when: str) -> None:
        name = processor.name
        count = self.failures[name] = self.failures.get(name, 0) + 1
        if count == 1 or count % _LOG_EVERY == 0:
            label: Any = getattr(processor, "label", name)
            log.exception(
                "%s%s failed %s (%d failures so far; logged again every 10,000)",
                f"{where}: " if where else "",
                label,
                when,
                count,
            )
