"""Register sets in one compact text column: `1234.567,2345.678,,,3580.245,...`.

Fixed order (import t1..t4, total, then export), empty for a register the meter does not
send. Text keeps the meter's decimals exactly (a REAL column would not) and costs about
what the digits cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from p1daemon.views.energy.samples import ALL_KEYS, Key


def encode(values: Mapping[Key, Decimal]) -> str:
    return ",".join("" if key not in values else _text(values[key]) for key in ALL_KEYS)


def decode(text: str | None) -> dict[Key, Decimal]:
    if not text:
        return {}
    out = {}
    for key, part in zip(ALL_KEYS, text.split(","), strict=False):
        if part:
            out[key] = Decimal(part)
    return out


def _text(value: Decimal) -> str:
    text = format(value, "f")
    return text
