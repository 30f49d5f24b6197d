"""A publishing daemon in miniature, run as a child process so tests can SIGKILL it.

It replays a capture file through the real path - `ReadingStream` (framing, CRC,
parsing), `MeterReading`, `MqttSink` - for one or more meters, submitting the readings
with index in [--start, --start + --count) at --rate per meter per second, then keeps
publishing until SIGTERM, on which it stops the sink and exits 0.

Every 50 ms it prints one JSON line on stdout with what the test needs to know before
it pulls the plug: how many readings were fed, how many are still only in memory
(`in_memory` == 0 means a SIGKILL now loses nothing), the outbox depth, and whether
the broker is connected.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.publish.sink import MqttSink
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading


def readings_of(capture: Path) -> list[Reading]:
    stream = ReadingStream(TelegramDecoder())
    data = capture.read_bytes()
    out: list[Reading | object] = []
    for start in range(0, len(data), 4096):  # in chunks, as a serial port delivers them
        out.extend(stream.feed(data[start : start + 4096]))
    out.extend(stream.flush())
    return [item for item in out if isinstance(item, Reading)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--capture", required=True)
    parser.add_argument("--meters", default="house")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=10**9)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="per meter per second; 0 = flat out"
    )
    parser.add_argument("--commit-interval", type=float, default=0.2)
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    sink = MqttSink(
        MqttSettings(port=args.port, client_id="p1daemon-child", reconnect_max_delay_s=1.0),
        BufferSettings(path=args.outbox, commit_interval_s=args.commit_interval),
    )
    sink.start()
    fed = 0

    def report(**extra: object) -> None:
        pipeline = sink.pipeline
        assert pipeline is not None
        line = {
            "fed": fed,
            "in_memory": pipeline.in_memory,
            "depth": pipeline.depth,
            "connected": sink.connected,
            **extra,
        }
        print(json.dumps(line), flush=True)

    readings = readings_of(Path(args.capture))
    chosen = readings[args.start : args.start + args.count]
    meters = args.meters.split(",")
    pause = 1.0 / args.rate if args.rate > 0 else 0.0
    last_report = 0.0
    for reading in chosen:
        if stop.is_set():
            break
        for position, meter in enumerate(meters):
            sink.submit(
                MeterReading.from_reading(
                    reading,
                    meter=meter,
                    role="primary" if position == 0 else "secondary",
                    ean=None,
                    received_at=datetime.now(UTC),
                )
            )
        fed += 1
        if time.monotonic() - last_report >= 0.05:
            last_report = time.monotonic()
            report()
        if pause:
            time.sleep(pause)
    while not stop.wait(0.05):
        report(done=True)
    started = time.monotonic()
    sink.stop(timeout=8.0)
    report(done=True, stopped_in_s=round(time.monotonic() - started, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
