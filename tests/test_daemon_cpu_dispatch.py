"""The dispatcher's worker while readings come: one round per tick, not one per wake-up.

Flat out, every reading after a round found the worker sleeping long (nothing due for
seconds) and woke it: a round, an `Event.set` and a switch of threads every few
readings (160 rounds in a 3-second replay). A round that saw readings now asks again
within a tick and lets the readings that follow not wake it; when readings stop, the
next round sleeps long again, and a reading then wakes it as before.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from test_daemon_support import wait_until

from p1daemon.daemon.dispatcher import Dispatcher
from p1daemon.daemon.processor import Document, InputEvent
from p1daemon.reading.meter import MeterReading


class Asked:
    """A `TicksWhenDue` processor with nothing due, counting the worker's rounds."""

    name = "asked"

    def __init__(self) -> None:
        self.rounds = 0
        self.readings = 0

    def start(self) -> Sequence[Document]:
        return ()

    def on_reading(self, reading: MeterReading, now: datetime) -> Sequence[Document]:
        self.readings += 1
        return ()

    def tick_due(self, now: datetime) -> float | None:
        self.rounds += 1
        return None

    def on_tick(self, now: datetime) -> Sequence[Document]:
        return ()

    def on_event(self, event: InputEvent) -> Sequence[Document]:
        return ()

    def stop(self) -> Sequence[Document]:
        return ()


def _reading() -> MeterReading:
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    return MeterReading(header="/ISK5\\2M550T-1012", meter="house", role="primary", received_at=at)


def test_readings_do_not_wake_the_worker_once_it_knows_they_come() -> None:
    asked = Asked()
    dispatcher = Dispatcher([asked], [], tick_s=5.0)  # no beat during the test
    dispatcher.start()
    try:
        # The first round: nothing due for longer than a tick, so it sleeps long.
        assert wait_until(lambda: dispatcher._sleeping_long, 2)
        before = asked.rounds
        reading = _reading()
        for _ in range(300):
            dispatcher.submit(reading)
            time.sleep(0.001)  # time for a woken worker to run its round
        assert asked.readings == 300
        # The first reading woke it (what is due may have changed); the others did not.
        assert 1 <= asked.rounds - before <= 3, asked.rounds - before
    finally:
        dispatcher.stop(1.0)


def test_a_reading_still_wakes_a_worker_that_sleeps_long() -> None:
    asked = Asked()
    dispatcher = Dispatcher([asked], [], tick_s=0.05)
    dispatcher.start()
    try:
        dispatcher.submit(_reading())
        # Readings stopped: within a few ticks the worker sleeps long again (nothing due).
        assert wait_until(lambda: dispatcher._sleeping_long, 2)
        before = asked.rounds
        dispatcher.submit(_reading())
        assert wait_until(lambda: asked.rounds > before, 2)
    finally:
        dispatcher.stop(1.0)
