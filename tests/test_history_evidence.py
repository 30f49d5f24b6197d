"""Evidence and the hash chain: every quarter edge keeps its telegram, every row is
chained, and `p1daemon report --verify` catches a history edited with SQLite as a user
would edit it with the sqlite3 tool, naming the row.

Three synthetic days around the 25-hour day (the DST change), a three-hour gap and a
daemon restart mid-quarter; readings go through the recorder with the telegrams a meter
would have sent (tests/history_synth.py `telegram_of`, real CRCs)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from history_synth import AMS, SynthMeter, Truth, run_meter, telegram_of

from p1daemon.cli import main
from p1daemon.daemon.dispatcher import Dispatcher
from p1daemon.report.verify import meters_of, parse_telegram, verify
from p1daemon.views.energy.clock import day_bounds
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import MeterSpec
from p1daemon.views.history import chain
from p1daemon.views.history.evidence import compress, sha256_hex
from p1daemon.views.history.processor import HistoryProcessor
from p1daemon.views.history.recorder import HistoryRecorder
from p1daemon.views.history.rows import Row
from p1daemon.views.history.settings import HistorySettings
from p1daemon.views.history.store import HistoryStore

EAN = "871685900012345674"
FIRST, LAST = date(2026, 10, 24), date(2026, 10, 26)
SPEC = MeterSpec("house", "primary", EAN)


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=AMS).astimezone(UTC)


GAP = (local(2026, 10, 24, 10, 5), local(2026, 10, 24, 13, 10))
STOP_AFTER = local(2026, 10, 26, 8, 5)
# The row the tamper tests edit, and the one after it.
TARGET = local(2026, 10, 25, 14, 0)
NEXT = TARGET + timedelta(minutes=15)


def build(path: Path) -> None:
    meter = SynthMeter("house", ean=EAN)
    start, end = day_bounds(FIRST, AMS)[0], day_bounds(LAST, AMS)[1]
    store = HistoryStore.open(path)
    recorder = HistoryRecorder(SiteSettings(), [SPEC])
    pending: list[Row] = []
    silent = lambda at: GAP[0] < at < GAP[1]  # noqa: E731
    for reading in run_meter(meter, start, end, Truth(), silent=silent):
        pending.extend(recorder.feed(reading, telegram_of(reading)))
        if reading.timestamp == STOP_AFTER:
            # A clean stop mid-quarter, as the processor makes it; a new process resumes.
            store.write([*pending, *recorder.last_telegrams(), *recorder.states()])
            pending = []
            store.close()
            store = HistoryStore.open(path)
            recorder = HistoryRecorder(SiteSettings(), [SPEC])
            recorder.resume(store.states())
    store.write(pending)
    store.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("evidence") / "history.db"
    build(path)
    return path


@pytest.fixture
def history(pristine: Path, tmp_path: Path) -> Path:
    """A copy of the built history with a config beside it, for one test to edit."""
    path = tmp_path / "history.db"
    shutil.copy(pristine, path)
    (tmp_path / "p1daemon.toml").write_text(
        f'[history]\npath = "history.db"\n\n[[meters]]\nname = "house"\nean = "{EAN}"\n'
        'source = "/dev/ttyUSB0"\n',
        encoding="utf-8",
    )
    return path


def run_verify(history: Path, *extra: str) -> tuple[int, str]:
    config = history.parent / "p1daemon.toml"
    result = CliRunner().invoke(main, ["report", "--config", str(config), "--verify", *extra])
    return result.exit_code, result.stdout


def iso(at: datetime) -> str:
    return at.astimezone(AMS).isoformat(timespec="seconds")


def edit(path: Path, sql: str, *args: object) -> int:
    db = sqlite3.connect(path)
    with db:
        changed = db.execute(sql, args).rowcount
    db.close()
    return changed


def test_every_edge_has_its_telegram_and_the_history_verifies(pristine: Path) -> None:
    store = HistoryStore.open(pristine, readonly=True)
    try:
        db = store.connection
        edges = db.execute(
            "SELECT count(*) FROM quarters WHERE first_at IS NOT NULL OR last_at IS NOT NULL"
        ).fetchone()[0]
        missing = db.execute(
            "SELECT count(*) FROM quarters q WHERE (q.first_at IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM telegrams t WHERE t.at = q.first_at)) OR (q.last_at IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM telegrams t WHERE t.at = q.last_at))"
        ).fetchone()[0]
        gaps = db.execute("SELECT count(*) FROM quarters WHERE status = 'gap'").fetchone()[0]
        unchained = db.execute("SELECT count(*) FROM quarters WHERE hash IS NULL").fetchone()[0]
        kept = db.execute("SELECT count(*) FROM telegrams").fetchone()[0]
        result = verify(store, AMS, meters_of(store))
    finally:
        store.close()
    assert edges > 280 and gaps >= 11 and missing == 0 and unchained == 0
    # One telegram per quarter edge (plus the stop's), not one per reading.
    assert edges <= kept <= edges + 3
    assert result.findings == []
    assert result.rows == edges + gaps and result.telegrams == kept


def test_stored_telegrams_are_exactly_what_was_received(pristine: Path) -> None:
    store = HistoryStore.open(pristine, readonly=True)
    try:
        from p1daemon.views.history.evidence import EvidenceReader

        stored = list(EvidenceReader(store.connection).between("house", 0, 2e9))
    finally:
        store.close()
    meter = SynthMeter("house", ean=EAN)
    start, end = day_bounds(FIRST, AMS)[0], day_bounds(LAST, AMS)[1]
    sent = {r.timestamp.timestamp(): telegram_of(r) for r in run_meter(meter, start, end, Truth())}  # type: ignore[union-attr]
    assert stored and all(t.raw == sent[t.at] and t.intact for t in stored)
    assert all(parse_telegram(t.raw).reading is not None for t in stored if t.raw)


def test_verify_cli_passes_a_clean_history(history: Path) -> None:
    code, out = run_verify(history)
    assert code == 0, out
    assert ": OK" in out and "chain head house: " in out
    code, out = run_verify(history, "--period", "2026-10-25")
    assert code == 0 and "OK" in out


def test_changed_register_value_is_caught_and_named(history: Path) -> None:
    start = int(TARGET.timestamp())
    (reg,) = (
        sqlite3.connect(history)
        .execute("SELECT last_reg FROM quarters WHERE start = ?", (start,))
        .fetchone()
    )
    first, rest = reg.split(",", 1)
    forged = f"{float(first) + 1:.3f},{rest}"
    assert edit(history, "UPDATE quarters SET last_reg = ? WHERE start = ?", forged, start) == 1
    code, out = run_verify(history)
    assert code == 1
    lines = [line for line in out.splitlines() if line.startswith(f"house {iso(TARGET)}:")]
    assert any("edited row" in line for line in lines), out
    assert any("row differs from its telegram" in line and "last reading" in line for line in lines)
    assert "mismatch" in out.splitlines()[-2]


def test_deleted_row_is_caught_and_named(history: Path) -> None:
    assert edit(history, "DELETE FROM quarters WHERE start = ?", int(TARGET.timestamp())) == 1
    code, out = run_verify(history)
    assert code == 1
    line = next(x for x in out.splitlines() if "missing row" in x)
    assert line.startswith(f"house {iso(NEXT)}: missing row: 1 quarter-hour")
    assert f"from {iso(TARGET)}" in line
    assert any(x.startswith(f"house {iso(NEXT)}: broken chain") for x in out.splitlines())


def test_replaced_telegram_is_caught_and_named(history: Path) -> None:
    db = sqlite3.connect(history)
    at, dict_id = db.execute(
        "SELECT t.at, t.dict FROM telegrams t JOIN quarters q ON q.last_at = t.at "
        "WHERE q.start = ?",
        (int(TARGET.timestamp()),),
    ).fetchone()
    (zdict,) = db.execute("SELECT data FROM telegram_dicts WHERE id = ?", (dict_id,)).fetchone()
    db.close()
    # A valid telegram (right CRC) of the same moment with one register changed.
    meter = SynthMeter("house", ean=EAN)
    meter.regs["i1"] += 5_000
    forged = telegram_of(meter.reading(datetime.fromtimestamp(at, UTC)))
    assert parse_telegram(forged).reading is not None
    # The data only, then the data with its hash: both are caught.
    edit(history, "UPDATE telegrams SET data = ? WHERE at = ?", compress(forged, zdict), at)
    code, out = run_verify(history)
    assert code == 1
    assert any(
        x.startswith(f"house {iso(TARGET)}: bad telegram") and "not the one recorded" in x
        for x in out.splitlines()
    ), out
    edit(history, "UPDATE telegrams SET sha256 = ? WHERE at = ?", sha256_hex(forged), at)
    code, out = run_verify(history)
    assert code == 1
    named = [x for x in out.splitlines() if x.startswith(f"house {iso(TARGET)}:")]
    assert any("edited row" in x for x in named), out
    assert any("row differs from its telegram" in x and "import t1" in x for x in named)
    # The next row starts at that reading: it is named too.
    assert any(
        x.startswith(f"house {iso(NEXT)}: row differs from its telegram") for x in out.splitlines()
    )


def test_rechained_edit_without_telegrams_is_caught_and_named(history: Path) -> None:
    """Edit a row's end reading, the next row's start and both deltas consistently, then
    re-link the chain with the documented encoding: the chain is whole again, but the
    telegrams still say otherwise, and the chain head no longer equals the published one."""
    db = sqlite3.connect(history)
    store = HistoryStore.open(history, readonly=True)
    head_before = store.chain_head("house")
    store.close()
    a, b = int(TARGET.timestamp()), int(NEXT.timestamp())
    (last_reg, delta_a) = db.execute(
        "SELECT last_reg, delta FROM quarters WHERE start = ?", (a,)
    ).fetchone()
    (delta_b,) = db.execute("SELECT delta FROM quarters WHERE start = ?", (b,)).fetchone()

    def bump(text: str, by: float) -> str:
        first, rest = text.split(",", 1)
        return f"{float(first) + by:.3f},{rest}"

    with db:
        db.execute(
            "UPDATE quarters SET last_reg = ?, delta = ? WHERE start = ?",
            (bump(last_reg, 0.5), bump(delta_a, 0.5), a),
        )
        db.execute(
            "UPDATE quarters SET first_reg = ?, delta = ? WHERE start = ?",
            (bump(last_reg, 0.5), bump(delta_b, -0.5), b),
        )
        chain.relink(db, "house", a)
    db.close()
    code, out = run_verify(history)
    assert code == 1
    lines = out.splitlines()
    assert not any("edited row" in x or "broken chain" in x for x in lines), out
    assert any(x.startswith(f"house {iso(TARGET)}: row differs from its telegram") for x in lines)
    assert any(x.startswith(f"house {iso(NEXT)}: row differs from its telegram") for x in lines)
    head_line = next(x for x in lines if x.startswith("chain head house: "))
    assert head_before is not None and head_before not in head_line


def test_chain_head_printed_equals_the_month_document(history: Path) -> None:
    config = history.parent / "p1daemon.toml"
    result = CliRunner().invoke(main, ["report", "--config", str(config), "--chain-head"])
    assert result.exit_code == 0
    meter, head = result.stdout.split()
    store = HistoryStore.open(history, readonly=True)
    try:
        from p1daemon.views.history.aggregate import point_groups
        from p1daemon.views.history.month import month_document

        doc = month_document(store, point_groups(store)["house"], TARGET, AMS)
        last = list(chain.rows(store.connection, "house"))[-1]
    finally:
        store.close()
    assert meter == "house" and len(head) == 64
    assert doc.chain_head == head == last.hash


def test_processor_keeps_telegrams_handed_over_by_the_dispatcher(tmp_path: Path) -> None:
    """The daemon's path: `Dispatcher.submit(reading, raw)` -> `on_telegram` -> the
    recorder; a processor that wants telegrams makes the dispatcher ask for them."""
    path = tmp_path / "history.db"
    settings = HistorySettings(path=str(path), commit_delay_s=0.05)
    proc = HistoryProcessor(settings, SiteSettings(), [SPEC], "p1")
    dispatcher = Dispatcher([proc], [])
    assert dispatcher.wants_telegrams("house") and not dispatcher.wants_telegrams("other")
    assert not Dispatcher([], []).wants_telegrams("house")
    dispatcher.start()
    meter = SynthMeter("house", ean=EAN)
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    for reading in run_meter(meter, start, start + timedelta(hours=1), Truth()):
        dispatcher.submit(reading, telegram_of(reading))
    dispatcher.stop()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.02)
    store = HistoryStore.open(path, readonly=True)
    try:
        result = verify(store, AMS, ["house"])
        kept = store.connection.execute("SELECT count(*) FROM telegrams").fetchone()[0]
    finally:
        store.close()
    assert result.rows == 4 and result.findings == []
    assert kept == 5  # the five quarter edges of the hour, nothing in between


def test_evidence_directory_checks_out_with_p1daemon_parse_alone(
    history: Path, tmp_path: Path
) -> None:
    """The auditor's side: a fresh process that only runs `p1daemon parse` on the
    telegrams, and hashes the files, agrees with the manifest on every telegram."""
    out_dir = tmp_path / "evidence"
    config = history.parent / "p1daemon.toml"
    result = CliRunner().invoke(
        main,
        ["report", "--config", str(config), "--meter", "house", "--period", "2026-10-25",
         "--evidence", str(out_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["meter"] == "house" and manifest["ean"] == EAN
    assert manifest["missing_telegrams"] == 0
    assert len(manifest["quarters"]) == 100  # the 25-hour day
    files = [t["file"] for t in manifest["telegrams"]]
    assert len(files) == 101 and len(set(files)) == 101
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out_dir / name).read_bytes()).hexdigest() == digest
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8").splitlines()[0])
    assert report["meter"] == "house"
    auditor = subprocess.run(
        [sys.executable, "-m", "p1daemon", "parse", *files],
        cwd=out_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert auditor.returncode == 0, auditor.stderr  # every CRC valid
    parsed = [json.loads(line) for line in auditor.stdout.splitlines()]
    assert len(parsed) == len(files)
    for entry, reading in zip(manifest["telegrams"], parsed, strict=True):
        raw = (out_dir / entry["file"]).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
        assert reading["timestamp"] == entry["timestamp"]
        assert reading["equipment_id"] == entry["equipment_id"]
        for direction in ("import", "export"):
            for register, value in entry[direction].items():
                assert reading[direction][register] == value, (entry["file"], register)
    # Every quarter names the telegrams it runs between.
    named = {q["first"] for q in manifest["quarters"]} | {q["last"] for q in manifest["quarters"]}
    assert named == set(files)


def test_reader_keeps_raw_telegrams_only_when_a_processor_wants_them(tmp_path: Path) -> None:
    """A real reader on a replayed capture into the real dispatcher and history: the
    stored edge telegrams are the capture's bytes; a sink that wants none gets none."""
    from test_daemon_support import CollectingSink, wait_until

    from p1daemon.config.model import MeterConfig
    from p1daemon.daemon.reader import MeterReader

    meter = SynthMeter("house", ean=EAN)
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    readings = list(run_meter(meter, start, start + timedelta(minutes=30), Truth()))
    sent = {r.timestamp.timestamp(): telegram_of(r) for r in readings if r.timestamp}
    capture = tmp_path / "capture.txt"
    capture.write_bytes(b"".join(sent[at] for at in sorted(sent)))
    config = MeterConfig.model_validate(
        {"name": "house", "source": f"replay:{capture}", "replay_interval_s": 0}
    )
    path = tmp_path / "history.db"
    proc = HistoryProcessor(
        HistorySettings(path=str(path), commit_delay_s=0.05), SiteSettings(), [SPEC], "p1"
    )
    dispatcher = Dispatcher([proc], [])
    dispatcher.start()
    reader = MeterReader(config, dispatcher)
    reader.start()
    assert wait_until(lambda: reader.ended)
    reader.join(2.0)
    dispatcher.stop()
    store = HistoryStore.open(path, readonly=True)
    try:
        from p1daemon.views.history.evidence import EvidenceReader

        kept = list(EvidenceReader(store.connection).between("house", 0, 2e9))
    finally:
        store.close()
    assert [t.at for t in kept] == [start.timestamp() + 900 * i for i in range(3)]
    assert all(t.raw == sent[t.at] for t in kept)
    # No processor wants them: the plain sink's submit(reading) is called without raw.
    plain = CollectingSink()
    other = MeterReader(config, plain)
    other.start()
    assert wait_until(lambda: other.ended)
    other.join(2.0)
    assert len(plain.of("house")) == len(readings)


def test_a_schema_1_history_is_chained_when_first_opened_for_writing(tmp_path: Path) -> None:
    """A history written before the chain existed (no `hash` column, no telegrams) gets
    the column and its rows chained; --verify then only misses the telegrams."""
    path = tmp_path / "history.db"
    meter = SynthMeter("house", ean=EAN)
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    recorder = HistoryRecorder(SiteSettings(), [SPEC])
    store = HistoryStore.open(path)
    readings = run_meter(meter, start, start + timedelta(hours=1), Truth())
    store.write([row for r in readings for row in recorder.feed(r)])
    store.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE quarters DROP COLUMN hash")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    HistoryStore.open(path).close()
    store = HistoryStore.open(path, readonly=True)
    try:
        result = verify(store, AMS, ["house"])
        version = store.connection.execute("PRAGMA user_version").fetchone()[0]
    finally:
        store.close()
    assert version == 2 and result.rows == 4
    assert {f.kind for f in result.findings} == {"missing telegram"}
    assert len(result.findings) == 8  # both edges of each of the four quarters


def test_edited_or_deleted_gap_is_caught_and_named(history: Path) -> None:
    db = sqlite3.connect(history)
    (start, delta) = db.execute("SELECT start, delta FROM gaps ORDER BY start").fetchone()
    db.close()
    assert start == GAP[0].timestamp() and delta
    first, rest = delta.split(",", 1)
    forged = f"{float(first) + 2:.3f},{rest}"
    assert edit(history, "UPDATE gaps SET delta = ? WHERE start = ?", forged, start) == 1
    code, out = run_verify(history)
    assert code == 1
    assert any(
        x.startswith(f"house {iso(GAP[0])}: edited gap: import t1") for x in out.splitlines()
    )
    assert edit(history, "DELETE FROM gaps WHERE start = ?", start) == 1
    code, out = run_verify(history)
    assert code == 1
    first_gap_quarter = local(2026, 10, 24, 10, 15)
    assert f"house {iso(first_gap_quarter)}: missing gap" in out, out


def test_pinned_head_catches_a_history_rewritten_before_it(history: Path) -> None:
    """The month document's chain head, kept elsewhere, pins the rows before it: edit
    one, re-link the chain, and the old head is no row's hash any more."""
    store = HistoryStore.open(history, readonly=True)
    pinned = store.chain_head("house")
    store.close()
    assert pinned is not None
    code, out = run_verify(history, "--pinned", pinned)
    assert code == 0, out
    db = sqlite3.connect(history)
    with db:
        db.execute(
            "UPDATE quarters SET status = 'partial' WHERE start = ?", (int(TARGET.timestamp()),)
        )
        chain.relink(db, "house", int(TARGET.timestamp()))
    db.close()
    code, out = run_verify(history, "--pinned", pinned)
    assert code == 1
    assert f"chain: pinned head not found: {pinned}" in out
