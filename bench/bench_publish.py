"""Publishing benchmark: the whole path, against a local mosquitto it starts itself.

    .venv/bin/python bench/bench_publish.py [--capture PATH] [--telegrams 100000]

One run, three measurements, printed side by side with the project's goals:

1. CPU per telegram through replay -> parse (ReadingStream: framing, CRC, OBIS) ->
   MeterReading -> MqttSink (outbox) -> publish QoS 1 -> PUBACK, for 100,000 telegrams
   replayed as fast as possible. CPU is this process's user+system time, all threads
   (the broker is another process; its CPU is shown for information).
2. Resident memory (VmRSS from /proc/self/status) at checkpoints during those telegrams,
   to show it stays flat, and the peak (VmHWM).
3. The drain rate of a 24-hour backlog: 86,400 readings submitted while the broker is
   down (they go to the outbox on disk), then the broker is started and the time until
   the last PUBACK is measured. Run with the default `drain_rate_per_s` cap and with the
   cap lifted, to show both the configured behaviour and the headroom.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from p1daemon.frame.decoder import TelegramDecoder  # noqa: E402
from p1daemon.parse.stream import ReadingStream  # noqa: E402
from p1daemon.publish.settings import BufferSettings, MqttSettings  # noqa: E402
from p1daemon.publish.sink import MqttSink  # noqa: E402
from p1daemon.reading.meter import MeterReading  # noqa: E402
from p1daemon.reading.model import Reading  # noqa: E402

DEFAULT_CAPTURE = REPO.parent / "shared/fixtures/streams/iskra_am550_dsmr50_566_telegrams.txt"
GOAL_CPU_MS = 0.3
GOAL_RSS_MB = 40.0
GOAL_DRAIN = 5000.0


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)


class Mosquitto:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.config = directory / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        if os.geteuid() == 0:
            lines.append("user root")
        self.config.write_text("\n".join(lines) + "\n")
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None
        self.cpu_s = 0.0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.01)
        raise SystemExit("mosquitto did not start")

    def cpu(self) -> float:
        assert self.process is not None
        return proc_cpu_s(self.process.pid)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(5)
        self.process = None


def telegram_chunks(capture: Path) -> Iterator[bytes]:
    """The capture's bytes, forever, in 1 KiB pieces as a serial port would hand them over."""
    data = capture.read_bytes()
    while True:
        for start in range(0, len(data), 1024):
            yield data[start : start + 1024]


def make_sink(port: int, outbox: Path, **buffer: float) -> MqttSink:
    return MqttSink(
        MqttSettings(port=port, client_id=f"bench-{os.getpid()}", reconnect_max_delay_s=1.0),
        BufferSettings.model_validate({"path": str(outbox), **buffer}),
    )


@dataclass(frozen=True)
class Throughput:
    telegrams: int
    cpu_ms: float
    wall_rate: float
    broker_cpu_ms: float
    checkpoints: list[tuple[int, float]]
    hwm: float
    writes: int


def bench_throughput(capture: Path, work: Path, telegrams: int) -> Throughput:
    broker = Mosquitto(work)
    broker.start()
    sink = make_sink(broker.port, work / "throughput.db")
    sink.start()
    wait_until(lambda: sink.connected, 5, "connection")
    pipeline = sink.pipeline
    assert pipeline is not None
    stream = ReadingStream(TelegramDecoder())
    checkpoints: list[tuple[int, float]] = [(0, rss_mb())]
    step = max(1, telegrams // 10)
    fed = 0
    broker_cpu0 = broker.cpu()
    cpu0, wall0 = cpu_s(), time.perf_counter()
    for chunk in telegram_chunks(capture):
        for item in stream.feed(chunk):
            if not isinstance(item, Reading):
                continue
            sink.submit(
                MeterReading.from_reading(
                    item, meter="house", role="primary", ean=None, received_at=datetime.now(UTC)
                )
            )
            fed += 1
            if fed % step == 0:
                checkpoints.append((fed, rss_mb()))
            if fed >= telegrams:
                break
        if fed >= telegrams:
            break
    wait_until(lambda: pipeline.counters.published >= telegrams, 120, "all PUBACKs")
    cpu = cpu_s() - cpu0
    wall = time.perf_counter() - wall0
    broker_cpu = broker.cpu() - broker_cpu0
    writes = sink.outbox.writes
    sink.stop()
    broker.stop()
    return Throughput(
        telegrams=telegrams,
        cpu_ms=cpu / telegrams * 1000,
        wall_rate=telegrams / wall,
        broker_cpu_ms=broker_cpu / telegrams * 1000,
        checkpoints=checkpoints,
        hwm=rss_mb("VmHWM"),
        writes=writes,
    )


def parse_only(capture: Path, telegrams: int) -> None:
    """The same replay and parse without any publishing; run in a fresh process."""
    stream = ReadingStream(TelegramDecoder())
    fed = 0
    cpu0 = cpu_s()
    for chunk in telegram_chunks(capture):
        for item in stream.feed(chunk):
            if not isinstance(item, Reading):
                continue
            document = MeterReading.from_reading(
                item, meter="house", role="primary", ean=None, received_at=datetime.now(UTC)
            )
            document.model_dump_json().encode()
            fed += 1
            if fed >= telegrams:
                break
        if fed >= telegrams:
            break
    print(f"{(cpu_s() - cpu0) / telegrams * 1000:.4f} {rss_mb():.2f}")


def baseline(capture: Path, telegrams: int) -> tuple[float, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--parse-only",
            f"--capture={capture}",
            f"--telegrams={telegrams}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def bench_drain(
    capture: Path, work: Path, backlog: int, rate: float, name: str
) -> dict[str, float]:
    broker = Mosquitto(work)  # configured, not started: the 24-hour outage
    outbox = work / f"drain-{name}.db"
    sink = make_sink(broker.port, outbox, drain_rate_per_s=rate, max_mb=64)
    sink.start()
    pipeline = sink.pipeline
    assert pipeline is not None
    stream = ReadingStream(TelegramDecoder())
    parsed = [r for r in stream.feed(capture.read_bytes()) if isinstance(r, Reading)]
    now = datetime.now(UTC)
    documents = [
        MeterReading.from_reading(r, meter="house", role="primary", ean=None, received_at=now)
        for r in parsed
    ]
    fill0 = cpu_s()
    for index in range(backlog):
        sink.submit(documents[index % len(documents)])
    wait_until(lambda: pipeline.in_memory == 0, 120, "the backlog on disk")
    fill_cpu = cpu_s() - fill0
    on_disk = sink.outbox.rows
    size_mb = sum(p.stat().st_size for p in work.glob(f"drain-{name}.db*")) / 1e6
    broker.start()
    cpu0, wall0 = cpu_s(), time.perf_counter()
    wait_until(lambda: pipeline.depth == 0, 300, "the drain")
    wall = time.perf_counter() - wall0
    cpu = cpu_s() - cpu0
    published = pipeline.counters.published
    sink.stop()
    broker.stop()
    return {
        "backlog": backlog,
        "on_disk": on_disk,
        "file_mb": size_mb,
        "fill_cpu_ms": fill_cpu / backlog * 1000,
        "drain_rate": published / wall,
        "drain_s": wall,
        "drain_cpu_ms": cpu / published * 1000,
        "dropped": pipeline.counters.dropped_full,
    }


def main() -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    parser.add_argument("--telegrams", type=int, default=100_000)
    parser.add_argument("--backlog", type=int, default=86_400)
    parser.add_argument("--parse-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.capture.is_file():
        print(f"capture not found: {args.capture}", file=sys.stderr)
        return 2
    if args.parse_only:
        parse_only(args.capture, args.telegrams)
        return 0
    with tempfile.TemporaryDirectory(prefix="p1bench-") as tmp:
        work = Path(tmp)
        rss_start = rss_mb()
        t = bench_throughput(args.capture, work, args.telegrams)
        d_default = bench_drain(args.capture, work, args.backlog, 10_000.0, "default")
        d_open = bench_drain(args.capture, work, args.backlog, 1e9, "uncapped")
    base_cpu_ms, base_rss = baseline(args.capture, args.telegrams)

    checkpoints = t.checkpoints
    # A leak grows with every telegram; allocator arenas settle once. So: the growth over
    # the second half of the run, plus the whole series printed below for the eye.
    second_half = [mb for n, mb in checkpoints if n >= args.telegrams // 2]
    growth = second_half[-1] - second_half[0]
    rss_end = checkpoints[-1][1]
    cpu_ms = t.cpu_ms
    hwm = t.hwm
    drain = d_default["drain_rate"]

    def ok(good: bool) -> str:
        return "yes" if good else "NO"

    print(
        f"p1daemon publish bench - {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"capture: {args.capture.name}")
    print()
    print(f"{'measurement':<58} {'measured':>14} {'goal':>12} {'met':>4}")
    print("-" * 91)
    rows = [
        (
            f"CPU per telegram, replay->parse->outbox->PUBACK ({args.telegrams:,})",
            f"{cpu_ms:.3f} ms",
            f"<= {GOAL_CPU_MS} ms",
            ok(cpu_ms <= GOAL_CPU_MS),
        ),
        ("  throughput (wall clock, flat out)", f"{t.wall_rate:,.0f} /s", "", ""),
        (
            "  mosquitto CPU per telegram (other process, info)",
            f"{t.broker_cpu_ms:.3f} ms",
            "",
            "",
        ),
        ("  outbox write transactions while the broker acked", f"{t.writes}", "", ""),
        (
            f"RSS after {args.telegrams:,} telegrams (VmRSS)",
            f"{rss_end:.1f} MB",
            f"<= {GOAL_RSS_MB:.0f} MB",
            ok(rss_end <= GOAL_RSS_MB),
        ),
        (
            f"  RSS growth over the second half ({args.telegrams // 2:,} telegrams)",
            f"{growth:+.1f} MB",
            "flat",
            ok(abs(growth) <= 1.0),
        ),
        ("  peak RSS of the whole bench process (VmHWM)", f"{hwm:.1f} MB", "", ""),
        ("  same replay+parse, no publishing (separate process)", f"{base_rss:.1f} MB", "", ""),
        (
            "  CPU per telegram, replay+parse only (separate process)",
            f"{base_cpu_ms:.3f} ms",
            "",
            "",
        ),
        (
            f"drain of a {args.backlog:,}-reading backlog (default cap 10,000/s)",
            f"{drain:,.0f} /s",
            f">= {GOAL_DRAIN:,.0f} /s",
            ok(drain >= GOAL_DRAIN),
        ),
        (
            "  drain time / CPU per drained reading",
            f"{d_default['drain_s']:.1f} s / {d_default['drain_cpu_ms']:.3f} ms",
            "",
            "",
        ),
        ("  drain with the rate cap lifted", f"{d_open['drain_rate']:,.0f} /s", "", ""),
        (
            "  backlog on disk: rows / file size",
            f"{d_default['on_disk']:,.0f} / {d_default['file_mb']:.1f} MB",
            "<= 64 MB",
            ok(d_default["file_mb"] <= 64),
        ),
        (
            "  CPU per reading written during the outage",
            f"{d_default['fill_cpu_ms']:.3f} ms",
            "",
            "",
        ),
        (
            "  readings dropped (outbox full)",
            f"{d_default['dropped']:.0f}",
            "0",
            ok(d_default["dropped"] == 0),
        ),
    ]
    for name, measured, goal, met in rows:
        print(f"{name:<58} {measured:>14} {goal:>12} {met:>4}")
    print()
    print(
        "RSS checkpoints (telegrams: MB): " + ", ".join(f"{n:,}: {mb:.1f}" for n, mb in checkpoints)
    )
    print(f"RSS before the broker and sink started: {rss_start:.1f} MB (imports, parser, pydantic)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
