"""`p1daemon history import`: old capture files into the history, idempotently.

The capture goes through the daemon's own `ReadingStream` and the same recorder as
live readings; rows are upserted (a quarter is only ever replaced by an equal or better
one), so importing a capture twice changes nothing. Readings are booked on the meter's
own clock; a telegram without a timestamp cannot be placed in time and is skipped.
The live meter state is not touched. The telegrams at quarter edges are kept as
evidence, as the daemon keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from p1daemon.config.model import Config, MeterConfig
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped, Frame
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.meter import MeterReading
from p1daemon.views.energy.tracker import MeterSpec
from p1daemon.views.history.recorder import HistoryRecorder
from p1daemon.views.history.rows import MeterState, Row
from p1daemon.views.history.store import HistoryStore

_CHUNK = 64 * 1024
_BATCH = 20_000


@dataclass(slots=True)
class ImportResult:
    readings: int = 0
    dropped: int = 0
    untimed: int = 0
    rows: int = 0


def capture_readings(
    paths: Iterable[Path], meter: MeterConfig, result: ImportResult
) -> Iterator[tuple[MeterReading, Frame]]:
    for path in paths:
        stream = ReadingStream(
            TelegramDecoder(
                check_crc=meter.check_crc,
                max_size=meter.max_frame_bytes,
                key=meter.key_bytes,
                auth_key=meter.auth_key_bytes,
            )
        )
        with path.open("rb") as source:
            while True:
                chunk = source.read(_CHUNK)
                events = stream.iter_framed(chunk) if chunk else stream.flush_framed()
                for item in events:
                    if isinstance(item, Dropped):
                        result.dropped += 1
                        continue
                    event, frame = item
                    if event.timestamp is None or event.timestamp.tzinfo is None:
                        result.untimed += 1
                        continue
                    result.readings += 1
                    reading = MeterReading.from_reading(
                        event,
                        meter=meter.name,
                        role=meter.role,
                        ean=meter.ean,
                        received_at=event.timestamp.astimezone(UTC),
                    )
                    # The frame: the recorder makes the bytes of the telegrams it keeps,
                    # as the daemon's does (the same `wire_bytes`).
                    yield reading, frame
                if not chunk:
                    break


def import_captures(
    store: HistoryStore, config: Config, meter_name: str, paths: Iterable[Path]
) -> ImportResult:
    meter = config.meter(meter_name)
    spec = MeterSpec(meter.name, meter.role, meter.ean)
    recorder = HistoryRecorder(config.site, [spec])
    result = ImportResult()
    pending: list[Row] = []
    for reading, raw in capture_readings(paths, meter, result):
        rows = [r for r in recorder.feed(reading, raw) if not isinstance(r, MeterState)]
        pending.extend(rows)
        if len(pending) >= _BATCH:
            store.write(pending)
            result.rows += len(pending)
            pending = []
    pending.extend(recorder.last_telegrams())
    if pending:
        store.write(pending)
        result.rows += len(pending)
    return result
