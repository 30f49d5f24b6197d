"""The energy views as a processor: the running day is saved by a thread of its own
(never a reader's), restored at start, and a reload changes the meter set in place."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_views_stdout import timed_telegram

from p1daemon.config import Config
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading
from p1daemon.views.energy import processor as energy_processor
from p1daemon.views.energy.processor import EnergyProcessor

EANS = {"house": "871685900012345674", "carport": "871685900012345681"}


def config(tmp_path: Path, meters: list[str]) -> Config:
    return Config.model_validate(
        {
            "buffer": {"path": str(tmp_path / "outbox.db")},
            "meters": [
                {
                    "name": name,
                    "role": "primary" if name == "house" else "secondary",
                    "ean": EANS[name],
                    "source": f"socket://127.0.0.1:{9001 + index}",
                }
                for index, name in enumerate(meters)
            ],
        }
    )


def readings(meter: str, minutes: range) -> list[MeterReading]:
    """Every 10 s through `minutes` (12:mm), 1 Wh per telegram."""
    data = b"".join(
        timed_telegram(m, s, 1_000_000 + 6 * (m - 14) + s // 10, f"E-{meter}")
        for m in minutes
        for s in range(0, 60, 10)
    )
    stream = ReadingStream(TelegramDecoder())
    parsed = [r for r in [*stream.feed(data), *stream.flush()] if isinstance(r, Reading)]
    role = "primary" if meter == "house" else "secondary"
    return [
        MeterReading.from_reading(
            r, meter=meter, role=role, ean=EANS[meter], received_at=datetime.now(UTC)
        )
        for r in parsed
    ]


def test_the_running_day_is_written_by_the_saver_thread_and_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        writers.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(energy_processor.os, "fsync", recording_fsync)
    cfg = config(tmp_path, ["house"])
    processor = EnergyProcessor.from_config(cfg)
    processor.start()
    saved = tmp_path / "energy" / "house-day.json"

    def read() -> None:  # as a reader thread would, under the dispatcher
        for reading in readings("house", range(14, 17)):
            processor.on_reading(reading, datetime.now(UTC))

    reader = threading.Thread(target=read, name="reader-house")
    reader.start()
    reader.join(10)
    deadline = datetime.now(UTC).timestamp() + 5
    while not saved.exists() and datetime.now(UTC).timestamp() < deadline:
        threading.Event().wait(0.01)
    assert saved.exists()
    assert writers and set(writers) == {"energy-saver"}
    processor.stop()  # from the stopping thread: the day as booked to the last reading
    assert writers[-1] == threading.current_thread().name
    assert json.loads(saved.read_bytes())["last_reading"]["at"] == "2024-06-21T12:16:50+02:00"

    again = EnergyProcessor.from_config(cfg)
    again.start()
    assert again.tracker.running_days()["house"] == saved.read_bytes()
    again.stop()


def test_a_reload_adds_a_meter_and_keeps_the_running_quarter_of_the_others(
    tmp_path: Path,
) -> None:
    processor = EnergyProcessor.from_config(config(tmp_path, ["house"]), persist=False)
    processor.start()
    house = readings("house", range(14, 17))
    for reading in house[:13]:  # to 12:16:00, inside the 12:15 quarter
        processor.on_reading(reading, datetime.now(UTC))
    documents = processor.on_reload(config(tmp_path, ["house", "carport"]))
    assert documents is not None
    connection = json.loads(documents[-1].payload)
    assert documents[-1].topic == "p1/site/connection" and documents[-1].record is False
    assert [p["meter"] for p in connection["points"]] == ["house", "carport"]
    out = []  # the rest of the quarter, and the reading at 12:30:00 that closes it
    for reading in [*house[13:], *readings("house", range(17, 31))[:79]]:
        out.extend(processor.on_reading(reading, datetime.now(UTC)))
    quarter = next(json.loads(d.payload) for d in out if d.topic == "p1/house/quarter")
    assert quarter["start"] == "2024-06-21T12:15:00+02:00"
    assert quarter["start_missing"] is False
    assert round(quarter["import"]["total_kwh"] * 1000) == 90  # 15 min of 1 Wh per 10 s

    documents = processor.on_reload(config(tmp_path, ["carport"]))
    assert documents is not None
    assert [p["meter"] for p in json.loads(documents[-1].payload)["points"]] == ["carport"]
    processor.stop()


def test_a_restart_inside_a_quarter_publishes_that_quarter_whole(tmp_path: Path) -> None:
    """The running quarter's opening reading is saved at a clean stop, so the quarter the
    daemon was restarted in is complete on MQTT, as the history books it."""
    cfg = config(tmp_path, ["house"])
    first = EnergyProcessor.from_config(cfg)
    first.start()
    for reading in readings("house", range(14, 18)):  # into the 12:15 quarter
        first.on_reading(reading, datetime.now(UTC))
    first.stop()

    saved = tmp_path / "energy" / "house-quarter.json"
    assert saved.exists()
    again = EnergyProcessor.from_config(cfg)
    again.start()
    assert not saved.exists()  # used once only: a later start never applies it
    quarters = []
    for reading in readings("house", range(18, 31)):  # the 12:15 quarter closes at 12:30
        for document in again.on_reading(reading, datetime.now(UTC)):
            if document.topic.endswith("/house/quarter"):
                quarters.append(json.loads(document.payload))
    again.stop()
    assert [q["start"] for q in quarters] == ["2024-06-21T12:15:00+02:00"]
    assert quarters[0]["status"] == "complete", quarters[0]
    # One Wh per telegram, six a minute, from 12:15:00 to 12:30:00.
    assert round(quarters[0]["import"]["total_kwh"] * 1000) == 90
