"""CPU per telegram of p1daemon's parse path and of dsmr-parser, side by side in one run.

Why this exists: the daemon runs on a Raspberry Pi next to other services, reading up to six
meters at one telegram a second each; parsing must cost a small fraction of one core. The
issue's goal is at least 10x less CPU than dsmr-parser, the most used Python P1 parser.

Both paths get the same bytes, in the same chunks, in the same process:

- p1daemon: `ReadingStream(TelegramDecoder(check_crc=True)).feed(chunk)` and the reading's
  JSON for every reading (`to_json`, which is what `p1daemon parse` writes; a tree
  from before issue 16, whose readings are pydantic models, through `model_dump_json()`).
- dsmr-parser: its `TelegramBuffer` framing, `TelegramParser(V5).parse()` with its CRC
  check, and `telegram.to_json()`; its reader decodes each chunk from ASCII, so does this.

The stream is the 566-telegram capture of a real DSMR 5 meter plus every other valid
DSMR 4/5 capture that both parsers read with one specification, repeated to 5,000+
telegrams. CPU is `time.process_time()`, best and median of several repetitions; the paths
alternate so neither gets a warmer cache. Then the same job as whole processes (issue
16): `p1daemon parse FILE` against a dsmr-parser script doing the same (its buffer, V5
with CRC, `to_json`, one line per telegram), both writing to /dev/null; CPU is the
child's user + system time from the kernel (`os.wait4`), start-up included. Peak memory
is `tracemalloc`'s peak over one more pass of each over the first ~1,000 telegrams.
Timings are not asserted anywhere: on a shared machine they move by 10 %; compare the two
paths of one run. Run:

    .venv/bin/python bench/bench_parse.py [--repeat 5] [--profile]
"""

from __future__ import annotations

import argparse
import csv
import gc
import logging
import operator
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from p1daemon.frame.decoder import TelegramDecoder  # noqa: E402
from p1daemon.parse.stream import ReadingStream  # noqa: E402
from p1daemon.reading.model import Reading  # noqa: E402

try:
    from p1daemon.reading.encode import to_json
except ImportError:  # a tree from before issue 16, run for the comparison
    to_json = operator.methodcaller("model_dump_json")  # type: ignore[assignment]


STREAM = "streams/iskra_am550_dsmr50_566_telegrams.txt"
# A single telegram that both parsers take with the V5 specification and its CRC check:
# P1 version 4.x/5.x, upper-case CRC, CRLF after it (dsmr-parser's framing needs both).
_SINGLE_V45 = re.compile(rb"\A/[^/]*\r\n1-3:0\.2\.8\([45]\d\)\r\n[^/]*![0-9A-F]{4}\r\n\Z")


def shared_fixtures() -> Path:
    return Path(os.environ.get("P1DAEMON_SHARED_FIXTURES", REPO.parent / "shared" / "fixtures"))


def build_stream(fixtures: Path, minimum: int) -> tuple[bytes, int, list[str]]:
    """The benchmark input, how many telegrams it holds, and which captures went in."""
    with (fixtures / "index.tsv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    block = [(fixtures / STREAM).read_bytes()]
    per_block = next(int(row["valid_frames"]) for row in rows if row["path"] == STREAM)
    names = [STREAM]
    for row in rows:
        path = fixtures / row["path"]
        if row["path"] == STREAM or path.suffix != ".txt" or row["valid_frames"] != "1":
            continue
        data = path.read_bytes()
        if _SINGLE_V45.match(data):
            block.append(data)
            names.append(row["path"])
            per_block += 1
    repeats = -(-minimum // per_block)
    return b"".join(block) * repeats, per_block * repeats, names


def run_p1daemon(data: bytes, chunk: int) -> int:
    stream = ReadingStream(TelegramDecoder(check_crc=True, max_size=8192))
    count = 0
    for start in range(0, len(data), chunk):
        for event in stream.feed(data[start : start + chunk]):
            if isinstance(event, Reading):
                to_json(event)
                count += 1
    for event in stream.flush():
        if isinstance(event, Reading):
            to_json(event)
            count += 1
    return count


def run_dsmr_parser(data: bytes, chunk: int) -> int:
    from dsmr_parser import telegram_specifications
    from dsmr_parser.clients.telegram_buffer import TelegramBuffer
    from dsmr_parser.exceptions import InvalidChecksumError, ParseError
    from dsmr_parser.parsers import TelegramParser

    buffer = TelegramBuffer()
    parser = TelegramParser(telegram_specifications.V5, apply_checksum_validation=True)
    count = 0
    for start in range(0, len(data), chunk):
        buffer.append(data[start : start + chunk].decode("ascii"))
        for text in buffer.get_all():
            try:
                telegram = parser.parse(text)
            except (InvalidChecksumError, ParseError):
                continue
            telegram.to_json()
            count += 1
    return count


def cpu_per_telegram(
    run: Callable[[bytes, int], int], data: bytes, chunk: int
) -> tuple[float, int]:
    gc.collect()
    start = time.process_time()
    count = run(data, chunk)
    return (time.process_time() - start) / count * 1e6, count


def peak_memory(run: Callable[[bytes, int], int], data: bytes, chunk: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        run(data, chunk)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def profile_p1daemon(data: bytes, chunk: int) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(run_p1daemon, data, chunk)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


# The whole-process baseline: what a user of dsmr-parser writes to do `p1daemon parse`'s job.
_DSMR_PARSER_SCRIPT = """
import logging, sys
from dsmr_parser import telegram_specifications
from dsmr_parser.clients.telegram_buffer import TelegramBuffer
from dsmr_parser.exceptions import InvalidChecksumError, ParseError
from dsmr_parser.parsers import TelegramParser
logging.getLogger("dsmr_parser").setLevel(logging.CRITICAL)
buffer = TelegramBuffer()
parser = TelegramParser(telegram_specifications.V5, apply_checksum_validation=True)
out = sys.stdout
with open(sys.argv[1], "rb") as handle:
    while chunk := handle.read(65536):
        buffer.append(chunk.decode("ascii"))
        for text in buffer.get_all():
            try:
                telegram = parser.parse(text)
            except (InvalidChecksumError, ParseError):
                continue
            out.write(telegram.to_json().replace("\\n", " ") + "\\n")
"""


def child_cpu_s(command: list[str]) -> float:
    """User + system CPU seconds of one whole child process (its output discarded)."""
    with open(os.devnull, "wb") as sink:
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL, cwd=REPO)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 1):  # parse exits 1 when it dropped any
        raise RuntimeError(f"{command[:3]} failed with status {status}")
    return usage.ru_utime + usage.ru_stime


def whole_process(data: bytes, telegrams: int, repeat: int) -> dict[str, list[float]]:
    """CPU per telegram (µs) of each whole process over the same capture file."""
    with tempfile.TemporaryDirectory() as folder:
        capture = Path(folder) / "capture.txt"
        capture.write_bytes(data)
        commands = {
            "p1daemon parse FILE (whole process)": [
                sys.executable, "-m", "p1daemon", "parse", str(capture)
            ],
            "dsmr-parser script (whole process)": [
                sys.executable, "-c", _DSMR_PARSER_SCRIPT, str(capture)
            ],
        }  # fmt: skip
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for repetition in range(repeat):
            order = list(commands.items())
            if repetition % 2:
                order.reverse()
            for name, command in order:
                samples[name].append(child_cpu_s(command) / telegrams * 1e6)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per path")
    parser.add_argument("--min-telegrams", type=int, default=5000)
    parser.add_argument("--chunk", type=int, default=64 * 1024, help="bytes per feed()")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument("--profile", action="store_true", help="cProfile p1daemon's path")
    args = parser.parse_args()

    fixtures = shared_fixtures()
    if not (fixtures / "index.tsv").is_file():
        print(f"shared captures not found at {fixtures}", file=sys.stderr)
        return 2
    try:
        import dsmr_parser  # noqa: F401
    except ImportError:
        print("dsmr-parser is not installed: pip install 'p1daemon[dev]'", file=sys.stderr)
        return 2
    # dsmr-parser logs every line it cannot read; none should occur, and logging I/O is
    # not what is being measured.
    logging.getLogger("dsmr_parser").setLevel(logging.CRITICAL)

    data, telegrams, names = build_stream(fixtures, args.min_telegrams)
    paths: dict[str, Callable[[bytes, int], int]] = {
        "p1daemon parse (framing, CRC, parse, JSON)": run_p1daemon,
        f"dsmr-parser {_dsmr_version()} (buffer, V5 + CRC, to_json)": run_dsmr_parser,
    }
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for repetition in range(args.repeat):
        order = list(paths.items())
        if repetition % 2:
            order.reverse()
        for name, run in order:
            per_telegram, count = cpu_per_telegram(run, data, args.chunk)
            if count != telegrams:
                print(f"{name}: read {count} telegrams, expected {telegrams}", file=sys.stderr)
                return 1
            samples[name].append(per_telegram)
    # tracemalloc slows dsmr-parser down a lot; a whole number of the repeated blocks
    # (about 1,000 telegrams) reaches the same peak as the full stream.
    sample = data[: len(data) // max(1, telegrams // 1000)]
    memory = {}
    if not args.no_memory:
        memory = {name: peak_memory(run, sample, args.chunk) for name, run in paths.items()}

    print(f"Python {platform.python_version()} ({platform.machine()})")
    print(
        f"stream: {telegrams:,} telegrams, {len(data) / 1e6:.2f} MB in {args.chunk:,}-byte"
        f" chunks: the 566-telegram stream + {len(names) - 1} single captures, repeated"
    )
    print(
        f"CPU per telegram (time.process_time), {args.repeat} repetitions;"
        f" peak memory (tracemalloc) over the first {len(sample) / 1e6:.2f} MB\n"
    )
    report(samples, memory)
    print(
        f"\nthe same job as whole processes, start-up included, {max(3, args.repeat // 2)} runs:\n"
    )
    report(whole_process(data, telegrams, max(3, args.repeat // 2)), {})
    if args.profile:
        print()
        profile_p1daemon(data, args.chunk)
    return 0


def report(samples: dict[str, list[float]], memory: dict[str, int]) -> None:
    width = max(len(name) for name in samples)
    columns = ("best µs", "median µs", "telegrams/s", "peak memory")
    header = f"{'path':<{width}}  " + "  ".join(f"{column:>11}" for column in columns)
    print(header)
    print("-" * len(header))
    for name, values in samples.items():
        best, median = min(values), statistics.median(values)
        peak = f"{memory[name] / 2**20:.2f} MiB" if name in memory else "-"
        print(f"{name:<{width}}  {best:>11.1f}  {median:>11.1f}  {1e6 / best:>11,.0f}  {peak:>11}")
    ours, theirs = samples.values()
    print(
        f"\nratio dsmr-parser / p1daemon: best {min(theirs) / min(ours):.1f}x, "
        f"median {statistics.median(theirs) / statistics.median(ours):.1f}x (goal: >= 10x)"
    )


def _dsmr_version() -> str:
    from importlib.metadata import version

    return version("dsmr-parser")


if __name__ == "__main__":
    sys.exit(main())
