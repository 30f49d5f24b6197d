"""The real daemon (`p1daemon run --stdout`, replay source) publishes the capacity watch:
a state document per reading, the alert as records: announced, raised, cleared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO / "fixtures" / "be" / "capacity_month_end.txt"


def test_run_stdout_shows_the_capacity_state_and_one_alert_per_transition(
    tmp_path: Path,
) -> None:
    config = tmp_path / "p1daemon.toml"
    config.write_text(
        '[buffer]\npath = "state/outbox.db"\n[site]\ntimezone = "Europe/Brussels"\n'
        f'[[meters]]\nname = "house"\nsource = "replay:{CAPTURE}"\nreplay_interval_s = 0\n'
        "capacity_hold_s = 30\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "p1daemon", "run", "--config", str(config), "--stdout"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    states = [r for r in rows if r.get("topic") == "p1/house/capacity"]
    alerts = [r for r in rows if r.get("topic") == "p1/house/alert/capacity"]
    assert len(states) == 103 and all(r["record"] is False for r in states)
    assert all(r["record"] is True for r in alerts)
    shown = [(a["document"]["active"], a["document"]["cleared_by"]) for a in alerts]
    assert shown == [(False, None), (True, None), (False, "quarter_end")]
    assert alerts[1]["document"]["raised_at"] == "2026-11-30T23:50:30+01:00"
    last = states[-1]["document"]
    assert last["rolling"]["average_kw"] == round(32.76 / 11, 4)
    # the raising record follows the reading that raised it
    raised = rows.index(alerts[1])
    before = [r for r in rows[:raised] if r.get("meter") == "house" and "topic" not in r]
    assert before[-1]["timestamp"] == "2026-11-30T23:50:30+01:00"
