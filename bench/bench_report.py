"""`p1daemon report` over one synthetic year of six metering points, by quarter, as CSV.

Builds the history the way the daemon does (each meter's readings through the
`HistoryRecorder`, one reading on every quarter edge plus one inside; rows written in
daily transactions for speed), then times the real command in a subprocess and
reports the history's size per meter-year. Goals from issue 11: under 2 s for the
report, at most 20 MB per meter-year. Never asserted in tests: timings move on a busy
machine.

    .venv/bin/python bench/bench_report.py            # build in a temp dir, 3 runs
    .venv/bin/python bench/bench_report.py --keep DIR # keep the history and config
    .venv/bin/python bench/bench_report.py --compare OTHER_CHECKOUT
        # the same command from another checkout of p1daemon too (e.g. the commit before
        # an optimisation, from `git archive`), alternating, on the same history; also
        # says whether both wrote the same bytes
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zoneinfo import ZoneInfo  # noqa: E402

from p1daemon.reading.meter import MeterReading  # noqa: E402
from p1daemon.reading.model import EnergyDirection  # noqa: E402
from p1daemon.views.energy.settings import SiteSettings  # noqa: E402
from p1daemon.views.energy.tracker import MeterSpec  # noqa: E402
from p1daemon.views.history.recorder import HistoryRecorder  # noqa: E402
from p1daemon.views.history.store import HistoryStore  # noqa: E402

AMS = ZoneInfo("Europe/Amsterdam")
METERS = 6
YEAR = 2026
_TEMPLATE = MeterReading(
    header="/BENCH5", meter="x", role="primary", received_at=datetime(YEAR, 1, 1, tzinfo=UTC)
)
_ENERGY = EnergyDirection()


def build(path: Path) -> float:
    specs = [
        MeterSpec(f"m{i}", "primary" if i == 0 else "secondary", f"8712345678900000{i:02d}")
        for i in range(METERS)
    ]
    recorder = HistoryRecorder(SiteSettings(topology="series"), specs)
    store = HistoryStore.open(path)
    regs = [[1_000_000 + i, 2_000_000, 5_000, 300_000] for i in range(METERS)]
    start = datetime(YEAR, 1, 1, tzinfo=AMS).astimezone(UTC)
    end = datetime(YEAR + 1, 1, 1, tzinfo=AMS).astimezone(UTC)
    at, index, began, rows = start, 0, time.perf_counter(), []
    while at <= end:
        for offset in (0, 450):
            instant = at + timedelta(seconds=offset)
            for i, spec in enumerate(specs):
                r = regs[i]
                reading = _TEMPLATE.model_copy(
                    update={
                        "equipment_id": f"E{i:04d}",
                        "timestamp": instant,
                        "received_at": instant,
                        "meter": spec.name,
                        "role": spec.role,
                        "ean": spec.ean,
                        "import_": _ENERGY.model_copy(
                            update={"t1_kwh": r[0] / 1000, "t2_kwh": r[1] / 1000}
                        ),
                        "export": _ENERGY.model_copy(
                            update={"t1_kwh": r[2] / 1000, "t2_kwh": r[3] / 1000}
                        ),
                    }
                )
                rows.extend(recorder.feed(reading))
                r[index % 2] += 20 + (index * 37 + i * 11) % 200
                r[2 + index % 2] += (index * 53 + i) % 90
            if at >= end:
                break
        at += timedelta(minutes=15)
        index += 1
        if index % 96 == 0:
            store.write(rows)
            rows = []
    store.write(rows)
    store.close()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="folder to keep the history and config in")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", type=Path, help="another p1daemon checkout to time too")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    folder.mkdir(parents=True, exist_ok=True)
    history = folder / "history.db"
    config = folder / "p1daemon.toml"
    config.write_text(
        '[site]\ntopology = "series"\n\n[history]\npath = "history.db"\n\n'
        + "".join(
            f'[[meters]]\nname = "m{i}"\nrole = "{"primary" if i == 0 else "secondary"}"\n'
            f'source = "/dev/ttyBENCH{i}"\n\n'
            for i in range(METERS)
        )
    )
    if not history.exists():
        built = build(history)
        print(f"built one year of {METERS} metering points in {built:.1f} s")
    size = history.stat().st_size
    print(f"history: {size / 2**20:.1f} MB, {size / METERS / 2**20:.2f} MB per meter-year")
    command = [
        sys.executable, "-m", "p1daemon", "report", "--config", str(config),
        "--period", str(YEAR), "--by", "quarter", "--format", "csv",
    ]  # fmt: skip
    checkouts = {"this": REPO}
    if args.compare is not None:
        checkouts["compare"] = args.compare.resolve()
    walls: dict[str, list[float]] = {name: [] for name in checkouts}
    cpus: dict[str, list[float]] = {name: [] for name in checkouts}
    digests: dict[str, str] = {}
    out = b""
    for _ in range(args.runs):
        for name, where in checkouts.items():
            wall, cpu, out = run_once(command, where)
            walls[name].append(wall)
            cpus[name].append(cpu)
            digests[name] = hashlib.sha256(out).hexdigest()
    lines = out.count(b"\n")
    print(
        f"p1daemon report --period {YEAR} --by quarter --format csv "
        f"({lines} lines, {len(out) / 2**20:.1f} MB of CSV):"
    )
    for name, where in checkouts.items():
        print(
            f"  {name:8} {where}: CPU best {min(cpus[name]):.2f} s, "
            f"median {statistics.median(cpus[name]):.2f} s; wall best {min(walls[name]):.2f} s"
        )
    if len(digests) > 1:
        same = len(set(digests.values())) == 1
        print(f"  output {'byte-identical' if same else 'DIFFERS'} (sha256 {digests['this']})")


def run_once(command: list[str], where: Path) -> tuple[float, float, bytes]:
    """Wall and CPU (user + system, from the children's rusage) of one run in `where`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(where)}
    done = subprocess.run(command, capture_output=True, check=True, cwd=where, env=env)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


if __name__ == "__main__":
    main()
