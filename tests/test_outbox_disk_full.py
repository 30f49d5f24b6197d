"""Issue 9 item 2: a full disk while the broker is away costs no CPU.

A real tmpfs filled to the last byte, a real SQLite outbox on it, no broker: the
publisher must sleep until its next outbox retry instead of spinning, and once the disk
has room again everything held in memory is written.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from mosquitto_broker import free_port, wait_until
from small_disk import fill, small_tmpfs, thread_cpu_seconds
from test_mqtt_publish import as_meter, readings  # noqa: F401 (a fixture)

from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.publish.sink import MqttSink
from p1daemon.reading.model import Reading


def test_a_full_disk_with_the_broker_away_does_not_spin_the_publisher(
    tmp_path: Path,
    readings: list[Reading],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="p1daemon.publish")
    with small_tmpfs(tmp_path / "disk", 1024) as disk:
        sink = MqttSink(
            MqttSettings(port=free_port(), reconnect_max_delay_s=1.0),  # nobody listens
            BufferSettings(path=str(disk / "outbox.db"), commit_interval_s=0.05),
        )
        sink.start()
        try:
            pipeline = sink.pipeline
            assert pipeline is not None and sink._worker is not None
            for reading in readings[:20]:
                sink.submit(as_meter(reading))
            wait_until(lambda: pipeline.in_memory == 0, 5, "the first readings on disk")
            filler = fill(disk)
            for reading in readings[20:300]:
                sink.submit(as_meter(reading))
            wait_until(
                lambda: any("cannot write the outbox" in r.getMessage() for r in caplog.records),
                5,
                "the outbox write to fail on the full disk",
            )
            assert pipeline.in_memory == 280

            worker = sink._worker.native_id
            assert worker is not None
            before, started = thread_cpu_seconds(worker), time.monotonic()
            time.sleep(2.0)
            used = thread_cpu_seconds(worker) - before
            took = time.monotonic() - started
            # Spinning burns a whole core (about `took` seconds); waiting costs ticks.
            assert used < 0.1 * took, f"publisher used {used:.2f} s of CPU in {took:.2f} s"

            filler.unlink()  # room again: the next retry writes what waited in memory
            wait_until(lambda: pipeline.in_memory == 0, 8, "the readings written after all")
            assert sink.outbox.rows == 300
            assert pipeline.counters.dropped_memory == 0
            assert any("writable again" in r.getMessage() for r in caplog.records)
        finally:
            sink.stop(timeout=5)
