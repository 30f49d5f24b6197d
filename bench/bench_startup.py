"""Issue 16 in one table: start-up, memory, CPU per telegram and idle wake-ups.

    .venv/bin/python bench/bench_startup.py                 # everything (about a minute)
    .venv/bin/python bench/bench_startup.py --startup-only  # the three commands only
    .venv/bin/python bench/bench_startup.py --runs 9 --telegrams 50000
    .venv/bin/python bench/bench_startup.py --daemon-only --before /tmp/old  # side by side

Every figure is a whole process, measured from outside with the kernel's own accounting
(`os.wait4` rusage: user + system CPU, peak resident memory ru_maxrss) and a monotonic
clock for the wall time:

1. Start-up: `p1daemon --help`, `p1daemon parse` on one telegram and
   `p1daemon check-config config/p1daemon.example.toml`, each paired run by run (A B A B,
   after one warm-up each) with the bare import of the runtime dependencies,
   `python -c "import serial, paho.mqtt.client, pydantic, click"`; the ratio is taken
   pair by pair and its median quoted, so a comparison holds while the machine's speed
   drifts. Goal: within 1.3x, wall and CPU.
2. The daemon flat out: `p1daemon run` replaying a capture as fast as it can into a local
   mosquitto (started here), with Home Assistant discovery, the energy views and the
   history on: CPU per telegram (all threads), peak RSS (VmHWM sampled from /proc).
   Goals: <= 0.12 ms, <= 36 MB. The CPU of a run over an empty replay (imports,
   start-up, stop) is subtracted, so the figure is what each telegram adds.
3. Parse against dsmr-parser: `bench/bench_parse.py` of the tree measured, run as a child,
   gives CPU per telegram of the same job (bytes in, CRC checked, JSON out) in one process
   and as whole processes with start-up; its medians and ratios are shown. Goal: >= 10x.
   The daemon runs in the environment the systemd unit gives it (its `Environment=`
   lines, read from systemd/p1daemon.service: MALLOC_ARENA_MAX=2 among them, which
   bounds glibc's per-thread malloc arenas), so its memory is the installed daemon's.
4. The daemon idle: the same configuration with a replay of one telegram an hour: its
   RSS once settled (and its anonymous, private part: the rest are pages of shared
   libraries, which the kernel can drop and read again), its threads and its wake-ups
   (voluntary + involuntary context switches of all its threads) over `--idle-s`
   seconds. Goal: <= 33 MB.

The daemon has no outside baseline (dsmr-parser parses, it does not publish), so its rows
compare with an earlier checkout: `--before DIR` (e.g. `git archive <commit> | tar -x -C
DIR`) runs that tree's daemon with this venv, round by round with the tree measured
(`--daemon-runs`, medians), and adds a column and a ratio. The CPU row also says how much
of it is user space; the rest is system calls (sockets, futexes of thread hand-offs).

The Pi Zero 2 W row is a projection, not a measurement: its Cortex-A53 core runs this
kind of pure-Python work about 5-10x slower than this machine's (the factor issue 16
gives), so CPU and wall figures are multiplied by 5 and 10; memory stays about the same
(64-bit Raspberry Pi OS, same CPython). Timings move 10 % or more on a shared machine:
compare the rows of one run, never assert them in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_daemon import capture_of, free_port  # noqa: E402  (the same replay and port helpers)

PYTHON = REPO / ".venv/bin/python"
P1DAEMON = REPO / ".venv/bin/p1daemon"
DEFAULT_CAPTURE = REPO.parent / "shared/fixtures/streams/iskra_am550_dsmr50_566_telegrams.txt"
ONE_TELEGRAM = REPO / "fixtures/be/emucs_capacity.txt"
EXAMPLE_CONFIG = REPO / "config/p1daemon.example.toml"
BASELINE = [str(PYTHON), "-c", "import serial, paho.mqtt.client, pydantic, click"]
# `--tree DIR` runs another checkout's p1daemon (e.g. `git archive` of an older commit)
# with this venv: the same interpreter and dependencies, so two trees compare fairly.
_ENTRY = "import sys; sys.argv[0] = 'p1daemon'; from p1daemon.cli import main; sys.exit(main())"
P1 = [str(P1DAEMON)]
ENV: dict[str, str] | None = None
CWD = REPO  # `python -c` puts its working folder first on sys.path: the tree measured

GOAL_STARTUP_RATIO = 1.3
GOAL_CPU_MS = 0.12
GOAL_PEAK_MB = 36.0
GOAL_IDLE_MB = 33.0
PI_ZERO_2W_FACTORS = (5, 10)


@dataclass(frozen=True, slots=True)
class Tree:
    """One checkout's p1daemon, run with this venv (same interpreter and dependencies)."""

    label: str
    command: list[str]
    env: dict[str, str] | None
    cwd: Path


UNIT = REPO / "systemd/p1daemon.service"


def unit_environment(unit: Path = UNIT) -> dict[str, str]:
    """The variables the systemd unit sets (`Environment=A=1 B=2` lines, unquoted values)."""
    variables: dict[str, str] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        if line.startswith("Environment="):
            for pair in line.removeprefix("Environment=").split():
                name, _, value = pair.partition("=")
                variables[name] = value
    return variables


DAEMON_ENV = unit_environment()


def tree_at(path: Path, label: str) -> Tree:
    root = path.resolve()
    env = {**os.environ, **DAEMON_ENV, "PYTHONPATH": str(root)}
    return Tree(label, [str(PYTHON), "-c", _ENTRY], env, root)


THIS_TREE = Tree("p1daemon", [str(P1DAEMON)], {**os.environ, **DAEMON_ENV}, REPO)


@dataclass(frozen=True, slots=True)
class Run:
    cpu_s: float
    wall_s: float
    peak_mb: float


def run_once(command: list[str]) -> Run:
    """One whole process: CPU and peak memory from wait4, wall from a monotonic clock."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=CWD
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):  # parse exits 1 on a dropped frame: still timed
        raise RuntimeError(f"{command} exited with {process.returncode}")
    return Run(usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024)


@dataclass(frozen=True, slots=True)
class Paired:
    name: str
    a: list[Run]
    b: list[Run]

    def median(self, runs: list[Run], what: str) -> float:
        return statistics.median(getattr(r, what) for r in runs)

    def ratio(self, what: str) -> float:
        return statistics.median(
            getattr(x, what) / max(getattr(y, what), 1e-9)
            for x, y in zip(self.a, self.b, strict=True)
        )


def paired(name: str, command: list[str], runs: int) -> Paired:
    run_once(command)  # warm-up: page cache, .pyc files
    run_once(BASELINE)
    a: list[Run] = []
    b: list[Run] = []
    for _ in range(runs):
        a.append(run_once(command))
        b.append(run_once(BASELINE))
    return Paired(name, a, b)


# What no command that validates a configuration with pydantic can go below, against the
# same baseline: the baseline's `import pydantic` is lazy and leaves out the model
# machinery (pydantic.main, the schema generator, pydantic_core's schema module) that the
# first model class loads; and the configuration's own models, loaded and validated
# without anything else of p1daemon. The gap between these rows and the commands above is
# what p1daemon itself adds; the gap between the first row and 1.00x is pydantic's.
_DEPS = "import serial, paho.mqtt.client, pydantic, click"
FLOORS = [
    (
        "floor: deps + one pydantic model",
        [
            str(PYTHON),
            "-c",
            f"{_DEPS}\nclass M(pydantic.BaseModel):\n    x: int = 0\nM.model_validate({{'x': 1}})",
        ],
    ),
    (
        "floor: deps + the config validated",
        [
            str(PYTHON),
            "-c",
            f"{_DEPS}\nfrom p1daemon.config.loader import load_config\n"
            f"load_config({str(EXAMPLE_CONFIG)!r})",
        ],
    ),
]


def floor_rows(runs: int) -> list[str]:
    """The floors above (CPU and peak memory), paired with the baseline like the commands."""
    rows: list[str] = []
    for name, command in FLOORS:
        result = paired(name, command, runs)
        rows += [_time_row(f"{name}: cpu", result, "cpu_s"), _rss_row(f"{name}: peak RSS", result)]
    return rows


def _time_row(label: str, result: Paired, what: str, goal: str = "") -> str:
    return _row(
        label,
        f"{result.median(result.a, what) * 1000:.0f} ms",
        f"{result.median(result.b, what) * 1000:.0f} ms",
        f"{result.ratio(what):.2f}x",
        goal,
    )


def _rss_row(label: str, result: Paired) -> str:
    return _row(
        label,
        f"{result.median(result.a, 'peak_mb'):.1f} MB",
        f"{result.median(result.b, 'peak_mb'):.1f} MB",
        f"{result.ratio('peak_mb'):.2f}x",
    )


# -- the daemon ---------------------------------------------------------------------------


def daemon_config(work: Path, name: str, capture: Path, port: int, interval_s: float) -> Path:
    """Discovery, energy views and history on (the views are on with any meter)."""
    config = work / f"{name}.toml"
    state = work / name
    state.mkdir()
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
replay_interval_s = {interval_s}
replay_loop = {"true" if interval_s else "false"}
""",
        encoding="utf-8",
    )
    return config


def _status(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _kb(value: str) -> float:
    return int(value.split()[0]) / 1024


@dataclass(frozen=True, slots=True)
class Finite:
    """One finite run of the daemon: CPU (user and system), peak RSS, wall clock."""

    user_s: float
    system_s: float
    peak_mb: float
    wall_s: float
    # ru_maxrss of wait4: the largest of the daemon and the children it waited for (the
    # short-lived child that validates the configuration, p1daemon.config.apart).
    service_peak_mb: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.system_s


def _start(tree: Tree, config: Path) -> subprocess.Popen[bytes]:
    command = [*tree.command, "run", "--config", str(config), "--log-level", "warning"]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=tree.env, cwd=tree.cwd
    )


def flat_out(tree: Tree, config: Path) -> Finite:
    """CPU seconds, peak RSS in MB and wall seconds of a finite run."""
    started = time.perf_counter()
    process = _start(tree, config)
    peak = 0.0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        with contextlib.suppress(OSError, KeyError, ValueError):
            peak = max(peak, _kb(_status(process.pid)["VmHWM"]))
        time.sleep(0.02)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"p1daemon run exited with {process.returncode}")
    return Finite(usage.ru_utime, usage.ru_stime, peak, wall, usage.ru_maxrss / 1024)


def _switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # a thread that just ended
        for line in status.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                total += int(line.split()[1])
    return total


def idle(tree: Tree, config: Path, settle_s: float, idle_s: float) -> tuple[float, float, int, int]:
    """RSS and its anonymous part in MB, threads and wake-ups over `idle_s` of a daemon
    with nothing to read."""
    process = _start(tree, config)
    try:
        time.sleep(settle_s)
        if process.poll() is not None:
            raise RuntimeError(f"the idle daemon exited with {process.returncode}")
        before = _switches(process.pid)
        time.sleep(idle_s)
        woke = _switches(process.pid) - before
        status = _status(process.pid)
        anonymous = _kb(status["RssAnon"])
        return _kb(status["VmRSS"]), anonymous, int(status["Threads"]), woke
    finally:
        process.terminate()
        process.wait(15)


# -- the table ----------------------------------------------------------------------------


def _row(name: str, value: str, base: str = "", ratio: str = "", goal: str = "") -> str:
    return f"{name:<44}{value:>12}{base:>12}{ratio:>9}{goal:>10}"


def startup_rows(runs: int) -> list[str]:
    commands = [
        ("p1daemon --help", [*P1, "--help"]),
        ("p1daemon parse (one telegram)", [*P1, "parse", str(ONE_TELEGRAM)]),
        ("p1daemon check-config (example)", [*P1, "check-config", str(EXAMPLE_CONFIG)]),
    ]
    rows = [_row("start-up, whole process (median)", "p1daemon", "deps only", "ratio", "goal")]
    for name, command in commands:
        result = paired(name, command, runs)
        for what in ("wall_s", "cpu_s"):
            rows.append(
                _time_row(f"{name}: {what[:-2]}", result, what, f"<= {GOAL_STARTUP_RATIO}x")
            )
        rows.append(_rss_row(f"{name}: peak RSS", result))
        if name.endswith("--help"):
            help_ms = result.median(result.a, "wall_s") * 1000
    rows += floor_rows(runs)
    low, high = PI_ZERO_2W_FACTORS
    rows.append(
        _row(
            "  Pi Zero 2 W projection: --help wall",
            f"{help_ms * low / 1000:.1f}-{help_ms * high / 1000:.1f} s",
            "",
            "",
            "(x5-x10)",
        )
    )
    return rows


@dataclass(frozen=True, slots=True)
class DaemonFigures:
    """One tree's daemon rows: medians over `runs` interleaved rounds."""

    cpu_ms: float  # per telegram, the empty run's CPU subtracted
    user_share: float  # of that CPU, the part in user space (the rest: system calls)
    fixed_ms: float
    per_s: float
    peak_mb: float
    service_peak_mb: float
    idle_mb: float
    idle_anon_mb: float  # of idle_mb, the private part (the rest: shared libraries' pages)
    threads: int
    woke_per_s: float


def _measure_daemons(
    trees: list[Tree], runs: int, telegrams: int, capture: Path, idle_s: float
) -> tuple[int, list[DaemonFigures]]:
    """Every tree's runs interleaved round by round, so a drift of the machine hits all alike."""
    mosquitto = shutil.which("mosquitto")
    assert mosquitto is not None
    samples: list[list[tuple[Finite, Finite, tuple[float, float, int, int]]]] = [[] for _ in trees]
    with tempfile.TemporaryDirectory(prefix="p1bench-") as tmp:
        work = Path(tmp)
        replay = work / "capture.txt"
        count = capture_of(telegrams, capture, replay)
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
            empty = work / "empty.txt"
            empty.write_bytes(b"")
            made = 0

            def config(name: str, source: Path, interval_s: float) -> Path:
                nonlocal made
                made += 1
                return daemon_config(work, f"{name}{made}", source, port, interval_s)

            for _ in range(runs):
                for tree, kept in zip(trees, samples, strict=True):
                    fixed = flat_out(tree, config("empty", empty, 0))
                    flat = flat_out(tree, config("flat", replay, 0))
                    still = idle(tree, config("idle", ONE_TELEGRAM, 3600), 3.0, idle_s)
                    kept.append((fixed, flat, still))
        finally:
            broker.terminate()
            broker.wait(5)
    figures = []
    for kept in samples:
        median = statistics.median
        added = [flat.cpu_s - fixed.cpu_s for fixed, flat, _ in kept]
        user = [flat.user_s - fixed.user_s for fixed, flat, _ in kept]
        figures.append(
            DaemonFigures(
                cpu_ms=median(added) / count * 1000,
                user_share=median(u / max(a, 1e-9) for u, a in zip(user, added, strict=True)),
                fixed_ms=median(fixed.cpu_s for fixed, _, _ in kept) * 1000,
                per_s=median(count / flat.wall_s for _, flat, _ in kept),
                peak_mb=median(flat.peak_mb for _, flat, _ in kept),
                service_peak_mb=median(flat.service_peak_mb for _, flat, _ in kept),
                idle_mb=median(still[0] for _, _, still in kept),
                idle_anon_mb=median(still[1] for _, _, still in kept),
                threads=max(still[2] for _, _, still in kept),
                woke_per_s=median(still[3] for _, _, still in kept) / idle_s,
            )
        )
    return count, figures


def daemon_rows(
    trees: list[Tree], runs: int, telegrams: int, capture: Path, idle_s: float
) -> list[str]:
    """The daemon rows of the tree measured and, with `--before`, the same rows of another.

    The daemon has no outside baseline (dsmr-parser does not publish), so the comparison
    is with an earlier checkout, in the same run.
    """
    if shutil.which("mosquitto") is None:
        return ["daemon: skipped, mosquitto is not installed (apt-get install mosquitto)"]
    count, figures = _measure_daemons(trees, runs, telegrams, capture, idle_s)
    now = figures[0]
    then = figures[1] if len(figures) > 1 else None
    low, high = PI_ZERO_2W_FACTORS

    def row(name: str, unit: str, of: Callable[[DaemonFigures], float], goal: str = "") -> str:
        spec = f"{{:.{unit[0]}f}}{unit[1:]}"
        base, ratio = "", ""
        if then is not None:
            base = spec.format(of(then))
            ratio = f"{of(now) / max(of(then), 1e-9):.2f}x"
        return _row(name, spec.format(of(now)), base, ratio, goal)

    header = "before" if then is not None else ""
    return [
        _row(
            f"daemon (discovery, energy, history on), median of {runs}",
            "p1daemon",
            header,
            "ratio" if then else "",
            "goal",
        ),
        row(f"CPU per telegram, {count:,} flat out", "3 ms", lambda f: f.cpu_ms, "<= 0.12"),
        row("  of it in user space", "0 %", lambda f: f.user_share * 100),
        row("  start-up and stop, not counted above", "0 ms", lambda f: f.fixed_ms),
        _row(
            "  Pi Zero 2 W projection",
            f"{now.cpu_ms * low:.2f}-{now.cpu_ms * high:.2f} ms",
            "",
            "",
            "(x5-x10)",
        ),
        row("throughput (wall clock)", "0 /s", lambda f: f.per_s),
        row("peak RSS flat out (VmHWM)", "1 MB", lambda f: f.peak_mb, "<= 36 MB"),
        row("  any one process of it, child included", "1 MB", lambda f: f.service_peak_mb),
        row("idle RSS (one telegram an hour)", "1 MB", lambda f: f.idle_mb, "<= 33 MB"),
        row("  of it anonymous (private)", "1 MB", lambda f: f.idle_anon_mb),
        row("idle threads", "0", lambda f: f.threads),
        row(f"idle wake-ups per second (over {idle_s:.0f} s)", "1 /s", lambda f: f.woke_per_s),
    ]


_RATIO = re.compile(r"ratio dsmr-parser / p1daemon: best ([0-9.]+)x, median ([0-9.]+)x")
_ROW = re.compile(r"^(p1daemon|dsmr-parser)\S*.*?\s{2,}([0-9.]+)\s+([0-9.]+)\s", re.MULTILINE)


def parse_rows(repeat: int) -> list[str]:
    """bench_parse.py of the tree measured, run as a child: in-process and whole-process rows.

    Its two tables (the same job in one process, then as whole processes with start-up) are
    read back from its output, so the figures are exactly the ones it prints on its own.
    """
    script = CWD / "bench" / "bench_parse.py"
    if not script.exists():
        return [f"parse: skipped, {script} does not exist"]
    done = subprocess.run(
        [str(PYTHON), str(script), "--repeat", str(repeat), "--no-memory"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=CWD,
        check=False,
    )
    ratios = _RATIO.findall(done.stdout)
    medians = [float(median) for _, _, median in _ROW.findall(done.stdout)]
    if done.returncode != 0 or len(ratios) != 2 or len(medians) != 4:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [f"parse: skipped, bench_parse.py failed ({reason})"]
    rows = [
        _row("parse vs dsmr-parser, CPU per telegram", "p1daemon", "dsmr-parser", "ratio", "goal")
    ]
    for label, (ours, theirs), (_, ratio) in zip(
        ("in one process (median)", "whole process, start-up in"),
        (medians[0:2], medians[2:4]),
        ratios,
        strict=True,
    ):
        rows.append(_row(label, f"{ours:.1f} us", f"{theirs:.1f} us", f"{ratio}x", ">= 10x"))
    return rows


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--runs", type=int, default=7, help="paired runs per start-up row")
    args.add_argument("--telegrams", type=int, default=20000)
    args.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    args.add_argument("--idle-s", type=float, default=10.0)
    args.add_argument("--parse-repeat", type=int, default=5, help="bench_parse repetitions")
    args.add_argument("--startup-only", action="store_true")
    args.add_argument("--daemon-only", action="store_true")
    args.add_argument("--tree", type=Path, help="measure the p1daemon package in this checkout")
    args.add_argument(
        "--before", type=Path, help="also run the daemon rows of this checkout, interleaved"
    )
    args.add_argument("--daemon-runs", type=int, default=3, help="rounds of the daemon rows")
    options = args.parse_args()
    measured = THIS_TREE
    if options.tree is not None:
        measured = tree_at(options.tree, "p1daemon")
        global ENV, CWD
        CWD = options.tree.resolve()
        P1[:] = [str(PYTHON), "-c", _ENTRY]
        ENV = {**os.environ, "PYTHONPATH": str(options.tree.resolve())}
        print(f"tree: {options.tree.resolve()}")
    print(
        f"p1daemon, whole processes - {platform.machine()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs"
    )
    print("baseline: python -c 'import serial, paho.mqtt.client, pydantic, click'\n")
    rows: list[str] = []
    if not options.daemon_only:
        rows += startup_rows(options.runs)
        rows.append("")
    if not (options.startup_only or options.daemon_only):
        rows += parse_rows(options.parse_repeat)
        rows.append("")
    if not options.startup_only:
        if not options.capture.exists():
            print(f"bench_startup: no capture at {options.capture} (--capture PATH)")
            return 2
        trees = [measured]
        if options.before is not None:
            trees.append(tree_at(options.before, "before"))
            print(f"before: {options.before.resolve()}")
        shown = " ".join(f"{k}={v}" for k, v in DAEMON_ENV.items())
        print(f"daemon environment (as {UNIT.relative_to(REPO)} sets it): {shown}")
        rows += daemon_rows(
            trees, options.daemon_runs, options.telegrams, options.capture, options.idle_s
        )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
