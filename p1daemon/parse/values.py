"""Decoding the value formats of the P1 companion standards (numbers, TST, octet strings).

Numbers go through `float(text)`, whose shortest round-trip repr reproduces the meter's
decimal exactly (`001234.001` -> 1234.001). Arithmetic that must stay exact (tariff sums,
Wh -> kWh) goes through `Decimal` first so no binary rounding leaks into a register.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from math import isfinite
from zoneinfo import ZoneInfo

SUMMER = timezone(timedelta(hours=2))
WINTER = timezone(timedelta(hours=1))
_LOCAL = ZoneInfo("Europe/Amsterdam")
_FLAGS: dict[str, tzinfo] = {"S": SUMMER, "W": WINTER, "s": SUMMER, "w": WINTER, "": _LOCAL}

# Meters send these instead of "no value": all zeros, the "invalid" 632525252525, the Unix
# epoch on unconfigured M-Bus channels, and 2000-01-01 in empty power-failure log slots.
_PLACEHOLDER_PREFIXES = ("000000", "632525", "700101", "000101")

# Decimal exponents that bring a unit to the kWh / kW the reading document uses. Units are
# compared case-insensitively: meters in the wild send "*kwh", "*wh" and "*WH". Once case is
# ignored, "m" cannot tell milli from mega; it is read as mega, because no P1 standard has a
# milliwatt-hour or milliwatt register and mega is the realistic reading ("*mWh" from a meter
# that lower-cased "MWh"). A unit not in these tables is no unit of that quantity at all: the
# object is kept verbatim in `other` instead of being counted as kWh.
_ENERGY = {"wh": -3, "kwh": 0, "mwh": 3, "gwh": 6}
_POWER = {"w": -3, "kw": 0, "mw": 3, "gw": 6}
# Keyed by the case-folded unit and, so the common case needs no str.lower(), by the
# spellings the standards use.
ENERGY_UNITS: dict[str, int] = {**_ENERGY, "Wh": -3, "kWh": 0, "MWh": 3, "GWh": 6}
POWER_UNITS: dict[str, int] = {**_POWER, "W": -3, "kW": 0, "MW": 3, "GW": 6}


# For the one timestamp that is new in every telegram (0-0:1.0.0): the datetime of its
# minute, by "YYMMDDhhmm" + flag, plus the seconds. Only for the fixed offsets S and W.
_SECOND_STEPS = {f"{second:02d}": timedelta(seconds=second) for second in range(60)}
_FIXED_FLAGS = frozenset(("S", "W", "s", "w"))
_MINUTES: dict[str, datetime | None] = {}
_MINUTES_KEPT = 64


@lru_cache(maxsize=256)
def parse_timestamp(text: str) -> datetime | None:
    """`YYMMDDhhmmssX` to an aware datetime; X=S is +02:00, X=W +01:00, none is local time.

    Cached: power-failure logs, M-Bus capture times and capacity peaks repeat unchanged in
    telegram after telegram (datetimes are immutable, so sharing them is safe). The meter's
    clock changes every telegram, but its minute seldom: that is a datetime made once a
    minute plus a timedelta, instead of six int() and a datetime() per telegram.
    """
    step = _SECOND_STEPS.get(text[10:12])
    if step is None or text[12:] not in _FIXED_FLAGS:
        return _parse_timestamp(text)
    minute = text[:10] + text[12:]
    if minute in _MINUTES:
        start = _MINUTES[minute]
    else:
        if len(_MINUTES) >= _MINUTES_KEPT:
            _MINUTES.clear()
        # Valid at :00 exactly when valid at any second 00-59; placeholders are decided
        # by the date part.
        start = _MINUTES[minute] = _parse_timestamp(text[:10] + "00" + text[12:])
    return None if start is None else start + step


def _parse_timestamp(text: str) -> datetime | None:
    digits = text[:12]
    if len(digits) != 12 or not digits.isdigit() or digits.startswith(_PLACEHOLDER_PREFIXES):
        return None
    zone = _FLAGS.get(text[12:])
    if zone is None:
        return None
    try:
        return datetime(
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            tzinfo=zone,
        )
    except ValueError:
        return None


def split_value(text: str) -> tuple[str, str | None]:
    """`001.234*kWh` -> ("001.234", "kWh"); a bare number has unit None."""
    number, star, unit = text.partition("*")
    return number, (unit if star else None)


def to_float(number: str) -> float | None:
    """A meter's decimal as a float; Python-only spellings like "nan" or "inf" are no value.

    Only a telegram no CRC vouches for can carry them, and a NaN register would poison
    every sum and chart downstream.
    """
    try:
        value = float(number)
    except ValueError:
        return None
    return value if isfinite(value) else None


def to_int(number: str) -> int | None:
    try:
        return int(number)
    except ValueError:
        return None


def split_kilo(text: str, units: dict[str, int]) -> tuple[str, int | None]:
    """`"004321007*wh"` -> ("004321007", -3): the number and its exponent to kWh or kW.

    No unit at all means the register's own unit (kWh, kW): exponent 0. An exponent of
    None means a unit that is not one of `units` (ENERGY_UNITS or POWER_UNITS).
    """
    number, star, unit = text.partition("*")
    if not star:
        return number, 0
    exponent = units.get(unit)
    if exponent is None:
        exponent = units.get(unit.lower())
    return number, exponent


def scale(number: str, exponent: int) -> float | None:
    """`number` times 10**exponent, without binary rounding (Wh -> kWh stays exact)."""
    if exponent == 0:
        return to_float(number)
    try:
        scaled = Decimal(number).scaleb(exponent)
    except InvalidOperation:
        return None
    return float(scaled) if scaled.is_finite() else None


def to_kilo(text: str, units: dict[str, int]) -> float | None:
    """An energy or power value in kWh / kW, whatever prefix or case the meter used.

    None for an unknown unit as for an unreadable number; callers that must keep an object
    with an unknown unit in `other` ask `split_kilo` first.
    """
    number, exponent = split_kilo(text, units)
    return None if exponent is None else scale(number, exponent)


def value_in_kilo(number: str, exponent: int) -> tuple[float | None, Decimal | None]:
    """`scale(number, exponent)`, plus the same value as an exact Decimal for exact sums."""
    try:
        exact = Decimal(number).scaleb(exponent)
    except InvalidOperation:
        return to_float(number) if exponent == 0 else None, None
    if not exact.is_finite():
        return None, None
    return (to_float(number) if exponent == 0 else float(exact)), exact


@lru_cache(maxsize=64)
def decode_octets(text: str) -> str:
    """Hex-encoded octet strings (equipment ids, messages) to text; other text unchanged.

    Cached because a meter repeats the same equipment id in every telegram.
    """
    if not text or len(text) % 2:
        return text
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return text
    try:
        decoded = raw.decode("ascii")
    except UnicodeDecodeError:
        decoded = raw.decode("latin-1")
    if decoded.isprintable():
        return decoded
    return text
