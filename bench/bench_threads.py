"""The publishing path per thread: CPU and wake-ups of the reader, the publisher and paho.

    .venv/bin/python bench/bench_threads.py [--tree DIR ...] [--rounds 3]

What bench_publish.py measures as one figure (the whole process's CPU per telegram), split
by thread, because the cost of handing readings from one thread to the next (a wake-up, a
context switch, the GIL changing hands) shows up in the *other* thread's figures: replay
-> parse -> `MqttSink.submit` in the main thread, `mqtt-publisher` (the pipeline), paho's
network thread, each with user and system CPU (/proc/self/task/<tid>/stat) and voluntary
context switches (/proc/self/task/<tid>/status) per telegram, into a local mosquitto the
bench starts itself.

Each `--tree` (a checkout, e.g. `git archive main | tar -x -C /tmp/old`; default this
one) is measured in its own child process, the trees taking turns `--rounds` times, and
the best round of each is shown: on a shared machine the best is the least disturbed.

`--daemon`: the whole `p1daemon run` instead (bench_daemon.py's configuration: Home
Assistant discovery, energy views, history; a finite flat-out replay into a local
mosquitto), each tree's daemon run as `python -m p1daemon` with the tree first on the
path; CPU and voluntary/involuntary context switches of the whole process from wait4,
per telegram, start-up and drain included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAPTURE = "shared/fixtures/streams/iskra_am550_dsmr50_566_telegrams.txt"


def _task_figures() -> dict[int, tuple[float, float, int]]:
    """tid -> (user s, system s, voluntary context switches) of every thread."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[float, float, int]] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = (task / "status").read_text()
        except OSError:
            continue
        switches = 0
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                switches = int(line.split()[1])
        out[int(task.name)] = (int(fields[11]) / tick, int(fields[12]) / tick, switches)
    return out


def child(tree: Path, telegrams: int) -> None:
    """One measurement of `tree`'s code in this process."""
    sys.path[:0] = [str(tree), str(tree / "bench")]
    from bench_publish import Mosquitto, make_sink, telegram_chunks, wait_until

    from p1daemon.frame.decoder import TelegramDecoder
    from p1daemon.parse.stream import ReadingStream
    from p1daemon.reading.meter import MeterReading
    from p1daemon.reading.model import Reading

    capture = Path(os.environ.get("P1_BENCH_CAPTURE", REPO.parent / CAPTURE))
    with tempfile.TemporaryDirectory(prefix="p1bench-threads-") as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        sink = make_sink(broker.port, Path(tmp) / "outbox.db")
        sink.start()
        wait_until(lambda: sink.connected, 5, "connection")
        pipeline = sink.pipeline
        assert pipeline is not None
        stream = ReadingStream(TelegramDecoder())
        before = _task_figures()
        broker_cpu0 = broker.cpu()
        wall0 = time.perf_counter()
        fed = 0
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
                if fed >= telegrams:
                    break
            if fed >= telegrams:
                break
        wait_until(lambda: pipeline.counters.published >= telegrams, 120, "all PUBACKs")
        wall = time.perf_counter() - wall0
        after = _task_figures()
        broker_cpu = broker.cpu() - broker_cpu0
        names = {t.native_id: t.name for t in threading.enumerate()}
        rows: dict[str, list[float]] = {}
        for tid, (user, system, switches) in after.items():
            u0, s0, w0 = before.get(tid, (0.0, 0.0, 0))
            name = names.get(tid, f"tid {tid}")
            if name.startswith("paho") or name.startswith("Thread-"):
                name = "paho network"
            row = rows.setdefault(name, [0.0, 0.0, 0.0])
            row[0] += user - u0
            row[1] += system - s0
            row[2] += switches - w0
        sink.stop()
        broker.stop()
    per = 1e6 / telegrams
    result = {
        name: [user * per, system * per, switches / telegrams]
        for name, (user, system, switches) in rows.items()
        if user + system > 0 or switches
    }
    result["_"] = [wall, broker_cpu * per, 0.0]
    print(json.dumps(result))


def daemon_run(tree: Path, telegrams: int) -> dict[str, float]:
    """One `p1daemon run` of `tree`'s code: figures per telegram from the kernel."""
    sys.path.insert(0, str(REPO / "bench"))
    from bench_daemon import capture_of, write_config
    from bench_publish import Mosquitto

    with tempfile.TemporaryDirectory(prefix="p1bench-daemon-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work)
        broker.start()
        try:
            capture = work / "capture.txt"
            count = capture_of(telegrams, REPO.parent / CAPTURE, capture)
            config = write_config(work, capture, broker.port)
            env = {**os.environ, "PYTHONPATH": str(tree), "MALLOC_ARENA_MAX": "2"}
            command = [sys.executable, "-m", "p1daemon", "run", "--config", str(config)]
            started = time.monotonic()
            process = subprocess.Popen(
                [*command, "--log-level", "warning"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.monotonic() - started
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                raise RuntimeError(f"p1daemon exited with {process.returncode}")
        finally:
            broker.stop()
    per = 1e6 / count
    return {
        "telegrams": count,
        "wall_s": wall,
        "user_us": usage.ru_utime * per,
        "sys_us": usage.ru_stime * per,
        "voluntary": usage.ru_nvcsw / count,
        "involuntary": usage.ru_nivcsw / count,
    }


def daemon_main(trees: list[Path], rounds: int, telegrams: int) -> int:
    best: dict[Path, dict[str, float]] = {}
    for _ in range(rounds):
        for tree in trees:
            result = daemon_run(tree, telegrams)
            kept = best.get(tree)
            if kept is None or (
                result["user_us"] + result["sys_us"] < kept["user_us"] + kept["sys_us"]
            ):
                best[tree] = result
    print(f"p1daemon run, flat-out replay, best of {rounds}; per telegram:")
    print(f"  {'tree':<40} {'user us':>8} {'sys us':>8} {'vol. cs':>8} {'invol.':>8}")
    for tree, r in best.items():
        print(
            f"  {tree!s:<40} {r['user_us']:>8.1f} {r['sys_us']:>8.1f} "
            f"{r['voluntary']:>8.2f} {r['involuntary']:>8.2f}"
            f"   ({r['telegrams']:,.0f} telegrams in {r['wall_s']:.1f} s)"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--telegrams", type=int, default=30_000)
    parser.add_argument("--daemon", action="store_true", help="the whole daemon instead")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    trees = args.tree or [REPO]
    if args.daemon:
        return daemon_main(trees, args.rounds, args.telegrams)
    if args.child:
        child(trees[0], args.telegrams)
        return 0
    best: dict[Path, dict[str, list[float]]] = {}
    env = {**os.environ, "P1_BENCH_CAPTURE": str(REPO.parent / CAPTURE)}
    for _ in range(args.rounds):
        for tree in trees:
            command = [sys.executable, __file__, "--child", f"--telegrams={args.telegrams}"]
            command.append(f"--tree={tree}")
            out = subprocess.run(
                command, check=True, capture_output=True, text=True, env=env
            ).stdout
            result = json.loads(out.splitlines()[-1])
            total = sum(u + s for name, (u, s, _) in result.items() if name != "_")
            kept = best.get(tree)
            if kept is None or total < sum(u + s for n, (u, s, _) in kept.items() if n != "_"):
                best[tree] = result
    for tree, result in best.items():
        wall = result.pop("_")[0]
        rate = args.telegrams / wall
        print(f"{tree}  ({args.telegrams:,} telegrams, {rate:,.0f}/s, best of {args.rounds})")
        print(f"  {'thread':<16} {'user us':>9} {'sys us':>9} {'wake-ups':>9}  per telegram")
        total_user = total_sys = 0.0
        for name, (user, system, switches) in sorted(result.items()):
            total_user += user
            total_sys += system
            print(f"  {name:<16} {user:>9.1f} {system:>9.1f} {switches:>9.2f}")
        print(f"  {'all':<16} {total_user:>9.1f} {total_sys:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
