"""From a checked telegram to a `Reading`, keyed on OBIS codes and never on line order.

The telegram is split into `{obis: raw value text}`, then each known OBIS code is taken
out and decoded. Whatever is left is kept verbatim in `other`: a meter firmware with a
new object must never lose data or stop the daemon.

This runs for every telegram of every meter (one a second on DSMR 5), so the hot path
avoids per-line Python work where the C parts of CPython can do it: a well-formed telegram
is split by one regular expression, and every OBIS key the decoder looks up is built once,
at import time.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from math import isfinite
from typing import Any

from p1daemon.frame.events import Frame
from p1daemon.parse.values import (
    ENERGY_UNITS,
    POWER_UNITS,
    decode_octets,
    parse_timestamp,
    scale,
    split_kilo,
    split_value,
    to_float,
    to_int,
    value_in_kilo,
)
from p1daemon.reading.model import (
    Capacity,
    CapacityPeak,
    Current,
    EnergyDirection,
    Limiter,
    MbusDevice,
    PhaseCounts,
    PowerFailureEvent,
    PowerFailures,
    Reading,
    Voltage,
)

# EN 13757-3 medium codes as DSMR uses them on 0-n:24.1.0.
MBUS_KINDS = {
    2: "electricity",
    3: "gas",
    4: "heat",
    6: "warm_water",
    7: "water",
    10: "cooling",
    11: "cooling",
    12: "heat",
    13: "heat_cooling",
}

# Every line a well-formed telegram has after its header: OBIS code, then its value groups.
# ([0-9] rather than \d: the same for this ASCII text, and measurably faster in `re`.)
_OBJECT_LINE = re.compile(r"^([0-9]+-[0-9]+:[0-9]+\.[0-9]+\.[0-9]+)(\([^\r\n]*\))\r?$", re.M)


def split_objects(body: str) -> tuple[str, dict[str, str], list[str]]:
    """Header, `{obis: "(v1)(v2)..."}` and the lines that are no COSEM object at all.

    A line that starts with '(' continues the previous object (the DSMR 2.2/3.0 gas
    reading `0-1:24.3.0(...)...(m3)` puts its value on the next line).
    """
    lines = body.splitlines()
    if not lines:
        return "", {}, []
    after_header = body.find("\n") + 1
    pairs = _OBJECT_LINE.findall(body, after_header) if after_header else []
    # Fast path: when every non-empty line after the header is a plain `OBIS(...)` line,
    # the regex found exactly those lines, and they need none of the repairs below.
    if len(pairs) == len(lines) - lines.count("") - (1 if lines[0] else 0):
        return lines[0][1:], dict(pairs), []
    return lines[0][1:], *_split_lines(lines)


def _split_lines(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    objects: dict[str, str] = {}
    unparsed: list[str] = []
    last: str | None = None
    for line in lines[1:]:
        if not line:
            continue
        if line[0] == "(" and last is not None:
            objects[last] += line
            continue
        paren = line.find("(")
        if paren <= 0 or line[-1] != ")":
            unparsed.append(line)
            last = None
            continue
        obis = line[:paren]
        if obis.endswith("255"):
            obis = _without_current_value_group(obis)
        if obis.count(":") > 1:  # spec-document typos such as "1-0:72:32.0"
            head, _, tail = obis.partition(":")
            obis = head + ":" + tail.replace(":", ".")
        objects[obis] = line[paren:]
        last = obis
    return objects, unparsed


def _without_current_value_group(obis: str) -> str:
    """`1-0:1.8.0*255` and `1-0:21.7.0.255` are 1-0:1.8.0 / 1-0:21.7.0 (F = 255: current value).

    Any other F (e.g. *01, a billing period) is a different, historical value: keep it whole
    so it lands in `other` instead of passing for the current register.
    """
    for separator in ("*", "."):
        head, sep, group_f = obis.rpartition(separator)
        if sep and group_f == "255" and head.count(".") == 2:
            return head
    return obis


def groups(raw: str) -> list[str]:
    """`(a)(b)(c)` -> ["a", "b", "c"]."""
    return raw[1:-1].split(")(")


def _number(text: str) -> float | None:
    """`0230.1*V` -> 230.1 (the unit is implied by the OBIS code)."""
    return to_float(text.partition("*")[0])


def _integer(text: str) -> int | None:
    """`00004*s` -> 4."""
    try:
        return int(text.partition("*")[0])
    except ValueError:
        return None


def _text(text: str) -> str | None:
    return decode_octets(text) or None


def _version(code: str) -> str:
    return f"{code[0]}.{code[1:]}" if len(code) >= 2 else code


# -- OBIS keys, built once --------------------------------------------------------------

# Per direction (1 = import, 2 = export): the OBIS codes of tariffs 1-4, the total, the
# power, and the power of phases 1-3.
_PHASE_POWER = {"1": ("21", "41", "61"), "2": ("22", "42", "62")}
_ENERGY_KEYS = {
    d: (
        tuple(f"1-0:{d}.8.{t}" for t in "1234"),
        f"1-0:{d}.8.0",
        f"1-0:{d}.7.0",
        tuple(f"1-0:{c}.7.0" for c in _PHASE_POWER[d]),
    )
    for d in "12"
}
_VOLTAGE_KEYS = (("l1_v", "1-0:32.7.0"), ("l2_v", "1-0:52.7.0"), ("l3_v", "1-0:72.7.0"))
_CURRENT_KEYS = (("l1_a", "1-0:31.7.0"), ("l2_a", "1-0:51.7.0"), ("l3_a", "1-0:71.7.0"))
_SAG_KEYS = (("l1", "1-0:32.32.0"), ("l2", "1-0:52.32.0"), ("l3", "1-0:72.32.0"))
_SWELL_KEYS = (("l1", "1-0:32.36.0"), ("l2", "1-0:52.36.0"), ("l3", "1-0:72.36.0"))


class _MbusKeys:
    __slots__ = (
        "device_type",
        "ident",
        "ident_be",
        "keys",
        "legacy",
        "prefix",
        "readings",
        "valve",
    )

    def __init__(self, channel: int) -> None:
        self.prefix = p = f"0-{channel}:"
        self.device_type = p + "24.1.0"
        self.ident = p + "96.1.0"
        self.ident_be = p + "96.1.1"
        # 24.2.1 (DSMR 4/5), 24.2.3 (Belgian, not temperature corrected), then the rest.
        self.readings = (p + "24.2.1", p + "24.2.3", p + "24.2.2", p + "24.2.4")
        self.legacy = p + "24.3.0"
        self.valve = p + "24.4.0"
        # Every key above: a channel with none of them has no device and nothing to pop.
        self.keys = frozenset(
            (self.device_type, self.ident, self.ident_be, *self.readings, self.legacy, self.valve)
        )


_MBUS_KEYS = tuple(_MbusKeys(channel) for channel in range(1, 5))


def _take(objects: dict[str, str], obis: str) -> str | None:
    raw = objects.pop(obis, None)
    return None if raw is None else raw[1:-1]


# -- decoding -------------------------------------------------------------------------
#
# Every part of the document is built as a dict holding all of its fields, in field order
# and under their JSON names, and wrapped with `Doc.of` (no copy, no second check): the
# values below are already what the document holds (floats are finite, times aware).


def _kilo(objects: dict[str, str], obis: str, units: dict[str, int]) -> float | None:
    """The single-value object `obis` in kWh / kW; in an unknown unit it stays in `other`."""
    raw = objects.pop(obis, None)
    if raw is None:
        return None
    number, exponent = split_kilo(raw[1:-1], units)
    if exponent is None:
        objects[obis] = raw  # never counted as kWh: kept verbatim
        return None
    return scale(number, exponent)


def _energy(objects: dict[str, str], direction: str) -> EnergyDirection:
    """Registers of one direction: 1 = import (1.8.x, 1.7.0), 2 = export (2.8.x, 2.7.0).

    Hot: twice per telegram. The common spellings ("*kWh", "*kW") are looked up in place;
    anything else goes through `split_kilo` (case, prefixes, unknown units).
    """
    tariff_keys, total_key, power_key, phase_keys = _ENERGY_KEYS[direction]
    pop = objects.pop
    tariffs: list[float | None] = []
    exact: list[Decimal | str | None] = []
    for obis in tariff_keys:
        raw = pop(obis, None)
        if raw is None:
            tariffs.append(None)
            continue
        number, exponent = split_kilo(raw[1:-1], ENERGY_UNITS)
        if exponent is None:
            objects[obis] = raw  # an unknown unit: kept verbatim, never taken as kWh
            tariffs.append(None)
            exact.append(None)
        elif not exponent and _is_plain(number):
            # What meters send (003432.827 kWh): a float as is; the text is the exact value.
            tariffs.append(float(number))
            exact.append(number)
        else:
            value, tariff_exact = value_in_kilo(number, exponent)
            tariffs.append(value)
            exact.append(tariff_exact)
    if total_key in objects:
        total = _kilo(objects, total_key, ENERGY_UNITS)
    elif exact:
        # One unreadable tariff register makes the sum unknown, not smaller.
        known = [value for value in exact if value is not None]
        total = _exact_sum(known) if len(known) == len(exact) else None
    else:
        total = None
    powers: list[float | None] = []
    for obis in (power_key, *phase_keys):
        raw = pop(obis, None)
        if raw is None:
            powers.append(None)
            continue
        number, star, unit = raw[1:-1].partition("*")
        if unit == "kW" or not star:  # what every standard writes: nothing to scale
            powers.append(to_float(number))
        else:
            objects[obis] = raw
            powers.append(_kilo(objects, obis, POWER_UNITS))
    t1, t2, t3, t4 = tariffs
    power, l1, l2, l3 = powers
    return EnergyDirection.of(
        {
            "t1_kwh": t1,
            "t2_kwh": t2,
            "t3_kwh": t3,
            "t4_kwh": t4,
            "total_kwh": total,
            "power_kw": power,
            "l1_kw": l1,
            "l2_kw": l2,
            "l3_kw": l3,
        }
    )


def _is_plain(number: str) -> bool:
    """Digits with at most one '.', at most 20 characters: a decimal as meters write it.

    Such a number is exact as a Decimal (well within its 28 digits) and finite as a float.
    """
    return len(number) <= 20 and number.replace(".", "", 1).isdigit()


def _fixed_sum(numbers: list[str]) -> float | None:
    """The exact sum of plain numbers with the same count of decimals, else None.

    Summed as the integers of their digits and turned into a float once, from the
    decimal text: the same float as from the Decimal sum (both are the exact decimal
    rounded to the nearest float), without making four Decimals per direction.
    """
    first = numbers[0]
    point = first.find(".")
    decimals = len(first) - point - 1 if point >= 0 else 0
    total = 0
    for number in numbers:
        point = number.find(".")
        if point < 0:
            if decimals:
                return None
            total += int(number)
        elif len(number) - point - 1 != decimals:
            return None
        else:
            total += int(number[:point] + number[point + 1 :])
    return float(f"{total}e-{decimals}")


def _exact_sum(values: list[Decimal | str]) -> float | None:
    """Sum of the tariffs without binary rounding: 0.1 + 0.2 kWh is 0.3 kWh.

    A str is a plain number (`_is_plain`), a Decimal anything else that was readable.
    """
    if all(type(value) is str for value in values):
        fixed = _fixed_sum(values)  # type: ignore[arg-type]
        if fixed is not None:
            return fixed
    try:
        total = float(sum((Decimal(value) for value in values), Decimal(0)))
    except InvalidOperation:
        return None
    return total if isfinite(total) else None


def _numbers(objects: dict[str, str], keys: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, obis in keys:
        raw = objects.pop(obis, None)
        out[field] = None if raw is None else _number(raw[1:-1])
    return out


def _integers(objects: dict[str, str], keys: tuple[tuple[str, str], ...]) -> PhaseCounts:
    out: dict[str, Any] = {}
    for field, obis in keys:
        raw = objects.pop(obis, None)
        out[field] = None if raw is None else _integer(raw[1:-1])
    return PhaseCounts.of(out)


def _power_failures(objects: dict[str, str]) -> PowerFailures:
    short = _take(objects, "0-0:96.7.21")
    long = _take(objects, "0-0:96.7.9")
    log: list[PowerFailureEvent] = []
    raw = objects.pop("1-0:99.97.0", None)
    if raw is not None:
        log = [
            PowerFailureEvent.of({"end": end, "duration_s": duration})
            for end, duration in _failure_log(raw)
        ]
    return PowerFailures.of(
        {
            "short": None if short is None else _integer(short),
            "long": None if long is None else _integer(long),
            "log": log,
        }
    )


_CAPACITY_KEYS = frozenset(("1-0:1.4.0", "1-0:1.6.0", "0-0:98.1.0"))


@lru_cache(maxsize=16)
def _failure_log(raw: str) -> tuple[tuple[Any, int | None], ...]:
    """(end, duration) of each entry of `(count)(0-0:96.7.19)(end)(duration*s)...`.

    Cached: the log changes only when the power does, so a meter repeats it unchanged in
    telegram after telegram (the values are immutable; the documents are made anew).
    """
    pairs = groups(raw)[2:]
    return tuple(
        (parse_timestamp(pairs[i]), _integer(pairs[i + 1])) for i in range(0, len(pairs) - 1, 2)
    )


def _capacity(objects: dict[str, str]) -> Capacity | None:
    if objects.keys().isdisjoint(_CAPACITY_KEYS):  # no Belgian capacity data: nothing to do
        return None
    average = _kilo(objects, "1-0:1.4.0", POWER_UNITS)
    peak_raw = objects.pop("1-0:1.6.0", None)
    history_raw = objects.get("0-0:98.1.0")
    history: list[CapacityPeak] = []
    if history_raw is not None:
        parts = groups(history_raw)
        # Belgian layout: (N)(1-0:1.6.0)(1-0:1.6.0) then N x (month start)(peak time)(kW).
        # Other countries reuse 98.1.0 for billing profiles of another shape: keep those raw.
        if len(parts) >= 3 and parts[1] == "1-0:1.6.0":
            entries = parts[3:]
            unknown_unit = False
            for i in range(0, len(entries) - 2, 3):
                at = parse_timestamp(entries[i + 1])
                number, exponent = split_kilo(entries[i + 2], POWER_UNITS)
                unknown_unit = unknown_unit or exponent is None
                history.append(
                    CapacityPeak.of(
                        {
                            "month": parse_timestamp(entries[i]),
                            "at": at,
                            # a placeholder peak time means no peak, not a 0 kW one
                            "max_kw": scale(number, exponent)
                            if at and exponent is not None
                            else None,
                        }
                    )
                )
            if not unknown_unit:  # else the whole object also stays verbatim in `other`
                del objects["0-0:98.1.0"]
    if average is None and peak_raw is None and not history:
        return None
    month_max_kw = month_max_at = None
    if peak_raw is not None:
        peak = groups(peak_raw)
        if len(peak) == 2:
            month_max_at = parse_timestamp(peak[0])
        number, exponent = split_kilo(peak[1] if len(peak) == 2 else peak[0], POWER_UNITS)
        if exponent is None:
            objects["1-0:1.6.0"] = peak_raw  # an unknown unit: kept verbatim
        else:
            month_max_kw = scale(number, exponent)
    return Capacity.of(
        {
            "average_demand_kw": average,
            "month_max_kw": month_max_kw,
            "month_max_at": month_max_at,
            "history": history,
        }
    )


def _mbus_reading(
    time_text: str | None, number: str, unit: str | None
) -> tuple[float | None, str | None, Any]:
    """(value, unit, timestamp) of an M-Bus reading, or no reading for a placeholder.

    A zero is a placeholder when it has no unit (`(700101010000W)(00000000)`) or a placeholder
    time (`(000000000000)...(m3)(00000.000)`); with a real time and unit it is a real zero,
    e.g. a newly fitted gas meter.
    """
    timestamp = parse_timestamp(time_text) if time_text is not None else None
    if not number.strip("0.") and (unit is None or (time_text is not None and timestamp is None)):
        return None, None, timestamp
    return to_float(number), unit, timestamp


def _mbus_value(parts: list[str]) -> tuple[float | None, str | None, Any]:
    """`(TST)(value*unit)` as DSMR 4+ sends it on 24.2.x."""
    number, unit = split_value(parts[-1])
    return _mbus_reading(parts[0] if len(parts) > 1 else None, number, unit)


def _mbus(objects: dict[str, str]) -> list[MbusDevice]:
    devices = []
    pop = objects.pop
    present = objects.keys()
    for channel, keys in enumerate(_MBUS_KEYS, start=1):
        if present.isdisjoint(keys.keys):  # the common case: nothing on this channel
            continue
        raw_type = pop(keys.device_type, None)
        device_type = None if raw_type is None else _integer(raw_type[1:-1])
        ident = _take(objects, keys.ident)
        if ident is None:
            ident = _take(objects, keys.ident_be)
        value = unit = timestamp = None
        found_value = False
        for obis in keys.readings:
            raw = pop(obis, None)
            if raw is not None and not found_value:
                value, unit, timestamp = _mbus_value(groups(raw))
                found_value = True
        legacy = pop(keys.legacy, None)
        if legacy is not None and not found_value:
            # (TST)(status)(period)(count)(obis)(unit)(value): DSMR 2.2/3.0 profile form.
            parts = groups(legacy.replace("\r", "").replace("\n", ""))
            if len(parts) >= 7:
                value, unit, timestamp = _mbus_reading(parts[0], parts[6], parts[5] or None)
            found_value = True
        raw_valve = pop(keys.valve, None)
        if device_type is None and ident is None and not found_value:
            continue
        devices.append(
            MbusDevice.of(
                {
                    "channel": channel,
                    "device_type": device_type,
                    "kind": "unknown"
                    if device_type is None
                    else MBUS_KINDS.get(device_type, "unknown"),
                    "equipment_id": None if ident is None else _text(ident),
                    "value": value,
                    "unit": unit,
                    "timestamp": timestamp,
                    "valve": None if raw_valve is None else _integer(raw_valve[1:-1]),
                }
            )
        )
    return devices


def _dsmr_version(objects: dict[str, str], has_crc: bool) -> tuple[str | None, str | None]:
    code = _take(objects, "1-3:0.2.8")
    if code:
        return _version(code), code
    belgian = _take(objects, "0-0:96.1.4")
    if belgian:
        return _version(belgian[:2]), belgian
    # DSMR 2.2/3.0 never declare their version; they are the meters that send no CRC.
    if not has_crc and ("0-0:96.14.0" in objects or "0-0:96.1.1" in objects):
        return "2.2", None
    return None, None


def parse_telegram(frame: Frame) -> Reading:
    """Decode one checked telegram into the reading document."""
    body = frame.body[:-1].decode("ascii", "replace")  # without the closing '!'
    header, objects, unparsed = split_objects(body)
    dsmr_version, version_code = _dsmr_version(objects, frame.crc is not None)
    equipment = _take(objects, "0-0:96.1.1")
    if equipment is None:
        equipment = _take(objects, "0-0:96.1.0")
    if equipment is None:
        # Luxembourg Smarty meters identify themselves by their logical device name only.
        equipment = _take(objects, "0-0:42.0.0")
    voltage = Voltage.of(_numbers(objects, _VOLTAGE_KEYS))
    current = Current.of(_numbers(objects, _CURRENT_KEYS))
    limiter = _take(objects, "0-0:17.0.0")
    limiter_doc = None
    if limiter is not None:
        number, unit = split_value(limiter)
        limiter_doc = Limiter.of({"value": to_float(number), "unit": unit})
    timestamp = _take(objects, "0-0:1.0.0")
    tariff = _take(objects, "0-0:96.14.0")
    # In field order: the dict is the document's `__dict__` (see p1daemon/reading/doc.py).
    return Reading.of(
        {
            "equipment_id": None if equipment is None else _text(equipment),
            "header": header,
            "manufacturer": header[:3] if len(header) >= 3 else None,
            "dsmr_version": dsmr_version,
            "version_code": version_code,
            "timestamp": None if timestamp is None else parse_timestamp(timestamp),
            "tariff": None if tariff is None else to_int(tariff),
            "import": _energy(objects, "1"),
            "export": _energy(objects, "2"),
            "voltage": voltage,
            "current": current,
            "voltage_sags": _integers(objects, _SAG_KEYS),
            "voltage_swells": _integers(objects, _SWELL_KEYS),
            "power_failures": _power_failures(objects),
            "message": _optional(objects, "0-0:96.13.0"),
            "message_code": _optional(objects, "0-0:96.13.1"),
            "breaker_state": _optional_int(objects, "0-0:96.3.10"),
            "limiter": limiter_doc,
            "fuse_threshold_a": _optional_number(objects, "1-0:31.4.0"),
            "mbus": _mbus(objects),
            "capacity": _capacity(objects),
            "other": objects,
            "unparsed": unparsed,
        }
    )


def _optional(objects: dict[str, str], obis: str) -> str | None:
    value = _take(objects, obis)
    return None if value is None else _text(value)


def _optional_int(objects: dict[str, str], obis: str) -> int | None:
    value = _take(objects, obis)
    return None if value is None else _integer(value)


def _optional_number(objects: dict[str, str], obis: str) -> float | None:
    value = _take(objects, obis)
    return None if value is None else _number(value)
