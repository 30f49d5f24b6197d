"""What flows between the dispatcher, processors and outputs: the small contracts.

A reading takes one path: readers -> `Dispatcher` -> every processor and every output.

- A **processor** (`views/...`: the energy views, Home Assistant discovery, later the
  settlement history) turns readings into `Document`s and keeps its own state. It never
  publishes, opens a socket or knows which outputs exist.
- An **output** (the MQTT sink, the stdout JSON Lines writer, later the TCP fan-out)
  delivers readings and documents and knows nothing of what produced them. What it hears
  from the outside world (a broker connection, a message on a subscribed topic) goes back
  to the processors as an `InputEvent`, through the dispatcher.

The dispatcher calls every processor method under one lock, so a processor sees one call
at a time and its documents reach the outputs in the order it made them (a record right
after the reading that closed its period). That lock is taken by the reader threads:
processor methods must be cheap and must not touch the disk or the network. A processor
with slow work (saving its state) does it on a thread of its own and persists the rest
in `stop`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from p1daemon.frame.events import Frame
from p1daemon.reading.meter import MeterReading

if TYPE_CHECKING:
    from p1daemon.config.model import Config

Telegram = bytes | Frame
"""An accepted telegram as readers hand it on: its bytes as they travelled (a served
meter's: every one is sent on), or the frame they are made from (a meter whose
telegrams only a processor keeping evidence wants: it makes the bytes, with
`telegram_bytes`, for the few telegrams it keeps, instead of the reader for all)."""


def wire_bytes(frame: Frame) -> bytes:
    """The telegram as it travelled: '/' .. '!', the CRC in upper-case hex as P1 writes
    it, CR LF. What a served client (ser2net raw-mode style) expects to receive, and
    what the history keeps as evidence."""
    crc = b"" if frame.crc is None else b"%04X" % frame.crc
    return frame.body + crc + b"\r\n"


def telegram_bytes(telegram: Telegram) -> bytes:
    """The bytes of a `Telegram`, whichever form it came in."""
    return telegram if isinstance(telegram, bytes) else wire_bytes(telegram)


@dataclass(frozen=True, slots=True)
class Document:
    """One message a processor wants delivered (MQTT: retained, at the configured QoS).

    `record`: True for a durable record (a closed quarter-hour, a day, an alert) that a
    subscriber storing them needs every one of, in order, across outages and restarts:
    the MQTT output sends it through its outbox. False for retained state (a discovery
    config, the site connection document) where the newest per topic wins.
    """

    topic: str  # the full MQTT topic
    payload: bytes
    record: bool


@dataclass(frozen=True, slots=True)
class BrokerConnected:
    """A new broker connection: retained state a broker may have forgotten goes out again."""


@dataclass(frozen=True, slots=True)
class BrokerDisconnected:
    """The broker connection is gone (until the next `BrokerConnected`)."""


@dataclass(frozen=True, slots=True)
class BrokerMessage:
    """A message on a topic some processor subscribes to (`Subscribes.subscriptions`)."""

    topic: str
    payload: bytes


InputEvent = BrokerConnected | BrokerDisconnected | BrokerMessage
EventSink = Callable[[InputEvent], None]


class Processor(Protocol):
    """Readings in, documents out; see the module docstring for the threading rules."""

    name: str

    def start(self) -> Sequence[Document]:
        """Restore own state (before any reading); the documents to send at start-up."""
        ...

    def on_reading(self, reading: MeterReading, now: datetime) -> Sequence[Document]:
        """Every accepted reading, before any throttling, in meter order (`now`: UTC)."""
        ...

    def on_tick(self, now: datetime) -> Sequence[Document]:
        """About once a second, from the dispatcher's worker (`now`: UTC)."""
        ...

    def on_event(self, event: InputEvent) -> Sequence[Document]:
        """A broker connection came or went, or a message on a subscribed topic arrived."""
        ...

    def stop(self) -> Sequence[Document]:
        """After the last reading: persist own state; the last documents to send."""
        ...


@runtime_checkable
class Subscribes(Protocol):
    """A processor that needs messages from the broker (Home Assistant's `online`)."""

    def subscriptions(self) -> Sequence[str]: ...


@runtime_checkable
class Reloadable(Protocol):
    """A processor that can take a new configuration in place, keeping its state. It
    returns None when it cannot take this one: the builder then rebuilds it (`stop` on
    the old one, `start` on a new one), as it does for a processor without `on_reload`."""

    def on_reload(self, config: Config) -> Sequence[Document] | None: ...


class Output(Protocol):
    """Delivers readings and documents. `on_reading` may block briefly (back-pressure)
    and may raise: the reading is then refused, and the reader handles that as today."""

    name: str

    def start(self, subscriptions: Sequence[str], events: EventSink) -> None:
        """Open what is needed (never wait for a broker); report events to `events`."""
        ...

    def on_reading(self, reading: MeterReading) -> None: ...

    def on_documents(self, documents: Sequence[Document]) -> None: ...

    def stop(self, timeout: float) -> None:
        """After the last reading and document: persist or deliver the rest, disconnect."""
        ...


@runtime_checkable
class ServesTelegrams(Protocol):
    """An output that wants each accepted telegram's bytes (the TCP fan-out): `raw` as
    the daemon accepted it (CRC-valid; a Smarty meter's plaintext). Called right after
    the reading went to every output, under the dispatcher's lock: it must only enqueue.
    Readers pass the bytes only for meters with `serve` set, so nobody else pays for them
    (the telegrams of a meter that is only kept as evidence come as frames: not served)."""

    def on_telegram(self, meter: str, raw: bytes) -> None: ...


@runtime_checkable
class WantsTelegrams(Protocol):
    """A processor that keeps telegrams as evidence (the settlement history): each
    accepted telegram (a `Telegram`: the bytes `ServesTelegrams` gets, or the frame to
    make them from with `telegram_bytes`), handed over right before `on_reading` of the
    same reading, under the dispatcher's lock. It must only keep a reference (no copy,
    no I/O) and make the bytes of the telegrams it keeps only.
    `wants_telegrams(meter)` tells the readers whether to keep the frames for that meter
    at all: a configuration where nobody wants them keeps the no-copy path."""

    def wants_telegrams(self, meter: str) -> bool: ...

    def on_telegram(self, meter: str, raw: Telegram) -> None: ...


@runtime_checkable
class TicksWhenDue(Protocol):
    """A processor that says when its `on_tick` has work, so that an idle daemon's
    dispatcher sleeps until then instead of waking every second. A processor without
    it is ticked about once a second, as the `Processor` protocol says."""

    def tick_due(self, now: datetime) -> float | None:
        """Seconds from `now` until `on_tick` has something to do (0 or less: at once);
        None: nothing until a reading or an event changes that. After `on_tick(now)` it
        must be later than `now`. Asked under the dispatcher's lock after every round,
        and at least once a second while readings come (they change what is due)."""
        ...


@runtime_checkable
class RequestsTicks(Protocol):
    """A processor whose own thread makes work for `on_tick` (the history's month
    documents, made after each commit): it is given a callable, once, that wakes the
    dispatcher's worker at once (thread-safe, never blocks) to ask `tick_due` again."""

    def set_tick_request(self, request: Callable[[], None]) -> None: ...


@runtime_checkable
class HasBackPressure(Protocol):
    """An output that may make a fast producer wait (before the dispatcher's lock)."""

    def make_room(self) -> None: ...


@runtime_checkable
class ReportsHealth(Protocol):
    """A processor with a state worth monitoring (the history: is it being written?);
    the MQTT output shows it in `<prefix>/daemon/health` under `views.<name>`."""

    def health(self) -> dict[str, object]: ...


@runtime_checkable
class Drains(Protocol):
    """An output that holds what it accepted until somebody else confirms it (the MQTT
    broker's PUBACK): a finite run waits for it to empty before it exits."""

    def begin_drain(self) -> None:
        """No more readings will come: hand on anything held back (throttled readings)."""
        ...

    def undelivered(self) -> int:
        """Readings and records accepted and not yet confirmed (in memory or on disk)."""
        ...


__all__ = [
    "BrokerConnected",
    "BrokerDisconnected",
    "BrokerMessage",
    "Document",
    "Drains",
    "EventSink",
    "HasBackPressure",
    "InputEvent",
    "Output",
    "Processor",
    "Reloadable",
    "ReportsHealth",
    "RequestsTicks",
    "ServesTelegrams",
    "Subscribes",
    "Telegram",
    "TicksWhenDue",
    "WantsTelegrams",
    "telegram_bytes",
    "wire_bytes",
]
