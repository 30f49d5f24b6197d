"""The real daemon process, measured from outside: CPU and memory per telegram.

    .venv/bin/python bench/bench_daemon.py [--telegrams 20000]
    .venv/bin/python bench/bench_daemon.py --flat-memory 1000000 --sample-every 50000


`bench_publish.py` measures the publishing path in-process; this one runs
`p1daemon run` exactly as systemd would (config file, replay meters, a local mosquitto,
Home Assistant discovery and the energy views switched on) and reads the child's CPU
time from the kernel (wait4 rusage) and its peak resident memory (VmHWM, sampled from
/proc while it runs: ru_maxrss would also count the benchmark's own pages that the
child briefly shares between fork and exec), with dsmr-parser's
parse-only CPU on the same telegrams printed alongside as the field's reference point.
The replays are finite, so the daemon exits by itself once every telegram was read.

The daemon runs with MALLOC_ARENA_MAX=2, as the systemd unit starts it
(`--malloc-arenas 0`: glibc's default, one arena per allocating thread).

`--flat-memory N`: is the memory flat over a long run? The capture is replayed in a
loop, flat out, until N telegrams were read; the daemon's VmRSS is sampled every
`--sample-every` telegrams (counted from outside: the replay file's read offset in
/proc/PID/fdinfo, a loop being one more pass) and printed with its first, last and
largest value. The first sample is taken after `--sample-every` telegrams, so start-up
is not mistaken for growth. About 5,000 telegrams a second on a desktop core.
`--capacity` adds the capacity tariff watch (`capacity = "on"`) to that run.
`--timeline COPIES`: the loop is COPIES copies of the capture on one timeline (meter
clock and energy registers continued, see `timeline_of`), so quarter-hours close and
the meter's clock only goes back once per COPIES passes; the default (1) loops the
capture's 566 seconds as they are.

`--trace DIR` (with `--flat-memory`): the daemon is this file re-executed as
`p1daemon run` (the hook lives here, not in the product), and every sample also prints
VmRSS split into anonymous and file-backed pages, what the allocators hold (pymalloc's
blocks in use and free and its arenas, current/high-water; glibc's bytes in use and
free, mallinfo2) and the live objects the GC tracks; at the end, the resident size per
mapping that changed most. In-use bytes flat while VmRSS steps is an allocator's
high-water mark or pages first touched, not a leak. With `--trace-depth N` tracemalloc
runs too (N frames; some 20 times slower): a snapshot per sample in DIR, and at the end
the growth from the first to the last snapshot, by traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
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

GOAL_CPU_MS = 0.12
GOAL_RSS_MB = 36.0
ENV: dict[str, str] = dict(os.environ)
TRACE_ENV = "P1BENCH_TRACEMALLOC"  # set in the child only: the snapshot folder
TRACE_FLAG = "--as-traced-daemon"
TRACE_DEPTH = 0  # --trace-depth


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


_TELEGRAM = re.compile(rb"/[^!]*!([0-9A-F]{4})\r?\n")
_STAMP = re.compile(rb"(0-0:1\.0\.0\()(\d{12})([WS]\))")
_ENERGY = re.compile(rb"(1-0:[12]\.8\.[1-4]\()(\d{6}\.\d{3})(\*kWh\))")


def timeline_of(source: Path, copies: int) -> tuple[bytes, int]:
    """The capture's whole telegrams `copies` times over one timeline, and their count.

    Each copy continues where the one before ended: its meter clock later by the
    capture's span (plus a second) and its energy registers higher by what the capture
    advanced, the CRC made anew. A loop of the capture alone goes back to the same 566
    seconds (no quarter-hour ever closes, a restart every pass); a loop of this goes
    back once per `copies` passes, and the views close quarters meanwhile.
    """
    from datetime import datetime, timedelta

    from p1daemon.frame.crc import crc16_arc

    data = source.read_bytes()
    if copies <= 1:  # the capture as it is, its partial first telegram too
        return data, data.count(b"\n!")
    telegrams = [m.group(0) for m in _TELEGRAM.finditer(data)]

    def stamp(telegram: bytes) -> datetime:
        found = _STAMP.search(telegram)
        assert found is not None, "a telegram without 0-0:1.0.0"
        return datetime.strptime(found.group(2).decode(), "%y%m%d%H%M%S")

    def energies(telegram: bytes) -> dict[bytes, float]:
        return {m.group(1): float(m.group(2)) for m in _ENERGY.finditer(telegram)}

    span = stamp(telegrams[-1]) - stamp(telegrams[0]) + timedelta(seconds=1)
    first, last = energies(telegrams[0]), energies(telegrams[-1])
    advance = {key: last[key] - first[key] for key in first.keys() & last.keys()}
    out = []
    for copy in range(copies):
        for telegram in telegrams:
            body = telegram[: telegram.rindex(b"!") + 1]
            when = (stamp(body) + copy * span).strftime("%y%m%d%H%M%S").encode()
            # Last match first, so the earlier matches' offsets still hold.
            for found in reversed([*_ENERGY.finditer(body), *_STAMP.finditer(body)]):
                key = found.group(1)
                if key in advance:
                    value = f"{float(found.group(2)) + copy * advance[key]:010.3f}".encode()
                else:
                    value = when
                body = body[: found.start(2)] + value + body[found.end(2) :]
            out.append(body + f"{crc16_arc(body):04X}\r\n".encode())
    return b"".join(out), len(out)


def write_config(
    work: Path, capture: Path, port: int, *, loop: bool = False, capacity: bool = False
) -> Path:
    """Discovery, the energy views and the history on; a fresh state folder per run."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=work))
    config = state / "p1daemon.toml"
    config.write_text(
        f"""
[mqtt]
host = "127.0.0.1"
port = {port}

[buffer]
path = "{state / "outbox.db"}"

[homeassistant]
discovery = true

[history]
enabled = true
path = "{state / "history.db"}"

[[meters]]
name = "house"
role = "primary"
ean = "871685900012345674"
source = "replay:{capture}"
replay_interval_s = 0
replay_loop = {"true" if loop else "false"}
{'capacity = "on"' if capacity else ""}
""",
        encoding="utf-8",
    )
    return config


def _start(config: Path, trace: Path | None = None) -> subprocess.Popen[bytes]:
    command: list[str | Path] = [REPO / ".venv/bin/p1daemon"]
    env = ENV
    if trace is not None:
        command = [sys.executable, Path(__file__).resolve(), TRACE_FLAG]
        env = {**ENV, TRACE_ENV: str(trace), "P1BENCH_TRACE_DEPTH": str(TRACE_DEPTH)}
    return subprocess.Popen(
        [*command, "run", "--config", config, "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def _pymalloc_counts() -> dict[str, int]:
    """pymalloc's arena counts (sys._debugmallocstats writes them to C stderr)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode("ascii", "replace")
    counts: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition("=")
        name = name.strip().lstrip("# ")
        if name in (
            "arenas allocated current",
            "arenas highwater mark",
            "bytes in allocated blocks",
            "bytes in available blocks",
        ):
            counts[name] = int(value.strip().replace(",", ""))
    return counts


def _malloc_counts() -> dict[str, int]:
    """glibc's own view (mallinfo2, over all arenas): bytes in use and free in its heaps."""
    import ctypes

    class _Info(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                "fsmblks", "uordblks", "fordblks", "keepcost",
            )
        ]  # fmt: skip

    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):  # not glibc >= 2.33
        return {}
    mallinfo2.restype = _Info
    info = mallinfo2()
    return {"malloc used": info.uordblks, "malloc free": info.fordblks, "mmapped": info.hblkhd}


def _traced_daemon(folder: Path) -> None:
    """`p1daemon run` in this process, its memory counted on request.

    The parent asks by creating `N.want`; a thread of ours answers with `N.done` (as
    JSON: pymalloc's and glibc's counts, the live objects, and with tracemalloc the
    traced bytes) and, with tracemalloc, `N.snap` (the snapshot). P1BENCH_TRACE_DEPTH
    is tracemalloc's traceback depth; 0 leaves tracemalloc off (full speed: the
    counts alone).
    """
    import gc
    import json
    import threading
    import tracemalloc

    depth = int(os.environ.get("P1BENCH_TRACE_DEPTH", "0"))
    _malloc_counts()  # ctypes and libffi loaded now, not counted as growth at the first sample
    if depth:
        tracemalloc.start(depth)

    def answer() -> None:
        number = 0
        while True:
            if (folder / f"{number}.want").exists():
                done: dict[str, int] = {"objects": len(gc.get_objects())}
                if depth:
                    tracemalloc.take_snapshot().dump(str(folder / f"{number}.snap"))
                    done["traced"] = tracemalloc.get_traced_memory()[0]
                done.update(_pymalloc_counts())
                done.update(_malloc_counts())
                (folder / "done.tmp").write_text(json.dumps(done))
                os.replace(folder / "done.tmp", folder / f"{number}.done")  # seen whole
                number += 1
            time.sleep(0.05)

    threading.Thread(target=answer, name="bench-memory-counts", daemon=True).start()
    from p1daemon.cli import main

    sys.argv = ["p1daemon", *sys.argv[2:]]
    main()


def run_daemon(work: Path, capture: Path, port: int) -> tuple[float, float, float]:
    """CPU seconds, peak RSS in MB and wall seconds of one `p1daemon run`."""
    config = write_config(work, capture, port)
    started = time.monotonic()
    process = _start(config)
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


def _vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError("no VmRSS")


def _read_offset(pid: int, path: Path) -> int | None:
    """Where the daemon's handle on `path` stands (None while it has none open)."""
    target = str(path.resolve())
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) == target:
                for line in Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text().splitlines():
                    if line.startswith("pos:"):
                        return int(line.split()[1])
    return None


def _rss_by_mapping(pid: int) -> dict[str, int]:
    """Resident KiB per mapping of /proc/PID/smaps, summed by name ("[anon]" unnamed):
    which part of the address space a step in VmRSS is in (heap, an arena of glibc's
    (anonymous), a library's pages, SQLite's -shm)."""
    rss: dict[str, int] = {}
    name = "?"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if not fields:
            continue
        if not fields[0].endswith(":"):  # a mapping's header: range perms offset dev inode [path]
            name = fields[5] if len(fields) > 5 else "[anon]"
        elif fields[0] == "Rss:":
            rss[name] = rss.get(name, 0) + int(fields[1])
    return rss


def _status_split(pid: int) -> str:
    """VmRSS's anonymous, file-backed and shared-memory parts (MB)."""
    parts = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "RssShmem"):
            parts[key[3:].lower()] = int(value.split()[0]) / 1024
    return " ".join(f"{key} {mb:.1f}" for key, mb in parts.items())


def _mapping_growth(first: dict[str, int], last: dict[str, int]) -> None:
    changed = sorted(
        ((last.get(k, 0) - first.get(k, 0), k) for k in first.keys() | last.keys()),
        key=lambda item: -abs(item[0]),
    )
    print("\nresident KiB by mapping, first sample -> last (the largest changes):")
    for diff, name in changed[:8]:
        if diff:
            print(f"  {diff:+7d} KiB  {first.get(name, 0):7d} -> {last.get(name, 0):7d}  {name}")


def _traced_sample(folder: Path, number: int, process: subprocess.Popen[bytes]) -> str:
    """Ask the traced daemon for snapshot `number`; its traced MB and pymalloc arenas."""
    import json

    (folder / f"{number}.want").touch()
    done = folder / f"{number}.done"
    while not done.exists():
        if process.poll() is not None:
            raise RuntimeError(f"p1daemon exited with {process.returncode}")
        time.sleep(0.05)
    counts: dict[str, int] = json.loads(done.read_text())
    mb = {name: value / 2**20 for name, value in counts.items()}
    traced = f" traced {mb['traced']:.2f}" if "traced" in counts else ""
    pymalloc = ""
    if "bytes in allocated blocks" in counts:  # not while tracemalloc wraps the allocator
        pymalloc = (
            f" pymalloc {mb['bytes in allocated blocks']:.2f} used"
            f" {mb.get('bytes in available blocks', 0):.2f} free"
            f" arenas {counts.get('arenas allocated current', -1)}"
            f"/{counts.get('arenas highwater mark', -1)} high"
        )
    return (
        f" |{traced}{pymalloc}"
        f" | malloc {mb.get('malloc used', 0):.2f} used {mb.get('malloc free', 0):.2f} free"
        f" {mb.get('mmapped', 0):.2f} mmap | {counts['objects']:,} objects"
    )


def trace_growth(folder: Path, count: int, top: int = 15) -> None:
    """The tracebacks that grew most between the first and the last snapshot."""
    import tracemalloc

    if count < 2 or not (folder / "0.snap").exists():
        return
    first = tracemalloc.Snapshot.load(str(folder / "0.snap"))
    last = tracemalloc.Snapshot.load(str(folder / f"{count - 1}.snap"))
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    first, last = first.filter_traces(ignore), last.filter_traces(ignore)
    print(f"\ngrowth from snapshot 0 to {count - 1}, by traceback (top {top}):")
    for stat in last.compare_to(first, "traceback")[:top]:
        print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format(limit=6, most_recent_first=True):
            print(f"      {line}")


def flat_memory(
    work: Path,
    source: Path,
    port: int,
    telegrams: int,
    every: int,
    *,
    capacity: bool = False,
    trace: Path | None = None,
    copies: int = 1,
) -> list[tuple[int, float]]:
    """(telegrams read, VmRSS MB) every `every` telegrams of a looping flat-out replay."""
    capture = work / "loop.txt"
    data, per_pass = timeline_of(source, copies)
    capture.write_bytes(data)
    size = capture.stat().st_size
    if trace is not None:
        trace.mkdir(parents=True, exist_ok=True)
    config = write_config(work, capture, port, loop=True, capacity=capacity)
    process = _start(config, trace)
    samples: list[tuple[int, float]] = []
    mappings: list[dict[str, int]] = []
    passes, last_pos, next_sample = 0, 0, every
    try:
        while True:
            time.sleep(0.05)
            if process.poll() is not None:
                raise RuntimeError(f"p1daemon exited with {process.returncode}")
            pos = _read_offset(process.pid, capture)
            if pos is None:
                continue
            if pos < last_pos:
                passes += 1
            last_pos = pos
            done = passes * per_pass + per_pass * pos // size
            if done >= next_sample:
                samples.append((done, _vm_rss_mb(process.pid)))
                traced = ""
                if trace is not None:
                    mappings.append(_rss_by_mapping(process.pid))
                    traced = f" ({_status_split(process.pid)})" + _traced_sample(
                        trace, len(samples) - 1, process
                    )
                print(
                    f"  {done:>10,} telegrams  VmRSS {samples[-1][1]:6.1f} MB{traced}", flush=True
                )
                next_sample += every
            if done >= telegrams:
                break
    finally:
        process.terminate()
        process.wait(30)
    if trace is not None:
        if len(mappings) > 1:
            _mapping_growth(mappings[0], mappings[-1])
        trace_growth(trace, len(samples))
    return samples


def main() -> int:
    global ENV, TRACE_DEPTH
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--telegrams", type=int, default=20000)
    args.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    args.add_argument(
        "--malloc-arenas", type=int, default=2, help="MALLOC_ARENA_MAX (0: glibc's default)"
    )
    args.add_argument(
        "--flat-memory", type=int, metavar="N", help="only the long run: N telegrams, looping"
    )
    args.add_argument("--sample-every", type=int, default=50000, metavar="TELEGRAMS")
    args.add_argument("--capacity", action="store_true", help="the capacity watch on too")
    args.add_argument(
        "--timeline", type=int, default=1, metavar="COPIES", help="one timeline of COPIES passes"
    )
    args.add_argument("--trace", type=Path, metavar="DIR", help="count the allocators too")
    args.add_argument("--trace-depth", type=int, default=0, help="tracemalloc frames (0: off)")
    options = args.parse_args()
    TRACE_DEPTH = options.trace_depth
    ENV = dict(os.environ)
    ENV.pop("MALLOC_ARENA_MAX", None)
    if options.malloc_arenas:
        ENV["MALLOC_ARENA_MAX"] = str(options.malloc_arenas)
    mosquitto = shutil.which("mosquitto")
    if mosquitto is None:
        print("bench_daemon: mosquitto is not installed (apt-get install mosquitto)")
        return 2
    with tempfile.TemporaryDirectory(prefix="p1bench-") as tmp:
        work = Path(tmp)
        capture = work / "capture.txt"
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
            if options.flat_memory:
                print(
                    f"p1daemon run, flat out in a loop, {options.flat_memory:,} telegrams "
                    f"(MALLOC_ARENA_MAX={ENV.get('MALLOC_ARENA_MAX', 'unset')})"
                )
                samples = flat_memory(
                    work,
                    options.capture,
                    port,
                    options.flat_memory,
                    options.sample_every,
                    capacity=options.capacity,
                    trace=options.trace,
                    copies=options.timeline,
                )
                rss = [mb for _, mb in samples]
                if rss:
                    print(
                        f"VmRSS first {rss[0]:.1f} MB, last {rss[-1]:.1f} MB, "
                        f"max {max(rss):.1f} MB, min {min(rss):.1f} MB over {len(rss)} samples"
                    )
                return 0
            count = capture_of(options.telegrams, options.capture, capture)
            idle_rss = idle_daemon_rss(work, port)
            cpu, rss_mb, wall = run_daemon(work, capture, port)
        finally:
            broker.terminate()
            broker.wait(5)
        baseline = dsmr_parser_cpu(capture)

    per_ms = cpu / count * 1000
    base_ms = baseline / count * 1000
    print(f"p1daemon run, whole process - {platform.machine()}, Python {platform.python_version()}")
    print(f"{count:,} telegrams replayed as fast as possible into a local mosquitto")
    print(
        "(Home Assistant discovery, energy views and history on; "
        f"MALLOC_ARENA_MAX={ENV.get('MALLOC_ARENA_MAX', 'unset')})\n"
    )
    rows = [
        ("CPU per telegram, p1daemon run (all threads)", f"{per_ms:.3f} ms", f"<= {GOAL_CPU_MS}"),
        ("  reference: dsmr-parser, parse only", f"{base_ms:.3f} ms", ""),
        ("throughput (wall clock)", f"{count / wall:,.0f} /s", ""),
        ("peak RSS of the daemon (VmHWM)", f"{rss_mb:.1f} MB", f"<= {GOAL_RSS_MB:.0f} MB"),
        ("  peak RSS of a daemon that read nothing", f"{idle_rss:.1f} MB", ""),
    ]
    for name, value, goal in rows:
        print(f"{name:<48}{value:>14}{goal:>12}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == TRACE_FLAG:
        _traced_daemon(Path(os.environ[TRACE_ENV]))
    else:
        sys.exit(main())
