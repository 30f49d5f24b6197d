"""From a checked telegram to a `Reading`, keyed on OBIS codes and never on line order.

The telegram is split into `{obis: raw value text}` with plain string operations (the
cheapest thing CPython does), then each known OBIS code is taken out and decoded.
Whatever is left is kept verbatim in `other`: a meter firmware with a new object must
never lose data or stop the daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from p1daemon.frame.events import Frame
from p1daemon.parse.values import (
    decode_octets,
    exact_sum,
    kilo_text,
    parse_timestamp,
    split_value,
    to_float,
    to_int,
    to_kilo,
)
from p1daemon.reading.model import Reading

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

_TARIFFS = ("1", "2", "3", "4")
_PHASES = (("l1", "21", "22", "32", "31"), ("l2", "41", "42", "52", "51"), ("l3", "61", "62", "72", "71"))


def split_objects(body: str) -> tuple[str, dict[str, str], list[str]]:
    """Header, `{obis: "(v1)(v2)..."}` and the lines that are no COSEM object at all.

    A line that starts with '(' continues the previous object (the DSMR 2.2/3.0 gas
    reading `0-1:24.3.0(...)...(m3)` puts its value on the next line).
    """
    lines = body.splitlines()
    header = lines[0][1:] if lines else ""
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
        if "*" in obis:  # "1-0:1.8.0*255": value group F, "current" - same object
            obis = obis.partition("*")[0]
        if obis.count(":") > 1:  # spec-document typos such as "1-0:72:32.0"
            head, _, tail = obis.partition(":")
            obis = head + ":" + tail.replace(":", ".")
        objects[obis] = line[paren:]
        last = obis
    return header, objects, unparsed


def groups(raw: str) -> list[str]:
    """"(a)(b)(c)" -> ["a", "b", "c"]."""
    return raw[1:-1].split(")(")


def _single(raw: str) -> str:
    return raw[1:-1]


class _Telegram:
    """Decoding state for one telegram; consumes known objects out of `objects`."""

    def __init__(self, objects: dict[str, str]) -> None:
        self.objects = objects

    def take(self, obis: str) -> str | None:
        raw = self.objects.pop(obis, None)
        return None if raw is None else _single(raw)

    def take_as(self, obis: str, convert: Callable[[str], Any]) -> Any:
        value = self.take(obis)
        return None if value is None else convert(value)


def _number(text: str) -> float | None:
    return to_float(split_value(text)[0])


def _integer(text: str) -> int | None:
    return to_int(split_value(text)[0])


def _text(text: str) -> str | None:
    return decode_octets(text) or None


def _version(code: str) -> str:
    return f"{code[0]}.{code[1:]}" if len(code) >= 2 else code


def _energy(t: _Telegram, direction: str) -> dict[str, Any]:
    """Registers of one direction: 1 = import (1.8.x, 1.7.0), 2 = export (2.8.x, 2.7.0)."""
    out: dict[str, Any] = {}
    tariff_texts: list[str] = []
    for tariff in _TARIFFS:
        raw = t.take(f"1-0:{direction}.8.{tariff}")
        if raw is None:
            continue
        out[f"t{tariff}_kwh"] = to_kilo(raw)
        exact = kilo_text(raw)
        if exact is not None:
            tariff_texts.append(exact)
    total = t.take(f"1-0:{direction}.8.0")
    if total is not None:
        out["total_kwh"] = to_kilo(total)
    elif tariff_texts:
        out["total_kwh"] = exact_sum(tariff_texts)
    out["power_kw"] = t.take_as(f"1-0:{direction}.7.0", to_kilo)
    for phase, import_code, export_code, _, _ in _PHASES:
        code = import_code if direction == "1" else export_code
        out[f"{phase}_kw"] = t.take_as(f"1-0:{code}.7.0", to_kilo)
    return out


def _phases(t: _Telegram) -> tuple[dict[str, Any], dict[str, Any]]:
    voltage: dict[str, Any] = {}
    current: dict[str, Any] = {}
    for phase, _, _, volt_code, amp_code in _PHASES:
        voltage[f"{phase}_v"] = t.take_as(f"1-0:{volt_code}.7.0", _number)
        current[f"{phase}_a"] = t.take_as(f"1-0:{amp_code}.7.0", _number)
    return voltage, current


def _phase_counts(t: _Telegram, kind: str) -> dict[str, Any]:
    return {
        phase: t.take_as(f"1-0:{volt_code}.{kind}.0", _integer)
        for phase, _, _, volt_code, _ in _PHASES
    }


def _power_failures(t: _Telegram) -> dict[str, Any]:
    out: dict[str, Any] = {
        "short": t.take_as("0-0:96.7.21", _integer),
        "long": t.take_as("0-0:96.7.9", _integer),
        "log": [],
    }
    raw = t.objects.pop("1-0:99.97.0", None)
    if raw is not None:
        parts = groups(raw)
        # (count)(0-0:96.7.19)(end)(duration*s)...
        pairs = parts[2:]
        out["log"] = [
            {"end": parse_timestamp(pairs[i]), "duration_s": _integer(pairs[i + 1])}
            for i in range(0, len(pairs) - 1, 2)
        ]
    return out


def _capacity(t: _Telegram) -> dict[str, Any] | None:
    average = t.take_as("1-0:1.4.0", to_kilo)
    peak_raw = t.objects.pop("1-0:1.6.0", None)
    history_raw = t.objects.get("0-0:98.1.0")
    history: list[dict[str, Any]] = []
    if history_raw is not None:
        parts = groups(history_raw)
        # Belgian layout: (N)(1-0:1.6.0)(1-0:1.6.0) then N x (month start)(peak time)(kW).
        # Other countries reuse 98.1.0 for billing profiles of another shape: keep those raw.
        if len(parts) >= 3 and parts[1] == "1-0:1.6.0":
            del t.objects["0-0:98.1.0"]
            entries = parts[3:]
            history = [
                {
                    "month": parse_timestamp(entries[i]),
                    "at": parse_timestamp(entries[i + 1]),
                    "max_kw": to_kilo(entries[i + 2]) if parse_timestamp(entries[i + 1]) else None,
                }
                for i in range(0, len(entries) - 2, 3)
            ]
    if average is None and peak_raw is None and not history:
        return None
    month_max_kw = month_max_at = None
    if peak_raw is not None:
        peak = groups(peak_raw)
        if len(peak) == 2:
            month_max_at = parse_timestamp(peak[0])
            month_max_kw = to_kilo(peak[1])
        else:
            month_max_kw = to_kilo(peak[0])
    return {
        "average_demand_kw": average,
        "month_max_kw": month_max_kw,
        "month_max_at": month_max_at,
        "history": history,
    }


def _mbus_value(parts: list[str]) -> tuple[float | None, str | None, Any]:
    """`(TST)(value*unit)`; the placeholder `00000000` without unit means no reading."""
    timestamp = parse_timestamp(parts[0]) if len(parts) > 1 else None
    number, unit = split_value(parts[-1])
    if unit is None and not number.strip("0."):
        return None, None, timestamp
    return to_float(number), unit, timestamp


def _mbus(t: _Telegram) -> list[dict[str, Any]]:
    devices = []
    for channel in range(1, 5):
        prefix = f"0-{channel}:"
        device_type = t.take_as(prefix + "24.1.0", _integer)
        ident = t.take(prefix + "96.1.0")
        if ident is None:
            ident = t.take(prefix + "96.1.1")
        value = unit = timestamp = None
        found_value = False
        for code in ("24.2.1", "24.2.3", "24.2.2", "24.2.4"):
            raw = t.objects.pop(prefix + code, None)
            if raw is not None and not found_value:
                value, unit, timestamp = _mbus_value(groups(raw))
                found_value = True
        legacy = t.objects.pop(prefix + "24.3.0", None)
        if legacy is not None and not found_value:
            # (TST)(status)(period)(count)(obis)(unit)(value): DSMR 2.2/3.0 profile form.
            parts = groups(legacy.replace("\r", "").replace("\n", ""))
            if len(parts) >= 7:
                timestamp = parse_timestamp(parts[0])
                number = parts[6]
                value = to_float(number) if number.strip("0.") else None
                unit = parts[5] or None if value is not None else None
            found_value = True
        valve = t.take_as(prefix + "24.4.0", _integer)
        if device_type is None and ident is None and not found_value:
            continue
        devices.append(
            {
                "channel": channel,
                "device_type": device_type,
                "kind": MBUS_KINDS.get(device_type, "unknown") if device_type is not None else "unknown",
                "equipment_id": _text(ident) if ident is not None else None,
                "value": value,
                "unit": unit,
                "timestamp": timestamp,
                "valve": valve,
            }
        )
    return devices


def _dsmr_version(t: _Telegram, has_crc: bool) -> tuple[str | None, str | None]:
    code = t.take("1-3:0.2.8")
    if code:
        return _version(code), code
    belgian = t.take("0-0:96.1.4")
    if belgian:
        return _version(belgian[:2]), belgian
    # DSMR 2.2/3.0 never declare their version; they are the meters that send no CRC.
    if not has_crc and ("0-0:96.14.0" in t.objects or "0-0:96.1.1" in t.objects):
        return "2.2", None
    return None, None


def reading_fields(frame: Frame) -> dict[str, Any]:
    """The telegram as a plain dict in the shape of `Reading` (by alias)."""
    body = frame.body[:-1].decode("ascii", "replace")  # without the closing '!'
    header, objects, unparsed = split_objects(body)
    t = _Telegram(objects)
    dsmr_version, version_code = _dsmr_version(t, frame.crc is not None)
    equipment = t.take("0-0:96.1.1")
    if equipment is None:
        equipment = t.take("0-0:96.1.0")
    voltage, current = _phases(t)
    limiter = t.take("0-0:17.0.0")
    limiter_doc = None
    if limiter is not None:
        number, unit = split_value(limiter)
        limiter_doc = {"value": to_float(number), "unit": unit}
    fields: dict[str, Any] = {
        "equipment_id": _text(equipment) if equipment is not None else None,
        "header": header,
        "manufacturer": header[:3] if len(header) >= 3 else None,
        "dsmr_version": dsmr_version,
        "version_code": version_code,
        "timestamp": t.take_as("0-0:1.0.0", parse_timestamp),
        "tariff": t.take_as("0-0:96.14.0", to_int),
        "import": _energy(t, "1"),
        "export": _energy(t, "2"),
        "voltage": voltage,
        "current": current,
        "voltage_sags": _phase_counts(t, "32"),
        "voltage_swells": _phase_counts(t, "36"),
        "power_failures": _power_failures(t),
        "message": t.take_as("0-0:96.13.0", _text),
        "message_code": t.take_as("0-0:96.13.1", _text),
        "breaker_state": t.take_as("0-0:96.3.10", _integer),
        "limiter": limiter_doc,
        "fuse_threshold_a": t.take_as("1-0:31.4.0", _number),
        "mbus": _mbus(t),
        "capacity": _capacity(t),
    }
    fields["other"] = t.objects
    fields["unparsed"] = unparsed
    return fields


def parse_telegram(frame: Frame) -> Reading:
    """Decode one checked telegram into the reading document."""
    return Reading.model_validate(reading_fields(frame))
