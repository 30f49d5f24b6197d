"""`demo:PROFILE`: a live synthetic DSMR 5 meter, for the demo and for trying p1daemon.

Unlike a looped capture, it is a connection that goes on: the meter's timestamp is now
(Dutch local time with its S/W flag, as a Dutch meter sends it), the registers only
rise (they are a function of the wall clock, see `demo_profile`), and the day of solar
export, cooking peaks and car charging is walked `speed` times faster than real time, so
the quarter-hour, day and connection views change while one watches. The bytes are
complete DSMR 5 telegrams with a correct CRC-16: they go through the same framer, parser
and views as a real meter's.

One telegram every `interval_s` (a real meter: 1 s), delivered on the whole second like
a meter does. It never ends (`finite_capable` is False), waits at most the reader's
timeout so a stop is prompt, and builds one small telegram a second. The clock and the
sleep are injectable: a test walks half an hour in a fraction of a second.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from p1daemon.frame.crc import crc16_arc
from p1daemon.source.demo_profile import (
    EPOCH,
    GAS_WRAP_M3,
    REGISTER_WRAP_KWH,
    Profile,
    low_tariff,
    minute_of_day,
    profile,
)

METER_ZONE = ZoneInfo("Europe/Amsterdam")
GAS_CAPTURE_S = 300  # DSMR 5: the M-Bus value of the last whole five minutes
_CRLF = "\r\n"


def _hexed(text: str) -> str:
    return text.encode("ascii").hex().upper()


def meter_timestamp(instant: float) -> str:
    """TST: YYMMDDhhmmss local time and S (summer) or W (winter)."""
    local = datetime.fromtimestamp(instant, METER_ZONE)
    flag = "S" if local.dst() else "W"
    return local.strftime("%y%m%d%H%M%S") + flag


def _kwh(value: float) -> str:
    wh = math.floor(value * 1000 + 1e-6)
    return f"{wh // 1000:06d}.{wh % 1000:03d}*kWh"


def _kw(value: float) -> str:
    watt = round(value * 1000)
    return f"{watt // 1000:02d}.{watt % 1000:03d}*kW"


class DemoMeter:
    """Composes the telegram a demo meter sends at a given instant.

    Keeps the last registers it sent and never sends less (a float rounding at a day's
    edge, or a wall clock stepped back by NTP, must not make a register go back); only a
    rollover at 999999.999 kWh, as a real meter's, starts again from zero.
    """

    def __init__(self, name: str, *, speed: float = 1.0) -> None:
        self.profile: Profile = profile(name)
        self.speed = speed
        self._last: list[float] = []
        self._last_gas = -1.0
        self._last_instant = -math.inf

    def simulated(self, instant: float) -> float:
        return EPOCH + self.speed * (instant - EPOCH)

    def _rising(self, values: list[float]) -> list[float]:
        if len(self._last) == len(values):
            values = [
                new if new >= old or old - new > REGISTER_WRAP_KWH / 2 else old
                for new, old in zip(values, self._last, strict=True)
            ]
        self._last = values
        return values

    def telegram(self, instant: float) -> bytes:
        instant = max(math.floor(instant), self._last_instant)
        self._last_instant = instant
        p = self.profile
        sim = self.simulated(instant)
        (i1, i2), (e1, e2) = p.registers(sim)
        i1, i2, e1, e2 = self._rising([i1, i2, e1, e2])
        flows = p.flows(sim)
        second = int(instant)
        lines = [
            "1-3:0.2.8(50)",
            f"0-0:1.0.0({meter_timestamp(instant)})",
            f"0-0:96.1.1({_hexed(p.equipment_id)})",
            f"1-0:1.8.1({_kwh(i1)})",
            f"1-0:1.8.2({_kwh(i2)})",
            f"1-0:2.8.1({_kwh(e1)})",
            f"1-0:2.8.2({_kwh(e2)})",
            f"0-0:96.14.0({1 if low_tariff(minute_of_day(sim)) else 2:04d})",
            f"1-0:1.7.0({_kw(flows.import_kw)})",
            f"1-0:2.7.0({_kw(flows.export_kw)})",
            "0-0:96.7.21(00004)",
            "0-0:96.7.9(00001)",
            "1-0:99.97.0(1)(0-0:96.7.19)(260302091512W)(0000000240*s)",
        ]
        phases = ("32", "52", "72")[: len(p.phases)]
        lines += [f"1-0:{code}.32.0(00002)" for code in phases]
        lines += [f"1-0:{code}.36.0(00000)" for code in phases]
        lines.append("0-0:96.13.0()")
        volts = []
        for n, code in enumerate(phases):
            # a mains voltage that wanders a little, lower when the house draws more
            wobble = ((second * 7 + n * 11) % 13 - 6) / 10
            volt = 230.5 + n * 0.8 + wobble - 1.5 * flows.import_kw + 0.8 * flows.export_kw
            volts.append(volt)
            lines.append(f"1-0:{code}.7.0({volt:05.1f}*V)")
        for share, volt, code in zip(p.phases, volts, ("31", "51", "71"), strict=False):
            amps = round((flows.import_kw + flows.export_kw) * share * 1000 / volt)
            lines.append(f"1-0:{code}.7.0({amps:03d}*A)")
        for kw, codes in (
            (flows.import_kw, ("21", "41", "61")),
            (flows.export_kw, ("22", "42", "62")),
        ):
            for share, code in zip(p.phases, codes, strict=False):
                lines.append(f"1-0:{code}.7.0({_kw(kw * share)})")
        if p.gas is not None:
            captured = math.floor(instant / GAS_CAPTURE_S) * GAS_CAPTURE_S
            gas = p.gas_m3(self.simulated(captured))
            if self._last_gas - GAS_WRAP_M3 / 2 < gas < self._last_gas:
                gas = self._last_gas  # as for the registers: only a rollover goes down
            self._last_gas = gas
            litres = math.floor(gas * 1000 + 1e-6)
            lines += [
                "0-1:24.1.0(003)",
                f"0-1:96.1.0({_hexed(p.gas_equipment_id)})",
                f"0-1:24.2.1({meter_timestamp(captured)})"
                f"({litres // 1000:05d}.{litres % 1000:03d}*m3)",
            ]
        body = "/" + p.header + _CRLF + _CRLF + "".join(line + _CRLF for line in lines) + "!"
        raw = body.encode("ascii")
        return raw + f"{crc16_arc(raw):04X}\r\n".encode("ascii")


class DemoSource:
    """A `ByteSource` that is a demo meter, sending for ever."""

    def __init__(
        self,
        name: str,
        *,
        speed: float = 1.0,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self._meter = DemoMeter(name, speed=speed)
        self._name = name
        self._speed = speed
        # Meter timestamps have whole seconds: faster than one a second would repeat them.
        self._interval = max(float(interval_s), 1.0)
        self._clock = clock
        self._interrupted = threading.Event()
        # As the replay's: `interrupt` ends the wait for the next second at once.
        self._sleep = self._interrupted.wait if sleep is None else sleep
        self._next_due = 0.0

    @property
    def description(self) -> str:
        pace = f"every {self._interval:g} s"
        day = "in real time" if self._speed == 1 else f"a day in {86400 / self._speed / 60:g} min"
        return f"demo:{self._name} (synthetic DSMR 5 meter, {pace}, {day})"

    @property
    def line_settings(self) -> str | None:
        return None

    @property
    def interruptible(self) -> bool:
        """With its own sleep (not a test's, which `interrupt` cannot cut short)."""
        return self._sleep == self._interrupted.wait

    def interrupt(self) -> None:
        self._interrupted.set()

    def open(self) -> None:
        self._next_due = math.ceil(self._clock())

    def read(self, timeout: float) -> bytes:
        if self._interrupted.is_set():
            return b""
        now = self._clock()
        wait = self._next_due - now
        if wait > 0:
            # A sleep returning True was interrupted (stopping): nothing goes out early.
            if self._sleep(min(wait, timeout)) is True or wait > timeout:
                return b""  # interrupted, or not due yet
            now = max(self._clock(), self._next_due)
        due = self._next_due
        # A late read (a busy Pi, a suspended laptop) skips the missed seconds rather than
        # bursting them out: a meter only ever sends its present.
        self._next_due = max(due + self._interval, math.floor(now) + self._interval)
        return self._meter.telegram(max(now, due))

    def close(self) -> None:
        pass
