"""The reader thread's work per telegram, stage by stage, for one or more trees side by side.

    .venv/bin/python bench/bench_stages.py --tree /tmp/before --tree . [--rounds 5]

What `p1daemon run` does on a meter's reader thread for a flat-out replay, each stage
timed on its own in one thread (CPU, `time.process_time`) over the shared capture
repeated to `--telegrams`: the replay source's reads, framing with the CRC check (and
the CRC alone over the same bodies), parsing, `MeterReading.from_reading`, and each
processor the daemon builds for bench_daemon.py's configuration (Home Assistant
discovery, energy views, history) fed the readings in the dispatcher's order, then the
whole `Dispatcher.submit` with an output that takes nothing. Publishing (the MQTT
output and its thread) is left out: bench_threads.py measures it.

Each tree runs in its own child process (its own modules, this venv), the trees taking
turns `--rounds` times; the best round of each stage is shown, the least disturbed on a
shared machine. Compare the columns of one run, never figures of different runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO.parent / "shared/fixtures/streams/iskra_am550_dsmr50_566_telegrams.txt"


class _NullOutput:
    """An output that takes readings and documents and does nothing with them."""

    name = "null"

    def start(self, subscriptions: object, events: object) -> None:
        pass

    def on_reading(self, reading: object) -> None:
        pass

    def on_documents(self, documents: object) -> None:
        pass

    def stop(self, timeout: float) -> None:
        pass


def _cpu(run: object) -> float:
    # What earlier stages made (chunks, frames, readings) is kept for the later ones: frozen
    # out of the collector's way, as the daemon, which keeps none of it, never has it.
    gc.collect()
    gc.freeze()
    start = time.process_time()
    run()  # type: ignore[operator]
    return time.process_time() - start


def child(tree: Path, telegrams: int) -> None:
    """One measurement of `tree`'s code in this process: seconds per stage, as JSON."""
    sys.path[:0] = [str(tree), str(REPO / "bench")]
    from bench_daemon import capture_of, write_config

    from p1daemon.config.loader import load_config
    from p1daemon.daemon.builder import build
    from p1daemon.daemon.processor import WantsTelegrams
    from p1daemon.frame.crc import crc16_arc
    from p1daemon.frame.decoder import TelegramDecoder
    from p1daemon.frame.events import Frame
    from p1daemon.parse.layout import LayoutParser
    from p1daemon.reading.meter import MeterReading
    from p1daemon.source.base import EndOfData
    from p1daemon.source.replay import ReplaySource

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="p1bench-stages-") as tmp:
        work = Path(tmp)
        capture = work / "capture.txt"
        capture_of(telegrams, CAPTURE, capture)
        config = load_config(write_config(work, capture, 1883))
        meter = config.meters[0]

        chunks: list[bytes] = []

        def replay() -> None:
            source = ReplaySource(capture, interval_s=0)
            source.open()
            try:
                while True:
                    chunks.append(source.read(1.0))
            except EndOfData:
                source.close()

        figures["replay"] = _cpu(replay)
        frames: list[Frame] = []

        def frame() -> None:
            decoder = TelegramDecoder(check_crc=True, max_size=meter.max_frame_bytes)
            for chunk in chunks:
                frames.extend(e for e in decoder.feed(chunk) if isinstance(e, Frame))
            frames.extend(e for e in decoder.flush() if isinstance(e, Frame))

        figures["frame+crc"] = _cpu(frame)
        count = len(frames)  # the capture holds a few broken telegrams too
        bodies = [f.body for f in frames]
        figures["crc alone"] = _cpu(lambda: [crc16_arc(body) for body in bodies])
        parser = LayoutParser()
        parsed: list[object] = []
        figures["parse"] = _cpu(lambda: parsed.extend(parser.parse(f) for f in frames))
        now = datetime.now(UTC)
        readings: list[MeterReading] = []

        def meter_readings() -> None:
            for reading in parsed:
                readings.append(
                    MeterReading.from_reading(
                        reading,  # type: ignore[arg-type]
                        meter=meter.name,
                        role=meter.role,
                        ean=meter.ean,
                        received_at=now,
                    )
                )

        figures["MeterReading"] = _cpu(meter_readings)

        # Each processor, in the dispatcher's order, per call (perf_counter around each).
        dispatcher = build(config, [_NullOutput()])
        processors = list(dispatcher.processors)
        spent = dict.fromkeys((p.name for p in processors), 0.0)
        clock = time.perf_counter
        pairs = list(zip(readings, frames, strict=True))
        for processor in processors:
            processor.start()
        gc.collect()
        gc.freeze()
        # Protocol isinstance checks are slow: looked up once, as the dispatcher does.
        keeps = [isinstance(p, WantsTelegrams) for p in processors]
        for reading, raw in pairs:
            for processor, keeper in zip(processors, keeps, strict=True):
                t0 = clock()
                if keeper:
                    processor.on_telegram(reading.meter, raw)  # type: ignore[attr-defined]
                processor.on_reading(reading, now)
                spent[processor.name] += clock() - t0
        for processor in processors:
            processor.stop()
            figures[f"  {processor.name}"] = spent[processor.name]

        # The whole submit (outputs, keepers, processors) on fresh processors.
        dispatcher = build(config, [_NullOutput()])
        dispatcher.start()
        submit = dispatcher.submit
        figures["Dispatcher.submit"] = _cpu(lambda: [submit(r, f) for r, f in pairs])
        dispatcher.stop(5.0)
    print(json.dumps({"count": count, **figures}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--telegrams", type=int, default=20_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.tree or [REPO]]
    if args.child:
        child(trees[0], args.telegrams)
        return 0
    best: dict[Path, dict[str, float]] = {}
    env = {**os.environ, "PYTHONPATH": ""}
    for _ in range(args.rounds):
        for tree in trees:
            command = [sys.executable, __file__, "--child", f"--telegrams={args.telegrams}"]
            out = subprocess.run(
                [*command, f"--tree={tree}"], check=True, capture_output=True, text=True, env=env
            ).stdout
            result = json.loads(out.splitlines()[-1])
            kept = best.setdefault(tree, {})
            for name, value in result.items():
                kept[name] = value if name not in kept else min(kept[name], value)
    names = [n for n in next(iter(best.values())) if n != "count"]
    print(f"reader thread per telegram, CPU in us, best of {args.rounds} rounds")
    print(f"  {'stage':<20}" + "".join(f"{str(t)[-24:]:>26}" for t in trees))
    for name in names:
        cells = "".join(f"{best[t][name] / best[t]['count'] * 1e6:>26.2f}" for t in trees)
        print(f"  {name:<20}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
