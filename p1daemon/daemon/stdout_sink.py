"""Readings as JSON Lines on stdout: the sink of `p1daemon run --stdout`.

Writing happens on a thread of its own so that a slow consumer of the pipe (a terminal
being scrolled, `| less`) stalls only this thread, never a meter reader, whose serial
buffer would otherwise overflow.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TextIO

from p1daemon.reading.meter import MeterReading

log = logging.getLogger(__name__)

_STOP = object()


class JsonLinesSink:
    """One line per reading, in the order the readers submitted them."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._queue: queue.SimpleQueue[MeterReading | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_all, name="stdout-sink", daemon=True)
        self._broken = False
        self.written = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, reading: MeterReading) -> None:
        self._queue.put(reading)

    def stop(self, timeout: float) -> None:
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("stdout: %d readings could not be written in time", self._queue.qsize())

    def _write_all(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._flush()
                return
            assert isinstance(item, MeterReading)
            self._write(item.model_dump_json())
            if self._queue.empty():
                self._flush()

    def _write(self, line: str) -> None:
        if self._broken:
            return
        try:
            self._stream.write(line + "\n")
            self.written += 1
        except (OSError, ValueError) as exc:  # closed pipe or closed stream
            self._give_up(exc)

    def _flush(self) -> None:
        if self._broken:
            return
        try:
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        self._broken = True
        log.error("stdout is closed (%s); readings are no longer written", exc)
