"""CPU per telegram of the reader's steps, parse, `MeterReading` and the reading's JSON, per tree.

    .venv/bin/python bench/bench_json.py [--tree DIR ...] [--rounds 5] [--repeat 5]

Why: issue 16 ("a leaner daemon") cuts the CPU the daemon spends per telegram; the JSON of
the reading document (p1daemon/reading/encode.py) was as costly as parsing it. Each
`--tree` (a checkout, e.g. `git archive 0102c85 | tar -x -C /tmp/before-json`; default
this one) is measured in a child process of its own (two trees cannot share one
process's `p1daemon`), the trees taking turns `--rounds` times; of each figure the best
is shown (on a shared machine the least disturbed) with the median beside it.

Per telegram, over bench_parse.py's stream (the 566-telegram capture of a real meter plus
every single DSMR 4/5 capture, repeated to 5,000+ telegrams, fed in 64 KiB chunks):

- parse: `ReadingStream(TelegramDecoder(check_crc=True)).feed(chunk)` (framing, CRC, parse);
- + MeterReading: and `MeterReading.from_reading` with a new receive time each, as the
  daemon's reader makes it;
- + JSON: and `to_json_bytes` of it, the payload the MQTT sink publishes;
- JSON alone: `to_json_bytes` over those MeterReadings made beforehand (no parsing in
  the loop), the figure the JSON step's change is about;
- JSON first sight: the same over the real meter's 566 telegrams, once, in a fresh process:
  the encoder has kept nothing of them yet (the stream repeats them, so "JSON alone"
  finds more float texts kept than a running daemon, whose values move on, would).

CPU is `time.process_time()`. Timings are not asserted anywhere.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("parse", "+ MeterReading", "+ JSON", "JSON alone", "JSON first sight")
FIRST = 566  # the real meter's telegrams, at the start of the stream


def child(tree: Path, repeat: int) -> dict[str, list[float]]:
    """The figures of `tree`'s code, measured in this process."""
    sys.path.insert(0, str(tree))
    import p1daemon
    from p1daemon.frame.decoder import TelegramDecoder
    from p1daemon.parse.stream import ReadingStream
    from p1daemon.reading.encode import to_json_bytes
    from p1daemon.reading.meter import MeterReading
    from p1daemon.reading.model import Reading

    assert Path(p1daemon.__file__).resolve().is_relative_to(tree.resolve()), p1daemon.__file__
    sys.path.insert(1, str(REPO / "bench"))
    from bench_parse import build_stream, shared_fixtures  # this tree's stream, the same bytes

    data, telegrams, _ = build_stream(shared_fixtures(), 5000)
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    start_at = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)

    def run(make: bool, encode: bool, keep: bool = False) -> list[object]:
        stream = ReadingStream(TelegramDecoder(check_crc=True, max_size=8192))
        out: list[object] = []
        n = 0
        for chunk in chunks:
            for event in stream.feed(chunk):
                if not isinstance(event, Reading):
                    continue
                n += 1
                if make:
                    event = MeterReading.from_reading(
                        event,
                        meter="house",
                        role="primary",
                        ean="871685900012345674",
                        received_at=start_at + timedelta(microseconds=137 * n),
                    )
                    if encode:
                        to_json_bytes(event)
                if keep:  # only for "JSON alone": keeping 5,000 readings costs by itself
                    out.append(event)
        if n != telegrams:
            raise RuntimeError(f"read {n} telegrams, expected {telegrams}")
        return out

    made = run(True, False, keep=True)
    samples: dict[str, list[float]] = {step: [] for step in STEPS}
    # The real meter's 566 telegrams as the encoder first sees them: its kept texts
    # (floats, strings, datetimes) hold only what came before, as in a running daemon; the
    # stream's later repetitions of the same telegrams find more of their values kept.
    began = time.process_time()
    for reading in made[:FIRST]:
        to_json_bytes(reading)  # type: ignore[arg-type]
    samples["JSON first sight"].append((time.process_time() - began) / FIRST * 1e6)
    for _ in range(repeat):
        for step, make, encode in (
            ("parse", False, False),
            ("+ MeterReading", True, False),
            ("+ JSON", True, True),
        ):
            gc.collect()
            began = time.process_time()
            run(make, encode)
            samples[step].append((time.process_time() - began) / telegrams * 1e6)
        gc.collect()
        began = time.process_time()
        for reading in made:
            to_json_bytes(reading)  # type: ignore[arg-type]
        samples["JSON alone"].append((time.process_time() - began) / telegrams * 1e6)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per child")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.repeat)))
        return 0
    trees: list[Path] = args.tree or [REPO]
    samples: dict[Path, dict[str, list[float]]] = {tree: {s: [] for s in STEPS} for tree in trees}
    for round_ in range(args.rounds):
        for tree in trees if round_ % 2 == 0 else reversed(trees):
            command = [sys.executable, __file__, f"--child={tree}", f"--repeat={args.repeat}"]
            result = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
            for step in STEPS:
                samples[tree][step] += result[step]
    print(f"CPU µs per telegram, best (median) of {args.rounds} x {args.repeat} runs per tree\n")
    width = max(len(str(tree)) for tree in trees)
    print(f"{'tree':<{width}}  " + "  ".join(f"{step:>18}" for step in STEPS))
    for tree in trees:
        figures = [samples[tree][step] for step in STEPS]
        cells = [f"{min(v):>8.1f} ({statistics.median(v):>6.1f})" for v in figures]
        print(f"{tree!s:<{width}}  " + "  ".join(f"{cell:>18}" for cell in cells))
    if len(trees) == 2:
        (before, after) = (samples[tree] for tree in trees)
        json_before = min(before["+ JSON"]) - min(before["+ MeterReading"])
        json_after = min(after["+ JSON"]) - min(after["+ MeterReading"])
        alone_before, alone_after = min(before["JSON alone"]), min(after["JSON alone"])
        print(
            f"\nthe JSON step (+ JSON minus + MeterReading, best): {json_before:.1f} -> "
            f"{json_after:.1f} µs; alone: {alone_before:.1f} -> {alone_after:.1f} µs"
            f" ({alone_after / alone_before:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
