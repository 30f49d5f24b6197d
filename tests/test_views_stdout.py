"""`p1daemon run --stdout` shows the views: quarter, day and connection documents are
printed between the readings, while every reading's line stays exactly its MQTT payload.

The captures are written here (DSMR 5, one telegram every 10 s across the 12:15
quarter-hour boundary, registers rising by whole Wh) and replayed by a temporary
configuration, as the demo does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from p1daemon.frame.crc import crc16_arc

REPO = Path(__file__).resolve().parents[1]
EANS = {"house": "871685900012345674", "carport": "871685900012345681"}


def timed_telegram(minute: int, second: int, import_wh: int, equipment: str) -> bytes:
    body = (
        "/ISK5\\2M550T-1012\r\n\r\n"
        "1-3:0.2.8(50)\r\n"
        f"0-0:1.0.0(240621{12:02d}{minute:02d}{second:02d}S)\r\n"
        f"0-0:96.1.1({equipment.encode().hex().upper()})\r\n"
        f"1-0:1.8.1({import_wh / 1000:010.3f}*kWh)\r\n"
        "1-0:1.8.2(000000.000*kWh)\r\n"
        "1-0:2.8.1(000001.500*kWh)\r\n"
        "1-0:2.8.2(000000.000*kWh)\r\n"
        "0-0:96.14.0(0001)\r\n"
        "1-0:1.7.0(00.360*kW)\r\n"
        "1-0:2.7.0(00.000*kW)\r\n"
        "!"
    ).encode()
    return body + f"{crc16_arc(body):04X}\r\n".encode()


def capture(path: Path, equipment: str, start_wh: int) -> None:
    """12:14:00 to 12:16:00, every 10 s, 1 Wh per telegram (360 W)."""
    steps = [(14 + i // 6, (i % 6) * 10) for i in range(13)]
    path.write_bytes(
        b"".join(timed_telegram(m, s, start_wh + i, equipment) for i, (m, s) in enumerate(steps))
    )


def test_run_stdout_prints_the_quarter_day_and_connection_documents(tmp_path: Path) -> None:
    capture(tmp_path / "house.txt", "E-HOUSE", 1_000_000)
    capture(tmp_path / "carport.txt", "E-CAR", 2_000_000)
    config = tmp_path / "p1daemon.toml"
    text = '[buffer]\npath = "state/outbox.db"\n[site]\ntopology = "parallel"\n'
    for name in ("house", "carport"):
        text += (
            f'[[meters]]\nname = "{name}"\n'
            f'role = "{"primary" if name == "house" else "secondary"}"\n'
            f'ean = "{EANS[name]}"\nsource = "replay:{name}.txt"\nreplay_interval_s = 0\n'
        )
    config.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "p1daemon", "run", "--config", str(config), "--stdout"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    documents = [r for r in rows if "topic" in r]
    readings = [r for r in rows if "topic" not in r]
    assert [r["meter"] for r in readings].count("house") == 13
    assert [r["meter"] for r in readings].count("carport") == 13
    assert all(set(r) >= {"meter", "import", "export", "received_at"} for r in readings)

    for meter in ("house", "carport"):
        quarters = [d for d in documents if d["topic"] == f"p1/{meter}/quarter"]
        assert len(quarters) == 1 and quarters[0]["record"] is True
        quarter = quarters[0]["document"]
        assert quarter["start"] == "2024-06-21T12:00:00+02:00"
        assert quarter["start_missing"] is True  # the capture begins at 12:14:00
        assert quarter["ean"] == EANS[meter]
        assert quarter["import"]["total_kwh"] * 1000 == 6  # 12:14:00 .. 12:15:00
        days = [d for d in documents if d["topic"] == f"p1/{meter}/day"]
        assert len(days) == 1 and days[0]["record"] is True
        assert days[0]["document"]["quarters"] == 1
    connections = [d for d in documents if d["topic"] == "p1/site/connection"]
    assert connections and all(d["record"] is False for d in connections)
    assert {m["meter"] for m in connections[-1]["document"]["points"]} == {"house", "carport"}

    # A record follows the reading that closed its quarter: the first reading at 12:15.
    first_house_quarter = next(
        i for i, r in enumerate(rows) if r.get("topic") == "p1/house/quarter"
    )
    before = [r for r in rows[:first_house_quarter] if r.get("meter") == "house"]
    assert before[-1]["timestamp"] == "2024-06-21T12:15:00+02:00"
    # --stdout saves no state beside the outbox (a running daemon's files stay its own).
    assert not (tmp_path / "state").exists()
