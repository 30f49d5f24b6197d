"""The real daemon process, measured from outside: CPU and memory per telegram.

    .venv/bin/python bench/bench_daemon.py [--telegrams 20000]

`bench_publish.py` measures the publishing path in-process; this one runs
`p1daemon run` exactly as systemd would (config file, replay meters, a local mosquitto,
Home Assistant discovery and the energy views switched on) and reads the child's CPU
time from the kernel (wait4 rusage) and its peak resident memory (VmHWM, sampled from
/proc while it runs: ru_maxrss would also count the benchmark's own pages that the
child briefly shares between fork and exec), with dsmr-parser's
parse-only CPU on the same telegrams printed alongside as the field's reference point.
The replays are finite, so the daemon exits by itself once every telegram was read.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CAPTURE = REPO.parent / "shared/fixtures/streams/iskra_am550_dsmr50_566_telegrams.txt"

GOAL_CPU_MS = 0.3
GOAL_RSS_MB = 40.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def capture_of(telegrams: int, source: Path, target: Path) -> int:
    """`source` repeated until it holds at least `telegrams` telegrams; returns the count."""
    data = source.read_bytes()
    per_copy = data.count(b"\n!")
    copies = max(1, -(-telegrams // per_copy))
    target.write_bytes(data * copies)
    return per_copy * copies


def run_daemon(work: Path, capture: Path, port: int) -> tuple[float, float, float]:
    """CPU seconds, peak RSS in MB and wall seconds of one `p1daemon run`."""
    config = work / "p1daemon.toml"
    config.write_text(
        f"""
[mqtt]
host = "127.0.0.1"
port = {port}

[buffer]
path = "{work / "outbox.db"}"

[homeassistant]
discovery = true

[[meters]]
name = "house"
role = "primary"
ean = "871685900012345674"
source = "replay:{capture}"
replay_interval_s = 0
""",
        encoding="utf-8",
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [REPO / ".venv/bin/p1daemon", "run", "--config", config, "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak_kb = 0
    status_file = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    # poll() reaped the child; its CPU time is in this process's children's usage.
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"p1daemon exited with {process.returncode}")
    return _children_cpu_since(), peak_kb / 1024, wall


_CHILDREN_CPU_SEEN = 0.0


def _children_cpu_since() -> float:
    """CPU of the children reaped since the last call (one daemon run at a time)."""
    global _CHILDREN_CPU_SEEN
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    spent = total - _CHILDREN_CPU_SEEN
    _CHILDREN_CPU_SEEN = total
    return spent


def idle_daemon_rss(work: Path, port: int) -> float:
    """Peak RSS of a daemon that read nothing: the imports and start-up alone."""
    empty = work / "empty.txt"
    empty.write_bytes(b"")
    return run_daemon(work, empty, port)[1]


def dsmr_parser_cpu(capture: Path) -> float:
    """CPU seconds of dsmr-parser framing + parsing (no publishing) of the same file."""
    from dsmr_parser import telegram_specifications
    from dsmr_parser.clients.telegram_buffer import TelegramBuffer
    from dsmr_parser.parsers import TelegramParser

    parser = TelegramParser(telegram_specifications.V5)
    buffer = TelegramBuffer()
    data = capture.read_text(encoding="ascii", errors="replace")
    start = time.process_time()
    for offset in range(0, len(data), 65536):
        buffer.append(data[offset : offset + 65536])
        for telegram in buffer.get_all():
            with contextlib.suppress(Exception):
                parser.parse(telegram)
    return time.process_time() - start


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--telegrams", type=int, default=20000)
    args.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    options = args.parse_args()
    mosquitto = shutil.which("mosquitto")
    if mosquitto is None:
        print("bench_daemon: mosquitto is not installed (apt-get install mosquitto)")
        return 2
    with tempfile.TemporaryDirectory(prefix="p1bench-") as tmp:
        work = Path(tmp)
        capture = work / "capture.txt"
        count = capture_of(options.telegrams, options.capture, capture)
        port = free_port()
        (work / "mosquitto.conf").write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        broker = subprocess.Popen(
            [mosquitto, "-c", str(work / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            idle_rss = idle_daemon_rss(work, port)
            cpu, rss, wall = run_daemon(work, capture, port)
        finally:
            broker.terminate()
            broker.wait(5)
        baseline = dsmr_parser_cpu(capture)

    per_ms = cpu / count * 1000
    base_ms = baseline / count * 1000
    print(f"p1daemon run, whole process - {platform.machine()}, Python {platform.python_version()}")
    print(f"{count:,} telegrams replayed as fast as possible into a local mosquitto")
    print("(Home Assistant discovery and energy views on)\n")
    rows = [
        ("CPU per telegram, p1daemon run (all threads)", f"{per_ms:.3f} ms", f"<= {GOAL_CPU_MS}"),
        ("  reference: dsmr-parser, parse only", f"{base_ms:.3f} ms", ""),
        ("throughput (wall clock)", f"{count / wall:,.0f} /s", ""),
        ("peak RSS of the daemon (VmHWM)", f"{rss:.1f} MB", f"<= {GOAL_RSS_MB:.0f} MB"),
        ("  peak RSS of a daemon that read nothing", f"{idle_rss:.1f} MB", ""),
    ]
    for name, value, goal in rows:
        print(f"{name:<48}{value:>14}{goal:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
