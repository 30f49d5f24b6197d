"""What the history's evidence costs per meter-year: one telegram per quarter edge.

Builds a synthetic year (35,040 quarter edges) of a full Dutch DSMR 5 telegram (about
1 kB: tariffs, powers, per-phase voltages, currents and powers, power failure log, gas
on M-Bus) with correct CRCs and realistic changing values, stores it the way the daemon
does (`TelegramRow`s through `HistoryStore.write`, one transaction per day here for
speed) and reports: the raw size, zlib alone, zlib with the per-meter dictionary, and
what the telegram tables take in the SQLite file. Never asserted in tests.

    .venv/bin/python bench/bench_evidence.py
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from p1daemon.frame.crc import crc16_arc  # noqa: E402
from p1daemon.views.history.evidence import compress  # noqa: E402
from p1daemon.views.history.rows import TelegramRow  # noqa: E402
from p1daemon.views.history.store import HistoryStore  # noqa: E402

AMS = ZoneInfo("Europe/Amsterdam")


def telegram(index: int, at: datetime) -> bytes:
    local = at.astimezone(AMS)
    flag = "S" if local.dst() else "W"
    stamp = f"{local:%y%m%d%H%M%S}{flag}"
    load = 100 + (index * 37) % 2900  # W
    solar = (index * 53) % 3100 if 10 <= local.hour < 16 else 0
    wh_in, wh_out = 4_123_456 + index * 61, 1_234_567 + index * 17
    volts = [2300 + (index * k) % 90 for k in (7, 11, 13)]
    gas_at = local.replace(minute=(local.minute // 5) * 5, second=0)
    lines = [
        "/ISK5\\2M550T-1012",
        "",
        "1-3:0.2.8(50)",
        f"0-0:1.0.0({stamp})",
        "0-0:96.1.1(4530303434303037313331363530323136)",
        f"1-0:1.8.1({wh_in / 1000:010.3f}*kWh)",
        f"1-0:1.8.2({wh_in * 1.3 / 1000:010.3f}*kWh)",
        f"1-0:2.8.1({wh_out / 1000:010.3f}*kWh)",
        f"1-0:2.8.2({wh_out * 2.1 / 1000:010.3f}*kWh)",
        f"0-0:96.14.0(000{1 + (local.hour >= 7 and local.hour < 23)})",
        f"1-0:1.7.0({load / 1000:06.3f}*kW)",
        f"1-0:2.7.0({solar / 1000:06.3f}*kW)",
        "0-0:96.7.21(00011)",
        "0-0:96.7.9(00003)",
        "1-0:99.97.0(2)(0-0:96.7.19)(180328132506S)(0000000303*s)(201018093455S)(0000004231*s)",
        "1-0:32.32.0(00002)",
        "1-0:52.32.0(00002)",
        "1-0:72.32.0(00002)",
        "1-0:32.36.0(00000)",
        "1-0:52.36.0(00000)",
        "1-0:72.36.0(00000)",
        "0-0:96.13.0()",
        *(f"1-0:{p}.7.0({v / 10:05.1f}*V)" for p, v in zip((32, 52, 72), volts, strict=True)),
        *(f"1-0:{p}.7.0({load // 690 + i:03d}*A)" for i, p in enumerate((31, 51, 71))),
        *(f"1-0:{p}.7.0({load / 3000:06.3f}*kW)" for p in (21, 41, 61)),
        *(f"1-0:{p}.7.0({solar / 3000:06.3f}*kW)" for p in (22, 42, 62)),
        "0-1:24.1.0(003)",
        "0-1:96.1.0(4730303332353635353133353934363137)",
        f"0-1:24.2.1({gas_at:%y%m%d%H%M%S}{flag})({4123.456 + index * 0.021:09.3f}*m3)",
    ]
    body = ("\r\n".join(lines) + "\r\n!").encode("ascii")
    return body + b"%04X\r\n" % crc16_arc(body)


def main() -> int:
    start = datetime(2026, 1, 1, tzinfo=AMS).astimezone(UTC)
    edges = [start + timedelta(minutes=15 * i) for i in range(35_041)]
    raws = [telegram(i, at) for i, at in enumerate(edges)]
    zdict = raws[0]
    plain = [len(zlib.compress(raw, 9)) for raw in raws]
    with_dict = [len(compress(raw, zdict)) for raw in raws]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        store = HistoryStore.open(path)
        before = store.data_bytes()
        began = time.perf_counter()
        day = 96
        for i in range(0, len(raws), day):
            store.write(
                TelegramRow("house", at, raw)
                for at, raw in zip(edges[i : i + day], raws[i : i + day], strict=True)
            )
        took = time.perf_counter() - began
        after = store.data_bytes()
        store.close()
        db = sqlite3.connect(path)
        count = db.execute("SELECT count(*) FROM telegrams").fetchone()[0]
        db.close()
    mb = 1024 * 1024
    print(f"edge telegrams per meter-year: {count} (one per quarter edge)")
    print(f"raw telegram: {statistics.mean(len(r) for r in raws):.0f} B on average")
    print(f"zlib -9 alone: {statistics.mean(plain):.0f} B  ({sum(plain) / mb:.1f} MB/year)")
    print(
        f"zlib -9, per-meter dictionary: {statistics.mean(with_dict):.0f} B  "
        f"({sum(with_dict) / mb:.1f} MB/year)"
    )
    print(f"in the SQLite file (rows, keys, hashes): {(after - before) / mb:.1f} MB/meter-year")
    print(f"storing a year: {took:.1f} s ({took / count * 1e6:.0f} us per telegram)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
