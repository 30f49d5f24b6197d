"""`p1daemon probe`: listen to one port until a valid telegram arrives and say what it holds.

A new user's first question is "does my cable work, and what does my meter send?". The
answer is the serial settings that worked, the header, DSMR version and equipment id,
which registers are present (so they know whether export, per-phase or capacity data
will show up) and which M-Bus sub-meters hang off the meter.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped
from p1daemon.frame.smarty import SMARTY_AUTH_KEY
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.doc import Doc
from p1daemon.reading.model import Reading
from p1daemon.source.base import EndOfData, SourceUnavailable
from p1daemon.source.factory import SourceOptions, build_source
from p1daemon.source.serial_port import SerialSource
from p1daemon.source.spec import SourceSpec

_POLL_S = 0.25


class ProbeError(Exception):
    """Nothing usable came from the port; the message is one line for the user."""


@dataclass
class ProbeResult:
    port: str
    reading: Reading
    line_settings: str | None
    dropped: Counter[str] = field(default_factory=Counter)


def probe(
    spec: SourceSpec,
    options: SourceOptions,
    timeout: float,
    *,
    key: bytes | None = None,
    auth_key: bytes | None = SMARTY_AUTH_KEY,
    clock: Callable[[], float] = time.monotonic,
) -> ProbeResult:
    source = build_source(spec, options)
    stream = ReadingStream(
        TelegramDecoder(
            check_crc=options.check_crc, max_size=options.max_frame, key=key, auth_key=auth_key
        )
    )
    dropped: Counter[str] = Counter()
    received = 0
    try:
        source.open()
    except SourceUnavailable as exc:
        raise ProbeError(f"{spec.text}: {exc}") from None
    try:
        deadline = clock() + timeout
        while (remaining := deadline - clock()) > 0:
            data = b""
            try:
                data = source.read(min(_POLL_S, remaining))
                events = stream.feed(data)
            except EndOfData:
                events = stream.flush()
                deadline = 0.0
            except SourceUnavailable as exc:
                raise ProbeError(f"{spec.text}: {exc}") from None
            received += len(data)
            for event in events:
                if isinstance(event, Dropped):
                    dropped[event.reason.value] += 1
                else:
                    return ProbeResult(spec.text, event, source.line_settings, dropped)
    finally:
        source.close()
    detail = [f"{received} bytes accepted"]
    if dropped:
        detail.append("dropped: " + ", ".join(f"{n} {why}" for why, n in dropped.items()))
    if isinstance(source, SerialSource):
        detail.append("tried " + ", ".join(str(line) for line in source.tried))
    raise ProbeError(f"{spec.text}: no valid telegram within {timeout:g} s ({'; '.join(detail)})")


def _present(section: Doc, names: dict[str, str]) -> list[str]:
    return [label for attr, label in names.items() if getattr(section, attr) is not None]


_DIRECTION = {
    "t1_kwh": "t1",
    "t2_kwh": "t2",
    "t3_kwh": "t3",
    "t4_kwh": "t4",
    "total_kwh": "total",
    "power_kw": "power",
    "l1_kw": "power l1",
    "l2_kw": "power l2",
    "l3_kw": "power l3",
}


def register_lines(reading: Reading) -> list[str]:
    """Which registers the telegram carries, grouped the way the reading document is."""
    groups: list[tuple[str, list[str]]] = [
        ("import", _present(reading.import_, _DIRECTION)),
        ("export", _present(reading.export, _DIRECTION)),
        ("voltage", _present(reading.voltage, {"l1_v": "l1", "l2_v": "l2", "l3_v": "l3"})),
        ("current", _present(reading.current, {"l1_a": "l1", "l2_a": "l2", "l3_a": "l3"})),
        ("voltage sags", _present(reading.voltage_sags, {"l1": "l1", "l2": "l2", "l3": "l3"})),
        ("voltage swells", _present(reading.voltage_swells, {"l1": "l1", "l2": "l2", "l3": "l3"})),
    ]
    failures = _present(reading.power_failures, {"short": "short", "long": "long"})
    if reading.power_failures.log:
        failures.append(f"log of {len(reading.power_failures.log)}")
    groups.append(("power failures", failures))
    misc = [
        label
        for label, value in (
            ("timestamp", reading.timestamp),
            ("tariff indicator", reading.tariff),
            ("text message", reading.message),
            ("message code", reading.message_code),
            ("breaker state", reading.breaker_state),
            ("limiter", reading.limiter),
            ("fuse threshold", reading.fuse_threshold_a),
        )
        if value is not None
    ]
    groups.append(("other", misc))
    if reading.capacity is not None:
        capacity = _present(
            reading.capacity,
            {
                "average_demand_kw": "quarter-hour demand",
                "month_max_kw": "month peak",
            },
        )
        if reading.capacity.history:
            capacity.append(f"{len(reading.capacity.history)} months of peaks")
        groups.append(("capacity tariff", capacity))
    lines = [f"  {name + ':':<16}{', '.join(items)}" for name, items in groups if items]
    if reading.other:
        lines.append(f"  {'not decoded:':<16}{', '.join(sorted(reading.other))}")
    return lines


def describe(result: ProbeResult) -> str:
    reading = result.reading
    lines = [
        f"{'port:':<17}{result.port}",
        f"{'serial settings:':<17}{result.line_settings or 'n/a (not a serial port)'}",
        f"{'header:':<17}{reading.header}",
        f"{'DSMR version:':<17}{reading.dsmr_version or 'unknown'}",
        f"{'equipment id:':<17}{reading.equipment_id or 'not sent'}",
        "registers:",
        *register_lines(reading),
    ]
    if reading.mbus:
        lines.append("M-Bus devices:")
        for device in reading.mbus:
            value = (
                "" if device.value is None else f", {device.value:g} {device.unit or ''}".rstrip()
            )
            lines.append(
                f"  channel {device.channel}: {device.kind}, equipment id "
                f"{device.equipment_id or 'not sent'}{value}"
            )
    else:
        lines.append("M-Bus devices:   none")
    if result.dropped:
        dropped = ", ".join(f"{n} {why}" for why, n in result.dropped.items())
        lines.append(f"{'dropped before:':<17}{dropped}")
    return "\n".join(lines)
