"""Readings and documents as JSON Lines on stdout: the output of `p1daemon run --stdout`.

A reading is one line, exactly its MQTT payload (`MeterReading` as JSON). A document a
processor made (quarter, day, site connection, export alert) is one line
`{"topic": "...", "record": true, "document": {...}}`: the JSON payload itself under
`document` (null for an empty payload, the text under `payload` if it is not JSON), so a
line with a `topic` key is a document and any other line a reading.

Writing happens on a thread of its own so that a slow consumer of the pipe (a terminal
being scrolled, `| less`) stalls only this thread, never a meter reader, whose serial
buffer would otherwise overflow.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from p1daemon.daemon.processor import Document, EventSink
from p1daemon.reading.encode import to_json
from p1daemon.reading.meter import MeterReading

log = logging.getLogger(__name__)

_STOP = object()


def document_line(document: Document) -> str:
    body: dict[str, Any] = {"topic": document.topic, "record": document.record}
    if not document.payload:
        body["document"] = None
    else:
        try:
            body["document"] = json.loads(document.payload)
        except ValueError:
            body["payload"] = document.payload.decode("utf-8", "replace")
    # Spaced separators, unlike a reading's compact line: `"meter":"house"` matches readings only.
    return json.dumps(body, ensure_ascii=False)


class JsonLinesOutput:
    """One line per reading and per document, in the order the dispatcher gave them."""

    name = "stdout"

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._queue: queue.SimpleQueue[MeterReading | Document | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_all, name="stdout-sink", daemon=True)
        self._broken = False
        self.written = 0

    def start(self, subscriptions: Sequence[str] = (), events: EventSink | None = None) -> None:
        """No broker here: `subscriptions` are not served and no event is ever reported."""
        self._thread.start()

    def submit(self, reading: MeterReading) -> None:
        self._queue.put(reading)

    def on_reading(self, reading: MeterReading) -> None:
        self._queue.put(reading)

    def on_documents(self, documents: Sequence[Document]) -> None:
        for document in documents:
            self._queue.put(document)

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
            if isinstance(item, Document):
                self._write(document_line(item))
            else:
                assert isinstance(item, MeterReading)
                self._write(to_json(item))
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
