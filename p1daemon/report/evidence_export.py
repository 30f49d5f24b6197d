"""`p1daemon report --evidence DIR`: one metering point's period, ready for an auditor.

DIR gets:

- `report.json`: the period report of the point (one JSON document, as `--format
  json` writes it, by day); `statement.json` too when `--statement` is given;
- `telegrams/<local time>.p1`: every telegram the period's quarter rows start or end
  at, byte for byte as the meter sent it (CRC included; a Smarty meter's plaintext);
- `manifest.json`: the SHA-256 of every file, and per telegram what the history
  booked from it (meter time, equipment id, the registers in kWh, as `p1daemon parse`
  prints them), per quarter row its status, its two telegram files and its chain hash,
  plus the chain head and the hash the period's first row links to.

So an auditor needs nothing but `p1daemon parse telegrams/*` and `sha256sum` to check
that every number rests on meter telegrams with valid CRCs (tests/test_history_evidence
does exactly that in a fresh process).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from p1daemon.views.energy.samples import REGISTERS
from p1daemon.views.history import chain
from p1daemon.views.history.evidence import EvidenceReader
from p1daemon.views.history.registers import decode
from p1daemon.views.history.store import HistoryStore

FORMAT = "p1daemon-evidence/1"


def _iso(epoch: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch, UTC).astimezone(zone).isoformat(timespec="seconds")


def _name(epoch: float, zone: ZoneInfo) -> str:
    moment = datetime.fromtimestamp(epoch, UTC).astimezone(zone)
    return f"{moment:%Y%m%dT%H%M%S%z}.p1"


def _registers(text: str | None) -> dict[str, dict[str, float | None]]:
    values = decode(text)
    return {
        direction: {
            f"{register}_kwh": (
                float(values[(direction, register)]) if (direction, register) in values else None
            )
            for register in REGISTERS
        }
        for direction in ("import", "export")
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_evidence(
    store: HistoryStore,
    zone: ZoneInfo,
    meter: str,
    start: datetime,
    end: datetime,
    directory: Path,
    documents: dict[str, Callable[[IO[str]], None]],
) -> dict[str, Any]:
    """Write DIR as described above; `documents`: file name -> writer of its text (the
    report, the statement). Returns the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "telegrams").mkdir(exist_ok=True)
    for name, write in documents.items():
        with (directory / name).open("w", encoding="utf-8", newline="") as handle:
            write(handle)
    db = store.connection
    reader = EvidenceReader(db)
    low, high = int(start.timestamp()), int(end.timestamp())
    telegrams: dict[float, dict[str, Any]] = {}
    quarters = []
    missing = 0
    for row in chain.rows(db, meter, low, high):
        files: dict[str, str | None] = {}
        for which, at, reg in (
            ("first", row.first_at, row.first_reg),
            ("last", row.last_at, row.last_reg),
        ):
            files[which] = None
            if at is None:
                continue
            entry = telegrams.get(at)
            if entry is None:
                stored = reader.get(meter, at)
                if stored is None or stored.raw is None:
                    missing += 1
                    continue
                name = "telegrams/" + _name(at, zone)
                (directory / name).write_bytes(stored.raw)
                entry = telegrams[at] = {
                    "file": name,
                    "sha256": hashlib.sha256(stored.raw).hexdigest(),
                    "timestamp": _iso(at, zone),
                    "equipment_id": row.equipment_id,
                    **_registers(reg),
                }
            files[which] = entry["file"]
        quarters.append(
            {
                "start": _iso(row.start, zone),
                "status": row.status,
                "first": files["first"],
                "last": files["last"],
                "hash": row.hash,
            }
        )
    points = [p for p in store.points() if p.meter == meter]
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "meter": meter,
        "role": points[-1].role if points else None,
        "ean": points[-1].ean if points else None,
        "equipment_ids": [p.equipment_id for p in points if p.equipment_id is not None],
        "start": start.astimezone(zone).isoformat(timespec="seconds"),
        "end": end.astimezone(zone).isoformat(timespec="seconds"),
        "chain_head": chain.head(db, meter),
        "chain_anchor": chain.previous_hash(db, meter, low) if quarters else None,
        "missing_telegrams": missing,
        "files": {name: _sha(directory / name) for name in sorted(documents)},
        "telegrams": [telegrams[at] for at in sorted(telegrams)],
        "quarters": quarters,
    }
    (directory / "manifest.json").write_text(
        json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return manifest
